"""The asyncio adapter alone, in-process, with a scripted engine in place of ``Gateway``:
timers, write order and watermarks, pause/resume, close and abort, the clocks handed to
the engine, and ``FetchJwks`` against a real HTTP(S) server on 127.0.0.1.

The twin of ``test_trio_adapter.py``, case for case."""

from __future__ import annotations

import asyncio
import contextlib
import io
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from conftest import BIG, JWKS_BODY, FetchServer, free_port

from gwcore.config import load_config
from gwcore.gateway import (
    Action,
    BytesReceived,
    CancelTimer,
    ClientConnected,
    CloseConnection,
    EofReceived,
    Event,
    FetchJwks,
    JwksFetched,
    JwksFetchFailed,
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
from gwcore_asyncio.server import HIGH_WATER, Server
from gwcore_serving import Bound

CONFIG = load_config({"listeners": [{"name": "test", "address": "127.0.0.1:8080"}]})


class ScriptedEngine:
    """Records every event; ``reply`` decides the actions for each."""

    def __init__(self, reply: Callable[[Event, float], list[Action]]) -> None:
        self.reply = reply
        self.events: list[Event] = []
        self.clocks: list[tuple[float, float | None]] = []  # (now, wall) of every call
        self.active_exchanges = 0
        self._next = 0

    def new_connection_id(self) -> int:
        self._next += 1
        return self._next

    def handle(self, event: Event, now: float, wall: float | None = None) -> list[Action]:
        self.events.append(event)
        self.clocks.append((now, wall))
        return self.reply(event, now)


def run_with(
    reply: Callable[[Event, float], list[Action]],
    client: Callable[[Server, int, ScriptedEngine], Awaitable[None]],
    **options: Any,
) -> tuple[ScriptedEngine, io.StringIO]:
    """Serve on a free port with the scripted engine; run ``client`` against it.
    ``options`` go to the ``Server`` constructor."""
    engine = ScriptedEngine(reply)
    logs = io.StringIO()

    async def main() -> None:
        server = Server(CONFIG, listen=("127.0.0.1", 0), access_log=logs, event_log=logs, **options)
        server.gateway = engine  # type: ignore[assignment]
        async with asyncio.timeout(10):
            started: asyncio.Future[list[Bound]] = asyncio.get_running_loop().create_future()
            serving = asyncio.create_task(server.run(started=started.set_result))
            try:
                await asyncio.wait({started, serving}, return_when=asyncio.FIRST_COMPLETED)
                (bound,) = started.result()
                await client(server, bound.port, engine)
            finally:
                serving.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await serving

    asyncio.run(main())
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
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        await asyncio.sleep(0.3)
        writer.close()

    engine, _ = run_with(reply, client)
    assert [e for e in engine.events if isinstance(e, TimerFired)] == [TimerFired(c), TimerFired(a)]


def test_bytes_are_written_in_action_order_with_watermark_events() -> None:
    # 16 MiB in 256 pieces: more than the kernel's socket buffers take (up to 4 MiB
    # each way here), so the adapter's own queue must pass its high-water mark.
    pieces = [bytes([i % 251]) * 65536 for i in range(256)]

    def reply(event: Event, now: float) -> list[Action]:
        if isinstance(event, ClientConnected):
            return [*(SendBytes(event.conn, p) for p in pieces), CloseConnection(event.conn)]
        return []

    received = bytearray()

    async def client(server: Server, port: int, engine: ScriptedEngine) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        await asyncio.sleep(0.2)  # let the gateway's queue fill up
        while data := await reader.read(65536):
            received.extend(data)
        writer.close()

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
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"pause")
        await asyncio.sleep(0.05)
        writer.write(b"more")
        await asyncio.sleep(0.1)
        assert [e for e in engine.events if isinstance(e, BytesReceived)] == [
            BytesReceived(1, b"pause")
        ]
        await asyncio.sleep(0.2)
        assert BytesReceived(1, b"more") in engine.events
        writer.write_eof()
        await asyncio.sleep(0.05)
        writer.close()

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
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"hello")
        try:
            outcome.append(await reader.read(100))
        except ConnectionResetError as exc:
            outcome.append(exc)
        writer.close()
        assert server.statistics()["client_connections"] == 0

    _, logs = run_with(reply, client)
    # A reset (or at worst an EOF), never the bytes queued before the abort.
    assert outcome[0] == b"" or isinstance(outcome[0], ConnectionResetError)
    (line,) = logs.getvalue().splitlines()
    assert line.startswith('{"time": "') and line.endswith(', "status": 200}')


def test_every_event_comes_with_the_monotonic_and_the_wall_clock() -> None:
    def reply(event: Event, now: float) -> list[Action]:
        if isinstance(event, ClientConnected):
            return [StartTimer(TimerRef("idle", event.conn), now + 0.02)]
        return []

    async def client(server: Server, port: int, engine: ScriptedEngine) -> None:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"ping")
        await asyncio.sleep(0.1)
        writer.close()

    before = time.time()
    engine, _ = run_with(reply, client)
    after = time.time()
    kinds = {type(e) for e in engine.events}
    assert {ClientConnected, BytesReceived, TimerFired} <= kinds
    nows = [now for now, _ in engine.clocks]
    assert nows == sorted(nows)
    walls = [wall for _, wall in engine.clocks if wall is not None]
    assert len(walls) == len(nows) and before <= min(walls) and max(walls) <= after
    offsets = [wall - now for now, wall in zip(nows, walls, strict=True)]
    assert max(offsets) - min(offsets) < 0.05  # the two clocks advance together


# ---------------------------------------------------------------------- FetchJwks


def fetch(
    action: Callable[[], FetchJwks], **options: Any
) -> tuple[JwksFetched | JwksFetchFailed, float, bytes]:
    """A client connects; the engine answers with ``action()``; the fetch's answer is
    fed back, and the engine replies to it by writing to the client, which proves the
    actions returned for the answer are carried out. Returns the answer, how long the
    fetch took on the engine's clock, and what the client received."""
    started: list[float] = []
    answers: list[tuple[JwksFetched | JwksFetchFailed, float]] = []

    def reply(event: Event, now: float) -> list[Action]:
        if isinstance(event, ClientConnected):
            started.append(now)
            return [action()]
        if isinstance(event, JwksFetched | JwksFetchFailed):
            answers.append((event, now))
            return [SendBytes(1, b"answered " + type(event).__name__.encode()), CloseConnection(1)]
        return []

    received = bytearray()

    async def client(server: Server, port: int, engine: ScriptedEngine) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        while data := await reader.read(65536):
            received.extend(data)
        writer.close()
        assert server.statistics()["fetches"] == 0

    run_with(reply, client, **options)
    ((answer, at),) = answers
    return answer, at - started[0], bytes(received)


def test_fetch_jwks_over_http(fetch_server: FetchServer) -> None:
    url = fetch_server.url("/jwks")
    answer, _, received = fetch(lambda: FetchJwks("idp", url, 5.0))
    assert answer == JwksFetched("idp", 200, JWKS_BODY)
    assert received == b"answered JwksFetched"
    path, headers = fetch_server.seen[-1]
    assert path == "/jwks"
    assert headers["host"] == url.split("/")[2]
    assert headers["accept"] == "application/json"
    assert headers["user-agent"] == "gwcore"
    assert headers["connection"] == "close"


@pytest.mark.parametrize(
    ("path", "status", "body"),
    [("/chunked", 200, JWKS_BODY), ("/missing", 404, b"no such keys\n")],
)
def test_fetch_jwks_reports_any_complete_response(
    fetch_server: FetchServer, path: str, status: int, body: bytes
) -> None:
    url = fetch_server.url(path)
    answer, _, _ = fetch(lambda: FetchJwks("idp", url, 5.0))
    assert answer == JwksFetched("idp", status, body)


def test_fetch_jwks_over_https_verifies_the_certificate_and_sends_sni(
    fetch_server: FetchServer,
) -> None:
    url = fetch_server.url("/jwks", tls=True, host="localhost")
    context = fetch_server.client_context()
    answer, _, _ = fetch(lambda: FetchJwks("idp", url, 5.0), fetch_ssl_context=context)
    assert answer == JwksFetched("idp", 200, JWKS_BODY)
    assert fetch_server.sni[-1] == "localhost"


def test_fetch_jwks_over_https_refuses_an_untrusted_certificate(
    fetch_server: FetchServer,
) -> None:
    url = fetch_server.url("/jwks", tls=True, host="localhost")
    answer, _, received = fetch(lambda: FetchJwks("idp", url, 5.0))  # the system's CAs
    assert isinstance(answer, JwksFetchFailed) and answer.ref == "idp"
    assert "certificate verify failed" in answer.reason
    assert received == b"answered JwksFetchFailed"


def test_fetch_jwks_times_out_on_a_server_that_never_answers(fetch_server: FetchServer) -> None:
    url = fetch_server.silent_url
    answer, took, _ = fetch(lambda: FetchJwks("idp", url, 0.3))
    assert answer == JwksFetchFailed("idp", "timed out: no complete response within 0.3 s")
    assert 0.3 <= took < 2.0


def test_fetch_jwks_connection_refused() -> None:
    url = f"http://127.0.0.1:{free_port()}/jwks"
    answer, took, _ = fetch(lambda: FetchJwks("idp", url, 5.0))
    assert isinstance(answer, JwksFetchFailed)
    assert "ConnectionRefusedError" in answer.reason
    assert took < 2.0


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("/big", f"response body too long: the body is over max_bytes ({BIG // 4})"),
        ("/cut", "connection closed before the end of the response body (10 bytes)"),
    ],
)
def test_fetch_jwks_fails_on_a_body_too_long_or_cut_short(
    fetch_server: FetchServer, path: str, reason: str
) -> None:
    url = fetch_server.url(path)
    answer, _, _ = fetch(lambda: FetchJwks("idp", url, 5.0, max_bytes=BIG // 4))
    assert answer == JwksFetchFailed("idp", reason)


def test_fetch_jwks_with_a_bad_url_fails_without_connecting() -> None:
    answer, _, _ = fetch(lambda: FetchJwks("idp", "ftp://idp.example/jwks", 5.0))
    assert answer == JwksFetchFailed(
        "idp", "ValueError: URL scheme must be http or https: 'ftp://idp.example/jwks'"
    )


def test_fetch_jwks_runs_beside_the_loop_and_is_cancelled_on_shutdown(
    fetch_server: FetchServer,
) -> None:
    url = fetch_server.silent_url
    ref = TimerRef("jwks", "idp")

    def reply(event: Event, now: float) -> list[Action]:
        if isinstance(event, ClientConnected):
            return [FetchJwks("idp", url, 30.0), StartTimer(ref, now + 0.05)]
        if isinstance(event, TimerFired):
            return [SendBytes(1, b"timer fired while fetching")]
        return []

    async def client(server: Server, port: int, engine: ScriptedEngine) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        assert await reader.read(100) == b"timer fired while fetching"
        assert server.statistics()["fetches"] == 1
        writer.close()

    started = time.monotonic()
    engine, _ = run_with(reply, client)
    assert time.monotonic() - started < 3.0  # the 30 s fetch did not hold the shutdown up
    assert TimerFired(ref) in engine.events
    assert not [e for e in engine.events if isinstance(e, JwksFetched | JwksFetchFailed)]
