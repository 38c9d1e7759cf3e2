"""Shared helpers for the loopgrid benchmarks: timing, interleaving, ratios, machine info.

Why interleaved rounds and medians of ratios: these benchmarks run on noisy
machines (shared 2-core VMs, CI runners). Running the baseline and loopgrid
alternately, round after round, in rotating order, exposes both to the same
drift; the median of the per-round ratios then discards the rounds a neighbour
spoiled, which a ratio of means or of best times would not.
"""

from __future__ import annotations

import asyncio
import datetime
import gc
import importlib.metadata
import math
import operator
import os
import platform
import statistics
import subprocess
import sys
import sysconfig
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

__all__ = [
    "ROOT",
    "LoopRunner",
    "LoopThread",
    "Target",
    "compare",
    "interleave",
    "interleave_async",
    "machine_info",
    "now",
    "rotated",
    "summary",
    "uvloop_factory",
    "validate",
]

T = TypeVar("T")

ROOT = Path(__file__).resolve().parent.parent

#: The clock of every measurement: monotonic, highest resolution available.
now = time.perf_counter

LoopFactory = Callable[[], asyncio.AbstractEventLoop]

# -- event loops -------------------------------------------------------------------


def uvloop_factory() -> tuple[LoopFactory, str]:
    """uvloop's loop factory and its label, or asyncio's when uvloop is missing.

    loopgrid's workers run uvloop when it is installed, so the fair baseline is
    plain asyncio code on the same loop type.
    """
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop, "asyncio (uvloop not installed)"
    return uvloop.new_event_loop, f"uvloop {_uvloop_version()}"


def _uvloop_version() -> str | None:
    try:
        return importlib.metadata.version("uvloop")
    except importlib.metadata.PackageNotFoundError:
        return None


class LoopRunner:
    """A long-lived event loop in the calling thread, like ``asyncio.Runner``.

    ``asyncio.Runner`` only exists from Python 3.11; loopgrid supports 3.10. The
    loop is kept across rounds so that no round pays for creating one.
    """

    def __init__(self, factory: LoopFactory) -> None:
        self.loop = factory()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coro)

    def close(self) -> None:
        loop = self.loop
        if loop.is_closed():
            return
        try:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
        finally:
            loop.close()

    def __enter__(self) -> LoopRunner:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class LoopThread:
    """An event loop running forever in a daemon thread (the cross-thread baseline)."""

    def __init__(self, factory: LoopFactory, name: str = "bench-loop") -> None:
        self.loop = factory()
        self._ready = threading.Event()
        self.thread = threading.Thread(target=self._main, name=name, daemon=True)
        self.thread.start()
        self._ready.wait()

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.call_soon(self._ready.set)
        self.loop.run_forever()

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join()
        self.loop.close()

    def __enter__(self) -> LoopThread:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


# -- rounds -------------------------------------------------------------------------


def rotated(names: Sequence[str], r: int) -> list[str]:
    """The case order of round ``r``: rotate so each case leads equally often."""
    k = r % len(names)
    return [*names[k:], *names[:k]]


def interleave(
    cases: Mapping[str, Callable[[], float]], rounds: int, *, warmup: int = 1
) -> dict[str, list[float]]:
    """Run every case once per round, in rotating order; return seconds per case.

    Each case measures itself (with :data:`now`) and returns seconds, so set-up
    and hand-offs outside the measured region are not counted. ``gc.collect()``
    runs before each case so no case pays for the garbage of the previous one.
    ``warmup`` rounds run first and are discarded (first-call costs: thread
    pools, mailboxes, caches).
    """
    names = list(cases)
    samples: dict[str, list[float]] = {n: [] for n in names}
    for r in range(-warmup, rounds):
        for name in rotated(names, r):
            gc.collect()
            seconds = cases[name]()
            if r >= 0:
                samples[name].append(seconds)
    return samples


async def interleave_async(
    cases: Mapping[str, Callable[[], Awaitable[float]]], rounds: int, *, warmup: int = 1
) -> dict[str, list[float]]:
    """:func:`interleave` for cases that are coroutines on the running loop."""
    names = list(cases)
    samples: dict[str, list[float]] = {n: [] for n in names}
    for r in range(-warmup, rounds):
        for name in rotated(names, r):
            gc.collect()
            seconds = await cases[name]()
            if r >= 0:
                samples[name].append(seconds)
    return samples


# -- statistics ---------------------------------------------------------------------


def summary(values: Sequence[float]) -> dict[str, float | int]:
    """Median, min, max and count: the median is the figure, min/max show the spread."""
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "n": len(values),
    }


@dataclass(frozen=True)
class Target:
    """A goal on the median ratio, such as ``<= 1.5`` or ``>= 3``."""

    op: str  # "<=" or ">="
    value: float

    def met(self, ratio: float) -> bool:
        return bool((operator.le if self.op == "<=" else operator.ge)(ratio, self.value))

    def __str__(self) -> str:
        return f"ratio {self.op} {self.value:g}"


def compare(
    name: str,
    candidate: Sequence[float],
    baseline: Sequence[float],
    *,
    baseline_name: str,
    per: float,
    kind: str,
    target: Target | None,
    candidate_name: str = "loopgrid",
    unit: str | None = None,
) -> dict[str, Any]:
    """Build one result entry from per-round seconds of a candidate and a baseline.

    ``kind="time"``: the value is microseconds per item (``seconds / per``), and
    the ratio is candidate time / baseline time (lower is better).
    ``kind="rate"``: the value is items per second (``per / seconds``), and the
    ratio is candidate rate / baseline rate (higher is better). Ratios are taken
    round by round (both measured back to back), then summarised. ``unit``
    names what an item is (``"us/task"``, ``"calls/s"``) in place of the
    generic ``us/item`` or ``items/s``.
    """
    if kind not in ("time", "rate"):
        raise ValueError(f"kind must be 'time' or 'rate', got {kind!r}")
    if len(candidate) != len(baseline) or not candidate:
        raise ValueError("candidate and baseline need the same, non-zero number of rounds")
    if kind == "time":
        unit_name = "us/item"
        cand = [s / per * 1e6 for s in candidate]
        base = [s / per * 1e6 for s in baseline]
        ratios = [c / b for c, b in zip(candidate, baseline, strict=True)]
        definition = f"{candidate_name} time / baseline time, per round (lower is better)"
    else:
        unit_name = "items/s"
        cand = [per / s for s in candidate]
        base = [per / s for s in baseline]
        ratios = [b / c for c, b in zip(candidate, baseline, strict=True)]
        definition = f"{candidate_name} rate / baseline rate, per round (higher is better)"
    r = summary(ratios)
    return {
        "name": name,
        "unit": unit_name if unit is None else unit,
        "candidate": candidate_name,
        "value": statistics.median(cand),
        "values": summary(cand),
        "baseline": {
            "name": baseline_name,
            "value": statistics.median(base),
            "values": summary(base),
        },
        "ratio": {**r, "definition": definition},
        "target": None if target is None else str(target),
        "met": None if target is None else target.met(float(r["median"])),
    }


# -- machine ------------------------------------------------------------------------


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(
            ["git", "-C", str(ROOT), *args], capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info() -> dict[str, Any]:
    """What a reader needs to judge a figure: hardware, interpreter, versions, load, date."""
    uv = _uvloop_version()
    try:
        import loopgrid

        lg: str | None = loopgrid.__version__
    except ImportError:
        lg = None
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    gil = getattr(sys, "_is_gil_enabled", None)
    dirty = _git("status", "--porcelain", "--", "loopgrid")
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpu_affinity": affinity,
        "loadavg": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "build": " ".join(platform.python_build()),
        "compiler": platform.python_compiler(),
        "free_threaded_build": bool(sysconfig.get_config_var("Py_GIL_DISABLED")),
        "gil_enabled": True if gil is None else bool(gil()),
        "executable": sys.executable,
        "uvloop": uv,
        "loopgrid": lg,
        "loopgrid_commit": _git("rev-parse", "--short", "HEAD"),
        # Others may be editing loopgrid while this runs: say so next to the figures.
        "loopgrid_dirty": None if dirty is None else bool(dirty),
    }


# -- validation ---------------------------------------------------------------------


def _finite(x: object) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _check_summary(where: str, s: object, errors: list[str]) -> None:
    if not isinstance(s, dict):
        errors.append(f"{where}: not a dict")
        return
    ok = True
    for key in ("median", "min", "max"):
        if not _finite(s.get(key)):
            ok = False
            errors.append(f"{where}.{key}: not a finite number: {s.get(key)!r}")
    if not (isinstance(s.get("n"), int) and s["n"] > 0):
        errors.append(f"{where}.n: not a positive int: {s.get('n')!r}")
    if ok and not s["min"] <= s["median"] <= s["max"]:
        errors.append(f"{where}: min <= median <= max does not hold: {s!r}")


def validate(result: object) -> list[str]:
    """What is wrong with a benchmark's result dict (empty when well-formed).

    Checks shape and sanity only (keys, types, finite positive figures,
    target/met consistency), never a timing: CI machines are too noisy for that.
    """
    errors: list[str] = []
    if not isinstance(result, dict):
        return [f"result is {type(result).__name__}, not dict"]
    for key, typ in (("benchmark", str), ("title", str), ("params", dict), ("results", list)):
        if not isinstance(result.get(key), typ):
            errors.append(f"{key}: missing or not {typ.__name__}")
    if not isinstance(result.get("notes", []), list):
        errors.append("notes: not a list")
    entries = result.get("results")
    if isinstance(entries, list) and not entries:
        errors.append("results: empty")
    for i, e in enumerate(entries if isinstance(entries, list) else []):
        where = f"results[{i}]"
        if not isinstance(e, dict):
            errors.append(f"{where}: not a dict")
            continue
        if not isinstance(e.get("name"), str) or not isinstance(e.get("unit"), str):
            errors.append(f"{where}: name/unit missing")
        if not (_finite(e.get("value")) and e["value"] >= 0):
            errors.append(f"{where}.value: not a finite number >= 0: {e.get('value')!r}")
        target, met = e.get("target"), e.get("met")
        if target is None and met is not None:
            errors.append(f"{where}: met={met!r} without a target")
        if target is not None and (not isinstance(target, str) or not isinstance(met, bool)):
            errors.append(f"{where}: target {target!r} needs a bool met, got {met!r}")
        if "values" in e:
            _check_summary(f"{where}.values", e["values"], errors)
        if "baseline" in e:
            b = e["baseline"]
            if not isinstance(b, dict) or not isinstance(b.get("name"), str):
                errors.append(f"{where}.baseline: needs a name")
            elif not (_finite(b.get("value")) and b["value"] > 0):
                errors.append(f"{where}.baseline.value: not a finite number > 0")
            if "ratio" not in e:
                errors.append(f"{where}: a baseline without a ratio")
        if "ratio" in e:
            _check_summary(f"{where}.ratio", e["ratio"], errors)
    return errors
