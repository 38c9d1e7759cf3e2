"""The cross-loop Semaphore and BoundedSemaphore: permits handed over in FIFO order.

As in asyncio, a Semaphore with a granted waiter that has not run yet counts
as locked: a task that releases and at once re-acquires queues behind it, and
permits freed meanwhile go to the queue when that waiter runs (``_settle``).

Thread ownership: ``_value``, ``_waiters`` and ``_pending`` are guarded by
``_mutex``, taken by any thread for a few field updates only; ``locked()``
reads them without it, as a snapshot.
"""

from __future__ import annotations

import threading
from collections import deque

from ._handover import HandOver
from ._waiter import Waiter, describe, pick

__all__ = ["BoundedSemaphore", "Semaphore"]

_allocate_lock = threading.Lock


def _count(name: str, value: object, cls: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{cls} {name} must be an int >= 0, got {value!r}")
    if value < 0:
        raise ValueError(f"{cls} {name} must be >= 0, got {value!r}")
    return value


class Semaphore(HandOver):
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
        self._waiters: deque[Waiter] = deque()
        #: Waiters handed a permit that have not run yet (see ``_settle``).
        self._pending: set[Waiter] = set()

    def __repr__(self) -> str:
        state = "locked" if self.locked() else f"unlocked, value:{self._value}"
        return describe(self, state, self._waiters)

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
        mutex = self._mutex
        mutex.acquire()  # not ``with``: this is the path every release takes
        try:
            self._check_release()
            self._value += 1
            wake = self._refill() if self._waiters else ()
        finally:
            mutex.release()
        for w in wake:
            w.wake()

    def _check_release(self) -> None:
        """Refuse a release before it counts (mutex held): BoundedSemaphore's bound."""

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

    def _refill(self) -> list[Waiter]:
        """Hand free permits to the first waiters (mutex held); returns them."""
        wake: list[Waiter] = []
        waiters = self._waiters
        while self._value > 0 and waiters:
            w = pick(waiters)
            if w is None:
                break
            self._value -= 1
            self._pending.add(w)
            wake.append(w)
        return wake

    def _settle(self, w: Waiter, kept: bool) -> list[Waiter]:
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

    def _check_release(self) -> None:
        if self._value >= self._bound_value:
            raise ValueError("BoundedSemaphore released too many times")
