"""The demo ``make run`` serves (``examples/gateway.yaml`` with its demo keys), with
the curl lines ``examples/run_demo.py`` prints, against real upstreams."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import GatewayProcess, start_gateway, stop_gateway
from upstream_server import EchoUpstream

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
API = {"host": "api.example.com"}


@pytest.fixture(scope="module")
def demo(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    directory = tmp_path_factory.mktemp("demo")
    shutil.copytree(EXAMPLES / "keys", directory / "keys")
    text = (EXAMPLES / "gateway.yaml").read_text()
    # Each demo upstream address gets an echo server of its own (the config's fixed
    # ports may be taken on this machine).
    servers: dict[str, EchoUpstream] = {}
    for address in sorted(set(re.findall(r"127\.0\.0\.1:9\d\d\d", text))):
        servers[address] = EchoUpstream(address).start()
        text = text.replace(address, f"127.0.0.1:{servers[address].port}")
    (directory / "gateway.yaml").write_text(text)
    gateway = start_gateway(directory / "gateway.yaml", directory)
    yield gateway
    stop_gateway(gateway)
    for server in servers.values():
        server.stop()
    assert "Traceback" not in gateway.events()


def demo_token(*args: str) -> str:
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / "demo_token.py"), *args],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    return result.stdout.strip()


def test_demo_health_and_routing(demo: GatewayProcess) -> None:
    assert httpx.get(f"{demo.url}/healthz", headers=API).text == "ok\n"
    assert httpx.get(f"{demo.url}/nope", headers=API).status_code == 404


def test_demo_jwt_policy_and_claim_routing(demo: GatewayProcess) -> None:
    url = f"{demo.url}/v1/admin/users"
    assert httpx.get(url, headers=API).status_code == 401
    reader = demo_token()  # scope orders:read
    assert httpx.get(url, headers={**API, "authorization": f"Bearer {reader}"}).status_code == 403
    admin = demo_token("--scope", "admin:write")
    ok = httpx.get(url, headers={**API, "authorization": f"Bearer {admin}"})
    assert ok.status_code == 200
    seen = dict(ok.json()["headers"])
    assert seen["x-user"] == "demo-user"
    assert seen["x-client-ip"] == "127.0.0.1"
    routed = httpx.get(
        f"{demo.url}/anything",
        headers={**API, "x-api-version": "v2", "authorization": f"Bearer {admin}"},
    )
    assert routed.status_code == 200  # admin-service-v2 (the api-not-found route would 404)


def test_demo_rate_limit_burst_then_429(demo: GatewayProcess) -> None:
    # A client behind the trusted local proxy: its own bucket, whatever other tests did.
    headers = {**API, "x-forwarded-for": "192.0.2.77"}
    with httpx.Client(base_url=demo.url, headers=headers) as client:
        responses = [client.get("/v1/orders") for _ in range(30)]
    codes = [r.status_code for r in responses]
    assert codes[:10] == [200] * 10, codes  # the burst
    assert 429 in codes, codes  # refilled at 5/s: far fewer than 30 in this time
    denied = responses[codes.index(429)]
    assert int(denied.headers["retry-after"]) >= 1
