"""What free-threaded CPython (3.13t, PYTHON_GIL=0) changes: nothing may turn the
GIL back on, and state shared between threads must hold without it. The
stress test runs on every build."""

from __future__ import annotations

import asyncio
import os
import sys
import threading

import pytest
from helpers import FREE_THREADED, WAIT

import loopgrid
from loopgrid import Grid


@pytest.mark.skipif(
    not FREE_THREADED or os.environ.get("PYTHON_GIL") != "0",
    reason="only on a free-threaded build run with PYTHON_GIL=0",
)
def test_the_gil_stays_off() -> None:
    import anyio
    import structlog

    async def work() -> int:
        return sum(await asyncio.gather(*[loopgrid.spawn(asyncio.sleep, 0, i) for i in range(4)]))

    with Grid(2, debug_port=0) as g:
        assert g.spawn(work).result(WAIT) == 6
    assert anyio and structlog  # imported: neither re-enabled the GIL
    assert not sys._is_gil_enabled()  # type: ignore[attr-defined]


async def _square(i: int) -> int:
    await asyncio.sleep(0)
    return i * i


def test_many_threads_spawning_at_once_lose_and_duplicate_nothing() -> None:
    threads, per_thread = 8, 400
    start = threading.Barrier(threads)
    handles: list[list[loopgrid.Handle[int]]] = [[] for _ in range(threads)]

    def spawner(k: int, g: Grid) -> None:
        start.wait()
        out = handles[k]
        for i in range(per_thread):
            out.append(g.spawn(_square, k * per_thread + i))

    with Grid(2) as g:
        ts = [threading.Thread(target=spawner, args=(k, g)) for k in range(threads)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(WAIT)
        everything = [h for hs in handles for h in hs]
        results = [h.result(WAIT) for h in everything]
    n = threads * per_thread
    assert len({h.id for h in everything}) == n
    assert results == [(k * per_thread + i) ** 2 for k in range(threads) for i in range(per_thread)]
    totals = g.stats()["totals"]
    assert totals["completed"] == n
    assert totals["spawned"] == n
    assert totals["pending"] == totals["running"] == 0


def test_pausing_running_tasks_from_many_threads_never_strands_one() -> None:
    """Pause and resume tasks from two threads while their loops step them.

    A pause arms the task's driver from the pausing thread while the loop may
    be disarming it (its first step after a resume). Both write the driver's
    two slots; if those writes interleave, the driver's ``send`` and
    ``_target`` name different pause records, the task is held through one
    and never released through the other, and its ``result`` never comes.
    Without a GIL, before the fix, about one run in six ended that way.
    """
    tasks, rounds = 8, 3000
    stop = threading.Event()
    go = threading.Barrier(2)

    async def spinner(i: int) -> int:
        while not stop.is_set():
            await asyncio.sleep(0)
        return i

    def hammer(hs: list[loopgrid.Handle[int]]) -> None:
        go.wait()
        for _ in range(rounds):
            for h in hs:
                h.pause()
            for h in hs:
                h.resume()

    with Grid(2) as g:
        hs = [g.spawn(spinner, i) for i in range(tasks)]
        ts = [threading.Thread(target=hammer, args=(hs,)) for _ in range(2)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(WAIT)
        stop.set()
        for h in hs:
            h.resume()  # a no-op unless a hammer's last pause outlived its resume
        assert [h.result(WAIT) for h in hs] == list(range(tasks))
        assert g.stats()["totals"]["paused"] == 0
