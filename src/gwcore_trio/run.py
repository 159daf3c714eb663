"""Run the trio gateway as a process (or N worker processes sharing the port).

Signals: SIGTERM drains (stop accepting, let the exchanges in flight finish for up to
``grace`` seconds, then close every connection); SIGINT, or a second SIGTERM, stops at
once.
Worker processes (``workers > 1``, ``SO_REUSEPORT``) are run by
:func:`gwcore_serving.run_gateway`; this module is only the runtime-specific part.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable, Sequence
from functools import partial

import trio

from gwcore.config.model import GatewayConfig
from gwcore_serving import Bound, run_gateway
from gwcore_trio.server import Server

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
        trio.run(partial(_serve_until_signalled, server, grace, announce))
    except OSError as exc:  # cannot bind
        print(f"gwcore serve: {exc.strerror or exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # Ctrl-C before the signal receiver was in place
        return 130
    return 0


async def _serve_until_signalled(
    server: Server, grace: float, announce: Callable[[Sequence[Bound]], None] | None
) -> None:
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        bound = await server.bind()  # outside the nursery: a bind error is a plain OSError
        async with trio.open_nursery() as nursery:
            await nursery.start(server.run)
            if announce is not None:
                announce(bound)
            draining = False
            async for signum in signals:
                if signum == signal.SIGTERM and not draining:
                    draining = True
                    nursery.start_soon(_drain_then_stop, server, grace, nursery.cancel_scope)
                else:
                    break
            nursery.cancel_scope.cancel()


async def _drain_then_stop(server: Server, grace: float, scope: trio.CancelScope) -> None:
    await server.drain(grace)
    scope.cancel()
