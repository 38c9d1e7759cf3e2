"""Cross-loop synchronisation primitives: :class:`Lock`, :class:`Event`,
:class:`Semaphore` and a bounded :class:`Queue`.

asyncio's primitives belong to one event loop: their waiters are futures of
that loop, woken with ``call_soon``, which is not thread-safe, and a second
loop that touches one gets RuntimeError. A grid runs one loop per thread, and
its tasks (plus foreign loops and plain threads) need to share locks and
queues. These mirror asyncio's API and work from a task on any grid worker,
from a task on any other asyncio or uvloop loop, and, through the
``*_blocking`` methods and ``with``, from plain threads.

How a waiter is woken: each primitive keeps a FIFO of :class:`_Waiter` records.
A task's record holds a future of *its own* loop and that loop's
:class:`~loopgrid.mailbox.Mailbox`; a waker on the same thread resolves the
future directly, a waker on another thread posts to the mailbox (one
thread-safe call per burst, as for handles). A plain thread's record holds a
``threading`` lock that the thread blocks on and the waker releases.

Lock and Semaphore *hand over*: ``release()`` gives the lock (or the permit)
to the first waiter, under the primitive's mutex, before waking it. Nobody can
barge in between, so the lock is FIFO-fair across loops (a woken task on a busy
loop may take a while to run; with wake-and-retry, a caller on a quicker thread
would take the lock first every time). A waiter that is cancelled or times out
after it was granted releases on its way out, so no permit is ever lost. The
Queue wakes and retries, as asyncio.Queue does: items only ever live in the
queue's deque, so a getter cancelled at any moment cannot lose one, and a woken
waiter that gives up passes its wake-up on.

Thread ownership:

* Each primitive's state (the owner or value, the flag, the items, the waiter
  deques, ``_unfinished``) is guarded by its own ``threading.Lock``,
  ``_mutex``, taken by any thread for a few field updates only: never across a
  wait, an ``await`` or a call into user code. Wake-ups are issued after the
  mutex is released (except ``Queue``'s join event, see ``task_done``).
  Lock-free reads (``locked()``, ``is_set()``, ``qsize()``) are snapshots.
* A :class:`_Waiter`'s ``granted`` flag is written under its primitive's mutex
  only: by the waker when it grants or wakes, and read by the waiter under the
  mutex when it gives up, so exactly one of "granted" and "gave up" wins. Its
  future is resolved only on its own loop's thread; its ``parked`` lock is
  released by the one waker that removed the record from the deque.
* Deadlock edges (Lock only, see ``deadlock.py``): a waiter waits for the node
  ahead of it in the FIFO, or the owner if it is first. Those edges are written
  under the lock's mutex, by the waiter itself when it queues and gives up, and
  by whoever hands the lock over (removing the new owner's edge) or removes a
  waiter from the middle of the FIFO (re-pointing its successor). A record is
  in the FIFO exactly while its edge may be written by others.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from types import TracebackType
from typing import Generic, TypeVar

from . import deadlock
from .errors import DeadlockError, WouldBlockError
from .handle import not_on_asyncio
from .mailbox import Mailbox, mailbox_for_running_loop, running_loop

__all__ = ["Event", "Lock", "Queue", "Semaphore"]

T = TypeVar("T")

_allocate_lock = threading.Lock
_monotonic = time.monotonic
_current_task = asyncio.current_task
_current_thread = threading.current_thread
_current_node = deadlock.current_node

#: The blocking variant of each waiting method, named by the error for trio code.
_BLOCKING = {
    "acquire": "acquire_blocking",
    "wait": "wait_blocking",
    "get": "get_blocking",
    "put": "put_blocking, item",
    "join": "join_blocking",
}


class _Waiter:
    """One party waiting on a primitive: a task (``fut``, ``mb``) or a thread (``parked``)."""

    __slots__ = ("fut", "granted", "mb", "node", "parked")

    def __init__(
        self,
        node: object,
        fut: asyncio.Future[None] | None,
        mb: Mailbox | None,
        parked: threading.Lock | None,
    ) -> None:
        self.node = node
        self.fut = fut
        self.mb = mb
        self.parked = parked
        self.granted = False

    def dead(self) -> bool:
        """True if nobody will ever see a wake-up: the waiting task's loop is closed.

        Such a record is skipped rather than granted, so that a loop closed
        without cancelling its tasks does not take a lock or a permit with it.
        The task itself is destroyed later, by the garbage collector, which
        closes its coroutine with GeneratorExit at whatever point the
        collection ran, possibly while this very thread holds a primitive's
        mutex: the waits therefore let GeneratorExit through untouched, and
        never take a mutex from a finalizer.
        """
        return self.mb is not None and self.mb.loop.is_closed()


def _task_node(obj: object) -> object:
    """``deadlock.current_node()`` for an async method of ``obj``: the current
    task, or the thread if a loop runs without one; the error for trio code
    (no asyncio loop) instead of filing the caller under its thread."""
    try:
        task = _current_task()
    except RuntimeError:
        raise _not_on_asyncio(obj, "acquire") from None
    return _current_thread() if task is None else task


def _task_waiter(node: object, obj: object, method: str) -> tuple[_Waiter, asyncio.Future[None]]:
    mb = mailbox_for_running_loop()
    if mb is None:  # an await outside asyncio: trio code, say
        raise _not_on_asyncio(obj, method)
    fut = mb.loop.create_future()
    return _Waiter(node, fut, mb, None), fut


def _not_on_asyncio(obj: object, method: str) -> RuntimeError:
    name = type(obj).__name__
    return not_on_asyncio(f"{name}.{method}() on {obj!r}", f"{name.lower()}.{_BLOCKING[method]}")


def _thread_waiter(node: object) -> _Waiter:
    parked = _allocate_lock()
    parked.acquire()
    return _Waiter(node, None, None, parked)


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


def _wake(w: _Waiter) -> None:
    """Wake one waiter whose record was removed from its deque (any thread)."""
    parked = w.parked
    if parked is not None:
        parked.release()
        return
    fut = w.fut
    mb = w.mb
    assert fut is not None and mb is not None
    if mb.loop is running_loop():
        _resolve(fut)
    else:
        mb.post(_resolve, fut, None)


def _park(w: _Waiter, deadline: float | None) -> bool:
    """Block this thread until woken (True) or ``deadline`` passes (False)."""
    parked = w.parked
    assert parked is not None
    if deadline is None:
        return parked.acquire()
    return parked.acquire(timeout=max(0.0, deadline - _monotonic()))


def _no_blocking_here(what: str, obj: object) -> None:
    """Refuse a blocking wait on a thread that runs an event loop.

    Always, not only when the wait would actually block: a call that passes
    while uncontended and freezes the loop under load is a bug best found on
    its first run. Use the ``async`` method there.
    """
    if running_loop() is not None:
        raise WouldBlockError(
            f"{what} on {obj!r} from a thread that runs an event loop: waiting "
            f"would block that loop; await the async method there instead"
        )


def _deadline(timeout: float | None) -> float | None:
    """Validate a blocking call's ``timeout`` and turn it into a deadline."""
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise TypeError(f"timeout must be None or a number of seconds, got {timeout!r}")
    if math.isnan(timeout) or timeout < 0:
        raise ValueError(f"timeout must be None or >= 0, got {timeout!r}")
    if math.isinf(timeout):
        return None
    return _monotonic() + timeout


def _count(name: str, value: object, cls: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{cls} {name} must be an int >= 0, got {value!r}")
    if value < 0:
        raise ValueError(f"{cls} {name} must be >= 0, got {value!r}")
    return value


async def _wait_or_give_up(
    fut: asyncio.Future[None], give_up: Callable[..., object], *args: object
) -> None:
    """Wait for a waiter's future; if the wait ends any other way, give up and re-raise.

    ``give_up(*args)`` takes the waiter out of its queue, or passes on what was
    handed to it meanwhile. GeneratorExit (the waiting coroutine closed
    without running again, see ``_Waiter.dead``) is let through untouched.
    """
    try:
        await fut
    except GeneratorExit:
        raise
    except BaseException:
        give_up(*args)
        raise


def _remove(waiters: deque[_Waiter], w: _Waiter) -> int:
    """Remove ``w``, which has not been woken, from ``waiters``; return its index (mutex held)."""
    i = waiters.index(w)
    del waiters[i]
    return i


# -- Lock and Semaphore -------------------------------------------------------------


class _HandOver:
    """What Lock and Semaphore share: FIFO waiters, served by hand-over.

    A subclass says, with its mutex held, how to take the lock or a permit at
    once (``_take``), how to queue a waiter (``_queue``), how to forget one
    that gave up before it was served (``_forget``), and whom to hand over to
    (``_hand_over``); waiting, giving up and the context-manager protocol are
    the same for both.
    """

    __slots__ = ()

    _mutex: threading.Lock
    _waiters: deque[_Waiter]

    def _take(self, node: object) -> bool:
        raise NotImplementedError

    def _queue(self, w: _Waiter) -> None:
        self._waiters.append(w)

    def _forget(self, w: _Waiter) -> None:
        _remove(self._waiters, w)

    def _hand_over(self) -> _Waiter | None:
        raise NotImplementedError

    def release(self) -> None:
        raise NotImplementedError

    async def acquire(self) -> bool:
        """Wait until the lock (or a permit) is free and take it; returns True.

        Cancelling the waiting task (``asyncio.timeout``, ``wait_for``...)
        leaves things as if it had never asked, even when the lock or permit
        had just been handed to it.
        """
        node = _task_node(self)
        with self._mutex:
            if self._take(node):
                return True
            w, fut = _task_waiter(node, self, "acquire")
            self._queue(w)
        await _wait_or_give_up(fut, self._give_up, w, False)
        return True

    def acquire_blocking(self, timeout: float | None = None) -> bool:
        """Take the lock (or a permit) from a plain thread, waiting up to ``timeout`` s.

        Returns True when taken, False when the timeout passed first
        (``timeout=0`` only tries). Raises :class:`~loopgrid.WouldBlockError`
        on a thread that runs an event loop.
        """
        _no_blocking_here(f"{type(self).__name__}.acquire_blocking()", self)
        deadline = _deadline(timeout)
        node = _current_node()
        with self._mutex:
            if self._take(node):
                return True
            if deadline is not None and deadline <= _monotonic():
                return False
            w = _thread_waiter(node)
            self._queue(w)
        try:
            woken = _park(w, deadline)
        except BaseException:  # KeyboardInterrupt in the main thread
            self._give_up(w, keep=False)
            raise
        # A timeout that raced a hand-over keeps what it was given.
        return woken or self._give_up(w, keep=True)

    def _give_up(self, w: _Waiter, keep: bool) -> bool:
        """The waiter ``w`` stops waiting; returns True if it keeps what it got.

        If the lock or a permit had been handed to ``w`` meanwhile, ``w`` keeps
        it when ``keep`` (a thread's timeout raced the hand-over: the thread is
        told it has it) and otherwise passes it on (a task leaving with
        CancelledError, a thread interrupted), so nothing is ever lost.
        """
        wake = None
        with self._mutex:
            if w.granted:
                if keep:
                    return True
                wake = self._hand_over()
            else:
                self._forget(w)
        if wake is not None:
            _wake(wake)
        return False

    async def __aenter__(self) -> None:
        await self.acquire()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()

    def __enter__(self) -> None:
        self.acquire_blocking()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


class Lock(_HandOver):
    """A mutual-exclusion lock for tasks on any loop and for plain threads.

    ``async with lock:`` (or ``await lock.acquire()`` / ``lock.release()``) in
    a task on any loop; ``with lock:`` or ``lock.acquire_blocking(timeout)`` in
    a plain thread. Not reentrant. Waiters get the lock in the order they asked
    for it, whatever loop or thread they are on: ``release()`` hands it to the
    first waiter directly.

    As with :class:`asyncio.Lock`, any task or thread may release it. A task or
    thread that waits for the lock while the wait would close a cycle (its
    holder waits, directly or through other tasks and locks, for the waiter)
    gets :class:`~loopgrid.DeadlockError` naming the cycle instead of hanging,
    and does not take the lock.
    """

    __slots__ = ("__weakref__", "_mutex", "_owner", "_waiters")

    def __init__(self) -> None:
        self._mutex = _allocate_lock()
        #: The node holding the lock (see ``deadlock.current_node``); None when free.
        self._owner: object | None = None
        self._waiters: deque[_Waiter] = deque()

    def __repr__(self) -> str:
        state = "unlocked" if self._owner is None else "locked"
        n = len(self._waiters)
        extra = f", waiters:{n}" if n else ""
        return f"<loopgrid.Lock object at {id(self):#x} [{state}{extra}]>"

    def locked(self) -> bool:
        """True if some task or thread holds the lock."""
        return self._owner is not None

    def release(self) -> None:
        """Release the lock, handing it to the first waiter if there is one.

        Raises RuntimeError if the lock is not held.
        """
        with self._mutex:
            if self._owner is None:
                raise RuntimeError(f"Lock.release() on {self!r}, which is not locked")
            if not self._waiters:
                self._owner = None
                return
            w = self._hand_over()
        if w is not None:
            _wake(w)

    async def __aenter__(self) -> None:
        # acquire()'s free-lock path inlined: one coroutine less per ``async with``.
        node = _task_node(self)
        with self._mutex:
            if self._owner is None:
                self._owner = node
                return
        await self.acquire()

    # -- under the mutex ----------------------------------------------------------

    def _take(self, node: object) -> bool:
        if self._owner is None:
            self._owner = node
            return True
        return False

    def _queue(self, w: _Waiter) -> None:
        """Record ``w``'s wait, then queue it; may raise DeadlockError.

        The wait-for edge points at the waiter ahead in the FIFO, or at the
        owner if there is none. With hand-over in FIFO order each waiter will
        hold the lock, and must release it, before the next one gets it, so
        that edge stays true as the lock changes hands: only the new owner's
        own edge is removed (see :meth:`_hand_over`). Pointing every waiter
        at the owner instead would leave stale edges to past owners, and a
        past owner that then awaits a waiter would be told of a cycle that
        does not exist.
        """
        waiters = self._waiters
        ahead = waiters[-1].node if waiters else self._owner
        deadlock.begin_wait(ahead, f"lock {self!r}", w.node)
        waiters.append(w)

    def _forget(self, w: _Waiter) -> None:
        deadlock.end_wait(w.node)
        self._repoint(_remove(self._waiters, w))

    def _hand_over(self) -> _Waiter | None:
        """Give the lock to the first live waiter, or free it (mutex held)."""
        waiters = self._waiters
        while waiters:
            w = waiters.popleft()
            deadlock.end_wait(w.node)
            if w.dead():
                self._repoint(0)
                continue
            w.granted = True
            self._owner = w.node
            return w
        self._owner = None
        return None

    def _repoint(self, i: int) -> None:
        """Point the edge of the waiter now at index ``i`` at its new predecessor."""
        waiters = self._waiters
        if i >= len(waiters):
            return
        ahead = waiters[i - 1].node if i > 0 else self._owner
        try:
            deadlock.begin_wait(ahead, f"lock {self!r}", waiters[i].node)
        except DeadlockError:
            # Only reachable in the racy window deadlock.py describes (the path
            # from the successor already led to its new predecessor). The edge
            # is dropped: a cycle may go unreported, none is ever invented.
            pass


class Semaphore(_HandOver):
    """A counter of permits for tasks on any loop and for plain threads.

    ``acquire()`` takes a permit, waiting while there are none; ``release()``
    adds one, handing it straight to the first waiter if there is one, so
    waiters are served in FIFO order across loops and threads. As with
    :class:`asyncio.Semaphore`, ``release()`` may be called more often than
    ``acquire()``.
    """

    __slots__ = ("__weakref__", "_mutex", "_value", "_waiters")

    def __init__(self, value: int = 1) -> None:
        self._value = _count("value", value, "Semaphore")
        self._mutex = _allocate_lock()
        self._waiters: deque[_Waiter] = deque()

    def __repr__(self) -> str:
        n = len(self._waiters)
        extra = f", waiters:{n}" if n else ""
        state = "locked" if self._value == 0 else f"unlocked, value:{self._value}"
        return f"<loopgrid.Semaphore object at {id(self):#x} [{state}{extra}]>"

    def locked(self) -> bool:
        """True if ``acquire()`` would wait (no permit is free)."""
        return self._value == 0

    def release(self) -> None:
        """Add a permit, or hand it to the first waiter."""
        with self._mutex:
            w = self._hand_over()
        if w is not None:
            _wake(w)

    def _take(self, node: object) -> bool:
        if self._value > 0:  # > 0 only when nobody waits (hand-over)
            self._value -= 1
            return True
        return False

    def _hand_over(self) -> _Waiter | None:
        """Give a permit to the first live waiter, or add it to the count (mutex held)."""
        waiters = self._waiters
        while waiters:
            w = waiters.popleft()
            if not w.dead():
                w.granted = True
                return w
        self._value += 1
        return None


# -- Event ------------------------------------------------------------------------


class Event:
    """A flag that tasks on any loop and plain threads can wait for.

    ``set()`` wakes every waiter, on every loop and thread; ``clear()`` resets
    the flag. A waiter woken by ``set()`` returns True even if the flag was
    cleared again before it ran, as with :class:`asyncio.Event`.
    """

    __slots__ = ("__weakref__", "_flag", "_mutex", "_waiters")

    def __init__(self) -> None:
        self._flag = False
        self._mutex = _allocate_lock()
        self._waiters: list[_Waiter] = []

    def __repr__(self) -> str:
        n = len(self._waiters)
        extra = f", waiters:{n}" if n else ""
        state = "set" if self._flag else "unset"
        return f"<loopgrid.Event object at {id(self):#x} [{state}{extra}]>"

    def is_set(self) -> bool:
        return self._flag

    def set(self) -> None:
        """Set the flag and wake every waiter; callable from any thread."""
        with self._mutex:
            if self._flag:
                return
            self._flag = True
            waiters, self._waiters = self._waiters, []
            for w in waiters:
                w.granted = True
        for w in waiters:
            _wake(w)

    def clear(self) -> None:
        """Reset the flag; later ``wait()`` calls wait for the next ``set()``."""
        with self._mutex:
            self._flag = False

    async def wait(self) -> bool:
        """Wait until the flag is set; returns True."""
        if self._flag:
            return True
        with self._mutex:
            if self._flag:
                return True
            w, fut = _task_waiter(None, self, "wait")
            self._waiters.append(w)
        await _wait_or_give_up(fut, self._give_up, w)
        return True

    def wait_blocking(self, timeout: float | None = None) -> bool:
        """Wait from a plain thread; returns False if ``timeout`` passed first.

        Raises :class:`~loopgrid.WouldBlockError` on a thread that runs an
        event loop.
        """
        _no_blocking_here("Event.wait_blocking()", self)
        deadline = _deadline(timeout)
        if self._flag:
            return True
        with self._mutex:
            if self._flag:
                return True
            if deadline is not None and deadline <= _monotonic():
                return False
            w = _thread_waiter(None)
            self._waiters.append(w)
        try:
            woken = _park(w, deadline)
        except BaseException:
            self._give_up(w)
            raise
        return woken or self._give_up(w)

    def _give_up(self, w: _Waiter) -> bool:
        """``w`` stops waiting; True if a ``set()`` had woken it meanwhile."""
        with self._mutex:
            if w.granted:
                return True
            self._waiters.remove(w)
            return False


# -- Queue ------------------------------------------------------------------------


class Queue(Generic[T]):
    """A FIFO queue, bounded by ``maxsize`` (0: unbounded), shared across loops and threads.

    ``await put(item)`` waits while the queue is full and ``await get()`` while
    it is empty, from a task on any loop; ``put_blocking`` / ``get_blocking``
    do the same in a plain thread; ``put_nowait`` / ``get_nowait`` never wait
    and raise :class:`asyncio.QueueFull` / :class:`asyncio.QueueEmpty`.
    ``task_done()`` and ``join()`` count unfinished items as in
    :class:`asyncio.Queue`.

    A woken waiter takes the item (or the free slot) when it runs, as in
    asyncio: items stay in the queue until a getter returns one, so a getter
    cancelled at any moment loses nothing, and a woken waiter that gives up
    passes its wake-up to the next one.
    """

    __slots__ = (
        "__weakref__",
        "_finished",
        "_getters",
        "_items",
        "_maxsize",
        "_mutex",
        "_putters",
        "_unfinished",
    )

    def __init__(self, maxsize: int = 0) -> None:
        self._maxsize = _count("maxsize", maxsize, "Queue")
        self._mutex = _allocate_lock()
        self._items: deque[T] = deque()
        self._getters: deque[_Waiter] = deque()
        self._putters: deque[_Waiter] = deque()
        self._unfinished = 0
        self._finished = Event()
        self._finished.set()

    def __repr__(self) -> str:
        parts = [f"maxsize={self._maxsize}", f"qsize={len(self._items)}"]
        if self._getters:
            parts.append(f"getters:{len(self._getters)}")
        if self._putters:
            parts.append(f"putters:{len(self._putters)}")
        if self._unfinished:
            parts.append(f"unfinished:{self._unfinished}")
        return f"<loopgrid.Queue object at {id(self):#x} [{', '.join(parts)}]>"

    @property
    def maxsize(self) -> int:
        """Number of items allowed in the queue; 0 means no bound."""
        return self._maxsize

    def qsize(self) -> int:
        return len(self._items)

    def empty(self) -> bool:
        return not self._items

    def full(self) -> bool:
        return 0 < self._maxsize <= len(self._items)

    # -- put ------------------------------------------------------------------------

    def put_nowait(self, item: T) -> None:
        """Put ``item`` if there is room, else raise :class:`asyncio.QueueFull`."""
        with self._mutex:
            if 0 < self._maxsize <= len(self._items):
                raise asyncio.QueueFull(f"{self!r} is full")
            w = self._put(item)
        if w is not None:
            _wake(w)

    async def put(self, item: T) -> None:
        """Put ``item``, waiting while the queue is full."""
        while True:
            with self._mutex:
                if not 0 < self._maxsize <= len(self._items):
                    w = self._put(item)
                    break
                pw, fut = _task_waiter(None, self, "put")
                self._putters.append(pw)
            await _wait_or_give_up(fut, self._give_up, pw, self._putters)
        if w is not None:
            _wake(w)

    def put_blocking(self, item: T, timeout: float | None = None) -> None:
        """Put ``item`` from a plain thread, waiting up to ``timeout`` seconds for room.

        Raises TimeoutError if there was no room in time, and
        :class:`~loopgrid.WouldBlockError` on a thread that runs an event loop.
        """
        _no_blocking_here("Queue.put_blocking()", self)
        deadline = _deadline(timeout)
        while True:
            with self._mutex:
                if not 0 < self._maxsize <= len(self._items):
                    w = self._put(item)
                    break
                if deadline is not None and deadline <= _monotonic():
                    raise TimeoutError(f"{self!r} stayed full for {timeout} s")
                pw = _thread_waiter(None)
                self._putters.append(pw)
            self._park_thread(pw, deadline, self._putters)
        if w is not None:
            _wake(w)

    # -- get ------------------------------------------------------------------------

    def get_nowait(self) -> T:
        """Remove and return an item if one is there, else raise :class:`asyncio.QueueEmpty`."""
        with self._mutex:
            if not self._items:
                raise asyncio.QueueEmpty(f"{self!r} is empty")
            item, w = self._get()
        if w is not None:
            _wake(w)
        return item

    async def get(self) -> T:
        """Remove and return an item, waiting while the queue is empty."""
        while True:
            with self._mutex:
                if self._items:
                    item, w = self._get()
                    break
                gw, fut = _task_waiter(None, self, "get")
                self._getters.append(gw)
            await _wait_or_give_up(fut, self._give_up, gw, self._getters)
        if w is not None:
            _wake(w)
        return item

    def get_blocking(self, timeout: float | None = None) -> T:
        """Remove and return an item from a plain thread, waiting up to ``timeout`` seconds.

        Raises TimeoutError if no item came in time, and
        :class:`~loopgrid.WouldBlockError` on a thread that runs an event loop.
        """
        _no_blocking_here("Queue.get_blocking()", self)
        deadline = _deadline(timeout)
        while True:
            with self._mutex:
                if self._items:
                    item, w = self._get()
                    break
                if deadline is not None and deadline <= _monotonic():
                    raise TimeoutError(f"{self!r} stayed empty for {timeout} s")
                gw = _thread_waiter(None)
                self._getters.append(gw)
            self._park_thread(gw, deadline, self._getters)
        if w is not None:
            _wake(w)
        return item

    # -- unfinished items ---------------------------------------------------------

    def task_done(self) -> None:
        """Mark one item taken from the queue as processed (see :meth:`join`).

        Raises ValueError if called more times than items were put.
        """
        with self._mutex:
            if self._unfinished <= 0:
                raise ValueError(f"task_done() called more times than items were put in {self!r}")
            self._unfinished -= 1
            if self._unfinished == 0:
                # Under the mutex, so a concurrent put's clear() cannot come
                # before this set() and leave the event set with work pending.
                self._finished.set()

    async def join(self) -> None:
        """Wait until every item put has been marked done with :meth:`task_done`."""
        if not self._finished.is_set() and running_loop() is None:
            raise _not_on_asyncio(self, "join")  # rather than one about an Event
        await self._finished.wait()

    def join_blocking(self, timeout: float | None = None) -> bool:
        """:meth:`join` from a plain thread; returns False if ``timeout`` passed first."""
        _no_blocking_here("Queue.join_blocking()", self)
        return self._finished.wait_blocking(timeout)

    # -- internals ----------------------------------------------------------------

    def _put(self, item: T) -> _Waiter | None:
        """Append ``item`` and pick a getter to wake (mutex held)."""
        self._items.append(item)
        self._unfinished += 1
        if self._unfinished == 1:
            self._finished.clear()
        return _pick(self._getters)

    def _get(self) -> tuple[T, _Waiter | None]:
        """Pop an item and pick a putter to wake (mutex held)."""
        return self._items.popleft(), _pick(self._putters)

    def _park_thread(self, w: _Waiter, deadline: float | None, waiters: deque[_Waiter]) -> None:
        try:
            if _park(w, deadline):
                return
        except BaseException:
            self._give_up(w, waiters)
            raise
        self._give_up(w, waiters)  # timed out: the caller's loop re-checks once more

    def _give_up(self, w: _Waiter, waiters: deque[_Waiter]) -> None:
        """``w`` stops waiting. If it had been woken, its wake-up goes to the next waiter
        when what it was woken for (an item, a free slot) is still there."""
        wake = None
        with self._mutex:
            if not w.granted:
                _remove(waiters, w)
            elif waiters is self._getters:
                if self._items:
                    wake = _pick(waiters)
            elif not 0 < self._maxsize <= len(self._items):
                wake = _pick(waiters)
        if wake is not None:
            _wake(wake)


def _pick(waiters: deque[_Waiter]) -> _Waiter | None:
    """Take the first live waiter out of ``waiters`` and mark it woken (mutex held)."""
    while waiters:
        w = waiters.popleft()
        if not w.dead():
            w.granted = True
            return w
    return None
