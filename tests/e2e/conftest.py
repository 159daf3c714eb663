"""Fixtures for end-to-end tests: a real upstream, and ``gwcore serve`` as a subprocess.

Everything listens on 127.0.0.1 with ports the kernel picks; every process and thread
is started and stopped here. The gateway's access log (stdout) and event log (stderr)
go to files the tests read.

Conformance: every e2e test runs once per backend (``trio``, ``asyncio``): the
session-wide ``backend`` fixture is parametrized and autouse, and sets
``GWCORE_BACKEND`` so every ``gwcore serve`` started here or by a test picks that
adapter. ``GWCORE_E2E_BACKENDS=trio`` (comma-separated) narrows the run. Tests of one
adapter's internals (``test_trio_adapter.py``) run for their own backend only.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from upstream_server import EchoUpstream

GWCORE = Path(sys.executable).parent / "gwcore"
BACKENDS = tuple(os.environ.get("GWCORE_E2E_BACKENDS", "trio,asyncio").split(","))
ADAPTER_TESTS = {"test_trio_adapter": "trio"}  # module -> the only backend it tests

CONFIG = """\
listeners:
- name: e2e
  address: "127.0.0.1:8080"      # replaced by --listen
  limits:
    idle_timeout: 30s
    header_timeout: 5s
    max_body_bytes: 64MiB
clusters:
  echo:
    endpoints: ["127.0.0.1:{echo_port}"]
    connect_timeout: 1s
  down:
    endpoints: ["127.0.0.1:{dead_port}"]
    connect_timeout: 1s
virtual_hosts:
- name: e2e
  domains: ["*"]
  routes:
  - name: healthz
    match: {{path: /healthz}}
    direct_response: {{status: 200, body: "ok\\n"}}
  - name: moved
    match: {{prefix: /old}}
    redirect: {{path_redirect: /new, response_code: 302}}
  - name: down
    match: {{prefix: /down}}
    route: {{cluster: down, timeout: 5s}}
  - name: slow
    match: {{prefix: /slow}}
    route: {{cluster: echo, timeout: 500ms}}
  - name: api
    match: {{prefix: /api}}
    route: {{cluster: echo, timeout: 20s}}
"""


def free_port() -> int:
    """A port nothing listens on (bound and released at once)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0, step: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return predicate()


@dataclass
class GatewayProcess:
    process: subprocess.Popen[bytes]
    port: int
    access_path: Path
    event_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self.process.pid

    def open_fds(self) -> int:
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    def access_log(self) -> list[dict[str, Any]]:
        lines = self.access_path.read_text(encoding="utf-8").splitlines()
        return [json.loads(line) for line in lines if line.startswith("{")]

    def access_record(self, request_id: str, timeout: float = 5.0) -> dict[str, Any]:
        """The access log record of ``request_id`` (waits for it to be written)."""
        found: list[dict[str, Any]] = []

        def logged() -> bool:
            found[:] = [r for r in self.access_log() if r.get("request_id") == request_id]
            return bool(found)

        assert wait_until(logged, timeout), f"no access log record for {request_id!r}"
        return found[0]

    def events(self) -> str:
        return self.event_path.read_text(encoding="utf-8", errors="replace")


def start_gateway(config_path: Path, logs: Path) -> GatewayProcess:
    """``gwcore serve CONFIG --listen 127.0.0.1:0`` with the current test's backend
    (``GWCORE_BACKEND``); returns once it accepts connections."""
    access_path, event_path = logs / "access.log", logs / "events.log"
    with access_path.open("wb") as out, event_path.open("wb") as err:
        process = subprocess.Popen(
            [str(GWCORE), "serve", str(config_path), "--listen", "127.0.0.1:0"],
            stdout=out,
            stderr=err,
        )
    port: list[int] = []

    def listening() -> bool:
        for line in event_path.read_text(errors="replace").splitlines():
            if "listening on http://127.0.0.1:" in line:
                port.append(int(line.split("127.0.0.1:")[1].split()[0]))
                return True
        return process.poll() is not None

    if not wait_until(listening, 20) or not port:
        process.kill()
        process.wait()
        raise RuntimeError(f"gateway did not start:\n{event_path.read_text(errors='replace')}")
    return GatewayProcess(process, port[0], access_path, event_path)


def stop_gateway(gateway: GatewayProcess) -> int:
    if gateway.process.poll() is None:
        gateway.process.send_signal(signal.SIGINT)
        try:
            gateway.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            gateway.process.kill()
            gateway.process.wait()
    return gateway.process.returncode


@pytest.fixture(scope="session", params=BACKENDS, autouse=True)
def backend(request: pytest.FixtureRequest) -> Iterator[str]:
    """The adapter every gateway process of this test runs (pytest groups the tests by
    it, so each backend's session and module fixtures are set up once)."""
    name = str(request.param)
    previous = os.environ.get("GWCORE_BACKEND")
    os.environ["GWCORE_BACKEND"] = name
    yield name
    if previous is None:
        os.environ.pop("GWCORE_BACKEND", None)
    else:
        os.environ["GWCORE_BACKEND"] = previous


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Drop the other backends' copies of tests that exercise one adapter's internals."""
    keep, drop = [], []
    for item in items:
        only = ADAPTER_TESTS.get(item.module.__name__ if item.module else "")
        callspec = getattr(item, "callspec", None)
        other = only is not None and callspec is not None and callspec.params["backend"] != only
        (drop if other else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


@pytest.fixture(scope="session")
def upstream() -> Iterator[EchoUpstream]:
    server = EchoUpstream("echo").start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def config_path(upstream: EchoUpstream, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("e2e") / "gateway.yaml"
    path.write_text(CONFIG.format(echo_port=upstream.port, dead_port=free_port()))
    return path


@pytest.fixture(scope="session")
def gateway(
    backend: str, config_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayProcess]:
    process = start_gateway(config_path, tmp_path_factory.mktemp("gateway-logs"))
    yield process
    stop_gateway(process)
    assert "Traceback" not in process.events(), process.events()
