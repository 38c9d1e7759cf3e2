"""Cross-loop primitives: loopgrid.sync against aiologic, culsans and same-loop asyncio.

Why: ``loopgrid.sync`` could have wrapped aiologic (Lock, Event, Semaphore,
Queue) or culsans (Queue), which are built for exactly this (primitives shared
by threads and event loops). The rule was: adopt a library if it passes the
cross-loop correctness scenarios (``bench/eval_sync_libs.py``) and is at least
as fast as a minimal implementation of our own. This measures the speed half,
on a 2-worker grid (one uvloop loop per thread):

(a) uncontended ``async with lock`` from a grid task: the cost every user of
    a lock pays, measured against ``asyncio.Lock`` on the same loop;
(b) a bounded queue, producer on worker 0, consumer on worker 1: throughput,
    against ``asyncio.Queue`` with both ends on one loop;
(c) a round trip through two ``maxsize=1`` queues (worker 0 -> worker 1 ->
    worker 0): the latency of two cross-loop hand-offs, against the same with
    asyncio.Queue on one loop;
(d) an event round trip: worker 0 sets an event worker 1 waits on, which sets
    one worker 0 waits on: two cross-loop wake-ups, against asyncio.Event on
    one loop;
(e) an event fan-out: worker 0 sets an event that many tasks on worker 1 wait
    on, timed until the last has run: a burst of wake-ups bound for one loop.

The same-loop asyncio primitive is the floor (nothing crosses a thread), and
every candidate's ratio is against it. ``loopgrid.sync``'s own ratios for (a)
and (b) carry the targets of issue 19 (an uncontended lock within 1.5x of
asyncio.Lock; a cross-loop queue at least half as fast as a same-loop one);
the library vs ``loopgrid.sync`` ratios carry the adoption rule, "at least as
fast". A third
variant of our own, ``loopgrid.sync (call_soon_threadsafe)``, wakes each waiter
on another loop with its own ``call_soon_threadsafe`` instead of posting to the
loop's mailbox, to show what the mailbox's batching is worth. aiologic and
culsans are optional: without them their rows are left out (see notes).

Run alone: ``python -m bench.bench_primitives [--quick] [--smoke]``.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
import sys
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

import loopgrid
from bench._harness import Target, compare, interleave, now
from loopgrid import sync
from loopgrid.mailbox import running_loop
from loopgrid.sync._waiter import TaskWaiter, _grant

#: lock: (acquire/release pairs, rounds); queue: (items, maxsize, rounds);
#: rtt and event: (round trips, rounds).
SIZES: dict[str, dict[str, tuple[int, ...]]] = {
    "full": {
        "lock": (200_000, 9),
        "queue": (20_000, 64, 9),
        "rtt": (5_000, 9),
        "event": (5_000, 9),
        "fan": (2_000, 9),
    },
    "quick": {
        "lock": (40_000, 4),
        "queue": (10_000, 64, 4),
        "rtt": (1_000, 4),
        "event": (1_000, 4),
        "fan": (1_000, 4),
    },
    "smoke": {
        "lock": (500, 2),
        "queue": (300, 16, 2),
        "rtt": (50, 2),
        "event": (50, 2),
        "fan": (50, 2),
    },
}

#: Issue 19's targets for loopgrid.sync against same-loop asyncio: (a) an
#: uncontended lock within 1.5x of asyncio.Lock's time; (b) a cross-loop queue
#: with at least half the throughput of asyncio.Queue with both ends on one loop.
LOCK_TARGET = Target("<=", 1.5)
QUEUE_TARGET = Target(">=", 0.5)

OWN = "loopgrid.sync"
OWN_TS = "loopgrid.sync (call_soon_threadsafe)"
BASE = "asyncio"

try:
    import aiologic
except ImportError:  # optional: only for the comparison
    aiologic = None
try:
    import culsans
except ImportError:
    culsans = None


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


# -- the ablation: one call_soon_threadsafe per cross-loop wake-up ----------------


def _wake_threadsafe(w: TaskWaiter) -> None:
    loop = w.mb.loop
    if loop is running_loop():
        _grant(w.fut)
    else:
        loop.call_soon_threadsafe(_grant, w.fut)


@contextlib.contextmanager
def _threadsafe_wakes() -> Iterator[None]:
    """Swap a task waiter's wake-up (``TaskWaiter.wake``, which posts to the
    waiting loop's mailbox) for one call_soon_threadsafe per waiter."""
    saved = TaskWaiter.wake
    TaskWaiter.wake = _wake_threadsafe  # type: ignore[method-assign]
    try:
        yield
    finally:
        TaskWaiter.wake = saved  # type: ignore[method-assign]


# -- candidates -----------------------------------------------------------------------
#
# Each: name -> (factory of a lock / queue / event, the names of its async put
# and get, or wait, methods). Everything is created inside the measuring task,
# so asyncio's primitives bind to that task's loop.


def _lock_makers() -> dict[str, Callable[[], Any]]:
    makers: dict[str, Callable[[], Any]] = {BASE: asyncio.Lock, OWN: sync.Lock}
    if aiologic is not None:
        makers["aiologic"] = aiologic.Lock
    return makers


def _queue_makers() -> dict[str, tuple[Callable[[int], Any], str, str]]:
    makers: dict[str, tuple[Callable[[int], Any], str, str]] = {
        BASE: (asyncio.Queue, "put", "get"),
        OWN: (sync.Queue, "put", "get"),
        OWN_TS: (sync.Queue, "put", "get"),
    }
    if aiologic is not None:
        makers["aiologic"] = (lambda m: aiologic.Queue(maxsize=m), "async_put", "async_get")
    if culsans is not None:
        makers["culsans"] = (culsans.Queue, "async_put", "async_get")
    return makers


async def _asyncio_event_wait(ev: Any) -> None:
    await ev.wait()


async def _aiologic_event_wait(ev: Any) -> None:
    await ev


def _event_makers() -> dict[str, tuple[Callable[[], Any], Callable[[Any], Any]]]:
    makers: dict[str, tuple[Callable[[], Any], Callable[[Any], Any]]] = {
        BASE: (asyncio.Event, _asyncio_event_wait),
        OWN: (sync.Event, _asyncio_event_wait),
        OWN_TS: (sync.Event, _asyncio_event_wait),
    }
    if aiologic is not None:
        makers["aiologic"] = (aiologic.REvent, _aiologic_event_wait)  # Event cannot clear
    return makers


# -- (a) uncontended lock --------------------------------------------------------------


async def lock_round(make: Callable[[], Any], n: int) -> float:
    lock = make()
    t0 = now()
    for _ in range(n):
        async with lock:
            pass
    return now() - t0


# -- (b) queue throughput, (c) queue round trip ---------------------------------------


async def _consume(q: Any, get_name: str, n: int) -> None:
    get = getattr(q, get_name)
    for _ in range(n):
        await get()


async def queue_round(
    grid: loopgrid.Grid,
    spec: tuple[Callable[[int], Any], str, str],
    n: int,
    maxsize: int,
    same_loop: bool,
) -> float:
    make, put_name, get_name = spec
    q = make(maxsize)
    put = getattr(q, put_name)
    if same_loop:
        consumer: Any = asyncio.ensure_future(_consume(q, get_name, n))
    else:
        consumer = grid.spawn(_consume, q, get_name, n, worker=1)
    t0 = now()
    for i in range(n):
        await put(i)
    await consumer
    return now() - t0


async def _echo(q1: Any, q2: Any, put_name: str, get_name: str, n: int) -> None:
    get, put = getattr(q1, get_name), getattr(q2, put_name)
    for _ in range(n):
        await put(await get())


async def rtt_round(
    grid: loopgrid.Grid, spec: tuple[Callable[[int], Any], str, str], n: int, same_loop: bool
) -> float:
    make, put_name, get_name = spec
    q1, q2 = make(1), make(1)
    put, get = getattr(q1, put_name), getattr(q2, get_name)
    if same_loop:
        echo: Any = asyncio.ensure_future(_echo(q1, q2, put_name, get_name, n))
    else:
        echo = grid.spawn(_echo, q1, q2, put_name, get_name, n, worker=1)
    t0 = now()
    for i in range(n):
        await put(i)
        await get()
    t = now() - t0
    await echo
    return t


# -- (d) event round trip ----------------------------------------------------------------


async def _event_echo(e1: Any, e2: Any, wait: Callable[[Any], Any], n: int) -> None:
    for _ in range(n):
        await wait(e1)
        e1.clear()
        e2.set()


async def event_round(
    grid: loopgrid.Grid,
    spec: tuple[Callable[[], Any], Callable[[Any], Any]],
    n: int,
    same_loop: bool,
) -> float:
    make, wait = spec
    e1, e2 = make(), make()
    if same_loop:
        echo: Any = asyncio.ensure_future(_event_echo(e1, e2, wait, n))
    else:
        echo = grid.spawn(_event_echo, e1, e2, wait, n, worker=1)
    t0 = now()
    for _ in range(n):
        e1.set()
        await wait(e2)
        e2.clear()
    t = now() - t0
    await echo
    return t


# -- (e) event fan-out ------------------------------------------------------------------


async def _fan_prepare(ev: Any, wait: Callable[[Any], Any], k: int, box: dict[str, Any]) -> None:
    """Start ``k`` tasks waiting on ``ev`` on this loop; return once all of them wait."""
    box["all"] = asyncio.gather(*[wait(ev) for _ in range(k)])
    await asyncio.sleep(0)  # each waiter takes its first step, up to its wait


async def _fan_collect(box: dict[str, Any]) -> None:
    await box["all"]


async def fan_round(
    grid: loopgrid.Grid,
    spec: tuple[Callable[[], Any], Callable[[Any], Any]],
    k: int,
    same_loop: bool,
) -> float:
    make, wait = spec
    ev = make()
    box: dict[str, Any] = {}
    if same_loop:
        await _fan_prepare(ev, wait, k, box)
        t0 = now()
        ev.set()
        await _fan_collect(box)
        return now() - t0
    await grid.spawn(_fan_prepare, ev, wait, k, box, worker=1)
    t0 = now()
    ev.set()
    await grid.spawn(_fan_collect, box, worker=1)
    return now() - t0


# -- running ------------------------------------------------------------------------------


def _on_worker0(
    grid: loopgrid.Grid,
    fn: Callable[..., Coroutine[Any, Any, float]],
    *args: Any,
    ablation: bool = False,
) -> Callable[[], float]:
    """A case for ``interleave``: run ``fn(*args)`` as a task pinned on worker 0."""

    def case() -> float:
        with _threadsafe_wakes() if ablation else contextlib.nullcontext():
            return float(grid.spawn(fn, *args, worker=0).result())

    return case


def _entries(
    measure: str,
    samples: dict[str, list[float]],
    *,
    per: float,
    kind: str,
    unit: str,
    baseline_name: str,
    own_target: Target | None = None,
) -> list[dict[str, Any]]:
    """The rows of one measure; ``own_target`` is loopgrid.sync's against asyncio."""
    out = []
    for name in samples:
        if name == BASE:
            continue
        e = compare(
            f"{measure}: {name} vs same-loop asyncio",
            samples[name],
            samples[BASE],
            baseline_name=baseline_name,
            per=per,
            kind=kind,
            target=own_target if name == OWN else None,
            candidate_name=name,
            unit=unit,
        )
        out.append(e)
    for lib in ("aiologic", "culsans"):
        if lib not in samples:
            continue
        e = compare(
            f"{measure}: {lib} vs {OWN} (adopt if at least as fast)",
            samples[lib],
            samples[OWN],
            baseline_name=f"{OWN}, same measure",
            per=per,
            kind=kind,
            target=Target("<=", 1.0) if kind == "time" else Target(">=", 1.0),
            candidate_name=lib,
            unit=unit,
        )
        out.append(e)
    return out


def run(quick: bool, *, smoke: bool = False) -> dict[str, Any]:
    """Measure; return the result dict described in ``bench/run.py``."""
    sizes = SIZES["smoke" if smoke else "quick" if quick else "full"]
    n_lock, r_lock = sizes["lock"]
    n_q, maxsize, r_q = sizes["queue"]
    n_rtt, r_rtt = sizes["rtt"]
    n_ev, r_ev = sizes["event"]
    n_fan, r_fan = sizes["fan"]
    results: list[dict[str, Any]] = []
    with loopgrid.Grid(2, name="bench-primitives") as grid:
        worker_loop = type(grid.workers[0].loop)
        lock = interleave(
            {
                name: _on_worker0(grid, lock_round, make, n_lock)
                for name, make in _lock_makers().items()
            },
            r_lock,
        )
        qspecs = _queue_makers()
        queue = interleave(
            {
                name: _on_worker0(
                    grid,
                    queue_round,
                    grid,
                    spec,
                    n_q,
                    maxsize,
                    name == BASE,
                    ablation=name == OWN_TS,
                )
                for name, spec in qspecs.items()
            },
            r_q,
        )
        rtt = interleave(
            {
                name: _on_worker0(
                    grid, rtt_round, grid, spec, n_rtt, name == BASE, ablation=name == OWN_TS
                )
                for name, spec in qspecs.items()
            },
            r_rtt,
        )
        event = interleave(
            {
                name: _on_worker0(
                    grid, event_round, grid, spec, n_ev, name == BASE, ablation=name == OWN_TS
                )
                for name, spec in _event_makers().items()
            },
            r_ev,
        )
        fan = interleave(
            {
                name: _on_worker0(
                    grid, fan_round, grid, spec, n_fan, name == BASE, ablation=name == OWN_TS
                )
                for name, spec in _event_makers().items()
            },
            r_fan,
        )
        stats = grid.stats()
    loop_name = f"{worker_loop.__module__}.{worker_loop.__name__}"
    results += _entries(
        "(a) uncontended `async with lock` from a grid task: time per acquire+release",
        lock,
        per=n_lock,
        kind="time",
        unit="us/acquire+release",
        baseline_name=f"asyncio.Lock on the same {loop_name} loop",
        own_target=LOCK_TARGET,
    )
    results += _entries(
        f"(b) bounded queue (maxsize {maxsize}), producer on worker 0, consumer on worker 1: "
        "throughput",
        queue,
        per=n_q,
        kind="rate",
        unit="items/s",
        baseline_name="asyncio.Queue, producer and consumer on one loop",
        own_target=QUEUE_TARGET,
    )
    results += _entries(
        "(c) round trip through two maxsize=1 queues, worker 0 -> 1 -> 0: time per round trip",
        rtt,
        per=n_rtt,
        kind="time",
        unit="us/round trip",
        baseline_name="asyncio.Queue, both tasks on one loop",
    )
    results += _entries(
        "(d) event round trip, set on worker 0 -> waiter on worker 1 -> set -> worker 0: "
        "time per round trip",
        event,
        per=n_ev,
        kind="time",
        unit="us/round trip",
        baseline_name="asyncio.Event, both tasks on one loop",
    )
    results += _entries(
        f"(e) event fan-out, set on worker 0 -> {n_fan:,} waiters on worker 1: time per waiter",
        fan,
        per=n_fan,
        kind="time",
        unit="us/waiter",
        baseline_name="asyncio.Event, setter and waiters on one loop",
    )
    missing = [lib for lib, mod in (("aiologic", aiologic), ("culsans", culsans)) if mod is None]
    notes = [
        "Every case runs as a task pinned on worker 0 of a 2-worker grid; the cross-loop "
        "partner task is pinned on worker 1. Baselines put both tasks on worker 0's loop.",
        "Rows 'X vs same-loop asyncio': the price of crossing threads (and of being "
        "thread-safe at all, for (a)); loopgrid.sync's rows of (a) and (b) carry issue "
        f"19's targets ({LOCK_TARGET} and {QUEUE_TARGET}). Rows 'X vs loopgrid.sync' carry "
        "the adoption target: met means the library is at least as fast as our own "
        "implementation.",
        f"'{OWN_TS}' is loopgrid.sync with each cross-loop wake-up sent by its own "
        "call_soon_threadsafe instead of the target loop's mailbox (one per burst).",
        "aiologic's Event cannot be cleared, so (d) and (e) use aiologic.REvent; culsans has "
        "no event or lock.",
        "Correctness of the same candidates: bench/eval_sync_libs.py.",
    ]
    if missing:
        notes.append(f"not installed, so not measured: {', '.join(missing)}")
    return {
        "benchmark": "primitives",
        "title": "Cross-loop Lock, Queue and Event: loopgrid.sync vs aiologic, culsans and asyncio",
        "params": {
            "lock_pairs": n_lock,
            "lock_rounds": r_lock,
            "queue_items": n_q,
            "queue_maxsize": maxsize,
            "queue_rounds": r_q,
            "rtt_round_trips": n_rtt,
            "rtt_rounds": r_rtt,
            "event_round_trips": n_ev,
            "event_rounds": r_ev,
            "fan_waiters": n_fan,
            "fan_rounds": r_fan,
            "warmup_rounds": 1,
            "worker_loop": loop_name,
            "aiologic": _version("aiologic"),
            "culsans": _version("culsans"),
        },
        "results": results,
        "details": {"grid_completed": stats["totals"]["completed"]},
        "notes": notes,
    }


if __name__ == "__main__":
    import json

    print(json.dumps(run("--quick" in sys.argv, smoke="--smoke" in sys.argv), indent=2))
