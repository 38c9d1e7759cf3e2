"""Cross-loop calls: a foreign loop awaiting ``grid.spawn`` vs ``run_coroutine_threadsafe``.

Why: the common way to hand work from one event loop to another thread's loop
is ``asyncio.run_coroutine_threadsafe`` plus ``wrap_future``, which pays two
thread-safe wake-ups and a ``concurrent.futures.Future`` per call. A Handle is
awaitable from any loop directly, and completions bound for one loop are
batched into one wake-up (loopgrid's Mailbox). Two shapes are measured from the
main thread's loop (uvloop) against a 1-worker grid, and against another uvloop
loop on its own thread for the baseline:

(a) round trip: one call at a time, so latency, where batching cannot help;
(b) pipelined: many client coroutines each making sequential calls, so
    throughput, where it should. Clients are all started at once with
    ``gather``: no semaphore (on 3.11 its wake-up is O(k^2) in waiters).

Run alone: ``python -m bench.bench_crossloop [--quick] [--smoke]``.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
from typing import Any

import loopgrid
from bench._harness import (
    LoopRunner,
    LoopThread,
    Target,
    compare,
    interleave_async,
    now,
    uvloop_factory,
)

#: (round-trip calls per round, rounds) and (clients, calls per client, rounds).
SIZES: dict[str, dict[str, tuple[int, ...]]] = {
    "full": {"rt": (1_000, 21), "pipe": (1_000, 20, 9)},
    "quick": {"rt": (300, 7), "pipe": (250, 20, 4)},
    "smoke": {"rt": (20, 2), "pipe": (20, 3, 2)},
}
RT_TARGET = Target("<=", 1.0)
PIPE_TARGET = Target(">=", 3.0)


async def echo(x: int) -> int:
    return x


# -- (a) round trip ---------------------------------------------------------------


async def rt_grid(grid: loopgrid.Grid, n: int, lat: list[float]) -> float:
    spawn = grid.spawn
    t0 = now()
    for i in range(n):
        t = now()
        await spawn(echo, i)
        lat.append(now() - t)
    return now() - t0


async def rt_threadsafe(loop: asyncio.AbstractEventLoop, n: int, lat: list[float]) -> float:
    rcts, wrap = asyncio.run_coroutine_threadsafe, asyncio.wrap_future
    t0 = now()
    for i in range(n):
        t = now()
        await wrap(rcts(echo(i), loop))
        lat.append(now() - t)
    return now() - t0


# -- (b) pipelined --------------------------------------------------------------------


async def _client_grid(grid: loopgrid.Grid, calls: int) -> None:
    spawn = grid.spawn
    for j in range(calls):
        await spawn(echo, j)


async def _client_threadsafe(loop: asyncio.AbstractEventLoop, calls: int) -> None:
    rcts, wrap = asyncio.run_coroutine_threadsafe, asyncio.wrap_future
    for j in range(calls):
        await wrap(rcts(echo(j), loop))


async def pipe_grid(grid: loopgrid.Grid, clients: int, calls: int) -> float:
    t0 = now()
    await asyncio.gather(*[_client_grid(grid, calls) for _ in range(clients)])
    return now() - t0


async def pipe_threadsafe(loop: asyncio.AbstractEventLoop, clients: int, calls: int) -> float:
    t0 = now()
    await asyncio.gather(*[_client_threadsafe(loop, calls) for _ in range(clients)])
    return now() - t0


def _percentiles_us(lat: list[float]) -> dict[str, float]:
    q = statistics.quantiles(lat, n=20) if len(lat) >= 2 else [lat[0]] * 19
    return {"p5": q[0] * 1e6, "p50": statistics.median(lat) * 1e6, "p95": q[-1] * 1e6}


async def _measure(
    grid: loopgrid.Grid, other: asyncio.AbstractEventLoop, sizes: dict[str, tuple[int, ...]]
) -> dict[str, Any]:
    n, rt_rounds = sizes["rt"]
    clients, calls, pipe_rounds = sizes["pipe"]
    lat_grid: list[float] = []
    lat_ts: list[float] = []
    rt = await interleave_async(
        {
            "loopgrid": lambda: rt_grid(grid, n, lat_grid),
            "threadsafe": lambda: rt_threadsafe(other, n, lat_ts),
        },
        rt_rounds,
    )
    pipe = await interleave_async(
        {
            "loopgrid": lambda: pipe_grid(grid, clients, calls),
            "threadsafe": lambda: pipe_threadsafe(other, clients, calls),
        },
        pipe_rounds,
    )
    return {"rt": rt, "pipe": pipe, "lat_grid": lat_grid, "lat_ts": lat_ts}


def run(quick: bool, *, smoke: bool = False) -> dict[str, Any]:
    """Measure; return the result dict described in ``bench/run.py``."""
    sizes = SIZES["smoke" if smoke else "quick" if quick else "full"]
    n, rt_rounds = sizes["rt"]
    clients, calls, pipe_rounds = sizes["pipe"]
    uv_factory, uv_label = uvloop_factory()
    with (
        loopgrid.Grid(1, name="bench-crossloop") as grid,
        LoopThread(uv_factory, "bench-crossloop-other") as other,
        LoopRunner(uv_factory) as main,
    ):
        m = main.run(_measure(grid, other.loop, sizes))
        stats = grid.stats()
    # Warm-up rounds count too: one per benchmark.
    expected = n * (rt_rounds + 1) + clients * calls * (pipe_rounds + 1)
    baseline = f"await wrap_future(run_coroutine_threadsafe(echo(i), loop)), {uv_label} in a thread"
    rt = compare(
        "(a) round trip, one call at a time: time per call",
        m["rt"]["loopgrid"],
        m["rt"]["threadsafe"],
        baseline_name=baseline,
        per=n,
        kind="time",
        target=RT_TARGET,
        unit="us/call",
    )
    rt["latency_us"] = {
        "loopgrid": _percentiles_us(m["lat_grid"]),
        "baseline": _percentiles_us(m["lat_ts"]),
    }
    pipe = compare(
        f"(b) pipelined, {clients:,} clients x {calls} sequential calls: throughput",
        m["pipe"]["loopgrid"],
        m["pipe"]["threadsafe"],
        baseline_name=baseline,
        per=clients * calls,
        kind="rate",
        target=PIPE_TARGET,
        unit="calls/s",
    )
    main_loop = type(main.loop)
    return {
        "benchmark": "crossloop",
        "title": "Calls from a foreign event loop into a 1-worker grid",
        "params": {
            "round_trip_calls": n,
            "round_trip_rounds": rt_rounds,
            "clients": clients,
            "calls_per_client": calls,
            "pipelined_rounds": pipe_rounds,
            "warmup_rounds": 1,
            "caller_loop": f"{main_loop.__module__}.{main_loop.__name__} (main thread)",
            "code": "await grid.spawn(echo, i)",
        },
        "results": [rt, pipe],
        "details": {
            "grid_completed": stats["totals"]["completed"],
            "grid_completed_expected": expected,
            "external_spawned": stats["external"]["spawned"],
        },
        "notes": [
            "(a) ratio = loopgrid time per call / baseline time per call (lower is better); "
            "latency_us gives per-call percentiles over all rounds.",
            "(b) ratio = loopgrid calls/s / baseline calls/s (higher is better).",
        ],
    }


if __name__ == "__main__":
    import json

    print(json.dumps(run("--quick" in sys.argv, smoke="--smoke" in sys.argv), indent=2))
