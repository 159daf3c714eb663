"""HTTP/2 header blocks <-> neutral heads, as pure functions.

Inbound blocks have already passed h2's validation (``validate_inbound_headers``):
lower-case names, no connection-specific fields, ``te`` only ``trailers``, pseudo-header
fields complete, unique and first, ``:authority`` equal to ``Host`` when both are
present. The checks here are the ones h2 does not make, plus the ones a gateway needs
before forwarding a head to an HTTP/1.1 peer (a ``:path`` with a space would split a
request line). Each failing check names the HTTP status to answer with.

Outbound, hop-by-hop and connection-specific fields are dropped and framing fields
(content-length) are regenerated from the head's ``body``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final
from urllib.parse import urlsplit

from gwcore.protocol.messages import (
    BodyFraming,
    FixedLength,
    Headers,
    NoBody,
    RequestHead,
    ResponseHead,
    UnknownLength,
    connection_tokens,
)

RawHeaders = Iterable[tuple[bytes, bytes]]

HEADER_ENTRY_OVERHEAD: Final = 32
"""Per-field overhead in the RFC 9113 §6.5.2 header list size."""

CONNECTION_SPECIFIC: Final = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "transfer-encoding",
        "upgrade",
        "te",
        "http2-settings",
    }
)
"""Fields that never cross into an HTTP/2 block (``te: trailers`` excepted on requests)."""

_FRAMING: Final = frozenset({"content-length", "transfer-encoding"})
_TCHAR: Final = frozenset(
    b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
)
_MAX_CONTENT_LENGTH_DIGITS: Final = 18


class HeaderRejected(Exception):
    """An inbound block is unacceptable; ``status`` is the HTTP status to answer."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def header_list_size(fields: Iterable[tuple[str, str]]) -> int:
    """The RFC 9113 §6.5.2 size of a header list: name + value + 32 per field."""
    return sum(len(name) + len(value) + HEADER_ENTRY_OVERHEAD for name, value in fields)


def decode_block(raw: RawHeaders) -> list[tuple[str, str]]:
    """h2's byte pairs as latin-1 text (every byte maps to one character)."""
    return [(name.decode("latin-1"), value.decode("latin-1")) for name, value in raw]


def _is_token(text: str) -> bool:
    return bool(text) and all(ord(c) < 128 and ord(c) in _TCHAR for c in text)


def _is_visible(text: str) -> bool:
    return bool(text) and all(0x21 <= ord(c) <= 0x7E for c in text)


def parse_content_length(values: list[str], status: int) -> int | None:
    """The single length all ``content-length`` values agree on, or ``None``.

    Strict: only digits (``int()`` would also take ``+5`` and ``1_0``), every
    repetition identical.
    """
    if not values:
        return None
    first = values[0]
    if (
        not first.isascii()
        or not first.isdigit()
        or len(first) > _MAX_CONTENT_LENGTH_DIGITS
        or any(v != first for v in values)
    ):
        raise HeaderRejected(status, "invalid content-length")
    return int(first)


def split_pseudo(fields: list[tuple[str, str]]) -> tuple[dict[str, str], Headers]:
    """Pseudo-header fields (validated unique by h2) and the regular fields, in order."""
    pseudo: dict[str, str] = {}
    regular: list[tuple[str, str]] = []
    for name, value in fields:
        if name.startswith(":"):
            pseudo[name] = value
        else:
            regular.append((name, value))
    return pseudo, tuple(regular)


def request_from_block(
    fields: list[tuple[str, str]], *, end_stream: bool, max_body_bytes: int | None
) -> tuple[RequestHead, str]:
    """A received request block as a neutral head, plus its ``:scheme``.

    ``:authority`` becomes a leading ``host`` field when the block has no Host.
    Raises :class:`HeaderRejected` (400, 413, 501).
    """
    pseudo, headers = split_pseudo(fields)
    method = pseudo.get(":method", "")
    if method == "CONNECT":
        raise HeaderRejected(501, "CONNECT is not supported")
    if not _is_token(method):
        raise HeaderRejected(400, "invalid :method")
    scheme = pseudo.get(":scheme", "")
    if not scheme or not all(c.isascii() and (c.isalnum() or c in "+-.") for c in scheme):
        raise HeaderRejected(400, "invalid :scheme")
    path = pseudo.get(":path", "")
    if not _is_visible(path) or not (path.startswith("/") or (path == "*" and method == "OPTIONS")):
        raise HeaderRejected(400, "invalid :path")
    for name, value in headers:
        if not _is_token(name):
            raise HeaderRejected(400, f"invalid field name {name!r}")
        if name in CONNECTION_SPECIFIC and not (name == "te" and value.lower() == "trailers"):
            raise HeaderRejected(400, f"connection-specific field {name!r}")
    hosts = [value for name, value in headers if name == "host"]
    authority = pseudo.get(":authority")
    if authority is not None:
        if not _is_visible(authority) or "@" in authority:
            raise HeaderRejected(400, "invalid :authority")
        if hosts and hosts != [authority]:
            raise HeaderRejected(400, ":authority and Host differ")
        if not hosts:
            headers = (("host", authority), *headers)
    elif len(hosts) != 1 or not _is_visible(hosts[0]):
        raise HeaderRejected(400, "missing or invalid Host")
    length = parse_content_length([v for n, v in headers if n == "content-length"], 400)
    body: BodyFraming
    if end_stream:
        if length:
            raise HeaderRejected(400, "content-length on a request without a body")
        body = NoBody() if length is None else FixedLength(0)
    elif length is not None:
        body = FixedLength(length)
    else:
        body = UnknownLength()
    if (
        isinstance(body, FixedLength)
        and max_body_bytes is not None
        and body.length > max_body_bytes
    ):
        raise HeaderRejected(413, "content-length larger than the limit")
    return RequestHead(method, path, headers, "2", body), scheme


def response_from_block(
    fields: list[tuple[str, str]], *, end_stream: bool, request_method: str
) -> ResponseHead:
    """A received response (or 1xx) block as a neutral head. Raises ``HeaderRejected(502)``."""
    pseudo, headers = split_pseudo(fields)
    status_text = pseudo.get(":status", "")
    if len(status_text) != 3 or not status_text.isascii() or not status_text.isdigit():
        raise HeaderRejected(502, "invalid :status")
    status = int(status_text)
    if status < 100 or status == 101:
        raise HeaderRejected(502, f"status {status} is not allowed on HTTP/2")
    for name, _ in headers:
        if not _is_token(name):
            raise HeaderRejected(502, f"invalid field name {name!r}")
    length = parse_content_length([v for n, v in headers if n == "content-length"], 502)
    body: BodyFraming
    if status < 200 or status in (204, 304) or request_method == "HEAD":
        body = NoBody()
    elif end_stream:
        if length:
            raise HeaderRejected(502, "content-length on a response without a body")
        body = NoBody() if length is None else FixedLength(0)
    elif length is not None:
        body = FixedLength(length)
    else:
        body = UnknownLength()
    return ResponseHead(status, "", headers, "2", body)


def _forwardable(headers: Headers, *, keep_te_trailers: bool) -> list[tuple[str, str]]:
    nominated = connection_tokens(tuple((name.lower(), value) for name, value in headers))
    out: list[tuple[str, str]] = []
    for name, value in headers:
        name = name.lower()
        if name.startswith(":") or name in _FRAMING or name in nominated:
            continue
        if name == "te":
            if keep_te_trailers and any(
                token.split(";")[0].strip().lower() == "trailers" for token in value.split(",")
            ):
                out.append(("te", "trailers"))
            continue
        if name in CONNECTION_SPECIFIC:
            continue
        out.append((name, value))
    return out


def _framing(body: BodyFraming) -> list[tuple[str, str]]:
    return [("content-length", str(body.length))] if isinstance(body, FixedLength) else []


def response_block(head: ResponseHead) -> list[tuple[str, str]]:
    """``:status`` plus the forwardable fields; no reason phrase exists on HTTP/2."""
    return [
        (":status", str(head.status)),
        *_forwardable(head.headers, keep_te_trailers=False),
        *(_framing(head.body) if head.status >= 200 else []),
    ]


def request_block(head: RequestHead, scheme: str) -> list[tuple[str, str]]:
    """Pseudo-header fields from the head, then the forwardable fields.

    Host becomes ``:authority`` (an absolute-form target's authority wins); ``te`` is
    kept only as ``te: trailers``. Raises ``ValueError`` for a head HTTP/2 cannot carry.
    """
    target = head.target
    hosts = [value for name, value in head.headers if name.lower() == "host"]
    authority = hosts[0] if hosts else None
    if target.startswith("/") or target == "*":
        path = target
    else:
        parts = urlsplit(target)
        if not parts.scheme or not parts.netloc:
            raise ValueError(f"cannot send target {target!r} over HTTP/2")
        scheme, authority = parts.scheme, parts.netloc
        path = parts.path or "/"
        if parts.query:
            path = f"{path}?{parts.query}"
    block = [(":method", head.method), (":scheme", scheme)]
    if authority is not None:
        block.append((":authority", authority))
    block.append((":path", path))
    block += [
        (name, value)
        for name, value in _forwardable(head.headers, keep_te_trailers=True)
        if name != "host"
    ]
    block += _framing(head.body)
    return block


def trailer_block(trailers: Headers) -> list[tuple[str, str]]:
    """Trailer fields that may be sent: no pseudo, framing or connection-specific ones."""
    return _forwardable(trailers, keep_te_trailers=False)


def encode_block(fields: list[tuple[str, str]]) -> list[tuple[bytes, bytes]]:
    """Text fields as the bytes h2 sends (latin-1, the inverse of :func:`decode_block`)."""
    try:
        return [(name.encode("latin-1"), value.encode("latin-1")) for name, value in fields]
    except UnicodeEncodeError as error:
        raise ValueError(f"header text is not latin-1: {error}") from None
