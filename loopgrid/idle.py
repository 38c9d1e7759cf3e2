"""Idle workers, and waking one: where a push meets a parked dispatcher (Tokio's ``idle.rs``).

A worker's dispatcher that finds nothing to start *parks*: it stops
rescheduling itself, and whoever queues work for it later wakes it with one
``call_soon_threadsafe`` (``Worker._wake``). A grid keeps the parked workers
in an :class:`Idle` list, so that work any worker may take (injected,
stealable or shed by the monitor) wakes one of them without looking at every
worker: :meth:`Idle.wake_one` pops the most recently parked (Go's
``pidleget``), which is also the one most likely to find its caches warm.

Why no wake-up is lost. There are three handshakes, each between a writer
that writes its flag and then reads the other side's, so that of two racing
sides at least one sees the other:

* **Push vs. park, on one worker.** A pusher pushes its task, then reads the
  worker's ``_parked``; the owner sets ``_parked`` (and lists itself, below),
  then looks at every queue once more (``Worker._park``). Either the pusher
  sees ``_parked`` and wakes it, or the owner sees the task and runs another
  turn. Both may happen: one spurious turn.
* **Listing vs. popping.** A parking worker sets ``_parked``, then reads its
  ``_listed`` and, if False, sets it and pushes itself on :attr:`Idle.sleepers`;
  a waker pops an entry, clears its ``_listed``, then reads ``_parked``. Either
  the waker sees ``_parked`` and wakes it, or the worker sees ``_listed``
  cleared and lists itself again. An entry can be stale (its worker was woken
  by a push of its own, and is running): the waker pops the next one. A worker
  is listed at most once, so the list never holds more than the grid's
  workers.
* **Work vs. the idle hint.** Spawns read the list's length (:attr:`Idle.sleepers`
  as a bool) after pushing, and wake one worker only when it is non-empty: a
  worker that lists itself after that read re-checks the queues itself (the
  first handshake), so the hint may skip a wake-up but never strands work.

Each handshake needs sequentially consistent reads and writes of plain
attributes. The GIL gives that (any thread switch is a full barrier); on
free-threaded builds the deque operations are (they take the deque's lock)
but a bare attribute read is not guaranteed to see another thread's earlier
write. Rather than bet on each build's memory model, the monitor calls
:meth:`Idle.wake_forgotten` every tick: a parked worker with work queued is
woken, so a lost wake-up costs at most one tick, never a task stuck in a queue.

Thread ownership: :attr:`Idle.sleepers` is a deque pushed by parking workers
(each only itself, on its own thread) and popped by any thread (atomic
operations); a worker's ``_listed`` is written by its owner when it lists
itself and by whoever pops its entry, as described above.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .runqueue import RunQueue
    from .worker import Worker

__all__ = ["Idle"]


class Idle:
    """The parked workers of one grid (see the module docstring)."""

    __slots__ = ("sleepers",)

    def __init__(self, workers: Sequence[Worker]) -> None:
        #: Parked workers, most recently parked last; entries may be stale.
        #: Its truth value is the grid's hint that some worker may be idle.
        self.sleepers: deque[Worker] = deque()
        for w in workers:  # every worker starts parked
            w._listed = True
            self.sleepers.append(w)

    def park(self, w: Worker) -> None:
        """List ``w``, which has just set its ``_parked``; its owner thread only."""
        if not w._listed:
            w._listed = True
            self.sleepers.append(w)

    def wake_one(self) -> bool:
        """Wake one parked worker that may start work; any thread.

        Returns whether one was woken. Paused and dead workers are skipped
        (and unlisted: a paused one lists itself again when it next parks).
        """
        sleepers = self.sleepers
        while True:
            try:
                w = sleepers.pop()
            except IndexError:
                return False
            w._listed = False
            if w._parked and not w._inert and w._wake():
                return True

    def wake_forgotten(self, workers: Sequence[Worker], injection: RunQueue) -> None:
        """Wake every parked worker that has work queued; the monitor, every tick."""
        injected = len(injection)
        for w in workers:
            if w._parked and not w._hold and (injected or len(w._local) or len(w._pinned)):
                w._wake()
