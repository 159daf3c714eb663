"""Http2ServerCodec driven by a real h2 client: requests, trailers, streams, flow
control, resets, GOAWAY, limits, local responses and the h2c upgrade."""

from __future__ import annotations

import base64

import pytest
from h2 import events as h2e
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.settings import SettingCodes
from test_http2_support import ServerPair, parse_frames, request

from gwcore.protocol.http2 import (
    ConnectionTerminated,
    ErrorCode,
    GoAwayReceived,
    Http2ServerCodec,
    StreamReset,
    WindowOpened,
    h2c_upgrade_settings,
)
from gwcore.protocol.messages import (
    Data,
    EndOfMessage,
    FixedLength,
    NoBody,
    ProtocolError,
    RequestHead,
    ResponseHead,
    UnknownLength,
)


def body_of(events: list[tuple[int, object]], stream_id: int) -> bytes:
    return b"".join(e.data for s, e in events if s == stream_id and isinstance(e, Data))


def test_get_without_body_becomes_head_with_no_body_and_end() -> None:
    pair = ServerPair()
    pair.client.send_headers(1, request(x_trace="a"), end_stream=True)
    assert pair.pump() == [
        (
            1,
            RequestHead("GET", "/", (("host", "example.com"), ("x-trace", "a")), "2", NoBody()),
        ),
        (1, EndOfMessage()),
    ]
    assert pair.codec.scheme_of(1) == "https"


def test_host_header_is_kept_when_authority_is_absent() -> None:
    pair = ServerPair()
    fields = [(":method", "GET"), (":scheme", "http"), (":path", "/x"), ("host", "h.example")]
    pair.client.send_headers(1, fields, end_stream=True)
    head = pair.pump()[0][1]
    assert isinstance(head, RequestHead) and head.headers == (("host", "h.example"),)
    assert pair.codec.scheme_of(1) == "http"


def test_post_with_content_length_is_fixed_length_and_body_is_delivered() -> None:
    pair = ServerPair()
    pair.client.send_headers(1, request("POST", content_length="11"))
    pair.client.send_data(1, b"hello ")
    pair.client.send_data(1, b"world", end_stream=True)
    events = pair.pump()
    head = events[0][1]
    assert isinstance(head, RequestHead) and head.body == FixedLength(11)
    assert body_of(events, 1) == b"hello world"
    assert events[-1] == (1, EndOfMessage())


def test_body_without_content_length_is_unknown_length() -> None:
    pair = ServerPair()
    pair.client.send_headers(1, request("POST"))
    pair.client.send_data(1, b"abc", end_stream=True)
    events = pair.pump()
    assert isinstance(events[0][1], RequestHead) and events[0][1].body == UnknownLength()
    assert body_of(events, 1) == b"abc"


def test_request_trailers_end_the_message() -> None:
    pair = ServerPair()
    pair.client.send_headers(1, request("POST", te="trailers"))
    pair.client.send_data(1, b"\x00\x00\x00\x00\x00")
    pair.client.send_headers(1, [("grpc-timeout", "1S")], end_stream=True)
    events = pair.pump()
    assert events[-1] == (1, EndOfMessage((("grpc-timeout", "1S"),)))
    head = events[0][1]
    assert isinstance(head, RequestHead) and ("te", "trailers") in head.headers


def test_response_with_trailers_reaches_the_client_without_hop_by_hop_fields() -> None:
    pair = ServerPair()
    pair.client.send_headers(1, request(), end_stream=True)
    pair.pump()
    head = ResponseHead(
        200,
        "OK",
        (
            ("Content-Type", "application/grpc"),
            ("connection", "x-drop"),
            ("x-drop", "1"),
            ("keep-alive", "5"),
            ("transfer-encoding", "chunked"),
        ),
        "1.1",
        UnknownLength(),
    )
    pair.codec.send_response_head(1, head)
    assert pair.codec.send_data(1, b"payload") == 7
    pair.codec.send_end(1, (("grpc-status", "0"), ("grpc-message", "ok")))
    pair.pump()
    events = pair.take_client_events()
    response = next(e for e in events if isinstance(e, h2e.ResponseReceived))
    assert response.headers == [(":status", "200"), ("content-type", "application/grpc")]
    trailers = next(e for e in events if isinstance(e, h2e.TrailersReceived))
    assert trailers.headers == [("grpc-status", "0"), ("grpc-message", "ok")]
    assert any(isinstance(e, h2e.StreamEnded) for e in events)
    assert pair.codec.open_streams == 0


def test_no_body_response_ends_the_stream_and_send_end_is_then_a_no_op() -> None:
    pair = ServerPair()
    pair.client.send_headers(1, request(), end_stream=True)
    pair.pump()
    pair.codec.send_response_head(1, ResponseHead(204, "", (), "2", NoBody()))
    pair.codec.send_end(1)
    pair.pump()
    events = pair.take_client_events()
    assert [type(e) for e in events] == [h2e.ResponseReceived, h2e.StreamEnded]


def test_many_concurrent_streams_are_kept_apart() -> None:
    pair = ServerPair()
    ids = [1 + 2 * i for i in range(50)]
    for sid in ids:
        pair.client.send_headers(sid, request("POST", f"/{sid}"))
    for sid in reversed(ids):
        pair.client.send_data(sid, str(sid).encode(), end_stream=True)
    events = pair.pump()
    for sid in ids:
        mine = [e for s, e in events if s == sid]
        assert isinstance(mine[0], RequestHead) and mine[0].target == f"/{sid}"
        assert mine[1:] == [Data(str(sid).encode()), EndOfMessage()]
    for sid in ids:
        pair.codec.send_local_response(sid, 200, (), str(sid).encode())
    pair.pump()
    ended = {e.stream_id for e in pair.take_client_events() if isinstance(e, h2e.StreamEnded)}
    assert ended == set(ids)
    assert pair.codec.open_streams == 0


def test_unconsumed_body_holds_the_client_back_until_consumed() -> None:
    pair = ServerPair(initial_window=65_535, connection_window=65_535)
    pair.client.send_headers(1, request("POST"))
    pair.pump()
    big = b"x" * 200_000
    sent = 0
    window = pair.client.local_flow_control_window(1)
    for start in range(0, window, 16_384):
        pair.client.send_data(1, big[start : min(start + 16_384, window)])
    sent += window
    events = pair.pump()
    assert body_of(events, 1) == big[:window]
    assert pair.client.local_flow_control_window(1) == 0  # nothing consumed: no update
    assert pair.codec.unconsumed(1) == window
    while sent < len(big):
        pair.codec.consumed(1, pair.codec.unconsumed(1))
        pair.pump()
        window = min(pair.client.local_flow_control_window(1), len(big) - sent, 16_384)
        assert window > 0
        pair.client.send_data(1, big[sent : sent + window])
        sent += window
        pair.pump()
    pair.client.end_stream(1)
    assert pair.pump()[-1] == (1, EndOfMessage())


def test_send_data_accepts_what_the_window_allows_and_window_opened_resumes() -> None:
    pair = ServerPair()
    pair.client.update_settings({SettingCodes.INITIAL_WINDOW_SIZE: 10})
    pair.client.send_headers(1, request(), end_stream=True)
    pair.pump()
    pair.codec.send_response_head(1, ResponseHead(200, "", (), "2", FixedLength(25)))
    assert pair.codec.send_window(1) == 10
    assert pair.codec.send_data(1, b"a" * 25) == 10
    assert pair.codec.send_data(1, b"a" * 15) == 0
    pair.pump()
    got = sum(
        e.flow_controlled_length
        for e in pair.take_client_events()
        if isinstance(e, h2e.DataReceived)
    )
    assert got == 10
    pair.client.acknowledge_received_data(10, 1)
    pair.client.increment_flow_control_window(100, stream_id=1)
    events = pair.pump()
    assert (1, WindowOpened()) in events
    assert pair.codec.send_data(1, b"a" * 15) == 15
    pair.codec.send_end(1)
    pair.pump()
    assert any(isinstance(e, h2e.StreamEnded) for e in pair.take_client_events())


def test_client_reset_is_reported_and_releases_unconsumed_window() -> None:
    pair = ServerPair(connection_window=65_535)
    pair.client.send_headers(1, request("POST"))
    pair.client.send_data(1, b"z" * 1000)
    pair.pump()
    assert pair.codec.statistics().unconsumed_bytes == 1000
    pair.client.reset_stream(1, ErrorCode.CANCEL)
    events = pair.pump()
    assert events == [(1, StreamReset(ErrorCode.CANCEL, remote=True))]
    assert pair.codec.statistics().unconsumed_bytes == 0
    pair.codec.consumed(1, 1000)  # late call: clamped, harmless
    assert pair.codec.send_data(1, b"late") == 4  # stream gone: dropped silently


def test_client_goaway_lets_open_streams_finish() -> None:
    pair = ServerPair()
    pair.client.send_headers(1, request(), end_stream=True)
    pair.pump()
    pair.client.close_connection()
    assert pair.pump() == [(0, GoAwayReceived(0))]
    pair.codec.send_local_response(1, 200, (), b"still answered")
    assert pair.codec.bytes_to_send()


def test_graceful_goaway_refuses_newer_streams_and_finishes_older_ones() -> None:
    pair = ServerPair()
    pair.client.send_headers(1, request(), end_stream=True)
    pair.pump()
    pair.codec.goaway()
    pair.client.send_headers(3, request(), end_stream=True)  # in flight, crossing GOAWAY
    assert pair.codec.receive(pair.client.data_to_send()) == []
    pair.codec.send_local_response(1, 200)
    frames = parse_frames(pair.codec.bytes_to_send())
    assert [(type(f).__name__, f.stream_id) for f in frames] == [
        ("GoAwayFrame", 0),
        ("RstStreamFrame", 3),
        ("HeadersFrame", 1),
    ]
    assert frames[0].last_stream_id == 1 and frames[0].error_code == ErrorCode.NO_ERROR
    assert frames[1].error_code == ErrorCode.REFUSED_STREAM
    assert pair.codec.statistics().goaway_sent and pair.codec.open_streams == 0


def test_header_section_over_the_limit_is_431_stream_error() -> None:
    pair = ServerPair(max_header_bytes=1024)
    pair.client.send_headers(1, request(x_big="v" * 2000), end_stream=True)
    assert pair.pump() == [(1, ProtocolError(431, "header section larger than the limit"))]
    pair.codec.send_local_response(1, 431)
    pair.pump()
    events = pair.take_client_events()
    response = next(e for e in events if isinstance(e, h2e.ResponseReceived))
    assert response.headers[0] == (":status", "431")


def test_declared_body_over_the_limit_is_413_and_the_rest_is_cut_off() -> None:
    pair = ServerPair(max_body_bytes=10)
    pair.client.send_headers(1, request("POST", content_length="100"))
    pair.client.send_data(1, b"x" * 50)
    events = pair.pump()
    assert events == [(1, ProtocolError(413, "content-length larger than the limit"))]
    pair.codec.send_local_response(1, 413, (), b"too big")
    pair.pump()
    events = pair.take_client_events()
    assert any(isinstance(e, h2e.StreamReset) and e.error_code == 0 for e in events)
    assert pair.codec.statistics().unconsumed_bytes == 0


def test_streamed_body_over_the_limit_is_413() -> None:
    pair = ServerPair(max_body_bytes=10)
    pair.client.send_headers(1, request("POST"))
    pair.client.send_data(1, b"x" * 8)
    pair.client.send_data(1, b"x" * 8)
    events = pair.pump()
    assert events[1:] == [
        (1, Data(b"x" * 8)),
        (1, ProtocolError(413, "body larger than the limit")),
    ]


def test_connect_gets_501() -> None:
    pair = ServerPair()
    pair.client.send_headers(1, [(":method", "CONNECT"), (":authority", "h:443")])
    assert pair.pump() == [(1, ProtocolError(501, "CONNECT is not supported"))]


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        (request(path="/a b"), "invalid :path"),
        (request(path="a"), "invalid :path"),
        (request(content_length="5"), "content-length on a request without a body"),
        (request(x_y="1", **{"x(": "1"}), "invalid field name 'x('"),
    ],
)
def test_requests_an_http1_peer_could_misread_are_400(
    fields: list[tuple[str, str]], reason: str
) -> None:
    pair = ServerPair()
    pair.client.config.validate_outbound_headers = False
    pair.client.send_headers(1, fields, end_stream=True)
    assert pair.pump() == [(1, ProtocolError(400, reason))]


def test_authority_and_host_that_differ_end_the_connection() -> None:
    pair = ServerPair()
    pair.client.config.validate_outbound_headers = False
    pair.client.send_headers(1, request(host="other.example"), end_stream=True)
    events = pair.pump()
    assert isinstance(events[-1][1], ConnectionTerminated)
    assert events[-1][1].error_code == ErrorCode.PROTOCOL_ERROR


def test_local_response_body_waits_for_the_window() -> None:
    pair = ServerPair()
    pair.client.update_settings({SettingCodes.INITIAL_WINDOW_SIZE: 4})
    pair.client.send_headers(1, request(), end_stream=True)
    pair.pump()
    pair.codec.send_local_response(1, 404, (("content-type", "text/plain"),), b"not found")
    pair.pump()
    first = [e for e in pair.take_client_events() if isinstance(e, h2e.DataReceived)]
    assert b"".join(e.data for e in first) == b"not "
    events: list[h2e.Event] = []
    while not any(isinstance(e, h2e.StreamEnded) for e in events):
        pair.client.acknowledge_received_data(4, 1)  # h2 sends the WINDOW_UPDATE
        pair.pump()
        events += pair.take_client_events()
    assert b"".join(e.data for e in events if isinstance(e, h2e.DataReceived)) == b"found"
    assert any(isinstance(e, h2e.StreamEnded) for e in events)


def test_peer_closing_the_transport_terminates_the_codec() -> None:
    pair = ServerPair()
    assert pair.codec.receive(b"") == [
        (0, ConnectionTerminated(0, "connection closed by the peer", remote=True))
    ]
    assert pair.codec.receive(b"more") == []


def test_send_side_misuse_raises_value_error() -> None:
    pair = ServerPair()
    pair.client.send_headers(1, request(), end_stream=True)
    pair.pump()
    with pytest.raises(ValueError):
        pair.codec.send_data(1, b"before head")
    with pytest.raises(ValueError):
        pair.codec.send_response_head(1, ResponseHead(101, "", (), "2", NoBody()))
    with pytest.raises(ValueError):
        pair.codec.send_response_head(99, ResponseHead(200, "", (), "2", NoBody()))


# --- h2c upgrade -----------------------------------------------------------------


def upgrade_request(settings: str) -> RequestHead:
    return RequestHead(
        "GET",
        "/up",
        (
            ("host", "example.com"),
            ("connection", "Upgrade, HTTP2-Settings"),
            ("upgrade", "h2c"),
            ("http2-settings", settings),
            ("accept", "*/*"),
        ),
        "1.1",
        NoBody(),
    )


def test_h2c_upgrade_round_trip_answers_the_first_request_on_stream_1() -> None:
    client = H2Connection(H2Configuration(client_side=True, header_encoding="utf-8"))
    header = client.initiate_upgrade_connection()
    assert header is not None
    settings = header.decode().rstrip("=")  # real clients send it without padding
    head = upgrade_request(settings)
    assert h2c_upgrade_settings(head) == settings
    codec = Http2ServerCodec()
    first = codec.initiate_upgrade(settings, head)
    assert first == [
        (1, RequestHead("GET", "/up", (("host", "example.com"), ("accept", "*/*")), "2", NoBody())),
        (1, EndOfMessage()),
    ]
    codec.send_local_response(1, 200, (), b"upgraded")
    wire = codec.bytes_to_send()
    switching, _, h2_bytes = wire.partition(b"\r\n\r\n")
    assert switching.startswith(b"HTTP/1.1 101 Switching Protocols")
    events = client.receive_data(h2_bytes)
    assert codec.receive(client.data_to_send()) == []
    events += client.receive_data(codec.bytes_to_send())
    data = b"".join(e.data for e in events if isinstance(e, h2e.DataReceived))
    assert data == b"upgraded"
    assert any(isinstance(e, h2e.StreamEnded) and e.stream_id == 1 for e in events)


@pytest.mark.parametrize(
    "head",
    [
        RequestHead("GET", "/", (("upgrade", "h2c"),), "1.1", NoBody()),
        RequestHead(
            "POST",
            "/",
            (
                ("connection", "upgrade, http2-settings"),
                ("upgrade", "h2c"),
                ("http2-settings", ""),
            ),
            "1.1",
            FixedLength(3),
        ),
    ],
)
def test_unacceptable_upgrade_requests_are_not_upgraded(head: RequestHead) -> None:
    assert h2c_upgrade_settings(head) is None
    with pytest.raises(ValueError):
        Http2ServerCodec().initiate_upgrade("", head)


def test_garbage_http2_settings_is_refused() -> None:
    bad = base64.urlsafe_b64encode(b"\x00\x04\x00").decode()
    with pytest.raises(ValueError):
        Http2ServerCodec().initiate_upgrade(bad, upgrade_request(bad))
