"""Http2ClientCodec driven against a real h2 server: request mapping, responses,
trailers, concurrency, flow control, resets and GOAWAY (refused streams)."""

from __future__ import annotations

import pytest
from h2 import events as h2e
from h2.settings import SettingCodes
from hpack import Encoder
from hyperframe.frame import DataFrame, HeadersFrame
from test_http2_support import ClientPair

from gwcore.protocol.http2 import (
    ConnectionTerminated,
    ErrorCode,
    GoAwayReceived,
    StreamReset,
    WindowOpened,
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


def get(target: str = "/", *headers: tuple[str, str], method: str = "GET") -> RequestHead:
    return RequestHead(method, target, (("host", "api.internal"), *headers), "1.1", NoBody())


def test_request_head_becomes_pseudo_headers_without_connection_fields() -> None:
    pair = ClientPair()
    head = get(
        "/v1/items?x=1",
        ("Connection", "keep-alive, x-hop"),
        ("keep-alive", "timeout=5"),
        ("x-hop", "1"),
        ("te", "trailers, deflate"),
        ("upgrade", "websocket"),
        ("x-keep", "yes"),
    )
    sid = pair.codec.send_request(head)
    pair.pump()
    received = next(e for e in pair.take_server_events() if isinstance(e, h2e.RequestReceived))
    assert received.stream_id == sid == 1
    assert received.headers == [
        (":method", "GET"),
        (":scheme", "https"),
        (":authority", "api.internal"),
        (":path", "/v1/items?x=1"),
        ("te", "trailers"),
        ("x-keep", "yes"),
    ]
    assert received.stream_ended is not None


def test_absolute_form_target_supplies_scheme_and_authority() -> None:
    pair = ClientPair()
    head = RequestHead("GET", "http://other.example:8080/p?q", (), "1.1", NoBody())
    pair.codec.send_request(head)
    pair.pump()
    received = next(e for e in pair.take_server_events() if isinstance(e, h2e.RequestReceived))
    assert received.headers[:4] == [
        (":method", "GET"),
        (":scheme", "http"),
        (":authority", "other.example:8080"),
        (":path", "/p?q"),
    ]


def test_response_with_body_and_trailers_comes_back_in_order() -> None:
    pair = ClientPair()
    body_head = RequestHead("POST", "/rpc", (("host", "g"),), "1.1", FixedLength(5))
    sid = pair.codec.send_request(body_head)
    assert pair.codec.send_data(sid, b"\x00" * 5) == 5
    pair.codec.send_end(sid)
    pair.pump()
    server_events = pair.take_server_events()
    assert b"".join(e.data for e in server_events if isinstance(e, h2e.DataReceived)) == b"\x00" * 5
    assert ("content-length", "5") in next(
        e for e in server_events if isinstance(e, h2e.RequestReceived)
    ).headers
    pair.server.send_headers(sid, [(":status", "200"), ("content-type", "application/grpc")])
    pair.server.send_data(sid, b"reply")
    pair.server.send_headers(sid, [("grpc-status", "0")], end_stream=True)
    assert pair.pump() == [
        (sid, ResponseHead(200, "", (("content-type", "application/grpc"),), "2", UnknownLength())),
        (sid, Data(b"reply")),
        (sid, EndOfMessage((("grpc-status", "0"),))),
    ]


def test_request_trailers_are_sent() -> None:
    pair = ClientPair()
    sid = pair.codec.send_request(
        RequestHead("POST", "/", (("host", "g"), ("te", "trailers")), "1.1", UnknownLength())
    )
    pair.codec.send_data(sid, b"abc")
    pair.codec.send_end(sid, (("x-checksum", "1"),))
    pair.pump()
    trailers = next(e for e in pair.take_server_events() if isinstance(e, h2e.TrailersReceived))
    assert trailers.headers == [("x-checksum", "1")]


def test_interim_response_has_no_end_and_head_response_has_no_body() -> None:
    pair = ClientPair()
    sid = pair.codec.send_request(get(method="HEAD"))
    pair.pump()
    pair.server.send_headers(sid, [(":status", "103"), ("link", "</a>")])
    pair.server.send_headers(sid, [(":status", "200"), ("content-length", "42")], end_stream=True)
    assert pair.pump() == [
        (sid, ResponseHead(103, "", (("link", "</a>"),), "2", NoBody())),
        (sid, ResponseHead(200, "", (("content-length", "42"),), "2", NoBody())),
        (sid, EndOfMessage()),
    ]


def test_many_concurrent_requests_and_the_peer_stream_limit() -> None:
    pair = ClientPair()
    pair.server.update_settings({SettingCodes.MAX_CONCURRENT_STREAMS: 5})
    pair.pump()
    assert pair.codec.max_concurrent_streams == 5
    ids = [pair.codec.send_request(get(f"/{i}")) for i in range(5)]
    assert pair.codec.available_streams == 0
    with pytest.raises(ValueError):
        pair.codec.send_request(get("/6"))
    pair.pump()
    for sid in reversed(ids):
        pair.server.send_headers(sid, [(":status", "200")])
        pair.server.send_data(sid, str(sid).encode(), end_stream=True)
    events = pair.pump()
    for sid in ids:
        assert [e for s, e in events if s == sid][1:] == [Data(str(sid).encode()), EndOfMessage()]
    assert pair.codec.available_streams == 5


def test_response_body_is_acknowledged_only_when_consumed() -> None:
    pair = ClientPair(connection_window=65_535)
    sid = pair.codec.send_request(get())
    pair.pump()
    pair.server.send_headers(sid, [(":status", "200")])
    sent = 0
    while pair.server.local_flow_control_window(sid):
        chunk = min(16_384, pair.server.local_flow_control_window(sid))
        pair.server.send_data(sid, b"d" * chunk)
        sent += chunk
    pair.pump()
    assert pair.codec.unconsumed(sid) == sent == 65_535
    assert pair.server.local_flow_control_window(sid) == 0
    pair.codec.consumed(sid, 40_000)
    pair.pump()
    assert pair.server.local_flow_control_window(sid) > 0


def test_send_data_is_partial_when_the_server_window_is_small() -> None:
    pair = ClientPair()
    pair.server.update_settings({SettingCodes.INITIAL_WINDOW_SIZE: 3})
    pair.pump()
    sid = pair.codec.send_request(RequestHead("PUT", "/", (("host", "g"),), "1.1", UnknownLength()))
    assert pair.codec.send_data(sid, b"abcdef") == 3
    pair.pump()
    pair.server.acknowledge_received_data(3, sid)  # h2 grants the window again
    events = pair.pump()
    assert (sid, WindowOpened()) in events
    assert pair.codec.send_data(sid, b"def") == 3


def test_server_reset_is_reported() -> None:
    pair = ClientPair()
    sid = pair.codec.send_request(get())
    pair.pump()
    pair.server.reset_stream(sid, ErrorCode.REFUSED_STREAM)
    events = pair.pump()
    assert events == [(sid, StreamReset(ErrorCode.REFUSED_STREAM, remote=True))]
    reset = events[0][1]
    assert isinstance(reset, StreamReset) and reset.refused


def test_graceful_goaway_refuses_streams_above_last_and_finishes_the_rest() -> None:
    pair = ClientPair()
    first = pair.codec.send_request(get("/a"))
    pair.pump()
    second = pair.codec.send_request(get("/b"))  # the server will not process this one
    pair.server.close_connection(last_stream_id=first)
    events = pair.codec.receive(pair.server.data_to_send())
    assert events == [
        (second, StreamReset(ErrorCode.REFUSED_STREAM, remote=True)),
        (0, GoAwayReceived(first)),
    ]
    assert pair.codec.available_streams == 0
    with pytest.raises(ValueError):
        pair.codec.send_request(get("/c"))
    # The server (h2 is closed after its GOAWAY) still answers stream 1 on the wire.
    headers = HeadersFrame(first, Encoder().encode([(":status", "200")]), flags=["END_HEADERS"])
    data = DataFrame(first, b"ok", flags=["END_STREAM"])
    events = pair.codec.receive(headers.serialize() + data.serialize())
    assert events == [
        (first, ResponseHead(200, "", (), "2", UnknownLength())),
        (first, Data(b"ok")),
        (first, EndOfMessage()),
    ]


def test_error_goaway_terminates() -> None:
    pair = ClientPair()
    pair.codec.send_request(get())
    pair.pump()
    pair.server.close_connection(error_code=ErrorCode.ENHANCE_YOUR_CALM)
    events = pair.pump()
    assert events == [
        (
            0,
            ConnectionTerminated(
                ErrorCode.ENHANCE_YOUR_CALM, "peer sent GOAWAY with an error", True
            ),
        )
    ]
    assert pair.codec.available_streams == 0


def test_malformed_response_is_502_and_the_stream_is_reset() -> None:
    pair = ClientPair(max_header_bytes=256)
    sid = pair.codec.send_request(get())
    pair.pump()
    pair.server.send_headers(sid, [(":status", "200"), ("x-big", "v" * 500)])
    events = pair.pump()
    assert events == [(sid, ProtocolError(502, "response header section larger than the limit"))]
    reset = [e for e in pair.take_server_events() if isinstance(e, h2e.StreamReset)]
    assert reset and reset[0].error_code == ErrorCode.PROTOCOL_ERROR


def test_connect_and_unsendable_targets_raise() -> None:
    pair = ClientPair()
    with pytest.raises(ValueError):
        pair.codec.send_request(get(method="CONNECT"))
    with pytest.raises(ValueError):
        pair.codec.send_request(RequestHead("GET", "not-a-url", (), "1.1", NoBody()))
