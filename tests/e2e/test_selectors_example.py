"""``examples/selectors_server.py``: the unmodified engine on a stdlib-only event loop,
as a subprocess on 127.0.0.1 in front of a real upstream, driven by httpx and curl.

It starts no ``gwcore serve``, so it does not depend on the backend: conftest runs it
once (``ADAPTER_TESTS``)."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
from conftest import JWKS_BODY, FetchServer, free_port, wait_until
from upstream_server import EchoUpstream, pattern

from gwcore.gateway import JwksFetched, JwksFetchFailed

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "selectors_server.py"
TIMEOUT = httpx.Timeout(10.0)


@dataclass
class Example:
    process: subprocess.Popen[bytes]
    port: int
    stdout: Path
    stderr: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def access_log(self) -> list[dict[str, Any]]:
        lines = self.stdout.read_text(encoding="utf-8").splitlines()
        return [json.loads(line) for line in lines]


@pytest.fixture(scope="module")
def example(config_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Example]:
    logs = tmp_path_factory.mktemp("selectors-example")
    stdout, stderr = logs / "access.log", logs / "events.log"
    with stdout.open("wb") as out, stderr.open("wb") as err:
        process = subprocess.Popen(
            [sys.executable, str(EXAMPLE), str(config_path), "--listen", "127.0.0.1:0"],
            stdout=out,
            stderr=err,
        )
    port: list[int] = []

    def listening() -> bool:
        for line in stderr.read_text(errors="replace").splitlines():
            if "listening on http://127.0.0.1:" in line:
                port.append(int(line.rsplit(":", 1)[1]))
                return True
        return process.poll() is not None

    if not wait_until(listening, 20) or not port:
        process.kill()
        process.wait()
        pytest.fail(f"the example did not start:\n{stderr.read_text(errors='replace')}")
    yield Example(process, port[0], stdout, stderr)
    process.send_signal(signal.SIGTERM)
    try:
        status = process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        raise
    events = stderr.read_text(errors="replace")
    assert status == 0, events
    assert "Traceback" not in events, events


def test_keep_alive_on_both_sides(example: Example) -> None:
    with httpx.Client(base_url=example.url, timeout=TIMEOUT) as http:
        first = http.get("/api/one", headers={"x-request-id": "sel-one"})
        second = http.get("/api/two?x=1", headers={"x-request-id": "sel-two"})
    assert (first.status_code, second.status_code) == (200, 200)
    one, two = first.json(), second.json()
    assert (one["upstream"], one["target"], two["target"]) == ("echo", "/api/one", "/api/two?x=1")
    assert one["connection"] == two["connection"]  # the engine's pool reused the upstream
    assert wait_until(lambda: len(_records(example, "sel-one", "sel-two")) == 2, 5)
    a, b = _records(example, "sel-one", "sel-two")
    assert a["client"] == b["client"]  # one client connection: same peer port
    assert (a["status"], a["route"], a["cluster"]) == (200, "api", "echo")


def test_post_body_is_forwarded_and_echoed(example: Example, upstream: EchoUpstream) -> None:
    body = pattern(3 * 1024 * 1024 + 17)  # several reads, writes and watermarks
    with httpx.Client(base_url=example.url, timeout=TIMEOUT) as http:
        response = http.post(
            "/api/upload",
            content=body,
            headers={"x-echo-mode": "echo-body", "x-request-id": "sel-post"},
        )
    assert response.status_code == 200
    assert hashlib.sha256(response.content).digest() == hashlib.sha256(body).digest()
    seen = upstream.seen("sel-post")
    assert seen.method == "POST" and len(seen.body) == len(body)


def test_big_response_to_a_slow_reader(example: Example) -> None:
    size = 16 * 1024 * 1024  # more than the socket buffers hold: WritesBlocked
    digest = hashlib.sha256()
    received = 0
    headers = {"x-echo-mode": "big", "x-size": str(size)}
    with (
        httpx.Client(base_url=example.url, timeout=TIMEOUT) as http,
        http.stream("GET", "/api/big", headers=headers) as response,
    ):
        assert response.status_code == 200
        for piece in response.iter_raw(256 * 1024):
            if received == 0:
                time.sleep(0.3)  # the example's queue to this client fills up meanwhile
            digest.update(piece)
            received += len(piece)
    assert received == size
    assert digest.digest() == hashlib.sha256(pattern(size)).digest()


def test_no_route_is_404_and_upstream_down_is_503(example: Example) -> None:
    with httpx.Client(base_url=example.url, timeout=TIMEOUT) as http:
        missing = http.get("/nothing/here")
        down = http.get("/down/x")
        healthz = http.get("/healthz")
    assert missing.status_code == 404
    assert down.status_code == 503
    assert (healthz.status_code, healthz.text) == (200, "ok\n")


def test_route_timeout_fires_from_the_timer_heap(example: Example) -> None:
    started = time.monotonic()
    with httpx.Client(base_url=example.url, timeout=TIMEOUT) as http:
        response = http.get("/slow", headers={"x-echo-mode": "slow", "x-delay": "3"})
    assert response.status_code == 504
    assert 0.4 < time.monotonic() - started < 2.5  # the route's 500 ms timeout


def test_curl_reuses_the_connection(example: Example) -> None:
    urls = [f"{example.url}/api/c1", f"{example.url}/healthz", f"{example.url}/nope"]
    argv = ["curl", "--silent", "--show-error", "--http1.1", "--max-time", "10"]
    argv += ["--write-out", "%{http_code} %{num_connects}\\n"]
    for url in urls:
        argv += ["--output", os.devnull, url]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["200 1", "200 0", "404 0"]


# ------------------------------------------------------------------- FetchJwks


def _records(example: Example, *request_ids: str) -> list[dict[str, Any]]:
    by_id = {r.get("request_id"): r for r in example.access_log()}
    return [by_id[i] for i in request_ids if i in by_id]


@pytest.fixture
def module(config_path: Path) -> Iterator[ModuleType]:
    spec = importlib.util.spec_from_file_location("selectors_server", EXAMPLE)
    assert spec is not None and spec.loader is not None
    loaded = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = loaded  # dataclasses look their module up
    try:
        spec.loader.exec_module(loaded)
        yield loaded
    finally:
        del sys.modules[spec.name]


def _fetch(module: ModuleType, config_path: Path, url: str, timeout: float) -> Any:
    """The example's fetch worker, run here: its answer, and the loop woken."""
    server = module.SelectorsServer(str(config_path), ("127.0.0.1", 0))
    try:
        server.fetch("idp", url, timeout, 1000)
        (answer,) = server.answers
        assert server.wake_r.recv(16) == b"!"
        return answer
    finally:
        for sock in (server.lsock, server.wake_r, server.wake_w):
            sock.close()
        server.sel.close()


def test_fetch_worker_gets_the_keys(
    module: ModuleType, config_path: Path, fetch_server: FetchServer
) -> None:
    answer = _fetch(module, config_path, fetch_server.url("/jwks"), 5.0)
    assert answer == JwksFetched("idp", 200, JWKS_BODY)


def test_fetch_worker_failures(
    module: ModuleType, config_path: Path, fetch_server: FetchServer
) -> None:
    untrusted = _fetch(module, config_path, fetch_server.url("/jwks", tls=True), 5.0)
    assert isinstance(untrusted, JwksFetchFailed)
    assert "certificate verify failed" in untrusted.reason
    refused = _fetch(module, config_path, f"http://127.0.0.1:{free_port()}/", 5.0)
    assert isinstance(refused, JwksFetchFailed) and "ConnectionRefusedError" in refused.reason
    started = time.monotonic()
    silent = _fetch(module, config_path, fetch_server.silent_url, 0.3)
    assert silent == JwksFetchFailed("idp", "timed out: no complete response within 0.3 s")
    assert time.monotonic() - started < 2.0
    too_long = _fetch(module, config_path, fetch_server.url("/big"), 5.0)
    assert too_long == JwksFetchFailed(
        "idp", "response body too long: the body is over max_bytes (1000)"
    )
