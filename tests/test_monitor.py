"""The monitor: stall detection (log, stack, backlog moved away), loop lag,
busy sampling, and the Grid options that control it."""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

import pytest
from helpers import WAIT, Gate, LogCatcher, block_worker, identity, wait_until

import loopgrid
from loopgrid import Grid
from loopgrid import core as core_module
from loopgrid import worker as worker_module

THRESHOLD = 0.05


def _hold_thread_until(release: threading.Event) -> None:
    """A blocking call the stall log must show in its stack."""
    assert release.wait(WAIT), "never released"


def test_stall_is_logged_once_with_task_and_stack_then_its_length() -> None:
    release = threading.Event()

    async def hog() -> None:
        _hold_thread_until(release)

    with (
        LogCatcher("worker.stalled", logging.WARNING) as stalled,
        LogCatcher("worker.stall_ended", logging.WARNING) as ended,
        Grid(2, stall_threshold=THRESHOLD) as g,
    ):
        h = g.spawn(hog, worker=0, name="the-hog")
        try:
            assert stalled.seen.wait(WAIT)
            assert wait_until(lambda: g.stats()["workers"][0]["stalled"])
            # Still one stall for as long as it lasts: watch more ticks go by.
            mon = g._monitor
            seen = mon.ticks
            assert wait_until(lambda: mon.ticks >= seen + 4)
            assert len(stalled.messages) == 1
        finally:
            release.set()
        h.result(timeout=WAIT)
        assert ended.seen.wait(WAIT)
        w0 = g.stats()["workers"][0]
    msg = stalled.messages[0]
    assert "worker=0" in msg
    assert "the-hog" in msg and f"task_id={h.id}" in msg
    assert "_hold_thread_until" in msg  # the stack of the stalled thread
    assert "worker=0" in ended.messages[0] and "duration=" in ended.messages[0]
    assert len(ended.messages) == 1
    assert w0["stalls"] == 1 and not w0["stalled"]
    # The probe that revealed the stall waited at least the threshold for its answer.
    assert w0["lag_max"] >= THRESHOLD
    assert w0["lag_p99"] <= w0["lag_max"]


def test_stalled_workers_backlog_runs_elsewhere_without_stealing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # With stealing switched off, only the stall detector can move the tasks
    # queued behind a stuck loop.
    monkeypatch.setattr(core_module, "steal_into", lambda thief: 0)
    monkeypatch.setattr(worker_module, "has_victim", lambda thief: False)
    release = threading.Event()
    queued: list[loopgrid.Handle[Any]] = []
    spawned = threading.Event()

    async def spawn_then_hog() -> None:
        for i in range(20):
            queued.append(loopgrid.spawn(identity, i))  # worker 0's local queue
        spawned.set()
        _hold_thread_until(release)

    with (
        LogCatcher("worker.stalled", logging.WARNING) as stalled,
        Grid(2, stall_threshold=THRESHOLD) as g,
    ):
        h = g.spawn(spawn_then_hog, worker=0)
        try:
            assert spawned.wait(WAIT)
            # Every queued task finishes while worker 0 is still held.
            assert [q.result(timeout=WAIT) for q in queued] == list(range(20))
            assert all(q.worker == 1 for q in queued)
            assert not release.is_set() and stalled.seen.is_set()
            stats = g.stats()
        finally:
            release.set()
        h.result(timeout=WAIT)
    assert stats["workers"][0]["shed"] == 20
    assert stats["totals"]["shed"] == 20
    assert stats["workers"][1]["stolen_in"] == 0


def test_busy_fraction_tells_a_held_loop_from_an_idle_one() -> None:
    with Grid(2, stall_threshold=None) as g:
        _, release = block_worker(g, 0)
        seen: list[dict[str, Any]] = []

        def told_apart() -> bool:
            # The first few samples may catch worker 1 still starting (slow
            # under -X dev with asyncio's debug mode): wait until the window
            # holds enough of them to tell the two apart.
            seen[:] = [g.stats()]
            busy = [w["busy"] for w in seen[0]["workers"]]
            return busy[0] > 0.5 and busy[1] < 0.5

        try:
            assert wait_until(told_apart)
        finally:
            release.set()
    stats = seen[0]
    busy = [w["busy"] for w in stats["workers"]]
    assert stats["totals"]["imbalance"] == round(busy[0] - busy[1], 4)


def test_lag_is_measured_on_every_worker() -> None:
    with Grid(2) as g:
        watches = g._monitor.watches
        assert wait_until(lambda: all(len(w.lags) >= 3 for w in watches))
        stats = g.stats()
    for w in stats["workers"]:
        assert 0.0 <= w["lag_p50"] <= w["lag_p99"] <= w["lag_max"]
        assert w["stalls"] == 0 and not w["stalled"]


def test_stall_detector_off_logs_nothing() -> None:
    with (
        LogCatcher("worker.stalled", logging.WARNING) as stalled,
        Grid(1, stall_threshold=None) as g,
    ):
        _, release = block_worker(g, 0)
        try:
            mon = g._monitor
            seen = mon.ticks
            # Ten ticks with the loop held: well past any threshold.
            assert wait_until(lambda: mon.ticks >= seen + 10)
            stats = g.stats()
        finally:
            release.set()
    assert not stalled.messages
    assert stats["workers"][0]["stalls"] == 0
    assert stats["stall_threshold"] is None


def test_task_timing_counts_steps_per_task() -> None:
    gate = Gate()

    async def three_steps_then_wait() -> None:
        for _ in range(3):
            await asyncio.sleep(0)
        await gate.wait()  # the fourth step ends here

    with Grid(1, task_timing=True) as g:
        h = g.spawn(three_steps_then_wait, name="stepper")
        try:
            assert wait_until(lambda: _row(g, h.id).get("steps") == 4)
            row = _row(g, h.id)
        finally:
            gate.set()
        h.result(timeout=WAIT)
        assert g.stats()["task_timing"] is True
    assert row["step_time"] > 0
    assert row["state"] == "running" and row["worker"] == 0
    assert row["name"] == "stepper"


def test_steps_are_not_counted_without_task_timing() -> None:
    with Grid(1) as g:
        _, release = block_worker(g, 0)
        try:
            rows = g.stats(tasks=True)["tasks"]
        finally:
            release.set()
    assert [r["name"] for r in rows] == ["blocker"]
    assert "steps" not in rows[0]


def _row(g: Grid, task_id: int) -> dict[str, Any]:
    for row in g.stats(tasks=True)["tasks"]:
        if row["id"] == task_id:
            return row  # type: ignore[no-any-return]
    return {}


@pytest.mark.parametrize("bad", [0, -1.0, "0.1", True, float("nan")])
def test_bad_stall_threshold_is_refused(bad: Any) -> None:
    with pytest.raises(ValueError, match="stall_threshold") as info:
        Grid(1, stall_threshold=bad)
    assert repr(bad) in str(info.value)


def test_bad_task_timing_is_refused() -> None:
    with pytest.raises(TypeError, match="task_timing must be a bool, got 'yes'"):
        Grid(1, task_timing="yes")  # type: ignore[arg-type]


def test_monitor_wakes_a_worker_whose_wake_up_was_lost(monkeypatch: pytest.MonkeyPatch) -> None:
    with Grid(2) as g:
        assert wait_until(lambda: all(w._parked for w in g.workers))
        with monkeypatch.context() as m:
            m.setattr(Grid, "_wake_idle", lambda self: None)  # the spawn wakes nobody
            h = g.spawn(identity, 42)
        # Only the monitor can notice the task queued beside parked workers.
        assert h.result(timeout=WAIT) == 42


def test_the_stall_hint_is_given_once_per_process(monkeypatch: pytest.MonkeyPatch) -> None:
    from loopgrid import monitor

    monkeypatch.setattr(monitor, "_hinted", threading.Event())  # as in a fresh process

    def stall_once(g: Grid) -> None:
        release = threading.Event()

        async def hog() -> None:
            _hold_thread_until(release)

        with LogCatcher("worker.stalled", logging.WARNING) as stalled:
            h = g.spawn(hog, worker=0)
            try:
                assert stalled.seen.wait(WAIT)
            finally:
                release.set()
            h.result(timeout=WAIT)
        messages.append(stalled.messages[0])

    messages: list[str] = []
    with Grid(2, stall_threshold=THRESHOLD) as g:
        stall_once(g)
    with Grid(2, stall_threshold=THRESHOLD) as g:  # another grid, the same process
        stall_once(g)
    assert "has not been back to its event loop" in messages[0]
    assert "has not been back" not in messages[1] and "_hold_thread_until" in messages[1]
