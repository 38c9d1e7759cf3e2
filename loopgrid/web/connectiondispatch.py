"""Connection dispatch: one uvicorn server per worker loop (``dispatch="connection"``).

Each worker runs a uvicorn server with a listening socket of its own on the
one port (``SO_REUSEPORT``: ``listen.py``); the kernel spreads connections
over the loops and a request runs on the loop that accepted its connection.
No crossing between threads per request, but every request of a connection
waits while its loop is held. On free-threaded builds this is the mode that
scales with loops.

Thread ownership: made and driven by the server's controlling thread; each
server runs as a grid task pinned to its worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .appcall import call_with
from .lifespan import Place

if TYPE_CHECKING:
    from ..grid import Grid
    from ..handle import Handle

__all__ = ["ConnectionDispatch"]


class ConnectionDispatch:
    """See the module docstring."""

    name = "connection"
    #: The interpreter's switch interval: no front loop waits for the GIL.
    auto_switch_interval: float | None = None
    spread = False

    def __init__(self) -> None:
        self._serving: list[Handle[None]] = []

    def listeners(self, grid: Grid) -> int:
        return len(grid.workers)

    def start_loops(self, grid: Grid, listeners: int) -> list[Place]:
        return []  # the workers' own loops accept

    def after_startup(self) -> None:
        pass

    def serve(
        self,
        grid: Grid,
        socks: list[socket.socket],
        wrapped: Any,
        states: list[dict[str, Any]],
        make_server: Callable[[Any], Any],
    ) -> list[Any]:
        """Start a uvicorn server on each worker; the servers."""
        servers = []
        for i in range(len(grid.workers)):
            server = make_server(call_with(wrapped, states[i], str(i).encode()))
            servers.append(server)
            self._serving.append(grid.spawn(_serve, server, socks[i].dup(), worker=i))
        return servers

    def wait(self) -> None:
        """Block until every worker's server stopped (in slices, for Ctrl-C)."""
        for h in self._serving:
            while not h.done():
                with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                    h.exception(timeout=0.5)

    def stopped(self, grace: float) -> None:
        """After a stop: wait for the servers to end."""
        for h in self._serving:
            with contextlib.suppress(BaseException):
                h.result(timeout=grace + 5)

    def close(self) -> None:
        pass

    def finish(self) -> None:
        pass


async def _serve(server: Any, sock: socket.socket) -> None:
    await server.serve_marked([sock])
