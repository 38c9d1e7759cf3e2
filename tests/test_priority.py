"""Priorities: of the tasks pending at one moment on one worker, higher starts
first (FIFO within a level); aging keeps a low priority from starving."""

from __future__ import annotations

import random
import threading
from typing import Any

import pytest
from helpers import WAIT, block_worker

import loopgrid
from loopgrid import Grid, Priority
from loopgrid.worker import LOCAL_CAPACITY


def _expected(order: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Start order the spec demands: priority descending, then spawn order."""
    return sorted(order, key=lambda pi: (-pi[0], pi[1]))


def _mixed_priorities(n: int, seed: int) -> list[int]:
    rnd = random.Random(seed)
    return [rnd.randrange(4) for _ in range(n)]


def test_priority_enum() -> None:
    assert [p.value for p in Priority] == [0, 1, 2, 3]
    assert Priority.LOW < Priority.NORMAL < Priority.HIGH < Priority.CRITICAL


@pytest.mark.parametrize("n", [10, 1000])
def test_pinned_tasks_start_in_priority_order(n: int) -> None:
    """All spawned from a task on worker 0 without yielding, pinned to worker 0."""
    order: list[tuple[int, int]] = []

    async def record(p: int, i: int) -> None:
        order.append((p, i))

    async def driver() -> list[Any]:
        return [
            loopgrid.spawn(record, p, i, priority=p, worker=0)
            for i, p in enumerate(_mixed_priorities(n, seed=n))
        ]

    with Grid(2, aging=None) as g:
        handles = g.spawn(driver, worker=0).result(WAIT)
    assert all(h.worker == 0 for h in handles)
    assert len(order) == n
    assert order == _expected(order)


def test_local_tasks_start_in_priority_order_one_worker() -> None:
    """Below the local queue's capacity: no overflow, one queue."""
    n = LOCAL_CAPACITY // 2
    order: list[tuple[int, int]] = []

    async def record(p: int, i: int) -> None:
        order.append((p, i))

    async def driver() -> None:
        for i, p in enumerate(_mixed_priorities(n, seed=3)):
            loopgrid.spawn(record, p, i, priority=p)

    with Grid(1, aging=None) as g:
        g.spawn(driver).result(WAIT)
    assert len(order) == n
    assert order == _expected(order)


@pytest.mark.parametrize("seed", [1, 2])
def test_priority_order_holds_across_local_queue_overflow(seed: int) -> None:
    """1000 stealable spawns from the only worker: more than the local queue
    holds, so some overflow to the injection queue; start order still holds,
    priority first and spawn order within a level."""
    n = 1000
    order: list[tuple[int, int]] = []

    async def record(p: int, i: int) -> None:
        order.append((p, i))

    async def driver() -> dict[str, Any]:
        for i, p in enumerate(_mixed_priorities(n, seed=seed)):
            loopgrid.spawn(record, p, i, priority=p)
        return loopgrid.current_grid().stats()

    with Grid(1, aging=None) as g:
        snap = g.spawn(driver).result(WAIT)
    assert sum(snap["injection"].values()) > 0, "nothing overflowed: test setup is wrong"
    assert len(order) == n
    assert [p for p, _ in order] == sorted((p for p, _ in order), reverse=True)
    assert order == _expected(order)


def test_priority_order_merges_pinned_local_and_injected() -> None:
    """Pending in the pinned, local and injection queues at once, with spawn
    order interleaved between the queues: one start order over all three."""
    order: list[tuple[int, int]] = []
    prios = _mixed_priorities(90, seed=9)
    counter = iter(range(90))
    rounds = 3
    local_turn = [threading.Event() for _ in range(rounds)]
    outside_turn = [threading.Event() for _ in range(rounds)]
    release = threading.Event()

    async def record(p: int, i: int) -> None:
        order.append((p, i))

    def spawn_some(spawn: Any, k: int, **kw: Any) -> None:
        for _ in range(k):
            i = next(counter)
            spawn(record, prios[i], i, priority=prios[i], **kw)

    async def blocker() -> None:
        # Runs on the only worker and keeps its thread until released, so that
        # everything below is pending at once when it returns.
        for r in range(rounds):
            assert local_turn[r].wait(WAIT)
            spawn_some(loopgrid.spawn, 10)  # local queue
            outside_turn[r].set()
        assert release.wait(WAIT)

    with Grid(1, aging=None) as g:
        h = g.spawn(blocker, priority=Priority.CRITICAL)
        for r in range(rounds):
            local_turn[r].set()
            assert outside_turn[r].wait(WAIT)
            spawn_some(g.spawn, 10)  # injection queue
            spawn_some(g.spawn, 10, worker=0)  # pinned queue
        snap = g.stats()
        release.set()
        h.result(WAIT)
    assert snap["workers"][0]["pinned"] == 30
    assert snap["workers"][0]["pending_total"] == 60
    assert sum(snap["injection"].values()) == 30
    assert len(order) == 90
    assert order == _expected(order)


def test_priority_given_as_int_or_enum(grid: Grid) -> None:
    for p in (0, 1, 2, 3):
        h = grid.spawn(_noop, priority=p)
        assert h.priority is Priority(p)
        h.result(WAIT)
    assert grid.spawn(_noop).priority is Priority.NORMAL


async def _noop() -> None:
    return None


def _stream(aging: float | None, cap: int, seeds: int = 200) -> tuple[int, int, int]:
    """On one worker: a LOW task, then a stream of HIGH tasks in which every
    HIGH task spawns its successor, so that HIGH tasks are always pending. The
    stream stops itself when the LOW task has started, or after ``cap`` tasks.

    Returns (HIGH tasks started when LOW started, HIGH tasks spawned when LOW
    started, HIGH tasks spawned in all).
    """
    state = {"started": 0, "spawned": 0, "low_started": False}
    seen: dict[str, int] = {}

    async def low() -> None:
        state["low_started"] = True
        seen["started"] = state["started"]
        seen["spawned"] = state["spawned"]

    async def high() -> None:
        state["started"] += 1
        if not state["low_started"] and state["spawned"] < cap:
            state["spawned"] += 1
            loopgrid.spawn(high, priority=Priority.HIGH)

    async def driver() -> Any:
        h = loopgrid.spawn(low, priority=Priority.LOW)
        for _ in range(seeds):
            state["spawned"] += 1
            loopgrid.spawn(high, priority=Priority.HIGH)
        return h

    with Grid(1, aging=aging) as g:
        low_handle = g.spawn(driver).result(WAIT)
    assert low_handle.result() is None
    assert state["started"] == state["spawned"]
    return seen["started"], seen["spawned"], state["spawned"]


def test_without_aging_low_priority_waits_for_the_whole_high_stream() -> None:
    started_at_low, _, total = _stream(aging=None, cap=3000)
    assert total == 3000
    assert started_at_low == 3000


def test_aging_lets_a_low_task_start_while_high_tasks_keep_coming() -> None:
    cap = 500_000  # only a guard: the stream stops once LOW has started
    started_at_low, spawned_at_low, total = _stream(aging=0.05, cap=cap)
    assert total < cap, "LOW never started while the HIGH stream ran"
    # HIGH tasks were still pending (spawned, not started) when LOW started.
    assert spawned_at_low > started_at_low


def test_tasks_pending_on_a_blocked_worker_start_by_priority() -> None:
    """Spawned from outside while the only worker is busy: same rule."""
    order: list[tuple[int, int]] = []
    lock = threading.Lock()

    async def record(p: int, i: int) -> None:
        with lock:
            order.append((p, i))

    with Grid(1, aging=None) as g:
        _, release = block_worker(g)
        try:
            hs = [
                g.spawn(record, p, i, priority=p)
                for i, p in enumerate(_mixed_priorities(300, seed=5))
            ]
        finally:
            release.set()
        for h in hs:
            h.result(WAIT)
    assert order == _expected(order)
