"""The cross-loop Lock: an uncontended path without the mutex, hand-over when contended.

Why: an uncontended ``async with lock`` is what every user of a lock pays, and
with the mutex it cost 2.6 times asyncio.Lock's. So whether the lock is free
is not a field under the mutex but a token: ``_free`` is a deque that holds
one item while the lock is free (``maxlen=1``). Taking the lock is popping the
token, releasing it is putting it back: ``deque.pop()`` and ``append()`` are
atomic, also on free-threaded builds (each runs under the deque's own lock
there), and are plain C calls, several times cheaper than
``threading.Lock.acquire(False)`` (which parses its arguments). So the
uncontended path is: look that nobody waits, pop the token, note the owner;
and to release: look that nobody waits, clear the owner, put the token back,
look again. The mutex and the waiter queue are only for contention. While
waiters are queued the token stays out: ``release()`` hands the lock to the
first waiter under the mutex, so nobody barges in.

The one race, and why no waiter is ever stranded: a waiter queues (under the
mutex) just as the holder releases without the mutex. The waiter, once
queued, tries to pop the token again; the releaser, once the token is back,
looks at the queue again. Each side writes first (the queue, the token) and
reads the other's state second, and the writes are made under the deques' own
locks: on GIL builds any switch between threads is a full barrier; on
free-threaded builds those locks are taken and released with sequentially
consistent atomic read-modify-writes (full barriers on x86 and ARM), and
``len(deque)`` is an atomic load. So at least one side sees the other: the
waiter takes the lock, or the releaser takes the token back (under the mutex)
and hands the lock to the first waiter. If a newcomer took the token in
between, its own ``release()`` sees the queue. The look at the queue before
the uncontended path is a fairness hint only (newcomers queue behind waiters,
as asyncio's lock has them); correctness never rests on it. ``maxlen=1``
keeps a release racing an erroneous second release (of a lock that is not
held) from making two tokens.

Deadlock edges (see ``waitgraph.py``): a waiter waits for the node ahead of it
in the FIFO, or the owner if it is first. ``_owner`` is written by whoever
takes the token (right after taking it) or hands the lock over (under the
mutex), and cleared by the releaser just before it puts the token back; a
waiter that reads it in between finds None and records no edge (a cycle may
then go unreported). A waiter that reads it just *before* a releaser clears it
records an edge to a past owner, and if a third party then takes the token
(without the mutex, so neither the releaser nor the waiter serves the queue),
that edge stays stale until the third party releases; so ``waitgraph.py``
reports a cycle only after :meth:`_still_waits` confirms each lock edge on it
against the queue and the owner as they are now: none is ever invented. The
edges themselves are written under the mutex, by the waiter itself when it
queues and gives up, and by whoever hands the lock over (removing the new
owner's edge) or removes a waiter from the middle of the FIFO (re-pointing its
successor). A record is in the FIFO exactly while its edge may be written by
others.

Thread ownership: ``_free`` and ``_owner`` as above; ``_waiters`` under
``_mutex`` (read without it only as a hint, or by the releaser as described).
"""

from __future__ import annotations

import threading
from collections import deque

from .. import waitgraph
from ..errors import DeadlockError
from ._handover import HandOver
from ._waiter import TASK, Waiter, describe, remove, task_node

__all__ = ["Lock"]

_allocate_lock = threading.Lock


class Lock(HandOver):
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

    __slots__ = ("__weakref__", "_free", "_mutex", "_owner", "_waiters")

    def __init__(self) -> None:
        #: Holds the token while the lock is free (see the module docstring).
        self._free: deque[bool] = deque((True,), maxlen=1)
        #: The node holding the lock (see ``waitgraph.current_node``), or None.
        self._owner: object | None = None
        self._mutex = _allocate_lock()
        self._waiters: deque[Waiter] = deque()

    def __repr__(self) -> str:
        return describe(self, "unlocked" if self._free else "locked", self._waiters)

    def locked(self) -> bool:
        """True if some task or thread holds the lock."""
        return not self._free

    async def acquire(self) -> bool:
        """Wait until the lock is free and take it; returns True.

        Cancelling the waiting task (``asyncio.timeout``, ``wait_for``...)
        leaves things as if it had never asked, even when the lock had just
        been handed to it.
        """
        node = task_node(self)
        if not self._waiters and self._free and self._grab():
            self._owner = node
            return True
        return await self._acquire(TASK, node, None)

    async def __aenter__(self) -> None:
        # acquire() and _grab(), inlined: the cost of every ``async with``.
        node = task_node(self)
        if not self._waiters and self._free:
            try:
                self._free.pop()
            except IndexError:  # taken meanwhile
                pass
            else:
                self._owner = node
                return
        await self._acquire(TASK, node, None)

    def release(self) -> None:
        """Release the lock, handing it to the first waiter if there is one.

        Raises RuntimeError if the lock is not held.
        """
        if self._waiters:
            self._hand_over_held()
            return
        if self._free:
            raise self._not_acquired()
        self._owner = None
        self._free.append(True)
        if self._waiters:  # queued as it was released: see the module docstring
            self._serve_freed()

    def _not_acquired(self) -> RuntimeError:
        return RuntimeError(f"Lock is not acquired: release() on {self!r}, which is not locked")

    def _grab(self) -> bool:
        """Take the token if it is there (any thread, with or without the mutex)."""
        try:
            self._free.pop()
        except IndexError:
            return False
        return True

    def _hand_over_held(self) -> None:
        """release() with waiters queued: hand the lock over without freeing it."""
        with self._mutex:
            if self._free:
                raise self._not_acquired()
            w = self._hand_over()
        if w is not None:
            w.wake()

    def _serve_freed(self) -> None:
        """The lock was freed while a waiter queued: take it back for the first
        waiter, unless somebody else took it meanwhile (then their release
        serves the queue, and the first waiter's edge names them)."""
        with self._mutex:
            if not self._waiters:
                return
            if not self._grab():
                self._repoint(0)
                return
            w = self._hand_over()
        if w is not None:
            w.wake()

    # -- for waitgraph.py ----------------------------------------------------------

    def _wait_label(self) -> str:
        return f"lock {self!r}"

    def _still_waits(self, node: object, target: object) -> bool:
        """Whether ``node`` is queued here right behind ``target`` (the waiter
        ahead of it, or the owner if it is first): its edge still holds.

        Exact with the mutex held; from another lock's walk a racy look, and a
        queue changed meanwhile counts as no.
        """
        ahead = self._owner
        try:
            for w in self._waiters:
                if w.node is node:
                    return ahead is target
                ahead = w.node
        except RuntimeError:  # the deque changed under the iteration
            pass
        return False

    # -- under the mutex ----------------------------------------------------------

    def _take(self, node: object) -> bool:
        if not self._waiters and self._grab():
            self._owner = node
            return True
        return False

    def _queue(self, w: Waiter) -> Waiter | None:
        """Record ``w``'s wait, then queue it; may raise DeadlockError.

        The wait-for edge points at the waiter ahead in the FIFO, or at the
        owner if there is none. With hand-over in FIFO order each waiter will
        hold the lock, and must release it, before the next one gets it, so
        that edge stays true as the lock changes hands: only the new owner's
        own edge is removed (see :meth:`_hand_over`). Pointing every waiter
        at the owner instead would leave stale edges to past owners, and a
        past owner that then awaits a waiter would be told of a cycle that
        does not exist.

        If the lock was freed since :meth:`_take` looked, by a holder that did
        not see this queue yet, it goes to the first waiter now: returned for
        the caller to wake (``w`` itself if it is first).
        """
        waiters = self._waiters
        ahead = waiters[-1].node if waiters else self._owner
        waiters.append(w)  # before the walk, which confirms ``w``'s place
        if ahead is not None:
            try:
                waitgraph.begin_wait(ahead, self, w.node)
            except DeadlockError:
                waiters.pop()
                raise
        if self._grab():
            return self._hand_over()
        return None

    def _forget(self, w: Waiter) -> None:
        waitgraph.end_wait(w.node)
        self._repoint(remove(self._waiters, w))

    def _settle(self, w: Waiter, kept: bool) -> list[Waiter]:
        if kept:
            return []
        nxt = self._hand_over()
        return [] if nxt is None else [nxt]

    def _hand_over(self) -> Waiter | None:
        """Give the held lock to the first waiter that can take it, or free it.

        Waiters whose future was cancelled (their task has not run yet) or whose
        loop is closed are skipped, as asyncio skips a cancelled waiter: the
        lock is not held by a task that is leaving.
        """
        waiters = self._waiters
        while waiters:
            w = waiters.popleft()
            waitgraph.end_wait(w.node)
            if w.gone():
                w.skipped = True
                self._repoint(0)
                continue
            w.granted = True
            self._owner = w.node
            return w
        self._owner = None
        self._free.append(True)
        return None

    def _repoint(self, i: int) -> None:
        """Point the edge of the waiter now at index ``i`` at its new predecessor."""
        waiters = self._waiters
        if i >= len(waiters):
            return
        ahead = waiters[i - 1].node if i > 0 else self._owner
        node = waiters[i].node
        if ahead is None:
            waitgraph.end_wait(node)
            return
        try:
            waitgraph.begin_wait(ahead, self, node)
        except DeadlockError:
            # Only reachable in the racy window waitgraph.py describes (the path
            # from the successor already led to its new predecessor). The edge
            # is dropped: a cycle may go unreported, none is ever invented.
            pass
