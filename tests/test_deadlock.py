"""Deadlock detection: wait-for cycles through handles raise DeadlockError."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from helpers import WAIT, LogCatcher, identity

import loopgrid
from loopgrid import DeadlockError, Grid, Handle
from loopgrid.waitgraph import _edges


def test_two_tasks_awaiting_each_other_on_different_loops(grid: Grid) -> None:
    handles: dict[str, Handle[Any]] = {}
    a_waits = threading.Event()
    both = threading.Event()

    async def a() -> None:
        assert both.wait(WAIT)
        a_waits.set()
        await handles["b"]

    async def b() -> None:
        assert a_waits.wait(WAIT)
        # a's edge is published before it suspends; wait until it is there.
        while handles["a"]._task not in _edges:
            await asyncio.sleep(0)
        await handles["a"]

    handles["a"] = grid.spawn(a, worker=0, name="alpha")
    handles["b"] = grid.spawn(b, worker=1, name="beta")
    both.set()
    err = handles["b"].exception(WAIT)
    assert isinstance(err, DeadlockError)
    msg = str(err)
    assert "'alpha'" in msg and "'beta'" in msg
    assert "worker 0" in msg and "worker 1" in msg
    # alpha awaited beta, which failed: alpha gets the same error, and nothing hangs.
    assert isinstance(handles["a"].exception(WAIT), DeadlockError)
    names = {n.get_name() for n in _edges if isinstance(n, asyncio.Task)}
    assert not names & {"alpha", "beta"}


def test_a_task_awaiting_its_own_handle(grid: Grid) -> None:
    holder: list[Handle[Any]] = []
    ready = threading.Event()

    async def selfish() -> None:
        assert ready.wait(WAIT)
        await holder[0]

    holder.append(grid.spawn(selfish, name="selfish"))
    ready.set()
    err = holder[0].exception(WAIT)
    assert isinstance(err, DeadlockError)
    assert "'selfish'" in str(err)


def test_three_task_cycle_across_loops() -> None:
    with Grid(3) as g:
        hs: dict[int, Handle[Any]] = {}
        go = threading.Event()
        waiting = [threading.Event() for _ in range(3)]

        async def link(i: int) -> None:
            assert go.wait(WAIT)
            if i == 2:  # the last one closes the cycle once the others wait
                for j in (0, 1):
                    assert waiting[j].wait(WAIT)
                    while hs[j]._task not in _edges:
                        await asyncio.sleep(0)
            waiting[i].set()
            await hs[(i + 1) % 3]

        for i in range(3):
            hs[i] = g.spawn(link, i, worker=i, name=f"link{i}")
        go.set()
        errors = [hs[i].exception(WAIT) for i in range(3)]
        assert all(isinstance(e, DeadlockError) for e in errors)
        assert all(f"'link{i}'" in str(errors[2]) for i in range(3))


def test_a_chain_that_ends_is_not_a_deadlock(grid: Grid) -> None:
    async def chain(depth: int) -> int:
        if depth == 0:
            return await loopgrid.spawn(identity, 0)
        return 1 + await loopgrid.spawn(chain, depth - 1)

    assert grid.spawn(chain, 20).result(WAIT) == 20


def test_many_tasks_awaiting_the_same_handle_are_not_a_cycle(grid: Grid) -> None:
    gate = threading.Event()

    async def slow() -> str:
        await asyncio.to_thread(gate.wait, WAIT)
        return "done"

    target = grid.spawn(slow)

    async def waiter() -> str:
        return await target

    ws = [grid.spawn(waiter) for _ in range(50)]
    gate.set()
    assert [w.result(WAIT) for w in ws] == ["done"] * 50


def test_a_foreign_loop_awaiting_a_handle_leaves_no_edge_behind(grid: Grid) -> None:
    h = grid.spawn(identity, 3)

    async def foreign() -> int:
        return await h  # type: ignore[no-any-return]

    assert asyncio.run(foreign()) == 3
    assert not [n for n in _edges if isinstance(n, asyncio.Task) and n.done()]


def test_deadlock_error_is_a_loopgrid_error() -> None:
    assert issubclass(DeadlockError, loopgrid.LoopgridError)
    assert issubclass(DeadlockError, RuntimeError)


def test_a_grid_where_every_task_is_asleep_is_reported_in_the_logs() -> None:
    """Go's "all goroutines are asleep": the only running task waits for a lock
    whose holder has finished without releasing it. Nothing can ever wake it;
    the grid's monitor logs grid.deadlock (once), naming the wait."""
    with LogCatcher("grid.deadlock") as logs, Grid(2, name="asleep") as g:
        lock = loopgrid.Lock()

        async def abandon() -> None:
            await lock.acquire()  # and never release it

        async def stuck() -> None:
            async with lock:
                pass

        g.spawn(abandon, name="abandoner").result(WAIT)
        h = g.spawn(stuck, name="sleeper")
        assert logs.seen.wait(WAIT), "an all-asleep grid was not reported"
        h.cancel()
        with pytest.raises(asyncio.CancelledError):
            h.result(WAIT)
    assert len(logs.messages) == 1
    assert "'sleeper'" in logs.messages[0]


def test_a_grid_waiting_on_something_outside_is_not_reported() -> None:
    """A task awaiting a future that a plain thread will resolve is not a
    deadlock: nothing is logged across several monitor looks."""
    from loopgrid import monitor

    with LogCatcher("grid.deadlock") as logs, Grid(1) as g:
        outside = threading.Event()
        looks = threading.Event()

        async def waits_outside() -> str:
            await asyncio.to_thread(outside.wait, WAIT)
            return "woken"

        async def waiter(h: Handle[str]) -> str:
            return await h

        target = g.spawn(waits_outside)
        w = g.spawn(waiter, target)
        # Let the monitor look a few times: count its looks, not seconds.
        real = monitor.look_for_standstill
        count = [0]

        def counting(grid: Grid, prev: Any) -> Any:
            count[0] += 1
            if count[0] >= 4:
                looks.set()
            return real(grid, prev)

        monitor.look_for_standstill = counting  # type: ignore[assignment]
        try:
            assert looks.wait(WAIT)
        finally:
            monitor.look_for_standstill = real  # type: ignore[assignment]
        outside.set()
        assert w.result(WAIT) == "woken"
    assert logs.messages == []
