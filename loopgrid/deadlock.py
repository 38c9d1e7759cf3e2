"""Standstill detection: a grid whose every task waits on another, all asleep.

Cycles are found at the await that would close them (``waitgraph.py``). This
is Go's other check, "all goroutines are asleep": :func:`look_for_standstill`,
run by each grid's monitor thread, looks whether every worker of a grid stayed
idle for a whole look interval while all its running tasks wait on each other
(on handles and locks of the same grid); if so it logs ``grid.deadlock`` at
error level, once per standstill. It reads the wait-for graph and the
workers' counters from the monitor's thread (racy snapshots, confirmed by a
second look an interval later), and costs the await path nothing.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from . import logs
from .waitgraph import _edges, _resolve, describe, explain, handle_of

if TYPE_CHECKING:
    from .grid import Grid

__all__ = ["look_for_standstill"]


def look_for_standstill(grid: Grid, previous: tuple[int, ...] | None) -> tuple[int, ...] | None:
    """One look by the grid's monitor (``monitor.py``) for an all-asleep grid.

    Returns the grid's progress signature when every worker is idle, else
    None. The monitor passes the last look's result back: a grid that was idle
    with the same signature one look ago has stood still for a whole interval
    (a task that was merely about to be woken has run by then), and if every
    one of its running tasks waits for another task of the grid, that is
    logged as ``grid.deadlock``, once per standstill.
    """
    if not _grid_idle(grid):
        return None
    sig = _signature(grid)
    if sig != previous or grid._asleep_reported == sig:
        return sig
    running = sum(w.running for w in grid._workers)
    if not running:
        return sig
    loops = {w.loop for w in grid._workers}
    waits: list[str] = []
    for node, edge in _edges.copy().items():
        t = _resolve(edge[0])
        if (
            isinstance(node, asyncio.Task)
            and isinstance(t, asyncio.Task)
            and node.get_loop() in loops
            and t.get_loop() in loops
            and handle_of(node) is not None
        ):
            waits.append(f"{describe(node)} waits for {explain(edge)}")
    if len(waits) >= running:
        grid._asleep_reported = sig
        logs.error(
            "grid.deadlock",
            grid=grid.name,
            tasks=running,
            waits=waits,
            hint="every task of the grid waits for another, and nothing else can run",
        )
    return sig


def _grid_idle(grid: Grid) -> bool:
    if grid._paused or grid._paused_tasks or len(grid._injection):
        return False
    return all(w._parked and not w.pending and not w._hold for w in grid._workers)


def _signature(grid: Grid) -> tuple[int, ...]:
    return tuple(
        n for w in grid._workers for n in (w.started, w.completed, w.failed, w.cancelled, w.spawned)
    )
