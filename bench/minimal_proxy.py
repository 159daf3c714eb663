"""A minimal trio + h11 reverse proxy: the floor a trio/h11 design can reach here.

One upstream keep-alive connection per client connection, requests forwarded one at a
time with their headers as they came (no routing, no header rewriting, no timers, no
access log, no pooling, no limits). Only for ``bench_proxy.py --minimal``: it shows
what gwcore's own layers cost on top of trio and h11 on the same machine and load.

Usage: ``.venv/bin/python bench/minimal_proxy.py LISTEN_PORT UPSTREAM_PORT`` (127.0.0.1).
"""

from __future__ import annotations

import signal
import sys
from functools import partial

import h11
import trio

HOST = "127.0.0.1"
READ = 64 * 1024


async def _next_event(conn: h11.Connection, stream: trio.SocketStream) -> object:
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            conn.receive_data(await stream.receive_some(READ))
            continue
        return event


async def _relay(
    source: h11.Connection,
    source_stream: trio.SocketStream,
    sink: h11.Connection,
    sink_stream: trio.SocketStream,
    head: h11.Request | h11.Response,
) -> None:
    """Send ``head``, then the body events that follow it, from source to sink."""
    out = [sink.send(head)]
    while True:
        event = await _next_event(source, source_stream)
        if isinstance(event, h11.Data):
            out.append(sink.send(event))
        elif isinstance(event, h11.EndOfMessage):
            out.append(sink.send(event))
            break
        else:
            raise RuntimeError(f"unexpected {event!r}")
    await sink_stream.send_all(b"".join(x for x in out if x))


async def serve_client(upstream_port: int, client: trio.SocketStream) -> None:
    async with client:
        try:
            upstream = await trio.open_tcp_stream(HOST, upstream_port)
        except OSError:
            return
        async with upstream:
            server_side = h11.Connection(h11.SERVER)
            client_side = h11.Connection(h11.CLIENT)
            try:
                while True:
                    request = await _next_event(server_side, client)
                    if not isinstance(request, h11.Request):
                        return  # ConnectionClosed (or a protocol error)
                    fwd = h11.Request(
                        method=request.method, target=request.target, headers=request.headers
                    )
                    await _relay(server_side, client, client_side, upstream, fwd)
                    response = await _next_event(client_side, upstream)
                    if not isinstance(response, h11.Response):
                        return
                    back = h11.Response(
                        status_code=response.status_code,
                        headers=response.headers,
                        reason=response.reason,
                    )
                    await _relay(client_side, upstream, server_side, client, back)
                    server_side.start_next_cycle()
                    client_side.start_next_cycle()
            except (h11.ProtocolError, trio.BrokenResourceError, OSError):
                return


async def main(listen_port: int, upstream_port: int) -> None:
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:
            listeners = await trio.open_tcp_listeners(listen_port, host=HOST)
            nursery.start_soon(
                trio.serve_listeners, partial(serve_client, upstream_port), listeners
            )
            async for _ in signals:
                nursery.cancel_scope.cancel()
                break


if __name__ == "__main__":
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    trio.run(main, int(sys.argv[1]), int(sys.argv[2]))
