"""loopgrid demo: one event loop is blocked on purpose, the others steal its backlog.

A task pinned to worker 0 spawns a backlog of tasks of all four priorities (from
worker 0, so they land in worker 0's local run queue), then blocks worker 0's
loop with a synchronous ``time.sleep``. The other workers find worker 0's queue
full and steal from it, and the grid's monitor, seeing worker 0 stalled, moves
what is left to the injection queue, so the backlog keeps moving while worker 0
is stuck. Meanwhile the main thread feeds a stream of small tasks of mixed
priorities. Each task does a little real work (hashing, which releases the GIL)
between awaits.

On a terminal it shows a live view (the same as ``loopgrid top``): a busy bar
per worker, loop lag, pending tasks per priority, steals, and worker 0 marked
STALLED while it is blocked. Without a terminal (a pipe, CI) it prints only the
summary, unless ``--progress`` asks for a plain progress line per tick. It ends
with a per-worker summary table and a one-line conclusion.

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
from loopgrid.top import render

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


def stream(grid: Grid, tick: int) -> list[Handle[int]]:
    """What the main thread feeds the grid each tick: small tasks, mixed priorities."""
    return [grid.spawn(job, 2, priority=Priority((tick + i) % 4)) for i in range(8)]


def run_plain(grid: Grid, main_task: Handle[Any], show: bool, t0: float) -> list[Handle[int]]:
    fed: list[Handle[int]] = []
    tick = 0
    while not main_task.done():
        if show:
            print(progress_line(grid, t0), flush=True)
        fed += stream(grid, tick)
        tick += 1
        time.sleep(0.25)
    return fed


def run_live(grid: Grid, main_task: Handle[Any]) -> list[Handle[int]]:
    from rich.live import Live

    fed: list[Handle[int]] = []
    tick = 0
    last = {w.index: 0 for w in grid.workers}
    rates: dict[int, float] = {}
    with Live(render(grid.stats()), refresh_per_second=8, transient=False) as live:
        while not main_task.done():
            fed += stream(grid, tick)
            tick += 1
            time.sleep(0.25)
            stats = grid.stats()
            for w in stats["workers"]:
                rates[w["index"]] = (w["completed"] - last[w["index"]]) / 0.25
                last[w["index"]] = w["completed"]
            live.update(render(stats, rates=rates))
        live.update(render(grid.stats(), rates=rates))
    return fed


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
    live = sys.stdout.isatty() and not args.progress
    print(
        f"loopgrid demo: {args.loops} loops; worker 0 queues {args.tasks} tasks, blocks for "
        f"{args.block:.1f} s, then queues {args.tasks} more; the main thread feeds 8 small "
        "tasks every 0.25 s"
    )
    if args.progress:
        print("per worker: p pending, r running, d completed, s stolen in")
    t0 = time.monotonic()
    with Grid(loops=args.loops, name="demo") as grid:
        main_task = grid.spawn(producer, args.tasks, args.block, worker=0, name="producer")
        fed = run_live(grid, main_task) if live else run_plain(grid, main_task, args.progress, t0)
        out = main_task.result()
        for h in fed:
            h.result()
    stats = grid.stats()
    print(f"\nfinished in {time.monotonic() - t0:.2f} s\n")
    print(summary(stats, [main_task, *out.backlog, *out.second, *fed]) + "\n")
    elsewhere = sum(h.worker != 0 for h in out.backlog)
    how = (
        f" ({out.stolen} by steals, the rest after overflow or by the stall detector)"
        if out.stolen < elsewhere
        else ""
    )
    print(
        f"worker 0 was blocked for {args.block:.1f} s; {elsewhere} of its {len(out.backlog)} "
        f"queued tasks were stolen and ran elsewhere{how}; "
        f"{out.done_while_blocked} finished while it was blocked."
    )
    w0 = stats["workers"][0]
    print(
        f"the monitor saw {w0['stalls']} stall(s) on worker 0 and moved {w0['shed']} of its "
        f"queued tasks to the injection queue; {len(fed)} tasks were fed from the main thread."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
