"""Property: random spawn / cancel / await programs run concurrently from plain
threads, foreign event loops and grid tasks; at the end every handle is in
exactly one final state, consistent with what was done to it, every done
callback ran exactly once, and the counters add up."""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field
from typing import Any

from helpers import WAIT, close_or_fail, grid_threads
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import loopgrid
from loopgrid import Grid, TaskState

KINDS = ("ret", "raise", "yield", "block")
FINAL = (TaskState.COMPLETED, TaskState.FAILED, TaskState.CANCELLED)


async def behave(kind: str, value: int) -> int:
    if kind == "raise":
        raise ValueError(value)
    if kind == "yield":
        for _ in range(3):
            await asyncio.sleep(0)
    elif kind == "block":
        await asyncio.Event().wait()
    return value


@dataclass
class Rec:
    handle: Any
    kind: str
    value: int
    cancelled_by_us: bool = False
    outcomes: list[tuple[str, Any]] = field(default_factory=list)
    early_calls: list[int] = field(default_factory=list)


spawn_op = st.tuples(
    st.just("spawn"),
    st.sampled_from(KINDS),
    st.integers(0, 10_000),
    st.integers(0, 3),
    st.one_of(st.none(), st.integers(0, 1)),
)
index_op = st.tuples(st.sampled_from(["cancel", "await"]), st.integers(0, 50))
program = st.lists(st.one_of(spawn_op, index_op), max_size=12)
programs = st.lists(
    st.tuples(st.sampled_from(["thread", "loop", "grid"]), program), min_size=1, max_size=4
)


def _outcome_of_sync(h: Any) -> tuple[str, Any]:
    try:
        return ("ok", h.result(WAIT))
    except ValueError as exc:
        return ("exc", exc.args[0])
    except asyncio.CancelledError:
        return ("cancelled", None)


async def _outcome_of_await(h: Any) -> tuple[str, Any]:
    try:
        return ("ok", await h)
    except ValueError as exc:
        return ("exc", exc.args[0])
    except asyncio.CancelledError:
        return ("cancelled", None)


def _step_sync(op: tuple[Any, ...], recs: list[Rec], spawn: Any) -> Rec | None:
    """Perform one non-await op; return the target of an await op, if any."""
    if op[0] == "spawn":
        _, kind, value, prio, pin = op
        rec = Rec(spawn(behave, kind, value, priority=prio, worker=pin), kind, value)
        recs.append(rec)
        return None
    if not recs:
        return None
    rec = recs[op[1] % len(recs)]
    if op[0] == "cancel":
        rec.handle.cancel()
        rec.cancelled_by_us = True
        return None
    # await: a "block" task only ends once cancelled.
    if rec.kind == "block" and not rec.cancelled_by_us:
        return None
    return rec


def run_in_thread(grid: Grid, ops: list[Any], recs: list[Rec]) -> None:
    lock = threading.Lock()
    for op in ops:
        target = _step_sync(op, recs, grid.spawn)
        if op[0] == "spawn":
            rec = recs[-1]

            def early(_: Any, rec: Rec = rec) -> None:
                with lock:
                    rec.early_calls.append(1)

            rec.handle.add_done_callback(early)  # registered from a plain thread
        if target is not None:
            target.outcomes.append(_outcome_of_sync(target.handle))


async def run_in_loop(spawn: Any, ops: list[Any], recs: list[Rec]) -> None:
    for op in ops:
        target = _step_sync(op, recs, spawn)
        if target is not None:
            target.outcomes.append(await _outcome_of_await(target.handle))


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(programs=programs)
def test_random_programs_end_in_exactly_one_state(programs: list[Any]) -> None:
    all_recs: list[list[Rec]] = [[] for _ in programs]
    grid = Grid(2)
    try:
        threads: list[threading.Thread] = []
        on_grid: list[Any] = []
        for (where, ops), recs in zip(programs, all_recs, strict=True):
            if where == "thread":
                threads.append(
                    threading.Thread(target=run_in_thread, args=(grid, ops, recs), daemon=True)
                )
            elif where == "loop":
                threads.append(
                    threading.Thread(
                        target=asyncio.run,
                        args=(run_in_loop(grid.spawn, ops, recs),),
                        daemon=True,
                    )
                )
            else:
                on_grid.append(grid.spawn(run_in_loop, loopgrid.spawn, ops, recs))
        for t in threads:
            t.start()
        for t in threads:
            t.join(WAIT)
            assert not t.is_alive(), "an executor never finished (a handle never resolved?)"
        for h in on_grid:
            assert h.result(WAIT) is None
        recs_flat = [r for recs in all_recs for r in recs]
        # Unblock what only a cancel can end, then count callbacks from here.
        late_calls = [0] * len(recs_flat)
        lock = threading.Lock()
        for i, r in enumerate(recs_flat):
            if r.kind == "block" and not r.cancelled_by_us:
                r.handle.cancel()
                r.cancelled_by_us = True

            def late(_: Any, i: int = i) -> None:
                with lock:
                    late_calls[i] += 1

            r.handle.add_done_callback(late)
    finally:
        close_or_fail(grid)
    assert grid_threads() == []

    for i, r in enumerate(recs_flat):
        h = r.handle
        st_ = h.state
        assert st_ in FINAL, r
        assert h.done()
        assert h.cancelled() == (st_ is TaskState.CANCELLED)
        assert late_calls[i] == 1, r
        assert sum(r.early_calls) in (0, 1)
        if st_ is TaskState.COMPLETED:
            assert r.kind in ("ret", "yield"), r
            assert h.result() == r.value
            expected = ("ok", r.value)
        elif st_ is TaskState.FAILED:
            assert r.kind == "raise", r
            assert h.exception().args == (r.value,)
            expected = ("exc", r.value)
        else:
            assert r.cancelled_by_us, r  # nobody else cancels, close() drains
            expected = ("cancelled", None)
        assert all(o == expected for o in r.outcomes), r
        if h.worker is not None and h.pinned is not None:
            assert h.worker == h.pinned
    for (where, _), recs in zip(programs, all_recs, strict=True):
        if where == "thread":
            assert all(sum(r.early_calls) == 1 for r in recs)

    totals = grid.stats()["totals"]
    spawned = len(recs_flat) + len(on_grid)
    assert totals["spawned"] == spawned
    assert totals["completed"] + totals["failed"] + totals["cancelled"] == spawned
    n_cancelled = sum(1 for r in recs_flat if r.handle.cancelled())
    assert totals["cancelled"] == n_cancelled
    assert totals["pending"] == totals["running"] == 0
