"""Helpers for the gwcore.asgi tests: token signing, a real JWKS server, ASGI servers in
a subprocess, a websocket client (wsproto over a socket), and in-process ASGI calls.

Everything listens on 127.0.0.1 with ports the kernel picks and is bounded in time.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import anyio
import httpx
from polling import wait_until
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    CloseConnection,
    Message,
    RejectConnection,
    RejectData,
    Request,
    TextMessage,
)

HERE = Path(__file__).resolve().parent
SERVERS = ("hypercorn-trio", "hypercorn-asyncio", "uvicorn")


# ------------------------------------------------------------------ served in a process


@dataclass
class ServedApp:
    """``serve_app.py`` running one ASGI server in a subprocess."""

    server: str
    process: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


def serve(server: str, config: Path, directory: Path, *options: str) -> ServedApp:
    """Start ``serve_app.py`` with ``server`` and ``config``; return once it answers."""
    port_file = directory / f"{server}.port"
    log_path = directory / f"{server}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                str(HERE / "serve_app.py"),
                server,
                str(config),
                str(port_file),
                *options,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    started = wait_until(lambda: port_file.exists() or process.poll() is not None, 20)
    if not started or not port_file.exists():
        process.kill()
        process.wait()
        raise RuntimeError(f"{server} did not start:\n{log_path.read_text(errors='replace')}")
    served = ServedApp(server, process, int(port_file.read_text()), log_path)

    def ready() -> bool:
        try:
            return httpx.get(served.url + "/ready", timeout=1).status_code == 200
        except httpx.HTTPError:
            return process.poll() is not None

    if not wait_until(ready, 20, 0.05) or process.poll() is not None:
        served.stop()
        raise RuntimeError(f"{server} is not ready:\n{served.log()}")
    return served


# ------------------------------------------------------------------- websocket client


@dataclass
class Rejected:
    status: int
    headers: dict[str, str]
    body: bytes


class WebSocket:
    """A minimal websocket client: wsproto over a blocking socket with a timeout."""

    def __init__(self, sock: socket.socket, ws: WSConnection, headers: dict[str, str]) -> None:
        self.sock = sock
        self.ws = ws
        self.headers = headers  # of the 101 response

    @classmethod
    def connect(
        cls, port: int, target: str, headers: Iterable[tuple[str, str]] = ()
    ) -> WebSocket | Rejected:
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        ws = WSConnection(ConnectionType.CLIENT)
        extra = [(n.encode(), v.encode()) for n, v in headers]
        sock.sendall(ws.send(Request(host=f"127.0.0.1:{port}", target=target, extra_headers=extra)))
        rejected: Rejected | None = None
        while True:
            data = sock.recv(65536)
            ws.receive_data(data or None)
            for event in ws.events():
                if isinstance(event, AcceptConnection):
                    names = {k.decode().lower(): v.decode() for k, v in event.extra_headers}
                    return cls(sock, ws, names)
                if isinstance(event, RejectConnection):
                    names = {k.decode().lower(): v.decode() for k, v in event.headers}
                    rejected = Rejected(event.status_code, names, b"")
                    if not event.has_body:
                        sock.close()
                        return rejected
                elif isinstance(event, RejectData):
                    assert rejected is not None
                    rejected.body += event.data
                    if event.body_finished:
                        sock.close()
                        return rejected
            if not data:
                sock.close()
                raise ConnectionError("closed during the websocket handshake")

    def send_text(self, text: str) -> None:
        self.sock.sendall(self.ws.send(Message(data=text)))

    def receive_text(self) -> str:
        parts: list[str] = []
        while True:
            for event in self.ws.events():
                if isinstance(event, TextMessage):
                    parts.append(event.data)
                    if event.message_finished:
                        return "".join(parts)
                elif isinstance(event, CloseConnection):
                    raise ConnectionError(f"closed: {event.code} {event.reason}")
            data = self.sock.recv(65536)
            self.ws.receive_data(data or None)
            if not data:
                raise ConnectionError("connection closed")

    def close(self) -> None:
        try:
            self.sock.sendall(self.ws.send(CloseConnection(code=1000)))
        finally:
            self.sock.close()


# ------------------------------------------------------------------- in-process calls


@dataclass
class Response:
    status: int
    headers: list[tuple[str, str]]
    body: bytes
    messages: list[dict[str, Any]]
    completed: float  # time.monotonic() when the last body piece was sent

    def header(self, name: str) -> str | None:
        values = [v for n, v in self.headers if n == name]
        return values[0] if values else None

    def json(self) -> Any:
        return json.loads(self.body)


def http_scope(
    path: str,
    *,
    method: str = "GET",
    headers: Iterable[tuple[str, str]] = (),
    query: str = "",
    client: tuple[str, int] | None = ("203.0.113.9", 40000),
    kind: str = "http",
    extensions: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """An ASGI scope as servers build it (raw_path as sent, path decoded)."""
    return {
        "type": kind,
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http" if kind == "http" else "ws",
        "path": unquote(path),
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "root_path": "",
        "headers": [(b"host", b"app.test"), *((n.encode(), v.encode()) for n, v in headers)],
        "client": client,
        "server": ("127.0.0.1", 80),
        "extensions": extensions or {},
        "state": {},
    }


async def call_http(app: Any, scope: dict[str, Any], body: bytes = b"", chunk: int = 0) -> Response:
    """Call ``app`` with ``scope`` as a server would: the body (in pieces of ``chunk``
    bytes when given), then ``http.disconnect`` once the response is complete."""
    pieces = [body[i : i + chunk] for i in range(0, len(body), chunk)] if chunk else [body]
    pending = [
        {"type": "http.request", "body": piece, "more_body": i < len(pieces) - 1}
        for i, piece in enumerate(pieces)
    ]
    done = anyio.Event()
    messages: list[dict[str, Any]] = []
    completed: list[float] = []

    async def receive() -> dict[str, Any]:
        if pending:
            return pending.pop(0)
        await done.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        messages.append(dict(message))
        if message["type"] == "http.response.body" and not message.get("more_body"):
            completed.append(time.monotonic())
            done.set()

    with anyio.fail_after(15):
        await app(scope, receive, send)
    start = next((m for m in messages if m["type"] == "http.response.start"), None)
    assert start is not None, messages
    headers = [(n.decode(), v.decode()) for n, v in start.get("headers", [])]
    body_out = b"".join(m.get("body", b"") for m in messages if m["type"] == "http.response.body")
    return Response(start["status"], headers, body_out, messages, completed[0])
