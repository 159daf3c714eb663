"""Long runs of the policy properties (on demand; the test suite runs them briefly).

    python fuzz/fuzz_policy.py [--seconds S] [--batch N] [--property NAME ...] [--seed S]

Properties:

- ``forgery``: a valid RS256/ES256 token with any byte changed, inserted or removed
  never verifies (and ``authenticate`` never raises);
- ``paths``: path normalization is idempotent and its output has no dot segments
  or empty segments to slip past a prefix rule;
- ``engine``: the engine with JWT, remote JWKS, claim routing and rate limits, fed
  any sequence of requests, JWKS answers, failures, clock jumps and disconnects,
  never raises and never leaves a request parked
  (``tests/gateway/test_policy_flows.py``'s property, with many more examples).

Batches run round robin until ``--seconds`` pass; each batch's seed is printed with
any counterexample, so it reproduces with ``--seed S --property NAME``. Exit 1 on a
counterexample, 0 otherwise.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "gateway"))
sys.path.insert(0, str(ROOT / "src"))

import jwt  # noqa: E402
import test_policy_flows as flows  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec, rsa  # noqa: E402
from hypothesis import HealthCheck, given, seed, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from jwt.algorithms import ECAlgorithm, RSAAlgorithm  # noqa: E402

from gwcore.config import model as m  # noqa: E402
from gwcore.policy.jwt import JwtAuthenticator, VerifiedToken  # noqa: E402
from gwcore.policy.paths import PathError, normalize_target  # noqa: E402

NOW = 1_900_000_000.0
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())
KEYS = {
    "keys": [
        {**RSAAlgorithm.to_jwk(RSA_KEY.public_key(), as_dict=True), "kid": "r"},
        {**ECAlgorithm.to_jwk(EC_KEY.public_key(), as_dict=True), "kid": "e"},
    ]
}
PROVIDER = m.JwtProvider(
    "p",
    "https://idp",
    m.JwksSource("inline", document=json.loads(json.dumps(KEYS))),
    algorithms=("RS256", "ES256"),
    cache_size=0,
)
CLAIMS = {"iss": "https://idp", "sub": "s", "iat": NOW, "exp": NOW + 60}
TOKENS = [
    jwt.encode(CLAIMS, RSA_KEY, algorithm="RS256", headers={"kid": "r"}),
    jwt.encode(CLAIMS, EC_KEY, algorithm="ES256", headers={"kid": "e"}),
]
AUTH = JwtAuthenticator(PROVIDER)


def _mutate(token: str, position: int, kind: str, char: str) -> str:
    at = position % (len(token) + 1)
    if kind == "replace" and at < len(token):
        return token[:at] + char + token[at + 1 :]
    if kind == "delete" and at < len(token):
        return token[:at] + token[at + 1 :]
    return token[:at] + char + token[at:]


ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.=+/ "
forgeries = st.builds(
    _mutate,
    st.sampled_from(TOKENS),
    st.integers(0, 2000),
    st.sampled_from(["replace", "delete", "insert"]),
    st.sampled_from(ALPHABET),
)


def check_forgery(token: str) -> None:
    result = AUTH.authenticate(token, NOW)
    if token not in TOKENS:
        assert not isinstance(result, VerifiedToken), f"a changed token verified: {token!r}"
    else:
        assert isinstance(result, VerifiedToken)


NORMALIZE = m.PathNormalization()
paths = st.text(alphabet="/.%2eEfF41aA-_~?x", max_size=40).map(lambda p: "/" + p)


def check_paths(target: str) -> None:
    try:
        once = normalize_target(target, NORMALIZE)
    except PathError:
        return
    assert normalize_target(once, NORMALIZE) == once, (target, once)
    path = once.partition("?")[0]
    segments = path.split("/")[1:]
    assert "." not in segments and ".." not in segments, (target, once)
    assert "//" not in path, (target, once)


engine_cases = st.tuples(flows.EVENTS, st.sampled_from([flows.JWKS, b"{}", b"not json"]))
# The test's own body, without its (short) hypothesis settings.
_engine_test: Any = flows.test_policy_never_raises_and_never_leaves_a_request_parked
_engine_inner = _engine_test.hypothesis.inner_test


def check_engine(case: tuple[list[tuple[str, Any]], bytes]) -> None:
    _engine_inner(*case)


PROPERTIES: dict[str, tuple[st.SearchStrategy[Any], Callable[[Any], None]]] = {
    "forgery": (forgeries, check_forgery),
    "paths": (paths, check_paths),
    "engine": (engine_cases, check_engine),
}


def run_batch(name: str, size: int, batch_seed: int) -> BaseException | None:
    strategy, check = PROPERTIES[name]

    @seed(batch_seed)
    @settings(
        max_examples=size,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
        print_blob=True,
    )
    @given(strategy)
    def prop(value: Any) -> None:
        check(value)

    try:
        prop()
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt):
            raise
        return exc
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=120.0)
    parser.add_argument("--batch", type=int, default=200)
    parser.add_argument("--property", action="append", choices=sorted(PROPERTIES))
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args(argv)
    names = args.property or list(PROPERTIES)
    base = args.seed if args.seed is not None else random.SystemRandom().randrange(2**31)
    deadline = time.monotonic() + args.seconds
    runs = {name: 0 for name in names}
    batch = 0
    while time.monotonic() < deadline:
        name = names[batch % len(names)]
        batch_seed = base + batch
        failure = run_batch(name, args.batch, batch_seed)
        if failure is not None:
            traceback.print_exception(failure)
            print(f"FAIL: {name} with --seed {batch_seed} --property {name}")
            return 1
        runs[name] += args.batch
        batch += 1
    for name, count in runs.items():
        print(f"  {name:<8} {count:>8,} examples")
    print(f"OK: no counterexample (base seed {base})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
