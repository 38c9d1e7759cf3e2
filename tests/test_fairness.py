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
def test_a_ticker_keeps_ticking_beside_a_busy_loop_of_short_steps() -> None:
    stop = threading.Event()
    with Grid(2) as g:
        hog = g.spawn(short_steps, stop, worker=0)
        tick = g.spawn(ticker, 50, stop, worker=1)
        assert tick.result(timeout=WAIT * 2) == 50
        stopped_by_ticker = hog.result(timeout=WAIT * 2)
        stats = g.stats()
    assert stopped_by_ticker, "the ticker's loop was starved of the GIL until the hog gave up"
    assert stats["workers"][0]["gil_yields"] > 0
    assert stats["workers"][1]["gil_yields"] == 0  # the ticker's loop was never busy


def test_needed_only_with_several_workers_and_a_gil() -> None:
    assert not fairness.needed(1)
    gil = getattr(sys, "_is_gil_enabled", lambda: True)()
    assert fairness.needed(2) is gil
    with Grid(1) as g:
        assert g.workers[0]._fair is None
        assert g.stats()["workers"][0]["gil_yields"] == 0
