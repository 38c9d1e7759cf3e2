"""Shutdown: draining, cancelling, refusing new work, exactly one final state,
no thread left behind."""

from __future__ import annotations

import _thread
import asyncio
import gc
import logging
import sys
import threading
import warnings
from typing import Any

import pytest
from helpers import (
    WAIT,
    Gate,
    LogCatcher,
    close_or_fail,
    forever,
    grid_threads,
    identity,
    wait_until,
)

import loopgrid
from loopgrid import Grid, GridClosedError, TaskState

FINAL = (TaskState.COMPLETED, TaskState.FAILED, TaskState.CANCELLED)


def _one_final_state(h: Any) -> TaskState:
    st = h.state
    assert st in FINAL
    assert h.done()
    assert h.cancelled() == (st is TaskState.CANCELLED)
    return st


async def _yielding(i: int) -> int:
    for _ in range(3):
        await asyncio.sleep(0)
    return i


def test_leaving_with_waits_for_every_task() -> None:
    with Grid(2) as g:
        hs = [g.spawn(_yielding, i) for i in range(300)]
        hs.append(g.spawn(asyncio.sleep, 0.01, "slept"))
    assert all(h.done() for h in hs)
    assert [h.result() for h in hs[:-1]] == list(range(300))
    assert hs[-1].result() == "slept"
    assert grid_threads() == []


def test_leaving_with_waits_for_children_spawned_while_draining() -> None:
    """Tasks already on the grid may still spawn while it drains."""
    gate = Gate()
    children: list[Any] = []

    async def parent() -> None:
        await gate.wait()
        for i in range(50):
            children.append(loopgrid.spawn(_yielding, i))

    with Grid(2) as g:
        p = g.spawn(parent)

        def open_gate_once_closing() -> None:
            # g.closed turns True when close() has begun; the parent spawns after.
            assert wait_until(lambda: g.closed)
            gate.set()

        t = threading.Thread(target=open_gate_once_closing)
        t.start()
    t.join(WAIT)
    assert p.result() is None
    assert len(children) == 50
    assert [c.result() for c in children] == list(range(50))


def test_close_cancel_cancels_pending_and_running_tasks() -> None:
    ran: list[int] = []
    running_started = threading.Event()
    blocker_started = threading.Event()
    release_blocker = threading.Event()

    async def running() -> None:
        running_started.set()
        await forever()

    async def blocker() -> None:
        blocker_started.set()
        assert release_blocker.wait(WAIT)
        await forever()

    async def pending(i: int) -> None:
        ran.append(i)

    g = Grid(2)
    r = g.spawn(running, worker=1)
    b = g.spawn(blocker, worker=0)
    assert running_started.wait(WAIT)
    assert blocker_started.wait(WAIT)
    pend = [g.spawn(pending, i, worker=0) for i in range(20)]
    # Not pinned: worker 1 (whose task only awaits) may start some of these
    # before close(); the pinned ones cannot start while worker 0 is blocked.
    pend += [g.spawn(pending, 100 + i) for i in range(20)]
    all_pinned_cancelled = threading.Event()
    left = [20]
    lock = threading.Lock()

    def on_done(h: Any) -> None:
        with lock:
            left[0] -= 1
            if left[0] == 0:
                all_pinned_cancelled.set()

    for h in pend[:20]:
        h.add_done_callback(on_done)
    closer = threading.Thread(target=g.close, kwargs={"cancel": True})
    closer.start()
    assert all_pinned_cancelled.wait(WAIT)
    release_blocker.set()
    closer.join(WAIT)
    assert not closer.is_alive()
    assert r.cancelled()
    assert b.cancelled()
    assert all(h.cancelled() for h in pend[:20])
    assert not [i for i in ran if i < 100]
    for h in pend:
        _one_final_state(h)
    assert grid_threads() == []


def test_with_block_that_raises_cancels_tasks() -> None:
    started = threading.Event()

    async def waits() -> None:
        started.set()
        await forever()

    with pytest.raises(ZeroDivisionError), Grid(2) as g:
        h = g.spawn(waits)
        assert started.wait(WAIT)
        1 / 0  # noqa: B018
    assert h.cancelled()
    assert grid_threads() == []


def test_spawn_after_close_raises_grid_closed_error() -> None:
    g = Grid(1)
    g.close()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        coro = identity(1)
        with pytest.raises(GridClosedError, match="closed"):
            g.spawn(coro)
        assert coro.cr_frame is None
        del coro
        gc.collect()
    assert not [w for w in caught if "never awaited" in str(w.message)]
    with pytest.raises(GridClosedError):
        g.spawn(identity, 1)
    with pytest.raises(GridClosedError):
        g.spawn(identity, 1, worker=0)
    assert issubclass(GridClosedError, RuntimeError)
    assert issubclass(GridClosedError, loopgrid.LoopgridError)


def test_spawn_from_outside_while_draining_is_refused() -> None:
    gate = Gate()
    refused: list[BaseException] = []

    async def holds() -> None:
        await gate.wait()

    g = Grid(1)
    h = g.spawn(holds)
    closer = threading.Thread(target=g.close)
    closer.start()
    assert wait_until(lambda: g.closed)  # close() has begun
    try:
        g.spawn(identity, 1)
    except GridClosedError as exc:
        refused.append(exc)
    gate.set()
    closer.join(WAIT)
    assert not closer.is_alive()
    assert len(refused) == 1
    assert h.state is TaskState.COMPLETED


def test_close_is_idempotent_and_safe_from_several_threads() -> None:
    g = Grid(2)
    hs = [g.spawn(_yielding, i) for i in range(50)]
    threads = [threading.Thread(target=g.close) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT)
    g.close()
    g.close(cancel=True)
    assert g.closed
    assert [h.result() for h in hs] == list(range(50))
    assert g.stats()["state"] == "closed"


def test_close_from_a_worker_raises_runtime_error() -> None:
    async def closer() -> str:
        try:
            loopgrid.current_grid().close()
        except RuntimeError as exc:
            return str(exc)
        return "no error"

    with Grid(2) as g:
        msg = g.spawn(closer).result(WAIT)
    assert "deadlock" in msg


def test_close_of_another_grid_from_a_worker_is_allowed() -> None:
    with Grid(1) as a:
        b = Grid(1)
        hb = b.spawn(identity, "b")

        async def close_b() -> bool:
            await asyncio.to_thread(b.close)
            return b.closed

        assert a.spawn(close_b).result(WAIT) is True
        assert hb.result() == "b"


def test_every_task_ends_in_exactly_one_state_on_cancel_close() -> None:
    g = Grid(2)
    outcomes = []
    for i in range(400):
        kind = i % 4
        if kind == 0:
            outcomes.append(g.spawn(identity, i))
        elif kind == 1:
            outcomes.append(g.spawn(_fail, i))
        elif kind == 2:
            outcomes.append(g.spawn(forever))
        else:
            outcomes.append(g.spawn(_yielding, i))
    g.close(cancel=True)
    counts = {s: 0 for s in FINAL}
    for i, h in enumerate(outcomes):
        st = _one_final_state(h)
        counts[st] += 1
        if st is TaskState.COMPLETED:
            assert h.result() == i
        elif st is TaskState.FAILED:
            assert isinstance(h.exception(), KeyError)
    assert all(outcomes[i].cancelled() for i in range(2, 400, 4))
    totals = g.stats()["totals"]
    assert totals["spawned"] == 400
    assert totals["completed"] == counts[TaskState.COMPLETED]
    assert totals["failed"] == counts[TaskState.FAILED]
    assert totals["cancelled"] == counts[TaskState.CANCELLED]
    assert totals["pending"] == 0
    assert totals["running"] == 0
    assert grid_threads() == []


async def _fail(i: int) -> None:
    raise KeyError(i)


def test_plain_asyncio_task_spawning_after_quiescence_is_not_lost() -> None:
    """A plain asyncio task on a worker loop that spawns while the grid shuts
    down: its handle ends in a final state (completed or cancelled), never
    pending forever."""
    box: dict[str, Any] = {}
    created = threading.Event()

    async def plain() -> None:
        try:
            await forever()
        finally:
            try:
                box["late"] = loopgrid.spawn(identity, "late")
            except GridClosedError as exc:
                box["refused"] = exc

    async def start_plain() -> None:
        box["task"] = asyncio.get_running_loop().create_task(plain())
        created.set()

    g = Grid(1)
    g.spawn(start_plain).result(WAIT)
    assert created.wait(WAIT)
    g.close()
    assert "late" in box or "refused" in box
    if "late" in box:
        _one_final_state(box["late"])
    assert grid_threads() == []


def test_no_thread_outlives_the_grid_after_failures() -> None:
    with Grid(3) as g:
        hs = [g.spawn(_fail, i) for i in range(10)]
    for h in hs:
        assert isinstance(h.exception(), KeyError)
    assert grid_threads() == []
    assert all(not w.thread.is_alive() for w in g.workers)


# -- a worker whose loop dies --------------------------------------------------------


async def _cleans_up(done: threading.Event) -> None:
    """Runs until cancelled, then cleans up asynchronously (the loop's finish must await it)."""
    try:
        await forever()
    finally:
        await asyncio.sleep(0)
        done.set()


@pytest.mark.filterwarnings("error::pytest.PytestUnhandledThreadExceptionWarning")
@pytest.mark.parametrize("task_timing", [False, True])
def test_a_worker_whose_loop_dies_is_finished_and_the_grid_goes_on(task_timing: bool) -> None:
    """SystemExit out of a callback stops worker 1's loop for good: its tasks
    are cancelled and awaited (a paused one too), its async generators closed;
    its queued tasks go to worker 0, or end cancelled if pinned to it; the
    grid goes on, and close() returns with every handle done."""
    before = set(threading.enumerate())
    cleaned = [threading.Event() for _ in range(2)]
    agen_closed = threading.Event()
    box: dict[str, Any] = {}

    async def agen() -> Any:
        try:
            yield 1
            yield 2
        finally:
            agen_closed.set()

    async def doomed() -> None:
        g = agen()
        box["agen"] = g  # kept: only the loop's shutdown can finalize it
        await g.__anext__()
        # Queued before any dispatcher turn these spawns schedule: asyncio's
        # loop dies with the children still queued here. (uvloop's runs the
        # rest of the batch of callbacks first: that dispatcher turn too.)
        asyncio.get_running_loop().call_soon(sys.exit, 7)
        box["children"] = [loopgrid.spawn(identity, i) for i in range(8)]
        box["pinned"] = [loopgrid.spawn(identity, i, worker=1) for i in range(3)]
        await forever()

    with LogCatcher("worker.died") as died:
        g = Grid(2, task_timing=task_timing, loop_factory=asyncio.new_event_loop)
        try:
            first = g.spawn(_cleans_up, cleaned[0], worker=1)
            paused = g.spawn(_cleans_up, cleaned[1], worker=1)
            assert wait_until(lambda: paused.state is TaskState.RUNNING)
            assert paused.pause()
            h = g.spawn(doomed, worker=1)
            g.workers[1].thread.join(WAIT)
            assert not g.workers[1].thread.is_alive()
            assert g.workers[1].loop.is_closed()
            assert died.seen.is_set()
            assert "SystemExit(7)" in died.messages[0]
            assert all(e.is_set() for e in cleaned)
            assert agen_closed.is_set()
            for x in (first, paused, h):
                assert x.cancelled()
            assert [c.result(WAIT) for c in box["children"]] == list(range(8))
            assert all(p.cancelled() for p in box["pinned"]), box["pinned"]
            with pytest.raises(
                asyncio.CancelledError, match=r"worker 1 .* died \(SystemExit\(7\)\)"
            ):
                box["pinned"][0].result(WAIT)
            # The grid goes on: worker 0 takes what is spawned; a spawn pinned
            # to the dead worker is refused, naming it.
            assert g.spawn(identity, "on").result(WAIT) == "on"
            with pytest.raises(
                loopgrid.WorkerDiedError, match=r"worker 1 .* died .*another worker"
            ):
                g.spawn(identity, "late", worker=1)
            assert not g.closed
        finally:
            close_or_fail(g)
    assert g.workers[0].loop.is_closed()
    totals = g.stats()["totals"]
    assert totals["pending"] == totals["running"] == 0
    assert totals["spawned"] == 3 + 8 + 3 + 1
    assert [t for t in threading.enumerate() if t not in before] == []


def test_close_right_after_a_worker_died_returns() -> None:
    """close() skips the dead worker's loop (closed, or still being finished)."""
    g = Grid(3)
    hs = [g.spawn(forever, worker=i) for i in range(3)]
    assert wait_until(lambda: all(h.state is TaskState.RUNNING for h in hs))
    g.workers[2].loop.call_soon_threadsafe(sys.exit, 1)
    close_or_fail(g, cancel=True)
    assert all(h.cancelled() for h in hs)
    assert grid_threads() == []


# -- tasks that never end ------------------------------------------------------------


@pytest.mark.parametrize("cancel", [True, False])
def test_an_interrupted_close_gives_up_on_tasks_that_never_end(cancel: bool) -> None:
    """Ctrl-C while close() waits for cancelled tasks that swallow every
    cancellation gives up on them, as asyncio.Runner.close gives up on its loop:
    their handles end cancelled, their coroutines are closed, every thread is
    joined, and the KeyboardInterrupt propagates. Without cancel=True, the
    first Ctrl-C cancels, the second gives up."""
    swallowed = threading.Event()
    closed = threading.Event()
    started = threading.Event()

    async def stubborn() -> None:
        started.set()
        try:
            while True:
                try:
                    await forever()
                except asyncio.CancelledError:
                    swallowed.set()
        finally:
            closed.set()  # GeneratorExit, when given up on

    g = Grid(2)
    h = g.spawn(stubborn, worker=1)
    other = g.spawn(forever, worker=0)
    assert started.wait(WAIT)

    def interrupt() -> None:
        if not cancel:
            assert wait_until(lambda: g.closed)  # close() waits for the tasks
            assert not swallowed.is_set()
            _thread.interrupt_main()  # close() cancels them
        assert swallowed.wait(WAIT)
        _thread.interrupt_main()  # close() gives up on them

    t = threading.Thread(target=interrupt)
    t.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            g.close(cancel=cancel)
    finally:
        t.join(WAIT)
    assert h.cancelled() and other.cancelled()
    assert closed.is_set()
    assert g.workers[1].loop.is_closed()
    assert grid_threads() == []
    g.close()  # closed: nothing more to do


async def _swallows_cancellation(started: threading.Event) -> str:
    started.set()
    while True:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            continue  # never ends by being cancelled


@pytest.mark.parametrize("cancel", [False, True])
def test_close_with_a_timeout_gives_up_on_a_task_that_never_ends(cancel: bool) -> None:
    started = threading.Event()
    g = Grid(2)
    stubborn = g.spawn(_swallows_cancellation, started)
    finite = g.spawn(identity, 5)
    assert started.wait(WAIT)
    # Ended before the close (with cancel=True a close could cancel it first).
    assert finite.result(WAIT) == 5
    with LogCatcher("grid.close_gave_up", logging.WARNING) as gave_up:
        closer = threading.Thread(target=g.close, kwargs={"cancel": cancel, "timeout": 0.05})
        closer.start()
        closer.join(WAIT)
        assert not closer.is_alive(), "close(timeout=...) did not return"
    assert gave_up.seen.is_set() and "tasks=1" in gave_up.messages[0]
    assert stubborn.cancelled() and finite.result() == 5
    assert grid_threads() == []


def test_close_timeouts_are_checked_by_name() -> None:
    with Grid(1) as g:
        with pytest.raises(ValueError, match="timeout must be None or a number of seconds >= 0"):
            g.close(timeout=-1)
        assert not g.closed
