"""Serve ``gwcore.asgi`` in front of two small ASGI apps under a real ASGI server.

    python serve_app.py SERVER CONFIG PORT_FILE [--guard]

SERVER is ``hypercorn-trio``, ``hypercorn-asyncio`` or ``uvicorn``. The listening socket
is bound here to 127.0.0.1 on a port the kernel picks, which is written to PORT_FILE;
SIGTERM stops the server gracefully (lifespan shutdown included). With ``--guard`` the
middleware guards the ``alpha`` app alone (``gwcore.asgi.guard``); otherwise routes pick
``alpha`` or ``beta`` by cluster name.

Both apps answer HTTP with JSON describing what they saw (path, headers, body,
``scope["gwcore"]``, whether their lifespan started) and echo websocket messages the
same way.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
from pathlib import Path
from typing import Any

from gwcore.asgi import GatewayApp, Receive, Scope, Send, guard

LIFESPAN: dict[str, str] = {}


def _seen(name: str, scope: Scope, body: bytes = b"") -> dict[str, Any]:
    headers: dict[str, list[str]] = {}
    for key, value in scope["headers"]:
        headers.setdefault(key.decode("latin-1"), []).append(value.decode("latin-1"))
    identity = dict(scope.get("gwcore") or {})
    if identity.get("claims") is not None:
        identity["claims"] = dict(identity["claims"])
    return {
        "app": name,
        "path": scope["path"],
        "raw_path": scope["raw_path"].decode("latin-1"),
        "query": scope["query_string"].decode("latin-1"),
        "headers": headers,
        "gwcore": identity,
        "body": body.decode("utf-8", "replace"),
        "lifespan": LIFESPAN.get(name),
    }


def make_app(name: str) -> Any:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    LIFESPAN[name] = "started"
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    LIFESPAN[name] = "stopped"
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        elif scope["type"] == "http":
            body = b""
            while True:
                message = await receive()
                body += message.get("body", b"")
                if not message.get("more_body"):
                    break
            payload = json.dumps(_seen(name, scope, body)).encode()
            headers = [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
                (b"x-internal", b"secret"),
                (b"x-app", name.encode()),
            ]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": payload})
        elif scope["type"] == "websocket":
            await receive()  # websocket.connect
            await send({"type": "websocket.accept", "headers": [(b"x-app", name.encode())]})
            while True:
                message = await receive()
                if message["type"] != "websocket.receive":
                    return
                reply = {"echo": message.get("text"), **_seen(name, scope)}
                await send({"type": "websocket.send", "text": json.dumps(reply)})

    return app


def main() -> None:
    server, config, port_file = sys.argv[1:4]
    alpha, beta = make_app("alpha"), make_app("beta")
    if "--guard" in sys.argv[4:]:
        app: Any = guard(alpha, config)
    else:
        app = GatewayApp(config, apps={"alpha": alpha, "beta": beta})
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    written = Path(port_file + ".tmp")
    written.write_text(str(sock.getsockname()[1]))
    os.replace(written, port_file)
    if server == "uvicorn":
        import uvicorn

        settings = uvicorn.Config(app, lifespan="on", ws="wsproto", http="h11", log_level="warning")
        uvicorn.Server(settings).run(sockets=[sock])
        return
    from hypercorn.config import Config

    options = Config()
    options.bind = [f"fd://{sock.detach()}"]
    options.accesslog = None
    options.loglevel = "WARNING"
    if server == "hypercorn-trio":
        import functools

        import trio
        from hypercorn.trio import serve as trio_serve

        async def trio_stop() -> None:
            with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                async for _ in signals:
                    return

        trio.run(functools.partial(trio_serve, app, options, shutdown_trigger=trio_stop))
    elif server == "hypercorn-asyncio":
        import asyncio

        from hypercorn.asyncio import serve as asyncio_serve

        async def run() -> None:
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for number in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(number, stop.set)
            await asyncio_serve(app, options, shutdown_trigger=stop.wait)

        asyncio.run(run())
    else:
        raise SystemExit(f"unknown server {server!r}")


if __name__ == "__main__":
    main()
