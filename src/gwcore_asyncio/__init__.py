"""The asyncio adapter: runs :class:`gwcore.gateway.Gateway` on real sockets.

``server.py`` does the I/O for one process (listening servers, connections, timers,
logs); ``run.py`` runs it as a process or several workers, with signal handling. It
mirrors the trio adapter (``gwcore_trio``) file for file.
"""

from gwcore_asyncio.server import Server, serve
from gwcore_serving import Bound

__all__ = ["Bound", "Server", "serve"]
