"""The proxy engine: events in, actions out, no I/O.

``Gateway.handle(event, now)`` ties the layers together for every connection:

    client bytes --codec--> RequestHead --router--> decision
        local answer (404, direct response, redirect)  -> response bytes to the client
        forward -> cluster (weighted pick) -> endpoint (balancer) -> pool decision
            UseConnection  -> request bytes to an upstream connection
            OpenConnection -> OpenUpstream + connect timer; request sent once connected
            Rejected       -> 503
    upstream bytes --codec--> ResponseHead/Data/End -> response bytes to the client

One exchange (request + response) is in flight per HTTP/1.1 client connection;
pipelined requests wait inside the codec until the response is complete. Timers:
``idle`` (a client connection waiting for a request), ``header`` (a request head
being received), ``connect`` (an upstream connection being made), ``route`` (the
route timeout, from the end of the request), ``pool`` (idle upstream expiry).

Never raises on bad input: every protocol problem becomes a response (or a closed
connection) and an access log record with a response flag like Envoy's:
``NR`` no route, ``UF`` upstream connection failure, ``UO`` upstream overflow,
``UT`` upstream request timeout, ``UC`` upstream connection termination,
``UPE`` upstream protocol error, ``DPE`` downstream protocol error, ``DC``
downstream connection termination, ``RT`` request header timeout.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol, cast

from gwcore.config import model as m
from gwcore.gateway.actions import (
    Action,
    CancelTimer,
    CloseConnection,
    FetchJwks,
    Log,
    OpenUpstream,
    PauseReading,
    ResumeReading,
    SendBytes,
    StartTimer,
    TimerRef,
)
from gwcore.gateway.events import (
    BytesReceived,
    ClientConnected,
    ConnectionLost,
    DrainStarted,
    EofReceived,
    Event,
    JwksFetched,
    JwksFetchFailed,
    TimerFired,
    UpstreamConnected,
    UpstreamConnectFailed,
    WritesBlocked,
    WritesDrained,
)
from gwcore.gateway.guard import Allowed, AuthState, Guard, Rejection
from gwcore.gateway.headers import (
    downstream_response_headers,
    host_header_value,
    local_answer,
    redirect_location,
    request_id_for,
    rewrite_path,
    upstream_request_headers,
)
from gwcore.policy.jwt import KeysNeeded
from gwcore.policy.transforms import TemplateContext
from gwcore.protocol.http1 import Http1ClientCodec, Http1ServerCodec
from gwcore.protocol.http2 import (
    ConnectionTerminated,
    GoAwayReceived,
    H2ClientEvent,
    H2ServerEvent,
    Http2ClientCodec,
    Http2ServerCodec,
    StreamReset,
    WindowOpened,
    h2c_upgrade_settings,
    looks_like_h2_preface,
)
from gwcore.protocol.http2_frames import ErrorCode
from gwcore.protocol.messages import (
    Data,
    EndOfMessage,
    Headers,
    NoBody,
    ProtocolError,
    RequestHead,
    RequestMessage,
    ResponseHead,
    ResponseMessage,
    header_values,
)
from gwcore.routing import (
    Decision,
    Matched,
    NeedBody,
    NeedClaims,
    NoRoute,
    RouteRequest,
    RouteTable,
)
from gwcore.upstream import (
    Balancer,
    ConnectionPool,
    OpenConnection,
    PickContext,
    PoolLimits,
    Queued,
    Rejected,
    UseConnection,
    make_balancer,
)
from gwcore.upstream.pool import Decision as PoolDecision

# Request body bytes held for an exchange while its upstream connection is not ready;
# past this the client is paused.
_PENDING_BODY_LIMIT = 256 * 1024
# Response bytes held for an HTTP/2 stream whose flow-control window is closed; past
# this the upstream feeding it is paused, below the low mark it resumes.
_H2_PENDING_HIGH = 256 * 1024
_H2_PENDING_LOW = 64 * 1024


class Entropy(Protocol):
    """The randomness the engine consumes, supplied by the caller (e.g. ``random.Random``)."""

    def random(self) -> float:
        """A uniform draw in [0, 1)."""
        ...

    def getrandbits(self, k: int, /) -> int:
        """An integer of ``k`` random bits."""
        ...


@dataclass(eq=False)
class _Client:
    """A downstream connection: HTTP/1.1 (one exchange at a time) or HTTP/2 (streams).

    ``protocol`` starts as ``detect`` on a listener that accepts both HTTP/1.1 and
    h2c: the first bytes tell whether the client sent the HTTP/2 preface.
    """

    conn: int
    peer: tuple[str, int]
    tls: bool
    limits: m.ListenerLimits
    codec: Http1ServerCodec
    protocol: str = "http1"  # "detect" | "http1" | "h2"
    allow_h2c: bool = False
    h2: Http2ServerCodec | None = None
    streams: dict[int, _Exchange] = field(default_factory=dict)
    preface: bytes = b""
    exchange: _Exchange | None = None
    closed: bool = False
    awaiting_head: bool = True


@dataclass(eq=False)
class _Upstream:
    """An upstream connection: HTTP/1.1 (``exchange``) or HTTP/2 (``h2`` + ``streams``)."""

    conn: int
    cluster: str
    pool_conn: int
    endpoint: m.Endpoint
    codec: Http1ClientCodec
    h2: Http2ClientCodec | None = None
    streams: dict[int, _Exchange] = field(default_factory=dict)
    streams_limit: int | None = None  # the peer's MAX_CONCURRENT_STREAMS, once known
    draining: bool = False  # the peer sent GOAWAY: finish the streams, open none
    connected: bool = False
    exchange: _Exchange | None = None
    # Why reading is paused: "writes" (the client's outgoing queue is full) and/or
    # "window" (an HTTP/2 client's flow-control window holds our bytes back).
    paused_for: set[str] = field(default_factory=set)


@dataclass(eq=False)
class _Exchange:
    id: int
    client: _Client
    head: RequestHead
    started: float
    request_id: str
    route: m.Route | None = None
    vhost: m.VirtualHost | None = None
    decision: Decision | None = None  # routing so far (NeedClaims/NeedBody: not done)
    auth: AuthState | None = None  # policy's view of the request (None: rejected early)
    allowed: Allowed | None = None  # what policy granted (claims, rate-limit headers)
    waiting_keys: str | None = None  # parked until this JWT provider's keys arrive
    cluster: str | None = None
    endpoint: m.Endpoint | None = None
    upstream: _Upstream | None = None
    pending: list[bytes] = field(default_factory=list)
    pending_bytes: int = 0
    request_trailers: Headers | None = None  # set once the client's request is complete
    routing_body: list[bytes] | None = None  # body collected for a NeedBody decision
    needs_body: NeedBody | None = None
    response_started: bool = False
    status: int | None = None
    flags: str = "-"
    bytes_in: int = 0  # request body bytes received (as Envoy's BYTES_RECEIVED)
    bytes_out: int = 0  # response body bytes sent (as Envoy's BYTES_SENT)
    client_paused: bool = False
    finished: bool = False
    upstream_address: str | None = None
    stream_id: int | None = None  # HTTP/2 downstream stream
    h2_pending: bytearray = field(default_factory=bytearray)  # awaiting window
    h2_end: Headers | None = None  # trailers to send once h2_pending is flushed
    h2_end_sent: bool = False
    upstream_sid: int | None = None  # HTTP/2 upstream stream
    up_pending: bytearray = field(default_factory=bytearray)  # request bytes awaiting window
    up_end: Headers | None = None
    up_end_sent: bool = False


@dataclass(eq=False)
class _ClusterState:
    cluster: m.Cluster
    balancer: Balancer
    pool: ConnectionPool
    upstreams: dict[int, _Upstream] = field(default_factory=dict)  # by pool conn id


class Gateway:
    """The whole proxy as a pure state machine.

    ``handle(event, now)`` returns the actions to carry out, in order. ``now`` is a
    monotonic time in seconds (the adapter's clock); ``entropy`` supplies request ids,
    weighted-cluster and load-balancing draws. Bad input from a client or upstream
    never raises: it becomes a response, a closed connection and a log record.
    """

    def __init__(self, config: m.GatewayConfig, *, entropy: Entropy) -> None:
        self.config = config
        self.table = RouteTable(config)
        self._entropy = entropy
        self._listeners: Mapping[str, m.Listener] = {ln.name: ln for ln in config.listeners}
        self._clusters = {
            name: _ClusterState(
                cluster,
                make_balancer(cluster),
                ConnectionPool.for_cluster(
                    cluster,
                    PoolLimits(
                        max_pending=cluster.max_pending_requests,
                        idle_timeout=cluster.idle_timeout,
                    ),
                ),
            )
            for name, cluster in config.clusters.items()
        }
        self.guard = Guard(config)
        self._jwks_waiters: dict[str, list[_Exchange]] = {}
        self._clients: dict[int, _Client] = {}
        self._upstreams: dict[int, _Upstream] = {}
        self._exchanges: dict[int, _Exchange] = {}
        self._timers: set[TimerRef] = set()
        self._draining = False
        self._next_conn = 1
        self._next_exchange = 1
        self._out: list[Action] = []
        self._now = 0.0
        self._wall_offset = 0.0
        self._prefetched = False

    # ------------------------------------------------------------------ public

    def new_connection_id(self) -> int:
        """An id for a newly accepted client connection (unique among all connections)."""
        conn = self._next_conn
        self._next_conn += 1
        return conn

    @property
    def active_exchanges(self) -> int:
        """Requests in flight (for graceful drain)."""
        return len(self._exchanges)

    def handle(self, event: Event, now: float, wall: float | None = None) -> list[Action]:
        """Process one event; return the actions to carry out, in order.

        ``now`` is the monotonic clock every timer uses. ``wall`` is the current Unix
        time, used only to check JWT ``exp``/``nbf``/``iat``; when omitted, the last
        known offset between the two clocks is reused (zero until one is given).
        """
        self._now = now
        if wall is not None:
            self._wall_offset = wall - now
        self._out = []
        match event:
            case ClientConnected():
                self._client_connected(event)
            case BytesReceived(conn=conn, data=data):
                if conn in self._clients:
                    self._client_bytes(self._clients[conn], data)
                elif conn in self._upstreams:
                    self._upstream_bytes(self._upstreams[conn], data)
            case EofReceived(conn=conn):
                if conn in self._clients:
                    self._client_bytes(self._clients[conn], b"")
                elif conn in self._upstreams:
                    self._upstream_bytes(self._upstreams[conn], b"")
            case ConnectionLost(conn=conn):
                if conn in self._clients:
                    self._client_lost(self._clients[conn])
                elif conn in self._upstreams:
                    self._upstream_lost(self._upstreams[conn], "UC")
            case UpstreamConnected(conn=conn):
                # Answers about a connection that is no longer connecting are stale.
                if conn in self._upstreams and not self._upstreams[conn].connected:
                    self._upstream_connected(self._upstreams[conn])
            case UpstreamConnectFailed(conn=conn, reason=reason):
                if conn in self._upstreams and not self._upstreams[conn].connected:
                    self._upstream_connect_failed(self._upstreams[conn], reason)
            case TimerFired(ref=ref):
                self._timer(ref)
            case WritesBlocked(conn=conn):
                self._backpressure(conn, blocked=True)
            case WritesDrained(conn=conn):
                self._backpressure(conn, blocked=False)
            case DrainStarted():
                self._drain()
            case JwksFetched(ref=ref, status=status, body=body):
                auth = self.guard.authenticators.get(ref)
                if auth is not None and auth.fetching:
                    auth.fetch_succeeded(status, body, self._wall())
                    if auth.fetching is False and status != 200:
                        self._log_event("jwks_fetch_failed", provider=ref, status=status)
                    self._jwks_done(ref)
            case JwksFetchFailed(ref=ref, reason=reason):
                auth = self.guard.authenticators.get(ref)
                if auth is not None and auth.fetching:
                    auth.fetch_failed(reason, self._wall())
                    self._log_event("jwks_fetch_failed", provider=ref, reason=reason)
                    self._jwks_done(ref)
        out, self._out = self._out, []
        return out

    # ----------------------------------------------------------------- clients

    def _client_connected(self, event: ClientConnected) -> None:
        if not self._prefetched:
            # Remote JWKS are fetched ahead of the first request that needs them.
            self._prefetched = True
            for name in self.guard.authenticators:
                self._offer_fetch(name)
        listener = self._listeners.get(event.listener)
        limits = listener.limits if listener else m.ListenerLimits()
        codec = Http1ServerCodec(
            max_header_bytes=limits.max_header_bytes, max_body_bytes=limits.max_body_bytes
        )
        client = _Client(event.conn, event.peer, event.tls, limits, codec)
        protocols = listener.protocols if listener else ("http1", "h2c")
        self._clients[event.conn] = client
        if event.alpn == "h2":
            self._become_h2(client, Http2ServerCodec(**self._h2_limits(limits)))
            assert client.h2 is not None
            self._send(client.conn, client.h2.initiate())
        elif "h2c" in protocols:
            client.protocol = "detect" if "http1" in protocols else "h2-only"
            client.allow_h2c = True
        self._arm_idle(client)

    @staticmethod
    def _h2_limits(limits: m.ListenerLimits) -> dict[str, int]:
        return {
            "max_header_bytes": limits.max_header_bytes,
            "max_body_bytes": limits.max_body_bytes,
        }

    def _become_h2(self, client: _Client, codec: Http2ServerCodec) -> None:
        client.protocol = "h2"
        client.h2 = codec
        self._cancel_timer(TimerRef("header", client.conn))

    def _arm_idle(self, client: _Client) -> None:
        client.awaiting_head = True
        self._cancel_timer(TimerRef("header", client.conn))
        self._start_timer(TimerRef("idle", client.conn), self._now + client.limits.idle_timeout)

    def _client_bytes(self, client: _Client, data: bytes) -> None:
        if client.closed:
            return
        if client.protocol in ("detect", "h2-only"):
            if not data:
                self._close_client(client)
                return
            client.preface += data
            verdict = looks_like_h2_preface(client.preface)
            if verdict is None:
                return
            data, client.preface = client.preface, b""
            if verdict:
                self._become_h2(
                    client, Http2ServerCodec.from_prior_knowledge(**self._h2_limits(client.limits))
                )
            elif client.protocol == "h2-only":
                self._close_client(client)
                return
            else:
                client.protocol = "http1"
        if client.h2 is not None:
            self._h2_client_bytes(client, data)
            return
        messages = client.codec.receive(data)
        self._client_messages(client, messages)
        if client.closed:
            return
        if client.awaiting_head and client.codec.buffered_bytes and client.exchange is None:
            # A head has started to arrive: the idle timer gives way to the header timer.
            client.awaiting_head = False
            self._cancel_timer(TimerRef("idle", client.conn))
            header_deadline = self._now + client.limits.header_timeout
            self._start_timer(TimerRef("header", client.conn), header_deadline)
        if not data and client.exchange is None and not client.closed:
            self._close_client(client)

    def _client_messages(self, client: _Client, messages: list[RequestMessage]) -> None:
        for message in messages:
            if client.closed or client.h2 is not None:
                return
            match message:
                case RequestHead():
                    self._request_head(client, message)
                case Data(data=data):
                    if client.exchange is not None:
                        self._request_data(client.exchange, data)
                case EndOfMessage(trailers=trailers):
                    if client.exchange is not None:
                        self._request_end(client.exchange, trailers)
                case ProtocolError(status=status, reason=reason):
                    self._client_protocol_error(client, status, reason)

    def _drain(self) -> None:
        """Graceful shutdown: close idle clients now, the others after their exchanges."""
        self._draining = True
        for client in list(self._clients.values()):
            if client.h2 is not None:
                client.h2.goaway()
                self._flush_h2(client)
                self._h2_idle_check(client, closing=not client.streams)
            elif client.exchange is None:
                self._close_client(client)

    # ------------------------------------------------------------------ HTTP/2

    def _h2c_upgrade(self, client: _Client, head: RequestHead, settings: str) -> None:
        """Switch an HTTP/1.1 connection to h2c; the upgrading request is stream 1."""
        codec = Http2ServerCodec(**self._h2_limits(client.limits))
        try:
            events = codec.initiate_upgrade(settings, head)
        except ValueError as error:
            self._log_event("h2c_upgrade_refused", conn=client.conn, reason=str(error))
            exchange = self._new_exchange(client, head)
            self._local_response(exchange, 400, "invalid HTTP2-Settings\n", flags="DPE")
            return
        rest = client.codec.detach()
        self._become_h2(client, codec)
        self._h2_events(client, list(events))
        if rest and not client.closed:
            self._h2_client_bytes(client, rest)
        else:
            self._flush_h2(client)

    def _h2_client_bytes(self, client: _Client, data: bytes) -> None:
        assert client.h2 is not None
        events = client.h2.receive(data)
        self._h2_events(client, events)
        if not client.closed:
            self._flush_h2(client)
            if not data:
                self._close_client(client)

    def _h2_events(self, client: _Client, events: list[tuple[int, H2ServerEvent]]) -> None:
        codec = client.h2
        assert codec is not None
        for stream_id, event in events:
            if client.closed:
                return
            exchange = client.streams.get(stream_id)
            match event:
                case RequestHead():
                    self._request_head(client, event, stream_id)
                case Data(data=data):
                    if exchange is not None:
                        self._request_data(exchange, data)
                    codec.consumed(stream_id, len(data))
                case EndOfMessage(trailers=trailers):
                    if exchange is not None:
                        self._request_end(exchange, trailers)
                case ProtocolError(status=status, reason=reason):
                    self._log_event(
                        "downstream_protocol_error", conn=client.conn, status=status, reason=reason
                    )
                    if exchange is None:
                        head = RequestHead("-", "-", (), "2", NoBody())
                        exchange = self._new_exchange(client, head, stream_id)
                    self._release_upstream(exchange, reusable=False)
                    self._local_response(exchange, status, reason + "\n", flags="DPE")
                case StreamReset():
                    if exchange is not None:
                        client.streams.pop(stream_id, None)
                        exchange.flags = "DC"
                        self._release_upstream(exchange, reusable=False)
                        self._finish_exchange(exchange, log=True)
                case WindowOpened():
                    targets = list(client.streams.values()) if stream_id == 0 else [exchange]
                    for target in targets:
                        if target is not None:
                            self._h2_pump(target)
                case GoAwayReceived():
                    self._h2_idle_check(client, closing=True)
                case ConnectionTerminated():
                    self._flush_h2(client)
                    for orphan in list(client.streams.values()):
                        orphan.flags = "DC"
                        self._release_upstream(orphan, reusable=False)
                        self._finish_exchange(orphan, log=True)
                    client.streams.clear()
                    self._close_client(client)
                    return
        self._h2_idle_check(client)

    def _flush_h2(self, client: _Client) -> None:
        if client.h2 is not None and not client.closed:
            self._send(client.conn, client.h2.bytes_to_send())

    def _h2_pump(self, exchange: _Exchange) -> None:
        """Send what the stream's window allows of the held response bytes."""
        client = exchange.client
        codec = client.h2
        sid = exchange.stream_id
        if codec is None or sid is None or client.closed or sid not in client.streams:
            return
        pending = exchange.h2_pending
        if pending:
            accepted = codec.send_data(sid, bytes(pending))
            exchange.bytes_out += accepted
            del pending[:accepted]
        if not pending and exchange.h2_end is not None and not exchange.h2_end_sent:
            codec.send_end(sid, exchange.h2_end)
            exchange.h2_end_sent = True
        self._flush_h2(client)
        upstream = exchange.upstream
        if upstream is not None:
            if len(pending) > _H2_PENDING_HIGH:
                self._pause_upstream(upstream, "window")
            elif len(pending) < _H2_PENDING_LOW:
                self._resume_upstream(upstream, "window")
        if exchange.h2_end_sent:
            self._h2_maybe_complete(exchange)

    def _h2_maybe_complete(self, exchange: _Exchange) -> None:
        client = exchange.client
        if not exchange.finished or not exchange.h2_end_sent:
            return
        if exchange.stream_id is not None:
            client.streams.pop(exchange.stream_id, None)
        if exchange.id in self._exchanges:
            self._finish_exchange(exchange, log=True)
        self._h2_idle_check(client)

    def _h2_idle_check(self, client: _Client, closing: bool = False) -> None:
        """Arm the idle timer when no stream is open; close after a GOAWAY or a
        terminated codec once the last stream is done."""
        if client.closed or client.h2 is None or client.streams:
            return
        if closing or client.h2.terminated:
            self._flush_h2(client)
            self._close_client(client)
            return
        self._arm_idle(client)

    # --------------------------------------------------------------- responding

    def _respond_head(self, exchange: _Exchange, head: ResponseHead) -> None:
        client = exchange.client
        if client.h2 is not None and exchange.stream_id is not None:
            if exchange.stream_id in client.streams and not client.closed:
                client.h2.send_response_head(exchange.stream_id, replace(head, http_version="2"))
                if isinstance(head.body, NoBody):
                    exchange.h2_end_sent = True
                self._flush_h2(client)
            return
        if self._draining:
            head = replace(head, headers=(*head.headers, ("connection", "close")))
        self._send_client(exchange, client.codec.send_response_head(head))

    def _respond_data(self, exchange: _Exchange, data: bytes) -> None:
        if exchange.stream_id is not None:
            exchange.h2_pending += data
            self._h2_pump(exchange)
            return
        exchange.bytes_out += len(data)
        self._send_client(exchange, exchange.client.codec.send_data(data))

    def _respond_end(self, exchange: _Exchange, trailers: Headers) -> None:
        if exchange.stream_id is not None:
            if not exchange.h2_end_sent:
                exchange.h2_end = trailers
                self._h2_pump(exchange)
            return
        self._send_client(exchange, exchange.client.codec.send_end(trailers))

    # -------------------------------------------------------------- HTTP/1.1 errors

    def _client_protocol_error(self, client: _Client, status: int, reason: str) -> None:
        exchange = client.exchange
        self._log_event("downstream_protocol_error", conn=client.conn, status=status, reason=reason)
        if exchange is not None and exchange.response_started:
            self._abort_exchange(exchange, "DPE")
            return
        if exchange is None:
            exchange = self._new_exchange(client, RequestHead("-", "-", (), "1.1", NoBody()))
        self._release_upstream(exchange, reusable=False)
        self._local_response(exchange, status, reason + "\n", flags="DPE")

    def _client_lost(self, client: _Client) -> None:
        exchanges = [client.exchange, *client.streams.values()]
        client.streams.clear()
        for exchange in exchanges:
            if exchange is not None and exchange.id in self._exchanges:
                exchange.flags = "DC"
                self._release_upstream(exchange, reusable=False)
                self._finish_exchange(exchange, log=True)
        self._forget_client(client)

    def _close_client(self, client: _Client, abort: bool = False) -> None:
        if not client.closed:
            self._out.append(CloseConnection(client.conn, abort))
        self._forget_client(client)

    def _forget_client(self, client: _Client) -> None:
        client.closed = True
        self._clients.pop(client.conn, None)
        self._cancel_timer(TimerRef("idle", client.conn))
        self._cancel_timer(TimerRef("header", client.conn))

    # --------------------------------------------------------------- requests

    def _new_exchange(
        self, client: _Client, head: RequestHead, stream_id: int | None = None
    ) -> _Exchange:
        request_id = request_id_for(head.headers, self._entropy.getrandbits)
        exchange = _Exchange(self._next_exchange, client, head, self._now, request_id)
        self._next_exchange += 1
        self._exchanges[exchange.id] = exchange
        if stream_id is None:
            client.exchange = exchange
        else:
            exchange.stream_id = stream_id
            client.streams[stream_id] = exchange
        return exchange

    def _request_head(
        self, client: _Client, head: RequestHead, stream_id: int | None = None
    ) -> None:
        self._cancel_timer(TimerRef("idle", client.conn))
        self._cancel_timer(TimerRef("header", client.conn))
        client.awaiting_head = False
        if stream_id is None and client.allow_h2c:
            settings = h2c_upgrade_settings(head)
            if settings is not None:
                self._h2c_upgrade(client, head, settings)
                return
        exchange = self._new_exchange(client, head, stream_id)
        prepared = self.guard.prepare(head, client.peer[0])
        if isinstance(prepared, Rejection):
            self._reject(exchange, prepared)
            return
        exchange.auth = prepared
        head = exchange.head = prepared.head
        scheme = "https" if client.tls else "http"
        if client.h2 is not None and stream_id is not None:
            scheme = client.h2.scheme_of(stream_id) or scheme
        request = RouteRequest(
            head.method,
            head.target,
            host_header_value(head.headers),
            head.headers,
            claims=None,
            scheme=scheme,
        )
        exchange.decision = self.table.match(request)
        self._advance(exchange)

    def _wall(self) -> float:
        return self._now + self._wall_offset

    def _advance(self, exchange: _Exchange) -> None:
        """Carry routing and policy as far as they go: to a decision, or until the
        body (GraphQL routing) or a JWT provider's keys arrive."""
        auth = exchange.auth
        assert auth is not None
        decision = exchange.decision
        while isinstance(decision, NeedClaims):
            claims = self.guard.routing_claims(auth, self._wall())
            self._offer_fetches(auth)
            if isinstance(claims, KeysNeeded):
                self._park(exchange, claims.provider)
                return
            decision = exchange.decision = decision.with_claims(claims)
        if isinstance(decision, NeedBody):
            if exchange.routing_body is None:
                exchange.needs_body = decision
                exchange.routing_body = []
            return
        assert decision is not None
        route = decision.route if isinstance(decision, Matched) else None
        verdict = self.guard.enforce(auth, route, self._now, self._wall())
        self._offer_fetches(auth)
        if isinstance(verdict, KeysNeeded):
            self._park(exchange, verdict.provider)
            return
        if isinstance(verdict, Rejection):
            exchange.route = route
            self._reject(exchange, verdict)
            return
        exchange.allowed = verdict
        self._routed(exchange, decision)
        if exchange.request_trailers is not None and not exchange.finished:
            self._start_route_timer(exchange)

    # ------------------------------------------------------------------ JWKS

    def _offer_fetches(self, auth: AuthState) -> None:
        """Start the JWKS fetches the providers this request touched now want
        (first keys, a refetch for an unknown kid, or a background refresh)."""
        for name in auth.touched:
            self._offer_fetch(name)
        auth.touched.clear()

    def _offer_fetch(self, name: str) -> None:
        authenticator = self.guard.authenticators[name]
        url = authenticator.take_fetch(self._wall())
        if url is not None:
            jwks = authenticator.provider.jwks
            self._out.append(FetchJwks(name, url, jwks.timeout))
            # Our own bound, in case the adapter never answers.
            self._start_timer(TimerRef("jwks", name), self._now + jwks.timeout + 1.0)

    def _park(self, exchange: _Exchange, provider: str) -> None:
        exchange.waiting_keys = provider
        self._jwks_waiters.setdefault(provider, []).append(exchange)

    def _jwks_done(self, provider: str) -> None:
        """A fetch for ``provider`` ended: every request waiting on it continues."""
        self._cancel_timer(TimerRef("jwks", provider))
        for exchange in self._jwks_waiters.pop(provider, []):
            if exchange.waiting_keys == provider and not exchange.finished:
                exchange.waiting_keys = None
                if exchange.id in self._exchanges:
                    self._advance(exchange)

    # ---------------------------------------------------------------- routed

    def _template_context(self, exchange: _Exchange) -> TemplateContext:
        assert exchange.auth is not None  # only routed requests are transformed
        return self.guard.template_context(
            exchange.auth, exchange.request_id, exchange.route, exchange.allowed
        )

    def _reject(self, exchange: _Exchange, rejection: Rejection) -> None:
        self._local_response(
            exchange,
            rejection.status,
            rejection.body,
            headers=rejection.headers,
            flags=rejection.flags,
            grpc_message=rejection.grpc_message,
        )

    def _routed(self, exchange: _Exchange, decision: Matched | NoRoute) -> None:
        if isinstance(decision, NoRoute):
            self._local_response(exchange, 404, "no route\n", flags="NR")
            return
        route = decision.route
        exchange.route = route
        exchange.vhost = decision.virtual_host
        action = route.action
        if isinstance(action, m.DirectResponseAction):
            headers: Headers = (("content-type", action.content_type),) if action.body else ()
            headers = self._local_headers(exchange, headers)
            self._local_response(exchange, action.status, action.body, headers=headers)
        elif isinstance(action, m.RedirectAction):
            scheme = "https" if exchange.client.tls else "http"
            head = exchange.head
            location = redirect_location(head.target, head.headers, scheme, route, action)
            headers = self._local_headers(exchange, (("location", location),))
            self._local_response(exchange, action.response_code, b"", headers=headers)
        else:
            self._forward(exchange, route, action)

    def _local_headers(self, exchange: _Exchange, headers: Headers) -> Headers:
        """Headers of a direct response or redirect: the response transforms apply."""
        route, vhost = exchange.route, exchange.vhost
        extra = exchange.allowed.response_headers if exchange.allowed is not None else ()
        if (route is None or route.response_headers.empty) and (
            vhost is None or vhost.response_headers.empty
        ):
            return (*headers, *extra)
        context = self._template_context(exchange)
        return self.guard.response_headers(headers, route, vhost, context, extra)

    def _request_data(self, exchange: _Exchange, data: bytes) -> None:
        exchange.bytes_in += len(data)
        if exchange.finished:
            return
        if exchange.routing_body is not None:
            exchange.routing_body.append(data)
            return
        upstream = exchange.upstream
        if upstream is not None and upstream.h2 is not None:
            exchange.up_pending += data
            self._h2_up_pump(exchange)
            return
        if upstream is not None and upstream.connected:
            self._send(upstream.conn, upstream.codec.send_data(data))
            return
        exchange.pending.append(data)
        exchange.pending_bytes += len(data)
        if exchange.pending_bytes > _PENDING_BODY_LIMIT and not exchange.client_paused:
            exchange.client_paused = True
            self._out.append(PauseReading(exchange.client.conn))

    def _request_end(self, exchange: _Exchange, trailers: Headers) -> None:
        exchange.request_trailers = trailers
        if exchange.finished:
            self._maybe_complete(exchange)
            return
        if exchange.needs_body is not None:
            body = b"".join(exchange.routing_body or [])
            exchange.decision = exchange.needs_body.with_body(body)
            exchange.needs_body = None
            exchange.routing_body = None
            exchange.pending = [body] if body else []
            exchange.pending_bytes = len(body)
            self._advance(exchange)  # starts the route timer once routed
            return
        self._start_route_timer(exchange)
        upstream = exchange.upstream
        if upstream is not None and upstream.h2 is not None:
            exchange.up_end = trailers
            self._h2_up_pump(exchange)
        elif upstream is not None and upstream.connected:
            self._send(upstream.conn, upstream.codec.send_end(trailers))

    def _start_route_timer(self, exchange: _Exchange) -> None:
        route = exchange.route
        if route is None or not isinstance(route.action, m.ForwardAction):
            return
        timeout = route.action.timeout
        if timeout:
            self._start_timer(TimerRef("route", exchange.id), self._now + timeout)

    # ---------------------------------------------------------------- forward

    def _forward(self, exchange: _Exchange, route: m.Route, action: m.ForwardAction) -> None:
        head = exchange.head
        if (
            head.http_version == "1.1"
            and not isinstance(head.body, NoBody)
            and any(
                v.strip().lower() == "100-continue" for v in header_values(head.headers, "expect")
            )
        ):
            # As Envoy does: the gateway itself invites the body (and strips Expect
            # upstream), so a client never waits on an upstream that ignores Expect.
            interim = ResponseHead(100, "", (), "1.1", NoBody())
            if exchange.stream_id is None:
                self._send_client(exchange, exchange.client.codec.send_response_head(interim))
        cluster_name = action.pick_cluster(self._entropy.random())
        exchange.cluster = cluster_name
        state = self._clusters[cluster_name]
        hash_key: str | None = exchange.client.peer[0]
        if state.cluster.hash_header is not None:
            values = header_values(exchange.head.headers, state.cluster.hash_header)
            hash_key = values[0] if values else None  # no header: a random ring point
        endpoint = state.balancer.pick(
            PickContext(draws=(self._entropy.random(), self._entropy.random()), hash_key=hash_key)
        )
        if endpoint is None:
            self._local_response(exchange, 503, "no healthy upstream\n", flags="UH")
            return
        exchange.endpoint = endpoint
        exchange.upstream_address = str(endpoint)
        state.balancer.on_request_start(endpoint)
        decision = state.pool.acquire(endpoint, exchange.id, self._now)
        self._pool_decisions(state, [decision])

    def _pool_decisions(
        self,
        state: _ClusterState,
        decisions: Sequence[PoolDecision],
    ) -> None:
        for decision in decisions:
            match decision:
                case UseConnection(conn=pool_conn, request_ref=ref):
                    exchange = self._exchanges.get(cast(int, ref))
                    upstream = state.upstreams.get(pool_conn)
                    if exchange is None or upstream is None:
                        continue
                    self._dispatch(exchange, upstream)
                case OpenConnection(conn=pool_conn, endpoint=endpoint):
                    self._open_upstream(state, pool_conn, endpoint)
                case Queued():
                    pass
                case Rejected(request_ref=ref, reason=reason):
                    exchange = self._exchanges.get(cast(int, ref))
                    if exchange is None:
                        continue
                    self._balancer_done(exchange)
                    if reason == "pool_overflow":
                        self._local_response(exchange, 503, "upstream overflow\n", flags="UO")
                    else:
                        self._local_response(exchange, 503, "upstream connect error\n", flags="UF")

    def _open_upstream(self, state: _ClusterState, pool_conn: int, endpoint: m.Endpoint) -> None:
        conn = self.new_connection_id()
        upstream = _Upstream(conn, state.cluster.name, pool_conn, endpoint, Http1ClientCodec())
        if state.cluster.protocol == "http2":
            upstream.h2 = Http2ClientCodec(scheme="http")
        state.upstreams[pool_conn] = upstream
        self._upstreams[conn] = upstream
        self._out.append(OpenUpstream(conn, endpoint))
        self._start_timer(TimerRef("connect", conn), self._now + state.cluster.connect_timeout)

    def _upstream_connected(self, upstream: _Upstream) -> None:
        upstream.connected = True
        self._cancel_timer(TimerRef("connect", upstream.conn))
        if upstream.h2 is not None:
            self._send(upstream.conn, upstream.h2.initiate())
        state = self._clusters[upstream.cluster]
        self._pool_decisions(state, state.pool.connected(upstream.pool_conn, self._now))
        self._arm_pool_timer(state)

    def _upstream_connect_failed(self, upstream: _Upstream, reason: str) -> None:
        self._cancel_timer(TimerRef("connect", upstream.conn))
        self._log_event("upstream_connect_failed", endpoint=str(upstream.endpoint), reason=reason)
        state = self._clusters[upstream.cluster]
        self._drop_upstream(upstream)
        self._pool_decisions(state, state.pool.connect_failed(upstream.pool_conn))

    def _drop_upstream(self, upstream: _Upstream) -> None:
        self._upstreams.pop(upstream.conn, None)
        self._clusters[upstream.cluster].upstreams.pop(upstream.pool_conn, None)

    def _dispatch(self, exchange: _Exchange, upstream: _Upstream) -> None:
        if exchange.finished:
            state = self._clusters[upstream.cluster]
            self._pool_decisions(state, state.pool.released(upstream.pool_conn, True, self._now))
            return
        route = exchange.route
        assert route is not None and isinstance(route.action, m.ForwardAction)
        action = route.action
        exchange.upstream = upstream
        upstream.exchange = exchange
        head = exchange.head
        host = action.host_rewrite or host_header_value(head.headers)
        target = self.guard.upstream_target(head.target, exchange.allowed)
        if action.prefix_rewrite is not None:
            target = rewrite_path(target, route, action.prefix_rewrite)
        headers = upstream_request_headers(
            head.headers,
            client_ip=exchange.client.peer[0],
            scheme="https" if exchange.client.tls else "http",
            request_id=exchange.request_id,
            http_version=head.http_version,
            host=host,
        )
        auth = exchange.auth
        assert auth is not None
        headers = self.guard.upstream_headers(
            headers,
            auth,
            exchange.allowed,
            route,
            exchange.vhost,
            self._template_context(exchange),
            self._entropy.getrandbits,
        )
        upstream_head = RequestHead(head.method, target, headers, "1.1", head.body)
        if upstream.h2 is not None:
            upstream.exchange = None
            sid = upstream.h2.send_request(upstream_head)
            exchange.upstream_sid = sid
            upstream.streams[sid] = exchange
            for piece in exchange.pending:
                exchange.up_pending += piece
            exchange.pending = []
            exchange.pending_bytes = 0
            exchange.up_end = exchange.request_trailers
            self._h2_up_pump(exchange)
            return
        chunks = [upstream.codec.send_request(upstream_head)]
        chunks += [upstream.codec.send_data(piece) for piece in exchange.pending]
        exchange.pending = []
        exchange.pending_bytes = 0
        if exchange.request_trailers is not None:
            chunks.append(upstream.codec.send_end(exchange.request_trailers))
        self._out.append(SendBytes(upstream.conn, b"".join(chunks)))
        if exchange.client_paused:
            exchange.client_paused = False
            self._out.append(ResumeReading(exchange.client.conn))

    # --------------------------------------------------------------- upstream

    def _h2_up_pump(self, exchange: _Exchange) -> None:
        """Send what the upstream stream's window allows of the request body."""
        upstream = exchange.upstream
        sid = exchange.upstream_sid
        if upstream is None or upstream.h2 is None or sid is None:
            return
        codec = upstream.h2
        pending = exchange.up_pending
        if pending:
            del pending[: codec.send_data(sid, bytes(pending))]
        if not pending and exchange.up_end is not None and not exchange.up_end_sent:
            codec.send_end(sid, exchange.up_end)
            exchange.up_end_sent = True
        self._send(upstream.conn, codec.bytes_to_send())
        client = exchange.client
        if len(pending) > _PENDING_BODY_LIMIT and not exchange.client_paused:
            exchange.client_paused = True
            self._out.append(PauseReading(client.conn))
        elif len(pending) < _H2_PENDING_LOW and exchange.client_paused:
            exchange.client_paused = False
            self._out.append(ResumeReading(client.conn))

    def _h2_upstream_bytes(self, upstream: _Upstream, data: bytes) -> None:
        codec = upstream.h2
        assert codec is not None
        for sid, event in codec.receive(data):
            if upstream.conn not in self._upstreams:
                return
            self._h2_upstream_event(upstream, sid, event)
        if upstream.conn not in self._upstreams:
            return
        self._send(upstream.conn, codec.bytes_to_send())
        limit = codec.max_concurrent_streams
        if upstream.streams_limit != limit and upstream.connected:
            upstream.streams_limit = limit
            state = self._clusters[upstream.cluster]
            self._pool_decisions(state, state.pool.settings(upstream.pool_conn, limit))
        if not data:
            self._upstream_lost(upstream, "UC")
        elif upstream.draining and not upstream.streams:
            self._close_upstream(upstream)

    def _h2_upstream_event(self, upstream: _Upstream, sid: int, event: H2ClientEvent) -> None:
        codec = upstream.h2
        assert codec is not None
        exchange = upstream.streams.get(sid)
        match event:
            case ResponseHead() | EndOfMessage() | ProtocolError():
                if exchange is not None and not exchange.finished:
                    self._response_message(exchange, upstream, event)
            case Data(data=data):
                if exchange is not None and not exchange.finished:
                    self._response_message(exchange, upstream, event)
                codec.consumed(sid, len(data))
            case StreamReset():
                if exchange is not None and not exchange.finished:
                    upstream.streams.pop(sid, None)
                    exchange.upstream_sid = None
                    if exchange.response_started:
                        self._abort_exchange(exchange, "UC")
                    else:
                        self._release_upstream(exchange, reusable=True)
                        self._local_response(
                            exchange, 502, "upstream reset the stream\n", flags="UC"
                        )
            case WindowOpened():
                targets = list(upstream.streams.values()) if sid == 0 else [exchange]
                for target in targets:
                    if target is not None:
                        self._h2_up_pump(target)
            case GoAwayReceived():
                upstream.draining = True
            case ConnectionTerminated():
                self._upstream_lost(upstream, "UC")

    def _upstream_bytes(self, upstream: _Upstream, data: bytes) -> None:
        if upstream.h2 is not None:
            self._h2_upstream_bytes(upstream, data)
            return
        messages = upstream.codec.receive(data)
        exchange = upstream.exchange
        if exchange is None:
            # An idle keep-alive connection closed or spoke out of turn: drop it.
            if not data or messages:
                self._close_upstream(upstream)
            return
        for message in messages:
            if exchange.finished:
                break
            self._response_message(exchange, upstream, message)
        if not data and upstream.exchange is exchange and not exchange.finished:
            self._upstream_lost(upstream, "UC")

    def _response_message(
        self, exchange: _Exchange, upstream: _Upstream, message: ResponseMessage
    ) -> None:
        match message:
            case ResponseHead(status=status) if status < 200:
                return  # interim responses are not forwarded
            case ResponseHead():
                headers = downstream_response_headers(message.headers)
                route, vhost = exchange.route, exchange.vhost
                extra = exchange.allowed.response_headers if exchange.allowed is not None else ()
                if (route is not None and not route.response_headers.empty) or (
                    vhost is not None and not vhost.response_headers.empty
                ):
                    context = self._template_context(exchange)
                    headers = self.guard.response_headers(headers, route, vhost, context, extra)
                elif extra:
                    headers = (*headers, *extra)
                head = replace(message, headers=headers, reason="", http_version="1.1")
                exchange.response_started = True
                exchange.status = message.status
                self._respond_head(exchange, head)
            case Data(data=data):
                self._respond_data(exchange, data)
            case EndOfMessage(trailers=trailers):
                self._cancel_timer(TimerRef("route", exchange.id))
                reusable = True if upstream.h2 is not None else upstream.codec.reusable
                self._release_upstream(exchange, reusable=reusable, abort=False)
                exchange.finished = True
                self._respond_end(exchange, trailers)
                self._maybe_complete(exchange)
            case ProtocolError(reason=reason):
                self._log_event(
                    "upstream_protocol_error", endpoint=str(upstream.endpoint), reason=reason
                )
                if exchange.response_started:
                    self._abort_exchange(exchange, "UPE")
                else:
                    self._release_upstream(exchange, reusable=False)
                    self._local_response(exchange, 502, "upstream protocol error\n", flags="UPE")

    def _send_client(self, exchange: _Exchange, data: bytes) -> None:
        self._send(exchange.client.conn, data)

    def _send(self, conn: int, data: bytes) -> None:
        if data:
            self._out.append(SendBytes(conn, data))

    def _upstream_lost(self, upstream: _Upstream, flag: str) -> None:
        exchanges = [upstream.exchange, *upstream.streams.values()]
        self._close_upstream(upstream, abort=True)
        for exchange in exchanges:
            if exchange is None or exchange.finished:
                continue
            if exchange.response_started:
                self._abort_exchange(exchange, flag)
            else:
                self._local_response(exchange, 502, "upstream connection terminated\n", flags=flag)

    def _close_upstream(self, upstream: _Upstream, abort: bool = False) -> None:
        if upstream.conn not in self._upstreams:
            return
        exchanges = [upstream.exchange, *upstream.streams.values()]
        upstream.exchange = None
        upstream.streams.clear()
        for exchange in exchanges:
            if exchange is not None:
                exchange.upstream = None
                exchange.upstream_sid = None
                self._balancer_done(exchange)
        self._cancel_timer(TimerRef("connect", upstream.conn))
        self._out.append(CloseConnection(upstream.conn, abort))
        self._drop_upstream(upstream)
        state = self._clusters[upstream.cluster]
        self._pool_decisions(state, state.pool.closed(upstream.pool_conn))

    def _release_upstream(self, exchange: _Exchange, *, reusable: bool, abort: bool = True) -> None:
        """The exchange no longer needs its upstream connection (or its pool slot).

        A connection that cannot be reused is closed: reset (``abort``) when the
        exchange failed midway, gracefully after a complete response.
        """
        upstream = exchange.upstream
        state = self._clusters.get(exchange.cluster or "")
        if upstream is None:
            if state is not None and state.pool.cancel(exchange.id):
                self._balancer_done(exchange)
            return
        if upstream.h2 is not None:
            self._release_h2_stream(exchange, upstream, completed=reusable)
            return
        if not reusable:
            self._close_upstream(upstream, abort=abort)
            return
        upstream.exchange = None
        exchange.upstream = None
        self._resume_upstream(upstream)  # a pooled connection must be readable again
        self._balancer_done(exchange)
        assert state is not None
        self._pool_decisions(state, state.pool.released(upstream.pool_conn, True, self._now))
        self._arm_pool_timer(state)

    def _release_h2_stream(
        self, exchange: _Exchange, upstream: _Upstream, *, completed: bool
    ) -> None:
        """Give back one stream of an HTTP/2 upstream; a failed exchange resets only its
        stream, the connection carries on (unless the peer is going away)."""
        codec = upstream.h2
        assert codec is not None
        sid = exchange.upstream_sid
        if sid is not None:
            upstream.streams.pop(sid, None)
            if not completed:
                codec.reset_stream(sid, ErrorCode.CANCEL)
                self._send(upstream.conn, codec.bytes_to_send())
        exchange.upstream = None
        exchange.upstream_sid = None
        self._balancer_done(exchange)
        state = self._clusters[upstream.cluster]
        usable = not upstream.draining and not codec.terminated
        if not upstream.streams:
            self._resume_upstream(upstream)
        self._pool_decisions(state, state.pool.released(upstream.pool_conn, usable, self._now))
        if not usable and not upstream.streams:
            self._close_upstream(upstream)
        self._arm_pool_timer(state)

    def _balancer_done(self, exchange: _Exchange) -> None:
        if exchange.endpoint is not None and exchange.cluster is not None:
            self._clusters[exchange.cluster].balancer.on_request_end(exchange.endpoint)
            exchange.endpoint = None

    def _arm_pool_timer(self, state: _ClusterState) -> None:
        deadline = state.pool.next_deadline()
        ref = TimerRef("pool", state.cluster.name)
        if deadline is None:
            self._cancel_timer(ref)
        else:
            self._start_timer(ref, deadline)

    # ----------------------------------------------------------- local answers

    def _local_response(
        self,
        exchange: _Exchange,
        status: int,
        body: str | bytes,
        *,
        headers: Headers = (),
        flags: str = "-",
        grpc_message: str | None = None,
    ) -> None:
        """Answer the client ourselves with a complete response (see
        :func:`~gwcore.gateway.headers.local_answer`; gRPC clients get trailers-only)."""
        client = exchange.client
        status, headers, data = local_answer(
            exchange.head.headers, status, body, headers, grpc_message
        )
        body = b"" if exchange.head.method == "HEAD" else data
        exchange.bytes_out += len(body)
        exchange.flags = flags
        exchange.status = status
        exchange.response_started = True
        self._cancel_timer(TimerRef("route", exchange.id))
        if client.h2 is not None and exchange.stream_id is not None:
            if not client.closed and exchange.stream_id in client.streams:
                client.h2.send_local_response(exchange.stream_id, status, headers, body)
                exchange.h2_end_sent = True
                self._flush_h2(client)
        elif client.exchange is exchange and not client.closed:
            if self._draining:
                headers = (*headers, ("connection", "close"))
            self._send_client(exchange, client.codec.send_local_response(status, headers, body))
        exchange.finished = True
        self._maybe_complete(exchange)

    def _abort_exchange(self, exchange: _Exchange, flag: str) -> None:
        """The response cannot be completed: reset the stream (HTTP/2) or cut the
        client connection (HTTP/1.1)."""
        exchange.flags = flag
        self._release_upstream(exchange, reusable=False)
        self._finish_exchange(exchange, log=True)
        client = exchange.client
        if client.h2 is not None and exchange.stream_id is not None:
            if client.streams.pop(exchange.stream_id, None) is not None and not client.closed:
                client.h2.reset_stream(exchange.stream_id, ErrorCode.INTERNAL_ERROR)
                self._flush_h2(client)
                self._h2_idle_check(client)
            return
        self._close_client(client, abort=True)

    def _maybe_complete(self, exchange: _Exchange) -> None:
        """Once the response is written and the request fully read, start the next one."""
        client = exchange.client
        if exchange.stream_id is not None:
            self._h2_maybe_complete(exchange)
            return
        if not exchange.finished or client.closed:
            if client.closed and exchange.id in self._exchanges:
                self._finish_exchange(exchange, log=True)
            return
        if exchange.request_trailers is None and client.codec.keep_alive:
            # The request body is still arriving; wait for it (it is discarded).
            if exchange.id in self._exchanges:
                self._finish_exchange(exchange, log=True)
            return
        if exchange.id in self._exchanges:
            self._finish_exchange(exchange, log=True)
        client.exchange = None
        # Decide on reuse from the exchange just finished, before response_done()
        # releases the next pipelined request (whose own Connection: close applies
        # after its response, not before it).
        reusable = client.codec.keep_alive
        messages = client.codec.response_done()
        if not reusable:
            self._close_client(client)
            return
        self._arm_idle(client)
        self._client_messages(client, messages)
        if not client.closed and client.exchange is None and not client.codec.keep_alive:
            self._close_client(client)  # EOF reached with nothing left to answer

    def _finish_exchange(self, exchange: _Exchange, *, log: bool) -> None:
        if self._exchanges.pop(exchange.id, None) is None:
            return
        self._cancel_timer(TimerRef("route", exchange.id))
        if log:
            self._access_log(exchange)

    # ----------------------------------------------------------------- timers

    def _start_timer(self, ref: TimerRef, at: float) -> None:
        self._timers.add(ref)
        self._out.append(StartTimer(ref, at))

    def _cancel_timer(self, ref: TimerRef) -> None:
        if ref in self._timers:
            self._timers.discard(ref)
            self._out.append(CancelTimer(ref))

    def _timer(self, ref: TimerRef) -> None:
        if ref not in self._timers:
            return  # cancelled while the adapter was delivering it
        self._timers.discard(ref)
        kind, owner = ref.kind, ref.owner
        if kind == "idle":
            client = self._clients.get(owner) if isinstance(owner, int) else None
            if client is not None and client.exchange is None and not client.streams:
                if client.h2 is not None:
                    client.h2.goaway()
                    self._flush_h2(client)
                self._close_client(client)
        elif kind == "header":
            client = self._clients.get(owner) if isinstance(owner, int) else None
            if client is not None and client.exchange is None:
                exchange = self._new_exchange(client, RequestHead("-", "-", (), "1.1", NoBody()))
                self._local_response(exchange, 408, "request header timeout\n", flags="RT")
                self._close_client(client)
        elif kind == "route":
            timed_out = self._exchanges.get(owner) if isinstance(owner, int) else None
            if timed_out is None or timed_out.finished:
                return
            if timed_out.response_started:
                self._abort_exchange(timed_out, "UT")
            else:
                self._release_upstream(timed_out, reusable=False)
                self._local_response(timed_out, 504, "upstream request timeout\n", flags="UT")
        elif kind == "connect":
            upstream = self._upstreams.get(owner) if isinstance(owner, int) else None
            if upstream is not None and not upstream.connected:
                self._out.append(CloseConnection(upstream.conn, abort=True))
                self._upstream_connect_failed(upstream, "connect timeout")
        elif kind == "jwks":
            auth = self.guard.authenticators.get(str(owner))
            if auth is not None and auth.fetching:
                auth.fetch_failed("no answer in time", self._wall())
                self._log_event("jwks_fetch_failed", provider=str(owner), reason="timeout")
                self._jwks_done(str(owner))
        elif kind == "pool":
            state = self._clusters.get(str(owner))
            if state is not None:
                for pool_conn in state.pool.expire_idle(self._now):
                    upstream = state.upstreams.get(pool_conn)
                    if upstream is not None:
                        self._out.append(CloseConnection(upstream.conn))
                        self._drop_upstream(upstream)
                self._arm_pool_timer(state)

    def _backpressure(self, conn: int, *, blocked: bool) -> None:
        """A connection's outgoing queue is full (or drained): pause (resume) its source."""
        if conn in self._clients:
            client = self._clients[conn]
            for exchange in [client.exchange, *client.streams.values()]:
                if exchange is not None and exchange.upstream is not None:
                    if blocked:
                        self._pause_upstream(exchange.upstream, "writes")
                    else:
                        self._resume_upstream(exchange.upstream, "writes")
        elif conn in self._upstreams:
            upstream = self._upstreams[conn]
            for feeding in [upstream.exchange, *upstream.streams.values()]:
                if feeding is not None:
                    source = feeding.client.conn
                    self._out.append(PauseReading(source) if blocked else ResumeReading(source))

    def _pause_upstream(self, upstream: _Upstream, reason: str) -> None:
        if not upstream.paused_for:
            self._out.append(PauseReading(upstream.conn))
        upstream.paused_for.add(reason)

    def _resume_upstream(self, upstream: _Upstream, reason: str | None = None) -> None:
        """Lift one reason for the pause (``None``: all of them, e.g. back to the pool)."""
        if not upstream.paused_for:
            return
        if reason is None:
            upstream.paused_for.clear()
        else:
            upstream.paused_for.discard(reason)
        if not upstream.paused_for:
            self._out.append(ResumeReading(upstream.conn))

    # ---------------------------------------------------------------- logging

    def _access_log(self, exchange: _Exchange) -> None:
        head = exchange.head
        route = exchange.route
        record: dict[str, Any] = {
            "request_id": exchange.request_id,
            "client": f"{exchange.client.peer[0]}:{exchange.client.peer[1]}",
            "client_ip": exchange.auth.client_ip if exchange.auth else exchange.client.peer[0],
            "method": head.method,
            "authority": host_header_value(head.headers),
            "path": head.target,
            "protocol": f"HTTP/{head.http_version}",
            "status": exchange.status,
            "route": route.label if route else None,
            "cluster": exchange.cluster,
            "upstream": exchange.upstream_address,
            "bytes_in": exchange.bytes_in,
            "bytes_out": exchange.bytes_out,
            "duration_ms": round((self._now - exchange.started) * 1000, 3),
            "flags": exchange.flags,
        }
        self._out.append(Log("access", record))

    def _log_event(self, event: str, **fields: Any) -> None:
        self._out.append(Log("event", {"event": event, **fields}))
