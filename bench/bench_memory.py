"""A million pending tasks: memory per task, and the time to drain them.

Why: a scheduler that holds its backlog as pending *records* rather than as
coroutines can keep far more work queued (the scheduler documents ask for more
than 10,000 concurrent coroutines; issue 8 sets at most 1.2 KiB per pending
task). A pending loopgrid task is a ``Handle`` (the function, its arguments, a
copy of the spawner's context, its priority and id) in a run queue; its
coroutine is only created when a worker starts it. A pending asyncio task is a
``Task`` plus a coroutine object with its frame, made at ``create_task``.

Measured, in the same process:

(a) memory per pending task: the Python heap growth (``tracemalloc``) while
    N tasks are spawned onto a paused 1-worker grid, against N
    ``loop.create_task`` calls on a uvloop loop that is not running; the
    resident set size (RSS) growth is given beside it;
(b) time to queue and drain: N tasks spawned onto the paused grid, which then
    resumes and runs them all, against N ``create_task`` calls and the loop
    running them; per task, rounds interleaved. (Draining alone would compare
    loopgrid creating each coroutine and Task as it starts it with asyncio
    stepping Tasks it created in advance.)

Run alone: ``python -m bench.bench_memory [--quick] [--smoke]``.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import os
import sys
import threading
import tracemalloc
from typing import Any

import loopgrid
from bench._harness import compare, interleave, now, uvloop_factory

#: (pending tasks, drain rounds)
SIZES = {"full": (1_000_000, 3), "quick": (200_000, 3), "smoke": (2_000, 2)}
MEMORY_TARGET = 1.2 * 1024  # bytes per pending task


class _Finish:
    """Counts finished tasks; the last one sets an event (thread-safe: ``next`` is atomic)."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.count = itertools.count(1)
        self.done = threading.Event()


async def work(fin: _Finish) -> None:
    if next(fin.count) == fin.n:
        fin.done.set()


def _rss() -> int:
    with open("/proc/self/statm", encoding="ascii") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _measure(make: Any, traced: bool) -> float:
    """Bytes that ``make()`` adds while what it returns is held: the Python heap
    traced by tracemalloc (``traced``), or else the resident set size, measured
    in a pass of its own since tracemalloc's records would inflate it."""
    gc.collect()
    if not traced:
        rss0 = _rss()
        held = make()
        grown = _rss() - rss0
        del held
        return float(grown)
    tracemalloc.start()
    try:
        t0 = tracemalloc.get_traced_memory()[0]
        held = make()
        t1 = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    del held
    return float(t1 - t0)


def _grid_pending(grid: loopgrid.Grid, fin: _Finish) -> list[Any]:
    grid.pause()
    return [grid.spawn(work, fin) for _ in range(fin.n)]


def _grid_round(grid: loopgrid.Grid, n: int) -> float:
    fin = _Finish(n)
    t0 = now()
    hs = _grid_pending(grid, fin)
    grid.resume()
    fin.done.wait()
    dt = now() - t0
    del hs
    return dt


def _asyncio_pending(loop: asyncio.AbstractEventLoop, fin: _Finish) -> list[Any]:
    return [loop.create_task(work(fin)) for _ in range(fin.n)]


def _asyncio_round(loop: asyncio.AbstractEventLoop, n: int) -> float:
    fin = _Finish(n)

    async def until_done() -> None:
        while not fin.done.is_set():
            await asyncio.sleep(0)

    t0 = now()
    tasks = _asyncio_pending(loop, fin)
    loop.run_until_complete(until_done())
    dt = now() - t0
    del tasks
    return dt


def run(quick: bool, *, smoke: bool = False) -> dict[str, Any]:
    """Measure; return the result dict described in ``bench/run.py``."""
    n, rounds = SIZES["smoke" if smoke else "quick" if quick else "full"]
    uv_factory, uv_label = uvloop_factory()
    loop = uv_factory()
    mem: dict[str, float] = {}
    try:
        for traced in (False, True):
            key = "traced" if traced else "rss"
            with loopgrid.Grid(1, name="bench-memory") as grid:
                mem[f"loopgrid_{key}"] = _measure(
                    lambda g=grid: _grid_pending(g, _Finish(n)), traced
                )
                grid.close(cancel=True)  # drop the measured tasks: never resumed
            mem[f"asyncio_{key}"] = _measure(lambda: _asyncio_pending(loop, _Finish(n)), traced)
            for t in asyncio.all_tasks(loop):
                t.cancel()
            loop.run_until_complete(asyncio.sleep(0))
        with loopgrid.Grid(1, name="bench-drain") as grid:
            drain = interleave(
                {
                    "loopgrid": lambda: _grid_round(grid, n),
                    "asyncio": lambda: _asyncio_round(loop, n),
                },
                rounds,
            )
    finally:
        loop.close()
    lg_traced, aio_traced = mem["loopgrid_traced"], mem["asyncio_traced"]
    lg_rss, aio_rss = mem["loopgrid_rss"], mem["asyncio_rss"]
    per_task = lg_traced / n
    memory = {
        "name": f"(a) memory per pending task, {n:,} tasks on a paused grid "
        f"(asyncio Task + coroutine: {aio_traced / n:,.0f} B)",
        "unit": "B/task",
        "value": per_task,
        "target": f"<= {MEMORY_TARGET:g} B (1.2 KiB)",
        "met": per_task <= MEMORY_TARGET,
        "rss_per_task": {"loopgrid": lg_rss / n, "asyncio": aio_rss / n},
    }
    ratio = {
        "name": "(a) memory per pending task vs a pending asyncio task (ratio)",
        "unit": "x",
        "value": per_task / (aio_traced / n),
        "target": None,
        "met": None,
    }
    drain_entry = compare(
        f"(b) queue {n:,} trivial tasks, then run them all on 1 worker: time per task",
        drain["loopgrid"],
        drain["asyncio"],
        baseline_name=f"{n:,} create_task calls, then run by one {uv_label} loop",
        per=n,
        kind="time",
        target=None,
        unit="us/task",
    )
    return {
        "benchmark": "memory",
        "title": f"{n:,} pending tasks: memory per task and time to drain",
        "params": {"pending_tasks": n, "drain_rounds": rounds, "warmup_rounds": 1},
        "results": [memory, ratio, drain_entry],
        "details": {
            "traced_bytes": {"loopgrid": lg_traced, "asyncio": aio_traced},
            "rss_bytes": {"loopgrid": lg_rss, "asyncio": aio_rss},
        },
        "notes": [
            "Memory is the growth of the Python heap traced by tracemalloc while the tasks "
            "are created and held (what the tasks own); the growth of the resident set, "
            "which includes the allocator's slack, measured in a separate pass, is in "
            "details and in rss_per_task.",
            "A pending loopgrid task holds no coroutine: spawn(fn, *args) stores the function "
            "and its arguments, and the coroutine is created when a worker starts it.",
        ],
    }


if __name__ == "__main__":
    import json

    print(json.dumps(run("--quick" in sys.argv, smoke="--smoke" in sys.argv), indent=2))
