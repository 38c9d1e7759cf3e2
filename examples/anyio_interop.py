"""anyio code calling into a grid, and grid tasks calling anyio code.

An anyio program on the asyncio backend (its loop is "foreign": not one of the
grid's) awaits grid handles in an anyio task group, cancels one with
``anyio.fail_after``, and waits for one from a worker thread. A grid task runs
anyio code in turn: a task group, ``anyio.sleep``, a worker thread that calls
back onto the grid task's own loop. Last, anyio's trio backend is refused with
a clear error (when trio is installed).

Run it with ``python examples/anyio_interop.py``.
"""

from __future__ import annotations

import asyncio
import functools
import importlib.util
import threading

import anyio
import anyio.from_thread
import anyio.to_thread

import loopgrid
from loopgrid import Grid, Handle


async def square(n: int) -> str:
    await asyncio.sleep(0.01)
    return f"{n}^2 = {n * n} on worker {loopgrid.current_worker().index}"


async def uses_anyio() -> str:
    """A grid task that runs anyio code on its worker's loop."""
    here = loopgrid.current_worker().index
    seen: list[int] = []

    async def child() -> None:
        await anyio.sleep(0.01)
        seen.append(loopgrid.current_worker().index)

    async with anyio.create_task_group() as tg:
        for _ in range(3):
            tg.start_soon(child)

    async def on_my_loop() -> int:
        return loopgrid.current_worker().index

    def in_a_thread() -> str:
        back = anyio.from_thread.run(on_my_loop)  # back onto this task's loop
        return f"thread {threading.current_thread().name!r} called back into worker {back}"

    called_back = await anyio.to_thread.run_sync(in_a_thread)
    return f"grid task on worker {here}: anyio children ran on workers {seen}; {called_back}"


async def main() -> None:
    async with Grid(loops=2, name="anyio-example") as grid:
        results: list[str] = []

        async def collect(h: Handle[str]) -> None:
            results.append(await h)

        async with anyio.create_task_group() as tg:
            for n in range(4):
                tg.start_soon(collect, grid.spawn(square, n, worker=n % 2))
        print("anyio task group:", *sorted(results), sep="\n  ")

        slow = grid.spawn(asyncio.sleep, 3600)
        try:
            with anyio.fail_after(0.1):
                await slow
        except TimeoutError:
            print(f"fail_after timed out and cancelled the grid task: {slow.state.value}")

        h = grid.spawn(square, 7)
        print("from a worker thread:", await anyio.to_thread.run_sync(h.result))

        print(await grid.spawn(uses_anyio))

        if importlib.util.find_spec("trio") is not None:

            async def on_trio() -> None:
                await grid.spawn(square, 8)

            try:  # in another thread: this one runs asyncio
                await anyio.to_thread.run_sync(
                    functools.partial(anyio.run, on_trio, backend="trio")
                )
            except RuntimeError as e:
                print("trio backend:", str(e).split(". ")[0])


if __name__ == "__main__":
    anyio.run(main, backend="asyncio")
