"""The trio adapter: runs :class:`gwcore.gateway.Gateway` on real sockets.

``server.py`` does the I/O for one process (accept loops, connections, timers, logs);
``run.py`` runs it as a process or several workers, with signal handling. The asyncio
adapter (``gwcore_asyncio``) mirrors these files.
"""

from gwcore_serving import Bound
from gwcore_trio.server import Server, serve

__all__ = ["Bound", "Server", "serve"]
