"""The cross-loop queues: Queue, PriorityQueue and LifoQueue, with asyncio's shutdown().

The queues wake and retry, as asyncio.Queue does: items only ever live in the
queue's storage, so a getter cancelled at any moment cannot lose one, and a
woken waiter that gives up passes its wake-up on. Only a caller that has to
wait runs the core (``_put_waiting``, ``_get_waiting``), the same for tasks
and threads; a put that finds room takes the mutex once, and wakes a getter
only if one waits.

A get from a :class:`Queue` (not a subclass with storage of its own) takes no
mutex at all: ``deque.popleft()`` is atomic, also on free-threaded builds, and
a get only ever removes, so it cannot break the bound or the order. What it
must not do is strand a putter that is about to wait on a full queue: the
putter queues itself (under the mutex) and then looks at the queue's length
again; the getter pops and then looks whether putters wait (and if so wakes
the first under the mutex). Each side writes first and reads the other's
deque second, and deque writes are made under the deque's own lock (on
free-threaded builds, taken and released with sequentially consistent atomic
read-modify-writes; on GIL builds, any thread switch is a full barrier), so
at least one side sees the other: the putter finds room, or the getter wakes
it. Under the mutex, a look at the items and the pop that follows may find
the deque emptied in between by such a get, and take that as empty.

Thread ownership: the waiter deques, ``_unfinished`` and ``_is_shutdown``,
and every change to the items but those gets, are guarded by ``_mutex``, taken
by any thread for a few field updates only: never across a wait, an ``await``
or a call into user code (the storage hooks ``_put`` and ``_get`` of a
subclass run under it: no waiting there). Wake-ups are issued after the mutex
is released, except the join event's ``set()`` in ``task_done`` (see there).
``qsize()``, ``empty()`` and ``full()`` read without it: snapshots.
"""

from __future__ import annotations

import asyncio
import math
import sys
import threading
from collections import deque
from heapq import heappop, heappush
from typing import Any, Generic, TypeVar

from ..mailbox import running_loop
from ._waiter import (
    TASK,
    THREAD,
    Waiter,
    Waits,
    begin_blocking,
    expired,
    not_on_asyncio_error,
    pick,
    pick_many,
    remove,
    run_blocking,
    wait_or_give_up,
)
from .event import Event

__all__ = ["LifoQueue", "PriorityQueue", "Queue", "QueueShutDown"]

T = TypeVar("T")

_allocate_lock = threading.Lock

if sys.version_info >= (3, 13):
    from asyncio import QueueShutDown
else:

    class QueueShutDown(Exception):
        """Raised by a queue's put or get once it was shut down (asyncio's from 3.13)."""


#: What ``_pop_unlocked`` returns when there was no item (None is an item).
_EMPTY: Any = object()


def _maxsize(value: object, cls: str) -> Any:
    """A queue's ``maxsize``: any number, as asyncio takes it (0 or less: unbounded)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{cls} maxsize must be a number (0 or less: unbounded), got {value!r}")
    if math.isnan(value):
        raise ValueError(f"{cls} maxsize must be a number, got {value!r}")
    return value


class Queue(Generic[T]):
    """A FIFO queue, bounded by ``maxsize`` (0: unbounded), shared across loops and threads.

    ``await put(item)`` waits while the queue is full and ``await get()`` while
    it is empty, from a task on any loop; ``put_blocking`` / ``get_blocking``
    do the same in a plain thread; ``put_nowait`` / ``get_nowait`` never wait
    and raise :class:`asyncio.QueueFull` / :class:`asyncio.QueueEmpty`.
    ``task_done()`` and ``join()`` count unfinished items as in
    :class:`asyncio.Queue`, and ``shutdown(immediate=False)`` is asyncio's
    (3.13) on every Python version: puts then raise :class:`QueueShutDown`,
    and gets do once the queue is empty (at once with ``immediate=True``,
    which drops the items).

    A woken waiter takes the item (or the free slot) when it runs, as in
    asyncio: items stay in the queue until a getter returns one, so a getter
    cancelled at any moment loses nothing, and a woken waiter that gives up
    passes its wake-up to the next one. As with asyncio, a subclass may
    change the order by overriding ``_init``, ``_put`` and ``_get`` (they
    run with the queue's mutex held: no waiting there).
    """

    __slots__ = (
        "__weakref__",
        "_finished",
        "_getters",
        "_is_shutdown",
        "_maxsize",
        "_mutex",
        "_putters",
        "_queue",
        "_unfinished",
    )

    _queue: Any

    #: Whether gets pop without the mutex: true while the storage is Queue's own
    #: deque (see the module docstring); a subclass with storage of its own
    #: (``_init`` or ``_get`` overridden) takes the mutex for every get.
    _atomic_get = True

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls._init is not Queue._init or cls._get is not Queue._get:
            cls._atomic_get = False

    def __init__(self, maxsize: int = 0) -> None:
        self._maxsize = _maxsize(maxsize, type(self).__name__)
        self._mutex = _allocate_lock()
        self._init(maxsize)
        self._getters: deque[Waiter] = deque()
        self._putters: deque[Waiter] = deque()
        self._unfinished = 0
        self._is_shutdown = False
        self._finished = Event()
        self._finished.set()

    def __repr__(self) -> str:
        parts = [f"maxsize={self._maxsize}", f"qsize={len(self._queue)}"]
        if self._getters:
            parts.append(f"getters:{len(self._getters)}")
        if self._putters:
            parts.append(f"putters:{len(self._putters)}")
        if self._unfinished:
            parts.append(f"unfinished:{self._unfinished}")
        if self._is_shutdown:
            parts.append("shutdown")
        return f"<loopgrid.{type(self).__name__} object at {id(self):#x} [{', '.join(parts)}]>"

    # -- storage: what a subclass overrides (mutex held) ------------------------------

    def _init(self, maxsize: int) -> None:
        self._queue = deque()

    def _put(self, item: T) -> None:
        self._queue.append(item)

    def _get(self) -> T:
        item: T = self._queue.popleft()
        return item

    # -- state ----------------------------------------------------------------------

    @property
    def maxsize(self) -> int:
        """Number of items allowed in the queue; 0 (or less) means no bound."""
        size: int = self._maxsize
        return size

    def qsize(self) -> int:
        return len(self._queue)

    def empty(self) -> bool:
        return not self._queue

    def full(self) -> bool:
        return bool(0 < self._maxsize <= len(self._queue))

    # -- put ------------------------------------------------------------------------

    def put_nowait(self, item: T) -> None:
        """Put ``item`` if there is room, else raise :class:`asyncio.QueueFull`
        (:class:`QueueShutDown` once shut down)."""
        with self._mutex:
            if self._is_shutdown:
                raise QueueShutDown(f"{self!r} was shut down")
            if 0 < self._maxsize <= len(self._queue):
                raise asyncio.QueueFull(f"{self!r} is full")
            w = self._add(item)
        if w is not None:
            w.wake()

    async def put(self, item: T) -> None:
        """Put ``item``, waiting while the queue is full; QueueShutDown once shut down."""
        mutex = self._mutex
        mutex.acquire()
        try:
            room = not self._is_shutdown and not 0 < self._maxsize <= len(self._queue)
            w = self._add(item) if room else None
        finally:
            mutex.release()
        if not room:
            await self._put_waiting(item, TASK, None, None)
        elif w is not None:
            w.wake()

    def put_blocking(self, item: T, timeout: float | None = None) -> None:
        """Put ``item`` from a plain thread, waiting up to ``timeout`` seconds for room.

        Raises TimeoutError if there was no room in time, :class:`QueueShutDown`
        once shut down, and :class:`~loopgrid.WouldBlockError` on a thread that
        runs an event loop.
        """
        deadline = begin_blocking(f"{type(self).__name__}.put_blocking()", self, timeout)
        run_blocking(self._put_waiting(item, THREAD, deadline, timeout))

    async def _put_waiting(
        self, item: T, how: Waits, deadline: float | None, timeout: float | None
    ) -> None:
        """The one put that may wait: for room, or until ``deadline`` (threads)."""
        putters = self._putters
        while True:
            with self._mutex:
                if self._is_shutdown:
                    raise QueueShutDown(f"{self!r} was shut down")
                if not 0 < self._maxsize <= len(self._queue):
                    w = self._add(item)
                    break
                if expired(deadline):
                    raise TimeoutError(f"{self!r} stayed full for {timeout} s")
                pw = how.waiter(None, self, "put", deadline)
                putters.append(pw)
                if not 0 < self._maxsize <= len(self._queue):
                    # A get without the mutex freed a slot since the look above,
                    # and did not see this putter: look again (module docstring).
                    putters.pop()
                    continue
            if not await wait_or_give_up(pw, self._give_up, pw, putters):
                self._give_up(pw, putters)  # timed out: the loop looks once more
        if w is not None:
            w.wake()

    # -- get ------------------------------------------------------------------------

    def get_nowait(self) -> T:
        """Remove and return an item if one is there, else raise :class:`asyncio.QueueEmpty`
        (:class:`QueueShutDown` once shut down)."""
        if self._atomic_get and self._queue:
            item: T = self._pop_unlocked()
            if item is not _EMPTY:
                return item
        with self._mutex:
            taken = self._take()
            if taken is None:
                if self._is_shutdown:
                    raise QueueShutDown(f"{self!r} was shut down")
                raise asyncio.QueueEmpty(f"{self!r} is empty")
        item, w = taken
        if w is not None:
            w.wake()
        return item

    async def get(self) -> T:
        """Remove and return an item, waiting while the queue is empty; once it is
        shut down and empty, raise :class:`QueueShutDown`."""
        if self._atomic_get and self._queue:
            item: T = self._pop_unlocked()
            if item is not _EMPTY:
                return item
        return await self._get_waiting(TASK, None, None)

    def get_blocking(self, timeout: float | None = None) -> T:
        """Remove and return an item from a plain thread, waiting up to ``timeout`` seconds.

        Raises TimeoutError if no item came in time, :class:`QueueShutDown`
        once shut down and empty, and :class:`~loopgrid.WouldBlockError` on a
        thread that runs an event loop.
        """
        deadline = begin_blocking(f"{type(self).__name__}.get_blocking()", self, timeout)
        return run_blocking(self._get_waiting(THREAD, deadline, timeout))

    async def _get_waiting(self, how: Waits, deadline: float | None, timeout: float | None) -> T:
        """The one get that may wait: for an item, or until ``deadline`` (threads)."""
        getters = self._getters
        while True:
            with self._mutex:
                taken = self._take()
                if taken is not None:
                    break
                if self._is_shutdown:
                    raise QueueShutDown(f"{self!r} was shut down")
                if expired(deadline):
                    raise TimeoutError(f"{self!r} stayed empty for {timeout} s")
                gw = how.waiter(None, self, "get", deadline)
                getters.append(gw)
            if not await wait_or_give_up(gw, self._give_up, gw, getters):
                self._give_up(gw, getters)  # timed out: the loop looks once more
        item, w = taken
        if w is not None:
            w.wake()
        return item

    # -- unfinished items ---------------------------------------------------------

    def task_done(self) -> None:
        """Mark one item taken from the queue as processed (see :meth:`join`).

        Raises ValueError if called more times than items were put.
        """
        with self._mutex:
            if self._unfinished <= 0:
                raise ValueError(
                    f"task_done() called too many times: more times than items were put in {self!r}"
                )
            self._unfinished -= 1
            if self._unfinished == 0:
                # Under the mutex, so a concurrent put's clear() cannot come
                # before this set() and leave the event set with work pending.
                self._finished.set()

    async def join(self) -> None:
        """Wait until every item put has been marked done with :meth:`task_done`."""
        if not self._finished.is_set() and running_loop() is None:
            raise not_on_asyncio_error(self, "join")  # rather than one about an Event
        await self._finished.wait()

    def join_blocking(self, timeout: float | None = None) -> bool:
        """:meth:`join` from a plain thread; returns False if ``timeout`` passed first."""
        begin_blocking(f"{type(self).__name__}.join_blocking()", self)
        return self._finished.wait_blocking(timeout)

    # -- shutdown -----------------------------------------------------------------

    def shutdown(self, immediate: bool = False) -> None:
        """Shut the queue down: ``put`` raises :class:`QueueShutDown` from now
        on, and ``get`` does once the queue is empty; blocked putters and
        getters (on every loop and thread) are woken to find out.

        With ``immediate=True`` the items left are dropped (each counts as
        done for :meth:`join`), so getters raise at once. As asyncio's (3.13).
        """
        with self._mutex:
            self._is_shutdown = True
            if immediate:
                while self._queue:
                    try:
                        self._get()
                    except IndexError:  # a get without the mutex took the last one
                        break
                    if self._unfinished > 0:
                        self._unfinished -= 1
                if self._unfinished == 0:
                    self._finished.set()
            wake = pick_many(self._getters) + pick_many(self._putters)
        for w in wake:
            w.wake()

    # -- internals (mutex held) -----------------------------------------------------

    def _add(self, item: T) -> Waiter | None:
        """Store ``item`` and pick a getter to wake."""
        self._put(item)
        self._unfinished += 1
        if self._unfinished == 1:
            self._finished.clear()
        getters = self._getters
        return pick(getters) if getters else None

    def _take(self) -> tuple[T, Waiter | None] | None:
        """Remove an item and pick a putter to wake; None if there is no item."""
        if not self._queue:
            return None
        try:
            item = self._get()
        except IndexError:
            if not self._atomic_get:
                raise
            return None  # a get without the mutex took the last one since the look
        putters = self._putters
        return item, pick(putters) if putters else None

    def _pop_unlocked(self) -> Any:
        """A get without the mutex (Queue's own deque, see the module docstring):
        the first item, and a putter woken if one waits; ``_EMPTY`` if the
        deque was emptied since the caller looked."""
        try:
            item = self._queue.popleft()
        except IndexError:
            return _EMPTY
        if self._putters:
            self._wake_putter()
        return item

    def _wake_putter(self) -> None:
        """After a get without the mutex: wake the first putter if there is room."""
        with self._mutex:
            putters = self._putters
            room = not 0 < self._maxsize <= len(self._queue)
            w = pick(putters) if putters and room else None
        if w is not None:
            w.wake()

    def _give_up(self, w: Waiter, waiters: deque[Waiter]) -> None:
        """``w`` stops waiting (mutex not held). If it had been woken, its wake-up
        goes to the next waiter when what it was woken for (an item, a free
        slot) is still there."""
        wake = None
        with self._mutex:
            if not w.granted:
                if not w.skipped:
                    remove(waiters, w)
            elif waiters is self._getters:
                if self._queue:
                    wake = pick(waiters)
            elif not 0 < self._maxsize <= len(self._queue):
                wake = pick(waiters)
        if wake is not None:
            wake.wake()


class PriorityQueue(Queue[T]):
    """A :class:`Queue` that returns its lowest item first (``heapq`` order), as
    :class:`asyncio.PriorityQueue`: put ``(priority, item)`` tuples."""

    __slots__ = ()

    def _init(self, maxsize: int) -> None:
        self._queue = []

    def _put(self, item: T) -> None:
        heappush(self._queue, item)

    def _get(self) -> T:
        item: T = heappop(self._queue)
        return item


class LifoQueue(Queue[T]):
    """A :class:`Queue` that returns the item put last first, as
    :class:`asyncio.LifoQueue`."""

    __slots__ = ()

    def _init(self, maxsize: int) -> None:
        self._queue = []

    def _put(self, item: T) -> None:
        self._queue.append(item)

    def _get(self) -> T:
        item: T = self._queue.pop()
        return item
