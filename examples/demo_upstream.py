"""A tiny HTTP/1.1 upstream for trying the gateway: it answers every request with JSON
saying who answered and what it received (method, path, headers, body size).

    python examples/demo_upstream.py orders-1@127.0.0.1:9101 orders-2@127.0.0.1:9102

Each ``NAME@HOST:PORT`` is one listening socket; ``NAME`` shows up in the responses as
``"upstream"``, so you can see which endpoint (or which side of a weighted split)
answered. Runs until Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import json
import signal
import sys
from functools import partial

import h11
import trio


async def _answer(name: str, stream: trio.SocketStream) -> None:
    conn = h11.Connection(h11.SERVER)
    try:
        while True:
            request: h11.Request | None = None
            body_size = 0
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    conn.receive_data(await stream.receive_some(65536))
                elif isinstance(event, h11.Request):
                    request = event
                elif isinstance(event, h11.Data):
                    body_size += len(event.data)
                elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
                    break
            if request is None:
                return
            answer = {
                "upstream": name,
                "method": request.method.decode(),
                "path": request.target.decode(),
                "headers": [f"{k.decode()}: {v.decode()}" for k, v in request.headers],
                "body_bytes": body_size,
            }
            body = json.dumps(answer, indent=2).encode() + b"\n"
            headers = [("content-type", "application/json"), ("content-length", str(len(body)))]
            for event in (h11.Response(status_code=200, headers=headers), h11.Data(body)):
                await stream.send_all(conn.send(event) or b"")
            await stream.send_all(conn.send(h11.EndOfMessage()) or b"")
            if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                return
            conn.start_next_cycle()
    except (h11.RemoteProtocolError, trio.BrokenResourceError, OSError):
        return
    finally:
        await trio.aclose_forcefully(stream)


def _parse(spec: str) -> tuple[str, str, int]:
    name, _, address = spec.rpartition("@")
    host, _, port = address.rpartition(":")
    if not name or not host or not port.isdigit():
        raise SystemExit(f"expected NAME@HOST:PORT, got {spec!r}")
    return name, host, int(port)


async def _main(specs: list[tuple[str, str, int]]) -> None:
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        bound = [
            (name, await trio.open_tcp_listeners(port, host=host)) for name, host, port in specs
        ]
        async with trio.open_nursery() as nursery:
            for name, listeners in bound:
                nursery.start_soon(trio.serve_listeners, partial(_answer, name), listeners)
            names = ", ".join(f"{name} on {host}:{port}" for name, host, port in specs)
            print(f"demo upstream: {names}", file=sys.stderr, flush=True)
            async for _ in signals:
                nursery.cancel_scope.cancel()
                break


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    specs = [_parse(spec) for spec in argv]
    try:
        trio.run(_main, specs)
    except OSError as exc:
        print(f"demo upstream: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
