"""RayGrid: per-call overhead and throughput vs plain Ray actor calls and vs the in-process grid.

Why: a RayGrid sends each task to a worker process and brings its outcome
back, on top of a plain Ray actor call it adds the driver's scheduling (run
queues, a pump thread, the handle) and a cloudpickle of the function and its
arguments at spawn. That must cost little next to the Ray call itself; and the
whole trip costs far more than an in-process spawn, so the question users
have is *when* scaling out pays: measured here with pure-Python CPU-bound
tasks, which an in-process grid runs one at a time under the GIL.

Three shapes, each case timed in the same process, rounds interleaved, on a
2-worker RayGrid (private local Ray), 2 plain Ray async actors, and a 2-worker
in-process Grid, all kept alive across rounds:

(a) round trip: one call at a time from the main thread (``spawn().result()``
    vs ``ray.get(actor.echo.remote())``), so latency;
(b) throughput: ``n`` trivial calls in flight at once, then wait for all;
(c) CPU-bound: ``k`` pure-Python tasks of about ``ms`` milliseconds each,
    RayGrid vs the in-process grid (and vs plain Ray actors).

Run alone: ``python -m bench.bench_ray [--quick] [--smoke]`` (needs the
``loopgrid[ray]`` extra).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any

import loopgrid
from bench._harness import Target, compare, interleave, now

#: (round-trip calls, rounds), (calls in flight, rounds), (ms of work per
#: task..., rounds): for each length, as many tasks as make CPU_MS_TOTAL ms.
SIZES: dict[str, dict[str, tuple[int, ...]]] = {
    "full": {"rt": (300, 7), "thr": (2_000, 7), "cpu": (1, 2, 5, 20, 5)},
    "quick": {"rt": (100, 3), "thr": (500, 3), "cpu": (2, 10, 3)},
    "smoke": {"rt": (5, 1), "thr": (20, 1), "cpu": (1, 1)},
}
CPU_MS_TOTAL = {"full": 320, "quick": 160, "smoke": 2}
#: RayGrid's scheduling on top of a Ray call: at most this many times its cost.
OVERHEAD_TARGET = Target("<=", 1.5)
THROUGHPUT_TARGET = Target(">=", 0.5)


async def echo(x: int) -> int:
    return x


def _burn_loop(n: int) -> int:
    x = 0
    for i in range(n):
        x += i * i
    return x


async def burn(n: int) -> int:
    """Pure-Python work that holds the GIL for ``n`` iterations."""
    return _burn_loop(n)


class Echo:
    """The baseline: a plain Ray async actor with the same two methods."""

    async def echo(self, x: int) -> int:
        return x

    async def burn(self, n: int) -> int:
        return _burn_loop(n)


def _iterations_for(ms: float) -> int:
    n = 200_000
    t0 = now()
    _burn_loop(n)
    per = (now() - t0) / n
    return max(1, int(ms / 1e3 / per))


def _measure(sizes: dict[str, tuple[int, ...]], total_ms: int) -> dict[str, Any]:
    import ray

    from loopgrid.ray import RayGrid

    n_rt, rt_rounds = sizes["rt"]
    n_thr, thr_rounds = sizes["thr"]
    *lengths, cpu_rounds = sizes["cpu"]
    per_ms = _iterations_for(1.0)
    out: dict[str, Any] = {"iterations_per_ms": per_ms, "cpu": {}}
    t0 = now()
    with RayGrid(2, name="bench-ray") as rgrid, loopgrid.Grid(2, name="bench-ray-local") as grid:
        out["ray_start_s"] = now() - t0
        actors = [
            ray.remote(Echo).options(max_concurrency=64, num_cpus=0).remote() for _ in range(2)
        ]
        ray.get([a.echo.remote(0) for a in actors])

        def rt_raygrid() -> float:
            t = now()
            for i in range(n_rt):
                rgrid.spawn(echo, i).result()
            return now() - t

        def rt_ray() -> float:
            a = actors[0]
            t = now()
            for i in range(n_rt):
                ray.get(a.echo.remote(i))
            return now() - t

        def rt_local() -> float:
            t = now()
            for i in range(n_rt):
                grid.spawn(echo, i).result()
            return now() - t

        out["rt"] = interleave({"raygrid": rt_raygrid, "ray": rt_ray, "local": rt_local}, rt_rounds)

        out["thr"] = _fan_out(rgrid, grid, actors, echo, list(range(n_thr)), thr_rounds)

        for ms in lengths:
            k = total_ms // ms
            out["cpu"][ms] = _fan_out(rgrid, grid, actors, burn, [ms * per_ms] * k, cpu_rounds)
        out["stats"] = rgrid.stats()
        for a in actors:
            ray.kill(a)
    return out


def _fan_out(
    rgrid: Any, grid: loopgrid.Grid, actors: list[Any], fn: Any, args: list[Any], rounds: int
) -> dict[str, list[float]]:
    """Seconds per round of ``fn(a)`` for each ``a`` of ``args``, all in flight at
    once: on the RayGrid, on plain Ray actors (the method of the same name, the
    calls alternating between the 2 actors) and on the in-process Grid."""
    import ray

    def on(g: Any) -> Callable[[], float]:
        def run() -> float:
            t = now()
            for h in [g.spawn(fn, a) for a in args]:
                h.result()
            return now() - t

        return run

    name = fn.__name__

    def on_ray() -> float:
        t = now()
        ray.get([getattr(actors[i & 1], name).remote(a) for i, a in enumerate(args)])
        return now() - t

    return interleave({"raygrid": on(rgrid), "ray": on_ray, "local": on(grid)}, rounds)


def run(quick: bool, *, smoke: bool = False) -> dict[str, Any]:
    """Measure; return the result dict described in ``bench/run.py``."""
    mode = "smoke" if smoke else "quick" if quick else "full"
    sizes = SIZES[mode]
    n_rt, rt_rounds = sizes["rt"]
    n_thr, thr_rounds = sizes["thr"]
    *lengths, cpu_rounds = sizes["cpu"]
    total_ms = CPU_MS_TOTAL[mode]
    m = _measure(sizes, total_ms)
    plain = "plain Ray async actor call (ray.get(actor.echo.remote(i)))"
    # (title, measurements, baseline, baseline's name, per, kind, target, unit)
    table: list[tuple[str, str, str, str, int, str, Any, str]] = [
        ("(a) round trip, one call at a time from a plain thread: time per call",
         "rt", "ray", plain, n_rt, "time", OVERHEAD_TARGET, "us/call"),
        ("(a) round trip: RayGrid vs the in-process Grid(2), time per call",
         "rt", "local", "loopgrid.Grid(2).spawn(echo, i).result()", n_rt, "time", None, "us/call"),
        (f"(b) throughput, {n_thr:,} trivial calls in flight over 2 workers",
         "thr", "ray", "ray.get([...]) of plain actor calls over 2 actors", n_thr, "rate",
         THROUGHPUT_TARGET, "calls/s"),
        (f"(b) throughput: RayGrid vs the in-process Grid(2), {n_thr:,} calls",
         "thr", "local", "loopgrid.Grid(2), same calls", n_thr, "rate", None, "calls/s"),
    ]  # fmt: skip
    cases: dict[str, Any] = {"rt": m["rt"], "thr": m["thr"]}
    for ms in lengths:
        k = total_ms // ms
        cases[f"cpu{ms}"] = m["cpu"][ms]
        table += [
            (f"(c) {k} pure-Python tasks of {ms} ms: RayGrid(2) vs in-process Grid(2)",
             f"cpu{ms}", "local", "loopgrid.Grid(2) (one GIL)", k, "rate", None, "tasks/s"),
            (f"(c) {k} tasks of {ms} ms: RayGrid(2) vs plain Ray actors (2)",
             f"cpu{ms}", "ray", "plain Ray actor calls over 2 actors", k, "rate", None, "tasks/s"),
        ]  # fmt: skip
    results = [
        compare(
            title,
            cases[case]["raygrid"],
            cases[case][baseline],
            baseline_name=baseline_name,
            per=per,
            kind=kind,
            target=target,
            candidate_name="RayGrid",
            unit=unit,
        )
        for title, case, baseline, baseline_name, per, kind, target, unit in table
    ]
    stats = m["stats"]
    return {
        "benchmark": "ray",
        "title": "RayGrid (2 worker processes on a private local Ray) vs Ray actors and Grid",
        "params": {
            "round_trip_calls": n_rt,
            "round_trip_rounds": rt_rounds,
            "throughput_calls": n_thr,
            "throughput_rounds": thr_rounds,
            "cpu_task_ms": lengths,
            "cpu_ms_per_case": total_ms,
            "cpu_iterations_per_ms": m["iterations_per_ms"],
            "cpu_rounds": cpu_rounds,
            "warmup_rounds": 1,
            "workers": 2,
            "concurrency": stats["concurrency"],
            "ray": sys.modules["ray"].__version__,
        },
        "results": results,
        "details": {
            "ray_start_seconds": round(m["ray_start_s"], 2),
            "raygrid_completed": stats["totals"]["completed"],
            "raygrid_spawned": stats["totals"]["spawned"],
            "per_worker_completed": [w["completed"] for w in stats["workers"]],
        },
        "notes": [
            "Time ratios: candidate time / baseline time (lower is better); rate ratios: "
            "candidate rate / baseline rate (higher is better); medians of interleaved rounds.",
            "(c) is where scaling out pays: the in-process grid runs pure-Python code on one "
            "GIL, the RayGrid on one interpreter per worker.",
        ],
    }


if __name__ == "__main__":
    import json

    quick = "--quick" in sys.argv
    smoke = "--smoke" in sys.argv
    t0 = time.perf_counter()
    print(json.dumps(run(quick, smoke=smoke), indent=2, default=str))
    print(f"{time.perf_counter() - t0:.1f} s", file=sys.stderr)
