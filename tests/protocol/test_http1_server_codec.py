"""Http1ServerCodec: strict framing, limits, pipelining, keep-alive and the send side."""

from __future__ import annotations

import pytest

from gwcore.protocol import (
    Data,
    EndOfMessage,
    FixedLength,
    Http1ServerCodec,
    NoBody,
    ProtocolError,
    RequestHead,
    RequestMessage,
    ResponseHead,
    UnknownLength,
)


def body_of(messages: list[RequestMessage]) -> bytes:
    return b"".join(m.data for m in messages if isinstance(m, Data))


def error_of(messages: list[RequestMessage]) -> ProtocolError:
    assert messages and isinstance(messages[-1], ProtocolError), messages
    return messages[-1]


def test_simple_get_becomes_head_and_end() -> None:
    codec = Http1ServerCodec()
    messages = codec.receive(b"GET /a?b=1 HTTP/1.1\r\nHost: example.com\r\nX-Y:  z \r\n\r\n")
    assert messages == [
        RequestHead("GET", "/a?b=1", (("host", "example.com"), ("x-y", "z")), "1.1", NoBody()),
        EndOfMessage(),
    ]
    assert codec.keep_alive and codec.request_complete


def test_chunked_body_with_trailers_is_decoded() -> None:
    codec = Http1ServerCodec()
    messages = codec.receive(
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5;name=value\r\nhello\r\n6\r\n world\r\n0\r\nX-Sum: 1\r\n\r\n"
    )
    assert isinstance(messages[0], RequestHead) and messages[0].body == UnknownLength()
    assert body_of(messages) == b"hello world"
    assert messages[-1] == EndOfMessage((("x-sum", "1"),))


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n",
            400,
        ),
        (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1, 1\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +1\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501),
        (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: Chunked\r\n\r\n", 400),
        (
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n",
            400,
        ),
        (b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: x\r\nX: a\r\n b\r\n\r\n", 400),  # obs-fold
        (b"GET / HTTP/1.1\nHost: x\r\n\r\n", 400),  # bare LF
        (b"GET / HTTP/1.1\r\nHost: x\rY: z\r\n\r\n", 400),  # bare CR
        (b"GET / HTTP/1.1\r\nHost : x\r\n\r\n", 400),  # whitespace before colon
        (b"GET / HTTP/1.1\r\nHost: x\r\nX: a\x00b\r\n\r\n", 400),  # NUL in value
        (b"GET / HTTP/1.1\r\nHost: x\r\nX(y): z\r\n\r\n", 400),  # invalid name
        (b"GET /a#frag HTTP/1.1\r\nHost: x\r\n\r\n", 400),
        (b"GET a/b HTTP/1.1\r\nHost: x\r\n\r\n", 400),
        (b"GET * HTTP/1.1\r\nHost: x\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\n\r\n", 400),  # no Host
        (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400),
        (b"GET / HTTP/2.0\r\nHost: x\r\n\r\n", 505),
        (b"BREW / HTTP/1.1\r\nHost: x\r\n\r\n", 501),
        (b"CONNECT x:443 HTTP/1.1\r\nHost: x:443\r\n\r\n", 501),
    ],
)
def test_ambiguous_or_malformed_requests_are_refused(raw: bytes, status: int) -> None:
    codec = Http1ServerCodec()
    assert error_of(codec.receive(raw)).status == status
    assert not codec.keep_alive
    assert codec.receive(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n") == []


@pytest.mark.parametrize(
    "chunks",
    [
        b"5 \r\nhello\r\n0\r\n\r\n",  # whitespace after the size
        b"5\r\nhelloXX0\r\n\r\n",  # no CRLF after data
        b"5\nhello\r\n0\r\n\r\n",  # bare LF
        b"-5\r\nhello\r\n0\r\n\r\n",
        b"0x5\r\nhello\r\n0\r\n\r\n",
        b"5;\r\nhello\r\n0\r\n\r\n",  # empty extension
        b"11111111111111111\r\n",  # 17 hex digits
        b"0\r\nContent-Length: 5\r\n\r\n",  # framing field in trailers
        b"0\r\nX: a\r\n b\r\n\r\n",  # obs-fold in trailers
    ],
)
def test_invalid_chunked_bodies_are_refused(chunks: bytes) -> None:
    codec = Http1ServerCodec()
    head = b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    assert error_of(codec.receive(head + chunks)).status == 400


def test_oversized_head_gets_431() -> None:
    codec = Http1ServerCodec(max_header_bytes=1024)
    messages = codec.receive(b"GET / HTTP/1.1\r\nHost: x\r\nX: " + b"a" * 2000)
    assert error_of(messages).status == 431


def test_head_exactly_at_the_limit_is_accepted() -> None:
    head = b"GET / HTTP/1.1\r\nHost: x\r\nX: "
    head += b"a" * (200 - len(head) - 4) + b"\r\n\r\n"
    assert len(head) == 200
    messages = Http1ServerCodec(max_header_bytes=200).receive(head)
    assert isinstance(messages[0], RequestHead)
    assert error_of(Http1ServerCodec(max_header_bytes=199).receive(head)).status == 431


def test_content_length_above_the_body_limit_gets_413_up_front() -> None:
    codec = Http1ServerCodec(max_body_bytes=10)
    messages = codec.receive(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\n")
    assert messages == [ProtocolError(413, "Content-Length larger than the limit")]


def test_chunked_body_crossing_the_limit_gets_413_when_it_crosses() -> None:
    codec = Http1ServerCodec(max_body_bytes=10)
    head = b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    first = codec.receive(head + b"6\r\nabcdef\r\n")
    assert body_of(first) == b"abcdef" and not any(isinstance(m, ProtocolError) for m in first)
    assert error_of(codec.receive(b"5\r\n")).status == 413


def test_pipelined_request_is_held_until_the_response_is_done() -> None:
    codec = Http1ServerCodec()
    first = codec.receive(b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\nGET /2 HTTP/1.1\r\nHost: x\r\n\r\n")
    assert [type(m) for m in first] == [RequestHead, EndOfMessage]
    assert codec.receive(b"GET /3 HTTP/1.1\r\nHost: x\r\n\r\n") == []
    wire = codec.send_response_head(ResponseHead(200, "", (), "1.1", FixedLength(2)))
    wire += codec.send_data(b"ok") + codec.send_end()
    assert wire.startswith(b"HTTP/1.1 200 OK\r\n")
    second = codec.response_done()
    assert isinstance(second[0], RequestHead) and second[0].target == "/2"
    codec.send_local_response(404)
    third = codec.response_done()
    assert isinstance(third[0], RequestHead) and third[0].target == "/3"


def test_connection_close_and_http10_turn_keep_alive_off() -> None:
    close = Http1ServerCodec()
    close.receive(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\nGET / HTTP/1.1\r\n")
    assert not close.keep_alive
    assert b"connection: close" in close.send_local_response(200).lower()
    assert close.response_done() == []
    old = Http1ServerCodec()
    old.receive(b"GET / HTTP/1.0\r\n\r\n")
    assert not old.keep_alive


def test_unknown_length_response_is_chunked_for_11_and_close_delimited_for_10() -> None:
    for version, chunked in ((b"1.1", True), (b"1.0", False)):
        codec = Http1ServerCodec()
        codec.receive(b"GET / HTTP/" + version + b"\r\nHost: x\r\n\r\n")
        wire = codec.send_response_head(ResponseHead(200, "", (), "1.1", UnknownLength()))
        wire += codec.send_data(b"abc") + codec.send_end()
        assert (b"Transfer-Encoding: chunked" in wire) is chunked
        assert wire.endswith(b"3\r\nabc\r\n0\r\n\r\n" if chunked else b"abc")


def test_trailers_are_sent_only_to_clients_that_accept_them() -> None:
    trailers = (("grpc-status", "0"),)
    for te, expected in ((b"TE: trailers\r\n", True), (b"", False)):
        codec = Http1ServerCodec()
        codec.receive(b"POST / HTTP/1.1\r\nHost: x\r\n" + te + b"Content-Length: 0\r\n\r\n")
        codec.send_response_head(ResponseHead(200, "OK", (), "1.1", UnknownLength()))
        assert (b"grpc-status: 0" in codec.send_end(trailers)) is expected


def test_reason_phrase_is_filled_and_framing_headers_come_from_the_framing() -> None:
    codec = Http1ServerCodec()
    codec.receive(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    head = ResponseHead(
        404, "", (("content-length", "999"), ("transfer-encoding", "chunked")), "1.1",
        FixedLength(3),
    )  # fmt: skip
    wire = codec.send_response_head(head)
    assert wire.startswith(b"HTTP/1.1 404 Not Found\r\n")
    assert b"content-length: 3" in wire.lower() and b"999" not in wire
    assert b"transfer-encoding" not in wire.lower()


def test_local_response_after_a_protocol_error_closes() -> None:
    codec = Http1ServerCodec()
    (error,) = codec.receive(b"GET / HTTP/1.1\r\nHost : x\r\n\r\n")
    assert isinstance(error, ProtocolError)
    wire = codec.send_local_response(error.status, (), b"bad request")
    assert wire.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert b"connection: close" in wire.lower() and wire.endswith(b"\r\n\r\nbad request")


def test_early_response_before_the_body_is_read_closes_the_connection() -> None:
    codec = Http1ServerCodec()
    codec.receive(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc")
    wire = codec.send_local_response(401)
    assert b"connection: close" in wire.lower()
    assert codec.response_done() == [] and not codec.keep_alive


def test_eof_inside_a_body_is_an_error_and_between_requests_is_not() -> None:
    codec = Http1ServerCodec()
    codec.receive(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nab")
    assert error_of(codec.receive(b"")).status == 400
    idle = Http1ServerCodec()
    assert idle.receive(b"") == []


def test_sending_more_than_the_announced_length_is_a_local_error() -> None:
    codec = Http1ServerCodec()
    codec.receive(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    codec.send_response_head(ResponseHead(200, "OK", (), "1.1", FixedLength(1)))
    with pytest.raises(ValueError):
        codec.send_data(b"too much")


def test_stray_crlf_between_pipelined_requests_is_ignored() -> None:
    codec = Http1ServerCodec()
    codec.receive(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nok\r\n")
    codec.send_local_response(204)
    messages = codec.response_done() + codec.receive(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert isinstance(messages[0], RequestHead)
