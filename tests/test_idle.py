"""The idle list (loopgrid/idle.py): parked workers, and waking one of them.

Unit tests on stand-in workers: which one a wake-up goes to, that stale,
paused and dead entries are passed over, that a worker is listed at most once
and lists itself again after its entry was taken, and the monitor's sweep of
lost wake-ups; then spinning: the limit, when spawners trust spinners instead
of waking a worker, and the watch over the work they left to them (time is
moved by rewriting the recorded times). The grid-level behaviour (no spawn ever
stranded beside parked workers) is what every other test relies on;
test_monitor.py checks the sweep on a real grid, test_spinning.py spinning.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any

from loopgrid.idle import TRUST, Idle
from loopgrid.runqueue import RunQueue


class _Worker:
    """What Idle reads and calls of a Worker."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._listed = False
        self._parked = True
        self._inert = False
        self._hold = False
        self._spinning = False
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


def _spinning_idle(*workers: _Worker, limit: int = 1) -> tuple[Idle, list[int]]:
    """An idle list that lets ``limit`` workers spin, and the kicks of its watch."""
    idle = _idle(*workers)
    idle.max_spinning = limit
    kicks: list[int] = []
    idle.kick = lambda: kicks.append(1)
    return idle, kicks


def _one_spinning() -> tuple[Idle, _Worker, list[int]]:
    """An idle list with one worker parked and another spinning, and the watch's kicks."""
    parked, spinner = _Worker("parked"), _Worker("spinner")
    idle, kicks = _spinning_idle(parked)
    spinner._parked = False
    assert idle.start_spinning(spinner)  # type: ignore[arg-type]
    return idle, parked, kicks


def test_no_more_workers_spin_than_the_limit() -> None:
    a, b = _Worker("a"), _Worker("b")
    idle, _ = _spinning_idle(limit=1)
    assert idle.start_spinning(a) and a._spinning  # type: ignore[arg-type]
    assert not idle.start_spinning(b) and not b._spinning  # type: ignore[arg-type]
    assert idle.start_spinning(a)  # type: ignore[arg-type]
    idle.stop_spinning(a)  # type: ignore[arg-type]
    assert not a._spinning and not idle.spinning
    assert idle.start_spinning(b) and idle.spinning == {b}


def test_nobody_spins_where_the_limit_is_zero() -> None:
    a = _Worker("a")
    idle = _idle(a)
    assert idle.max_spinning == 0  # until the grid sets it (spin_limit)
    assert not idle.start_spinning(a) and not idle.spinning  # type: ignore[arg-type]


def test_a_spawn_beside_a_spinner_that_looked_lately_wakes_nobody_and_is_owed() -> None:
    idle, parked, kicks = _one_spinning()
    assert not idle.wake_for_work()
    assert parked.woken == 0 and idle.owed and idle.armed and kicks == [1]
    assert not idle.wake_for_work()  # one watch for both: no second kick
    assert parked.woken == 0 and idle.owed and kicks == [1]


def test_a_spinner_whose_last_look_is_old_is_not_trusted() -> None:
    idle, parked, kicks = _one_spinning()
    idle.looked -= 2 * TRUST  # held up since (a blocking step on its loop)
    assert idle.wake_for_work()
    assert parked.woken == 1 and not idle.owed and kicks == []


def test_a_worker_asking_for_help_does_not_count_as_the_spinner_that_will_help() -> None:
    parked, asker, other = _Worker("parked"), _Worker("asker"), _Worker("other")
    idle, _ = _spinning_idle(parked, limit=2)
    asker._parked = other._parked = False
    assert idle.start_spinning(asker)  # type: ignore[arg-type]
    assert idle.wake_for_work(asker)  # type: ignore[arg-type]  # it alone spins: wake
    assert parked.woken == 1
    parked.park(idle)
    assert idle.start_spinning(other)  # type: ignore[arg-type]
    assert not idle.wake_for_work(asker)  # type: ignore[arg-type]  # another will see it
    assert parked.woken == 1


def test_a_look_keeps_what_was_owed_watched_and_renews_the_trust() -> None:
    """A look (a spin's round, a turn) renews the spinners' trust but settles
    nothing: only a look that finds every queue empty does (Worker._spin), so
    the watch goes on, due a trust after the latest look."""
    idle, parked, _ = _one_spinning()
    assert not idle.wake_for_work()
    first = idle.settle_owed()
    assert first is not None
    idle.looked -= TRUST / 2
    idle.look()
    again = idle.settle_owed()
    assert again is not None and idle.owed and idle.armed and parked.woken == 0
    idle.owed = False  # what Worker._spin does when it finds nothing queued
    assert idle.settle_owed() is None
    assert not idle.armed and parked.woken == 0


def test_owed_work_no_look_has_seen_in_time_wakes_a_parked_worker() -> None:
    idle, parked, _ = _one_spinning()
    assert not idle.wake_for_work()
    due = idle.settle_owed()
    assert due is not None and 0 < due <= TRUST
    idle.looked -= 2 * TRUST  # time passes, and the spinner never looks again
    assert idle.settle_owed() is None
    assert parked.woken == 1 and not idle.owed and not idle.armed


_owed_slot: Any = Idle.__dict__["owed"]  # the slot's own descriptor


class _SpawnLandsMidWatch(Idle):
    """An idle list whose ``owed`` a spawn writes right after the watch first reads it."""

    __slots__ = ("reads",)
    reads: int

    @property
    def owed(self) -> bool:
        value: bool = _owed_slot.__get__(self, Idle)
        self.reads += 1
        if self.reads == 1:
            _owed_slot.__set__(self, True)  # the spawn, just then
        return value

    @owed.setter
    def owed(self, value: bool) -> None:
        _owed_slot.__set__(self, value)


def test_work_owed_as_the_watch_ends_keeps_it_watching() -> None:
    """The watch clears ``armed``, then reads ``owed`` again: a spawn that saw
    the watch still armed (and so kicked nobody) is not left unwatched."""
    parked = _Worker("parked")
    idle = _SpawnLandsMidWatch([parked])  # type: ignore[list-item]
    idle.max_spinning = 1
    idle.armed = True
    idle.looked = time.perf_counter()  # a spinner looked just now: the spawn trusted it
    idle.reads = 0
    due = idle.settle_owed()
    assert due is not None and idle.armed  # still watching what was owed
    assert idle.reads >= 2 and parked.woken == 0
