"""GIL fairness between loops: a busy loop lets waiting threads in, on a timer.

The convoy effect. A loop that runs many short callbacks goes back to its
selector between them, and the selector call (``epoll_wait`` with a zero
timeout, since callbacks are ready) releases the GIL and takes it back at
once. A thread waiting for the GIL is woken by each such release, but the busy
thread has retaken the GIL before the waiter is scheduled; the waiter then
waits again, and CPython restarts its wait, so the switch interval (5 ms)
that would force the busy thread to hand over never runs out. Measured here
(Python 3.11 and 3.13, uvloop, 2 cores): a worker whose task computes in 2 ms
slices with an ``await asyncio.sleep(0)`` between them kept a 1 ms ticker on
another worker from running for 19 seconds, and the grid's monitor with it.
Slices longer than the switch interval do not starve anyone: the interpreter
forces the switch after 5 ms.

The remedy is to lose that race on purpose, now and then. Each worker of a
grid with several workers runs :class:`Fairness`, a loop timer. Every
:data:`BUSY_PERIOD` seconds it looks at how much CPU time its thread used since
the last look; if the loop was busy (more than :data:`BUSY_SHARE` of the wall
time), it sleeps :data:`YIELD` seconds with the GIL released, long enough for a
woken waiter to take it. An idle loop looks only every :data:`IDLE_PERIOD`
seconds and never sleeps. What it buys, on the benchmark above: the ticker's
p99 lateness falls from seconds to about 10 ms (``bench/bench_isolation.py``).
It cannot help against a single callback that computes for long: only the
interpreter can interrupt that (after the switch interval), or a
free-threaded build, where there is no GIL and this timer does not run.

What it costs is the sleep: asked for 100 us, it takes 150-200 us on a busy
machine (timer slack and the wake-up), 3-4% of a busy loop's time, and more
in requests per second (the front loop of ``loopgrid serve``, busy with short
requests beside idle workers, served 0.78x single uvicorn's ``/ping`` with it
and 0.86-0.92x without, ``bench/notes/web.md`` round 8). So a yield that no
other thread used is not repeated at once: after one, busy looks skip their
yield 1, then 3, 7 and at most :data:`MAX_SKIP` times (Ethernet's backoff);
one that was used, or an idle look, starts again at every busy look. *Used*
means that the process's other threads ran for more than :data:`USED` CPU
seconds while this one slept (``time.process_time`` counts every thread): a
waiter that takes the GIL runs. A thread that starts waiting while the yields
are spaced out waits for the next one, up to ``(MAX_SKIP + 1) *
BUSY_PERIOD`` (80 ms) the first time, or until the interpreter forces a
switch, which it does whenever the busy loop's callbacks outlast the switch
interval; from then on it is let in every :data:`BUSY_PERIOD` while it keeps
asking. Threads that run without the GIL (a compression, a hash) count as
users too: they keep the yields coming, which costs time, not fairness.

Thread ownership: a worker's :class:`Fairness` is used on that worker's thread
only.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable

__all__ = [
    "BUSY_PERIOD",
    "BUSY_SHARE",
    "IDLE_PERIOD",
    "MAX_SKIP",
    "USED",
    "YIELD",
    "Fairness",
    "needed",
]

#: Seconds between two looks while the loop is busy (the default switch interval).
BUSY_PERIOD = 0.005
#: Seconds between two looks while it is idle.
IDLE_PERIOD = 0.05
#: Share of wall time spent on this thread's CPU above which the loop is busy.
BUSY_SHARE = 0.5
#: Seconds a busy loop sleeps with the GIL released at each look.
YIELD = 0.0001
#: Busy looks that skip their yield, at most, after yields nobody used.
MAX_SKIP = 15
#: CPU seconds the other threads must run during a yield for it to count as used.
USED = 0.000005

_thread_time = time.thread_time
_process_time = time.process_time
_perf_counter = time.perf_counter
_sleep = time.sleep


def needed(workers: int) -> bool:
    """Whether a grid of ``workers`` loops should run the fairness timer."""
    gil = getattr(sys, "_is_gil_enabled", None)
    return workers > 1 and (gil is None or bool(gil()))


class Fairness:
    """The fairness timer of one worker's loop (see the module doc)."""

    __slots__ = (
        "_backoff",
        "_cpu",
        "_cpu_clock",
        "_handle",
        "_loop",
        "_process_clock",
        "_skip",
        "_sleep",
        "_wall",
        "_wall_clock",
        "yields",
    )

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        *,
        cpu_clock: Callable[[], float] = _thread_time,
        wall_clock: Callable[[], float] = _perf_counter,
        sleep: Callable[[float], object] = _sleep,
        process_clock: Callable[[], float] = _process_time,
    ) -> None:
        # The clocks and the sleep can be replaced, so that a test can check
        # the decision without timing anything.
        self._loop = loop
        self._cpu_clock = cpu_clock
        self._wall_clock = wall_clock
        self._sleep = sleep
        self._process_clock = process_clock
        self._skip = 0  # busy looks left that skip their yield
        self._backoff = 0  # what _skip was set to after the last yield
        self._cpu = cpu_clock()
        self._wall = wall_clock()
        self._handle: asyncio.TimerHandle | None = None
        #: How many times the loop gave the GIL away (owner thread writes).
        self.yields = 0

    def start(self) -> None:
        """Begin looking; on the loop's thread, before or while it runs."""
        self._handle = self._loop.call_later(IDLE_PERIOD, self._look)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _look(self) -> None:
        busy = self.decide()
        self._handle = self._loop.call_later(BUSY_PERIOD if busy else IDLE_PERIOD, self._look)

    def decide(self) -> bool:
        """One look: was the loop busy since the last? Then give the GIL away,
        unless the last yields went unused (see the module doc).

        Busy means this thread used more than :data:`BUSY_SHARE` of the wall
        time since the last look on the CPU; the sleep of :data:`YIELD` lets a
        waiting thread take the GIL. Returns whether the loop was busy (the
        next look comes after :data:`BUSY_PERIOD`, else :data:`IDLE_PERIOD`).
        """
        cpu = self._cpu_clock()
        wall = self._wall_clock()
        busy = cpu - self._cpu > BUSY_SHARE * (wall - self._wall)
        if not busy:
            self._skip = self._backoff = 0
        elif self._skip:
            self._skip -= 1
        else:
            self._give_way(cpu)
        self._cpu = self._cpu_clock()
        self._wall = self._wall_clock()
        return busy

    def _give_way(self, cpu: float) -> None:
        """Sleep with the GIL released; space the next yields out if no other
        thread ran meanwhile. ``cpu`` is this thread's CPU clock, just read."""
        others = self._process_clock() - cpu
        self._sleep(YIELD)
        self.yields += 1
        others = self._process_clock() - self._cpu_clock() - others
        self._backoff = 0 if others > USED else min(2 * self._backoff + 1, MAX_SKIP)
        self._skip = self._backoff
