"""gRPC status for requests the gateway rejects itself (401/403/404/429/5xx...).

A gRPC client reads the outcome from ``grpc-status``, not from the HTTP status, so a
rejection of a gRPC request is a *trailers-only* response: HTTP status 200 and one
header block carrying ``content-type``, ``grpc-status`` and ``grpc-message`` (and no
body). See gRPC's ``doc/PROTOCOL-HTTP2.md`` (Trailers-Only, Status-Message).

The HTTP -> gRPC mapping follows gRPC's ``doc/http-grpc-status-mapping.md`` except for
429, which that table maps to UNAVAILABLE (a retryable transport problem) and we map
to RESOURCE_EXHAUSTED: the client hit a quota, as Google's APIs report it.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import IntEnum


class GrpcStatus(IntEnum):
    """gRPC status codes (``grpc/status.h``)."""

    OK = 0
    CANCELLED = 1
    UNKNOWN = 2
    INVALID_ARGUMENT = 3
    DEADLINE_EXCEEDED = 4
    NOT_FOUND = 5
    ALREADY_EXISTS = 6
    PERMISSION_DENIED = 7
    RESOURCE_EXHAUSTED = 8
    FAILED_PRECONDITION = 9
    ABORTED = 10
    OUT_OF_RANGE = 11
    UNIMPLEMENTED = 12
    INTERNAL = 13
    UNAVAILABLE = 14
    DATA_LOSS = 15
    UNAUTHENTICATED = 16


_HTTP_TO_GRPC = {
    400: GrpcStatus.INTERNAL,
    401: GrpcStatus.UNAUTHENTICATED,
    403: GrpcStatus.PERMISSION_DENIED,
    404: GrpcStatus.UNIMPLEMENTED,
    429: GrpcStatus.RESOURCE_EXHAUSTED,
    502: GrpcStatus.UNAVAILABLE,
    503: GrpcStatus.UNAVAILABLE,
    504: GrpcStatus.UNAVAILABLE,
}
_GRPC_MEDIA_TYPES = ("application/grpc", "application/grpc-web", "application/grpc-web-text")
_OWN_HEADERS = frozenset({"content-type", "grpc-status", "grpc-message"})


def grpc_media_type(headers: Sequence[tuple[str, str]]) -> str | None:
    """The request's gRPC content type without parameters, lower-case
    (``application/grpc``, ``application/grpc+proto``, ``application/grpc-web-text``...),
    or ``None`` when the request is not gRPC. Only the first ``content-type`` counts."""
    for name, value in headers:
        if name.lower() == "content-type":
            media = value.split(";", 1)[0].strip(" \t").lower()
            base, plus, codec = media.partition("+")
            if base in _GRPC_MEDIA_TYPES and (not plus or codec):
                return media
            return None
    return None


def is_grpc_request(headers: Sequence[tuple[str, str]]) -> bool:
    """Whether the request is gRPC or gRPC-Web by its ``content-type``:
    ``application/grpc``, ``application/grpc+<codec>``, ``application/grpc-web``,
    ``application/grpc-web-text`` (each with an optional ``+<codec>``), any case,
    parameters allowed."""
    return grpc_media_type(headers) is not None


def grpc_status_for_http(status: int) -> int:
    """The gRPC status for an HTTP status the gateway answers with: 400 INTERNAL (13),
    401 UNAUTHENTICATED (16), 403 PERMISSION_DENIED (7), 404 UNIMPLEMENTED (12),
    429 RESOURCE_EXHAUSTED (8), 502/503/504 UNAVAILABLE (14), anything else UNKNOWN (2)."""
    return int(_HTTP_TO_GRPC.get(status, GrpcStatus.UNKNOWN))


def encode_grpc_message(text: str) -> str:
    """``text`` as a ``grpc-message`` value: UTF-8, then every byte outside
    ``%x20-%x24 / %x26-%x7E`` (space and visible ASCII but ``%``) as ``%XX``
    (upper-case hex). The result is printable ASCII: it cannot break a header."""
    if text.isascii() and text.isprintable() and "%" not in text:
        return text
    out: list[str] = []
    for byte in text.encode("utf-8", "surrogatepass"):
        if 0x20 <= byte <= 0x7E and byte != 0x25:
            out.append(chr(byte))
        else:
            out.append(f"%{byte:02X}")
    return "".join(out)


def grpc_trailers_only(
    http_status: int,
    message: str,
    extra: Sequence[tuple[str, str]] = (),
    *,
    content_type: str = "application/grpc",
) -> list[tuple[str, str]]:
    """The header block of a trailers-only gRPC response for a rejection the gateway
    would otherwise answer with ``http_status``.

    The response itself has HTTP status 200 and no body. The block is
    ``content-type`` (``application/grpc``; pass the request's
    :func:`grpc_media_type` for gRPC-Web clients), ``grpc-status``
    (:func:`grpc_status_for_http`), ``grpc-message`` (:func:`encode_grpc_message`,
    omitted when ``message`` is empty), then ``extra`` (e.g. ``www-authenticate``,
    ``retry-after``) minus any of those three names.
    """
    out = [
        ("content-type", content_type),
        ("grpc-status", str(grpc_status_for_http(http_status))),
    ]
    if message:
        out.append(("grpc-message", encode_grpc_message(message)))
    out += [(n, v) for n, v in extra if n.lower() not in _OWN_HEADERS]
    return out
