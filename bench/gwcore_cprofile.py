"""``gwcore serve`` with cProfile switched on and off by signals, for bench_proxy.py.

SIGUSR1 starts profiling, SIGUSR2 stops it, so start-up (imports, config load, route
compilation) and the warm-up stay out of the numbers. On exit (SIGINT or SIGTERM, as
``gwcore serve``) the stats are written to OUT for ``pstats``.

Usage: ``.venv/bin/python bench/gwcore_cprofile.py OUT CONFIG HOST:PORT``
"""

from __future__ import annotations

import cProfile
import signal
import sys

from gwcore_trio.run import run


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    out, config, listen = argv
    host, _, port = listen.rpartition(":")
    profiler = cProfile.Profile()
    signal.signal(signal.SIGUSR1, lambda _signum, _frame: profiler.enable())
    signal.signal(signal.SIGUSR2, lambda _signum, _frame: profiler.disable())
    try:
        return run(config, (host, int(port)))
    finally:
        profiler.disable()
        profiler.dump_stats(out)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
