"""A small real HTTP/2 (h2c, prior knowledge) upstream server for end-to-end tests.

Threaded, one thread per connection, built on the ``h2`` library. Each request is
answered with JSON naming the connection number and stream id it arrived on (so a
test can see multiplexing), its path and headers, the body length, and trailers
``x-upstream-trailer: done``. It listens on 127.0.0.1 only.
"""

from __future__ import annotations

import json
import socket
import threading
from dataclasses import dataclass, field

import h2.config
import h2.connection
import h2.events


@dataclass
class H2EchoUpstream:
    port: int = 0
    connections: int = 0
    seen: list[dict[str, object]] = field(default_factory=list)
    _sock: socket.socket | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> H2EchoUpstream:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        self.port = sock.getsockname()[1]
        self._sock = sock
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._sock is not None:
            self._sock.close()

    def _accept(self) -> None:
        assert self._sock is not None
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            with self._lock:
                self.connections += 1
                number = self.connections
            threading.Thread(target=self._serve, args=(conn, number), daemon=True).start()

    def _serve(self, conn: socket.socket, number: int) -> None:
        h2conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
        h2conn.initiate_connection()
        conn.sendall(h2conn.data_to_send())
        heads: dict[int, list[tuple[bytes, bytes]]] = {}
        bodies: dict[int, int] = {}
        with conn:
            while True:
                try:
                    data = conn.recv(65536)
                except OSError:
                    return
                if not data:
                    return
                for event in h2conn.receive_data(data):
                    if isinstance(event, h2.events.RequestReceived):
                        heads[event.stream_id] = list(event.headers)
                        bodies[event.stream_id] = 0
                    elif isinstance(event, h2.events.DataReceived):
                        bodies[event.stream_id] += len(event.data)
                        h2conn.acknowledge_received_data(
                            event.flow_controlled_length, event.stream_id
                        )
                    elif isinstance(event, h2.events.StreamEnded):
                        self._answer(h2conn, event.stream_id, number, heads, bodies)
                conn.sendall(h2conn.data_to_send())

    def _answer(
        self,
        h2conn: h2.connection.H2Connection,
        sid: int,
        number: int,
        heads: dict[int, list[tuple[bytes, bytes]]],
        bodies: dict[int, int],
    ) -> None:
        headers = {k.decode(): v.decode() for k, v in heads.pop(sid)}
        record: dict[str, object] = {
            "connection": number,
            "stream": sid,
            "path": headers.get(":path"),
            "headers": headers,
            "body_bytes": bodies.pop(sid),
        }
        with self._lock:
            self.seen.append(record)
        payload = json.dumps(record).encode()
        h2conn.send_headers(sid, [(":status", "200"), ("content-type", "application/json")])
        h2conn.send_data(sid, payload)
        h2conn.send_headers(sid, [("x-upstream-trailer", "done")], end_stream=True)
