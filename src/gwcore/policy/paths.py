"""Request path normalization, before routing and policy (and what goes upstream).

Routing and access rules must see the path the upstream will act on, or
``/public/../admin`` slips past a rule on ``/admin``. :func:`normalize_target` applies,
in this order (each step only if enabled in :class:`~gwcore.config.model.PathNormalization`):

1. **decode unreserved**: ``%XX`` escapes of RFC 3986 unreserved characters
   (``A-Z a-z 0-9 - . _ ~``) become the character (``%7E`` -> ``~``, ``%2E`` -> ``.``);
   every other escape is kept with upper-case hex digits (``%2f`` -> ``%2F``). An
   invalid escape (``%zz``, a ``%`` without two hex digits) is a :class:`PathError`.
2. **merge slashes**: runs of ``/`` become one.
3. **remove dot segments**: RFC 3986 §5.2.4; ``..`` never climbs above ``/``.

What the steps mean for tricky paths:

* ``/admin/../public`` -> ``/public``; ``//admin`` -> ``/admin``.
* ``/public/%2e%2e/admin`` and ``/%2E%2E/admin`` -> ``/admin``: encoded dots are
  decoded in step 1, so they are dot segments in step 3.
* ``/a/%2F/..`` -> ``/a/``: ``%2F`` stays encoded, so it is an ordinary segment
  character, not a separator, and ``..`` removes the segment ``%2F``. An upstream that
  decodes ``%2F`` into ``/`` after the gateway routed can see a different path
  structure (``/a/%2F..%2Fb``): routes guarding such upstreams should refuse ``%2F``.
* With ``decode_unreserved`` off, ``%2E%2E`` is not a dot segment here, but an upstream
  may decode it into ``..``: keep the decoding on unless the upstream never decodes.

Only the path is normalized; the query (after the first ``?``) is kept byte for byte.
Normalizing is idempotent.
"""

from __future__ import annotations

import re

from gwcore.config import model as m


class PathError(ValueError):
    """A request path that cannot be normalized (an invalid percent escape): answer 400."""


_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_HEX = frozenset("0123456789abcdefABCDEF")
_SLASHES = re.compile(r"/{2,}")


def decode_unreserved(path: str) -> str:
    """Step 1 (see the module docstring). Raises :class:`PathError` on a bad escape."""
    if "%" not in path:
        return path
    out: list[str] = []
    start = 0
    index = path.find("%")
    while index >= 0:
        digits = path[index + 1 : index + 3]
        if len(digits) != 2 or not (digits[0] in _HEX and digits[1] in _HEX):
            raise PathError(f"invalid percent escape {path[index : index + 3]!r} at {index}")
        out.append(path[start:index])
        byte = int(digits, 16)
        out.append(chr(byte) if byte in _UNRESERVED else "%" + digits.upper())
        start = index + 3
        index = path.find("%", start)
    out.append(path[start:])
    return "".join(out)


def remove_dot_segments(path: str) -> str:
    """Step 3 for an absolute path (starting with ``/``): RFC 3986 §5.2.4.

    ``.`` segments go, ``..`` removes the segment before it (nothing above ``/``), and a
    path ending in ``.`` or ``..`` keeps a trailing ``/``.
    """
    segments = path[1:].split("/")
    out: list[str] = []
    for segment in segments:
        if segment == "..":
            if out:
                out.pop()
        elif segment != ".":
            out.append(segment)
    if segments[-1] in (".", "..") and out:
        out.append("")
    return "/" + "/".join(out)


def _has_dot_segment(path: str) -> bool:
    return "/." in path and any(s in (".", "..") for s in path.split("/"))


def normalize_target(target: str, config: m.PathNormalization) -> str:
    """``target`` (an origin-form request target such as ``/a/./b//c?x=1``) with its path
    normalized as ``config`` says (see the module docstring); the query is unchanged.

    ``*`` (``OPTIONS *``) and targets not starting with ``/`` (absolute-form,
    authority-form) are returned unchanged. Raises :class:`PathError` for an invalid
    percent escape when ``decode_unreserved`` is on.
    """
    if not target.startswith("/"):
        return target
    path, sep, query = target.partition("?")
    normalized = path
    if config.decode_unreserved:
        normalized = decode_unreserved(normalized)
    if config.merge_slashes and "//" in normalized:
        normalized = _SLASHES.sub("/", normalized)
    if config.remove_dot_segments and _has_dot_segment(normalized):
        normalized = remove_dot_segments(normalized)
    if normalized is path:
        return target
    return normalized + sep + query
