"""The gateway process over time: file descriptors, signals, workers, startup errors."""

from __future__ import annotations

import signal
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from conftest import GWCORE, GatewayProcess, free_port, start_gateway, stop_gateway, wait_until
from h2_upstream import H2EchoUpstream
from upstream_server import EchoUpstream

TIMEOUT = httpx.Timeout(15.0)


@pytest.fixture
def fresh_gateway(config_path: Path, tmp_path: Path) -> Iterator[GatewayProcess]:
    """A gateway of its own, for tests that stop it."""
    process = start_gateway(config_path, tmp_path)
    yield process
    stop_gateway(process)


def _abandoned_upload(port: int) -> None:
    """A client that sends half a request body, then goes away."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"POST /api/abandoned HTTP/1.1\r\nhost: x\r\ncontent-length: 1000\r\n\r\n0123")


def _one_shot(port: int, path: str) -> int:
    """One request on a new connection that the gateway closes after the response."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n".encode())
        response = b""
        while chunk := sock.recv(65536):
            response += chunk
    return int(response.split(b" ", 2)[1])


def test_no_file_descriptor_leak_after_10000_requests(gateway: GatewayProcess) -> None:
    paths = ["/api/fd", "/healthz", "/nothing", "/down", "/api/fd-close"]
    close_before = {"x-echo-mode": "close-before"}
    with httpx.Client(base_url=gateway.url, timeout=TIMEOUT) as http:
        for path in paths:  # warm up: pools, caches, lazily opened files
            http.get(path)
        time.sleep(0.3)
        before = gateway.open_fds()
        statuses: dict[int, int] = {}
        for i in range(5000):  # one keep-alive connection (502s close the upstream side)
            path = paths[i % len(paths)]
            response = http.get(path, headers=close_before if path.endswith("close") else {})
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
    for i in range(4500):  # a new client connection each
        status = _one_shot(gateway.port, paths[i % len(paths)])
        statuses[status] = statuses.get(status, 0) + 1
    for _ in range(500):
        _abandoned_upload(gateway.port)
    assert set(statuses) == {200, 404, 502, 503}, statuses
    assert wait_until(lambda: gateway.open_fds() <= before + 2, timeout=15), (
        before,
        gateway.open_fds(),
    )


def test_sigterm_lets_the_request_in_flight_finish(
    fresh_gateway: GatewayProcess, upstream: EchoUpstream
) -> None:
    rid = f"drain-{uuid.uuid4().hex}"
    result: list[httpx.Response] = []
    headers = {"x-request-id": rid, "x-echo-mode": "slow", "x-delay": "1"}

    def slow_request() -> None:
        result.append(httpx.get(f"{fresh_gateway.url}/api/drain", headers=headers, timeout=10))

    idle = httpx.Client(base_url=fresh_gateway.url, timeout=TIMEOUT)
    assert idle.get("/healthz").status_code == 200  # an idle keep-alive connection remains
    thread = threading.Thread(target=slow_request)
    thread.start()
    assert wait_until(lambda: any(r.header("x-request-id") == rid for r in upstream.requests))
    started = time.monotonic()
    fresh_gateway.process.send_signal(signal.SIGTERM)
    time.sleep(0.2)
    with pytest.raises(ConnectionRefusedError):  # no longer accepting
        socket.create_connection(("127.0.0.1", fresh_gateway.port), timeout=2).close()
    thread.join(timeout=10)
    assert [r.status_code for r in result] == [200]
    assert fresh_gateway.process.wait(timeout=10) == 0
    assert time.monotonic() - started < 5  # the idle connection did not hold the drain up
    idle.close()
    assert "Traceback" not in fresh_gateway.events()


def test_sigint_stops_at_once(fresh_gateway: GatewayProcess) -> None:
    errors: list[BaseException] = []
    headers = {"x-echo-mode": "slow", "x-delay": "5"}

    def slow_request() -> None:
        try:
            httpx.get(f"{fresh_gateway.url}/api/interrupted", headers=headers, timeout=10)
        except httpx.TransportError as exc:
            errors.append(exc)

    thread = threading.Thread(target=slow_request)
    thread.start()
    time.sleep(0.3)
    started = time.monotonic()
    fresh_gateway.process.send_signal(signal.SIGINT)
    assert fresh_gateway.process.wait(timeout=5) == 0
    assert time.monotonic() - started < 2
    thread.join(timeout=10)
    assert len(errors) == 1  # the request in flight was cut
    assert "Traceback" not in fresh_gateway.events()


def _workers(pid: int) -> list[int]:
    """The worker processes ``pid`` spawned (not multiprocessing's resource tracker)."""
    workers = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            ppid = int((proc / "stat").read_text().rpartition(")")[2].split()[1])
            cmdline = (proc / "cmdline").read_bytes()
        except (OSError, IndexError, ValueError):
            continue
        if ppid == pid and b"spawn_main" in cmdline:
            workers.append(int(proc.name))
    return workers


def test_workers_share_one_port(config_path: Path, tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "events.log"
    with log.open("wb") as err:
        process = subprocess.Popen(
            [GWCORE, "serve", config_path, "--listen", f"127.0.0.1:{port}", "--workers", "3"],
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    try:

        def accepting() -> bool:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return True
            except OSError:
                return False

        assert wait_until(accepting, timeout=20), log.read_text()
        assert wait_until(lambda: len(_workers(process.pid)) == 3), _workers(process.pid)
        with ThreadPoolExecutor(max_workers=8) as pool:
            statuses = pool.map(lambda _: _one_shot(port, "/healthz"), range(200))
            assert set(statuses) == {200}
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    text = log.read_text()
    assert f"listening on http://127.0.0.1:{port}" in text
    assert "Traceback" not in text


def test_serve_with_an_invalid_config_reports_where_and_exits_1(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("listeners:\n- name: x\n  adress: 127.0.0.1:1\n")
    result = subprocess.run(
        [GWCORE, "serve", path], capture_output=True, text=True, timeout=30, check=False
    )
    assert result.returncode == 1
    assert "bad.yaml:3:" in result.stderr and "did you mean 'address'" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_serve_on_a_port_in_use_exits_1(config_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [GWCORE, "serve", config_path, "--listen", f"127.0.0.1:{port}"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    assert result.returncode == 1
    assert "in use" in result.stderr
    assert "Traceback" not in result.stderr


def test_http2_cluster_multiplexes_concurrent_requests_on_one_connection(
    tmp_path: Path,
) -> None:
    upstream = H2EchoUpstream().start()
    config = tmp_path / "h2.yaml"
    config.write_text(
        "listeners: [{name: l, address: '127.0.0.1:8080'}]\n"
        f"clusters: {{grpc: {{endpoints: ['127.0.0.1:{upstream.port}'], protocol: http2}}}}\n"
        "routes: [{match: {prefix: /}, route: {cluster: grpc, timeout: 5s}}]\n"
    )
    process = start_gateway(config, tmp_path)
    try:

        def get(i: int) -> dict[str, object]:
            response = httpx.get(f"{process.url}/h2-{i}", headers={"te": "trailers"}, timeout=10)
            assert response.status_code == 200
            return response.json()  # type: ignore[no-any-return]

        with ThreadPoolExecutor(max_workers=8) as pool:
            answers = list(pool.map(get, range(40)))
    finally:
        stop_gateway(process)
        upstream.stop()
    assert sorted(a["path"] for a in answers) == sorted(f"/h2-{i}" for i in range(40))
    # Far fewer upstream connections than requests: streams share connections.
    assert upstream.connections <= 8
    assert max(int(str(a["stream"])) for a in answers) > 1
    assert "engine_error" not in process.events()
