"""The idle list (loopgrid/idle.py): parked workers, and waking one of them.

Unit tests on stand-in workers: which one a wake-up goes to, that stale,
paused and dead entries are passed over, that a worker is listed at most once
and lists itself again after its entry was taken, and the monitor's sweep of
lost wake-ups. The grid-level behaviour (no spawn ever stranded beside parked
workers) is what every other test relies on; test_monitor.py checks the sweep
on a real grid.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from loopgrid.idle import Idle
from loopgrid.runqueue import RunQueue


class _Worker:
    """What Idle reads and calls of a Worker."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._listed = False
        self._parked = True
        self._inert = False
        self._hold = False
        self._local: deque[Any] = deque()
        self._pinned: deque[Any] = deque()
        self.woken = 0

    def _wake(self) -> bool:
        if self._parked:
            self._parked = False
            self.woken += 1
            return True
        return False

    def park(self, idle: Idle) -> None:  # what Worker._park does first
        self._parked = True
        idle.park(self)  # type: ignore[arg-type]


def _idle(*workers: _Worker) -> Idle:
    return Idle(workers)  # type: ignore[arg-type]


def test_every_worker_starts_listed_and_the_last_parked_is_woken_first() -> None:
    a, b, c = _Worker("a"), _Worker("b"), _Worker("c")
    idle = _idle(a, b, c)
    assert list(idle.sleepers) == [a, b, c] and all(w._listed for w in (a, b, c))
    assert idle.wake_one()
    assert (a.woken, b.woken, c.woken) == (0, 0, 1) and not c._listed
    assert idle.wake_one() and b.woken == 1
    assert idle.wake_one() and a.woken == 1
    assert not idle.wake_one() and not idle.sleepers


def test_stale_paused_and_dead_entries_are_passed_over() -> None:
    running, paused, parked = _Worker("running"), _Worker("paused"), _Worker("parked")
    idle = _idle(parked, paused, running)
    running._parked = False  # woken by a push of its own: its entry is stale
    paused._inert = True  # a paused (or dead) worker starts nothing
    assert idle.wake_one()
    assert (running.woken, paused.woken, parked.woken) == (0, 0, 1)
    assert not idle.sleepers and not running._listed and not paused._listed


def test_a_worker_is_listed_once_and_again_after_its_entry_was_taken() -> None:
    w = _Worker("w")
    idle = _idle(w)
    w.park(idle)  # already listed: no second entry
    assert list(idle.sleepers) == [w]
    assert idle.wake_one() and not w._parked
    w.park(idle)  # parks again: its entry was taken, so it lists itself
    assert list(idle.sleepers) == [w] and w._listed
    w._parked = False  # woken by a push, still listed
    w.park(idle)
    assert list(idle.sleepers) == [w]


def test_a_waker_that_takes_the_entry_of_a_worker_about_to_park_still_wakes_it() -> None:
    """The listing handshake: the worker set _parked, read _listed (True, a
    stale entry) and so did not list itself; the waker pops that entry, clears
    _listed and then reads _parked: it sees the worker parked and wakes it."""
    w = _Worker("w")
    idle = _idle(w)
    w._parked = False  # running, with its stale entry still listed
    w._parked = True  # parks: _listed is True, so park() adds nothing
    idle.park(w)  # type: ignore[arg-type]
    assert list(idle.sleepers) == [w]
    assert idle.wake_one() and w.woken == 1


def test_the_monitor_sweep_wakes_parked_workers_with_work_queued() -> None:
    idle_w, busy, held, pinned = _Worker("a"), _Worker("b"), _Worker("c"), _Worker("d")
    busy._parked = False
    busy._local.append(object())
    held._hold = True
    held._local.append(object())
    pinned._pinned.append(object())
    idle = _idle(idle_w, busy, held, pinned)
    idle.wake_forgotten([idle_w, busy, held, pinned], RunQueue())  # type: ignore[list-item]
    assert [w.woken for w in (idle_w, busy, held, pinned)] == [0, 0, 0, 1]
    injection = RunQueue()
    injection.levels[1].append(object())  # type: ignore[arg-type]
    idle.wake_forgotten([idle_w, busy, held, pinned], injection)  # type: ignore[list-item]
    assert [w.woken for w in (idle_w, busy, held, pinned)] == [1, 0, 0, 1]
