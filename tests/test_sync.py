"""Cross-loop primitives (loopgrid.sync): Lock, Event, Semaphore, Queue.

Waiters are tasks pinned on both workers of a grid (two loops on two threads),
tasks on a foreign asyncio loop in a plain thread, and plain threads using the
blocking variants. A waiter is known to have queued by its primitive's waiter
count (polled with ``wait_until``), never by sleeping; no assertion is about
time.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import gc
import sys
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

import pytest
from helpers import STRESS_WAIT, WAIT, Countdown, Gate, forever, wait_until
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import loopgrid
from loopgrid import DeadlockError, Event, Grid, Lock, Queue, Semaphore, WouldBlockError, waitgraph

# -- helpers --------------------------------------------------------------------------


class ForeignLoop:
    """A plain asyncio loop running in its own (non-grid) thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(
            target=self.loop.run_forever, name="foreign-loop", daemon=True
        )
        self.thread.start()

    def submit(self, coro: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def close(self) -> None:
        async def cancel_rest() -> None:
            me = asyncio.current_task()
            rest = [t for t in asyncio.all_tasks() if t is not me]
            for t in rest:
                t.cancel()
            await asyncio.gather(*rest, return_exceptions=True)

        self.submit(cancel_rest()).result(WAIT)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(WAIT)
        assert not self.thread.is_alive()
        self.loop.close()


@pytest.fixture
def foreign() -> Iterator[ForeignLoop]:
    f = ForeignLoop()
    try:
        yield f
    finally:
        f.close()


class Threads:
    """Plain threads whose exceptions fail the test."""

    def __init__(self) -> None:
        self._threads: list[threading.Thread] = []
        self.errors: list[BaseException] = []

    def start(self, fn: Callable[..., object], *args: Any) -> threading.Thread:
        def body() -> None:
            try:
                fn(*args)
            except BaseException as e:
                self.errors.append(e)

        t = threading.Thread(target=body, daemon=True)  # a failed test must not hang the run
        t.start()
        self._threads.append(t)
        return t

    def join(self) -> None:
        for t in self._threads:
            t.join(WAIT)
        assert not [t for t in self._threads if t.is_alive()], "a thread did not finish"
        assert not self.errors, self.errors


def waiters(p: Any) -> int:
    """How many parties wait on ``p`` (private state: the only signal there is)."""
    if isinstance(p, Queue):
        return len(p._getters) + len(p._putters)
    return len(p._waiters)


async def take_and_release(
    lock: Lock | Semaphore, log: list[Any] | None = None, tag: Any = None
) -> Any:
    async with lock:
        if log is not None:
            log.append(tag)
    return tag


def finish(h: Any) -> str:
    """Wait for a handle or concurrent future; say how it ended."""
    try:
        h.result(WAIT)
    except (asyncio.CancelledError, concurrent.futures.CancelledError):
        return "cancelled"
    return "done"


# -- Lock ------------------------------------------------------------------------------


def test_lock_excludes_tasks_on_every_worker(grid: Grid) -> None:
    lock = Lock()
    state = {"inside": 0, "most": 0, "count": 0}

    async def bump(k: int) -> None:
        for _ in range(k):
            async with lock:
                state["inside"] += 1
                state["most"] = max(state["most"], state["inside"])
                v = state["count"]
                await asyncio.sleep(0)  # yield inside: the other loop's tasks run meanwhile
                state["count"] = v + 1
                state["inside"] -= 1

    hs = [grid.spawn(bump, 200, worker=i % 2) for i in range(6)]
    for h in hs:
        h.result(WAIT)
    assert state == {"inside": 0, "most": 1, "count": 1200}
    assert not lock.locked()


def test_lock_shared_by_grid_foreign_loop_and_thread(grid: Grid, foreign: ForeignLoop) -> None:
    lock = Lock()
    order: list[str] = []
    held, release = Gate(), Gate()

    async def holder() -> None:
        async with lock:
            held.set()
            await release.wait()
            order.append("grid")

    h = grid.spawn(holder, worker=0)
    assert held.wait_sync()
    assert lock.locked()
    fut = foreign.submit(take_and_release(lock, order, "foreign"))
    assert wait_until(lambda: waiters(lock) == 1)

    def in_thread() -> None:
        with lock:
            order.append("thread")

    threads = Threads()
    threads.start(in_thread)
    assert wait_until(lambda: waiters(lock) == 2)
    assert lock.acquire_blocking(timeout=0) is False
    assert lock.acquire_blocking(timeout=0.001) is False  # held: times out, takes nothing
    assert waiters(lock) == 2
    release.set()
    h.result(WAIT)
    fut.result(WAIT)
    threads.join()
    assert order == ["grid", "foreign", "thread"]
    assert not lock.locked()


def test_lock_is_fifo_across_workers_loops_and_threads(grid: Grid, foreign: ForeignLoop) -> None:
    lock = Lock()
    order: list[int] = []
    assert lock.acquire_blocking()
    pending: list[Any] = []
    threads = Threads()

    def in_thread(i: int) -> None:
        assert lock.acquire_blocking(WAIT)
        order.append(i)
        lock.release()

    for i in range(16):
        kind = i % 4
        if kind < 2:
            pending.append(grid.spawn(take_and_release, lock, order, i, worker=kind))
        elif kind == 2:
            pending.append(foreign.submit(take_and_release(lock, order, i)))
        else:
            threads.start(in_thread, i)
        assert wait_until(lambda i=i: waiters(lock) == i + 1)
    lock.release()
    for p in pending:
        p.result(WAIT)
    threads.join()
    assert order == list(range(16))
    assert not lock.locked()


def test_cancelled_lock_waiter_leaves_the_queue(grid: Grid) -> None:
    lock = Lock()
    log: list[str] = []
    assert lock.acquire_blocking()
    h1 = grid.spawn(take_and_release, lock, log, "first", worker=0)
    assert wait_until(lambda: waiters(lock) == 1)
    h2 = grid.spawn(take_and_release, lock, log, "second", worker=1)
    assert wait_until(lambda: waiters(lock) == 2)
    h1.cancel()
    assert finish(h1) == "cancelled"
    assert waiters(lock) == 1
    lock.release()
    assert h2.result(WAIT) == "second"
    assert log == ["second"]
    assert not lock.locked()


@pytest.mark.parametrize("kind", ["Lock", "Semaphore"])
def test_waiter_cancelled_after_the_hand_over_passes_it_on(grid: Grid, kind: str) -> None:
    """release() hands the lock to b, and b is cancelled before it runs (one step
    of b's loop): b ends cancelled and the lock goes on to c, on the other loop."""
    for _ in range(30):
        lock: Lock | Semaphore = Lock() if kind == "Lock" else Semaphore(1)
        b_queued, go = Gate(), Gate()
        log: list[str] = []

        async def holder(lock: Any = lock, b_queued: Gate = b_queued, go: Gate = go) -> bool:
            await lock.acquire()
            started = asyncio.Event()

            async def b() -> None:
                started.set()
                await lock.acquire()  # queues before holder resumes: same loop
                lock.release()

            tb = asyncio.ensure_future(b())
            await started.wait()
            b_queued.set()
            await go.wait()
            lock.release()  # hands over to b ...
            tb.cancel()  # ... which is cancelled before it takes a step
            with pytest.raises(asyncio.CancelledError):
                await tb
            return True

        h = grid.spawn(holder, worker=0)
        assert b_queued.wait_sync()
        assert waiters(lock) == 1
        hc = grid.spawn(take_and_release, lock, log, "c", worker=1)
        assert wait_until(lambda lock=lock: waiters(lock) == 2)
        go.set()
        assert h.result(WAIT)
        assert hc.result(WAIT) == "c"
        assert log == ["c"]
        assert not lock.locked()


@pytest.mark.parametrize("how", ["wait_for", "timeout"])
def test_lock_waiter_timing_out_takes_nothing(grid: Grid, how: str) -> None:
    if how == "timeout" and sys.version_info < (3, 11):
        pytest.skip("asyncio.timeout is new in 3.11")
    lock = Lock()
    held, release = Gate(), Gate()

    async def holder() -> None:
        async with lock:
            held.set()
            await release.wait()

    async def impatient() -> str:
        try:
            if how == "wait_for":
                await asyncio.wait_for(lock.acquire(), 0.001)
            else:
                async with asyncio.timeout(0.001):  # type: ignore[attr-defined,unused-ignore]
                    await lock.acquire()
        except asyncio.TimeoutError:
            return "timed out"
        lock.release()
        return "acquired"

    h = grid.spawn(holder, worker=0)
    assert held.wait_sync()
    assert grid.spawn(impatient, worker=1).result(WAIT) == "timed out"
    assert waiters(lock) == 0
    log: list[str] = []
    hn = grid.spawn(take_and_release, lock, log, "next", worker=1)
    assert wait_until(lambda: waiters(lock) == 1)
    release.set()
    h.result(WAIT)
    assert hn.result(WAIT) == "next"
    assert not lock.locked()


def test_lock_timeouts_racing_releases_keep_it_consistent(grid: Grid) -> None:
    """Waiters with tiny timeouts on one worker and threads with tiny blocking
    timeouts, while a task cycles the lock on the other: every acquisition is
    exclusive, and the lock ends free."""
    lock = Lock()
    inside = [0]

    def enter() -> None:
        inside[0] += 1
        assert inside[0] == 1
        inside[0] -= 1

    async def impatient(k: int) -> int:
        got = 0
        for _ in range(k):
            try:
                await asyncio.wait_for(lock.acquire(), 0.0002)
            except asyncio.TimeoutError:
                continue
            enter()
            lock.release()
            got += 1
        return got

    async def cycler(k: int) -> int:
        for _ in range(k):
            async with lock:
                enter()
                await asyncio.sleep(0)
        return k

    def in_thread(k: int) -> None:
        for _ in range(k):
            if lock.acquire_blocking(0.0002):
                enter()
                lock.release()

    threads = Threads()
    hs = [grid.spawn(impatient, 300, worker=0) for _ in range(3)]
    hc = grid.spawn(cycler, 600, worker=1)
    for _ in range(2):
        threads.start(in_thread, 300)
    assert hc.result(WAIT) == 600
    for h in hs:
        assert 0 <= h.result(WAIT) <= 300
    threads.join()
    assert not lock.locked()
    assert waiters(lock) == 0


def test_lock_release_from_another_task_or_thread(grid: Grid) -> None:
    """As with asyncio.Lock and threading.Lock, whoever holds it need not release it."""
    lock = Lock()

    async def take() -> None:
        await lock.acquire()

    async def give_back() -> None:
        lock.release()

    grid.spawn(take, worker=0).result(WAIT)
    assert lock.locked()
    grid.spawn(give_back, worker=1).result(WAIT)  # another task, on another loop
    assert not lock.locked()
    grid.spawn(take, worker=1).result(WAIT)
    lock.release()  # a plain thread
    assert not lock.locked()
    with pytest.raises(RuntimeError, match="not locked"):
        lock.release()


def test_cancelling_the_holder_passes_the_lock_on(grid: Grid, foreign: ForeignLoop) -> None:
    lock = Lock()
    held = Gate()

    async def holder() -> None:
        async with lock:
            held.set()
            await forever()

    h = grid.spawn(holder, worker=0)
    assert held.wait_sync()
    fut = foreign.submit(take_and_release(lock, None, "next"))
    assert wait_until(lambda: waiters(lock) == 1)
    h.cancel()
    assert finish(h) == "cancelled"
    assert fut.result(WAIT) == "next"
    assert not lock.locked()


def test_waiter_whose_loop_was_closed_is_skipped(grid: Grid) -> None:
    """A loop closed without cancelling a task that waits for the lock: the
    hand-over skips that task instead of giving it a lock it can never release."""
    lock = Lock()
    assert lock.acquire_blocking()
    loop = asyncio.new_event_loop()

    async def queue_one() -> asyncio.Task[bool]:
        started = asyncio.Event()

        async def waiter() -> bool:
            started.set()
            return await lock.acquire()

        t = asyncio.ensure_future(waiter())
        await started.wait()  # the waiter went on into acquire() and queued
        return t

    t = loop.run_until_complete(queue_one())
    t._log_destroy_pending = False  # type: ignore[attr-defined]  # destroyed on purpose
    loop.close()
    assert waiters(lock) == 1
    h = grid.spawn(take_and_release, lock, None, "next", worker=0)
    assert wait_until(lambda: waiters(lock) == 2)
    lock.release()
    assert h.result(WAIT) == "next"
    assert not lock.locked() and waiters(lock) == 0
    del t
    gc.collect()  # the abandoned task is destroyed: its coroutine closes quietly
    assert lock.acquire_blocking(timeout=0)
    lock.release()


# -- deadlock detection --------------------------------------------------------------------


def test_lock_order_inversion_raises_deadlock_error(grid: Grid) -> None:
    """A holds L1 and waits for L2; B holds L2 and asks for L1: B is told, naming both."""
    l1, l2 = Lock(), Lock()
    a_has, b_has, b_go = Gate(), Gate(), Gate()

    async def a() -> str:
        async with l1:
            a_has.set()
            await b_has.wait()
            async with l2:
                return "a got both"

    async def b() -> str:
        async with l2:
            b_has.set()
            await b_go.wait()
            try:
                await l1.acquire()
            except DeadlockError as e:
                return str(e)
            return "no error"

    ha = grid.spawn(a, worker=0, name="task-a")
    assert a_has.wait_sync()
    hb = grid.spawn(b, worker=1, name="task-b")
    assert wait_until(lambda: waiters(l2) == 1)  # a is queued on l2
    b_go.set()
    msg = hb.result(WAIT)
    assert "task 'task-a'" in msg and "task 'task-b'" in msg, msg
    assert "lock <loopgrid.Lock" in msg
    assert ha.result(WAIT) == "a got both"  # b's lock was released on its way out
    assert not l1.locked() and not l2.locked()
    assert waiters(l1) == waiters(l2) == 0


def test_reacquiring_a_held_lock_raises_deadlock_error(grid: Grid) -> None:
    lock = Lock()

    async def twice() -> str:
        async with lock:
            with pytest.raises(DeadlockError) as info:
                await lock.acquire()
            assert waiters(lock) == 0
            return str(info.value)

    msg = grid.spawn(twice, worker=0, name="greedy").result(WAIT)
    assert "task 'greedy'" in msg
    assert not lock.locked()


def test_thread_and_task_deadlock_is_reported_to_the_one_closing_it(grid: Grid) -> None:
    """A plain thread holds L1 and blocks on L2, held by a task that asks for L1."""
    l1, l2 = Lock(), Lock()
    task_has, task_go = Gate(), Gate()

    async def task() -> str:
        async with l2:
            task_has.set()
            await task_go.wait()
            try:
                await l1.acquire()
            except DeadlockError as e:
                return str(e)
            return "no error"

    result: list[str] = []
    h = grid.spawn(task, worker=1, name="the-task")

    def thread() -> None:
        with l1:
            assert task_has.wait_sync()
            with l2:  # queues behind the task, which holds it
                result.append("thread got both")

    t = threading.Thread(target=thread, name="the-thread")
    t.start()
    assert wait_until(lambda: waiters(l2) == 1)
    task_go.set()
    msg = h.result(WAIT)
    t.join(WAIT)
    assert not t.is_alive()
    assert "task 'the-task'" in msg and "thread 'the-thread'" in msg, msg
    assert result == ["thread got both"]
    assert not l1.locked() and not l2.locked()


def test_wait_for_edges_follow_the_queue(grid: Grid) -> None:
    """Each waiter waits for the one ahead of it (or the holder); cancelling one
    in the middle re-points the next; the new holder waits for nothing."""
    lock = Lock()
    release = Gate()
    nodes: dict[Any, object] = {}

    async def holder() -> None:
        nodes["holder"] = waitgraph.current_node()
        async with lock:
            await release.wait()

    async def waiter(i: int) -> int:
        nodes[i] = waitgraph.current_node()
        async with lock:
            return i

    h0 = grid.spawn(holder, worker=0)
    assert wait_until(lock.locked)
    hs = []
    for i in range(3):
        hs.append(grid.spawn(waiter, i, worker=i % 2))
        assert wait_until(lambda i=i: waiters(lock) == i + 1)

    def target(i: int) -> object:
        edge = waitgraph.waiting_for(nodes[i])
        return None if edge is None else edge[0]

    assert [target(0), target(1), target(2)] == [nodes["holder"], nodes[0], nodes[1]]
    hs[1].cancel()
    assert finish(hs[1]) == "cancelled"
    assert target(2) is nodes[0]
    assert target(1) is None
    release.set()
    h0.result(WAIT)
    assert hs[0].result(WAIT) == 0
    assert hs[2].result(WAIT) == 2
    assert target(0) is None and target(2) is None


def test_holder_awaiting_the_waiter_is_a_deadlock(grid: Grid) -> None:
    """Task A holds L and awaits task B's handle; B asks for L: B gets the error."""
    lock = Lock()
    b_go = Gate()

    async def b() -> str:
        await b_go.wait()
        try:
            await lock.acquire()
        except DeadlockError as e:
            return str(e)
        lock.release()
        return "no error"

    async def a() -> str:
        box.append(waitgraph.current_node())
        async with lock:
            return str(await grid.spawn(b, worker=1, name="task-b"))

    box: list[Any] = []
    ha = grid.spawn(a, worker=0, name="task-a")
    assert wait_until(lambda: bool(box) and waitgraph.waiting_for(box[0]) is not None)
    b_go.set()
    msg = ha.result(WAIT)
    assert "task 'task-a'" in msg and "task 'task-b'" in msg, msg
    assert not lock.locked()


def test_past_holder_awaiting_a_later_waiter_is_no_deadlock(grid: Grid) -> None:
    """O held the lock and released it to W1; W2 queues behind W1; O awaiting W2
    is fine (W2 gets the lock once W1 is done), so nobody gets DeadlockError."""
    lock = Lock()
    w1_has, w1_go, queued, o_go = Gate(), Gate(), Gate(), Gate()
    box: list[Any] = []

    async def w1() -> None:
        async with lock:
            w1_has.set()
            await w1_go.wait()

    async def o() -> str:
        await lock.acquire()
        box.append(grid.spawn(w1, worker=1))
        box.append(grid.spawn(take_and_release, lock, None, "w2", worker=1))
        queued.set()
        await o_go.wait()
        lock.release()
        await w1_has.wait()
        w1_go.set()  # W1 will finish only after ...
        return str(await box[1])  # ... O waits for W2, still queued behind W1

    ho = grid.spawn(o, worker=0)
    assert queued.wait_sync()
    assert wait_until(lambda: waiters(lock) == 2)
    o_go.set()
    assert ho.result(WAIT) == "w2"
    box[0].result(WAIT)
    assert not lock.locked()


# -- Semaphore -----------------------------------------------------------------------------


def test_semaphore_admits_value_holders_across_workers(grid: Grid) -> None:
    sem = Semaphore(2)
    stats_lock = threading.Lock()
    state = {"inside": 0, "most": 0, "count": 0}

    def enter() -> None:
        with stats_lock:
            state["inside"] += 1
            state["most"] = max(state["most"], state["inside"])

    def leave() -> None:
        with stats_lock:
            state["inside"] -= 1
            state["count"] += 1

    async def use(k: int) -> None:
        for _ in range(k):
            async with sem:
                enter()
                await asyncio.sleep(0)
                leave()

    def in_thread(k: int) -> None:
        for _ in range(k):
            with sem:
                enter()
                leave()

    threads = Threads()
    threads.start(in_thread, 200)
    hs = [grid.spawn(use, 100, worker=i % 2) for i in range(6)]
    for h in hs:
        h.result(WAIT)
    threads.join()
    assert state["count"] == 800
    assert 1 <= state["most"] <= 2
    assert not sem.locked()
    assert sem.acquire_blocking(0) and sem.acquire_blocking(0)
    assert sem.locked() and not sem.acquire_blocking(0)


def test_semaphore_third_holder_waits_for_a_release(grid: Grid) -> None:
    sem = Semaphore(2)
    release = Gate()
    held = Countdown(2)

    async def hold() -> None:
        async with sem:
            held.hit()
            await release.wait()

    hs = [grid.spawn(hold, worker=i) for i in range(2)]
    assert held.wait(WAIT)
    assert sem.locked()
    third = grid.spawn(take_and_release, sem, None, "third", worker=0)
    assert wait_until(lambda: waiters(sem) == 1)
    assert not third.done()
    release.set()
    assert third.result(WAIT) == "third"
    for h in hs:
        h.result(WAIT)
    assert not sem.locked()


def test_semaphore_waiters_are_served_in_order(grid: Grid, foreign: ForeignLoop) -> None:
    sem = Semaphore(1)
    order: list[int] = []
    assert sem.acquire_blocking()
    pending = []
    for i in range(6):
        if i % 3 == 2:
            pending.append(foreign.submit(take_and_release(sem, order, i)))
        else:
            pending.append(grid.spawn(take_and_release, sem, order, i, worker=i % 3))
        assert wait_until(lambda i=i: waiters(sem) == i + 1)
    sem.release()
    for p in pending:
        p.result(WAIT)
    assert order == list(range(6))
    assert not sem.locked()


def test_semaphore_permit_survives_cancelled_and_timed_out_waiters(grid: Grid) -> None:
    sem = Semaphore(1)
    assert sem.acquire_blocking()
    h1 = grid.spawn(take_and_release, sem, None, 1, worker=0)
    assert wait_until(lambda: waiters(sem) == 1)

    async def impatient() -> str:
        try:
            await asyncio.wait_for(sem.acquire(), 0.001)
        except asyncio.TimeoutError:
            return "timed out"
        return "acquired"

    assert grid.spawn(impatient, worker=1).result(WAIT) == "timed out"
    assert sem.acquire_blocking(timeout=0.001) is False
    h1.cancel()
    assert finish(h1) == "cancelled"
    assert waiters(sem) == 0
    sem.release()
    assert sem.acquire_blocking(0) is True  # exactly one permit, as at the start
    assert sem.acquire_blocking(0) is False
    sem.release()


def test_semaphore_release_beyond_initial_value_adds_permits() -> None:
    sem = Semaphore(0)
    assert sem.locked()
    sem.release()
    sem.release()
    assert sem.acquire_blocking(0) and sem.acquire_blocking(0)
    assert not sem.acquire_blocking(0)


# -- Event -----------------------------------------------------------------------------------


def test_event_wakes_waiters_on_every_worker_loop_and_thread(
    grid: Grid, foreign: ForeignLoop
) -> None:
    ev = Event()
    woke: list[str] = []
    all_woke = Countdown(7)

    async def waiter(tag: str) -> bool:
        result = await ev.wait()
        woke.append(tag)
        all_woke.hit()
        return result

    hs = [grid.spawn(waiter, f"w{i % 2}", worker=i % 2) for i in range(4)]
    fut = foreign.submit(waiter("foreign"))
    victim = grid.spawn(waiter, "victim", worker=1)
    threads = Threads()

    def in_thread() -> None:
        assert ev.wait_blocking() is True
        woke.append("thread")
        all_woke.hit()

    threads.start(in_thread)
    threads.start(in_thread)
    assert wait_until(lambda: waiters(ev) == 8)
    victim.cancel()
    assert finish(victim) == "cancelled"
    assert waiters(ev) == 7
    assert not ev.is_set() and not woke
    setter = threading.Thread(target=ev.set)  # set from a plain thread
    setter.start()
    setter.join(WAIT)
    assert all_woke.wait(WAIT)
    assert all(h.result(WAIT) is True for h in hs)
    assert fut.result(WAIT) is True
    threads.join()
    assert sorted(woke) == sorted(["w0", "w1", "w0", "w1", "foreign", "thread", "thread"])
    assert ev.is_set() and waiters(ev) == 0


def test_event_clear_right_after_set_still_wakes_every_waiter(grid: Grid) -> None:
    ev = Event()
    hs = [grid.spawn(ev.wait, worker=i % 2) for i in range(6)]
    assert wait_until(lambda: waiters(ev) == 6)
    ev.set()
    ev.clear()
    assert all(h.result(WAIT) is True for h in hs)
    assert not ev.is_set()
    assert ev.wait_blocking(timeout=0) is False


def test_event_wait_timeouts(grid: Grid) -> None:
    ev = Event()

    async def impatient() -> str:
        try:
            await asyncio.wait_for(ev.wait(), 0.001)
        except asyncio.TimeoutError:
            return "timed out"
        return "set"

    assert grid.spawn(impatient, worker=0).result(WAIT) == "timed out"
    assert ev.wait_blocking(timeout=0.001) is False
    assert waiters(ev) == 0
    ev.set()
    assert grid.spawn(impatient, worker=1).result(WAIT) == "set"
    assert ev.wait_blocking(timeout=0) is True


# -- Queue -------------------------------------------------------------------------------------


def test_queue_carries_items_in_order_between_workers(grid: Grid) -> None:
    q: Queue[int] = Queue(4)

    async def produce(n: int) -> None:
        for i in range(n):
            await q.put(i)

    async def consume(n: int) -> list[int]:
        return [await q.get() for _ in range(n)]

    hc = grid.spawn(consume, 2000, worker=1)
    hp = grid.spawn(produce, 2000, worker=0)
    assert hc.result(WAIT) == list(range(2000))
    hp.result(WAIT)
    assert q.empty() and q.qsize() == 0


def test_queue_with_foreign_loop_and_threads(grid: Grid, foreign: ForeignLoop) -> None:
    q: Queue[str] = Queue(1)

    async def produce(tag: str, n: int) -> None:
        for i in range(n):
            await q.put(f"{tag}{i}")

    def thread_produce(n: int) -> None:
        for i in range(n):
            q.put_blocking(f"t{i}")

    threads = Threads()
    threads.start(thread_produce, 50)
    fut = foreign.submit(produce("f", 50))
    hp = grid.spawn(produce, "g", 50, worker=0)
    got = [q.get_blocking(WAIT) for _ in range(150)]
    fut.result(WAIT)
    hp.result(WAIT)
    threads.join()
    assert sorted(got) == sorted([f"{t}{i}" for t in "tfg" for i in range(50)])
    for tag in "tfg":  # each producer's items arrive in its order
        mine = [x for x in got if x[0] == tag]
        assert mine == [f"{tag}{i}" for i in range(50)]


def test_queue_backpressure(grid: Grid) -> None:
    q: Queue[int] = Queue(2)
    assert q.maxsize == 2 and q.empty() and not q.full()
    q.put_nowait(1)
    q.put_nowait(2)
    assert q.full() and q.qsize() == 2
    with pytest.raises(asyncio.QueueFull, match="maxsize=2"):
        q.put_nowait(3)
    hp = grid.spawn(q.put, 3, worker=1)
    assert wait_until(lambda: waiters(q) == 1)
    assert not hp.done()
    with pytest.raises(TimeoutError, match="stayed full"):
        q.put_blocking(4, timeout=0.001)
    assert q.get_nowait() == 1
    hp.result(WAIT)
    assert [q.get_nowait(), q.get_blocking()] == [2, 3]
    with pytest.raises(asyncio.QueueEmpty):
        q.get_nowait()
    with pytest.raises(TimeoutError, match="stayed empty"):
        q.get_blocking(timeout=0.001)


def test_unbounded_queue_never_blocks_a_putter() -> None:
    q: Queue[int] = Queue()
    for i in range(10_000):
        q.put_nowait(i)
    assert not q.full() and q.qsize() == 10_000 and q.maxsize == 0


@pytest.mark.parametrize("side", ["getter", "putter"])
def test_queue_waiter_cancelled_after_its_wake_up_loses_nothing(grid: Grid, side: str) -> None:
    """An item arrives for (or a slot frees up for) the first waiter, which is
    cancelled before it runs: the second waiter, on the other loop, gets it."""
    for _ in range(30):
        q: Queue[str] = Queue(1)
        if side == "putter":
            q.put_nowait("old")
        first_queued, go = Gate(), Gate()

        async def first_side(
            q: Queue[str] = q, first_queued: Gate = first_queued, go: Gate = go
        ) -> str:
            started = asyncio.Event()

            async def first() -> None:
                started.set()
                if side == "getter":
                    await q.get()
                else:
                    await q.put("first")

            t = asyncio.ensure_future(first())
            await started.wait()
            first_queued.set()
            await go.wait()
            if side == "getter":
                q.put_nowait("item")  # wakes the first getter ...
            else:
                assert q.get_nowait() == "old"  # wakes the first putter ...
            t.cancel()  # ... which is cancelled before it runs
            with pytest.raises(asyncio.CancelledError):
                await t
            return "ok"

        h = grid.spawn(first_side, worker=0)
        assert first_queued.wait_sync()
        if side == "getter":
            h2 = grid.spawn(q.get, worker=1)
        else:
            h2 = grid.spawn(q.put, "second", worker=1)
        assert wait_until(lambda q=q: waiters(q) == 2)
        go.set()
        assert h.result(WAIT) == "ok"
        if side == "getter":
            assert h2.result(WAIT) == "item"
            assert q.empty()
        else:
            h2.result(WAIT)
            assert q.get_nowait() == "second" and q.empty()  # "first" was never put


def test_queue_join_and_task_done_across_loops(grid: Grid) -> None:
    q: Queue[int] = Queue()
    for i in range(5):
        q.put_nowait(i)
    joined = grid.spawn(q.join, worker=0)
    assert q.join_blocking(timeout=0) is False
    assert wait_until(lambda: waiters(q._finished) == 1)

    async def work() -> None:
        for _ in range(5):
            await q.get()
            q.task_done()

    grid.spawn(work, worker=1).result(WAIT)
    joined.result(WAIT)
    assert q.join_blocking(WAIT) is True
    with pytest.raises(ValueError, match="task_done"):
        q.task_done()
    q.put_nowait(9)
    assert q.join_blocking(timeout=0) is False


# -- blocking variants on a loop thread --------------------------------------------------------


def _blocking_calls() -> dict[str, Callable[[], object]]:
    lock, sem, ev, q = Lock(), Semaphore(1), Event(), Queue[int](1)

    def with_lock() -> None:
        with lock:
            pass

    def with_sem() -> None:
        with sem:
            pass

    return {
        "Lock.acquire_blocking": lock.acquire_blocking,
        "with Lock": with_lock,
        "Semaphore.acquire_blocking": sem.acquire_blocking,
        "with Semaphore": with_sem,
        "Event.wait_blocking": ev.wait_blocking,
        "Queue.put_blocking": lambda: q.put_blocking(1),
        "Queue.get_blocking": q.get_blocking,
        "Queue.join_blocking": q.join_blocking,
    }


@pytest.mark.parametrize("call", list(_blocking_calls()))
def test_blocking_variant_on_a_loop_thread_raises_would_block(
    grid: Grid, foreign: ForeignLoop, call: str
) -> None:
    async def attempt() -> str:
        fn = _blocking_calls()[call]
        with pytest.raises(WouldBlockError, match="event loop"):
            fn()
        return "refused"

    assert grid.spawn(attempt, worker=0).result(WAIT) == "refused"
    assert foreign.submit(attempt()).result(WAIT) == "refused"
    assert issubclass(WouldBlockError, asyncio.InvalidStateError)


# -- bad input ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "exc", "needle"),
    [
        (lambda: Queue(float("nan")), ValueError, "nan"),
        (lambda: Queue(None), TypeError, "None"),
        (lambda: Queue("3"), TypeError, "'3'"),
        (lambda: Queue(True), TypeError, "True"),
        (lambda: Semaphore(-2), ValueError, "-2"),
        (lambda: Semaphore(None), TypeError, "None"),
        (lambda: Lock().release(), RuntimeError, "not locked"),
        (lambda: Lock().acquire_blocking(-1), ValueError, "-1"),
        (lambda: Lock().acquire_blocking("soon"), TypeError, "'soon'"),
        (lambda: Event().wait_blocking(float("nan")), ValueError, "nan"),
        (lambda: Queue[int]().get_blocking(-0.5), ValueError, "-0.5"),
        (lambda: Queue[int]().task_done(), ValueError, "more times"),
    ],
)
def test_bad_input_names_the_value(
    make: Callable[[], object], exc: type[Exception], needle: str
) -> None:
    with pytest.raises(exc) as info:
        make()
    assert needle in str(info.value)


def test_lock_blocking_acquire_from_plain_thread_times_out() -> None:
    lock = Lock()
    assert lock.acquire_blocking()
    out: list[bool] = []
    t = threading.Thread(target=lambda: out.append(lock.acquire_blocking(timeout=0.001)))
    t.start()
    t.join(WAIT)
    assert out == [False]
    assert waiters(lock) == 0 and lock.locked()
    lock.release()
    assert lock.acquire_blocking(timeout=float("inf"))
    lock.release()


# -- stress ----------------------------------------------------------------------------------


def test_stress_lock_counter_is_exact(grid: Grid) -> None:
    lock = Lock()
    count = [0]

    async def tasks(k: int) -> None:
        for _ in range(k):
            async with lock:
                v = count[0]
                await asyncio.sleep(0)
                count[0] = v + 1

    def thread(k: int) -> None:
        for _ in range(k):
            with lock:
                v = count[0]
                count[0] = v + 1

    threads = Threads()
    for _ in range(8):
        threads.start(thread, 500)
    hs = [grid.spawn(tasks, 30, worker=i % 2) for i in range(100)]
    for h in hs:
        h.result(STRESS_WAIT)
    threads.join()
    assert count[0] == 8 * 500 + 100 * 30
    assert not lock.locked() and waiters(lock) == 0


@pytest.mark.parametrize("maxsize", [8, 1])
def test_stress_queue_delivers_every_item_once(grid: Grid, maxsize: int) -> None:
    """With one slot, every put but the first waits for a get; most gets (the
    tasks') take no mutex: none of them may strand a putter."""
    q: Queue[tuple[str, int]] = Queue(maxsize)
    per = 300
    got: list[tuple[str, int]] = []
    got_lock = threading.Lock()

    async def produce(tag: str) -> None:
        for i in range(per):
            await q.put((tag, i))

    async def consume(n: int) -> None:
        for _ in range(n):
            item = await q.get()
            with got_lock:
                got.append(item)

    def tproduce(tag: str) -> None:
        for i in range(per):
            q.put_blocking((tag, i), WAIT)

    def tconsume(n: int) -> None:
        for _ in range(n):
            item = q.get_blocking(WAIT)
            with got_lock:
                got.append(item)

    producers = [f"task{i}" for i in range(20)] + [f"thread{i}" for i in range(4)]
    total = per * len(producers)
    threads = Threads()
    hs = [grid.spawn(consume, total // 40, worker=i % 2) for i in range(20)]  # half the items
    for _ in range(4):
        threads.start(tconsume, total // 8)  # the other half
    for i in range(4):
        threads.start(tproduce, f"thread{i}")
    hs += [grid.spawn(produce, f"task{i}", worker=i % 2) for i in range(20)]
    for h in hs:
        h.result(STRESS_WAIT)
    threads.join()
    assert len(got) == total
    assert collections.Counter(got) == collections.Counter(
        (t, i) for t in producers for i in range(per)
    )
    assert q.empty() and waiters(q) == 0


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    maxsize=st.integers(min_value=0, max_value=3),
    producers=st.lists(
        st.tuples(st.sampled_from(["w0", "w1", "thread"]), st.integers(0, 30)),
        min_size=1,
        max_size=5,
    ),
    getters=st.lists(st.tuples(st.sampled_from([0, 1]), st.booleans()), min_size=1, max_size=30),
)
def test_hypothesis_cancelled_getters_never_lose_or_duplicate(
    grid: Grid, maxsize: int, producers: list[tuple[str, int]], getters: list[tuple[int, bool]]
) -> None:
    """Producers on both workers and in threads; one-shot getters on both workers,
    some cancelled at whatever moment that lands; the main thread drains the rest.
    Every item put is received exactly once: by a getter that returned it, or by
    the drain."""
    q: Queue[tuple[int, int]] = Queue(maxsize)
    threads = Threads()
    hs_get = [grid.spawn(q.get, worker=w) for w, _ in getters]
    hs_put = []
    for p, (where, n) in enumerate(producers):
        items = [(p, i) for i in range(n)]
        if where == "thread":
            threads.start(lambda items=items: [q.put_blocking(x, WAIT) for x in items])
        else:

            async def produce(items: list[tuple[int, int]] = items) -> None:
                for x in items:
                    await q.put(x)

            hs_put.append(grid.spawn(produce, worker=int(where[1])))
    for h, (_, cancel) in zip(hs_get, getters, strict=True):
        if cancel:
            h.cancel()
    total = sum(n for _, n in producers)
    drained: list[tuple[int, int]] = []

    def taken() -> int:
        return len(drained) + sum(1 for h in hs_get if h.done() and not h.cancelled())

    deadline = time.monotonic() + WAIT
    while taken() < total:
        assert time.monotonic() < deadline, "items were lost"
        try:
            drained.append(q.get_blocking(timeout=0.001))
        except TimeoutError:
            pass  # the rest is owed to live getters, or still being put
    for h in hs_put:
        h.result(WAIT)
    threads.join()
    for h in hs_get:  # getters left waiting for items that were all taken
        h.cancel()
    got = list(drained)
    for h in hs_get:
        if finish(h) == "done":
            got.append(h.result())
    assert collections.Counter(got) == collections.Counter(
        (p, i) for p, (_, n) in enumerate(producers) for i in range(n)
    )
    assert q.empty() and waiters(q) == 0


def test_primitives_are_exported() -> None:
    for name in ("Lock", "Event", "Semaphore", "Queue", "DeadlockError"):
        assert name in loopgrid.__all__
        assert getattr(loopgrid, name) is not None
    assert issubclass(DeadlockError, loopgrid.LoopgridError)
