"""Per-request policy costs: rate limiters, client IP, path normalization (and friends).

Each case is one call the engine makes per request (or per rate limit of a request):

* token bucket ``take`` on one hot key (the clock advances a microsecond a call, so the
  refill arithmetic runs every time) and the same for the sliding-window counter;
* token bucket under a flood of distinct keys with the key table full at ``max_keys``:
  every call is a new key, so every call evicts the least recently used one;
* ``client_ip`` for a request behind a trusted proxy carrying a 3-entry
  ``X-Forwarded-For`` (client, then two trusted hops), and for an untrusted peer;
* ``normalize_target`` for a typical API path (nothing to do: the fast path) and for
  one that needs every step;
* ``rate_limit_key`` (client IP + header), ``trace_context`` (valid traceparent) and
  ``render`` of a two-variable template, for scale.

Method as in ``bench_router.py`` (whose timing helpers this reuses): every case is
checked once, then timed in interleaved rounds, each round a calibrated number of calls
(about ``--budget-ms`` of work) with ``time.perf_counter_ns`` and the garbage collector
paused. Reported: the median µs per call across rounds and the spread.

Run: ``.venv/bin/python bench/bench_limits.py [--quick]``.
"""

from __future__ import annotations

import argparse
import gc
import itertools
import platform
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from bench_router import COMMON_HEADERS, Series, _load, _rate, _run, _us, calibrate

from gwcore.config import model as m
from gwcore.policy.client_ip import TrustedProxies, client_ip
from gwcore.policy.paths import normalize_target
from gwcore.policy.ratelimit import SlidingWindow, TokenBucket, rate_limit_key
from gwcore.policy.tracing import trace_context
from gwcore.policy.transforms import TemplateContext, parse_template, render

MAX_KEYS = 10_000
TRUSTED = TrustedProxies(["10.0.0.0/8", "172.16.0.0/12", "fd00::/8"])
LB = "10.0.0.5"
HEADERS = tuple(
    (name.lower(), value) for name, value in COMMON_HEADERS if name != "X-Forwarded-For"
)
XFF_3_HOPS = (*HEADERS, ("x-forwarded-for", "203.0.113.7, 10.1.0.1, 10.2.0.1"))
TYPICAL_PATH = "/api/v1/users/42/orders?page=2&sort=desc"
MESSY_PATH = "/api/v1//users/./%7Ealice/../42/%2e%2e/orders?page=2"
PARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


@dataclass(slots=True)
class Case:
    name: str
    fn: Callable[[], object]
    check: Callable[[], bool]
    series: Series | None = None


def _clock(step: float = 1e-6) -> Callable[[], float]:
    return itertools.count(1000.0, step).__next__


def build_cases() -> list[Case]:
    cases: list[Case] = []
    normalization = m.PathNormalization()

    bucket = TokenBucket("hot", rate=1e6, burst=100, max_keys=MAX_KEYS)
    tick = _clock()
    cases.append(
        Case(
            "token bucket take (hot key)",
            lambda: bucket.take("203.0.113.7", tick()),
            lambda: bucket.take("203.0.113.7", tick()).allowed,
        )
    )

    window = SlidingWindow("hot", limit=10**9, window=1.0, max_keys=MAX_KEYS)
    tick_w = _clock()
    cases.append(
        Case(
            "sliding window take (hot key)",
            lambda: window.take("203.0.113.7", tick_w()),
            lambda: window.take("203.0.113.7", tick_w()).allowed,
        )
    )

    flood = TokenBucket("flood", rate=1.0, burst=10, max_keys=MAX_KEYS)
    keys = [f"198.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}" for i in range(4 * MAX_KEYS)]
    for key in keys[:MAX_KEYS]:
        flood.take(key, 0.0)
    next_key = itertools.cycle(keys[MAX_KEYS:] + keys[:MAX_KEYS]).__next__

    def flood_check() -> bool:
        before = flood.evictions
        flood.take(next_key(), 0.0)
        return len(flood) == MAX_KEYS and flood.evictions == before + 1

    cases.append(
        Case(
            f"token bucket, flood of new keys at max_keys={MAX_KEYS:,} (evicts)",
            lambda: flood.take(next_key(), 0.0),
            flood_check,
        )
    )

    cases.append(
        Case(
            "client_ip, trusted peer, 3-entry X-Forwarded-For",
            lambda: client_ip(LB, XFF_3_HOPS, TRUSTED),
            lambda: client_ip(LB, XFF_3_HOPS, TRUSTED) == "203.0.113.7",
        )
    )
    cases.append(
        Case(
            "client_ip, untrusted peer",
            lambda: client_ip("198.51.100.9", XFF_3_HOPS, TRUSTED),
            lambda: client_ip("198.51.100.9", XFF_3_HOPS, TRUSTED) == "198.51.100.9",
        )
    )
    cases.append(
        Case(
            "normalize_target, typical path (unchanged)",
            lambda: normalize_target(TYPICAL_PATH, normalization),
            lambda: normalize_target(TYPICAL_PATH, normalization) is TYPICAL_PATH,
        )
    )
    cases.append(
        Case(
            "normalize_target, path needing every step",
            lambda: normalize_target(MESSY_PATH, normalization),
            lambda: normalize_target(MESSY_PATH, normalization) == "/api/v1/users/orders?page=2",
        )
    )

    limit = m.RateLimit(
        "per-key",
        "token_bucket",
        key=(m.RateKeyPart("client_ip"), m.RateKeyPart("header", name="x-tenant")),
        rate=1.0,
        burst=1,
    )

    def limit_key() -> str | None:
        return rate_limit_key(
            limit, client_ip="203.0.113.7", route="r1", claims=None, headers=HEADERS
        )

    cases.append(
        Case(
            "rate_limit_key (client IP + header)",
            limit_key,
            lambda: limit_key() == "11:203.0.113.74:acme",
        )
    )

    traced = (*HEADERS, ("traceparent", PARENT), ("tracestate", "congo=t61rcWkgMzE"))
    cases.append(
        Case(
            "trace_context, valid traceparent + tracestate",
            lambda: trace_context(traced, lambda bits: 1),
            lambda: trace_context(traced, lambda bits: 1).traceparent == PARENT,
        )
    )

    template = parse_template("%CLIENT_IP%;tenant=%REQ(x-tenant)%")
    context = TemplateContext(client_ip="203.0.113.7", headers=HEADERS)
    cases.append(
        Case(
            "render, two-variable header template",
            lambda: render(template, context),
            lambda: render(template, context) == "203.0.113.7;tenant=acme",
        )
    )
    return cases


def _require(case: Case) -> None:
    if not case.check():  # not `assert`: must hold under `python -O` too
        raise SystemExit(f"bench_limits: check failed: {case.name}")


def measure(cases: Sequence[Case], rounds: int, budget_ns: int) -> None:
    for case in cases:
        case.series = Series(calibrate(case.fn, budget_ns, 100))
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for round_no in range(rounds):
            order = cases if round_no % 2 == 0 else cases[::-1]
            for case in order:
                assert case.series is not None
                elapsed = _run(case.fn, case.series.iterations)
                case.series.per_call_ns.append(elapsed / case.series.iterations)
    finally:
        if gc_was_enabled:
            gc.enable()


def print_table(cases: Sequence[Case]) -> None:
    print("| case | µs/call | calls/s | iterations/round | spread |")
    print("|---|---:|---:|---:|---:|")
    for case in cases:
        series = case.series
        assert series is not None
        print(
            f"| {case.name} | {_us(series.median_ns)} | {_rate(series.median_ns)} "
            f"| {series.iterations:,} | {series.spread:.0%} |"
        )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="smoke run: 3 short rounds")
    parser.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 11)")
    parser.add_argument("--budget-ms", type=float, default=None, help="work per case per round")
    args = parser.parse_args(argv)
    quick: bool = args.quick
    rounds: int = args.rounds or (3 if quick else 11)
    budget_ns = int((args.budget_ms or (2.0 if quick else 40.0)) * 1e6)
    began = time.perf_counter()

    print("# gwcore policy benchmark: limiters, client IP, paths\n")
    print(
        f"Python {platform.python_version()} ({platform.python_implementation()}, "
        f"{platform.python_compiler()}) on {platform.machine()} {platform.system()} "
        f"{platform.release()}"
    )
    print(
        f"mode: {'quick' if quick else 'full'}, {rounds} interleaved rounds, gc paused; {_load()}\n"
    )
    cases = build_cases()
    for case in cases:
        _require(case)
    measure(cases, rounds, budget_ns)
    print_table(cases)
    print("\nµs/call and calls/s: median over rounds; spread = (max - min) / median across rounds.")
    print(f"\n{_load()} (a busy machine makes every number slower and noisier)")
    print(f"total run time {time.perf_counter() - began:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
