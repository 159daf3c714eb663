"""The trio adapter alone, in-process, with a scripted engine in place of ``Gateway``:
timers, write order and watermarks, pause/resume, close and abort."""

from __future__ import annotations

import io
from collections.abc import Awaitable, Callable
from typing import Any

import trio
import trio.testing

from gwcore.config import load_config
from gwcore.gateway import (
    Action,
    BytesReceived,
    CancelTimer,
    ClientConnected,
    CloseConnection,
    EofReceived,
    Event,
    Log,
    PauseReading,
    ResumeReading,
    SendBytes,
    StartTimer,
    TimerFired,
    TimerRef,
    WritesBlocked,
    WritesDrained,
)
from gwcore_trio.server import HIGH_WATER, Server

CONFIG = load_config({"listeners": [{"name": "test", "address": "127.0.0.1:8080"}]})


class ScriptedEngine:
    """Records every event; ``reply`` decides the actions for each."""

    def __init__(self, reply: Callable[[Event, float], list[Action]]) -> None:
        self.reply = reply
        self.events: list[Event] = []
        self.active_exchanges = 0
        self._next = 0

    def new_connection_id(self) -> int:
        self._next += 1
        return self._next

    def handle(self, event: Event, now: float) -> list[Action]:
        self.events.append(event)
        return self.reply(event, now)


def run_with(
    reply: Callable[[Event, float], list[Action]],
    client: Callable[[Server, int, ScriptedEngine], Awaitable[None]],
) -> tuple[ScriptedEngine, io.StringIO]:
    """Serve on a free port with the scripted engine; run ``client`` against it."""
    engine = ScriptedEngine(reply)
    logs = io.StringIO()

    async def main() -> None:
        server = Server(CONFIG, listen=("127.0.0.1", 0), access_log=logs, event_log=logs)
        server.gateway = engine  # type: ignore[assignment]
        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                (bound,) = await nursery.start(server.run)
                await client(server, bound.port, engine)
                nursery.cancel_scope.cancel()

    trio.run(main)
    return engine, logs


def test_timers_fire_once_in_order_and_honour_replace_and_cancel() -> None:
    a, b, c = TimerRef("idle", 1), TimerRef("route", 2), TimerRef("pool", "x")

    def reply(event: Event, now: float) -> list[Action]:
        if isinstance(event, ClientConnected):
            return [
                StartTimer(a, now + 0.05),
                StartTimer(b, now + 0.02),
                StartTimer(c, now + 0.03),
                StartTimer(a, now + 0.08),  # replaces the first
                CancelTimer(b),
            ]
        return []

    async def client(server: Server, port: int, engine: ScriptedEngine) -> None:
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        await trio.sleep(0.3)
        await stream.aclose()

    engine, _ = run_with(reply, client)
    assert [e for e in engine.events if isinstance(e, TimerFired)] == [TimerFired(c), TimerFired(a)]


def test_bytes_are_written_in_action_order_with_watermark_events() -> None:
    pieces = [bytes([i % 251]) * 65536 for i in range(64)]  # 4 MiB in 64 pieces

    def reply(event: Event, now: float) -> list[Action]:
        if isinstance(event, ClientConnected):
            return [*(SendBytes(event.conn, p) for p in pieces), CloseConnection(event.conn)]
        return []

    received = bytearray()

    async def client(server: Server, port: int, engine: ScriptedEngine) -> None:
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        await trio.sleep(0.2)  # let the gateway's queue fill up
        while data := await stream.receive_some(65536):
            received.extend(data)
        await stream.aclose()

    engine, _ = run_with(reply, client)
    assert bytes(received) == b"".join(pieces)
    kinds = [type(e) for e in engine.events if isinstance(e, WritesBlocked | WritesDrained)]
    assert kinds == [WritesBlocked, WritesDrained]
    assert sum(map(len, pieces)) > HIGH_WATER


def test_paused_connection_is_not_read_until_resumed() -> None:
    def reply(event: Event, now: float) -> list[Action]:
        if isinstance(event, BytesReceived) and event.data.startswith(b"pause"):
            return [PauseReading(event.conn), StartTimer(TimerRef("idle", event.conn), now + 0.2)]
        if isinstance(event, TimerFired):
            return [ResumeReading(int(event.ref.owner))]
        return []

    async def client(server: Server, port: int, engine: ScriptedEngine) -> None:
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        await stream.send_all(b"pause")
        await trio.sleep(0.05)
        await stream.send_all(b"more")
        await trio.sleep(0.1)
        assert [e for e in engine.events if isinstance(e, BytesReceived)] == [
            BytesReceived(1, b"pause")
        ]
        await trio.sleep(0.2)
        assert BytesReceived(1, b"more") in engine.events
        await stream.send_eof()
        await trio.sleep(0.05)
        await stream.aclose()

    engine, _ = run_with(reply, client)
    assert EofReceived(1) in engine.events


def test_abort_resets_the_connection_and_logs_are_json_lines() -> None:
    def reply(event: Event, now: float) -> list[Action]:
        if isinstance(event, BytesReceived):
            return [
                Log("access", {"status": 200}),
                SendBytes(event.conn, b"lost"),
                CloseConnection(event.conn, abort=True),
            ]
        return []

    outcome: list[Any] = []

    async def client(server: Server, port: int, engine: ScriptedEngine) -> None:
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        await stream.send_all(b"hello")
        try:
            outcome.append(await stream.receive_some(100))
        except trio.BrokenResourceError as exc:
            outcome.append(exc)
        await stream.aclose()
        assert server.statistics()["client_connections"] == 0

    _, logs = run_with(reply, client)
    # A reset (or at worst an EOF), never the bytes queued before the abort.
    assert outcome[0] == b"" or isinstance(outcome[0], trio.BrokenResourceError)
    (line,) = logs.getvalue().splitlines()
    assert line.startswith('{"time": "') and line.endswith(', "status": 200}')
