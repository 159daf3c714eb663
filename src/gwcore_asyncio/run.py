"""Run the asyncio gateway as a process (or N worker processes sharing the port).

It mirrors ``gwcore_trio.run``. Signals: SIGTERM drains (stop accepting, let the
exchanges in flight finish for up to ``grace`` seconds, then close every connection);
SIGINT, or a second SIGTERM, stops at once.
With ``workers > 1`` each worker binds the same address with ``SO_REUSEPORT`` and the
kernel spreads connections between them; the parent only forwards signals.
The event loop is uvloop's when uvloop is installed (``gwcore[speed]``), asyncio's
otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import multiprocessing.connection
import os
import signal
import sys
from collections.abc import Callable, Sequence

from gwcore.config import load_config_file
from gwcore.config.model import GatewayConfig
from gwcore_asyncio.server import Bound, Server

GRACE = 10.0


def run(
    config_path: str,
    listen: tuple[str, int] | None = None,
    workers: int = 1,
    *,
    grace: float = GRACE,
) -> int:
    """Serve the config at ``config_path`` until a signal; returns the exit status.

    The config is loaded here (a ``ConfigError`` propagates: the CLI reports it).
    """
    config = load_config_file(config_path)
    if workers <= 1:
        return _serve_process(config, listen, reuse_port=False, grace=grace, announce=_announce)
    port = listen[1] if listen else (config.listeners[0].port if config.listeners else 0)
    if port == 0:
        print("gwcore serve: --workers > 1 needs a fixed port", file=sys.stderr)
        return 1
    return _run_workers(config_path, config, listen, workers, grace)


def _url(bound: Bound) -> str:
    host = f"[{bound.host}]" if ":" in bound.host else bound.host
    return f"http://{host}:{bound.port}"


def _configured(config: GatewayConfig, listen: tuple[str, int] | None) -> list[Bound]:
    """Where the config (or ``listen``) says to listen, as the server would bind it."""
    bound = [Bound(lst.name, lst.host, lst.port) for lst in config.listeners]
    if listen is not None:
        return [Bound(bound[0].listener if bound else "default", *listen)]
    return bound


def _announce(bound: Sequence[Bound]) -> None:
    where = ", ".join(f"{_url(b)} (listener {b.listener})" for b in bound)
    print(f"gwcore serve: listening on {where}", file=sys.stderr, flush=True)


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's loop when it is installed, asyncio's default otherwise."""
    try:
        import uvloop  # type: ignore[import-not-found, unused-ignore]
    except ImportError:
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def _serve_process(
    config: GatewayConfig,
    listen: tuple[str, int] | None,
    *,
    reuse_port: bool,
    grace: float,
    announce: Callable[[Sequence[Bound]], None] | None,
) -> int:
    server = Server(config, listen=listen, reuse_port=reuse_port)
    try:
        with asyncio.Runner(loop_factory=_loop_factory()) as runner:
            runner.run(_serve_until_signalled(server, grace, announce))
    except OSError as exc:  # cannot bind
        print(f"gwcore serve: {exc.strerror or exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # Ctrl-C before the signal handlers were in place
        return 130
    return 0


async def _serve_until_signalled(
    server: Server, grace: float, announce: Callable[[Sequence[Bound]], None] | None
) -> None:
    loop = asyncio.get_running_loop()
    signals: asyncio.Queue[int] = asyncio.Queue()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, signals.put_nowait, signum)
    draining: asyncio.Task[None] | None = None
    try:
        await server.bind()  # before serving: a bind error is a plain OSError
        serving = asyncio.create_task(server.run(started=announce))
        try:
            while not serving.done():
                next_signal = asyncio.create_task(signals.get())
                await asyncio.wait({next_signal, serving}, return_when=asyncio.FIRST_COMPLETED)
                if not next_signal.done():
                    next_signal.cancel()
                    break
                if next_signal.result() == signal.SIGTERM and draining is None:
                    draining = asyncio.create_task(_drain_then_stop(server, grace, serving))
                else:
                    break
        finally:
            if draining is not None:
                draining.cancel()
            serving.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await serving  # a failure of the server propagates
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)


async def _drain_then_stop(server: Server, grace: float, serving: asyncio.Task[None]) -> None:
    await server.drain(grace)
    serving.cancel()


# ------------------------------------------------------------------- workers


def _worker(config_path: str, listen: tuple[str, int] | None, grace: float) -> None:
    try:
        config = load_config_file(config_path)
        status = _serve_process(config, listen, reuse_port=True, grace=grace, announce=None)
    except KeyboardInterrupt:
        status = 130
    # The terminal sends Ctrl-C to the whole process group and the parent forwards it
    # too: once the loop has stopped, a late SIGINT must not print a traceback.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    sys.exit(status)


def _run_workers(
    config_path: str,
    config: GatewayConfig,
    listen: tuple[str, int] | None,
    workers: int,
    grace: float,
) -> int:
    context = multiprocessing.get_context("spawn")
    processes = [
        context.Process(target=_worker, args=(config_path, listen, grace), name=f"gwcore-{i}")
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
        _announce(_configured(config, listen))
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
