"""The monitor: a grid's own thread that looks at it from outside (Go's sysmon).

Some things cannot be seen from a worker's loop: a loop cannot notice that it
is itself stuck, and no single loop sees that every loop is idle while their
tasks wait on each other. The monitor wakes every *tick* (:data:`INTERVAL`
seconds, or half the stall threshold if that is shorter), looks, and sleeps
again. It never runs a worker's code and never waits for a loop; what it reads
are racy snapshots, which is why its findings are built from several looks.

On every tick, for each worker:

* **Lag probe.** If the worker answered its last probe, a new one is posted
  with ``call_soon_threadsafe``; the answer (run by the loop when it reaches
  it) stamps the time. Posted-to-answered is the loop's *lag*: how late a
  callback scheduled now runs. The last :data:`WINDOW` seconds of lags give
  the p50 and p99 in ``grid.stats()``.
* **Stall detector** (Seastar's). A probe unanswered for longer than the
  grid's ``stall_threshold`` means the loop has not come back to its event
  loop for that long: one callback (a blocking call, a long computation) holds
  it. The monitor logs ``worker.stalled`` once per stall at warning level,
  with the task running there and its stack (``sys._current_frames()``), and
  ``worker.stall_ended`` with the stall's length once the probe is answered.
  While the stall lasts, every tick moves the worker's stealable backlog to
  the grid's injection queue, where every other dispatcher looks on its next
  turn, busy or not, and wakes an idle worker: work queued behind a stuck
  loop runs elsewhere without waiting for a thief to be idle. (Priority order
  holds; within a level, tasks moved this way may start after tasks spawned
  later, since they join the end of the injection queue.)
* **Busy sample** (a sampling profiler's trick; on free-threaded builds, the
  thread's CPU clock instead, see ``_BY_CPU_TIME``). The top Python frame of the
  worker's thread tells whether its loop waits for events (the top frame is
  the selector's ``select``, or, for uvloop, whose loop is compiled, the
  worker's own ``_main``) or runs a callback (anything else). The share of
  busy samples over the last :data:`WINDOW` seconds is the worker's *busy*
  fraction; its precision is that of the sample count (about 100 samples).
  This costs the workers nothing, where timing every loop iteration would
  need a hook that uvloop does not have.

Every tick it also wakes any parked worker that has work queued (a lost
wake-up, see :meth:`Monitor._wake_forgotten`), and every
:data:`DEADLOCK_INTERVAL` seconds it looks for an all-asleep standstill
(``deadlock.look_for_standstill``). Between ticks, on free-threaded builds,
it watches the work that spawners left to spinning workers instead of waking
one (:meth:`Monitor._watch_owed`; ``idle.py``): a spawner kicks it, and it
wakes a parked worker if no spinner has looked at the queues in time.

Thread ownership: a :class:`_Watch` is written by the monitor thread only,
except ``answered``, which the worker's loop writes when it runs the probe
(the monitor clears it before posting the next one, so each probe has one
writer at a time). ``grid.stats()`` reads watches from any thread.
"""

from __future__ import annotations

import asyncio
import os
import selectors
import sys
import sysconfig
import threading
import time
import traceback
import types
from collections import deque
from typing import TYPE_CHECKING, Any

from . import logs
from .deadlock import look_for_standstill
from .trace import ACTIVE as _TRACING
from .waitgraph import handle_of
from .worker import Worker

if TYPE_CHECKING:
    from .grid import Grid
    from .worker import Worker

__all__ = ["DEADLOCK_INTERVAL", "INTERVAL", "WINDOW", "Monitor"]

#: Longest time between two ticks (seconds).
INTERVAL = 0.05
#: Seconds between two looks for an all-asleep standstill.
DEADLOCK_INTERVAL = 0.25
#: Seconds of history behind the lag percentiles and the busy fraction.
WINDOW = 5.0

_monotonic = time.monotonic
#: Free-threaded builds measure busy time by each worker thread's CPU clock:
#: ``sys._current_frames()`` stops every thread there (it measurably cut a
#: 2-worker grid's speedup, 1.94x -> 1.62x), and with no GIL to wait for, CPU
#: time is busy time. GIL builds sample frames, which sees a loop that waits
#: for the GIL or blocks in a call as busy, as it is.
_BY_CPU_TIME = bool(sysconfig.get_config_var("Py_GIL_DISABLED")) and hasattr(
    time, "pthread_getcpuclockid"
)


def _idle_codes() -> frozenset[types.CodeType]:
    """Code objects that are on top of a worker thread's stack while its loop waits."""
    codes = {Worker._main.__code__}
    for name in dir(selectors):
        cls = getattr(selectors, name)
        if isinstance(cls, type) and issubclass(cls, selectors.BaseSelector):
            code = getattr(cls.select, "__code__", None)
            if code is not None:
                codes.add(code)
    return frozenset(codes)


class _Watch:
    """What the monitor knows of one worker (see the module doc for owners)."""

    __slots__ = (
        "_clock",
        "_cpu",
        "_lock",
        "_started",
        "_wall",
        "answered",
        "busy",
        "lags",
        "posted",
        "shed",
        "stall_began",
        "stalls",
        "w",
    )

    def __init__(self, w: Worker, samples: int) -> None:
        self.w = w
        #: When the outstanding probe was posted (None: none outstanding).
        self.posted: float | None = None
        #: When the loop ran it (None: not yet); written by the worker's loop.
        self.answered: float | None = None
        self.lags: deque[float] = deque(maxlen=samples)
        #: Busy share per tick: 0 or 1 from a frame sample, a fraction from CPU time.
        self.busy: deque[float] = deque(maxlen=samples)
        #: Guards ``lags`` and ``busy``: the monitor appends, stats() copies them,
        #: and without a GIL a copy that meets an append raises.
        self._lock = threading.Lock()
        #: The worker thread's CPU clock (free-threaded builds), taken while
        #: the thread is certainly alive: the grid builds the monitor once
        #: every worker has started, and joins the workers only when it closes.
        #: ``pthread_getcpuclockid`` on a thread that has been joined is
        #: undefined behaviour (it crashed here when a grid closed before the
        #: monitor's first tick); ``clock_gettime`` on the clock of a thread
        #: that has ended fails cleanly instead.
        self._clock: int | None = None
        if _BY_CPU_TIME and w.thread.ident is not None and w.thread.is_alive():
            self._clock = time.pthread_getcpuclockid(w.thread.ident)
        self._started = False
        self._cpu = 0.0
        self._wall = 0.0
        self.stalls = 0
        #: Pending tasks moved off the worker while it was stalled.
        self.shed = 0
        #: When the current stall's probe was posted; None while not stalled.
        self.stall_began: float | None = None

    def add_busy(self, share: float) -> None:
        with self._lock:
            self.busy.append(share)

    def add_lag(self, lag: float) -> None:
        with self._lock:
            self.lags.append(lag)

    def sample_cpu(self, now: float, held: bool) -> None:
        """Free-threaded builds: the share of the last tick this thread was on a
        CPU, or 1 if its loop was held all tick (a blocking call uses no CPU)."""
        if self._clock is None:
            return
        try:
            cpu = time.clock_gettime(self._clock)
        except OSError:  # the thread has ended
            return
        if not self._started:  # the first look: where the next one measures from
            self._started = True
        elif now > self._wall:
            self.add_busy(1.0 if held else min(1.0, (cpu - self._cpu) / (now - self._wall)))
        self._cpu, self._wall = cpu, now

    def answer(self) -> None:
        """The probe: runs on the worker's loop."""
        self.answered = _monotonic()

    def metrics(self) -> dict[str, Any]:
        """This worker's lag, busy fraction and stalls, for ``grid.stats()``."""
        with self._lock:
            lags = sorted(self.lags)
            busy = list(self.busy)
        return {
            "lag_p50": _percentile(lags, 0.50),
            "lag_p99": _percentile(lags, 0.99),
            "lag_max": round(lags[-1], 6) if lags else 0.0,
            "busy": round(sum(busy) / len(busy), 4) if busy else 0.0,
            "stalls": self.stalls,
            "stalled": self.stall_began is not None,
            "shed": self.shed,
        }


def _percentile(ordered: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list (0.0 when empty)."""
    if not ordered:
        return 0.0
    rank = max(0, min(len(ordered) - 1, int(q * len(ordered) + 0.5) - 1))
    return round(ordered[rank], 6)


_OWN_FILES = (os.path.dirname(__file__) + os.sep, threading.__file__)


def _user_stack(frame: types.FrameType | None, limit: int = 30) -> str:
    """The stack of a stalled thread, formatted as in a traceback.

    The frames of the thread's bootstrap and of loopgrid's own loop and driver
    are left out above the first frame of other code, which is where the stall
    is; a stall inside loopgrid itself shows the whole stack.
    """
    if frame is None:
        return ""
    frames = traceback.extract_stack(frame)
    first = next((i for i, f in enumerate(frames) if not f.filename.startswith(_OWN_FILES)), 0)
    kept = frames[first:][-limit:]
    return "".join(traceback.StackSummary.from_list(kept).format())


#: What a stall is, said with the first stall warning of the process only:
#: repeated on every warning it buried the part that changes (task, stack).
STALL_HINT = (
    "this loop has not been back to its event loop for longer than the threshold: a "
    "callback or task step holds it (a blocking call, a long computation), or a long run "
    "of ready callbacks; its pending tasks move to the other workers meanwhile"
)
_hinted = threading.Event()


def _hint_once() -> dict[str, str]:
    """``{"hint": STALL_HINT}`` the first time in this process, then nothing
    (two monitors racing may both give it: harmless)."""
    if _hinted.is_set():
        return {}
    _hinted.set()
    return {"hint": STALL_HINT}


class Monitor:
    """The monitor thread of one grid."""

    def __init__(self, grid: Grid, stall_threshold: float | None) -> None:
        self._grid = grid
        self.stall_threshold = stall_threshold
        self.tick = INTERVAL if stall_threshold is None else min(INTERVAL, stall_threshold / 2)
        samples = max(1, int(WINDOW / self.tick))
        self.watches = tuple(_Watch(w, samples) for w in grid.workers)
        self._idle = _idle_codes()
        #: Looks taken so far (monitor thread writes; tests wait on it).
        self.ticks = 0
        self._stop = threading.Event()
        #: Set by spawners that left work to spinning workers, and by stop().
        self._kicked = threading.Event()
        self.thread = threading.Thread(
            target=self._run, name=f"loopgrid-{grid.name}-monitor", daemon=True
        )

    def start(self) -> None:
        self.thread.start()

    def kick(self) -> None:
        """Watch the work spawners left to spinning workers (``Idle.kick``); any thread."""
        self._kicked.set()

    def stop(self) -> None:
        """Stop the thread and wait for it; idempotent, any thread but its own."""
        self._stop.set()
        self._kicked.set()
        if self.thread.is_alive():
            self.thread.join()
            self._last_look()

    def _last_look(self) -> None:
        """Report the end of stalls that ended after the last tick (the grid closed)."""
        now = _monotonic()
        for watch in self.watches:
            if watch.posted is not None and watch.answered is not None:
                watch.add_lag(watch.answered - watch.posted)
            if watch.stall_began is not None:
                self._stall_ended(watch, watch.answered or now)

    def _run(self) -> None:
        standstill: tuple[int, ...] | None = None
        next_look = _monotonic() + DEADLOCK_INTERVAL
        next_tick = _monotonic() + self.tick
        #: When the work spawners left to spinners is due (idle.py), if owed.
        owed_at: float | None = None
        kicked = self._kicked
        while not self._stop.is_set():
            now = _monotonic()
            deadline = next_tick if owed_at is None else min(next_tick, owed_at)
            if deadline > now and kicked.wait(deadline - now):
                kicked.clear()
                owed_at = self._watch_owed()
                continue
            now = _monotonic()
            if owed_at is not None and now >= owed_at:
                owed_at = self._watch_owed()
            if now < next_tick:
                continue
            next_tick = now + self.tick
            try:
                self._look(now)
                if now >= next_look:
                    next_look = now + DEADLOCK_INTERVAL
                    standstill = look_for_standstill(self._grid, standstill)
            except Exception:  # a look must never kill the monitor
                logs.error("monitor.failed", grid=self._grid.name, exc_info=True)

    def _watch_owed(self) -> float | None:
        """Watch the work spawners left to spinning workers (idle.py): when it is due next.

        A spawner that trusted the spinners kicks this thread; the work is due
        when no spinner has looked at the queues for ``Idle.trust`` seconds
        since. Due work wakes a parked worker (``Idle.settle_owed``). Returns
        the ``time.monotonic()`` time to come back, or None when nothing is
        owed.
        """
        try:
            due = self._grid._idle.settle_owed()
        except Exception:  # the watch must never kill the monitor
            logs.error("monitor.failed", grid=self._grid.name, exc_info=True)
            return None
        return None if due is None else _monotonic() + due

    def _look(self, now: float) -> None:
        self.ticks += 1
        self._wake_forgotten()
        if _BY_CPU_TIME:
            for watch in self.watches:
                posted = watch.posted
                held = posted is not None and watch.answered is None and now - posted >= self.tick
                watch.sample_cpu(now, held)
                self._probe(watch, now)
            return
        frames = sys._current_frames()
        for watch in self.watches:
            frame = frames.get(watch.w.thread.ident or -1)
            if frame is not None:
                watch.add_busy(1.0 if frame.f_code not in self._idle else 0.0)
            self._probe(watch, now)

    def _wake_forgotten(self) -> None:
        """Wake a parked worker that has work queued: a lost wake-up (idle.py)."""
        grid = self._grid
        grid._idle.wake_forgotten(grid._workers, grid._injection)

    def _probe(self, watch: _Watch, now: float) -> None:
        posted, answered = watch.posted, watch.answered
        if posted is not None and answered is None:
            threshold = self.stall_threshold
            if threshold is not None and now - posted >= threshold:
                if watch.stall_began is None:
                    frame = sys._current_frames().get(watch.w.thread.ident or -1)
                    self._stall_began(watch, now, frame)
                if len(self.watches) > 1:  # with one worker there is nowhere to go
                    self._shed(watch)
            return
        if posted is not None and answered is not None:
            watch.add_lag(answered - posted)
            if watch.stall_began is not None:
                self._stall_ended(watch, answered)
        watch.answered = None
        watch.posted = now
        try:
            watch.w.loop.call_soon_threadsafe(watch.answer)
        except RuntimeError:
            watch.posted = None  # the loop is closed: the grid is shutting down

    def _stall_began(self, watch: _Watch, now: float, frame: types.FrameType | None) -> None:
        w = watch.w
        began = watch.posted
        assert began is not None
        watch.stall_began = began
        watch.stalls += 1
        task = asyncio.current_task(w.loop)  # a read of asyncio's dict, from here
        h = handle_of(task) if task is not None else None
        info: dict[str, Any] = {
            "task": h.name if h is not None else task.get_name() if task is not None else None,
            "task_id": h.id if h is not None else None,
        }
        if frame is not None and frame.f_code in self._idle:
            # Not in a callback: the thread waits for the GIL that another
            # thread holds (see fairness.py), or runs the loop's own C code.
            info["waiting"] = "for the GIL or in the event loop's C code"
        # Traced before logged: whoever sees the log sees the trace event too.
        tracer = _TRACING.tracer
        if tracer is not None and tracer.grid is self._grid:
            tracer.stall(w.index, began, None, info)
        logs.warning(
            "worker.stalled",
            grid=self._grid.name,
            worker=w.index,
            stalled_for=round(now - began, 6),
            threshold=self.stall_threshold,
            **info,
            stack=_user_stack(frame),
            **_hint_once(),
        )

    def _stall_ended(self, watch: _Watch, answered: float) -> None:
        began = watch.stall_began
        assert began is not None
        watch.stall_began = None
        w = watch.w
        tracer = _TRACING.tracer
        if tracer is not None and tracer.grid is self._grid:
            tracer.stall(w.index, began, answered, {})
        logs.warning(
            "worker.stall_ended",
            grid=self._grid.name,
            worker=w.index,
            duration=round(answered - began, 6),
        )

    def _shed(self, watch: _Watch) -> None:
        """Move a stalled worker's stealable backlog where the others take it."""
        w = watch.w
        requeue = self._grid._requeue
        moved = 0
        for h in w._local.pop_all():
            requeue(h)
            moved += 1
        if moved:
            watch.shed += moved
            self._grid._wake_idle()
            if logs.DEBUG_EVENTS:
                logs.debug("worker.shed", grid=self._grid.name, worker=w.index, tasks=moved)
