"""Properties of the HTTP/1.1 server codec under arbitrary input (hypothesis).

h11's fuzz contract, tightened: any byte stream yields well-formed messages, ending in
at most one ProtocolError, and never raises. How the stream is split into reads never
changes the outcome, and pipelined requests come out one at a time, in order.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gwcore.protocol import (
    Data,
    EndOfMessage,
    Http1ClientCodec,
    Http1ServerCodec,
    NoBody,
    ProtocolError,
    RequestHead,
    RequestMessage,
)

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def normalise(messages: list[RequestMessage]) -> list[RequestMessage]:
    """Merge adjacent Data pieces: their boundaries carry no meaning."""
    out: list[RequestMessage] = []
    for message in messages:
        if isinstance(message, Data):
            if not message.data:
                continue
            if out and isinstance(out[-1], Data):
                out[-1] = Data(out[-1].data + message.data)
                continue
        out.append(message)
    return out


def drive(chunks: list[bytes], eof: bool = True) -> list[RequestMessage]:
    """Feed ``chunks``, answering every complete request with 200 as soon as it ends."""
    codec = Http1ServerCodec(max_header_bytes=300, max_body_bytes=80)
    out: list[RequestMessage] = []

    def absorb(messages: list[RequestMessage]) -> None:
        out.extend(messages)
        while codec.request_complete:
            codec.send_local_response(200)
            out.extend(codec.response_done())

    for chunk in chunks:
        absorb(codec.receive(chunk))
    if eof:
        absorb(codec.receive(b""))
    return normalise(out)


def assert_well_formed(messages: list[RequestMessage]) -> None:
    errors = [i for i, m in enumerate(messages) if isinstance(m, ProtocolError)]
    assert errors in ([], [len(messages) - 1]), messages
    in_message = False
    for message in messages:
        if isinstance(message, RequestHead):
            assert not in_message
            in_message = True
        elif isinstance(message, Data | EndOfMessage):
            assert in_message
            in_message = not isinstance(message, EndOfMessage)
        else:
            assert isinstance(message, ProtocolError)
            assert message.status in {400, 413, 431, 501, 505}


VALID_REQUESTS = [
    b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET /x?y=1 HTTP/1.0\r\n\r\n",
    b"POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello",
    b"PUT /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"3;x=y\r\nabc\r\n2\r\nde\r\n0\r\nT: v\r\n\r\n",
    b"OPTIONS * HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    b"DELETE http://a/b HTTP/1.1\r\nHost: a\r\nTE: trailers\r\n\r\n",
]

valid_request = st.sampled_from(VALID_REQUESTS)
pipeline = st.lists(valid_request, min_size=1, max_size=4).map(b"".join)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(pipeline))
    for _ in range(draw(st.integers(1, 4))):
        position = draw(st.integers(0, len(data)))
        action = draw(st.sampled_from(["insert", "delete", "replace"]))
        byte = draw(st.sampled_from([0, 9, 10, 13, 32, 44, 58, 59, 48, 255, *b"aZ/ -"]))
        if action == "insert":
            data.insert(position, byte)
        elif position < len(data):
            if action == "delete":
                del data[position]
            else:
                data[position] = byte
    return bytes(data)


any_stream = st.one_of(st.binary(max_size=400), mutated(), pipeline)


def splits(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    pieces = [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]
    return [piece for piece in pieces if piece]  # b"" would mean EOF


@SETTINGS
@given(any_stream)
def test_any_input_gives_well_formed_messages_and_never_raises(data: bytes) -> None:
    assert_well_formed(drive([data]))


@SETTINGS
@given(any_stream)
def test_byte_by_byte_equals_all_at_once(data: bytes) -> None:
    once = drive([data])
    assert drive([data[i : i + 1] for i in range(len(data))]) == once


@SETTINGS
@given(any_stream, st.lists(st.integers(0, 1000), max_size=6))
def test_split_points_never_change_the_result(data: bytes, cuts: list[int]) -> None:
    assert drive(splits(data, cuts)) == drive([data])


@SETTINGS
@given(st.lists(valid_request, min_size=1, max_size=5))
def test_pipelined_requests_come_out_one_at_a_time_in_order(requests: list[bytes]) -> None:
    codec = Http1ServerCodec()
    delivered: list[str] = []
    pending = codec.receive(b"".join(requests))
    while True:
        heads = [m for m in pending if isinstance(m, RequestHead)]
        assert len(heads) <= 1, "a second request was released before the response"
        delivered += [h.target for h in heads]
        assert not any(isinstance(m, ProtocolError) for m in pending)
        if not codec.request_complete:
            break
        keep_alive = codec.keep_alive
        codec.send_local_response(200)
        pending = codec.response_done()
        if not keep_alive:
            break
    expected: list[str] = []
    for raw in requests:
        expected.append(raw.split(b" ")[1].decode())
        if b"HTTP/1.0" in raw.split(b"\r\n")[0] or b"Connection: close" in raw:
            break
    assert delivered == expected


@SETTINGS
@given(st.binary(max_size=300), st.lists(st.integers(0, 1000), max_size=4))
def test_client_codec_never_raises_on_upstream_bytes(data: bytes, cuts: list[int]) -> None:
    def run(chunks: list[bytes]) -> list[object]:
        client = Http1ClientCodec(max_header_bytes=200)
        client.send_request(RequestHead("GET", "/", (("host", "u"),), "1.1", NoBody()))
        out: list[object] = []
        for chunk in [*chunks, b""]:
            out.extend(client.receive(chunk))
        errors = [m for m in out if isinstance(m, ProtocolError)]
        assert errors in ([], [out[-1]])
        assert all(e.status == 502 for e in errors)
        return [m for m in out if not isinstance(m, Data)] + [
            b"".join(m.data for m in out if isinstance(m, Data))
        ]

    assert run(splits(b"HTTP/1.1 200 OK\r\n" + data, cuts)) == run([b"HTTP/1.1 200 OK\r\n" + data])
