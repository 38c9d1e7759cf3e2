"""The ASGI lifespan protocol, run by loopgrid instead of by uvicorn.

Why not let uvicorn run it: uvicorn runs lifespan on the loop of each server,
so with one server per loop an app's startup ran once per loop, and a startup
that failed on one loop ended that server only while the process went on
serving from the others. loopgrid runs lifespan itself, before any server
accepts a connection:

* ``lifespan="loop"`` (the default): once on every loop that runs the
  app's code (each worker, and each front loop that runs short requests
  itself), all at once, each with its own lifespan ``state`` and its own
  ``app.state`` (``appstate.py``); each request sees the state of the loop
  that runs it. Objects bound to one event loop (a database pool, an httpx
  or aiohttp client, an ``asyncio.Lock``) are then fine there: each loop has
  its own, as each process of ``uvicorn --workers N`` has.
* ``lifespan="shared"`` (``"process"`` is the old name): once, on worker 0;
  its state is shared by the requests of every loop, so it may hold only
  loop-free objects (plain data, thread-safe clients, loopgrid's
  primitives): the server refuses to start when it finds one bound to a
  loop there (``loopgrid.loopbound``).
* ``lifespan="off"``: never.

An app that raises before it has received ``lifespan.startup`` does not speak
the protocol (a bare ASGI callable that only knows ``http``): it is served
without lifespan, as uvicorn's ``lifespan="auto"`` does (with
``require_lifespan``, uvicorn's ``"on"``, that is a failure too). Any other failure
(``lifespan.startup.failed``, or an exception once startup began) stops the
whole server with :class:`~loopgrid.web.StartupError`, naming the loop.

Thread ownership: each :class:`_Lifespan` is driven by the thread that starts
and stops the server (a plain thread); its app coroutine runs on one loop (a
grid task pinned to a worker, or a task of a front loop: a :data:`Place`).
The two talk only through two :class:`loopgrid.Queue`
objects, which are safe across threads and loops; ``_received_startup`` is
written by the app's task before it puts its reply and read by the driver
after it got that reply (the queue's lock orders the two).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Sequence
from typing import TYPE_CHECKING, Any

from .. import logs
from ..errors import LoopgridError
from ..sync import Queue

if TYPE_CHECKING:
    from ..grid import Grid

__all__ = ["MODES", "Place", "StartupError", "check_mode", "run_shutdown", "run_startup", "workers"]

#: The values of ``lifespan=``.
MODES = ("loop", "shared", "off")

#: Where a lifespan can run: a label ("worker 0") and a function that starts a
#: coroutine function (and a task name) on that loop.
Place = tuple[str, Callable[[Callable[[], Coroutine[Any, Any, None]], str], object]]

#: How long a driver waits for an app's reply to lifespan.shutdown before it
#: gives up on it (the app's task is then cancelled with the grid).
_SHUTDOWN_WAIT = 30.0

_ENDED = "loopgrid.lifespan.ended"


class StartupError(LoopgridError, RuntimeError):
    """The server could not start: an app's lifespan startup failed, or the
    address could not be bound. Nothing was served."""


def check_mode(mode: object) -> str:
    """The lifespan mode, with the old name ``"process"`` read as ``"shared"``."""
    if mode == "process":
        return "shared"
    if mode not in MODES:
        raise ValueError(f"lifespan must be one of {MODES}, got {mode!r}")
    return str(mode)


def workers(grid: Grid) -> list[Place]:
    """The places of a grid's workers, in order."""

    def on(i: int) -> Callable[[Callable[[], Coroutine[Any, Any, None]], str], object]:
        return lambda fn, name: grid.spawn(fn, worker=i, name=name)

    return [(f"worker {i}", on(i)) for i in range(len(grid.workers))]


class _Lifespan:
    """One run of an app's lifespan protocol, on one loop."""

    def __init__(self, app: Any, place: Place, state: dict[str, Any], required: bool) -> None:
        self.app = app
        self.where, start = place
        self.state = state
        #: An app that does not speak the protocol is an error (uvicorn's "on").
        self.required = required
        self.started = False
        self._received_startup = False
        self._to_app: Queue[dict[str, Any]] = Queue()
        self._from_app: Queue[dict[str, Any]] = Queue()
        self._to_app.put_nowait({"type": "lifespan.startup"})
        #: The task running the protocol, held here: asyncio keeps only weak
        #: references to tasks, and an app that waits on something nothing
        #: else holds (``await asyncio.Event().wait()``) would otherwise be
        #: garbage-collected mid-startup, its coroutine closed.
        self._task: asyncio.Task[None] | None = None
        start(self._main, f"lifespan on {self.where}")

    async def _main(self) -> None:
        self._task = asyncio.current_task()
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
                f"the app's lifespan startup failed on {self.where}: "
                f"{reply.get('message') or '(no message)'}"
            )
        if kind == _ENDED and not self._received_startup:
            if self.required:
                exc = reply.get("exception")
                raise StartupError(
                    f"the app does not support the ASGI lifespan protocol (on {self.where} it "
                    f"ended with {exc!r} before receiving lifespan.startup), and lifespan is "
                    "required ('--lifespan on'): use '--lifespan auto' to serve it without"
                ) from exc
            logs.info("web.lifespan_unsupported", where=self.where, app=repr(self.app))
            return
        exc = reply.get("exception")
        if kind == _ENDED and exc is not None:
            raise StartupError(
                f"the app's lifespan startup raised on {self.where}: {exc!r}"
            ) from exc
        raise StartupError(
            f"the app's lifespan startup on {self.where} sent {kind!r} "
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
            logs.error("web.lifespan_shutdown_timeout", where=self.where, waited=_SHUTDOWN_WAIT)
            return
        ended_quietly = reply["type"] == _ENDED and reply.get("exception") is None
        if reply["type"] != "lifespan.shutdown.complete" and not ended_quietly:
            logs.error(
                "web.lifespan_shutdown_failed",
                where=self.where,
                reply=reply["type"],
                message=reply.get("message") or repr(reply.get("exception")),
            )


def run_startup(
    app: Any, mode: str, places: Sequence[Place], required: bool = False
) -> tuple[list[_Lifespan], list[dict[str, Any]]]:
    """Run lifespan startup as ``mode`` says; returns the runs and each place's state.

    All runs start at once (one per place with ``"loop"``, on the first place
    with ``"shared"``). If any fails, the ones that started are shut down
    again and StartupError is raised; with ``required``, an app that does not
    speak the protocol fails too (uvicorn's ``lifespan="on"``).
    """
    if mode == "off":
        return [], [{} for _ in places]
    if mode == "shared":
        shared: dict[str, Any] = {}
        runs = [_Lifespan(app, places[0], shared, required)]
        states = [shared] * len(places)
    else:
        states = [{} for _ in places]
        runs = [
            _Lifespan(app, place, state, required)
            for place, state in zip(places, states, strict=True)
        ]
    failure: BaseException | None = None
    for run in runs:
        try:
            run.wait_started()
        except Exception as exc:
            failure = failure or exc  # the other runs still get to answer
        except BaseException as exc:  # Ctrl-C: stop waiting for the others
            failure = exc
            break
    if failure is not None:
        run_shutdown(runs)
        raise failure
    return runs, states


def run_shutdown(runs: Sequence[_Lifespan]) -> None:
    """Shut every started run down, all at once, and wait for their replies."""
    asked = [r for r in runs if r.send_shutdown()]
    for run in asked:
        run.wait_shut_down()
