"""The drop-in runner: ``loopgrid.run`` and ``loopgrid.Runner``.

They mirror :func:`asyncio.run` and :class:`asyncio.Runner` of the running
Python, point by point, with worker 0 of a grid in the place of the one loop:

* ``Runner(debug=, loop_factory=)`` makes every worker loop with
  ``loop_factory`` (default :func:`~loopgrid.grid.default_loop_factory`) and
  sets its debug mode; ``get_loop()`` is worker 0's loop, ``get_grid()`` the
  grid. The grid is made on first use; a closed runner raises ``RuntimeError``.
* ``run(coro, *, context=None)`` runs ``coro`` on worker 0 in ``context``, or
  in the runner's own :class:`contextvars.Context` (copied when the grid is
  made, and kept across calls). Anything but a coroutine is a ``ValueError``;
  a call from a thread that runs an event loop raises ``RuntimeError`` and
  leaves the coroutine alone (it warns "never awaited", as asyncio's does).
* Ctrl-C, from 3.11 (as ``asyncio.Runner``): while ``run()`` waits on the main
  thread with Python's default SIGINT handler in place, a handler of its own is
  installed. The first SIGINT cancels the main task; if it then ends cancelled
  and that cancellation was not undone (``Task.uncancel``), ``run()`` raises
  ``KeyboardInterrupt``. A later SIGINT raises ``KeyboardInterrupt`` at once
  (the main task is left to ``close()``). On 3.10, as ``asyncio.run`` there,
  nothing is installed: SIGINT raises ``KeyboardInterrupt`` out of ``run()``
  and ``close()`` cancels the main task with the rest.
* A ``SystemExit`` or ``KeyboardInterrupt`` that escapes a worker loop (raised
  by a callback, say ``loop.call_soon(sys.exit)``, on any worker) stops that
  loop, as it stops asyncio's: ``run()`` raises it at once, as
  ``asyncio.run`` does, whether or not the main task has ended. The dead
  worker's thread finishes its loop as ``asyncio.run`` would (its tasks
  cancelled and awaited, async generators and executor shut down); the other
  workers go on, the main task too, until ``close()``. A later ``run()``
  on that runner raises ``RuntimeError``: close it and make another.
* ``close()`` (and leaving ``with``, and the end of ``loopgrid.run``) does what
  ``asyncio.Runner.close`` does on every worker loop at once: cancel the tasks
  left (grid tasks and plain asyncio tasks), wait for them, report those that
  raised instead of ending cancelled to the loop's exception handler
  ("unhandled exception during loopgrid.run() shutdown"), shut down async
  generators, then the default executor (with asyncio's timeout from 3.12);
  then the grid closes and every worker thread has exited. A SIGINT while
  ``close()`` waits (a task that will not end) raises ``KeyboardInterrupt``
  out of it, as out of asyncio's, which gives up on its loop: here every
  loop gives up on the tasks left (their handles end cancelled, their
  coroutines closed), closes, and its thread is joined before the
  ``KeyboardInterrupt`` propagates. So the same number of Ctrl-C ends the
  process as with asyncio, and no loopgrid thread outlives ``close()``
  (short of a callback that blocks its thread for ever).

What a grid cannot do: there is one loop per worker, so no loop is made the
thread's current event loop (``asyncio.set_event_loop`` / the event-loop
policy are not called, and ``asyncio.get_event_loop()`` on the calling thread
is untouched); the main task runs while the calling thread waits rather than
on it, so after ``KeyboardInterrupt`` it goes on running until ``close()``;
and ``SystemExit`` raised inside a task other than the main task ends that
task only (it is that handle's exception), where it would stop asyncio's loop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import functools
import inspect
import signal
import sys
import threading
from collections.abc import Callable, Coroutine
from types import FrameType
from typing import Any, TypeVar

from .grid import Grid
from .handle import Handle, _wait
from .worker import _finish_loop

__all__ = ["Runner", "run"]

T = TypeVar("T")

#: asyncio.Runner installs its SIGINT handler from 3.11; 3.10 has no Runner.
_SIGINT_HANDLER = sys.version_info >= (3, 11)
_SHUTDOWN_MESSAGE = "unhandled exception during loopgrid.run() shutdown"


class Runner:
    """A grid that runs one main coroutine at a time, like ``asyncio.Runner``."""

    def __init__(
        self,
        *,
        loops: int | None = None,
        debug: bool | None = None,
        loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None,
    ) -> None:
        self._loops = loops
        self._debug = debug
        self._loop_factory = loop_factory
        self._grid: Grid | None = None
        self._closed = False
        self._context: contextvars.Context | None = None
        self._interrupt_count = 0
        #: The asyncio task of the main handle the first SIGINT cancelled.
        self._cancelled_task: asyncio.Task[Any] | None = None
        #: What the calling thread waits on (in run() and close()): set when
        #: what it waits for ends, and when a worker loop dies (by the grid,
        #: on that worker's thread: see _lazy_init).
        self._wake = threading.Event()

    def __enter__(self) -> Runner:
        self._lazy_init()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _lazy_init(self) -> Grid:
        if self._closed:
            raise RuntimeError("Runner is closed")
        if self._grid is None:
            grid = Grid(self._loops, loop_factory=self._loop_factory, debug=self._debug)
            grid._exit_watchers.append(self._wake_up)
            self._grid = grid
            self._context = contextvars.copy_context()
        return self._grid

    def _wake_up(self) -> None:
        self._wake.set()

    def get_grid(self) -> Grid:
        """The runner's grid (created on first use)."""
        return self._lazy_init()

    def get_loop(self) -> asyncio.AbstractEventLoop:
        """Worker 0's loop, where ``run()`` runs the main coroutine."""
        return self._lazy_init().workers[0].loop

    def run(self, coro: Coroutine[Any, Any, T], *, context: contextvars.Context | None = None) -> T:
        """Run ``coro`` on worker 0 and return its result (see the module doc)."""
        if not asyncio.iscoroutine(coro):
            raise ValueError(_not_a_coroutine(coro))
        if asyncio._get_running_loop() is not None:
            # As asyncio: fail fast, and leave the coroutine to warn that it
            # was never awaited.
            raise RuntimeError("Runner.run() cannot be called from a running event loop")
        try:
            grid = self._lazy_init()
        except BaseException:
            coro.close()  # a bad argument of the runner's: one error, not also a warning
            raise
        if context is None:
            context = self._context
        # Before the look below: a worker dying after it wakes this event.
        wake = self._wake = threading.Event()
        _check_alive(grid)
        self._interrupt_count = 0
        self._cancelled_task = None
        # Installed before the main task can start, so that a SIGINT is never
        # met by the default handler once main runs; the handler finds main in
        # ``box`` (empty for the instant before it is spawned).
        box: list[Handle[T]] = []
        sigint_handler: Any = None
        if (
            _SIGINT_HANDLER
            and threading.current_thread() is threading.main_thread()
            and signal.getsignal(signal.SIGINT) is signal.default_int_handler
        ):
            sigint_handler = functools.partial(self._on_sigint, box=box)
            try:
                signal.signal(signal.SIGINT, sigint_handler)
            except ValueError:
                sigint_handler = None  # no signals on this "main thread" (gh-91880)
        try:
            main = grid.spawn(coro, worker=0, name="main", context=context)
            box.append(main)
            main.add_done_callback(lambda _: wake.set())
            if self._interrupt_count:  # a SIGINT came before main was in the box
                self._cancel_main_soon(main)
            _wait(wake, None)
            died = grid._worker_exit
            if died is not None:
                # As asyncio.run: what stopped a loop, not what the main task
                # got from that loop's finish (CancelledError, on worker 0).
                raise died
            try:
                return main.result()
            except asyncio.CancelledError:
                if self._interrupt_count > 0:
                    task = self._cancelled_task
                    uncancel = getattr(task, "uncancel", None)
                    if task is None or (uncancel is not None and uncancel() == 0):
                        raise KeyboardInterrupt() from None
                raise
        finally:
            if sigint_handler is not None and signal.getsignal(signal.SIGINT) is sigint_handler:
                signal.signal(signal.SIGINT, signal.default_int_handler)

    def _on_sigint(self, signum: int, frame: FrameType | None, box: list[Handle[Any]]) -> None:
        # asyncio.Runner._on_sigint, with the main task on another thread.
        # main.done() is read once: without the GIL, worker 0 may cancel
        # and finish main between two reads, and a second read would then
        # raise KeyboardInterrupt on top of the cancellation just asked for.
        self._interrupt_count += 1
        if self._interrupt_count == 1:
            if not box:
                return  # run() cancels main once it is spawned
            if not box[0].done():
                self._cancel_main_soon(box[0])
                return
        raise KeyboardInterrupt()

    def _cancel_main_soon(self, main: Handle[Any]) -> None:
        grid = self._grid
        assert grid is not None
        try:
            grid.workers[0].loop.call_soon_threadsafe(self._cancel_main, main)
        except RuntimeError:  # worker 0's loop died: run() raises what killed it
            pass

    def _cancel_main(self, main: Handle[Any]) -> None:
        """Cancel the main task from its own loop (worker 0), keeping its task."""
        self._cancelled_task = main._task
        main.cancel()

    def close(self) -> None:
        """Finish every worker loop as ``asyncio.Runner.close`` does, then the grid."""
        if self._closed:
            return
        grid, self._grid = self._grid, None
        self._closed = True
        if grid is None:
            return
        try:
            self._finish_loops(grid)
        except BaseException:
            # Interrupted (Ctrl-C) while tasks would not end: asyncio.Runner.close
            # then closes its loop with them pending. The grid gives up on them
            # likewise, and its close() below still joins every thread.
            grid._abandon()
            raise
        finally:
            grid.close(cancel=True)

    def _finish_loops(self, grid: Grid) -> None:
        """Run :func:`~loopgrid.worker._finish_loop` on every live worker loop at
        once (all loops still run, so tasks that wait on one another across
        loops while they are cancelled can end), and wait for them.

        A worker whose loop died finishes it by itself: it is not waited for
        here (the grid's close joins its thread), also if it dies meanwhile,
        with this finish perhaps never run.
        """
        futures: list[tuple[Any, concurrent.futures.Future[None]]] = []
        for w in grid.workers:
            if w._exit is not None:
                continue
            coro = _finish_loop(_SHUTDOWN_MESSAGE)
            try:
                futures.append((w, asyncio.run_coroutine_threadsafe(coro, w.loop)))
            except RuntimeError:
                coro.close()  # closed: it died just now
        while True:
            wake = self._wake = threading.Event()
            left = [f for w, f in futures if w._exit is None and not f.done()]
            if not left:
                return
            for f in left:
                f.add_done_callback(functools.partial(_set_event, wake))
            _wait(wake, None)


def _check_alive(grid: Grid) -> None:
    died = grid._worker_exit
    if died is not None:
        dead = [w.index for w in grid.workers if w._exit is not None]
        raise RuntimeError(
            f"the runner's grid {grid.name!r} lost worker {dead[0]} to {died!r} in an earlier "
            "run(): close the runner (leave its 'with' block) and make a new one"
        )


def _set_event(event: threading.Event, _: object) -> None:
    event.set()


def run(
    main: Coroutine[Any, Any, T],
    *,
    loops: int | None = None,
    debug: bool | None = None,
    loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None,
) -> T:
    """Run ``main`` on a fresh grid of ``loops`` event loops and return its result.

    The grid is closed on the way out: see :class:`Runner` and the module doc.
    """
    if asyncio._get_running_loop() is not None:
        raise RuntimeError("loopgrid.run() cannot be called from a running event loop")
    if not asyncio.iscoroutine(main):  # before any thread starts
        raise ValueError(_not_a_coroutine(main))
    try:
        runner = Runner(loops=loops, debug=debug, loop_factory=loop_factory)
        runner.get_grid()  # made here, so that a bad argument fails before main runs
    except BaseException:
        main.close()  # a bad argument: one error, not also a "never awaited" warning
        raise
    with runner:
        return runner.run(main)


def _not_a_coroutine(obj: object) -> str:
    """asyncio's message, and the fix when ``obj`` is an async function."""
    message = f"a coroutine was expected, got {obj!r}"
    if inspect.iscoroutinefunction(obj):
        name = getattr(obj, "__name__", "main")
        message += f": call it, as in run({name}())"
    return message
