"""The trio adapter: sockets, timers and logs around one :class:`gwcore.gateway.Gateway`.

Everything HTTP - parsing, routing, policy, pooling - happens in the engine. This
module only turns socket and timer activity into events, feeds them to
``Gateway.handle`` and carries out the actions it returns, with one ``match`` in
:meth:`Server._execute`.

Ordering. Events are fed one at a time from a FIFO (:meth:`Server.feed`): the
actions of one event are all carried out before the next event is handed in, and an
event raised *while* carrying them out (``WritesBlocked``) waits its turn instead of
re-entering the engine. ``SendBytes`` only appends to the connection's outgoing buffer
(synchronously), so bytes reach a socket in exactly the order the engine emitted them.

Per connection (client or upstream, one id namespace): a reader task
(``receive_some`` -> ``BytesReceived``; ``b""`` -> ``EofReceived``; an error ->
``ConnectionLost``) that stops while reading is paused, and a writer task that drains
the outgoing buffer with ``send_all``. Passing ``HIGH_WATER`` queued bytes feeds
``WritesBlocked``, falling below ``LOW_WATER`` feeds ``WritesDrained``.

``FetchJwks`` runs in a task of its own: connect (TLS for ``https``), write the request
and read the response within the action's timeout; :class:`gwcore.protocol.fetch.HttpGet`
does everything but the I/O. The answer is fed like any other event.

All ``handle`` calls happen in the one trio thread: no locks.
"""

from __future__ import annotations

import contextlib
import errno
import heapq
import random
import socket as stdlib_socket
import ssl
import struct
import time
import traceback
from collections import deque
from dataclasses import dataclass, field
from typing import Any, TextIO, assert_never

import trio

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
WRITE_CHUNK = 256 * 1024
HIGH_WATER = 1024 * 1024
LOW_WATER = 256 * 1024
LINGER = 2.0
"""After a graceful close, how long to read and discard what the peer still sends, so
that unread request bytes do not turn our FIN into a reset that destroys the response."""

_ACCEPT_RETRY_ERRNOS = {errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS}


@dataclass
class _Connection:
    """One socket, client or upstream, and its outgoing buffer."""

    conn: int
    upstream: bool
    stream: trio.SocketStream | None = None
    outgoing: bytearray = field(default_factory=bytearray)
    in_flight: int = 0
    blocked: bool = False
    paused: bool = False
    closing: bool = False
    resume: trio.Event = field(default_factory=trio.Event)
    wake_writer: trio.Event = field(default_factory=trio.Event)
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)

    @property
    def queued(self) -> int:
        return len(self.outgoing) + self.in_flight


class Server:
    """Runs one gateway: accept loops, connections, timers and logs in one nursery."""

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
        self._timers: list[tuple[float, int, TimerRef]] = []
        self._timer_seq: dict[TimerRef, int] = {}
        self._next_seq = 0
        self._wake_timers = trio.Event()
        self._accepting = trio.CancelScope()
        self._nursery: trio.Nursery | None = None
        self._sockets: list[tuple[str, trio.socket.SocketType]] = []
        self._fetch_ssl = fetch_ssl_context  # ssl.create_default_context() when first needed
        self._fetches = 0

    # ------------------------------------------------------------------ running

    async def bind(self) -> list[Bound]:
        """Open the listening sockets (once); the addresses they are bound to."""
        if not self._sockets:
            for name, host, port in self._addresses():
                self._sockets.append((name, await self._bind(host, port)))
        return [Bound(name, *sock.getsockname()[:2]) for name, sock in self._sockets]

    async def run(
        self, *, task_status: trio.TaskStatus[list[Bound]] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Bind (unless done), then serve until cancelled. Reports the bound addresses."""
        bound = await self.bind()
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                nursery.start_soon(self._timer_loop)
                with self._accepting:
                    async with trio.open_nursery() as accepting:
                        for name, sock in self._sockets:
                            listener = trio.SocketListener(sock)
                            accepting.start_soon(self._accept_loop, name, listener)
                        task_status.started(bound)
                # Draining: no more accepting; connections and timers carry on.
                for _, sock in self._sockets:
                    sock.close()
                await trio.sleep_forever()
        finally:
            for _, sock in self._sockets:
                sock.close()

    def stop_accepting(self) -> None:
        """Close the listening sockets; connections already accepted carry on."""
        self._accepting.cancel()

    async def drain(self, grace: float) -> None:
        """Stop accepting, then wait up to ``grace`` seconds for the exchanges in flight
        to finish (idle keep-alive connections do not hold the drain up)."""
        self.stop_accepting()
        self.feed(DrainStarted())
        with trio.move_on_after(grace):
            while self.gateway.active_exchanges or any(
                c.queued for c in self._connections.values() if not c.upstream
            ):
                await trio.sleep(0.05)

    def statistics(self) -> dict[str, int]:
        """Open connections (client, upstream), timers running, exchanges and fetches in
        flight."""
        upstream = sum(1 for c in self._connections.values() if c.upstream)
        return {
            "client_connections": len(self._connections) - upstream,
            "upstream_connections": upstream,
            "timers": len(self._timer_seq),
            "active_exchanges": self.gateway.active_exchanges,
            "fetches": self._fetches,
        }

    def _addresses(self) -> list[tuple[str, str, int]]:
        listeners = [(lst.name, lst.host, lst.port) for lst in self.config.listeners]
        if self._listen is not None:
            name = listeners[0][0] if listeners else "default"
            return [(name, *self._listen)]
        return listeners

    async def _bind(self, host: str, port: int) -> trio.socket.SocketType:
        infos = await trio.socket.getaddrinfo(
            host or None, port, type=trio.socket.SOCK_STREAM, flags=trio.socket.AI_PASSIVE
        )
        family, type_, proto, _, address = infos[0]
        sock = trio.socket.socket(family, type_, proto)
        try:
            sock.setsockopt(trio.socket.SOL_SOCKET, trio.socket.SO_REUSEADDR, 1)
            if self._reuse_port:
                sock.setsockopt(trio.socket.SOL_SOCKET, stdlib_socket.SO_REUSEPORT, 1)
            await sock.bind(address)
            sock.listen(1024)
        except BaseException:
            sock.close()
            raise
        return sock

    async def _accept_loop(self, listener_name: str, listener: trio.SocketListener) -> None:
        while True:
            try:
                stream = await listener.accept()
            except OSError as exc:
                if exc.errno not in _ACCEPT_RETRY_ERRNOS:
                    raise
                self._log_event({"event": "accept_failed", "error": str(exc)})
                await trio.sleep(0.1)
                continue
            try:
                peer = stream.socket.getpeername()
            except OSError:  # reset before we got to it
                await trio.aclose_forcefully(stream)
                continue
            c = _Connection(self.gateway.new_connection_id(), upstream=False, stream=stream)
            self._connections[c.conn] = c
            self.feed(ClientConnected(c.conn, listener_name, (str(peer[0]), int(peer[1]))))
            self._tasks.start_soon(self._client, c)

    # ------------------------------------------------------------- the engine

    def feed(self, event: Event) -> None:
        """Hand ``event`` to the engine and carry out its actions; events raised while
        doing so are queued and fed afterwards, in order."""
        self._events.append(event)
        if self._feeding:
            return
        self._feeding = True
        try:
            while self._events:
                event = self._events.popleft()
                try:
                    actions = self.gateway.handle(event, trio.current_time(), wall=time.time())
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
                if (c := self._connections.get(conn)) is not None and not c.closing:
                    c.outgoing += data
                    c.wake_writer.set()
                    if not c.blocked and c.queued > HIGH_WATER:
                        c.blocked = True
                        self.feed(WritesBlocked(conn))
            case CloseConnection(conn, abort):
                if (c := self._connections.get(conn)) is not None:
                    if abort or c.stream is None:
                        self._abort(c)
                    else:
                        c.closing = True
                        c.wake_writer.set()
            case PauseReading(conn):
                if (c := self._connections.get(conn)) is not None and not c.paused:
                    c.paused = True
                    c.resume = trio.Event()
            case ResumeReading(conn):
                if (c := self._connections.get(conn)) is not None:
                    c.paused = False
                    c.resume.set()
            case OpenUpstream(conn, endpoint, tls):
                if tls:
                    self.feed(UpstreamConnectFailed(conn, "TLS upstreams are not supported yet"))
                else:
                    self._connections[conn] = c = _Connection(conn, upstream=True)
                    self._tasks.start_soon(self._connect, c, endpoint.host, endpoint.port)
            case StartTimer(ref, at):
                self._next_seq += 1
                self._timer_seq[ref] = self._next_seq
                heapq.heappush(self._timers, (at, self._next_seq, ref))
                self._compact_timers()
                self._wake_timers.set()
            case CancelTimer(ref):
                self._timer_seq.pop(ref, None)
                self._compact_timers()
            case FetchJwks(ref, url, timeout, max_bytes):
                self._tasks.start_soon(self._fetch, ref, url, timeout, max_bytes)
            case Log(kind, record):
                self._logs.write(kind, record)
            case _:
                assert_never(action)

    # ------------------------------------------------------------ connections

    @property
    def _tasks(self) -> trio.Nursery:
        assert self._nursery is not None, "Server.run is not running"
        return self._nursery

    async def _client(self, c: _Connection) -> None:
        with c.scope:
            await self._serve_connection(c)

    async def _connect(self, c: _Connection, host: str, port: int) -> None:
        """Connect ``c``, then serve it; an abort while connecting cancels the attempt."""
        with c.scope:
            try:
                stream = await trio.open_tcp_stream(host, port)
            except OSError as exc:
                if self._connections.get(c.conn) is c:
                    del self._connections[c.conn]
                    self.feed(UpstreamConnectFailed(c.conn, str(exc) or type(exc).__name__))
                return
            c.stream = stream
            if self._connections.get(c.conn) is not c:
                await trio.aclose_forcefully(stream)
                return
            self.feed(UpstreamConnected(c.conn))
            await self._serve_connection(c)

    async def _serve_connection(self, c: _Connection) -> None:
        """Read and write until closed, lost or aborted; then the socket is closed."""
        assert c.stream is not None
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._reader, c)
                await self._writer(c)
                nursery.cancel_scope.cancel()
            await self._linger(c.stream)
        finally:
            if self._connections.get(c.conn) is c:
                del self._connections[c.conn]
            with trio.CancelScope(shield=True):
                await trio.aclose_forcefully(c.stream)

    async def _reader(self, c: _Connection) -> None:
        assert c.stream is not None
        while True:
            while c.paused:
                await c.resume.wait()
            try:
                data = await c.stream.receive_some(READ_SIZE)
            except (trio.BrokenResourceError, OSError) as exc:
                self._lost(c, exc)
                return
            if c.closing:
                return  # the writer lingers; it reads and drops the rest
            if not data:
                self.feed(EofReceived(c.conn))
                return
            self.feed(BytesReceived(c.conn, data))

    async def _writer(self, c: _Connection) -> None:
        """Write the outgoing buffer until the connection is closed and flushed."""
        assert c.stream is not None
        while True:
            if not c.outgoing:
                if c.closing:
                    return
                c.wake_writer = trio.Event()
                await c.wake_writer.wait()
                continue
            chunk = bytes(c.outgoing[:WRITE_CHUNK])
            del c.outgoing[:WRITE_CHUNK]
            c.in_flight = len(chunk)
            try:
                await c.stream.send_all(chunk)
            except (trio.BrokenResourceError, OSError) as exc:
                c.in_flight = 0
                self._lost(c, exc)
                await trio.sleep_forever()  # cancelled by _lost
            c.in_flight = 0
            if c.blocked and c.queued < LOW_WATER:
                c.blocked = False
                self.feed(WritesDrained(c.conn))

    async def _linger(self, stream: trio.SocketStream) -> None:
        """Half-close, then drop what the peer still sends, until its EOF or LINGER."""
        with trio.move_on_after(LINGER):
            try:
                await stream.send_eof()
                while await stream.receive_some(READ_SIZE):
                    pass
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                pass

    def _lost(self, c: _Connection, exc: BaseException) -> None:
        """The socket failed: tear the connection down, and tell the engine (once)."""
        c.scope.cancel()
        if self._connections.get(c.conn) is c:
            del self._connections[c.conn]
            if not c.closing:
                self.feed(ConnectionLost(c.conn, str(exc) or type(exc).__name__))

    def _abort(self, c: _Connection) -> None:
        """Close at once; a connected socket is reset (SO_LINGER 0) rather than shut."""
        self._connections.pop(c.conn, None)
        if c.stream is not None:
            linger = struct.pack("ii", 1, 0)
            with contextlib.suppress(OSError):
                c.stream.socket.setsockopt(trio.socket.SOL_SOCKET, trio.socket.SO_LINGER, linger)
        c.scope.cancel()

    # ------------------------------------------------------------------ timers

    def _compact_timers(self) -> None:
        """Drop replaced and cancelled entries once they outnumber the live ones 3 to 1
        (idle timers are re-armed on every request: the heap must not grow with them)."""
        if len(self._timers) > 64 and len(self._timers) > 4 * len(self._timer_seq):
            seq = self._timer_seq
            self._timers = [entry for entry in self._timers if seq.get(entry[2]) == entry[1]]
            heapq.heapify(self._timers)

    async def _timer_loop(self) -> None:
        """One task for every timer: a heap of (at, seq, ref); stale entries are skipped."""
        while True:
            while self._timers and self._timer_seq.get(self._timers[0][2]) != self._timers[0][1]:
                heapq.heappop(self._timers)
            self._wake_timers = trio.Event()
            if not self._timers:
                await self._wake_timers.wait()
                continue
            at, _seq, ref = self._timers[0]
            if at > trio.current_time():
                with trio.move_on_at(at):
                    await self._wake_timers.wait()
                continue
            heapq.heappop(self._timers)
            del self._timer_seq[ref]
            self.feed(TimerFired(ref))

    # ----------------------------------------------------------------- fetches

    async def _fetch(self, ref: str, url: str, timeout: float, max_bytes: int) -> None:
        """GET ``url`` within ``timeout``, then feed the answer (unless cancelled)."""
        self._fetches += 1
        outcome: FetchOutcome = timed_out(timeout)
        try:
            with trio.move_on_after(max(timeout, 0.0)):
                try:
                    outcome = await self._get(HttpGet(url, max_bytes))
                except Exception as exc:  # a bad URL, connect, TLS or read error: any
                    outcome = failure(exc)  # failure is an answer, none stops the server
        finally:
            self._fetches -= 1
        if isinstance(outcome, FetchResponse):
            self.feed(JwksFetched(ref, outcome.status, outcome.body))
        else:
            self.feed(JwksFetchFailed(ref, outcome.reason))

    async def _get(self, get: HttpGet) -> FetchOutcome:
        """Connect (TLS with SNI for ``https``), send the request, read to the outcome."""
        stream: trio.abc.Stream = await trio.open_tcp_stream(get.host, get.port)
        try:
            if get.tls:
                if self._fetch_ssl is None:
                    self._fetch_ssl = ssl.create_default_context()
                stream = trio.SSLStream(
                    stream, self._fetch_ssl, server_hostname=get.host, https_compatible=True
                )
            await stream.send_all(get.request)
            while (outcome := get.receive(await stream.receive_some(READ_SIZE))) is None:
                pass
            return outcome
        finally:
            await trio.aclose_forcefully(stream)

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
    task_status: trio.TaskStatus[list[Bound]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``config`` until cancelled (``listen`` overrides the only/first listener).

    ``task_status.started`` reports the bound addresses once every socket listens.
    """
    server = Server(
        config,
        listen=listen,
        reuse_port=reuse_port,
        access_log=access_log,
        event_log=event_log,
        fetch_ssl_context=fetch_ssl_context,
    )
    await server.run(task_status=task_status)
