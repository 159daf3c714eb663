"""The gateway over real sockets: ``gwcore serve`` between httpx and a real upstream."""

from __future__ import annotations

import hashlib
import json
import socket
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import h11
import httpx
import pytest
from conftest import GatewayProcess, wait_until
from upstream_server import EchoUpstream, pattern

TIMEOUT = httpx.Timeout(15.0)


def new_id() -> str:
    return f"e2e-{uuid.uuid4().hex}"


@pytest.fixture
def client(gateway: GatewayProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gateway.url, timeout=TIMEOUT) as http:
        yield http


# ------------------------------------------------------------------ proxying


def test_get_reaches_upstream_with_forwarding_headers(
    client: httpx.Client, upstream: EchoUpstream
) -> None:
    rid = new_id()
    response = client.get("/api/hello?x=1", headers={"host": "api.test", "x-request-id": rid})
    assert response.status_code == 200
    assert response.json()["target"] == "/api/hello?x=1"
    seen = upstream.seen(rid)
    assert seen.method == "GET"
    assert seen.header("host") == "api.test"
    assert seen.header("x-forwarded-for") == "127.0.0.1"
    assert seen.header("x-forwarded-proto") == "http"
    assert seen.header("x-forwarded-host") == "api.test"
    assert seen.header("via") == "1.1 gwcore"


def test_request_without_id_gets_a_generated_x_request_id(
    client: httpx.Client, upstream: EchoUpstream
) -> None:
    marker = new_id()
    assert client.get(f"/api/{marker}").status_code == 200
    (seen,) = [r for r in upstream.requests if r.target == f"/api/{marker}"]
    request_id = seen.header("x-request-id")
    assert request_id is not None
    assert uuid.UUID(request_id).version == 4


def test_post_body_reaches_upstream_intact(client: httpx.Client, upstream: EchoUpstream) -> None:
    rid = new_id()
    body = pattern(10_000)
    response = client.post("/api/orders", content=body, headers={"x-request-id": rid})
    assert response.status_code == 200
    assert response.json()["body_sha256"] == hashlib.sha256(body).hexdigest()
    seen = upstream.seen(rid)
    assert (seen.method, seen.body) == ("POST", body)


def test_hop_by_hop_headers_are_not_forwarded(client: httpx.Client, upstream: EchoUpstream) -> None:
    rid = new_id()
    headers = {
        "x-request-id": rid,
        "connection": "keep-alive, x-drop-me",
        "x-drop-me": "1",
        "keep-alive": "timeout=5",
        "proxy-authorization": "Basic Zm9vOmJhcg==",
        "te": "gzip",
        "x-keep-me": "yes",
    }
    assert client.get("/api/hop", headers=headers).status_code == 200
    names = {name for name, _ in upstream.seen(rid).headers}
    assert names.isdisjoint({"connection", "x-drop-me", "keep-alive", "proxy-authorization", "te"})
    assert "x-keep-me" in names


def test_client_connection_is_kept_alive_across_requests(
    client: httpx.Client, gateway: GatewayProcess, upstream: EchoUpstream
) -> None:
    ids = [new_id() for _ in range(5)]
    for rid in ids:
        assert client.get("/api/keep-alive", headers={"x-request-id": rid}).status_code == 200
    clients = {gateway.access_record(rid)["client"] for rid in ids}
    assert len(clients) == 1, clients  # one client connection (same peer port) for all five
    assert len({upstream.seen(rid).connection for rid in ids}) == 1  # and one upstream one


def _pipelined(port: int, targets: list[str]) -> list[tuple[int, bytes]]:
    """Send every request in one write, then read the responses in order."""
    requests = [
        h11.Request(method="GET", target=t, headers=[("host", "pipe.test")]) for t in targets
    ]
    raw = b"".join(h11.Connection(h11.CLIENT).send(r) or b"" for r in requests)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(raw)
        parser = h11.Connection(h11.CLIENT)
        answers: list[tuple[int, bytes]] = []
        for request in requests:
            parser.send(request)
            parser.send(h11.EndOfMessage())
            status, body = 0, b""
            while True:
                event = parser.next_event()
                if event is h11.NEED_DATA:
                    data = sock.recv(65536)
                    assert data, "connection closed before all responses arrived"
                    parser.receive_data(data)
                elif isinstance(event, h11.Response):
                    status = event.status_code
                elif isinstance(event, h11.Data):
                    body += event.data
                elif isinstance(event, h11.EndOfMessage):
                    break
            answers.append((status, body))
            parser.start_next_cycle()
        return answers


def test_pipelined_requests_are_answered_in_order(gateway: GatewayProcess) -> None:
    answers = _pipelined(gateway.port, ["/api/pipe-1", "/healthz", "/nothing", "/api/pipe-4"])
    assert [status for status, _ in answers] == [200, 200, 404, 200]
    assert json.loads(answers[0][1])["target"] == "/api/pipe-1"
    assert answers[1][1] == b"ok\n"
    assert json.loads(answers[3][1])["target"] == "/api/pipe-4"


def test_concurrent_clients_each_get_their_own_response(gateway: GatewayProcess) -> None:
    limits = httpx.Limits(max_connections=16, max_keepalive_connections=16)
    with httpx.Client(base_url=gateway.url, timeout=TIMEOUT, limits=limits) as http:

        def one(i: int) -> tuple[str, str]:
            rid = new_id()
            response = http.get(f"/api/concurrent-{i}", headers={"x-request-id": rid})
            return rid, dict(response.json()["headers"])["x-request-id"]

        with ThreadPoolExecutor(max_workers=16) as pool:
            results = list(pool.map(one, range(200)))
    assert all(rid == echoed for rid, echoed in results)


# ------------------------------------------------------------- local answers


def test_no_route_is_404(client: httpx.Client, gateway: GatewayProcess) -> None:
    rid = new_id()
    response = client.get("/nothing/here", headers={"x-request-id": rid})
    assert response.status_code == 404
    assert gateway.access_record(rid)["flags"] == "NR"


def test_direct_response_is_answered_by_the_gateway(client: httpx.Client) -> None:
    response = client.get("/healthz")
    assert (response.status_code, response.text) == (200, "ok\n")


def test_redirect_has_a_location(client: httpx.Client, gateway: GatewayProcess) -> None:
    response = client.get("/old/page?q=1", follow_redirects=False)
    assert response.status_code == 302
    assert response.headers["location"] == f"http://127.0.0.1:{gateway.port}/new?q=1"


# ---------------------------------------------------------------- failures


def test_upstream_down_is_503(client: httpx.Client, gateway: GatewayProcess) -> None:
    rid = new_id()
    assert client.get("/down", headers={"x-request-id": rid}).status_code == 503
    record = gateway.access_record(rid)
    assert (record["route"], record["cluster"], record["flags"]) == ("down", "down", "UF")


def test_upstream_slower_than_route_timeout_is_504(
    client: httpx.Client, gateway: GatewayProcess
) -> None:
    rid = new_id()
    headers = {"x-request-id": rid, "x-echo-mode": "slow", "x-delay": "2"}
    response = client.get("/slow", headers=headers)
    assert response.status_code == 504
    assert response.elapsed.total_seconds() < 1.8  # the route timeout is 500 ms
    assert gateway.access_record(rid)["flags"] == "UT"


def test_upstream_closing_before_response_head_is_502(
    client: httpx.Client, gateway: GatewayProcess
) -> None:
    rid = new_id()
    headers = {"x-request-id": rid, "x-echo-mode": "close-before"}
    assert client.get("/api/x", headers=headers).status_code == 502
    assert gateway.access_record(rid)["flags"] == "UC"


def test_upstream_closing_mid_response_cuts_the_client_connection(
    client: httpx.Client, gateway: GatewayProcess
) -> None:
    rid = new_id()
    headers = {"x-request-id": rid, "x-echo-mode": "close-mid"}
    with (
        pytest.raises(httpx.TransportError),
        client.stream("GET", "/api/x", headers=headers) as response,
    ):
        assert response.status_code == 200
        response.read()
    # The engine flags a body cut short by the upstream's EOF as a protocol error.
    assert gateway.access_record(rid)["flags"] in {"UC", "UPE"}
    assert client.get("/healthz").status_code == 200  # a new connection works


def test_expect_100_continue_is_answered_before_the_body(gateway: GatewayProcess) -> None:
    head = (
        b"POST /api/expect HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\nexpect: 100-continue\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=5) as sock:
        sock.sendall(head)
        sock.settimeout(1.0)
        try:
            interim = sock.recv(65536)
        except TimeoutError:
            interim = b""
        sock.sendall(b"hello")
    assert interim.startswith(b"HTTP/1.1 100 ")


# ---------------------------------------------------------------- big bodies


def test_large_streamed_download_is_intact(client: httpx.Client) -> None:
    size = 8 * 1024 * 1024
    headers = {"x-echo-mode": "big", "x-size": str(size)}
    with client.stream("GET", "/api/big", headers=headers) as response:
        assert response.status_code == 200
        received = b"".join(response.iter_bytes())
    assert len(received) == size
    assert received == pattern(size)


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_large_upload_echoed_back_is_intact(client: httpx.Client, framing: str) -> None:
    body = pattern(6 * 1024 * 1024)
    content: bytes | Iterator[bytes] = body
    if framing == "chunked":
        content = (body[i : i + 100_000] for i in range(0, len(body), 100_000))
    response = client.post("/api/upload", content=content, headers={"x-echo-mode": "echo-body"})
    assert response.status_code == 200
    assert len(response.content) == len(body)
    assert response.content == body


# -------------------------------------------------------------- access log


def test_each_request_writes_one_access_log_line(
    client: httpx.Client, gateway: GatewayProcess
) -> None:
    rid = new_id()
    assert client.get("/api/logged", headers={"x-request-id": rid}).status_code == 200
    record = gateway.access_record(rid)
    assert {k: record[k] for k in ("method", "path", "status", "route", "cluster", "flags")} == {
        "method": "GET",
        "path": "/api/logged",
        "status": 200,
        "route": "api",
        "cluster": "echo",
        "flags": "-",
    }
    assert record["time"].endswith("Z")
    assert len([r for r in gateway.access_log() if r.get("request_id") == rid]) == 1


def _rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_slow_client_pushes_back_on_the_upstream(
    gateway: GatewayProcess, upstream: EchoUpstream
) -> None:
    """A client that does not read stops the upstream (via the gateway's backpressure)
    instead of the gateway buffering the whole response."""
    rid, size = new_id(), 48 * 1024 * 1024
    request = (
        f"GET /api/big HTTP/1.1\r\nhost: slow.test\r\nx-request-id: {rid}\r\n"
        f"x-echo-mode: big\r\nx-size: {size}\r\nconnection: close\r\n\r\n"
    ).encode()
    rss_before = _rss_kib(gateway.pid)
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        sock.settimeout(20)
        sock.connect(("127.0.0.1", gateway.port))
        sock.sendall(request)
        assert wait_until(lambda: any(r.header("x-request-id") == rid for r in upstream.requests))
        wait_until(lambda: rid in upstream.finished, timeout=1.5)
        assert rid not in upstream.finished  # the upstream is held up by the client
        assert _rss_kib(gateway.pid) - rss_before < 24 * 1024
        received = 0
        while chunk := sock.recv(1024 * 1024):
            received += len(chunk)
    assert received > size  # head and chunk framing included
    assert rid in upstream.finished
