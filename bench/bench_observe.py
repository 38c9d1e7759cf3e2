"""What observability costs: the monitor's metrics, and opt-in step timing.

Why: issue 5 asks for metrics "cheap enough to stay on by default", under 5%
on the spawn benchmark. The metrics cost the workers almost nothing by design
(the monitor thread probes lag with one ``call_soon_threadsafe`` per worker per
tick and samples busy time from ``sys._current_frames()``; see
``loopgrid/monitor.py``), but the monitor thread takes the GIL 20 times a
second, and the hot paths carry a flag test each for step timing and tracing.
Measured in the same process, rounds interleaved:

(a) spawn + await of trivial tasks (``bench_spawn``'s round) on a grid with
    its monitor working, against the same grid with the monitor's per-tick look
    patched to do nothing (no probes, no samples, no stall checks). The flag
    tests stay in both (they cannot be patched out without copying the hot
    path); by callgrind they are a few instructions per spawn. Target: <= 1.05.
(b) task steps with ``task_timing`` on against off (opt-in, so no target): what
    a user pays per step for per-task step counts and times;
(c) the GIL fairness timer (``loopgrid/fairness.py``, on in every grid of two
    or more workers on a GIL build): CPU-bound task steps on a 2-worker grid,
    which keep both loops busy (so the timer gives the GIL away every 5 ms),
    against a grid made without the timer. Expected: about 2% (100 us per 5 ms).

Run alone: ``python -m bench.bench_observe [--quick] [--smoke]``.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import loopgrid
from bench._harness import Target, compare, interleave, now
from bench.bench_control import patched, stepper
from bench.bench_spawn import grid_round
from loopgrid import monitor
from loopgrid import worker as worker_module

#: (spawned tasks, rounds), (tasks, steps per task, rounds)
SIZES: dict[str, dict[str, tuple[int, ...]]] = {
    "full": {"spawn": (50_000, 21), "steps": (2_000, 50, 11)},
    "quick": {"spawn": (20_000, 7), "steps": (500, 20, 5)},
    "smoke": {"spawn": (300, 2), "steps": (20, 3, 2)},
}
METRICS_TARGET = Target("<=", 1.05)


def _spawn_round(grid: loopgrid.Grid, n: int) -> float:
    return float(grid.spawn(grid_round, n).result())


def _silent_look(self: monitor.Monitor, now: float) -> None:
    """``Monitor._look`` doing nothing: the baseline of (a)."""


def _steps_round(grid: loopgrid.Grid, tasks: int, steps: int, timed: bool) -> float:
    for w in grid.workers:
        w._set_timing(timed)

    async def main() -> float:
        t0 = now()
        await asyncio.gather(*[loopgrid.spawn(stepper, steps) for _ in range(tasks)])
        return now() - t0

    return float(grid.spawn(main).result())


async def _cpu_steps(steps: int) -> None:
    for _ in range(steps):
        sum(range(200))  # a few microseconds of pure Python per step
        await asyncio.sleep(0)


def _busy_round(grid: loopgrid.Grid, tasks: int, steps: int) -> float:
    async def main() -> float:
        t0 = now()
        await asyncio.gather(*[loopgrid.spawn(_cpu_steps, steps) for _ in range(tasks)])
        return now() - t0

    return float(grid.spawn(main).result())


def run(quick: bool, *, smoke: bool = False) -> dict[str, Any]:
    """Measure; return the result dict described in ``bench/run.py``."""
    sizes = SIZES["smoke" if smoke else "quick" if quick else "full"]
    n_spawn, spawn_rounds = sizes["spawn"]
    tasks, steps, step_rounds = sizes["steps"]

    def silenced(fn: Any, *args: Any) -> float:
        with patched(monitor.Monitor, "_look", _silent_look):
            return float(fn(*args))

    with loopgrid.Grid(2, name="bench-observe") as grid:
        sp = interleave(
            {
                "metrics": lambda: _spawn_round(grid, n_spawn),
                "silent": lambda: silenced(_spawn_round, grid, n_spawn),
            },
            spawn_rounds,
        )
        st = interleave(
            {
                "timed": lambda: _steps_round(grid, tasks, steps, True),
                "untimed": lambda: _steps_round(grid, tasks, steps, False),
            },
            step_rounds,
        )
        stats = grid.stats()
        old_needed = worker_module.fairness_needed
        worker_module.fairness_needed = lambda workers: False
        try:
            unfair = loopgrid.Grid(2, name="bench-observe-unfair")
        finally:
            worker_module.fairness_needed = old_needed
        with unfair:
            fair = interleave(
                {
                    "fair": lambda: _busy_round(grid, tasks, steps),
                    "unfair": lambda: _busy_round(unfair, tasks, steps),
                },
                step_rounds,
            )
        yields = sum(w["gil_yields"] for w in grid.stats()["workers"])
    spawn_entry = compare(
        f"(a) spawn + await, {n_spawn:,} trivial tasks from a task on a 2-worker grid: "
        "time per task",
        sp["metrics"],
        sp["silent"],
        baseline_name="the same grid with the monitor's per-tick look patched out "
        "(no lag probes, busy samples or stall checks)",
        per=n_spawn,
        kind="time",
        target=METRICS_TARGET,
        candidate_name="with metrics",
        unit="us/task",
    )
    steps_entry = compare(
        f"(b) task steps, {tasks:,} tasks x {steps} sleep(0) on a 2-worker grid: time per step",
        st["timed"],
        st["untimed"],
        baseline_name="the same with task_timing off (the default)",
        per=tasks * steps,
        kind="time",
        target=None,
        candidate_name="with task_timing",
        unit="us/step",
    )
    fair_entry = compare(
        f"(c) CPU-bound steps, {tasks:,} tasks x {steps} steps on a 2-worker grid: time per step",
        fair["fair"],
        fair["unfair"],
        baseline_name="the same on a grid without the GIL fairness timer",
        per=tasks * steps,
        kind="time",
        target=None,
        candidate_name="with the fairness timer",
        unit="us/step",
    )
    return {
        "benchmark": "observe",
        "title": "Cost of the monitor's metrics (on by default) and of step timing (opt-in)",
        "params": {
            "spawn_tasks": n_spawn,
            "spawn_rounds": spawn_rounds,
            "step_tasks": tasks,
            "steps_per_task": steps,
            "step_rounds": step_rounds,
            "monitor_tick_s": grid._monitor.tick,
            "warmup_rounds": 1,
        },
        "results": [spawn_entry, steps_entry, fair_entry],
        "details": {
            "grid_completed": stats["totals"]["completed"],
            "lag_p99_s": stats["totals"]["lag_p99"],
            "stalls": stats["totals"]["stalls"],
            "gil_yields_of_the_grid": yields,
        },
        "notes": [
            "All ratios are candidate time / baseline time in the same process, rounds "
            "interleaved (lower is better); the baselines switch the feature off.",
            "Stalls seen during the run are the benchmark's own long rounds holding a "
            "loop past the 100 ms threshold; they are logged like any other.",
        ],
    }


if __name__ == "__main__":
    import json

    print(json.dumps(run("--quick" in sys.argv, smoke="--smoke" in sys.argv), indent=2))
