"""anyio interop: grid handles, primitives and task groups inside anyio code on
the asyncio backend (plain asyncio and uvloop), anyio inside grid tasks, threads
in both directions, and a clear error on the trio backend.

Async tests run under anyio's pytest plugin (``@pytest.mark.anyio``) on a loop
in the test's thread: a foreign loop for the grid. Nothing sleeps and nothing
is timed: a grid task says it has started through a Gate or a Countdown, a
waiter is known to have queued by its primitive's waiter count (polled by
``wait_until`` in a worker thread, so that the anyio loop keeps running), and
the short timeouts given to ``fail_after`` / ``move_on_after`` are a way to
cancel, never a measurement.
"""

from __future__ import annotations

import asyncio
import importlib.util
import sys
import threading
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import anyio.abc
import anyio.from_thread
import anyio.lowlevel
import anyio.to_thread
import pytest
from helpers import WAIT, Countdown, Gate, block_worker, fail, forever, identity, wait_until

import loopgrid
from loopgrid import Event, Grid, Handle, Lock, Queue, Semaphore, WouldBlockError, waitgraph

if sys.version_info < (3, 11):
    from exceptiongroup import ExceptionGroup

_BACKENDS = [pytest.param(("asyncio", {}), id="asyncio")]
if importlib.util.find_spec("uvloop") is not None:
    _BACKENDS.append(pytest.param(("asyncio", {"use_uvloop": True}), id="asyncio+uvloop"))

#: For the tests of the error that anyio's trio backend gets.
on_trio = pytest.mark.parametrize("anyio_backend", ["trio"])
needs_trio = pytest.mark.skipif(importlib.util.find_spec("trio") is None, reason="needs trio")


@pytest.fixture(scope="module", params=_BACKENDS)
def anyio_backend(request: pytest.FixtureRequest) -> Any:
    """anyio's backends that loopgrid supports: asyncio, on asyncio's loop and on uvloop."""
    return request.param


# -- helpers ----------------------------------------------------------------------------


async def until(predicate: Callable[[], bool]) -> None:
    """Wait, without blocking the anyio loop, for a state that has no event to wait on."""
    assert await anyio.to_thread.run_sync(wait_until, predicate), "it never happened"


async def counted(cd: Countdown) -> None:
    """Wait, without blocking the anyio loop, until ``cd`` has been hit often enough."""
    assert await anyio.to_thread.run_sync(cd.wait, WAIT), "not every task got there"


def waiters(p: Lock | Semaphore | Event | Queue[Any]) -> int:
    """How many parties wait on ``p`` (private state: the only signal there is)."""
    if isinstance(p, Queue):
        return len(p._getters) + len(p._putters)
    return len(p._waiters)


async def until_cancelled(started: Countdown, cancelled: Countdown) -> None:
    """A grid task: say it has started, then run until cancelled, and say so."""
    started.hit()
    try:
        await forever()
    except asyncio.CancelledError:
        cancelled.hit()
        raise


async def gated(release: Gate, value: Any) -> Any:
    await release.wait()
    return value


async def where(tag: Any) -> tuple[Any, int]:
    """A grid task: ``tag`` and the index of the worker that ran it."""
    await asyncio.sleep(0)
    return tag, loopgrid.current_worker().index


async def wait_for_handle(h: Handle[Any]) -> None:
    await h


# -- awaiting handles in anyio code -------------------------------------------------------


@pytest.mark.anyio
async def test_handles_awaited_in_an_anyio_task_group(grid: Grid) -> None:
    got: dict[int, Any] = {}

    async def collect(i: int, h: Handle[tuple[int, int]]) -> None:
        got[i] = await h

    async with anyio.create_task_group() as tg:
        for i in range(8):
            tg.start_soon(collect, i, grid.spawn(where, i, worker=i % 2))
    assert got == {i: (i, i % 2) for i in range(8)}


@pytest.mark.anyio
async def test_fail_after_cancels_the_running_grid_task(grid: Grid) -> None:
    started, cancelled = Countdown(1), Countdown(1)
    h = grid.spawn(until_cancelled, started, cancelled, worker=1)
    await counted(started)
    with pytest.raises(TimeoutError), anyio.fail_after(0.01):
        await h
    # The awaiter was woken by the grid task's end, as with an asyncio.Task.
    assert h.cancelled()
    assert h.worker == 1
    assert cancelled.wait(0), "the grid task was not cancelled on its loop"


@pytest.mark.anyio
async def test_move_on_after_never_starts_a_pending_task(grid: Grid) -> None:
    blockers = [await anyio.to_thread.run_sync(block_worker, grid, i) for i in range(2)]
    try:
        ran: list[str] = []

        async def should_not_run() -> None:
            ran.append("ran")

        h = grid.spawn(should_not_run)
        with anyio.move_on_after(0.01) as scope:
            await h
        assert scope.cancelled_caught
        assert h.cancelled()
        assert h.worker is None  # it never started
    finally:
        for _, release in blockers:
            release.set()
    for blocker, _ in blockers:
        await blocker
    assert ran == []


@pytest.mark.anyio
async def test_cancel_scope_cancel_reaches_the_grid_task(grid: Grid) -> None:
    started, cancelled = Countdown(1), Countdown(1)
    h = grid.spawn(until_cancelled, started, cancelled, worker=0)
    after: list[str] = []
    scope = anyio.CancelScope()

    async def awaiter(*, task_status: anyio.abc.TaskStatus[object]) -> None:
        with scope:
            task_status.started(waitgraph.current_node())
            await h
            after.append("the await returned")

    async with anyio.create_task_group() as tg:
        node = await tg.start(awaiter)
        await counted(started)
        await until(lambda: waitgraph.waiting_for(node) is not None)  # it awaits h
        scope.cancel()
    assert scope.cancelled_caught
    assert after == []
    assert h.cancelled()
    assert cancelled.wait(0)


@pytest.mark.anyio
async def test_a_shielded_scope_protects_the_awaited_task(grid: Grid) -> None:
    release = Gate()
    h = grid.spawn(gated, release, "kept")
    log: list[Any] = []
    outer = anyio.CancelScope()

    async def awaiter(*, task_status: anyio.abc.TaskStatus[object]) -> None:
        with outer:
            with anyio.CancelScope(shield=True):
                task_status.started(waitgraph.current_node())
                log.append(await h)
            await anyio.lowlevel.checkpoint()  # the outer cancellation strikes here
            log.append("not cancelled")

    async with anyio.create_task_group() as tg:
        node = await tg.start(awaiter)
        await until(lambda: waitgraph.waiting_for(node) is not None)  # it awaits h
        outer.cancel()
        # Were the shield broken, the cancel would reach the grid task before
        # this release does (both go to its loop, in this order).
        release.set()
    assert log == ["kept"]
    assert outer.cancelled_caught
    assert h.result() == "kept"


@pytest.mark.anyio
async def test_a_failing_grid_task_cancels_the_others_through_an_anyio_task_group(
    grid: Grid,
) -> None:
    started, cancelled = Countdown(4), Countdown(4)
    running = [grid.spawn(until_cancelled, started, cancelled, worker=i % 2) for i in range(4)]
    await counted(started)
    with pytest.raises(ExceptionGroup) as info:
        async with anyio.create_task_group() as tg:
            for h in running:
                tg.start_soon(wait_for_handle, h)
            tg.start_soon(wait_for_handle, grid.spawn(fail, "grid boom"))
    assert [repr(e) for e in info.value.exceptions] == ["ValueError('grid boom')"]
    assert all(h.cancelled() for h in running)
    assert cancelled.wait(0)


@pytest.mark.anyio
async def test_task_group_cancel_scope_cancels_the_awaited_tasks(grid: Grid) -> None:
    started, cancelled = Countdown(4), Countdown(4)
    running = [grid.spawn(until_cancelled, started, cancelled, worker=i % 2) for i in range(4)]
    async with anyio.create_task_group() as tg:
        for h in running:
            tg.start_soon(wait_for_handle, h)
        await counted(started)
        tg.cancel_scope.cancel()
    assert all(h.cancelled() for h in running)
    assert cancelled.wait(0)


# -- loopgrid.TaskGroup in anyio code -----------------------------------------------------


@pytest.mark.anyio
async def test_loopgrid_task_group_in_anyio_code(grid: Grid) -> None:
    async with loopgrid.TaskGroup(grid=grid) as tg:
        hs = [tg.spawn(where, i, worker=i % 2) for i in range(4)]
        await anyio.lowlevel.checkpoint()
    assert [h.result() for h in hs] == [(i, i % 2) for i in range(4)]


@pytest.mark.anyio
async def test_anyio_cancel_scope_around_a_loopgrid_task_group(grid: Grid) -> None:
    started, cancelled = Countdown(2), Countdown(2)
    after: list[str] = []
    with anyio.CancelScope() as scope:
        async with loopgrid.TaskGroup(grid=grid) as tg:
            hs = [tg.spawn(until_cancelled, started, cancelled, worker=i) for i in range(2)]
            await counted(started)
            scope.cancel()
            await anyio.sleep_forever()
        after.append("the group ended normally")
    assert scope.cancelled_caught
    assert after == []
    assert all(h.cancelled() for h in hs)
    assert cancelled.wait(0)


# -- loopgrid primitives shared by anyio tasks and grid tasks -----------------------------


async def bump(lock: Lock, box: list[int], times: int, pause: Callable[[], Awaitable[Any]]) -> None:
    for _ in range(times):
        async with lock:
            value = box[0]
            await pause()  # anyone let in meanwhile would lose an update
            box[0] = value + 1


async def _asyncio_pause() -> None:
    await asyncio.sleep(0)


@pytest.mark.anyio
async def test_lock_excludes_anyio_tasks_and_grid_tasks(grid: Grid) -> None:
    lock, box, times = Lock(), [0], 50
    async with anyio.create_task_group() as tg:
        hs = [grid.spawn(bump, lock, box, times, _asyncio_pause, worker=i % 2) for i in range(4)]
        for _ in range(4):
            tg.start_soon(bump, lock, box, times, anyio.lowlevel.checkpoint)
        for h in hs:
            tg.start_soon(wait_for_handle, h)
    assert box == [8 * times]
    assert not lock.locked()
    assert waiters(lock) == 0


@pytest.mark.anyio
async def test_lock_serves_anyio_and_grid_waiters_in_order(grid: Grid) -> None:
    lock, log = Lock(), []

    async def take(tag: str) -> None:
        async with lock:
            log.append(tag)

    await lock.acquire()  # held by this anyio task
    async with anyio.create_task_group() as tg:
        for i, tag in enumerate(["anyio-1", "grid-0", "anyio-2", "grid-1"]):
            if tag.startswith("anyio"):
                tg.start_soon(take, tag)
            else:
                tg.start_soon(wait_for_handle, grid.spawn(take, tag, worker=int(tag[-1])))
            await until(lambda n=i + 1: waiters(lock) == n)
        lock.release()
    assert log == ["anyio-1", "grid-0", "anyio-2", "grid-1"]
    assert not lock.locked()


@pytest.mark.anyio
async def test_event_wakes_anyio_and_grid_waiters(grid: Grid) -> None:
    ev, woken = Event(), Countdown(5)

    async def waiter() -> None:
        assert await ev.wait() is True
        woken.hit()

    async with anyio.create_task_group() as tg:
        for _ in range(3):
            tg.start_soon(waiter)
        hs = [grid.spawn(waiter, worker=i) for i in range(2)]
        await until(lambda: waiters(ev) == 5)
        assert not woken.wait(0)

        async def set_it() -> None:
            ev.set()

        await grid.spawn(set_it)
        for h in hs:
            await h
    assert woken.wait(0)


@pytest.mark.anyio
async def test_semaphore_bounds_anyio_and_grid_holders(grid: Grid) -> None:
    sem, mutex = Semaphore(2), threading.Lock()
    inside, most, done = [0], [0], [0]

    async def hold(pause: Callable[[], Awaitable[Any]]) -> None:
        for _ in range(20):
            async with sem:
                with mutex:
                    inside[0] += 1
                    most[0] = max(most[0], inside[0])
                await pause()
                with mutex:
                    inside[0] -= 1
                    done[0] += 1

    async with anyio.create_task_group() as tg:
        for i in range(3):
            tg.start_soon(hold, anyio.lowlevel.checkpoint)
            tg.start_soon(wait_for_handle, grid.spawn(hold, _asyncio_pause, worker=i % 2))
    assert done == [6 * 20]
    assert 1 <= most[0] <= 2
    assert not sem.locked()


@pytest.mark.anyio
async def test_queues_between_grid_tasks_and_anyio_tasks(grid: Grid) -> None:
    to_anyio: Queue[int | None] = Queue(maxsize=4)
    to_grid: Queue[int | None] = Queue(maxsize=4)
    got_here: list[int] = []

    async def produce(q: Queue[int | None], start: int) -> None:
        for n in range(start, start + 50):
            await q.put(n)

    async def consume(q: Queue[int | None], out: list[int]) -> None:
        while (n := await q.get()) is not None:
            out.append(n)
            q.task_done()
        q.task_done()

    async def consume_on_grid(q: Queue[int | None]) -> list[int]:
        out: list[int] = []
        await consume(q, out)
        return out

    consumers = [grid.spawn(consume_on_grid, to_grid, worker=i) for i in range(2)]
    async with anyio.create_task_group() as tg:
        for _ in range(3):
            tg.start_soon(consume, to_anyio, got_here)
        producers = [grid.spawn(produce, to_anyio, 100 * i, worker=i) for i in range(2)]
        async with anyio.create_task_group() as anyio_producers:
            for i in range(2):
                anyio_producers.start_soon(produce, to_grid, 1000 + 100 * i)
        for h in producers:
            await h
        for _ in range(3):
            await to_anyio.put(None)
        for _ in range(2):
            await to_grid.put(None)
        await to_anyio.join()
        await to_grid.join()
    got_there = [n for h in consumers for n in await h]
    assert sorted(got_here) == [*range(50), *range(100, 150)]
    assert sorted(got_there) == [*range(1000, 1050), *range(1100, 1150)]


async def _hold(lock: Lock, held: Gate, release: Gate) -> None:
    async with lock:
        held.set()
        await release.wait()


@pytest.mark.anyio
@pytest.mark.parametrize("kind", ["lock", "semaphore", "event", "get", "put"])
async def test_anyio_timeout_on_a_wait_loses_nothing(grid: Grid, kind: str) -> None:
    """A wait cut short by an anyio scope leaves no waiter behind, and what it
    waited for (a lock, a permit, an item, a free slot) goes to the next one."""
    prim: Any
    if kind == "lock":
        prim, held, release = Lock(), Gate(), Gate()
        holder = grid.spawn(_hold, prim, held, release, worker=1)
        await held.wait()
        wait, free = prim.acquire, release.set
    elif kind == "semaphore":
        prim = Semaphore(0)
        wait, free = prim.acquire, prim.release
    elif kind == "event":
        prim = Event()
        wait, free = prim.wait, prim.set
    elif kind == "get":
        prim = Queue()
        wait, free = prim.get, lambda: prim.put_nowait("item")
    else:
        prim = Queue(maxsize=1)
        prim.put_nowait("first")
        wait, free = (lambda: prim.put("second")), prim.get_nowait

    with anyio.move_on_after(0.01) as scope:
        await wait()
    assert scope.cancelled_caught
    assert waiters(prim) == 0

    async def wait_on_grid() -> Any:
        return await wait()

    h = grid.spawn(wait_on_grid, worker=0)  # the next waiter, on the grid
    await until(lambda: waiters(prim) == 1)

    async def make_free() -> None:
        free()

    await grid.spawn(make_free, worker=1)
    with anyio.fail_after(WAIT):
        got = await h
    assert got == {"lock": True, "semaphore": True, "event": True, "get": "item", "put": None}[kind]
    if kind == "lock":
        prim.release()
        await holder
        assert not prim.locked()
    if kind == "put":
        assert prim.get_nowait() == "second"


# -- threads: anyio's worker threads and portals --------------------------------------------


@pytest.mark.anyio
async def test_to_thread_waits_for_a_handle(grid: Grid) -> None:
    release = Gate()
    h = grid.spawn(gated, release, "from a thread")
    with pytest.raises(WouldBlockError, match="use 'await handle' there"):
        h.result()  # on the loop's own thread: it would block the loop
    async with anyio.create_task_group() as tg:
        got: list[Any] = []

        async def in_thread() -> None:
            got.append(await anyio.to_thread.run_sync(h.result, WAIT))

        tg.start_soon(in_thread)
        release.set()
    assert got == ["from a thread"]
    with pytest.raises(ValueError, match="thread boom"):
        await anyio.to_thread.run_sync(grid.spawn(fail, "thread boom").result, WAIT)


@pytest.mark.anyio
async def test_from_thread_calls_back_into_the_anyio_loop(grid: Grid) -> None:
    loop_thread = threading.current_thread()

    async def await_on_the_anyio_loop(h: Handle[Any]) -> Any:
        assert threading.current_thread() is loop_thread
        return await h

    def in_worker_thread() -> tuple[Any, Any]:
        blocking = grid.spawn(where, "blocking").result(WAIT)  # a plain thread may block
        awaited = anyio.from_thread.run(await_on_the_anyio_loop, grid.spawn(where, "awaited"))
        return blocking[0], awaited[0]

    assert await anyio.to_thread.run_sync(in_worker_thread) == ("blocking", "awaited")


def test_blocking_portal_between_a_grid_and_an_anyio_loop(grid: Grid) -> None:
    async def await_it(h: Handle[Any]) -> Any:
        return await h

    async def on_the_portal(tag: str) -> tuple[str, str, Any]:
        await anyio.sleep(0)
        # ... and from the portal's loop back into the grid:
        back = await grid.spawn(where, tag)
        return tag, threading.current_thread().name, back

    async def grid_task_calls_the_portal(portal: anyio.from_thread.BlockingPortal) -> Any:
        # From a grid task, without blocking its worker loop: wrap the future.
        return await asyncio.wrap_future(portal.start_task_soon(on_the_portal, "via portal"))

    with anyio.from_thread.start_blocking_portal("asyncio") as portal:
        assert portal.call(await_it, grid.spawn(identity, 5)) == 5
        tag, thread, back = grid.spawn(grid_task_calls_the_portal, portal).result(WAIT)
    assert tag == "via portal"
    assert not thread.startswith("loopgrid-")  # it ran on the portal's loop
    assert back[0] == "via portal"


# -- anyio inside grid tasks ------------------------------------------------------------------


def test_anyio_task_group_inside_a_grid_task(grid: Grid) -> None:
    async def fan_out() -> tuple[int, list[Any]]:
        me = loopgrid.current_worker().index
        out: list[Any] = []

        async def child(i: int) -> None:
            await anyio.sleep(0)
            here = loopgrid.current_worker().index
            # a child awaits a grid task on the other worker
            out.append((i, here, await loopgrid.spawn(where, i, worker=1 - me)))

        async with anyio.create_task_group() as tg:
            for i in range(4):
                tg.start_soon(child, i)
        return me, sorted(out)

    for w in range(2):
        me, out = grid.spawn(fan_out, worker=w).result(WAIT)
        assert me == w
        assert out == [(i, w, (i, 1 - w)) for i in range(4)]


def test_anyio_timeouts_inside_a_grid_task_cancel_what_it_awaits(grid: Grid) -> None:
    started, cancelled = Countdown(2), Countdown(2)

    async def running_child() -> Handle[None]:
        # The timeout starts once the child runs: one cancelled while still
        # queued never reaches its except clause, which this test counts.
        running = Gate()

        async def child() -> None:
            running.set()
            await until_cancelled(started, cancelled)

        h = loopgrid.spawn(child, worker=1)
        await running.wait()
        return h

    async def move_on() -> tuple[bool, bool]:
        h = await running_child()
        with anyio.move_on_after(0.01) as scope:
            await h
        return scope.cancelled_caught, h.cancelled()

    async def fail_after() -> None:
        h = await running_child()
        with anyio.fail_after(0.01):
            await h

    assert grid.spawn(move_on, worker=0).result(WAIT) == (True, True)
    failing = grid.spawn(fail_after, worker=0)
    assert type(failing.exception(WAIT)) is TimeoutError
    assert cancelled.wait(0)


def test_anyio_threads_inside_a_grid_task(grid: Grid) -> None:
    async def here() -> int:
        return loopgrid.current_worker().index

    async def parent() -> tuple[int, str, int]:
        def in_thread() -> tuple[str, int]:
            with pytest.raises(loopgrid.NotOnGridError):
                loopgrid.current_worker()  # an anyio worker thread, not a grid worker
            # ... and back onto the grid task's own loop:
            return threading.current_thread().name, anyio.from_thread.run(here)

        name, back = await anyio.to_thread.run_sync(in_thread)
        return loopgrid.current_worker().index, name, back

    for w in range(2):
        me, thread, back = grid.spawn(parent, worker=w).result(WAIT)
        assert me == back == w
        assert not thread.startswith("loopgrid-")


# -- the trio backend: a clear error -------------------------------------------------------


@needs_trio
@on_trio
@pytest.mark.anyio
async def test_awaiting_a_handle_on_trio_says_it_is_not_supported(grid: Grid) -> None:
    h = grid.spawn(forever)
    with pytest.raises(RuntimeError, match=r"await <Handle .*> in trio code") as info:
        await h
    msg = str(info.value)
    assert "loopgrid runs on asyncio and does not support trio" in msg
    assert "anyio.run(main, backend='asyncio')" in msg
    assert "await trio.to_thread.run_sync(handle.result)" in msg
    assert "anyio.to_thread.run_sync(handle.result)" in msg
    assert waitgraph.waiting_for(threading.current_thread()) is None  # no edge left behind
    assert not h.done()  # nothing happened to the task


@needs_trio
@on_trio
@pytest.mark.anyio
async def test_a_task_group_on_trio_says_it_is_not_supported(grid: Grid) -> None:
    tg = loopgrid.TaskGroup(grid=grid)
    with pytest.raises(RuntimeError, match=r"async with <.*TaskGroup.*> in trio code") as info:
        async with tg:
            pass
    assert "loopgrid runs on asyncio and does not support trio" in str(info.value)
    assert grid.stats()["totals"]["spawned"] == 0


def _trio_cases() -> dict[str, tuple[Any, Callable[[Any], Awaitable[Any]], str, str]]:
    full: Queue[str] = Queue(maxsize=1)
    full.put_nowait("x")
    unfinished: Queue[str] = Queue()
    unfinished.put_nowait("x")
    return {
        # the primitive, the await, what the message names, the blocking call it suggests
        "lock": (Lock(), lambda p: p.acquire(), "Lock.acquire", "lock.acquire_blocking"),
        "async with": (Lock(), lambda p: p.__aenter__(), "Lock.acquire", "lock.acquire_blocking"),
        "semaphore": (
            Semaphore(1),
            lambda p: p.acquire(),
            "Semaphore.acquire",
            "semaphore.acquire_blocking",
        ),
        "event": (Event(), lambda p: p.wait(), "Event.wait", "event.wait_blocking"),
        "get": (Queue(), lambda p: p.get(), "Queue.get", "queue.get_blocking"),
        "put": (full, lambda p: p.put("y"), "Queue.put", "queue.put_blocking, item"),
        "join": (unfinished, lambda p: p.join(), "Queue.join", "queue.join_blocking"),
    }


@needs_trio
@on_trio
@pytest.mark.anyio
@pytest.mark.parametrize("case", list(_trio_cases()))
async def test_primitives_on_trio_say_they_are_not_supported(case: str) -> None:
    prim, wait, what, instead = _trio_cases()[case]
    before = repr(prim)
    with pytest.raises(RuntimeError, match=rf"^{what}\(\) on <loopgrid\.") as info:
        await wait(prim)
    msg = str(info.value)
    assert "in trio code: loopgrid runs on asyncio and does not support trio" in msg
    assert f"await trio.to_thread.run_sync({instead})" in msg
    assert repr(prim) == before  # nothing taken, nobody queued


@needs_trio
@on_trio
@pytest.mark.anyio
async def test_trio_code_can_wait_in_a_worker_thread(grid: Grid) -> None:
    import trio

    h = grid.spawn(where, "trio")
    assert await trio.to_thread.run_sync(h.result) == ("trio", h.worker)
    assert await h == ("trio", h.worker)  # a finished handle needs no loop to be read
    q: Queue[str] = Queue()

    async def put_later() -> None:
        await q.put("item")

    grid.spawn(put_later)
    assert await anyio.to_thread.run_sync(q.get_blocking, WAIT) == "item"


def test_awaiting_outside_any_event_loop_says_so(grid: Grid) -> None:
    h = grid.spawn(forever)
    with pytest.raises(RuntimeError, match="with no asyncio event loop running in this thread"):
        h.__await__().send(None)  # as a library other than asyncio and trio would
    lock = Lock()
    with pytest.raises(RuntimeError, match=r"to_thread\.run_sync\(lock\.acquire_blocking\)"):
        lock.acquire().send(None)
    assert not lock.locked()


@needs_trio
def test_trio_guest_mode_on_asyncio_gets_trios_error_and_loses_nothing(grid: Grid) -> None:
    """Trio as a guest on an asyncio loop: an asyncio loop runs in the thread, so
    loopgrid cannot tell; trio itself refuses the foreign yield (TypeError), and
    the lock waiter that got it leaves the queue."""
    import trio

    lock = Lock()
    errors: list[str] = []

    async def trio_main() -> None:
        try:
            await lock.acquire()
        except TypeError as e:
            errors.append(str(e))

    async def host() -> None:
        await lock.acquire()
        loop = asyncio.get_running_loop()
        done: asyncio.Future[Any] = loop.create_future()
        trio.lowlevel.start_guest_run(
            trio_main,
            run_sync_soon_threadsafe=loop.call_soon_threadsafe,
            done_callback=done.set_result,
        )
        (await done).unwrap()
        assert waiters(lock) == 0
        lock.release()

    asyncio.run(host())
    assert len(errors) == 1
    assert "trio.run received unrecognized yield message" in errors[0]
    assert not lock.locked()
