"""Policy inside the engine, as transcripts: JWKS fetches park and resume requests,
fetch failures and timeouts never hang them, rejections are complete responses, and
nothing reaches an upstream before every step passed."""

from __future__ import annotations

import json
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jwt.algorithms import ECAlgorithm
from playbook import Playbook, access_logs, only, sent

from gwcore.gateway import (
    ConnectionLost,
    FetchJwks,
    JwksFetched,
    JwksFetchFailed,
    OpenUpstream,
    UpstreamConnected,
)

KEY = ec.generate_private_key(ec.SECP256R1())
JWK = {**ECAlgorithm.to_jwk(KEY.public_key(), as_dict=True), "kid": "k1", "alg": "ES256"}
JWKS = json.dumps({"keys": [JWK]}).encode()
ISSUER = "https://idp.test"
URL = "https://idp.test/jwks.json"


def token(book: Playbook, **claims: Any) -> str:
    wall = book.now + book.wall_offset
    payload = {"iss": ISSUER, "exp": wall + 300, "iat": wall, **claims}
    return jwt.encode(payload, KEY, algorithm="ES256", headers={"kid": "k1"})


def gateway(**extra: Any) -> Playbook:
    return Playbook.from_config(
        {
            "listeners": [{"name": "public", "address": "127.0.0.1:8080"}],
            "jwt_providers": {
                "idp": {
                    "issuer": ISSUER,
                    "algorithms": ["ES256"],
                    "jwks": {"remote": {"uri": URL, "timeout": "2s"}},
                }
            },
            "rate_limits": {
                "two": {"algorithm": "token_bucket", "rate": "1/m", "burst": 2},
            },
            "routes": [
                {"match": {"prefix": "/api"}, "route": {"cluster": "c"}, "policy": {"jwt": "idp"}},
                {
                    "match": {"prefix": "/", "jwt_claim": [{"name": "role", "exact_match": "x"}]},
                    "route": {"cluster": "d"},
                },
                {
                    "match": {"prefix": "/limited"},
                    "direct_response": {"status": 200, "body": "ok"},
                    "policy": {"rate_limit": "two"},
                },
                {"match": {"prefix": "/"}, "direct_response": {"status": 204}},
            ],
            **extra,
        }
    )


def request(path: str, bearer: str | None = None) -> bytes:
    auth = f"Authorization: Bearer {bearer}\r\n" if bearer else ""
    return f"GET {path} HTTP/1.1\r\nHost: a\r\n{auth}\r\n".encode()


def test_requests_park_on_one_fetch_and_resume_when_keys_arrive() -> None:
    book = gateway()
    first = book.connect()
    # Remote keys are fetched ahead of time, when the first client connects.
    fetch = only(book.history, FetchJwks)
    assert (fetch.ref, fetch.url, fetch.timeout) == ("idp", URL, 2.0)
    second = book.connect()
    actions = book.send(first, request("/api/1", token(book)))
    assert not [a for a in actions if isinstance(a, FetchJwks | OpenUpstream)]  # parked
    more = book.send(second, request("/api/2", token(book)))
    assert not [a for a in more if isinstance(a, FetchJwks | OpenUpstream)]  # single flight

    resumed = book(JwksFetched("idp", 200, JWKS), at=0.5)
    opened = [a for a in resumed if isinstance(a, OpenUpstream)]
    assert len(opened) == 2  # both parked requests continue at once
    upstream_request = sent(book(UpstreamConnected(opened[0].conn)), opened[0].conn)
    assert upstream_request.startswith(b"GET /api/1 HTTP/1.1\r\n")
    assert b"authorization" not in upstream_request.lower()  # forward: false


def test_an_unanswered_fetch_times_out_into_a_503_not_a_hang() -> None:
    book = gateway()
    conn = book.connect()
    book.send(conn, request("/api", token(book)))
    actions = book.advance_to(3.5)  # fetch timeout 2s + the engine's 1s margin
    assert sent(actions, conn).startswith(b"HTTP/1.1 503 ")
    assert access_logs(actions)[0]["flags"] == "UAEX"


def test_a_failed_fetch_answers_503_and_a_later_success_serves_again() -> None:
    book = gateway()
    conn = book.connect()
    book.send(conn, request("/api", token(book)))
    assert sent(book(JwksFetchFailed("idp", "connection refused")), conn).startswith(
        b"HTTP/1.1 503 "
    )
    book.advance_to(20.0)  # past retry_interval (10s)
    conn = book.connect()
    actions = book.send(conn, request("/api", token(book)))
    only(actions, FetchJwks)
    resumed = book(JwksFetched("idp", 200, JWKS))
    only(resumed, OpenUpstream)


def test_a_non_200_jwks_answer_is_a_failed_fetch() -> None:
    book = gateway()
    conn = book.connect()
    book.send(conn, request("/api", token(book)))
    answer = book(JwksFetched("idp", 500, b"oops"))
    assert sent(answer, conn).startswith(b"HTTP/1.1 503 ")


def test_a_client_gone_while_parked_is_forgotten() -> None:
    book = gateway()
    conn = book.connect()
    book.send(conn, request("/api", token(book)))
    book(ConnectionLost(conn, "reset"))
    actions = book(JwksFetched("idp", 200, JWKS))
    assert not [a for a in actions if isinstance(a, OpenUpstream)]
    assert book.gateway.active_exchanges == 0


def test_claim_routing_waits_for_keys_then_routes_on_verified_claims() -> None:
    book = gateway()
    conn = book.connect()
    only(book.history, FetchJwks)
    actions = book.send(conn, request("/x", token(book, role="x")))
    assert not [a for a in actions if isinstance(a, OpenUpstream)]
    resumed = book(JwksFetched("idp", 200, JWKS))
    assert only(resumed, OpenUpstream).endpoint.port == 9002  # cluster d
    # A token that does not verify never satisfies the claim matcher.
    forged = jwt.encode(
        {"iss": ISSUER, "role": "x", "exp": book.now + book.wall_offset + 60},
        ec.generate_private_key(ec.SECP256R1()),
        algorithm="ES256",
        headers={"kid": "k1"},
    )
    conn = book.connect()
    assert sent(book.send(conn, request("/x", forged)), conn).startswith(b"HTTP/1.1 204 ")


def test_missing_and_invalid_tokens_are_401_with_challenges() -> None:
    book = gateway()
    conn = book.connect()
    answer = sent(book.send(conn, request("/api")), conn)
    assert answer.startswith(b"HTTP/1.1 401 ")
    assert b'www-authenticate: Bearer realm="gwcore"\r\n' in answer.lower().replace(
        b"bearer", b"Bearer"
    )
    conn = book.connect()
    answer = sent(book.send(conn, request("/api", "a.b")), conn)
    assert answer.startswith(b"HTTP/1.1 401 ")
    assert b'error="invalid_token"' in answer


def test_rate_limit_answers_429_with_the_draft_headers() -> None:
    book = gateway()
    answers = []
    for _ in range(3):
        conn = book.connect()
        answers.append(sent(book.send(conn, request("/limited")), conn))
    assert [a.split(b" ")[1] for a in answers] == [b"200", b"200", b"429"]
    denied = answers[2].lower()
    assert b'ratelimit-policy: "two";q=2;w=120\r\n' in denied
    assert b'ratelimit: "two";r=0;t=' in denied
    assert b"retry-after: 60\r\n" in denied  # one token per minute
    assert b'ratelimit: "two";r=1;t=' in answers[0].lower()


def test_a_bad_percent_escape_is_400_before_routing() -> None:
    book = gateway()
    conn = book.connect()
    actions = book.send(conn, request("/api/%zz"))
    assert sent(actions, conn).startswith(b"HTTP/1.1 400 ")
    assert access_logs(actions)[0]["flags"] == "DPE"


def test_client_sent_claim_headers_are_stripped_and_untrusted_headers_removed() -> None:
    book = Playbook.from_config(
        {
            "listeners": [{"name": "public", "address": "127.0.0.1:8080"}],
            "untrusted_request_headers": ["x-internal"],
            "routes": [
                {
                    "match": {
                        "prefix": "/",
                        "headers": [{"name": "x-internal", "present_match": True}],
                    },
                    "direct_response": {"status": 403},
                },
                {"match": {"prefix": "/"}, "route": {"cluster": "c"}},
            ],
        }
    )
    conn = book.connect()
    actions = book.send(conn, b"GET / HTTP/1.1\r\nHost: a\r\nX-Internal: yes\r\n\r\n")
    _, upstream_request, _ = book.upstream_exchange(actions, b"HTTP/1.1 204 No Content\r\n\r\n")
    assert b"x-internal" not in upstream_request.lower()
    assert b"\r\ntraceparent: 00-" in upstream_request


EVENTS = st.lists(
    st.one_of(
        st.tuples(st.just("request"), st.sampled_from(["/api", "/x", "/limited", "/%zz", "/"])),
        st.tuples(st.just("token"), st.booleans()),
        st.tuples(st.just("fetched"), st.sampled_from([200, 404])),
        st.tuples(st.just("failed"), st.just("")),
        st.tuples(st.just("time"), st.floats(0, 30)),
        st.tuples(st.just("lost"), st.just("")),
    ),
    max_size=20,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(EVENTS, st.sampled_from([JWKS, b"{}", b"not json"]))
def test_policy_never_raises_and_never_leaves_a_request_parked(
    script: list[tuple[str, Any]], body: bytes
) -> None:
    book = gateway()
    conns: list[int] = []
    with_token = True
    clock = 0.0
    for kind, value in script:
        if kind == "request":
            conns.append(book.connect())
            book.send(conns[-1], request(value, token(book, role="x") if with_token else None))
        elif kind == "token":
            with_token = value
        elif kind == "fetched":
            book(JwksFetched("idp", value, body))
        elif kind == "failed":
            book(JwksFetchFailed("idp", "refused"))
        elif kind == "time":
            clock += value
            book.advance_to(clock)
        elif kind == "lost" and conns:
            book(ConnectionLost(conns.pop(), "reset"))
    # However the fetches went, every parked request is answered within the timeout.
    book.advance_to(clock + 10)
    for exchange in book.gateway._exchanges.values():
        assert exchange.waiting_keys is None


def test_forward_false_strips_a_query_or_cookie_token_before_it_goes_upstream() -> None:
    jwks = {"inline": json.loads(JWKS)}
    book = Playbook.from_config(
        {
            "listeners": [{"name": "public", "address": "127.0.0.1:8080"}],
            "jwt_providers": {
                "idp": {
                    "issuer": ISSUER,
                    "algorithms": ["ES256"],
                    "jwks": jwks,
                    "from": [{"query": "access_token"}, {"cookie": "session"}],
                }
            },
            "routes": [
                {"match": {"prefix": "/"}, "route": {"cluster": "c"}, "policy": {"jwt": "idp"}}
            ],
        }
    )
    conn = book.connect()
    query = f"GET /p?a=1&access_token={token(book)}&b=2 HTTP/1.1\r\nHost: a\r\n\r\n"
    upstream, upstream_request, _ = book.upstream_exchange(
        book.send(conn, query.encode()), b"HTTP/1.1 204 No Content\r\n\r\n"
    )
    assert upstream_request.startswith(b"GET /p?a=1&b=2 HTTP/1.1\r\n")
    conn = book.connect()
    cookie = f"GET /c HTTP/1.1\r\nHost: a\r\nCookie: x=1; session={token(book)}\r\n\r\n"
    upstream_request = sent(book.send(conn, cookie.encode()), upstream)  # a reused connection
    assert b"\r\ncookie: x=1\r\n" in upstream_request
    assert b"session=" not in upstream_request


def test_trace_context_is_propagated_or_started_with_the_configured_sampled_flag() -> None:
    def upstream_traceparent(tracing: Any, incoming: str | None) -> str:
        book = Playbook.from_config(
            {
                "listeners": [{"name": "public", "address": "127.0.0.1:8080"}],
                "tracing": tracing,
                "routes": [{"match": {"prefix": "/"}, "route": {"cluster": "c"}}],
            }
        )
        conn = book.connect()
        extra = f"traceparent: {incoming}\r\n" if incoming else ""
        actions = book.send(conn, f"GET / HTTP/1.1\r\nHost: a\r\n{extra}\r\n".encode())
        _, upstream_request, _ = book.upstream_exchange(actions, b"HTTP/1.1 204 No\r\n\r\n")
        (line,) = [v for v in upstream_request.split(b"\r\n") if v.startswith(b"traceparent: ")]
        return line.decode().split(": ", 1)[1]

    assert upstream_traceparent(True, None).endswith("-00")
    assert upstream_traceparent({"sampled": True}, None).endswith("-01")
    valid = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"
    assert upstream_traceparent({"sampled": True}, valid) == valid  # never changed
    assert upstream_traceparent(True, "00-zz-yy-00") != "00-zz-yy-00"  # invalid: replaced
