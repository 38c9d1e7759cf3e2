"""The cross-loop Condition: asyncio's condition variable on a :class:`~loopgrid.Lock`.

Waiters are notified in FIFO order, as records (see ``_waiter.py``); a waiter
that was notified and then gives up passes the notification on.

Thread ownership: ``_waiters`` is guarded by ``_mutex``, taken by any thread
for a few field updates only; the lock is the caller's to hold, as asyncio's.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import Callable
from typing import TypeVar

from ._waiter import (
    TASK,
    THREAD,
    Waiter,
    Waits,
    begin_blocking,
    describe,
    expired,
    pick_many,
    remove,
    run_blocking,
)
from .lock import Lock

__all__ = ["Condition"]

T = TypeVar("T")

_allocate_lock = threading.Lock


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
        self._waiters: deque[Waiter] = deque()

    def __repr__(self) -> str:
        return describe(self, "locked" if self._lock.locked() else "unlocked", self._waiters)

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

    async def __aexit__(self, *exc_info: object) -> None:
        self._lock.release()

    def __enter__(self) -> None:
        self._lock.acquire_blocking()

    def __exit__(self, *exc_info: object) -> None:
        self._lock.release()

    # -- waiting ----------------------------------------------------------------------

    async def wait(self) -> bool:
        """Release the lock, wait to be notified, take the lock again; returns True.

        Raises RuntimeError if the lock is not held. The lock is held again
        when this returns or raises (a cancellation is raised once it is).
        """
        return await self._wait(TASK, None)

    async def wait_for(self, predicate: Callable[[], T]) -> T:
        """Wait until ``predicate()`` is true; returns its last value."""
        return await self._wait_for(TASK, predicate, None)

    def wait_blocking(self, timeout: float | None = None) -> bool:
        """:meth:`wait` from a plain thread; False if ``timeout`` passed first.

        The lock is held again when this returns. Raises
        :class:`~loopgrid.WouldBlockError` on a thread that runs an event loop.
        """
        deadline = begin_blocking("Condition.wait_blocking()", self, timeout)
        return run_blocking(self._wait(THREAD, deadline))

    def wait_for_blocking(self, predicate: Callable[[], T], timeout: float | None = None) -> T:
        """:meth:`wait_for` from a plain thread, for up to ``timeout`` seconds in
        all; returns the predicate's last value (false if the time ran out)."""
        deadline = begin_blocking("Condition.wait_for_blocking()", self, timeout)
        return run_blocking(self._wait_for(THREAD, predicate, deadline))

    async def _wait_for(self, how: Waits, predicate: Callable[[], T], deadline: float | None) -> T:
        result = predicate()
        while not result:
            if expired(deadline):
                break
            await self._wait(how, deadline)
            result = predicate()
        return result

    async def _wait(self, how: Waits, deadline: float | None) -> bool:
        """The one wait: False only if a thread's ``deadline`` passed unnotified."""
        lock = self._lock
        if not lock.locked():
            raise RuntimeError("cannot wait on un-acquired lock")
        w = how.waiter(None, self, "wait", deadline)
        with self._mutex:
            self._waiters.append(w)
        lock.release()
        try:
            woken = await w
        except GeneratorExit:
            raise
        except BaseException:
            notified = self._give_up(w)
            try:
                await self._reacquire(how)
            finally:
                if notified:
                    self._notify(1)  # pass it on: a spurious wake-up at worst
            raise
        if not woken:
            woken = self._give_up(w)  # a notify that raced the timeout counts
        try:
            await self._reacquire(how)
        except GeneratorExit:
            raise
        except BaseException:
            self._notify(1)
            raise
        return woken

    async def _reacquire(self, how: Waits) -> None:
        """Take the lock back, whatever cancellations come meanwhile; the last
        one is raised once it is held."""
        lock = self._lock
        node = how.node(lock)
        err: asyncio.CancelledError | None = None
        while True:
            try:
                await lock._acquire(how, node, None)
                break
            except asyncio.CancelledError as e:
                err = e
        if err is not None:
            try:
                raise err
            finally:
                err = None

    def _give_up(self, w: Waiter) -> bool:
        """``w`` stops waiting; True if it had been notified meanwhile."""
        with self._mutex:
            if w.granted:
                return True
            if not w.skipped:
                remove(self._waiters, w)
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
        with self._mutex:
            wake = pick_many(self._waiters, n)
        for w in wake:
            w.wake()
