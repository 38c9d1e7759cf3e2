"""Task groups whose children run on every loop of a grid.

:class:`TaskGroup` has the semantics of :class:`asyncio.TaskGroup` (Python
3.13's ``Lib/asyncio/taskgroups.py``, which it follows line for line where it
can), for grid tasks::

    async with loopgrid.TaskGroup() as tg:
        a = tg.spawn(fetch, url_a)                  # any worker
        b = tg.spawn(fetch, url_b, worker=1)        # pinned to worker 1
    # here every child has ended, wherever it ran

The block waits for every child. The first child that fails (with anything
but ``CancelledError``) cancels every other child, on whichever loop it runs,
and cancels the body of the ``async with`` if it is still running; the
errors come out together as an :class:`ExceptionGroup`. ``KeyboardInterrupt``
and ``SystemExit`` from a child, or from the body, are raised as they are.

Which thread owns which state
-----------------------------

A group belongs to the *owner thread*: the thread that entered it, which runs
the loop of the *parent task* (the task running the ``async with``), be it a
grid worker's loop or a foreign asyncio loop. The children run on the grid's
workers, mostly on other threads.

* Owner thread only: ``_tasks``, ``_errors``, ``_base_error``, ``_exiting``,
  ``_aborting``, ``_parent_cancel_requested``, ``_on_completed_fut``, and every
  call on ``_parent_task``. A child's end reaches the group through
  :meth:`Handle.add_done_callback`, which is always called on the owner
  thread, and which schedules the callback on *the adder's* loop whichever
  thread finishes the child (a ``call_soon`` there, or one post to that loop's
  mailbox). ``spawn`` called on the owner thread registers the child directly.
* Written on the owner thread before the group can be used, read-only after:
  ``_grid``, ``_loop``, ``_thread``, ``_entered``.
* Shared, under ``_gate`` (a ``threading.Lock``): ``_inbound``, the children
  spawned on *other* threads (a child on another worker adding a sibling)
  whose handle has not yet reached the owner thread, and ``_sealed``, set when
  the group has finished. Such a spawn counts itself in ``_inbound``, spawns
  on the grid and posts ``_adopt(handle)`` to the owner loop, which counts it
  out and registers it. The owner seals the group only when it has no child
  and ``_inbound`` is zero, under the same lock, so such a spawn either gets in
  before the seal, and is waited for, or raises.
* Read without the lock on other threads: ``_aborting``, to refuse a spawn into
  a group that is shutting down. A spawn that passes that check as the group
  starts to shut down is cancelled by ``_adopt``, as if it had come a moment
  earlier.

Why one owner thread
--------------------

``asyncio.TaskGroup`` needs no lock because everything it reacts to (a child
ending, the body raising, the parent being cancelled) arrives as a callback on
one loop, one at a time: it is a sequential state machine. Trio's nurseries
rest on the same rule (a nursery's state belongs to the task that opened it).
Children on many threads could instead update the group under a lock, but the
group's decisions end in cancelling the parent task, and an ``asyncio.Task``
may only be cancelled (and uncancelled) on its own loop's thread: the decision
would have to travel to that loop anyway. So the events travel there instead,
and the group stays the same sequential state machine as CPython's, at the cost
of one cross-thread wake-up per finished child (batched per burst by the
mailbox). The one shared piece, ``_gate``, exists because a spawn on another
thread must return its handle at once and yet never be lost by a group that is
about to finish.
"""

from __future__ import annotations

import asyncio
import contextvars
import sys
import threading
from collections.abc import Callable, Coroutine
from types import TracebackType
from typing import Any, TypeVar, overload

from .errors import NotOnGridError, refuse_keywords
from .grid import Grid, current_grid
from .handle import Handle, not_on_asyncio
from .priority import Priority

__all__ = ["TaskGroup"]


def _group(message: str, errors: list[BaseException]) -> BaseException:
    """A ``BaseExceptionGroup`` (an ``ExceptionGroup`` when every error is an
    Exception). On 3.10, the backport's, imported the first time a group is
    raised rather than with loopgrid: it costs about half of what asyncio
    does to import (typing_extensions)."""
    if sys.version_info >= (3, 11):
        return BaseExceptionGroup(message, errors)  # noqa: F821 (a built-in from 3.11)
    import exceptiongroup

    return exceptiongroup.BaseExceptionGroup(message, errors)


T = TypeVar("T")

_NORMAL = Priority.NORMAL

#: Why spawn() refuses, by the group's state: asyncio.TaskGroup's words, and why.
_WHY = {
    "new": "has not been entered; spawn inside 'async with TaskGroup() as tg:'",
    "finished": "is finished (its 'async with' block is over)",
    "aborting": (
        "is shutting down (a child failed, or its block raised or was cancelled) and "
        "takes no new children"
    ),
}


def _is_base_error(exc: BaseException) -> bool:
    # As in asyncio: Tasks propagate every exception, except these two, which
    # are still special.
    return isinstance(exc, (SystemExit, KeyboardInterrupt))


def _close(fn: object) -> None:
    """Close a coroutine object that will never run (no "never awaited" warning)."""
    if asyncio.iscoroutine(fn):
        fn.close()


class TaskGroup:
    """An asynchronous context manager that runs a group of grid tasks.

    ``async with TaskGroup() as tg:`` then ``tg.spawn(fn, *args, priority=,
    name=, worker=)``, which takes what :meth:`Grid.spawn` takes and returns the
    child's :class:`~loopgrid.Handle`. The children run on any worker of the
    grid; the block ends when all of them have ended.

    Any exception other than ``CancelledError`` raised by a child cancels every
    other child (wherever it runs) and the body of the block; once they have
    all ended, the exceptions (and the body's own, if it raised one) are raised
    together as an :class:`ExceptionGroup`. ``KeyboardInterrupt`` and
    ``SystemExit`` are raised as they are. If the task running the block is
    cancelled from outside, the children are cancelled and the
    ``CancelledError`` propagates once they have ended.

    The group's grid is ``grid``, or by default the grid of the worker that
    enters the block. Pass ``grid=`` to use a group from a foreign event loop
    (one that is not a grid worker). ``spawn`` may be called from any thread,
    by children on other workers too.
    """

    def __init__(self, *, grid: Grid | None = None) -> None:
        if grid is not None and not isinstance(grid, Grid):
            raise TypeError(f"grid must be a loopgrid.Grid or None, got {grid!r}")
        self._grid = grid
        self._entered = False
        self._exiting = False
        self._aborting = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: int | None = None
        self._parent_task: asyncio.Task[Any] | None = None
        self._parent_cancel_requested = False
        self._tasks: set[Handle[Any]] = set()
        self._errors: list[BaseException] = []
        self._base_error: BaseException | None = None
        self._on_completed_fut: asyncio.Future[bool] | None = None
        self._gate = threading.Lock()
        self._inbound = 0
        self._sealed = False

    def __repr__(self) -> str:
        info = [""]
        if self._grid is not None:
            info.append(f"grid={self._grid.name!r}")
        tasks = len(self._tasks)  # read on any thread: a snapshot, for messages
        if tasks:
            info.append(f"tasks={tasks}")
        errors = len(self._errors)
        if errors:
            info.append(f"errors={errors}")
        if self._sealed:
            info.append("finished")
        elif self._aborting:
            info.append("cancelling")
        elif self._entered:
            info.append("entered")
        return f"<loopgrid.TaskGroup{' '.join(info)}>"

    # -- entering and leaving ---------------------------------------------------

    async def __aenter__(self) -> TaskGroup:
        if self._entered:
            raise RuntimeError(f"{self!r} has already been entered: a TaskGroup is used once")
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # trio, say: say so rather than "no running event loop"
            raise not_on_asyncio(
                f"async with {self!r}", "functools.partial(loopgrid.run, main())"
            ) from None
        parent = asyncio.current_task(loop)
        if parent is None:
            raise RuntimeError(f"{self!r} cannot determine the parent task (no current task)")
        if self._grid is None:
            try:
                self._grid = current_grid()
            except NotOnGridError:
                raise NotOnGridError(
                    f"TaskGroup() was entered in thread {threading.current_thread().name!r}, "
                    "which is not a loopgrid worker, so it has no grid to run its children "
                    "on: pass one, as in 'async with loopgrid.TaskGroup(grid=grid) as tg:'"
                ) from None
        self._loop = loop
        self._thread = threading.get_ident()
        self._parent_task = parent
        self._entered = True
        return self

    async def __aexit__(
        self,
        et: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        del tb  # a traceback here would only make reference cycles
        try:
            await self._aexit(et, exc)
        finally:
            # Exceptions are heavy objects that can have reference cycles (bad
            # for the GC): keep none of them once the block is over.
            self._parent_task = None
            self._errors = []
            self._base_error = None
            exc = None

    async def _aexit(self, et: type[BaseException] | None, exc: BaseException | None) -> None:
        self._exiting = True
        loop = self._loop
        parent = self._parent_task
        assert loop is not None and parent is not None

        if exc is not None and _is_base_error(exc) and self._base_error is None:
            self._base_error = exc

        propagate_cancellation_error: BaseException | None = None
        if et is not None and issubclass(et, asyncio.CancelledError):
            propagate_cancellation_error = exc

        if et is not None and not self._aborting:
            # The parent task is being cancelled from outside, or the body
            # raised: either way the children must stop.
            self._abort()

        # A loop, since the wait can be cancelled several times (the parent
        # cancelled repeatedly, or once while our own cancel is under way), and
        # since a spawn from another thread can still be on its way here.
        while True:
            if not self._tasks:
                with self._gate:
                    if self._inbound == 0:
                        self._sealed = True
                        break
            if self._on_completed_fut is None:
                self._on_completed_fut = loop.create_future()
            try:
                await self._on_completed_fut
            except asyncio.CancelledError as ex:
                if not self._aborting:
                    # The parent task is cancelled from outside while it waits
                    # for the children here, after the body has ended.
                    propagate_cancellation_error = ex
                    self._abort()
            self._on_completed_fut = None

        assert not self._tasks

        if self._base_error is not None:
            try:
                raise self._base_error
            finally:
                exc = None

        if self._parent_cancel_requested and sys.version_info >= (3, 11):
            # We cancelled the parent, so we *must* uncancel it: a cancellation
            # left over would look, to an enclosing asyncio.timeout(), like one
            # of its own.
            if parent.uncancel() == 0:
                # No other cancellation pending: don't propagate CancelledError.
                propagate_cancellation_error = None

        # Propagate CancelledError if there is one, unless there are other
        # errors: those have priority.
        if propagate_cancellation_error is not None and not self._errors:
            try:
                raise propagate_cancellation_error
            finally:
                exc = None

        if et is not None and not issubclass(et, asyncio.CancelledError):
            assert exc is not None
            self._errors.append(exc)

        if self._errors:
            if sys.version_info >= (3, 11):
                # If the parent is also being cancelled from outside the group,
                # uncancel and re-cancel it, which keeps the count stable: the
                # outside cancellation hits the parent's next await.
                if parent.cancelling():
                    parent.uncancel()
                    parent.cancel()
            elif propagate_cancellation_error is not None and not self._parent_cancel_requested:
                # 3.10 has no cancel count; a CancelledError we did not cause
                # came from outside: pass it on to the parent's next await.
                parent.cancel()
            try:
                raise _group("unhandled errors in a TaskGroup", self._errors) from None
            finally:
                self._errors = []
                exc = None

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
        """Spawn ``fn(*args)`` (or a coroutine object) as a child of this group.

        The arguments are those of :meth:`Grid.spawn`, whose errors it raises
        (``TypeError`` for something that is not an async function or a
        coroutine). Raises ``RuntimeError`` if the group has not been entered,
        has finished, or is shutting down (a child failed, or the body raised
        or was cancelled). Callable from any thread.
        """
        if kwargs:
            refuse_keywords("TaskGroup.spawn", fn, kwargs)
        options = {"priority": priority, "name": name, "worker": worker, "context": context}
        if threading.get_ident() == self._thread:
            return self._spawn_here(fn, args, options)
        return self._spawn_elsewhere(fn, args, options)

    def create_task(
        self,
        coro: Coroutine[Any, Any, T],
        *,
        name: str | None = None,
        context: contextvars.Context | None = None,
    ) -> Handle[T]:
        """:meth:`spawn` with :meth:`asyncio.TaskGroup.create_task`'s signature."""
        return self.spawn(coro, name=name, context=context)

    def _refuse(self, fn: object, why: str) -> RuntimeError:
        _close(fn)
        return RuntimeError(f"TaskGroup {self!r} {_WHY[why]}")

    def _spawn_here(self, fn: Any, args: tuple[Any, ...], options: dict[str, Any]) -> Handle[Any]:
        # On the owner thread: the state is ours to read and write.
        if self._sealed or (self._exiting and not self._tasks and not self._inbound):
            raise self._refuse(fn, "finished")
        if self._aborting:
            raise self._refuse(fn, "aborting")
        assert self._grid is not None
        h = self._grid.spawn(fn, *args, **options)
        self._tasks.add(h)
        h.add_done_callback(self._on_task_done)
        return h

    def _spawn_elsewhere(
        self, fn: Any, args: tuple[Any, ...], options: dict[str, Any]
    ) -> Handle[Any]:
        # On another thread: count ourselves in under the gate, hand the
        # handle to the owner thread (see the module docstring).
        if not self._entered:
            raise self._refuse(fn, "new")
        with self._gate:
            why = "finished" if self._sealed else "aborting" if self._aborting else None
            if why is None:
                self._inbound += 1
        if why is not None:
            raise self._refuse(fn, why)
        loop = self._loop
        assert loop is not None and self._grid is not None
        try:
            h = self._grid.spawn(fn, *args, **options)
        except BaseException:
            try:
                loop.call_soon_threadsafe(self._adopt, None)  # count it out
            except RuntimeError:
                pass  # the owner's loop is closed: nobody waits for the count
            raise
        try:
            loop.call_soon_threadsafe(self._adopt, h)
        except RuntimeError:
            h.cancel()
            raise RuntimeError(
                f"cannot spawn into {self!r}: the event loop of the task that entered it is closed"
            ) from None
        return h

    # -- events, all on the owner thread ------------------------------------------

    def _adopt(self, h: Handle[Any] | None) -> None:
        """Register a child spawned on another thread (None: its spawn failed)."""
        with self._gate:
            self._inbound -= 1
        if h is None:
            self._wake_exit()
            return
        self._tasks.add(h)
        h.add_done_callback(self._on_task_done)
        if self._aborting:
            h.cancel()

    def _abort(self) -> None:
        self._aborting = True
        for h in list(self._tasks):
            if not h.done():
                h.cancel()

    def _wake_exit(self) -> None:
        fut = self._on_completed_fut
        if fut is not None and not self._tasks and not fut.done():
            fut.set_result(True)

    def _on_task_done(self, h: Handle[Any]) -> None:
        self._tasks.discard(h)
        self._wake_exit()

        if h.cancelled():
            return
        exc = h.exception()
        if exc is None:
            return

        self._errors.append(exc)
        if _is_base_error(exc) and self._base_error is None:
            self._base_error = exc

        parent = self._parent_task
        assert parent is not None and self._loop is not None
        if parent.done():
            # Not known to be possible (the parent waits for every child), but
            # then the error must not go unseen.
            self._loop.call_exception_handler(
                {
                    "message": f"{h!r} has errored out but the parent task {parent!r} of "
                    f"TaskGroup {self!r} is already done",
                    "exception": exc,
                }
            )
            return

        if not self._aborting and not self._parent_cancel_requested:
            # The parent is not being cancelled: cancel it, to stop whatever the
            # body is awaiting, and uncancel it in __aexit__, so that code after
            # the block (say, an 'except* ValueError' around it) runs normally.
            self._abort()
            self._parent_cancel_requested = True
            parent.cancel()
