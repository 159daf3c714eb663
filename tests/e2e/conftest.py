"""Fixtures for end-to-end tests: a real upstream, and ``gwcore serve`` as a subprocess.

Everything listens on 127.0.0.1 with ports the kernel picks; every process and thread
is started and stopped here. The gateway's access log (stdout) and event log (stderr)
go to files the tests read.

Conformance: every e2e test runs once per backend (``trio``, ``asyncio``): the
session-wide ``backend`` fixture is parametrized and autouse, and sets
``GWCORE_BACKEND`` so every ``gwcore serve`` started here or by a test picks that
adapter. ``GWCORE_E2E_BACKENDS=trio`` (comma-separated) narrows the run. Tests of one
adapter's internals (``test_trio_adapter.py``, ``test_asyncio_adapter.py``) run for
their own backend only, and tests that start no gateway of ours
(``test_selectors_example.py``) run once, under the first backend.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import trustme
from polling import wait_until
from upstream_server import EchoUpstream

GWCORE = Path(sys.executable).parent / "gwcore"
BACKENDS = tuple(os.environ.get("GWCORE_E2E_BACKENDS", "trio,asyncio").split(","))
# module -> the only backend it runs under: the adapter's own tests, and those that do
# not depend on the backend at all (they run once, under the first one).
ADAPTER_TESTS = {
    "test_trio_adapter": "trio",
    "test_asyncio_adapter": "asyncio",
    "test_selectors_example": BACKENDS[0],
}

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


# ----------------------------------------------------------- a server to fetch from


JWKS_BODY = b'{"keys": [{"kty": "oct", "kid": "k1", "k": "c2VjcmV0"}]}'
BIG = 2 * 1024 * 1024


class _FetchHandler(http.server.BaseHTTPRequestHandler):
    """``/jwks`` (Content-Length), ``/chunked``, ``/missing`` (404), ``/big`` (2 MiB,
    chunked), ``/cut`` (promises 100 bytes, sends 10, closes)."""

    protocol_version = "HTTP/1.1"
    timeout = 10
    server: _FetchHTTPServer

    def do_GET(self) -> None:
        self.server.owner.seen.append((self.path, {k.lower(): v for k, v in self.headers.items()}))
        if self.path == "/jwks":
            self._send(200, JWKS_BODY, {"Content-Length": str(len(JWKS_BODY))})
        elif self.path == "/missing":
            self._send(404, b"no such keys\n", {"Content-Length": "13"})
        elif self.path == "/cut":
            self._send(200, JWKS_BODY[:10], {"Content-Length": "100"})
        elif self.path in ("/chunked", "/big"):
            self._send(200, b"", {"Transfer-Encoding": "chunked"})
            body = JWKS_BODY if self.path == "/chunked" else b"k" * BIG
            with contextlib.suppress(OSError):  # the client gives up on /big
                for start in range(0, len(body), 16 * 1024):
                    piece = body[start : start + 16 * 1024]
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                self.wfile.write(b"0\r\n\r\n")
        self.close_connection = True

    def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _FetchHTTPServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    owner: FetchServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that refuses our certificate, or stops reading /big


@dataclass
class FetchServer:
    """What ``FetchJwks`` is tested against, all on 127.0.0.1: a threaded ``http.server``
    over plain TCP and over TLS (a certificate for ``localhost`` and ``127.0.0.1`` from
    a trustme CA; the SNI names it was asked for are kept), and a port that accepts
    connections (the kernel's backlog) but never answers."""

    ca: trustme.CA = field(default_factory=trustme.CA)
    seen: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    sni: list[str | None] = field(default_factory=list)
    _servers: list[_FetchHTTPServer] = field(default_factory=list)
    _silent: socket.socket | None = None

    def start(self) -> FetchServer:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.ca.issue_cert("localhost", "127.0.0.1").configure_cert(context)
        context.sni_callback = lambda _sock, name, _ctx: self.sni.append(name)
        for tls in (False, True):
            server = _FetchHTTPServer(("127.0.0.1", 0), _FetchHandler)
            server.owner = self
            if tls:
                server.socket = context.wrap_socket(
                    server.socket, server_side=True, do_handshake_on_connect=False
                )
            threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
            self._servers.append(server)
        self._silent = socket.socket()
        self._silent.bind(("127.0.0.1", 0))
        self._silent.listen(128)  # never accepted: connections stay queued
        return self

    def stop(self) -> None:
        for server in self._servers:
            server.shutdown()
            server.server_close()
        if self._silent is not None:
            self._silent.close()

    def url(self, path: str, *, tls: bool = False, host: str = "127.0.0.1") -> str:
        port = self._servers[tls].server_address[1]
        return f"{'https' if tls else 'http'}://{host}:{port}{path}"

    @property
    def silent_url(self) -> str:
        assert self._silent is not None
        return f"http://127.0.0.1:{self._silent.getsockname()[1]}/jwks"

    def client_context(self) -> ssl.SSLContext:
        """A default client context that also trusts the test CA."""
        context = ssl.create_default_context()
        self.ca.configure_trust(context)
        return context


@pytest.fixture(scope="session")
def fetch_server() -> Iterator[FetchServer]:
    server = FetchServer().start()
    yield server
    server.stop()
