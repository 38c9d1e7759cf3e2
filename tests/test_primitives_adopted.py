"""asyncio primitives made at import, shared by every loop: loopgrid's underneath
(loopgrid.integrations.primitives)."""

from __future__ import annotations

import asyncio
import sys
import threading

import pytest
from helpers import WAIT

import loopgrid
from loopgrid import Grid, loopbound
from loopgrid.integrations import adapt
from loopgrid.integrations.primitives import adoptable, cross_loop


def test_a_lock_stays_one_lock_across_loops_and_an_asyncio_lock() -> None:
    lock = asyncio.Lock()
    assert cross_loop(lock) == (
        "asyncio.Lock: one Lock shared by every loop (loopgrid.Lock underneath)"
    )
    assert isinstance(lock, asyncio.Lock)
    assert loopbound.describe(lock) is None  # loop-free now: never flagged again
    inside = [0, 0]
    count = threading.Lock()

    async def hold() -> int:
        async with lock:
            with count:
                inside[0] += 1
                inside[1] = max(inside[1], inside[0])
            await asyncio.sleep(0)
            with count:
                inside[0] -= 1
        return loopgrid.current_worker().index

    with Grid(2) as grid:
        workers = {
            h.result(timeout=WAIT) for h in [grid.spawn(hold, worker=i % 2) for i in range(40)]
        }
    assert workers == {0, 1}
    assert inside[1] == 1
    assert not lock.locked()


def test_an_event_set_on_one_loop_wakes_waiters_on_the_others() -> None:
    event = asyncio.Event()
    assert adapt(event) is not None

    async def wait() -> bool:
        return await event.wait()

    with Grid(3) as grid:
        waiters = [grid.spawn(wait, worker=i) for i in (1, 2)]
        grid.spawn(_set, event, worker=0)
        assert [h.result(timeout=WAIT) for h in waiters] == [True, True]
    assert event.is_set()


async def _set(event: asyncio.Event) -> None:
    event.set()


def test_a_semaphore_and_a_queue_keep_their_values_and_items() -> None:
    sem = asyncio.Semaphore(2)
    queue: asyncio.Queue[int] = asyncio.Queue(maxsize=5)
    for i in range(3):
        queue.put_nowait(i)
    assert cross_loop(sem) is not None and cross_loop(queue) is not None
    assert (queue.qsize(), queue.maxsize, queue.full()) == (3, 5, False)

    async def consume() -> list[int]:
        got = []
        for _ in range(6):
            async with sem:
                got.append(await queue.get())
                queue.task_done()
        return got

    async def produce() -> None:
        for i in range(3, 6):
            await queue.put(i)
        await queue.join()

    with Grid(2) as grid:
        consumer = grid.spawn(consume, worker=0)
        producer = grid.spawn(produce, worker=1)
        assert consumer.result(timeout=WAIT) == list(range(6))
        producer.result(timeout=WAIT)
    assert queue.empty() and not sem.locked()


def test_what_cannot_be_shared_is_left_as_it_was() -> None:
    for obj in (asyncio.Condition(), asyncio.PriorityQueue(), asyncio.BoundedSemaphore()):
        assert not adoptable(obj)
        assert cross_loop(obj) is None
        assert type(obj).__module__.startswith("asyncio")

    async def bind() -> asyncio.Event:
        event = asyncio.Event()
        waiter = asyncio.ensure_future(event.wait())
        await asyncio.sleep(0)  # the waiter binds the event to this loop
        event.set()
        await waiter
        return event

    bound = asyncio.run(bind())
    assert cross_loop(bound) is None
    held = asyncio.Lock()
    asyncio.run(held.acquire())
    assert cross_loop(held) is None


def test_adopting_twice_is_harmless() -> None:
    lock = asyncio.Lock()
    first = cross_loop(lock)
    inner = lock._grid  # type: ignore[attr-defined]
    assert cross_loop(lock) == first
    assert lock._grid is inner  # type: ignore[attr-defined]


@pytest.mark.skipif(sys.version_info < (3, 13), reason="Queue.shutdown() is new in 3.13")
def test_a_shared_queue_refuses_shutdown_and_names_the_fix() -> None:
    queue: asyncio.Queue[int] = asyncio.Queue()
    cross_loop(queue)
    with pytest.raises(RuntimeError, match=r"LoopLocal\(asyncio\.Queue\)"):
        queue.shutdown()
