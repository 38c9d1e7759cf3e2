"""Driving a grid from an ordinary ``asyncio.run`` loop in the main thread.

The main thread's loop is not part of the grid ("foreign"), yet it can
``await`` handles, ``asyncio.gather`` them and put them under
``asyncio.wait_for``, just like ``asyncio.Task`` objects: the grid wakes the
foreign loop when they finish. ``async with Grid(...)`` closes the grid on the
way out without blocking the foreign loop (it waits in a thread).

Run it with ``python examples/foreign_loop.py``.
"""

from __future__ import annotations

import asyncio
import threading

import loopgrid
from loopgrid import Grid


async def where(n: int) -> str:
    await asyncio.sleep(0.01)
    return f"task {n} ran on worker {loopgrid.current_worker().index}"


async def main() -> None:
    print(f"main loop runs in thread {threading.current_thread().name!r}")
    async with Grid(loops=2, name="foreign-example") as grid:
        print("await:", await grid.spawn(where, 0))
        results = await asyncio.gather(*(grid.spawn(where, n) for n in range(1, 5)))
        print("gather:", *results, sep="\n  ")
        print("wait_for:", await asyncio.wait_for(grid.spawn(where, 5), timeout=5))
        slow = grid.spawn(asyncio.sleep, 60)
        try:
            await asyncio.wait_for(slow, timeout=0.1)
        except asyncio.TimeoutError:
            print(f"wait_for timed out and cancelled the task: {slow.state.value}")
    print(f"grid closed: {grid.closed}")


if __name__ == "__main__":
    asyncio.run(main())
