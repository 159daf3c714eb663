"""HTTP/2 codecs: bytes <-> neutral messages per stream, for one connection, without I/O.

:class:`Http2ServerCodec` faces a downstream client, :class:`Http2ClientCodec` an
upstream server. Both wrap an ``h2`` connection object; no h2 type leaves this module.

Receiving
    ``receive(bytes)`` returns ``(stream_id, event)`` pairs. Per-stream events follow
    the neutral model (head, ``Data``*, ``EndOfMessage``; or one ``ProtocolError``),
    plus :class:`StreamReset` and :class:`WindowOpened`. Connection-level events use
    stream id 0: :class:`WindowOpened` (every blocked stream may retry),
    :class:`GoAwayReceived` (graceful: no new streams) and :class:`ConnectionTerminated`
    (the codec is dead: write :meth:`bytes_to_send` and close). ``receive`` never
    raises; ``b""`` means the peer closed the connection.

    Bytes are handed to h2 one frame at a time (:mod:`http2_frames`), so events before
    a broken frame are kept and oversized frames are refused on their header.

Errors
    Connection errors are h2's (it validates frames, HPACK, pseudo-headers, connection
    headers, ``te``, content-length vs DATA, ``:authority`` vs Host): h2 queues a GOAWAY
    with the RFC 9113 error code and we report :class:`ConnectionTerminated`. h2 treats
    malformed requests as connection errors, which RFC 9113 §5.4 allows. Checks h2 does
    not make (limits, CONNECT, strict content-length syntax, characters an HTTP/1.1
    peer could misread) are stream errors: the server codec reports
    ``ProtocolError(status)`` and leaves the answer to the engine
    (:meth:`Http2ServerCodec.send_local_response`); the client codec reports
    ``ProtocolError(502)`` and resets the stream itself.

Flow control and backpressure
    Inbound: DATA is acknowledged to the peer (WINDOW_UPDATE) only when the engine calls
    ``consumed(stream_id, n)`` for bytes of ``Data`` it has passed on. A peer can
    therefore never have more than ``connection_window`` bytes buffered on us in total
    and ``initial_window`` per stream. Padding, data of failed or reset streams, and
    the unconsumed rest of a stream we reset are released by the codec itself;
    ``consumed`` is clamped, so calling it late or twice is harmless.

    Outbound: ``send_data`` sends what the peer's windows allow *now* and returns that
    count; the engine keeps the rest and retries after a :class:`WindowOpened` for the
    stream or for stream 0.

GOAWAY
    h2 closes its state machine on any GOAWAY (python-hyper/h2#1181), which would kill
    the streams a graceful GOAWAY lets finish. Well-formed GOAWAY frames are therefore
    handled here: received ones never reach h2; ours are written by :meth:`goaway`
    without telling h2, and new streams above our last-stream-id are refused.

Server streams end as RFC 9113 §8.1 allows: once our response is complete, a request
still being uploaded is stopped with RST_STREAM(NO_ERROR).

Sending raises ``ValueError`` when the *caller* breaks the protocol (data before a head,
a second final head, text that is not latin-1). Sending on a stream that the peer reset
or after the connection died is a silent no-op: the engine already got the event.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
from dataclasses import dataclass, field
from typing import Final, Self, cast

from h2 import events as h2events
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.exceptions import DenialOfServiceError, H2Error
from h2.exceptions import ProtocolError as H2ProtocolError
from h2.settings import SettingCodes, Settings
from hpack.exceptions import HPACKError

from gwcore.protocol.http2_frames import (
    ErrorCode,
    FrameSplitter,
    GoAway,
    SplitError,
    goaway_frame,
    looks_like_h2_preface,
    parse_goaway,
)
from gwcore.protocol.http2_headers import (
    HeaderRejected,
    RawHeaders,
    decode_block,
    encode_block,
    header_list_size,
    request_block,
    request_from_block,
    response_block,
    response_from_block,
    trailer_block,
)
from gwcore.protocol.messages import (
    Data,
    EndOfMessage,
    FixedLength,
    Headers,
    NoBody,
    ProtocolError,
    RequestHead,
    ResponseHead,
    connection_tokens,
    header_values,
)

__all__ = [
    "ConnectionTerminated",
    "ErrorCode",
    "GoAwayReceived",
    "H2ClientEvent",
    "H2ServerEvent",
    "H2Statistics",
    "Http2ClientCodec",
    "Http2ServerCodec",
    "StreamReset",
    "WindowOpened",
    "h2c_upgrade_settings",
    "looks_like_h2_preface",
]

DEFAULT_MAX_HEADER_BYTES: Final = 16 * 1024
DEFAULT_MAX_BODY_BYTES: Final = 10 * 1024 * 1024
DEFAULT_INITIAL_WINDOW: Final = 65_535
DEFAULT_CONNECTION_WINDOW: Final = 1024 * 1024
MAX_WINDOW: Final = 2**31 - 1
MAX_LOCAL_BODY_BYTES: Final = 64 * 1024
"""Largest body :meth:`Http2ServerCodec.send_local_response` will buffer."""

_H2_DEFAULT_WINDOW: Final = 65_535
_H2_DEFAULT_HEADER_LIST: Final = 65_536  # h2's HPACK decoder limit until our SETTINGS are acked

SWITCHING_PROTOCOLS: Final = (
    b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n"
)


# --- events (besides the neutral messages) -----------------------------------------


@dataclass(frozen=True, slots=True)
class StreamReset:
    """The stream is gone: the peer sent RST_STREAM (``remote``) or h2 reset it for a
    stream-level protocol error, or (client) a GOAWAY refused it. Nothing more will be
    received on it and nothing may be sent."""

    error_code: int
    remote: bool = True

    @property
    def refused(self) -> bool:
        """The peer did not process the request: it is safe to retry it elsewhere
        (RFC 9113 §8.7)."""
        return self.error_code == ErrorCode.REFUSED_STREAM


@dataclass(frozen=True, slots=True)
class WindowOpened:
    """The peer opened a flow-control window: a stream blocked in ``send_data`` may
    continue. On stream id 0 it concerns the connection (every blocked stream)."""


@dataclass(frozen=True, slots=True)
class GoAwayReceived:
    """The peer sent a graceful GOAWAY: no new streams; streams up to
    ``last_stream_id`` may still complete. Close once the open streams are done."""

    last_stream_id: int
    debug_data: bytes = b""


@dataclass(frozen=True, slots=True)
class ConnectionTerminated:
    """The connection is over: a connection error (ours: ``remote=False``, a GOAWAY
    with ``error_code`` is queued in :meth:`bytes_to_send`), an error GOAWAY from the
    peer, or the peer closed the transport. Every open stream is dead; write the
    pending bytes and close."""

    error_code: int
    reason: str
    remote: bool = False


H2ServerEvent = (
    RequestHead
    | Data
    | EndOfMessage
    | ProtocolError
    | StreamReset
    | WindowOpened
    | GoAwayReceived
    | ConnectionTerminated
)
H2ClientEvent = (
    ResponseHead
    | Data
    | EndOfMessage
    | ProtocolError
    | StreamReset
    | WindowOpened
    | GoAwayReceived
    | ConnectionTerminated
)
_HEAD_EVENTS = (
    h2events.RequestReceived,
    h2events.ResponseReceived,
    h2events.InformationalResponseReceived,
)
_Out = list[tuple[int, H2ServerEvent | H2ClientEvent]]


@dataclass(frozen=True, slots=True)
class H2Statistics:
    """A snapshot for logs, metrics and backpressure decisions."""

    open_streams: int
    unconsumed_bytes: int
    """Received body bytes not yet :meth:`consumed` (what the peer is held back by)."""
    send_window: int
    """The connection-level window the peer granted us."""
    receive_window: int
    """The connection-level window we granted the peer."""
    goaway_sent: bool
    goaway_received: bool
    terminated: bool


# --- per-stream state ---------------------------------------------------------------


@dataclass(slots=True)
class _Stream:
    """What the codec remembers about one stream until both directions are done.

    ``head_sent``/``local_ended`` track our side, ``remote_ended`` the peer's,
    ``failed`` a stream error already reported (further input is dropped).
    """

    method: str = ""
    scheme: str = ""
    expected_length: int | None = None
    received: int = 0
    head_sent: bool = False
    local_ended: bool = False
    remote_ended: bool = False
    failed: bool = False
    pending_body: bytearray = field(default_factory=bytearray)


def _is_hpack_failure(error: H2ProtocolError) -> bool:
    """h2 reports a header block that fails to decode as a plain ProtocolError."""
    return not isinstance(error, DenialOfServiceError) and isinstance(
        error.__cause__, HPACKError | IndexError | TypeError | UnicodeDecodeError
    )


def _check_limits(max_header_bytes: int, initial_window: int, connection_window: int) -> None:
    if max_header_bytes < 1:
        raise ValueError("max_header_bytes must be positive")
    if not 0 <= initial_window <= MAX_WINDOW:
        raise ValueError(f"initial_window must be in 0..{MAX_WINDOW}")
    if not _H2_DEFAULT_WINDOW <= connection_window <= MAX_WINDOW:
        raise ValueError(f"connection_window must be in {_H2_DEFAULT_WINDOW}..{MAX_WINDOW}")


class _H2Codec:
    """The machinery both sides share: framing, events, flow control, GOAWAY."""

    _client_side: bool = False
    _error_status: int = 400

    def __init__(
        self,
        *,
        max_header_bytes: int,
        max_body_bytes: int | None,
        max_concurrent_streams: int,
        initial_window: int,
        connection_window: int,
    ) -> None:
        _check_limits(max_header_bytes, initial_window, connection_window)
        if max_concurrent_streams < 1:
            raise ValueError("max_concurrent_streams must be positive")
        self._max_header_bytes = max_header_bytes
        self._max_body_bytes = max_body_bytes
        self._initial_window = initial_window
        self._connection_window = connection_window
        # A header block between max_header_bytes and this hard limit gets a stream
        # error (431); beyond it HPACK decoding stops with a connection error.
        self._hard_header_bytes = max(_H2_DEFAULT_HEADER_LIST, 2 * max_header_bytes)
        config = H2Configuration(
            client_side=self._client_side,
            header_encoding=None,
            validate_inbound_headers=True,
            normalize_inbound_headers=True,
            validate_outbound_headers=True,
            normalize_outbound_headers=True,
            split_outbound_cookies=False,
        )
        self._conn = H2Connection(config)
        initial: dict[SettingCodes, int] = {
            SettingCodes.MAX_CONCURRENT_STREAMS: max_concurrent_streams,
            SettingCodes.ENABLE_PUSH: 0,
            SettingCodes.MAX_HEADER_LIST_SIZE: _H2_DEFAULT_HEADER_LIST,
        }
        if initial_window >= _H2_DEFAULT_WINDOW:
            initial[SettingCodes.INITIAL_WINDOW_SIZE] = initial_window
        self._conn.local_settings = Settings(client=self._client_side, initial_values=initial)
        self._splitter = FrameSplitter(
            expect_preface=not self._client_side,
            max_frame_size=self._conn.max_inbound_frame_size,
        )
        self._out = bytearray()
        self._streams: dict[int, _Stream] = {}
        self._unconsumed: dict[int, int] = {}
        self._highest_stream_id = 0
        self._initiated = False
        self._terminated = False
        self._goaway_sent: int | None = None
        self._goaway_received: GoAway | None = None

    # --- setup -------------------------------------------------------------------

    def initiate(self) -> bytes:
        """Start the connection: returns our preface (client) and SETTINGS to write
        first (plus anything else already pending)."""
        if not self._initiated:
            self._conn.initiate_connection()
            self._after_initiate()
        return self.bytes_to_send()

    def _after_initiate(self) -> None:
        self._initiated = True
        later: dict[SettingCodes | int, int] = {}
        if self._hard_header_bytes != _H2_DEFAULT_HEADER_LIST:
            # Sent separately so h2 applies it to its HPACK decoder when acked.
            later[SettingCodes.MAX_HEADER_LIST_SIZE] = self._hard_header_bytes
        if self._initial_window < _H2_DEFAULT_WINDOW:
            # A smaller window may only be enforced once the peer has acked it.
            later[SettingCodes.INITIAL_WINDOW_SIZE] = self._initial_window
        if later:
            self._conn.update_settings(later)
        if self._connection_window > _H2_DEFAULT_WINDOW:
            self._conn.increment_flow_control_window(self._connection_window - _H2_DEFAULT_WINDOW)
        self._flush()

    # --- output ------------------------------------------------------------------

    def _flush(self) -> None:
        self._out += self._conn.data_to_send()

    def bytes_to_send(self) -> bytes:
        """Everything to write to the peer now (may be ``b""``)."""
        self._flush()
        data = bytes(self._out)
        self._out.clear()
        return data

    # --- receiving ---------------------------------------------------------------

    def _receive(self, data: bytes) -> _Out:
        out: _Out = []
        if self._terminated:
            return out
        if not data:
            self._terminate(out, ErrorCode.NO_ERROR, "connection closed by the peer", remote=True)
            return out
        splitter = self._splitter
        splitter.feed(data)
        while not self._terminated:
            in_block = splitter.in_header_block
            try:
                chunk = splitter.next_chunk()
            except SplitError as error:
                self._connection_error(out, error.error_code, error.reason)
                break
            if chunk is None:
                break
            goaway = None if in_block else parse_goaway(chunk)
            if goaway is not None:
                self._on_goaway(goaway, out)
                continue
            try:
                events = self._conn.receive_data(chunk)
            except H2ProtocolError as error:
                reason = str(error) or type(error).__name__
                if _is_hpack_failure(error):
                    # RFC 9113 §4.3 wants COMPRESSION_ERROR; h2 queued PROTOCOL_ERROR. The
                    # failing HEADERS frame queued nothing else, so replace the GOAWAY.
                    self._conn.clear_outbound_data_buffer()
                    self._connection_error(out, ErrorCode.COMPRESSION_ERROR, reason, sent=False)
                else:  # h2 has queued a GOAWAY with the error's code
                    self._connection_error(out, int(error.error_code), reason, sent=True)
                break
            except Exception as error:  # an h2 defect must not crash the engine
                self._connection_error(out, ErrorCode.INTERNAL_ERROR, f"h2 failed: {error!r}")
                break
            self._flush()
            for event in events:
                self._dispatch(event, out)
        self._flush()
        return out

    def _dispatch(self, event: h2events.Event, out: _Out) -> None:
        if isinstance(event, _HEAD_EVENTS):
            ended = getattr(event, "stream_ended", None) is not None
            self._on_head(event.stream_id, cast(RawHeaders, event.headers), ended, out)
        elif isinstance(event, h2events.DataReceived):
            self._on_data(event.stream_id, event.data, event.flow_controlled_length, out)
        elif isinstance(event, h2events.TrailersReceived):
            self._on_trailers(event.stream_id, cast(RawHeaders, event.headers), out)
        elif isinstance(event, h2events.StreamEnded):
            self._on_end(event.stream_id, out)
        elif isinstance(event, h2events.StreamReset):
            self._on_reset(event.stream_id, int(event.error_code), event.remote_reset, out)
        elif isinstance(event, h2events.WindowUpdated):
            self._on_window(event.stream_id, out)
        elif isinstance(event, h2events.RemoteSettingsChanged):
            change = event.changed_settings.get(SettingCodes.INITIAL_WINDOW_SIZE)
            if change is not None and change.new_value > (change.original_value or 0):
                self._on_window(0, out)
        elif isinstance(event, h2events.PushedStreamReceived):  # pragma: no cover - push disabled
            if event.pushed_stream_id is not None:
                self._reset(event.pushed_stream_id, ErrorCode.REFUSED_STREAM)
        elif isinstance(event, h2events.ConnectionTerminated):  # pragma: no cover - intercepted
            code = int(event.error_code or 0)
            self._terminate(out, code, "peer sent GOAWAY", remote=True)
        # PING, PRIORITY, SETTINGS ACK, ALTSVC and unknown frames need nothing from us.

    def _on_head(
        self,
        stream_id: int,
        raw: RawHeaders,
        end_stream: bool,
        out: _Out,
    ) -> None:
        raise NotImplementedError

    def _on_data(
        self,
        stream_id: int,
        data: bytes,
        flow_length: int,
        out: _Out,
    ) -> None:
        stream = self._streams.get(stream_id)
        if stream is None or stream.failed:
            self._acknowledge(stream_id, flow_length)
            return
        if flow_length > len(data):
            self._acknowledge(stream_id, flow_length - len(data))  # padding is never delivered
        stream.received += len(data)
        self._unconsumed[stream_id] = self._unconsumed.get(stream_id, 0) + len(data)
        if stream.expected_length is not None and stream.received > stream.expected_length:
            self._fail(stream_id, stream, self._error_status, "more DATA than content-length", out)
        elif self._max_body_bytes is not None and stream.received > self._max_body_bytes:
            status = 413 if self._error_status == 400 else self._error_status
            self._fail(stream_id, stream, status, "body larger than the limit", out)
        elif data:
            out.append((stream_id, Data(data)))

    def _on_trailers(self, stream_id: int, raw: RawHeaders, out: _Out) -> None:
        stream = self._streams.get(stream_id)
        if stream is None or stream.failed:
            return
        fields = decode_block(raw)
        if header_list_size(fields) > self._max_header_bytes:
            status = 431 if self._error_status == 400 else self._error_status
            self._fail(stream_id, stream, status, "trailers larger than the limit", out)
            return
        self._finish(stream_id, stream, tuple(fields), out)

    def _on_end(self, stream_id: int, out: _Out) -> None:
        stream = self._streams.get(stream_id)
        if stream is None or stream.failed or stream.remote_ended:
            if stream is not None:
                stream.remote_ended = True
                self._maybe_forget(stream_id, stream)
            return
        self._finish(stream_id, stream, (), out)

    def _finish(
        self,
        stream_id: int,
        stream: _Stream,
        trailers: Headers,
        out: _Out,
    ) -> None:
        stream.remote_ended = True
        expected = stream.expected_length
        if expected is not None and stream.received != expected:
            self._fail(
                stream_id, stream, self._error_status, "DATA shorter than content-length", out
            )
            return
        out.append((stream_id, EndOfMessage(trailers)))
        self._maybe_forget(stream_id, stream)

    def _on_reset(
        self,
        stream_id: int,
        error_code: int,
        remote: bool,
        out: _Out,
    ) -> None:
        if self._streams.pop(stream_id, None) is not None:
            out.append((stream_id, StreamReset(error_code, remote)))
        self._release(stream_id)

    def _on_window(self, stream_id: int, out: _Out) -> None:
        out.append((stream_id, WindowOpened()))

    def _on_goaway(self, goaway: GoAway, out: _Out) -> None:
        self._goaway_received = goaway
        if goaway.error_code != ErrorCode.NO_ERROR:
            self._terminate(out, goaway.error_code, "peer sent GOAWAY with an error", remote=True)
        else:
            out.append((0, GoAwayReceived(goaway.last_stream_id, goaway.debug_data)))

    def _fail(
        self,
        stream_id: int,
        stream: _Stream,
        status: int,
        reason: str,
        out: _Out,
    ) -> None:
        """A stream error: report it once, drop further input for the stream."""
        stream.failed = True
        self._release(stream_id)
        out.append((stream_id, ProtocolError(status, reason)))

    def _connection_error(
        self,
        out: _Out,
        error_code: int,
        reason: str,
        *,
        sent: bool = False,
    ) -> None:
        if not sent:
            # Written by us: h2's state machine may already be closed, and h2 does not
            # know the streams it has not been told about (a GOAWAY we intercepted).
            self._flush()
            last = 0 if self._client_side else self._highest_stream_id
            self._out += goaway_frame(last, error_code)
        self._terminate(out, error_code, reason, remote=False)

    def _terminate(
        self,
        out: _Out,
        error_code: int,
        reason: str,
        *,
        remote: bool,
    ) -> None:
        self._flush()
        self._terminated = True
        self._streams.clear()
        self._unconsumed.clear()
        self._splitter.buffer.clear()
        out.append((0, ConnectionTerminated(int(error_code), reason, remote)))

    # --- flow control ------------------------------------------------------------

    def _acknowledge(self, stream_id: int, size: int) -> None:
        if size <= 0 or self._terminated:
            return
        try:
            self._conn.acknowledge_received_data(size, stream_id)
        except H2Error:  # pragma: no cover - h2 tolerates closed streams here
            return
        self._flush()

    def _release(self, stream_id: int) -> None:
        """Hand back the window of bytes the engine will never consume."""
        self._acknowledge(stream_id, self._unconsumed.pop(stream_id, 0))

    def consumed(self, stream_id: int, size: int) -> None:
        """The engine has passed on ``size`` bytes of ``Data`` received on the stream
        (written them upstream or dropped them): let the peer send that much more.
        Clamped to what is outstanding, so late or repeated calls are harmless."""
        outstanding = self._unconsumed.get(stream_id, 0)
        size = min(size, outstanding)
        if size <= 0:
            return
        if size == outstanding:
            del self._unconsumed[stream_id]
        else:
            self._unconsumed[stream_id] = outstanding - size
        self._acknowledge(stream_id, size)

    def unconsumed(self, stream_id: int) -> int:
        """Bytes delivered on the stream and not yet :meth:`consumed`."""
        return self._unconsumed.get(stream_id, 0)

    def send_window(self, stream_id: int) -> int:
        """How many body bytes :meth:`send_data` would accept on the stream now."""
        if self._terminated or stream_id not in self._streams:
            return 0
        try:
            return max(0, self._conn.local_flow_control_window(stream_id))
        except H2Error:
            return 0

    # --- sending -----------------------------------------------------------------

    def _sendable(self, stream_id: int) -> _Stream | None:
        """The stream if we may still send on it; ``None`` if it is gone (reset, dead
        connection). Raises ``ValueError`` for an id that never existed."""
        stream = self._streams.get(stream_id)
        if stream is not None and not self._terminated:
            return stream
        if self._terminated or 0 < stream_id <= self._highest_stream_id:
            return None
        raise ValueError(f"stream {stream_id} does not exist")

    def send_data(self, stream_id: int, data: bytes) -> int:
        """Send as much of ``data`` as the flow-control windows allow now.

        Returns the number of bytes accepted (0..len(data)); send the rest after a
        :class:`WindowOpened` for this stream or stream 0. On a stream that is gone,
        the data is dropped and reported accepted.
        """
        stream = self._sendable(stream_id)
        if stream is None:
            return len(data)
        if not stream.head_sent or stream.local_ended or stream.pending_body:
            raise ValueError(f"cannot send data on stream {stream_id} now")
        return self._send_body(stream_id, data)

    def _send_body(self, stream_id: int, data: bytes) -> int:
        conn = self._conn
        accepted = min(len(data), max(0, conn.local_flow_control_window(stream_id)))
        step = conn.max_outbound_frame_size
        view = memoryview(data)
        for start in range(0, accepted, step):
            conn.send_data(stream_id, bytes(view[start : min(start + step, accepted)]))
        self._flush()
        return accepted

    def send_end(self, stream_id: int, trailers: Headers = ()) -> None:
        """Finish our side of the stream, with trailers if any (gRPC status goes here).

        A no-op when the head already ended the stream (``NoBody``) or the stream is
        gone.
        """
        stream = self._sendable(stream_id)
        if stream is None or stream.local_ended:
            return
        if not stream.head_sent or stream.pending_body:
            raise ValueError(f"cannot end stream {stream_id} now")
        block = trailer_block(trailers)
        try:
            if block:
                self._conn.send_headers(stream_id, encode_block(block), end_stream=True)
            else:
                self._conn.end_stream(stream_id)
        except H2ProtocolError as error:
            raise ValueError(f"h2 refused to end stream {stream_id}: {error}") from None
        self._local_end(stream_id, stream)

    def _local_end(self, stream_id: int, stream: _Stream) -> None:
        stream.local_ended = True
        self._flush()
        self._maybe_forget(stream_id, stream)

    def reset_stream(self, stream_id: int, error_code: int = ErrorCode.CANCEL) -> None:
        """Abort the stream with RST_STREAM (no event follows)."""
        if self._sendable(stream_id) is None:
            return
        self._reset(stream_id, error_code)

    def _reset(self, stream_id: int, error_code: int) -> None:
        self._streams.pop(stream_id, None)
        with contextlib.suppress(H2Error):  # already closed on h2's side: nothing to send
            self._conn.reset_stream(stream_id, error_code)
        self._release(stream_id)
        self._flush()

    def _maybe_forget(self, stream_id: int, stream: _Stream) -> None:
        if stream.local_ended and stream.remote_ended and not stream.pending_body:
            self._streams.pop(stream_id, None)

    def goaway(self, error_code: int = ErrorCode.NO_ERROR, debug_data: bytes = b"") -> None:
        """Send GOAWAY. With ``NO_ERROR`` the open streams may finish (new ones are
        refused); close when :attr:`open_streams` is 0. With an error code the
        connection is over: write :meth:`bytes_to_send` and close."""
        if self._terminated or self._goaway_sent is not None:
            return
        self._flush()
        last = 0 if self._client_side else self._highest_stream_id
        self._out += goaway_frame(last, int(error_code), debug_data)
        self._goaway_sent = last
        if error_code != ErrorCode.NO_ERROR:
            self._terminated = True
            self._streams.clear()
            self._unconsumed.clear()

    # --- state -------------------------------------------------------------------

    @property
    def open_streams(self) -> int:
        """Streams not yet finished in both directions."""
        return len(self._streams)

    @property
    def terminated(self) -> bool:
        """The connection is over (see :class:`ConnectionTerminated`)."""
        return self._terminated

    def statistics(self) -> H2Statistics:
        return H2Statistics(
            open_streams=len(self._streams),
            unconsumed_bytes=sum(self._unconsumed.values()),
            send_window=self._conn.outbound_flow_control_window,
            receive_window=self._conn.inbound_flow_control_window,
            goaway_sent=self._goaway_sent is not None,
            goaway_received=self._goaway_received is not None,
            terminated=self._terminated,
        )


# --- server -------------------------------------------------------------------------


def h2c_upgrade_settings(head: RequestHead) -> str | None:
    """The ``HTTP2-Settings`` value if ``head`` is an acceptable h2c upgrade request.

    Acceptable: HTTP/1.1, ``Upgrade`` offers ``h2c``, ``Connection`` lists ``upgrade``
    and ``http2-settings``, exactly one ``HTTP2-Settings`` field, and no request body
    (RFC 7540 §3.2 would make us read the whole body over HTTP/1.1 first; a server may
    ignore the upgrade instead, which is what the engine does when this is ``None``).
    """
    if head.http_version != "1.1" or not isinstance(head.body, NoBody | FixedLength):
        return None
    if isinstance(head.body, FixedLength) and head.body.length:
        return None
    offers = {
        token.strip().lower()
        for value in header_values(head.headers, "upgrade")
        for token in value.split(",")
    }
    settings = header_values(head.headers, "http2-settings")
    if "h2c" not in offers or len(settings) != 1:
        return None
    if not {"upgrade", "http2-settings"} <= connection_tokens(head.headers):
        return None
    return settings[0]


def _decode_settings_header(value: str | bytes) -> bytes:
    raw = value.encode("latin-1") if isinstance(value, str) else value
    raw = raw.strip()
    try:
        payload = base64.urlsafe_b64decode(raw + b"=" * (-len(raw) % 4))
    except (binascii.Error, ValueError):
        raise ValueError("HTTP2-Settings is not base64url") from None
    if len(payload) % 6:
        raise ValueError("HTTP2-Settings payload is not a list of settings")
    return base64.urlsafe_b64encode(payload)


class Http2ServerCodec(_H2Codec):
    """The downstream side of one HTTP/2 connection (we are the server).

    Typical use::

        codec = Http2ServerCodec(max_header_bytes=..., max_body_bytes=...)
        write(codec.initiate())                  # our SETTINGS
        for stream_id, event in codec.receive(data): ...
        codec.send_response_head(stream_id, head); codec.send_data(...); codec.send_end(...)
        write(codec.bytes_to_send())

    For each request stream the engine sees ``RequestHead`` (``http_version="2"``,
    ``target`` = ``:path``, ``:authority`` as ``host``; the ``:scheme`` is
    :meth:`scheme_of`), ``Data``*, ``EndOfMessage(trailers)``; or a
    ``ProtocolError(status)`` to answer with :meth:`send_local_response`.
    """

    _client_side = False
    _error_status = 400

    def __init__(
        self,
        *,
        max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES,
        max_body_bytes: int | None = DEFAULT_MAX_BODY_BYTES,
        max_concurrent_streams: int = 100,
        initial_window: int = DEFAULT_INITIAL_WINDOW,
        connection_window: int = DEFAULT_CONNECTION_WINDOW,
    ) -> None:
        super().__init__(
            max_header_bytes=max_header_bytes,
            max_body_bytes=max_body_bytes,
            max_concurrent_streams=max_concurrent_streams,
            initial_window=initial_window,
            connection_window=connection_window,
        )

    @classmethod
    def from_prior_knowledge(
        cls,
        *,
        max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES,
        max_body_bytes: int | None = DEFAULT_MAX_BODY_BYTES,
        max_concurrent_streams: int = 100,
        initial_window: int = DEFAULT_INITIAL_WINDOW,
        connection_window: int = DEFAULT_CONNECTION_WINDOW,
    ) -> Self:
        """A codec for a cleartext connection that starts with the client preface
        (:func:`looks_like_h2_preface` said ``True``). Already initiated: our SETTINGS
        are waiting in :meth:`bytes_to_send`; feed it the bytes read so far."""
        codec = cls(
            max_header_bytes=max_header_bytes,
            max_body_bytes=max_body_bytes,
            max_concurrent_streams=max_concurrent_streams,
            initial_window=initial_window,
            connection_window=connection_window,
        )
        codec._conn.initiate_connection()
        codec._after_initiate()
        return codec

    def initiate_upgrade(
        self, settings_header: str | bytes, request_head: RequestHead
    ) -> list[tuple[int, H2ServerEvent]]:
        """Switch an HTTP/1.1 connection to h2c (RFC 7540 §3.2) after ``request_head``.

        Queues ``101 Switching Protocols`` followed by our SETTINGS in
        :meth:`bytes_to_send`, applies the client's ``HTTP2-Settings``, and returns the
        request as stream 1 (head and end), to be answered like any stream. Raises
        ``ValueError`` (and stays unusable) if the request cannot be upgraded; check
        :func:`h2c_upgrade_settings` first and answer over HTTP/1.1 instead.
        """
        if self._initiated:
            raise ValueError("connection already started")
        if h2c_upgrade_settings(request_head) is None:
            raise ValueError("not an acceptable h2c upgrade request")
        header = _decode_settings_header(settings_header)
        try:
            self._conn.initiate_upgrade_connection(header)
        except (H2Error, ValueError) as error:
            self._terminated = True
            raise ValueError(f"invalid HTTP2-Settings: {error}") from None
        self._out += SWITCHING_PROTOCOLS
        self._after_initiate()
        fields = [
            (name, value)
            for name, value in request_head.headers
            if name not in ("connection", "upgrade", "http2-settings", "keep-alive", "te")
            and name not in connection_tokens(request_head.headers)
        ]
        head = RequestHead(request_head.method, request_head.target, tuple(fields), "2", NoBody())
        self._streams[1] = _Stream(method=head.method, scheme="http", remote_ended=True)
        self._highest_stream_id = 1
        return [(1, head), (1, EndOfMessage())]

    def receive(self, data: bytes) -> list[tuple[int, H2ServerEvent]]:
        """Feed bytes from the client (``b""`` = it closed); see the module docstring."""
        return cast(list[tuple[int, H2ServerEvent]], self._receive(data))

    def scheme_of(self, stream_id: int) -> str | None:
        """The ``:scheme`` of the request on the stream (``"https"``, ``"http"``)."""
        stream = self._streams.get(stream_id)
        return stream.scheme if stream is not None else None

    def _on_head(
        self,
        stream_id: int,
        raw: RawHeaders,
        end_stream: bool,
        out: _Out,
    ) -> None:
        self._highest_stream_id = max(self._highest_stream_id, stream_id)
        stream = self._streams.get(stream_id)
        if stream is not None:  # pragma: no cover - h2 turns a second head into trailers
            return
        stream = _Stream()
        self._streams[stream_id] = stream
        if self._goaway_sent is not None and stream_id > self._goaway_sent:
            self._reset(stream_id, ErrorCode.REFUSED_STREAM)
            return
        fields = decode_block(raw)
        if header_list_size(fields) > self._max_header_bytes:
            self._fail(stream_id, stream, 431, "header section larger than the limit", out)
            return
        try:
            head, scheme = request_from_block(
                fields, end_stream=end_stream, max_body_bytes=self._max_body_bytes
            )
        except HeaderRejected as error:
            self._fail(stream_id, stream, error.status, error.reason, out)
            return
        stream.method = head.method
        stream.scheme = scheme
        if isinstance(head.body, FixedLength):
            stream.expected_length = head.body.length
        out.append((stream_id, head))

    def send_response_head(self, stream_id: int, head: ResponseHead) -> None:
        """Send a response head (no reason phrase on HTTP/2; hop-by-hop fields dropped;
        ``content-length`` from a ``FixedLength`` body). A ``NoBody`` final head ends
        the stream at once. 1xx heads (except 101) may precede the final one."""
        if head.status == 101 or not 100 <= head.status <= 999:
            raise ValueError(f"cannot send status {head.status} on HTTP/2")
        stream = self._sendable(stream_id)
        if stream is None:
            return
        if stream.head_sent or stream.local_ended:
            raise ValueError(f"response head already sent on stream {stream_id}")
        final = head.status >= 200
        end = final and isinstance(head.body, NoBody)
        try:
            self._conn.send_headers(stream_id, encode_block(response_block(head)), end_stream=end)
        except H2ProtocolError as error:
            raise ValueError(f"h2 refused the response head: {error}") from None
        self._flush()
        if final:
            stream.head_sent = True
        if end:
            self._local_end(stream_id, stream)

    def _local_end(self, stream_id: int, stream: _Stream) -> None:
        if not stream.remote_ended:
            # RFC 9113 §8.1: a complete response before the complete request; ask the
            # client to stop sending, without error.
            self._reset(stream_id, ErrorCode.NO_ERROR)
            return
        super()._local_end(stream_id, stream)

    def send_local_response(
        self, stream_id: int, status: int, headers: Headers = (), body: bytes = b""
    ) -> None:
        """A complete response generated by the gateway (400, 413, 431, 501, ...).

        The codec sends the body itself as windows allow (it is small: at most
        :data:`MAX_LOCAL_BODY_BYTES`). If a response head was already sent, a new
        response is impossible and the stream is reset with INTERNAL_ERROR instead.
        """
        if len(body) > MAX_LOCAL_BODY_BYTES:
            raise ValueError("local response body too large")
        stream = self._sendable(stream_id)
        if stream is None:
            return
        if stream.head_sent or stream.local_ended:
            self._reset(stream_id, ErrorCode.INTERNAL_ERROR)
            return
        framing = FixedLength(len(body)) if body else NoBody()
        self.send_response_head(stream_id, ResponseHead(status, "", headers, "2", framing))
        if body:
            stream.pending_body += body
            self._pump_local_body(stream_id, stream)

    def _pump_local_body(self, stream_id: int, stream: _Stream) -> None:
        pending = stream.pending_body
        sent = self._send_body(stream_id, bytes(pending))
        del pending[:sent]
        if not pending:
            self.send_end(stream_id)

    def _on_window(self, stream_id: int, out: _Out) -> None:
        targets = (
            list(self._streams.items())
            if stream_id == 0
            else [(stream_id, s) for s in [self._streams.get(stream_id)] if s is not None]
        )
        for sid, stream in targets:
            if stream.pending_body and not self._terminated:
                self._pump_local_body(sid, stream)
        super()._on_window(stream_id, out)


# --- client -------------------------------------------------------------------------


class Http2ClientCodec(_H2Codec):
    """The upstream side of one HTTP/2 connection (we are the client).

    :meth:`send_request` opens a stream per request (check :attr:`available_streams`
    first); responses come back from :meth:`receive` as ``ResponseHead`` (1xx heads
    have no end), ``Data``*, ``EndOfMessage(trailers)``. Anything malformed the
    upstream sends on a stream becomes ``ProtocolError(502)`` and the stream is reset.
    After a GOAWAY, streams the upstream never processed come back as
    ``StreamReset(REFUSED_STREAM)`` (:attr:`StreamReset.refused`): retry them elsewhere.
    """

    _client_side = True
    _error_status = 502

    def __init__(
        self,
        *,
        max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES,
        max_body_bytes: int | None = None,
        max_concurrent_streams: int = 100,
        initial_window: int = DEFAULT_INITIAL_WINDOW,
        connection_window: int = DEFAULT_CONNECTION_WINDOW,
        scheme: str = "https",
    ) -> None:
        super().__init__(
            max_header_bytes=max_header_bytes,
            max_body_bytes=max_body_bytes,
            max_concurrent_streams=max_concurrent_streams,
            initial_window=initial_window,
            connection_window=connection_window,
        )
        self._scheme = scheme

    @property
    def max_concurrent_streams(self) -> int:
        """The upstream's SETTINGS_MAX_CONCURRENT_STREAMS (unlimited shows as 2**31)."""
        return min(self._conn.remote_settings.max_concurrent_streams, 2**31)

    @property
    def available_streams(self) -> int:
        """How many more requests may be sent now (0 after GOAWAY or termination)."""
        if (
            self._terminated
            or not self._initiated
            or self._goaway_received is not None
            or self._goaway_sent is not None
        ):
            return 0
        left = self.max_concurrent_streams - self._conn.open_outbound_streams
        ids_left = (2**31 - 1 - max(self._highest_stream_id, -1)) // 2
        return max(0, min(left, ids_left))

    def send_request(self, head: RequestHead, *, scheme: str | None = None) -> int:
        """Open a stream and send the request head; returns the stream id.

        Host becomes ``:authority``, connection-specific fields are dropped, ``te`` is
        kept only as ``te: trailers``. A ``NoBody`` head ends the stream at once (a
        later :meth:`send_end` is a no-op). Raises ``ValueError`` when no stream is
        available or the head cannot be sent (CONNECT is not supported).
        """
        if head.method == "CONNECT":
            raise ValueError("CONNECT is not supported")
        if self.available_streams == 0:
            raise ValueError("no stream available on this connection")
        block = encode_block(request_block(head, scheme or self._scheme))
        end = isinstance(head.body, NoBody)
        try:
            stream_id = self._conn.get_next_available_stream_id()
            self._conn.send_headers(stream_id, block, end_stream=end)
        except H2ProtocolError as error:
            raise ValueError(f"h2 refused the request: {error}") from None
        self._highest_stream_id = stream_id
        self._streams[stream_id] = _Stream(
            method=head.method, scheme=scheme or self._scheme, head_sent=True, local_ended=end
        )
        self._flush()
        return stream_id

    def receive(self, data: bytes) -> list[tuple[int, H2ClientEvent]]:
        """Feed bytes from the upstream (``b""`` = it closed); see the module docstring."""
        return cast(list[tuple[int, H2ClientEvent]], self._receive(data))

    def _on_head(
        self,
        stream_id: int,
        raw: RawHeaders,
        end_stream: bool,
        out: _Out,
    ) -> None:
        stream = self._streams.get(stream_id)
        if stream is None or stream.failed:
            return
        fields = decode_block(raw)
        if header_list_size(fields) > self._max_header_bytes:
            self._fail(stream_id, stream, 502, "response header section larger than the limit", out)
            return
        try:
            head = response_from_block(fields, end_stream=end_stream, request_method=stream.method)
        except HeaderRejected as error:
            self._fail(stream_id, stream, error.status, error.reason, out)
            return
        if head.status >= 200 and isinstance(head.body, FixedLength):
            stream.expected_length = head.body.length
        elif head.status >= 200 and isinstance(head.body, NoBody) and not end_stream:
            stream.expected_length = 0  # HEAD, 204, 304: any DATA is an error
        out.append((stream_id, head))

    def _fail(
        self,
        stream_id: int,
        stream: _Stream,
        status: int,
        reason: str,
        out: _Out,
    ) -> None:
        super()._fail(stream_id, stream, status, reason, out)
        self._reset(stream_id, ErrorCode.PROTOCOL_ERROR)

    def _on_goaway(self, goaway: GoAway, out: _Out) -> None:
        for stream_id in sorted(self._streams):
            if stream_id > goaway.last_stream_id:
                self._reset(stream_id, ErrorCode.CANCEL)
                out.append((stream_id, StreamReset(ErrorCode.REFUSED_STREAM, remote=True)))
        super()._on_goaway(goaway, out)
