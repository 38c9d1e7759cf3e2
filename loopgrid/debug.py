"""The debug endpoint: a grid's stats and task list as JSON over loopback HTTP.

Opt-in (``Grid(debug_port=0)``, or ``LOOPGRID_DEBUG_PORT`` in the
environment), for ``loopgrid ps`` and ``loopgrid top`` and for a quick look
with ``curl``. It listens on 127.0.0.1 only, because what it serves (task
names, source paths, stacks) is nobody else's business, and it has no
authentication; it answers only requests whose Host is a loopback name, so
that a web page whose name was rebound to 127.0.0.1 (DNS rebinding) cannot
read it through the user's browser.

It runs on its own thread, ``loopgrid-<grid>-debug`` (``serverthread.py``),
each client on a thread of its own for at most 10 s (an idle or trickling
client holds up nobody, nor the grid's close), and reads the grid the way
``grid.stats()`` does from any thread: it never enters a worker's loop, so it
still answers when a loop is stalled, which is when it is wanted. The grid
stops it (and joins its threads) when it closes.

Routes: ``/stats`` (``grid.stats()``), ``/tasks?limit=N`` (``{"grid": name,
"tasks": grid.stats(tasks=True)["tasks"]}``), and ``/`` listing them.

The HTTP server itself is in ``_debughttp.py``, imported by
:class:`DebugServer` when a grid asks for one: ``http.server`` (with
``email``, ``socketserver`` and more) costs about half as much to import as
asyncio, and most grids have no endpoint.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from . import logs

if TYPE_CHECKING:
    from .grid import Grid

__all__ = ["ENV_VAR", "DebugServer", "debug_port_from_env"]

#: The environment variable that turns the endpoint on for grids that do not
#: pass ``debug_port`` (its value is the port; 0 picks a free one).
ENV_VAR = "LOOPGRID_DEBUG_PORT"

_HOST = "127.0.0.1"


def debug_port_from_env() -> int | None:
    """The port named by :data:`ENV_VAR`, or None when it is unset or empty."""
    raw = os.environ.get(ENV_VAR, "").strip()
    if not raw:
        return None
    try:
        port = int(raw)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise ValueError(f"{ENV_VAR} must be a port number (0 for any free port), got {raw!r}")
    return port


class DebugServer:
    """The debug endpoint of one grid; started by the constructor."""

    def __init__(self, grid: Grid, port: int) -> None:
        from ._debughttp import DebugHTTPServer, Handler
        from .serverthread import ServerThread

        self.grid = grid
        handler = type("_BoundHandler", (Handler,), {"grid": grid})
        self._server = DebugHTTPServer((_HOST, port), handler)
        self.port: int = self._server.server_address[1]
        self.url = f"http://{_HOST}:{self.port}"
        self._runner = ServerThread(self._server, f"loopgrid-{grid.name}-debug")
        logs.info("grid.debug_endpoint", grid=grid.name, url=self.url)

    def stop(self) -> None:
        """Stop serving and join the thread; idempotent."""
        self._runner.close()
