"""Latency isolation: a 1 ms ticker while another task hogs a loop.

Why: on one event loop, a callback that computes for 30 ms delays everything
else on that loop by up to 30 ms; that is the first reason to run several
loops. A *ticker* (``await asyncio.sleep(0.001)`` in a loop, recording how late
each wake-up is) runs while a *hog* computes in pure Python for 30 ms slices
without awaiting, on:

Each case runs for a fixed time (the ticker ticks as often as it can):

(1) one plain uvloop loop, ticker and hog together (the baseline);
(2) a 2-worker grid, ticker and hog pinned to the same worker: no better, by
    design (a started coroutine stays on its loop);
(3) a 2-worker grid, hog on worker 0 and ticker on worker 1: the ticker's loop
    is free, but on a GIL build the hog holds the GIL for up to the
    interpreter's switch interval (5 ms by default) before the ticker's thread
    gets it;
(4) as (3) with ``sys.setswitchinterval(0.001)``, which bounds that wait to
    about 1 ms at the price of more GIL hand-overs;
(5) as (3), but the hog computes in 2 ms slices with an ``await
    asyncio.sleep(0)`` between them: a busy loop of short steps, which goes
    back to its selector (and releases the GIL for an instant) every 2 ms;
(6) as (5) on a grid whose workers run no GIL fairness timer: the convoy
    effect that timer exists for (see ``loopgrid/fairness.py``), where the
    ticker's thread waits for the GIL for as long as the hog runs.

Reported: p50 and p99 lateness of the ticker in each case, and the ratio of
p99s against (1). Hog slices stay under the grids' 100 ms stall threshold;
only a starved ticker (case 6) makes the stall detector report its loop.
Lateness is measured in the ticker's own loop (``time.perf_counter`` after the
sleep, minus the time it was due).

Run alone: ``python -m bench.bench_isolation [--quick] [--smoke]``.
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import sys
import threading
from collections.abc import Iterator
from typing import Any

import loopgrid
from bench._harness import LoopThread, now, uvloop_factory
from loopgrid import worker as worker_module

#: (seconds per case, hog slice in seconds)
SIZES = {"full": (6.0, 0.03), "quick": (1.5, 0.03), "smoke": (0.2, 0.005)}
TICK = 0.001
#: The hog of the convoy cases: a busy loop of short steps.
SHORT_SLICE = 0.002
PLOT_SAMPLES = 2_000


def _spin(seconds: float) -> int:
    """Pure-Python work for about ``seconds`` (holds the GIL, never awaits)."""
    end = now() + seconds
    n = 0
    while now() < end:
        n += 1
    return n


async def hog(slice_s: float, stop: threading.Event, seconds: float) -> int:
    slices = 0
    end = now() + seconds  # bounded even if the ticker never gets to run
    while not stop.is_set() and now() < end:
        _spin(slice_s)
        slices += 1
        await asyncio.sleep(0)
    return slices


async def ticker(seconds: float, stop: threading.Event) -> list[float]:
    late = []
    end = now() + seconds
    while now() < end:
        due = now() + TICK
        await asyncio.sleep(TICK)
        late.append(now() - due)
    stop.set()
    return late


def _baseline(lt: LoopThread, seconds: float, slice_s: float) -> list[float]:
    stop = threading.Event()
    h = asyncio.run_coroutine_threadsafe(hog(slice_s, stop, seconds), lt.loop)
    late = asyncio.run_coroutine_threadsafe(ticker(seconds, stop), lt.loop).result()
    h.result()
    return late


def _grid(grid: loopgrid.Grid, seconds: float, slice_s: float, ticker_worker: int) -> list[float]:
    stop = threading.Event()
    h = grid.spawn(hog, slice_s, stop, seconds, worker=0)
    late: list[float] = grid.spawn(ticker, seconds, stop, worker=ticker_worker).result()
    h.result()
    return late


@contextlib.contextmanager
def _without_fairness() -> Iterator[None]:
    """Grids made in this block run no GIL fairness timer (``fairness.py``)."""
    old = worker_module.fairness_needed
    worker_module.fairness_needed = lambda workers: False
    try:
        yield
    finally:
        worker_module.fairness_needed = old


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(q * len(ordered) + 0.5) - 1))]


def _thin_ms(samples: list[float]) -> list[float]:
    ordered = sorted(samples)
    step = max(1, len(ordered) // PLOT_SAMPLES)
    return [max(round(x * 1e3, 4), 0.01) for x in ordered[::step]]  # log axis: floor 10 us


def run(quick: bool, *, smoke: bool = False) -> dict[str, Any]:
    """Measure; return the result dict described in ``bench/run.py``."""
    seconds, slice_s = SIZES["smoke" if smoke else "quick" if quick else "full"]
    uv_factory, uv_label = uvloop_factory()
    old_interval = sys.getswitchinterval()
    cases: dict[str, list[float]] = {}
    with LoopThread(uv_factory) as lt, loopgrid.Grid(2, name="bench-isolation") as grid:
        _grid(grid, seconds / 5, slice_s, 1)  # warm-up
        cases["one loop (baseline)"] = _baseline(lt, seconds, slice_s)
        cases["grid, same worker"] = _grid(grid, seconds, slice_s, 0)
        cases["grid, other worker"] = _grid(grid, seconds, slice_s, 1)
        sys.setswitchinterval(0.001)
        try:
            cases["grid, other worker, switch interval 1 ms"] = _grid(grid, seconds, slice_s, 1)
        finally:
            sys.setswitchinterval(old_interval)
        short = SHORT_SLICE
        cases[f"grid, other worker, {short * 1e3:g} ms slices"] = _grid(grid, seconds, short, 1)
        with _without_fairness():
            unfair = loopgrid.Grid(2, name="bench-isolation-unfair")
        with unfair:
            cases[f"grid without fairness timer, other worker, {short * 1e3:g} ms slices"] = _grid(
                unfair, seconds, short, 1
            )
    base_p99 = _pct(cases["one loop (baseline)"], 0.99)
    results = []
    for name, late in cases.items():
        p99 = _pct(late, 0.99)
        entry: dict[str, Any] = {
            "name": f"{name}: p99 lateness of a 1 ms ticker (p50 "
            f"{statistics.median(late) * 1e3:.2f} ms)",
            "unit": "ms",
            "value": p99 * 1e3,
            "target": None,
            "met": None,
        }
        if name != "one loop (baseline)":
            ratio = p99 / base_p99 if base_p99 > 0 else 0.0
            entry["name"] += f"; vs one loop: {ratio:.3g}x"
            entry["ratio_vs_baseline"] = ratio
        entry["name"] += f"; {len(late):,} ticks"
        results.append(entry)
    return {
        "benchmark": "isolation",
        "title": "Latency isolation: a 1 ms ticker while a task hogs a loop",
        "params": {
            "seconds_per_case": seconds,
            "hog_slice_s": slice_s,
            "switch_interval_default_s": old_interval,
            "baseline_loop": uv_label,
        },
        "results": results,
        "details": {
            name: {"p50_ms": statistics.median(v) * 1e3, "p99_ms": _pct(v, 0.99) * 1e3}
            for name, v in cases.items()
        },
        "notes": [
            "Lateness = when the ticker resumed minus when its 1 ms sleep was due.",
            "On a GIL build, a ticker on another loop still waits for the hog to release "
            "the GIL (at most the switch interval); a free-threaded build has no such wait.",
        ],
        "plots": [
            {
                "file": "isolation_ticker_lateness.png",
                "title": "Lateness of a 1 ms ticker while a task hogs a loop (CDF)",
                "kind": "cdf",
                "xlabel": "lateness (ms, log scale; below 0.01 ms drawn at 0.01)",
                "ylabel": "share of ticks",
                "log_x": True,
                "series": {name: _thin_ms(v) for name, v in cases.items()},
            }
        ],
    }


if __name__ == "__main__":
    import json

    print(json.dumps(run("--quick" in sys.argv, smoke="--smoke" in sys.argv), indent=2))
