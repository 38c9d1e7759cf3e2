"""asyncio primitives made at import and shared by every loop: loopgrid's underneath.

Why: ``lock = asyncio.Lock()`` at module level, taken by every request, is one
lock for the whole process under uvicorn. On a grid the first task that has
to wait for it binds it to that task's loop, and a request on another loop
then fails with "bound to a different event loop" - only when two requests
meet, so only under load. One lock per loop would change what it means (two
requests on two loops would both hold "the" lock); loopgrid's primitives
(``loopgrid.Lock``, ``Event``, ``Semaphore``, ``Queue``) work across loops and
keep it. So :func:`cross_loop` turns such an object, in place, into one whose
methods go to a loopgrid primitive: it keeps its identity (every ``from app
import lock`` sees it) and stays an instance of its asyncio class.

Only what can be taken over safely is: an object of exactly
``asyncio.Lock``, ``Event``, ``Semaphore`` or ``Queue`` (``BoundedSemaphore``,
``PriorityQueue``, ``LifoQueue``, ``Condition`` and ``Barrier`` have no
loopgrid counterpart yet), not bound to a loop yet, and idle (no waiters; a
lock not held). A queue's items are moved over. What differs from asyncio is
what differs between loopgrid's primitives and asyncio's (README, "Porting"),
and a queue's ``shutdown()`` (3.13), which is refused.

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

    _grid: sync.Lock | sync.Semaphore

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


class _GridQueue(asyncio.Queue):  # type: ignore[type-arg]
    """An ``asyncio.Queue`` shared by every loop: a :class:`loopgrid.Queue` underneath."""

    _grid: sync.Queue[Any]

    def __repr__(self) -> str:
        return f"<asyncio.Queue shared by every loop: {self._grid!r}>"

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
        raise RuntimeError(
            f"{self!r} was made at import and is shared by every loop of a grid "
            "(loopgrid.integrations.primitives): shutdown() is not supported there; "
            "use a queue per loop (loopgrid.LoopLocal(asyncio.Queue)) to shut it down"
        )


def _idle(obj: Any) -> bool:
    if getattr(obj, "_loop", None) is not None:
        return False  # bound to a loop already
    waiters = getattr(obj, "_waiters", None)
    if waiters:
        return False
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
    asyncio.Semaphore: _GridSemaphore,
    asyncio.Queue: _GridQueue,
}


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
    elif kind is asyncio.Semaphore:
        inner = sync.Semaphore(obj._value)
    else:
        inner = sync.Queue(obj.maxsize)
        while not obj.empty():
            inner.put_nowait(obj.get_nowait())
    obj._grid = inner
    obj.__class__ = _ADOPT[kind]
    return _label(obj)


_SHARED = frozenset(_ADOPT.values())


def _asyncio_name(obj: object) -> str:
    """The name of the asyncio class an adopted object still is an instance of."""
    return next(c.__name__ for c in type(obj).__mro__ if c.__module__.startswith("asyncio"))


def _label(obj: object) -> str:
    name = _asyncio_name(obj)
    return f"asyncio.{name}: one {name} shared by every loop (loopgrid.{name} underneath)"


if sys.version_info < (3, 13):
    del _GridQueue.shutdown
