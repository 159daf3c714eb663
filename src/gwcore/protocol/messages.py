"""The neutral message model every protocol codec speaks.

A codec turns bytes into these messages and these messages into bytes. Nothing here
knows about HTTP/1.1 or HTTP/2 wire formats, so the engine can forward a request that
arrived over one protocol through another.

One message on a connection or stream is::

    RequestHead | ResponseHead, then Data*, then EndOfMessage

or, at any point, a single :class:`ProtocolError` after which the codec is dead.
Interim (1xx) responses are a :class:`ResponseHead` with ``NoBody`` and *no*
``EndOfMessage``; the final response head follows.

Text conventions (the same for every codec):

* header names are lower-case ASCII;
* header values and reason phrases are decoded as latin-1, so every byte maps to one
  character and re-encoding with latin-1 gives back the exact bytes received;
* headers keep their received order and repetitions (a repeated name is several
  values); optional whitespace around values is already stripped.
"""

from __future__ import annotations

from dataclasses import dataclass

Headers = tuple[tuple[str, str], ...]
"""(lower-case name, value) pairs in order; a repeated name means several values."""


# --- body framing -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NoBody:
    """The message has no body at all (GET without framing headers, 204, 304, 1xx,
    any response to HEAD)."""


@dataclass(frozen=True, slots=True)
class FixedLength:
    """The body is exactly ``length`` bytes, announced up front (Content-Length)."""

    length: int

    def __post_init__(self) -> None:
        if self.length < 0:
            raise ValueError(f"body length must be >= 0, got {self.length}")


@dataclass(frozen=True, slots=True)
class UnknownLength:
    """The body is streamed and its length is not known up front.

    On HTTP/1.1 this is chunked transfer coding (or, for a response to an HTTP/1.0
    client or from an HTTP/1.0 server, "until the connection closes"); on HTTP/2 it is
    DATA frames without a content-length.
    """


BodyFraming = NoBody | FixedLength | UnknownLength
"""How the end of a message body is found. Codecs regenerate the wire framing headers
(Content-Length / Transfer-Encoding) from this value; framing headers present in a
head's ``headers`` are informational and never copied to the wire."""


# --- messages ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RequestHead:
    """A request line and its header section.

    ``target`` is the request target exactly as received (origin-form ``/a?b``,
    absolute-form ``http://h/a`` or ``*``). ``http_version`` is ``"1.0"``, ``"1.1"``
    or ``"2"``.
    """

    method: str
    target: str
    headers: Headers
    http_version: str
    body: BodyFraming


@dataclass(frozen=True, slots=True)
class ResponseHead:
    """A status line and its header section; ``status`` 100-199 is an interim response."""

    status: int
    reason: str
    headers: Headers
    http_version: str
    body: BodyFraming


@dataclass(frozen=True, slots=True)
class Data:
    """A piece of body. Boundaries between pieces carry no meaning."""

    data: bytes


@dataclass(frozen=True, slots=True)
class EndOfMessage:
    """The body is complete; ``trailers`` is the trailer section (often empty)."""

    trailers: Headers = ()


@dataclass(frozen=True, slots=True)
class ProtocolError:
    """The peer broke the protocol; the codec is dead after this.

    ``status`` is the HTTP status to answer with (400, 413, 431, 501, 505 for a
    downstream client; 502 for an upstream server). The caller answers if it still can
    and closes the connection. ``reason`` is a short human-readable explanation for
    logs; never echo it to the peer verbatim in a trusted context.
    """

    status: int
    reason: str


RequestMessage = RequestHead | Data | EndOfMessage | ProtocolError
"""What a server-side codec produces from downstream bytes."""

ResponseMessage = ResponseHead | Data | EndOfMessage | ProtocolError
"""What a client-side codec produces from upstream bytes."""


def header_values(headers: Headers, name: str) -> list[str]:
    """Every value of header ``name`` (lower-case), in order."""
    return [value for key, value in headers if key == name]


def connection_tokens(headers: Headers) -> set[str]:
    """The lower-cased, comma-separated tokens of all ``Connection`` headers."""
    return {
        token.strip().lower()
        for value in header_values(headers, "connection")
        for token in value.split(",")
        if token.strip()
    }
