"""The gateway between independent, real implementations: h2load and wrk as clients,
nginx as an upstream, and a raw socket reading chunked trailers.

h2load (nghttp2-client), wrk and nginx must be installed; a missing one fails the test
with the command that installs it (``sh bench/setup.sh``), it is never skipped.
Everything listens on 127.0.0.1; every server is started and stopped here.
"""

from __future__ import annotations

import hashlib
import re
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import GatewayProcess, start_gateway, stop_gateway, wait_until
from h2_upstream import H2EchoUpstream
from nginx_upstream import FIXED_BODY, SLOW_RATE, AccessLine, NginxUpstream, find_tool
from upstream_server import pattern

MIB = 1024 * 1024
BIG_SIZE = 5 * MIB
TIMEOUT = httpx.Timeout(10.0)

GATEWAY_CONFIG = """\
listeners:
- name: real
  address: "127.0.0.1:8080"      # replaced by --listen
  limits: {{idle_timeout: 30s, header_timeout: 5s}}
clusters:
  nginx:
    endpoints: ["{nginx}"]
    connect_timeout: 1s
  h2:
    endpoints: ["127.0.0.1:{h2_port}"]
    protocol: http2
    connect_timeout: 1s
virtual_hosts:
- name: real
  domains: ["*"]
  routes:
  - match: {{path: /healthz}}
    direct_response: {{status: 200, body: "ok\\n"}}
  - match: {{prefix: /h2/}}
    route: {{cluster: h2, timeout: 5s}}
  - match: {{prefix: /}}
    route: {{cluster: nginx, timeout: 20s}}
"""


def marker(prefix: str = "/api") -> str:
    return f"{prefix}/{uuid.uuid4().hex}"


def assert_no_engine_error(gateway: GatewayProcess) -> None:
    events = gateway.events()
    assert "engine_error" not in events, events[-5000:]
    assert "Traceback" not in events, events[-5000:]


def start_nginx(directory: Path) -> NginxUpstream:
    nginx = NginxUpstream(directory).start()
    (nginx.www / "big.bin").write_bytes(pattern(BIG_SIZE))
    (nginx.www / "1m.bin").write_bytes(pattern(MIB))
    return nginx


def gateway_for(nginx: NginxUpstream, h2_port: int, directory: Path) -> GatewayProcess:
    directory.mkdir(parents=True, exist_ok=True)
    config = directory / "gateway.yaml"
    config.write_text(GATEWAY_CONFIG.format(nginx=nginx.address, h2_port=h2_port))
    return start_gateway(config, directory)


@pytest.fixture(scope="module")
def nginx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NginxUpstream]:
    server = start_nginx(tmp_path_factory.mktemp("nginx"))
    yield server
    server.stop()
    assert "[alert]" not in server.errors() and "[emerg]" not in server.errors(), server.errors()


@pytest.fixture(scope="module")
def h2_upstream() -> Iterator[H2EchoUpstream]:
    server = H2EchoUpstream().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def real_gateway(
    nginx: NginxUpstream, h2_upstream: H2EchoUpstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayProcess]:
    process = gateway_for(nginx, h2_upstream.port, tmp_path_factory.mktemp("real-gateway"))
    yield process
    stop_gateway(process)
    assert_no_engine_error(process)


def logged(gateway: GatewayProcess, path: str, count: int) -> list[dict[str, object]]:
    """The access log records of ``path``, once at least ``count`` are written."""
    records: list[dict[str, object]] = []

    def enough() -> bool:
        records[:] = [r for r in gateway.access_log() if r.get("path") == path]
        return len(records) >= count

    wait_until(enough, timeout=10)
    return records


# ------------------------------------------------------------------ h2load


H2LOAD_REQUESTS = re.compile(
    r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, "
    r"(\d+) failed, (\d+) errored, (\d+) timeout"
)
H2LOAD_STATUSES = re.compile(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx")


def run_h2load(*args: str) -> str:
    result = subprocess.run(
        [find_tool("h2load"), *args], capture_output=True, text=True, timeout=60, check=False
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    return output


@pytest.mark.parametrize(
    ("flags", "application", "logged_protocol"),
    [([], "h2c", "HTTP/2"), (["--h1"], "http/1.1", "HTTP/1.1")],
    ids=["h2c-prior-knowledge", "http1"],
)
def test_h2load_2000_requests_all_succeed(
    real_gateway: GatewayProcess, flags: list[str], application: str, logged_protocol: str
) -> None:
    path = marker()
    output = run_h2load(*flags, "-n", "2000", "-c", "4", "-m", "8", f"{real_gateway.url}{path}")
    assert f"Application protocol: {application}" in output, output
    counts = H2LOAD_REQUESTS.search(output)
    assert counts is not None, output
    total, started, done, succeeded, failed, errored, timeout = map(int, counts.groups())
    assert (total, started, done, succeeded) == (2000, 2000, 2000, 2000), output
    assert (failed, errored, timeout) == (0, 0, 0), output
    statuses = H2LOAD_STATUSES.search(output)
    assert statuses is not None and statuses.groups() == ("2000", "0", "0", "0"), output
    records = logged(real_gateway, path, 2000)
    assert len(records) == 2000
    assert {(r["status"], r["protocol"], r["flags"]) for r in records} == {
        (200, logged_protocol, "-")
    }
    assert_no_engine_error(real_gateway)


def test_h2load_multiplexed_downloads_with_small_windows_are_complete(
    real_gateway: GatewayProcess,
) -> None:
    # 40 downloads of 1 MiB, 8 streams at a time on each of 2 connections, with 64 KiB
    # stream windows and a 1 MiB connection window: the gateway must interleave the
    # streams as WINDOW_UPDATEs come, and never overrun a window (h2load would count
    # the FLOW_CONTROL_ERROR as errored) or lose a byte.
    output = run_h2load(
        "-n", "40", "-c", "2", "-m", "8", "-w", "16", "-W", "20",
        f"{real_gateway.url}/files/1m.bin",
    )  # fmt: skip
    assert "Application protocol: h2c" in output, output
    counts = H2LOAD_REQUESTS.search(output)
    assert counts is not None and counts.groups()[3:] == ("40", "0", "0", "0"), output
    assert f"({40 * MIB}) data" in output, output
    assert_no_engine_error(real_gateway)


# ------------------------------------------------------------------ wrk


def test_wrk_keep_alive_load_has_no_errors(real_gateway: GatewayProcess) -> None:
    wrk = find_tool("wrk")
    path = marker()
    result = subprocess.run(
        [wrk, "-t1", "-c16", "-d2s", "--timeout", "5s", f"{real_gateway.url}{path}"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    done = re.search(r"(\d+) requests in ", output)
    assert done is not None, output
    requests = int(done.group(1))
    assert requests > 0, output
    # wrk prints these lines only when a count is not zero; parse them anyway.
    errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    assert errors is None or errors.groups() == ("0", "0", "0", "0"), output
    assert "Non-2xx or 3xx responses" not in output, output
    # Every response wrk counted went through the gateway as a 200 from nginx.
    records = logged(real_gateway, path, requests)
    assert sum(1 for r in records if r["status"] == 200) >= requests, (requests, len(records))
    # 16 client connections, reused: wrk never reconnects unless a connection closes.
    assert len({r["client"] for r in records}) == 16
    assert_no_engine_error(real_gateway)


# ------------------------------------------------------------------ nginx upstream


def test_nginx_sees_forwarding_headers_and_the_body_is_intact(
    real_gateway: GatewayProcess, nginx: NginxUpstream
) -> None:
    with httpx.Client(base_url=real_gateway.url, timeout=TIMEOUT) as client:
        response = client.get(marker("/fixed"))
        assert response.status_code == 200
        assert response.content == FIXED_BODY
        assert response.headers["x-seen-via"] == "1.1 gwcore"
        assert response.headers["x-seen-forwarded-for"] == "127.0.0.1"

        response = client.get("/fixed", headers={"x-forwarded-for": "203.0.113.7"})
        assert response.headers["x-seen-forwarded-for"] == "203.0.113.7, 127.0.0.1"

        response = client.get("/files/big.bin")
        assert response.status_code == 200
        assert response.headers["content-length"] == str(BIG_SIZE)
        assert (
            hashlib.sha256(response.content).digest() == hashlib.sha256(pattern(BIG_SIZE)).digest()
        )

    with httpx.Client(
        base_url=real_gateway.url, timeout=TIMEOUT, http1=False, http2=True
    ) as client:
        response = client.get(marker("/fixed"))
        assert response.http_version == "HTTP/2"
        assert response.content == FIXED_BODY
        assert response.headers["x-seen-via"] == "2 gwcore"
        response = client.get("/files/big.bin")
        assert (
            hashlib.sha256(response.content).digest() == hashlib.sha256(pattern(BIG_SIZE)).digest()
        )
    assert_no_engine_error(real_gateway)


def test_keep_alive_connections_to_nginx_are_reused(
    real_gateway: GatewayProcess, nginx: NginxUpstream
) -> None:
    prefix = marker("/reuse")
    paths = [f"{prefix}/{i}" for i in range(30)]
    with httpx.Client(base_url=real_gateway.url, timeout=TIMEOUT) as client:
        for path in paths[:15]:  # one client connection
            assert client.get(path).status_code == 200
    for path in paths[15:]:  # a new client connection each time
        with httpx.Client(base_url=real_gateway.url, timeout=TIMEOUT) as client:
            assert client.get(path).status_code == 200

    seen: list[AccessLine] = []

    def all_logged() -> bool:
        seen[:] = [line for line in nginx.access_log() if line.uri.startswith(prefix)]
        return len(seen) == len(paths)

    assert wait_until(all_logged, timeout=5), seen
    assert [line.uri for line in seen] == paths
    # Sequential requests take the most recently released (LIFO) idle connection: one
    # upstream connection carries all 30, whatever the client connections were.
    assert len({line.connection for line in seen}) == 1, seen
    numbers = [line.connection_requests for line in seen]
    assert numbers == list(range(numbers[0], numbers[0] + len(paths))), numbers


def download_killing_nginx(client: httpx.Client, nginx: NginxUpstream) -> tuple[int, float]:
    """Streams ``/slow/big.bin``, kills nginx after 256 KiB and reads on until the cut:
    returns the bytes received and the seconds from the kill to the cut."""
    received, killed = 0, 0.0
    with pytest.raises(httpx.TransportError) as cut, client.stream("GET", "/slow/big.bin") as r:
        assert r.status_code == 200
        assert r.headers["content-length"] == str(BIG_SIZE)
        for chunk in r.iter_raw():
            received += len(chunk)
            if received >= 256 * 1024 and not killed:
                killed = time.monotonic()
                nginx.kill()
    assert killed, "the download ended before nginx was killed"
    assert not isinstance(cut.value, httpx.TimeoutException), repr(cut.value)
    return received, time.monotonic() - killed


@pytest.mark.parametrize("http2", [False, True], ids=["http1-client", "h2-client"])
def test_killing_nginx_mid_stream_cuts_the_response_and_never_hangs(
    tmp_path: Path, http2: bool
) -> None:
    nginx = start_nginx(tmp_path / "nginx")
    gateway = gateway_for(nginx, nginx.port, tmp_path / "gateway")  # (h2 cluster unused)
    timeout = httpx.Timeout(5.0)
    try:
        with httpx.Client(
            base_url=gateway.url, timeout=timeout, http1=not http2, http2=http2
        ) as client:
            received, seconds = download_killing_nginx(client, nginx)
            assert seconds < 3, seconds
            # nginx sends SLOW_RATE bytes/s: most of the body never came.
            assert received < BIG_SIZE - SLOW_RATE, received
            # The next request is answered at once: the upstream is gone. (Over HTTP/2
            # only the stream was reset: the same connection carries it.)
            before = time.monotonic()
            response = client.get("/after-kill")
            assert response.status_code in (502, 503), response
            assert time.monotonic() - before < 3
            assert client.get("/healthz").status_code == 200
    finally:
        nginx.stop()
        stop_gateway(gateway)
    assert_no_engine_error(gateway)
    records = {r["path"]: r for r in gateway.access_log()}
    cut, after = records["/slow/big.bin"], records["/after-kill"]
    assert cut["flags"] in ("UC", "UPE"), cut
    assert (cut["client"] == after["client"]) is http2, (cut, after)


# ------------------------------------------------------------------ trailers


def read_chunked_response(sock: socket.socket, deadline: float) -> tuple[bytes, bytes, bytes]:
    """Reads one chunked HTTP/1.1 response: (head, body, trailer section)."""
    data = b""

    def need(size: int) -> None:
        nonlocal data
        while len(data) < size:
            assert time.monotonic() < deadline, data
            chunk = sock.recv(65536)
            assert chunk, f"connection closed early: {data!r}"
            data += chunk

    def line(start: int) -> tuple[bytes, int]:
        while (end := data.find(b"\r\n", start)) < 0:
            need(len(data) + 1)
        return data[start:end], end + 2

    while (head_end := data.find(b"\r\n\r\n")) < 0:
        need(len(data) + 1)
    head = data[:head_end]
    assert b"\r\ntransfer-encoding: chunked" in head.lower(), head
    position, body = head_end + 4, b""
    while True:
        size_line, position = line(position)
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        need(position + size + 2)
        body += data[position : position + size]
        assert data[position + size : position + size + 2] == b"\r\n"
        position += size + 2
    trailers = b""
    while True:
        field_line, position = line(position)
        if not field_line:
            break
        trailers += field_line + b"\r\n"
    assert data[position:] == b"", data[position:]  # nothing after the message
    return head, body, trailers


@pytest.mark.parametrize("te_trailers", [True, False], ids=["te-trailers", "no-te"])
def test_http1_client_gets_http2_upstream_trailers_only_with_te_trailers(
    real_gateway: GatewayProcess, h2_upstream: H2EchoUpstream, te_trailers: bool
) -> None:
    path = marker("/h2")
    te = "TE: trailers\r\nConnection: TE\r\n" if te_trailers else ""
    request = f"GET {path} HTTP/1.1\r\nHost: trailers.test\r\n{te}\r\n".encode()
    with socket.create_connection(("127.0.0.1", real_gateway.port), timeout=5) as sock:
        sock.sendall(request)
        head, body, trailers = read_chunked_response(sock, time.monotonic() + 5)
        assert head.startswith(b"HTTP/1.1 200 "), head
        # The connection stays usable: a second exchange on it.
        sock.sendall(request)
        head2, body2, trailers2 = read_chunked_response(sock, time.monotonic() + 5)
    assert b'"path": "' + path.encode() + b'"' in body
    assert (head2[:12], body2[:1], trailers2) == (head[:12], b"{", trailers)
    if te_trailers:
        assert trailers == b"x-upstream-trailer: done\r\n", trailers
    else:
        assert trailers == b"", trailers
    assert_no_engine_error(real_gateway)
