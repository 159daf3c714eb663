"""Frame-level conformance: h2spec's server cases, replayed with hand-built frames.

Each row names an h2spec case id (/work/shared/vectors/h2spec-cases/h2spec-cases.txt)
and what RFC 9113/7541 requires of the server:

* ``conn``: a connection error: GOAWAY with one of the codes, codec terminated;
* ``stream``: a stream error: RST_STREAM with one of the codes, or (RFC 9113 §5.4.1
  lets any stream error be escalated, and h2spec accepts it) GOAWAY with one;
* ``ok``: the frame is accepted; the connection still answers a PING.

``receive`` must never raise, whatever the row. The second test asserts which case ids
the table covers, so dropping a row is a visible decision.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hpack import Encoder
from hyperframe.frame import GoAwayFrame, PingFrame, RstStreamFrame, SettingsFrame
from test_http2_support import parse_frames

from gwcore.protocol.http2 import ConnectionTerminated, ErrorCode, Http2ServerCodec
from gwcore.protocol.http2_frames import PREFACE
from gwcore.protocol.messages import RequestHead

DATA, HEADERS, PRIORITY, RST, SETTINGS, PUSH, PING, GOAWAY, WINDOW, CONT = (
    0x0,
    0x1,
    0x2,
    0x3,
    0x4,
    0x5,
    0x6,
    0x7,
    0x8,
    0x9,
)
END_STREAM, ACK, END_HEADERS, PADDED, PRIO = 0x1, 0x1, 0x4, 0x8, 0x20

E = ErrorCode


def frame(kind: int, flags: int, stream_id: int, payload: bytes = b"") -> bytes:
    """A raw frame, unvalidated (hyperframe refuses to build most broken ones)."""
    return (
        len(payload).to_bytes(3, "big")
        + bytes([kind, flags])
        + stream_id.to_bytes(4, "big")
        + payload
    )


def setting(ident: int, value: int) -> bytes:
    return ident.to_bytes(2, "big") + value.to_bytes(4, "big")


@dataclass
class Peer:
    """A scripted client talking to a server codec after a correct handshake."""

    codec: Http2ServerCodec = field(default_factory=Http2ServerCodec)
    encoder: Encoder = field(default_factory=Encoder)
    events: list[tuple[int, object]] = field(default_factory=list)

    def handshake(self) -> None:
        self.codec.initiate()
        self.send(PREFACE + frame(SETTINGS, 0, 0) + frame(SETTINGS, ACK, 0))
        self.codec.bytes_to_send()
        self.events.clear()

    def send(self, data: bytes) -> None:
        self.events += self.codec.receive(data)

    def block(self, fields: list[tuple[str, str]]) -> bytes:
        return self.encoder.encode(fields)

    def get(self, stream_id: int = 1, flags: int = END_STREAM | END_HEADERS, **extra: str) -> bytes:
        fields = [(":method", "GET"), (":scheme", "http"), (":path", "/")]
        fields += [
            (":authority", "localhost"),
            *((k.replace("_", "-"), v) for k, v in extra.items()),
        ]
        return frame(HEADERS, flags, stream_id, self.block(fields))

    def post(self, stream_id: int = 1, **extra: str) -> bytes:
        fields = [(":method", "POST"), (":scheme", "http"), (":path", "/")]
        fields += [
            (":authority", "localhost"),
            *((k.replace("_", "-"), v) for k, v in extra.items()),
        ]
        return frame(HEADERS, END_HEADERS, stream_id, self.block(fields))

    def answered_get(self, stream_id: int = 1) -> bytes:
        """Send a GET now and answer it completely: the stream ends up closed."""
        self.send(self.get(stream_id))
        self.codec.send_local_response(stream_id, 204)
        self.codec.bytes_to_send()
        return b""

    def raw_request(
        self, fields: list[tuple[str, str]], flags: int = END_STREAM | END_HEADERS
    ) -> bytes:
        return frame(HEADERS, flags, 1, self.block(fields))


Script = Callable[[Peer], bytes]
BASE = [(":method", "GET"), (":scheme", "http"), (":path", "/"), (":authority", "localhost")]


@dataclass(frozen=True)
class Case:
    case_id: str
    script: Script
    outcome: str  # "conn" | "stream" | "ok"
    codes: tuple[int, ...] = ()
    stream_id: int = 1


def request_with(fields: list[tuple[str, str]]) -> Script:
    return lambda p: p.raw_request(fields)


CASES = [
    # --- generic --------------------------------------------------------------------
    Case("generic/1/1", lambda p: b"", "ok"),
    Case("generic/2/1", lambda p: frame(PRIORITY, 0, 3, b"\x00\x00\x00\x01\x0f"), "ok"),
    Case("generic/2/2", lambda p: p.get() + frame(WINDOW, 0, 1, b"\x00\x00\x00\x01"), "ok"),
    Case("generic/2/3", lambda p: p.get() + frame(PRIORITY, 0, 1, b"\x00\x00\x00\x00\x0f"), "ok"),
    Case("generic/2/4", lambda p: p.get() + frame(RST, 0, 1, b"\x00\x00\x00\x08"), "ok"),
    Case(
        "generic/3.1/3",
        lambda p: p.post() + frame(DATA, PADDED | END_STREAM, 1, b"\x03ab\0\0\0"),
        "ok",
    ),
    Case(
        "generic/3.2/2",
        lambda p: frame(
            HEADERS, PADDED | END_HEADERS | END_STREAM, 1, b"\x02" + p.block(BASE) + b"\0\0"
        ),
        "ok",
    ),
    Case(
        "generic/3.2/3",
        lambda p: frame(
            HEADERS, PRIO | END_HEADERS | END_STREAM, 1, b"\x00\x00\x00\x00\x0f" + p.block(BASE)
        ),
        "ok",
    ),
    Case(
        "generic/3.3/5", lambda p: frame(PRIORITY, 0, 5, b"\x00\x00\x00\x00\x0f") + p.get(3), "ok"
    ),
    Case("generic/3.5/1", lambda p: frame(SETTINGS, 0, 0, setting(0x3, 50)), "ok"),
    Case("generic/3.7/1", lambda p: frame(PING, 0, 0, b"12345678"), "ok"),
    Case("generic/3.9/1", lambda p: frame(WINDOW, 0, 0, b"\x00\x00\x00\x01"), "ok"),
    Case(
        "generic/3.10/2",
        lambda p: (
            lambda b: (
                frame(HEADERS, END_STREAM, 1, b[:3])
                + frame(CONT, 0, 1, b[3:6])
                + frame(CONT, END_HEADERS, 1, b[6:])
            )
        )(p.block(BASE)),
        "ok",
    ),
    Case(
        "generic/4/4",
        lambda p: (
            p.post(te="trailers")
            + frame(DATA, 0, 1, b"x")
            + frame(HEADERS, END_HEADERS | END_STREAM, 1, p.block([("x-t", "1")]))
        ),
        "ok",
    ),
    Case(
        "generic/5/1",
        lambda p: frame(HEADERS, END_HEADERS | END_STREAM, 1, b"\x82\x86\x84\x41\x09localhost"),
        "ok",
    ),
    Case(
        "generic/5/14",
        lambda p: frame(HEADERS, END_HEADERS | END_STREAM, 1, b"\x3f\xe1\x1f" + p.block(BASE)),
        "ok",
    ),
    # --- 3.5 preface, 4 frames --------------------------------------------------------
    Case("http2/4.1/1", lambda p: frame(0x16, 0, 0, b"unknown"), "ok"),
    Case("http2/4.1/2", lambda p: frame(PING, 0x16, 0, b"12345678"), "ok"),
    Case("http2/4.1/3", lambda p: frame(PING, 0, 0x80000000, b"12345678"), "ok"),
    Case("http2/4.2/1", lambda p: p.post() + frame(DATA, END_STREAM, 1, b"x" * 16384), "ok"),
    Case(
        "http2/4.2/2",
        lambda p: p.post() + frame(DATA, 0, 1, b"x" * 16385),
        "stream",
        (E.FRAME_SIZE_ERROR,),
    ),
    Case(
        "http2/4.2/3",
        lambda p: frame(HEADERS, END_HEADERS, 1, b"\x00" * 16385),
        "conn",
        (E.FRAME_SIZE_ERROR,),
    ),
    Case(
        "http2/4.3/1",
        lambda p: frame(HEADERS, END_HEADERS | END_STREAM, 1, b"\xff\xff\xff\xff"),
        "conn",
        (E.COMPRESSION_ERROR,),
    ),
    Case(
        "http2/4.3/2",
        lambda p: (
            frame(HEADERS, END_STREAM, 1, p.block(BASE))
            + frame(PRIORITY, 0, 1, b"\x00\x00\x00\x00\x0f")
        ),
        "conn",
        (E.PROTOCOL_ERROR,),
    ),
    Case(
        "http2/4.3/3",
        lambda p: frame(HEADERS, END_STREAM, 1, p.block(BASE)) + p.get(3),
        "conn",
        (E.PROTOCOL_ERROR,),
    ),
    # --- 5 streams --------------------------------------------------------------------
    Case(
        "http2/5.1/1",
        lambda p: frame(DATA, 0, 1, b"x"),
        "conn",
        (E.PROTOCOL_ERROR, E.STREAM_CLOSED),
    ),
    Case(
        "http2/5.1/2", lambda p: frame(RST, 0, 1, b"\x00\x00\x00\x08"), "conn", (E.PROTOCOL_ERROR,)
    ),
    Case(
        "http2/5.1/3",
        lambda p: frame(WINDOW, 0, 1, b"\x00\x00\x00\x01"),
        "conn",
        (E.PROTOCOL_ERROR,),
    ),
    Case(
        "http2/5.1/4",
        lambda p: frame(CONT, END_HEADERS, 1, p.block(BASE)),
        "conn",
        (E.PROTOCOL_ERROR,),
    ),
    Case("http2/5.1/5", lambda p: p.get() + frame(DATA, 0, 1, b"x"), "stream", (E.STREAM_CLOSED,)),
    Case("http2/5.1/6", lambda p: p.get() + p.get(), "stream", (E.STREAM_CLOSED,)),
    Case(
        "http2/5.1/7",
        lambda p: p.get() + frame(CONT, END_HEADERS, 1, p.block(BASE)),
        "conn",
        (E.PROTOCOL_ERROR, E.STREAM_CLOSED),
    ),
    Case(
        "http2/5.1/8",
        lambda p: p.post() + frame(RST, 0, 1, b"\x00\x00\x00\x08") + frame(DATA, 0, 1, b"x"),
        "stream",
        (E.STREAM_CLOSED,),
    ),
    Case(
        "http2/5.1/9",
        lambda p: p.post() + frame(RST, 0, 1, b"\x00\x00\x00\x08") + p.get(),
        "stream",
        (E.STREAM_CLOSED,),
    ),
    Case(
        "http2/5.1/11",
        lambda p: p.answered_get() + frame(DATA, 0, 1, b"x"),
        "stream",
        (E.STREAM_CLOSED,),
    ),
    Case("http2/5.1/12", lambda p: p.answered_get() + p.get(1), "conn", (E.STREAM_CLOSED,)),
    Case(
        "http2/5.1/13",
        lambda p: p.answered_get() + frame(CONT, END_HEADERS, 1, b"\x82"),
        "conn",
        (E.STREAM_CLOSED, E.PROTOCOL_ERROR),
    ),
    Case("http2/5.1.1/1", lambda p: p.get(2), "conn", (E.PROTOCOL_ERROR,)),
    Case("http2/5.1.1/2", lambda p: p.get(5) + p.get(3), "conn", (E.PROTOCOL_ERROR,)),
    Case(
        "http2/5.1.2/1",
        lambda p: b"".join(p.post(1 + 2 * i) for i in range(101)),
        "stream",
        (E.PROTOCOL_ERROR, E.REFUSED_STREAM),
        201,
    ),
    Case(
        "http2/5.3.1/1",
        lambda p: frame(
            HEADERS, PRIO | END_HEADERS | END_STREAM, 1, b"\x00\x00\x00\x01\x0f" + p.block(BASE)
        ),
        "stream",
        (E.PROTOCOL_ERROR,),
    ),
    Case(
        "http2/5.3.1/2",
        lambda p: frame(PRIORITY, 0, 1, b"\x00\x00\x00\x01\x0f"),
        "stream",
        (E.PROTOCOL_ERROR,),
    ),
    Case("http2/5.4.1/1", lambda p: frame(PING, 0, 0, b"123456"), "conn", (E.FRAME_SIZE_ERROR,)),
    Case("http2/5.5/1", lambda p: frame(0xFF, 0, 0, b"ext"), "ok"),
    Case(
        "http2/5.5/2",
        lambda p: frame(HEADERS, END_STREAM, 1, p.block(BASE)) + frame(0xFF, 0, 1, b"x"),
        "conn",
        (E.PROTOCOL_ERROR,),
    ),
    # --- 6 frame definitions --------------------------------------------------------
    Case("http2/6.1/1", lambda p: frame(DATA, 0, 0, b"x"), "conn", (E.PROTOCOL_ERROR,)),
    Case(
        "http2/6.1/2",
        lambda p: p.get() + frame(DATA, END_STREAM, 1, b"x"),
        "stream",
        (E.STREAM_CLOSED,),
    ),
    Case(
        "http2/6.1/3",
        lambda p: p.post() + frame(DATA, PADDED, 1, b"\x09abc"),
        "conn",
        (E.PROTOCOL_ERROR,),
    ),
    Case(
        "http2/6.2/1",
        lambda p: (
            frame(HEADERS, END_STREAM, 1, p.block(BASE))
            + frame(PRIORITY, 0, 1, b"\x00\x00\x00\x00\x0f")
        ),
        "conn",
        (E.PROTOCOL_ERROR,),
    ),
    Case(
        "http2/6.2/2",
        lambda p: frame(HEADERS, END_STREAM, 1, p.block(BASE)) + p.get(3),
        "conn",
        (E.PROTOCOL_ERROR,),
    ),
    Case("http2/6.2/3", lambda p: p.get(0), "conn", (E.PROTOCOL_ERROR,)),
    Case(
        "http2/6.2/4",
        lambda p: frame(HEADERS, PADDED | END_HEADERS, 1, b"\xff" + p.block(BASE)),
        "conn",
        (E.PROTOCOL_ERROR,),
    ),
    Case(
        "http2/6.3/1",
        lambda p: frame(PRIORITY, 0, 0, b"\x00\x00\x00\x01\x0f"),
        "conn",
        (E.PROTOCOL_ERROR,),
    ),
    Case(
        "http2/6.3/2",
        lambda p: p.post() + frame(PRIORITY, 0, 1, b"\x00\x00\x00\x00"),
        "stream",
        (E.FRAME_SIZE_ERROR,),
    ),
    Case(
        "http2/6.4/1", lambda p: frame(RST, 0, 0, b"\x00\x00\x00\x08"), "conn", (E.PROTOCOL_ERROR,)
    ),
    Case(
        "http2/6.4/2", lambda p: frame(RST, 0, 1, b"\x00\x00\x00\x08"), "conn", (E.PROTOCOL_ERROR,)
    ),
    Case(
        "http2/6.4/3",
        lambda p: p.post() + frame(RST, 0, 1, b"\x00\x00\x00"),
        "conn",
        (E.FRAME_SIZE_ERROR,),
    ),
    Case(
        "http2/6.5/1",
        lambda p: frame(SETTINGS, ACK, 0, setting(0x3, 1)),
        "conn",
        (E.FRAME_SIZE_ERROR,),
    ),
    Case(
        "http2/6.5/2", lambda p: frame(SETTINGS, 0, 1, setting(0x3, 1)), "conn", (E.PROTOCOL_ERROR,)
    ),
    Case(
        "http2/6.5/3",
        lambda p: frame(SETTINGS, 0, 0, b"\x00\x03\x00"),
        "conn",
        (E.FRAME_SIZE_ERROR,),
    ),
    Case(
        "http2/6.5.2/1",
        lambda p: frame(SETTINGS, 0, 0, setting(0x2, 2)),
        "conn",
        (E.PROTOCOL_ERROR,),
    ),
    Case(
        "http2/6.5.2/2",
        lambda p: frame(SETTINGS, 0, 0, setting(0x4, 2**31)),
        "conn",
        (E.FLOW_CONTROL_ERROR,),
    ),
    Case(
        "http2/6.5.2/3",
        lambda p: frame(SETTINGS, 0, 0, setting(0x5, 16383)),
        "conn",
        (E.PROTOCOL_ERROR,),
    ),
    Case(
        "http2/6.5.2/4",
        lambda p: frame(SETTINGS, 0, 0, setting(0x5, 2**24)),
        "conn",
        (E.PROTOCOL_ERROR,),
    ),
    Case("http2/6.5.2/5", lambda p: frame(SETTINGS, 0, 0, setting(0xFF, 1)), "ok"),
    Case(
        "http2/6.5.3/1", lambda p: frame(SETTINGS, 0, 0, setting(0x4, 100) + setting(0x4, 1)), "ok"
    ),
    Case("http2/6.5.3/2", lambda p: frame(SETTINGS, 0, 0, setting(0x3, 10)), "ok"),
    Case("http2/6.7/1", lambda p: frame(PING, 0, 0, b"abcdefgh"), "ok"),
    Case("http2/6.7/2", lambda p: frame(PING, ACK, 0, b"abcdefgh"), "ok"),
    Case("http2/6.7/3", lambda p: frame(PING, 0, 1, b"abcdefgh"), "conn", (E.PROTOCOL_ERROR,)),
    Case("http2/6.7/4", lambda p: frame(PING, 0, 0, b"abcdefghi"), "conn", (E.FRAME_SIZE_ERROR,)),
    Case("http2/6.8/1", lambda p: frame(GOAWAY, 0, 1, b"\x00" * 8), "conn", (E.PROTOCOL_ERROR,)),
    Case(
        "http2/6.9/1",
        lambda p: frame(WINDOW, 0, 0, b"\x00\x00\x00\x00"),
        "conn",
        (E.PROTOCOL_ERROR,),
    ),
    Case(
        "http2/6.9/2",
        lambda p: p.post() + frame(WINDOW, 0, 1, b"\x00\x00\x00\x00"),
        "stream",
        (E.PROTOCOL_ERROR,),
    ),
    Case(
        "http2/6.9/3", lambda p: frame(WINDOW, 0, 0, b"\x00\x00\x01"), "conn", (E.FRAME_SIZE_ERROR,)
    ),
    Case(
        "http2/6.9.1/2",
        lambda p: (
            frame(WINDOW, 0, 0, (2**31 - 1).to_bytes(4, "big"))
            + frame(WINDOW, 0, 0, (2**31 - 1).to_bytes(4, "big"))
        ),
        "conn",
        (E.FLOW_CONTROL_ERROR,),
    ),
    Case(
        "http2/6.9.1/3",
        lambda p: (
            p.post()
            + frame(WINDOW, 0, 1, (2**31 - 1).to_bytes(4, "big"))
            + frame(WINDOW, 0, 1, (2**31 - 1).to_bytes(4, "big"))
        ),
        "stream",
        (E.FLOW_CONTROL_ERROR,),
    ),
    Case("http2/6.9.2/2", lambda p: frame(SETTINGS, 0, 0, setting(0x4, 0)) + p.get(), "ok"),
    Case(
        "http2/6.9.2/3",
        lambda p: frame(SETTINGS, 0, 0, setting(0x4, 2**31)),
        "conn",
        (E.FLOW_CONTROL_ERROR,),
    ),
    Case(
        "http2/6.10/1",
        lambda p: (
            lambda b: (
                frame(HEADERS, END_STREAM, 1, b[:2])
                + frame(CONT, 0, 1, b[2:4])
                + frame(CONT, END_HEADERS, 1, b[4:])
            )
        )(p.block(BASE)),
        "ok",
    ),
    Case(
        "http2/6.10/2",
        lambda p: frame(HEADERS, END_STREAM, 1, p.block(BASE)[:2]) + frame(DATA, 0, 1, b"x"),
        "conn",
        (E.PROTOCOL_ERROR,),
    ),
    Case(
        "http2/6.10/3",
        lambda p: (
            lambda b: frame(HEADERS, END_STREAM, 1, b[:2]) + frame(CONT, END_HEADERS, 0, b[2:])
        )(p.block(BASE)),
        "conn",
        (E.PROTOCOL_ERROR,),
    ),
    Case(
        "http2/6.10/4",
        lambda p: p.get() + frame(CONT, END_HEADERS, 1, p.block([("x", "y")])),
        "conn",
        (E.PROTOCOL_ERROR, E.STREAM_CLOSED),
    ),
    Case(
        "http2/6.10/5",
        lambda p: (
            lambda b: (
                frame(HEADERS, END_STREAM, 1, b[:2])
                + frame(CONT, END_HEADERS, 1, b[2:])
                + frame(CONT, END_HEADERS, 1, b"\x82")
            )
        )(p.block(BASE)),
        "conn",
        (E.PROTOCOL_ERROR, E.STREAM_CLOSED),
    ),
    Case(
        "http2/6.10/6",
        lambda p: p.post() + frame(DATA, 0, 1, b"x") + frame(CONT, END_HEADERS, 1, b"\x82"),
        "conn",
        (E.PROTOCOL_ERROR,),
    ),
    # --- 7 error codes, 8 HTTP semantics ------------------------------------------------
    Case("http2/7/2", lambda p: p.post() + frame(RST, 0, 1, b"\x00\x00\xff\xff"), "ok"),
    Case(
        "http2/8.1/1",
        lambda p: p.post() + frame(HEADERS, END_HEADERS, 1, p.block([("x-t", "1")])),
        "stream",
        (E.PROTOCOL_ERROR,),
    ),
    Case("http2/8.1.2/1", request_with([*BASE, ("X-Upper", "1")]), "stream", (E.PROTOCOL_ERROR,)),
    Case("http2/8.1.2.1/1", request_with([*BASE, (":foo", "1")]), "stream", (E.PROTOCOL_ERROR,)),
    Case(
        "http2/8.1.2.1/2", request_with([*BASE, (":status", "200")]), "stream", (E.PROTOCOL_ERROR,)
    ),
    Case(
        "http2/8.1.2.1/3",
        lambda p: (
            p.post() + frame(HEADERS, END_HEADERS | END_STREAM, 1, p.block([(":method", "POST")]))
        ),
        "stream",
        (E.PROTOCOL_ERROR,),
    ),
    Case(
        "http2/8.1.2.1/4",
        request_with([BASE[0], ("x-a", "1"), *BASE[1:]]),
        "stream",
        (E.PROTOCOL_ERROR,),
    ),
    Case(
        "http2/8.1.2.2/1",
        request_with([*BASE, ("connection", "keep-alive")]),
        "stream",
        (E.PROTOCOL_ERROR,),
    ),
    Case("http2/8.1.2.2/2", request_with([*BASE, ("te", "gzip")]), "stream", (E.PROTOCOL_ERROR,)),
    Case(
        "http2/8.1.2.3/1",
        request_with([BASE[0], BASE[1], (":path", ""), BASE[3]]),
        "stream",
        (E.PROTOCOL_ERROR,),
    ),
    Case("http2/8.1.2.3/2", request_with(BASE[1:]), "stream", (E.PROTOCOL_ERROR,)),
    Case("http2/8.1.2.3/3", request_with([BASE[0], *BASE[2:]]), "stream", (E.PROTOCOL_ERROR,)),
    Case("http2/8.1.2.3/4", request_with([*BASE[:2], BASE[3]]), "stream", (E.PROTOCOL_ERROR,)),
    Case("http2/8.1.2.3/5", request_with([BASE[0], *BASE]), "stream", (E.PROTOCOL_ERROR,)),
    Case(
        "http2/8.1.2.3/6",
        request_with([*BASE, (":scheme", "https")]),
        "stream",
        (E.PROTOCOL_ERROR,),
    ),
    Case("http2/8.1.2.3/7", request_with([*BASE, (":path", "/x")]), "stream", (E.PROTOCOL_ERROR,)),
    Case(
        "http2/8.1.2.6/1",
        lambda p: p.post(content_length="1") + frame(DATA, END_STREAM, 1, b"xy"),
        "stream",
        (E.PROTOCOL_ERROR,),
    ),
    Case(
        "http2/8.1.2.6/2",
        lambda p: (
            p.post(content_length="1") + frame(DATA, 0, 1, b"x") + frame(DATA, END_STREAM, 1, b"y")
        ),
        "stream",
        (E.PROTOCOL_ERROR,),
    ),
    Case(
        "http2/8.2/1",
        lambda p: p.post() + frame(PUSH, END_HEADERS, 1, b"\x00\x00\x00\x02" + p.block(BASE)),
        "conn",
        (E.PROTOCOL_ERROR,),
    ),
    # --- HPACK ------------------------------------------------------------------------
    Case(
        "hpack/2.3.3/1",
        lambda p: frame(HEADERS, END_HEADERS | END_STREAM, 1, b"\xff\x0f"),
        "conn",
        (E.COMPRESSION_ERROR,),
    ),
    Case(
        "hpack/2.3.3/2",
        lambda p: frame(HEADERS, END_HEADERS | END_STREAM, 1, b"\x7f\x0f\x01a"),
        "conn",
        (E.COMPRESSION_ERROR,),
    ),
    Case(
        "hpack/4.2/1",
        lambda p: frame(HEADERS, END_HEADERS | END_STREAM, 1, p.block(BASE) + b"\x20"),
        "conn",
        (E.COMPRESSION_ERROR,),
    ),
    Case(
        "hpack/5.2/1",
        lambda p: frame(
            HEADERS, END_HEADERS | END_STREAM, 1, p.block(BASE) + b"\x40\x81\xff\x81\xff"
        ),
        "conn",
        (E.COMPRESSION_ERROR,),
    ),
    Case(
        "hpack/6.1/1",
        lambda p: frame(HEADERS, END_HEADERS | END_STREAM, 1, b"\x80"),
        "conn",
        (E.COMPRESSION_ERROR,),
    ),
    Case(
        "hpack/6.3/1",
        lambda p: frame(HEADERS, END_HEADERS | END_STREAM, 1, b"\x3f\xe1\xff\x03" + p.block(BASE)),
        "conn",
        (E.COMPRESSION_ERROR,),
    ),
]

NOT_COVERED = {
    "generic/3.1/1": "plain DATA: the body tests in test_http2_server_codec",
    "generic/4/1": "GET/HEAD/POST exchanges: test_http2_server_codec",
}


def answered(peer: Peer) -> list[object]:
    return parse_frames(peer.codec.bytes_to_send())


@pytest.mark.parametrize("case", CASES, ids=[c.case_id for c in CASES])
def test_h2spec_case(case: Case) -> None:
    peer = Peer()
    peer.handshake()
    data = case.script(peer)
    if data:
        peer.send(data)  # must not raise, whatever the bytes
    frames = answered(peer)
    goaways = [f for f in frames if isinstance(f, GoAwayFrame)]
    resets = [f for f in frames if isinstance(f, RstStreamFrame)]
    if case.outcome == "conn":
        assert [g.error_code for g in goaways][-1:] and goaways[-1].error_code in case.codes, frames
        assert peer.codec.terminated
        assert isinstance(peer.events[-1][1], ConnectionTerminated)
        assert peer.events[-1][1].error_code == goaways[-1].error_code
    elif case.outcome == "stream":
        codes = [r.error_code for r in resets if r.stream_id == case.stream_id]
        codes += [g.error_code for g in goaways]
        assert any(code in case.codes for code in codes), frames
    else:
        assert not goaways, frames
        assert all(r.error_code in (0, 8) or r.stream_id != 1 for r in resets), frames
        peer.send(frame(PING, 0, 0, b"liveness"))
        pings = [f for f in answered(peer) if isinstance(f, PingFrame)]
        assert pings and "ACK" in pings[0].flags and pings[0].opaque_data == b"liveness"


@pytest.mark.parametrize("payload", [b"\x40\x81\x00\x81\x00", b"\x40\x84\xff\xff\xff\xff\x81\x00"])
def test_bad_huffman_padding_is_a_compression_error(payload: bytes) -> None:  # hpack/5.2/2-3
    peer = Peer()
    peer.handshake()
    peer.send(frame(HEADERS, END_HEADERS | END_STREAM, 1, peer.block(BASE) + payload))
    goaways = [f for f in answered(peer) if isinstance(f, GoAwayFrame)]
    assert goaways and goaways[-1].error_code == E.COMPRESSION_ERROR


def test_initial_window_of_one_gets_one_byte_data_frames() -> None:  # http2/6.9.1/1
    peer = Peer()
    peer.handshake()
    peer.send(frame(SETTINGS, 0, 0, setting(0x4, 1)) + peer.get())
    answered(peer)
    peer.codec.send_local_response(1, 200, (), b"abc")
    data = [f for f in answered(peer) if type(f).__name__ == "DataFrame"]
    assert [f.data for f in data] == [b"a"]
    peer.send(frame(WINDOW, 0, 1, (2).to_bytes(4, "big")))
    data = [f for f in answered(peer) if type(f).__name__ == "DataFrame"]
    assert b"".join(f.data for f in data) == b"bc" and "END_STREAM" in data[-1].flags


def test_invalid_preface_is_a_protocol_error_goaway() -> None:
    codec = Http2ServerCodec()
    codec.initiate()
    events = codec.receive(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert events == [(0, ConnectionTerminated(E.PROTOCOL_ERROR, "invalid connection preface"))]
    frames = parse_frames(codec.bytes_to_send())
    assert isinstance(frames[-1], GoAwayFrame) and frames[-1].error_code == E.PROTOCOL_ERROR


def test_valid_preface_gets_settings_and_an_ack() -> None:  # http2/3.5/1
    codec = Http2ServerCodec()
    codec.initiate()
    codec.receive(PREFACE + frame(SETTINGS, 0, 0))
    frames = parse_frames(codec.bytes_to_send())
    assert any(isinstance(f, SettingsFrame) and "ACK" in f.flags for f in frames)


def test_requests_in_the_generic_cases_arrive_as_heads() -> None:
    peer = Peer()
    peer.handshake()
    peer.send(peer.get() + peer.post(3, content_length="2") + frame(DATA, END_STREAM, 3, b"ok"))
    heads = [e for _, e in peer.events if isinstance(e, RequestHead)]
    assert [(h.method, h.target) for h in heads] == [("GET", "/"), ("POST", "/")]


def test_oversized_frame_is_refused_on_its_header_alone() -> None:
    peer = Peer()
    peer.handshake()
    peer.send(
        frame(DATA, 0, 1, b"")[:0] + (2**24 - 1).to_bytes(3, "big") + b"\x00\x00\x00\x00\x00\x01"
    )
    assert peer.codec.terminated
    assert parse_frames(peer.codec.bytes_to_send())[-1].error_code == E.FRAME_SIZE_ERROR


H2SPEC_LIST = (
    Path(__file__).resolve().parents[3] / "shared" / "vectors" / "h2spec-cases" / "h2spec-cases.txt"
)
EXTRA_COVERED = {  # the separate tests above
    "http2/3.5/1",
    "http2/3.5/2",
    "http2/6.9.1/1",
    "hpack/5.2/2",
    "hpack/5.2/3",
}


def h2spec_case_ids(text: str) -> list[str]:
    """Case ids ("http2/6.5.2/1") from h2spec's ``--dryrun`` listing."""
    prefixes = {"Generic": "generic", "Hypertext": "http2", "HPACK": "hpack"}
    ids: list[str] = []
    prefix = section = ""
    for line in text.splitlines():
        if line and not line[0].isspace():
            prefix = prefixes[line.split()[0].rstrip(":")]
        elif heading := re.match(r"\s+(\d+(?:\.\d+)*)\.\s", line):
            section = heading.group(1)
        elif case := re.match(r"\s+(\d+):\s", line):
            ids.append(f"{prefix}/{section}/{case.group(1)}")
    return ids


@pytest.mark.skipif(not H2SPEC_LIST.exists(), reason="h2spec case list not available")
def test_the_table_covers_real_h2spec_case_ids() -> None:
    known = h2spec_case_ids(H2SPEC_LIST.read_text(encoding="utf-8"))
    assert len(known) == 146
    covered = [c.case_id for c in CASES] + sorted(EXTRA_COVERED)
    assert len(set(covered)) == len(covered), "duplicate case ids"
    assert set(covered) <= set(known), set(covered) - set(known)
    assert not set(covered) & set(NOT_COVERED)
    # Every family of server-relevant errors named in the brief is represented.
    families = {case_id.rsplit("/", 1)[0] for case_id in covered}
    for required in [
        "http2/3.5",
        "http2/4.2",
        "http2/5.1",
        "http2/6.1",
        "http2/6.5.2",
        "http2/6.8",
        "http2/6.9.1",
        "http2/6.10",
        "http2/8.1.2.2",
        "http2/8.1.2.3",
        "hpack/6.1",
    ]:
        assert required in families, required
