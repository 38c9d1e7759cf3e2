#!/usr/bin/env python3
"""Soak: minutes of mixed control on one grid, then nothing lost, no thread left, RSS bounded.

What and why (issue 22, item 7): the fault suite (tests/test_faults.py)
injects one fault at a time; this runs everything at once, for long enough
that a slow leak or a rare race shows. Several plain threads (``--threads``)
drive one grid (``--loops``) until the time is up, each picking at random:

* spawn a batch of short tasks (random priority, some pinned to a worker),
  some with a done callback;
* spawn tasks that fail;
* spawn a parent that spawns children from inside the grid and awaits them;
* spawn a task that sleeps in steps, pause it and resume it;
* spawn a task that waits for ever, cancelled a few operations later;
* cancel a random short task of its own (racing with its end);
* move a task to another worker (refused once it has started);
* pause and resume a worker, now and then the whole grid.

Each thread keeps a bounded window of the handles it made, and settles the
oldest (waits for it, bounded, and tallies its final state) as the window
fills, so the load is steady and memory should be flat once warm. At the end
the threads settle what is left, the grid closes, and the script checks:

* nothing lost: every handle is done, the tally of final states equals the
  grid's counters state by state, and ``spawned == completed + failed +
  cancelled``; every done callback ran once;
* nothing hangs: every wait is bounded (``HANG`` s), and a watchdog dumps the
  stacks and exits if the whole run overruns;
* no thread left: no ``loopgrid-<grid>`` thread is alive after close;
* nothing reported: no error logged by loopgrid, nor by asyncio (what a
  loop's exception handler is given: an exception out of a callback);
* RSS bounded: RSS (``/proc/self/statm``) sampled 4 times a second; after a
  warm-up (the first 10 % of the run, at least 1 s), the median of the last
  third of the samples must be within ``--rss-factor`` (default 1.5) of the
  median of the first third. Why 1.5: the load is stationary (bounded
  windows), so a healthy process is flat (bench/notes/soak.md: +1-3 % over
  90 s); a leak of one small object per task (about 100 bytes at some 20,000
  tasks a second) adds over 100 MB a minute, several times the process's
  size, while allocator noise and a late GC generation stay well inside
  half of it. Without /proc (not Linux) the RSS check is skipped, and says so.

Usage, from the repository root::

    python3 scripts/dev.py python bench/soak.py               # 90 s (bench/notes/soak.md)
    python3 scripts/dev.py python bench/soak.py --short       # 10 s: CI's smoke run
    python3 scripts/dev.py python bench/soak.py --seconds 300 --loops 4 --threads 6

Prints the figures as JSON (``--json FILE`` also writes them) and exits 1 if a
check failed.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import faulthandler
import json
import logging
import os
import platform
import random
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import loopgrid  # noqa: E402
from loopgrid import Grid, Priority, TaskState  # noqa: E402

#: The bound on any one wait for a task (a guard against hangs, never a timing).
HANG = 60.0
#: Handles a driver thread keeps before it settles its oldest.
WINDOW = 2000
FINAL = (TaskState.COMPLETED, TaskState.FAILED, TaskState.CANCELLED)
PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def rss_bytes() -> int | None:
    """Resident set size now, from /proc (None where there is none)."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * PAGE
    except OSError:
        return None


# -- the tasks -------------------------------------------------------------------------


async def short(i: int) -> int:
    for _ in range(i % 3):
        await asyncio.sleep(0)
    return i


async def failing(i: int) -> None:
    await asyncio.sleep(0)
    raise ValueError(i)


async def stepping(steps: int) -> int:
    for _ in range(steps):
        await asyncio.sleep(0.001)
    return steps


async def waits_for_ever() -> None:
    await asyncio.Event().wait()


async def parent(n: int, children: collections.deque[Any]) -> int:
    hs = []
    for i in range(n):
        h = loopgrid.spawn(failing, i) if i == 0 else loopgrid.spawn(short, i)
        children.append(h)  # settled by the drivers, like their own handles
        hs.append(h)
    out = await asyncio.gather(*hs, return_exceptions=True)
    return sum(1 for x in out if isinstance(x, int))


# -- the drivers ------------------------------------------------------------------------


class Driver(threading.Thread):
    """One plain thread of random control over the grid, with a bounded window."""

    def __init__(self, soak: Soak, index: int) -> None:
        super().__init__(name=f"soak-driver-{index}", daemon=True)
        self.soak = soak
        self.rng = random.Random(index)
        self.window: collections.deque[Any] = collections.deque()
        self.forever: collections.deque[Any] = collections.deque()
        self.tally = dict.fromkeys(FINAL, 0)
        self.handles = 0
        self.callbacks = 0
        self.ops = collections.Counter[str]()
        self.error: BaseException | None = None

    def keep(self, h: Any) -> Any:
        self.window.append(h)
        self.handles += 1
        return h

    def settle(self, h: Any) -> None:
        """Wait (bounded) for ``h`` and tally its final state."""
        try:
            h.exception(timeout=HANG)  # retrieved: no "never retrieved" log
        except (asyncio.CancelledError, loopgrid.WorkerDiedError):
            pass
        except TimeoutError:
            raise AssertionError(f"{h!r} did not end within {HANG} s") from None
        st = h.state
        assert st in FINAL, h
        self.tally[st] += 1

    def run(self) -> None:
        try:
            while not self.soak.stop.is_set():
                self.step()
                while len(self.window) > WINDOW:
                    self.settle(self.window.popleft())
            for h in self.forever:
                h.cancel()
            for q in (self.window, self.forever):
                while q:
                    self.settle(q.popleft())
        except BaseException as exc:
            self.error = exc
            self.soak.stop.set()

    def step(self) -> None:
        g, rng, soak = self.soak.grid, self.rng, self.soak
        loops = len(g.workers)
        children = soak.children
        for _ in range(min(len(children), 100)):  # adopt children, to settle them
            try:
                self.keep(children.popleft())
            except IndexError:
                break
        r = rng.random()
        if r < 0.40:
            self.ops["spawn"] += 1
            for i in range(50):
                pin = rng.randrange(loops) if i % 10 == 0 else None
                prio = Priority(rng.randrange(4))
                h = self.keep(g.spawn(short, i, priority=prio, worker=pin))
                if i % 7 == 0:
                    self.callbacks += 1
                    h.add_done_callback(soak.callback_ran)
        elif r < 0.50:
            self.ops["fail"] += 1
            for i in range(10):
                self.keep(g.spawn(failing, i))
        elif r < 0.58:
            self.ops["parent"] += 1
            self.keep(g.spawn(parent, 5, children))
        elif r < 0.66:
            self.ops["pause_resume"] += 1
            h = self.keep(g.spawn(stepping, rng.randrange(1, 5)))
            if rng.random() < 0.5:
                time.sleep(0.0005)  # now and then it has started
            h.pause()
            h.resume()
        elif r < 0.74:
            self.ops["cancel_forever"] += 1
            self.forever.append(g.spawn(waits_for_ever))
            self.handles += 1
            if len(self.forever) > 20:
                h = self.forever.popleft()
                h.cancel()
                self.window.append(h)  # settled as the others (counted above)
        elif r < 0.82:
            self.ops["cancel_short"] += 1
            if self.window:
                self.window[rng.randrange(len(self.window))].cancel()
        elif r < 0.92:
            self.ops["move"] += 1
            h = self.keep(g.spawn(short, 1))
            try:
                h.move(rng.randrange(loops))
            except asyncio.InvalidStateError:
                self.ops["move_refused"] += 1
        elif r < 0.995:
            self.ops["worker_pause"] += 1
            w = g.workers[rng.randrange(loops)]
            w.pause()
            self.keep(g.spawn(short, 2))  # queued while it is held
            w.resume()
        else:
            self.ops["grid_pause"] += 1
            g.pause()
            self.keep(g.spawn(short, 3))
            g.resume()


class Soak:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.grid = Grid(args.loops, name="soak")
        self.stop = threading.Event()
        self.children: collections.deque[Any] = collections.deque()
        self._ran = 0
        self._ran_lock = threading.Lock()
        self.samples: list[tuple[float, int]] = []

    def callback_ran(self, h: Any) -> None:
        with self._ran_lock:
            self._ran += 1

    def sample(self, t0: float, until: float) -> None:
        tick = threading.Event()
        while time.monotonic() < until and not self.stop.is_set():
            rss = rss_bytes()
            if rss is None:
                return
            self.samples.append((time.monotonic() - t0, rss))
            tick.wait(0.25)


class Errors(logging.Handler):
    """Counts the ERROR records of the ``asyncio`` and ``loopgrid`` loggers."""

    def __init__(self) -> None:
        super().__init__(level=logging.ERROR)
        self.count = 0
        self.first: list[str] = []
        self._loggers = [logging.getLogger(name) for name in ("asyncio", "loopgrid")]

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1
        if len(self.first) < 3:
            self.first.append(f"{record.name}: {record.getMessage()[:300]}")

    def __enter__(self) -> Errors:
        for lg in self._loggers:
            lg.addHandler(self)
        return self

    def __exit__(self, *exc_info: object) -> None:
        for lg in self._loggers:
            lg.removeHandler(self)


def rss_check(samples: list[tuple[float, int]], seconds: float, factor: float) -> dict[str, Any]:
    """The growth after warm-up: median of the last third of the samples over the first's."""
    if not samples:
        return {"checked": False, "why": "no /proc/self/statm on this system"}
    warm = max(1.0, seconds * 0.10)
    steady = [rss for t, rss in samples if t >= warm]
    if len(steady) < 6:
        return {"checked": False, "why": f"too few samples after {warm:.1f} s of warm-up"}
    third = len(steady) // 3
    first = statistics.median(steady[:third])
    last = statistics.median(steady[-third:])
    mib = 1 << 20
    return {
        "checked": True,
        "warm_up_s": warm,
        "samples": len(steady),
        "first_third_median_mib": round(first / mib, 1),
        "last_third_median_mib": round(last / mib, 1),
        "peak_mib": round(max(rss for _, rss in samples) / mib, 1),
        "at_start_mib": round(samples[0][1] / mib, 1),
        "growth": round(last / first, 3),
        "bound": factor,
        "ok": last <= factor * first,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--seconds", type=float, default=90.0, help="how long to drive (90)")
    ap.add_argument("--short", action="store_true", help="10 s (CI), unless --seconds is given")
    ap.add_argument("--loops", type=int, default=2, help="the grid's loops (2)")
    ap.add_argument("--threads", type=int, default=4, help="driver threads (4)")
    ap.add_argument("--rss-factor", type=float, default=1.5, help="RSS growth bound (1.5)")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args(argv)
    if args.short and "--seconds" not in (argv if argv is not None else sys.argv[1:]):
        args.seconds = 10.0
    if args.seconds <= 0 or args.loops < 1 or args.threads < 1 or args.rss_factor <= 1:
        ap.error("--seconds, --loops and --threads must be positive, --rss-factor over 1")
    # The whole run, settling and close included: past this it is a hang.
    faulthandler.dump_traceback_later(args.seconds + 3 * HANG, exit=True)

    errors = Errors().__enter__()
    soak = Soak(args)
    t0 = time.monotonic()
    until = t0 + args.seconds
    sampler = threading.Thread(target=soak.sample, args=(t0, until), daemon=True)
    drivers = [Driver(soak, i) for i in range(args.threads)]
    sampler.start()
    for d in drivers:
        d.start()
    soak.stop.wait(args.seconds)
    soak.stop.set()
    for d in drivers:
        d.join(3 * HANG)
    drove = time.monotonic() - t0
    sampler.join(HANG)
    failures: list[str] = [f"{d.name}: {d.error!r}" for d in drivers if d.error is not None]
    failures += [f"{d.name} did not finish" for d in drivers if d.is_alive()]
    # Children spawned by parents the drivers had settled, not yet adopted.
    settler = Driver(soak, -1)
    while soak.children:
        try:
            settler.keep(soak.children.popleft())
        except IndexError:
            break
    try:
        while settler.window:
            settler.settle(settler.window.popleft())
    except AssertionError as exc:
        failures.append(str(exc))
    soak.grid.close()
    faulthandler.cancel_dump_traceback_later()
    errors.__exit__()
    if errors.count:
        failures.append(f"{errors.count} errors logged, the first: {errors.first}")

    totals = soak.grid.stats()["totals"]
    tally = dict.fromkeys(FINAL, 0)
    handles = callbacks = 0
    ops: collections.Counter[str] = collections.Counter()
    for d in [*drivers, settler]:
        handles += d.handles
        callbacks += d.callbacks
        ops.update(d.ops)
        for st in FINAL:
            tally[st] += d.tally[st]
    ended = totals["completed"] + totals["failed"] + totals["cancelled"]
    if totals["spawned"] != ended:
        failures.append(f"spawned {totals['spawned']} != completed + failed + cancelled {ended}")
    if totals["pending"] or totals["running"]:
        failures.append(f"after close: pending {totals['pending']}, running {totals['running']}")
    if handles != totals["spawned"]:
        failures.append(f"handles made {handles} != spawned {totals['spawned']}")
    for st in FINAL:
        if tally[st] != totals[st.value]:
            failures.append(f"{st.value}: handles {tally[st]} != grid {totals[st.value]}")
    if soak._ran != callbacks:
        failures.append(f"done callbacks: {callbacks} added, {soak._ran} ran")
    left = [t.name for t in threading.enumerate() if t.name.startswith("loopgrid-soak")]
    if left:
        failures.append(f"threads alive after close: {left}")
    rss = rss_check(soak.samples, args.seconds, args.rss_factor)
    if rss.get("checked") and not rss["ok"]:
        failures.append(
            f"RSS grew {rss['growth']}x after warm-up (bound {args.rss_factor}x): "
            f"{rss['first_third_median_mib']} -> {rss['last_third_median_mib']} MiB"
        )
    report = {
        "command": " ".join([Path(sys.executable).name, "bench/soak.py", *sys.argv[1:]]),
        "python": platform.python_version(),
        "gil_enabled": getattr(sys, "_is_gil_enabled", lambda: True)(),
        "cpus": os.cpu_count(),
        "loops": args.loops,
        "threads": args.threads,
        "seconds": round(drove, 1),
        "tasks": totals["spawned"],
        "tasks_per_s": round(totals["spawned"] / drove),
        "totals": {k: totals[k] for k in ("spawned", "completed", "failed", "cancelled")},
        "done_callbacks": soak._ran,
        "errors_logged": errors.count,
        "ops": dict(sorted(ops.items())),
        "rss": rss,
        "failures": failures,
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n", encoding="utf-8")
    if failures:
        print("soak: FAILED:\n  " + "\n  ".join(failures), file=sys.stderr)
        return 1
    print(f"soak: ok ({totals['spawned']:,} tasks in {drove:.0f} s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
