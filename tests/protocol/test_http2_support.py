"""Helpers for the test_http2_* files (wiring codecs to real h2 peers in memory), and
the tests of prior-knowledge preface detection."""

from __future__ import annotations

from typing import Any

import pytest
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.events import Event
from hyperframe.frame import Frame

from gwcore.protocol.http2 import (
    H2ClientEvent,
    H2ServerEvent,
    Http2ClientCodec,
    Http2ServerCodec,
    looks_like_h2_preface,
)
from gwcore.protocol.http2_frames import PREFACE

GET = [(":method", "GET"), (":scheme", "https"), (":authority", "example.com"), (":path", "/")]


def request(method: str = "GET", path: str = "/", **extra: str) -> list[tuple[str, str]]:
    fields = [(":method", method), (":scheme", "https"), (":authority", "example.com")]
    fields.append((":path", path))
    return fields + [(k.replace("_", "-"), v) for k, v in extra.items()]


class ServerPair:
    """An :class:`Http2ServerCodec` wired to a real h2 *client* connection."""

    def __init__(self, **limits: Any) -> None:
        self.codec = Http2ServerCodec(**limits)
        self.client = H2Connection(H2Configuration(client_side=True, header_encoding="utf-8"))
        self.client.initiate_connection()
        self.client_events: list[Event] = self.client.receive_data(self.codec.initiate())
        self.pump()
        self.client_events = []  # the SETTINGS handshake

    def pump(self) -> list[tuple[int, H2ServerEvent]]:
        """Move bytes both ways until both sides are quiet; the codec's new events."""
        events: list[tuple[int, H2ServerEvent]] = []
        while True:
            upstream = self.client.data_to_send()
            if upstream:
                events += self.codec.receive(upstream)
            downstream = self.codec.bytes_to_send()
            if downstream:
                self.client_events += self.client.receive_data(downstream)
            if not upstream and not downstream:
                return events

    def take_client_events(self) -> list[Event]:
        events, self.client_events = self.client_events, []
        return events


class ClientPair:
    """An :class:`Http2ClientCodec` wired to a real h2 *server* connection."""

    def __init__(self, **limits: Any) -> None:
        self.codec = Http2ClientCodec(**limits)
        self.server = H2Connection(H2Configuration(client_side=False, header_encoding="utf-8"))
        self.server.initiate_connection()
        self.server_events: list[Event] = self.server.receive_data(self.codec.initiate())
        self.pump()
        self.server_events = []  # the SETTINGS handshake

    def pump(self) -> list[tuple[int, H2ClientEvent]]:
        events: list[tuple[int, H2ClientEvent]] = []
        while True:
            downstream = self.server.data_to_send()
            if downstream:
                events += self.codec.receive(downstream)
            upstream = self.codec.bytes_to_send()
            if upstream:
                self.server_events += self.server.receive_data(upstream)
            if not upstream and not downstream:
                return events

    def take_server_events(self) -> list[Event]:
        events, self.server_events = self.server_events, []
        return events


def parse_frames(data: bytes) -> list[Frame]:
    """Every frame in ``data`` (what the codec wrote)."""
    frames: list[Frame] = []
    view = memoryview(data)
    while view:
        frame, length = Frame.parse_frame_header(view[:9])
        frame.parse_body(view[9 : 9 + length])
        frames.append(frame)
        view = view[9 + length :]
    return frames


# --- prior-knowledge detection ---------------------------------------------------


def test_full_preface_is_recognised() -> None:
    assert looks_like_h2_preface(PREFACE + b"\x00\x00\x00\x04") is True


@pytest.mark.parametrize("size", [0, 1, 3, 10, 23])
def test_partial_preface_asks_for_more_bytes(size: int) -> None:
    assert looks_like_h2_preface(PREFACE[:size]) is None


@pytest.mark.parametrize(
    "data", [b"GET / HTTP/1.1\r\n", b"P", b"PRI * HTTP/1.1\r\n", b"POST", b"\x16\x03\x01"]
)
def test_http1_or_tls_bytes_are_not_a_preface(data: bytes) -> None:
    expected = None if PREFACE.startswith(data) else False
    assert looks_like_h2_preface(data) is expected


def test_prior_knowledge_codec_answers_the_buffered_preface() -> None:
    client = H2Connection(H2Configuration(client_side=True))
    client.initiate_connection()
    first_read = client.data_to_send()
    assert looks_like_h2_preface(first_read)
    codec = Http2ServerCodec.from_prior_knowledge()
    assert codec.receive(first_read) == []
    frames = parse_frames(codec.bytes_to_send())
    assert [type(f).__name__ for f in frames][:1] == ["SettingsFrame"]
    assert any("ACK" in f.flags for f in frames)
