"""The gateway as curl sees it (curl must be installed: CI installs it)."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import uuid
from pathlib import Path

from conftest import GatewayProcess, wait_until
from upstream_server import EchoUpstream, pattern

CURL = shutil.which("curl")


def curl(*args: str) -> subprocess.CompletedProcess[bytes]:
    assert CURL is not None, "curl is not installed (apt-get install -y curl)"
    return subprocess.run(
        [CURL, "--silent", "--show-error", "--max-time", "20", *args],
        capture_output=True,
        timeout=30,
        check=True,
    )


def head_and_body(output: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = output.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(status_line.split()[1]), headers, body


def test_curl_get_is_proxied(gateway: GatewayProcess, upstream: EchoUpstream) -> None:
    rid = f"curl-{uuid.uuid4().hex}"
    result = curl("-i", "-H", f"x-request-id: {rid}", f"{gateway.url}/api/curl?q=1")
    status, _, body = head_and_body(result.stdout)
    assert status == 200
    assert json.loads(body)["target"] == "/api/curl?q=1"
    assert (upstream.seen(rid).header("user-agent") or "").startswith("curl/")


def test_curl_post_of_a_file_is_proxied_intact(
    gateway: GatewayProcess, upstream: EchoUpstream, tmp_path: Path
) -> None:
    data = tmp_path / "body.bin"
    data.write_bytes(pattern(1_500_000))
    for extra in ([], ["-H", "transfer-encoding: chunked"]):
        rid = f"curl-{uuid.uuid4().hex}"
        # "Expect:" stops curl waiting for a 100 Continue (see test_expect_100_continue_...).
        result = curl(
            "-H", f"x-request-id: {rid}", "-H", "Expect:", "--data-binary", f"@{data}", *extra,
            f"{gateway.url}/api/upload",
        )  # fmt: skip
        answer = json.loads(result.stdout)
        assert answer["method"] == "POST"
        assert answer["body_sha256"] == hashlib.sha256(data.read_bytes()).hexdigest()


def test_curl_reuses_its_connection_for_two_urls(gateway: GatewayProcess) -> None:
    marker = uuid.uuid4().hex
    urls = [f"{gateway.url}/api/{marker}/{i}" for i in range(2)]
    result = curl("--verbose", *urls)
    assert b"Re-using existing connection" in result.stderr
    paths = {f"/api/{marker}/{i}" for i in range(2)}

    def records() -> list[dict[str, object]]:
        return [r for r in gateway.access_log() if r.get("path") in paths]

    assert wait_until(lambda: len(records()) == 2)
    assert len({r["client"] for r in records()}) == 1


def test_curl_sees_local_answers(gateway: GatewayProcess) -> None:
    status, _, body = head_and_body(curl("-i", f"{gateway.url}/healthz").stdout)
    assert (status, body) == (200, b"ok\n")
    status, headers, _ = head_and_body(curl("-i", f"{gateway.url}/old/x").stdout)
    assert (status, headers["location"]) == (302, f"{gateway.url}/new")
    status, _, _ = head_and_body(curl("-i", f"{gateway.url}/nothing").stdout)
    assert status == 404
    status, _, _ = head_and_body(curl("-i", f"{gateway.url}/down").stdout)
    assert status == 503


def test_curl_downloads_a_large_body_intact(gateway: GatewayProcess) -> None:
    size = 5 * 1024 * 1024
    result = curl("-H", "x-echo-mode: big", "-H", f"x-size: {size}", f"{gateway.url}/api/big")
    assert result.stdout == pattern(size)


def test_curl_http2_prior_knowledge_is_proxied(
    gateway: GatewayProcess, upstream: EchoUpstream
) -> None:
    rid = f"h2-{uuid.uuid4().hex}"
    result = curl(
        "--http2-prior-knowledge",
        "-w",
        "\n%{http_version}",
        "-H",
        f"x-request-id: {rid}",
        f"{gateway.url}/api/h2?x=1",
    )
    body, _, version = result.stdout.rpartition(b"\n")
    assert version == b"2"
    assert json.loads(body)["target"] == "/api/h2?x=1"
    assert upstream.seen(rid).header("via") == "2 gwcore"
    record = gateway.access_record(rid)
    assert record["protocol"] == "HTTP/2" and record["status"] == 200


def test_curl_http2_upgrade_from_http1_is_served_over_h2(gateway: GatewayProcess) -> None:
    result = curl("--http2", "-i", f"{gateway.url}/healthz")
    assert result.stdout.startswith(b"HTTP/1.1 101 Switching Protocols\r\n")
    assert b"\r\n\r\nHTTP/2 200" in result.stdout


def test_curl_http2_large_download_respects_flow_control(gateway: GatewayProcess) -> None:
    size = 5 * 1024 * 1024
    result = curl(
        "--http2-prior-knowledge",
        "-H",
        "x-echo-mode: big",
        "-H",
        f"x-size: {size}",
        f"{gateway.url}/api/big-h2",
    )
    assert len(result.stdout) == size
    assert hashlib.sha256(result.stdout).digest() == hashlib.sha256(pattern(size)).digest()
