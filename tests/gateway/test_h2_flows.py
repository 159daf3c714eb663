"""HTTP/2 clients through the engine: prior knowledge, h2c upgrade, streams, flow control.

The client side is a real ``h2`` connection object; the upstream is HTTP/1.1 bytes.
"""

from __future__ import annotations

from typing import Any

import h2.config
import h2.connection
import h2.events
import h2.settings
from playbook import Playbook, access_logs, only, sent

from gwcore.gateway import Action, OpenUpstream, PauseReading, ResumeReading, UpstreamConnected

ROUTES: dict[str, Any] = {
    "listeners": [{"name": "public", "address": "127.0.0.1:8080", "protocols": ["http1", "h2c"]}],
    "routes": [
        {
            "name": "hello",
            "match": {"path": "/hello"},
            "direct_response": {"status": 200, "body": "hi"},
        },
        {"name": "api", "match": {"prefix": "/api/"}, "route": {"cluster": "c", "timeout": "5s"}},
    ],
}


class H2Client:
    """A real h2 client connection wired to one gateway client connection."""

    def __init__(self, book: Playbook, conn: int, window: int = 65535) -> None:
        self.book = book
        self.conn = conn
        self.h2 = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        self.h2.local_settings = h2.settings.Settings(
            client=True, initial_values={h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: window}
        )
        self.events: list[h2.events.Event] = []

    def start(self) -> list[Action]:
        self.h2.initiate_connection()
        return self.flush()

    def flush(self) -> list[Action]:
        actions = self.book.send(self.conn, self.h2.data_to_send())
        self.feed(actions)
        return actions

    def feed(self, actions: list[Action]) -> None:
        data = sent(actions, self.conn)
        if data:
            self.events += self.h2.receive_data(data)
            pending = self.h2.data_to_send()
            if pending:
                self.feed(self.book.send(self.conn, pending))

    def request(self, path: str, body: bytes = b"") -> tuple[int, list[Action]]:
        sid = self.h2.get_next_available_stream_id()
        headers = [(":method", "POST" if body else "GET"), (":path", path)]
        headers += [(":scheme", "http"), (":authority", "api.test")]
        self.h2.send_headers(sid, headers, end_stream=not body)
        if body:
            self.h2.send_data(sid, body, end_stream=True)
        return sid, self.flush()

    def response(self, sid: int) -> tuple[dict[bytes, bytes], bytes, bool]:
        headers: dict[bytes, bytes] = {}
        body = b""
        ended = False
        for event in self.events:
            if isinstance(event, h2.events.ResponseReceived) and event.stream_id == sid:
                headers = dict(event.headers)
            elif isinstance(event, h2.events.DataReceived) and event.stream_id == sid:
                body += event.data
            elif isinstance(event, h2.events.StreamEnded) and event.stream_id == sid:
                ended = True
        return headers, body, ended


def _client() -> tuple[Playbook, H2Client]:
    book = Playbook.from_config(ROUTES)
    client = H2Client(book, book.connect())
    client.start()
    return book, client


def test_prior_knowledge_client_gets_a_direct_response_on_its_stream() -> None:
    _book, client = _client()
    sid, actions = client.request("/hello")
    headers, body, ended = client.response(sid)
    assert headers[b":status"] == b"200" and body == b"hi" and ended
    [log] = access_logs(actions)
    assert (log["protocol"], log["route"]) == ("HTTP/2", "hello")


def test_concurrent_streams_are_proxied_to_http1_upstreams() -> None:
    book, client = _client()
    sid1, actions1 = client.request("/api/one")
    sid3, actions3 = client.request("/api/two", body=b"payload")
    up1, up3 = only(actions1, OpenUpstream).conn, only(actions3, OpenUpstream).conn
    # Waiting requests take connections in arrival order (the pool is FIFO).
    request1 = sent(book(UpstreamConnected(up1)), up1)
    request3 = sent(book(UpstreamConnected(up3)), up3)
    assert request1.startswith(b"GET /api/one HTTP/1.1\r\nhost: api.test\r\n")
    assert request3.startswith(b"POST /api/two HTTP/1.1\r\nhost: api.test\r\n")
    assert b"via: 2 gwcore\r\n" in request3  # no content-length from the client: chunked
    assert request3.endswith(b"transfer-encoding: chunked\r\n\r\n7\r\npayload\r\n0\r\n\r\n")
    client.feed(book.send(up3, b"HTTP/1.1 201 Created\r\nContent-Length: 3\r\n\r\ntwo"))
    chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\none\r\n0\r\n\r\n"
    client.feed(book.send(up1, chunked))
    assert client.response(sid3) == ({b":status": b"201", b"content-length": b"3"}, b"two", True)
    headers, body, ended = client.response(sid1)
    assert headers[b":status"] == b"200" and body == b"one" and ended


def test_local_answers_go_to_their_own_stream_and_the_connection_carries_on() -> None:
    _book, client = _client()
    sid, _actions = client.request("/nowhere")
    assert client.response(sid)[0][b":status"] == b"404"
    sid2, _actions2 = client.request("/hello")
    assert client.response(sid2)[1] == b"hi"


def test_small_client_window_holds_the_response_and_pauses_the_upstream() -> None:
    book = Playbook.from_config(ROUTES)
    client = H2Client(book, book.connect(), window=1000)
    client.start()
    sid, actions = client.request("/api/big")
    upstream = only(actions, OpenUpstream).conn
    book(UpstreamConnected(upstream))
    size = 400_000
    actions = book.send(
        upstream, b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size + b"x" * size
    )
    assert PauseReading(upstream) in actions  # the client's window is tiny
    # The client reads everything, opening its window as it goes.
    client.feed(actions)
    received = 0
    for _ in range(2000):
        body = client.response(sid)[1]
        if len(body) > received:
            client.h2.acknowledge_received_data(len(body) - received, sid)
            received = len(body)
        more = client.h2.data_to_send()
        if not more:
            break
        client.feed(book.send(client.conn, more))
    _headers, body, ended = client.response(sid)
    assert len(body) == size and ended
    assert ResumeReading(upstream) in book.history


def test_h2c_upgrade_answers_the_first_request_on_stream_1() -> None:
    book = Playbook.from_config(ROUTES)
    conn = book.connect()
    probe = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    settings = probe.initiate_upgrade_connection()  # already base64url
    actions = book.send(
        conn,
        b"GET /hello HTTP/1.1\r\nHost: api.test\r\nConnection: Upgrade, HTTP2-Settings\r\n"
        b"Upgrade: h2c\r\nHTTP2-Settings: " + settings + b"\r\n\r\n",
    )
    data = sent(actions, conn)
    assert data.startswith(b"HTTP/1.1 101 Switching Protocols\r\n")
    events = probe.receive_data(data[data.index(b"\r\n\r\n") + 4 :])
    body = b"".join(e.data for e in events if isinstance(e, h2.events.DataReceived))
    assert body == b"hi"
    assert any(isinstance(e, h2.events.StreamEnded) and e.stream_id == 1 for e in events)


def test_http1_still_works_on_a_listener_that_accepts_h2c() -> None:
    book = Playbook.from_config(ROUTES)
    conn = book.connect()
    actions = book.send(conn, b"GET /he")
    assert sent(actions, conn) == b""  # not enough to tell the protocol apart yet
    actions = book.send(conn, b"llo HTTP/1.1\r\nHost: a\r\n\r\n")
    assert sent(actions, conn).startswith(b"HTTP/1.1 200 OK\r\n")


def test_http2_access_log_counts_body_bytes_as_http1_does() -> None:
    _book, client = _client()
    _sid, actions = client.request("/hello")
    [log] = access_logs(actions)
    assert (log["bytes_in"], log["bytes_out"]) == (0, 2)
