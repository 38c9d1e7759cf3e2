"""uvicorn underneath: the import, and the server class every loop runs.

loopgrid serves with uvicorn's HTTP and websocket protocols: each loop that
accepts connections (a front loop, or a worker with connection dispatch) runs
a :class:`MarkedServer`, a ``uvicorn.Server`` that also tells when it
listens, why it could not, and can be forced to stop from any thread. uvicorn
is imported on first use: importing ``loopgrid.web`` does not import it.

Thread ownership: a server is made by the controlling thread and then runs on
its loop; ``ready`` and ``error`` are written on its loop before ``ready`` is
set, read by the controlling thread after; ``force()`` may be called from any
thread (it posts to the server's loop).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import socket
import threading
from typing import Any

from . import appstate

__all__ = ["import_uvicorn", "make_server", "server_class"]


def import_uvicorn() -> Any:
    try:
        import uvicorn
    except ImportError:
        raise ImportError(
            "loopgrid.web serves ASGI apps with uvicorn, which is not installed "
            "(loopgrid's web extra): pip install uvicorn"
        ) from None
    return uvicorn


@functools.cache
def server_class() -> Any:
    """uvicorn.Server, made to tell when it listens or why it could not (made
    on first use: importing loopgrid.web does not import uvicorn)."""
    uvicorn = import_uvicorn()

    class MarkedServer(uvicorn.Server):  # type: ignore[misc, name-defined]
        """Also: ``force()`` from any thread cancels the requests in flight.

        uvicorn's own force_exit only stops it waiting for them; from Python
        3.12 asyncio's ``Server.wait_closed()`` (uvloop's does not) then waits
        for their connections, so a request that never ends held a forced
        stop for the whole grace period.
        """

        def __init__(self, config: Any) -> None:
            super().__init__(config)
            self.ready = threading.Event()
            self.error: BaseException | None = None
            self.loop: asyncio.AbstractEventLoop | None = None  # set on its loop

        async def serve_marked(self, sockets: list[socket.socket]) -> None:
            self.loop = asyncio.get_running_loop()
            # Its connections' callbacks, and the tasks of their requests,
            # run in copies of this task's context: marked once here, a
            # request finds its loop's mark there (appstate.enter).
            appstate.enter()
            try:
                await self.serve(sockets=sockets)
            except BaseException as exc:
                if not self.ready.is_set():
                    self.error = exc
                raise
            finally:
                self.ready.set()

        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets=sockets)
            self.ready.set()

        async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
            if self.force_exit:
                self._cancel_requests()
            await super().shutdown(sockets=sockets)

        def force(self) -> None:
            self.should_exit = self.force_exit = True
            loop = self.loop
            if loop is not None:
                with contextlib.suppress(RuntimeError):  # its loop has closed
                    loop.call_soon_threadsafe(self._cancel_requests)

        def _cancel_requests(self) -> None:
            for task in list(self.server_state.tasks):
                task.cancel("loopgrid.web: forced stop")

    return MarkedServer


def make_server(app: Any, grace: float, stopping: bool, options: dict[str, Any]) -> Any:
    """A :class:`MarkedServer` for ``app`` with uvicorn ``options``: no lifespan
    (loopgrid runs it, ``lifespan.py``), ``grace`` as its graceful timeout, and
    stopped at once if the server is already ``stopping``."""
    # The app uvicorn serves is always loopgrid's ASGI 3 wrapper (a user's
    # ASGI 2 or WSGI app is adapted before it: web/command.py), which may
    # be a plain callable returning an awaitable: uvicorn's guess ("auto")
    # would take that for ASGI 2.
    config = import_uvicorn().Config(
        app,
        lifespan="off",
        timeout_graceful_shutdown=grace,
        **{**options, "interface": "asgi3"},
    )
    server = server_class()(config)
    server.should_exit = stopping
    return server
