"""Work stealing: CPU work that releases the GIL, spawned on worker 0 of a 2-worker grid.

Why: all tasks are spawned from a task running on worker 0, so they land in
worker 0's queues; worker 1 gets work only by stealing it (or through the
injection queue, where worker 0's local queue spills past LOCAL_CAPACITY). Each
task hashes 1 MiB with sha256, which releases the GIL, so two workers can really
run in parallel. Success is a balanced split (completed counts per worker, from
``grid.stats()``) and a wall time close to half of a 1-worker grid's.

Context figures: two plain threads splitting the same hashes (the parallel
ceiling of this machine at this moment: on a noisy 2-core box it is often well
below 2x), and ``asyncio.to_thread`` on a uvloop loop.

Run alone: ``python -m bench.bench_steal [--quick] [--smoke]``.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import os
import statistics
import sys
import threading
import time
from typing import Any

import loopgrid
from bench._harness import LoopRunner, Target, compare, interleave, now, summary, uvloop_factory

#: (tasks per round, measured rounds) for full, quick and smoke runs.
SIZES = {"full": (2_000, 5), "quick": (300, 3), "smoke": (16, 2)}
BLOCK = 1 << 20
SPEEDUP_TARGET = Target(">=", 1.8)
BALANCE_TARGET = 0.10
DATA = os.urandom(BLOCK)


async def hash_block(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


async def producer(n: int) -> tuple[float, list[int | None]]:
    """Spawn ``n`` hashing tasks from this worker and await them; (seconds, workers)."""
    t0 = now()
    hs = [loopgrid.spawn(hash_block, DATA) for _ in range(n)]
    await asyncio.gather(*hs)
    return now() - t0, [h.worker for h in hs]


def _counters(grid: loopgrid.Grid) -> tuple[list[int], list[int]]:
    ws = grid.stats()["workers"]
    return [w["completed"] for w in ws], [w["stolen_in"] for w in ws]


class GridCase:
    """One grid kept across rounds; each round records per-worker deltas from stats()."""

    def __init__(self, loops: int, n: int) -> None:
        self.grid = loopgrid.Grid(loops, name=f"bench-steal-{loops}")
        self.n = n
        self.completed: list[list[int]] = []
        self.stolen: list[int] = []
        self.stats_match_handles: list[bool] = []

    def __call__(self) -> float:
        grid, n = self.grid, self.n
        done0, stolen0 = _counters(grid)
        seconds, where = grid.spawn(producer, n, worker=0).result()
        # A worker counts a task completed just after resolving its handle, so
        # the last increments can trail gather(): wait for all n + the producer.
        deadline = time.monotonic() + 5.0
        while True:
            done1, stolen1 = _counters(grid)
            delta = [b - a for a, b in zip(done0, done1, strict=True)]
            if sum(delta) >= n + 1 or time.monotonic() > deadline:
                break
            time.sleep(0.001)
        delta[0] -= 1  # the producer itself, pinned to worker 0
        self.completed.append(delta)
        self.stolen.append(sum(stolen1) - sum(stolen0))
        by_handle = collections.Counter(where)
        self.stats_match_handles.append(delta == [by_handle[i] for i in range(len(delta))])
        return seconds

    def close(self) -> None:
        self.grid.close()


def threads_case(nthreads: int, n: int) -> float:
    """Hash ``n`` blocks split over ``nthreads`` plain threads (1: the calling thread)."""

    def work(k: int) -> None:
        for _ in range(k):
            hashlib.sha256(DATA).digest()

    t0 = now()
    if nthreads == 1:
        work(n)
    else:
        shares = [n // nthreads + (i < n % nthreads) for i in range(nthreads)]
        ts = [threading.Thread(target=work, args=(k,)) for k in shares]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
    return now() - t0


async def to_thread_round(n: int) -> float:
    t0 = now()
    await asyncio.gather(*[asyncio.to_thread(hashlib.sha256, DATA) for _ in range(n)])
    return now() - t0


def _imbalance(counts: list[int]) -> float:
    """(max - min) / max of per-worker completed counts: 0 is a perfect split."""
    return (max(counts) - min(counts)) / max(counts) if max(counts) else 1.0


def run(quick: bool, *, smoke: bool = False) -> dict[str, Any]:
    """Measure; return the result dict described in ``bench/run.py``."""
    n, rounds = SIZES["smoke" if smoke else "quick" if quick else "full"]
    uv_factory, uv_label = uvloop_factory()
    two = GridCase(2, n)
    try:
        one = GridCase(1, n)
        try:
            with LoopRunner(uv_factory) as runner:
                samples = interleave(
                    {
                        "grid2": two,
                        "grid1": one,
                        "threads2": lambda: threads_case(2, n),
                        "threads1": lambda: threads_case(1, n),
                        "to_thread": lambda: runner.run(to_thread_round(n)),
                    },
                    rounds,
                )
        finally:
            one.close()
    finally:
        two.close()
    warm = len(two.completed) - rounds
    completed = two.completed[warm:]
    imbalance = [_imbalance(c) for c in completed]
    speedup = compare(
        "2 workers vs 1 worker: wall time",
        samples["grid2"],
        samples["grid1"],
        baseline_name="the same on a 1-worker grid",
        per=n,
        kind="rate",
        target=SPEEDUP_TARGET,
        candidate_name="2-worker grid",
        unit="tasks/s",
    )
    ceiling = compare(
        "parallel ceiling of this machine: 2 plain threads vs 1 (context)",
        samples["threads2"],
        samples["threads1"],
        baseline_name="1 plain thread, same hashes",
        per=n,
        kind="rate",
        target=None,
        candidate_name="2 plain threads",
        unit="hashes/s",
    )
    to_thread = compare(
        "2-worker grid vs asyncio.to_thread (context)",
        samples["grid2"],
        samples["to_thread"],
        baseline_name=f"gather of asyncio.to_thread(sha256), {uv_label}, default executor",
        per=n,
        kind="rate",
        target=None,
        candidate_name="2-worker grid",
        unit="tasks/s",
    )
    worst = max(imbalance)
    balance = {
        "name": "balance: completed per worker, (max - min) / max",
        "unit": "fraction",
        "value": statistics.median(imbalance),
        "values": summary(imbalance),
        "target": f"median <= {BALANCE_TARGET:g}",
        "met": statistics.median(imbalance) <= BALANCE_TARGET,
        "worst_round_met": worst <= BALANCE_TARGET,
        "completed_per_round": completed,
    }
    return {
        "benchmark": "steal",
        "title": f"{n:,} sha256 tasks of 1 MiB spawned from worker 0 of a 2-worker grid",
        "params": {
            "tasks": n,
            "block_bytes": BLOCK,
            "rounds": rounds,
            "warmup_rounds": warm,
            "code": "on worker 0: hs = [loopgrid.spawn(hash_block, DATA) for _ in range(N)]; "
            "await asyncio.gather(*hs)",
        },
        "results": [speedup, balance, ceiling, to_thread],
        "details": {
            "stolen_per_round": two.stolen[warm:],
            "stats_match_handle_workers": all(two.stats_match_handles),
            "wall_seconds": {k: summary(v) for k, v in samples.items()},
        },
        "notes": [
            "Speedup ratio = 2-worker rate / 1-worker rate, per round (higher is better).",
            "Balance is judged on the median round; worst_round_met says whether every "
            "round was within the bound.",
            "stolen_per_round counts tasks moved by stealing; the rest of worker 1's share "
            "came through the injection queue (worker 0's local queue spills there).",
            "Compare the speedup with the 2-thread ceiling: a noisy machine caps both.",
        ],
    }


if __name__ == "__main__":
    import json

    print(json.dumps(run("--quick" in sys.argv, smoke="--smoke" in sys.argv), indent=2))
