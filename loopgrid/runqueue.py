"""Priority run queues: a worker's local queue and the grid's injection queue.

A run queue is four FIFO deques, one per :class:`~loopgrid.Priority` level.
``collections.deque.append`` and ``popleft`` are atomic (also on free-threaded
CPython), so a queue needs no lock: its owner pushes and pops, other threads
push (injection, pinned spawns) or pop (thieves) concurrently, and each element
is popped by exactly one of them. Readers that peek (``d[0]``) may lose a race
with a concurrent pop; they catch ``IndexError`` and look again.

Selection in priority order and merging of several queues by age lives here too,
so the dispatcher (``worker.py``) and the thief (``stealing.py``) share one
definition of "which task is next".
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .handle import Handle

__all__ = ["LEVELS_HIGH_FIRST", "RunQueue", "move", "take_aged", "take_batch", "take_in_order"]

LEVELS_HIGH_FIRST = (3, 2, 1, 0)
_NO_ID = 1 << 62


class RunQueue:
    """Four FIFO deques of pending handles, indexed by priority."""

    __slots__ = ("levels",)

    def __init__(self) -> None:
        self.levels: tuple[deque[Handle[Any]], ...] = (deque(), deque(), deque(), deque())

    def push(self, handle: Handle[Any]) -> None:
        self.levels[handle._priority].append(handle)

    def __len__(self) -> int:
        lv = self.levels
        return len(lv[0]) + len(lv[1]) + len(lv[2]) + len(lv[3])

    def counts(self) -> list[int]:
        """Pending handles per level, lowest level first (a racy snapshot)."""
        return [len(d) for d in self.levels]

    def pop_all(self) -> Iterator[Handle[Any]]:
        """Pop every handle, highest level first; safe against concurrent pops."""
        for p in LEVELS_HIGH_FIRST:
            d = self.levels[p]
            while True:
                try:
                    yield d.popleft()
                except IndexError:
                    break


def move(src: deque[Handle[Any]], n: int, out: list[Handle[Any]]) -> int:
    """Pop up to ``n`` handles from the left of ``src`` onto ``out``; return how many.

    Another thread may pop from ``src`` meanwhile; whatever was popped here is
    in ``out`` even if the deque runs dry early, so nothing is ever dropped.
    """
    before = len(out)
    append = out.append
    pop = src.popleft
    try:
        for _ in range(min(n, len(src))):
            append(pop())
    except IndexError:
        pass
    return len(out) - before


def _head_id(d: deque[Handle[Any]]) -> int | None:
    try:
        return d[0]._id
    except IndexError:
        return None


def _merge_by_id(
    sources: list[deque[Handle[Any]]], budget: int, taken: int, out: list[Handle[Any]]
) -> int:
    """Pop from several deques of one level, oldest id first, in runs.

    Rather than compare heads for every task, pop from the source with the
    oldest head while its head stays older than every other source's head: an
    overflowed backlog and a fresh local queue interleave in long runs.
    """
    while taken < budget:
        best: deque[Handle[Any]] | None = None
        best_id = second_id = _NO_ID
        for d in sources:
            hid = _head_id(d)
            if hid is None:
                continue
            if hid < best_id:
                best, second_id, best_id = d, best_id, hid
            elif hid < second_id:
                second_id = hid
        if best is None:
            break
        pop = best.popleft
        try:
            bulk = best[-1]._id < second_id
        except IndexError:
            continue
        if bulk:
            # All of this source comes first (an overflowed backlog ahead of a
            # fresh local queue, typically): no comparisons needed.
            taken += move(best, budget - taken, out)
            continue
        while taken < budget:
            try:
                h = pop()
            except IndexError:
                break
            out.append(h)
            taken += 1
            if h._id > second_id:
                break  # popped past the other sources' oldest: compare again
            try:
                if best[0]._id > second_id:
                    break
            except IndexError:
                break
    return taken


def take_in_order(queues: tuple[RunQueue, ...], budget: int, out: list[Handle[Any]]) -> int:
    """Pop up to ``budget`` handles from ``queues`` into ``out``, in start order.

    Start order is: higher priority first; within one level, lower task id
    (earlier spawn) first, across all the queues given. Returns how many were
    taken. Runs on the owner's thread; concurrent pops by thieves or other
    workers only mean a deque holds fewer items than a moment ago.
    """
    taken = 0
    for p in LEVELS_HIGH_FIRST:
        first: deque[Handle[Any]] | None = None
        sources: list[deque[Handle[Any]]] | None = None
        for q in queues:
            d = q.levels[p]
            if d:
                if first is None:
                    first = d
                elif sources is None:
                    sources = [first, d]
                else:
                    sources.append(d)
        if first is None:
            continue
        if sources is None:
            taken += move(first, budget - taken, out)
        else:
            taken = _merge_by_id(sources, budget, taken, out)
        if taken >= budget:
            break
    return taken


def take_aged(
    queues: tuple[RunQueue, ...], deadline: float, budget: int, out: list[Handle[Any]]
) -> int:
    """Pop handles below CRITICAL that were queued before ``deadline`` (aging).

    Aging is what keeps low priorities from starving: a task that has waited
    longer than the grid's ``aging`` bound starts ahead of the priority order.
    Heads are the oldest of their deque (FIFO), so looking at heads suffices.
    """
    taken = 0
    for p in (0, 1, 2):
        for q in queues:
            d = q.levels[p]
            # Empty deques are the rule: tested first, since a failed d[0]
            # raises, and an exception costs more than this whole loop.
            while d and taken < budget:
                try:
                    head = d[0]
                except IndexError:
                    break
                if head._enqueued >= deadline:
                    break
                try:
                    out.append(d.popleft())
                except IndexError:
                    break
                taken += 1
    return taken


def take_batch(
    queues: tuple[RunQueue, ...], aged_before: float | None, budget: int, out: list[Handle[Any]]
) -> int:
    """Pop the next ``budget`` handles to start into ``out``: the dispatcher's choice.

    First those below CRITICAL queued before ``aged_before`` (``time.monotonic``
    seconds; None when the grid does not age), then the rest in start order
    (:func:`take_in_order`). Returns how many were taken. A pure function of
    the queues, so that the order is tested on run queues alone.
    """
    taken = 0 if aged_before is None else take_aged(queues, aged_before, budget, out)
    if taken < budget:
        taken += take_in_order(queues, budget - taken, out)
    return taken
