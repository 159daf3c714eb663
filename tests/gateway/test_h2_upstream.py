"""HTTP/2 upstreams: streams multiplexed on one connection, resets, GOAWAY, trailers.

The upstream is a real ``h2`` server connection object answering in memory.
"""

from __future__ import annotations

from typing import Any

import h2.config
import h2.connection
import h2.events
from playbook import Playbook, access_logs, only, sent
from test_h2_flows import H2Client

from gwcore.gateway import Action, OpenUpstream, UpstreamConnected

ROUTES: dict[str, Any] = {
    "clusters": {"grpc": {"endpoints": ["127.0.0.1:9301"], "protocol": "http2"}},
    "listeners": [{"name": "public", "address": "127.0.0.1:8080"}],
    "routes": [
        {"name": "svc", "match": {"prefix": "/"}, "route": {"cluster": "grpc", "timeout": "5s"}}
    ],
}


class H2Upstream:
    """A real h2 server on the far side of an upstream connection id."""

    def __init__(self, book: Playbook, conn: int) -> None:
        self.book = book
        self.conn = conn
        self.h2 = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
        self.h2.initiate_connection()
        self.requests: dict[int, list[tuple[bytes, bytes]]] = {}
        self.bodies: dict[int, bytes] = {}
        self.ended: set[int] = set()

    def take(self, actions: list[Action]) -> None:
        data = sent(actions, self.conn)
        if not data:
            return
        for event in self.h2.receive_data(data):
            if isinstance(event, h2.events.RequestReceived):
                self.requests[event.stream_id] = list(event.headers)
            elif isinstance(event, h2.events.DataReceived):
                self.bodies[event.stream_id] = self.bodies.get(event.stream_id, b"") + event.data
                self.h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, h2.events.StreamEnded):
                self.ended.add(event.stream_id)

    def flush(self) -> list[Action]:
        actions = self.book.send(self.conn, self.h2.data_to_send())
        self.take(actions)
        return actions


def test_concurrent_requests_share_one_http2_upstream_connection() -> None:
    book = Playbook.from_config(ROUTES)
    c1, c2 = book.connect(), book.connect(peer=("10.9.9.9", 1))
    first = book.send(c1, b"GET /a HTTP/1.1\r\nHost: svc\r\n\r\n")
    conn = only(first, OpenUpstream).conn
    upstream = H2Upstream(book, conn)
    upstream.take(book(UpstreamConnected(conn)))
    upstream.flush()  # the server's SETTINGS (max concurrent streams unlimited)
    second = book.send(c2, b"POST /b HTTP/1.1\r\nHost: svc\r\nContent-Length: 4\r\n\r\nbody")
    assert not any(isinstance(a, OpenUpstream) for a in second)
    upstream.take(second)
    assert sorted(upstream.requests) == [1, 3]
    headers = dict(upstream.requests[3])
    assert headers[b":path"] == b"/b" and headers[b":authority"] == b"svc"
    assert upstream.bodies[3] == b"body" and 3 in upstream.ended
    for sid, text in ((3, b"second"), (1, b"first")):
        upstream.h2.send_headers(sid, [(":status", "200"), ("content-length", str(len(text)))])
        upstream.h2.send_data(sid, text, end_stream=True)
    actions = upstream.flush()
    assert sent(actions, c1).endswith(b"\r\n\r\nfirst")
    assert sent(actions, c2).endswith(b"\r\n\r\nsecond")
    assert {r["status"] for r in access_logs(actions)} == {200}


def test_a_reset_stream_fails_only_its_request() -> None:
    book = Playbook.from_config(ROUTES)
    c1, c2 = book.connect(), book.connect(peer=("10.9.9.9", 1))
    conn = only(book.send(c1, b"GET /a HTTP/1.1\r\nHost: svc\r\n\r\n"), OpenUpstream).conn
    upstream = H2Upstream(book, conn)
    upstream.take(book(UpstreamConnected(conn)))
    upstream.flush()
    upstream.take(book.send(c2, b"GET /b HTTP/1.1\r\nHost: svc\r\n\r\n"))
    upstream.h2.reset_stream(1)
    upstream.h2.send_headers(3, [(":status", "204")], end_stream=True)
    actions = upstream.flush()
    assert sent(actions, c1).startswith(b"HTTP/1.1 502 ")
    assert sent(actions, c2).startswith(b"HTTP/1.1 204 ")
    # The connection is still in use: a third request rides it.
    third = book.send(c1, b"GET /c HTTP/1.1\r\nHost: svc\r\n\r\n")
    assert not any(isinstance(a, OpenUpstream) for a in third)


def test_goaway_drains_the_connection_and_new_requests_open_another() -> None:
    book = Playbook.from_config(ROUTES)
    client = book.connect()
    conn = only(book.send(client, b"GET /a HTTP/1.1\r\nHost: svc\r\n\r\n"), OpenUpstream).conn
    upstream = H2Upstream(book, conn)
    upstream.take(book(UpstreamConnected(conn)))
    upstream.flush()
    upstream.h2.send_headers(1, [(":status", "200")], end_stream=True)
    upstream.h2.close_connection()  # GOAWAY, NO_ERROR
    actions = upstream.flush()
    assert sent(actions, client).startswith(b"HTTP/1.1 200 ")
    next_request = book.send(client, b"GET /b HTTP/1.1\r\nHost: svc\r\n\r\n")
    assert only(next_request, OpenUpstream).conn != conn


def test_trailers_travel_from_an_http2_upstream_to_an_http2_client() -> None:
    book = Playbook.from_config(ROUTES)
    client = H2Client(book, book.connect())
    client.start()
    client.h2.send_headers(
        1,
        [
            (":method", "POST"),
            (":path", "/pkg.Svc/Get"),
            (":scheme", "http"),
            (":authority", "svc"),
            ("content-type", "application/grpc"),
            ("te", "trailers"),
        ],
    )
    client.h2.send_data(1, b"\x00\x00\x00\x00\x00", end_stream=True)
    actions = client.flush()
    conn = only(actions, OpenUpstream).conn
    upstream = H2Upstream(book, conn)
    upstream.take(book(UpstreamConnected(conn)))
    upstream.flush()
    assert dict(upstream.requests[1])[b"te"] == b"trailers"
    assert upstream.bodies[1] == b"\x00\x00\x00\x00\x00"
    upstream.h2.send_headers(1, [(":status", "200"), ("content-type", "application/grpc")])
    upstream.h2.send_data(1, b"\x00\x00\x00\x00\x00")
    upstream.h2.send_headers(1, [("grpc-status", "0"), ("grpc-message", "ok")], end_stream=True)
    client.feed(upstream.flush())
    trailers = [e for e in client.events if isinstance(e, h2.events.TrailersReceived)]
    assert trailers and dict(trailers[0].headers)[b"grpc-status"] == b"0"
    headers, body, ended = client.response(1)
    assert headers[b":status"] == b"200" and body == b"\x00" * 5 and ended
