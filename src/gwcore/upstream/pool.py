"""Connection pool *decisions* for one cluster: which connection a request uses, when
to open one, when to queue, reject, or close. No sockets, no clock.

The pool only keeps books. The engine tells it what happened (``acquire`` a request,
a connection ``connected`` / ``connect_failed`` / ``released`` / ``closed``, HTTP/2
``settings`` arrived, time passed) and the pool answers with frozen decisions the
engine carries out: :class:`UseConnection`, :class:`OpenConnection`, :class:`Queued`,
:class:`Rejected`. Connections are opaque ``int`` ids the pool hands out in
:class:`OpenConnection`; requests are whatever hashable ``request_ref`` the engine
passes in. Time is the ``now`` argument (seconds, any monotonic origin).

Connection states (one table; every transition goes through one method)::

    state        event                                      next state
    ----------   ----------------------------------------   -----------------------
    (none)       acquire/event finds uncovered waiters       connecting  -> OpenConnection
    connecting   connected                                  idle (then maybe busy)
    connecting   connect_failed / closed                    (gone)      -> some waiters Rejected
    idle         a waiter or acquire takes a stream         busy        -> UseConnection
    busy         released(reusable=True), streams left      busy
    busy         released(reusable=True), no streams left   idle
    busy         released(reusable=False), streams left     draining    (HTTP/2 only)
    busy         released(reusable=False), no streams left  (gone)      (caller closes it)
    draining     released, no streams left                  (gone)      (caller closes it)
    idle         expire_idle after idle_timeout              (gone)      -> returned to close
    any          closed                                     (gone)

An HTTP/1.1 connection carries one request at a time; an HTTP/2 connection carries up
to the peer's ``max_concurrent_streams`` (``assumed_max_concurrent_streams`` until its
SETTINGS arrive). A draining connection takes no new requests.

Waiting requests. A request that cannot use a connection at once waits in a per-endpoint
FIFO; both :class:`OpenConnection` and :class:`Queued` mean "waiting". Whenever a slot
frees up on a connection to that endpoint, the *oldest* waiter gets it, so a request
never overtakes an earlier one to the same endpoint. All waiters of the pool together
never exceed ``max_pending``; one more is :class:`Rejected` (``"pool_overflow"``).

A new connection is opened only for waiters that no connection still connecting will
serve, and only below ``max_connections_per_host``. When a connection attempt fails,
the waiters the remaining attempts will not serve are rejected (``"connect_failed"``)
rather than retried: the endpoint looks down, and the engine may retry elsewhere. No
event ever opens a connection in reply to a failed one, so a dead endpoint cannot
cause a connect loop.

After every call: no waiter coexists with a free slot on a ready connection to its
endpoint, and an endpoint with waiters has a connection in progress (connecting or
busy) to serve them - unless its ready connections were told
``max_concurrent_streams = 0``, in which case a SETTINGS update or the queue timeout
settles them.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass, field, replace
from typing import Literal

from gwcore.config.model import Cluster, Endpoint, UpstreamProtocol

RequestRef = Hashable
"""The engine's name for a request (a stream id, a tuple, ...): anything hashable."""

RejectReason = Literal["pool_overflow", "connect_failed", "queue_timeout"]
"""Why a request gets no connection. The engine answers 503 for each (``queue_timeout``
may be answered 504 by policy)."""

ConnectionState = Literal["connecting", "idle", "busy", "draining"]


# --- decisions --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class UseConnection:
    """Send ``request_ref`` on the ready connection ``conn`` (a new HTTP/2 stream, or
    the only request on an HTTP/1.1 connection). Report ``released`` when it is done."""

    conn: int
    request_ref: RequestRef


@dataclass(frozen=True, slots=True)
class OpenConnection:
    """Open a socket to ``endpoint`` and report ``connected(conn)`` or
    ``connect_failed(conn)``.

    ``request_ref`` is the waiter this connection is opened for; it stays waiting and
    is handed a connection (this one, or one that frees up sooner) by a later
    :class:`UseConnection`, always oldest waiter first.
    """

    conn: int
    endpoint: Endpoint
    request_ref: RequestRef


@dataclass(frozen=True, slots=True)
class Queued:
    """``request_ref`` waits for a connection; a later event answers it with
    :class:`UseConnection` or :class:`Rejected`, unless the engine cancels it."""

    request_ref: RequestRef


@dataclass(frozen=True, slots=True)
class Rejected:
    """``request_ref`` gets no connection; the engine answers the client (503)."""

    request_ref: RequestRef
    reason: RejectReason


Decision = UseConnection | OpenConnection | Queued | Rejected


# --- configuration and snapshots --------------------------------------------------


@dataclass(frozen=True, slots=True)
class PoolLimits:
    """The bounds of one pool.

    ``max_connections_per_host`` counts every connection to one endpoint (connecting,
    ready and draining). ``max_pending`` bounds all waiting requests of the pool.
    ``idle_timeout`` and ``queue_timeout`` are seconds; ``None`` disables them.
    ``assumed_max_concurrent_streams`` is what an HTTP/2 connection is expected to carry
    before its peer's SETTINGS say otherwise.
    """

    max_connections_per_host: int = 64
    max_pending: int = 1024
    idle_timeout: float | None = 60.0
    queue_timeout: float | None = None
    assumed_max_concurrent_streams: int = 100

    def __post_init__(self) -> None:
        if self.max_connections_per_host < 1:
            raise ValueError("max_connections_per_host must be >= 1")
        if self.max_pending < 1:
            raise ValueError("max_pending must be >= 1 (new connections are waited for)")
        if self.assumed_max_concurrent_streams < 1:
            raise ValueError("assumed_max_concurrent_streams must be >= 1")
        for name in ("idle_timeout", "queue_timeout"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ValueError(f"{name} must be >= 0 or None")


@dataclass(frozen=True, slots=True)
class ConnectionInfo:
    """A snapshot of one connection the pool knows."""

    conn: int
    endpoint: Endpoint
    state: ConnectionState
    active_requests: int
    max_concurrent_requests: int


@dataclass(frozen=True, slots=True)
class PoolStatistics:
    """Counts at one moment: connections per state, requests on them, waiters."""

    connecting: int
    idle: int
    busy: int
    draining: int
    active_requests: int
    pending: int


# --- internal state ---------------------------------------------------------------


@dataclass(slots=True)
class _Connection:
    id: int
    endpoint: Endpoint
    max_streams: int
    connecting: bool = True
    draining: bool = False
    active: int = 0
    idle_since: float = 0.0
    recency: int = 0  # larger = more recently ready; picks the LIFO idle connection

    @property
    def free_slots(self) -> int:
        if self.connecting or self.draining:
            return 0
        return max(0, self.max_streams - self.active)

    @property
    def state(self) -> ConnectionState:
        if self.connecting:
            return "connecting"
        if self.draining:
            return "draining"
        return "busy" if self.active else "idle"


@dataclass(slots=True)
class _Waiter:
    arrival: int  # pool-wide arrival order
    queued_at: float


@dataclass(slots=True)
class _Host:
    """Connections to and requests waiting for one endpoint."""

    connections: dict[int, _Connection] = field(default_factory=dict)
    waiting: OrderedDict[RequestRef, _Waiter] = field(default_factory=OrderedDict)


class ConnectionPool:
    """Pure connection-pool decisions for one cluster.

    Every method either returns decisions for the engine to carry out or a plain
    answer; none does I/O. Calls that contradict the pool's books (an unknown
    connection id, ``connected`` on a connection that is not connecting, ``released``
    with no request on it, ``acquire`` of a ref that is already waiting) raise
    ``ValueError``: they are engine bugs. ``closed`` of an unknown connection is
    allowed and does nothing, because the engine closes connections the pool already
    forgot (after ``expire_idle`` or a non-reusable ``released``).
    """

    def __init__(
        self, protocol: UpstreamProtocol = "http1", limits: PoolLimits | None = None
    ) -> None:
        self.protocol: UpstreamProtocol = protocol
        self.limits: PoolLimits = limits or PoolLimits()
        self._hosts: dict[Endpoint, _Host] = {}
        self._connection_host: dict[int, Endpoint] = {}
        self._waiter_host: dict[RequestRef, Endpoint] = {}
        self._next_conn = 1
        self._next_arrival = 0
        self._next_recency = 0

    @classmethod
    def for_cluster(cls, cluster: Cluster, limits: PoolLimits | None = None) -> ConnectionPool:
        """A pool speaking ``cluster.protocol`` with its ``max_connections_per_host``."""
        limits = replace(
            limits or PoolLimits(), max_connections_per_host=cluster.max_connections_per_host
        )
        return cls(cluster.protocol, limits)

    # --- requests -----------------------------------------------------------------

    def acquire(
        self, endpoint: Endpoint, request_ref: RequestRef, now: float
    ) -> UseConnection | OpenConnection | Queued | Rejected:
        """Decide how ``request_ref`` reaches ``endpoint``.

        Reuses the most recently used ready connection with a free slot; otherwise the
        request waits, and an :class:`OpenConnection` is returned when a new connection
        is needed and allowed, :class:`Queued` when not; a full waiting queue gives
        :class:`Rejected` (``"pool_overflow"``).
        """
        if request_ref in self._waiter_host:
            raise ValueError(f"request {request_ref!r} is already waiting")
        host = self._hosts.setdefault(endpoint, _Host())
        conn = self._free_connection(host)
        if conn is not None:
            # Invariant: no waiter for this endpoint while a slot is free.
            conn.active += 1
            return UseConnection(conn.id, request_ref)
        if len(self._waiter_host) >= self.limits.max_pending:
            self._forget_if_empty(endpoint)
            return Rejected(request_ref, "pool_overflow")
        host.waiting[request_ref] = _Waiter(self._next_arrival, now)
        self._next_arrival += 1
        self._waiter_host[request_ref] = endpoint
        decisions = self._dispatch(endpoint)
        # Every older waiter was already served or covered, so only this one can move.
        assert all(d.request_ref == request_ref for d in decisions), decisions
        return decisions[0] if decisions else Queued(request_ref)

    def cancel(self, request_ref: RequestRef) -> bool:
        """Forget a waiting request (its client went away). ``False`` if not waiting.

        A connection being opened for it still opens and becomes idle if unneeded.
        """
        endpoint = self._waiter_host.pop(request_ref, None)
        if endpoint is None:
            return False
        del self._hosts[endpoint].waiting[request_ref]
        self._forget_if_empty(endpoint)
        return True

    def queue_timeouts(self, now: float) -> list[Rejected]:
        """Reject (``"queue_timeout"``) every request waiting ``queue_timeout`` or longer,
        oldest first. Nothing when ``queue_timeout`` is ``None``."""
        limit = self.limits.queue_timeout
        if limit is None:
            return []
        expired: list[tuple[int, RequestRef]] = []
        for host in self._hosts.values():
            expired += [
                (w.arrival, ref) for ref, w in host.waiting.items() if w.queued_at + limit <= now
            ]
        expired.sort(key=lambda item: item[0])
        for _, ref in expired:
            self.cancel(ref)
        return [Rejected(ref, "queue_timeout") for _, ref in expired]

    # --- connection events --------------------------------------------------------

    def connected(self, conn: int, now: float) -> list[UseConnection | OpenConnection]:
        """The connection ``conn`` is ready (TCP/TLS done); waiters take its slots. If
        none is left to take them, it is idle from ``now``."""
        connection = self._connection(conn)
        if not connection.connecting:
            raise ValueError(f"connection {conn} is not connecting")
        connection.connecting = False
        connection.idle_since = now
        self._mark_recent(connection)
        return self._dispatch(connection.endpoint)

    def connect_failed(self, conn: int) -> list[Rejected]:
        """Opening ``conn`` failed. Waiters for its endpoint that other connection
        attempts will not serve are rejected (``"connect_failed"``), newest first in
        line to lose; the oldest keep their place."""
        connection = self._connection(conn)
        if not connection.connecting:
            raise ValueError(f"connection {conn} is not connecting")
        return self._remove_connecting(connection)

    def released(
        self, conn: int, reusable: bool, now: float
    ) -> list[UseConnection | OpenConnection]:
        """A request on ``conn`` finished. ``reusable=False`` means the connection takes
        no new requests (``Connection: close``, HTTP/2 GOAWAY, a broken response): it is
        forgotten once its last request ends, and the engine closes it. Returns what the
        freed slot (or the room for a new connection) lets the oldest waiters do."""
        connection = self._connection(conn)
        if connection.connecting or connection.active == 0:
            raise ValueError(f"connection {conn} carries no request")
        connection.active -= 1
        if not reusable:
            connection.draining = True
        if connection.draining and connection.active == 0:
            self._remove(connection)
        elif connection.active == 0:
            connection.idle_since = now
            self._mark_recent(connection)
        return self._dispatch(connection.endpoint)

    def closed(self, conn: int) -> list[Decision]:
        """The connection ``conn`` is gone (peer closed, I/O error, or the engine closed
        it). Requests still on it are the engine's to fail. A connection still
        connecting counts as a failed attempt. Unknown ids are ignored."""
        endpoint = self._connection_host.get(conn)
        if endpoint is None:
            return []
        connection = self._hosts[endpoint].connections[conn]
        if connection.connecting:
            return list(self._remove_connecting(connection))
        self._remove(connection)
        return list(self._dispatch(endpoint))

    def settings(
        self, conn: int, max_concurrent_streams: int
    ) -> list[UseConnection | OpenConnection]:
        """The HTTP/2 peer announced ``max_concurrent_streams`` for ``conn``. A larger
        limit lets waiters in; a smaller one stops new streams until enough end."""
        if self.protocol != "http2":
            raise ValueError("SETTINGS only apply to an HTTP/2 pool")
        if max_concurrent_streams < 0:
            raise ValueError("max_concurrent_streams must be >= 0")
        connection = self._connection(conn)
        connection.max_streams = max_concurrent_streams
        return self._dispatch(connection.endpoint)

    def expire_idle(self, now: float) -> list[int]:
        """Forget and return (for the engine to close) every connection idle for
        ``idle_timeout`` or longer. A connection whose endpoint has waiters is kept:
        only a zero ``max_concurrent_streams`` can leave it idle then."""
        timeout = self.limits.idle_timeout
        if timeout is None:
            return []
        expired = [
            connection
            for host in self._hosts.values()
            if not host.waiting
            for connection in host.connections.values()
            if connection.state == "idle" and connection.idle_since + timeout <= now
        ]
        for connection in expired:
            self._remove(connection)
        return sorted(connection.id for connection in expired)

    # --- introspection ------------------------------------------------------------

    def next_deadline(self) -> float | None:
        """The earliest time at which ``queue_timeouts`` or ``expire_idle`` would do
        something, for the engine's timer; ``None`` when nothing is due ever."""
        deadlines: list[float] = []
        for host in self._hosts.values():
            if self.limits.queue_timeout is not None and host.waiting:
                first = next(iter(host.waiting.values()))
                deadlines.append(first.queued_at + self.limits.queue_timeout)
            if self.limits.idle_timeout is not None and not host.waiting:
                deadlines += [
                    c.idle_since + self.limits.idle_timeout
                    for c in host.connections.values()
                    if c.state == "idle"
                ]
        return min(deadlines, default=None)

    def pending_requests(self) -> tuple[RequestRef, ...]:
        """Every waiting request, in arrival order."""
        waiting = [(w.arrival, ref) for h in self._hosts.values() for ref, w in h.waiting.items()]
        return tuple(ref for _, ref in sorted(waiting, key=lambda item: item[0]))

    def connection_info(self, conn: int) -> ConnectionInfo | None:
        """A snapshot of ``conn``, or ``None`` if the pool does not know it (any more)."""
        endpoint = self._connection_host.get(conn)
        if endpoint is None:
            return None
        c = self._hosts[endpoint].connections[conn]
        return ConnectionInfo(c.id, c.endpoint, c.state, c.active, c.max_streams)

    def connections(self) -> list[ConnectionInfo]:
        """Snapshots of every connection, by id."""
        return [
            info
            for conn in sorted(self._connection_host)
            if (info := self.connection_info(conn)) is not None
        ]

    def statistics(self) -> PoolStatistics:
        """Counts per connection state, requests in flight, and waiting requests."""
        counts = {"connecting": 0, "idle": 0, "busy": 0, "draining": 0}
        active = 0
        for host in self._hosts.values():
            for connection in host.connections.values():
                counts[connection.state] += 1
                active += connection.active
        return PoolStatistics(
            connecting=counts["connecting"],
            idle=counts["idle"],
            busy=counts["busy"],
            draining=counts["draining"],
            active_requests=active,
            pending=len(self._waiter_host),
        )

    # --- internals ----------------------------------------------------------------

    def _connection(self, conn: int) -> _Connection:
        endpoint = self._connection_host.get(conn)
        if endpoint is None:
            raise ValueError(f"unknown connection {conn}")
        return self._hosts[endpoint].connections[conn]

    def _mark_recent(self, connection: _Connection) -> None:
        self._next_recency += 1
        connection.recency = self._next_recency

    def _free_connection(self, host: _Host) -> _Connection | None:
        """The most recently ready connection with a free slot (LIFO, so the least
        recently used ones stay idle and age out)."""
        free = [c for c in host.connections.values() if c.free_slots > 0]
        return max(free, key=lambda c: c.recency, default=None)

    def _connecting_capacity(self, host: _Host) -> int:
        return sum(c.max_streams for c in host.connections.values() if c.connecting)

    def _dispatch(self, endpoint: Endpoint) -> list[UseConnection | OpenConnection]:
        """Restore the invariants for ``endpoint``: hand free slots to the oldest
        waiters, then open connections for waiters nothing in progress will serve."""
        host = self._hosts[endpoint]
        decisions: list[UseConnection | OpenConnection] = []
        while host.waiting and (connection := self._free_connection(host)) is not None:
            ref, _ = host.waiting.popitem(last=False)
            del self._waiter_host[ref]
            connection.active += 1
            decisions.append(UseConnection(connection.id, ref))
        uncovered = len(host.waiting) - self._connecting_capacity(host)
        while uncovered > 0 and len(host.connections) < self.limits.max_connections_per_host:
            # The oldest waiter not yet covered by a connection attempt.
            ref = list(host.waiting)[len(host.waiting) - uncovered]
            connection = self._open(endpoint)
            decisions.append(OpenConnection(connection.id, endpoint, ref))
            uncovered -= connection.max_streams
        self._forget_if_empty(endpoint)
        return decisions

    def _open(self, endpoint: Endpoint) -> _Connection:
        streams = 1 if self.protocol == "http1" else self.limits.assumed_max_concurrent_streams
        connection = _Connection(self._next_conn, endpoint, max_streams=streams)
        self._next_conn += 1
        self._hosts[endpoint].connections[connection.id] = connection
        self._connection_host[connection.id] = endpoint
        return connection

    def _remove(self, connection: _Connection) -> None:
        del self._hosts[connection.endpoint].connections[connection.id]
        del self._connection_host[connection.id]

    def _remove_connecting(self, connection: _Connection) -> list[Rejected]:
        endpoint = connection.endpoint
        self._remove(connection)
        host = self._hosts[endpoint]
        keep = self._connecting_capacity(host)
        losers = list(host.waiting)[keep:]
        for ref in losers:
            self.cancel(ref)
        self._forget_if_empty(endpoint)
        return [Rejected(ref, "connect_failed") for ref in losers]

    def _forget_if_empty(self, endpoint: Endpoint) -> None:
        """Drop an endpoint's books once it has neither connections nor waiters, so the
        pool's memory is bounded by the endpoints in use."""
        host = self._hosts.get(endpoint)
        if host is not None and not host.connections and not host.waiting:
            del self._hosts[endpoint]
