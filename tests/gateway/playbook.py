"""A transcript helper for engine tests: events in, exact actions out, no sockets.

Like mitmproxy's ``Playbook``: a test feeds events with a clock it controls and
asserts on the actions, so every flow reads as a conversation.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from gwcore.config import load_config
from gwcore.gateway import (
    Action,
    BytesReceived,
    ClientConnected,
    CloseConnection,
    EofReceived,
    Event,
    Gateway,
    Log,
    OpenUpstream,
    SendBytes,
    StartTimer,
    TimerFired,
    TimerRef,
    UpstreamConnected,
)

A = TypeVar("A")

CLUSTERS = {
    "c": {"endpoints": ["127.0.0.1:9001"], "connect_timeout": "1s"},
    "d": {"endpoints": ["127.0.0.1:9002"]},
}


@dataclass
class Playbook:
    """One gateway, a fake clock, and everything it said."""

    gateway: Gateway
    now: float = 0.0
    # Wall-clock (Unix) time is ``now`` plus this, as an adapter would report it.
    wall_offset: float = 1_800_000_000.0
    history: list[Action] = field(default_factory=list)
    timers: dict[TimerRef, float] = field(default_factory=dict)

    @classmethod
    def from_config(cls, raw: dict[str, Any], seed: int = 0) -> Playbook:
        raw = {"clusters": CLUSTERS, **raw}
        return cls(Gateway(load_config(raw), entropy=random.Random(seed)))

    def __call__(self, event: Event, *, at: float | None = None) -> list[Action]:
        if at is not None:
            self.now = at
        actions = self.gateway.handle(event, self.now, wall=self.now + self.wall_offset)
        for action in actions:
            if isinstance(action, StartTimer):
                self.timers[action.ref] = action.at
            elif type(action).__name__ == "CancelTimer":
                self.timers.pop(action.ref, None)  # type: ignore[attr-defined]
        self.history += actions
        return actions

    def connect(self, listener: str = "public", peer: tuple[str, int] = ("10.1.2.3", 40000)) -> int:
        conn = self.gateway.new_connection_id()
        self(ClientConnected(conn, listener, peer))
        return conn

    def send(self, conn: int, data: bytes) -> list[Action]:
        return self(BytesReceived(conn, data))

    def advance_to(self, at: float) -> list[Action]:
        """Move the clock and fire every timer due by then, in order."""
        out: list[Action] = []
        while True:
            due = sorted(
                ((when, ref.kind, str(ref.owner)), ref)
                for ref, when in self.timers.items()
                if when <= at
            )
            if not due:
                break
            (when, _, _), ref = due[0]
            del self.timers[ref]
            out += self(TimerFired(ref), at=when)
        self.now = at
        return out

    def upstream_exchange(
        self, actions: list[Action], response: bytes
    ) -> tuple[int, bytes, list[Action]]:
        """Connect the upstream opened in ``actions`` and answer it.

        Returns (upstream conn, request bytes it got, actions of the answer).
        """
        opened = only(actions, OpenUpstream)
        connected = self(UpstreamConnected(opened.conn))
        request = sent(connected, opened.conn)
        return opened.conn, request, self(BytesReceived(opened.conn, response))


def only(actions: Iterable[Action], kind: type[A]) -> A:
    found = [a for a in actions if isinstance(a, kind)]
    assert len(found) == 1, f"expected one {kind.__name__} in {list(actions)}"
    return found[0]


def sent(actions: Iterable[Action], conn: int) -> bytes:
    """Everything written to ``conn`` by ``actions``."""
    return b"".join(a.data for a in actions if isinstance(a, SendBytes) and a.conn == conn)


def closed(actions: Iterable[Action], conn: int) -> CloseConnection | None:
    found = [a for a in actions if isinstance(a, CloseConnection) and a.conn == conn]
    return found[-1] if found else None


def access_logs(actions: Iterable[Action]) -> list[dict[str, Any]]:
    return [a.record for a in actions if isinstance(a, Log) and a.kind == "access"]


__all__ = [
    "EofReceived",
    "Playbook",
    "access_logs",
    "closed",
    "only",
    "sent",
]
