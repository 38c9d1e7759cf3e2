"""Spawn-to-start latency on an idle grid, and the cost of a task step.

Why: a scheduler's *latency* (how soon a task spawned on an idle system starts
running) matters as much as its throughput for request handling; the scheduler
documents behind loopgrid ask for under 100 us. An idle grid is the worst case
for it: every worker is parked, so a spawn must wake one (a write to its loop's
self-pipe) before anything runs. Measured one spawn at a time, in the same
process, rounds interleaved:

(a) from a plain thread: ``grid.spawn(stamp)`` on an idle 2-worker grid, vs
    ``asyncio.run_coroutine_threadsafe(stamp(), loop)`` onto an idle uvloop
    loop in a thread (the standard way to hand a coroutine to a loop), and
    vs ``loop.call_soon_threadsafe`` of a plain callback that stamps (no
    coroutine, no task: the floor of any hand-over to a loop; issue 21 asks
    for a p99 no worse than it);
(b) from a task on the grid: ``loopgrid.spawn(stamp)`` from worker 0 of the
    same grid, vs ``loop.create_task(stamp())`` on a uvloop loop;
(c) the cost of one task step (a "context switch" between coroutines:
    ``await asyncio.sleep(0)`` in a loop) on a grid worker, vs the same
    coroutine as a plain ``asyncio.Task`` on a uvloop loop; the target of the
    scheduler documents is under 5 us.

``stamp`` returns ``time.perf_counter()`` when it first runs; latency is that
minus the time just before the spawn. Reported: p50 and p99 over every sample
of every round, and the per-round ratio of medians against the baseline.

Run alone: ``python -m bench.bench_latency [--quick] [--smoke]``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import statistics
import sys
from typing import Any

import loopgrid
from bench._harness import (
    LoopRunner,
    LoopThread,
    compare,
    interleave,
    now,
    uvloop_factory,
)

#: (samples per round, rounds), (tasks x steps per round, rounds)
SIZES: dict[str, dict[str, tuple[int, ...]]] = {
    "full": {"latency": (2_000, 7), "steps": (200, 500, 7)},
    "quick": {"latency": (500, 3), "steps": (100, 200, 3)},
    "smoke": {"latency": (20, 2), "steps": (5, 10, 2)},
}
LATENCY_TARGET_US = 100.0
STEP_TARGET_US = 5.0
#: Most samples per series kept for the CDF plot.
PLOT_SAMPLES = 2_000


async def stamp() -> float:
    return now()


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(q * len(ordered) + 0.5) - 1))]


class _Series:
    """Latencies of one case: per-round medians (for ratios) and every sample."""

    def __init__(self) -> None:
        self.samples: list[float] = []

    def round(self, latencies: list[float]) -> float:
        self.samples += latencies
        return statistics.median(latencies)  # "seconds" for interleave: a median latency


def _from_thread_grid(grid: loopgrid.Grid, n: int, series: _Series) -> float:
    out = []
    for _ in range(n):
        t0 = now()
        out.append(grid.spawn(stamp).result() - t0)
    return series.round(out)


def _from_thread_baseline(lt: LoopThread, n: int, series: _Series) -> float:
    out = []
    for _ in range(n):
        t0 = now()
        out.append(asyncio.run_coroutine_threadsafe(stamp(), lt.loop).result() - t0)
    return series.round(out)


def _stamp_into(fut: concurrent.futures.Future[float]) -> None:
    fut.set_result(now())


def _from_thread_callback(lt: LoopThread, n: int, series: _Series) -> float:
    out = []
    call = lt.loop.call_soon_threadsafe
    for _ in range(n):
        fut: concurrent.futures.Future[float] = concurrent.futures.Future()
        t0 = now()
        call(_stamp_into, fut)
        out.append(fut.result() - t0)
    return series.round(out)


async def _in_loop(n: int, spawn: Any) -> list[float]:
    out = []
    for _ in range(n):
        t0 = now()
        out.append(await spawn(stamp) - t0)
    return out


def _in_grid(grid: loopgrid.Grid, n: int, series: _Series) -> float:
    return series.round(grid.spawn(_in_loop, n, loopgrid.spawn, worker=0).result())


def _in_baseline(runner: LoopRunner, n: int, series: _Series) -> float:
    loop = runner.loop

    def create(fn: Any) -> Any:
        return loop.create_task(fn())

    return series.round(runner.run(_in_loop(n, create)))


async def _stepper(steps: int) -> None:
    for _ in range(steps):
        await asyncio.sleep(0)


async def _steps_round(tasks: int, steps: int, spawn: Any) -> float:
    t0 = now()
    await asyncio.gather(*[spawn(_stepper, steps) for _ in range(tasks)])
    return now() - t0


def _latency_entries(
    label: str, cand: _Series, base: _Series, medians: dict[str, list[float]], base_name: str
) -> list[dict[str, Any]]:
    ratio = compare(
        f"{label}: median spawn-to-start latency",
        medians["loopgrid"],
        medians["baseline"],
        baseline_name=base_name,
        per=1,  # each "round time" is a median latency: reported in microseconds
        kind="time",
        target=None,
        unit="us",
    )
    p99 = _percentile(cand.samples, 0.99) * 1e6
    absolute = {
        "name": f"{label}: p99 spawn-to-start latency (all samples; baseline "
        f"p99 {_percentile(base.samples, 0.99) * 1e6:.0f} us)",
        "unit": "us",
        "value": p99,
        "target": f"<= {LATENCY_TARGET_US:g} us",
        "met": p99 <= LATENCY_TARGET_US,
        "percentiles_us": {
            "loopgrid": {
                "p50": _percentile(cand.samples, 0.5) * 1e6,
                "p99": p99,
            },
            "baseline": {
                "p50": _percentile(base.samples, 0.5) * 1e6,
                "p99": _percentile(base.samples, 0.99) * 1e6,
            },
        },
    }
    return [ratio, absolute]


def _thin(samples: list[float]) -> list[float]:
    """At most PLOT_SAMPLES evenly spaced order statistics, in microseconds."""
    ordered = sorted(samples)
    step = max(1, len(ordered) // PLOT_SAMPLES)
    return [round(x * 1e6, 3) for x in ordered[::step]]


def run(quick: bool, *, smoke: bool = False) -> dict[str, Any]:
    """Measure; return the result dict described in ``bench/run.py``."""
    sizes = SIZES["smoke" if smoke else "quick" if quick else "full"]
    n, rounds = sizes["latency"]
    tasks, steps, step_rounds = sizes["steps"]
    uv_factory, uv_label = uvloop_factory()
    ext = {"loopgrid": _Series(), "baseline": _Series(), "callback": _Series()}
    inner = {"loopgrid": _Series(), "baseline": _Series()}
    with (
        loopgrid.Grid(2, name="bench-latency") as grid,
        LoopThread(uv_factory) as lt,
        LoopRunner(uv_factory) as runner,
    ):
        a = interleave(
            {
                "loopgrid": lambda: _from_thread_grid(grid, n, ext["loopgrid"]),
                "baseline": lambda: _from_thread_baseline(lt, n, ext["baseline"]),
                "callback": lambda: _from_thread_callback(lt, n, ext["callback"]),
            },
            rounds,
        )
        b = interleave(
            {
                "loopgrid": lambda: _in_grid(grid, n, inner["loopgrid"]),
                "baseline": lambda: _in_baseline(runner, n, inner["baseline"]),
            },
            rounds,
        )
        c = interleave(
            {
                "loopgrid": lambda: float(
                    grid.spawn(_steps_round, tasks, steps, loopgrid.spawn, worker=0).result()
                ),
                "baseline": lambda: runner.run(
                    _steps_round(tasks, steps, lambda fn, k: asyncio.ensure_future(fn(k)))
                ),
            },
            step_rounds,
        )
    # Warm-up samples were recorded too; drop them (the first round of each case).
    for series in (*ext.values(), *inner.values()):
        series.samples = series.samples[n:]
    results = _latency_entries(
        "(a) from a plain thread, idle 2-worker grid",
        ext["loopgrid"],
        ext["baseline"],
        a,
        f"run_coroutine_threadsafe onto an idle {uv_label} loop in a thread",
    )
    grid_p99 = _percentile(ext["loopgrid"].samples, 0.99)
    callback_p99 = _percentile(ext["callback"].samples, 0.99)
    results.append(
        {
            "name": "(a) p99 spawn-to-start from a plain thread over the p99 of "
            f"call_soon_threadsafe of a plain callback onto an idle {uv_label} loop "
            f"({callback_p99 * 1e6:.0f} us; median "
            f"{_percentile(ext['callback'].samples, 0.5) * 1e6:.1f} us)",
            "unit": "x",
            "value": grid_p99 / callback_p99,
            "target": "<= 1 (issue 21)",
            "met": grid_p99 <= callback_p99,
        }
    )
    results += _latency_entries(
        "(b) from a task on worker 0 of an idle 2-worker grid",
        inner["loopgrid"],
        inner["baseline"],
        b,
        f"loop.create_task on a {uv_label} loop",
    )
    step = compare(
        f"(c) one task step (await asyncio.sleep(0)), {tasks} tasks x {steps} steps on worker 0",
        c["loopgrid"],
        c["baseline"],
        baseline_name=f"the same as plain asyncio.Tasks on a {uv_label} loop",
        per=tasks * steps,
        kind="time",
        target=None,
        unit="us/step",
    )
    step_abs = {
        "name": "(c) one task step on a grid worker, absolute",
        "unit": "us/step",
        "value": step["value"],
        "target": f"<= {STEP_TARGET_US:g} us",
        "met": step["value"] <= STEP_TARGET_US,
    }
    results += [step, step_abs]
    return {
        "benchmark": "latency",
        "title": "Spawn-to-start latency on an idle grid, and the cost of a task step",
        "params": {
            "samples_per_round": n,
            "rounds": rounds,
            "step_tasks": tasks,
            "steps_per_task": steps,
            "step_rounds": step_rounds,
            "warmup_rounds": 1,
        },
        "results": results,
        "details": {},
        "notes": [
            "Latency = time stamped by the task's first line minus the time just before "
            "the spawn call; one spawn at a time, each awaited before the next.",
            "Ratios compare per-round medians; the p99 rows use every sample of every round.",
        ],
        "plots": [
            {
                "file": "latency_spawn_to_start.png",
                "title": "Spawn-to-start latency on an idle grid (CDF)",
                "kind": "cdf",
                "xlabel": "latency (us, log scale)",
                "ylabel": "share of spawns",
                "log_x": True,
                "series": {
                    "loopgrid: grid.spawn from a thread": _thin(ext["loopgrid"].samples),
                    "run_coroutine_threadsafe": _thin(ext["baseline"].samples),
                    "call_soon_threadsafe (a callback)": _thin(ext["callback"].samples),
                    "loopgrid: spawn from a worker": _thin(inner["loopgrid"].samples),
                    "loop.create_task": _thin(inner["baseline"].samples),
                },
            }
        ],
    }


if __name__ == "__main__":
    import json

    print(json.dumps(run("--quick" in sys.argv, smoke="--smoke" in sys.argv), indent=2))
