"""The scheduling core that Grid and RayGrid share (``core.py``).

The next-batch choice is tested on run queues and stand-in workers alone, so
that "aged, then in order, then steal" is pinned down without threads. The
shelf is tested through a held grid, where nothing starts unless the test
says so, so that each of the three outcomes of a shelving (kept, put back,
dropped) is reached on purpose rather than by a race.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field

from loopgrid import Grid, Handle
from loopgrid.core import take_next
from loopgrid.handle import CLAIMS
from loopgrid.runqueue import RunQueue


@dataclass
class _Task:
    _id: int
    _priority: int = 1
    _enqueued: float = 0.0


@dataclass
class _Grid:
    _workers: list[_Worker] = field(default_factory=list)


@dataclass
class _Worker:
    grid: _Grid
    index: int
    _local: RunQueue = field(default_factory=RunQueue)
    _pinned: RunQueue = field(default_factory=RunQueue)
    stolen_in: int = 0
    stolen_from: list[int] = field(default_factory=lambda: [0, 0])


def _two_workers() -> tuple[_Worker, _Worker, RunQueue]:
    grid = _Grid()
    grid._workers = [_Worker(grid, 0), _Worker(grid, 1)]
    return grid._workers[0], grid._workers[1], RunQueue()


def test_take_next_takes_aged_then_in_order_and_steals_nothing_while_it_has_work() -> None:
    me, other, injection = _two_workers()
    old_low = _Task(1, 0, _enqueued=1.0)
    high = _Task(2, 3, _enqueued=5.0)
    mine = _Task(3, 1, _enqueued=5.0)
    injection.push(old_low)  # type: ignore[arg-type]
    injection.push(high)  # type: ignore[arg-type]
    me._local.push(mine)  # type: ignore[arg-type]
    for i in range(10, 14):
        other._local.push(_Task(i))  # type: ignore[arg-type]
    out: list[_Task] = []
    queues = (me._pinned, me._local, injection)
    stolen = take_next(me, queues, 2.0, 8, out)  # type: ignore[arg-type]
    assert stolen == 0
    assert out == [old_low, high, mine]  # aged first, then priority order
    assert len(other._local) == 4  # a worker with work of its own steals nothing


def test_take_next_steals_half_of_the_busiest_only_when_it_has_nothing() -> None:
    me, other, injection = _two_workers()
    backlog = [_Task(i) for i in range(10, 15)]
    for t in backlog:
        other._local.push(t)  # type: ignore[arg-type]
    out: list[_Task] = []
    stolen = take_next(me, (me._pinned, me._local, injection), None, 2, out)  # type: ignore[arg-type]
    assert stolen == 3  # half of 5, rounded up
    assert out == backlog[:2]  # the budget bounds the batch; the rest stays stealable
    assert [t._id for t in me._local.pop_all()] == [12]
    assert me.stolen_in == 3 and me.stolen_from == [0, 3]


def test_take_next_finds_nothing_anywhere() -> None:
    me, _, injection = _two_workers()
    out: list[_Task] = []
    assert take_next(me, (me._pinned, me._local, injection), 0.0, 4, out) == 0  # type: ignore[arg-type]
    assert out == []


async def _nap() -> None:
    await asyncio.sleep(0)


@contextlib.contextmanager
def _taken_by_a_dispatcher(*, paused: bool) -> Iterator[tuple[Grid, Handle[None]]]:
    """A held grid and a task (paused or not) that a dispatcher has just
    popped from its queue, as it does before it looks at the task's pause."""
    with Grid(loops=1) as grid:
        grid.pause()
        h = grid.spawn(_nap)
        if paused:
            h.pause()
        assert list(grid._pop_queued()) == [h]
        yield grid, h
        grid.resume()


def test_shelve_keeps_a_paused_task_until_resume_puts_it_back() -> None:
    with _taken_by_a_dispatcher(paused=True) as (grid, h):
        grid._shelve(h)
        assert grid._shelf == {h._id: h}
        h.resume()  # pops the shelf entry and requeues it
        assert grid._shelf == {}
        assert len(grid._injection) == 1
    assert h.done() and not h.cancelled()


def test_shelve_puts_back_a_task_resumed_before_the_dispatcher_looked_again() -> None:
    with _taken_by_a_dispatcher(paused=False) as (grid, h):
        grid._shelve(h)  # its pause ended meanwhile (here: it never had one)
        assert grid._shelf == {}
        assert len(grid._injection) == 1
    assert h.done() and not h.cancelled()


def test_shelve_drops_a_task_cancelled_meanwhile() -> None:
    with _taken_by_a_dispatcher(paused=True) as (grid, h):
        h.cancel()  # finds no shelf entry to pop
        grid._shelve(h)
        assert grid._shelf == {}
        assert len(grid._injection) == 0
        assert h.cancelled()
        assert h._id not in CLAIMS[h._id & 63]
