"""``loopgrid.run``: a drop-in replacement for ``asyncio.run`` on several loops.

``main()`` runs on worker 0 of a fresh grid. It reads items (synchronous work
that keeps worker 0's loop busy) and spawns a task of some priority per item
with ``loopgrid.spawn``; the tasks queue on worker 0, and idle workers steal
them meanwhile. It then gathers the results as with ``asyncio.Task`` objects
and prints which worker ran each task (``handle.worker``). When ``main()``
returns, the grid shuts down, as ``asyncio.run`` closes its loop.

Run it with ``python examples/runner.py [--loops N] [--tasks N]``.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
from collections import Counter

import loopgrid
from loopgrid import Priority


def read_item(n: int) -> bytes:
    """Synchronous work, as parsing input would be (hashing 1 MiB releases the GIL)."""
    return hashlib.sha256(n.to_bytes(4, "big") * (1 << 18)).digest()


async def process(item: bytes) -> str:
    await asyncio.sleep(0.01)  # e.g. a network call
    return item.hex()[:8]


async def main(count: int) -> Counter[int | None]:
    print(f"main() runs on worker {loopgrid.current_worker().index}")
    handles = [
        loopgrid.spawn(process, read_item(i), priority=Priority(i % 4), name=f"item-{i}")
        for i in range(count)
    ]
    results = await asyncio.gather(*handles)
    for h, result in zip(handles, results, strict=True):
        print(f"{h.name:>8} {h.priority.name:<8} ran on worker {h.worker}: {result}")
    return Counter(h.worker for h in handles)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="loopgrid.run() example")
    parser.add_argument("--loops", type=int, default=2, help="event loops (default 2)")
    parser.add_argument("--tasks", type=int, default=12, help="tasks to spawn (default 12)")
    args = parser.parse_args()
    per_worker = loopgrid.run(main(args.tasks), loops=args.loops)
    print("tasks per worker:", dict(sorted(per_worker.items())))
