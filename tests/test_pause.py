"""Pause and resume of tasks, workers and the grid; moving pending tasks."""

from __future__ import annotations

import asyncio
import sys
import threading
from typing import Any

import pytest
from helpers import (
    WAIT,
    block_worker,
    close_or_fail,
    forever,
    identity,
    wait_until,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import loopgrid
from loopgrid import Grid, Handle, TaskState


def settle(grid: Grid, worker: int | None = None, rounds: int = 3) -> None:
    """Let a worker's loop run everything already scheduled on it (and what
    that schedules, ``rounds`` deep): a loop round trip, not a sleep."""
    workers = grid.workers if worker is None else [grid.workers[worker]]
    for w in workers:
        for _ in range(rounds):
            asyncio.run_coroutine_threadsafe(asyncio.sleep(0), w.loop).result(WAIT)


class Stepper:
    """A task body that records how far it got, and awaits a future we resolve."""

    def __init__(self) -> None:
        self.started = threading.Event()
        self.steps: list[str] = []
        self.loop: asyncio.AbstractEventLoop | None = None
        self.fut: asyncio.Future[Any] | None = None
        self.ready = threading.Event()

    async def run(self) -> Any:
        self.loop = asyncio.get_running_loop()
        self.fut = self.loop.create_future()
        self.steps.append("start")
        self.ready.set()
        self.started.set()
        value = await self.fut
        self.steps.append("after")
        return value

    def resolve(self, value: Any = None, exc: BaseException | None = None) -> None:
        assert self.loop is not None and self.fut is not None
        fut = self.fut

        def _do() -> None:
            if exc is None:
                fut.set_result(value)
            else:
                fut.set_exception(exc)

        asyncio.run_coroutine_threadsafe(_acall(_do), self.loop).result(WAIT)


async def _acall(fn: Any) -> None:
    fn()


# -- tasks --------------------------------------------------------------------


def test_paused_pending_task_does_not_start_until_resumed(grid: Grid) -> None:
    _, release = block_worker(grid, 0)
    started = threading.Event()

    async def body() -> str:
        started.set()
        return "ran"

    h = grid.spawn(body, worker=0)
    assert h.pause() is True
    assert h.state is TaskState.PAUSED
    release.set()
    after = grid.spawn(identity, 1, worker=0)  # queued behind h, same worker
    assert after.result(WAIT) == 1
    settle(grid, 0)
    assert not started.is_set()
    assert h.state is TaskState.PAUSED
    assert grid.stats()["totals"]["paused"] == 1
    assert h.resume() is True
    assert h.result(WAIT) == "ran"
    assert h.state is TaskState.COMPLETED
    assert grid.stats()["totals"]["paused"] == 0


@pytest.mark.parametrize("outcome", ["value", "exception"])
def test_paused_running_task_is_not_stepped_and_keeps_what_arrived(
    grid: Grid, outcome: str
) -> None:
    s = Stepper()
    h = grid.spawn(s.run, worker=1)
    assert s.ready.wait(WAIT)
    settle(grid, 1)  # the task is suspended on its future
    assert h.pause() is True
    assert h.state is TaskState.PAUSED
    if outcome == "value":
        s.resolve("kept")
    else:
        s.resolve(exc=KeyError("kept"))
    settle(grid, 1)
    assert s.steps == ["start"], "a paused task took a step"
    assert not h.done()
    assert h.resume() is True
    if outcome == "value":
        assert h.result(WAIT) == "kept"
        assert s.steps == ["start", "after"]
    else:
        with pytest.raises(KeyError, match="kept"):
            h.result(WAIT)


def test_pause_from_inside_takes_effect_at_the_next_suspension(grid: Grid) -> None:
    resumed = threading.Event()
    marks: list[str] = []

    async def body() -> str:
        me = current_handle()
        assert me.pause() is True
        marks.append("still running this step")
        await asyncio.sleep(0)
        marks.append("after resume")
        resumed.set()
        return "done"

    holder: list[Handle[Any]] = []

    def current_handle() -> Handle[Any]:
        return holder[0]

    _, release = block_worker(grid, 1)
    h = grid.spawn(body, worker=1)
    holder.append(h)
    release.set()
    while h.state is not TaskState.PAUSED or not marks:
        settle(grid, 1, rounds=1)
    settle(grid, 1)
    assert marks == ["still running this step"]
    h.resume()
    assert h.result(WAIT) == "done"
    assert marks == ["still running this step", "after resume"]


def test_cancelling_a_paused_running_task_ends_it_at_once(grid: Grid) -> None:
    s = Stepper()
    h = grid.spawn(s.run, worker=0)
    assert s.ready.wait(WAIT)
    settle(grid, 0)
    h.pause()
    assert h.cancel("stop") is True
    with pytest.raises(asyncio.CancelledError):
        h.result(WAIT)
    assert h.state is TaskState.CANCELLED
    assert grid.stats()["totals"]["paused"] == 0


def test_cancelling_a_paused_pending_task(grid: Grid) -> None:
    _, release = block_worker(grid, 0)
    h = grid.spawn(forever, worker=0)
    h.pause()
    release.set()
    settle(grid, 0)  # the dispatcher has shelved it
    assert h.cancel() is True
    assert h.state is TaskState.CANCELLED
    assert h.resume() is False
    assert grid.stats()["totals"]["paused"] == 0


def test_pause_and_resume_of_a_finished_task_are_no_ops(grid: Grid) -> None:
    h = grid.spawn(identity, 5)
    assert h.result(WAIT) == 5
    assert h.pause() is False
    assert h.state is TaskState.COMPLETED
    assert h.resume() is False
    assert grid.stats()["totals"]["paused"] == 0


def test_pause_and_resume_are_idempotent(grid: Grid) -> None:
    s = Stepper()
    h = grid.spawn(s.run)
    assert s.ready.wait(WAIT)
    assert h.pause() and h.pause()
    assert grid.stats()["totals"]["paused"] == 1
    assert h.resume() and h.resume()
    s.resolve(3)
    assert h.result(WAIT) == 3


@pytest.mark.skipif(sys.version_info < (3, 11), reason="asyncio.timeout is new in Python 3.11")
def test_a_timeout_that_expires_while_paused_is_delivered_on_resume(grid: Grid) -> None:
    armed = threading.Event()
    fired: list[asyncio.TimerHandle] = []

    async def body() -> str:
        try:
            async with asyncio.timeout(None) as cm:
                loop = asyncio.get_running_loop()
                # Expire it by hand from the test, while the task is paused.
                fired.append(loop.call_later(3600, lambda: None))
                armed.set()
                holder["cm"] = cm
                await asyncio.Event().wait()
        except TimeoutError:
            return "timed out"
        return "no"

    holder: dict[str, Any] = {}
    h = grid.spawn(body, worker=0)
    assert armed.wait(WAIT)
    settle(grid, 0)
    h.pause()
    loop = grid.workers[0].loop
    asyncio.run_coroutine_threadsafe(
        _acall(lambda: holder["cm"].reschedule(loop.time())), loop
    ).result(WAIT)
    settle(grid, 0)
    assert not h.done()
    h.resume()
    assert h.result(WAIT) == "timed out"


# -- workers and the grid -------------------------------------------------------


def test_paused_worker_holds_running_tasks_and_hands_pending_ones_away() -> None:
    with Grid(2, aging=None) as g:
        s = Stepper()
        running = g.spawn(s.run, worker=1)
        assert s.ready.wait(WAIT)
        settle(g, 1)
        spawned: list[Handle[Any]] = []
        queued = threading.Event()
        unblock = threading.Event()

        async def spawner() -> None:
            # Spawned from worker 1: they land in its local (stealable) queue,
            # and stay there while this task holds the thread.
            spawned.extend(loopgrid.spawn(identity, i) for i in range(20))
            queued.set()
            assert unblock.wait(WAIT)

        _, release0 = block_worker(g, 0)  # so that nobody steals them early
        sp = g.spawn(spawner, worker=1)
        assert queued.wait(WAIT)
        g.workers[1].pause()
        assert g.workers[1].paused
        unblock.set()
        sp.result(WAIT)
        s.resolve("late")
        settle(g, 1)
        assert s.steps == ["start"], "a task on a paused worker took a step"
        release0.set()
        assert [h.result(WAIT) for h in spawned] == list(range(20))
        assert {h.worker for h in spawned} == {0}, "pending work stayed on the paused worker"
        assert g.stats()["workers"][1]["paused"] is True
        g.workers[1].resume()
        assert running.result(WAIT) == "late"


def test_spawning_into_a_paused_grid_queues_and_nothing_is_lost() -> None:
    g = Grid(2)
    try:
        g.pause()
        assert g.paused and all(w.paused for w in g.workers)
        settle(g)
        hs = [g.spawn(identity, i) for i in range(50)]
        settle(g)
        assert all(h.state is TaskState.PENDING for h in hs)
        assert g.stats()["totals"]["started"] == 0
        g.resume()
        assert [h.result(WAIT) for h in hs] == list(range(50))
    finally:
        close_or_fail(g)


def test_worker_paused_on_its_own_stays_paused_when_the_grid_resumes(grid: Grid) -> None:
    grid.workers[0].pause()
    grid.pause()
    grid.resume()
    assert grid.workers[0].paused and not grid.workers[1].paused
    h = grid.spawn(identity, 7)
    assert h.result(WAIT) == 7
    assert h.worker == 1
    grid.workers[0].resume()
    assert not grid.workers[0].paused


def test_close_resumes_what_was_paused_and_runs_it_to_its_end() -> None:
    g = Grid(2)
    g.pause()
    hs = [g.spawn(identity, i) for i in range(10)]
    hs[3].pause()
    close_or_fail(g)
    assert [h.result(0) for h in hs] == list(range(10))


def test_close_with_cancel_ends_paused_tasks_cancelled() -> None:
    g = Grid(2)
    s = Stepper()
    running = g.spawn(s.run)
    assert s.ready.wait(WAIT)
    running.pause()
    g.pause()
    pending = g.spawn(forever)
    close_or_fail(g, cancel=True)
    assert running.cancelled() and pending.cancelled()


def test_a_closing_grid_cannot_be_paused() -> None:
    g = Grid(2)
    s = Stepper()
    h = g.spawn(s.run)
    assert s.ready.wait(WAIT)
    closer = threading.Thread(target=g.close)  # waits for h
    closer.start()
    assert wait_until(lambda: g.closed)
    with pytest.raises(loopgrid.GridClosedError, match="closing: it cannot be paused"):
        g.pause()
    with pytest.raises(loopgrid.GridClosedError, match="closing"):
        g.workers[0].pause()
    assert h.pause() is False
    assert h.state is TaskState.RUNNING
    s.resolve("done")
    closer.join(WAIT)
    assert not closer.is_alive()
    assert h.result(0) == "done"


# -- moving -----------------------------------------------------------------------


def test_move_rehomes_a_pending_task_and_pins_it(grid: Grid) -> None:
    _, release = block_worker(grid, 0)
    h = grid.spawn(identity, "moved", worker=0)
    h.move(worker=1)
    assert h.pinned == 1
    assert h.result(WAIT) == "moved"
    assert h.worker == 1
    release.set()


def test_move_a_paused_pending_task_starts_it_there_on_resume(grid: Grid) -> None:
    _, release = block_worker(grid, 0)
    h = grid.spawn(identity, 1, worker=0)
    h.pause()
    release.set()
    settle(grid, 0)
    h.move(worker=1)
    settle(grid)
    assert h.state is TaskState.PAUSED
    h.resume()
    assert h.result(WAIT) == 1
    assert h.worker == 1


def test_moving_a_started_task_says_why_not(grid: Grid) -> None:
    s = Stepper()
    h = grid.spawn(s.run, worker=0)
    assert s.ready.wait(WAIT)
    with pytest.raises(asyncio.InvalidStateError, match="started on worker 0"):
        h.move(worker=1)
    s.resolve(None)
    h.result(WAIT)
    with pytest.raises(asyncio.InvalidStateError, match="finished"):
        h.move(worker=1)


@pytest.mark.parametrize("bad", [-1, 2, "1", 1.0, None])
def test_move_to_a_bad_worker_index(grid: Grid, bad: Any) -> None:
    h = grid.spawn(identity, 1)
    with pytest.raises(ValueError, match=r"worker must be an int from 0 to 1"):
        h.move(worker=bad)
    h.result(WAIT)


# -- properties -------------------------------------------------------------------

control_op = st.tuples(
    st.sampled_from(["pause", "resume", "cancel", "move", "pause_worker", "resume_worker"]),
    st.integers(0, 11),
    st.integers(0, 1),
)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    programs=st.lists(st.lists(control_op, max_size=15), min_size=1, max_size=3),
    pause_grid=st.booleans(),
)
def test_control_from_many_threads_never_loses_a_task(
    programs: list[list[tuple[str, int, int]]], pause_grid: bool
) -> None:
    """Random pause / resume / cancel / move sequences from several threads at
    once, on pending, running and finished tasks: afterwards every task ends
    in exactly one final state, completed ones with their own result, and the
    grid's counters add up."""
    g = Grid(2)
    try:
        release = threading.Event()

        async def body(i: int) -> int:
            if i % 3 == 0:
                return i  # finishes at once
            await asyncio.to_thread(release.wait, WAIT)
            for _ in range(3):
                await asyncio.sleep(0)
            return i

        if pause_grid:
            g.pause()
        hs = [g.spawn(body, i) for i in range(12)]

        def run(ops: list[tuple[str, int, int]]) -> None:
            for op, i, w in ops:
                h = hs[i]
                if op == "pause":
                    h.pause()
                elif op == "resume":
                    h.resume()
                elif op == "cancel":
                    h.cancel()
                elif op == "move":
                    try:
                        h.move(worker=w)
                    except asyncio.InvalidStateError:
                        assert h.state is not TaskState.PENDING or h.done() or h.worker is not None
                elif op == "pause_worker":
                    g.workers[w].pause()
                else:
                    g.workers[w].resume()

        threads = [threading.Thread(target=run, args=(p,)) for p in programs]
        for t in threads:
            t.start()
        for t in threads:
            t.join(WAIT)
        release.set()
        g.resume()
        for w in g.workers:
            w.resume()
        for h in hs:
            h.resume()
        for i, h in enumerate(hs):
            try:
                assert h.result(WAIT) == i
            except asyncio.CancelledError:
                pass
            assert h.state in (TaskState.COMPLETED, TaskState.CANCELLED)
        totals = g.stats()["totals"]
        assert totals["completed"] + totals["cancelled"] == 12
        assert totals["paused"] == 0
    finally:
        close_or_fail(g, cancel=True)


def test_a_stale_copy_of_a_moved_task_queues_it_on_its_worker_again() -> None:
    """A moved task leaves a copy in its old queue. The dispatcher that meets
    that copy holds the task's claim for an instant, and a dispatcher trying
    to start the task's real copy meanwhile drops it as taken; so the one
    holding the stale copy queues the task on its worker again. Here the
    dropped copy is simulated by emptying the target's pinned queue: only
    that re-queue can start the task. (Without a GIL, the hypothesis test
    above lost a task this way.)"""
    g = Grid(2)
    try:
        g.pause()
        h = g.spawn(identity, 7)  # queued for every worker (injection queue)
        h.move(worker=1)  # pinned on worker 1; the old copy stays behind
        assert list(g.workers[1]._pinned.pop_all()) == [h]  # "dropped by a racing dispatcher"
        g.workers[1].pause()
        g.resume()  # worker 0 meets the old copy, worker 1 is still held
        assert wait_until(lambda: h in g.workers[1]._pinned.levels[h._priority])
        assert h.state is TaskState.PENDING
        g.workers[1].resume()
        assert h.result(WAIT) == 7 and h.worker == 1
    finally:
        close_or_fail(g, cancel=True)
