"""GIL fairness between loops: a busy loop of short steps does not starve the
other loops (the convoy effect; see loopgrid/fairness.py)."""

from __future__ import annotations

import asyncio
import sys
import threading
import time

import pytest
from helpers import WAIT

from loopgrid import Grid, fairness

needs_gil = pytest.mark.skipif(
    not getattr(sys, "_is_gil_enabled", lambda: True)(),
    reason="without a GIL there is no convoy and the timer does not run",
)


async def short_steps(stop: threading.Event) -> bool:
    """A busy loop of 2 ms steps: back to the selector (and the GIL) every 2 ms.

    Returns whether the ticker stopped it (rather than the guard's deadline).
    """
    deadline = time.monotonic() + WAIT  # a guard, never reached when the test passes
    while not stop.is_set():
        if time.monotonic() > deadline:
            return False
        end = time.perf_counter() + 0.002
        while time.perf_counter() < end:
            pass
        await asyncio.sleep(0)
    return True


async def ticker(ticks: int, stop: threading.Event) -> int:
    for _ in range(ticks):
        await asyncio.sleep(0.001)
    stop.set()
    return ticks


@needs_gil
def test_a_ticker_keeps_ticking_beside_a_busy_loop_of_short_steps(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # On a machine busy with other processes the hog's thread gets less than
    # BUSY_SHARE of the wall time on a CPU (it held the GIL while waiting for
    # one): the loop would not count as busy, and the test would pass or fail
    # with the machine's load. Any share counts here; the threshold itself is
    # tested below, with clocks the test controls.
    monkeypatch.setattr(fairness, "BUSY_SHARE", 0.01)
    stop = threading.Event()
    with Grid(2) as g:
        hog = g.spawn(short_steps, stop, worker=0)
        tick = g.spawn(ticker, 50, stop, worker=1)
        assert tick.result(timeout=WAIT * 2) == 50
        stopped_by_ticker = hog.result(timeout=WAIT * 2)
        stats = g.stats()
    assert stopped_by_ticker, "the ticker's loop was starved of the GIL until the hog gave up"
    assert stats["workers"][0]["gil_yields"] > 0


class _Clocks:
    """The thread's CPU clock, the process's and the wall clock, moved by the
    test; ``others`` is what the other threads run during each sleep."""

    def __init__(self) -> None:
        self.cpu = 0.0
        self.process = 0.0
        self.wall = 0.0
        self.slept: list[float] = []
        self.others = 0.0

    def run(self, cpu: float, wall: float) -> None:
        self.cpu += cpu
        self.process += cpu
        self.wall += wall

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.process += self.others
        self.wall += seconds


def _timer(clocks: _Clocks) -> fairness.Fairness:
    loop = asyncio.new_event_loop()
    loop.close()  # decide() schedules nothing: the loop is only its owner's
    return fairness.Fairness(
        loop,
        cpu_clock=lambda: clocks.cpu,
        wall_clock=lambda: clocks.wall,
        sleep=clocks.sleep,
        process_clock=lambda: clocks.process,
    )


def _busy_looks(clocks: _Clocks, timer: fairness.Fairness, looks: int) -> list[bool]:
    """``looks`` busy looks in a row: for each, whether it yielded."""
    out = []
    for _ in range(looks):
        before = timer.yields
        clocks.run(0.005, 0.005)
        assert timer.decide()
        out.append(timer.yields > before)
    return out


@pytest.mark.parametrize(
    ("cpu", "wall", "busy"),
    [
        (0.004, 0.005, True),  # 80% of the time on the CPU: busy, give the GIL away
        (0.0026, 0.005, True),  # just over BUSY_SHARE
        (0.0025, 0.005, False),  # exactly the share: not over it
        (0.001, 0.05, False),  # an idle loop: a tick now and then
        (0.0, 0.0, False),  # no time passed at all
    ],
)
def test_the_timer_yields_only_when_the_loop_was_busy(cpu: float, wall: float, busy: bool) -> None:
    clocks = _Clocks()
    timer = _timer(clocks)
    clocks.run(cpu, wall)
    assert timer.decide() is busy
    assert clocks.slept == ([fairness.YIELD] if busy else [])
    assert timer.yields == (1 if busy else 0)


def test_each_look_measures_from_the_last() -> None:
    """A busy stretch is forgotten once looked at: the next look sees only
    what came after it."""
    clocks = _Clocks()
    timer = _timer(clocks)
    clocks.run(0.005, 0.005)
    assert timer.decide()
    clocks.run(0.0001, 0.05)
    assert not timer.decide()
    clocks.run(0.004, 0.005)
    assert timer.decide()
    assert timer.yields == 2 and len(clocks.slept) == 2


def test_needed_only_with_several_workers_and_a_gil() -> None:
    assert not fairness.needed(1)
    gil = getattr(sys, "_is_gil_enabled", lambda: True)()
    assert fairness.needed(2) is gil
    with Grid(1) as g:
        assert g.workers[0]._fair is None
        assert g.stats()["workers"][0]["gil_yields"] == 0


def test_yields_nobody_used_are_spaced_out_up_to_a_bound() -> None:
    clocks = _Clocks()
    timer = _timer(clocks)
    # No other thread runs while it sleeps: yield, skip 1, yield, skip 3,
    # yield, skip 7, yield, then skip MAX_SKIP between yields for good.
    pattern = _busy_looks(clocks, timer, 1 + 1 + 1 + 3 + 1 + 7 + 1 + 15 + 1 + 15 + 1)
    expected = [True]
    for skipped in (1, 3, 7, fairness.MAX_SKIP, fairness.MAX_SKIP):
        expected += [False] * skipped + [True]
    assert pattern == expected
    assert fairness.MAX_SKIP == 15


def test_a_used_yield_brings_them_back_at_every_busy_look() -> None:
    clocks = _Clocks()
    timer = _timer(clocks)
    assert _busy_looks(clocks, timer, 6) == [True, False, True, False, False, False]
    # A thread waits for the GIL now: the next yield lets it run, and the
    # yields come at every busy look while it keeps running in them.
    clocks.others = 2 * fairness.USED
    assert _busy_looks(clocks, timer, 4) == [True] * 4


def test_other_threads_running_under_the_threshold_do_not_count() -> None:
    clocks = _Clocks()
    timer = _timer(clocks)
    clocks.others = fairness.USED  # not over it
    assert _busy_looks(clocks, timer, 3) == [True, False, True]


def test_an_idle_look_forgets_the_backoff() -> None:
    clocks = _Clocks()
    timer = _timer(clocks)
    assert _busy_looks(clocks, timer, 3) == [True, False, True]  # skipping 3 now
    clocks.run(0.0001, 0.05)
    assert not timer.decide()
    assert _busy_looks(clocks, timer, 2) == [True, False]
