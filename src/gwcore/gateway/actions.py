"""What the engine asks the outside world to do: the closed set of actions.

An adapter executes them in order with one ``match`` ending in ``assert_never``.
Actions that expect an answer name what the answer carries back: ``OpenUpstream``
is answered by ``UpstreamConnected(conn)`` or ``UpstreamConnectFailed(conn)``,
``StartTimer`` by ``TimerFired(ref)`` unless cancelled first, ``FetchJwks(ref)`` by
``JwksFetched(ref)`` or ``JwksFetchFailed(ref)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from gwcore.config.model import Endpoint

TimerKind = Literal["idle", "header", "route", "connect", "pool", "jwks"]


@dataclass(frozen=True, slots=True)
class TimerRef:
    """Names a timer: its purpose and the connection, exchange or cluster it guards."""

    kind: TimerKind
    owner: int | str


@dataclass(frozen=True, slots=True)
class SendBytes:
    """Write ``data`` to ``conn``, after everything queued before it."""

    conn: int
    data: bytes


@dataclass(frozen=True, slots=True)
class CloseConnection:
    """Close ``conn`` once its queued bytes are written (``abort``: at once, with a reset)."""

    conn: int
    abort: bool = False


@dataclass(frozen=True, slots=True)
class PauseReading:
    """Stop reading from ``conn`` until ``ResumeReading`` (backpressure)."""

    conn: int


@dataclass(frozen=True, slots=True)
class ResumeReading:
    """Start reading from ``conn`` again after ``PauseReading``."""

    conn: int


@dataclass(frozen=True, slots=True)
class OpenUpstream:
    """Connect to ``endpoint`` and call it ``conn``; answer with ``UpstreamConnected`` or
    ``UpstreamConnectFailed``. The engine runs its own connect timer."""

    conn: int
    endpoint: Endpoint
    tls: bool = False


@dataclass(frozen=True, slots=True)
class StartTimer:
    """Deliver ``TimerFired(ref)`` at time ``at`` (same clock as ``now``). Starting a
    timer with a ref that is already running replaces it."""

    ref: TimerRef
    at: float


@dataclass(frozen=True, slots=True)
class CancelTimer:
    """Cancel the timer ``ref``; no ``TimerFired`` for it may follow (the engine also
    ignores one that was already on its way)."""

    ref: TimerRef


@dataclass(frozen=True, slots=True)
class FetchJwks:
    """HTTP GET ``url`` (``http`` or ``https``, certificate verified) within ``timeout``
    seconds, and answer with ``JwksFetched(ref, status, body)`` or
    ``JwksFetchFailed(ref, reason)``. ``ref`` names the JWT provider. The response
    body may be cut at ``max_bytes`` (answer ``JwksFetchFailed`` when it is longer).
    The engine runs its own timer too, so a fetch that is never answered cannot hang
    requests."""

    ref: str
    url: str
    timeout: float
    max_bytes: int = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Log:
    """A structured log record (an access log line, or an event worth noting)."""

    kind: Literal["access", "event"]
    record: dict[str, Any] = field(hash=False)


Action = (
    SendBytes
    | CloseConnection
    | PauseReading
    | ResumeReading
    | OpenUpstream
    | StartTimer
    | CancelTimer
    | FetchJwks
    | Log
)
