"""The paths of loopgrid.sync that take no mutex: Lock's token, a Queue's gets.

An uncontended Lock is taken by popping a token from a deque and released by
putting it back; a Queue's get pops its deque without the mutex (see the
docstrings of ``loopgrid/sync/lock.py`` and ``queue.py``). Each has one race
with a party that queues under the mutex at the same moment, and each side
looks again after it wrote. The first tests force each race by wedging the
other party's step into the window (a deque whose next append runs it first)
and check that nobody is stranded; the stress and hypothesis tests run the
paths from tasks on several loops, a foreign loop and plain threads at once
(with test_sync.py's queue stress test, whose one-slot case makes every put
wait for a get).
No assertion is about time; a stranded waiter shows as a wait that reaches
``WAIT``.
"""

from __future__ import annotations

import asyncio
import collections
import threading
from collections.abc import Callable, Iterable
from typing import Any

import pytest
import test_sync
from helpers import STRESS_WAIT, WAIT, wait_until
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_sync import ForeignLoop, Threads, waiters

from loopgrid import Grid, LifoQueue, Lock, PriorityQueue, Queue, waitgraph

foreign = test_sync.foreign  # the fixture: a plain asyncio loop in a thread of its own


class Wedged(collections.deque):  # type: ignore[type-arg]
    """A deque that runs ``before()`` ahead of its next append, once."""

    def __init__(
        self,
        items: Iterable[Any] = (),
        maxlen: int | None = None,
        before: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(items, maxlen)
        self.before = before

    def append(self, x: Any) -> None:
        before, self.before = self.before, None
        if before is not None:
            before()
        super().append(x)


def in_a_thread(fn: Callable[[], object]) -> None:
    t = threading.Thread(target=fn)
    t.start()
    t.join(WAIT)
    assert not t.is_alive()


# -- the races, forced -----------------------------------------------------------------


def test_a_waiter_that_queues_as_the_lock_is_freed_is_handed_it(grid: Grid) -> None:
    """The holder saw no waiter; one queues before the token is back: the
    holder, looking again, hands the lock over."""
    lock = Lock()
    assert lock.acquire_blocking()
    got: list[str] = []

    async def waiter() -> None:
        async with lock:
            got.append("waiter")

    spawned = []

    def queue_a_waiter() -> None:
        spawned.append(grid.spawn(waiter, worker=0))
        assert wait_until(lambda: waiters(lock) == 1)

    lock._free = Wedged(lock._free, maxlen=1, before=queue_a_waiter)
    lock.release()
    spawned[0].result(WAIT)
    assert got == ["waiter"]
    assert not lock.locked() and waiters(lock) == 0 and len(lock._free) == 1


def test_a_lock_freed_as_its_waiter_queues_is_taken_at_once() -> None:
    """The waiter found the lock held; it is released before the waiter is in
    the queue: the waiter, looking again, takes it without waiting."""
    lock = Lock()
    in_a_thread(lock.acquire_blocking)
    lock._waiters = Wedged(before=lambda: in_a_thread(lock.release))
    me = threading.current_thread()
    assert lock.acquire_blocking(timeout=WAIT)
    assert lock.locked() and waiters(lock) == 0
    assert waitgraph.waiting_for(me) is None  # its wait-for edge went with it
    lock.release()
    assert not lock.locked() and len(lock._free) == 1


def test_an_edge_to_a_past_owner_left_by_a_third_party_is_no_deadlock() -> None:
    """The waiter reads the owner just before the holder releases; the holder,
    looking twice, sees no waiter yet; a third party takes the token before the
    waiter looks again. Nobody serves the queue until the third party
    releases, so the waiter's edge names the past owner. The past owner, now
    queueing behind the waiter, closes a cycle only on the stale edge: it must
    wait, not get DeadlockError (a free-threaded stress run found this)."""
    lock = Lock()
    assert lock.acquire_blocking()
    me = threading.current_thread()
    third = threading.Thread(name="third party")  # a node that holds, never run

    def release_then_third_party_takes() -> None:  # inside the waiter's _queue
        lock.release()  # sees no waiter, puts the token back, sees none again
        assert lock._grab()
        lock._owner = third

    got: list[str] = []

    def waiter() -> None:
        with lock:
            got.append("waiter")

    lock._waiters = Wedged(before=release_then_third_party_takes)
    t = threading.Thread(target=waiter, name="waiter", daemon=True)  # not left if it fails
    t.start()
    assert wait_until(lambda: waitgraph.waiting_for(t) is not None)
    assert waitgraph.waiting_for(t) == (me, lock)  # stale: the third party holds

    def third_party_releases() -> None:
        assert wait_until(lambda: waiters(lock) == 2)
        lock.release()  # to the waiter, then the waiter's release to me

    releaser = threading.Thread(target=third_party_releases, daemon=True)
    releaser.start()
    assert lock.acquire_blocking(timeout=WAIT)
    releaser.join(WAIT)
    t.join(WAIT)
    assert got == ["waiter"] and lock._owner is me
    lock.release()
    assert not lock.locked() and waiters(lock) == 0 and len(lock._free) == 1
    assert waitgraph.waiting_for(me) is None and waitgraph.waiting_for(t) is None


def test_a_get_without_the_mutex_as_a_putter_queues_leaves_it_the_room(grid: Grid) -> None:
    """The putter found the queue full; a get frees the slot before the putter
    is in the queue (so the get wakes nobody): the putter, looking again, puts."""
    q: Queue[str] = Queue(1)
    q.put_nowait("first")
    got: list[str] = []

    def get_one() -> None:  # runs on worker 0, in put(): the get runs on worker 1
        in_a_thread(lambda: got.append(grid.spawn(q.get, worker=1).result(WAIT)))

    q._putters = Wedged(before=get_one)
    grid.spawn(q.put, "second", worker=0).result(WAIT)
    assert got == ["first"]
    assert q.get_nowait() == "second" and q.empty() and waiters(q) == 0


@pytest.mark.parametrize("base", [Queue, PriorityQueue, LifoQueue])
def test_a_queue_subclass_with_storage_of_its_own_runs_it_under_the_mutex(
    grid: Grid, base: type[Queue[int]]
) -> None:
    """asyncio's contract for ``_put`` and ``_get``: gets from a subclass that
    overrides them take the mutex, as puts do."""
    held: list[bool] = []

    class Recording(base):  # type: ignore[valid-type,misc]
        def _put(self, item: int) -> None:
            held.append(self._mutex.locked())
            super()._put(item)

        def _get(self) -> int:
            held.append(self._mutex.locked())
            item: int = super()._get()
            return item

    q: Queue[int] = Recording(2)

    async def put_all() -> None:
        for i in range(20):
            await q.put(i)

    async def get_some(n: int) -> list[int]:
        return [await q.get() for _ in range(n)]

    producer = grid.spawn(put_all, worker=0)
    first = grid.spawn(get_some, 10, worker=1).result(WAIT)
    rest = [q.get_blocking(WAIT) for _ in range(9)]
    producer.result(WAIT)  # its last put is in once it returns: get_nowait finds it
    rest.append(q.get_nowait())
    assert sorted(first + rest) == list(range(20))
    assert len(held) == 40 and all(held)


# -- stress ---------------------------------------------------------------------------------


def test_stress_uncontended_and_contended_lock_paths_stay_exclusive(
    grid: Grid, foreign: ForeignLoop
) -> None:
    """Critical sections without an await (the token path, mostly) and with one
    (queues form), from tasks on both workers, a foreign loop and threads."""
    lock = Lock()
    state = {"inside": 0, "most": 0, "count": 0}

    def critical() -> None:
        state["inside"] += 1
        state["most"] = max(state["most"], state["inside"])
        state["count"] += 1
        state["inside"] -= 1

    async def tasks(k: int, yield_inside: bool) -> None:
        for _ in range(k):
            async with lock:
                critical()
                if yield_inside:
                    await asyncio.sleep(0)

    def thread(k: int) -> None:
        for _ in range(k):
            with lock:
                critical()

    threads = Threads()
    for _ in range(4):
        threads.start(thread, 2000)
    hs = [grid.spawn(tasks, 500, i % 3 == 0, worker=i % 2) for i in range(12)]
    fs = [foreign.submit(tasks(500, i == 0)) for i in range(3)]
    for h in hs:
        h.result(STRESS_WAIT)
    for f in fs:
        f.result(STRESS_WAIT)
    threads.join()
    assert state == {"inside": 0, "most": 1, "count": 4 * 2000 + 15 * 500}
    assert not lock.locked() and waiters(lock) == 0 and len(lock._free) == 1


# -- hypothesis ------------------------------------------------------------------------------

_party = st.tuples(
    st.sampled_from(["w0", "w1", "thread"]),  # where
    st.integers(1, 40),  # how many acquire/release pairs
    st.booleans(),  # an await inside the critical section (tasks)
    st.booleans(),  # cancelled once started (tasks)
)


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(parties=st.lists(_party, min_size=1, max_size=8))
def test_hypothesis_lock_paths_with_cancellations_end_free_and_consistent(
    grid: Grid, parties: list[tuple[str, int, bool, bool]]
) -> None:
    """Whatever mix of parties, yields and cancellations: never two inside, and
    at the end the lock is free, its token back, nobody queued, no edge left."""
    lock = Lock()
    inside = [0, 0]
    started = [threading.Event() for _ in parties]
    nodes: list[object] = []
    nodes_lock = threading.Lock()

    def critical() -> None:
        inside[0] += 1
        inside[1] = max(inside[1], inside[0])
        inside[0] -= 1

    async def task(i: int, k: int, yield_inside: bool) -> None:
        with nodes_lock:
            nodes.append(waitgraph.current_node())
        started[i].set()
        for _ in range(k):
            async with lock:
                critical()
                if yield_inside:
                    await asyncio.sleep(0)

    def thread(i: int, k: int) -> None:
        with nodes_lock:
            nodes.append(threading.current_thread())
        started[i].set()
        for _ in range(k):
            with lock:
                critical()

    threads = Threads()
    hs = []
    for i, (where, k, yield_inside, cancel) in enumerate(parties):
        if where == "thread":
            threads.start(thread, i, k)
            continue
        h = grid.spawn(task, i, k, yield_inside, worker=int(where[1]))
        hs.append(h)
        if cancel:
            assert started[i].wait(WAIT)
            h.cancel()
    for h in hs:
        try:
            h.result(WAIT)
        except asyncio.CancelledError:
            pass
    threads.join()
    assert inside == [0, 1]
    assert not lock.locked() and waiters(lock) == 0 and len(lock._free) == 1
    assert [waitgraph.waiting_for(n) for n in nodes] == [None] * len(nodes)
