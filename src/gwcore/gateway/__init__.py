"""The proxy engine: ``Gateway.handle(event, now) -> list[Action]``, pure and sans-IO."""

from gwcore.gateway.actions import (
    Action,
    CancelTimer,
    CloseConnection,
    Log,
    OpenUpstream,
    PauseReading,
    ResumeReading,
    SendBytes,
    StartTimer,
    TimerRef,
)
from gwcore.gateway.engine import Entropy, Gateway
from gwcore.gateway.events import (
    BytesReceived,
    ClientConnected,
    ConnectionLost,
    DrainStarted,
    EofReceived,
    Event,
    TimerFired,
    UpstreamConnected,
    UpstreamConnectFailed,
    WritesBlocked,
    WritesDrained,
)

__all__ = [
    "Action",
    "BytesReceived",
    "CancelTimer",
    "ClientConnected",
    "CloseConnection",
    "ConnectionLost",
    "DrainStarted",
    "Entropy",
    "EofReceived",
    "Event",
    "Gateway",
    "Log",
    "OpenUpstream",
    "PauseReading",
    "ResumeReading",
    "SendBytes",
    "StartTimer",
    "TimerFired",
    "TimerRef",
    "UpstreamConnectFailed",
    "UpstreamConnected",
    "WritesBlocked",
    "WritesDrained",
]
