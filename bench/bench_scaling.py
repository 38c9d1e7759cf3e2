"""Scaling: GIL-releasing work on 1, 2 and 4 loops, against threads.

Why: work that releases the GIL (hashing, compression, numpy, C I/O) can use
every core from one process, and a grid is one way to give it those cores:
each task hashes 1 MiB with sha256 (which releases the GIL for large inputs)
right inside its coroutine, blocking its own loop but not the others. The same
tasks are run, in the same process and rounds interleaved, by:

* grids of 1, 2 and 4 workers (``grid.spawn`` from the main thread, into the
  injection queue that every worker reads);
* ``concurrent.futures.ThreadPoolExecutor`` with 1, 2 and 4 threads (``map``);
* ``asyncio.to_thread`` from one uvloop loop (its default executor).

Reported: tasks per second for each, each grid's speedup over the 1-worker
grid, and each grid against the thread pool of the same size. This machine has
2 cores: expect about 2x at 2 loops and nothing more at 4.

Run alone: ``python -m bench.bench_scaling [--quick] [--smoke]``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import os
import sys
from typing import Any

import loopgrid
from bench._harness import LoopRunner, compare, interleave, now, uvloop_factory

#: (tasks per round, rounds)
SIZES = {"full": (800, 5), "quick": (200, 3), "smoke": (8, 2)}
SIZES_LOOPS = (1, 2, 4)
BLOCK = 1 << 20
DATA = os.urandom(BLOCK)


async def hash_block(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _digest(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _grid_round(grid: loopgrid.Grid, n: int) -> float:
    t0 = now()
    hs = [grid.spawn(hash_block, DATA) for _ in range(n)]
    for h in hs:
        h.result()
    return now() - t0


def _pool_round(pool: concurrent.futures.ThreadPoolExecutor, n: int) -> float:
    t0 = now()
    for _ in pool.map(_digest, [DATA] * n):
        pass
    return now() - t0


async def _to_thread_round(n: int) -> float:
    t0 = now()
    await asyncio.gather(*[asyncio.to_thread(_digest, DATA) for _ in range(n)])
    return now() - t0


def run(quick: bool, *, smoke: bool = False) -> dict[str, Any]:
    """Measure; return the result dict described in ``bench/run.py``."""
    n, rounds = SIZES["smoke" if smoke else "quick" if quick else "full"]
    uv_factory, uv_label = uvloop_factory()
    grids = {k: loopgrid.Grid(k, name=f"bench-scaling-{k}") for k in SIZES_LOOPS}
    pools = {k: concurrent.futures.ThreadPoolExecutor(k) for k in SIZES_LOOPS}
    try:
        with LoopRunner(uv_factory) as runner:
            cases: dict[str, Any] = {}
            for k in SIZES_LOOPS:
                cases[f"grid{k}"] = lambda k=k: _grid_round(grids[k], n)
                cases[f"pool{k}"] = lambda k=k: _pool_round(pools[k], n)
            cases["to_thread"] = lambda: runner.run(_to_thread_round(n))
            samples = interleave(cases, rounds)
    finally:
        for g in grids.values():
            g.close()
        for p in pools.values():
            p.shutdown()
    results = []
    for k in SIZES_LOOPS[1:]:
        e = compare(
            f"grid of {k} workers vs 1 worker: throughput",
            samples[f"grid{k}"],
            samples["grid1"],
            baseline_name="the same tasks on a 1-worker grid",
            per=n,
            kind="rate",
            target=None,
            candidate_name=f"{k} workers",
            unit="tasks/s",
        )
        results.append(e)
    for k in SIZES_LOOPS:
        e = compare(
            f"grid of {k} workers vs ThreadPoolExecutor({k}): throughput",
            samples[f"grid{k}"],
            samples[f"pool{k}"],
            baseline_name=f"ThreadPoolExecutor({k}).map",
            per=n,
            kind="rate",
            target=None,
            candidate_name=f"grid of {k}",
            unit="tasks/s",
        )
        results.append(e)
    e = compare(
        "grid of 2 workers vs asyncio.to_thread: throughput",
        samples["grid2"],
        samples["to_thread"],
        baseline_name=f"asyncio.to_thread from one {uv_label} loop (default executor)",
        per=n,
        kind="rate",
        target=None,
        candidate_name="grid of 2",
        unit="tasks/s",
    )
    results.append(e)

    def rate(name: str) -> float:
        times = sorted(samples[name])
        return n / times[len(times) // 2]

    return {
        "benchmark": "scaling",
        "title": "GIL-releasing work (sha256 of 1 MiB) on 1, 2 and 4 loops vs threads",
        "params": {"tasks": n, "rounds": rounds, "block_bytes": BLOCK, "cpus": os.cpu_count()},
        "results": results,
        "details": {"tasks_per_second": {name: rate(name) for name in samples}},
        "notes": [
            f"This machine has {os.cpu_count()} CPUs: no executor can go past that.",
            "Each grid task blocks its own loop while it hashes (sha256 releases the GIL), "
            "so a worker runs one hash at a time, like one thread of a pool.",
        ],
        "plots": [
            {
                "file": "scaling_gil_releasing.png",
                "title": "sha256 of 1 MiB blocks: throughput by loops / threads",
                "kind": "lines",
                "xlabel": "loops (grid) or threads (pool)",
                "ylabel": "tasks per second",
                "series": {
                    "loopgrid grid": [[k, rate(f"grid{k}")] for k in SIZES_LOOPS],
                    "ThreadPoolExecutor": [[k, rate(f"pool{k}")] for k in SIZES_LOOPS],
                    "asyncio.to_thread (default executor)": [
                        [k, rate("to_thread")] for k in SIZES_LOOPS
                    ],
                },
            }
        ],
    }


if __name__ == "__main__":
    import json

    print(json.dumps(run("--quick" in sys.argv, smoke="--smoke" in sys.argv), indent=2))
