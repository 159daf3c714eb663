"""Run a gateway as one process, or as N worker processes sharing the port.

Each adapter supplies a ``ServeProcess``: serve one process until a signal
(SIGTERM drains, SIGINT stops) and return its exit status. With ``workers > 1``
each worker binds the same address with ``SO_REUSEPORT`` and the kernel spreads
connections between them; the parent only forwards signals.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import multiprocessing.connection
import os
import signal
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from gwcore.config import load_config_file
from gwcore.config.model import GatewayConfig


@dataclass(frozen=True, slots=True)
class Bound:
    """One listening socket: the listener's config name and the address it is bound to."""

    listener: str
    host: str
    port: int


Announce = Callable[[Sequence[Bound]], None]


class ServeProcess(Protocol):
    """Serve ``config`` in this process until a signal; return the exit status.

    Must be a module-level function: worker processes are spawned and receive it by
    reference.
    """

    def __call__(
        self,
        config: GatewayConfig,
        listen: tuple[str, int] | None,
        *,
        reuse_port: bool,
        grace: float,
        announce: Announce | None,
    ) -> int: ...


def _url(bound: Bound) -> str:
    host = f"[{bound.host}]" if ":" in bound.host else bound.host
    return f"http://{host}:{bound.port}"


def announce(bound: Sequence[Bound]) -> None:
    """The one line ``gwcore serve`` prints when it listens (tests read it)."""
    where = ", ".join(f"{_url(b)} (listener {b.listener})" for b in bound)
    print(f"gwcore serve: listening on {where}", file=sys.stderr, flush=True)


def _configured(config: GatewayConfig, listen: tuple[str, int] | None) -> list[Bound]:
    """Where the config (or ``listen``) says to listen, as the server would bind it."""
    bound = [Bound(lst.name, lst.host, lst.port) for lst in config.listeners]
    if listen is not None:
        return [Bound(bound[0].listener if bound else "default", *listen)]
    return bound


def run_gateway(
    serve_process: ServeProcess,
    config_path: str,
    listen: tuple[str, int] | None,
    workers: int,
    grace: float,
) -> int:
    """Load the config (a ``ConfigError`` propagates: the CLI reports it) and serve it
    in this process, or in ``workers`` processes; returns the exit status."""
    config = load_config_file(config_path)
    if workers <= 1:
        return serve_process(config, listen, reuse_port=False, grace=grace, announce=announce)
    port = listen[1] if listen else (config.listeners[0].port if config.listeners else 0)
    if port == 0:
        print("gwcore serve: --workers > 1 needs a fixed port", file=sys.stderr)
        return 1
    return _run_workers(serve_process, config_path, config, listen, workers, grace)


def _worker(
    serve_process: ServeProcess, config_path: str, listen: tuple[str, int] | None, grace: float
) -> None:
    try:
        config = load_config_file(config_path)
        status = serve_process(config, listen, reuse_port=True, grace=grace, announce=None)
    except KeyboardInterrupt:
        status = 130
    # The terminal sends Ctrl-C to the whole process group and the parent forwards it
    # too: once the event loop has stopped, a late SIGINT must not print a traceback.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    sys.exit(status)


def _run_workers(
    serve_process: ServeProcess,
    config_path: str,
    config: GatewayConfig,
    listen: tuple[str, int] | None,
    workers: int,
    grace: float,
) -> int:
    context = multiprocessing.get_context("spawn")
    processes = [
        context.Process(
            target=_worker, args=(serve_process, config_path, listen, grace), name=f"gwcore-{i}"
        )
        for i in range(workers)
    ]
    stopping = False

    def forward(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        for process in processes:
            if process.pid is not None and process.exitcode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(process.pid, signum)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        for process in processes:
            if not stopping:
                process.start()
        announce(_configured(config, listen))
        print(f"gwcore serve: {workers} workers share the port", file=sys.stderr, flush=True)
        status = 0
        running = [p for p in processes if p.pid is not None]
        while running:
            multiprocessing.connection.wait([p.sentinel for p in running])
            for process in [p for p in running if p.exitcode is not None]:
                running.remove(process)
                if process.exitcode != 0 and not stopping:
                    status = 1
                    forward(signal.SIGINT, None)  # one worker failed: stop them all
        return status
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
