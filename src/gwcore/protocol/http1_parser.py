"""The parser boundary behind the HTTP/1.1 codecs, and its h11 implementation.

The codecs in :mod:`gwcore.protocol.http1` own everything security-relevant: strict
syntax, limits, and which bytes belong to which message. Behind them sits a
:class:`Http1Parser` that turns the bytes of *one* message at a time into neutral
messages and neutral messages into bytes. Today that is h11; an httptools/llhttp
parser can replace it by implementing the same four methods. No h11 type crosses
this module's boundary.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal, Protocol

import h11

from gwcore.protocol.http1_syntax import SyntaxViolation, request_framing, response_framing
from gwcore.protocol.messages import (
    Data,
    EndOfMessage,
    FixedLength,
    Headers,
    NoBody,
    RequestHead,
    ResponseHead,
    UnknownLength,
)

ParsedMessage = RequestHead | ResponseHead | Data | EndOfMessage
_FRAMING_HEADERS = frozenset({"content-length", "transfer-encoding"})


class ParserError(Exception):
    """The parser refused the peer's bytes; ``status`` is the HTTP status hint."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class Http1Parser(Protocol):
    """One side (server or client) of one HTTP/1.1 connection.

    Contract with the codec in front of it:

    * ``feed`` receives only bytes of the current message, never bytes of a later
      pipelined message; heads arrive whole. It returns every complete message it can
      and raises :class:`ParserError` (never anything else) on bad input.
    * ``feed_eof`` reports the peer's end of stream (ends a close-delimited body).
    * ``start_next_cycle`` is called only when both directions finished a message and
      :attr:`reusable` is true.
    * ``send`` serialises a local message; it raises ``ValueError`` when the local side
      breaks the protocol (a bug in the caller, not the peer's fault). Framing headers
      are generated from ``head.body``; those in ``head.headers`` are ignored.
    """

    def feed(self, data: bytes) -> list[ParsedMessage]: ...

    def feed_eof(self) -> list[ParsedMessage]: ...

    def start_next_cycle(self) -> None: ...

    def send(self, message: ParsedMessage) -> bytes: ...

    @property
    def reusable(self) -> bool:
        """Both sides finished their message and neither asked to close."""
        ...


def _encode_headers(headers: Headers) -> list[tuple[bytes, bytes]]:
    return [
        (name.encode("ascii"), value.encode("latin-1"))
        for name, value in headers
        if name not in _FRAMING_HEADERS
    ]


def _decode_headers(headers: Iterable[tuple[bytes, bytes]]) -> Headers:
    return tuple((name.decode("ascii"), value.decode("latin-1")) for name, value in headers)


class H11Parser:
    """:class:`Http1Parser` on h11's public API."""

    def __init__(self, role: Literal["server", "client"], max_head_bytes: int) -> None:
        self._role = role
        self._conn = h11.Connection(
            h11.SERVER if role == "server" else h11.CLIENT,
            # The codec enforces the real limits before h11 sees a byte.
            max_incomplete_event_size=max_head_bytes + 65536,
        )
        self._request_method = ""

    @property
    def reusable(self) -> bool:
        return self._conn.our_state is h11.DONE and self._conn.their_state is h11.DONE

    def feed(self, data: bytes) -> list[ParsedMessage]:
        try:
            self._conn.receive_data(data)
            return self._drain()
        except h11.RemoteProtocolError as error:
            raise ParserError(error.error_status_hint, str(error)) from None
        except SyntaxViolation as error:
            raise ParserError(error.status, error.reason) from None

    def feed_eof(self) -> list[ParsedMessage]:
        return self.feed(b"")

    def start_next_cycle(self) -> None:
        try:
            self._conn.start_next_cycle()
        except h11.LocalProtocolError as error:
            raise ValueError(str(error)) from None

    def _drain(self) -> list[ParsedMessage]:
        out: list[ParsedMessage] = []
        while True:
            event = self._conn.next_event()
            if event is h11.NEED_DATA or event is h11.PAUSED:
                return out
            if isinstance(event, h11.Request):
                version = event.http_version.decode("ascii")
                headers = _decode_headers(event.headers)
                self._request_method = event.method.decode("ascii")
                out.append(
                    RequestHead(
                        method=self._request_method,
                        target=event.target.decode("ascii"),
                        headers=headers,
                        http_version=version,
                        body=request_framing(version, headers),
                    )
                )
            elif isinstance(event, h11.InformationalResponse | h11.Response):
                version = event.http_version.decode("ascii")
                headers = _decode_headers(event.headers)
                out.append(
                    ResponseHead(
                        status=event.status_code,
                        reason=event.reason.decode("latin-1"),
                        headers=headers,
                        http_version=version,
                        body=response_framing(
                            self._request_method, event.status_code, version, headers
                        ),
                    )
                )
            elif isinstance(event, h11.Data):
                out.append(Data(bytes(event.data)))
            elif isinstance(event, h11.EndOfMessage):
                out.append(EndOfMessage(_decode_headers(event.headers)))
            elif isinstance(event, h11.ConnectionClosed):
                return out

    def send(self, message: ParsedMessage) -> bytes:
        try:
            data = self._conn.send(self._to_h11(message))
        except h11.LocalProtocolError as error:
            raise ValueError(str(error)) from None
        return data or b""

    def _to_h11(self, message: ParsedMessage) -> h11.Event:
        if isinstance(message, Data):
            return h11.Data(data=message.data)
        if isinstance(message, EndOfMessage):
            return h11.EndOfMessage(headers=_encode_headers(message.trailers))
        headers = _encode_headers(message.headers)
        if isinstance(message.body, FixedLength):
            headers.append((b"content-length", str(message.body.length).encode("ascii")))
        if isinstance(message, RequestHead):
            if self._role != "client":
                raise ValueError("a server does not send requests")
            if isinstance(message.body, UnknownLength):
                headers.append((b"transfer-encoding", b"chunked"))
            self._request_method = message.method
            return h11.Request(
                method=message.method.encode("ascii"),
                target=message.target.encode("ascii"),
                headers=headers,
            )
        if self._role != "server":
            raise ValueError("a client does not send responses")
        if message.status < 200:
            return h11.InformationalResponse(
                status_code=message.status,
                headers=headers,
                reason=message.reason.encode("latin-1"),
            )
        no_body_status = message.status in (204, 304) or self._request_method == "HEAD"
        if isinstance(message.body, NoBody) and not no_body_status:
            headers.append((b"content-length", b"0"))
        # UnknownLength: h11 picks chunked for HTTP/1.1 peers, close-delimited otherwise.
        return h11.Response(
            status_code=message.status,
            headers=headers,
            reason=message.reason.encode("latin-1"),
        )
