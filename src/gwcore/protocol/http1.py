"""HTTP/1.1 codecs: bytes <-> neutral messages, for one connection, without I/O.

:class:`Http1ServerCodec` faces a downstream client, :class:`Http1ClientCodec` an
upstream server. Both put a strict gate in front of an :class:`Http1Parser` (h11 by
default):

1. **Heads** are located and checked on raw bytes by :mod:`http1_syntax` (bare LF,
   obs-fold, CL+TE, ... are refused) once per head, bounded by ``max_header_bytes``.
   The parser then parses the same head and the two results must agree.
2. **Bodies** are cut by the gate: exactly Content-Length bytes, or exactly the bytes a
   strict chunked recogniser accepts. The parser never sees a byte of the next
   message, so the two cannot disagree about where a message ends.
3. **Pipelining**: after a request's EndOfMessage, the server codec holds every further
   byte until :meth:`Http1ServerCodec.response_done`; responses can never interleave.

Receiving never raises: bad input becomes one :class:`ProtocolError` and the codec is
dead from then on (later input yields nothing). Sending raises ``ValueError`` when the
*caller* breaks the protocol (e.g. more data than the announced length).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Final, Generic, Literal, TypeVar, cast

from gwcore.protocol.http1_parser import H11Parser, Http1Parser, ParsedMessage, ParserError
from gwcore.protocol.http1_syntax import (
    DEFAULT_METHODS,
    ChunkedBodyScanner,
    SyntaxViolation,
    locate_head_end,
    parse_request_head,
    parse_response_head,
    standard_reason,
)
from gwcore.protocol.messages import (
    Data,
    EndOfMessage,
    FixedLength,
    Headers,
    NoBody,
    ProtocolError,
    RequestHead,
    RequestMessage,
    ResponseHead,
    ResponseMessage,
    UnknownLength,
    connection_tokens,
    header_values,
)

DEFAULT_MAX_HEADER_BYTES: Final = 16 * 1024
DEFAULT_MAX_BODY_BYTES: Final = 10 * 1024 * 1024

Head = TypeVar("Head", RequestHead, ResponseHead)

# The gate's states, one message at a time:
#
#   head --(head parsed, body framed)--> body --(EndOfMessage)--> done
#   head --(interim 1xx response)------> head
#   done --(next cycle)----------------> head
#   any  --(ProtocolError)-------------> dead   (absorbing)
#   head --(EOF with nothing buffered)-> closed (absorbing)
GateState = Literal["head", "body", "done", "closed", "dead"]


@dataclass(slots=True)
class _BodyCut:
    """How the gate finds the end of the current body."""

    kind: Literal["fixed", "chunked", "until_close"]
    remaining: int = 0
    scanner: ChunkedBodyScanner | None = None


class _Gate(Generic[Head]):
    """Cuts the incoming byte stream into messages and feeds them to the parser."""

    def __init__(
        self,
        parser: Http1Parser,
        parse_head: Callable[[bytes], Head],
        max_header_bytes: int,
        max_body_bytes: int | None,
        head_too_large_status: int,
        skip_empty_lines: bool,
    ) -> None:
        self.parser = parser
        self.skip_empty_lines = skip_empty_lines
        self.skipped_bytes = 0
        self.parse_head: Callable[[bytes], Head] = parse_head
        self.max_header_bytes = max_header_bytes
        self.max_body_bytes = max_body_bytes
        self.head_too_large_status = head_too_large_status
        self.buffer = bytearray()
        self.eof = False
        self.state: GateState = "head"
        self.cut: _BodyCut | None = None
        self.head: Head | None = None
        self.body_seen = 0

    def pump(self) -> tuple[list[ParsedMessage], ProtocolError | None]:
        """Turn as much of the buffer into messages as the state allows.

        Returns the messages and, if the input broke the protocol, the error that
        follows them (the gate is then dead and its buffer dropped).
        """
        out: list[ParsedMessage] = []
        try:
            while self.state in ("head", "body"):
                progressed = self._step_head(out) if self.state == "head" else self._step_body(out)
                if not progressed:
                    break
        except (SyntaxViolation, ParserError) as error:
            self.kill()
            return out, ProtocolError(error.status, error.reason)
        return out, None

    def kill(self) -> None:
        self.state = "dead"
        self.buffer.clear()

    def _step_head(self, out: list[ParsedMessage]) -> bool:
        while self.skip_empty_lines and self.buffer.startswith(b"\r\n"):
            # RFC 9112 §2.2: a server SHOULD ignore at least one empty line (CRLF)
            # before a request-line; clients send stray CRLFs after a body. They are
            # dropped, never forwarded, and count towards the head limit. A bare LF
            # is not an empty line and is refused by locate_head_end.
            del self.buffer[:2]
            self.skipped_bytes += 2
            if self.skipped_bytes >= self.max_header_bytes:
                raise SyntaxViolation(self.head_too_large_status, "too many empty lines")
        if not self.buffer:
            if self.eof:
                self.state = "closed"
            return False
        size = locate_head_end(self.buffer, self.max_header_bytes, self.head_too_large_status)
        if size == 0:
            if self.eof:
                raise SyntaxViolation(400, "connection closed inside a head")
            return False
        raw = bytes(self.buffer[:size])
        del self.buffer[:size]
        self.skipped_bytes = 0
        head = self.parse_head(raw)
        if (
            isinstance(head.body, FixedLength)
            and self.max_body_bytes is not None
            and head.body.length > self.max_body_bytes
        ):
            raise SyntaxViolation(413, "Content-Length larger than the limit")
        parsed = self.parser.feed(raw)
        if not parsed or parsed[0] != head:
            raise ParserError(400, "parser disagrees with the strict head reading")
        self.head = head
        out.append(head)
        if isinstance(head, ResponseHead) and head.status < 200:
            if parsed[1:]:
                raise ParserError(400, "parser produced a body for an interim response")
            return True
        if isinstance(head.body, NoBody) or head.body == FixedLength(0):
            self.cut = None
        elif isinstance(head.body, FixedLength):
            self.cut = _BodyCut("fixed", remaining=head.body.length)
        elif header_values(head.headers, "transfer-encoding"):
            self.cut = _BodyCut(
                "chunked",
                scanner=ChunkedBodyScanner(self.max_body_bytes, self.max_header_bytes),
            )
        else:
            self.cut = _BodyCut("until_close")
        self.state = "body"
        self._accept(parsed[1:], out, complete=self.cut is None)
        return True

    def _step_body(self, out: list[ParsedMessage]) -> bool:
        cut = self.cut
        assert cut is not None, "a body without a cut is complete at its head"
        if cut.kind == "fixed":
            take = min(cut.remaining, len(self.buffer))
            if take == 0:
                if self.eof:
                    raise SyntaxViolation(400, "connection closed inside a body")
                return False
            cut.remaining -= take
            self._feed(take, out, complete=cut.remaining == 0)
            return True
        if cut.kind == "chunked":
            assert cut.scanner is not None
            end, error = cut.scanner.scan(self.buffer, 0)
            if end:
                self._feed(end, out, complete=cut.scanner.done)
            if error is not None:
                raise error
            if not end and self.eof and not cut.scanner.done:
                raise SyntaxViolation(400, "connection closed inside a chunked body")
            return bool(end)
        # until_close: everything belongs to this body; the peer's EOF ends it.
        if self.buffer:
            self._feed(len(self.buffer), out, complete=False)
            if self.max_body_bytes is not None and self.body_seen > self.max_body_bytes:
                raise SyntaxViolation(413, "body larger than the limit")
            return True
        if self.eof:
            self._accept(self.parser.feed_eof(), out, complete=True)
        return False

    def _feed(self, size: int, out: list[ParsedMessage], complete: bool) -> None:
        chunk = bytes(self.buffer[:size])
        del self.buffer[:size]
        self.body_seen += size
        self._accept(self.parser.feed(chunk), out, complete)

    def _accept(
        self, parsed: list[ParsedMessage], out: list[ParsedMessage], complete: bool
    ) -> None:
        for message in parsed:
            if not isinstance(message, Data | EndOfMessage):
                raise ParserError(400, "parser produced a head inside a body")
        ended = bool(parsed) and isinstance(parsed[-1], EndOfMessage)
        if ended != complete or any(isinstance(m, EndOfMessage) for m in parsed[:-1]):
            raise ParserError(400, "parser disagrees with the strict body framing")
        out.extend(parsed)
        if ended:
            self.state = "done"
            self.cut = None
            self.body_seen = 0

    def next_cycle(self) -> None:
        self.parser.start_next_cycle()
        self.state = "head"
        self.head = None


def _with_reason(head: ResponseHead) -> ResponseHead:
    return head if head.reason else replace(head, reason=standard_reason(head.status))


class Http1ServerCodec:
    """The downstream side of one HTTP/1.x connection (we are the server).

    ``receive(bytes)`` yields :data:`RequestMessage` s; ``send_*`` return the bytes to
    write. One request is in flight at a time: after its ``EndOfMessage``, further
    bytes are held until :meth:`response_done`.
    """

    def __init__(
        self,
        *,
        max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        allowed_methods: frozenset[str] = DEFAULT_METHODS,
        parser: Http1Parser | None = None,
    ) -> None:
        self._gate: _Gate[RequestHead] = _Gate(
            parser or H11Parser("server", max_header_bytes),
            lambda raw: parse_request_head(raw, allowed_methods),
            max_header_bytes,
            max_body_bytes,
            head_too_large_status=431,
            skip_empty_lines=True,
        )
        self._error: ProtocolError | None = None
        self._response: ResponseHead | None = None
        self._response_chunked = False
        self._response_keep_alive = True
        self._response_complete = False

    # --- receiving ---------------------------------------------------------------

    def receive(self, data: bytes) -> list[RequestMessage]:
        """Feed bytes from the client (``b""`` = the client closed its side).

        Returns every message now complete: heads, body pieces, ends, or one final
        :class:`ProtocolError` (then the codec is dead; answer with
        :meth:`send_local_response` using its status, and close).
        """
        gate = self._gate
        if gate.state in ("dead", "closed"):
            return []
        if data:
            gate.buffer += data
        else:
            gate.eof = True
        return self._pump()

    def _pump(self) -> list[RequestMessage]:
        parsed, error = self._gate.pump()
        out = cast(list[RequestMessage], parsed)
        if error is not None:
            self._error = error
            out.append(error)
        return out

    @property
    def request(self) -> RequestHead | None:
        """The head of the request in flight, if one was received."""
        return self._gate.head

    @property
    def error(self) -> ProtocolError | None:
        """The error that killed the codec, if any."""
        return self._error

    @property
    def request_complete(self) -> bool:
        """The whole request in flight (head, body, end) has been received."""
        return self._gate.state == "done"

    @property
    def buffered_bytes(self) -> int:
        """Bytes received but not yet turned into messages (for backpressure)."""
        return len(self._gate.buffer)

    @property
    def keep_alive(self) -> bool:
        """Whether the connection can carry another request after this exchange.

        False for HTTP/1.0 clients, ``Connection: close`` from either side, a
        close-delimited response, client EOF, or a protocol error.
        """
        gate = self._gate
        # After the client's EOF, requests it pipelined before closing are still
        # answered: the connection is reusable while their bytes are buffered.
        ended = gate.eof and not gate.buffer
        if gate.state in ("dead", "closed") or ended or not self._response_keep_alive:
            return False
        head = gate.head
        if head is None:
            return True
        return head.http_version == "1.1" and "close" not in connection_tokens(head.headers)

    # --- sending -----------------------------------------------------------------

    def send_response_head(self, head: ResponseHead) -> bytes:
        """Serialise a response head; the reason phrase is filled in when empty.

        ``head.body`` decides framing: ``FixedLength`` -> Content-Length,
        ``UnknownLength`` -> chunked for HTTP/1.1 clients (close-delimited for 1.0),
        ``NoBody`` -> ``Content-Length: 0`` where a body would be expected. Interim
        1xx heads are allowed, except 101 (protocol switching is not supported).
        """
        if head.status == 101 or not 100 <= head.status <= 999:
            raise ValueError(f"cannot send status {head.status}")
        head = _with_reason(head)
        request = self._gate.head
        client_11 = request is not None and request.http_version == "1.1"
        if head.status >= 200:
            self._response = head
            self._response_chunked = isinstance(head.body, UnknownLength) and client_11
            if "close" in connection_tokens(head.headers) or (
                isinstance(head.body, UnknownLength) and not client_11
            ):
                self._response_keep_alive = False
        return self._gate.parser.send(head)

    def send_data(self, data: bytes) -> bytes:
        """Serialise a piece of response body."""
        return self._gate.parser.send(Data(data)) if data else b""

    def send_end(self, trailers: Headers = ()) -> bytes:
        """Finish the response. Trailers are sent only on a chunked response to a
        client that sent ``TE: trailers``; otherwise they are dropped."""
        if not (self._response_chunked and self._client_accepts_trailers()):
            trailers = ()
        self._response_complete = True
        return self._gate.parser.send(EndOfMessage(trailers))

    def _client_accepts_trailers(self) -> bool:
        request = self._gate.head
        return request is not None and any(
            token.strip().split(";")[0].strip().lower() == "trailers"
            for value in header_values(request.headers, "te")
            for token in value.split(",")
        )

    def send_local_response(self, status: int, headers: Headers = (), body: bytes = b"") -> bytes:
        """A complete response generated by the gateway (404, 413, 431, ...).

        Adds Content-Length, and ``Connection: close`` when the connection will not
        be reused: after a protocol error, when the request body was not fully read,
        or when keep-alive is off anyway. The caller closes after writing the bytes
        if :attr:`keep_alive` is false.
        """
        closing = not self.keep_alive or not self.request_complete
        if closing:
            self._response_keep_alive = False
            headers = (
                *((n, v) for n, v in headers if n != "connection"),
                ("connection", "close"),
            )
        head = ResponseHead(status, "", headers, "1.1", FixedLength(len(body)))
        return self.send_response_head(head) + self.send_data(body) + self.send_end()

    def detach(self) -> bytes:
        """Hand the connection over to another protocol (an h2c upgrade).

        Returns the bytes received after the request in flight (the client's next
        protocol has already started) and closes the codec; it yields nothing more.
        """
        gate = self._gate
        rest = bytes(gate.buffer)
        gate.buffer.clear()
        if gate.state != "dead":
            gate.state = "closed"
        return rest

    def response_done(self) -> list[RequestMessage]:
        """The response to the request in flight is fully written.

        If the connection stays open, the next pipelined request is released and its
        messages (possibly none yet) are returned. Otherwise the codec is closed and
        ``[]`` is returned; check :attr:`keep_alive` to decide whether to close.
        """
        gate = self._gate
        reusable = (
            self.keep_alive
            and self._response_complete
            and gate.state == "done"
            and gate.parser.reusable
        )
        self._response = None
        self._response_complete = False
        self._response_chunked = False
        if not reusable:
            if gate.state != "dead":
                gate.state = "closed"
            gate.buffer.clear()
            return []
        gate.next_cycle()
        return self._pump()


class Http1ClientCodec:
    """The upstream side of one HTTP/1.1 connection (we are the client).

    Send one request (:meth:`send_request`, :meth:`send_data`, :meth:`send_end`) and
    receive :data:`ResponseMessage` s. Anything malformed the upstream sends becomes
    ``ProtocolError(502, ...)``: the engine answers its client with 502.
    """

    def __init__(
        self,
        *,
        max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES,
        max_body_bytes: int | None = None,
        parser: Http1Parser | None = None,
    ) -> None:
        self._method = ""
        self._gate: _Gate[ResponseHead] = _Gate(
            parser or H11Parser("client", max_header_bytes),
            self._parse_response_head,
            max_header_bytes,
            max_body_bytes,
            head_too_large_status=502,
            skip_empty_lines=False,
        )
        self._gate.state = "done"  # nothing to receive before a request is sent
        self._request: RequestHead | None = None
        self._request_complete = False
        self._error: ProtocolError | None = None

    def _parse_response_head(self, raw: bytes) -> ResponseHead:
        head = parse_response_head(raw, self._method)
        if head.status == 101:
            raise SyntaxViolation(502, "upstream switched protocols unasked")
        return head

    @property
    def error(self) -> ProtocolError | None:
        return self._error

    @property
    def response_complete(self) -> bool:
        return self._request is not None and self._gate.state == "done"

    @property
    def reusable(self) -> bool:
        """The exchange is over and the connection may carry another request."""
        gate = self._gate
        request = self._request
        if request is None or gate.eof or gate.state != "done" or not self._request_complete:
            return False
        response = gate.head
        if response is None or response.http_version != "1.1":
            return False
        closing = connection_tokens(request.headers) | connection_tokens(response.headers)
        return "close" not in closing and gate.parser.reusable

    def send_request(self, head: RequestHead) -> bytes:
        """Serialise a request head (always as HTTP/1.1; framing from ``head.body``:
        ``UnknownLength`` is sent chunked). Raises ``ValueError`` while another
        exchange is in progress or on a dead connection."""
        if head.method == "CONNECT":
            raise ValueError("CONNECT is not supported")
        if self._request is not None:
            if not self.reusable:
                raise ValueError("connection cannot carry another request")
            self._gate.next_cycle()
        elif self._gate.state == "dead":
            raise ValueError("connection is dead")
        data = self._gate.parser.send(head)
        self._request = head
        self._method = head.method
        self._request_complete = False
        self._gate.state = "head"
        self._gate.head = None
        return data

    def send_data(self, data: bytes) -> bytes:
        return self._gate.parser.send(Data(data)) if data else b""

    def send_end(self, trailers: Headers = ()) -> bytes:
        """Finish the request; trailers are sent only when the body is chunked."""
        if self._request is None or not isinstance(self._request.body, UnknownLength):
            trailers = ()
        self._request_complete = True
        return self._gate.parser.send(EndOfMessage(trailers))

    def receive(self, data: bytes) -> list[ResponseMessage]:
        """Feed bytes from the upstream (``b""`` = it closed)."""
        gate = self._gate
        if gate.state in ("dead", "closed"):
            return []
        if not data:
            gate.eof = True
        elif gate.state == "done":
            return self._fail(ProtocolError(502, "upstream sent bytes outside a response"))
        else:
            gate.buffer += data
        parsed, error = self._gate.pump()
        out = cast(list[ResponseMessage], parsed)
        if error is not None:
            out.extend(self._fail(ProtocolError(502, error.reason)))
        elif gate.state == "done" and gate.buffer:
            # A server may not send anything it was not asked for.
            out.extend(self._fail(ProtocolError(502, "upstream sent bytes after the response")))
        return out

    def _fail(self, error: ProtocolError) -> list[ResponseMessage]:
        self._gate.kill()
        self._error = error
        return [error]
