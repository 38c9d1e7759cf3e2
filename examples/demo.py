"""loopgrid demo: one event loop is blocked on purpose, the others steal its backlog.

A task pinned to worker 0 spawns a backlog of tasks of all four priorities (from
worker 0, so they land in worker 0's local run queue), then blocks worker 0's
loop with a synchronous ``time.sleep``. The other workers find worker 0's queue
full and steal from it, so the backlog keeps moving while worker 0 is stuck.
Each task does a little real work (hashing, which releases the GIL) between
awaits. While it runs, a progress line per tick shows each worker's pending,
running, completed and stolen-in counts (on a terminal, or with ``--progress``);
at the end come a per-worker summary table and a one-line conclusion.

Run it with ``python3 scripts/dev.py demo`` or ``python examples/demo.py
[--loops N] [--tasks N] [--block SECONDS] [--progress]``.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import sys
import time
from typing import Any, NamedTuple

from loopgrid import Grid, Handle, Priority, current_grid, spawn

CHUNK = bytes(256 * 1024)


async def job(rounds: int) -> int:
    """A task: slices of CPU work (hashing releases the GIL) with awaits between."""
    for _ in range(rounds):
        hashlib.sha256(CHUNK).digest()
        await asyncio.sleep(0)
    return rounds


def wave(tasks: int) -> list[Handle[int]]:
    return [spawn(job, 12, priority=Priority(i % 4)) for i in range(tasks)]


class Outcome(NamedTuple):
    backlog: list[Handle[int]]  # the wave queued while worker 0 was blocked
    done_while_blocked: int
    stolen: int  # of the backlog, how many other workers took by stealing
    second: list[Handle[int]]  # the wave queued once worker 0 was healthy again


async def producer(tasks: int, block: float) -> Outcome:
    """Runs on worker 0: queue a backlog locally, block the loop, then a second wave."""
    backlog = wave(tasks)
    time.sleep(block)  # a synchronous call: worker 0's loop is stuck for `block` seconds
    done_while_blocked = sum(h.done() for h in backlog)
    await asyncio.gather(*backlog)
    stolen = current_grid().stats()["workers"][0]["stolen_out"]
    second = wave(tasks)  # worker 0 is healthy now: the workers share this wave
    await asyncio.gather(*second)
    return Outcome(backlog, done_while_blocked, stolen, second)


def progress_line(grid: Grid, t0: float) -> str:
    cols = [
        f"w{w['index']} {w['pending_total']:3}p {w['running']:3}r {w['completed']:4}d "
        f"{w['stolen_in']:3}s"
        for w in grid.stats()["workers"]
    ]
    return f"{time.monotonic() - t0:5.2f}s | " + " | ".join(cols)


def summary(stats: dict[str, Any], handles: list[Handle[Any]]) -> str:
    prios = list(Priority)
    head = f"{'worker':>6} {'started':>8} {'completed':>9} {'stolen in':>9} {'stolen out':>10}"
    lines = [head + "".join(f" {p.name.lower():>8}" for p in prios)]
    for w in stats["workers"]:
        ran = [sum(h.worker == w["index"] and h.priority is p for h in handles) for p in prios]
        lines.append(
            f"{w['index']:>6} {w['started']:>8} {w['completed']:>9} {w['stolen_in']:>9} "
            f"{w['stolen_out']:>10}" + "".join(f" {n:>8}" for n in ran)
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_loops = max(2, min(4, os.cpu_count() or 1))
    parser.add_argument("--loops", type=int, default=default_loops, help="event loops (>= 2)")
    parser.add_argument("--tasks", type=int, default=256, help="tasks per wave")
    parser.add_argument("--block", type=float, default=1.0, help="seconds worker 0 is blocked")
    parser.add_argument("--progress", action="store_true", help="progress lines without a tty")
    args = parser.parse_args()
    if args.loops < 2 or args.tasks < 1 or not 0 <= args.block <= 5:
        parser.error("need --loops >= 2, --tasks >= 1 and 0 <= --block <= 5")
    show = args.progress or sys.stdout.isatty()
    print(
        f"loopgrid demo: {args.loops} loops; worker 0 queues {args.tasks} tasks, blocks for "
        f"{args.block:.1f} s, then queues {args.tasks} more"
    )
    if show:
        print("per worker: p pending, r running, d completed, s stolen in")
    t0 = time.monotonic()
    with Grid(loops=args.loops, name="demo") as grid:
        main_task = grid.spawn(producer, args.tasks, args.block, worker=0, name="producer")
        while not main_task.done():
            if show:
                print(progress_line(grid, t0), flush=True)
            time.sleep(0.25)
        out = main_task.result()
    print(f"\nfinished in {time.monotonic() - t0:.2f} s\n")
    print(summary(grid.stats(), [main_task, *out.backlog, *out.second]) + "\n")
    elsewhere = sum(h.worker != 0 for h in out.backlog)
    how = f" ({out.stolen} by steals, the rest after overflow)" if out.stolen < elsewhere else ""
    print(
        f"worker 0 was blocked for {args.block:.1f} s; {elsewhere} of its {len(out.backlog)} "
        f"queued tasks were stolen and ran elsewhere{how}; "
        f"{out.done_while_blocked} finished while it was blocked."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
