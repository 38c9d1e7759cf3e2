"""grid.stats(): JSON-serialisable, per-worker pending per priority, counters
and totals that add up."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from helpers import WAIT, block_worker, forever, identity

import loopgrid
from loopgrid import Grid, Priority

PRIOS = ("low", "normal", "high", "critical")
COUNTERS = ("spawned", "started", "completed", "failed", "cancelled", "stolen_in", "stolen_out")


async def _fail() -> None:
    raise ValueError("x")


def _check_shape(snap: dict[str, Any], loops: int) -> None:
    assert json.loads(json.dumps(snap)) == snap
    assert snap["loops"] == loops
    assert len(snap["workers"]) == loops
    for i, w in enumerate(snap["workers"]):
        assert w["index"] == i
        assert set(w["pending"]) == set(PRIOS)
        assert w["pending_total"] == sum(w["pending"].values())
        for k in (*COUNTERS, "pinned", "running"):
            assert isinstance(w[k], int) and w[k] >= 0
        assert isinstance(w["parked"], bool)
    assert set(snap["injection"]) == set(PRIOS)
    assert set(COUNTERS) <= set(snap["totals"])


def test_stats_shape_and_json_while_open_and_closed() -> None:
    g = Grid(2, name="statgrid")
    try:
        snap = g.stats()
        _check_shape(snap, 2)
        assert snap["grid"] == "statgrid"
        assert snap["state"] == "open"
    finally:
        g.close()
    snap = g.stats()
    _check_shape(snap, 2)
    assert snap["state"] == "closed"


def test_pending_per_priority_per_worker_and_injection() -> None:
    with Grid(2) as g:
        _, release0 = block_worker(g, 0)
        _, release1 = block_worker(g, 1)
        try:
            for p, n in zip(Priority, (1, 2, 3, 4), strict=True):
                for _ in range(n):
                    g.spawn(identity, p, priority=p, worker=0)
            for _ in range(5):
                g.spawn(identity, 1, priority=Priority.HIGH, worker=1)
            for _ in range(6):
                g.spawn(identity, 1, priority=Priority.LOW)  # injection
            snap = g.stats()
            _check_shape(snap, 2)
            w0, w1 = snap["workers"]
            assert w0["pending"] == {"low": 1, "normal": 2, "high": 3, "critical": 4}
            assert w0["pinned"] == 10
            assert w0["running"] == 1  # the blocker
            assert w1["pending"] == {"low": 0, "normal": 0, "high": 5, "critical": 0}
            assert w1["pinned"] == 5
            assert snap["injection"] == {"low": 6, "normal": 0, "high": 0, "critical": 0}
            assert snap["totals"]["pending"] == 21
            assert snap["totals"]["running"] == 2
            assert snap["external"]["spawned"] == 23
        finally:
            release0.set()
            release1.set()


def test_counters_add_up_after_close() -> None:
    n_ok, n_fail, n_cancel = 40, 7, 9
    g = Grid(2)
    try:

        async def inner() -> None:
            # Spawned from a worker: counted on that worker.
            hs = [loopgrid.spawn(identity, i) for i in range(n_ok)]
            await asyncio.gather(*hs)

        outer = g.spawn(inner)
        fails = [g.spawn(_fail) for _ in range(n_fail)]
        cancels = [g.spawn(forever) for _ in range(n_cancel)]
        outer.result(WAIT)
        for h in fails:
            with pytest.raises(ValueError):
                h.result(WAIT)
    finally:
        for h in cancels:
            h.cancel()
        g.close()
    snap = g.stats()
    _check_shape(snap, 2)
    t = snap["totals"]
    spawned = 1 + n_ok + n_fail + n_cancel
    assert t["spawned"] == spawned
    assert t["completed"] == 1 + n_ok
    assert t["failed"] == n_fail
    assert t["cancelled"] == n_cancel
    assert t["completed"] + t["failed"] + t["cancelled"] == spawned
    # A task cancelled while pending never started; everything else did.
    started_cancelled = sum(1 for h in cancels if h.worker is not None)
    assert t["started"] == 1 + n_ok + n_fail + started_cancelled
    assert t["pending"] == 0
    assert t["running"] == 0
    ws = snap["workers"]
    assert sum(w["spawned"] for w in ws) == n_ok
    assert snap["external"]["spawned"] == spawned - n_ok
    for k in COUNTERS:
        if k != "spawned" and k != "cancelled":
            assert t[k] == sum(w[k] for w in ws)
    assert t["cancelled"] == sum(w["cancelled"] for w in ws) + snap["external"]["cancelled"]


def test_counters_only_grow() -> None:
    with Grid(2) as g:
        prev = g.stats()["totals"]
        for _ in range(5):
            hs = [g.spawn(identity, i) for i in range(50)]
            for h in hs:
                h.result(WAIT)
            cur = g.stats()["totals"]
            for k in COUNTERS:
                assert cur[k] >= prev[k]
            assert cur["completed"] >= prev["completed"] + 50
            prev = cur


def test_worker_pending_and_running_properties() -> None:
    with Grid(1) as g:
        _, release = block_worker(g)
        try:
            g.spawn(identity, 1, worker=0)
            g.spawn(identity, 2, worker=0)
            w = g.workers[0]
            assert w.pending == 2
            assert w.running == 1
        finally:
            release.set()
    assert g.workers[0].pending == 0
    assert g.workers[0].running == 0
