"""The ASGI lifespan protocol, run by loopgrid instead of by uvicorn.

Why not let uvicorn run it: uvicorn runs lifespan on the loop of each server,
so with one server per loop an app's startup ran once per loop, and a startup
that failed on one loop ended that server only while the process went on
serving from the others. loopgrid runs lifespan itself, before any server
accepts a connection:

* ``lifespan="process"`` (the default): once, on worker 0. The app's
  ``state`` is shared by the requests of every loop, so whatever startup puts
  there must be safe to use from several threads and loops (see the README:
  plain data, thread-safe clients, loopgrid's primitives; not an object bound
  to one event loop, such as an ``asyncio.Lock`` after first use, an aiohttp
  session or most database pools).
* ``lifespan="loop"``: once per worker loop, each with its own ``state``;
  each request sees the state of the worker that runs it, so loop-bound
  objects are fine there.
* ``lifespan="off"``: never.

An app that raises before it has received ``lifespan.startup`` does not speak
the protocol (a bare ASGI callable that only knows ``http``): it is served
without lifespan, as uvicorn's ``lifespan="auto"`` does. Any other failure
(``lifespan.startup.failed``, or an exception once startup began) stops the
whole server with :class:`~loopgrid.web.StartupError`, naming the worker.

Thread ownership: each :class:`_Lifespan` is driven by the thread that starts
and stops the server (a plain thread); its app coroutine runs as a grid task
pinned to one worker. The two talk only through two :class:`loopgrid.Queue`
objects, which are safe across threads and loops; ``_received_startup`` is
written by the app's task before it puts its reply and read by the driver
after it got that reply (the queue's lock orders the two).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .. import logs
from ..errors import LoopgridError
from ..sync import Queue

if TYPE_CHECKING:
    from ..grid import Grid

__all__ = ["MODES", "StartupError", "run_shutdown", "run_startup"]

#: The values of ``lifespan=``.
MODES = ("process", "loop", "off")

#: How long a driver waits for an app's reply to lifespan.shutdown before it
#: gives up on it (the app's task is then cancelled with the grid).
_SHUTDOWN_WAIT = 30.0

_ENDED = "loopgrid.lifespan.ended"


class StartupError(LoopgridError, RuntimeError):
    """The server could not start: an app's lifespan startup failed, or the
    address could not be bound. Nothing was served."""


class _Lifespan:
    """One run of an app's lifespan protocol, on one worker of a grid."""

    def __init__(self, app: Any, grid: Grid, worker: int, state: dict[str, Any]) -> None:
        self.app = app
        self.worker = worker
        self.state = state
        self.started = False
        self._received_startup = False
        self._to_app: Queue[dict[str, Any]] = Queue()
        self._from_app: Queue[dict[str, Any]] = Queue()
        self._to_app.put_nowait({"type": "lifespan.startup"})
        grid.spawn(self._main, worker=worker, name=f"lifespan-{worker}")

    async def _main(self) -> None:
        scope = {
            "type": "lifespan",
            "asgi": {"version": "3.0", "spec_version": "2.0"},
            "state": self.state,
        }
        try:
            await self.app(scope, self._receive, self._send)
        except BaseException as exc:
            self._from_app.put_nowait({"type": _ENDED, "exception": exc})
            if not isinstance(exc, Exception):
                raise
        else:
            self._from_app.put_nowait({"type": _ENDED, "exception": None})

    async def _receive(self) -> dict[str, Any]:
        message = await self._to_app.get()
        if message["type"] == "lifespan.startup":
            self._received_startup = True
        return message

    async def _send(self, message: dict[str, Any]) -> None:
        self._from_app.put_nowait(dict(message))

    def wait_started(self) -> None:
        """Block until the app answered startup; raise StartupError if it failed."""
        reply = self._from_app.get_blocking()
        kind = reply["type"]
        if kind == "lifespan.startup.complete":
            self.started = True
            return
        if kind == "lifespan.startup.failed":
            raise StartupError(
                f"the app's lifespan startup failed on worker {self.worker}: "
                f"{reply.get('message') or '(no message)'}"
            )
        if kind == _ENDED and not self._received_startup:
            logs.info("web.lifespan_unsupported", worker=self.worker, app=repr(self.app))
            return
        exc = reply.get("exception")
        if kind == _ENDED and exc is not None:
            raise StartupError(
                f"the app's lifespan startup raised on worker {self.worker}: {exc!r}"
            ) from exc
        raise StartupError(
            f"the app's lifespan startup on worker {self.worker} sent {kind!r} "
            "instead of 'lifespan.startup.complete'"
        )

    def send_shutdown(self) -> bool:
        """Ask a started app to shut down; False if it had not started."""
        if not self.started:
            return False
        self.started = False
        self._to_app.put_nowait({"type": "lifespan.shutdown"})
        return True

    def wait_shut_down(self) -> None:
        """Wait for the app's reply to lifespan.shutdown; log a failure."""
        try:
            reply = self._from_app.get_blocking(timeout=_SHUTDOWN_WAIT)
        except TimeoutError:
            logs.error("web.lifespan_shutdown_timeout", worker=self.worker, waited=_SHUTDOWN_WAIT)
            return
        ended_quietly = reply["type"] == _ENDED and reply.get("exception") is None
        if reply["type"] != "lifespan.shutdown.complete" and not ended_quietly:
            logs.error(
                "web.lifespan_shutdown_failed",
                worker=self.worker,
                reply=reply["type"],
                message=reply.get("message") or repr(reply.get("exception")),
            )


def run_startup(
    app: Any, grid: Grid, mode: str, process_state: dict[str, Any]
) -> tuple[list[_Lifespan], list[dict[str, Any]]]:
    """Run lifespan startup as ``mode`` says; returns the runs and each worker's state.

    All runs start at once (one per worker with ``"loop"``). If any fails, the
    ones that started are shut down again and StartupError is raised.
    """
    n = len(grid.workers)
    if mode == "off":
        return [], [process_state] * n
    if mode == "process":
        runs = [_Lifespan(app, grid, 0, process_state)]
        states = [process_state] * n
    else:
        states = [{} for _ in range(n)]
        runs = [_Lifespan(app, grid, i, states[i]) for i in range(n)]
    failure: BaseException | None = None
    for run in runs:
        try:
            run.wait_started()
        except BaseException as exc:
            failure = failure or exc
    if failure is not None:
        run_shutdown(runs)
        raise failure
    return runs, states


def run_shutdown(runs: Sequence[_Lifespan]) -> None:
    """Shut every started run down, all at once, and wait for their replies."""
    asked = [r for r in runs if r.send_shutdown()]
    for run in asked:
        run.wait_shut_down()
