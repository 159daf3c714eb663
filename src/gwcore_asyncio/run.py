"""Run the asyncio gateway as a process (or N worker processes sharing the port).

It mirrors ``gwcore_trio.run``. Signals: SIGTERM drains (stop accepting, let the
exchanges in flight finish for up to ``grace`` seconds, then close every connection);
SIGINT, or a second SIGTERM, stops at once.
Worker processes (``workers > 1``, ``SO_REUSEPORT``) are run by
:func:`gwcore_serving.run_gateway`; this module is only the runtime-specific part.
The event loop is uvloop's when uvloop is installed (``gwcore[speed]``), asyncio's
otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections.abc import Callable, Sequence

from gwcore.config.model import GatewayConfig
from gwcore_asyncio.server import Server
from gwcore_serving import Bound, run_gateway

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
    return run_gateway(_serve_process, config_path, listen, workers, grace)


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
