"""Handles: the record of a spawned task and a future awaitable from any loop.

A :class:`Handle` is created by ``spawn`` before the task has a worker, lives in
run queues while pending, and is resolved on the worker that ran the task. It
stands in for an ``asyncio.Task`` everywhere one is accepted: ``await``,
``asyncio.gather``, ``wait``, ``wait_for``, ``shield``, ``asyncio.timeout`` and
anyio's asyncio backend. Those read the duck-typed future protocol
(``_asyncio_future_blocking``, ``get_loop``, ``add_done_callback`` and
``remove_done_callback``, ``_make_cancelled_error``), which is implemented here
so that it answers *the loop of whoever is awaiting*, not the loop that runs the
task. Waiters on another loop are woken through that loop's
:class:`~loopgrid.mailbox.Mailbox` (one thread-safe call per burst); waiters on
the finishing loop are woken with a plain ``call_soon``; plain threads block on
``result(timeout)``.

Thread ownership:

* ``_state`` moves PENDING -> RUNNING (dispatcher) or PENDING -> CANCELLED
  (``cancel``) only for whoever takes the task's claim (see ``CLAIMS``), so
  exactly one of the two wins. RUNNING -> COMPLETED / FAILED / CANCELLED
  happens only on the worker thread that runs the task, which is the only
  writer of ``_result``, ``_aux`` and ``_task`` from then on (``worker._drive``
  inlines the COMPLETED case). Results are stored before the state, so a
  thread that sees a final state sees the result.
  The finisher counts the task on its worker *before* it publishes the final
  state (and the pending-cancel path counts it before too), so a thread that
  sees a task finished also sees it counted in ``grid.stats()``.
* ``_callbacks`` is a list (atomic ``append`` / ``pop``) filled by any thread.
  The finisher sets the final state and then pops and runs every callback; an
  adder appends and then, if the state is final, pops and runs too. Every
  callback is popped, hence run, exactly once.
* ``_paused`` and the grid's ``_paused_tasks`` entry are written under the
  grid's ``_control`` lock only (pause, resume, and the finisher's clean-up,
  which takes the lock only for a paused task). The finisher writes the final
  state, then reads ``_paused``; ``pause`` writes ``_paused``, then reads the
  state: of a pause and an end that race, at least one sees the other and
  clears the flag. (Attribute writes on free-threaded CPython go through the
  object's critical section, a locked instruction, so that pair is
  sequentially consistent there as it is under the GIL.) The clean-up comes
  before the callbacks: whoever is woken by the end sees the task unpaused.
* The grid's ``_shelf`` (paused pending tasks off the queues): set under
  ``_control`` by the dispatcher that shelves, popped by ``resume`` and
  ``cancel`` after they wrote the flag or state under ``_control``; whoever
  pops an entry acts on it, once (``core.py``, ``SchedulingCore._shelve``).
"""

from __future__ import annotations

import _thread
import asyncio
import contextvars
import operator
import sys
import threading
import time
import traceback
import types
from collections.abc import Callable, Coroutine, Generator
from enum import Enum
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from . import logs
from .errors import WouldBlockError, check_timeout
from .fork import forked_error
from .mailbox import Mailbox, _tls, mailbox_for_running_loop, running_loop
from .priority import Priority
from .waitgraph import WaitTarget, _edges, handle_of
from .waitgraph import check_cycle as _check_cycle

_allocate_lock = _thread.allocate_lock

if TYPE_CHECKING:
    from .core import CoreWorker, SchedulingCore

__all__ = ["Handle", "TaskState"]

T = TypeVar("T")


_copy_context = contextvars.copy_context
_current_task = asyncio.current_task
_current_thread = threading.current_thread

PENDING = "pending"
RUNNING = "running"
COMPLETED = "completed"
FAILED = "failed"
CANCELLED = "cancelled"
PAUSED = "paused"
_DONE = frozenset((COMPLETED, FAILED, CANCELLED))

#: Claims on pending tasks. A pending task's id sits in one of these striped
#: sets; whoever removes it (``set.remove`` is atomic, also free-threaded, and
#: raises KeyError for every other taker) moves the task out of PENDING: a
#: dispatcher starting it or ``cancel()``. A third of the cost of a lock.
CLAIMS = tuple(set[int]() for _ in range(64))


class TaskState(str, Enum):
    """Where a task is in its life. Compares equal to its lowercase string."""

    PENDING = PENDING
    RUNNING = RUNNING
    COMPLETED = COMPLETED
    FAILED = FAILED
    CANCELLED = CANCELLED
    PAUSED = PAUSED


_Callback = tuple["Mailbox | None", Callable[[Any], object], "contextvars.Context | None"]


class Handle(WaitTarget, Generic[T]):
    """A spawned task: awaitable from any event loop, waitable from any thread.

    Awaiting a handle behaves like awaiting an :class:`asyncio.Task`: the awaiter
    gets the result or the exception, and if the awaiting task is cancelled, the
    spawned task is cancelled too (protect it with ``asyncio.shield(handle)``).
    """

    # Kept small: every pending task is one of these. What to run is ``_fn``
    # with ``_args``, or, when ``_args`` is None, the coroutine object in ``_fn``.
    # ``_result`` is the value (COMPLETED) or the exception (FAILED); ``_aux`` is
    # the cancel message (CANCELLED) or (traceback, log guard) (FAILED).
    __slots__ = (
        "__weakref__",
        "_args",
        "_aux",
        "_callbacks",
        "_ctx",
        "_enqueued",
        "_fn",
        "_grid",
        "_id",
        "_name",
        "_paused",
        "_pin",
        "_priority",
        "_result",
        "_state",
        "_task",
        "_worker",
    )

    if TYPE_CHECKING:
        _grid: SchedulingCore
        _id: int
        _name: str
        _priority: Priority
        _fn: Any
        _args: tuple[Any, ...] | None
        _ctx: contextvars.Context | None
        _pin: int | None
        _enqueued: float
        _state: str
        _paused: bool
        _result: Any
        _aux: Any
        _callbacks: list[_Callback]
        _worker: CoreWorker | None
        _task: asyncio.Task[None] | None

    def __init__(self) -> None:
        # Handles are made by SchedulingCore._new_handle (core.py), which sets
        # every slot above without an __init__ frame: the hottest part of a spawn.
        raise TypeError("Handle objects are created by spawn(), not directly")

    # -- the record -------------------------------------------------------------

    @property
    def id(self) -> int:
        """A number unique within the process, increasing with spawn order."""
        return self._id

    @property
    def name(self) -> str:
        return self._name

    @property
    def priority(self) -> Priority:
        return self._priority

    @property
    def state(self) -> TaskState:
        """PENDING, RUNNING or PAUSED (either of the first two, paused), then a final state."""
        st = self._state
        if self._paused and st not in _DONE:
            return TaskState.PAUSED
        return TaskState(st)

    @property
    def worker(self) -> int | None:
        """Index of the worker that started the task; None while it is pending."""
        w = self._worker
        return None if w is None else w.index

    @property
    def pinned(self) -> int | None:
        """The worker index this task is pinned to (never stolen), or None."""
        return self._pin

    # -- asyncio.Task's accessors ------------------------------------------------

    def get_name(self) -> str:
        """The task's name, as :meth:`asyncio.Task.get_name`."""
        return self._name

    def set_name(self, value: object) -> None:
        """Rename the task (``str(value)``), its asyncio task too once started."""
        self._name = str(value)
        task = self._task
        if task is not None:
            task.set_name(self._name)

    def get_coro(self) -> Coroutine[Any, Any, T] | None:
        """The task's coroutine, as :meth:`asyncio.Task.get_coro`: the coroutine
        object given to spawn(), or, once the task started, the one its
        function returned. None for a function not started yet (its coroutine
        is made when a worker starts it) and once the task is done (the handle
        lets go of it, so that a finished task holds no frames)."""
        # Once drive() made the coroutine it keeps it in _fn (args None).
        if self._args is None and (self._state is PENDING or self._state is RUNNING):
            coro: Coroutine[Any, Any, T] = self._fn
            return coro
        return None

    def get_context(self) -> contextvars.Context | None:
        """The context the task runs in, as :meth:`asyncio.Task.get_context`
        (a copy of the spawner's, or ``spawn(context=...)``); None once done."""
        return self._ctx

    def get_stack(self, *, limit: int | None = None) -> list[types.FrameType]:
        """The task's frames, as :meth:`asyncio.Task.get_stack`: the frame
        where its coroutine is suspended, or for a failed task the frames of
        its traceback (the last ``limit``); empty when there are none."""
        if self._state == FAILED:
            frames: list[types.FrameType] = []
            tb = self._aux[0]
            while tb is not None:
                frames.append(tb.tb_frame)
                tb = tb.tb_next
            return frames if limit is None else frames[-limit:] if limit > 0 else []
        # Only the coroutine's own frame: suspended, it has no f_back; running,
        # its f_back is another thread's loop, not the task's stack.
        frame = getattr(self.get_coro(), "cr_frame", None)
        return [frame] if frame is not None and limit != 0 else []

    def print_stack(self, *, limit: int | None = None, file: Any = None) -> None:
        """Print :meth:`get_stack` as :meth:`asyncio.Task.print_stack` does."""
        extracted = traceback.StackSummary.extract(
            (f, f.f_lineno) for f in self.get_stack(limit=limit)
        )
        exc = self._result if self._state == FAILED else None
        if not extracted:
            print(f"No stack for {self!r}", file=file)
        elif exc is not None:
            print(f"Traceback for {self!r} (most recent call last):", file=file)
        else:
            print(f"Stack for {self!r} (most recent call last):", file=file)
        traceback.print_list(extracted, file=file)
        if exc is not None:
            for line in traceback.format_exception_only(type(exc), exc):
                print(line, file=file, end="")

    # -- for the wait-for graph (waitgraph.py) ------------------------------------

    def _wait_node(self) -> object:
        """This task's node: its Task while it runs, else None (it waits for nothing).

        During its eager first step (3.12+) the Task is not stored yet (the
        dispatcher stores it once the constructor, which runs that step, has
        returned); it is then the current task of the worker's thread, if that
        task is this one's (and not one it started).
        """
        task = self._task
        if task is None and self._state is RUNNING:
            w = self._worker
            if w is None or not w.is_current():
                return None
            task = asyncio.current_task()
            return task if task is not None and handle_of(task) is self else None
        return task

    def _wait_name(self) -> str:
        where = "" if self._worker is None else f" on worker {self._worker.index}"
        return f"task {self._name!r} (id {self._id}{where})"

    def __repr__(self) -> str:
        where = "" if self._worker is None else f" worker={self._worker.index}"
        return (
            f"<Handle id={self._id} name={self._name!r} priority={self._priority.name} "
            f"state={self._state}{where}>"
        )

    # -- the future protocol ----------------------------------------------------

    def done(self) -> bool:
        return self._state in _DONE

    def cancelled(self) -> bool:
        return self._state is CANCELLED

    def result(self, timeout: float | None = None) -> T:
        """The task's result, raising its exception or ``CancelledError``.

        Returns at once from any thread when the task is done. Otherwise it
        blocks a plain thread for up to ``timeout`` seconds (``TimeoutError``
        after that); on a thread that runs an event loop it raises
        :class:`~loopgrid.WouldBlockError` instead, since blocking there would
        stall that loop: ``await`` the handle there.
        """
        if self._state is COMPLETED:
            return self._result  # type: ignore[no-any-return]
        if self._state not in _DONE:
            self._block_until_done(timeout, "result")
        return self._outcome()

    def exception(self, timeout: float | None = None) -> BaseException | None:
        """The task's exception (None if it returned); waits like :meth:`result`."""
        st = self._state
        if st is COMPLETED:
            return None
        if st not in _DONE:
            self._block_until_done(timeout, "exception")
            st = self._state
            if st is COMPLETED:
                return None
        if st is CANCELLED:
            raise self._make_cancelled_error()
        self._mark_retrieved()
        return self._result  # type: ignore[no-any-return]

    def _outcome(self) -> T:
        st = self._state
        if st is COMPLETED:
            return self._result  # type: ignore[no-any-return]
        if st is CANCELLED:
            raise self._make_cancelled_error()
        self._mark_retrieved()
        exc: BaseException = self._result
        raise exc.with_traceback(self._aux[0])

    def _block_until_done(self, timeout: float | None, what: str) -> None:
        if self._grid._forked_from is not None:
            raise forked_error(self._grid, f"Handle.{what}() on {self!r}")
        if running_loop() is not None:
            raise WouldBlockError(
                f"Handle.{what}() on {self!r}, which is not done, from a thread that runs "
                f"an event loop: waiting would block that loop; use 'await handle' there"
            )
        timeout = check_timeout(timeout)
        # A bare lock, held until the task is done, rather than an Event (a
        # Condition and two locks): the waiting thread holds the GIL until it
        # blocks, and the worker just woken for the task waits for it.
        done = _allocate_lock()
        done.acquire()

        def _set(_: object) -> None:
            done.release()

        self._add_callback(None, _set, None)
        if not _wait_lock(done, timeout):
            self.remove_done_callback(_set)
            raise TimeoutError(f"{self!r} did not finish within {timeout} s")

    def cancel(self, msg: Any | None = None) -> bool:
        """Ask the task to stop; returns False if it had already finished.

        A pending task never starts: it ends cancelled at once and its coroutine,
        if one was given, is closed (no "never awaited" warning). A running task
        gets ``CancelledError`` at its current suspension point on its own loop,
        exactly as ``asyncio.Task.cancel`` delivers it; like a Task, it may catch
        it and finish otherwise. A paused task is cancelled at once too: the
        cancellation passes the pause.
        """
        grid = self._grid
        while True:
            with grid._control:  # so that move() never shows us its claim
                try:
                    CLAIMS[self._id & 63].remove(self._id)
                except KeyError:
                    pass  # started or finished, or a dispatcher is looking at it
                else:
                    grid._count_dropped()  # counted before it is seen finished
                    self._aux = msg
                    self._state = CANCELLED
                    if self._paused:
                        self._unpaused()
                    break
            worker = self._worker
            if self._state in _DONE:
                return False
            if worker is not None:
                if worker.is_current():
                    task = self._task
                    if task is not None:
                        return worker._cancel_task(task, msg, self)
                worker.loop.call_soon_threadsafe(self._cancel_on_loop, msg)
                return True
            # Pending, its claim taken, no worker yet: a dispatcher is between
            # winning the claim and recording itself in _worker, or holds a
            # moved task's stale copy for an instant. Look again.
            time.sleep(0)
        self._release()
        grid._shelf.pop(self._id, None)  # (a later _shelve sees the state: core.py)
        self._run_callbacks(running_loop())
        if grid._closing:
            grid._check_quiescent()
        return True

    def _cancel_on_loop(self, msg: Any | None) -> None:
        task = self._task
        if task is not None and self._state is RUNNING:
            assert self._worker is not None
            self._worker._cancel_task(task, msg, self)
        elif self._state is PENDING:
            self.cancel(msg)  # the worker only looked at it and let it go

    # -- pause, resume, move ----------------------------------------------------

    def pause(self) -> bool:
        """Hold the task: a pending one does not start, a running one stops stepping.

        A running task stops at its next suspension point: what it awaits may
        complete meanwhile, but its coroutine is not stepped again until
        :meth:`resume`. Callable from any thread or loop, and idempotent.
        Returns False, doing nothing, if the task has already finished (or its
        grid is closing, which lifts every pause); True otherwise. ``state``
        reads ``PAUSED`` while it is held.
        """
        grid = self._grid
        with grid._control:
            if self._state in _DONE or grid._closing:
                return False  # a closing grid lifts every pause: none may start
            self._paused = True
            grid._paused_tasks[self._id] = self
            # Armed under the same lock as the flag (see driver.py). None while
            # pending, or starting (then Worker._start arms).
            task = self._task
            if task is not None:
                assert self._worker is not None
                drv: Any = task.get_coro()
                drv._arm(self, self._worker, False)
        if self._state in _DONE:  # finished meanwhile: its finisher may not have seen the flag
            self._unpause_finished()
            return False
        if logs.DEBUG_EVENTS:
            logs.debug("task.paused", task_id=self._id, task=self._name)
        return True

    def resume(self) -> bool:
        """Let a paused task go on; a no-op if it is not paused.

        Returns False if the task has already finished, True otherwise.
        """
        grid = self._grid
        with grid._control:
            if not self._paused:
                return self._state not in _DONE
            self._unpaused()
            live = self._state not in _DONE  # (it may finish as soon as it is let go)
        if grid._shelf.pop(self._id, None) is not None:
            grid._requeue(self)  # pending: back in a run queue
        else:
            worker = self._worker
            if worker is not None and self._state is RUNNING:
                worker._release_soon()
        if logs.DEBUG_EVENTS:
            logs.debug("task.resumed", task_id=self._id, task=self._name)
        return live

    def _unpaused(self) -> None:
        """Clear the pause flag and the grid's entry; ``_control`` held."""
        self._paused = False
        self._grid._paused_tasks.pop(self._id, None)

    def _unpause_finished(self) -> None:
        """Clear the pause of a task that has finished (its finisher, or a late pause)."""
        with self._grid._control:
            self._unpaused()

    def move(self, worker: int) -> None:
        """Re-home a task that has not started onto ``worker``, pinned there.

        Pinned, the task is never stolen back. A paused pending task may be
        moved; it starts there once resumed. A task that has started cannot
        move, because its coroutine is bound to the loop whose futures it
        awaits: that raises :class:`asyncio.InvalidStateError`, as does a
        finished task.
        """
        grid = self._grid
        grid._check_worker_index(worker)
        with grid._control:
            try:
                CLAIMS[self._id & 63].remove(self._id)
            except KeyError:
                w = self._worker
                raise asyncio.InvalidStateError(
                    f"cannot move {self!r} to worker {worker}: "
                    + (
                        "it has finished"
                        if self._state in _DONE or w is None
                        else f"it has started on worker {w.index}, and a started coroutine "
                        "stays on its loop (only pending tasks move)"
                    )
                ) from None
            self._pin = worker
            CLAIMS[self._id & 63].add(self._id)
        # A copy left in its old queue is skipped there (see Worker._start).
        if self._id not in grid._shelf:
            grid._workers[worker]._push_pinned(self)
        if logs.DEBUG_EVENTS:
            logs.debug("task.moved", task_id=self._id, task=self._name, worker=worker)

    def add_done_callback(
        self, fn: Callable[[Handle[T]], object], *, context: contextvars.Context | None = None
    ) -> None:
        """Call ``fn(handle)`` when the task is done.

        From a thread that runs an event loop, ``fn`` is scheduled on that loop
        (in ``context``, as ``asyncio.Future`` does). From a plain thread, ``fn``
        runs on the thread that finishes the task, or at once if it is done:
        keep it short and thread-safe, as with ``concurrent.futures``.
        """
        if not callable(fn):
            raise TypeError(f"add_done_callback() needs a callable fn(handle), got {fn!r}")
        mb = _tls.mailbox
        if mb is None or not mb.permanent:  # not a grid worker: look the loop up
            mb = mailbox_for_running_loop()
        if mb is not None and context is None:
            context = _copy_context()
        self._callbacks.append((mb, fn, context))  # _add_callback, inlined
        if self._state in _DONE:
            self._run_callbacks(running_loop())

    def remove_done_callback(self, fn: Callable[[Handle[T]], object]) -> int:
        """Remove every registration of ``fn``; returns how many were removed."""
        cbs = self._callbacks
        removed = 0
        for entry in [e for e in cbs if e[1] == fn]:
            try:
                cbs.remove(entry)
            except ValueError:
                continue
            removed += 1
        return removed

    def get_loop(self) -> asyncio.AbstractEventLoop:
        """The running loop of the caller: a handle can be awaited from any loop."""
        mb = _tls.mailbox
        if mb is not None and mb.permanent:
            return mb.loop  # a grid worker's loop runs for its thread's life
        loop = running_loop()
        if loop is None:
            raise RuntimeError(
                "Handle.get_loop() answers the loop of whoever awaits the handle, "
                "and no event loop is running in this thread"
            )
        return loop

    # asyncio.Task reads this flag when a coroutine yields the handle and then
    # resets it to False. A handle is shared by awaiters on several threads, so
    # it must always read True instead of flipping (one awaiter's reset would
    # confuse another). bool(handle) is True and operator.is_ ignores the write:
    # both are C functions, which keeps this off the profile of every await.
    _asyncio_future_blocking = property(bool, operator.is_)  # type: ignore[arg-type]

    @property
    def _cancel_message(self) -> Any:
        # Read by asyncio.gather on Python 3.10 and 3.11.
        return self._aux if self._state is CANCELLED else None

    def _make_cancelled_error(self) -> asyncio.CancelledError:
        msg = self._aux if self._state is CANCELLED else None
        return asyncio.CancelledError() if msg is None else asyncio.CancelledError(msg)

    def __await__(self) -> Generator[Any, None, T]:
        if self._state not in _DONE:
            if self._grid._forked_from is not None:
                raise forked_error(self._grid, f"await {self!r}")
            # The wait-for graph (waitgraph.py), inlined: an edge from the
            # awaiting task to this handle, and a walk only if this handle's
            # task is itself waiting. DeadlockError if the walk comes back.
            try:
                me = _current_task() or _current_thread()
            except RuntimeError:  # no asyncio loop runs here: trio, say
                raise not_on_asyncio(f"await {self!r}", "handle.result") from None
            _edges[me] = (self, None)
            task = self._task
            # (A task in its eager first step, 3.12+, has no Task stored yet.)
            if task in _edges or (task is None and self._state is RUNNING):
                _check_cycle(me)
            try:
                yield self
            finally:
                _edges.pop(me, None)
            if self._state not in _DONE:
                raise RuntimeError("await wasn't used with future")
        return self._outcome()

    __iter__ = __await__

    # -- completion (worker side) -----------------------------------------------

    def _add_callback(
        self,
        mb: Mailbox | None,
        fn: Callable[[Any], object],
        ctx: contextvars.Context | None,
    ) -> None:
        self._callbacks.append((mb, fn, ctx))
        if self._state in _DONE:
            self._run_callbacks(running_loop())

    def _run_callbacks(self, running: asyncio.AbstractEventLoop | None) -> None:
        """Run or schedule every callback; ``running`` is this thread's loop."""
        cbs = self._callbacks
        while cbs:
            try:
                mb, fn, ctx = cbs.pop(0)
            except IndexError:
                return
            if mb is None:
                try:
                    fn(self) if ctx is None else ctx.run(fn, self)
                except Exception:
                    logs.error(
                        "callback.failed", task_id=self._id, callback=repr(fn), exc_info=True
                    )
            elif mb.loop is running:
                mb.loop.call_soon(fn, self, context=ctx)
            else:
                mb.post(fn, self, ctx)

    def _release(self) -> None:
        """Drop what the task no longer needs, so a kept handle stays small.

        A coroutine object that never ran (its task was cancelled before the
        first step) is closed, so that no "never awaited" warning follows; a
        coroutine that ran to its end is already closed, and this is a no-op.
        """
        if self._args is None and self._fn is not None:
            self._fn.close()
        self._fn = self._ctx = self._task = None
        self._args = ()

    def _set_exception(self, exc: BaseException, loop: asyncio.AbstractEventLoop) -> None:
        self._result = exc
        self._aux = (
            exc.__traceback__,
            logs.UnretrievedGuard(exc, self._id, self._name, self._grid.name, loop),
        )
        self._state = FAILED
        self._release()
        if self._paused:
            self._unpause_finished()
        self._run_callbacks(loop)

    def _set_cancelled(self, msg: Any | None, loop: asyncio.AbstractEventLoop) -> None:
        self._aux = msg
        self._state = CANCELLED
        self._release()
        if self._paused:
            self._unpause_finished()
        self._run_callbacks(loop)

    def _mark_retrieved(self) -> None:
        guard = self._aux[1]
        if guard is not None:
            guard.exc = None
            self._aux = (self._aux[0], None)


#: Longest a blocking wait on the main thread stays in C at a time.
_SIGNAL_SLICE = 0.1


def _wait(event: threading.Event, timeout: float | None) -> bool:
    """``event.wait(timeout)``, in slices on the main thread (:func:`_wait_sliced`)."""
    return _wait_sliced(event.wait, timeout)


def _wait_lock(lock: _thread.LockType, timeout: float | None) -> bool:
    """Acquire ``lock``, which another thread releases once done; as :func:`_wait`."""
    acquire = lock.acquire
    return _wait_sliced(lambda t: acquire(True, -1 if t is None else t), timeout)


def _wait_sliced(wait: Callable[[float | None], bool], timeout: float | None) -> bool:
    """``wait(timeout)`` (a blocking wait: True once done), in slices on the main thread.

    A signal that arrives just before the thread blocks in the lock (after the
    interpreter last looked for one) is handled only when the wait returns:
    Ctrl-C during ``loopgrid.run()`` was then lost for as long as the task ran,
    in about one run of the test in six. Slices bound that to a tenth of a
    second; other threads get no signals and wait in one piece.
    """
    if threading.current_thread() is not threading.main_thread():
        return wait(timeout)
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        left = _SIGNAL_SLICE if deadline is None else deadline - time.monotonic()
        if wait(max(0.0, min(left, _SIGNAL_SLICE))):
            return True
        if deadline is not None and time.monotonic() >= deadline:
            return False


def not_on_asyncio(what: str, instead: str) -> RuntimeError:
    """The error for ``what`` (an await that must wait) where no asyncio loop runs.

    That is trio code, typically anyio's trio backend: a handle or primitive
    suspends by yielding an asyncio future, which only an asyncio (or uvloop)
    task can wait on, so loopgrid says so instead of letting trio fail on a
    yield it does not know. ``instead`` is the blocking call that works in a
    worker thread, as ``run_sync``'s arguments ("handle.result"). Only built
    on that error path, never on a hot one.
    """
    sniffio: Any = sys.modules.get("sniffio")  # imported by trio itself; never import it here
    library = None
    if sniffio is not None:
        try:
            library = sniffio.current_async_library()
        except Exception:
            pass
    if library == "trio":
        return RuntimeError(
            f"{what} in trio code: loopgrid runs on asyncio and does not support trio "
            "(nor anyio's trio backend). Run this code on asyncio: "
            "anyio.run(main, backend='asyncio'), or with anyio's pytest plugin an "
            "anyio_backend fixture returning 'asyncio'. Or wait in a worker thread: "
            f"await trio.to_thread.run_sync({instead}) (anyio.to_thread.run_sync({instead}))"
        )
    where = f" ({library} code)" if library else ""
    return RuntimeError(
        f"{what} with no asyncio event loop running in this thread{where}: loopgrid "
        "handles and primitives wait on asyncio (or uvloop) loops only, anyio's asyncio "
        "backend included. Run this code on asyncio, or make the blocking call in a "
        f"worker thread: to_thread.run_sync({instead})"
    )
