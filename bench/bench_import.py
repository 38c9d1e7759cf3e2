"""What ``import loopgrid`` costs, against ``import asyncio``, in fresh processes.

Why: every program that uses loopgrid pays it, and so does each run of a CLI or
a test worker; issue 23 asks for at most 1.3x ``import asyncio``. loopgrid
imports asyncio, so the ratio is 1 + what loopgrid adds (its own modules and
whatever they import) over what asyncio costs. ``tests/test_import_cost.py``
guards the cause (no optional package is imported) without timing anything.

Measured, in rounds, each round running these fresh interpreters back to back
in rotating order (``sys.executable``, from the repository root, so that the
working tree's loopgrid is imported):

- ``python -c "pass"``: interpreter start-up alone (site, .pth files);
- ``python -c "import asyncio"`` and ``python -c "import loopgrid"``: the wall
  time of each process, from ``subprocess.run`` to its exit.

The figure, **(a)**, is the ratio net of start-up, per round:
``(wall(import loopgrid) - wall(pass)) / (wall(import asyncio) - wall(pass))``,
and its median over the rounds. Two more ratios give context: **(b)** the same
imports timed inside the fresh process (``time.perf_counter()`` around the
``import`` statement, so start-up is not counted at all), and **(c)** the raw
wall times, start-up included (what running a one-line script feels like).
The details also give ``python -X importtime``'s cumulative figures for the
top-level ``loopgrid`` and ``asyncio`` rows (median of a few runs; importtime
inflates every figure, so its ratio is a cross-check only).

Bytecode: the children run with ``PYTHONDONTWRITEBYTECODE`` removed and a
``PYTHONPYCACHEPREFIX`` of their own, filled by the warm-up round, so that
every import reads cached bytecode as an installed package does (pip compiles
a wheel's modules at install). A development shell that sets
``PYTHONDONTWRITEBYTECODE`` would otherwise measure compiling loopgrid's
sources on each run, and nothing about the import.

Run alone: ``python -m bench.bench_import [--quick] [--smoke]``; in the suite:
``python bench/run.py --only import``. Run it with another interpreter
(``.venv-3.13t/bin/python -m bench.bench_import``) to measure that one.
"""

from __future__ import annotations

import os
import re
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from typing import Any

from bench._harness import ROOT, Target, compare, interleave, now

#: (rounds, -X importtime runs)
SIZES = {"full": (60, 7), "quick": (20, 3), "smoke": (3, 1)}
TARGET = Target("<=", 1.3)

#: Timed inside the child (start-up is not counted): asyncio, then what loopgrid adds.
_TIMED = (
    "import time; t0 = time.perf_counter(); import asyncio; t1 = time.perf_counter(); "
    "import loopgrid; t2 = time.perf_counter(); print(t1 - t0, t2 - t1)"
)


def _env(pycache: str) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = pycache
    return env


def _wall(code: str, env: dict[str, str]) -> Callable[[], float]:
    def case() -> float:
        t0 = now()
        subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, check=True)
        return now() - t0

    return case


def _inside(env: dict[str, str], rounds: int) -> tuple[list[float], list[float]]:
    """Per round: (seconds to import asyncio, seconds to import loopgrid in all)."""
    asyncio_s: list[float] = []
    loopgrid_s: list[float] = []
    for r in range(-1, rounds):  # one warm-up round
        out = subprocess.run(
            [sys.executable, "-c", _TIMED],
            cwd=ROOT,
            env=env,
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        t_asyncio, t_rest = (float(x) for x in out.split())
        if r >= 0:
            asyncio_s.append(t_asyncio)
            loopgrid_s.append(t_asyncio + t_rest)
    return asyncio_s, loopgrid_s


def _importtime(mod: str, env: dict[str, str]) -> float:
    """``-X importtime``'s cumulative microseconds for the top-level ``mod`` row."""
    err = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", f"import {mod}"],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stderr
    row = re.compile(rf"^import time:\s+\d+ \|\s+(\d+) \| {re.escape(mod)}$", re.MULTILINE)
    m = row.search(err)
    if m is None:
        raise RuntimeError(f"no top-level row for {mod} in -X importtime's output:\n{err}")
    return float(m.group(1))


def run(quick: bool, *, smoke: bool = False) -> dict[str, Any]:
    """Measure; return the result dict described in ``bench/run.py``."""
    rounds, importtime_runs = SIZES["smoke" if smoke else "quick" if quick else "full"]
    with tempfile.TemporaryDirectory(prefix="loopgrid-bench-pyc-") as pycache:
        env = _env(pycache)
        walls = interleave(
            {
                "pass": _wall("pass", env),
                "asyncio": _wall("import asyncio", env),
                "loopgrid": _wall("import loopgrid", env),
            },
            rounds,
            warmup=2,  # the first writes the bytecode cache
        )
        inside_asyncio, inside_loopgrid = _inside(env, rounds)
        it = {
            mod: [_importtime(mod, env) for _ in range(importtime_runs)]
            for mod in ("asyncio", "loopgrid")
        }
    net_loopgrid = [lg - p for lg, p in zip(walls["loopgrid"], walls["pass"], strict=True)]
    net_asyncio = [a - p for a, p in zip(walls["asyncio"], walls["pass"], strict=True)]
    net = compare(
        "(a) import loopgrid vs import asyncio, fresh process, net of start-up (python -c pass)",
        net_loopgrid,
        net_asyncio,
        baseline_name="import asyncio, wall time minus that of python -c pass",
        per=1,
        kind="time",
        target=TARGET,
        candidate_name="import loopgrid",
        unit="us/import",
    )
    net["ratio"]["definition"] = (
        "(wall(python -c 'import loopgrid') - wall(python -c 'pass')) / "
        "(wall(python -c 'import asyncio') - wall(python -c 'pass')), "
        "three fresh processes per round, run back to back (lower is better)"
    )
    timed = compare(
        "(b) the same, timed inside one fresh process (import asyncio, then import loopgrid)",
        inside_loopgrid,
        inside_asyncio,
        baseline_name="import asyncio, timed inside the process",
        per=1,
        kind="time",
        target=None,
        candidate_name="import loopgrid",
        unit="us/import",
    )
    timed["ratio"]["definition"] = (
        "(t(import asyncio) + t(import loopgrid after it)) / t(import asyncio), "
        "both timed with perf_counter in the same fresh process (lower is better)"
    )
    raw = compare(
        "(c) the same, wall time of the whole process (start-up included)",
        walls["loopgrid"],
        walls["asyncio"],
        baseline_name="python -c 'import asyncio'",
        per=1,
        kind="time",
        target=None,
        candidate_name="import loopgrid",
        unit="us/process",
    )
    it_asyncio = statistics.median(it["asyncio"])
    it_loopgrid = statistics.median(it["loopgrid"])
    return {
        "benchmark": "import",
        "title": "import loopgrid vs import asyncio in a fresh interpreter",
        "params": {
            "rounds": rounds,
            "warmup_rounds": 2,
            "python": sys.executable,
            "commands": [
                "python -c 'pass'",
                "python -c 'import asyncio'",
                "python -c 'import loopgrid'",
            ],
            "bytecode": "cached (own PYTHONPYCACHEPREFIX, written by the warm-up rounds)",
        },
        "results": [net, timed, raw],
        "details": {
            "startup_ms_median": statistics.median(walls["pass"]) * 1e3,
            "importtime_us_median": {"asyncio": it_asyncio, "loopgrid": it_loopgrid},
            "importtime_ratio": it_loopgrid / it_asyncio,
            "importtime_runs": importtime_runs,
            "importtime_command": "python -X importtime -c 'import loopgrid' (or asyncio)",
        },
        "notes": [
            "loopgrid imports asyncio, so (a) is 1 + (what loopgrid adds) / (what asyncio costs).",
            "Rounds interleaved in rotating order; the ratio is taken per round, then its "
            "median reported with min/max.",
            "What import loopgrid must not import is tested in tests/test_import_cost.py.",
        ],
    }


if __name__ == "__main__":
    import json

    print(json.dumps(run("--quick" in sys.argv, smoke="--smoke" in sys.argv), indent=2))
