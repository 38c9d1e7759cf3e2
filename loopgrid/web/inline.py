"""Which routes run inline on the front loop: learned from how they ran.

Why: with ``dispatch="request"`` every request crosses from the front loop to
a worker and back. For a handler of a few microseconds (a health check, a
cached lookup) that crossing is most of its cost, and on a GIL build the
threads that hand the GIL to each other for it are the rest: such requests
ran at 0.4x the requests/s of a single uvicorn worker. Running them on the
front loop itself, as uvicorn would, costs nothing extra; running there a
handler that blocks would stall every connection, which is what request
dispatch is for. So the front learns, route by route (method and path), and
reacts when it guessed wrong, somewhat as Go's sysmon reacts to a goroutine
that holds its thread: a route starts out dispatched; after :data:`PROMOTE`
dispatched runs in a row that were all *short* it runs inline; an inline run
that was not short sends it back to the grid, and it must then prove itself
four times as long (after four returns, it stays dispatched for good).

*Short* means: less than :data:`CPU_LIMIT` of the thread's CPU time and less
than :data:`WALL_LIMIT` from start to end. CPU time, because the wall time of
a short handler on a GIL build includes the waits for the GIL, several
milliseconds while another thread computes; the wall limit, because a
blocking call that sleeps (``time.sleep``, a synchronous driver) uses no CPU.
An inline run over :data:`HOG_LIMIT` of CPU sends its route back at once
(as soon as that is certain: see below); one
that is merely not short counts a strike, and :data:`STRIKES` strikes send it
back, each :data:`PROMOTE` short runs forgiving one: a route that is long more
often than once in :data:`PROMOTE` runs goes back, one that is long more
rarely stays, and holds the front each time it is. One long run is not enough,
because a short handler is long now and then through no fault of its own: a
GIL wait too many, a cyclic garbage collection that happened to start in it,
or a virtual machine taking its core away (all counted as that run's time; on
a busy 2-core VM, ``/ping`` of a few microseconds went over 1 ms of CPU every
few seconds, and was sent back for good within ten). A route whose runs await anything slow never
looks short, so it stays dispatched, which is also where it belongs.

How an inline run is timed, on the front's hot path: the clock
(``perf_counter``) at its start and end, read in user space; the thread's CPU
time only where it is needed, since reading it is a system call, which cost
an inline ``/ping`` several percent of its CPU time (``bench/notes/web.md``,
rounds 6 and 8). A run shorter than :data:`CPU_LIMIT` from start to end was
short: a thread's CPU time grows no faster than the clock. For a longer run,
the CPU time is read at its end, against a *reading* (the CPU time and the
clock) taken at most :data:`FRESH` seconds before the run started and shared
by the runs that start meanwhile. A run's CPU time is what the front thread
ran from its start to its end (a run that awaits is charged what the front
ran meanwhile). What the front ran from the reading on is an upper bound of
it; less the clock's time from the reading to the run's start, a lower
bound (the front cannot have run longer than that before the run). A run is
judged on what is certain: a lower bound over :data:`HOG_LIMIT` sends it
back, over :data:`CPU_LIMIT` is a strike; an upper bound under
:data:`CPU_LIMIT` is short. Between the two it is not judged, and the
route's next run is timed exactly, with a reading at its start (as is the
run after a strike): a route is never charged for what the
front ran before it, and a hog is sent back at once if it ran over
:data:`HOG_LIMIT` plus :data:`FRESH`, else one run later. So most runs read
no CPU clock at all, and the front reads it about once per :data:`FRESH`
while busy (it read it every 0.25 ms before, one request in four at 15k
requests/s).

What changes for a handler that runs inline: it runs on the front loop's
thread, not on a worker, so ``loopgrid.current_worker()`` raises
:class:`~loopgrid.NotOnGridError` there (``loopgrid.spawn()`` and
``loopgrid.current_grid()`` work: the front thread belongs to the grid); a
route that called ``current_worker()`` on a worker is never promoted. It is
not a grid task: grid stats and traces do not see it, and route priorities do
not apply to it. It sees the front loop's own lifespan state and
``app.state`` (with ``lifespan="loop"``, each front loop runs the lifespan
too, so whatever it holds is bound to the front's loop, not a worker's).

Thread ownership: each front loop has a :class:`Routes` of its own (with
several fronts, each learns alone); it and its :class:`Route` entries belong
to that front loop's thread, which alone reads and updates them; a dispatched
run's measurements are written by its worker before the task ends and read by
the front after it awaited the task's handle.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from .. import logs
from ..worker import _current

__all__ = [
    "CPU_LIMIT",
    "FRESH",
    "HOG_LIMIT",
    "MAX_ROUTES",
    "PROMOTE",
    "STRIKES",
    "WALL_LIMIT",
    "Reading",
    "Route",
    "Routes",
    "run_timed",
]

#: Dispatched runs in a row, each short, after which a route runs inline.
PROMOTE = 16
#: Thread CPU seconds under which a run counts as short.
CPU_LIMIT = 0.001
#: Seconds from start to end under which a run counts as short.
WALL_LIMIT = 0.010
#: Thread CPU seconds over which one inline run sends its route back at once.
HOG_LIMIT = 0.010
#: Inline runs that were not short (but under :data:`HOG_LIMIT`) that send a
#: route back; each :data:`PROMOTE` short runs forgive one.
STRIKES = 3
#: Routes tracked; requests of others are dispatched, untracked. A route is a
#: method and a path as requested, so ``/users/{id}`` is learned id by id.
MAX_ROUTES = 4096
#: A route sent back this many times stays dispatched.
_MAX_DEMOTIONS = 4
#: Seconds for which one reading of the front thread's CPU time serves as the
#: start of the inline runs that begin after it (see the docstring).
FRESH = 0.002

_thread_time = time.thread_time
_perf_counter = time.perf_counter


class Route:
    """One route's record; see the module docstring."""

    __slots__ = ("demotions", "inline", "key", "need", "precise", "run", "shorts", "strikes")

    def __init__(self, key: tuple[str, str]) -> None:
        self.key = key
        self.inline = False
        self.need = PROMOTE  # short dispatched runs in a row it needs
        self.run = 0  # short dispatched runs in a row so far
        self.strikes = 0  # inline runs over the wall limit, less one per PROMOTE short
        self.shorts = 0  # short inline runs since the last strike was forgiven
        self.demotions = 0
        self.precise = False  # time its next inline run exactly (a reading at its start)

    @property
    def learning(self) -> bool:
        """Whether runs of this route still count (it may yet run inline)."""
        return self.demotions < _MAX_DEMOTIONS

    def dispatched(self, m: Measure) -> None:
        """A run on a worker ended, having taken ``m``."""
        if m.asked:
            self.demotions = _MAX_DEMOTIONS  # it needs a worker: never inline
        elif m.cpu < CPU_LIMIT and m.wall < WALL_LIMIT:
            self.run += 1
            if self.run >= self.need and self.learning:
                self.inline = True
                self.strikes = self.shorts = 0
                logs.debug("web.inline", method=self.key[0], path=self.key[1])
        else:
            self.run = 0

    def ran_inline(self, reading: Reading, start: float, wall: float, calls: int) -> None:
        """A run on the front loop ended: it started at ``start`` (the clock),
        after ``reading`` (:meth:`Routes.reading`), and took ``wall`` seconds;
        ``calls`` is the count of ``current_worker()`` calls at its start. The
        CPU time is read again only for a run that took :data:`CPU_LIMIT` or
        more."""
        asked = _current.asked != calls
        if wall < CPU_LIMIT and wall < WALL_LIMIT and not asked:
            self.precise = False
            if self.strikes:
                self._forgive()
            return
        most = _thread_time() - reading.cpu
        least = max(0.0, most - (start - reading.at))
        self._judge(Measure.of(least, wall, asked), most)

    def _judge(self, m: Measure, most: float) -> None:
        """``m.cpu`` is the least CPU time the run can have taken, ``most`` the most."""
        if m.asked or m.cpu >= HOG_LIMIT:
            self._demote(m)
        elif m.cpu >= CPU_LIMIT or m.wall >= WALL_LIMIT:
            self.precise = True
            self.strikes += 1
            if self.strikes >= STRIKES:
                self._demote(m)
        elif most >= CPU_LIMIT:
            self.precise = True  # cannot tell: time the next run exactly
        else:
            self.precise = False
            if self.strikes:
                self._forgive()

    def _forgive(self) -> None:
        """A short inline run while the route has strikes."""
        self.shorts += 1
        if self.shorts >= PROMOTE:
            self.shorts = 0
            self.strikes -= 1

    def _demote(self, m: Measure) -> None:
        self.inline = False
        self.precise = False
        self.run = 0
        self.demotions = _MAX_DEMOTIONS if m.asked else self.demotions + 1
        self.need *= 4
        logs.info(
            "web.dispatch",
            method=self.key[0],
            path=self.key[1],
            cpu_ms=round(m.cpu * 1000, 3),
            wall_ms=round(m.wall * 1000, 3),
            again_after=self.need if self.learning else None,
        )


class Measure:
    """Start and end of one run, on the thread that runs it."""

    __slots__ = ("_calls", "asked", "cpu", "wall")

    def __init__(self) -> None:
        self._calls = _current.asked
        self.asked = False  # the run called current_worker()
        self.cpu = _thread_time()
        self.wall = _perf_counter()

    @classmethod
    def of(cls, cpu: float, wall: float, asked: bool) -> Measure:
        """What a run took, from figures taken without one."""
        m = cls.__new__(cls)
        m.cpu, m.wall, m.asked = cpu, wall, asked
        return m

    def end(self) -> None:
        """Turn the start readings into what the run took."""
        self.cpu = _thread_time() - self.cpu
        self.wall = _perf_counter() - self.wall
        self.asked = _current.asked != self._calls


class Reading:
    """The front thread's CPU time (``cpu``) read when the clock said ``at``."""

    __slots__ = ("at", "cpu")

    def __init__(self, cpu: float, at: float) -> None:
        self.cpu = cpu
        self.at = at


class Routes:
    """The front loop's table of routes; see the module docstring."""

    def __init__(self) -> None:
        self._table: dict[tuple[str, str], Route] = {}
        self._last = Reading(0.0, float("-inf"))

    def reading(self, now: float, route: Route) -> Reading:
        """The reading an inline run of ``route`` starting at ``now`` (the
        clock) is timed from: the last one, unless it is over :data:`FRESH`
        old or the route is to be timed exactly; then a new one."""
        last = self._last
        if route.precise or now - last.at > FRESH:
            last = self._last = Reading(_thread_time(), now)
        return last

    def route(self, scope: dict[str, Any]) -> Route | None:
        """The entry of this request's route (None: dispatch it, untracked)."""
        if scope["type"] != "http":
            return None
        key = (scope["method"], scope["path"])
        r = self._table.get(key)
        if r is None and len(self._table) < MAX_ROUTES:
            r = self._table[key] = Route(key)
        return r


async def run_timed(
    route: Route,
    routes: Routes,
    call: Callable[[dict[str, Any], Any, Any], Awaitable[None]],
    scope: dict[str, Any],
    receive: Any,
    send: Any,
) -> None:
    """``call(scope, receive, send)`` on the front loop, as an inline run of
    ``route`` (timed as the module docstring says). A run that was short, of
    a route with no strike to forgive and nothing to time exactly, which is
    nearly every run, ends here with no call: this is on every inline
    request's way."""
    calls = _current.asked
    start = _perf_counter()
    reading = routes.reading(start, route)
    try:
        await call(scope, receive, send)
    finally:
        wall = _perf_counter() - start
        if (
            wall >= CPU_LIMIT
            or wall >= WALL_LIMIT
            or route.strikes
            or route.precise
            or _current.asked != calls
        ):
            route.ran_inline(reading, start, wall, calls)
