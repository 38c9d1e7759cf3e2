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
  by a callback, say ``loop.call_soon(sys.exit)``) stops that loop, as it stops
  asyncio's; ``run()`` then raises it, not the ``CancelledError`` the main
  task got from the loop's shutdown.
* ``close()`` (and leaving ``with``, and the end of ``loopgrid.run``) does what
  ``asyncio.Runner.close`` does on every worker loop at once: cancel the tasks
  left (grid tasks and plain asyncio tasks), wait for them, report those that
  raised instead of ending cancelled to the loop's exception handler
  ("unhandled exception during loopgrid.run() shutdown"), shut down async
  generators, then the default executor (with asyncio's timeout from 3.12);
  then the grid closes and every worker thread has exited. A SIGINT while
  ``close()`` waits (a task that will not end) raises ``KeyboardInterrupt``
  out of it, as out of asyncio's; the grid's threads are then left to the
  process's exit (they are daemon threads).

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
import signal
import sys
import threading
from collections.abc import AsyncGenerator, Callable, Coroutine
from types import FrameType
from typing import Any, TypeVar

from .deadlock import handle_of
from .grid import Grid
from .handle import Handle, _wait
from .worker import Worker

__all__ = ["Runner", "run"]

T = TypeVar("T")

#: What asyncio.Runner.close gives the default executor to shut down (3.12+).
_EXECUTOR_TIMEOUT: float | None = 300.0 if sys.version_info >= (3, 12) else None
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
        #: A SystemExit or KeyboardInterrupt that escaped a worker loop.
        self._loop_exit: BaseException | None = None
        #: Set when the main task ends or a worker loop dies.
        self._wake = threading.Event()
        #: One async generator per worker loop (see _watch).
        self._watches: list[AsyncGenerator[None, None]] = []
        #: The workers whose loop such an exception stopped.
        self._dead: set[Worker] = set()

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
            for w in grid.workers:
                w.loop.call_soon_threadsafe(self._start_watch, w)
            self._grid = grid
            self._context = contextvars.copy_context()
        return self._grid

    def get_grid(self) -> Grid:
        """The runner's grid (created on first use)."""
        return self._lazy_init()

    def get_loop(self) -> asyncio.AbstractEventLoop:
        """Worker 0's loop, where ``run()`` runs the main coroutine."""
        return self._lazy_init().workers[0].loop

    def run(self, coro: Coroutine[Any, Any, T], *, context: contextvars.Context | None = None) -> T:
        """Run ``coro`` on worker 0 and return its result (see the module doc)."""
        if not asyncio.iscoroutine(coro):
            raise ValueError(f"a coroutine was expected, got {coro!r}")
        if asyncio._get_running_loop() is not None:
            # As asyncio: fail fast, and leave the coroutine to warn that it
            # was never awaited.
            raise RuntimeError("Runner.run() cannot be called from a running event loop")
        grid = self._lazy_init()
        if context is None:
            context = self._context
        wake = self._wake = threading.Event()
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
            if self._loop_exit is not None:
                self._join_dead()
                raise self._loop_exit
            try:
                return main.result()
            except asyncio.CancelledError:
                died = self._loop_died(grid.workers[0])
                if died is not None:
                    self._join_dead()
                    raise died from None
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
        self._interrupt_count += 1
        if self._interrupt_count == 1:
            if box and not box[0].done():
                self._cancel_main_soon(box[0])
            if not box or not box[0].done():
                return
        raise KeyboardInterrupt()

    def _cancel_main_soon(self, main: Handle[Any]) -> None:
        grid = self._grid
        assert grid is not None
        try:
            grid.workers[0].loop.call_soon_threadsafe(self._cancel_main, main)
        except RuntimeError:  # worker 0's loop died: run() reports that
            pass

    def _cancel_main(self, main: Handle[Any]) -> None:
        """Cancel the main task from its own loop (worker 0), keeping its task."""
        self._cancelled_task = main._task
        main.cancel()

    # -- worker loops that die --------------------------------------------------

    def _start_watch(self, w: Worker) -> None:
        """Start a watching async generator on ``w``'s loop (its thread).

        A worker loop stopped by an exception out of a callback is shut down by
        its thread (worker.py) inside a ``finally``, with that exception in
        flight: its ``shutdown_asyncgens`` closes this generator there, which
        sees the exception with ``sys.exc_info()``.
        """
        gen = self._watch(w)
        step = gen.__anext__()
        try:
            step.send(None)
        except StopIteration:
            pass
        self._watches.append(gen)

    async def _watch(self, w: Worker) -> AsyncGenerator[None, None]:
        try:
            yield
        except GeneratorExit:
            pass
        self._note_loop_exit(w, sys.exc_info()[1])

    def _note_loop_exit(self, w: Worker, exc: BaseException | None) -> bool:
        """Record that ``exc`` stopped ``w``'s loop, if it is such an exception."""
        if not isinstance(exc, (SystemExit, KeyboardInterrupt)):
            return False
        self._dead.add(w)
        if self._loop_exit is None:
            self._loop_exit = exc
            self._wake.set()
        return True

    def _join_dead(self) -> None:
        # The dying threads raise the same exception object: let them finish
        # with it (they are shutting their loop down) before it is raised here.
        for w in list(self._dead):
            w.thread.join()

    def _loop_died(self, w: Worker) -> BaseException | None:
        """The exception that stopped ``w``'s loop, if one did (waits to know)."""
        wake = self._wake = threading.Event()
        if self._loop_exit is not None:
            return self._loop_exit

        def probe() -> None:
            # Run by the loop's shutdown, inside the worker's ``finally``, if the
            # loop died: the exception is then this thread's one in flight.
            self._note_loop_exit(w, sys.exc_info()[1])
            wake.set()

        try:
            w.loop.call_soon_threadsafe(probe)
        except RuntimeError:
            return self._loop_exit  # closed: its shutdown ran the watch before
        # Either the probe runs, or the loop is past its last run, and then its
        # shutdown ran the watch, which set the event too.
        _wait(wake, None)
        return self._loop_exit

    # -- closing ------------------------------------------------------------------

    def close(self) -> None:
        """Finish every worker loop as ``asyncio.Runner.close`` does, then the grid."""
        if self._closed:
            return
        grid, self._grid = self._grid, None
        self._closed = True
        if grid is None:
            return
        futures = []
        for w in grid.workers:
            if w in self._dead:
                continue  # its thread shut it down already
            coro = _finish_loop(functools.partial(self._note_loop_exit, w))
            try:
                futures.append(asyncio.run_coroutine_threadsafe(coro, w.loop))
            except RuntimeError:
                coro.close()  # closed: it died, and its thread shut it down
        # A SIGINT here (a task that will not end) raises KeyboardInterrupt out
        # of the wait, as out of asyncio.Runner.close, which abandons its loop;
        # the grid's threads are daemon threads, left to the process's exit.
        for f in futures:
            _wait_future(f)
        for w in self._dead:
            # Until the grid copes with a worker whose loop died (its close
            # calls that loop's call_soon_threadsafe, which raises once it is
            # closed): once the thread is gone, give the worker a loop that
            # never runs, for the grid's close to post to, then close it.
            w.thread.join()
            if w.loop.is_closed():
                w.loop = asyncio.new_event_loop()
        try:
            grid.close(cancel=True)
        finally:
            for w in self._dead:
                w.loop.close()


def _wait_future(f: concurrent.futures.Future[None]) -> None:
    done = threading.Event()
    f.add_done_callback(lambda _: done.set())
    _wait(done, None)


async def _finish_loop(dying: Callable[[BaseException | None], bool]) -> None:
    """``asyncio.Runner.close`` on this worker loop, short of closing it."""
    if dying(sys.exc_info()[1]):
        return  # run by the shutdown of a loop that died: that shutdown does it
    loop = asyncio.get_running_loop()
    me = asyncio.current_task()
    tasks = [(t, handle_of(t)) for t in asyncio.all_tasks(loop) if t is not me]
    if tasks:
        for t, h in tasks:
            if h is not None:
                h.cancel()  # past any pause
            else:
                t.cancel()
        await asyncio.gather(*(t for t, _ in tasks), return_exceptions=True)
        for t, h in tasks:
            exc: BaseException | None
            if h is not None:
                if h.cancelled():
                    continue
                exc = h.exception()
            else:
                if t.cancelled():
                    continue
                exc = t.exception()
            if exc is not None:
                loop.call_exception_handler(
                    {"message": _SHUTDOWN_MESSAGE, "exception": exc, "task": t if h is None else h}
                )
    await loop.shutdown_asyncgens()
    if _EXECUTOR_TIMEOUT is not None:
        await loop.shutdown_default_executor(_EXECUTOR_TIMEOUT)  # type: ignore[call-arg,unused-ignore]
    else:
        await loop.shutdown_default_executor()


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
        raise ValueError(f"a coroutine was expected, got {main!r}")
    with Runner(loops=loops, debug=debug, loop_factory=loop_factory) as runner:
        return runner.run(main)
