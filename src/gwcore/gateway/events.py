"""What the outside world tells the engine: the closed set of input events.

Adapters create these from socket and timer activity and pass them to
:meth:`gwcore.gateway.Gateway.handle` with the current time. Connection ids come
from :meth:`Gateway.new_connection_id` (downstream) or from an
:class:`~gwcore.gateway.actions.OpenUpstream` action (upstream): one namespace.
"""

from __future__ import annotations

from dataclasses import dataclass

from gwcore.gateway.actions import TimerRef


@dataclass(frozen=True, slots=True)
class ClientConnected:
    """A client connected to ``listener`` (its config name) from ``peer`` (ip, port)."""

    conn: int
    listener: str
    peer: tuple[str, int]
    tls: bool = False
    alpn: str | None = None


@dataclass(frozen=True, slots=True)
class BytesReceived:
    """Bytes arrived on a client or upstream connection."""

    conn: int
    data: bytes


@dataclass(frozen=True, slots=True)
class EofReceived:
    """The peer closed its sending side (a clean TCP FIN)."""

    conn: int


@dataclass(frozen=True, slots=True)
class ConnectionLost:
    """The connection failed (reset, write error); nothing more can be sent on it."""

    conn: int
    reason: str


@dataclass(frozen=True, slots=True)
class UpstreamConnected:
    """The connection requested by ``OpenUpstream(conn, ...)`` is established."""

    conn: int


@dataclass(frozen=True, slots=True)
class UpstreamConnectFailed:
    """The connection requested by ``OpenUpstream(conn, ...)`` could not be made."""

    conn: int
    reason: str


@dataclass(frozen=True, slots=True)
class TimerFired:
    """The timer started by ``StartTimer(ref, at)`` is due (and was not cancelled)."""

    ref: TimerRef


@dataclass(frozen=True, slots=True)
class WritesBlocked:
    """Bytes queued for ``conn`` passed the adapter's high-water mark: stop producing."""

    conn: int


@dataclass(frozen=True, slots=True)
class WritesDrained:
    """Bytes queued for ``conn`` fell below the low-water mark: producing may resume."""

    conn: int


@dataclass(frozen=True, slots=True)
class DrainStarted:
    """The gateway is shutting down gracefully: the adapter stopped accepting. Idle
    client connections close now; busy ones close after their exchange (HTTP/1.1
    responses carry ``Connection: close``, HTTP/2 clients get GOAWAY)."""


@dataclass(frozen=True, slots=True)
class JwksFetched:
    """The answer to ``FetchJwks(ref)``: the HTTP status and body of the response."""

    ref: str
    status: int
    body: bytes


@dataclass(frozen=True, slots=True)
class JwksFetchFailed:
    """``FetchJwks(ref)`` failed: no connection, TLS error, timeout, or a body too big."""

    ref: str
    reason: str


Event = (
    ClientConnected
    | BytesReceived
    | EofReceived
    | ConnectionLost
    | UpstreamConnected
    | UpstreamConnectFailed
    | TimerFired
    | WritesBlocked
    | WritesDrained
    | DrainStarted
    | JwksFetched
    | JwksFetchFailed
)
