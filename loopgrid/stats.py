"""Stats: a JSON-serialisable snapshot of a grid's queues, counters and metrics.

Counters have one writer each (see ``worker.py``); this module only reads them,
from any thread, without locks. A snapshot is therefore not atomic across
workers, and a task moving between queues while it is taken may be missed or
counted twice in the pending figures; the counters themselves only grow.

Per worker, beside the counters, the monitor's metrics (``monitor.py``): loop
lag (``lag_p50``, ``lag_p99``, ``lag_max``, seconds, over the last few
seconds), ``busy`` (the sampled share of time the loop ran callbacks rather
than waited for events), ``stalls`` (stalls seen), ``stalled`` (one is under
way) and ``shed`` (pending tasks moved off it while stalled). Grid-wide:
``imbalance``, the spread (max - min) of the workers' busy fractions, which
is 0 when the load is even and near 1 when one loop works and another idles.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .introspect import task_rows
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


def _worker(w: Worker, stolen_out: int, metrics: dict[str, Any]) -> dict[str, Any]:
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
        "gil_yields": 0 if w._fair is None else w._fair.yields,
        **metrics,
    }


def snapshot(grid: Grid, tasks: bool = False) -> dict[str, Any]:
    """Build ``grid.stats()``: per worker, the injection queue, and totals.

    ``spawned`` counts spawns made from a worker's thread; spawns from other
    threads are in ``external.spawned``. ``cancelled`` counts tasks that ended
    cancelled on that thread, including pending tasks cancelled from it.
    """
    workers = grid.workers
    stolen_out = [sum(t.stolen_from[w.index] for t in workers) for w in workers]
    watches = grid._monitor.watches
    per = [_worker(w, stolen_out[w.index], watches[w.index].metrics()) for w in workers]
    injection = _per_priority(grid._injection)
    external = {"spawned": grid._ext_spawned, "cancelled": grid._ext_cancelled}
    totals = {k: sum(w[k] for w in per) for k in _COUNTERS}
    totals["spawned"] += external["spawned"]
    totals["cancelled"] += external["cancelled"]
    totals["pending"] = sum(w["pending_total"] for w in per) + sum(injection.values())
    totals["running"] = sum(w["running"] for w in per)
    totals["paused"] = len(grid._paused_tasks)
    totals["stalls"] = sum(w["stalls"] for w in per)
    totals["shed"] = sum(w["shed"] for w in per)
    busy = [w["busy"] for w in per]
    totals["busy"] = round(sum(busy) / len(busy), 4)
    totals["imbalance"] = round(max(busy) - min(busy), 4)
    totals["lag_p99"] = max(w["lag_p99"] for w in per)
    out = {
        "grid": grid.name,
        "loops": len(workers),
        "state": "closed" if grid._closed else "closing" if grid._closing else "open",
        "paused": grid._paused,
        "workers": per,
        "injection": injection,
        "external": external,
        "totals": totals,
        "stall_threshold": grid._monitor.stall_threshold,
        "task_timing": grid._task_timing,
    }
    if tasks:
        out["tasks"] = task_rows(grid)
    return out
