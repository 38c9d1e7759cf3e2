"""The grid: workers' lifecycle, task placement, and shutdown.

A :class:`Grid` owns N workers (event loops on threads) and the injection
queue. ``spawn`` decides where a task goes: pinned tasks to their worker's
pinned queue; spawns from one of the grid's own worker threads to that worker's
local queue (cheap, cache-warm, stealable); spawns from anywhere else (plain
threads, foreign event loops, other grids) to the injection queue, which every
dispatcher looks at on each turn.

Shutdown must lose nothing. The grid counts spawned and finished tasks with
counters that each have a single writer (a worker's own counters, written on
its thread; the grid's ``_ext_*`` counters, written under ``_ext_lock`` by other
threads). ``close`` waits until finished equals spawned, reading the finished
counters first: since every counter only grows and a task is counted spawned
before it is counted finished, an equal reading proves that, at that moment,
no task was pending or running.

A worker's loop can die: what asyncio lets out of ``run_forever`` (a
``SystemExit`` or ``KeyboardInterrupt`` raised by a callback) stops it for
good. Its thread then finishes that loop as ``asyncio.run`` would, and the
grid goes on with the other workers (``Worker._die``); ``Runner.run()``
raises the exception. And a task may never end, swallowing every
cancellation: an interrupted ``close`` gives up on it (``_abandon``).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import contextvars
import inspect
import itertools
import os
import sys
import sysconfig
import threading
import time
import traceback
import types
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, TypeVar, overload

from . import fork, logs
from .core import ACCEPT_ALL, ACCEPT_NONE, SchedulingCore
from .debug import DebugServer, debug_port_from_env
from .errors import (
    GridClosedError,
    NotOnGridError,
    WorkerDiedError,
    check_seconds,
    refuse_keywords,
)
from .handle import Handle
from .idle import Idle, spin_limit
from .integrations import anyio_hook
from .monitor import Monitor
from .priority import Priority, check_priority
from .stats import snapshot
from .trace import Tracer
from .worker import Worker, _current

__all__ = ["Grid", "current_grid", "default_loop_factory", "spawn"]

T = TypeVar("T")

#: The most loops a grid may have: each is an OS thread, and a count beyond
#: this is a mistake (10**20 once raised an OverflowError naming nothing).
MAX_LOOPS = 4096

_FREE_THREADED = bool(sysconfig.get_config_var("Py_GIL_DISABLED"))
_grid_names = itertools.count(1)
_CO_COROUTINE = inspect.CO_COROUTINE
_FunctionType = types.FunctionType
_copy_context = contextvars.copy_context
_NORMAL = Priority.NORMAL

#: The least time ``close(timeout=)`` waits for the worker threads once they
#: were told to stop (seconds). A worker that is not blocked exits within
#: milliseconds; on a busy machine it may take longer than a short timeout
#: meant for the tasks, and would be left behind, and logged, for nothing.
JOIN_GRACE = 5.0

atexit.register(logs.flush_unretrieved)


def default_loop_factory() -> Callable[[], asyncio.AbstractEventLoop]:
    """uvloop's loop when uvloop is installed, else asyncio's default loop.

    On a free-threaded build, asyncio's loop: uvloop does not declare itself
    safe without the GIL, so importing it would switch the GIL back on for the
    whole process, and its ``call_soon_threadsafe`` is not thread-safe there
    (uvloop#720), which every cross-loop wake-up relies on.
    """
    if _FREE_THREADED:
        return asyncio.new_event_loop
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop
    return uvloop.new_event_loop


def _debug_port(port: int | None) -> int | None:
    if port is None:
        return debug_port_from_env()
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ValueError(
            f"debug_port must be a port number (0 for any free port) or None, got {port!r}"
        )
    return port


def _is_async_callable(fn: Any) -> bool:
    code = getattr(fn, "__code__", None)
    if code is not None and code.co_flags & _CO_COROUTINE:
        return True
    if inspect.iscoroutinefunction(fn):
        return True
    # 3.10 and 3.11: what asyncio marks as a coroutine function (such as a
    # @loopgrid.task; from 3.12 inspect.markcoroutinefunction covers it).
    if sys.version_info < (3, 12) and asyncio.iscoroutinefunction(fn):
        return True
    call = getattr(type(fn), "__call__", None)  # noqa: B004
    return call is not None and inspect.iscoroutinefunction(call)


def _is_coroutine(obj: Any) -> bool:
    return type(obj) is types.CoroutineType or asyncio.iscoroutine(obj)


def _describe_target(fn: Any, args: tuple[Any, ...]) -> tuple[str, bool]:
    """Validate what spawn() was given (off the fast path).

    Returns a default task name and whether ``fn`` is a coroutine object.
    """
    if _is_coroutine(fn):
        if args:
            fn.close()
            raise TypeError(
                f"spawn() got the coroutine object {fn!r} and positional arguments {args!r}; "
                "pass either an async function with its arguments or a coroutine alone"
            )
        return str(getattr(fn, "__qualname__", repr(fn))), True
    if callable(fn):
        if _is_async_callable(fn):
            name = getattr(fn, "__qualname__", None)
            if name is None:
                inner = getattr(fn, "func", fn)  # functools.partial
                name = getattr(inner, "__qualname__", type(inner).__qualname__)
            return str(name), False
        raise TypeError(
            f"spawn() needs an async function or a coroutine object, got {fn!r}, which is a "
            "synchronous callable; run blocking code with asyncio.to_thread() inside a task"
        )
    if inspect.isawaitable(fn):
        raise TypeError(
            f"spawn() needs an async function or a coroutine object, got {fn!r}, an awaitable "
            "that is not a coroutine; wrap it in 'async def' or await it directly"
        )
    raise TypeError(f"spawn() needs an async function or a coroutine object, got {fn!r}")


class Grid(SchedulingCore):
    """A set of event loops, one per thread, sharing work by stealing.

    ``loops`` (default ``os.cpu_count()``) workers start at construction. Use the
    grid as a context manager (``with`` or ``async with``): leaving the block
    waits for every spawned task, as ``ThreadPoolExecutor`` does; if the block
    raised, the tasks are cancelled instead. ``aging`` (seconds, default 1.0;
    ``None`` turns it off) bounds how long a pending task can be passed over by
    higher priorities before it starts ahead of them.

    Observability (see ``monitor.py``, ``stats.py``, ``trace.py``): a worker
    whose loop does not come back to its event loop for ``stall_threshold``
    seconds (default 0.1; ``None`` turns the stall detector off) is logged as
    stalled, and its pending backlog moves to the other workers;
    ``task_timing=True`` times every task step (``stats(tasks=True)`` shows
    steps and time per task); ``debug_port`` (0 for any free port; default
    from the ``LOOPGRID_DEBUG_PORT`` environment variable, else off) serves
    ``stats()`` and the task list as JSON on 127.0.0.1 for ``loopgrid ps``
    and ``loopgrid top``.
    """

    def __init__(
        self,
        loops: int | None = None,
        *,
        loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None,
        name: str | None = None,
        aging: float | None = 1.0,
        debug: bool | None = None,
        stall_threshold: float | None = 0.1,
        task_timing: bool = False,
        debug_port: int | None = None,
    ) -> None:
        if loops is None:
            loops = os.cpu_count() or 1
        if type(loops) is not int:
            raise TypeError(f"loops must be an int >= 1 (or None: one per CPU), got {loops!r}")
        if not 1 <= loops <= MAX_LOOPS:
            raise ValueError(
                f"loops must be an int >= 1 and at most {MAX_LOOPS} (each is an OS thread), "
                f"got {loops!r}"
            )
        if loop_factory is None:
            loop_factory = default_loop_factory()
        elif not callable(loop_factory):
            raise TypeError(f"loop_factory must be callable or None, got {loop_factory!r}")
        if name is None:
            name = f"grid-{next(_grid_names)}"
        elif not isinstance(name, str):
            raise TypeError(f"name must be a str or None, got {name!r}")
        if aging is not None:
            aging = check_seconds("aging (or None)", aging)
        if stall_threshold is not None:
            stall_threshold = check_seconds("stall_threshold (or None)", stall_threshold)
        if not isinstance(task_timing, bool):
            raise TypeError(f"task_timing must be a bool, got {task_timing!r}")
        debug_port = _debug_port(debug_port)
        # Who writes what (any thread may read; reads without a lock are
        # snapshots): the scheduling state is the core's (core.py); set here,
        # read-only after:
        self._init_core(name, aging)
        self._loop_factory = loop_factory
        self._debug = debug
        self._task_timing = task_timing
        # The last all-asleep standstill reported (deadlock.py), so that each
        # is logged once; the monitor thread only.
        self._asleep_reported: tuple[int, ...] | None = None
        #: The first exception that escaped a worker loop and stopped it for
        #: good (see Worker._die); written once, by that worker's thread,
        #: under _ext_lock.
        self._worker_exit: BaseException | None = None
        #: Set once, under _ext_lock, when the last live worker died: the grid
        #: can run nothing more; spawns are refused and what is queued ends
        #: cancelled (see _worker_exited), so that no wait and no close()
        #: waits for ever on a task no worker will start.
        self._all_died = False
        #: Called (no arguments, on the dying worker's thread) when a worker
        #: loop dies: Runner.run() wakes up to raise its exception. Appended by
        #: any thread (atomic); with none, the grid logs the death as an error.
        self._exit_watchers: list[Callable[[], object]] = []
        #: Guards _not_ready (each worker counts itself ready once).
        self._ready_lock = threading.Lock()
        self._not_ready = loops
        self._all_ready = threading.Event()
        self._size = loops  # workers (with several, a turn takes a share of the injected)
        self._workers: tuple[Worker, ...] = tuple(Worker(self, i, loops) for i in range(loops))
        #: The parked workers (idle.py); its deque, non-empty, is the hint
        #: that some worker may be idle, read on every spawn.
        self._idle = Idle(self._workers)
        self._sleepers = self._idle.sleepers
        for w in self._workers:
            w.thread.start()
        self._all_ready.wait()
        failed = [w for w in self._workers if w._startup_error is not None]
        if failed:
            self._accept = ACCEPT_NONE
            for w in self._workers:
                if w._startup_error is None:
                    w._stop_soon()
            for w in self._workers:
                w.thread.join()
            self._closed = True
            raise failed[0]._startup_error  # type: ignore[misc]
        anyio_hook.grid_started()
        fork.track(self)
        self._monitor = Monitor(self, None if stall_threshold is None else float(stall_threshold))
        self._monitor.start()
        # Idle workers may spin once the monitor can watch what spawners leave
        # to the spinners (idle.py).
        self._idle.kick = self._monitor.kick
        self._idle.max_spinning = spin_limit()
        self._debug_server: DebugServer | None = None
        #: Called (any order, once) when the grid closes, after its workers
        #: stopped: servers attached to the grid stop with it. Appended by any
        #: thread (atomic), read by the closing thread.
        self._closers: list[Callable[[], object]] = []
        if debug_port is not None:
            try:
                self._debug_server = DebugServer(self, debug_port)
            except BaseException:
                self.close(cancel=True)
                raise
        logs.info("grid.started", grid=name, loops=loops, debug_url=self.debug_url)

    def _worker_ready(self, w: Worker) -> None:
        with self._ready_lock:
            self._not_ready -= 1
            if self._not_ready == 0:
                self._all_ready.set()

    def _worker_exited(self, w: Worker, exc: BaseException) -> None:
        """``exc`` escaped ``w``'s loop, which is dead (``w``'s thread, from Worker._die).

        The grid goes on with its other workers, as a process goes on when one
        of its threads ends; it is ``Runner.run()`` that raises ``exc``, as
        ``asyncio.run`` raises what escaped its loop. A bare grid has no one
        to raise it to: it says so in the log.
        """
        with self._ext_lock:
            if self._worker_exit is None:
                self._worker_exit = exc
            if all(x._exit is not None for x in self._workers):
                self._all_died = True
                self._accept = ACCEPT_NONE
        watchers = list(self._exit_watchers)
        (logs.info if watchers else logs.error)(
            "worker.died",
            grid=self.name,
            worker=w.index,
            error=repr(exc),
            hint="an exception that asyncio lets out of a loop (SystemExit or "
            "KeyboardInterrupt from a callback or a plain asyncio task) stopped this "
            "worker's loop; its tasks were cancelled, tasks pinned to it are cancelled, "
            "the other workers go on",
        )
        if self._all_died:
            self._cancel_queued(self._all_died_message())
        for fn in watchers:
            fn()

    def _all_died_message(self) -> str:
        return (
            f"every worker of {self!r} died (the first: {self._worker_exit!r}): it runs no "
            "more tasks; close it, and make a new grid"
        )

    def _refuse(self, fn: Any) -> None:
        if self._all_died and not self._closing:
            if asyncio.iscoroutine(fn):
                fn.close()
            raise WorkerDiedError(f"{self._all_died_message()} (got {fn!r})")
        super()._refuse(fn)

    @property
    def workers(self) -> tuple[Worker, ...]:
        return self._workers

    # -- spawning ---------------------------------------------------------------

    @overload
    def spawn(
        self,
        fn: Callable[..., Coroutine[Any, Any, T]],
        /,
        *args: Any,
        priority: Priority | int = ...,
        name: str | None = ...,
        worker: int | None = ...,
        context: contextvars.Context | None = ...,
    ) -> Handle[T]: ...

    @overload
    def spawn(
        self,
        fn: Coroutine[Any, Any, T],
        /,
        *,
        priority: Priority | int = ...,
        name: str | None = ...,
        worker: int | None = ...,
        context: contextvars.Context | None = ...,
    ) -> Handle[T]: ...

    def spawn(
        self,
        fn: Any,
        /,
        *args: Any,
        priority: Priority | int = _NORMAL,
        name: str | None = None,
        worker: int | None = None,
        context: contextvars.Context | None = None,
        **kwargs: Any,
    ) -> Handle[Any]:
        """Schedule ``fn(*args)`` (or a coroutine object) and return its handle.

        Positional arguments only, as in trio and ``loop.run_in_executor``: use
        ``functools.partial`` for keywords. An async function with its arguments
        is preferred to a coroutine object: its coroutine is created only when
        a worker starts it, so a task cancelled while pending costs nothing.
        ``worker=i`` pins the task to worker ``i``; pinned tasks are never stolen.
        The task runs in a copy of the caller's context (contextvars), or in
        ``context`` if given, as with ``asyncio.create_task``.
        """
        if kwargs:
            refuse_keywords("spawn", fn, kwargs)
        cur = _current.worker
        if cur is not None and cur.grid is not self:
            cur = None
        return self._spawn(cur, fn, args, priority, name, worker, context)

    def _spawn(
        self,
        cur: Worker | None,
        fn: Any,
        args: tuple[Any, ...],
        priority: Priority | int,
        name: str | None,
        worker: int | None,
        context: contextvars.Context | None = None,
    ) -> Handle[Any]:
        # cur: the calling thread's worker if it is one of ours, else None.
        if self._accept != ACCEPT_ALL and (cur is None or self._accept == ACCEPT_NONE):
            self._refuse(fn)
        if type(fn) is _FunctionType and fn.__code__.co_flags & _CO_COROUTINE:
            default_name = fn.__qualname__
            targs: tuple[Any, ...] | None = args
        else:
            default_name, is_coro = _describe_target(fn, args)
            targs = None if is_coro else args
        if priority is not _NORMAL or name is not None or worker is not None or context is not None:
            try:
                priority = check_priority(priority)
                if name is not None and not isinstance(name, str):
                    raise TypeError(f"name must be a str or None, got {name!r}")
                if worker is not None:
                    self._check_worker_index(worker)
                    if self._workers[worker]._exit is not None:
                        raise WorkerDiedError(self._workers[worker].died_message())
                if context is not None and not isinstance(context, contextvars.Context):
                    raise TypeError(
                        f"context must be a contextvars.Context or None, got {context!r}"
                    )
            except BaseException:
                if targs is None:
                    fn.close()  # never awaited, and no warning saying so
                raise
        h: Handle[Any] = self._new_handle(
            Handle,
            fn,
            targs,
            _copy_context() if context is None else context,
            default_name if name is None else name,
            priority,
            worker,
        )
        if cur is not None:
            cur.spawned += 1
            if worker is None:
                cur._push_local(h)
            else:
                self._workers[worker]._push_pinned(h)
        else:
            self._admit(h, fn)
            if worker is None:
                self._injection.push(h)
                self._injected()
            else:
                self._workers[worker]._push_pinned(h)
        if logs.DEBUG_EVENTS:
            logs.debug("task.spawned", task_id=h._id, task=h._name, priority=h._priority.name)
        return h

    def _wake_idle(self) -> None:
        """Wake one parked worker so it can take injected or stealable work (idle.py).

        Nobody, while a spinning worker will see the work (``Idle.wake_for_work``).
        """
        self._idle.wake_for_work()

    def _injected(self) -> None:
        """Wake a parked worker for what was just injected (any thread).

        Only when one is parked: the hint is one read of the idle list (see
        ``idle.py`` for why no wake-up is lost). A grid whose workers all
        died takes nothing more: what reached the queue meanwhile (spawned
        by a dead worker's finish, say) ends cancelled, never waits for ever.
        """
        if self._sleepers:
            self._wake_idle()
        if self._all_died:
            self._cancel_queued(self._all_died_message())

    # -- pausing -------------------------------------------------------------------

    def pause(self) -> None:
        """Hold every worker (see :meth:`Worker.pause`); spawning still queues.

        Nothing starts and running tasks stop at their next suspension point
        until :meth:`resume`. Spawns are queued, never refused or lost. Workers
        paused on their own stay paused after the grid resumes. A closing grid
        cannot be paused (:class:`~loopgrid.GridClosedError`).
        """
        self._set_paused(True)

    def resume(self) -> None:
        """Release what :meth:`pause` held; any thread."""
        self._set_paused(False)

    # -- shutdown -----------------------------------------------------------------

    def close(self, *, cancel: bool = False, timeout: float | None = None) -> None:
        """Stop the grid: wait for (or cancel) every task, then stop the workers.

        With ``cancel=False`` every spawned task runs to its end; tasks already
        on the grid may still spawn while it drains, other callers get
        :class:`~loopgrid.GridClosedError`. With ``cancel=True`` pending tasks
        never start and running ones are cancelled. Either way each task ends
        in exactly one state, each worker loop is finished as ``asyncio.run``
        finishes its loop (remaining plain asyncio tasks cancelled, async
        generators and the default executor shut down), and every worker thread
        has exited when ``close`` returns. Idempotent.

        A KeyboardInterrupt (Ctrl-C) while waiting for tasks to end switches to
        cancelling; one while waiting for cancelled tasks to end (with
        ``cancel=True``, the first) gives up on them, as
        ``asyncio.Runner.close`` gives up on its loop: each loop stops where it
        is, the handles of the tasks left end cancelled (their coroutines are
        closed), the loops close and the worker threads are joined; then the
        interrupt propagates. A worker whose loop died (see
        :meth:`Worker._die`) finishes that loop by itself: ``close`` waits for
        its thread, and nothing more.

        ``timeout`` (seconds, None: no limit) bounds each wait without an
        interrupt: tasks still running ``timeout`` s into the drain are
        cancelled, and those that swallow their cancellation for another
        ``timeout`` s are given up on as above (logged as
        ``grid.close_gave_up``); then the worker threads are waited for,
        ``timeout`` s at most, or :data:`JOIN_GRACE` if that is longer, so
        that ``close`` returns within ``2 * timeout + max(timeout,
        JOIN_GRACE)`` s.

        A task or callback that blocks its worker's thread (a blocking call,
        not an ``await``) keeps that thread alive: Python cannot kill a
        thread. Without ``timeout``, ``close`` waits for it, as
        ``ThreadPoolExecutor.shutdown`` waits for its threads. With one,
        ``close`` leaves it, as ``asyncio``'s ``shutdown_default_executor``
        leaves an executor's threads after its timeout: the thread is named
        with its stack in a ``grid.close_left_thread`` error log; it is a
        daemon thread, so the process can still exit; the tasks of that
        worker stay as they are (the blocked one is still running) until the
        call returns, when the worker gives up on them (their handles end
        cancelled) and its thread exits. Everything else is closed and
        stopped as usual. See docs/scheduling.md, "Shutdown".
        """
        cur = _current.worker
        if cur is not None and cur.grid is self:
            raise RuntimeError(
                f"{self!r}.close() was called from its own worker {cur.index}: it waits for "
                "that worker's thread to exit, which would deadlock"
            )
        super().close(cancel=cancel, timeout=timeout)

    def _cancel_running_soon(self) -> None:
        for w in self._workers:
            w._call_soon(w._cancel_running)  # (a dead worker's loop may be closed)

    def _abandon(self) -> None:
        """Give up on the tasks that do not end; any thread but a worker's.

        Every loop stops where it is and its worker thread gives up on the
        grid tasks left there (:meth:`Worker._give_up`), then closes the loop
        and exits; ``close()`` then finds every task ended, and joins.
        """
        for w in self._workers:
            w._abandon_soon()

    def _stop_workers(self) -> None:
        if self._closed:
            return
        with self._ext_lock:
            self._accept = ACCEPT_NONE
        for w in self._workers:
            w._stop_soon()
        stuck = []
        deadline = None
        if self._join_timeout is not None:
            deadline = time.monotonic() + max(self._join_timeout, JOIN_GRACE)
        for w in self._workers:
            w.thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
            if w.thread.is_alive():
                stuck.append(w)
        if stuck:
            self._leave_stuck(stuck)
        self._monitor.stop()
        if self._debug_server is not None:
            self._debug_server.stop()
        for closer in self._closers:
            try:
                closer()
            except Exception:
                logs.error("grid.closer_failed", grid=self.name, closer=repr(closer), exc_info=True)
        anyio_hook.grid_stopped()
        self._closed = True
        # Spawned after the grid went quiet (by plain asyncio tasks on a worker
        # loop, say) and never started: they end cancelled, never lost.
        self._cancel_queued()
        logs.flush_unretrieved()
        logs.info("grid.closed", grid=self.name)

    def _leave_stuck(self, stuck: list[Worker]) -> None:
        """Say which worker threads ``close(timeout=)`` leaves behind, and where they are.

        A thread cannot be stopped from outside in Python: one held by a call
        that never returns to its loop (a blocking call in a task or callback,
        not an ``await``) stays alive, a daemon thread, which does not hold up
        the interpreter's exit. When that call returns, its loop finds the
        stop and the give-up that close() queued: the worker gives up on its
        tasks (their handles end cancelled) and its thread exits.
        """
        frames = sys._current_frames()
        for w in stuck:
            frame = frames.get(w.thread.ident or -1)
            logs.error(
                "grid.close_left_thread",
                grid=self.name,
                worker=w.index,
                thread=w.thread.name,
                waited=self._join_timeout,
                running=w.running,
                where="".join(traceback.format_stack(frame)) if frame is not None else None,
                hint="a call that never returns to the event loop (a blocking call, not an "
                "await) holds this worker's thread; a thread cannot be killed in Python: it "
                "is left running, as a daemon; when the call returns, the worker gives up on "
                "its tasks (their handles end cancelled) and the thread exits. Run blocking "
                "calls with asyncio.to_thread or loop.run_in_executor",
            )

    # -- introspection --------------------------------------------------------------

    def stats(self, *, tasks: bool = False) -> dict[str, Any]:
        """A JSON-serialisable snapshot of queues, counters and metrics; see ``stats.py``.

        ``tasks=True`` adds ``"tasks"``: a row per unfinished task (what
        ``loopgrid ps`` shows), at most :data:`~loopgrid.introspect.TASK_LIMIT`.
        """
        return snapshot(self, tasks=tasks)

    @property
    def debug_url(self) -> str | None:
        """``http://127.0.0.1:<port>`` of the debug endpoint, or None when it is off."""
        return None if self._debug_server is None else self._debug_server.url

    @contextlib.contextmanager
    def trace(self, path: str | os.PathLike[str]) -> Iterator[Tracer]:
        """Record the grid's activity while the block runs, then write ``path``.

        The file is Chrome trace-event JSON, which https://ui.perfetto.dev and
        ``chrome://tracing`` open: a track per worker, a slice per task step,
        cross-loop wake-ups and steals as arrows, stalls marked (see
        ``trace.py``). Every step is timed while recording, which slows a
        spawn-heavy grid; one trace is recorded at a time per process. The
        end of the block lets the steps running then end first, so that a
        task whose result the block saw has its last step in the file; it
        waits for that at most ``trace.STOP_WAIT`` (1 s) in all, and a step
        still running after that is left out.
        """
        if self._closing:
            raise GridClosedError(f"{self!r} is closed: there is nothing left to trace")
        tracer = Tracer(self, path)
        tracer.start()
        try:
            yield tracer
        finally:
            tracer.stop()
            tracer.write()


def current_grid() -> Grid:
    """The grid whose worker runs the calling code (NotOnGridError elsewhere)."""
    w = _current.worker
    if w is None:
        if _current.grid is not None:
            return _current.grid
        raise NotOnGridError(
            "current_grid() was called outside a loopgrid worker: "
            f"thread {threading.current_thread().name!r} runs no grid loop; "
            "hold the Grid and call grid.spawn() instead"
        )
    return w.grid


def spawn(
    fn: Any,
    /,
    *args: Any,
    priority: Priority | int = _NORMAL,
    name: str | None = None,
    worker: int | None = None,
    context: contextvars.Context | None = None,
    **kwargs: Any,
) -> Handle[Any]:
    """Spawn on the current grid: ``current_grid().spawn(...)``."""
    if kwargs:
        refuse_keywords("loopgrid.spawn", fn, kwargs)
    w = _current.worker
    if w is None:
        if _current.grid is not None:
            return _current.grid.spawn(
                fn, *args, priority=priority, name=name, worker=worker, context=context
            )
        if asyncio.iscoroutine(fn):
            fn.close()
        raise NotOnGridError(
            f"loopgrid.spawn({fn!r}) was called outside a loopgrid worker (thread "
            f"{threading.current_thread().name!r}); call it from code running on a grid "
            "(inside loopgrid.run() or a spawned task), or use grid.spawn()"
        )
    return w.grid._spawn(w, fn, args, priority, name, worker, context)
