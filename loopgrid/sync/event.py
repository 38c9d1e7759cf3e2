"""The cross-loop Event: a flag that wakes every waiter, on every loop and thread.

Thread ownership: ``_flag`` and ``_waiters`` are guarded by ``_mutex``, taken
by any thread for a few field updates only; ``is_set()`` and the early look
in the waits read ``_flag`` without it (a snapshot: a waiter that misses a
``set()`` there sees it under the mutex). Wake-ups are issued after the mutex
is released.
"""

from __future__ import annotations

import threading

from ._waiter import (
    TASK,
    THREAD,
    Waiter,
    Waits,
    begin_blocking,
    describe,
    expired,
    run_blocking,
    wait_or_give_up,
)

__all__ = ["Event"]

_allocate_lock = threading.Lock


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
        self._waiters: list[Waiter] = []

    def __repr__(self) -> str:
        return describe(self, "set" if self._flag else "unset", self._waiters)

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
            w.wake()

    def clear(self) -> None:
        """Reset the flag; later ``wait()`` calls wait for the next ``set()``."""
        with self._mutex:
            self._flag = False

    async def wait(self) -> bool:
        """Wait until the flag is set; returns True."""
        if self._flag:
            return True
        return await self._wait(TASK, None)

    def wait_blocking(self, timeout: float | None = None) -> bool:
        """Wait from a plain thread; returns False if ``timeout`` passed first.

        Raises :class:`~loopgrid.WouldBlockError` on a thread that runs an
        event loop.
        """
        deadline = begin_blocking("Event.wait_blocking()", self, timeout)
        if self._flag:
            return True
        return run_blocking(self._wait(THREAD, deadline))

    async def _wait(self, how: Waits, deadline: float | None) -> bool:
        with self._mutex:
            if self._flag:
                return True
            if expired(deadline):
                return False
            w = how.waiter(None, self, "wait", deadline)
            self._waiters.append(w)
        return await wait_or_give_up(w, self._give_up, w) or self._give_up(w)

    def _give_up(self, w: Waiter) -> bool:
        """``w`` stops waiting; True if a ``set()`` had woken it meanwhile."""
        with self._mutex:
            if w.granted:
                return True
            self._waiters.remove(w)
            return False
