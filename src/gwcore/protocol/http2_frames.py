"""HTTP/2 wire pieces the codecs need before h2 sees the bytes.

:class:`FrameSplitter` cuts the received byte stream into the connection preface and
whole frames, so the codec can hand h2 one frame at a time. That buys three things h2's
own buffer does not give:

* events produced by the frames *before* a broken one are kept (h2 drops the events of
  the whole ``receive_data`` call when it raises);
* an oversized frame is refused as soon as its 9-byte header arrives, instead of after
  buffering up to 16 MiB of its body; the buffer never holds more than one frame plus
  the bytes of the current ``receive`` call;
* two frame-size errors get the code RFC 9113 requires (h2 reports PROTOCOL_ERROR):
  SETTINGS ACK with a payload here, HPACK failures (COMPRESSION_ERROR) in the codec;
* GOAWAY frames can be taken out of the stream (see :func:`parse_goaway`): h2 closes its
  state machine on any GOAWAY, which would forbid finishing the streams the GOAWAY
  explicitly lets finish (RFC 9113 §6.8; python-hyper/h2#1181).

Nothing here knows about streams or messages.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Final

from hyperframe.exceptions import HyperframeError
from hyperframe.frame import Frame, GoAwayFrame

PREFACE: Final = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
"""The client connection preface (RFC 9113 §3.4)."""

FRAME_HEADER_SIZE: Final = 9

_TYPE_HEADERS: Final = 0x1
_TYPE_SETTINGS: Final = 0x4
_TYPE_PUSH_PROMISE: Final = 0x5
_TYPE_GOAWAY: Final = 0x7
_TYPE_CONTINUATION: Final = 0x9
_FLAG_END_HEADERS: Final = 0x4
_FLAG_ACK: Final = 0x1


class ErrorCode(IntEnum):
    """HTTP/2 error codes (RFC 9113 §7); unknown codes from a peer stay plain ints."""

    NO_ERROR = 0x0
    PROTOCOL_ERROR = 0x1
    INTERNAL_ERROR = 0x2
    FLOW_CONTROL_ERROR = 0x3
    SETTINGS_TIMEOUT = 0x4
    STREAM_CLOSED = 0x5
    FRAME_SIZE_ERROR = 0x6
    REFUSED_STREAM = 0x7
    CANCEL = 0x8
    COMPRESSION_ERROR = 0x9
    CONNECT_ERROR = 0xA
    ENHANCE_YOUR_CALM = 0xB
    INADEQUATE_SECURITY = 0xC
    HTTP_1_1_REQUIRED = 0xD


def looks_like_h2_preface(data: bytes) -> bool | None:
    """Whether a cleartext connection starts with the HTTP/2 client preface.

    ``True``: the first 24 bytes are the preface (prior-knowledge h2c). ``False``: they
    cannot be (treat the connection as HTTP/1.x). ``None``: every byte so far agrees
    with the preface but it is not complete yet; read more. An HTTP/1 request can
    never be mistaken: its method would have to be ``PRI``, which the HTTP/1 codec
    refuses anyway.
    """
    head = bytes(data[: len(PREFACE)])
    if not PREFACE.startswith(head):
        return False
    if len(head) < len(PREFACE):
        return None
    return True


class SplitError(Exception):
    """The byte stream cannot be cut into frames: a connection error."""

    def __init__(self, error_code: ErrorCode, reason: str) -> None:
        super().__init__(reason)
        self.error_code = error_code
        self.reason = reason


@dataclass(frozen=True, slots=True)
class GoAway:
    """A well-formed GOAWAY frame taken out of the stream."""

    last_stream_id: int
    error_code: int
    debug_data: bytes


class FrameSplitter:
    """Cuts received bytes into the preface (server side) and whole frames.

    :meth:`next_chunk` returns the next complete unit or ``None`` when more bytes are
    needed; it raises :class:`SplitError` for a wrong preface or a frame longer than
    ``max_frame_size``. It also tracks whether a header block (HEADERS/PUSH_PROMISE
    without END_HEADERS, then CONTINUATIONs) is open, because nothing may be taken out
    of the stream in the middle of one.
    """

    def __init__(self, *, expect_preface: bool, max_frame_size: int) -> None:
        self.buffer = bytearray()
        self.preface_pending = expect_preface
        self.max_frame_size = max_frame_size
        self.in_header_block = False

    def feed(self, data: bytes) -> None:
        self.buffer += data

    def next_chunk(self) -> bytes | None:
        buffer = self.buffer
        if self.preface_pending:
            verdict = looks_like_h2_preface(bytes(buffer[: len(PREFACE)]))
            if verdict is None:
                return None
            if not verdict:
                raise SplitError(ErrorCode.PROTOCOL_ERROR, "invalid connection preface")
            self.preface_pending = False
            del buffer[: len(PREFACE)]
            return PREFACE
        if len(buffer) < FRAME_HEADER_SIZE:
            return None
        length = int.from_bytes(buffer[0:3], "big")
        if length > self.max_frame_size:
            raise SplitError(
                ErrorCode.FRAME_SIZE_ERROR,
                f"frame of {length} bytes exceeds SETTINGS_MAX_FRAME_SIZE {self.max_frame_size}",
            )
        if buffer[3] == _TYPE_SETTINGS and buffer[4] & _FLAG_ACK and length:
            # RFC 9113 §6.5: FRAME_SIZE_ERROR; hyperframe would report a generic error.
            raise SplitError(ErrorCode.FRAME_SIZE_ERROR, "SETTINGS ACK with a payload")
        end = FRAME_HEADER_SIZE + length
        if len(buffer) < end:
            return None
        chunk = bytes(buffer[:end])
        del buffer[:end]
        frame_type, flags = chunk[3], chunk[4]
        opens = frame_type in (_TYPE_HEADERS, _TYPE_PUSH_PROMISE) and not self.in_header_block
        continues = frame_type == _TYPE_CONTINUATION and self.in_header_block
        if opens or continues:
            self.in_header_block = not flags & _FLAG_END_HEADERS
        else:
            # Anything else inside a header block is a connection error that h2
            # reports; the block is over either way.
            self.in_header_block = False
        return chunk


def parse_goaway(chunk: bytes) -> GoAway | None:
    """The GOAWAY in ``chunk`` if it is a well-formed one, else ``None``.

    A malformed GOAWAY (non-zero stream id, short body) is left to h2, which answers
    it with the right connection error.
    """
    if len(chunk) < FRAME_HEADER_SIZE or chunk[3] != _TYPE_GOAWAY:
        return None
    try:
        frame, length = Frame.parse_frame_header(memoryview(chunk[:FRAME_HEADER_SIZE]))
        if not isinstance(frame, GoAwayFrame) or length != len(chunk) - FRAME_HEADER_SIZE:
            return None
        frame.parse_body(memoryview(chunk[FRAME_HEADER_SIZE:]))
    except (HyperframeError, ValueError):
        return None
    return GoAway(frame.last_stream_id, frame.error_code, frame.additional_data)


def goaway_frame(last_stream_id: int, error_code: int, debug_data: bytes = b"") -> bytes:
    """A serialised GOAWAY frame."""
    return GoAwayFrame(
        stream_id=0,
        last_stream_id=last_stream_id,
        error_code=error_code,
        additional_data=debug_data,
    ).serialize()
