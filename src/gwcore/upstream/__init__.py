"""Upstream: load balancing over a cluster's endpoints and pure connection-pool
decisions. Nothing here holds a socket, reads a clock or draws randomness."""

from gwcore.upstream.balancer import (
    Balancer,
    LeastRequestBalancer,
    PickContext,
    RandomBalancer,
    RingHashBalancer,
    RoundRobinBalancer,
    make_balancer,
    stable_hash,
)
from gwcore.upstream.pool import (
    ConnectionInfo,
    ConnectionPool,
    ConnectionState,
    Decision,
    OpenConnection,
    PoolLimits,
    PoolStatistics,
    Queued,
    Rejected,
    RejectReason,
    RequestRef,
    UseConnection,
)

__all__ = [
    "Balancer",
    "ConnectionInfo",
    "ConnectionPool",
    "ConnectionState",
    "Decision",
    "LeastRequestBalancer",
    "OpenConnection",
    "PickContext",
    "PoolLimits",
    "PoolStatistics",
    "Queued",
    "RandomBalancer",
    "RejectReason",
    "Rejected",
    "RequestRef",
    "RingHashBalancer",
    "RoundRobinBalancer",
    "UseConnection",
    "make_balancer",
    "stable_hash",
]
