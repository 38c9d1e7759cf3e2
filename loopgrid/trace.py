"""Trace export: a grid's activity as Chrome trace-event JSON, for Perfetto.

``with grid.trace("run.json"):`` records, until the block ends, and then writes
a file that https://ui.perfetto.dev and ``chrome://tracing`` open:

* one track per thread: a worker's track is named ``worker <i>``; threads
  outside the grid that wake or are woken (a foreign event loop, the main
  thread) get a track under their own name;
* one slice per task step (the time between a task's resumption and its next
  suspension), named after the task, with its id in the slice's arguments;
* flow arrows for cross-loop wake-ups (from the step that resolved a handle to
  the callback that woke its awaiter on another loop) and for steals (from the
  victim's track to the thief's ``steal`` slice);
* stalls (see ``monitor.py``): instant markers on the stalled worker's track
  when the stall is seen and when it ends, and a slice of the stall's length
  on the monitor's track.

Recording costs a clock read and a dict per step, so it is off unless asked
for; while it is off, the only cost left on the hot paths is one attribute
test per cross-loop wake-up (``mailbox.Mailbox.post``) and per steal. One
trace is recorded at a time in a process (the wake-up hook is process-wide).

Thread ownership: events are appended to one list by every thread (``append``
is atomic) and read only by :meth:`Tracer.write`, after recording stopped
(``sorted`` copies the list first, so a step that ends just after the stop
cannot break the copy). ``_tracks`` is a dict written by every thread under
its own key (atomic item set); two threads that add themselves at once may get
the same sort index, which only orders tracks. ``ACTIVE.tracer`` is set and
cleared under ``_lock``, read without it: readers read it once into a local.
"""

from __future__ import annotations

import itertools
import json
import os
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .grid import Grid
    from .handle import Handle

__all__ = ["ACTIVE", "Tracer"]

_perf_counter = time.perf_counter
_native_id = threading.get_native_id
_lock = threading.Lock()

#: Seconds the end of a trace waits, at most, for the steps running then to end.
STOP_WAIT = 1.0

#: Width (µs) of the small slices that anchor a flow arrow where no slice of
#: real length encloses its end (a steal seen from the victim, a post).
_ANCHOR = 1.0


class _Active:
    __slots__ = ("tracer",)

    def __init__(self) -> None:
        self.tracer: Tracer | None = None


#: The trace being recorded in this process, if any.
ACTIVE = _Active()


class Tracer:
    """Records one grid's steps, wake-ups, steals and stalls (see the module doc).

    Made by :meth:`Grid.trace`; ``events`` holds the trace events recorded so
    far (list of dicts in the trace-event format).
    """

    def __init__(self, grid: Grid, path: str | os.PathLike[str]) -> None:
        self.grid = grid
        self.path = os.fspath(path)
        self.events: list[dict[str, Any]] = []
        self._t0 = _perf_counter()
        self._pid = os.getpid()
        self._flows = itertools.count(1)
        #: native thread id -> (track name, sort index)
        self._tracks: dict[int, tuple[str, int]] = {}
        self._monitor_tid: int | None = None

    # -- recording -------------------------------------------------------------

    def start(self) -> None:
        with _lock:
            if ACTIVE.tracer is not None:
                raise RuntimeError(
                    f"a trace of grid {ACTIVE.tracer.grid.name!r} is already being recorded; "
                    "loopgrid records one trace at a time per process"
                )
            ACTIVE.tracer = self
        self._t0 = _perf_counter()
        for w in self.grid.workers:
            if w.thread.native_id is not None:
                self._tracks[w.thread.native_id] = (f"worker {w.index}", w.index)
        mon = self.grid._monitor.thread
        if mon.native_id is not None:
            self._monitor_tid = mon.native_id
            self._tracks[mon.native_id] = ("monitor", len(self.grid.workers))
        for w in self.grid.workers:
            w._set_timing(True)

    def stop(self) -> None:
        """Stop recording, once the steps running now have ended (see :meth:`_settle`)."""
        self._settle()
        with _lock:
            if ACTIVE.tracer is self:
                ACTIVE.tracer = None
        for w in self.grid.workers:
            w._set_timing(self.grid._task_timing)

    def _settle(self) -> None:
        """Wait, up to :data:`STOP_WAIT` seconds in all, for each worker's loop to come round.

        A task's last step completes its handle before its worker records
        the step, in the same callback. A caller that got the result and
        left the ``with grid.trace()`` block at once would stop the trace
        before that record, and miss the step it just saw finish (seen on
        3.13t). A callback queued on each loop runs after the callback that
        runs there now, so once it has run, every step that was running
        when the trace began to stop is in it. A loop held longer (a
        blocking call) is not waited for beyond the bound: its step is still
        running, and is left out.
        """
        me = threading.current_thread()
        passed: list[threading.Event] = []
        for w in self.grid.workers:
            if w.thread is me or w._exit is not None:
                continue  # the caller's own step (recorded after this), or a dead loop
            ev = threading.Event()
            try:
                w.loop.call_soon_threadsafe(ev.set)
            except RuntimeError:
                continue  # that loop is closed: nothing runs there
            passed.append(ev)
        deadline = _perf_counter() + STOP_WAIT
        for ev in passed:
            if not ev.wait(max(0.0, deadline - _perf_counter())):
                break

    def _us(self, t: float) -> float:
        return round((t - self._t0) * 1e6, 3)

    def _tid(self) -> int:
        tid = _native_id()
        if tid not in self._tracks:
            self._tracks[tid] = (threading.current_thread().name, 1000 + len(self._tracks))
        return tid

    def _slice(
        self, name: str, cat: str, tid: int, ts: float, dur: float, args: dict[str, Any]
    ) -> None:
        self.events.append(
            {
                "ph": "X",
                "name": name,
                "cat": cat,
                "pid": self._pid,
                "tid": tid,
                "ts": ts,
                "dur": dur,
                "args": args,
            }
        )

    def _flow(self, ph: str, name: str, flow_id: int, tid: int, ts: float) -> None:
        ev: dict[str, Any] = {
            "ph": ph,
            "name": name,
            "cat": "flow",
            "id": flow_id,
            "pid": self._pid,
            "tid": tid,
            "ts": ts,
        }
        if ph == "f":
            ev["bp"] = "e"  # bind to the enclosing slice, not the next one
        self.events.append(ev)

    def _instant(self, name: str, tid: int, t: float, args: dict[str, Any]) -> None:
        self.events.append(
            {
                "ph": "i",
                "s": "t",
                "name": name,
                "cat": "stall",
                "pid": self._pid,
                "tid": tid,
                "ts": self._us(t),
                "args": args,
            }
        )

    def step(self, h: Handle[Any], worker: int, t0: float, dt: float) -> None:
        """A task step on the calling (worker) thread; from ``driver._Pause.step``."""
        self._slice(
            h._name,
            "task",
            self._tid(),
            self._us(t0),
            round(dt * 1e6, 3),
            {"task_id": h._id, "worker": worker},
        )

    def wake_up(self, fn: Callable[[Any], object]) -> Callable[[Any], object]:
        """Wrap a callback posted to another loop's mailbox so its run is a flow's end."""
        flow_id = next(self._flows)
        ts = self._us(_perf_counter())
        tid = self._tid()
        self._slice("wake-up sent", "wake-up", tid, ts, _ANCHOR, {"flow": flow_id})
        self._flow("s", "wake-up", flow_id, tid, ts + _ANCHOR / 2)
        return _WakeUp(self, flow_id, fn)

    def steal(self, thief: int, victim: int, tasks: int, t0: float) -> None:
        """A steal, recorded by the thief's thread after it took ``tasks``."""
        t1 = _perf_counter()
        flow_id = next(self._flows)
        start = self._us(t0)
        vtid = self.grid.workers[victim].thread.native_id or 0
        self._slice(f"stolen x{tasks}", "steal", vtid, start, _ANCHOR, {"thief": thief})
        self._flow("s", "steal", flow_id, vtid, start + _ANCHOR / 2)
        dur = max(round((t1 - t0) * 1e6, 3), _ANCHOR)
        tid = self._tid()
        self._slice(f"steal x{tasks}", "steal", tid, start, dur, {"victim": victim})
        self._flow("f", "steal", flow_id, tid, start + dur / 2)

    def stall(self, worker: int, began: float, ended: float | None, args: dict[str, Any]) -> None:
        """A stall seen (``ended`` None) or over; from the monitor thread."""
        wtid = self.grid.workers[worker].thread.native_id or 0
        if ended is None:
            self._instant("stall", wtid, began, {"worker": worker, **args})
            return
        self._instant("stall over", wtid, ended, {"worker": worker, **args})
        self._slice(
            f"stall of worker {worker}",
            "stall",
            self._monitor_tid or self._tid(),
            self._us(began),
            round((ended - began) * 1e6, 3),
            {"worker": worker, **args},
        )

    # -- output -----------------------------------------------------------------

    def document(self) -> dict[str, Any]:
        """The trace as a JSON-ready dict (what :meth:`write` writes)."""
        meta: list[dict[str, Any]] = [
            {
                "ph": "M",
                "name": "process_name",
                "pid": self._pid,
                "tid": 0,
                "args": {"name": f"loopgrid grid {self.grid.name}"},
            }
        ]
        for tid, (name, order) in list(self._tracks.items()):
            for key, value in (
                ("thread_name", {"name": name}),
                ("thread_sort_index", {"sort_index": order}),
            ):
                meta.append({"ph": "M", "name": key, "pid": self._pid, "tid": tid, "args": value})
        return {
            "traceEvents": meta + sorted(self.events, key=_ts),
            "displayTimeUnit": "ms",
            "otherData": {"grid": self.grid.name, "loops": len(self.grid.workers)},
        }

    def write(self) -> None:
        with open(self.path, "w", encoding="utf-8") as f:
            json.dump(self.document(), f)


def _ts(ev: dict[str, Any]) -> float:
    return ev["ts"]  # type: ignore[no-any-return]


class _WakeUp:
    """A mailbox callback that records its own run as the end of a flow."""

    __slots__ = ("flow_id", "fn", "tracer")

    def __init__(self, tracer: Tracer, flow_id: int, fn: Callable[[Any], object]) -> None:
        self.tracer = tracer
        self.flow_id = flow_id
        self.fn = fn

    def __call__(self, arg: Any) -> object:
        t0 = _perf_counter()
        try:
            return self.fn(arg)
        finally:
            tr = self.tracer
            start = tr._us(t0)
            dur = max(round((_perf_counter() - t0) * 1e6, 3), _ANCHOR)
            tid = tr._tid()
            tr._slice("wake-up", "wake-up", tid, start, dur, {"flow": self.flow_id})
            tr._flow("f", "wake-up", self.flow_id, tid, start + dur / 2)

    def __repr__(self) -> str:
        return f"<traced wake-up {self.fn!r}>"
