"""Router benchmark: the compiled decision tree against the reference linear scan.

Builds realistic route tables of 10, 1,000 and 10,000 routes in one virtual host
(plus a few small virtual hosts so host selection does real work) and times
``RouteTable.match`` and ``reference_match`` side by side, for a request that hits
the first route, one that hits the last route, and one that hits no route.

The tables are made of *service blocks* of 20 routes (``/svc{s}/...``), ordered as
an operator would write them, specific first and the service's catch-all prefix
last. Per block: 8 ``prefix`` (40 %, some with ``methods``), 5 ``path_template``
(25 %), 2 exact ``path`` (10 %), 1 ``safe_regex`` (5 %) and 4 routes with header
matchers on top of a path (20 %: ``x-tenant`` exact on a prefix shared by every
block and on a template, ``x-tenant`` prefix, ``x-debug`` present).

Method: every (size, request) pair is checked first (tree and reference agree on
the route index; first/last really are index 0 / n-1), then timed in interleaved
rounds, tree and reference alternating, each round running a calibrated number of
decisions (fewer for the slow reference) with ``time.perf_counter_ns`` and the
garbage collector paused. Reported: the median across rounds; ratios (and the
targets) are the median of ratios taken within each round, which cancels most of
the noise from other load on the machine.

Run: ``make bench`` or ``.venv/bin/python bench/bench_router.py [--quick]``.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import os
import platform
import pstats
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gwcore.config import GatewayConfig, load_config
from gwcore.routing import Decision, Matched, NoRoute, RouteRequest, RouteTable, reference_match
from gwcore.routing.request import RequestView

BLOCK = 20
API_HOST = "api.example.com"
SIZES = (10, 1_000, 10_000)
TARGET_SIZE = 10_000
# Target (a): last-route decision under this multiple of the first-route one (tree).
MAX_LAST_OVER_FIRST = 2.0
# Target (b): the tree at least this many times faster than the reference (last route).
MIN_SPEEDUP = 100.0

# Headers a browser or API client typically sends; the router parses them all
# (lazily) as soon as any header condition is evaluated.
COMMON_HEADERS: tuple[tuple[str, str], ...] = (
    ("User-Agent", "Mozilla/5.0 (X11; Linux x86_64) bench/1.0"),
    ("Accept", "application/json"),
    ("Accept-Encoding", "gzip, deflate, br"),
    ("Accept-Language", "en-US,en;q=0.9"),
    ("X-Request-Id", "7f3c2a9e-51d4-4c1b-9a0e-2b8d6c4f1e77"),
    ("X-Forwarded-For", "203.0.113.7"),
    ("Authorization", "Bearer eyJhbGciOiJSUzI1NiJ9.e30.c2ln"),
    ("X-Tenant", "acme"),
)


# ------------------------------------------------------------------ config


def service_route(index: int, cluster: str, timeout: str = "2s") -> dict[str, Any]:
    """Route ``index`` of the main virtual host: position ``index % 20`` of its service block
    (specific routes first, the service's catch-all prefix last). Also used by
    ``bench_proxy.py``."""
    s = index // BLOCK
    base = f"/svc{s}"
    match: dict[str, Any]
    pos = index % BLOCK
    if pos == 0:
        match = {"path": f"{base}/health", "methods": ["GET", "HEAD"]}
    elif pos == 1:
        match = {"path_template": f"{base}/items/{{id}}", "methods": ["GET"]}
    elif pos == 2:
        match = {"path_template": f"{base}/users/{{uid}}/orders/*"}
    elif pos == 3:  # a multi-tenant API: one shared prefix, routed by tenant header
        match = {
            "prefix": "/tenants/",
            "headers": [{"name": "x-tenant", "exact_match": f"t{index}"}],
        }
    elif pos == 4:
        match = {"prefix": f"{base}/items/", "methods": ["POST", "PUT", "DELETE"]}
    elif pos == 5:
        match = {"safe_regex": f"{base}/v[0-9]+/report"}
    elif pos == 6:
        match = {"path_template": f"{base}/items/{{id}}/reviews/{{rid}}"}
    elif pos == 7:
        match = {
            "prefix": f"{base}/beta/",
            "headers": [{"name": "x-tenant", "prefix_match": "beta-"}],
        }
    elif pos == 8:
        match = {"prefix": f"{base}/static/", "methods": ["GET", "HEAD"]}
    elif pos == 9:
        match = {"path": f"{base}/login", "methods": ["POST"]}
    elif pos == 10:
        match = {"prefix": f"{base}/api/v2/"}
    elif pos == 11:
        match = {
            "path_template": f"{base}/orgs/{{org}}",
            "headers": [{"name": "x-tenant", "exact_match": f"t{index}"}],
        }
    elif pos == 12:
        match = {"path_template": f"{base}/files/**"}
    elif pos == 13:
        match = {"prefix": f"{base}/api/", "methods": ["GET"]}
    elif pos == 14:
        match = {"prefix": f"{base}/admin/", "methods": ["GET", "POST", "PUT", "DELETE"]}
    elif pos == 15:
        match = {
            "prefix": f"{base}/debug/",
            "headers": [{"name": "x-debug", "present_match": True}],
        }
    elif pos == 16:
        match = {"path_template": f"{base}/search/*"}
    elif pos == 17:
        match = {"prefix": f"{base}/events/"}
    elif pos == 18:
        match = {"prefix": f"{base}/rpc/", "methods": ["POST"]}
    else:  # the service's catch-all comes last in its block
        match = {"prefix": f"{base}/"}
    return {"name": f"r{index}", "match": match, "route": {"cluster": cluster, "timeout": timeout}}


def _request_for(index: int) -> RouteRequest:
    """A request that matches route ``index`` and no earlier route."""
    base = f"/svc{index // BLOCK}"
    # block position -> (method, path, headers to set on top of COMMON_HEADERS)
    recipes: dict[int, tuple[str, str, dict[str, str]]] = {
        0: ("GET", f"{base}/health", {}),
        1: ("GET", f"{base}/items/42", {}),
        2: ("GET", f"{base}/users/u7/orders/981", {}),
        3: ("GET", "/tenants/acme/profile", {"x-tenant": f"t{index}"}),
        4: ("POST", f"{base}/items/new", {}),
        5: ("GET", f"{base}/v2/report", {}),
        6: ("GET", f"{base}/items/42/reviews/7", {}),
        7: ("GET", f"{base}/beta/feature", {"x-tenant": "beta-acme"}),
        8: ("GET", f"{base}/static/app.js", {}),
        9: ("POST", f"{base}/login", {}),
        10: ("GET", f"{base}/api/v2/orders", {}),
        11: ("GET", f"{base}/orgs/acme", {"x-tenant": f"t{index}"}),
        12: ("GET", f"{base}/files/a/b/c.txt", {}),
        13: ("GET", f"{base}/api/orders", {}),
        14: ("DELETE", f"{base}/admin/users/3", {}),
        15: ("GET", f"{base}/debug/vars", {"x-debug": "1"}),
        16: ("GET", f"{base}/search/shoes", {}),
        17: ("GET", f"{base}/events/stream", {}),
        18: ("POST", f"{base}/rpc/call", {}),
        19: ("GET", f"{base}/catalog/summer?page=2", {}),
    }
    method, path, extra = recipes[index % BLOCK]
    headers = [(k, v) for k, v in COMMON_HEADERS if k.lower() not in extra]
    headers += extra.items()
    return RouteRequest(method, path, API_HOST, tuple(headers))


def build_config_dict(size: int) -> dict[str, Any]:
    clusters = max(1, size // BLOCK)
    routes = [service_route(i, f"c{(i // BLOCK) % clusters}") for i in range(size)]
    endpoint = {"endpoints": ["127.0.0.1:9000"]}
    return {
        "clusters": {f"c{c}": dict(endpoint) for c in range(clusters)} | {"admin": endpoint},
        "virtual_hosts": [
            {
                "name": "admin",
                "domains": ["admin.example.com", "admin.internal"],
                "routes": [
                    {"match": {"prefix": "/metrics"}, "route": {"cluster": "admin"}},
                    {"match": {"prefix": "/"}, "direct_response": {"status": 403}},
                ],
            },
            {
                "name": "internal",
                "domains": ["*.svc.cluster.local", "internal.*"],
                "routes": [{"match": {"prefix": "/"}, "route": {"cluster": "admin"}}],
            },
            {"name": "api", "domains": [API_HOST, "*.api.example.com"], "routes": routes},
            {
                "name": "fallback",
                "domains": ["*"],
                "routes": [{"match": {"prefix": "/"}, "direct_response": {"status": 421}}],
            },
        ],
    }


@dataclass(slots=True)
class Case:
    size: int
    config: GatewayConfig
    table: RouteTable
    load_ms: float
    compile_ms: float
    requests: dict[str, tuple[RouteRequest, int | None]]  # name -> (request, expected index)


def build_case(size: int, compile_repeats: int) -> Case:
    data = build_config_dict(size)
    t0 = time.perf_counter_ns()
    config = load_config(data)
    t1 = time.perf_counter_ns()
    compile_ns: list[int] = []
    table = RouteTable(config)
    for _ in range(compile_repeats):
        c0 = time.perf_counter_ns()
        table = RouteTable(config)
        compile_ns.append(time.perf_counter_ns() - c0)
    requests: dict[str, tuple[RouteRequest, int | None]] = {
        "first": (_request_for(0), 0),
        "last": (_request_for(size - 1), size - 1),
        "none": (RouteRequest("GET", "/nosuch/thing", API_HOST, COMMON_HEADERS), None),
    }
    return Case(
        size,
        config,
        table,
        (t1 - t0) / 1e6,
        statistics.median(compile_ns) / 1e6,
        requests,
    )


def _describe(decision: Decision) -> str:
    if isinstance(decision, Matched):
        return f"Matched(index={decision.index}, vhost={decision.virtual_host.name!r})"
    if isinstance(decision, NoRoute):
        name = decision.virtual_host.name if decision.virtual_host else None
        return f"NoRoute(vhost={name!r})"
    return repr(decision)


def _require(condition: bool, message: str) -> None:
    if not condition:  # not `assert`: must hold under `python -O` too
        raise SystemExit(f"bench_router: check failed: {message}")


def verify(case: Case) -> None:
    """The tree and the reference agree on every bench request, and hit what they should."""
    for name, (request, expected) in case.requests.items():
        tree = case.table.match(request)
        ref = reference_match(case.config, request)
        where = f"{case.size} routes, request {name!r} ({request.method} {request.path})"
        _require(
            _describe(tree) == _describe(ref),
            f"{where}: tree {_describe(tree)} != reference {_describe(ref)}",
        )
        if expected is None:
            _require(
                isinstance(tree, NoRoute)
                and tree.virtual_host is not None
                and tree.virtual_host.name == "api",
                f"{where}: expected NoRoute in vhost 'api', got {_describe(tree)}",
            )
        else:
            _require(
                isinstance(tree, Matched)
                and tree.index == expected
                and tree.virtual_host.name == "api",
                f"{where}: expected Matched(index={expected}), got {_describe(tree)}",
            )
    # Every kind of route in the table's last block is reachable, and both agree on it.
    last_block = range((case.size - 1) // BLOCK * BLOCK, case.size)
    for index in last_block:
        request = _request_for(index)
        tree, ref = case.table.match(request), reference_match(case.config, request)
        _require(
            isinstance(tree, Matched) and tree.index == index and _describe(ref) == _describe(tree),
            f"{case.size} routes, spot check of route {index} ({request.method} {request.path}): "
            f"tree {_describe(tree)}, reference {_describe(ref)}",
        )
    # Host selection really is exercised: the other virtual hosts answer their hosts.
    probes = {
        "admin.example.com": "admin",
        "db.svc.cluster.local": "internal",
        "x.test": "fallback",
    }
    for host, vhost in probes.items():
        decision = case.table.match(RouteRequest("GET", "/", host))
        _require(
            isinstance(decision, Matched) and decision.virtual_host.name == vhost,
            f"host {host!r}: expected vhost {vhost!r}, got {_describe(decision)}",
        )


# ------------------------------------------------------------------ timing


def _run(fn: Callable[[], object], iterations: int) -> int:
    """Nanoseconds for ``iterations`` calls of ``fn``."""
    loop = range(iterations)
    start = time.perf_counter_ns()
    for _ in loop:
        fn()
    return time.perf_counter_ns() - start


def calibrate(fn: Callable[[], object], budget_ns: int, min_iterations: int) -> int:
    """Iterations of ``fn`` that take about ``budget_ns``."""
    iterations = 1
    while True:
        elapsed = _run(fn, iterations)
        if elapsed >= 2_000_000 or elapsed * 4 >= budget_ns or iterations >= 1 << 20:
            break
        iterations *= 8
    per_call = max(elapsed / iterations, 1.0)
    return max(min_iterations, int(budget_ns / per_call))


@dataclass(slots=True)
class Series:
    iterations: int
    per_call_ns: list[float] = field(default_factory=list)

    @property
    def median_ns(self) -> float:
        return statistics.median(self.per_call_ns)

    @property
    def spread(self) -> float:
        """(max - min) / median across rounds: how noisy this measurement was."""
        return (max(self.per_call_ns) - min(self.per_call_ns)) / self.median_ns


@dataclass(slots=True)
class Row:
    size: int
    request: str
    tree: Series
    reference: Series


def paired_ratio(numerator: Series, denominator: Series) -> float:
    """Median over rounds of numerator/denominator measured in the *same* round.

    Pairing by round cancels most of the noise from other load on the machine,
    which slows both sides of a round alike.
    """
    ratios = [n / d for n, d in zip(numerator.per_call_ns, denominator.per_call_ns, strict=True)]
    return statistics.median(ratios)


def measure(case: Case, rounds: int, tree_budget_ns: int, ref_budget_ns: int) -> list[Row]:
    """Time every request of ``case``, tree and reference, in interleaved rounds.

    Each round runs every request once on each side, so per-round samples of
    different requests and of the two matchers are comparable (see paired_ratio).
    """
    table, config = case.table, case.config
    rows: list[Row] = []
    plans: list[list[tuple[Callable[[], object], Series]]] = []
    for name, (request, _) in case.requests.items():

        def tree(request: RouteRequest = request) -> Decision:
            return table.match(request)

        def ref(request: RouteRequest = request) -> Decision:
            return reference_match(config, request)

        row = Row(
            case.size,
            name,
            Series(calibrate(tree, tree_budget_ns, 10)),
            Series(calibrate(ref, ref_budget_ns, 3)),
        )
        rows.append(row)
        plans.append([(tree, row.tree), (ref, row.reference)])
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for round_no in range(rounds):
            for plan in plans:
                # Alternate which side goes first, so neither always runs on a "warm" cache.
                for fn, series in plan if round_no % 2 == 0 else plan[::-1]:
                    elapsed = _run(fn, series.iterations)
                    series.per_call_ns.append(elapsed / series.iterations)
    finally:
        if gc_was_enabled:
            gc.enable()
    return rows


# ------------------------------------------------------------------ report


def _us(ns: float) -> str:
    us = ns / 1000
    if us >= 100:
        return f"{us:,.0f}"
    if us >= 10:
        return f"{us:.1f}"
    return f"{us:.2f}"


def _rate(ns: float) -> str:
    return f"{1e9 / ns:,.0f}"


def print_table(rows: Sequence[Row]) -> None:
    print(
        "| routes | request | tree µs | tree dec/s | reference µs | reference dec/s "
        "| reference/tree |"
    )
    print("|---:|---|---:|---:|---:|---:|---:|")
    for row in rows:
        t, r = row.tree.median_ns, row.reference.median_ns
        print(
            f"| {row.size:,} | {row.request} | {_us(t)} | {_rate(t)} | {_us(r)} | {_rate(r)} "
            f"| {paired_ratio(row.reference, row.tree):,.1f}x |"
        )


def print_iterations(rows: Sequence[Row], rounds: int) -> None:
    print(f"\nIterations per round ({rounds} rounds, median reported; spread = (max-min)/median):")
    print("| routes | request | tree iters | tree spread | reference iters | reference spread |")
    print("|---:|---|---:|---:|---:|---:|")
    for row in rows:
        print(
            f"| {row.size:,} | {row.request} | {row.tree.iterations:,} | {row.tree.spread:.0%} "
            f"| {row.reference.iterations:,} | {row.reference.spread:.0%} |"
        )


def check_targets(rows: Sequence[Row]) -> bool:
    """Print the two targets with PASS/FAIL; True when none failed."""
    by_key = {(row.size, row.request): row for row in rows}
    first = by_key.get((TARGET_SIZE, "first"))
    last = by_key.get((TARGET_SIZE, "last"))
    print("\nTargets:")
    if first is None or last is None:
        print(f"- (a) SKIP: {TARGET_SIZE:,} routes not benchmarked")
        print(f"- (b) SKIP: {TARGET_SIZE:,} routes not benchmarked")
        return True
    ratio = paired_ratio(last.tree, first.tree)
    ok_a = ratio < MAX_LAST_OVER_FIRST
    print(
        f"- (a) {'PASS' if ok_a else 'FAIL'}: at {TARGET_SIZE:,} routes the last-route decision "
        f"costs {ratio:.2f}x the first-route decision "
        f"({_us(last.tree.median_ns)} µs vs {_us(first.tree.median_ns)} µs; "
        f"target < {MAX_LAST_OVER_FIRST:g}x)"
    )
    speedup = paired_ratio(last.reference, last.tree)
    ok_b = speedup >= MIN_SPEEDUP
    print(
        f"- (b) {'PASS' if ok_b else 'FAIL'}: at {TARGET_SIZE:,} routes (last route) the tree is "
        f"{speedup:,.0f}x faster than the reference "
        f"({_us(last.tree.median_ns)} µs vs {_us(last.reference.median_ns)} µs; "
        f"target ≥ {MIN_SPEEDUP:g}x)"
    )
    smallest = min(row.size for row in rows)
    growth = [
        f"{name} {by_key[(TARGET_SIZE, name)].tree.median_ns / small.tree.median_ns:.1f}x"
        for name in ("first", "last", "none")
        if (small := by_key.get((smallest, name))) is not None and (TARGET_SIZE, name) in by_key
    ]
    if smallest < TARGET_SIZE and growth:
        print(
            f"- (info, not a target) tree cost growth from {smallest:,} to {TARGET_SIZE:,} "
            f"routes: {', '.join(growth)} (medians; sizes run in different rounds)"
        )
    return ok_a and ok_b


# ----------------------------------------------------------------- profile


def phase_breakdown(case: Case, request_name: str, iterations: int) -> None:
    """Time the phases of one ``match`` separately (uses the compiler's private parts).

    Skipped quietly if the internals have changed shape.
    """
    request = case.requests[request_name][0]
    table = case.table
    try:
        domains: Any = table._domains  # private: a benchmark may look inside
        tables: Any = table._tables
        view = RequestView(request)
        vt = tables[id(domains.select(view.host))]
        ids = vt.candidates(view)
        vt.decide(view, ids, 0)
    except (AttributeError, KeyError, TypeError) as exc:
        print(f"  (phase breakdown skipped: internals changed: {exc!r})")
        return

    def view_only() -> object:
        return RequestView(request)

    def host_only() -> object:
        return domains.select(view.host)

    def candidates_fresh() -> object:
        return vt.candidates(RequestView(request))

    def decide_fresh() -> object:
        fresh = RequestView(request)
        return vt.decide(fresh, ids, 0)

    def full() -> object:
        return table.match(request)

    regex_sets: list[tuple[Any, Any]] = list(getattr(vt, "regex_sets", []))
    path = view.path

    def regex_sets_only() -> object:
        for regex_set, _ in regex_sets:
            regex_set.Match(path)
        return None

    parts = [
        ("RequestView(request)", view_only, False),
        ("DomainIndex.select", host_only, False),
        ("RequestView + candidates", candidates_fresh, True),
        ("RequestView + decide(candidates)", decide_fresh, True),
        (f"  of candidates: {len(regex_sets)} RE2 set passes", regex_sets_only, False),
        ("RouteTable.match (all)", full, False),
    ]
    view_ns = 0.0
    print(f"  phases ({len(ids)} candidate ids: {list(ids)[:8]}{'…' if len(ids) > 8 else ''}):")
    for label, fn, minus_view in parts:
        samples = [_run(fn, iterations) / iterations for _ in range(5)]
        ns = statistics.median(samples)
        if label.startswith("RequestView("):
            view_ns = ns
        note = f"  (≈ {_us(ns - view_ns)} µs without the view)" if minus_view else ""
        print(f"    {label:<34} {_us(ns):>7} µs{note}")


def _label(func: tuple[str, int, str]) -> str:
    file, line, name = func
    if file == "~" and line == 0:  # a built-in
        return name
    return f"{Path(file).name}:{line}({name})"


def profile(case: Case, request_name: str, iterations: int, top: int) -> None:
    """cProfile ``RouteTable.match``; print the top functions by own time, per decision."""
    request = case.requests[request_name][0]
    table = case.table
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(iterations):
        table.match(request)
    profiler.disable()
    raw: dict[tuple[str, int, str], tuple[int, int, float, float, Any]]
    raw = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
    total = sum(entry[2] for entry in raw.values())
    print(
        f"  cProfile, {iterations:,} decisions, {total / iterations * 1e6:.2f} µs/decision "
        "under the profiler (it inflates small calls); top by own time:"
    )
    print("  | own µs/dec | own % | cum µs/dec | calls/dec | function |")
    print("  |---:|---:|---:|---:|---|")
    ranked = sorted(raw.items(), key=lambda item: item[1][2], reverse=True)[:top]
    for func, (_, ncalls, tottime, cumtime, _) in ranked:
        print(
            f"  | {tottime / iterations * 1e6:.3f} | {tottime / total:.0%} "
            f"| {cumtime / iterations * 1e6:.3f} | {ncalls / iterations:g} | `{_label(func)}` |"
        )


# -------------------------------------------------------------------- main


def _load() -> str:
    try:
        one, five, _ = os.getloadavg()
    except OSError:  # not available on this platform
        return "load average unknown"
    return f"load average {one:.2f} (1 min), {five:.2f} (5 min) on {os.cpu_count()} CPUs"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: few rounds, tiny iteration counts"
    )
    parser.add_argument(
        "--sizes",
        type=lambda text: tuple(int(x) for x in text.split(",")),
        default=SIZES,
        help="comma-separated table sizes (default: 10,1000,10000)",
    )
    parser.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 11)")
    parser.add_argument("--no-profile", action="store_true", help="skip the profile section")
    parser.add_argument(
        "--strict", action="store_true", help="exit with status 1 when a target FAILs"
    )
    args = parser.parse_args(argv)
    sizes: tuple[int, ...] = args.sizes
    if any(size < BLOCK for size in sizes if size != 10):
        parser.error(f"sizes other than 10 must be at least {BLOCK}")
    if any(size % BLOCK not in (0, 10) for size in sizes):
        parser.error(f"sizes must end a block at position 9 or 19 (size % {BLOCK} in (0, 10))")

    quick: bool = args.quick
    rounds: int = args.rounds or (3 if quick else 11)
    tree_budget_ns = 2_000_000 if quick else 60_000_000
    ref_budget_ns = 2_000_000 if quick else 80_000_000
    began = time.perf_counter()

    print("# gwcore router benchmark: compiled tree vs reference scan\n")
    print(
        f"Python {platform.python_version()} ({platform.python_implementation()}, "
        f"{platform.python_compiler()}) on {platform.machine()} {platform.system()} "
        f"{platform.release()}"
    )
    print(
        f"mode: {'quick' if quick else 'full'}, {rounds} interleaved rounds, gc paused; {_load()}\n"
    )

    cases: list[Case] = []
    for size in sizes:
        case = build_case(size, 1 if quick else 3)
        verify(case)
        cases.append(case)

    print("| routes | config load ms | compile ms (RouteTable) |")
    print("|---:|---:|---:|")
    for case in cases:
        print(f"| {case.size:,} | {case.load_ms:,.1f} | {case.compile_ms:,.1f} |")
    print()

    rows: list[Row] = []
    for case in cases:
        rows += measure(case, rounds, tree_budget_ns, ref_budget_ns)
    print_table(rows)
    print(
        "\nµs and dec/s: median over rounds. reference/tree and the targets: median of the "
        "ratios measured within each round (paired, so load on the machine cancels out)."
    )
    print_iterations(rows, rounds)
    print(
        "\nrequests: first = GET /svc0/health (exact path, route 0); "
        "last = GET /svc{s}/catalog/summer?page=2 (the last block's catch-all prefix; "
        "POST /svc0/login at 10 routes); none = GET /nosuch/thing"
    )
    ok = check_targets(rows)

    if not args.no_profile:
        biggest = max(cases, key=lambda c: c.size)
        iterations = 300 if quick else 20_000
        for name in ("last", "none"):
            request = biggest.requests[name][0]
            print(
                f"\n## Profile: RouteTable.match at {biggest.size:,} routes, "
                f"request {name!r} ({request.method} {request.path})"
            )
            phase_breakdown(biggest, name, max(iterations // 4, 50))
            profile(biggest, name, iterations, 14)

    print(f"\n{_load()} (a busy machine makes every number slower and noisier)")
    print(f"total run time {time.perf_counter() - began:.1f} s")
    return 0 if ok or not args.strict else 1


if __name__ == "__main__":
    sys.exit(main())
