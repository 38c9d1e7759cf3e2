"""Correctness evaluation of cross-loop primitives: aiologic, culsans, loopgrid.sync.

Not part of the test suite (aiologic and culsans are not dependencies): this is
the evidence behind the choice recorded in ``bench/RESULTS.md``, kept so it can
be re-run when a new version of either library comes out::

    python3 scripts/dev.py test -q bench/eval_sync_libs.py -rA

Expected outcome with aiologic 0.17.1 and culsans 0.11.0: everything passes
but two strict xfails, both aiologic's Lock refusing a release by a task other
than the one that took it (asyncio.Lock allows it).

Every scenario runs the same code through a small adapter per implementation:
waiters are tasks pinned on the two workers of a loopgrid Grid (two threads,
uvloop when installed), a task on a foreign asyncio loop in a plain thread, and
plain threads using the blocking calls. Each checks an exact outcome (a count,
an item received once, a lock taken afterwards) with a generous guard against
hangs; nothing depends on timing. culsans only has queues, so it takes part in
the queue scenarios only.
"""

from __future__ import annotations

import asyncio
import queue as std_queue
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from helpers import WAIT, Gate, close_or_fail, wait_until

import loopgrid
from loopgrid import sync

aiologic = pytest.importorskip("aiologic")
culsans = pytest.importorskip("culsans")

# -- adapters -----------------------------------------------------------------------
#
# One interface for the three implementations: async acquire/release, blocking
# acquire(timeout) -> bool, event set/clear/wait, queue put/get/nowait/blocking,
# and how many parties wait (to know a waiter has queued without sleeping).


class Own:
    name = "loopgrid.sync"
    has_lock = True

    Lock = sync.Lock
    Event = sync.Event
    Semaphore = sync.Semaphore

    @staticmethod
    def Queue(maxsize: int) -> Any:
        return sync.Queue(maxsize)

    async def acquire(self, p: Any) -> None:
        await p.acquire()

    def release(self, p: Any) -> None:
        p.release()

    def acquire_blocking(self, p: Any, timeout: float | None = None) -> bool:
        return bool(p.acquire_blocking(timeout))

    def release_blocking(self, p: Any) -> None:
        p.release()

    async def wait(self, e: Any) -> None:
        await e.wait()

    def wait_blocking(self, e: Any, timeout: float | None) -> bool:
        return bool(e.wait_blocking(timeout))

    async def put(self, q: Any, item: Any) -> None:
        await q.put(item)

    async def get(self, q: Any) -> Any:
        return await q.get()

    def put_nowait(self, q: Any, item: Any) -> None:
        q.put_nowait(item)

    def get_nowait(self, q: Any) -> Any:
        return q.get_nowait()

    def put_blocking(self, q: Any, item: Any) -> None:
        q.put_blocking(item, WAIT)

    def get_blocking(self, q: Any, timeout: float = WAIT) -> Any:
        return q.get_blocking(timeout)

    def qsize(self, q: Any) -> int:
        return int(q.qsize())

    def waiting(self, p: Any) -> int:
        if isinstance(p, sync.Queue):
            return len(p._getters) + len(p._putters)
        return len(p._waiters)

    full_errors: tuple[type[BaseException], ...] = (asyncio.QueueFull,)
    empty_errors: tuple[type[BaseException], ...] = (asyncio.QueueEmpty, TimeoutError)


class Aiologic(Own):
    name = "aiologic"

    Lock = aiologic.Lock
    Event = aiologic.REvent  # aiologic.Event cannot be cleared
    Semaphore = aiologic.Semaphore

    @staticmethod
    def Queue(maxsize: int) -> Any:
        return aiologic.Queue(maxsize=maxsize)

    async def acquire(self, p: Any) -> None:
        await p.async_acquire()

    def release(self, p: Any) -> None:
        p.async_release()

    def acquire_blocking(self, p: Any, timeout: float | None = None) -> bool:
        return bool(p.green_acquire(timeout=timeout))

    def release_blocking(self, p: Any) -> None:
        p.green_release()

    async def wait(self, e: Any) -> None:
        await e

    def wait_blocking(self, e: Any, timeout: float | None) -> bool:
        return bool(e.wait(timeout))

    async def put(self, q: Any, item: Any) -> None:
        await q.async_put(item)

    async def get(self, q: Any) -> Any:
        return await q.async_get()

    def put_nowait(self, q: Any, item: Any) -> None:
        q.green_put(item, blocking=False)

    def get_nowait(self, q: Any) -> Any:
        return q.green_get(blocking=False)

    def put_blocking(self, q: Any, item: Any) -> None:
        q.green_put(item, timeout=WAIT)

    def get_blocking(self, q: Any, timeout: float = WAIT) -> Any:
        return q.green_get(timeout=timeout)

    def qsize(self, q: Any) -> int:
        return len(q)

    def waiting(self, p: Any) -> int:
        return int(p.waiting)

    full_errors = (aiologic.QueueFull,)
    empty_errors = (aiologic.QueueEmpty,)


class Culsans(Own):
    name = "culsans"
    has_lock = False

    @staticmethod
    def Queue(maxsize: int) -> Any:
        return culsans.Queue(maxsize)

    async def put(self, q: Any, item: Any) -> None:
        await q.async_put(item)

    async def get(self, q: Any) -> Any:
        return await q.async_get()

    def put_blocking(self, q: Any, item: Any) -> None:
        q.sync_put(item, timeout=WAIT)

    def get_blocking(self, q: Any, timeout: float = WAIT) -> Any:
        return q.sync_get(timeout=timeout)

    def waiting(self, p: Any) -> int:
        return int(p.not_empty.waiting + p.not_full.waiting)

    full_errors = (culsans.QueueFull,)
    empty_errors = (culsans.QueueEmpty, std_queue.Empty)


ALL = [Own(), Aiologic(), Culsans()]
WITH_LOCKS = [i for i in ALL if i.has_lock]


def ids(impls: list[Any]) -> list[str]:
    return [i.name for i in impls]


@pytest.fixture
def grid() -> Iterator[loopgrid.Grid]:
    g = loopgrid.Grid(loops=2)
    try:
        yield g
    finally:
        close_or_fail(g, cancel=True)


class ForeignLoop:
    """A plain asyncio loop in its own thread (not a grid worker)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(WAIT)
        self.loop.close()


@pytest.fixture
def foreign() -> Iterator[ForeignLoop]:
    f = ForeignLoop()
    yield f
    f.close()


async def with_timeout(aw: Any, seconds: float) -> Any:
    """asyncio.timeout where it exists (the waiting task itself is cancelled);
    wait_for on 3.10, which runs ``aw`` in a task of its own."""
    if sys.version_info >= (3, 11):
        async with asyncio.timeout(seconds):
            return await aw
    return await asyncio.wait_for(aw, seconds)


def run_threads(n: int, target: Callable[[int], None]) -> None:
    errors: list[BaseException] = []

    def body(i: int) -> None:
        try:
            target(i)
        except BaseException as e:
            errors.append(e)

    ts = [threading.Thread(target=body, args=(i,)) for i in range(n)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(WAIT)
    assert not any(t.is_alive() for t in ts), "a thread hung"
    assert not errors, errors


# -- locks and semaphores --------------------------------------------------------


@pytest.mark.parametrize("impl", WITH_LOCKS, ids=ids(WITH_LOCKS))
@pytest.mark.parametrize("kind", ["Lock", "Semaphore"])
def test_mutual_exclusion_everywhere(
    impl: Any, kind: str, grid: loopgrid.Grid, foreign: ForeignLoop
) -> None:
    """Tasks on both workers, a foreign loop and plain threads share one counter."""
    lock = impl.Lock() if kind == "Lock" else impl.Semaphore(1)
    count = [0]
    inside = [0]

    async def tasks(k: int) -> None:
        for _ in range(k):
            await impl.acquire(lock)
            try:
                inside[0] += 1
                assert inside[0] == 1
                v = count[0]
                await asyncio.sleep(0)
                count[0] = v + 1
                inside[0] -= 1
            finally:
                impl.release(lock)

    def thread(k: int) -> None:
        for _ in range(k):
            assert impl.acquire_blocking(lock, WAIT)
            try:
                inside[0] += 1
                assert inside[0] == 1
                count[0] += 1
                inside[0] -= 1
            finally:
                impl.release_blocking(lock)

    hs = [grid.spawn(tasks, 300, worker=i % 2) for i in range(8)]
    f = foreign.run(tasks(300))
    run_threads(4, lambda i: thread(300))
    for h in hs:
        h.result(WAIT)
    f.result(WAIT)
    assert count[0] == 8 * 300 + 300 + 4 * 300


@pytest.mark.parametrize("impl", WITH_LOCKS, ids=ids(WITH_LOCKS))
@pytest.mark.parametrize("kind", ["Lock", "Semaphore"])
def test_cancelled_waiter_loses_nothing(impl: Any, kind: str, grid: loopgrid.Grid) -> None:
    """Release and cancel the first waiter in one step of its own loop, repeatedly:
    the lock was handed to a task that then raises CancelledError; the next
    waiter (on the other loop) must still get it."""
    rounds = 200

    async def until_waiting(p: Any, n: int) -> None:
        while impl.waiting(p) < n:  # a poll of the waiter count: no other signal
            await asyncio.sleep(0)

    async def take_and_release(lock: Any) -> None:
        await impl.acquire(lock)
        impl.release(lock)

    async def holder_side(lock: Any) -> str:
        await impl.acquire(lock)
        b = asyncio.ensure_future(take_and_release(lock))  # same loop as the releaser
        await until_waiting(lock, 1)
        hc = grid.spawn(take_and_release, lock, worker=1)
        await until_waiting(lock, 2)
        impl.release(lock)  # hands the lock to b (or wakes it) ...
        b.cancel()  # ... which is cancelled before it runs
        try:
            await b
            outcome = "b acquired"
        except asyncio.CancelledError:
            outcome = "b cancelled"
        await hc
        return outcome

    outcomes: dict[str, int] = {}
    for _ in range(rounds):
        lock = impl.Lock() if kind == "Lock" else impl.Semaphore(1)
        h = grid.spawn(holder_side, lock, worker=0)
        out = h.result(WAIT)
        outcomes[out] = outcomes.get(out, 0) + 1
        assert impl.acquire_blocking(lock, 0)  # free again: nothing lost
    assert sum(outcomes.values()) == rounds


@pytest.mark.parametrize("impl", WITH_LOCKS, ids=ids(WITH_LOCKS))
def test_timeouts_race_releases(impl: Any, grid: loopgrid.Grid) -> None:
    """Waiters with tiny wait_for timeouts on one worker, a holder cycling the
    lock on the other, and threads with tiny blocking timeouts: afterwards the
    lock is free and every acquisition was exclusive."""
    lock = impl.Lock()
    inside = [0]

    async def timed(k: int) -> int:
        got = 0
        for _ in range(k):
            try:
                await with_timeout(impl.acquire(lock), 0.0005)
            except asyncio.TimeoutError:
                continue
            inside[0] += 1
            assert inside[0] == 1
            inside[0] -= 1
            impl.release(lock)
            got += 1
        return got

    async def cycler(k: int) -> int:
        for _ in range(k):
            await impl.acquire(lock)
            inside[0] += 1
            assert inside[0] == 1
            await asyncio.sleep(0)
            inside[0] -= 1
            impl.release(lock)
        return k

    def thread(k: int) -> None:
        for _ in range(k):
            if impl.acquire_blocking(lock, 0.0005):
                inside[0] += 1
                assert inside[0] == 1
                inside[0] -= 1
                impl.release_blocking(lock)

    hs = [grid.spawn(timed, 500, worker=0) for _ in range(4)]
    hs += [grid.spawn(cycler, 1000, worker=1)]
    run_threads(2, lambda i: thread(500))
    total = sum(h.result(WAIT) for h in hs)
    assert total >= 1000
    assert impl.acquire_blocking(lock, WAIT)  # not left held by a timed-out waiter
    impl.release_blocking(lock)


# -- events -----------------------------------------------------------------------


@pytest.mark.parametrize("impl", WITH_LOCKS, ids=ids(WITH_LOCKS))
def test_event_wakes_every_waiter_once_cancelled_one(
    impl: Any, grid: loopgrid.Grid, foreign: ForeignLoop
) -> None:
    for _ in range(50):
        ev = impl.Event()

        async def waiter(ev: Any = ev) -> bool:
            await impl.wait(ev)
            return True

        hs = [grid.spawn(waiter, worker=i % 2) for i in range(6)]
        victim = grid.spawn(waiter, worker=1)
        f = foreign.run(waiter())
        results: list[bool] = []

        def blocking(ev: Any = ev, results: list[bool] = results) -> None:
            results.append(impl.wait_blocking(ev, WAIT))

        t = threading.Thread(target=blocking)
        t.start()
        assert wait_until(lambda ev=ev: impl.waiting(ev) == 9)
        victim.cancel()
        ev.set()
        ev.clear()  # right away: waiters woken by set() still return
        assert all(h.result(WAIT) for h in hs)
        assert f.result(WAIT)
        t.join(WAIT)
        assert results == [True]
        try:
            assert victim.result(WAIT)  # set() came first
        except asyncio.CancelledError:
            pass
        assert impl.waiting(ev) == 0


@pytest.mark.parametrize("impl", WITH_LOCKS, ids=ids(WITH_LOCKS))
def test_event_wait_timeout(impl: Any, grid: loopgrid.Grid) -> None:
    ev = impl.Event()

    async def timed() -> str:
        try:
            await with_timeout(impl.wait(ev), 0.001)
        except asyncio.TimeoutError:
            return "timeout"
        return "set"

    assert grid.spawn(timed, worker=0).result(WAIT) == "timeout"
    assert impl.wait_blocking(ev, 0.001) is False
    assert impl.waiting(ev) == 0
    ev.set()
    assert grid.spawn(timed, worker=1).result(WAIT) == "set"


# -- queues -----------------------------------------------------------------------


@pytest.mark.parametrize("impl", ALL, ids=ids(ALL))
def test_queue_cancelled_getter_loses_no_item(impl: Any, grid: loopgrid.Grid) -> None:
    """Put an item and cancel the getter it went to in one step of the getter's
    loop; a second getter on the other loop must receive it."""
    rounds = 200

    async def until_waiting(q: Any, n: int) -> None:
        while impl.waiting(q) < n:
            await asyncio.sleep(0)

    async def on_w0(q: Any) -> str:
        g1 = asyncio.ensure_future(impl.get(q))
        await until_waiting(q, 1)
        h2 = grid.spawn(impl.get, q, worker=1)
        await until_waiting(q, 2)
        impl.put_nowait(q, "x")
        g1.cancel()
        try:
            got = await g1
            assert got == "x"
            impl.put_nowait(q, "x")  # g1 won the race: give h2 its item
            outcome = "g1 got it"
        except asyncio.CancelledError:
            outcome = "g1 cancelled"
        assert await h2 == "x"
        return outcome

    for _ in range(rounds):
        q = impl.Queue(1)
        grid.spawn(on_w0, q, worker=0).result(WAIT)
        assert impl.qsize(q) == 0


@pytest.mark.parametrize("impl", ALL, ids=ids(ALL))
def test_queue_timeouts_lose_no_item(impl: Any, grid: loopgrid.Grid) -> None:
    """Consumers with tiny timeouts on both workers and a blocking thread,
    producers on both workers: every item is received exactly once."""
    n_prod, per = 4, 500
    got: list[Any] = []
    lock = threading.Lock()

    async def producer(p: int, q: Any) -> None:
        for i in range(per):
            await impl.put(q, (p, i))

    async def consumer(q: Any, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                item = await with_timeout(impl.get(q), 0.0005)
            except asyncio.TimeoutError:
                continue
            with lock:
                got.append(item)

    def thread_consumer(q: Any, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                item = impl.get_blocking(q, 0.0005)
            except impl.empty_errors:
                continue
            with lock:
                got.append(item)

    q = impl.Queue(8)
    stop = threading.Event()
    cs = [grid.spawn(consumer, q, stop, worker=i % 2) for i in range(4)]
    t = threading.Thread(target=thread_consumer, args=(q, stop))
    t.start()
    ps = [grid.spawn(producer, p, q, worker=p % 2) for p in range(n_prod)]
    for h in ps:
        h.result(WAIT)
    assert wait_until(lambda: len(got) + impl.qsize(q) >= n_prod * per)
    stop.set()
    for h in cs:
        h.result(WAIT)
    t.join(WAIT)
    while impl.qsize(q):
        got.append(impl.get_nowait(q))
    assert sorted(got) == sorted((p, i) for p in range(n_prod) for i in range(per))


@pytest.mark.parametrize("impl", ALL, ids=ids(ALL))
def test_queue_stress_threads_and_tasks(impl: Any, grid: loopgrid.Grid) -> None:
    """Producer and consumer tasks on both workers and in plain threads, a small
    bound: every item arrives exactly once."""
    per = 400
    q = impl.Queue(4)
    got: list[Any] = []
    lock = threading.Lock()

    async def producer(p: int) -> None:
        for i in range(per):
            await impl.put(q, (p, i))

    async def consumer(n: int) -> None:
        for _ in range(n):
            item = await impl.get(q)
            with lock:
                got.append(item)

    def tproducer(p: int) -> None:
        for i in range(per):
            impl.put_blocking(q, (p, i))

    def tconsumer(n: int) -> None:
        for _ in range(n):
            item = impl.get_blocking(q)
            with lock:
                got.append(item)

    # 4 task producers + 2 thread producers = 6 * per items; 6 consumers.
    hs = [grid.spawn(producer, p, worker=p % 2) for p in range(4)]
    hs += [grid.spawn(consumer, per, worker=c % 2) for c in range(4)]
    run_threads(
        4, lambda i: tproducer(100 + i) if i < 2 else tconsumer(per)
    )  # producers finish only if consumers run
    for h in hs:
        h.result(WAIT)
    expected = [(p, i) for p in [0, 1, 2, 3, 100, 101] for i in range(per)]
    assert sorted(got) == sorted(expected)


@pytest.mark.parametrize("impl", ALL, ids=ids(ALL))
def test_queue_backpressure(impl: Any, grid: loopgrid.Grid) -> None:
    q = impl.Queue(2)
    impl.put_nowait(q, 1)
    impl.put_nowait(q, 2)
    with pytest.raises(impl.full_errors):
        impl.put_nowait(q, 3)
    h = grid.spawn(impl.put, q, 3, worker=1)
    assert wait_until(lambda: impl.waiting(q) == 1)
    assert not h.done()
    assert impl.get_nowait(q) == 1
    h.result(WAIT)
    assert [impl.get_nowait(q), impl.get_nowait(q)] == [2, 3]
    with pytest.raises(impl.empty_errors):
        impl.get_nowait(q)


OWNER_CHECKED = "aiologic's Lock raises RuntimeError unless its owner (task or thread) releases it"


@pytest.mark.parametrize(
    "impl",
    [
        Own(),
        pytest.param(
            Aiologic(),
            marks=pytest.mark.xfail(
                sys.version_info < (3, 12),
                reason=OWNER_CHECKED + "; wait_for runs the acquire in a task of its own "
                "before 3.12",
                strict=True,
            ),
        ),
    ],
    ids=ids(WITH_LOCKS),
)
def test_lock_taken_under_wait_for_released_by_caller(impl: Any, grid: loopgrid.Grid) -> None:
    """``await wait_for(lock.acquire(), t)`` then ``lock.release()``: the common
    asyncio idiom, which asyncio.Lock supports on every version."""

    async def idiom() -> bool:
        lock = impl.Lock()
        await asyncio.wait_for(impl.acquire(lock), WAIT)
        impl.release(lock)
        return True

    assert grid.spawn(idiom, worker=0).result(WAIT)


@pytest.mark.parametrize(
    "impl",
    [Own(), pytest.param(Aiologic(), marks=pytest.mark.xfail(reason=OWNER_CHECKED, strict=True))],
    ids=ids(WITH_LOCKS),
)
def test_lock_released_by_another_task(impl: Any, grid: loopgrid.Grid) -> None:
    """asyncio.Lock (and threading.Lock) may be released by someone other than
    the task that took it, such as a hand-off to a worker that finishes the job."""
    lock = impl.Lock()
    taken, done = threading.Event(), Gate()

    async def take() -> None:
        await impl.acquire(lock)
        taken.set()
        await done.wait()  # stays alive: the ids of ended tasks are reused

    async def give_back() -> bool:
        try:
            impl.release(lock)
        finally:
            done.set()
        return True

    h = grid.spawn(take, worker=0)
    assert taken.wait(WAIT)
    assert grid.spawn(give_back, worker=1).result(WAIT)
    h.result(WAIT)


@pytest.mark.parametrize("impl", WITH_LOCKS, ids=ids(WITH_LOCKS))
@pytest.mark.parametrize("kind", ["Lock", "Semaphore"])
def test_thread_release_races_cross_thread_cancel(
    impl: Any, kind: str, grid: loopgrid.Grid
) -> None:
    """A plain thread holds the lock; tasks wait on both workers; the thread
    releases while the main thread cancels the first waiters: the lock is
    free (or held by a survivor that releases it) afterwards, every round."""

    async def take_and_release(lock: Any) -> bool:
        await impl.acquire(lock)
        impl.release(lock)
        return True

    for _ in range(200):
        lock = impl.Lock() if kind == "Lock" else impl.Semaphore(1)
        held, go = threading.Event(), threading.Event()

        def holder(lock: Any = lock, held: Any = held, go: Any = go) -> None:
            # aiologic's locks must be released by the thread that took them.
            assert impl.acquire_blocking(lock, WAIT)
            held.set()
            go.wait(WAIT)
            impl.release_blocking(lock)

        releaser = threading.Thread(target=holder)
        releaser.start()
        assert held.wait(WAIT)
        hs = [grid.spawn(take_and_release, lock, worker=i % 2) for i in range(4)]
        assert wait_until(lambda lock=lock: impl.waiting(lock) == 4)
        go.set()
        hs[0].cancel()
        hs[1].cancel()
        releaser.join(WAIT)
        for h in hs[2:]:
            assert h.result(WAIT)
        for h in hs[:2]:
            try:
                assert h.result(WAIT)
            except asyncio.CancelledError:
                pass
        assert impl.acquire_blocking(lock, 0), "lock lost"


@pytest.mark.parametrize("impl", ALL, ids=ids(ALL))
def test_cancelled_putter_did_not_put(impl: Any, grid: loopgrid.Grid) -> None:
    """A putter blocked on a full queue is cancelled while a getter on the other
    loop frees a slot: a put that raised CancelledError must not have put."""
    outcomes: dict[str, int] = {}
    for r in range(200):
        q = impl.Queue(1)
        impl.put_nowait(q, "first")
        hp = grid.spawn(impl.put, q, "second", worker=1)
        assert wait_until(lambda q=q: impl.waiting(q) == 1)
        hg = grid.spawn(impl.get, q, worker=0)
        hp.cancel()
        assert hg.result(WAIT) == "first"
        try:
            hp.result(WAIT)
            put = True
        except asyncio.CancelledError:
            put = False
        left = []
        while impl.qsize(q):
            left.append(impl.get_nowait(q))
        assert left == (["second"] if put else []), (r, put, left)
        key = "put" if put else "cancelled"
        outcomes[key] = outcomes.get(key, 0) + 1


@pytest.mark.parametrize("impl", WITH_LOCKS, ids=ids(WITH_LOCKS))
@pytest.mark.parametrize("kind", ["Lock", "Semaphore"])
def test_fifo_across_loops_and_threads(impl: Any, kind: str, grid: loopgrid.Grid) -> None:
    """Waiters queued one by one on alternating workers and threads get the
    lock in the order they asked, while a barging thread keeps trying."""
    lock = impl.Lock() if kind == "Lock" else impl.Semaphore(1)
    order: list[int] = []
    assert impl.acquire_blocking(lock, WAIT)

    async def task_waiter(i: int) -> None:
        await impl.acquire(lock)
        order.append(i)
        impl.release(lock)

    def thread_waiter(i: int) -> None:
        assert impl.acquire_blocking(lock, WAIT)
        order.append(i)
        impl.release_blocking(lock)

    threads = []
    for i in range(12):
        if i % 3 == 2:
            t = threading.Thread(target=thread_waiter, args=(i,))
            t.start()
            threads.append(t)
        else:
            grid.spawn(task_waiter, i, worker=i % 3)
        assert wait_until(lambda i=i: impl.waiting(lock) == i + 1)
    impl.release_blocking(lock)
    for t in threads:
        t.join(WAIT)
    assert wait_until(lambda: len(order) == 12)
    assert order == list(range(12))
