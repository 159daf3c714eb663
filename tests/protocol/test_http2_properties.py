"""Properties of the HTTP/2 codecs under arbitrary input (hypothesis).

The fuzz contract: after a valid preface, any bytes (random, or random frames with
plausible headers) are accepted or end in one ConnectionTerminated; ``receive`` never
raises, nothing follows the termination, and a GOAWAY is queued when we end it.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_http2_support import parse_frames

from gwcore.protocol.http2 import ConnectionTerminated, Http2ClientCodec, Http2ServerCodec
from gwcore.protocol.http2_frames import PREFACE
from gwcore.protocol.messages import NoBody, RequestHead

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
HANDSHAKE = PREFACE + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"


def frames() -> st.SearchStrategy[bytes]:
    def build(kind: int, flags: int, stream_id: int, payload: bytes) -> bytes:
        return (
            len(payload).to_bytes(3, "big")
            + bytes([kind, flags])
            + stream_id.to_bytes(4, "big")
            + payload
        )

    return st.builds(
        build,
        st.integers(0, 11),
        st.integers(0, 255),
        st.sampled_from([0, 1, 2, 3, 5, 2**31 - 1]),
        st.binary(max_size=40),
    )


def check_contract(events: list[tuple[int, object]], terminated: bool, output: bytes) -> None:
    ends = [i for i, (_, e) in enumerate(events) if isinstance(e, ConnectionTerminated)]
    assert len(ends) <= 1
    if ends:
        assert ends[0] == len(events) - 1 and events[-1][0] == 0
        assert terminated
    for stream_id, _ in events:
        assert stream_id >= 0
    parse_frames(output)  # whatever we write is well-formed frames


def feed(
    codec: Http2ServerCodec | Http2ClientCodec, chunks: list[bytes]
) -> list[tuple[int, object]]:
    events: list[tuple[int, object]] = []
    for chunk in chunks:
        events += codec.receive(chunk)
    return events


@SETTINGS
@given(st.lists(st.binary(min_size=1, max_size=64), max_size=8))
def test_random_bytes_after_the_preface_never_raise(chunks: list[bytes]) -> None:
    codec = Http2ServerCodec()
    codec.initiate()
    events = feed(codec, [HANDSHAKE, *chunks])
    check_contract(events, codec.terminated, codec.bytes_to_send())


@SETTINGS
@given(st.lists(frames(), max_size=12), st.integers(1, 7))
def test_random_frames_never_raise_however_they_are_split(
    frame_list: list[bytes], cut: int
) -> None:
    data = HANDSHAKE + b"".join(frame_list)
    whole = Http2ServerCodec()
    whole.initiate()
    events = feed(whole, [data])
    check_contract(events, whole.terminated, whole.bytes_to_send())
    pieces = Http2ServerCodec()
    pieces.initiate()
    split = feed(pieces, [data[i : i + cut] for i in range(0, len(data), cut)])
    assert split == events


@SETTINGS
@given(st.lists(frames(), max_size=12))
def test_client_codec_survives_random_frames_from_an_upstream(frame_list: list[bytes]) -> None:
    codec = Http2ClientCodec()
    codec.initiate()
    codec.receive(b"\x00\x00\x00\x04\x00\x00\x00\x00\x00")
    codec.send_request(RequestHead("GET", "/", (("host", "u"),), "1.1", NoBody()))
    events = feed(codec, [b"".join(frame_list)] if frame_list else [])
    check_contract(events, codec.terminated, codec.bytes_to_send())
