"""Cross-loop Condition, BoundedSemaphore, Barrier, PriorityQueue, LifoQueue,
Queue.shutdown, and parity with asyncio (loopgrid.sync).

Waiters are tasks pinned on the workers of a grid (several loops on several
threads), tasks on a foreign asyncio loop, and plain threads using the blocking
variants. That a waiter has queued is known from its primitive's waiter count
(polled with ``wait_until``), never from a sleep; no assertion is about time.
The parity tests run one script against asyncio's primitive and loopgrid's on
one loop and compare what happened.
"""

from __future__ import annotations

import asyncio
import random
import sys
import threading
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

import pytest
from helpers import STRESS_WAIT, WAIT, Countdown, block_worker, wait_until
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_sync import ForeignLoop, Threads

import loopgrid
from loopgrid import (
    Barrier,
    BoundedSemaphore,
    BrokenBarrierError,
    Condition,
    Grid,
    LifoQueue,
    Lock,
    PriorityQueue,
    Queue,
    QueueShutDown,
    Semaphore,
    WouldBlockError,
)


@pytest.fixture
def foreign() -> Iterator[ForeignLoop]:
    f = ForeignLoop()
    try:
        yield f
    finally:
        f.close()


def run(coro: Coroutine[Any, Any, Any]) -> Any:
    return asyncio.run(coro)


def n_waiting(p: Any) -> int:
    """Parties queued on ``p`` (private state: the only signal there is)."""
    if isinstance(p, Queue):
        return len(p._getters) + len(p._putters)
    if isinstance(p, Barrier):
        return len(p._cond._waiters)
    return len(p._waiters)


# -- the exceptions are asyncio's ------------------------------------------------------------


def test_exceptions_are_asyncios_where_it_has_them() -> None:
    if sys.version_info >= (3, 13):
        assert QueueShutDown is asyncio.QueueShutDown
    else:
        assert issubclass(QueueShutDown, Exception)
    if sys.version_info >= (3, 11):
        assert BrokenBarrierError is asyncio.BrokenBarrierError
    else:
        assert issubclass(BrokenBarrierError, RuntimeError)
    for name in ("Condition", "BoundedSemaphore", "Barrier", "PriorityQueue", "LifoQueue"):
        assert name in loopgrid.__all__ and getattr(loopgrid, name) is getattr(loopgrid.sync, name)


# -- the three reported bugs --------------------------------------------------------------------


async def _reacquire_script(make: Callable[[], Any]) -> list[str]:
    """Two holders, one waiter; a holder releases (the waiter is granted) and
    re-acquires at once, then the other releases. asyncio: the waiter runs first."""
    sem = make()
    order: list[str] = []
    await sem.acquire()
    await sem.acquire()

    async def waiter() -> None:
        await sem.acquire()
        order.append("waiter")
        sem.release()

    w = asyncio.ensure_future(waiter())
    await asyncio.sleep(0)  # the waiter queues (same loop: one step suffices)
    sem.release()  # granted to the waiter, which has not run
    sem.release()  # a free permit, while the waiter still has not run
    order.append(f"locked={sem.locked()}")
    await sem.acquire()  # asyncio: queues behind the granted waiter
    order.append("re-acquirer")
    sem.release()
    await w
    return order


@pytest.mark.parametrize("kind", ["Semaphore", "BoundedSemaphore"])
def test_semaphore_reacquire_queues_behind_a_granted_waiter_as_in_asyncio(kind: str) -> None:
    ours = run(_reacquire_script(lambda: getattr(loopgrid, kind)(2)))
    theirs = run(_reacquire_script(lambda: getattr(asyncio, kind)(2)))
    assert ours == theirs == ["locked=True", "waiter", "re-acquirer"]


def test_semaphore_granted_waiter_on_a_blocked_loop_is_not_overtaken(grid: Grid) -> None:
    sem = Semaphore(1)
    order: list[str] = []
    assert sem.acquire_blocking()

    async def take(tag: str) -> None:
        async with sem:
            order.append(tag)

    first = grid.spawn(take, "granted first", worker=0)
    assert wait_until(lambda: n_waiting(sem) == 1)
    blocker, release = block_worker(grid, 0)
    sem.release()  # handed to the waiter on worker 0, which cannot run yet
    assert sem.locked()
    second = grid.spawn(take, "asked later", worker=1)
    assert wait_until(lambda: n_waiting(sem) == 1)  # it queued: no barging
    release.set()
    blocker.result(WAIT)
    first.result(WAIT)
    second.result(WAIT)
    assert order == ["granted first", "asked later"]
    assert not sem.locked() and sem._value == 1


async def _cancelled_waiter_script(make: Callable[[], Any]) -> list[bool]:
    lock = make()
    await lock.acquire()
    w = asyncio.ensure_future(lock.acquire())
    await asyncio.sleep(0)  # queued
    w.cancel()  # its future is cancelled; the task has not run yet
    lock.release()
    seen = [lock.locked()]
    await asyncio.gather(w, return_exceptions=True)
    seen.append(lock.locked())
    return seen


def test_lock_released_past_a_cancelled_waiter_is_unlocked_as_in_asyncio(grid: Grid) -> None:
    theirs = run(_cancelled_waiter_script(asyncio.Lock))
    ours = run(_cancelled_waiter_script(Lock))
    on_grid = grid.spawn(_cancelled_waiter_script, Lock, worker=1).result(WAIT)
    assert ours == theirs == on_grid == [False, False]


@pytest.mark.parametrize("maxsize", [1.3, 2, 0, -1, 2.0])
def test_queue_maxsize_is_taken_as_asyncio_takes_it(maxsize: Any) -> None:
    def fill(q: Any) -> list[Any]:
        seen = [q.maxsize]
        for i in range(4):
            seen.append(q.full())
            try:
                q.put_nowait(i)
            except asyncio.QueueFull:
                seen.append("full")
        return seen

    async def both() -> tuple[list[Any], list[Any]]:
        return fill(Queue(maxsize)), fill(asyncio.Queue(maxsize))

    ours, theirs = run(both())
    assert ours == theirs


# -- Condition --------------------------------------------------------------------------------


def test_condition_notify_wakes_waiters_in_order_on_loops_and_threads(
    grid: Grid, foreign: ForeignLoop
) -> None:
    cond = Condition()
    woken: list[str] = []
    threads = Threads()

    async def wait(tag: str) -> None:
        async with cond:
            assert await cond.wait() is True
            assert cond.locked()
            woken.append(tag)

    def wait_thread() -> None:
        with cond:
            assert cond.wait_blocking(WAIT) is True
            woken.append("thread")

    parties: list[Any] = []
    for i, tag in enumerate(["w0", "w1"]):
        parties.append(grid.spawn(wait, tag, worker=i))
        assert wait_until(lambda n=i + 1: n_waiting(cond) == n)
    parties.append(foreign.submit(wait("foreign")))
    assert wait_until(lambda: n_waiting(cond) == 3)
    threads.start(wait_thread)
    assert wait_until(lambda: n_waiting(cond) == 4)
    for expected in (["w0"], ["w0", "w1"]):
        with cond:
            cond.notify()
        assert wait_until(lambda e=expected: woken == e)
    with cond:
        cond.notify_all()
    for p in parties:
        p.result(WAIT)
    threads.join()
    assert woken[:2] == ["w0", "w1"] and sorted(woken[2:]) == ["foreign", "thread"]
    assert not cond.locked() and n_waiting(cond) == 0


def test_condition_needs_its_lock_and_says_so_as_asyncio() -> None:
    async def messages(cond: Any) -> list[str]:
        out = []
        for call in (cond.wait, cond.notify, cond.notify_all):
            try:
                result = call()
                if asyncio.iscoroutine(result):
                    await result
            except RuntimeError as e:
                out.append(str(e))
        return out

    ours = run(messages(Condition()))
    assert ours == run(messages(asyncio.Condition()))
    assert ours[0] == "cannot wait on un-acquired lock"
    with pytest.raises(TypeError, match=r"loopgrid\.Lock"):
        Condition(asyncio.Lock())  # type: ignore[arg-type]
    lock = Lock()
    a, b = Condition(lock), Condition(lock)
    with a:
        assert b.locked()


def test_cancelled_condition_waiter_holds_the_lock_again_and_passes_a_notify_on(
    grid: Grid,
) -> None:
    cond = Condition()
    seen: list[object] = []

    async def wait(tag: str) -> str:
        async with cond:
            try:
                await cond.wait()
            except asyncio.CancelledError:
                seen.append((tag, "cancelled, holding the lock", cond.locked()))
                raise
            return tag

    a = grid.spawn(wait, "a", worker=0)
    assert wait_until(lambda: n_waiting(cond) == 1)
    b = grid.spawn(wait, "b", worker=1)
    assert wait_until(lambda: n_waiting(cond) == 2)
    blocker, release = block_worker(grid, 0)
    with cond:
        cond.notify(1)  # to a, whose loop is blocked
    a.cancel()  # a leaves: its notification goes to b
    release.set()
    blocker.result(WAIT)
    with pytest.raises(asyncio.CancelledError):
        a.result(WAIT)
    assert b.result(WAIT) == "b"
    assert seen == [("a", "cancelled, holding the lock", True)]
    assert not cond.locked()


def test_condition_wait_for_and_blocking_timeouts(grid: Grid) -> None:
    cond = Condition()
    box: list[int] = []
    with cond:
        assert cond.wait_blocking(0.001) is False
        assert cond.locked()  # held again after the timeout
        assert cond.wait_for_blocking(lambda: len(box), 0.001) == 0

    async def produce(n: int) -> None:
        for i in range(n):
            async with cond:
                box.append(i)
                cond.notify_all()

    async def consume() -> int:
        async with cond:
            return await cond.wait_for(lambda: len(box) >= 20 and len(box))

    consumer = grid.spawn(consume, worker=0)
    grid.spawn(produce, 20, worker=1).result(WAIT)
    assert consumer.result(WAIT) == 20
    with cond:
        assert cond.wait_for_blocking(lambda: len(box), WAIT) == 20

    async def refused() -> str:
        with pytest.raises(WouldBlockError):
            cond.wait_blocking()
        return "refused"

    assert grid.spawn(refused, worker=0).result(WAIT) == "refused"


# -- BoundedSemaphore -------------------------------------------------------------------------


def test_bounded_semaphore_admits_value_holders_and_refuses_extra_releases(grid: Grid) -> None:
    sem = BoundedSemaphore(2)
    inside = [0, 0]
    count = threading.Lock()

    async def hold() -> None:
        async with sem:
            with count:
                inside[0] += 1
                inside[1] = max(inside[1], inside[0])
            await asyncio.sleep(0)
            with count:
                inside[0] -= 1

    hs = [grid.spawn(hold, worker=i % 2) for i in range(60)]
    for h in hs:
        h.result(WAIT)
    assert inside == [0, 2]
    with pytest.raises(ValueError, match=r"^BoundedSemaphore released too many times$"):
        sem.release()
    assert sem._value == 2
    with pytest.raises(ValueError, match="-1"):
        BoundedSemaphore(-1)


# -- Barrier ----------------------------------------------------------------------------------


def test_barrier_releases_tasks_on_every_loop_and_threads_round_after_round(
    grid: Grid, foreign: ForeignLoop
) -> None:
    rounds = 5
    barrier = Barrier(4)
    indices: list[int] = []
    lock = threading.Lock()
    threads = Threads()

    async def meet() -> None:
        for _ in range(rounds):
            i = await barrier.wait()
            with lock:
                indices.append(i)

    def meet_thread() -> None:
        for _ in range(rounds):
            i = barrier.wait_blocking(WAIT)
            with lock:
                indices.append(i)

    hs = [grid.spawn(meet, worker=0), grid.spawn(meet, worker=1), foreign.submit(meet())]
    threads.start(meet_thread)
    for h in hs:
        h.result(WAIT)
    threads.join()
    assert sorted(indices) == sorted(list(range(4)) * rounds)
    assert barrier.n_waiting == 0 and not barrier.broken


def test_barrier_abort_and_reset_reach_waiters_on_loops_and_threads(grid: Grid) -> None:
    barrier = Barrier(4)
    errors: list[str] = []
    threads = Threads()

    async def meet() -> None:
        try:
            await barrier.wait()
        except BrokenBarrierError as e:
            errors.append(str(e))

    def meet_thread() -> None:
        try:
            barrier.wait_blocking(WAIT)
        except BrokenBarrierError as e:
            errors.append(str(e))

    hs = [grid.spawn(meet, worker=i) for i in (0, 1)]
    threads.start(meet_thread)
    assert wait_until(lambda: barrier.n_waiting == 3 and n_waiting(barrier) == 3)
    barrier.reset_blocking()
    for h in hs:
        h.result(WAIT)
    threads.join()
    assert errors == ["Abort or reset of barrier"] * 3
    assert wait_until(lambda: barrier.n_waiting == 0) and not barrier.broken

    # Usable again after a reset; then aborted for good.
    hs = [grid.spawn(meet, worker=i) for i in (0, 1)]
    assert wait_until(lambda: barrier.n_waiting == 2)

    async def abort() -> None:
        await barrier.abort()

    grid.spawn(abort, worker=1).result(WAIT)
    for h in hs:
        h.result(WAIT)
    assert barrier.broken
    with pytest.raises(BrokenBarrierError, match="Barrier aborted"):
        barrier.wait_blocking()
    assert errors[3:] == ["Abort or reset of barrier"] * 2


def test_cancelled_barrier_waiter_leaves_without_breaking_it(grid: Grid) -> None:
    barrier = Barrier(2)

    async def meet() -> int:
        return await barrier.wait()

    h = grid.spawn(meet, worker=0)
    assert wait_until(lambda: barrier.n_waiting == 1)
    h.cancel()
    with pytest.raises(asyncio.CancelledError):
        h.result(WAIT)
    assert barrier.n_waiting == 0 and not barrier.broken
    hs = [grid.spawn(meet, worker=i) for i in (0, 1)]
    assert sorted(x.result(WAIT) for x in hs) == [0, 1]


def test_barrier_thread_timeout_breaks_it_as_threading_does() -> None:
    barrier = Barrier(2)
    with pytest.raises(BrokenBarrierError, match="timed out"):
        barrier.wait_blocking(0.001)
    assert barrier.broken and barrier.n_waiting == 0
    with pytest.raises(ValueError, match="parties must be > 0"):
        Barrier(0)
    with pytest.raises(TypeError, match="'2'"):
        Barrier("2")  # type: ignore[arg-type]


@pytest.mark.skipif(sys.version_info < (3, 11), reason="asyncio.Barrier is new in 3.11")
def test_barrier_matches_asyncios_on_one_loop() -> None:
    async def script(make: Callable[[int], Any]) -> list[object]:
        b = make(3)
        out: list[object] = [b.parties, b.n_waiting, b.broken]
        ts = [asyncio.ensure_future(b.wait()) for _ in range(2)]
        await asyncio.sleep(0)
        out.append(b.n_waiting)
        async with b as i:
            out.append(i)
        out.append(sorted(await asyncio.gather(*ts)))
        ts = [asyncio.ensure_future(b.wait()) for _ in range(2)]
        await asyncio.sleep(0)
        await b.reset()
        got = await asyncio.gather(*ts, return_exceptions=True)
        out.append([(type(e).__name__, str(e)) for e in got])
        await b.abort()
        try:
            await b.wait()
        except BrokenBarrierError as e:
            out.append(str(e))
        out.append(b.broken)
        return out

    assert run(script(Barrier)) == run(script(asyncio.Barrier))


# -- PriorityQueue, LifoQueue, shutdown ----------------------------------------------------------


@pytest.mark.parametrize("kind", ["PriorityQueue", "LifoQueue"])
def test_other_queues_keep_asyncios_order_across_loops_and_threads(grid: Grid, kind: str) -> None:
    q: Any = getattr(loopgrid, kind)(maxsize=3)
    items = [7, 2, 9, 4, 1, 8]

    async def put(i: int) -> None:
        await q.put(i)

    for k, i in enumerate(items[:3]):  # one at a time, from alternating sides
        if k % 2:
            q.put_blocking(i, WAIT)
        else:
            grid.spawn(put, i, worker=0).result(WAIT)
    threads = Threads()
    threads.start(q.put_blocking, items[3], WAIT)
    assert wait_until(lambda: n_waiting(q) == 1)  # full: the thread waits
    assert q.full()
    got = [grid.spawn(q.get, worker=1).result(WAIT)]  # frees a slot for the thread
    threads.join()
    got += [grid.spawn(q.get, worker=i % 2).result(WAIT) for i in range(3)]
    for i in items[4:]:
        grid.spawn(put, i, worker=0).result(WAIT)
    got += [grid.spawn(q.get, worker=i % 2).result(WAIT) for i in range(2)]

    async def model() -> list[int]:
        m = getattr(asyncio, kind)(maxsize=3)
        for i in items[:3]:
            m.put_nowait(i)
        out = [m.get_nowait()]
        m.put_nowait(items[3])
        out += [m.get_nowait() for _ in range(3)]
        for i in items[4:]:
            m.put_nowait(i)
        return out + [m.get_nowait() for _ in range(2)]

    assert got == run(model())


@pytest.mark.parametrize("immediate", [False, True])
def test_shutdown_wakes_getters_on_every_loop_and_thread(
    grid: Grid, foreign: ForeignLoop, immediate: bool
) -> None:
    q: Queue[int] = Queue()
    raised = Countdown(4)
    threads = Threads()

    async def get() -> None:
        with pytest.raises(QueueShutDown):
            await q.get()
        raised.hit()

    def get_thread() -> None:
        with pytest.raises(QueueShutDown):
            q.get_blocking(WAIT)
        raised.hit()

    hs = [grid.spawn(get, worker=0), grid.spawn(get, worker=1), foreign.submit(get())]
    threads.start(get_thread)
    assert wait_until(lambda: n_waiting(q) == 4)
    q.shutdown(immediate)
    assert raised.wait(WAIT)
    for h in hs:
        h.result(WAIT)
    threads.join()
    with pytest.raises(QueueShutDown):
        q.put_nowait(1)
    assert "shutdown" in repr(q)


@pytest.mark.parametrize("immediate", [False, True])
def test_shutdown_wakes_putters_and_keeps_or_drops_the_items(grid: Grid, immediate: bool) -> None:
    q: Queue[int] = Queue(maxsize=2)
    q.put_nowait(1)
    q.put_nowait(2)
    threads = Threads()

    async def put() -> str:
        try:
            await q.put(3)
        except QueueShutDown:
            return "shut down"
        return "put"

    h = grid.spawn(put, worker=1)

    def put_thread() -> None:
        with pytest.raises(QueueShutDown):
            q.put_blocking(4, WAIT)

    threads.start(put_thread)
    assert wait_until(lambda: n_waiting(q) == 2)
    q.shutdown(immediate=immediate)
    assert h.result(WAIT) == "shut down"
    threads.join()
    if immediate:
        assert q.empty() and q.join_blocking(0)
    else:
        assert [q.get_nowait(), q.get_nowait()] == [1, 2]
        q.task_done()
        q.task_done()
        assert q.join_blocking(0)
    with pytest.raises(QueueShutDown):
        q.get_nowait()


@pytest.mark.skipif(sys.version_info < (3, 13), reason="asyncio's Queue.shutdown is new in 3.13")
@pytest.mark.parametrize("immediate", [False, True])
def test_shutdown_matches_asyncios(immediate: bool) -> None:
    async def script(make: Any) -> list[object]:
        q = make(maxsize=2)
        q.put_nowait(1)
        q.put_nowait(2)
        putter = asyncio.ensure_future(q.put(3))
        getters: list[Any] = []
        await asyncio.sleep(0)
        q.shutdown(immediate)
        out: list[object] = [q.qsize()]
        for _ in range(3):
            getters.append(asyncio.ensure_future(q.get()))
        got = await asyncio.gather(putter, *getters, return_exceptions=True)
        out.append([g if isinstance(g, int) else type(g).__name__ for g in got])
        try:
            q.task_done()
            q.task_done()
            out.append("done twice")
            q.task_done()
        except ValueError:
            out.append("ValueError")
        await q.join()
        return out

    assert run(script(Queue)) == run(script(asyncio.Queue))


# -- hypothesis: queues against asyncio's -----------------------------------------------------


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    kind=st.sampled_from(["Queue", "PriorityQueue", "LifoQueue"]),
    maxsize=st.sampled_from([0, 1, 2, 3.5, -1]),
    ops=st.lists(st.one_of(st.integers(0, 50), st.just("get"), st.just("shutdown")), max_size=30),
)
def test_hypothesis_queue_nowait_ops_match_asyncio(kind: str, maxsize: Any, ops: list[Any]) -> None:
    def play(q: Any) -> list[object]:
        out: list[object] = []
        for op in ops:
            try:
                if op == "get":
                    out.append(q.get_nowait())
                elif op == "shutdown":
                    if not hasattr(asyncio.Queue, "shutdown"):
                        continue  # only loopgrid's before 3.13: compared elsewhere
                    q.shutdown()
                    out.append("shutdown")
                else:
                    q.put_nowait(op)
                    out.append(("put", q.qsize(), q.full()))
            except Exception as e:
                out.append(type(e).__name__)
        return out

    async def both() -> tuple[list[object], list[object]]:
        return play(getattr(loopgrid, kind)(maxsize)), play(getattr(asyncio, kind)(maxsize))

    ours, theirs = run(both())
    assert ours == theirs


# -- stress -----------------------------------------------------------------------------------


def test_stress_condition_bounded_buffer_on_three_loops_and_threads() -> None:
    """Producers and consumers on three loops and two threads through one
    Condition-guarded buffer of 4 slots: every item delivered exactly once."""
    cond = Condition()
    buf: list[int] = []
    got: list[int] = []
    producers, per = 6, 150
    threads = Threads()

    async def produce(base: int) -> None:
        for i in range(per):
            async with cond:
                await cond.wait_for(lambda: len(buf) < 4)
                buf.append(base + i)
                cond.notify_all()

    def produce_thread(base: int) -> None:
        for i in range(per):
            with cond:
                assert cond.wait_for_blocking(lambda: len(buf) < 4, WAIT)
                buf.append(base + i)
                cond.notify_all()

    async def consume(n: int) -> None:
        for _ in range(n):
            async with cond:
                await cond.wait_for(lambda: bool(buf))
                got.append(buf.pop(0))
                cond.notify_all()

    total = (producers + 1) * per
    with Grid(3) as grid:
        cs = [grid.spawn(consume, total // 3, worker=i) for i in range(3)]
        ps = [grid.spawn(produce, k * per, worker=k % 3) for k in range(producers)]
        threads.start(produce_thread, producers * per)
        for h in ps + cs:
            h.result(STRESS_WAIT)
        threads.join()
    assert sorted(got) == list(range(total)) and not buf


def test_stress_barrier_and_bounded_semaphore_with_cancellations() -> None:
    """Rounds of a 7-party Barrier (tasks on three loops and a thread), each
    party then taking a BoundedSemaphore(2) with random cancelled waiters on
    the side: the barrier stays whole and the semaphore never admits three."""
    rng = random.Random(1234)
    barrier = Barrier(7)
    sem = BoundedSemaphore(2)
    inside = [0, 0]
    count = threading.Lock()
    rounds = 20
    threads = Threads()

    async def hold() -> None:
        async with sem:
            with count:
                inside[0] += 1
                inside[1] = max(inside[1], inside[0])
            try:
                await asyncio.sleep(0)
            finally:
                with count:
                    inside[0] -= 1

    async def party() -> None:
        for _ in range(rounds):
            await barrier.wait()
            await hold()

    async def cancelled_waiter() -> None:
        t = asyncio.ensure_future(hold())
        await asyncio.sleep(0)
        t.cancel()
        await asyncio.gather(t, return_exceptions=True)

    def thread_party() -> None:
        for _ in range(rounds):
            barrier.wait_blocking(WAIT)
            with sem:
                with count:
                    inside[0] += 1
                    inside[1] = max(inside[1], inside[0])
                with count:
                    inside[0] -= 1

    with Grid(3) as grid:
        hs = [grid.spawn(party, worker=i % 3) for i in range(6)]
        threads.start(thread_party)
        noise = [grid.spawn(cancelled_waiter, worker=rng.randrange(3)) for _ in range(200)]
        for h in hs + noise:
            h.result(WAIT)
        threads.join()
    assert inside[0] == 0 and 1 <= inside[1] <= 2 and sem._value == 2 and not sem.locked()
    assert barrier.n_waiting == 0 and not barrier.broken


def test_stress_priority_queue_delivers_every_item_once_in_order_per_consumer() -> None:
    q: PriorityQueue[int] = PriorityQueue(maxsize=8)
    n_producers, per = 5, 200
    got: list[list[int]] = [[] for _ in range(4)]
    threads = Threads()

    async def produce(k: int) -> None:
        for i in range(per):
            await q.put(k * per + i)

    async def consume(slot: int, n: int) -> None:
        for _ in range(n):
            got[slot].append(await q.get())
            q.task_done()

    def consume_thread(n: int) -> None:
        for _ in range(n):
            got[3].append(q.get_blocking(WAIT))
            q.task_done()

    total = n_producers * per
    with Grid(3) as grid:
        cs = [grid.spawn(consume, i, total // 4, worker=i) for i in range(3)]
        threads.start(consume_thread, total // 4)
        ps = [grid.spawn(produce, k, worker=k % 3) for k in range(n_producers)]
        for h in ps + cs:
            h.result(WAIT)
        threads.join()
    assert q.join_blocking(WAIT)
    flat = sorted(x for g in got for x in g)
    assert flat == list(range(total))


def test_blocking_variants_of_new_primitives_refuse_a_loop_thread(grid: Grid) -> None:
    cond, barrier, lifo = Condition(), Barrier(2), LifoQueue[int]()
    calls: list[Callable[[], object]] = [
        cond.wait_blocking,
        lambda: cond.wait_for_blocking(lambda: True),
        barrier.wait_blocking,
        barrier.reset_blocking,
        barrier.abort_blocking,
        lifo.get_blocking,
        lambda: lifo.put_blocking(1),
        BoundedSemaphore().acquire_blocking,
    ]

    async def attempt() -> int:
        refused = 0
        for call in calls:
            with pytest.raises(WouldBlockError, match="event loop"):
                call()
            refused += 1
        return refused

    assert grid.spawn(attempt, worker=0).result(WAIT) == len(calls)
