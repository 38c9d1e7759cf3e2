"""A front loop: the thread and event loop that own a listener's connections.

With ``dispatch="request"`` each front loop runs uvicorn's HTTP protocol for
the connections of one listening socket, and runs the requests of routes
learned to be short itself (``inline.py``). Since it runs app code, it gets a
lifespan run of its own with ``lifespan="loop"``, like each worker: so its
loop starts before serving (for the lifespan's startup) and keeps running
after serving stopped, until :meth:`FrontLoop.finish` (for the lifespan's
shutdown, which runs on it with the workers' ones).

Thread ownership: ``start``, ``serve`` and ``finish`` are called by the
server's controlling thread; everything they do on the loop goes through
``call_soon_threadsafe`` / ``run_coroutine_threadsafe``. ``loop`` is written
by the front's thread before ``start`` returns (the event orders it).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import socket
import threading
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from .. import logs
from ..affinity import name_loop
from ..fairness import Fairness
from ..fairness import needed as fairness_needed
from ..grid import default_loop_factory
from ..sync import _resolve
from ..worker import _current, _shutdown_loop

if TYPE_CHECKING:
    from ..grid import Grid

__all__ = ["FrontLoop"]


class FrontLoop:
    """One front loop on a thread of its own, from :meth:`start` to :meth:`finish`."""

    def __init__(self, grid: Grid, name: str, label: str) -> None:
        self.label = label
        self.loop: asyncio.AbstractEventLoop | None = None
        self.serving: concurrent.futures.Future[None] | None = None
        self._grid = grid
        self._running = threading.Event()
        self._done: asyncio.Future[None] | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        """Start the thread and its loop; returns once the loop runs."""
        self._thread.start()
        self._running.wait()
        if self.loop is None:
            raise RuntimeError(f"front loop {self.label} could not start its event loop")

    def call(
        self, fn: Callable[[], Coroutine[Any, Any, None]], name: str
    ) -> concurrent.futures.Future[None]:
        """Run ``fn()`` as a task of the loop (a lifespan's :data:`Place`;
        ``name`` is a grid task's, which a plain task here does without)."""
        assert self.loop is not None
        return asyncio.run_coroutine_threadsafe(fn(), self.loop)

    def serve(self, server: Any, sock: socket.socket) -> None:
        """Start ``server`` (a MarkedServer) on ``sock``, on this loop."""
        assert self.loop is not None
        self.serving = asyncio.run_coroutine_threadsafe(server.serve_marked([sock]), self.loop)

        def report(fut: concurrent.futures.Future[None]) -> None:
            if fut.cancelled():
                return
            exc = fut.exception()
            if exc is not None and server.ready.is_set() and server.error is None:
                logs.error("web.front_failed", front=self.label, error=repr(exc))

        self.serving.add_done_callback(report)

    def finish(self) -> None:
        """Stop the loop (cancelling what still runs on it) and join the thread."""
        loop, done = self.loop, self._done
        if loop is not None and done is not None:
            try:
                loop.call_soon_threadsafe(_resolve, done)
            except RuntimeError:  # the loop has closed already
                pass
        self._thread.join()

    def _run(self) -> None:
        try:
            self._run_loop()
        finally:
            self._running.set()  # start() raises if the loop never ran

    def _run_loop(self) -> None:
        _current.grid = self._grid  # spawn() works in requests run inline
        loop = default_loop_factory()()
        name_loop(loop, f"{self.label} of grid {self._grid.name!r}")
        # The front loop runs short callbacks back to back, the pattern that
        # keeps other threads off the GIL (fairness.py): it yields it too.
        fair = Fairness(loop) if fairness_needed(2) else None
        if fair is not None:
            fair.start()
        try:
            loop.run_until_complete(self._main(loop))
        finally:
            if fair is not None:
                fair.stop()
            try:
                # After a forced stop, requests may still be in flight: cancel
                # them and let them finish, as asyncio.run finishes its loop.
                _shutdown_loop(loop)
            finally:
                loop.close()

    async def _main(self, loop: asyncio.AbstractEventLoop) -> None:
        self._done = loop.create_future()
        self.loop = loop
        self._running.set()
        await self._done
