"""Process plumbing shared by the adapters: JSON log lines, the announce line, and
worker processes sharing a port. Runtime-neutral (no trio, no asyncio) and free of
HTTP logic; it does I/O, so it lives outside the pure core."""

from gwcore_serving.logs import LogWriter
from gwcore_serving.process import Bound, ServeProcess, announce, run_gateway

__all__ = ["Bound", "LogWriter", "ServeProcess", "announce", "run_gateway"]
