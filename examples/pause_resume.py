"""Pause and resume a running task, drain a worker, move a pending task.

A *ticker* task counts in a loop (``await asyncio.sleep(0.01)`` between ticks).
We pause it: what it was awaiting still completes, but its code does not run
again until ``resume()``, so its count stands still however long the pause.
Then worker 1 is paused: it starts nothing new, and the work spawned while it
is paused runs on worker 0. Last, a task queued behind a busy worker is moved
to the other one before it starts.

Run it with ``python examples/pause_resume.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import time

import loopgrid
from loopgrid import Handle


async def ticker(counter: list[int]) -> int:
    while counter[0] < 1_000_000:
        counter[0] += 1
        await asyncio.sleep(0.01)
    return counter[0]


async def where(tag: str) -> str:
    return f"{tag} ran on worker {loopgrid.current_worker().index}"


def busy(seconds: float) -> None:
    time.sleep(seconds)  # a blocking call that holds its loop, on purpose


async def main(pause_for: float) -> None:
    grid = loopgrid.current_grid()

    # 1. Pause a running task.
    counter = [0]
    tick: Handle[int] = grid.spawn(ticker, counter, worker=1, name="ticker")
    while counter[0] < 5:
        await asyncio.sleep(0.01)
    tick.pause()
    print(f"ticker paused: state={tick.state.value}")
    await asyncio.sleep(0.05)  # let a step that was already under way finish
    frozen = counter[0]
    await asyncio.sleep(pause_for)
    print(f"after {pause_for:.1f} s paused the count is unchanged: {counter[0] == frozen}")
    tick.resume()
    while counter[0] < frozen + 5:
        await asyncio.sleep(0.01)
    print(f"resumed: the count moves again ({counter[0] > frozen}), state={tick.state.value}")
    tick.cancel()

    # 2. Pause a worker: new work goes to the others.
    grid.workers[1].pause()
    print(f"worker 1 paused: {grid.workers[1].paused}")
    for line in await asyncio.gather(*(loopgrid.spawn(where, f"job {i}") for i in range(3))):
        print(f"  {line}")
    grid.workers[1].resume()

    # 3. Move a pending task away from a busy worker.
    hog = grid.spawn(_hog, 0.3, worker=1, name="hog")
    await asyncio.sleep(0.05)  # the hog now holds worker 1
    queued = grid.spawn(where, "queued task", worker=1)
    print(f"queued behind the hog: state={queued.state.value}, pinned to {queued.pinned}")
    queued.move(worker=0)
    print(f"moved: {await queued} (pinned to {queued.pinned})")
    await hog
    stats = grid.stats()
    print(f"paused tasks now: {stats['totals']['paused']}")


async def _hog(seconds: float) -> None:
    busy(seconds)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pause-for", type=float, default=0.5, help="seconds to stay paused")
    args = parser.parse_args()
    loopgrid.run(main(args.pause_for), loops=2)
