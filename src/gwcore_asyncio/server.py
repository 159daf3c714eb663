"""The asyncio adapter: sockets, timers and logs around one :class:`gwcore.gateway.Gateway`.

It mirrors ``gwcore_trio.server`` name for name. Everything HTTP - parsing, routing,
policy, pooling - happens in the engine. This module only turns transport and timer
callbacks into events, feeds them to ``Gateway.handle`` and carries out the actions it
returns, with one ``match`` in :meth:`Server._execute`.

Ordering. Events are fed one at a time from a FIFO (:meth:`Server.feed`): the
actions of one event are all carried out before the next event is handed in, and an
event raised *while* carrying them out (``WritesBlocked``, from ``pause_writing``
inside ``transport.write``) waits its turn instead of re-entering the engine.
``SendBytes`` appends to the connection's pending bytes, which go to ``transport.write``
in one piece once the events queued so far are handled (or before a graceful close), so
bytes reach a socket in exactly the order the engine emitted them, a batch costs one
write, and an abort drops what the batch had not written yet - as the trio adapter does.

Per connection (client or upstream, one id namespace): a :class:`_Protocol` whose
callbacks become events (``data_received`` -> ``BytesReceived``; ``eof_received`` ->
``EofReceived``; ``connection_lost`` -> ``ConnectionLost`` unless the engine closed it;
``pause_writing`` / ``resume_writing`` -> ``WritesBlocked`` / ``WritesDrained``, with
the transport's write buffer limits at ``HIGH_WATER`` / ``LOW_WATER``).

``FetchJwks`` runs in a task of its own: connect (TLS for ``https``), write the request
and read the response within the action's timeout; :class:`gwcore.protocol.fetch.HttpGet`
does everything but the I/O. The answer is fed like any other event.

All ``handle`` calls happen in the one event loop thread: no locks. uvloop is used when
installed (``pip install gwcore[speed]``), see ``run.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import ssl
import struct
import time
import traceback
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TextIO, assert_never, cast

from gwcore.config.model import GatewayConfig
from gwcore.gateway import Gateway
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
from gwcore.protocol.fetch import FetchOutcome, FetchResponse, HttpGet, failure, timed_out
from gwcore_serving import Bound, LogWriter

READ_SIZE = 64 * 1024
HIGH_WATER = 1024 * 1024
LOW_WATER = 256 * 1024
LINGER = 2.0
"""After a graceful close, how long to read and discard what the peer still sends, so
that unread request bytes do not turn our FIN into a reset that destroys the response."""


@dataclass
class _Connection:
    """One socket, client or upstream, and its transport."""

    conn: int
    upstream: bool
    transport: asyncio.Transport | None = None
    connecting: asyncio.Task[Any] | None = None
    linger: asyncio.TimerHandle | None = None
    blocked: bool = False
    paused: bool = False
    eof: bool = False
    closing: bool = False
    pending: list[bytes] = field(default_factory=list)  # SendBytes not yet written

    @property
    def queued(self) -> int:
        buffered = self.transport.get_write_buffer_size() if self.transport is not None else 0
        return buffered + sum(map(len, self.pending))


class _Protocol(asyncio.Protocol):
    """Transport callbacks of one connection, turned into engine events."""

    def __init__(self, server: Server, c: _Connection, listener: str | None = None) -> None:
        self.server = server
        self.c = c
        self.listener = listener  # None: an upstream connection

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport (uvloop's do not subclass asyncio.Transport).
        self.server._connection_made(self.c, cast(asyncio.Transport, transport), self.listener)

    def data_received(self, data: bytes) -> None:
        c = self.c
        if not c.closing and self.server._connections.get(c.conn) is c:
            self.server.feed(BytesReceived(c.conn, data))

    def eof_received(self) -> bool:
        c = self.c
        if c.closing:
            return False  # lingering: the peer is done too, close
        if not c.eof and self.server._connections.get(c.conn) is c:
            c.eof = True
            self.server.feed(EofReceived(c.conn))
        return True  # keep the write side open until the engine closes

    def connection_lost(self, exc: Exception | None) -> None:
        self.server._lost(self.c, exc)

    def pause_writing(self) -> None:
        c = self.c
        if not c.blocked and self.server._connections.get(c.conn) is c:
            c.blocked = True
            self.server.feed(WritesBlocked(c.conn))

    def resume_writing(self) -> None:
        c = self.c
        if c.blocked and self.server._connections.get(c.conn) is c:
            c.blocked = False
            self.server.feed(WritesDrained(c.conn))


class Server:
    """Runs one gateway: listening servers, connections, timers and logs on one loop."""

    def __init__(
        self,
        config: GatewayConfig,
        *,
        listen: tuple[str, int] | None = None,
        reuse_port: bool = False,
        access_log: TextIO | None = None,
        event_log: TextIO | None = None,
        entropy: random.Random | None = None,
        fetch_ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.config = config
        self.gateway = Gateway(config, entropy=entropy or random.Random())
        self._listen = listen
        self._reuse_port = reuse_port
        self._logs = LogWriter(access_log, event_log)
        self._connections: dict[int, _Connection] = {}
        self._events: deque[Event] = deque()
        self._feeding = False
        self._unwritten: list[_Connection] = []  # connections with pending bytes
        self._timers: dict[TimerRef, asyncio.TimerHandle] = {}
        self._sockets: list[tuple[str, socket.socket]] = []
        self._servers: list[asyncio.Server] = []
        self._accepting = True
        self._fetch_ssl = fetch_ssl_context  # ssl.create_default_context() when first needed
        self._fetches: set[asyncio.Task[None]] = set()

    # ------------------------------------------------------------------ running

    async def bind(self) -> list[Bound]:
        """Open the listening sockets (once); the addresses they are bound to."""
        if not self._sockets:
            for name, host, port in self._addresses():
                self._sockets.append((name, await self._bind(host, port)))
        return [Bound(name, *sock.getsockname()[:2]) for name, sock in self._sockets]

    async def run(self, *, started: Callable[[list[Bound]], object] | None = None) -> None:
        """Bind (unless done), then serve until cancelled. ``started`` gets the bound
        addresses once every socket accepts."""
        bound = await self.bind()
        loop = asyncio.get_running_loop()
        try:
            for name, sock in self._sockets:
                if self._accepting:
                    # backlog=1: accept one connection per loop iteration, as trio's accept
                    # loop does, so a burst of new clients does not get ahead of the reads
                    # of those already accepted; then restore the kernel's queue length.
                    server = await loop.create_server(self._factory(name), sock=sock, backlog=1)
                    sock.listen(1024)
                    self._servers.append(server)
            if started is not None:
                started(bound)
            await loop.create_future()  # until cancelled
        finally:
            self.stop_accepting()
            for c in list(self._connections.values()):
                self._connections.pop(c.conn, None)
                if c.connecting is not None:
                    c.connecting.cancel()
                if c.transport is not None:
                    c.transport.abort()
            for handle in self._timers.values():
                handle.cancel()
            self._timers.clear()
            for task in self._fetches:
                task.cancel()

    def stop_accepting(self) -> None:
        """Close the listening sockets; connections already accepted carry on."""
        self._accepting = False
        for server in self._servers:
            server.close()
        for _, sock in self._sockets:
            sock.close()

    async def drain(self, grace: float) -> None:
        """Stop accepting, then wait up to ``grace`` seconds for the exchanges in flight
        to finish (idle keep-alive connections do not hold the drain up)."""
        self.stop_accepting()
        self.feed(DrainStarted())
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(grace):
                while self.gateway.active_exchanges or any(
                    c.queued for c in self._connections.values() if not c.upstream
                ):
                    await asyncio.sleep(0.05)

    def statistics(self) -> dict[str, int]:
        """Open connections (client, upstream), timers running, exchanges and fetches in
        flight."""
        upstream = sum(1 for c in self._connections.values() if c.upstream)
        return {
            "client_connections": len(self._connections) - upstream,
            "upstream_connections": upstream,
            "timers": len(self._timers),
            "active_exchanges": self.gateway.active_exchanges,
            "fetches": len(self._fetches),
        }

    def _addresses(self) -> list[tuple[str, str, int]]:
        listeners = [(lst.name, lst.host, lst.port) for lst in self.config.listeners]
        if self._listen is not None:
            name = listeners[0][0] if listeners else "default"
            return [(name, *self._listen)]
        return listeners

    async def _bind(self, host: str, port: int) -> socket.socket:
        infos = await asyncio.get_running_loop().getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
        family, type_, proto, _, address = infos[0]
        sock = socket.socket(family, type_, proto)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if self._reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.setblocking(False)
            sock.bind(address)
            sock.listen(1024)
        except BaseException:
            sock.close()
            raise
        return sock

    def _factory(self, listener_name: str) -> Callable[[], _Protocol]:
        def accepted() -> _Protocol:
            c = _Connection(self.gateway.new_connection_id(), upstream=False)
            return _Protocol(self, c, listener_name)

        return accepted

    def _connection_made(
        self, c: _Connection, transport: asyncio.Transport, listener: str | None
    ) -> None:
        c.transport = transport
        transport.set_write_buffer_limits(high=HIGH_WATER, low=LOW_WATER)
        if listener is None:  # an upstream: connected, unless the engine gave up on it
            if self._connections.get(c.conn) is not c:
                transport.abort()
                return
            self.feed(UpstreamConnected(c.conn))
            return
        peer = transport.get_extra_info("peername")
        if not peer:  # reset before we got to it
            transport.abort()
            return
        self._connections[c.conn] = c
        self.feed(ClientConnected(c.conn, listener, (str(peer[0]), int(peer[1]))))

    # ------------------------------------------------------------- the engine

    def feed(self, event: Event) -> None:
        """Hand ``event`` to the engine and carry out its actions; events raised while
        doing so are queued and fed afterwards, in order."""
        self._events.append(event)
        if self._feeding:
            return
        self._feeding = True
        loop = asyncio.get_running_loop()
        try:
            while self._events or self._unwritten:
                if not self._events:
                    self._write_pending()  # may queue WritesBlocked: the loop goes on
                    continue
                event = self._events.popleft()
                try:
                    actions = self.gateway.handle(event, loop.time(), wall=time.time())
                except Exception as exc:  # an engine bug: keep the other connections alive
                    self._engine_failed(event, exc)
                    continue
                for action in actions:
                    self._execute(action)
        finally:
            self._feeding = False
            self._logs.flush()

    def _engine_failed(self, event: Event, exc: Exception) -> None:
        trace = "".join(traceback.format_exception(exc))
        self._log_event({"event": "engine_error", "input": repr(event), "error": trace})
        conn = getattr(event, "conn", None)
        if isinstance(conn, int) and (c := self._connections.get(conn)) is not None:
            self._abort(c)

    def _execute(self, action: Action) -> None:
        match action:
            case SendBytes(conn, data):
                c = self._connections.get(conn)
                if c is not None and not c.closing and c.transport is not None:
                    if not c.pending:
                        self._unwritten.append(c)
                    c.pending.append(data)
            case CloseConnection(conn, abort):
                if (c := self._connections.get(conn)) is not None:
                    if abort or c.transport is None:
                        self._abort(c)
                    else:
                        self._close(c)
            case PauseReading(conn):
                if (c := self._connections.get(conn)) is not None and not c.paused:
                    c.paused = True
                    if c.transport is not None:
                        c.transport.pause_reading()
            case ResumeReading(conn):
                if (c := self._connections.get(conn)) is not None and c.paused:
                    c.paused = False
                    if c.transport is not None and not c.eof:
                        c.transport.resume_reading()
            case OpenUpstream(conn, endpoint, tls):
                if tls:
                    self.feed(UpstreamConnectFailed(conn, "TLS upstreams are not supported yet"))
                else:
                    self._connections[conn] = c = _Connection(conn, upstream=True)
                    c.connecting = asyncio.get_running_loop().create_task(
                        self._connect(c, endpoint.host, endpoint.port)
                    )
            case StartTimer(ref, at):
                if (old := self._timers.pop(ref, None)) is not None:
                    old.cancel()
                loop = asyncio.get_running_loop()
                self._timers[ref] = loop.call_at(at, self._timer_fired, ref)
            case CancelTimer(ref):
                if (handle := self._timers.pop(ref, None)) is not None:
                    handle.cancel()
            case FetchJwks(ref, url, timeout, max_bytes):
                task = asyncio.get_running_loop().create_task(
                    self._fetch(ref, url, timeout, max_bytes)
                )
                self._fetches.add(task)
                task.add_done_callback(self._fetches.discard)
            case Log(kind, record):
                self._logs.write(kind, record)
            case _:
                assert_never(action)

    def _write_pending(self) -> None:
        """Write each connection's pending bytes in one piece (``transport.write`` may
        call ``pause_writing``, which queues ``WritesBlocked``)."""
        unwritten, self._unwritten = self._unwritten, []
        for c in unwritten:
            self._write(c)

    def _write(self, c: _Connection) -> None:
        transport = c.transport
        if (
            c.pending
            and transport is not None
            and not transport.is_closing()  # it failed; connection_lost is on its way
            and self._connections.get(c.conn) is c
        ):
            transport.write(c.pending[0] if len(c.pending) == 1 else b"".join(c.pending))
        c.pending.clear()

    # ------------------------------------------------------------ connections

    async def _connect(self, c: _Connection, host: str, port: int) -> None:
        """Connect ``c`` (``connection_made`` feeds ``UpstreamConnected``); an abort while
        connecting cancels this task."""
        loop = asyncio.get_running_loop()
        try:
            await loop.create_connection(lambda: _Protocol(self, c), host, port)
        except OSError as exc:
            if self._connections.get(c.conn) is c:
                del self._connections[c.conn]
                self.feed(UpstreamConnectFailed(c.conn, str(exc) or type(exc).__name__))
        finally:
            c.connecting = None

    def _close(self, c: _Connection) -> None:
        """Flush, half-close, then drop what the peer still sends, until its EOF or
        LINGER; the connection leaves the table when the transport is closed."""
        assert c.transport is not None
        if c.closing:
            return
        self._write(c)  # what the engine sent before closing goes first
        c.closing = True
        transport = c.transport
        if c.eof or not transport.can_write_eof():
            transport.close()  # flushes first
            return
        transport.write_eof()  # after the buffer is flushed
        if c.paused:
            c.paused = False
            transport.resume_reading()
        c.linger = asyncio.get_running_loop().call_later(LINGER, transport.close)

    def _lost(self, c: _Connection, exc: BaseException | None) -> None:
        """The transport is closed: forget the connection, and tell the engine (once)
        unless the engine closed it."""
        if c.linger is not None:
            c.linger.cancel()
        if self._connections.get(c.conn) is c:
            del self._connections[c.conn]
            if not c.closing:
                reason = (str(exc) or type(exc).__name__) if exc else "connection closed"
                self.feed(ConnectionLost(c.conn, reason))

    def _abort(self, c: _Connection) -> None:
        """Close at once, dropping the bytes not written yet; a connected socket is reset
        (SO_LINGER 0) rather than shut."""
        self._connections.pop(c.conn, None)
        c.pending.clear()
        if c.connecting is not None:
            c.connecting.cancel()
        if c.transport is not None:
            sock = c.transport.get_extra_info("socket")
            if sock is not None:
                linger = struct.pack("ii", 1, 0)
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
            c.transport.abort()

    # ------------------------------------------------------------------ timers

    def _timer_fired(self, ref: TimerRef) -> None:
        del self._timers[ref]
        self.feed(TimerFired(ref))

    # ----------------------------------------------------------------- fetches

    async def _fetch(self, ref: str, url: str, timeout: float, max_bytes: int) -> None:
        """GET ``url`` within ``timeout``, then feed the answer (unless cancelled)."""
        outcome: FetchOutcome = timed_out(timeout)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max(timeout, 0.0)):
                try:
                    outcome = await self._get(HttpGet(url, max_bytes))
                except Exception as exc:  # a bad URL, connect, TLS or read error: any
                    outcome = failure(exc)  # failure is an answer, none stops the server
        if isinstance(outcome, FetchResponse):
            self.feed(JwksFetched(ref, outcome.status, outcome.body))
        else:
            self.feed(JwksFetchFailed(ref, outcome.reason))

    async def _get(self, get: HttpGet) -> FetchOutcome:
        """Connect (TLS with SNI for ``https``), send the request, read to the outcome."""
        context = None
        if get.tls:
            if self._fetch_ssl is None:
                self._fetch_ssl = ssl.create_default_context()
            context = self._fetch_ssl
        reader, writer = await asyncio.open_connection(
            get.host, get.port, ssl=context, server_hostname=get.host if get.tls else None
        )
        try:
            writer.write(get.request)
            while (outcome := get.receive(await reader.read(READ_SIZE))) is None:
                pass
            return outcome
        finally:
            writer.transport.abort()

    # -------------------------------------------------------------------- logs

    def _log_event(self, record: dict[str, Any]) -> None:
        self._logs.write("event", record)


async def serve(
    config: GatewayConfig,
    *,
    listen: tuple[str, int] | None = None,
    reuse_port: bool = False,
    access_log: TextIO | None = None,
    event_log: TextIO | None = None,
    fetch_ssl_context: ssl.SSLContext | None = None,
    started: Callable[[list[Bound]], object] | None = None,
) -> None:
    """Serve ``config`` until cancelled (``listen`` overrides the only/first listener).

    ``started`` is called with the bound addresses once every socket listens.
    """
    server = Server(
        config,
        listen=listen,
        reuse_port=reuse_port,
        access_log=access_log,
        event_log=event_log,
        fetch_ssl_context=fetch_ssl_context,
    )
    await server.run(started=started)
