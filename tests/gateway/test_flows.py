"""Engine flows as transcripts: request to an upstream, local answers, rejections, timers."""

from __future__ import annotations

from typing import Any

from playbook import Playbook, access_logs, closed, only, sent

from gwcore.gateway import (
    CloseConnection,
    ConnectionLost,
    DrainStarted,
    EofReceived,
    OpenUpstream,
    PauseReading,
    ResumeReading,
    StartTimer,
    TimerRef,
    UpstreamConnected,
    UpstreamConnectFailed,
    WritesBlocked,
    WritesDrained,
)

ROUTES: dict[str, Any] = {
    "listeners": [
        {
            "name": "public",
            "address": "127.0.0.1:8080",
            "limits": {
                "max_header_bytes": 4096,
                "max_body_bytes": 1000,
                "header_timeout": "5s",
                "idle_timeout": "30s",
            },
        }
    ],
    "routes": [
        {
            "name": "hello",
            "match": {"path": "/hello"},
            "direct_response": {"status": 200, "body": "hi"},
        },
        {
            "name": "moved",
            "match": {"prefix": "/old/"},
            "redirect": {"prefix_rewrite": "/new/", "response_code": 308},
        },
        {
            "name": "api",
            "match": {"prefix": "/api/"},
            "route": {"cluster": "c", "timeout": "2s", "prefix_rewrite": "/v1/"},
            "request_headers_to_add": [{"header": {"key": "x-gw", "value": "1"}}],
            "response_headers_to_remove": ["server"],
        },
    ],
}

OK = b"HTTP/1.1 200 OK\r\nServer: up\r\nContent-Length: 2\r\n\r\nok"


def _book() -> tuple[Playbook, int]:
    book = Playbook.from_config(ROUTES)
    return book, book.connect()


def test_direct_response_is_answered_locally_and_logged() -> None:
    book, client = _book()
    actions = book.send(client, b"GET /hello HTTP/1.1\r\nHost: a\r\n\r\n")
    assert sent(actions, client) == (
        b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 2\r\n\r\nhi"
    )
    [log] = access_logs(actions)
    assert (log["status"], log["route"], log["flags"]) == (200, "hello", "-")
    assert not any(isinstance(a, OpenUpstream) for a in book.history)


def test_no_route_is_404_with_nr_flag() -> None:
    book, client = _book()
    actions = book.send(client, b"GET /nowhere HTTP/1.1\r\nHost: a\r\n\r\n")
    assert sent(actions, client).startswith(b"HTTP/1.1 404 Not Found\r\n")
    assert access_logs(actions)[0]["flags"] == "NR"
    assert closed(actions, client) is None  # keep-alive continues


def test_redirect_builds_location_from_the_request() -> None:
    book, client = _book()
    actions = book.send(client, b"GET /old/page?x=1 HTTP/1.1\r\nHost: site.test:8080\r\n\r\n")
    response = sent(actions, client)
    assert response.startswith(b"HTTP/1.1 308 Permanent Redirect\r\n")
    assert b"location: http://site.test:8080/new/page?x=1\r\n" in response


def test_request_is_forwarded_with_rewritten_path_and_proxy_headers() -> None:
    book, client = _book()
    actions = book.send(
        client,
        b"GET /api/users?id=7 HTTP/1.1\r\nHost: api.test\r\nConnection: x-secret\r\n"
        b"X-Secret: 1\r\nX-Forwarded-For: 1.1.1.1\r\nX-Forwarded-Proto: https\r\n"
        b"X-Request-Id: abc-123\r\nKeep-Alive: 5\r\n\r\n",
    )
    upstream, request, response_actions = book.upstream_exchange(actions, OK)
    assert request.startswith(b"GET /v1/users?id=7 HTTP/1.1\r\nhost: api.test\r\n")
    for line in (
        b"x-forwarded-for: 1.1.1.1, 10.1.2.3\r\n",
        b"x-forwarded-proto: http\r\n",  # the client's claim is replaced
        b"x-forwarded-host: api.test\r\n",
        b"via: 1.1 gwcore\r\n",
        b"x-request-id: abc-123\r\n",  # a valid id is kept
        b"x-gw: 1\r\n",
    ):
        assert line in request
    for hop in (b"x-secret", b"keep-alive", b"connection"):
        assert hop not in request.lower()
    assert sent(response_actions, client) == b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"
    [log] = access_logs(response_actions)
    assert log["cluster"] == "c" and log["upstream"] == "127.0.0.1:9001"
    assert log["request_id"] == "abc-123"
    assert closed(response_actions, upstream) is None  # kept for reuse


def test_upstream_connection_is_reused_for_the_next_request() -> None:
    book, client = _book()
    first = book.send(client, b"GET /api/a HTTP/1.1\r\nHost: a\r\n\r\n")
    upstream, _, _ = book.upstream_exchange(first, OK)
    second = book.send(client, b"GET /api/b HTTP/1.1\r\nHost: a\r\n\r\n")
    assert not any(isinstance(a, OpenUpstream) for a in second)
    assert sent(second, upstream).startswith(b"GET /v1/b HTTP/1.1\r\n")


def test_generated_request_id_is_a_uuid4_when_the_client_sent_none_or_garbage() -> None:
    book, client = _book()
    actions = book.send(client, b"GET /api/a HTTP/1.1\r\nHost: a\r\nX-Request-Id: bad id!\r\n\r\n")
    _, request, _ = book.upstream_exchange(actions, OK)
    line = next(x for x in request.split(b"\r\n") if x.startswith(b"x-request-id: "))
    value = line.split(b": ")[1].decode()
    assert len(value) == 36 and value[14] == "4" and value[19] in "89ab"


def test_request_body_waits_for_the_connection_then_streams() -> None:
    book, client = _book()
    actions = book.send(
        client, b"POST /api/x HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n01234"
    )
    opened = only(actions, OpenUpstream)
    book.send(client, b"56789")
    request = sent(book(UpstreamConnected(opened.conn)), opened.conn)
    assert request.endswith(b"content-length: 10\r\n\r\n0123456789")


def test_pipelined_requests_are_answered_in_order() -> None:
    book, client = _book()
    actions = book.send(
        client,
        b"GET /hello HTTP/1.1\r\nHost: a\r\n\r\nGET /nowhere HTTP/1.1\r\nHost: a\r\n\r\n",
    )
    response = sent(actions, client)
    assert response.index(b"200 OK") < response.index(b"404 Not Found")


def test_smuggling_attempt_gets_400_and_close_and_no_upstream() -> None:
    book, client = _book()
    actions = book.send(
        client,
        b"POST /api/x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    )
    assert sent(actions, client).startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert closed(actions, client) is not None
    assert not any(isinstance(a, OpenUpstream) for a in actions)
    assert access_logs(actions)[0]["flags"] == "DPE"


def test_oversized_head_gets_431_and_body_over_limit_413() -> None:
    book, client = _book()
    actions = book.send(
        client, b"GET /hello HTTP/1.1\r\nHost: a\r\nX-Big: " + b"a" * 5000 + b"\r\n\r\n"
    )
    assert sent(actions, client).startswith(b"HTTP/1.1 431 ")
    book, client = _book()
    actions = book.send(client, b"POST /api/x HTTP/1.1\r\nHost: a\r\nContent-Length: 5000\r\n\r\n")
    assert sent(actions, client).startswith(b"HTTP/1.1 413 ")
    assert closed(actions, client) is not None


def test_upstream_connect_failure_is_503_uf() -> None:
    book, client = _book()
    opened = only(book.send(client, b"GET /api/a HTTP/1.1\r\nHost: a\r\n\r\n"), OpenUpstream)
    actions = book(UpstreamConnectFailed(opened.conn, "connection refused"))
    assert sent(actions, client).startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
    assert access_logs(actions)[0]["flags"] == "UF"


def test_connect_timeout_is_503_and_the_attempt_is_closed() -> None:
    book, client = _book()
    opened = only(book.send(client, b"GET /api/a HTTP/1.1\r\nHost: a\r\n\r\n"), OpenUpstream)
    actions = book.advance_to(1.5)  # connect_timeout 1s
    assert closed(actions, opened.conn) == CloseConnection(opened.conn, abort=True)
    assert sent(actions, client).startswith(b"HTTP/1.1 503 ")


def test_route_timeout_is_504_and_the_upstream_is_reset() -> None:
    book, client = _book()
    opened = only(book.send(client, b"GET /api/a HTTP/1.1\r\nHost: a\r\n\r\n"), OpenUpstream)
    book(UpstreamConnected(opened.conn), at=0.1)
    actions = book.advance_to(2.5)
    assert sent(actions, client).startswith(b"HTTP/1.1 504 Gateway Timeout\r\n")
    assert closed(actions, opened.conn) == CloseConnection(opened.conn, abort=True)
    assert access_logs(actions)[0]["flags"] == "UT"


def test_upstream_reset_before_the_response_is_502_after_it_cuts_the_client() -> None:
    book, client = _book()
    opened = only(book.send(client, b"GET /api/a HTTP/1.1\r\nHost: a\r\n\r\n"), OpenUpstream)
    book(UpstreamConnected(opened.conn))
    actions = book(ConnectionLost(opened.conn, "reset"))
    assert sent(actions, client).startswith(b"HTTP/1.1 502 Bad Gateway\r\n")
    assert access_logs(actions)[0]["flags"] == "UC"

    book, client = _book()
    opened = only(book.send(client, b"GET /api/a HTTP/1.1\r\nHost: a\r\n\r\n"), OpenUpstream)
    book(UpstreamConnected(opened.conn))
    book.send(opened.conn, b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n01234")
    actions = book(EofReceived(opened.conn))
    assert closed(actions, client) == CloseConnection(client, abort=True)


def test_garbage_from_upstream_is_502_upe() -> None:
    book, client = _book()
    actions = book.send(client, b"GET /api/a HTTP/1.1\r\nHost: a\r\n\r\n")
    _, _, response = book.upstream_exchange(
        actions, b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    assert sent(response, client).startswith(b"HTTP/1.1 502 ")
    assert access_logs(response)[0]["flags"] == "UPE"


def test_header_timeout_is_408_and_idle_timeout_closes() -> None:
    book, client = _book()
    book.send(client, b"GET /hello HTTP/1.1\r\nHost")
    actions = book.advance_to(6)
    assert sent(actions, client).startswith(b"HTTP/1.1 408 ")
    assert closed(actions, client) is not None

    book, client = _book()
    assert StartTimer(TimerRef("idle", client), 30.0) in book.history
    actions = book.advance_to(31)
    assert closed(actions, client) == CloseConnection(client)


def test_client_eof_between_requests_closes_and_http10_closes_after_response() -> None:
    book, client = _book()
    assert closed(book(EofReceived(client)), client) is not None
    book, client = _book()
    actions = book.send(client, b"GET /hello HTTP/1.0\r\n\r\n")
    assert sent(actions, client).startswith(b"HTTP/1.1 200 OK")
    assert closed(actions, client) is not None


def test_slow_client_pauses_the_upstream_and_resumes_it() -> None:
    book, client = _book()
    actions = book.send(client, b"GET /api/a HTTP/1.1\r\nHost: a\r\n\r\n")
    opened = only(actions, OpenUpstream)
    book(UpstreamConnected(opened.conn))
    book.send(opened.conn, b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nxx")
    assert book(WritesBlocked(client)) == [PauseReading(opened.conn)]
    assert book(WritesDrained(client)) == [ResumeReading(opened.conn)]


def test_client_gone_mid_request_resets_the_upstream() -> None:
    book, client = _book()
    opened = only(book.send(client, b"GET /api/a HTTP/1.1\r\nHost: a\r\n\r\n"), OpenUpstream)
    book(UpstreamConnected(opened.conn))
    actions = book(ConnectionLost(client, "reset"))
    assert closed(actions, opened.conn) == CloseConnection(opened.conn, abort=True)
    assert access_logs(actions)[0]["flags"] == "DC"


def test_expect_100_continue_is_answered_by_the_gateway_and_not_forwarded() -> None:
    book, client = _book()
    actions = book.send(
        client,
        b"POST /api/x HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n",
    )
    assert sent(actions, client) == b"HTTP/1.1 100 Continue\r\n\r\n"
    book.send(client, b"abc")
    opened = only(actions, OpenUpstream)
    request = sent(book(UpstreamConnected(opened.conn)), opened.conn)
    assert b"expect" not in request.lower() and request.endswith(b"\r\n\r\nabc")


def test_expect_100_continue_on_a_local_answer_gets_the_final_status_only() -> None:
    book, client = _book()
    actions = book.send(
        client,
        b"POST /nowhere HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n",
    )
    assert sent(actions, client).startswith(b"HTTP/1.1 404 ")
    assert closed(actions, client) is not None  # the unread body makes the connection unusable


def test_pool_overflow_is_503_uo() -> None:
    raw = {
        "clusters": {
            "tiny": {
                "endpoints": ["127.0.0.1:9009"],
                "max_connections_per_host": 1,
                "max_pending_requests": 1,
            }
        },
        "routes": [{"match": {"prefix": "/"}, "route": {"cluster": "tiny"}}],
    }
    book = Playbook.from_config(raw)
    clients = [book.connect(peer=("10.0.0.1", 1000 + i)) for i in range(3)]
    book.send(clients[0], b"GET /a HTTP/1.1\r\nHost: a\r\n\r\n")  # opens the one connection
    book.send(clients[1], b"GET /b HTTP/1.1\r\nHost: a\r\n\r\n")  # waits: pending 1 of 1
    actions = book.send(clients[2], b"GET /c HTTP/1.1\r\nHost: a\r\n\r\n")
    assert sent(actions, clients[2]).startswith(b"HTTP/1.1 503 ")
    assert access_logs(actions)[0]["flags"] == "UO"


def test_ring_hash_on_a_header_sends_one_user_to_one_endpoint() -> None:
    endpoints = [f"127.0.0.1:{9100 + i}" for i in range(5)]
    raw = {
        "clusters": {
            "users": {"endpoints": endpoints, "lb": "ring_hash", "hash_on": {"header": "x-user"}}
        },
        "routes": [{"match": {"prefix": "/"}, "route": {"cluster": "users"}}],
    }
    book = Playbook.from_config(raw)
    chosen: dict[str, set[int]] = {}
    for i in range(40):
        user = f"user-{i % 4}"
        client = book.connect(peer=(f"10.0.{i}.1", 5000))
        actions = book.send(client, f"GET / HTTP/1.1\r\nHost: a\r\nx-user: {user}\r\n\r\n".encode())
        opened = [a for a in actions if isinstance(a, OpenUpstream)]
        if opened:
            chosen.setdefault(user, set()).add(opened[0].endpoint.port)
    assert all(len(ports) == 1 for ports in chosen.values())  # whatever the client IP
    assert len({p for ports in chosen.values() for p in ports}) > 1


def test_drain_closes_idle_clients_now_and_busy_ones_after_their_response() -> None:
    book, idle = _book()
    busy = book.connect(peer=("10.1.2.4", 40001))
    opened = only(book.send(busy, b"GET /api/a HTTP/1.1\r\nHost: a\r\n\r\n"), OpenUpstream)
    book(UpstreamConnected(opened.conn))
    actions = book(DrainStarted())
    assert closed(actions, idle) == CloseConnection(idle)
    assert closed(actions, busy) is None
    actions = book.send(opened.conn, OK)
    response = sent(actions, busy)
    assert response.startswith(b"HTTP/1.1 200 OK\r\n") and b"connection: close\r\n" in response
    assert closed(actions, busy) == CloseConnection(busy)


def test_access_log_counts_body_bytes_like_envoy() -> None:
    book, client = _book()
    actions = book.send(client, b"GET /hello HTTP/1.1\r\nHost: a\r\n\r\n")
    assert (access_logs(actions)[0]["bytes_in"], access_logs(actions)[0]["bytes_out"]) == (0, 2)
    actions = book.send(
        client, b"POST /api/x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello"
    )
    _, _, response = book.upstream_exchange(actions, OK)
    [log] = access_logs(response)
    assert (log["bytes_in"], log["bytes_out"]) == (5, 2)


def test_host_rewrite_and_response_header_add() -> None:
    raw = {
        "routes": [
            {
                "match": {"prefix": "/"},
                "route": {"cluster": "c", "host_rewrite_literal": "internal.svc"},
                "response_headers_to_add": [
                    {"header": {"key": "x-served-by", "value": "gwcore"}},
                    {
                        "header": {"key": "cache-control", "value": "no-store"},
                        "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
                    },
                ],
            }
        ]
    }
    book = Playbook.from_config(raw)
    client = book.connect()
    actions = book.send(client, b"GET /x HTTP/1.1\r\nHost: public.example\r\n\r\n")
    upstream_response = b"HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nContent-Length: 0\r\n\r\n"
    _, request, response_actions = book.upstream_exchange(actions, upstream_response)
    assert b"\r\nhost: internal.svc\r\n" in request
    assert b"x-forwarded-host: public.example\r\n" in request
    response = sent(response_actions, client)
    assert b"x-served-by: gwcore\r\n" in response and b"cache-control: no-store\r\n" in response
    assert b"max-age" not in response


def test_streamed_body_crossing_the_limit_gets_413_and_the_upstream_is_reset() -> None:
    book, client = _book()  # max_body_bytes 1000
    actions = book.send(
        client, b"POST /api/x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    opened = only(actions, OpenUpstream)
    book(UpstreamConnected(opened.conn))
    book.send(client, b"200\r\n" + b"a" * 0x200 + b"\r\n")
    actions = book.send(client, b"400\r\n" + b"b" * 0x400 + b"\r\n")
    assert sent(actions, client).startswith(b"HTTP/1.1 413 ")
    assert closed(actions, opened.conn) == CloseConnection(opened.conn, abort=True)
    assert closed(actions, client) is not None


def test_pipelined_request_with_connection_close_is_still_answered() -> None:
    book, client = _book()
    actions = book.send(
        client,
        b"GET /hello HTTP/1.1\r\nHost: a\r\n\r\n"
        b"GET /nowhere HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    )
    response = sent(actions, client)
    assert response.index(b"200 OK") < response.index(b"404 Not Found")
    assert closed(actions, client) is not None  # after the second response


def test_pipelined_requests_before_client_eof_are_all_answered() -> None:
    book, client = _book()
    book.send(
        client, b"GET /api/a HTTP/1.1\r\nHost: a\r\n\r\nGET /hello HTTP/1.1\r\nHost: a\r\n\r\n"
    )
    actions = book(EofReceived(client))
    opened = only(book.history, OpenUpstream)
    book(UpstreamConnected(opened.conn))
    actions = book.send(opened.conn, OK)
    response = sent(actions, client)
    assert response.count(b"HTTP/1.1 200 OK") == 2 and response.endswith(b"hi")
    assert closed(actions, client) is not None
