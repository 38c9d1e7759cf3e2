"""asyncio primitives made at import and shared by every loop: loopgrid's underneath.

Why: ``lock = asyncio.Lock()`` at module level, taken by every request, is one
lock for the whole process under uvicorn. On a grid the first task that has
to wait for it binds it to that task's loop, and a request on another loop
then fails with "bound to a different event loop" - only when two requests
meet, so only under load. One lock per loop would change what it means (two
requests on two loops would both hold "the" lock); loopgrid's primitives
(``loopgrid.Lock``, ``Event``, ``Condition``, ``Semaphore``,
``BoundedSemaphore``, ``Barrier``, ``Queue``, ``PriorityQueue``,
``LifoQueue``) work across loops and keep it. So :func:`cross_loop` turns
such an object, in place, into one whose methods go to a loopgrid primitive:
it keeps its identity (every ``from app import lock`` sees it) and stays an
instance of its asyncio class.

Only what can be taken over safely is: an object of exactly one of those
asyncio classes (not a subclass), not bound to a loop yet, and idle (no
waiters; a lock not held; a barrier empty). A queue's items are moved over; a
condition's lock is taken over with it (so the lock, wherever else it is
kept, stays the condition's lock). What differs from asyncio is what differs
between loopgrid's primitives and asyncio's (docs/porting.md).

Thread ownership: the swap is made at startup, before any loop uses the
object; afterwards the loopgrid primitive does its own locking.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from .. import sync

__all__ = ["adoptable", "cross_loop", "is_shared"]


class _Acquired:
    """What a shared lock and a shared semaphore both do: go to ``_grid``."""

    _grid: sync.Lock | sync.Semaphore | sync.Condition

    def __repr__(self) -> str:
        return f"<asyncio.{_asyncio_name(self)} shared by every loop: {self._grid!r}>"

    async def acquire(self) -> bool:
        return await self._grid.acquire()

    def release(self) -> None:
        self._grid.release()

    def locked(self) -> bool:
        return self._grid.locked()

    async def __aenter__(self) -> None:
        await self._grid.__aenter__()

    async def __aexit__(self, *exc: object) -> None:
        self._grid.release()


class _GridLock(_Acquired, asyncio.Lock):  # type: ignore[misc]
    """An ``asyncio.Lock`` shared by every loop: a :class:`loopgrid.Lock` underneath."""


class _GridEvent(asyncio.Event):
    """An ``asyncio.Event`` shared by every loop: a :class:`loopgrid.Event` underneath."""

    _grid: sync.Event

    def __repr__(self) -> str:
        return f"<asyncio.Event shared by every loop: {self._grid!r}>"

    def is_set(self) -> bool:
        return self._grid.is_set()

    def set(self) -> None:
        self._grid.set()

    def clear(self) -> None:
        self._grid.clear()

    async def wait(self) -> bool:  # type: ignore[override]
        return await self._grid.wait()


class _GridSemaphore(_Acquired, asyncio.Semaphore):  # type: ignore[misc]
    """An ``asyncio.Semaphore`` shared by every loop: a :class:`loopgrid.Semaphore` underneath."""


class _GridBoundedSemaphore(_Acquired, asyncio.BoundedSemaphore):  # type: ignore[misc]
    """An ``asyncio.BoundedSemaphore`` shared by every loop: a
    :class:`loopgrid.BoundedSemaphore` underneath."""


class _GridCondition(_Acquired, asyncio.Condition):  # type: ignore[misc]
    """An ``asyncio.Condition`` shared by every loop: a :class:`loopgrid.Condition` underneath."""

    _grid: sync.Condition

    async def wait(self) -> bool:  # type: ignore[override]
        return await self._grid.wait()

    async def wait_for(self, predicate: Any) -> Any:
        return await self._grid.wait_for(predicate)

    def notify(self, n: int = 1) -> None:
        self._grid.notify(n)

    def notify_all(self) -> None:
        self._grid.notify_all()


class _GridQueue(asyncio.Queue):  # type: ignore[type-arg]
    """An ``asyncio.Queue`` shared by every loop: a :class:`loopgrid.Queue` underneath."""

    _grid: sync.Queue[Any]

    def __repr__(self) -> str:
        return f"<asyncio.{_asyncio_name(self)} shared by every loop: {self._grid!r}>"

    @property
    def maxsize(self) -> int:
        return self._grid.maxsize

    def qsize(self) -> int:
        return self._grid.qsize()

    def empty(self) -> bool:
        return self._grid.empty()

    def full(self) -> bool:
        return self._grid.full()

    async def put(self, item: Any) -> None:
        await self._grid.put(item)

    def put_nowait(self, item: Any) -> None:
        self._grid.put_nowait(item)

    async def get(self) -> Any:
        return await self._grid.get()

    def get_nowait(self) -> Any:
        return self._grid.get_nowait()

    def task_done(self) -> None:
        self._grid.task_done()

    async def join(self) -> None:
        await self._grid.join()

    def shutdown(self, immediate: bool = False) -> None:
        self._grid.shutdown(immediate)


class _GridPriorityQueue(_GridQueue, asyncio.PriorityQueue):  # type: ignore[type-arg]
    """An ``asyncio.PriorityQueue`` shared by every loop: a :class:`loopgrid.PriorityQueue`
    underneath."""


class _GridLifoQueue(_GridQueue, asyncio.LifoQueue):  # type: ignore[type-arg]
    """An ``asyncio.LifoQueue`` shared by every loop: a :class:`loopgrid.LifoQueue` underneath."""


def _idle(obj: Any) -> bool:
    if getattr(obj, "_loop", None) is not None:
        return False  # bound to a loop already
    waiters = getattr(obj, "_waiters", None)
    if waiters:
        return False
    if isinstance(obj, asyncio.Condition):
        lock: Any = obj._lock  # type: ignore[attr-defined]
        return is_shared(lock) or (type(lock) is asyncio.Lock and _idle(lock))
    if sys.version_info >= (3, 11) and isinstance(obj, asyncio.Barrier):
        barrier: Any = obj
        return barrier._count == 0 and not barrier.broken and _idle(barrier._cond)
    if isinstance(obj, asyncio.Queue):
        # No waiters, and no item taken and not yet marked done.
        queue: Any = obj
        return (
            not queue._getters and not queue._putters and queue._unfinished_tasks == queue.qsize()
        )
    if isinstance(obj, asyncio.Lock):
        return not obj.locked()
    return True


_ADOPT: dict[type, type] = {
    asyncio.Lock: _GridLock,
    asyncio.Event: _GridEvent,
    asyncio.Condition: _GridCondition,
    asyncio.Semaphore: _GridSemaphore,
    asyncio.BoundedSemaphore: _GridBoundedSemaphore,
    asyncio.Queue: _GridQueue,
    asyncio.PriorityQueue: _GridPriorityQueue,
    asyncio.LifoQueue: _GridLifoQueue,
}

if sys.version_info >= (3, 11):

    class _GridBarrier(asyncio.Barrier):
        """An ``asyncio.Barrier`` shared by every loop: a :class:`loopgrid.Barrier` underneath."""

        _grid: sync.Barrier

        def __repr__(self) -> str:
            return f"<asyncio.Barrier shared by every loop: {self._grid!r}>"

        async def __aenter__(self) -> int:
            return await self._grid.wait()

        async def __aexit__(self, *args: object) -> None:
            pass

        async def wait(self) -> int:
            return await self._grid.wait()

        async def reset(self) -> None:
            await self._grid.reset()

        async def abort(self) -> None:
            await self._grid.abort()

        @property
        def parties(self) -> int:
            return self._grid.parties

        @property
        def n_waiting(self) -> int:
            return self._grid.n_waiting

        @property
        def broken(self) -> bool:
            return self._grid.broken

    _ADOPT[asyncio.Barrier] = _GridBarrier


def is_shared(obj: object) -> bool:
    """Whether ``obj`` was taken over by :func:`cross_loop` (it is loop-free now)."""
    return type(obj) in _SHARED


def adoptable(obj: object) -> bool:
    """Whether :func:`cross_loop` can take ``obj`` over (see the docstring)."""
    return type(obj) in _ADOPT and _idle(obj)


def cross_loop(obj: Any) -> str | None:
    """Make an idle asyncio primitive shared by every loop, in place; returns
    a label of what was done, or None if ``obj`` cannot be taken over (it is
    then left as it was). Applying it twice is harmless."""
    if is_shared(obj):
        return _label(obj)
    if not adoptable(obj):
        return None
    kind = type(obj)
    inner: Any
    if kind is asyncio.Lock:
        inner = sync.Lock()
    elif kind is asyncio.Event:
        inner = sync.Event()
        if obj.is_set():
            inner.set()
    elif kind is asyncio.Condition:
        cross_loop(obj._lock)  # the lock object stays the condition's lock
        inner = sync.Condition(obj._lock._grid)
        for name in ("locked", "acquire", "release"):
            # asyncio.Condition keeps its lock's bound methods on the instance.
            vars(obj).pop(name, None)
    elif kind is asyncio.Semaphore:
        inner = sync.Semaphore(obj._value)
    elif kind is asyncio.BoundedSemaphore:
        inner = sync.BoundedSemaphore(obj._bound_value)
        inner._value = obj._value  # permits taken without waiting stay taken
    elif sys.version_info >= (3, 11) and kind is asyncio.Barrier:
        inner = sync.Barrier(obj.parties)
    else:
        inner = _QUEUES[kind](obj.maxsize)
        for item in list(obj._queue):  # in storage order: the order is kept
            inner.put_nowait(item)
        obj._queue.clear()
    obj._grid = inner
    obj.__class__ = _ADOPT[kind]
    return _label(obj)


_QUEUES: dict[type, type] = {
    asyncio.Queue: sync.Queue,
    asyncio.PriorityQueue: sync.PriorityQueue,
    asyncio.LifoQueue: sync.LifoQueue,
}

_SHARED = frozenset(_ADOPT.values())


def _asyncio_name(obj: object) -> str:
    """The name of the asyncio class an adopted object still is an instance of."""
    return next(c.__name__ for c in type(obj).__mro__ if c.__module__.startswith("asyncio"))


def _label(obj: object) -> str:
    name = _asyncio_name(obj)
    return f"asyncio.{name}: one {name} shared by every loop (loopgrid.{name} underneath)"


if sys.version_info < (3, 13):
    del _GridQueue.shutdown
