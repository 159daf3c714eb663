"""``make run``: two demo upstreams, then ``gwcore serve examples/gateway.yaml``.

The upstreams serve the endpoints of the clusters in ``examples/gateway.yaml``; the
gateway runs in the foreground (its access log on stdout) until Ctrl-C, and the
upstreams are stopped with it.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
CONFIG = HERE / "gateway.yaml"
GATEWAY = "http://127.0.0.1:8080"

UPSTREAMS = [
    # The orders service (two endpoints) and its canary.
    ["orders-1@127.0.0.1:9101", "orders-2@127.0.0.1:9102", "orders-canary@127.0.0.1:9111"],
    # The static web site, and the admin API.
    ["static@127.0.0.1:9201", "admin-v2@127.0.0.1:9001"],
]

TRY = f"""
Try (in another terminal):

  # a direct response from the gateway itself
  curl -i -H 'Host: api.example.com' {GATEWAY}/healthz
  # routed by the Host header: api.example.com is the API, any other host the static site
  curl -s -H 'Host: www.example.com' {GATEWAY}/index.html
  # the weighted split of /v1/orders: about 9 in 10 answered by orders-*, 1 by orders-canary
  for i in $(seq 20); do curl -s -H 'Host: api.example.com' {GATEWAY}/v1/orders \\
      | grep '"upstream"'; done | sort | uniq -c
  # the same over HTTP/2: prior knowledge (h2c), and an HTTP/1.1 Upgrade to h2c
  curl -i --http2-prior-knowledge -H 'Host: api.example.com' {GATEWAY}/v1/orders
  curl -i --http2 -H 'Host: api.example.com' {GATEWAY}/healthz
  # no such API: the api-not-found route answers 404 with JSON
  curl -i -H 'Host: api.example.com' {GATEWAY}/nope
  # plain http behind the edge load balancer: a 308 redirect to https
  curl -i -H 'Host: api.example.com' -H 'x-forwarded-proto: http' {GATEWAY}/v1/orders
  # JWT policy: 401 without a token, 403 without the admin:write scope, 200 with it
  curl -i -H 'Host: api.example.com' {GATEWAY}/v1/admin/users
  TOKEN=$(.venv/bin/python examples/demo_token.py --scope admin:write)
  curl -i -H 'Host: api.example.com' -H "Authorization: Bearer $TOKEN" {GATEWAY}/v1/admin/users
  # routing on a verified claim: x-api-version v2 + role admin -> admin-service-v2
  curl -s -H 'Host: api.example.com' -H 'x-api-version: v2' \
      -H "Authorization: Bearer $TOKEN" {GATEWAY}/anything | grep '"upstream"'
  # rate limit: a burst of 10, then 429 with Retry-After and RateLimit headers
  for i in $(seq 12); do curl -s -o /dev/null -w '%{{http_code}} ' \
      -H 'Host: api.example.com' {GATEWAY}/v1/orders; done; echo

Ctrl-C stops the gateway and the demo upstreams.
"""


def _wait_for_port(host: str, port: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection((host, port), timeout=0.5).close()
            return True
        except OSError:
            time.sleep(0.05)
    return False


def main() -> int:
    upstreams = [
        subprocess.Popen([sys.executable, str(HERE / "demo_upstream.py"), *specs])
        for specs in UPSTREAMS
    ]
    try:
        for specs, process in zip(UPSTREAMS, upstreams, strict=True):
            host, _, port = specs[-1].partition("@")[2].rpartition(":")
            if not _wait_for_port(host, int(port)) or process.poll() is not None:
                print(f"run_demo: demo upstream {' '.join(specs)} did not start", file=sys.stderr)
                return 1
        gateway = subprocess.Popen([str(BIN / "gwcore"), "serve", str(CONFIG)])
        if _wait_for_port("127.0.0.1", 8080):
            print(TRY, file=sys.stderr, flush=True)
        try:
            return gateway.wait()
        except KeyboardInterrupt:  # Ctrl-C reached the gateway too; let it finish
            return gateway.wait()
    finally:
        for process in upstreams:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in upstreams:
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


if __name__ == "__main__":
    sys.exit(main())
