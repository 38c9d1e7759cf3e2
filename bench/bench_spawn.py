"""Spawn-and-await cost: ``loopgrid.spawn`` + ``gather`` against ``create_task`` + ``gather``.

Why: spawn is the hot path of every program on a grid. On a 1-worker grid
nothing is stolen and nothing crosses threads, so what this isolates is the
bookkeeping loopgrid adds to an asyncio task (the Handle, the run queue, the
dispatcher, callbacks that could cross loops). The baseline runs the same code
with plain asyncio tasks on the same loop type (uvloop), and for context on
asyncio's own loop. Grid and loops stay alive across rounds, so start-up is not
measured; each round is timed inside the loop, so the hand-off to it is not
either.

Run alone: ``python -m bench.bench_spawn [--quick] [--smoke]``.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import loopgrid
from bench._harness import LoopRunner, Target, compare, interleave, now, uvloop_factory

#: (tasks per round, measured rounds) for full, quick and smoke runs.
SIZES = {"full": (100_000, 9), "quick": (20_000, 4), "smoke": (300, 2)}
TARGET = Target("<=", 1.5)


async def triv(i: int) -> int:
    return i


async def grid_round(n: int) -> float:
    """Spawn ``n`` trivial tasks on the current grid and await them all."""
    t0 = now()
    hs = [loopgrid.spawn(triv, i) for i in range(n)]
    await asyncio.gather(*hs)
    return now() - t0


async def asyncio_round(n: int) -> float:
    """The same with asyncio tasks on the current loop."""
    t0 = now()
    ts = [asyncio.create_task(triv(i)) for i in range(n)]
    await asyncio.gather(*ts)
    return now() - t0


def run(quick: bool, *, smoke: bool = False) -> dict[str, Any]:
    """Measure; return the result dict described in ``bench/run.py``."""
    n, rounds = SIZES["smoke" if smoke else "quick" if quick else "full"]
    uv_factory, uv_label = uvloop_factory()
    with (
        loopgrid.Runner(loops=1) as grid_runner,
        LoopRunner(uv_factory) as uv_runner,
        LoopRunner(asyncio.new_event_loop) as aio_runner,
    ):
        grid_loop = type(grid_runner.get_grid().workers[0].loop)
        samples = interleave(
            {
                "loopgrid": lambda: grid_runner.run(grid_round(n)),
                "uvloop": lambda: uv_runner.run(asyncio_round(n)),
                "asyncio": lambda: aio_runner.run(asyncio_round(n)),
            },
            rounds,
        )
        stats = grid_runner.get_grid().stats()
    aio_loop = type(aio_runner.loop)
    results = [
        compare(
            "spawn+await, cost per task vs create_task on the same loop type",
            samples["loopgrid"],
            samples["uvloop"],
            baseline_name=f"create_task + gather, {uv_label}",
            per=n,
            kind="time",
            target=TARGET,
            unit="us/task",
        ),
        compare(
            "spawn+await, cost per task vs create_task on asyncio's loop (context)",
            samples["loopgrid"],
            samples["asyncio"],
            baseline_name=f"create_task + gather, {aio_loop.__module__}.{aio_loop.__name__}",
            per=n,
            kind="time",
            target=None,
            unit="us/task",
        ),
    ]
    return {
        "benchmark": "spawn",
        "title": f"Spawn and await {n:,} trivial tasks on a 1-worker grid",
        "params": {
            "tasks": n,
            "rounds": rounds,
            "warmup_rounds": 1,
            "grid_loop": f"{grid_loop.__module__}.{grid_loop.__name__}",
            "code": "hs = [loopgrid.spawn(triv, i) for i in range(N)]; await asyncio.gather(*hs)",
            "baseline_code": "ts = [asyncio.create_task(triv(i)) for i in range(N)]; "
            "await asyncio.gather(*ts)",
        },
        "results": results,
        "details": {"grid_totals": stats["totals"]},
        "notes": [
            "Timed inside the loop from the first spawn to gather's return; "
            "gc.collect() before every round, GC enabled during it.",
            "Rounds interleaved in rotating order; the ratio is taken per round, "
            "then its median reported with min/max.",
        ],
    }


if __name__ == "__main__":
    import json

    print(json.dumps(run("--quick" in sys.argv, smoke="--smoke" in sys.argv), indent=2))
