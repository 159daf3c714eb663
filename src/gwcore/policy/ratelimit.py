"""Local rate limiters (token bucket, sliding-window counter) and the RateLimit headers.

A limiter keeps one small state per key (a client IP, a user, a route...) and answers
``take(key, now, cost)`` with a :class:`RateDecision`. Time is the caller's ``now`` in
seconds on a monotonic clock; nothing here reads a clock.

Key spaces are bounded: each limiter keeps at most ``max_keys`` states in LRU order
and evicts the least recently used one when a new key arrives. A key that comes back
after being evicted starts fresh, exactly as if it had been idle long enough to
recover its whole quota. So an eviction gives a client at most one fresh quota
(``burst`` / ``limit``) more than the limit would have, and a key is only evicted
after ``max_keys`` other keys were used more recently. With ``max_keys`` above the
number of distinct keys active within one recovery period (``burst / rate`` seconds,
or two windows) evictions only ever drop states that had recovered anyway.

Time going backwards (``now`` smaller than a previous call's) never mints quota: the
token bucket refills only for time after the latest ``now`` it has seen; the sliding
window never rolls its windows back, and an earlier ``now`` only weighs the previous
window more.

A cost above the quota (``cost > burst`` / ``cost > limit``) can never be admitted. It
is denied without consuming anything, with ``retry_after`` equal to ``reset`` (the
time until the quota is fully available, possibly 0): retrying after it is still
denied. The engine only ever asks for cost 1, and quotas are at least 1.

Seam for a distributed limiter (a later issue: a global limit in Redis through the
``CheckQuota`` action): :class:`RateLimiter` stays synchronous and local, and ``take``
never returns a "pending" marker. A remote limiter will be a separate
``AsyncRateLimiter`` protocol whose ``begin(key, now, cost)`` returns the ``CheckQuota``
request; the engine parks the stream, feeds the ``QuotaAnswered`` event back, and turns
the answer into the same :class:`RateDecision`, so :func:`rate_limit_headers` serves both.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from gwcore.config import model as m

# Float slack when comparing token counts, so that e.g. 0.1 s of a 10/s refill, which
# computes as 0.9999999999999 tokens, still pays for a request of cost 1.
_EPSILON = 1e-9


@dataclass(frozen=True, slots=True)
class RateDecision:
    """The outcome of one :meth:`RateLimiter.take`.

    ``limit`` is the quota (token bucket: ``burst``; sliding window: ``limit``).
    ``remaining`` is what is left after this take (whole units, ``>= 0``). ``reset`` is
    the number of seconds until the whole quota is available again if no other
    request arrives (0 when it already is). ``retry_after`` is ``None`` when
    ``allowed``; when denied, the seconds until a request of the same cost would be
    admitted (see the module docstring for costs above the quota).
    """

    allowed: bool
    limit: int
    remaining: int
    reset: float
    retry_after: float | None


class RateLimiter(Protocol):
    """What the engine needs from a local limiter."""

    name: str

    def take(self, key: str, now: float, cost: int = 1) -> RateDecision:
        """Try to consume ``cost`` units for ``key`` at time ``now`` (seconds).

        Denied takes consume nothing. ``cost`` 0 only reports the state.
        """
        ...

    def policy_header(self) -> str:
        """This limiter's item of the ``RateLimit-Policy`` header, e.g. ``"api";q=20;w=1``."""
        ...


def _check_cost(cost: int) -> None:
    if cost < 0:
        raise ValueError(f"rate limit cost must be >= 0, got {cost}")


def _ceil_seconds(seconds: float) -> int:
    """Whole seconds, rounded up, ignoring float noise below a microsecond."""
    return max(0, math.ceil(round(seconds, 6)))


def sf_string(text: str) -> str:
    """``text`` as a Structured Field String (RFC 8941 §3.3.3): quoted, ``"`` and ``\\``
    escaped; characters outside printable ASCII become ``?``."""
    out = ['"']
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif " " <= ch <= "~":
            out.append(ch)
        else:
            out.append("?")
    out.append('"')
    return "".join(out)


class TokenBucket:
    """A token bucket per key: ``burst`` tokens, refilled at ``rate`` tokens per second.

    A new key starts full. A take of ``cost`` succeeds when the bucket holds at least
    ``cost`` tokens, and removes them. At most ``max_keys`` keys are tracked (LRU).
    A key whose bucket is full is indistinguishable from an unknown key, so a take
    that leaves a bucket full (cost 0 or a denial on a full bucket) stores nothing.
    """

    __slots__ = ("_keys", "burst", "evictions", "max_keys", "name", "rate")

    def __init__(self, name: str, rate: float, burst: int, max_keys: int) -> None:
        if not (rate > 0 and math.isfinite(rate)):
            raise ValueError(f"token bucket {name!r}: rate must be a positive number, got {rate}")
        if burst < 1:
            raise ValueError(f"token bucket {name!r}: burst must be >= 1, got {burst}")
        if max_keys < 1:
            raise ValueError(f"token bucket {name!r}: max_keys must be >= 1, got {max_keys}")
        self.name = name
        self.rate = float(rate)
        self.burst = int(burst)
        self.max_keys = int(max_keys)
        self.evictions = 0
        # key -> [tokens, time of the latest refill]; a list so a take mutates in place.
        self._keys: OrderedDict[str, list[float]] = OrderedDict()

    def __len__(self) -> int:
        """The number of keys currently tracked (at most ``max_keys``)."""
        return len(self._keys)

    def take(self, key: str, now: float, cost: int = 1) -> RateDecision:
        """Take ``cost`` from ``key``'s allowance at time ``now`` (seconds, any monotonic clock)."""
        _check_cost(cost)
        burst = self.burst
        rate = self.rate
        state = self._keys.get(key)
        if state is None:
            tokens = float(burst)
        else:
            self._keys.move_to_end(key)
            tokens, last = state
            if now > last:  # never refill for time before the latest `now` seen
                tokens = min(float(burst), tokens + (now - last) * rate)
                state[1] = now
        if cost <= tokens + _EPSILON:
            tokens = max(0.0, tokens - cost)
            allowed = True
            retry_after: float | None = None
        else:
            allowed = False
            retry_after = (cost - tokens) / rate if cost <= burst else (burst - tokens) / rate
        if state is not None:
            state[0] = tokens
        elif tokens < burst:
            if len(self._keys) >= self.max_keys:
                self._keys.popitem(last=False)
                self.evictions += 1
            self._keys[key] = [tokens, now]
        return RateDecision(
            allowed,
            burst,
            int(tokens + _EPSILON),
            (burst - tokens) / rate,
            retry_after,
        )

    def policy_header(self) -> str:
        """``q`` is ``burst``; ``w`` the seconds an empty bucket takes to refill (rounded
        up, at least 1), so ``q/w`` never overstates the long-run rate."""
        window = max(1, _ceil_seconds(self.burst / self.rate))
        return f"{sf_string(self.name)};q={self.burst};w={window}"


class SlidingWindow:
    """A sliding-window counter per key: at most ``limit`` units in any ``window`` seconds,
    approximated from two fixed windows.

    Time is cut into fixed windows of ``window`` seconds. A key keeps the count of its
    current window and of the previous one; the estimate at ``now`` is
    ``previous * (1 - elapsed / window) + current``, where ``elapsed`` is the time since
    the current window began. A take is admitted when ``estimate + cost <= limit``.
    The estimate never undercounts a fixed window, so no fixed window ever admits more
    than ``limit``. It assumes the previous window's requests were spread evenly: then
    no sliding interval of ``window`` seconds admits more than ``limit`` either; in the
    worst case (the previous window's requests bunched at its very end) a sliding
    interval can admit nearly ``2 * limit``. O(1) memory per key: three integers.
    """

    __slots__ = ("_keys", "evictions", "limit", "max_keys", "name", "window")

    def __init__(self, name: str, limit: int, window: float, max_keys: int) -> None:
        if limit < 1:
            raise ValueError(f"sliding window {name!r}: limit must be >= 1, got {limit}")
        if not (window > 0 and math.isfinite(window)):
            raise ValueError(f"sliding window {name!r}: window must be positive, got {window}")
        if max_keys < 1:
            raise ValueError(f"sliding window {name!r}: max_keys must be >= 1, got {max_keys}")
        self.name = name
        self.limit = int(limit)
        self.window = float(window)
        self.max_keys = int(max_keys)
        self.evictions = 0
        # key -> [index of the current fixed window, previous count, current count].
        self._keys: OrderedDict[str, list[int]] = OrderedDict()

    def __len__(self) -> int:
        """The number of keys currently tracked (at most ``max_keys``)."""
        return len(self._keys)

    def take(self, key: str, now: float, cost: int = 1) -> RateDecision:
        """Take ``cost`` from ``key``'s allowance at time ``now`` (seconds, any monotonic clock)."""
        _check_cost(cost)
        window = self.window
        limit = self.limit
        index = math.floor(now / window)
        state = self._keys.get(key)
        if state is None:
            stored, previous, current = index, 0, 0
        else:
            self._keys.move_to_end(key)
            stored, previous, current = state
        if index > stored:
            previous = current if index == stored + 1 else 0
            current = 0
            stored = index
        # Seconds since the stored window began: negative when time went back past its
        # start, and then read as 0 for the weights (the previous window weighs fully,
        # the strictest view); waits are still measured from the real `now`.
        offset = now - stored * window
        weight = 1.0 - min(max(offset, 0.0), window) / window
        estimate = previous * weight + current
        if estimate + cost <= limit + _EPSILON:
            current += cost
            estimate += cost
            allowed = True
            retry_after: float | None = None
        else:
            allowed = False
            retry_after = max(0.0, self._retry_after(offset, previous, current, cost))
        if state is not None:
            state[0], state[1], state[2] = stored, previous, current
        elif previous or current:
            if len(self._keys) >= self.max_keys:
                self._keys.popitem(last=False)
                self.evictions += 1
            self._keys[key] = [stored, previous, current]
        return RateDecision(
            allowed,
            limit,
            max(0, int(limit - estimate + _EPSILON)),
            self._reset(offset, previous, current),
            retry_after,
        )

    def _reset(self, offset: float, previous: int, current: int) -> float:
        """Seconds until the estimate is 0, ``offset`` seconds into the stored window: the
        current count leaves when the next window ends, the previous one when this ends."""
        if current:
            return 2 * self.window - offset
        if previous:
            return self.window - offset
        return 0.0

    def _retry_after(self, offset: float, previous: int, current: int, cost: int) -> float:
        """Seconds until ``cost`` fits if nothing else arrives, ``offset`` seconds into
        the stored window (whose estimate did not admit it)."""
        window, limit = self.window, self.limit
        if cost > limit:
            return self._reset(offset, previous, current)
        room = limit - current - cost
        if room >= 0:
            # Within this window, once the previous window's weight has decayed enough:
            # previous * (1 - f) <= room  <=>  f >= 1 - room / previous (here previous > room).
            return window * (1.0 - room / previous) - offset
        # In the next window the current count becomes the previous one and decays.
        room = limit - cost
        fraction = 0.0 if current <= room else 1.0 - room / current
        return window * (1.0 + fraction) - offset

    def policy_header(self) -> str:
        """``q`` is ``limit``; ``w`` is ``window`` in whole seconds (rounded up, at least 1)."""
        return f"{sf_string(self.name)};q={self.limit};w={max(1, _ceil_seconds(self.window))}"


def limiter_for(config: m.RateLimit) -> RateLimiter:
    """A fresh limiter for a configured rate limit (no keys tracked yet)."""
    if config.algorithm == "token_bucket":
        return TokenBucket(config.name, config.rate, config.burst, config.max_keys)
    return SlidingWindow(config.name, config.limit, config.window, config.max_keys)


# --------------------------------------------------------------------------- keys

# Key parts longer than this are replaced by their SHA-256 (64 hex digits), so a key is
# at most about 70 characters per part whatever a client sends.
MAX_PLAIN_PART = 64
# The marker for a missing part under ``missing_key: shared``. Every present part starts
# with a digit (its length) or "h" (hashed), so the marker can equal no present value.
_MISSING = "-"


def _encode_part(text: str) -> str:
    if len(text) > MAX_PLAIN_PART:
        digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
        return f"h{digest};"
    return f"{len(text)}:{text}"


def _claim_text(claims: Mapping[str, Any] | None, path: tuple[str, ...]) -> str | None:
    """A claim as canonical JSON text (so ``"42"`` and ``42`` differ), or ``None`` if absent."""
    node: Any = claims
    if node is None or not path:
        return None
    for part in path:
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return json.dumps(node, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def _first_header(headers: Sequence[tuple[str, str]], name: str) -> str | None:
    for header, value in headers:
        if header.lower() == name:
            return value
    return None


def rate_limit_key(
    config: m.RateLimit,
    *,
    client_ip: str,
    route: str,
    claims: Mapping[str, Any] | None,
    headers: Sequence[tuple[str, str]],
) -> str | None:
    """The key a request counts against under ``config``, or ``None`` when the limit does
    not apply to it (a missing claim or header with ``missing_key: skip``).

    Parts, in ``config.key`` order: the client IP, the route label, a verified claim
    (canonical JSON of its value, so nested values and arrays are keyed exactly), or the
    first value of a request header. Each part is length-prefixed (``3:abc``) or, when
    longer than :data:`MAX_PLAIN_PART`, replaced by ``h<sha256 hex>;``, so distinct part
    tuples never give the same key and a key stays short. With ``missing_key: shared``
    a missing part is the marker ``-``: all requests missing it share one key.
    """
    out: list[str] = []
    for part in config.key:
        text: str | None
        if part.kind == "client_ip":
            text = client_ip
        elif part.kind == "route":
            text = route
        elif part.kind == "claim":
            text = _claim_text(claims, part.path)
        else:
            text = _first_header(headers, part.name)
        if text is None:
            if config.missing_key == "skip":
                return None
            out.append(_MISSING)
        else:
            out.append(_encode_part(text))
    return "".join(out)


# ------------------------------------------------------------------------ headers


def rate_limit_headers(
    limiters_and_decisions: Sequence[tuple[RateLimiter, RateDecision]],
) -> list[tuple[str, str]]:
    """Response headers for the limits a request was checked against
    (draft-ietf-httpapi-ratelimit-headers, the structured-field version).

    * ``ratelimit-policy``: every limiter's policy item, in order, each once;
    * ``ratelimit``: ``"name";r=<remaining>;t=<ceil(reset)>`` for the most restrictive
      decision: a denial first, then the lowest ``remaining``, then the longest reset;
    * ``retry-after`` (delay-seconds) when any decision was denied: the longest
      ``retry_after`` of the denials (every denying limit must have recovered), rounded
      up, at least 1.

    No input gives no headers. Names are lower-case. Note: ``t`` measures a full
    recovery, so a denial's ``retry-after`` (enough for one request) is usually shorter
    than ``t``; the draft says clients must then follow ``retry-after``.
    """
    if not limiters_and_decisions:
        return []
    policies: list[str] = []
    seen: set[int] = set()
    for limiter, _ in limiters_and_decisions:
        if id(limiter) not in seen:
            seen.add(id(limiter))
            policies.append(limiter.policy_header())
    limiter, decision = min(
        limiters_and_decisions,
        key=lambda pair: (pair[1].allowed, pair[1].remaining, -pair[1].reset),
    )
    headers = [
        ("ratelimit-policy", ", ".join(policies)),
        (
            "ratelimit",
            f"{sf_string(limiter.name)};r={decision.remaining};t={_ceil_seconds(decision.reset)}",
        ),
    ]
    waits = [d.retry_after or 0.0 for _, d in limiters_and_decisions if not d.allowed]
    if waits:
        headers.append(("retry-after", str(max(1, _ceil_seconds(max(waits))))))
    return headers
