"""Http1ClientCodec: canonical request serialisation, strict reading of upstream bytes."""

from __future__ import annotations

import pytest

from gwcore.protocol import (
    Data,
    EndOfMessage,
    FixedLength,
    Http1ClientCodec,
    NoBody,
    ProtocolError,
    RequestHead,
    ResponseHead,
    UnknownLength,
)

GET = RequestHead("GET", "/x", (("host", "up"),), "1.1", NoBody())


def test_request_framing_headers_are_regenerated_from_the_framing() -> None:
    client = Http1ClientCodec()
    head = RequestHead(
        "POST", "/", (("host", "up"), ("content-length", "3"), ("transfer-encoding", "chunked")),
        "1.0", UnknownLength(),
    )  # fmt: skip
    wire = client.send_request(head) + client.send_data(b"abc") + client.send_end()
    assert wire == (
        b"POST / HTTP/1.1\r\nhost: up\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
    )


def test_response_with_content_length_is_read_and_connection_is_reusable() -> None:
    client = Http1ClientCodec()
    client.send_request(GET)
    client.send_end()
    messages = client.receive(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi")
    assert messages == [
        ResponseHead(200, "OK", (("content-length", "2"),), "1.1", FixedLength(2)),
        Data(b"hi"),
        EndOfMessage(),
    ]
    assert client.reusable
    client.send_request(GET)


def test_interim_responses_precede_the_final_one() -> None:
    client = Http1ClientCodec()
    client.send_request(GET)
    messages = client.receive(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n")
    assert [m.status for m in messages if isinstance(m, ResponseHead)] == [100, 204]
    assert messages[-1] == EndOfMessage()


def test_close_delimited_response_ends_at_eof_and_is_not_reusable() -> None:
    client = Http1ClientCodec()
    client.send_request(GET)
    client.send_end()
    messages = client.receive(b"HTTP/1.1 200 OK\r\n\r\nabc") + client.receive(b"")
    assert messages[0] == ResponseHead(200, "OK", (), "1.1", UnknownLength())
    assert b"".join(m.data for m in messages if isinstance(m, Data)) == b"abc"
    assert messages[-1] == EndOfMessage()
    assert not client.reusable


def test_response_to_head_has_no_body() -> None:
    client = Http1ClientCodec()
    client.send_request(RequestHead("HEAD", "/", (("host", "up"),), "1.1", NoBody()))
    messages = client.receive(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n")
    assert messages[-1] == EndOfMessage()


@pytest.mark.parametrize(
    "raw",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
        b"HTTP/1.1 200 OK\r\n Transfer-Encoding: chunked\r\n\r\n",
        b"HTTP/1.1 200 OK\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n",
        b"HTTP/1.1 204 No Content\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"HTTP/2.0 200 OK\r\n\r\n",
        b"ICY 200 OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5 \r\nhello\r\n0\r\n\r\n",
    ],
)
def test_ambiguous_or_malformed_upstream_responses_become_502(raw: bytes) -> None:
    client = Http1ClientCodec()
    client.send_request(GET)
    messages = client.receive(raw)
    assert isinstance(messages[-1], ProtocolError) and messages[-1].status == 502
    assert client.receive(b"more") == []


def test_bytes_after_the_response_or_before_a_request_are_refused() -> None:
    idle = Http1ClientCodec()
    assert idle.receive(b"HTTP/1.1 200 OK\r\n\r\n") == [
        ProtocolError(502, "upstream sent bytes outside a response")
    ]
    client = Http1ClientCodec()
    client.send_request(GET)
    messages = client.receive(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\nHTTP/1.1 200 OK")
    assert isinstance(messages[-1], ProtocolError) and messages[-1].status == 502


def test_oversized_upstream_head_is_502() -> None:
    client = Http1ClientCodec(max_header_bytes=100)
    client.send_request(GET)
    messages = client.receive(b"HTTP/1.1 200 OK\r\nX: " + b"a" * 200)
    assert messages == [ProtocolError(502, "head larger than the limit")]


def test_connect_is_not_sent() -> None:
    with pytest.raises(ValueError):
        Http1ClientCodec().send_request(
            RequestHead("CONNECT", "x:443", (("host", "x:443"),), "1.1", NoBody())
        )
