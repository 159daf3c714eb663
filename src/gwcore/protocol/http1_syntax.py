"""Strict HTTP/1.1 syntax (RFC 9112) checked on raw bytes, before any parser sees them.

Request smuggling lives in the gap between two parsers that frame the same bytes
differently. The gateway closes that gap in two ways: it forwards only what it
re-serialises from parsed messages, and it refuses every head or chunked body whose
framing another parser could read differently. This module is the second part. It is
deliberately stricter than h11 (which tolerates bare LF, obs-fold, chunk-size
whitespace and free-form chunk extensions) and than llhttp's strict mode in a few
places listed in ``tests/protocol/test_llhttp_cases.py``.

Every check raises :class:`SyntaxViolation` carrying the status to answer with. The
functions are pure: bytes in, a parsed head (or an offset) out.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from http import HTTPStatus
from typing import Final

from gwcore.protocol.messages import (
    BodyFraming,
    FixedLength,
    Headers,
    NoBody,
    RequestHead,
    ResponseHead,
    UnknownLength,
    header_values,
)


class SyntaxViolation(Exception):
    """The bytes break (our strict reading of) HTTP/1.1; ``status`` is the answer."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def standard_reason(status: int) -> str:
    """The RFC 9110 reason phrase for ``status``, or a generic one for its class."""
    if status in _RFC9110_REASONS:
        return _RFC9110_REASONS[status]
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return _CLASS_REASONS.get(status // 100, "Unknown")


# Where RFC 9110 renamed a status and the stdlib still has the old phrase.
_RFC9110_REASONS: Final = {
    413: "Content Too Large",
    414: "URI Too Long",
    416: "Range Not Satisfiable",
    422: "Unprocessable Content",
}
_CLASS_REASONS: Final = {
    1: "Informational",
    2: "Success",
    3: "Redirection",
    4: "Client Error",
    5: "Server Error",
}

# --- character classes (RFC 9110 §5.6, RFC 3986) -----------------------------------

_TOKEN: Final = rb"[-!#$%&'*+.^_`|~0-9A-Za-z]+"
_TOKEN_RE: Final = re.compile(_TOKEN)
# field-value characters: VCHAR, obs-text, SP, HTAB. Everything else (CTLs, DEL) is bad.
_FIELD_VALUE_BYTES: Final = bytes([0x09, 0x20, *range(0x21, 0x7F), *range(0x80, 0x100)])
_REASON_BYTES: Final = _FIELD_VALUE_BYTES

_PCT: Final = rb"%[0-9A-Fa-f]{2}"
# pchar plus "/" and "?" (path and query share one alphabet); no "#", no raw non-ASCII.
_PATH_QUERY_CHAR: Final = rb"[A-Za-z0-9\-._~!$&'()*+,;=:@/?]"
_PATH_QUERY: Final = rb"(?:" + _PATH_QUERY_CHAR + rb"|" + _PCT + rb")*"
_ORIGIN_FORM_RE: Final = re.compile(rb"/" + _PATH_QUERY)
_REG_NAME: Final = rb"(?:[A-Za-z0-9\-._~!$&'()*+,;=]|" + _PCT + rb")+"
_IP_LITERAL: Final = rb"\[[0-9A-Fa-f:.]+\]"
_HOST_PORT: Final = rb"(?:" + _REG_NAME + rb"|" + _IP_LITERAL + rb")(?::[0-9]{1,5})?"
# absolute-form for http(s) only, without userinfo (RFC 9110 §4.2.4 deprecates it).
_ABSOLUTE_FORM_RE: Final = re.compile(
    rb"[Hh][Tt][Tt][Pp][Ss]?://" + _HOST_PORT + rb"(?:[/?]" + _PATH_QUERY + rb")?"
)
_HOST_HEADER_RE: Final = re.compile(rb"(?:" + _HOST_PORT + rb")?")

_REQUEST_LINE_RE: Final = re.compile(rb"([^ ]+) ([^ ]+) ([^ ]+)")
_VERSION_RE: Final = re.compile(rb"HTTP/([0-9])\.([0-9])")
_STATUS_LINE_RE: Final = re.compile(rb"HTTP/([0-9])\.([0-9]) ([0-9]{3})(?: (.*))?", re.DOTALL)

_CONTENT_LENGTH_RE: Final = re.compile(r"[0-9]{1,18}")
_CODING_LIST_RE: Final = re.compile(
    r"[-!#$%&'*+.^_`|~0-9A-Za-z]+(?:[ \t]*,[ \t]*[-!#$%&'*+.^_`|~0-9A-Za-z]+)*"
)

_BARE_LF_RE: Final = re.compile(rb"(?<!\r)\n")

SUPPORTED_VERSIONS: Final = frozenset({"1.0", "1.1"})

DEFAULT_METHODS: Final = frozenset(
    {
        # RFC 9110 and RFC 5789
        "GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "TRACE", "PATCH",
        # WebDAV and friends, as llhttp knows them
        "COPY", "LOCK", "MKCOL", "MOVE", "PROPFIND", "PROPPATCH", "SEARCH", "UNLOCK",
        "BIND", "REBIND", "UNBIND", "ACL", "REPORT", "MKACTIVITY", "CHECKOUT", "MERGE",
        "MKCALENDAR", "LINK", "UNLINK", "PURGE", "QUERY",
    }
)  # fmt: skip
"""Methods accepted by default. Anything else that is a valid token gets 501.
CONNECT is never accepted: the gateway is not a forward proxy (tunnels are not
implemented), so it gets 501 too."""

# Fields that decide framing or routing must never arrive in a trailer section.
_FORBIDDEN_TRAILERS: Final = frozenset(
    {"content-length", "transfer-encoding", "host", "trailer", "connection", "te"}
)


# --- head location -------------------------------------------------------------------


def locate_head_end(buffer: bytes | bytearray, limit: int, too_large_status: int = 431) -> int:
    """Length of the head at the start of ``buffer`` (through its blank line), or 0.

    0 means "need more bytes". The head must fit in ``limit`` bytes including the final
    CRLF CRLF; otherwise ``too_large_status`` is raised once ``limit`` bytes have been
    seen without a blank line. A bare LF anywhere in the head raises 400 as soon as it
    is seen (h11 would accept it as a line break). The outcome depends only on the
    first ``limit`` bytes, never on how they were split into reads.
    """
    end = buffer.find(b"\r\n\r\n", 0, limit)
    scan_end = end + 4 if end >= 0 else min(len(buffer), limit)
    if _BARE_LF_RE.search(buffer, 0, scan_end):
        raise SyntaxViolation(400, "bare LF line break in head")
    if end >= 0:
        return end + 4
    if len(buffer) >= limit:
        raise SyntaxViolation(too_large_status, "head larger than the limit")
    return 0


def _head_lines(raw: bytes) -> list[bytes]:
    if not raw.endswith(b"\r\n\r\n"):
        raise SyntaxViolation(400, "head does not end with CRLF CRLF")
    lines = raw[:-4].split(b"\r\n")
    for line in lines:
        if b"\r" in line or b"\n" in line:
            raise SyntaxViolation(400, "bare CR or LF in head")
    return lines


def parse_field_lines(lines: list[bytes]) -> Headers:
    """Strict field lines: ``token ":" OWS value OWS``; no obs-fold, no CTLs."""
    fields: list[tuple[str, str]] = []
    for line in lines:
        if line[:1] in (b" ", b"\t"):
            raise SyntaxViolation(400, "obsolete line folding")
        colon = line.find(b":")
        if colon < 0:
            raise SyntaxViolation(400, "header line without a colon")
        name = line[:colon]
        if not _TOKEN_RE.fullmatch(name):
            raise SyntaxViolation(400, f"invalid header name {name!r}")
        value = line[colon + 1 :].strip(b" \t")
        if value.translate(None, _FIELD_VALUE_BYTES):
            raise SyntaxViolation(400, f"invalid character in value of {name!r}")
        fields.append((name.decode("ascii").lower(), value.decode("latin-1")))
    return tuple(fields)


# --- requests ------------------------------------------------------------------------


def parse_request_head(
    raw: bytes, allowed_methods: frozenset[str] = DEFAULT_METHODS
) -> RequestHead:
    """Parse and check a complete request head (as found by :func:`locate_head_end`)."""
    lines = _head_lines(raw)
    match = _REQUEST_LINE_RE.fullmatch(lines[0])
    if match is None:
        raise SyntaxViolation(400, "malformed request line")
    raw_method, raw_target, raw_version = match.groups()
    if not _TOKEN_RE.fullmatch(raw_method):
        raise SyntaxViolation(400, "invalid method")
    version_match = _VERSION_RE.fullmatch(raw_version)
    if version_match is None:
        raise SyntaxViolation(400, "malformed HTTP version")
    version = f"{int(version_match[1])}.{int(version_match[2])}"
    if version not in SUPPORTED_VERSIONS:
        raise SyntaxViolation(505, f"HTTP/{version} not supported")
    method = raw_method.decode("ascii")
    if method == "CONNECT" or method not in allowed_methods:
        raise SyntaxViolation(501, f"method {method} not implemented")
    check_request_target(method, raw_target)
    headers = parse_field_lines(lines[1:])
    head = RequestHead(
        method=method,
        target=raw_target.decode("ascii"),
        headers=headers,
        http_version=version,
        body=request_framing(version, headers),
    )
    check_host(head)
    return head


def check_request_target(method: str, target: bytes) -> None:
    """origin-form, http(s) absolute-form, or ``*`` for OPTIONS; nothing else."""
    if target == b"*":
        if method != "OPTIONS":
            raise SyntaxViolation(400, "asterisk-form target is only for OPTIONS")
        return
    if _ORIGIN_FORM_RE.fullmatch(target) or _ABSOLUTE_FORM_RE.fullmatch(target):
        return
    raise SyntaxViolation(400, "invalid request target")


def check_host(head: RequestHead) -> None:
    """RFC 9112 §3.2: exactly one Host in HTTP/1.1 (at most one in 1.0), well-formed."""
    hosts = header_values(head.headers, "host")
    if len(hosts) > 1:
        raise SyntaxViolation(400, "more than one Host header")
    if not hosts:
        if head.http_version == "1.1":
            raise SyntaxViolation(400, "missing Host header")
        return
    if not _HOST_HEADER_RE.fullmatch(hosts[0].encode("latin-1")):
        raise SyntaxViolation(400, "invalid Host header")


def _content_length(values: list[str]) -> int:
    # Several Content-Length lines are refused even when identical: the stricter
    # answer (RFC 9112 §6.3 allows either), and "5, 5" is refused for the same reason.
    if len(values) > 1:
        raise SyntaxViolation(400, "more than one Content-Length")
    if not _CONTENT_LENGTH_RE.fullmatch(values[0]):
        raise SyntaxViolation(400, "invalid Content-Length")
    return int(values[0])


def _check_transfer_encoding(http_version: str, values: list[str]) -> None:
    # Only a single, exact, lower-case "chunked" is accepted. Case variants and
    # malformed lists are 400 (they are smuggling gadgets, not real clients); a
    # well-formed list of codings we do not implement (gzip, identity, ...) is 501.
    if http_version == "1.0":
        raise SyntaxViolation(400, "Transfer-Encoding in an HTTP/1.0 message")
    if len(values) > 1:
        raise SyntaxViolation(400, "more than one Transfer-Encoding")
    value = values[0]
    if value == "chunked":
        return
    if _CODING_LIST_RE.fullmatch(value) and value.lower() != "chunked":
        raise SyntaxViolation(501, f"transfer coding {value!r} not implemented")
    raise SyntaxViolation(400, "Transfer-Encoding must be exactly 'chunked'")


def request_framing(http_version: str, headers: Headers) -> BodyFraming:
    """RFC 9112 §6.3 for requests, minus every tolerance: CL with TE is an error."""
    transfer_encodings = header_values(headers, "transfer-encoding")
    content_lengths = header_values(headers, "content-length")
    if transfer_encodings and content_lengths:
        raise SyntaxViolation(400, "both Content-Length and Transfer-Encoding")
    if transfer_encodings:
        _check_transfer_encoding(http_version, transfer_encodings)
        return UnknownLength()
    if content_lengths:
        return FixedLength(_content_length(content_lengths))
    return NoBody()


# --- responses -----------------------------------------------------------------------


def parse_response_head(raw: bytes, request_method: str) -> ResponseHead:
    """Parse and check a complete response head to a request with ``request_method``."""
    lines = _head_lines(raw)
    match = _STATUS_LINE_RE.fullmatch(lines[0])
    if match is None:
        raise SyntaxViolation(400, "malformed status line")
    version = f"{int(match[1])}.{int(match[2])}"
    if version not in SUPPORTED_VERSIONS:
        raise SyntaxViolation(505, f"HTTP/{version} not supported")
    status = int(match[3])
    if status < 100:
        raise SyntaxViolation(400, f"invalid status code {status}")
    reason = match[4] or b""
    if reason.translate(None, _REASON_BYTES):
        raise SyntaxViolation(400, "invalid character in reason phrase")
    headers = parse_field_lines(lines[1:])
    return ResponseHead(
        status=status,
        reason=reason.decode("latin-1"),
        headers=headers,
        http_version=version,
        body=response_framing(request_method, status, version, headers),
    )


def response_framing(
    request_method: str, status: int, http_version: str, headers: Headers
) -> BodyFraming:
    """RFC 9112 §6.3 for responses, refusing CL+TE and framing headers on 1xx/204."""
    transfer_encodings = header_values(headers, "transfer-encoding")
    content_lengths = header_values(headers, "content-length")
    if transfer_encodings and content_lengths:
        raise SyntaxViolation(400, "both Content-Length and Transfer-Encoding")
    if transfer_encodings:
        _check_transfer_encoding(http_version, transfer_encodings)
    length = _content_length(content_lengths) if content_lengths else None
    if status < 200 or status == 204:
        if transfer_encodings or length:
            raise SyntaxViolation(400, f"framing headers on a {status} response")
        return NoBody()
    if status == 304 or request_method == "HEAD":
        return NoBody()
    if transfer_encodings:
        return UnknownLength()
    if length is not None:
        return FixedLength(length)
    return UnknownLength()  # delimited by the connection closing


# --- chunked bodies ------------------------------------------------------------------

_QUOTED_STRING: Final = rb'"(?:[\t \x21\x23-\x5b\x5d-\x7e\x80-\xff]|\\[\t \x21-\x7e\x80-\xff])*"'
_CHUNK_LINE_RE: Final = re.compile(
    rb"([0-9A-Fa-f]{1,16})"
    rb"(?:;" + _TOKEN + rb"(?:=(?:" + _TOKEN + rb"|" + _QUOTED_STRING + rb"))?)*"
    rb"\r\n"
)
CHUNK_LINE_LIMIT: Final = 4096
"""Longest chunk-size line (with extensions) we accept."""


@dataclass(slots=True)
class ChunkedBodyScanner:
    """Finds where a chunked body ends, refusing anything not exactly RFC 9112 §7.1.

    Stricter than RFC's BWS allowances: no whitespace anywhere in a chunk-size line,
    extensions must be ``;token[=token|quoted-string]``, CRLF only, trailer lines
    follow the head rules and may not carry framing or routing fields.

    :meth:`scan` consumes whole units only (a complete line, chunk data, a complete
    CRLF), so the verdict never depends on how bytes were split into reads.
    """

    max_body_bytes: int | None
    max_trailer_bytes: int
    body_bytes: int = 0
    trailer_bytes: int = 0
    done: bool = False
    _remaining: int = 0  # data bytes left in the current chunk
    _state: str = "size"  # size -> data -> crlf -> size ... -> trailer -> done

    def scan(self, buffer: bytes | bytearray, start: int) -> tuple[int, SyntaxViolation | None]:
        """Consume from ``buffer[start:]``; return (end offset, error or None).

        Bytes before the end offset are valid and belong to this body; an error
        refers to the unit right at the end offset.
        """
        pos = start
        size = len(buffer)
        try:
            while not self.done and pos < size:
                if self._state == "data":
                    step = min(self._remaining, size - pos)
                    self._remaining -= step
                    pos += step
                    if self._remaining == 0:
                        self._state = "crlf"
                elif self._state == "crlf":
                    if size - pos < 2:
                        break
                    if buffer[pos : pos + 2] != b"\r\n":
                        raise SyntaxViolation(400, "chunk data not followed by CRLF")
                    pos += 2
                    self._state = "size"
                else:
                    line_end = self._line_end(buffer, pos)
                    if line_end < 0:
                        break
                    line = bytes(buffer[pos:line_end])
                    if self._state == "size":
                        self._size_line(line)
                    else:
                        self._trailer_line(line)
                    pos = line_end
        except SyntaxViolation as error:
            return pos, error
        return pos, None

    def _line_end(self, buffer: bytes | bytearray, pos: int) -> int:
        limit = CHUNK_LINE_LIMIT if self._state == "size" else self.max_trailer_bytes
        newline = buffer.find(b"\n", pos, pos + limit)
        if newline < 0:
            if len(buffer) - pos >= limit:
                if self._state == "size":
                    raise SyntaxViolation(400, "chunk-size line too long")
                raise SyntaxViolation(431, "trailer section larger than the limit")
            return -1
        if newline == pos or buffer[newline - 1] != 0x0D:
            raise SyntaxViolation(400, "bare LF in chunked body")
        return newline + 1

    def _size_line(self, line: bytes) -> None:
        match = _CHUNK_LINE_RE.fullmatch(line)
        if match is None:
            raise SyntaxViolation(400, "invalid chunk-size line")
        chunk = int(match[1], 16)
        if chunk == 0:
            self._state = "trailer"
            return
        if self.max_body_bytes is not None and self.body_bytes + chunk > self.max_body_bytes:
            raise SyntaxViolation(413, "chunked body larger than the limit")
        self.body_bytes += chunk
        self._remaining = chunk
        self._state = "data"

    def _trailer_line(self, line: bytes) -> None:
        self.trailer_bytes += len(line)
        if self.trailer_bytes > self.max_trailer_bytes:
            raise SyntaxViolation(431, "trailer section larger than the limit")
        if line == b"\r\n":
            self.done = True
            return
        content = line[:-2]
        if b"\r" in content:
            raise SyntaxViolation(400, "bare CR in trailer")
        ((name, _),) = parse_field_lines([content])
        if name in _FORBIDDEN_TRAILERS:
            raise SyntaxViolation(400, f"{name} is not allowed in trailers")
