"""anyio's primitives shared across loops (loopgrid.integrations.anyio).

While a grid is open, ``anyio.Event``, ``Lock``, ``Semaphore``,
``CapacityLimiter`` (and ``Condition``, built on them) made on anyio's asyncio
backend work from tasks on any loop; a memory object stream used from two
running loops raises at once, naming loopgrid.Queue.

The grids here run their loops in asyncio's debug mode: there, anyio's own
classes fail the cross-thread wake-up at once ("Non-thread-safe operation"),
where without it they wake the waiter only at its loop's next own wake-up.
So each cross-loop test below fails on anyio's classes, and passes only if the
wake-up really crosses threads. Nothing sleeps: a waiter is known to be queued
from its object's statistics, polled from the test's thread.
"""

from __future__ import annotations

import asyncio
import functools
import random
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from typing import Any

import anyio
import pytest
from anyio._backends import _asyncio as anyio_asyncio
from helpers import WAIT, close_or_fail, wait_until

from loopgrid import Grid
from loopgrid.integrations import anyio as crossloop


@pytest.fixture
def dgrid() -> Iterator[Grid]:
    """A 2-worker grid whose loops run in asyncio's debug mode."""
    g = Grid(loops=2, debug=True)
    try:
        yield g
    finally:
        close_or_fail(g, cancel=True)


def on(grid: Grid, worker: int, fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Run ``fn(*args, **kwargs)`` (async) as a task on ``worker``; its result."""
    return grid.spawn(functools.partial(fn, *args, **kwargs), worker=worker).result(timeout=WAIT)


async def call(fn: Any, *args: Any) -> Any:
    return fn(*args)


async def make(factory: Any, *args: Any, **kwargs: Any) -> Any:
    return factory(*args, **kwargs)


def test_anyio_makes_loopgrids_classes_only_while_a_grid_is_open() -> None:
    async def kinds() -> tuple[type, ...]:
        return (
            type(anyio.Event()),
            type(anyio.Lock()),
            type(anyio.Semaphore(1)),
            type(anyio.CapacityLimiter(1)),
        )

    own = (
        anyio_asyncio.Event,
        anyio_asyncio.Lock,
        anyio_asyncio.Semaphore,
        anyio_asyncio.CapacityLimiter,
    )
    ours = (crossloop.Event, crossloop.Lock, crossloop.Semaphore, crossloop.CapacityLimiter)
    assert asyncio.run(kinds()) == own
    first = Grid(loops=1)
    second = Grid(loops=1)
    try:
        assert on(first, 0, kinds) == ours
        assert asyncio.run(kinds()) == ours  # any loop, while a grid is open
        first.close()
        assert on(second, 0, kinds) == ours  # until the last grid closes
    finally:
        first.close()
        second.close()
    assert asyncio.run(kinds()) == own
    for cls in ours:
        assert issubclass(cls, own[ours.index(cls)])


def test_an_event_set_on_one_worker_wakes_a_waiter_on_another(dgrid: Grid) -> None:
    ev = on(dgrid, 0, make, anyio.Event)
    waiter = dgrid.spawn(ev.wait, worker=1)
    assert wait_until(lambda: ev.statistics().tasks_waiting == 1)
    on(dgrid, 0, call, ev.set)
    assert waiter.result(timeout=WAIT) is None
    assert ev.is_set() and ev.statistics().tasks_waiting == 0


def test_an_event_set_by_a_grid_task_wakes_a_foreign_loop(dgrid: Grid) -> None:
    async def main() -> str:
        ev = anyio.Event()
        dgrid.spawn(call, ev.set, worker=1)
        with anyio.fail_after(WAIT):
            await ev.wait()
        return "woken"

    assert asyncio.run(main(), debug=True) == "woken"


def test_a_condition_notified_on_one_worker_wakes_a_waiter_on_another(dgrid: Grid) -> None:
    cond = on(dgrid, 0, make, anyio.Condition)
    seen: list[int] = []

    async def wait() -> int:
        async with cond:
            await cond.wait()
            return len(seen)

    async def notify() -> None:
        async with cond:
            seen.append(1)
            cond.notify()

    waiter = dgrid.spawn(wait, worker=1)
    assert wait_until(lambda: cond.statistics().tasks_waiting == 1)
    on(dgrid, 0, notify)
    assert waiter.result(timeout=WAIT) == 1


def test_a_lock_excludes_tasks_on_every_loop_and_hands_over_in_order(dgrid: Grid) -> None:
    lock = on(dgrid, 0, make, anyio.Lock)
    holder: list[int | None] = [None]
    order: list[int] = []

    async def critical(i: int) -> None:
        async with lock:
            assert holder[0] is None, f"task {i} entered while {holder[0]} held the lock"
            holder[0] = i
            order.append(i)
            await asyncio.sleep(0)
            holder[0] = None

    async def hold_then_release(started: threading.Event, go: threading.Event) -> None:
        await lock.acquire()
        started.set()
        await anyio.to_thread.run_sync(go.wait)
        lock.release()

    started, go = threading.Event(), threading.Event()
    first = dgrid.spawn(hold_then_release, started, go, worker=0)
    assert started.wait(WAIT)
    waiters = []
    for i in range(6):  # queued one by one, alternating loops: FIFO across them
        waiters.append(dgrid.spawn(critical, i, worker=(i + 1) % 2))
        assert wait_until(lambda n=i + 1: lock.statistics().tasks_waiting == n)
    go.set()
    first.result(timeout=WAIT)
    for h in waiters:
        h.result(timeout=WAIT)
    assert order == list(range(6))
    assert not lock.locked()


def test_lock_errors_are_anyios(dgrid: Grid) -> None:
    lock = on(dgrid, 0, make, anyio.Lock)
    held, go = threading.Event(), threading.Event()

    async def hold() -> None:
        async with lock:
            held.set()
            with pytest.raises(RuntimeError, match="Attempted to acquire an already held Lock"):
                await lock.acquire()
            with pytest.raises(RuntimeError, match="Attempted to acquire an already held Lock"):
                lock.acquire_nowait()
            await anyio.to_thread.run_sync(go.wait)

    async def try_other() -> str:
        with pytest.raises(anyio.WouldBlock):
            lock.acquire_nowait()
        with pytest.raises(RuntimeError, match="The current task is not holding this lock"):
            lock.release()
        return "checked"

    holder = dgrid.spawn(hold, worker=0)
    assert held.wait(WAIT)
    assert on(dgrid, 1, try_other) == "checked"
    go.set()
    holder.result(timeout=WAIT)
    on(dgrid, 1, call, lock.acquire_nowait)
    assert lock.locked()


@pytest.mark.parametrize("seed", range(4))
def test_cancelled_waiters_never_keep_the_lock_or_a_permit(dgrid: Grid, seed: int) -> None:
    """Waiters on both loops, cancelled at random moments (before, during or
    after a hand-over to them): whatever was handed to a cancelled waiter is
    passed on, so the lock ends free and every permit is back."""
    rng = random.Random(seed)
    lock = on(dgrid, 0, make, anyio.Lock)
    sem = on(dgrid, 1, make, anyio.Semaphore, 2, max_value=2)
    limiter = on(dgrid, 0, make, anyio.CapacityLimiter, 2)
    done: list[int] = []

    async def use(i: int) -> None:
        async with lock:
            await asyncio.sleep(0)
        async with sem:
            await asyncio.sleep(0)
        async with limiter:
            await asyncio.sleep(0)
        done.append(i)

    handles = [dgrid.spawn(use, i, worker=i % 2) for i in range(60)]
    for h in rng.sample(handles, 30):
        h.cancel()
    states = []
    for h in handles:
        try:
            h.result(timeout=WAIT)
            states.append("done")
        except asyncio.CancelledError:
            states.append("cancelled")
    assert states.count("done") == len(done)
    assert not lock.locked() and lock.statistics().tasks_waiting == 0
    assert sem.value == 2 and sem.statistics().tasks_waiting == 0
    assert limiter.borrowed_tokens == 0 and limiter.statistics().tasks_waiting == 0


def test_a_semaphore_bounds_tasks_on_every_loop(dgrid: Grid) -> None:
    sem = on(dgrid, 0, make, anyio.Semaphore, 2, max_value=2)
    inside: list[int] = []
    most = [0]

    async def use() -> None:
        async with sem:
            inside.append(1)
            most[0] = max(most[0], len(inside))
            await asyncio.sleep(0)
            await asyncio.sleep(0)
            inside.pop()

    for h in [dgrid.spawn(use, worker=i % 2) for i in range(40)]:
        h.result(timeout=WAIT)
    assert 1 <= most[0] <= 2  # never more than two at a time
    assert sem.value == 2
    with pytest.raises(ValueError, match="semaphore released too many times"):
        on(dgrid, 1, call, sem.release)
    on(dgrid, 1, call, sem.acquire_nowait)
    on(dgrid, 0, call, sem.acquire_nowait)
    with pytest.raises(anyio.WouldBlock):
        on(dgrid, 1, call, sem.acquire_nowait)


def test_a_capacity_limiter_lends_tokens_across_loops(dgrid: Grid) -> None:
    limiter = on(dgrid, 0, make, anyio.CapacityLimiter, 1)
    held, go = threading.Event(), threading.Event()

    async def borrow_and_hold() -> None:
        async with limiter:
            held.set()
            await anyio.to_thread.run_sync(go.wait)

    async def borrow() -> int:
        async with limiter:
            return limiter.borrowed_tokens

    holder = dgrid.spawn(borrow_and_hold, worker=0)
    assert held.wait(WAIT)
    waiters = [dgrid.spawn(borrow, worker=1) for _ in range(3)]
    assert wait_until(lambda: limiter.statistics().tasks_waiting == 3)
    # More tokens wake waiters on the other loop (two at once, the third when
    # one of them gives its token back), while the first borrower still holds.
    on(dgrid, 0, call, setattr, limiter, "total_tokens", 3)
    assert all(2 <= h.result(timeout=WAIT) <= 3 for h in waiters)
    assert limiter.borrowed_tokens == 1
    go.set()
    holder.result(timeout=WAIT)
    assert limiter.borrowed_tokens == 0
    with pytest.raises(RuntimeError, match="isn't holding any of this CapacityLimiter's tokens"):
        on(dgrid, 1, call, limiter.release)
    with pytest.raises(TypeError, match=r"total_tokens must be an int or math\.inf"):
        limiter.total_tokens = 2.5


def test_a_memory_stream_used_from_two_running_loops_fails_at_once(dgrid: Grid) -> None:
    send, receive = on(dgrid, 0, make, anyio.create_memory_object_stream, 4)

    async def one_loop() -> list[int]:
        await send.send(1)
        await send.send(2)
        return [await receive.receive(), receive.receive_nowait()]

    assert on(dgrid, 0, one_loop) == [1, 2]
    with pytest.raises(RuntimeError, match=r"memory object stream.*loopgrid\.Queue"):
        on(dgrid, 1, receive.receive)
    with pytest.raises(RuntimeError, match=r"memory object stream.*loopgrid\.Queue"):
        on(dgrid, 1, send.send, 3)
    assert receive.statistics().current_buffer_used == 0  # nothing was half done
    send.close()
    receive.close()


def test_a_memory_stream_moves_on_once_its_loop_has_stopped(dgrid: Grid) -> None:
    """A stream filled by a loop that has finished is free for another."""

    async def fill() -> Any:
        send, receive = anyio.create_memory_object_stream[int](2)
        with send:
            await send.send(7)
        return receive

    with asyncio.run(fill()) as receive:
        assert on(dgrid, 1, receive.receive) == 7
        with pytest.raises(anyio.EndOfStream):
            on(dgrid, 1, receive.receive)


def test_anyio_imported_after_the_grid_started_is_patched_too() -> None:
    code = textwrap.dedent(
        """
        import sys
        import loopgrid
        assert "anyio" not in sys.modules
        with loopgrid.Grid(loops=1) as grid:
            import anyio
            async def kind():
                return type(anyio.Lock()).__module__
            print(grid.spawn(kind).result(timeout=30))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=WAIT * 2
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "loopgrid.integrations.anyio"


def test_anyio_inside_one_task_is_unchanged(dgrid: Grid) -> None:
    """The common case: anyio's objects within one task's task group."""

    async def pipeline() -> list[int]:
        got: list[int] = []
        send, receive = anyio.create_memory_object_stream[int](1)
        lock = anyio.Lock()

        async def produce() -> None:
            async with send:
                for i in range(20):
                    await send.send(i)

        async def consume() -> None:
            async with receive:
                async for i in receive:
                    async with lock:
                        got.append(i)

        async with anyio.create_task_group() as tg:
            tg.start_soon(produce)
            tg.start_soon(consume)
        return got

    assert on(dgrid, 1, pipeline) == list(range(20))


def test_anyio_objects_made_at_import_are_made_once_across_loops(dgrid: Grid) -> None:
    """Made with no loop running, anyio hands out adapters that make the real
    object at first use; tasks on both loops using one at once get one lock,
    and an event set from a plain thread before anyone waited stays set."""
    lock = anyio.Lock()
    ev = anyio.Event()
    assert type(lock).__name__ == "LockAdapter"
    holder: list[int | None] = [None]

    async def critical(i: int) -> None:
        for _ in range(20):
            async with lock:
                assert holder[0] is None, f"task {i} entered while {holder[0]} held the lock"
                holder[0] = i
                await asyncio.sleep(0)
                holder[0] = None

    threading.Thread(target=ev.set).start()
    for h in [dgrid.spawn(critical, i, worker=i % 2) for i in range(8)]:
        h.result(timeout=WAIT)
    assert isinstance(lock._internal_lock, crossloop.Lock)  # type: ignore[attr-defined]
    assert on(dgrid, 1, ev.wait) is None
    assert crossloop.crosses_loops(lock) and crossloop.crosses_loops(ev)


def test_the_startup_check_passes_anyio_objects_that_cross_loops_only() -> None:
    from loopgrid import loopbound

    async def make_event() -> Any:
        return anyio.Event()

    bound = asyncio.run(make_event())  # no grid open: anyio's own, bound to a loop
    found = loopbound.describe(bound)
    assert found is not None
    assert found[0] == "an anyio.Event" and "while the grid runs" in found[1]
    assert loopbound.describe(anyio.Lock()) is None  # an adapter: made at first use
    with Grid(loops=1) as grid:
        assert loopbound.describe(on(grid, 0, make, anyio.Semaphore, 1)) is None


def test_an_anyio_event_made_before_the_grid_opened_wakes_a_waiter_on_another_loop() -> None:
    """Made on a loop before any grid was open, it is anyio's own class: while a
    grid is open, its set() from another loop's thread is sent to the waiter's
    loop (in debug mode anyio's own set() would fail there at once)."""

    async def main() -> str:
        ev = anyio.Event()  # no grid open yet: anyio's class, bound to this loop
        assert type(ev) is anyio_asyncio.Event
        async with Grid(loops=2, debug=True) as grid:
            # The waiter first: its first step binds the event to this loop. A
            # set() from another thread before any waiter has bound it is
            # asyncio.Event's own, unguarded (with no GIL it raced this wait).
            waiter = asyncio.ensure_future(ev.wait())
            await asyncio.sleep(0)  # exactly the waiter's first step
            assert ev._event._loop is asyncio.get_running_loop() and not waiter.done()
            grid.spawn(call, ev.set, worker=1)
            with anyio.fail_after(WAIT):
                await waiter
        return "woken"

    assert asyncio.run(main(), debug=True) == "woken"
