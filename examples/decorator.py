"""``@loopgrid.task``: an async function that can also spawn itself.

``fetch`` is decorated with ``@loopgrid.task(priority=Priority.HIGH)``. It is
still an ordinary async function: ``await fetch(key)`` runs it inline in the
calling task. ``fetch.spawn(key)`` schedules it on the current grid as a task of
its own, with the decorator's priority and name, and returns a ``Handle``.

Run it with ``python examples/decorator.py``.
"""

from __future__ import annotations

import asyncio

import loopgrid
from loopgrid import Priority


@loopgrid.task(priority=Priority.HIGH)
async def fetch(key: str) -> str:
    """Pretend to fetch ``key`` from a slow service."""
    await asyncio.sleep(0.01)
    return f"value-of-{key} (worker {loopgrid.current_worker().index})"


async def main() -> None:
    print(f"decorated: {fetch!r}")
    inline = await fetch("inline")  # a plain call: no new task, runs right here
    print(f"await fetch('inline') -> {inline}")
    handles = [fetch.spawn(key) for key in ("a", "b", "c", "d")]
    print(f"fetch.spawn('a') -> {handles[0]!r}")
    for h, value in zip(handles, await asyncio.gather(*handles), strict=True):
        print(f"{h.name} priority={h.priority.name} -> {value}")


if __name__ == "__main__":
    loopgrid.run(main(), loops=2)
