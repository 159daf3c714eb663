"""Policy cost end to end: ``gwcore serve`` on a plain route, a JWT route (a cached
token: the same token on every request) and a rate-limited route, side by side.

One upstream nginx (``return 200``), one gwcore process per backend (trio, asyncio)
with three routes to it:

- ``/plain``: no policy;
- ``/jwt``: ``policy: {jwt: corp, require: {claims: {scope: [read]}}}`` with an RS256
  token from a file JWKS, ``claims_to_headers`` and a request header template: after
  the first request the verification result comes from the cache;
- ``/limited``: a token bucket keyed by client IP, sized so it never denies (the cost
  of the take, not of 429s).

wrk (``-c32``, keep-alive) loads each route in interleaved rounds (the order rotates
every round); the table gives the median round's rps, the CPU the gateway used per
request (µs, from /proc), and the ratio to the plain route measured in the same run.
Placement as in ``bench_proxy.py``: gateway on core 1, wrk and the upstream on core 0.

Run: ``.venv/bin/python bench/bench_policy.py [--duration S] [--rounds N]
[--backends trio,asyncio]`` (defaults: 3 rounds of 3 s, about 1 minute).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import jwt
import yaml
from bench_proxy import (
    HOST,
    Processes,
    WrkResult,
    free_port,
    parse_wrk,
    pin_group,
    run_load,
    upstream_nginx_config,
    wait_listening,
)
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

ROOT = Path(__file__).resolve().parent.parent
GWCORE = Path(sys.executable).parent / "gwcore"
ISSUER = "https://idp.bench.test"
ROUTES = ("plain", "jwt", "limited")


def config(upstream_port: int, listen_port: int, jwks_file: Path) -> dict[str, object]:
    cluster = {"endpoints": [f"{HOST}:{upstream_port}"]}
    return {
        "listeners": [{"name": "bench", "address": f"{HOST}:{listen_port}"}],
        "clusters": {"up": cluster},
        "jwt_providers": {
            "corp": {
                "issuer": ISSUER,
                "audiences": ["api"],
                "algorithms": ["RS256"],
                "jwks": {"file": str(jwks_file)},
                "claims_to_headers": [{"claim": "sub", "header": "x-user"}],
            }
        },
        "rate_limits": {
            "roomy": {
                "algorithm": "token_bucket",
                "rate": "1000000/s",
                "burst": 1000000,
                "key": ["client_ip"],
            }
        },
        "routes": [
            {"name": "plain", "match": {"prefix": "/plain"}, "route": {"cluster": "up"}},
            {
                "name": "jwt",
                "match": {"prefix": "/jwt"},
                "route": {"cluster": "up"},
                "policy": {"jwt": "corp", "require": {"claims": {"scope": ["read"]}}},
                "request_headers": {"set": {"x-tenant": "%CLAIM(tenant)%"}},
            },
            {
                "name": "limited",
                "match": {"prefix": "/limited"},
                "route": {"cluster": "up"},
                "policy": {"rate_limit": "roomy"},
            },
        ],
    }


def make_token(directory: Path) -> tuple[Path, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = {**RSAAlgorithm.to_jwk(key.public_key(), as_dict=True), "kid": "k1", "alg": "RS256"}
    jwks_file = directory / "jwks.json"
    jwks_file.write_text(json.dumps({"keys": [jwk]}))
    now = int(time.time())
    claims = {"iss": ISSUER, "aud": "api", "sub": "bench", "scope": "read", "tenant": "acme"}
    token = jwt.encode(
        {**claims, "iat": now, "exp": now + 3600}, key, algorithm="RS256", headers={"kid": "k1"}
    )
    return jwks_file, token


def wrk(port: int, path: str, token: str, seconds: float, pgid: int, up_pgid: int) -> WrkResult:
    argv = ["taskset", "-c", "0", "wrk", "-t1", "-c32", f"-d{max(1, round(seconds))}s"]
    argv += ["--latency", "--timeout", "5s", "-H", f"Authorization: Bearer {token}"]
    argv.append(f"http://{HOST}:{port}/{path}")
    load = run_load(argv, seconds, proxy_pgid=pgid, upstream_pgid=up_pgid)
    return parse_wrk(path, load.out, load.proxy_cpu, load.upstream_cpu)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--backends", default="trio,asyncio")
    args = parser.parse_args()
    backends = args.backends.split(",")
    procs = Processes()
    work = Path(tempfile.mkdtemp(prefix="gwcore-bench-policy-"))
    try:
        up_port = free_port()
        (work / "up").mkdir()
        up_conf = work / "up" / "nginx.conf"
        up_conf.write_text(upstream_nginx_config(work / "up", up_port))
        up_log = work / "up.log"
        upstream = procs.start(
            ["nginx", "-p", str(work / "up"), "-e", str(work / "up/error.log"), "-c", str(up_conf)],
            log=up_log,
        )
        wait_listening(up_port, upstream, "upstream nginx", up_log)
        pin_group(upstream.pid, "0")
        jwks_file, token = make_token(work)
        ports: dict[str, tuple[int, int]] = {}
        for backend in backends:
            port = free_port()
            conf = work / f"gateway-{backend}.yaml"
            conf.write_text(yaml.safe_dump(config(up_port, port, jwks_file)))
            log = work / f"gwcore-{backend}.log"
            proc = procs.start(
                ["taskset", "-c", "1", str(GWCORE), "serve", str(conf), "--backend", backend],
                log=log,
            )
            wait_listening(port, proc, f"gwcore {backend}", log)
            ports[backend] = (port, proc.pid)
            for route in ROUTES:  # warm-up, and a check that every route answers 200
                result = wrk(port, route, token, 1, proc.pid, upstream.pid)
                if result.non_2xx or not result.requests:
                    raise RuntimeError(f"{backend} /{route}: {result.non_2xx} non-2xx responses")
        results: dict[tuple[str, str], list[WrkResult]] = {}
        cases = [(b, r) for b in backends for r in ROUTES]
        for round_no in range(args.rounds):
            shift = round_no % len(cases)
            for backend, route in cases[shift:] + cases[:shift]:
                port, pid = ports[backend]
                result = wrk(port, route, token, args.duration, pid, upstream.pid)
                results.setdefault((backend, route), []).append(result)
        print(f"\n{args.rounds} rounds of {args.duration:g} s, wrk -c32, median round\n")
        print("| backend | route | rps | p50 ms | gateway CPU µs/req | rps vs plain |")
        print("|---|---|---:|---:|---:|---:|")
        for backend in backends:
            plain_rps = statistics.median(r.rps for r in results[(backend, "plain")])
            for route in ROUTES:
                runs = sorted(results[(backend, route)], key=lambda r: r.rps)
                mid = runs[len(runs) // 2]
                cpu_us = mid.proxy_cpu / mid.rps * 1e6 if mid.rps else float("nan")
                errors = sum(r.errors for r in runs)
                note = f" ({errors} errors)" if errors else ""
                print(
                    f"| {backend} | /{route}{note} | {mid.rps:,.0f} | {mid.p50_ms:.2f} "
                    f"| {cpu_us:,.0f} | {mid.rps / plain_rps:.2f}x |"
                )
        return 0
    finally:
        procs.stop_all()


if __name__ == "__main__":
    sys.exit(main())
