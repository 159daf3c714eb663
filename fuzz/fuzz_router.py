"""Long differential run: the compiled route table against the reference scan.

    python fuzz/fuzz_router.py [--examples N] [--seconds S] [--property NAME ...] [--seed S]

Runs the properties of ``tests/routing/strategies.py`` (the ones
``tests/routing/test_differential.py`` runs briefly) in hypothesis batches, round
robin, until ``--examples`` examples have run or ``--seconds`` have passed. Each batch
has its own seed (``--seed`` + batch number), printed with any counterexample, so a
failure reproduces with ``--seed S --property NAME``. Exits 1 on a counterexample
(after hypothesis has shrunk it), 0 otherwise.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "routing"))
sys.path.insert(0, str(ROOT / "src"))

import strategies  # noqa: E402
from hypothesis import HealthCheck, given, seed, settings  # noqa: E402


@dataclass
class Tally:
    examples: int = 0
    requests: int = 0
    seconds: float = 0.0


def _requests_in(value: Any) -> int:
    scenario = getattr(value, "scenario", value)
    return len(scenario.probes)


def run_batch(name: str, size: int, batch_seed: int, tally: Tally) -> BaseException | None:
    """Run ``size`` examples of one property; the shrunk failure, if any."""
    strategy, check = strategies.PROPERTIES[name]

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
        tally.examples += 1
        tally.requests += _requests_in(value)
        check(value)

    started = time.monotonic()
    try:
        prop()
    except Exception as exc:  # a counterexample (hypothesis re-raises it after shrinking)
        return exc
    finally:
        tally.seconds += time.monotonic() - started
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=20_000, help="stop after this many")
    parser.add_argument("--seconds", type=float, default=600.0, help="stop after this long")
    parser.add_argument("--batch", type=int, default=500, help="examples per hypothesis run")
    parser.add_argument(
        "--property",
        action="append",
        choices=sorted(strategies.PROPERTIES),
        help="run only these properties (repeatable; default: all)",
    )
    parser.add_argument("--seed", type=int, default=None, help="base seed (default: random)")
    args = parser.parse_args(argv)

    names = args.property or list(strategies.PROPERTIES)
    base_seed = args.seed if args.seed is not None else random.randrange(2**31)
    tallies = {name: Tally() for name in names}
    print(
        f"fuzz_router: properties {', '.join(names)}; up to {args.examples:,} examples "
        f"or {args.seconds:g}s; base seed {base_seed}",
        flush=True,
    )
    started = time.monotonic()
    batch_no = 0
    failure: tuple[str, int, BaseException] | None = None
    while True:
        total = sum(t.examples for t in tallies.values())
        elapsed = time.monotonic() - started
        if total >= args.examples or elapsed >= args.seconds:
            break
        name = names[batch_no % len(names)]
        tally = tallies[name]
        # Size the batch to what is left of both budgets (at the rate seen so far).
        size = min(args.batch, args.examples - total)
        if tally.seconds > 0:
            rate = tally.examples / tally.seconds
            size = min(size, max(10, int(rate * (args.seconds - elapsed))))
        batch_seed = base_seed + batch_no
        error = run_batch(name, size, batch_seed, tally)
        batch_no += 1
        total = sum(t.examples for t in tallies.values())
        print(
            f"[{time.monotonic() - started:7.1f}s] {name:<11} batch {batch_no:>4} "
            f"(seed {batch_seed}): {total:>8,} examples so far",
            flush=True,
        )
        if error is not None:
            failure = (name, batch_seed, error)
            break

    elapsed = time.monotonic() - started
    print("\nsummary")
    for name, t in tallies.items():
        rate = t.examples / t.seconds if t.seconds else 0.0
        print(
            f"  {name:<11} {t.examples:>8,} examples {t.requests:>9,} requests "
            f"{t.seconds:8.1f}s ({rate:,.0f}/s)"
        )
    total = sum(t.examples for t in tallies.values())
    print(f"  {'total':<11} {total:>8,} examples in {elapsed:.1f}s")
    if failure is None:
        print("OK: compiled router agreed with the reference on every example")
        return 0
    name, batch_seed, error = failure
    print(f"\nCOUNTEREXAMPLE in property {name!r} (batch seed {batch_seed}):")
    traceback.print_exception(error)
    print(
        f"\nreproduce: python fuzz/fuzz_router.py --property {name} --seed {batch_seed} "
        f"--batch {args.batch}"
    )
    return 1


if __name__ == "__main__":
    sys.exit(main())
