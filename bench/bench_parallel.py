"""Pure-Python coroutines on 1 and 2 loops: parallel only without a GIL.

Why: on a free-threaded CPython (3.13t and later, run with ``PYTHON_GIL=0``)
the loops of a grid run Python code truly in parallel, which no single-loop
server or executor of Python code can do in one process; with the GIL they
take turns, and two loops do the same work as one. Each task here computes in
pure Python (a sum of squares, about a millisecond) between awaits, so the
grid's own bookkeeping is part of what is measured; tasks are spawned from the
main thread into the injection queue, which both workers read.

Reported: the 2-worker grid's throughput against the 1-worker grid's, rounds
interleaved. Target (issue 9), on a free-threaded build with the GIL off: at
least 1.8x. On a GIL build it is context: about 1x is the expected figure.

Run alone: ``python -m bench.bench_parallel [--quick] [--smoke]``; on the
free-threaded build: ``PYTHON_GIL=0 python3 scripts/dev.py --python
"$(scripts/install-free-threaded-python.sh)" --extra test python -m bench.bench_parallel``
(``bench/run.py --only parallel`` needs matplotlib, which may lack wheels there).
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import loopgrid
from bench._harness import Target, compare, interleave, now

#: (tasks per round, inner loop size per step, steps per task, rounds)
SIZES = {"full": (400, 20_000, 4, 7), "quick": (120, 20_000, 4, 3), "smoke": (8, 2_000, 2, 2)}
TARGET = Target(">=", 1.8)


async def compute(n: int, steps: int) -> int:
    total = 0
    for _ in range(steps):
        total += sum(i * i for i in range(n))
        await asyncio.sleep(0)
    return total


def _round(grid: loopgrid.Grid, tasks: int, n: int, steps: int) -> float:
    t0 = now()
    hs = [grid.spawn(compute, n, steps) for _ in range(tasks)]
    for h in hs:
        h.result()
    return now() - t0


def gil_enabled() -> bool:
    return bool(getattr(sys, "_is_gil_enabled", lambda: True)())


def run(quick: bool, *, smoke: bool = False) -> dict[str, Any]:
    """Measure; return the result dict described in ``bench/run.py``."""
    tasks, n, steps, rounds = SIZES["smoke" if smoke else "quick" if quick else "full"]
    gil = gil_enabled()
    with (
        loopgrid.Grid(1, name="bench-parallel-1") as one,
        loopgrid.Grid(2, name="bench-parallel-2") as two,
    ):
        samples = interleave(
            {
                "two": lambda: _round(two, tasks, n, steps),
                "one": lambda: _round(one, tasks, n, steps),
            },
            rounds,
        )
        loop_type = type(one.workers[0].loop)
    build = "GIL build" if gil else "free-threaded build, GIL off"
    entry = compare(
        f"pure-Python coroutines ({tasks} tasks x {steps} steps), 2 workers vs 1 ({build}): "
        "throughput",
        samples["two"],
        samples["one"],
        baseline_name="the same tasks on a 1-worker grid",
        per=tasks,
        kind="rate",
        target=None if gil else TARGET,
        candidate_name="2 workers",
        unit="tasks/s",
    )
    return {
        "benchmark": "parallel",
        "title": f"Pure-Python coroutines on 1 and 2 loops ({build})",
        "params": {
            "tasks": tasks,
            "inner_loop": n,
            "steps": steps,
            "rounds": rounds,
            "gil_enabled": gil,
            "loop": f"{loop_type.__module__}.{loop_type.__name__}",
        },
        "results": [entry],
        "details": {},
        "notes": [
            "With the GIL, two loops take turns on one interpreter lock: about 1x.",
            "Without it (PYTHON_GIL=0 on a free-threaded build), both run Python at once.",
        ],
    }


if __name__ == "__main__":
    import json

    print(json.dumps(run("--quick" in sys.argv, smoke="--smoke" in sys.argv), indent=2))
