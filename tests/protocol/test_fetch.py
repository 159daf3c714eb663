"""``HttpGet``: the sans-IO GET behind ``FetchJwks``, against bytes a real h11 server
writes (content-length, chunked, close-delimited), oversized bodies, cut-short
responses and garbage."""

from __future__ import annotations

import h11
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gwcore.protocol.fetch import (
    MAX_HEAD_BYTES,
    FetchFailure,
    FetchResponse,
    HttpGet,
    failure,
    timed_out,
)

JWKS = b'{"keys": [{"kty": "oct", "kid": "k1", "k": "c2VjcmV0"}]}'


def server_for(get: HttpGet, http_version: bytes = b"1.1") -> tuple[h11.Connection, h11.Request]:
    """An h11 server that has read ``get``'s request (so the request is valid HTTP/1.1)."""
    server = h11.Connection(h11.SERVER)
    server.receive_data(get.request)
    request = server.next_event()
    assert isinstance(request, h11.Request)
    assert isinstance(server.next_event(), h11.EndOfMessage)
    if http_version != b"1.1":  # h11 answers in the version the client spoke
        server.their_http_version = http_version
    return server, request


def respond(
    get: HttpGet,
    status: int = 200,
    body: bytes = JWKS,
    headers: list[tuple[str, str]] | None = None,
    pieces: int = 1,
) -> bytes:
    """The bytes an h11 server writes for this response; ``headers`` None means
    ``Content-Length``, ``[]`` means chunked, sent as ``pieces`` chunks."""
    server, _ = server_for(get)
    if headers is None:
        headers = [("content-length", str(len(body)))]
    out = server.send(h11.Response(status_code=status, headers=headers)) or b""
    step = max(1, -(-len(body) // pieces))
    for start in range(0, len(body), step):
        out += server.send(h11.Data(data=body[start : start + step])) or b""
    return out + (server.send(h11.EndOfMessage()) or b"")


def feed_bytewise(get: HttpGet, data: bytes) -> FetchResponse | FetchFailure | None:
    outcome = None
    for i in range(len(data)):
        outcome = get.receive(data[i : i + 1])
        if outcome is not None:
            break
    return outcome


# ------------------------------------------------------------------------ URLs


@pytest.mark.parametrize(
    ("url", "tls", "host", "port", "target", "authority"),
    [
        ("http://idp.example/jwks", False, "idp.example", 80, "/jwks", "idp.example"),
        (
            "https://idp.example/.well-known/jwks.json",
            True,
            "idp.example",
            443,
            "/.well-known/jwks.json",
            "idp.example",
        ),
        (
            "https://IdP.Example:8443/k?a=1&b=2#frag",
            True,
            "idp.example",
            8443,
            "/k?a=1&b=2",
            "idp.example:8443",
        ),
        ("http://127.0.0.1:80", False, "127.0.0.1", 80, "/", "127.0.0.1"),
        ("http://[::1]:8080/jwks", False, "::1", 8080, "/jwks", "[::1]:8080"),
        ("https://idp.example?x=%20y", True, "idp.example", 443, "/?x=%20y", "idp.example"),
    ],
)
def test_url_gives_where_to_connect_and_the_request(
    url: str, tls: bool, host: str, port: int, target: str, authority: str
) -> None:
    get = HttpGet(url, 1000)
    assert (get.tls, get.host, get.port, get.target) == (tls, host, port, target)
    _, request = server_for(get)
    assert request.method == b"GET"
    assert request.target == target.encode()
    assert request.http_version == b"1.1"
    assert list(request.headers) == [
        (b"host", authority.encode()),
        (b"accept", b"application/json"),
        (b"user-agent", b"gwcore"),
        (b"connection", b"close"),
    ]


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("ftp://idp.example/jwks", "scheme"),
        ("file:///etc/jwks.json", "scheme"),
        ("idp.example/jwks", "scheme"),
        ("http:///jwks", "no host"),
        ("https://:443/jwks", "no host"),
        ("http://idp.example:99999/", "out of range"),
        ("http://idp.example:http/", "Port could not be cast"),
        ("https://user:secret@idp.example/jwks", "credentials"),
        ("https://idp.example/a b", "percent-encoded"),
        ("https://idp.example/\r\nX-Injected: 1", "percent-encoded"),
        ("https://idp.example/k\u00e9ys", "percent-encoded"),
    ],
)
def test_bad_url_is_refused(url: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        HttpGet(url, 1000)


def test_negative_max_bytes_is_refused() -> None:
    with pytest.raises(ValueError, match="max_bytes"):
        HttpGet("http://idp.example/", -1)


# ------------------------------------------------------------------- responses


def test_content_length_response_fed_byte_by_byte() -> None:
    get = HttpGet("http://idp.example/jwks", 1000)
    assert feed_bytewise(get, respond(get)) == FetchResponse(200, JWKS)
    assert get.outcome == FetchResponse(200, JWKS)
    assert get.receive(b"anything after the end") == FetchResponse(200, JWKS)


def test_chunked_response() -> None:
    get = HttpGet("http://idp.example/jwks", 1000)
    data = respond(get, headers=[], pieces=5)
    assert b"transfer-encoding: chunked" in data.lower()
    assert get.receive(data) == FetchResponse(200, JWKS)


def test_close_delimited_response_ends_at_eof() -> None:
    get = HttpGet("http://idp.example/jwks", 1000)
    server, _ = server_for(get, http_version=b"1.0")
    data = server.send(h11.Response(status_code=200, headers=[])) or b""
    data += server.send(h11.Data(data=JWKS)) or b""
    assert b"content-length" not in data.lower() and b"chunked" not in data.lower()
    assert get.receive(data) is None
    assert get.receive(b"") == FetchResponse(200, JWKS)


def test_informational_responses_are_skipped() -> None:
    get = HttpGet("http://idp.example/jwks", 1000)
    server, _ = server_for(get)
    data = server.send(h11.InformationalResponse(status_code=103, headers=[("link", "</a>")]))
    data = (data or b"") + (server.send(h11.Response(status_code=200, headers=[])) or b"")
    data += (server.send(h11.Data(data=JWKS)) or b"") + (server.send(h11.EndOfMessage()) or b"")
    assert data.startswith(b"HTTP/1.1 103 ")
    assert get.receive(data) == FetchResponse(200, JWKS)


@pytest.mark.parametrize("status", [204, 304, 404, 500])
def test_any_status_is_a_response_for_the_caller_to_judge(status: int) -> None:
    get = HttpGet("http://idp.example/jwks", 1000)
    body = b"" if status in (204, 304) else b"nope"
    headers: list[tuple[str, str]] | None = [] if status in (204, 304) else None
    assert get.receive(respond(get, status, body, headers)) == FetchResponse(status, body)


def test_empty_body_with_max_bytes_zero() -> None:
    get = HttpGet("http://idp.example/jwks", 0)
    assert get.receive(respond(get, body=b"")) == FetchResponse(200, b"")


# -------------------------------------------------------------------- oversize


def test_body_of_exactly_max_bytes_is_accepted() -> None:
    get = HttpGet("http://idp.example/jwks", len(JWKS))
    assert get.receive(respond(get, headers=[], pieces=3)) == FetchResponse(200, JWKS)


def test_content_length_over_max_bytes_fails_before_the_body() -> None:
    get = HttpGet("http://idp.example/jwks", len(JWKS) - 1)
    data = respond(get)
    head = data[: data.index(b"\r\n\r\n") + 4]
    outcome = get.receive(head)
    assert isinstance(outcome, FetchFailure)
    assert outcome.reason == (
        f"response body too long: Content-Length {len(JWKS)} is over max_bytes ({len(JWKS) - 1})"
    )


def test_chunked_body_over_max_bytes_fails_once_past_the_limit() -> None:
    body = b"x" * 10_000
    get = HttpGet("http://idp.example/jwks", 4096)
    data = respond(get, body=body, headers=[], pieces=10)  # 1000-byte chunks
    outcome = feed_bytewise(get, data)
    assert isinstance(outcome, FetchFailure)
    assert outcome.reason == "response body too long: the body is over max_bytes (4096)"
    assert len(get._body) <= 4096 + 1000  # stopped at the chunk that crossed the limit


def test_close_delimited_body_over_max_bytes() -> None:
    get = HttpGet("http://idp.example/jwks", 10)
    outcome = get.receive(b"HTTP/1.0 200 OK\r\n\r\n" + b"y" * 11)
    assert isinstance(outcome, FetchFailure) and "too long" in outcome.reason


def test_head_over_the_limit_is_malformed() -> None:
    get = HttpGet("http://idp.example/jwks", 1000)
    outcome = get.receive(b"HTTP/1.1 200 OK\r\nx-big: " + b"a" * MAX_HEAD_BYTES)
    assert isinstance(outcome, FetchFailure)
    assert outcome.reason.startswith("malformed response:")


# --------------------------------------------------------- cut short, garbage


def test_eof_before_any_byte() -> None:
    get = HttpGet("http://idp.example/jwks", 1000)
    assert get.receive(b"") == FetchFailure("connection closed before the end of the response head")


def test_eof_inside_the_head() -> None:
    get = HttpGet("http://idp.example/jwks", 1000)
    assert get.receive(b"HTTP/1.1 200 OK\r\ncontent-le") is None
    assert get.receive(b"") == FetchFailure("connection closed before the end of the response head")


def test_eof_inside_a_content_length_body() -> None:
    get = HttpGet("http://idp.example/jwks", 1000)
    data = respond(get)
    assert get.receive(data[:-5]) is None
    assert get.receive(b"") == FetchFailure(
        f"connection closed before the end of the response body ({len(JWKS) - 5} bytes)"
    )


def test_eof_inside_a_chunked_body() -> None:
    get = HttpGet("http://idp.example/jwks", 1000)
    data = respond(get, headers=[], pieces=2)
    assert get.receive(data[:-5]) is None  # the last chunk and the terminator are missing
    outcome = get.receive(b"")
    assert isinstance(outcome, FetchFailure)
    assert outcome.reason.startswith("connection closed before the end of the response body")


@pytest.mark.parametrize(
    "garbage",
    [
        b"garbage\r\n\r\n",
        b"SSH-2.0-OpenSSH_9.6\r\n",
        b"HTTP/1.1 abc OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\ncontent-length: 6\r\n\r\n",
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n",
        b"HTTP/1.1 200 OK\r\nbad header\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 40 + b"\r\n\r\n",  # TLS
    ],
)
def test_garbage_is_a_malformed_response(garbage: bytes) -> None:
    get = HttpGet("http://idp.example/jwks", 1000)
    outcome = get.receive(garbage)
    assert isinstance(outcome, FetchFailure), outcome
    assert outcome.reason.startswith("malformed response: ")
    assert get.receive(b"") is outcome  # the outcome does not change


@given(
    cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=12),
    chunked=st.booleans(),
    size=st.integers(min_value=0, max_value=300),
)
def test_any_split_of_the_bytes_gives_the_same_outcome(
    cuts: list[int], chunked: bool, size: int
) -> None:
    body = bytes(range(256)) * 2
    body = body[:size]
    data = respond(HttpGet("http://idp.example/", 200), body=body, headers=[] if chunked else None)
    expected = (
        FetchResponse(200, body)
        if size <= 200
        else FetchFailure(
            "response body too long: "
            + ("the body" if chunked else f"Content-Length {size}")
            + " is over max_bytes (200)"
        )
    )
    points = sorted({c for c in cuts if 0 < c < len(data)})
    get = HttpGet("http://idp.example/", 200)
    outcome = None
    for start, end in zip([0, *points], [*points, len(data)], strict=True):
        outcome = get.receive(data[start:end])
    assert outcome == expected


# ------------------------------------------------------------- adapter errors


def test_failure_names_the_error_or_its_wrapped_cause() -> None:
    assert failure(ConnectionRefusedError(111, "Connection refused")) == FetchFailure(
        "ConnectionRefusedError: [Errno 111] Connection refused"
    )
    assert failure(TimeoutError()) == FetchFailure("TimeoutError")
    try:
        try:
            raise ValueError("certificate verify failed")
        except ValueError as inner:
            raise RuntimeError("broken stream") from inner
    except RuntimeError as outer:
        assert failure(outer) == FetchFailure("ValueError: certificate verify failed")


def test_failure_lists_a_group_of_causes() -> None:
    refused = [
        ConnectionRefusedError(111, f"Error connecting to {a}") for a in ("::1", "127.0.0.1")
    ]
    try:
        raise OSError("all attempts to connect failed") from ExceptionGroup("all", refused)
    except OSError as exc:
        assert failure(exc) == FetchFailure(
            "OSError: all attempts to connect failed ("
            "ConnectionRefusedError: [Errno 111] Error connecting to ::1; "
            "ConnectionRefusedError: [Errno 111] Error connecting to 127.0.0.1)"
        )


def test_timed_out_names_the_timeout() -> None:
    assert timed_out(2.5) == FetchFailure("timed out: no complete response within 2.5 s")
