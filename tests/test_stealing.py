"""Work stealing: an idle worker takes pending tasks from a busy one; a task
that has started never moves."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from helpers import WAIT, Countdown, wait_until

import loopgrid
from loopgrid import Grid, TaskState


def _steal_scenario(n: int) -> tuple[bool, list[Any], dict[str, Any], dict[str, Any]]:
    """A task on worker 0 spawns ``n`` stealable tasks, then blocks worker 0's
    thread until all of them have completed, which only a thief can achieve."""
    all_done = Countdown(n)

    async def child() -> int:
        await asyncio.sleep(0)
        all_done.hit()
        return loopgrid.current_worker().index

    async def driver() -> tuple[bool, list[Any], dict[str, Any]]:
        hs = [loopgrid.spawn(child) for _ in range(n)]
        before = loopgrid.current_grid().stats()
        ok = all_done.wait(WAIT)  # blocks this worker's thread on purpose
        return ok, hs, before

    with Grid(2, stall_threshold=None) as g:  # stealing alone, no stall shedding
        ok, hs, before = g.spawn(driver, worker=0).result(WAIT * 2)
        results = [h.result(WAIT) for h in hs]
    after = g.stats()
    assert results == [h.worker for h in hs]
    return ok, hs, before, after


def test_idle_worker_steals_from_a_blocked_one() -> None:
    n = 100
    ok, hs, before, after = _steal_scenario(n)
    assert ok, "the tasks queued on blocked worker 0 were never stolen"
    assert before["workers"][0]["spawned"] == n
    assert all(h.worker == 1 for h in hs)
    assert all(h.state is TaskState.COMPLETED for h in hs)
    w0, w1 = after["workers"]
    assert w1["stolen_in"] == n
    assert w0["stolen_out"] == n
    assert w0["stolen_in"] == 0
    assert w1["stolen_out"] == 0
    assert after["totals"]["stolen_in"] == after["totals"]["stolen_out"] == n
    assert w1["started"] == n
    assert w1["completed"] == n


def test_stealing_keeps_priorities() -> None:
    """Stolen tasks of several priorities all run (none lost to the move)."""
    n = 60
    all_done = threading.Event()
    seen: list[int] = []
    lock = threading.Lock()

    async def child(p: int) -> int:
        with lock:
            seen.append(p)
            if len(seen) == n:
                all_done.set()
        return p

    async def driver() -> tuple[bool, list[Any]]:
        hs = [loopgrid.spawn(child, i % 4, priority=i % 4) for i in range(n)]
        return all_done.wait(WAIT), hs

    with Grid(2, stall_threshold=None) as g:  # stealing alone, no stall shedding
        ok, hs = g.spawn(driver, worker=0).result(WAIT * 2)
        assert ok
        assert [h.result(WAIT) for h in hs] == [i % 4 for i in range(n)]
        assert {h.worker for h in hs} == {1}
    assert sorted(seen) == sorted(i % 4 for i in range(n))


def test_started_tasks_never_move() -> None:
    async def hop(rounds: int) -> tuple[set[int], set[int], int]:
        idents = {threading.get_ident()}
        loops = {id(asyncio.get_running_loop())}
        for _ in range(rounds):
            await asyncio.sleep(0)
            idents.add(threading.get_ident())
            loops.add(id(asyncio.get_running_loop()))
        return idents, loops, loopgrid.current_worker().index

    async def burst() -> list[Any]:
        # Many tasks from one worker: some are stolen while others are running.
        return [loopgrid.spawn(hop, 20) for _ in range(200)]

    with Grid(2, stall_threshold=None) as g:  # stealing alone, no stall shedding
        hs = g.spawn(burst, worker=0).result(WAIT)
        outer = [g.spawn(hop, 20) for _ in range(200)]
        for h in hs + outer:
            idents, loops, index = h.result(WAIT)
            assert len(idents) == 1
            assert len(loops) == 1
            assert index == h.worker
            assert idents == {g.workers[index].thread.ident}
            assert loops == {id(g.workers[index].loop)}


def test_a_started_task_stays_even_when_its_worker_blocks() -> None:
    """An unpinned task suspended on worker i resumes on worker i although worker
    i was blocked meanwhile and the other worker idle and stealing from it."""
    suspended = threading.Event()
    box: dict[str, Any] = {}

    async def long_lived() -> tuple[int, int]:
        before = threading.get_ident()
        box["ev"] = ev = asyncio.Event()
        box["loop"] = asyncio.get_running_loop()
        suspended.set()
        await ev.wait()
        return before, threading.get_ident()

    all_done = Countdown(20)

    async def child() -> None:
        all_done.hit()

    async def blocker() -> bool:
        for _ in range(20):
            loopgrid.spawn(child)
        return all_done.wait(WAIT)

    with Grid(2, stall_threshold=None) as g:  # stealing alone, no stall shedding
        h = g.spawn(long_lived)
        assert suspended.wait(WAIT)
        i = h.worker
        assert i is not None
        assert h.state is TaskState.RUNNING
        assert g.spawn(blocker, worker=i).result(WAIT * 2)
        assert g.stats()["workers"][1 - i]["stolen_in"] == 20
        box["loop"].call_soon_threadsafe(box["ev"].set)
        before, after = h.result(WAIT)
    assert before == after == g.workers[i].thread.ident
    assert h.worker == i


def test_a_lone_spawned_task_stays_with_its_spawner() -> None:
    """Go's runnext: one task spawned and awaited at once runs on the spawner's
    worker; waking the idle worker would only hand it over through the GIL."""

    async def where() -> int:
        return loopgrid.current_worker().index

    async def spawn_and_await(n: int) -> list[int]:
        return [await loopgrid.spawn(where) for _ in range(n)]

    with Grid(2) as g:
        ran_on = g.spawn(spawn_and_await, 50, worker=0).result(WAIT)
        assert g.stats()["workers"][1]["stolen_in"] == 0
    assert ran_on == [0] * 50


def test_a_lone_task_behind_a_held_spawner_runs_elsewhere() -> None:
    """The lone task is not stolen, but the stall detector moves it."""
    release = threading.Event()

    async def where() -> int:
        return loopgrid.current_worker().index

    async def spawn_then_hold() -> loopgrid.Handle[int]:
        h = loopgrid.spawn(where)
        assert release.wait(WAIT)
        return h

    with Grid(2, stall_threshold=0.05) as g:
        outer = g.spawn(spawn_then_hold, worker=0)
        try:
            assert wait_until(lambda: g.stats()["workers"][0]["shed"] == 1)
            inner_done = wait_until(lambda: g.stats()["workers"][1]["completed"] == 1)
        finally:
            release.set()
        h = outer.result(WAIT)
        assert inner_done
        assert h.result(WAIT) == 1
