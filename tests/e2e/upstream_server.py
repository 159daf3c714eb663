"""A real HTTP/1.1 upstream for end-to-end tests: h11 over blocking sockets, one thread
per connection, on 127.0.0.1 with a free port.

What it does is chosen per request by the ``x-echo-mode`` header:

- ``echo`` (default): 200 with JSON: who answered, method, target, the headers received,
  the body's length and SHA-256, and which upstream connection carried the request;
- ``echo-body``: 200 with the request body sent back, in 64 KiB pieces;
- ``slow``: like ``echo`` after sleeping ``x-delay`` seconds;
- ``close-before``: reads the request, then closes without answering;
- ``close-mid``: sends a head promising 100,000 bytes, 1,000 of them, then closes;
- ``big``: 200 with ``x-size`` bytes of :func:`pattern`, chunked, in 64 KiB pieces.

Every request (as the upstream saw it) is kept in ``requests``; the ``x-request-id`` of
every response written completely is added to ``finished``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import socket
import socketserver
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import h11

PIECE = 64 * 1024


def pattern(size: int) -> bytes:
    """``size`` deterministic, non-repeating-looking bytes."""
    block = hashlib.sha256(b"gwcore").digest() * 2048  # 64 KiB
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += counter.to_bytes(4, "big") + block[: PIECE - 4]
        counter += 1
    return bytes(out[:size])


@dataclass
class SeenRequest:
    method: str
    target: str
    headers: list[tuple[str, str]]
    body: bytes
    connection: int

    def header(self, name: str) -> str | None:
        values = [v for n, v in self.headers if n == name]
        return ", ".join(values) if values else None


@dataclass
class EchoUpstream:
    """Start with :meth:`start`, stop with :meth:`stop`; ``port`` is where it listens."""

    name: str = "echo"
    requests: list[SeenRequest] = field(default_factory=list)
    connections: int = 0
    finished: set[str] = field(default_factory=set)
    _server: socketserver.ThreadingTCPServer | None = None
    _thread: threading.Thread | None = None
    _sockets: set[socket.socket] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.server_address[1])

    def start(self) -> EchoUpstream:
        upstream = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                upstream._serve(self.request)

        server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        with self._lock:
            for sock in self._sockets:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(timeout=5)

    def seen(self, request_id: str) -> SeenRequest:
        """The request the gateway forwarded with ``x-request-id: request_id``."""
        for request in self.requests:
            if request.header("x-request-id") == request_id:
                return request
        raise AssertionError(f"upstream never saw x-request-id {request_id!r}")

    # ------------------------------------------------------------- serving

    def _serve(self, sock: socket.socket) -> None:
        with self._lock:
            self.connections += 1
            number = self.connections
            self._sockets.add(sock)
        sock.settimeout(30)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn = h11.Connection(h11.SERVER)
        try:
            while True:
                request = self._read_request(sock, conn, number)
                if request is None or not self._respond(sock, conn, request):
                    return
                self.finished.add(request.header("x-request-id") or "")
                if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                    return
                conn.start_next_cycle()
        except (OSError, h11.ProtocolError):
            return
        finally:
            with self._lock:
                self._sockets.discard(sock)
            sock.close()

    def _read_request(
        self, sock: socket.socket, conn: h11.Connection, number: int
    ) -> SeenRequest | None:
        head: h11.Request | None = None
        body = bytearray()
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(sock.recv(PIECE))
            elif isinstance(event, h11.Request):
                head = event
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage) and head is not None:
                seen = SeenRequest(
                    head.method.decode(),
                    head.target.decode(),
                    [(k.decode(), v.decode()) for k, v in head.headers],
                    bytes(body),
                    number,
                )
                with self._lock:
                    self.requests.append(seen)
                return seen
            else:
                return None

    def _respond(self, sock: socket.socket, conn: h11.Connection, request: SeenRequest) -> bool:
        mode = request.header("x-echo-mode") or "echo"
        if mode == "slow":
            time.sleep(float(request.header("x-delay") or "1"))
        if mode == "close-before":
            return False
        if mode == "close-mid":
            head = h11.Response(status_code=200, headers=[("content-length", "100000")])
            sock.sendall(conn.send(head) + conn.send(h11.Data(pattern(1000))))
            return False
        if mode == "big":
            size = int(request.header("x-size") or "0")
            sock.sendall(conn.send(h11.Response(status_code=200, headers=[])))  # chunked
            body = pattern(size)
            for start in range(0, size, PIECE):
                sock.sendall(conn.send(h11.Data(body[start : start + PIECE])))
            sock.sendall(conn.send(h11.EndOfMessage()))
            return True
        if mode == "echo-body":
            body = request.body
            ctype = "application/octet-stream"
        else:
            body = json.dumps(self._describe(request)).encode()
            ctype = "application/json"
        headers = [("content-type", ctype), ("content-length", str(len(body)))]
        sock.sendall(conn.send(h11.Response(status_code=200, headers=headers)))
        for start in range(0, len(body), PIECE):
            sock.sendall(conn.send(h11.Data(body[start : start + PIECE])))
        sock.sendall(conn.send(h11.EndOfMessage()))
        return True

    def _describe(self, request: SeenRequest) -> dict[str, Any]:
        return {
            "upstream": self.name,
            "method": request.method,
            "target": request.target,
            "headers": request.headers,
            "body_bytes": len(request.body),
            "body_sha256": hashlib.sha256(request.body).hexdigest(),
            "connection": request.connection,
        }
