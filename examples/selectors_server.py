"""gwcore on the standard library alone: one thread, ``selectors``, non-blocking sockets.

The proof that the engine is sans-IO, and a template for running it on another event
loop: ``gwcore.gateway.Gateway`` is used unmodified. This file turns socket and timer
activity into events, hands them to ``Gateway.handle(event, now, wall)`` and carries
out the actions that come back (one ``match``, closed by ``assert_never``). What any
adapter owes the engine:

- events go in one at a time, from a FIFO; events raised while carrying out actions
  (``WritesBlocked``) wait their turn (``feed``);
- bytes leave in the order they were sent; the engine hears ``WritesBlocked`` past
  ``HIGH_WATER`` queued bytes and ``WritesDrained`` under ``LOW_WATER``;
- timers run on the monotonic clock ``now``; starting a ref again replaces it;
- connects never block the loop; a graceful close flushes, sends FIN and drains the
  peer for ``LINGER`` seconds (so no RST destroys the response); ``abort`` resets;
- ``FetchJwks`` runs in a worker thread (blocking I/O under a deadline) that hands the
  answer back through a socketpair the selector watches.

Left out (see ``gwcore_trio``, ``gwcore_asyncio``): TLS listeners and upstreams, drain,
several listeners, worker processes, surviving an engine bug (here it stops the server).

Usage: ``python examples/selectors_server.py CONFIG --listen 127.0.0.1:PORT``
"""

from __future__ import annotations

import argparse
import contextlib
import heapq
import json
import os
import random
import selectors
import signal
import socket
import ssl
import struct
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import assert_never

import gwcore.gateway as gw
from gwcore.config import load_config_file
from gwcore.protocol.fetch import FetchOutcome, FetchResponse, HttpGet, failure, timed_out

READ_SIZE = 64 * 1024
HIGH_WATER, LOW_WATER = 1024 * 1024, 256 * 1024
LINGER = 2.0  # after our FIN, read and drop what the peer still sends (else: RST)


@dataclass
class Conn:
    """A client or an upstream socket (one id namespace) and its outgoing bytes."""

    cid: int
    sock: socket.socket
    out: bytearray = field(default_factory=bytearray)
    mask: int = 0  # the selector interest registered now (0: not registered)
    connecting: bool = False
    paused: bool = False
    eof: bool = False
    blocked: bool = False  # WritesBlocked was fed, WritesDrained is owed
    closing: bool = False  # the engine closed it: flush, FIN, linger
    linger_until: float | None = None


class SelectorsServer:
    def __init__(self, config_path: str, listen: tuple[str, int]) -> None:
        config = load_config_file(config_path)
        self.gateway = gw.Gateway(config, entropy=random.Random())
        self.listener = config.listeners[0].name if config.listeners else "default"
        self.sel = selectors.DefaultSelector()
        self.conns: dict[int, Conn] = {}
        self.events: deque[gw.Event] = deque()
        self.feeding = False
        # A heap of (at, seq, ref); `live` names each ref's current entry, so replaced
        # and cancelled entries are skipped when they come up (the adapters also prune).
        self.timers: list[tuple[float, int, gw.TimerRef]] = []
        self.live: dict[gw.TimerRef, int] = {}
        self.seq = 0
        self.answers: deque[gw.Event] = deque()  # from fetch threads (deque is thread-safe)
        self.wake_r, self.wake_w = socket.socketpair()
        self.wake_r.setblocking(False)
        self.sel.register(self.wake_r, selectors.EVENT_READ, self.answers_ready)
        self.lsock = socket.create_server(listen, backlog=1024)
        self.lsock.setblocking(False)
        self.sel.register(self.lsock, selectors.EVENT_READ, self.accept)

    # --------------------------------------------------------------- the loop
    def run(self) -> None:
        while True:
            delay = self.timers[0][0] - time.monotonic() if self.timers else 1.0
            if any(c.linger_until for c in self.conns.values()):
                delay = min(delay, 0.1)
            for key, mask in self.sel.select(max(0.0, delay)):
                if isinstance(key.data, Conn):
                    self.ready(key.data, mask)
                else:
                    key.data()  # the listener or the fetch wake-up
            now = time.monotonic()
            while self.timers and self.timers[0][0] <= now:
                _, seq, ref = heapq.heappop(self.timers)
                if self.live.get(ref) == seq:
                    del self.live[ref]
                    self.feed(gw.TimerFired(ref))
            for c in list(self.conns.values()):
                if c.linger_until is not None and c.linger_until < now:
                    self.drop(c)  # lingered long enough

    def feed(self, event: gw.Event) -> None:
        """The one way into the engine: a FIFO, never re-entered."""
        self.events.append(event)
        if self.feeding:
            return
        self.feeding = True
        try:
            while self.events:
                event = self.events.popleft()
                for action in self.gateway.handle(event, time.monotonic(), wall=time.time()):
                    self.execute(action)
        finally:
            self.feeding = False
            sys.stdout.flush()

    def execute(self, action: gw.Action) -> None:
        c = self.conns.get(getattr(action, "conn", -1))  # the connection it is about
        match action:
            case gw.SendBytes(_, data):
                if c is not None and not c.closing:
                    self.send(c, data)
            case gw.CloseConnection(_, abort):
                if c is not None and (abort or c.connecting):
                    with contextlib.suppress(OSError):  # SO_LINGER 0: close() sends RST
                        linger = struct.pack("ii", 1, 0)
                        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
                    self.drop(c)
                elif c is not None:
                    c.closing = True
                    self.flush(c)
            case gw.PauseReading() | gw.ResumeReading():
                if c is not None:
                    c.paused = isinstance(action, gw.PauseReading)
                    self.interest(c)
            case gw.OpenUpstream(cid, endpoint, tls):
                self.connect(cid, endpoint.host, endpoint.port, tls)
            case gw.StartTimer(ref, at):
                self.seq += 1
                self.live[ref] = self.seq
                heapq.heappush(self.timers, (at, self.seq, ref))
            case gw.CancelTimer(ref):
                self.live.pop(ref, None)
            case gw.FetchJwks(ref, url, timeout, max_bytes):
                args = (ref, url, timeout, max_bytes)
                threading.Thread(target=self.fetch, args=args, daemon=True).start()
            case gw.Log(kind, record):
                line = json.dumps({"time": round(time.time(), 3), **record}, default=str)
                print(line, file=sys.stdout if kind == "access" else sys.stderr)
            case _:
                assert_never(action)

    # ---------------------------------------------------------------- sockets
    def accept(self) -> None:
        try:
            sock, peer = self.lsock.accept()
        except OSError:  # the client is gone already, or we are out of descriptors
            return
        c = self.add(self.gateway.new_connection_id(), sock)
        self.feed(gw.ClientConnected(c.cid, self.listener, (peer[0], peer[1])))

    def add(self, cid: int, sock: socket.socket, connecting: bool = False) -> Conn:
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.conns[cid] = c = Conn(cid, sock, connecting=connecting)
        self.interest(c)
        return c

    def connect(self, cid: int, host: str, port: int, tls: bool) -> None:
        if tls:
            self.feed(gw.UpstreamConnectFailed(cid, "TLS upstreams are not in this example"))
            return
        try:  # getaddrinfo blocks: fine for IP endpoints; a real server resolves aside
            info = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
            sock = socket.socket(*info[:3])
        except OSError as exc:
            self.feed(gw.UpstreamConnectFailed(cid, str(exc)))
            return
        sock.setblocking(False)
        sock.connect_ex(info[4])  # EINPROGRESS: the outcome shows as writability
        self.add(cid, sock, connecting=True)

    def interest(self, c: Conn) -> None:
        """Wait for writability while connecting or with bytes queued, and readability
        unless paused or at EOF (a selector cannot hold an empty mask: unregister)."""
        mask = selectors.EVENT_WRITE if c.connecting or c.out else 0
        if not (c.paused or c.eof or c.connecting):
            mask |= selectors.EVENT_READ
        if mask != c.mask:
            if c.mask == 0:
                self.sel.register(c.sock, mask, c)
            elif mask == 0:
                self.sel.unregister(c.sock)
            else:
                self.sel.modify(c.sock, mask, c)
            c.mask = mask

    def ready(self, c: Conn, mask: int) -> None:
        if self.conns.get(c.cid) is not c:
            return  # dropped by an earlier event of this same select() batch
        if c.connecting:  # writable: the connect finished, one way or the other
            error = c.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if error:
                self.drop(c)
                self.feed(gw.UpstreamConnectFailed(c.cid, os.strerror(error)))
            else:
                c.connecting = False
                self.interest(c)
                self.feed(gw.UpstreamConnected(c.cid))
            return
        if mask & selectors.EVENT_WRITE:
            self.flush(c)
        if mask & selectors.EVENT_READ and self.conns.get(c.cid) is c:
            try:
                data = c.sock.recv(READ_SIZE)
            except BlockingIOError:
                return
            except OSError as exc:
                self.lost(c, exc)
                return
            if c.closing:  # closed by the engine: drop what still comes, until EOF
                c.eof = not data
                if c.eof and c.linger_until is not None:
                    self.drop(c)
                return
            c.eof = not data
            self.interest(c)
            self.feed(gw.BytesReceived(c.cid, data) if data else gw.EofReceived(c.cid))

    def send(self, c: Conn, data: bytes) -> None:
        c.out += data
        if not c.blocked and len(c.out) > HIGH_WATER:
            c.blocked = True
            self.feed(gw.WritesBlocked(c.cid))  # queued: we are inside feed()
        self.interest(c)

    def flush(self, c: Conn) -> None:
        try:
            while c.out:
                del c.out[: c.sock.send(c.out)]
        except BlockingIOError:
            pass
        except OSError as exc:
            self.lost(c, exc)
            return
        if c.blocked and len(c.out) < LOW_WATER:
            c.blocked = False
            self.feed(gw.WritesDrained(c.cid))
        if c.closing and not c.out and c.linger_until is None:
            with contextlib.suppress(OSError):
                c.sock.shutdown(socket.SHUT_WR)  # FIN after the last byte
            if c.eof:  # the peer is done too
                self.drop(c)
                return
            c.linger_until, c.paused = time.monotonic() + LINGER, False
        self.interest(c)

    def lost(self, c: Conn, exc: OSError) -> None:
        self.drop(c)
        if not c.closing:
            self.feed(gw.ConnectionLost(c.cid, str(exc) or type(exc).__name__))

    def drop(self, c: Conn) -> None:
        if self.conns.pop(c.cid, None) is c:
            if c.mask:
                self.sel.unregister(c.sock)
            c.sock.close()

    # ---------------------------------------------------------------- fetches
    def fetch(self, ref: str, url: str, timeout: float, max_bytes: int) -> None:
        """In a worker thread: GET ``url`` on a blocking socket, each step bounded by
        what is left of ``timeout``; then wake the loop, which feeds the answer."""
        deadline = time.monotonic() + timeout

        def left() -> float:
            return max(deadline - time.monotonic(), 0.001)

        outcome: FetchOutcome | None = None
        try:
            get = HttpGet(url, max_bytes)  # the sans-IO part: URL, request, response
            sock = socket.create_connection((get.host, get.port), timeout=left())
            try:
                if get.tls:  # certificate and host name checked, SNI sent
                    context = ssl.create_default_context()
                    sock = context.wrap_socket(sock, server_hostname=get.host)
                sock.sendall(get.request)
                while outcome is None:
                    sock.settimeout(left())
                    outcome = get.receive(sock.recv(READ_SIZE))
            finally:
                sock.close()
        except TimeoutError:
            outcome = timed_out(timeout)
        except (ValueError, OSError) as exc:
            outcome = failure(exc)
        if isinstance(outcome, FetchResponse):
            self.answers.append(gw.JwksFetched(ref, outcome.status, outcome.body))
        elif outcome is not None:
            self.answers.append(gw.JwksFetchFailed(ref, outcome.reason))
        self.wake_w.send(b"!")

    def answers_ready(self) -> None:
        with contextlib.suppress(BlockingIOError):
            self.wake_r.recv(4096)
        while self.answers:
            self.feed(self.answers.popleft())


def main() -> int:
    parser = argparse.ArgumentParser(description="gwcore on selectors (stdlib only)")
    parser.add_argument("config", help="the gateway's YAML or JSON config")
    parser.add_argument("--listen", default="127.0.0.1:8080", help="HOST:PORT (port 0: any)")
    args = parser.parse_args()
    host, _, port = args.listen.rpartition(":")
    server = SelectorsServer(args.config, (host, int(port)))
    address = server.lsock.getsockname()
    print(f"selectors_server: listening on http://{address[0]}:{address[1]}", file=sys.stderr)
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # SIGTERM stops, as Ctrl-C
    with contextlib.suppress(KeyboardInterrupt):
        server.run()
    for c in list(server.conns.values()):
        server.drop(c)
    return 0


if __name__ == "__main__":
    sys.exit(main())
