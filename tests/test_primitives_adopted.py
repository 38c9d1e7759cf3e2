"""asyncio primitives made at import, shared by every loop: loopgrid's underneath
(loopgrid.integrations.primitives)."""

from __future__ import annotations

import asyncio
import sys
import threading
from typing import Any

import pytest
from helpers import WAIT

import loopgrid
from loopgrid import Grid, loopbound
from loopgrid.integrations import adapt, primitives
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


class _MyLock(asyncio.Lock):
    pass


class _MyQueue(asyncio.PriorityQueue):  # type: ignore[type-arg]
    pass


def test_what_cannot_be_shared_is_left_as_it_was() -> None:
    held = asyncio.Lock()
    asyncio.run(held.acquire())
    # Subclasses (loopgrid cannot know what they add), a condition on a held
    # lock or on a subclass of Lock.
    for obj in (_MyLock(), _MyQueue(), asyncio.Condition(held), asyncio.Condition(_MyLock())):
        assert not adoptable(obj)
        assert cross_loop(obj) is None
        assert type(obj).__module__ in ("asyncio.locks", "asyncio.queues", __name__)
        assert not type(obj).__name__.startswith("_Grid")

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
def test_a_shared_queue_shuts_down_for_getters_on_every_loop() -> None:
    queue: asyncio.Queue[int] = asyncio.Queue()
    queue.put_nowait(1)
    cross_loop(queue)

    async def get_all() -> list[object]:
        got: list[object] = []
        while True:
            try:
                got.append(await queue.get())
            except asyncio.QueueShutDown:  # type: ignore[attr-defined,unused-ignore]
                got.append("shut down")
                return got

    with Grid(2) as grid:
        getter = grid.spawn(get_all, worker=1)
        grid.spawn(_shutdown, queue, worker=0).result(timeout=WAIT)
        assert getter.result(timeout=WAIT) in ([1, "shut down"], ["shut down"])
    with pytest.raises(asyncio.QueueShutDown):  # type: ignore[attr-defined,unused-ignore]
        queue.put_nowait(2)


async def _shutdown(queue: Any) -> None:
    queue.shutdown()


def test_a_condition_and_its_lock_stay_one_across_loops() -> None:
    lock = asyncio.Lock()
    cond = asyncio.Condition(lock)
    assert cross_loop(cond) == (
        "asyncio.Condition: one Condition shared by every loop (loopgrid.Condition underneath)"
    )
    assert isinstance(cond, asyncio.Condition) and primitives.is_shared(lock)
    items: list[int] = []

    async def consume(n: int) -> list[int]:
        got = []
        for _ in range(n):
            async with cond:
                await cond.wait_for(lambda: bool(items))
                got.append(items.pop(0))
        return got

    async def produce(n: int) -> None:
        for i in range(n):
            async with lock:  # the lock itself: the condition's lock
                items.append(i)
                cond.notify()

    with Grid(2) as grid:
        consumer = grid.spawn(consume, 50, worker=0)
        grid.spawn(produce, 50, worker=1).result(timeout=WAIT)
        assert consumer.result(timeout=WAIT) == list(range(50))
    assert not cond.locked() and not lock.locked()


def test_a_bounded_semaphore_and_the_other_queues_keep_their_state() -> None:
    sem = asyncio.BoundedSemaphore(2)
    prio: asyncio.PriorityQueue[int] = asyncio.PriorityQueue()
    lifo: asyncio.LifoQueue[int] = asyncio.LifoQueue(maxsize=3)
    for i in (5, 1, 3):
        prio.put_nowait(i)
        lifo.put_nowait(i)
    for obj in (sem, prio, lifo):
        assert cross_loop(obj) is not None
    assert isinstance(prio, asyncio.PriorityQueue) and isinstance(lifo, asyncio.LifoQueue)
    assert lifo.full() and prio.qsize() == 3

    async def drain(q: Any) -> list[int]:
        return [await q.get() for _ in range(3)]

    async def release_too_often() -> str:
        async with sem:
            pass
        try:
            sem.release()
        except ValueError as e:
            return str(e)
        return "released"

    with Grid(2) as grid:
        assert grid.spawn(drain, prio, worker=0).result(timeout=WAIT) == [1, 3, 5]
        assert grid.spawn(drain, lifo, worker=1).result(timeout=WAIT) == [3, 1, 5]
        message = grid.spawn(release_too_often, worker=1).result(timeout=WAIT)
    assert message == "BoundedSemaphore released too many times"


@pytest.mark.skipif(sys.version_info < (3, 11), reason="asyncio.Barrier is new in 3.11")
def test_a_barrier_is_one_barrier_for_every_loop() -> None:
    barrier = asyncio.Barrier(3)
    assert cross_loop(barrier) is not None
    assert isinstance(barrier, asyncio.Barrier) and barrier.parties == 3

    async def meet() -> int:
        return await barrier.wait()

    with Grid(3) as grid:
        hs = [grid.spawn(meet, worker=i) for i in range(3)]
        assert sorted(h.result(timeout=WAIT) for h in hs) == [0, 1, 2]
    assert barrier.n_waiting == 0 and not barrier.broken
    assert loopbound.describe(barrier) is None
