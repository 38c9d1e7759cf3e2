"""Cost as loops grow: spawn throughput and a cross-loop round trip on 1 to 32 loops.

Why (issue 21, deliverables 5 and 8): Tokio and Go keep the cost of a spawn
flat as workers are added; on a 16-core machine loopgrid's external spawns fell
from 176k/s on 1 loop to about 100k/s on 2-16 (3.12), and to half on 3.13t.
This measures, on grids of each size kept alive across rounds and interleaved
round by round (so that a noisy machine drifts alike for all of them):

* *external spawn*: a plain thread spawns N trivial tasks and waits for the
  last (tasks/s);
* *local spawn*: a task on worker 0 spawns N trivial tasks and gathers them;
* *round trip*: a foreign asyncio loop awaits one trivial grid task at a time
  (seconds per call).

Each figure is a ratio to the 1-loop grid's in the same round; the target is
at least 0.9x at 16 loops for both spawns (a flat cost). On a machine with 2
cores, more loops also means more threads taking turns on the GIL and the
cores: the ratio then shows what the scheduler adds on top of that.

Run alone: ``python -m bench.bench_loops [--quick] [--smoke]``.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import threading
from typing import Any

import loopgrid
from bench._harness import LoopThread, Target, interleave, now, summary, uvloop_factory

#: (loop counts, tasks per spawn round, calls per round trip round, rounds).
SIZES = {
    "full": ((1, 2, 4, 8, 16, 32), 20_000, 2_000, 5),
    "quick": ((1, 4, 16), 5_000, 500, 3),
    "smoke": ((1, 2), 200, 20, 1),
}
FLAT_TARGET = Target(">=", 0.9)


async def noop() -> None:
    return None


async def local_spawns(n: int) -> float:
    t0 = now()
    await asyncio.gather(*[loopgrid.spawn(noop) for _ in range(n)])
    return now() - t0


class Case:
    """A grid of ``loops`` kept across rounds, and the three measures on it."""

    def __init__(self, loops: int, n: int, calls: int, foreign: LoopThread) -> None:
        self.grid = loopgrid.Grid(loops, name=f"bench-loops-{loops}")
        self.n = n
        self.calls = calls
        self.foreign = foreign

    def external(self) -> float:
        spawn = self.grid.spawn
        t0 = now()
        hs = [spawn(noop) for _ in range(self.n)]
        for h in hs:
            h.result()
        return now() - t0

    def local(self) -> float:
        return float(self.grid.spawn(local_spawns, self.n, worker=0).result())

    def round_trip(self) -> float:
        async def calls() -> float:
            spawn = self.grid.spawn
            t0 = now()
            for _ in range(self.calls):
                await spawn(noop)
            return now() - t0

        return asyncio.run_coroutine_threadsafe(calls(), self.foreign.loop).result()

    def close(self) -> None:
        self.grid.close()


def run(quick: bool, *, smoke: bool = False) -> dict[str, Any]:
    """Measure; return the result dict described in ``bench/run.py``."""
    sizes, n, calls, rounds = SIZES["smoke" if smoke else "quick" if quick else "full"]
    factory, label = uvloop_factory()
    results: list[dict[str, Any]] = []
    details: dict[str, Any] = {}
    with LoopThread(factory, name="bench-loops-foreign") as foreign:
        cases = {k: Case(k, n, calls, foreign) for k in sizes}
        try:
            measures: dict[str, Any] = {}
            for k, c in cases.items():
                measures[f"external {k}"] = c.external
                measures[f"local {k}"] = c.local
                measures[f"round trip {k}"] = c.round_trip
            samples = interleave(measures, rounds)
        finally:
            for c in cases.values():
                c.close()
    plot: dict[str, list[list[float]]] = {"external spawn": [], "local spawn": [], "round trip": []}
    for what, per, series, rate in (
        ("external", n, "external spawn", True),
        ("local", n, "local spawn", True),
        ("round trip", calls, "round trip", False),
    ):
        base = samples[f"{what} 1"]
        for k in sizes:
            got = samples[f"{what} {k}"]
            # Speed relative to 1 loop, round by round: higher is better for
            # all three (a round trip's time ratio is inverted).
            ratios = [b / g for g, b in zip(got, base, strict=True)]
            med = statistics.median(ratios)
            plot[series].append([k, med])
            details[f"{what} {k}"] = got
            if k == 1:
                continue
            unit = "tasks/s" if rate else "us/call"
            value = statistics.median(
                [per / s for s in got] if rate else [s / per * 1e6 for s in got]
            )
            flat = rate and k == 16
            results.append(
                {
                    "name": f"{what} at {k} loops vs 1 loop ({'speed' if rate else 'calls/s'})",
                    "unit": unit,
                    "value": value,
                    "values": summary(ratios),
                    "target": f"median {FLAT_TARGET}" if flat else None,
                    "met": FLAT_TARGET.met(med) if flat else None,
                }
            )
    return {
        "benchmark": "loops",
        "title": "Cost as loops grow: spawns and a cross-loop round trip on 1 to "
        f"{max(sizes)} loops",
        "params": {
            "loops": list(sizes),
            "tasks_per_spawn_round": n,
            "calls_per_round_trip_round": calls,
            "rounds": rounds,
            "foreign_loop": label,
            "python": sys.version.split()[0],
            "threads_at_start": threading.active_count(),
        },
        "results": results,
        "details": details,
        "notes": [
            "values: each round's speed on k loops over the 1-loop grid's in the same round "
            "(1.0: as fast as on 1 loop); value: the figure itself (tasks/s, or us per call).",
        ],
        "plots": [
            {
                "file": "loops_scaling.png",
                "title": "Speed on k loops relative to 1 loop (median of rounds)",
                "kind": "lines",
                "xlabel": "loops",
                "ylabel": "speed vs 1 loop (higher is better)",
                "series": plot,
                "log_x": True,
            }
        ],
    }


if __name__ == "__main__":
    import json

    print(json.dumps(run("--quick" in sys.argv, smoke="--smoke" in sys.argv), indent=2))
