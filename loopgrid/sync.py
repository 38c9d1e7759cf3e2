"""Cross-loop synchronisation primitives: every one asyncio has.

:class:`Lock`, :class:`Event`, :class:`Condition`, :class:`Semaphore`,
:class:`BoundedSemaphore`, :class:`Barrier`, and the queues :class:`Queue`,
:class:`PriorityQueue` and :class:`LifoQueue` (with ``shutdown()`` on every
Python version: :class:`QueueShutDown` is asyncio's from 3.13).

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
after it was granted releases on its way out, so no permit is ever lost. As in
asyncio, a Semaphore with a granted waiter that has not run yet counts as
locked: a task that releases and at once re-acquires queues behind it, and
permits freed meanwhile go to the queue when that waiter runs. A waiter whose
future was cancelled but whose task has not run yet is skipped by a hand-over
(as asyncio skips a cancelled future), so a released Lock with only such
waiters is unlocked at once. Condition waiters are notified the same way
(records in a FIFO); Barrier is asyncio's algorithm on a :class:`Condition`.
The queues wake and retry, as asyncio.Queue does: items only ever live in the
queue's storage, so a getter cancelled at any moment cannot lose one, and a
woken waiter that gives up passes its wake-up on.

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
import enum
import math
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from heapq import heappop, heappush
from types import TracebackType
from typing import Any, Generic, TypeVar

from . import deadlock
from .errors import DeadlockError, WouldBlockError
from .handle import _wait_sliced, not_on_asyncio
from .mailbox import Mailbox, mailbox_for_running_loop, running_loop

__all__ = [
    "Barrier",
    "BoundedSemaphore",
    "BrokenBarrierError",
    "Condition",
    "Event",
    "LifoQueue",
    "Lock",
    "PriorityQueue",
    "Queue",
    "QueueShutDown",
    "Semaphore",
]

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
    "reset": "reset_blocking",
    "abort": "abort_blocking",
}

if sys.version_info >= (3, 13):
    QueueShutDown = asyncio.QueueShutDown
else:

    class QueueShutDown(Exception):
        """Raised by a queue's put or get once it was shut down (asyncio's from 3.13)."""


if sys.version_info >= (3, 11):
    BrokenBarrierError = asyncio.BrokenBarrierError
else:

    class BrokenBarrierError(RuntimeError):
        """Raised by a :class:`Barrier` that is broken or reset (asyncio's from 3.11)."""


class _Waiter:
    """One party waiting on a primitive: a task (``fut``, ``mb``) or a thread (``parked``)."""

    __slots__ = ("fut", "granted", "mb", "node", "parked", "skipped")

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
        #: Taken out of its deque without being granted (cancelled or dead).
        self.skipped = False

    def gone(self) -> bool:
        """True if this waiter will not take a hand-over: its future was cancelled
        (its task is on its way out, and will not look at a grant) or it is
        :meth:`dead`. Read from any thread: a snapshot, and a stale False only
        means a grant that the waiter passes on when it gives up."""
        fut = self.fut
        if fut is None:
            return False
        mb = self.mb
        return fut.cancelled() or (mb is not None and mb.loop.is_closed())

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

    def acquire(timeout: float | None) -> bool:
        return parked.acquire(timeout=-1 if timeout is None else timeout)

    # In slices on the main thread, so that Ctrl-C is not lost (handle.py).
    left = None if deadline is None else max(0.0, deadline - _monotonic())
    return _wait_sliced(acquire, left)


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


def _pop_live(waiters: deque[_Waiter]) -> _Waiter | None:
    """Take the first waiter that can still be served out of ``waiters``, marking
    those skipped on the way (mutex held); the caller grants it."""
    while waiters:
        w = waiters.popleft()
        if w.gone():
            w.skipped = True
            continue
        return w
    return None


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
    that gave up before it was served (``_forget``), and what happens when a
    waiter that was granted runs or passes what it got on (``_settle``);
    waiting, giving up and the context-manager protocol are the same for both.
    """

    __slots__ = ()

    _mutex: threading.Lock
    _waiters: deque[_Waiter]

    #: Whether a granted waiter reports back, under the mutex, when it runs
    #: (Semaphore: permits freed meanwhile go to the queue then, as in asyncio).
    _settles = False

    def _take(self, node: object) -> bool:
        raise NotImplementedError

    def _queue(self, w: _Waiter) -> None:
        self._waiters.append(w)

    def _forget(self, w: _Waiter) -> None:
        _remove(self._waiters, w)

    def _settle(self, w: _Waiter, kept: bool) -> list[_Waiter]:
        """``w``, which was granted, runs with what it got (``kept``) or passes it
        on; returns the waiters to wake (mutex held)."""
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
        if self._settles:
            self._settled(w)
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
        if woken:
            if self._settles:
                self._settled(w)
            return True
        # A timeout that raced a hand-over keeps what it was given.
        return self._give_up(w, keep=True)

    def _settled(self, w: _Waiter) -> None:
        with self._mutex:
            wake = self._settle(w, True)
        for x in wake:
            _wake(x)

    def _give_up(self, w: _Waiter, keep: bool) -> bool:
        """The waiter ``w`` stops waiting; returns True if it keeps what it got.

        If the lock or a permit had been handed to ``w`` meanwhile, ``w`` keeps
        it when ``keep`` (a thread's timeout raced the hand-over: the thread is
        told it has it) and otherwise passes it on (a task leaving with
        CancelledError, a thread interrupted), so nothing is ever lost.
        """
        wake: list[_Waiter] = []
        with self._mutex:
            if w.granted:
                wake = self._settle(w, keep)
            elif not w.skipped:
                self._forget(w)
                keep = False
            else:
                keep = False
        for x in wake:
            _wake(x)
        return keep

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
                raise RuntimeError(
                    f"Lock is not acquired: release() on {self!r}, which is not locked"
                )
            if not self._waiters:
                self._owner = None
                return
            w = self._hand_over()
        if w is not None:
            _wake(w)

    async def __aenter__(self) -> None:
        # acquire()'s free-lock path inlined: one coroutine less per ``async with``.
        try:
            task = _current_task()
        except RuntimeError:
            raise _not_on_asyncio(self, "acquire") from None
        node = _current_thread() if task is None else task
        with self._mutex:
            if self._owner is None:
                self._owner = node
                return
        await self.acquire()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # release()'s uncontended path inlined.
        with self._mutex:
            if self._owner is not None and not self._waiters:
                self._owner = None
                return
        self.release()

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

    def _settle(self, w: _Waiter, kept: bool) -> list[_Waiter]:
        if kept:
            return []
        nxt = self._hand_over()
        return [] if nxt is None else [nxt]

    def _hand_over(self) -> _Waiter | None:
        """Give the lock to the first waiter that can take it, or free it (mutex held).

        Waiters whose future was cancelled (their task has not run yet) or whose
        loop is closed are skipped, as asyncio skips a cancelled waiter: the
        lock is not held by a task that is leaving.
        """
        waiters = self._waiters
        while waiters:
            w = waiters.popleft()
            deadlock.end_wait(w.node)
            if w.gone():
                w.skipped = True
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
    ``acquire()`` (:class:`BoundedSemaphore` refuses that), and while a waiter
    that was handed a permit has not run yet the semaphore counts as locked:
    a newcomer (the releasing task itself, say) queues behind the waiters.
    """

    __slots__ = ("__weakref__", "_mutex", "_pending", "_value", "_waiters")

    _settles = True

    def __init__(self, value: int = 1) -> None:
        self._value = _count("value", value, type(self).__name__)
        self._mutex = _allocate_lock()
        self._waiters: deque[_Waiter] = deque()
        #: Waiters handed a permit that have not run yet (see ``_settle``).
        self._pending: set[_Waiter] = set()

    def __repr__(self) -> str:
        n = len(self._waiters)
        extra = f", waiters:{n}" if n else ""
        state = "locked" if self.locked() else f"unlocked, value:{self._value}"
        return f"<loopgrid.{type(self).__name__} object at {id(self):#x} [{state}{extra}]>"

    def locked(self) -> bool:
        """True if ``acquire()`` would wait: no permit is free, or waiters are
        queued or were handed a permit and have not run yet (as in asyncio)."""
        return (
            self._value == 0
            or bool(self._pending)
            or any(not w.gone() for w in tuple(self._waiters))
        )

    def release(self) -> None:
        """Add a permit, or hand it to the first waiter."""
        with self._mutex:
            self._value += 1
            if not self._waiters:
                return
            wake = self._refill()
        for w in wake:
            _wake(w)

    def _take(self, node: object) -> bool:
        if self._value > 0 and not self._waiters:
            pending = self._pending
            if pending:
                # A waiter whose loop was closed never runs: it blocks nobody.
                for w in [w for w in pending if w.dead()]:
                    pending.discard(w)
                if pending:
                    return False
            self._value -= 1
            return True
        return False

    def _refill(self) -> list[_Waiter]:
        """Hand free permits to the first waiters (mutex held); returns them."""
        wake: list[_Waiter] = []
        waiters = self._waiters
        while self._value > 0 and waiters:
            w = _pop_live(waiters)
            if w is None:
                break
            w.granted = True
            self._value -= 1
            self._pending.add(w)
            wake.append(w)
        return wake

    def _settle(self, w: _Waiter, kept: bool) -> list[_Waiter]:
        self._pending.discard(w)
        if not kept:
            self._value += 1
        return self._refill()


class BoundedSemaphore(Semaphore):
    """A :class:`Semaphore` whose ``release()`` raises ValueError when it would
    take the count above its initial value, as :class:`asyncio.BoundedSemaphore`."""

    __slots__ = ("_bound_value",)

    def __init__(self, value: int = 1) -> None:
        super().__init__(value)
        self._bound_value = self._value

    def release(self) -> None:
        """Add a permit, or hand it to the first waiter; ValueError if released
        more often than acquired."""
        with self._mutex:
            if self._value >= self._bound_value:
                raise ValueError("BoundedSemaphore released too many times")
            self._value += 1
            if not self._waiters:
                return
            wake = self._refill()
        for w in wake:
            _wake(w)


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


# -- Condition ----------------------------------------------------------------------


class Condition:
    """A condition variable for tasks on any loop and for plain threads.

    As :class:`asyncio.Condition`: ``async with cond:`` then ``await
    cond.wait()`` (or ``wait_for(predicate)``) releases the lock, waits for a
    ``notify()``, and takes the lock again before returning, even when
    cancelled; ``notify(n)`` and ``notify_all()`` need the lock held. In a
    plain thread: ``with cond:`` and ``cond.wait_blocking(timeout)`` /
    ``wait_for_blocking(predicate, timeout)``, which return False (the
    predicate's value) when the timeout passed, as :class:`threading.Condition`.

    ``lock`` must be a :class:`Lock` (a new one by default). Waiters are
    notified in the order they began to wait. A waiter that is notified and
    then cancelled (or interrupted) passes the notification to the next
    waiter, as asyncio does from 3.13.
    """

    __slots__ = ("__weakref__", "_lock", "_mutex", "_waiters")

    def __init__(self, lock: Lock | None = None) -> None:
        if lock is None:
            lock = Lock()
        elif not isinstance(lock, Lock):
            raise TypeError(f"Condition lock must be a loopgrid.Lock or None, got {lock!r}")
        self._lock = lock
        self._mutex = _allocate_lock()
        self._waiters: deque[_Waiter] = deque()

    def __repr__(self) -> str:
        state = "locked" if self._lock.locked() else "unlocked"
        n = len(self._waiters)
        extra = f", waiters:{n}" if n else ""
        return f"<loopgrid.Condition object at {id(self):#x} [{state}{extra}]>"

    # -- the lock -------------------------------------------------------------------

    def locked(self) -> bool:
        return self._lock.locked()

    async def acquire(self) -> bool:
        return await self._lock.acquire()

    def acquire_blocking(self, timeout: float | None = None) -> bool:
        return self._lock.acquire_blocking(timeout)

    def release(self) -> None:
        self._lock.release()

    async def __aenter__(self) -> None:
        await self._lock.__aenter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._lock.release()

    def __enter__(self) -> None:
        self._lock.acquire_blocking()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._lock.release()

    # -- waiting ----------------------------------------------------------------------

    async def wait(self) -> bool:
        """Release the lock, wait to be notified, take the lock again; returns True.

        Raises RuntimeError if the lock is not held. The lock is held again
        when this returns or raises (a cancellation is raised once it is).
        """
        if not self._lock.locked():
            raise RuntimeError("cannot wait on un-acquired lock")
        w, fut = _task_waiter(None, self, "wait")
        with self._mutex:
            self._waiters.append(w)
        self._lock.release()
        try:
            await fut
        except GeneratorExit:
            raise
        except BaseException:
            notified = self._give_up(w)
            try:
                await self._reacquire()
            finally:
                if notified:
                    self._notify(1)  # pass it on: a spurious wake-up at worst
            raise
        try:
            await self._reacquire()
        except GeneratorExit:
            raise
        except BaseException:
            self._notify(1)
            raise
        return True

    async def _reacquire(self) -> None:
        """Take the lock back, whatever cancellations come meanwhile; the last
        one is raised once it is held."""
        err: asyncio.CancelledError | None = None
        while True:
            try:
                await self._lock.acquire()
                break
            except asyncio.CancelledError as e:
                err = e
        if err is not None:
            try:
                raise err
            finally:
                err = None

    async def wait_for(self, predicate: Callable[[], T]) -> T:
        """Wait until ``predicate()`` is true; returns its last value."""
        result = predicate()
        while not result:
            await self.wait()
            result = predicate()
        return result

    def wait_blocking(self, timeout: float | None = None) -> bool:
        """:meth:`wait` from a plain thread; False if ``timeout`` passed first.

        The lock is held again when this returns. Raises
        :class:`~loopgrid.WouldBlockError` on a thread that runs an event loop.
        """
        _no_blocking_here("Condition.wait_blocking()", self)
        return self._wait_until(_deadline(timeout))

    def wait_for_blocking(self, predicate: Callable[[], T], timeout: float | None = None) -> T:
        """:meth:`wait_for` from a plain thread, for up to ``timeout`` seconds in
        all; returns the predicate's last value (false if the time ran out)."""
        _no_blocking_here("Condition.wait_for_blocking()", self)
        return self._wait_for_until(predicate, _deadline(timeout))

    def _wait_for_until(self, predicate: Callable[[], T], deadline: float | None) -> T:
        result = predicate()
        while not result:
            if deadline is not None and deadline <= _monotonic():
                break
            self._wait_until(deadline)
            result = predicate()
        return result

    def _wait_until(self, deadline: float | None) -> bool:
        if not self._lock.locked():
            raise RuntimeError("cannot wait on un-acquired lock")
        w = _thread_waiter(None)
        with self._mutex:
            self._waiters.append(w)
        self._lock.release()
        try:
            woken = _park(w, deadline)
        except BaseException:
            if self._give_up(w):
                self._notify(1)
            self._lock.acquire_blocking()
            raise
        if not woken:
            woken = self._give_up(w)  # a notify that raced the timeout counts
        self._lock.acquire_blocking()
        return woken

    def _give_up(self, w: _Waiter) -> bool:
        """``w`` stops waiting; True if it had been notified meanwhile."""
        with self._mutex:
            if w.granted:
                return True
            if not w.skipped:
                _remove(self._waiters, w)
            return False

    # -- notifying --------------------------------------------------------------------

    def notify(self, n: int = 1) -> None:
        """Wake up to ``n`` waiters (the first ones); RuntimeError if the lock is not held."""
        if not self._lock.locked():
            raise RuntimeError("cannot notify on un-acquired lock")
        self._notify(n)

    def notify_all(self) -> None:
        """Wake every waiter; RuntimeError if the lock is not held."""
        if not self._lock.locked():
            raise RuntimeError("cannot notify on un-acquired lock")
        self._notify(None)

    def _notify(self, n: int | None) -> None:
        wake: list[_Waiter] = []
        with self._mutex:
            waiters = self._waiters
            while n is None or len(wake) < n:
                w = _pop_live(waiters)
                if w is None:
                    break
                w.granted = True
                wake.append(w)
        for w in wake:
            _wake(w)


# -- Barrier ------------------------------------------------------------------------


class _BarrierState(enum.Enum):
    FILLING = "filling"
    DRAINING = "draining"
    RESETTING = "resetting"
    BROKEN = "broken"


_FILLING = _BarrierState.FILLING
_DRAINING = _BarrierState.DRAINING
_RESETTING = _BarrierState.RESETTING
_BROKEN = _BarrierState.BROKEN


class Barrier:
    """A barrier for ``parties`` tasks (on any loops) and plain threads.

    As :class:`asyncio.Barrier` (3.11): ``await barrier.wait()`` (or ``async
    with barrier``) waits until ``parties`` callers wait, then releases them
    all and returns each its arrival index (0 to parties - 1); the barrier
    then fills again. ``await reset()`` sends :class:`BrokenBarrierError` to
    the waiters and starts over; ``await abort()`` breaks it for good. A
    cancelled waiter leaves without breaking it. Plain threads use
    ``wait_blocking(timeout)``, ``reset_blocking()`` and ``abort_blocking()``;
    a thread's timeout breaks the barrier, as in :class:`threading.Barrier`.
    It is asyncio's algorithm on a :class:`Condition`.
    """

    __slots__ = ("__weakref__", "_cond", "_count", "_parties", "_state")

    def __init__(self, parties: int) -> None:
        if isinstance(parties, bool) or not isinstance(parties, int):
            raise TypeError(f"Barrier parties must be an int > 0, got {parties!r}")
        if parties < 1:
            raise ValueError(f"parties must be > 0, got {parties!r}")
        self._cond = Condition()
        self._parties = parties
        self._state = _FILLING
        self._count = 0

    def __repr__(self) -> str:
        extra = self._state.value
        if not self.broken:
            extra += f", waiters:{self.n_waiting}/{self.parties}"
        return f"<loopgrid.Barrier object at {id(self):#x} [{extra}]>"

    async def __aenter__(self) -> int:
        return await self.wait()

    async def __aexit__(self, *args: object) -> None:
        pass

    @property
    def parties(self) -> int:
        """The number of callers that pass the barrier together."""
        return self._parties

    @property
    def n_waiting(self) -> int:
        """How many callers wait in the barrier while it fills."""
        return self._count if self._state is _FILLING else 0

    @property
    def broken(self) -> bool:
        return self._state is _BROKEN

    # -- async ------------------------------------------------------------------------

    async def wait(self) -> int:
        """Wait for the barrier to fill; returns this caller's arrival index.

        Raises :class:`BrokenBarrierError` if the barrier is broken, or is
        reset or aborted while this caller waits.
        """
        if running_loop() is None:
            raise _not_on_asyncio(self, "wait")
        cond = self._cond
        async with cond:
            await cond.wait_for(self._passable)
            if self._state is _BROKEN:
                raise BrokenBarrierError("Barrier aborted")
            try:
                index = self._count
                self._count += 1
                if index + 1 == self._parties:
                    self._drain()
                else:
                    await cond.wait_for(self._released)
                    if self._state in (_BROKEN, _RESETTING):
                        raise BrokenBarrierError("Abort or reset of barrier")
                return index
            finally:
                self._count -= 1
                self._exit()

    async def reset(self) -> None:
        """Return the barrier to its empty state; waiters get BrokenBarrierError."""
        if running_loop() is None:
            raise _not_on_asyncio(self, "reset")
        async with self._cond:
            self._reset()

    async def abort(self) -> None:
        """Break the barrier: waiters, and later callers, get BrokenBarrierError."""
        if running_loop() is None:
            raise _not_on_asyncio(self, "abort")
        async with self._cond:
            self._break()

    # -- blocking ---------------------------------------------------------------------

    def wait_blocking(self, timeout: float | None = None) -> int:
        """:meth:`wait` from a plain thread. If ``timeout`` seconds pass first, the
        barrier breaks and BrokenBarrierError is raised (as in threading.Barrier).
        Raises :class:`~loopgrid.WouldBlockError` on a thread that runs an event loop."""
        _no_blocking_here("Barrier.wait_blocking()", self)
        deadline = _deadline(timeout)
        cond = self._cond
        with cond:
            if not cond._wait_for_until(self._passable, deadline):
                self._break()
                raise BrokenBarrierError("Barrier timed out")
            if self._state is _BROKEN:
                raise BrokenBarrierError("Barrier aborted")
            try:
                index = self._count
                self._count += 1
                if index + 1 == self._parties:
                    self._drain()
                else:
                    if not cond._wait_for_until(self._released, deadline):
                        self._break()
                        raise BrokenBarrierError("Barrier timed out")
                    if self._state in (_BROKEN, _RESETTING):
                        raise BrokenBarrierError("Abort or reset of barrier")
                return index
            finally:
                self._count -= 1
                self._exit()

    def reset_blocking(self) -> None:
        """:meth:`reset` from a plain thread."""
        _no_blocking_here("Barrier.reset_blocking()", self)
        with self._cond:
            self._reset()

    def abort_blocking(self) -> None:
        """:meth:`abort` from a plain thread."""
        _no_blocking_here("Barrier.abort_blocking()", self)
        with self._cond:
            self._break()

    # -- with the condition's lock held -------------------------------------------------

    def _passable(self) -> bool:
        """Not draining or resetting: a newcomer may enter (or see it broken)."""
        return self._state is not _DRAINING and self._state is not _RESETTING

    def _released(self) -> bool:
        return self._state is not _FILLING

    def _drain(self) -> None:
        self._state = _DRAINING
        self._cond.notify_all()

    def _exit(self) -> None:
        if self._count == 0:
            if self._state is _RESETTING or self._state is _DRAINING:
                self._state = _FILLING
            self._cond.notify_all()

    def _reset(self) -> None:
        if self._count > 0:
            if self._state is not _RESETTING:
                self._state = _RESETTING
        else:
            self._state = _FILLING
        self._cond.notify_all()

    def _break(self) -> None:
        self._state = _BROKEN
        self._cond.notify_all()


# -- Queues -----------------------------------------------------------------------


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

    def __init__(self, maxsize: int = 0) -> None:
        self._maxsize = _maxsize(maxsize, type(self).__name__)
        self._mutex = _allocate_lock()
        self._init(maxsize)
        self._getters: deque[_Waiter] = deque()
        self._putters: deque[_Waiter] = deque()
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
            _wake(w)

    async def put(self, item: T) -> None:
        """Put ``item``, waiting while the queue is full; QueueShutDown once shut down."""
        while True:
            with self._mutex:
                if self._is_shutdown:
                    raise QueueShutDown(f"{self!r} was shut down")
                if not 0 < self._maxsize <= len(self._queue):
                    w = self._add(item)
                    break
                pw, fut = _task_waiter(None, self, "put")
                self._putters.append(pw)
            await _wait_or_give_up(fut, self._give_up, pw, self._putters)
        if w is not None:
            _wake(w)

    def put_blocking(self, item: T, timeout: float | None = None) -> None:
        """Put ``item`` from a plain thread, waiting up to ``timeout`` seconds for room.

        Raises TimeoutError if there was no room in time, :class:`QueueShutDown`
        once shut down, and :class:`~loopgrid.WouldBlockError` on a thread that
        runs an event loop.
        """
        _no_blocking_here(f"{type(self).__name__}.put_blocking()", self)
        deadline = _deadline(timeout)
        while True:
            with self._mutex:
                if self._is_shutdown:
                    raise QueueShutDown(f"{self!r} was shut down")
                if not 0 < self._maxsize <= len(self._queue):
                    w = self._add(item)
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
        """Remove and return an item if one is there, else raise :class:`asyncio.QueueEmpty`
        (:class:`QueueShutDown` once shut down)."""
        with self._mutex:
            if not self._queue:
                if self._is_shutdown:
                    raise QueueShutDown(f"{self!r} was shut down")
                raise asyncio.QueueEmpty(f"{self!r} is empty")
            item, w = self._take()
        if w is not None:
            _wake(w)
        return item

    async def get(self) -> T:
        """Remove and return an item, waiting while the queue is empty; once it is
        shut down and empty, raise :class:`QueueShutDown`."""
        while True:
            with self._mutex:
                if self._queue:
                    item, w = self._take()
                    break
                if self._is_shutdown:
                    raise QueueShutDown(f"{self!r} was shut down")
                gw, fut = _task_waiter(None, self, "get")
                self._getters.append(gw)
            await _wait_or_give_up(fut, self._give_up, gw, self._getters)
        if w is not None:
            _wake(w)
        return item

    def get_blocking(self, timeout: float | None = None) -> T:
        """Remove and return an item from a plain thread, waiting up to ``timeout`` seconds.

        Raises TimeoutError if no item came in time, :class:`QueueShutDown`
        once shut down and empty, and :class:`~loopgrid.WouldBlockError` on a
        thread that runs an event loop.
        """
        _no_blocking_here(f"{type(self).__name__}.get_blocking()", self)
        deadline = _deadline(timeout)
        while True:
            with self._mutex:
                if self._queue:
                    item, w = self._take()
                    break
                if self._is_shutdown:
                    raise QueueShutDown(f"{self!r} was shut down")
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
            raise _not_on_asyncio(self, "join")  # rather than one about an Event
        await self._finished.wait()

    def join_blocking(self, timeout: float | None = None) -> bool:
        """:meth:`join` from a plain thread; returns False if ``timeout`` passed first."""
        _no_blocking_here(f"{type(self).__name__}.join_blocking()", self)
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
                    self._get()
                    if self._unfinished > 0:
                        self._unfinished -= 1
                if self._unfinished == 0:
                    self._finished.set()
            wake: list[_Waiter] = []
            for waiters in (self._getters, self._putters):
                while True:
                    w = _pick(waiters)
                    if w is None:
                        break
                    wake.append(w)
        for w in wake:
            _wake(w)

    # -- internals ----------------------------------------------------------------

    def _add(self, item: T) -> _Waiter | None:
        """Store ``item`` and pick a getter to wake (mutex held)."""
        self._put(item)
        self._unfinished += 1
        if self._unfinished == 1:
            self._finished.clear()
        return _pick(self._getters)

    def _take(self) -> tuple[T, _Waiter | None]:
        """Remove an item and pick a putter to wake (mutex held)."""
        return self._get(), _pick(self._putters)

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
                if not w.skipped:
                    _remove(waiters, w)
            elif waiters is self._getters:
                if self._queue:
                    wake = _pick(waiters)
            elif not 0 < self._maxsize <= len(self._queue):
                wake = _pick(waiters)
        if wake is not None:
            _wake(wake)


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


def _pick(waiters: deque[_Waiter]) -> _Waiter | None:
    """Take the first waiter that can still run out of ``waiters`` and mark it
    woken (mutex held)."""
    w = _pop_live(waiters)
    if w is not None:
        w.granted = True
    return w
