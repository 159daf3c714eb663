"""Load balancers: which endpoint of a cluster gets the next request.

A balancer is built once per endpoint set (see :func:`make_balancer`) and answers
:meth:`Balancer.pick` with an :class:`~gwcore.config.model.Endpoint` or ``None`` when
no endpoint may be used. It never draws randomness or reads a clock itself: whatever
chance a policy needs arrives in the :class:`PickContext` as uniform draws in
``[0, 1)`` taken by the caller from its seeded random source. Given the same
construction, the same sequence of calls and the same draws, every balancer returns
the same endpoints.

Health is an input too: :attr:`PickContext.excluded` names the endpoints that must not
be picked right now (failed health checks, ejected outliers, open circuit breakers).
Exclusion never changes a balancer's structure, so an endpoint that comes back is
picked exactly as before it left.

Weights (positive integers, default 1) are honoured by every policy:

* ``round_robin`` - smooth weighted round robin, as nginx does it: weights 5/1/1 give
  ``a a b a c a a`` rather than ``a a a a a b c``;
* ``random`` - an endpoint is chosen with probability proportional to its weight;
* ``least_request`` - two distinct candidates drawn by weight ("power of two
  choices"), then the one with fewer active requests per unit of weight wins;
* ``ring_hash`` - an endpoint owns a number of ring points proportional to its weight.

The only mutable state is bounded by the endpoint set: round-robin counters and active
request counts, one per endpoint.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from bisect import bisect_left, bisect_right
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import accumulate
from typing import ClassVar

from gwcore.config.model import Cluster, Endpoint, LbPolicy

DEFAULT_MIN_RING_SIZE = 1024
"""Envoy's default ``minimum_ring_size`` for ``ring_hash``."""

DEFAULT_MAX_RING_SIZE = 8 * 1024 * 1024
"""Envoy's default ``maximum_ring_size``: the ring never holds more points than this."""


@dataclass(frozen=True, slots=True)
class PickContext:
    """Everything one :meth:`Balancer.pick` may use.

    ``draws`` are two independent uniform floats in ``[0, 1)`` from the caller's random
    source (``random`` uses the first, ``least_request`` both, ``ring_hash`` the first
    only when there is no ``hash_key``; ``round_robin`` none). ``hash_key`` is what
    ``ring_hash`` hashes: a client IP, a header value, a cookie (``str`` is hashed as
    UTF-8). ``excluded`` endpoints are never returned; unknown endpoints in it are
    ignored.
    """

    draws: tuple[float, float] = (0.0, 0.0)
    hash_key: str | bytes | None = None
    excluded: frozenset[Endpoint] = frozenset()

    def __post_init__(self) -> None:
        for draw in self.draws:
            if not 0.0 <= draw < 1.0:
                raise ValueError(f"draws must be in [0, 1), got {self.draws!r}")


class Balancer(ABC):
    """Chooses endpoints of one fixed endpoint set.

    Subclasses implement :meth:`pick`. The base class validates the endpoint set
    (non-empty is *not* required: an empty set always picks ``None``; endpoints must be
    distinct; weights must be positive integers) and keeps the active request count of
    each endpoint, which the engine maintains with :meth:`on_request_start` and
    :meth:`on_request_end` around every upstream request, whatever the policy.
    """

    policy: ClassVar[LbPolicy]

    def __init__(
        self, endpoints: Sequence[Endpoint], weights: Mapping[Endpoint, int] | None = None
    ) -> None:
        if len(set(endpoints)) != len(endpoints):
            raise ValueError("endpoints must be distinct")
        weights = weights or {}
        unknown = set(weights) - set(endpoints)
        if unknown:
            raise ValueError(f"weights given for unknown endpoints: {sorted(map(str, unknown))}")
        self._endpoints: tuple[Endpoint, ...] = tuple(endpoints)
        self._weights: tuple[int, ...] = tuple(weights.get(e, 1) for e in self._endpoints)
        for endpoint, weight in zip(self._endpoints, self._weights, strict=True):
            if isinstance(weight, bool) or not isinstance(weight, int) or weight < 1:
                raise ValueError(f"weight of {endpoint} must be a positive integer: {weight!r}")
        self._index: dict[Endpoint, int] = {e: i for i, e in enumerate(self._endpoints)}
        self._active: list[int] = [0] * len(self._endpoints)

    @property
    def endpoints(self) -> tuple[Endpoint, ...]:
        """The endpoint set, in the order given at construction."""
        return self._endpoints

    def weight(self, endpoint: Endpoint) -> int:
        """The weight of ``endpoint`` (``KeyError`` if it is not in the set)."""
        return self._weights[self._index[endpoint]]

    def active_requests(self, endpoint: Endpoint) -> int:
        """Requests started on ``endpoint`` and not yet ended."""
        return self._active[self._index[endpoint]]

    def on_request_start(self, endpoint: Endpoint) -> None:
        """Count one more request in flight to ``endpoint`` (``KeyError`` if unknown)."""
        self._active[self._index[endpoint]] += 1

    def on_request_end(self, endpoint: Endpoint) -> None:
        """Count one request to ``endpoint`` as finished.

        Raises ``ValueError`` when no request is in flight: that is a bookkeeping bug
        in the caller, and silently flooring at zero would hide it.
        """
        i = self._index[endpoint]
        if self._active[i] == 0:
            raise ValueError(f"on_request_end({endpoint}) without a matching start")
        self._active[i] -= 1

    @abstractmethod
    def pick(self, context: PickContext) -> Endpoint | None:
        """An endpoint not in ``context.excluded``, or ``None`` when none is left."""

    def _eligible(self, excluded: frozenset[Endpoint]) -> list[int]:
        """Indexes of the endpoints that may be picked, in construction order."""
        if not excluded:
            return list(range(len(self._endpoints)))
        return [i for i, e in enumerate(self._endpoints) if e not in excluded]

    def _weighted_choice(self, candidates: Sequence[int], draw: float) -> int:
        """The candidate index at ``draw`` when candidates split ``[0, 1)`` by weight."""
        cumulative = list(accumulate(self._weights[i] for i in candidates))
        position = bisect_right(cumulative, draw * cumulative[-1])
        # draw < 1 keeps position in range; min() guards against float rounding.
        return candidates[min(position, len(candidates) - 1)]


class RoundRobinBalancer(Balancer):
    """Smooth weighted round robin (nginx's ``ngx_http_upstream_get_peer``).

    Every pick adds each eligible endpoint's weight to its running score, returns the
    endpoint with the highest score (the earliest in construction order on a tie) and
    subtracts the total eligible weight from the winner. Over any window of
    ``sum(weights)`` consecutive picks with a fixed eligible set, each endpoint is
    picked exactly ``weight`` times, spread out rather than in bursts. Excluded
    endpoints keep their score unchanged until they are eligible again.
    """

    policy = "round_robin"

    def __init__(
        self, endpoints: Sequence[Endpoint], weights: Mapping[Endpoint, int] | None = None
    ) -> None:
        super().__init__(endpoints, weights)
        self._scores: list[int] = [0] * len(self._endpoints)

    def pick(self, context: PickContext) -> Endpoint | None:
        eligible = self._eligible(context.excluded)
        if not eligible:
            return None
        total = 0
        best = eligible[0]
        for i in eligible:
            self._scores[i] += self._weights[i]
            total += self._weights[i]
            if self._scores[i] > self._scores[best]:
                best = i
        self._scores[best] -= total
        return self._endpoints[best]


class RandomBalancer(Balancer):
    """Picks an eligible endpoint with probability proportional to its weight.

    Uses ``context.draws[0]``: the eligible endpoints split ``[0, 1)`` into intervals
    as long as their weights, in construction order, and the draw falls into one.
    """

    policy = "random"

    def pick(self, context: PickContext) -> Endpoint | None:
        eligible = self._eligible(context.excluded)
        if not eligible:
            return None
        return self._endpoints[self._weighted_choice(eligible, context.draws[0])]


class LeastRequestBalancer(Balancer):
    """Power of two choices over active request counts.

    The first draw chooses one candidate by weight among the eligible endpoints, the
    second draw a *different* candidate by weight among the rest (so with two or more
    eligible endpoints two really are compared). The candidate with the lower load
    ``(active + 1) / weight`` wins; on equal load the first candidate wins, which keeps
    ties unbiased because the first candidate is itself random. With one eligible
    endpoint it is returned without using the draws.
    """

    policy = "least_request"

    def pick(self, context: PickContext) -> Endpoint | None:
        eligible = self._eligible(context.excluded)
        if not eligible:
            return None
        first = self._weighted_choice(eligible, context.draws[0])
        rest = [i for i in eligible if i != first]
        if not rest:
            return self._endpoints[first]
        second = self._weighted_choice(rest, context.draws[1])
        # Compare (active+1)/weight without floats: cross-multiply.
        first_load = (self._active[first] + 1) * self._weights[second]
        second_load = (self._active[second] + 1) * self._weights[first]
        return self._endpoints[second if second_load < first_load else first]


def stable_hash(data: bytes) -> int:
    """A 64-bit hash that is the same in every process and Python version.

    Python's ``hash()`` is salted per process, so two gateway replicas (or one after a
    restart) would disagree on where a key lives; BLAKE2b does not.
    """
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big")


class RingHashBalancer(Balancer):
    """Consistent hashing on a ring of virtual nodes (Envoy's ``RING_HASH``).

    The ring is built once, at construction: endpoint ``e`` owns ``weight(e) * R``
    points at ``stable_hash(f"{e}_{n}")`` for ``n = 0, 1, ...``. ``R``, the points per
    unit of weight, is the smallest power of two that makes the ring at least
    ``min_ring_size`` points, halved while the ring would exceed ``max_ring_size`` (a
    total weight above ``max_ring_size`` is a ``ValueError``). A key is hashed the same
    way and owned by the first point at or after its hash, wrapping around.

    Why a power of two: a point's position depends only on its endpoint and number, so
    two rings with the same ``R`` share every point of their common endpoints. Adding or
    removing an endpoint then moves *only* the keys that land on that endpoint's points
    (about ``1/N`` of them) - unless the total weight crosses a power of two, which
    changes ``R``. Envoy recomputes the scale for every set, so every change also
    shuffles a few keys between the endpoints that stayed.

    When the owner of a key is excluded, the walk continues clockwise to the next
    endpoint that is not, so the keys of an excluded endpoint spread over the others
    and every other key stays where it was. Without a ``hash_key`` the first draw
    picks a uniformly random point of the ring.
    """

    policy = "ring_hash"

    def __init__(
        self,
        endpoints: Sequence[Endpoint],
        weights: Mapping[Endpoint, int] | None = None,
        *,
        min_ring_size: int = DEFAULT_MIN_RING_SIZE,
        max_ring_size: int = DEFAULT_MAX_RING_SIZE,
    ) -> None:
        super().__init__(endpoints, weights)
        if not 1 <= min_ring_size <= max_ring_size:
            raise ValueError("ring sizes must satisfy 1 <= min_ring_size <= max_ring_size")
        total_weight = sum(self._weights)
        if total_weight > max_ring_size:
            raise ValueError(f"total weight {total_weight} exceeds max_ring_size {max_ring_size}")
        per_weight = 1
        while 0 < per_weight * total_weight < min_ring_size:
            per_weight <<= 1
        while per_weight * total_weight > max_ring_size:
            per_weight >>= 1
        self.points_per_weight: int = per_weight
        """Ring points per unit of weight (``R`` above)."""
        points: list[tuple[int, int]] = []
        for i, endpoint in enumerate(self._endpoints):
            count = self._weights[i] * per_weight
            points.extend((stable_hash(f"{endpoint}_{n}".encode()), i) for n in range(count))
        points.sort()  # a hash collision is ordered by endpoint index: still deterministic
        self._ring_hashes: list[int] = [h for h, _ in points]
        self._ring_owners: list[int] = [i for _, i in points]

    @property
    def ring_size(self) -> int:
        """How many points the ring holds."""
        return len(self._ring_hashes)

    def pick(self, context: PickContext) -> Endpoint | None:
        if not self._ring_hashes:
            return None
        if context.hash_key is None:
            start = int(context.draws[0] * len(self._ring_hashes))
        else:
            key = context.hash_key
            data = key.encode() if isinstance(key, str) else key
            start = bisect_left(self._ring_hashes, stable_hash(data))
        excluded = context.excluded
        if not excluded:
            return self._endpoints[self._ring_owners[start % len(self._ring_owners)]]
        if not self._eligible(excluded):
            return None
        # Bounded walk: some point of an eligible endpoint exists, so this returns
        # within one turn of the ring.
        size = len(self._ring_owners)
        for step in range(size):
            endpoint = self._endpoints[self._ring_owners[(start + step) % size]]
            if endpoint not in excluded:
                return endpoint
        raise AssertionError("unreachable: an eligible endpoint owns at least one point")


_POLICIES: dict[LbPolicy, type[Balancer]] = {
    "round_robin": RoundRobinBalancer,
    "least_request": LeastRequestBalancer,
    "random": RandomBalancer,
    "ring_hash": RingHashBalancer,
}


def make_balancer(
    cluster: Cluster,
    weights: Mapping[Endpoint, int] | None = None,
    *,
    min_ring_size: int = DEFAULT_MIN_RING_SIZE,
) -> Balancer:
    """A fresh balancer for ``cluster`` with its configured ``lb`` policy.

    ``min_ring_size`` applies to ``ring_hash`` only.

    ``weights`` overrides per-endpoint weights (default 1). When an endpoint object
    carries a ``weight`` attribute of its own it is used unless overridden here, so a
    future ``Endpoint.weight`` config field is honoured without changing callers.
    Build a new balancer whenever the cluster's endpoint set changes.
    """
    effective: dict[Endpoint, int] = {}
    for endpoint in cluster.endpoints:
        own = getattr(endpoint, "weight", None)
        if isinstance(own, int):
            effective[endpoint] = own
    effective.update(weights or {})
    if cluster.lb == "ring_hash":
        return RingHashBalancer(cluster.endpoints, effective, min_ring_size=min_ring_size)
    return _POLICIES[cluster.lb](cluster.endpoints, effective)
