"""The live view (loopgrid.top.render): one frame from a real grid's stats."""

from __future__ import annotations

import io
import logging
import threading

from helpers import WAIT, LogCatcher, identity, wait_until
from rich.console import Console

from loopgrid import Grid, Priority
from loopgrid.top import busy_bar, render


def _text(renderable: object) -> str:
    console = Console(file=io.StringIO(), width=120, record=True, color_system=None)
    console.print(renderable)
    return console.export_text()


def test_busy_bar() -> None:
    assert busy_bar(0.0) == "░" * 10 + "   0%"
    assert busy_bar(0.52) == "█████" + "░" * 5 + "  52%"
    assert busy_bar(1.0) == "█" * 10 + " 100%"
    assert busy_bar(1.7) == busy_bar(1.0)  # clamped


def test_a_frame_shows_a_stalled_worker_and_its_queues() -> None:
    release = threading.Event()

    async def hog() -> None:
        assert release.wait(WAIT)

    with LogCatcher("worker.stalled", logging.WARNING) as stalled, Grid(2, name="viewed") as g:
        h = g.spawn(hog, worker=0, name="hog")
        try:
            assert stalled.seen.wait(WAIT)
            for p in Priority:
                for _ in range(int(p) + 1):
                    g.spawn(identity, 0, priority=p, worker=0)  # pinned: they wait
            assert wait_until(lambda: g.stats()["workers"][0]["pending_total"] == 10)
            stats = g.stats()
            text = _text(render(stats, rates={0: 0.0, 1: 12.0}))
        finally:
            release.set()
        h.result(timeout=WAIT)
    lines = text.splitlines()
    assert lines[0].startswith("grid viewed  2 loops  open")
    row0 = next(line for line in lines if line.lstrip().startswith("0 "))
    row1 = next(line for line in lines if line.lstrip().startswith("1 "))
    assert "STALLED" in row0 and "STALLED" not in row1
    assert "1/2/3/4" in row0  # pending low/normal/high/critical
    assert "0/0/0/0" in row1
    assert busy_bar(stats["workers"][0]["busy"]) in row0
    assert "12" in row1.split()
    assert "injection queue (any worker) L/N/H/C: 0/0/0/0" in text
    assert f"stalls {stats['totals']['stalls']}" in text
