"""The monitor: a grid's own thread that looks at it from outside (Go's sysmon).

Some things cannot be seen from a worker's loop: a loop cannot notice that it
is itself stuck, and no single loop sees that every loop is idle while their
tasks wait on each other. The monitor wakes every :data:`INTERVAL` seconds,
looks, and sleeps again; it never touches a loop or a queue, only reads
counters and the wait-for graph (racy snapshots, which is why a finding must
hold on two looks in a row before it is reported).

Today it looks for all-asleep standstills (``deadlock.look_for_standstill``).
It starts with its grid and is joined when the grid closes, so it never
outlives it.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from . import logs
from .deadlock import look_for_standstill

if TYPE_CHECKING:
    from .grid import Grid

__all__ = ["INTERVAL", "Monitor"]

#: Seconds between two looks.
INTERVAL = 0.25


class Monitor:
    """The monitor thread of one grid."""

    def __init__(self, grid: Grid) -> None:
        self._grid = grid
        self._stop = threading.Event()
        self.thread = threading.Thread(
            target=self._run, name=f"loopgrid-{grid.name}-monitor", daemon=True
        )

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        """Stop the thread and wait for it; idempotent, any thread but its own."""
        self._stop.set()
        if self.thread.is_alive():
            self.thread.join()

    def _run(self) -> None:
        standstill: tuple[int, ...] | None = None
        while not self._stop.wait(INTERVAL):
            try:
                standstill = look_for_standstill(self._grid, standstill)
            except Exception:  # a look must never kill the monitor
                logs.error("monitor.failed", grid=self._grid.name, exc_info=True)
