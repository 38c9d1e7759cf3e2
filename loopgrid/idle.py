"""Idle workers, and waking one: where a push meets a parked dispatcher (Tokio's ``idle.rs``).

A worker's dispatcher that finds nothing to start *parks*: it stops
rescheduling itself, and whoever queues work for it later wakes it with one
``call_soon_threadsafe`` (``Worker._wake``). A grid keeps the parked workers
in an :class:`Idle` list, so that work any worker may take (injected,
stealable or shed by the monitor) wakes one of them without looking at every
worker: :meth:`Idle.wake_one` pops the most recently parked (Go's
``pidleget``), which is also the one most likely to find its caches warm.

Why no wake-up is lost. There are four handshakes, each between a writer
that writes its flag and then reads the other side's, so that of two racing
sides at least one sees the other:

* **Push vs. park, on one worker.** A pusher pushes its task, then reads the
  worker's ``_parked``; the owner sets ``_parked`` (and lists itself, below),
  then looks at every queue once more (``Worker._park``). Either the pusher
  sees ``_parked`` and wakes it, or the owner sees the task and runs another
  turn. Both may happen: one spurious turn.
* **Listing vs. popping.** A parking worker sets ``_parked``, then reads its
  ``_listed`` and, if False, sets it and pushes itself on :attr:`Idle.sleepers`;
  a waker pops an entry, clears its ``_listed``, then reads ``_parked``. Either
  the waker sees ``_parked`` and wakes it, or the worker sees ``_listed``
  cleared and lists itself again. An entry can be stale (its worker was woken
  by a push of its own, and is running): the waker pops the next one. A worker
  is listed at most once, so the list never holds more than the grid's
  workers.
* **Work vs. the idle hint.** Spawns read the list's length (:attr:`Idle.sleepers`
  as a bool) after pushing, and wake one worker only when it is non-empty: a
  worker that lists itself after that read re-checks the queues itself (the
  first handshake), so the hint may skip a wake-up but never strands work.
* **Work vs. a spinning worker** (free-threaded builds only, below). A
  spawner that trusts a spinner to see its task wakes nobody; the spinner,
  before it parks, leaves :attr:`Idle.spinning` and then parks as above,
  re-checking every queue. Either the spawner's look came first, and the
  spinner's re-check sees the task, or it came after, and sees no spinner.

**Spinning** (Go's spinning Ms, Tokio's searching workers). Where the GIL is
off, a worker that runs out of work, with no task of its own running, does
not park at once: for up to :attr:`Idle.spin` seconds (:data:`SPIN`) it keeps
coming back round its loop to look at every queue (``Worker._spin``), and a
spawner that sees a spinner wakes nobody. Without it, a thread spawning a
steady stream of small tasks onto a grid of many loops paid a wake-up (a
write to a loop's self-pipe, and the woken thread's start) for nearly every
task: the workers emptied the queue as fast as it filled, so each spawn found
them all parked, and the one it woke ran its task and parked again (3.13t, 16
loops on 2 cores: 13,101 wake-ups for 20,000 spawns from a thread, at
0.37-0.46x the rate of one loop; ``bench/notes/spinning.md``). At most
:attr:`Idle.max_spinning` workers spin at once (half the CPUs, at least one,
as Go spins at most half as many Ms as there are busy Ps): a spinner holds a
CPU. Where the GIL is on, nobody spins: a spinning loop would take the GIL
from the spawner every round, and wake-ups are rare there (the spawner,
holding the GIL, seldom finds a worker parked: 25 for the same 20,000 spawns
on 3.11).

A spinner that finds work stays a spinner through the turns that run it, and
spins again once out of work: it is awake and comes back to the queues soon.
Only its own backlog makes it ask for help: a turn that leaves work queued
wakes a parked worker unless *another* spinner will see it.

**Trust, and the watchdog.** Unlike Go's spinning M, a spinner here runs user
code between two looks (its turns start tasks; its loop runs their steps),
and one step may block its loop for seconds. Two things keep new work from
waiting behind it:

* spinners vouch for themselves only while their looks are recent: each look
  (a spin's round, the start of a turn) writes :attr:`Idle.looked`, and a
  spawner trusts them while the last look is at most :attr:`Idle.trust`
  (:data:`TRUST`) old, and otherwise wakes a parked worker as if nobody
  spun. A turn of small tasks is over well within it (a turn stops starting
  tasks after ``worker.CHAIN_TURN``, 0.5 ms), and the next look renews it;
* a spawner that trusted them notes the work as *owed* (:attr:`Idle.owed`)
  and makes sure the grid's monitor is watching (:attr:`Idle.armed`: one
  kick of the monitor thread per watch, not per spawn). Only a spin's look
  that finds every queue empty clears ``owed``: a turn may take part of what
  is queued and then block on a task it starts. The monitor comes back when
  the trust lapses: if the spinners have not looked since (a step holds
  them), it wakes a parked worker for what is owed (:meth:`Idle.settle_owed`);
  while they go on looking it watches on. So a task spawned beside a spinner
  that a step holds waits at most about :data:`TRUST` longer than one spawned
  onto parked workers, never until the spinner's loop is free again.

Each handshake needs sequentially consistent reads and writes of plain
attributes. The GIL gives that (any thread switch is a full barrier); on
free-threaded builds the deque operations are (they take the deque's lock)
but a bare attribute read is not guaranteed to see another thread's earlier
write. Rather than bet on each build's memory model, the monitor calls
:meth:`Idle.wake_forgotten` every tick: a parked worker with work queued is
woken, so a lost wake-up costs at most one tick, never a task stuck in a queue.

Thread ownership: :attr:`Idle.sleepers` is a deque pushed by parking workers
(each only itself, on its own thread) and popped by any thread (atomic
operations); a worker's ``_listed`` is written by its owner when it lists
itself and by whoever pops its entry, as described above. :attr:`Idle.spinning`
is a set to which a worker adds and from which it removes only itself, on its
own thread (atomic operations), read by any thread; a worker's ``_spinning``
says whether it is in it (its owner writes both). :attr:`Idle.looked` is
written by spinners; :attr:`Idle.owed` and :attr:`Idle.armed` are set by
spawners and by a spinner whose look found work while some was owed
(:meth:`Idle.owe`), and cleared, ``owed`` by a spinner's look that found
nothing and by the monitor, ``armed`` by the monitor; all are read by any
thread. A stale read costs a spurious wake-up
or a watch of the monitor that finds nothing owed, never a lost task: the
monitor's :meth:`Idle.wake_forgotten` sweep stays the last resort.
"""

from __future__ import annotations

import os
import sys
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .runqueue import RunQueue
    from .worker import Worker

__all__ = ["SPIN", "TRUST", "Idle", "spin_limit"]

#: Seconds a worker that ran out of work spins before it parks (free-threaded
#: builds). About what a wake-up costs there (a self-pipe write and a thread's
#: start: 20-50 us on the 2-core machine of ``bench/RESULTS.md``), so that a
#: spin in vain costs at most the wake-up it could have saved, the classic
#: choice for spin-then-block.
SPIN = 50e-6

#: Seconds since a spinner's last look at the queues within which spawners
#: trust spinners to see new work, and after which the monitor's watch wakes a
#: parked worker for work no look has seen (see the module docstring). Longer
#: than a turn (``worker.CHAIN_TURN``, 0.5 ms, unless a step blocks) and many
#: rounds of a spin: where loops outnumber cores a spinner's thread also loses
#: its CPU now and then (3.13t, 16 loops on 2 cores, trusting a turn's look
#: for 0.1 ms: no gain; 0.3 ms: part of it; 1 ms: all; see
#: ``bench/notes/spinning.md``). It is about what a task spawned beside a
#: spinner that a blocking step holds may wait more than one spawned onto
#: parked workers.
TRUST = 0.001

_perf_counter = time.perf_counter


def spin_limit() -> int:
    """How many idle workers may spin at once: half the CPUs where the GIL is off, else 0.

    Asked once a grid's loops have started, since importing an extension not
    marked safe without the GIL (an event loop's, say) turns it back on.
    """
    is_gil_enabled = getattr(sys, "_is_gil_enabled", None)
    if is_gil_enabled is None or is_gil_enabled():
        return 0
    return max(1, (os.cpu_count() or 1) // 2)


def _no_watch() -> None:
    """What :attr:`Idle.kick` does until the grid's monitor runs (nobody spins then)."""


class Idle:
    """The parked workers of one grid (see the module docstring)."""

    __slots__ = (
        "armed",
        "kick",
        "looked",
        "max_spinning",
        "owed",
        "sleepers",
        "spin",
        "spinning",
        "trust",
    )

    def __init__(self, workers: Sequence[Worker]) -> None:
        #: Parked workers, most recently parked last; entries may be stale.
        #: Its truth value is the grid's hint that some worker may be idle.
        self.sleepers: deque[Worker] = deque()
        for w in workers:  # every worker starts parked
            w._listed = True
            self.sleepers.append(w)
        #: Workers spinning now, and how many may (0, nobody, until the grid
        #: sets it from :func:`spin_limit` once its monitor runs).
        self.spinning: set[Worker] = set()
        self.max_spinning = 0
        #: :data:`SPIN` and :data:`TRUST`, for this grid (tests lengthen them).
        self.spin = SPIN
        self.trust = TRUST
        #: When a spinner last looked at the queues (``time.perf_counter``).
        self.looked = 0.0
        #: Whether a spawner trusted the spinners since their last look (work
        #: owed), and whether the monitor watches for it.
        self.owed = False
        self.armed = False
        #: Asks the monitor to watch the owed work (``Monitor.kick``).
        self.kick: Callable[[], None] = _no_watch

    def start_spinning(self, w: Worker) -> bool:
        """Count ``w`` as spinning, if fewer than :attr:`max_spinning` are; its owner thread.

        A worker already spinning goes on. Either way spawners trust it from
        now on, for its first look comes in its loop's next round; owed work
        stays owed until that look (:meth:`look`) is made.
        """
        if not w._spinning:
            spinning = self.spinning
            if len(spinning) >= self.max_spinning:
                return False
            w._spinning = True
            spinning.add(w)
        self.looked = _perf_counter()
        return True

    def look(self) -> None:
        """A spinner is about to look at the queues (a spin's round, a turn); its thread.

        Spawners trust the spinners from now for :attr:`trust` seconds. What is
        owed stays owed: a turn may start a task that holds its loop before
        it has taken everything queued. Only a spin's look that finds every
        queue empty settles it (``Worker._spin``).
        """
        self.looked = _perf_counter()

    def owe(self) -> None:
        """Note work left to the spinners, and make sure the monitor watches it; any thread."""
        self.owed = True
        if not self.armed:
            self.armed = True
            self.kick()

    def stop_spinning(self, w: Worker) -> None:
        """``w`` spins no more (it parks, is paused or died); its owner thread."""
        if w._spinning:
            w._spinning = False
            self.spinning.discard(w)

    def park(self, w: Worker) -> None:
        """List ``w``, which has just set its ``_parked``; its owner thread only."""
        if not w._listed:
            w._listed = True
            self.sleepers.append(w)

    def wake_one(self) -> bool:
        """Wake one parked worker that may start work; any thread.

        Returns whether one was woken. Paused and dead workers are skipped
        (and unlisted: a paused one lists itself again when it next parks).
        """
        sleepers = self.sleepers
        while True:
            try:
                w = sleepers.pop()
            except IndexError:
                return False
            w._listed = False
            if w._parked and not w._inert and w._wake():
                return True

    def wake_for_work(self, asker: Worker | None = None) -> bool:
        """Wake one parked worker for work just queued, unless a spinner will see it; any thread.

        ``asker``: the worker that queued the work, from its own thread (a
        task's spawn, a turn that left a backlog); it is busy, so it does not
        count as the spinner that will see the work. Returns whether a worker
        was woken. Trusting the spinners, the work is owed and the monitor
        watches for it (see the module docstring).
        """
        spinning = self.spinning
        if (
            spinning
            and _perf_counter() - self.looked <= self.trust
            and (asker is None or not asker._spinning or len(spinning) > 1)
        ):
            self.owe()
            return False
        return self.wake_one()

    def settle_owed(self) -> float | None:
        """The monitor's watch over owed work: seconds until it is due, or None when settled.

        Due once the spinners' trust lapses (:attr:`trust` after their last
        look) with the work still owed (no look since): a parked worker is
        woken for it. The watch ends when nothing is owed; ``armed`` is cleared
        first and ``owed`` read again, so that work owed meanwhile, whose
        spawner saw the watch still armed and kicked nobody, is not left
        unwatched.
        """
        while True:
            if self.owed:
                due = self.looked + self.trust - _perf_counter()
                if due > 0:
                    return due
                self.owed = False
                self.wake_one()
                continue
            self.armed = False
            if not self.owed:
                return None
            self.armed = True

    def wake_forgotten(self, workers: Sequence[Worker], injection: RunQueue) -> None:
        """Wake every parked worker that has work queued; the monitor, every tick."""
        injected = len(injection)
        for w in workers:
            if w._parked and not w._hold and (injected or len(w._local) or len(w._pinned)):
                w._wake()
