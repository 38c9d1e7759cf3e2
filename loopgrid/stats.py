"""Stats: a JSON-serialisable snapshot of a grid's queues and counters.

Counters have one writer each (see ``worker.py``); this module only reads them,
from any thread, without locks. A snapshot is therefore not atomic across
workers, and a task moving between queues while it is taken may be missed or
counted twice in the pending figures; the counters themselves only grow.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .priority import Priority

if TYPE_CHECKING:
    from .grid import Grid
    from .runqueue import RunQueue
    from .worker import Worker

__all__ = ["snapshot"]

_COUNTERS = ("spawned", "started", "completed", "failed", "cancelled", "stolen_in", "stolen_out")


def _per_priority(*queues: RunQueue) -> dict[str, int]:
    out = {p.name.lower(): 0 for p in Priority}
    for q in queues:
        for p, n in zip(Priority, q.counts(), strict=True):
            out[p.name.lower()] += n
    return out


def _worker(w: Worker, stolen_out: int) -> dict[str, Any]:
    pending = _per_priority(w._local, w._pinned)
    return {
        "index": w.index,
        "pending": pending,
        "pending_total": sum(pending.values()),
        "pinned": len(w._pinned),
        "running": w.running,
        "parked": w._parked,
        "paused": w._hold,
        "spawned": w.spawned,
        "started": w.started,
        "completed": w.completed,
        "failed": w.failed,
        "cancelled": w.cancelled + w.dropped,
        "stolen_in": w.stolen_in,
        "stolen_out": stolen_out,
    }


def snapshot(grid: Grid) -> dict[str, Any]:
    """Build ``grid.stats()``: per worker, the injection queue, and totals.

    ``spawned`` counts spawns made from a worker's thread; spawns from other
    threads are in ``external.spawned``. ``cancelled`` counts tasks that ended
    cancelled on that thread, including pending tasks cancelled from it.
    """
    workers = grid.workers
    stolen_out = [sum(t.stolen_from[w.index] for t in workers) for w in workers]
    per = [_worker(w, stolen_out[w.index]) for w in workers]
    injection = _per_priority(grid._injection)
    external = {"spawned": grid._ext_spawned, "cancelled": grid._ext_cancelled}
    totals = {k: sum(w[k] for w in per) for k in _COUNTERS}
    totals["spawned"] += external["spawned"]
    totals["cancelled"] += external["cancelled"]
    totals["pending"] = sum(w["pending_total"] for w in per) + sum(injection.values())
    totals["running"] = sum(w["running"] for w in per)
    totals["paused"] = len(grid._paused_tasks)
    return {
        "grid": grid.name,
        "loops": len(workers),
        "state": "closed" if grid._closed else "closing" if grid._closing else "open",
        "paused": grid._paused,
        "workers": per,
        "injection": injection,
        "external": external,
        "totals": totals,
    }
