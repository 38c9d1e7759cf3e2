"""Spinning workers (loopgrid/idle.py) on real grids.

Where the GIL is off, a worker that runs out of work spins a while before it
parks, and a spawner that trusts a spinner to see its task wakes nobody. These
tests turn spinning on for their grid whatever the build (``max_spinning``;
spinning is only slower where the GIL is on) and lengthen the spin and the
trust, so that what they check does not depend on timing: that a worker out of
work spins and a paused one parks, that spawns beside a spinner wake no parked
worker, that work left to a spinner whose loop a step holds is taken by
another worker through the monitor's watch, and that nothing is lost when many
threads spawn while workers spin and park.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest
from helpers import STRESS_WAIT, WAIT, identity, wait_until

from loopgrid import Grid
from loopgrid.idle import Idle


def _spinning(g: Grid, *, spin: float, trust: float) -> Idle:
    """Let one worker of ``g`` spin, for ``spin`` s, trusted for ``trust`` s."""
    idle = g._idle
    idle.spin = spin
    idle.trust = trust
    idle.max_spinning = 1
    return idle


async def where() -> int:
    """The index of the worker that runs this task."""
    import loopgrid

    return loopgrid.current_worker().index


class _Holder:
    """A task that holds its worker's loop until released (and says where it ran)."""

    def __init__(self) -> None:
        self.started = threading.Event()
        self.release = threading.Event()

    async def hold(self) -> int:
        self.started.set()
        assert self.release.wait(STRESS_WAIT), "the holder was never released"
        return await where()


def test_a_worker_out_of_work_spins_and_parks_once_paused() -> None:
    with Grid(2) as g:
        idle = _spinning(g, spin=60.0, trust=60.0)
        w = g.workers[0]
        assert g.spawn(identity, 1, worker=0).result(WAIT) == 1
        assert wait_until(lambda: w._spinning), "worker 0 did not spin once out of work"
        assert idle.spinning == {w} and not w._parked
        w.pause()
        assert wait_until(lambda: w._parked), "a paused spinner did not park"
        assert not w._spinning and not idle.spinning
        w.resume()
        assert g.spawn(identity, 2, worker=0).result(WAIT) == 2


def test_spawns_beside_a_spinner_wake_no_parked_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    woken: list[Idle] = []
    wake_one = Idle.wake_one

    def counted(self: Idle) -> bool:
        woken.append(self)
        return wake_one(self)

    monkeypatch.setattr(Idle, "wake_one", counted)
    with Grid(3) as g:
        idle = _spinning(g, spin=60.0, trust=60.0)
        assert g.spawn(identity, 0, worker=0).result(WAIT) == 0
        assert wait_until(lambda: g.workers[0]._spinning), "worker 0 did not spin"
        woken.clear()
        for i in range(20):
            assert g.spawn(identity, i).result(WAIT) == i
        assert not [i for i in woken if i is idle], "a spawn woke a worker beside a spinner"


def test_work_left_to_a_spinner_whose_loop_is_held_runs_on_another_worker(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Worker 0 spins, then a step its turn started holds its loop; a spawn
    trusts the spinner (its turn's look is recent) and wakes nobody. The
    monitor's watch must hand the task to worker 1 while worker 0 is still
    held: the monitor's sweep of lost wake-ups, which would also do it, is
    switched off here."""
    monkeypatch.setattr(Idle, "wake_forgotten", lambda self, workers, injection: None)
    holder = _Holder()
    with Grid(2) as g:
        idle = _spinning(g, spin=60.0, trust=0.2)
        assert g.spawn(identity, 0, worker=0).result(WAIT) == 0
        assert wait_until(lambda: g.workers[0]._spinning), "worker 0 did not spin"
        held = g.spawn(holder.hold, worker=0)
        try:
            assert holder.started.wait(WAIT)
            assert g.workers[0]._spinning  # still a spinner: its turn started the holder
            h = g.spawn(where)
            assert h.result(WAIT) == 1, "the task waited for the held spinner"
        finally:
            holder.release.set()
        assert held.result(WAIT) == 0
        assert not idle.owed


def test_work_a_spinners_turn_left_queued_when_it_blocked_runs_on_another_worker(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two tasks left to a spinner: its turn takes the first (one injected
    task a turn while no more are queued than there are workers), which then
    holds its loop. The second is still owed: the turn's look at the queues
    did not settle it, so the monitor's watch hands it to worker 1 (the sweep
    of lost wake-ups is switched off here)."""
    monkeypatch.setattr(Idle, "wake_forgotten", lambda self, workers, injection: None)
    holder = _Holder()
    with Grid(2) as g:
        _spinning(g, spin=60.0, trust=0.2)
        assert g.spawn(identity, 0, worker=0).result(WAIT) == 0
        assert wait_until(lambda: g.workers[0]._spinning), "worker 0 did not spin"
        held = g.spawn(holder.hold)
        h = g.spawn(where)
        try:
            assert holder.started.wait(WAIT)
            assert h.result(WAIT) == 1, "the task waited for the held spinner"
        finally:
            holder.release.set()
        assert held.result(WAIT) == 0


@pytest.mark.parametrize("limit", [1, 2])
def test_nothing_is_lost_while_many_threads_spawn_beside_spinning_workers(limit: int) -> None:
    """Spawns from several threads and from tasks, while workers spin, park
    and are woken (the default spin and trust): every task ends, once."""
    threads, per_thread = 6, 300
    results: list[list[Any]] = [[] for _ in range(threads)]

    async def fan(n: int) -> int:
        import asyncio

        import loopgrid

        return sum(await asyncio.gather(*[loopgrid.spawn(identity, 1) for _ in range(n)]))

    with Grid(4) as g:
        g._idle.max_spinning = limit

        def spawner(k: int) -> None:
            for i in range(per_thread):
                h = g.spawn(fan, 3) if i % 10 == 0 else g.spawn(identity, i)
                results[k].append(h)

        ts = [threading.Thread(target=spawner, args=(k,)) for k in range(threads)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(STRESS_WAIT)
            assert not t.is_alive()
        for k in range(threads):
            for i, h in enumerate(results[k]):
                assert h.result(STRESS_WAIT) == (3 if i % 10 == 0 else i)
        totals = g.stats()["totals"]
    assert totals["completed"] == threads * per_thread * 13 // 10
    assert totals["failed"] == totals["cancelled"] == 0
    assert totals["pending"] == totals["running"] == 0
    assert not g._idle.spinning
