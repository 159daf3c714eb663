"""JSON log lines with a wall-clock ``time``, flushed once per batch of events."""

from __future__ import annotations

import contextlib
import json
import sys
from datetime import UTC, datetime
from typing import Any, TextIO


class LogWriter:
    """Writes ``Log`` records: access records to one stream, events to another.

    A closed or broken log stream never stops the gateway. Lines are buffered until
    :meth:`flush`, which an adapter calls once per batch of events.
    """

    def __init__(self, access: TextIO | None = None, events: TextIO | None = None) -> None:
        self.access = access or sys.stdout
        self.events = events or sys.stderr

    def write(self, kind: str, record: dict[str, Any]) -> None:
        now = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        line = json.dumps({"time": now, **record}, default=str, ensure_ascii=False)
        with contextlib.suppress(OSError, ValueError):
            (self.access if kind == "access" else self.events).write(line + "\n")

    def flush(self) -> None:
        for stream in (self.access, self.events):
            with contextlib.suppress(OSError, ValueError):
                stream.flush()
