"""gRPC rejections: detecting gRPC requests, status mapping, grpc-message encoding."""

from __future__ import annotations

import re
from urllib.parse import unquote_to_bytes

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gwcore.protocol.grpc_status import (
    GrpcStatus,
    encode_grpc_message,
    grpc_media_type,
    grpc_status_for_http,
    grpc_trailers_only,
    is_grpc_request,
)


@pytest.mark.parametrize(
    "content_type",
    [
        "application/grpc",
        "application/grpc+proto",
        "application/grpc+json",
        "Application/GRPC",
        "application/grpc; charset=utf-8",
        " application/grpc+proto ;x=1",
        "application/grpc-web",
        "application/grpc-web+proto",
        "application/grpc-web-text",
        "application/grpc-web-text+proto",
    ],
)
def test_grpc_content_types_are_recognised(content_type: str) -> None:
    assert is_grpc_request([("content-type", content_type)])
    assert is_grpc_request([("Content-Type", content_type)])


@pytest.mark.parametrize(
    "content_type",
    [
        "application/json",
        "application/grpcx",
        "application/grpc+",
        "application/grpc-webx",
        "application/grpc-web-textual",
        "text/grpc",
        "",
    ],
)
def test_other_content_types_are_not_grpc(content_type: str) -> None:
    assert not is_grpc_request([("content-type", content_type)])


def test_no_content_type_is_not_grpc_and_only_the_first_counts() -> None:
    assert not is_grpc_request([("te", "trailers")])
    assert not is_grpc_request(
        [("content-type", "text/plain"), ("content-type", "application/grpc")]
    )
    assert grpc_media_type([("content-type", "Application/Grpc-Web+Proto; a=b")]) == (
        "application/grpc-web+proto"
    )


@pytest.mark.parametrize(
    ("http", "grpc"),
    [
        (400, GrpcStatus.INTERNAL),
        (401, GrpcStatus.UNAUTHENTICATED),
        (403, GrpcStatus.PERMISSION_DENIED),
        (404, GrpcStatus.UNIMPLEMENTED),
        (429, GrpcStatus.RESOURCE_EXHAUSTED),
        (502, GrpcStatus.UNAVAILABLE),
        (503, GrpcStatus.UNAVAILABLE),
        (504, GrpcStatus.UNAVAILABLE),
        (413, GrpcStatus.UNKNOWN),
        (431, GrpcStatus.UNKNOWN),
        (500, GrpcStatus.UNKNOWN),
        (200, GrpcStatus.UNKNOWN),
    ],
)
def test_http_status_mapping(http: int, grpc: int) -> None:
    assert grpc_status_for_http(http) == grpc
    assert type(grpc_status_for_http(http)) is int


def test_message_encoding_examples() -> None:
    assert encode_grpc_message("rate limited") == "rate limited"
    assert encode_grpc_message("100% done") == "100%25 done"
    assert encode_grpc_message("line\r\nbreak") == "line%0D%0Abreak"
    assert encode_grpc_message("caf\u00e9") == "caf%C3%A9"
    assert encode_grpc_message("tab\there\x7f") == "tab%09here%7F"
    assert encode_grpc_message("") == ""


_GRAMMAR = re.compile(r"(?:[\x20-\x24\x26-\x7e]|%[0-9A-F]{2})*")


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_message_encoding_matches_the_grammar_and_decodes_back(text: str) -> None:
    encoded = encode_grpc_message(text)
    assert _GRAMMAR.fullmatch(encoded)
    assert unquote_to_bytes(encoded) == text.encode("utf-8", "surrogatepass")


def test_trailers_only_headers() -> None:
    assert grpc_trailers_only(429, "rate limited", [("retry-after", "3")]) == [
        ("content-type", "application/grpc"),
        ("grpc-status", "8"),
        ("grpc-message", "rate limited"),
        ("retry-after", "3"),
    ]
    assert grpc_trailers_only(401, "") == [
        ("content-type", "application/grpc"),
        ("grpc-status", "16"),
    ]


def test_trailers_only_keeps_its_own_headers_and_grpc_web_content_type() -> None:
    extra = [("Content-Type", "text/plain"), ("grpc-status", "0"), ("www-authenticate", "Bearer")]
    headers = grpc_trailers_only(403, "no\nway", extra, content_type="application/grpc-web-text")
    assert headers == [
        ("content-type", "application/grpc-web-text"),
        ("grpc-status", "7"),
        ("grpc-message", "no%0Away"),
        ("www-authenticate", "Bearer"),
    ]
