"""What Lock and Semaphore share: FIFO waiters, served by hand-over, and one acquire core.

``release()`` gives the lock (or the permit) to the first waiter, under the
primitive's mutex, before waking it. Nobody can barge in between, so the lock
is FIFO-fair across loops (a woken task on a busy loop may take a while to
run; with wake-and-retry, a caller on a quicker thread would take the lock
first every time). A waiter that is cancelled or times out after it was
granted releases on its way out, so no permit is ever lost. A waiter whose
future was cancelled but whose task has not run yet is skipped by a hand-over
(as asyncio skips a cancelled future).
"""

from __future__ import annotations

import threading
from collections import deque

from ._waiter import (
    TASK,
    THREAD,
    Waiter,
    Waits,
    begin_blocking,
    expired,
    remove,
    run_blocking,
    task_node,
    wait_or_give_up,
)

__all__ = ["HandOver"]

_current_thread = threading.current_thread


class HandOver:
    """The base of Lock and Semaphore.

    A subclass says, with its mutex held, how to take the lock or a permit at
    once (``_take``), how to queue a waiter (``_queue``), how to forget one
    that gave up before it was served (``_forget``), and what happens when a
    waiter that was granted runs or passes what it got on (``_settle``);
    waiting, giving up and the context-manager protocol are the same for both,
    and for tasks and threads (:meth:`_acquire`).
    """

    __slots__ = ()

    _mutex: threading.Lock
    _waiters: deque[Waiter]

    #: Whether a granted waiter reports back, under the mutex, when it runs
    #: (Semaphore: permits freed meanwhile go to the queue then, as in asyncio).
    _settles = False

    def _take(self, node: object) -> bool:
        raise NotImplementedError

    def _queue(self, w: Waiter) -> Waiter | None:
        """Queue ``w``; return a waiter granted at once, if any, for the caller to wake."""
        self._waiters.append(w)
        return None

    def _forget(self, w: Waiter) -> None:
        remove(self._waiters, w)

    def _settle(self, w: Waiter, kept: bool) -> list[Waiter]:
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
        node = task_node(self)
        mutex = self._mutex
        mutex.acquire()  # not ``with``: this is the path every acquire takes
        try:
            taken = self._take(node)
        finally:
            mutex.release()
        return taken or await self._acquire(TASK, node, None)

    def acquire_blocking(self, timeout: float | None = None) -> bool:
        """Take the lock (or a permit) from a plain thread, waiting up to ``timeout`` s.

        Returns True when taken, False when the timeout passed first
        (``timeout=0`` only tries). Raises :class:`~loopgrid.WouldBlockError`
        on a thread that runs an event loop.
        """
        deadline = begin_blocking(f"{type(self).__name__}.acquire_blocking()", self, timeout)
        return run_blocking(self._acquire(THREAD, _current_thread(), deadline))

    async def _acquire(self, how: Waits, node: object, deadline: float | None) -> bool:
        """Take it at once, or queue a waiter of ``how``'s kind and wait for the hand-over."""
        with self._mutex:
            if self._take(node):
                return True
            if expired(deadline):
                return False
            w = how.waiter(node, self, "acquire", deadline)
            served = self._queue(w)
        if served is w:
            return True
        if served is not None:
            served.wake()
        if await wait_or_give_up(w, self._give_up, w, False):
            if self._settles:
                self._settled(w)
            return True
        # A timeout that raced a hand-over keeps what it was given.
        return self._give_up(w, keep=True)

    def _settled(self, w: Waiter) -> None:
        with self._mutex:
            wake = self._settle(w, True)
        for x in wake:
            x.wake()

    def _give_up(self, w: Waiter, keep: bool) -> bool:
        """The waiter ``w`` stops waiting; returns True if it keeps what it got.

        If the lock or a permit had been handed to ``w`` meanwhile, ``w`` keeps
        it when ``keep`` (a thread's timeout raced the hand-over: the thread is
        told it has it) and otherwise passes it on (a task leaving with
        CancelledError, a thread interrupted), so nothing is ever lost.
        """
        wake: list[Waiter] = []
        with self._mutex:
            if w.granted:
                wake = self._settle(w, keep)
            elif not w.skipped:
                self._forget(w)
                keep = False
            else:
                keep = False
        for x in wake:
            x.wake()
        return keep

    async def __aenter__(self) -> None:
        await self.acquire()

    async def __aexit__(self, *exc_info: object) -> None:
        self.release()

    def __enter__(self) -> None:
        self.acquire_blocking()

    def __exit__(self, *exc_info: object) -> None:
        self.release()
