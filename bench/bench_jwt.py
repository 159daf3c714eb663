"""JWT benchmark: ``JwtAuthenticator.authenticate`` with and without its cache.

One provider per case, inline JWKS, a realistic access token (about 700 bytes: iss,
sub, aud list, exp, nbf, iat, jti, scope, a nested tenant object, a kid header).
The cases, all timed in the same run:

- ``cached``: the same RS256 token again and again: a cache hit (SHA-256 of the token,
  LRU lookup, validity-window check), no signature check.
- ``uncached RS256`` / ``uncached ES256`` (plus ``EdDSA`` and ``HS256`` for scale):
  the provider's ``cache_size`` is 0, so every call does the full work (structure
  and header parsing, key lookup by kid, the signature check through PyJWT and
  cryptography, payload JSON, claims). Using one token with the cache disabled keeps
  token signing out of the timed loop; distinct tokens with the cache on would add
  only the cache insertion (under a microsecond) to the same path.
- ``forged RS256`` / ``malformed``: what a refused token costs (a signature that does
  not verify; a token refused before any key is touched).

Method: every case is checked first (the expected VerifiedToken or JwtError; the
cached case really hits the cache). Then interleaved rounds, each running every case
for a calibrated number of calls, ``time.perf_counter_ns``, GC paused; the order of
cases alternates between rounds. Reported: the median over rounds, and each case's
cost relative to the cache hit as the median of per-round ratios.

Run: ``.venv/bin/python bench/bench_jwt.py [--quick] [--rounds N]``.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import jwt
from bench_router import _load, _run, _us, calibrate
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from gwcore.config import model as m
from gwcore.policy.jwt import JwtAuthenticator, JwtError, VerifiedToken

NOW = 1_700_000_000.0
ISSUER = "https://login.example.com/tenant-7/v2.0"


def _claims() -> dict[str, Any]:
    return {
        "iss": ISSUER,
        "sub": "00u1abcd2EFGH3ijk4l5",
        "aud": ["api://orders", "api://billing"],
        "exp": NOW + 3600,
        "nbf": NOW - 5,
        "iat": NOW - 5,
        "jti": "6f1c2d3e-4b5a-4968-8776-a5b4c3d2e1f0",
        "scope": "orders:read orders:write billing:read profile email",
        "tenant": {"id": "t-7", "plan": "enterprise", "region": "eu-west-1"},
        "roles": ["admin", "support"],
        "email": "someone@example.com",
    }


def _public_jwk(key: Any, kid: str) -> dict[str, Any]:
    public = key.public_key()
    if isinstance(public, rsa.RSAPublicKey):
        data = jwt.algorithms.RSAAlgorithm.to_jwk(public, as_dict=True)
    elif isinstance(public, ec.EllipticCurvePublicKey):
        data = jwt.algorithms.ECAlgorithm.to_jwk(public, as_dict=True)
    else:
        data = jwt.algorithms.OKPAlgorithm.to_jwk(public, as_dict=True)
    data.update(kid=kid, use="sig")
    return data


def _provider(name: str, jwk: dict[str, Any], alg: str, cache_size: int) -> m.JwtProvider:
    return m.JwtProvider(
        name,
        ISSUER,
        m.JwksSource("inline", document={"keys": [jwk]}),
        audiences=("api://orders",),
        algorithms=(alg,),
        cache_size=cache_size,
    )


@dataclass(slots=True)
class Case:
    name: str
    auth: JwtAuthenticator
    token: str
    expect: str  # "verified" or a JwtError reason
    note: str

    def call(self) -> object:
        return self.auth.authenticate(self.token, NOW)


def build_cases() -> list[Case]:
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    ed_key = ed25519.Ed25519PrivateKey.generate()
    secret = os.urandom(32)
    oct_jwk = {
        "kty": "oct",
        "kid": "hs",
        "k": jwt.utils.base64url_encode(secret).decode(),
    }

    def token(key: Any, alg: str, kid: str) -> str:
        return jwt.encode(_claims(), key, algorithm=alg, headers={"kid": kid})

    rs256 = token(rsa_key, "RS256", "rsa")
    head, body, _ = rs256.split(".")
    forged = f"{head}.{body}.{jwt.utils.base64url_encode(os.urandom(256)).decode()}"
    rsa_jwk = _public_jwk(rsa_key, "rsa")
    return [
        Case(
            "cached",
            JwtAuthenticator(_provider("cached", rsa_jwk, "RS256", 4096)),
            rs256,
            "verified",
            "RS256 token seen before: cache hit",
        ),
        Case(
            "uncached RS256",
            JwtAuthenticator(_provider("rs", rsa_jwk, "RS256", 0)),
            rs256,
            "verified",
            "RSA 2048, PKCS#1 v1.5, SHA-256",
        ),
        Case(
            "uncached ES256",
            JwtAuthenticator(_provider("es", _public_jwk(ec_key, "ec"), "ES256", 0)),
            token(ec_key, "ES256", "ec"),
            "verified",
            "ECDSA P-256, SHA-256",
        ),
        Case(
            "uncached EdDSA",
            JwtAuthenticator(_provider("ed", _public_jwk(ed_key, "ed"), "EdDSA", 0)),
            token(ed_key, "EdDSA", "ed"),
            "verified",
            "Ed25519",
        ),
        Case(
            "uncached HS256",
            JwtAuthenticator(_provider("hs", oct_jwk, "HS256", 0)),
            token(secret, "HS256", "hs"),
            "verified",
            "HMAC-SHA256, 32-byte secret",
        ),
        Case(
            "forged RS256",
            JwtAuthenticator(_provider("forged", rsa_jwk, "RS256", 4096)),
            forged,
            "bad_signature",
            "random signature: refused, never cached",
        ),
        Case(
            "malformed",
            JwtAuthenticator(_provider("garbage", rsa_jwk, "RS256", 4096)),
            f"{head}.{body}.!!",
            "malformed",
            "not base64url: refused before any key",
        ),
    ]


def _require(condition: bool, message: str) -> None:
    if not condition:  # not `assert`: must hold under `python -O` too
        raise SystemExit(f"bench_jwt: check failed: {message}")


def verify(cases: Sequence[Case]) -> None:
    for case in cases:
        result = case.call()
        if case.expect == "verified":
            _require(isinstance(result, VerifiedToken), f"{case.name}: got {result!r}")
        else:
            _require(
                isinstance(result, JwtError) and result.reason == case.expect,
                f"{case.name}: expected {case.expect}, got {result!r}",
            )
    cached = cases[0]
    _require(cached.auth.cached == 1, "cached: the token is not in the cache")
    _require(cached.call() is cached.call(), "cached: repeated calls are not cache hits")
    for case in cases[1:]:
        _require(case.auth.cached == 0, f"{case.name}: something was cached")


# ------------------------------------------------------------------ timing


@dataclass(slots=True)
class Series:
    case: Case
    iterations: int
    per_call_ns: list[float] = field(default_factory=list)

    @property
    def median_ns(self) -> float:
        return statistics.median(self.per_call_ns)

    @property
    def spread(self) -> float:
        """(max - min) / median across rounds: how noisy this measurement was."""
        return (max(self.per_call_ns) - min(self.per_call_ns)) / self.median_ns


def measure(cases: Sequence[Case], rounds: int, budget_ns: int) -> list[Series]:
    series = [Series(case, calibrate(case.call, budget_ns, 10)) for case in cases]
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for round_no in range(rounds):
            for entry in series if round_no % 2 == 0 else series[::-1]:
                entry.per_call_ns.append(_run(entry.case.call, entry.iterations) / entry.iterations)
    finally:
        if gc_was_enabled:
            gc.enable()
    return series


def paired_ratio(numerator: Series, denominator: Series) -> float:
    """Median over rounds of numerator/denominator measured in the *same* round."""
    ratios = [n / d for n, d in zip(numerator.per_call_ns, denominator.per_call_ns, strict=True)]
    return statistics.median(ratios)


# ------------------------------------------------------------------ report


def print_table(series: Sequence[Series]) -> None:
    base = series[0]
    print("| case | µs / authenticate | calls/s | x cached | what |")
    print("|---|---:|---:|---:|---|")
    for entry in series:
        ns = entry.median_ns
        print(
            f"| {entry.case.name} | {_us(ns)} | {1e9 / ns:,.0f} "
            f"| {paired_ratio(entry, base):,.1f}x | {entry.case.note} |"
        )


def print_iterations(series: Sequence[Series], rounds: int) -> None:
    print(f"\nIterations per round ({rounds} rounds, median reported; spread = (max-min)/median):")
    print("| case | iterations | spread |")
    print("|---|---:|---:|")
    for entry in series:
        print(f"| {entry.case.name} | {entry.iterations:,} | {entry.spread:.0%} |")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="smoke run: few rounds, short")
    parser.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 9)")
    args = parser.parse_args(argv)
    quick: bool = args.quick
    rounds: int = args.rounds or (3 if quick else 9)
    budget_ns = 2_000_000 if quick else 60_000_000
    began = time.perf_counter()

    print("# gwcore JWT benchmark: JwtAuthenticator.authenticate\n")
    print(
        f"Python {platform.python_version()} ({platform.python_implementation()}) on "
        f"{platform.machine()} {platform.system()} {platform.release()}; "
        f"PyJWT {jwt.__version__}, cryptography {_cryptography_version()}"
    )
    print(
        f"mode: {'quick' if quick else 'full'}, {rounds} interleaved rounds, gc paused; {_load()}\n"
    )
    cases = build_cases()
    verify(cases)
    print(f"token: {len(cases[0].token)} bytes; claims: {json.dumps(sorted(_claims()))}\n")
    series = measure(cases, rounds, budget_ns)
    print_table(series)
    print(
        "\nµs and calls/s: median over rounds. x cached: median of the per-round ratios to "
        "the cache hit. uncached = the provider's cache_size is 0 (full verification on "
        "every call, same token)."
    )
    print_iterations(series, rounds)
    print(f"\n{_load()} (a busy machine makes every number slower and noisier)")
    print(f"total run time {time.perf_counter() - began:.1f} s")
    return 0


def _cryptography_version() -> str:
    import cryptography

    return cryptography.__version__


if __name__ == "__main__":
    sys.exit(main())
