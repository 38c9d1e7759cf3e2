"""Stress: many tasks, several spawners, nothing lost, counters consistent."""

from __future__ import annotations

import asyncio
import collections
import threading
from typing import Any

from helpers import WAIT, close_or_fail, grid_threads

import loopgrid
from loopgrid import Grid, TaskState

N_TOTAL = 100_000
FANOUTS = 10
PER_FANOUT = 5_000
OUTSIDE_THREADS = 2
PER_THREAD = (N_TOTAL - FANOUTS * PER_FANOUT) // OUTSIDE_THREADS


async def square(i: int) -> int:
    return i * i


async def fanout(base: int) -> list[int | None]:
    """Spawn PER_FANOUT tasks from this worker; the workers they ran on."""
    hs = [loopgrid.spawn(square, base + i) for i in range(PER_FANOUT)]
    results = await asyncio.gather(*hs)
    assert results == [(base + i) ** 2 for i in range(PER_FANOUT)]
    return [h.worker for h in hs]


def test_100k_tasks_over_4_workers_none_lost() -> None:
    outside: dict[int, list[Any]] = {}
    go = threading.Event()

    def spawner(k: int, g: Grid) -> None:
        go.wait(WAIT)
        base = 1_000_000 * (k + 1)
        outside[k] = [g.spawn(square, base + i) for i in range(PER_THREAD)]

    with Grid(4) as g:
        fans = [g.spawn(fanout, 10_000_000 * (f + 1)) for f in range(FANOUTS)]
        threads = [threading.Thread(target=spawner, args=(k, g)) for k in range(OUTSIDE_THREADS)]
        for t in threads:
            t.start()
        go.set()
        for t in threads:
            t.join(WAIT * 4)
            assert not t.is_alive()
    children = [w for f in fans for w in f.result()]
    assert len(children) == FANOUTS * PER_FANOUT
    for k in range(OUTSIDE_THREADS):
        base = 1_000_000 * (k + 1)
        hs = outside[k]
        assert len(hs) == PER_THREAD
        assert all(h.state is TaskState.COMPLETED for h in hs)
        assert [h.result() for h in hs] == [(base + i) ** 2 for i in range(PER_THREAD)]
    t = g.stats()["totals"]
    spawned = FANOUTS + FANOUTS * PER_FANOUT + OUTSIDE_THREADS * PER_THREAD
    assert t["spawned"] == spawned
    assert t["started"] == spawned
    assert t["completed"] == spawned
    assert t["failed"] == 0
    assert t["cancelled"] == 0
    assert t["pending"] == 0
    assert t["running"] == 0
    # Each worker's count of completed tasks is where the handles say they ran.
    ran = collections.Counter(children)
    ran.update(f.worker for f in fans)
    ran.update(h.worker for hs in outside.values() for h in hs)
    assert [w["completed"] for w in g.stats()["workers"]] == [ran[i] for i in range(4)]
    assert grid_threads() == []


def test_many_foreign_loops_await_many_handles() -> None:
    n_threads, per = 4, 2_000
    results: dict[int, list[int]] = {}

    def in_loop(k: int, g: Grid) -> None:
        async def main() -> list[int]:
            hs = [g.spawn(square, k * per + i) for i in range(per)]
            return list(await asyncio.gather(*hs))

        results[k] = asyncio.run(main())

    with Grid(2) as g:
        threads = [threading.Thread(target=in_loop, args=(k, g)) for k in range(n_threads)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(WAIT * 2)
            assert not t.is_alive()
    for k in range(n_threads):
        assert results[k] == [(k * per + i) ** 2 for i in range(per)]


def test_cancel_storm_every_task_ends_once() -> None:
    n = 5_000
    calls = [0] * n
    lock = threading.Lock()

    async def maybe_slow(i: int) -> int:
        if i % 3 == 0:
            await asyncio.sleep(0)
        return i

    def cb(h: Any) -> None:
        with lock:
            calls[ids[h.id]] += 1

    g = Grid(2)
    try:
        hs = [g.spawn(maybe_slow, i) for i in range(n)]
        ids = {h.id: i for i, h in enumerate(hs)}
        for h in hs:
            h.add_done_callback(cb)
        for h in hs[::2]:
            h.cancel()
    finally:
        close_or_fail(g)
    assert calls == [1] * n
    for i, h in enumerate(hs):
        assert h.state in (TaskState.COMPLETED, TaskState.CANCELLED)
        if h.state is TaskState.COMPLETED:
            assert h.result() == i
        if i % 2:
            assert h.state is TaskState.COMPLETED
    t = g.stats()["totals"]
    assert t["completed"] + t["cancelled"] == n == t["spawned"]
