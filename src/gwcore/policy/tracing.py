"""W3C Trace Context (level 1): propagate a valid ``traceparent``, or start a new trace.

The gateway is a pass-through participant: it records no spans of its own, so a valid
incoming ``traceparent`` goes upstream unchanged, and then ``tracestate`` must not
change either (the spec forbids mutating one without the other) except that an
invalid or oversized ``tracestate`` is dropped. When there is no valid
``traceparent`` the gateway starts a new trace (fresh trace-id and parent-id) and
drops any ``tracestate`` (it described a trace that is no longer the parent).

New traces are *not* sampled (flags ``00``): the sampled flag says "the caller may have
recorded trace data", and the gateway records none; the spec recommends 0 as the
default for a component that starts a trace. A downstream service whose sampler follows
a remote parent's decision (OpenTelemetry's ``ParentBased`` default) will then not
record these traces; pass ``sampled=True`` to hand the decision downstream as "sample".
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

_VERSION_00 = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}")
# Version prefix, trace-id, parent-id, flags; a future version may append "-..." fields.
# Unknown trailing fields are kept as they are, so they must be visible ASCII.
_FUTURE = re.compile(r"[0-9a-f]{2}-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}(?:-[\x21-\x7e]*)?")
_ZERO_TRACE = "0" * 32
_ZERO_PARENT = "0" * 16
# Future versions may be longer, but a traceparent beyond this is not one we forward.
MAX_TRACEPARENT = 256
# The tracestate we forward at most (the spec's "at least 512 characters"), combined.
MAX_TRACESTATE = 512
_MAX_MEMBERS = 32
# Level 2's key grammar, a superset of level 1's (simple keys and tenant@system keys):
# propagating what a newer vendor wrote beats dropping it.
_KEY = re.compile(r"[a-z0-9][a-z0-9_\-*/@]{0,255}")
_VALUE = re.compile(r"[\x20-\x2b\x2d-\x3c\x3e-\x7e]{0,255}[\x21-\x2b\x2d-\x3c\x3e-\x7e]")


@dataclass(frozen=True, slots=True)
class TraceContext:
    """The trace headers to send upstream.

    ``traceparent`` is always valid; ``tracestate`` is ``None`` when there is none to
    send; ``started`` is true when the gateway made a new trace (none valid came in).
    """

    traceparent: str
    tracestate: str | None
    started: bool

    def headers(self) -> list[tuple[str, str]]:
        """``traceparent`` (and ``tracestate``) as lower-case header pairs."""
        out = [("traceparent", self.traceparent)]
        if self.tracestate is not None:
            out.append(("tracestate", self.tracestate))
        return out


def valid_traceparent(value: str) -> bool:
    """Whether ``value`` is a traceparent to propagate: version ``00`` in exactly its
    55-character format, or a higher version (not ``ff``) whose first 55 characters
    parse as version 00's do and are followed by the end or ``-``; lower-case hex only,
    trace-id and parent-id not all zeros."""
    if len(value) > MAX_TRACEPARENT:
        return False
    if value.startswith("00"):
        match = _VERSION_00.fullmatch(value)
    elif value.startswith("ff"):
        return False
    else:
        match = _FUTURE.fullmatch(value)
    return match is not None and match[1] != _ZERO_TRACE and match[2] != _ZERO_PARENT


def valid_tracestate(value: str) -> bool:
    """Whether a combined ``tracestate`` value is a valid list: at most 32 members of
    ``key=value`` (empty members allowed), keys unique, per the spec's grammar (keys
    as level 2 allows, a superset of level 1's)."""
    keys: set[str] = set()
    for member in value.split(","):
        member = member.strip(" \t")
        if not member:
            continue
        key, eq, text = member.partition("=")
        if not eq or _KEY.fullmatch(key) is None or _VALUE.fullmatch(text) is None:
            return False
        if key in keys:
            return False
        keys.add(key)
    return len(keys) <= _MAX_MEMBERS


def _random_id(random_bits: Callable[[int], int], bits: int) -> int:
    # A zero id is invalid; a source that draws 0 (p = 2**-bits) gets 1 instead.
    return (random_bits(bits) & ((1 << bits) - 1)) or 1


def trace_context(
    headers: Sequence[tuple[str, str]],
    random_bits: Callable[[int], int],
    *,
    sampled: bool = False,
) -> TraceContext:
    """The trace context to forward for a request with ``headers``.

    A valid ``traceparent`` (exactly one such header, see :func:`valid_traceparent`)
    is kept unchanged, with the ``tracestate`` lines joined by ``,``, which is kept
    unless it is invalid (:func:`valid_tracestate`), longer than 512 characters, or
    empty. Otherwise a new trace ``00-<trace-id>-<parent-id>-<flags>`` is started with
    ids from ``random_bits(128)`` and ``random_bits(64)`` (never zero) and flags ``00``,
    or ``01`` with ``sampled``; no tracestate. Header names are matched
    case-insensitively.
    """
    parents: list[str] = []
    states: list[str] = []
    for name, value in headers:
        lowered = name.lower()
        if lowered == "traceparent":
            parents.append(value.strip(" \t"))
        elif lowered == "tracestate":
            states.append(value)
    if len(parents) == 1 and valid_traceparent(parents[0]):
        state = ",".join(states) if states else None
        if state is not None and (
            len(state) > MAX_TRACESTATE or not state.strip(" \t,") or not valid_tracestate(state)
        ):
            state = None
        return TraceContext(parents[0], state, started=False)
    trace_id = _random_id(random_bits, 128)
    parent_id = _random_id(random_bits, 64)
    flags = "01" if sampled else "00"
    return TraceContext(f"00-{trace_id:032x}-{parent_id:016x}-{flags}", None, started=True)
