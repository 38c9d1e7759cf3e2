"""A grid used from plain synchronous code, like a ``ThreadPoolExecutor``.

``with Grid(loops=2) as grid:`` starts two event loops on their own threads;
``grid.spawn(...)`` schedules async functions from the main thread (no event
loop here) and ``handle.result(timeout=5)`` blocks until they finish, raising
their exception if they failed. Leaving the block waits for every task; then
``grid.stats()`` (counters per worker) is printed as JSON.

Run it with ``python examples/sync_grid.py``.
"""

from __future__ import annotations

import asyncio
import json

from loopgrid import Grid, Priority


async def add(a: int, b: int) -> int:
    await asyncio.sleep(0.01)
    return a + b


async def fail(message: str) -> None:
    await asyncio.sleep(0)
    raise ValueError(message)


def main() -> None:
    with Grid(loops=2, name="sync-example") as grid:
        print("result:", grid.spawn(add, 2, 3, priority=Priority.HIGH).result(timeout=5))
        handles = [grid.spawn(add, i, i) for i in range(8)]
        print("results:", [h.result(timeout=5) for h in handles])
        try:
            grid.spawn(fail, "boom").result(timeout=5)
        except ValueError as exc:
            print(f"the task's exception came back: ValueError({exc})")
    print(json.dumps(grid.stats(), indent=2))


if __name__ == "__main__":
    main()
