"""Handles: awaiting from any loop, asyncio/anyio combinators, blocking waits
from threads, callbacks, the record, and cancellation."""

from __future__ import annotations

import asyncio
import gc
import sys
import threading
import warnings
from typing import Any

import anyio
import pytest
from helpers import WAIT, Countdown, Gate, block_worker, close_or_fail, fail, forever, identity

import loopgrid
from loopgrid import Grid, Handle, Priority, TaskState, WouldBlockError

uvloop = pytest.importorskip("uvloop")


async def gated(gate: Gate, value: Any = "gated") -> Any:
    await gate.wait()
    return value


# -- awaiting from anywhere ------------------------------------------------------


def test_await_from_a_grid_worker(grid: Grid) -> None:
    async def parent() -> list[Any]:
        same = loopgrid.spawn(identity, 1, worker=loopgrid.current_worker().index)
        other = loopgrid.spawn(identity, 2, worker=1 - loopgrid.current_worker().index)
        return [await same, await other]

    assert grid.spawn(parent, worker=0).result(WAIT) == [1, 2]
    assert grid.spawn(parent, worker=1).result(WAIT) == [1, 2]


@pytest.mark.asyncio
async def test_await_from_a_foreign_asyncio_loop(grid: Grid) -> None:
    assert await grid.spawn(identity, "x") == "x"
    with pytest.raises(ValueError, match="boom"):
        await grid.spawn(fail)


def test_await_from_asyncio_run(grid: Grid) -> None:
    async def main() -> Any:
        return await grid.spawn(identity, 42)

    assert asyncio.run(main()) == 42


def test_await_from_a_foreign_uvloop_loop(grid: Grid) -> None:
    async def main() -> tuple[Any, type]:
        return await grid.spawn(identity, 43), type(asyncio.get_running_loop())

    value, loop_type = uvloop.run(main())
    assert value == 43
    assert loop_type is uvloop.Loop


def test_await_from_two_foreign_loops_at_once(grid: Grid) -> None:
    gate = Gate()
    h = grid.spawn(gated, gate, "shared")
    results: list[Any] = []
    waiting = [threading.Event(), threading.Event()]

    def in_loop(k: int, runner: Any) -> None:
        async def main() -> Any:
            waiting[k].set()
            return await h

        results.append(runner(main()))

    threads = [
        threading.Thread(target=in_loop, args=(0, asyncio.run)),
        threading.Thread(target=in_loop, args=(1, uvloop.run)),
    ]
    for t in threads:
        t.start()
    assert all(w.wait(WAIT) for w in waiting)
    gate.set()
    for t in threads:
        t.join(WAIT)
    assert results == ["shared", "shared"]


@pytest.mark.asyncio
async def test_gather(grid: Grid) -> None:
    hs = [grid.spawn(identity, i) for i in range(30)]
    assert await asyncio.gather(*hs) == list(range(30))
    res = await asyncio.gather(grid.spawn(identity, 1), grid.spawn(fail), return_exceptions=True)
    assert res[0] == 1
    assert isinstance(res[1], ValueError)


@pytest.mark.asyncio
async def test_gather_with_a_cancelled_handle(grid: Grid) -> None:
    gate = Gate()
    h = grid.spawn(gated, gate)
    h.cancel()
    res = await asyncio.gather(h, grid.spawn(identity, 2), return_exceptions=True)
    assert isinstance(res[0], asyncio.CancelledError)
    assert res[1] == 2


@pytest.mark.asyncio
async def test_wait_for_returns_the_result(grid: Grid) -> None:
    assert await asyncio.wait_for(grid.spawn(identity, 5), WAIT) == 5


@pytest.mark.asyncio
async def test_wait_for_timeout_cancels_the_task(grid: Grid) -> None:
    started = threading.Event()

    async def slow() -> None:
        started.set()
        await forever()

    h = grid.spawn(slow)
    assert started.wait(WAIT)  # the timeout cancels it running, not queued
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(h, 0.05)
    assert h.cancelled()
    assert h.state is TaskState.CANCELLED


@pytest.mark.asyncio
@pytest.mark.skipif(sys.version_info < (3, 11), reason="asyncio.timeout is new in Python 3.11")
async def test_asyncio_timeout_cancels_the_task(grid: Grid) -> None:
    h = grid.spawn(forever)
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.05):  # type: ignore[attr-defined]
            await h
    assert h.cancelled()


@pytest.mark.asyncio
async def test_asyncio_wait(grid: Grid) -> None:
    gate = Gate()
    quick = grid.spawn(identity, 1)
    slow = grid.spawn(gated, gate)
    done, pending = await asyncio.wait([quick, slow], return_when=asyncio.FIRST_COMPLETED)
    assert quick in done
    assert slow in pending
    gate.set()
    done, pending = await asyncio.wait([quick, slow])
    assert done == {quick, slow}
    assert not pending
    done, pending = await asyncio.wait(
        [grid.spawn(fail), grid.spawn(gated, Gate())], return_when=asyncio.FIRST_EXCEPTION
    )
    (failed,) = done
    assert isinstance(failed.exception(), ValueError)
    (stuck,) = pending
    stuck.cancel()
    await asyncio.wait([stuck])
    assert stuck.cancelled()


@pytest.mark.asyncio
async def test_asyncio_wait_timeout_leaves_the_task_running(grid: Grid) -> None:
    gate = Gate()
    h = grid.spawn(gated, gate, "later")
    done, pending = await asyncio.wait([h], timeout=0.05)
    assert pending == {h}
    assert not done
    assert not h.done()
    gate.set()
    assert await h == "later"


@pytest.mark.asyncio
async def test_shield_keeps_the_task_running_when_the_awaiter_is_cancelled(grid: Grid) -> None:
    gate = Gate()
    h = grid.spawn(gated, gate, "shielded")
    awaiting = asyncio.Event()

    async def awaiter() -> Any:
        awaiting.set()
        return await asyncio.shield(h)

    t = asyncio.ensure_future(awaiter())
    await awaiting.wait()  # the awaiter has suspended in shield() by now
    t.cancel()
    with pytest.raises(asyncio.CancelledError):
        await t
    assert not h.done()
    gate.set()
    assert await h == "shielded"
    assert h.state is TaskState.COMPLETED


def test_anyio_awaits_a_handle(grid: Grid) -> None:
    async def main() -> Any:
        return await grid.spawn(identity, "anyio")

    assert anyio.run(main, backend="asyncio") == "anyio"
    assert anyio.run(main, backend="asyncio", backend_options={"use_uvloop": True}) == "anyio"


def test_anyio_fail_after_cancels_the_task(grid: Grid) -> None:
    h = grid.spawn(forever)

    async def main() -> None:
        with anyio.fail_after(0.05):
            await h

    with pytest.raises(TimeoutError):
        anyio.run(main, backend="asyncio")
    assert h.cancelled()


def test_anyio_task_group_awaits_handles(grid: Grid) -> None:
    out: list[Any] = []

    async def collect(h: Handle[Any]) -> None:
        out.append(await h)

    async def main() -> None:
        async with anyio.create_task_group() as tg:
            for i in range(10):
                tg.start_soon(collect, grid.spawn(identity, i))

    anyio.run(main, backend="asyncio")
    assert sorted(out) == list(range(10))


# -- blocking waits and the future protocol --------------------------------------


def test_result_blocks_a_plain_thread_until_done(grid: Grid) -> None:
    gate = Gate()
    h = grid.spawn(gated, gate, "done")
    got: list[Any] = []
    t = threading.Thread(target=lambda: got.append(h.result(WAIT)))
    t.start()
    gate.set()
    t.join(WAIT)
    assert got == ["done"]


def test_result_timeout_raises_timeout_error(grid: Grid) -> None:
    release = threading.Event()

    async def waits() -> str:
        await asyncio.to_thread(release.wait, WAIT)
        return "finally"

    h = grid.spawn(waits)
    with pytest.raises(TimeoutError, match="did not finish"):
        h.result(timeout=0.05)
    with pytest.raises(TimeoutError):
        h.exception(timeout=0)
    assert not h.done()
    release.set()
    assert h.result(WAIT) == "finally"


def test_result_raises_the_exception_and_exception_returns_it(grid: Grid) -> None:
    h = grid.spawn(fail, "bad")
    with pytest.raises(ValueError, match="bad"):
        h.result(WAIT)
    exc = h.exception()
    assert isinstance(exc, ValueError)
    assert str(exc) == "bad"
    assert h.state is TaskState.FAILED
    assert h.done()
    assert not h.cancelled()
    ok = grid.spawn(identity, 3)
    assert ok.exception(WAIT) is None
    assert ok.result() == 3


def test_result_on_a_worker_thread_raises_would_block(grid: Grid) -> None:
    async def parent() -> tuple[type, bool, str]:
        gate = Gate()
        child = loopgrid.spawn(gated, gate)
        try:
            child.result()
        except WouldBlockError as exc:
            err = exc
        try:
            child.exception()
        except WouldBlockError:
            pass
        else:
            raise AssertionError("exception() blocked or returned")
        gate.set()
        return type(err), isinstance(err, asyncio.InvalidStateError), await child

    err_type, is_invalid_state, value = grid.spawn(parent).result(WAIT)
    assert err_type is WouldBlockError
    assert is_invalid_state
    assert value == "gated"


@pytest.mark.asyncio
async def test_result_on_a_foreign_loop_raises_would_block(grid: Grid) -> None:
    gate = Gate()
    h = grid.spawn(gated, gate)
    with pytest.raises(WouldBlockError, match="await"):
        h.result()
    with pytest.raises(asyncio.InvalidStateError):
        h.result(timeout=1)
    gate.set()
    assert await h == "gated"
    assert h.result() == "gated"  # done: no wait needed, fine on a loop


def test_done_and_cancelled_flags(grid: Grid) -> None:
    gate = Gate()
    h = grid.spawn(gated, gate)
    assert not h.done()
    assert not h.cancelled()
    gate.set()
    h.result(WAIT)
    assert h.done()
    assert not h.cancelled()


def test_add_done_callback_from_a_plain_thread(grid: Grid) -> None:
    gate = Gate()
    h = grid.spawn(gated, gate, 7)
    calls: list[tuple[Any, str]] = []
    called = threading.Event()

    def cb(hh: Handle[Any]) -> None:
        calls.append((hh, threading.current_thread().name))
        called.set()

    h.add_done_callback(cb)
    assert not calls
    gate.set()
    assert called.wait(WAIT)
    assert calls[0][0] is h
    assert calls[0][1].startswith("loopgrid-")  # runs on the finishing thread
    # Added after completion: runs at once, on the calling thread.
    late: list[str] = []
    h.add_done_callback(lambda _: late.append(threading.current_thread().name))
    assert late == [threading.current_thread().name]
    assert len(calls) == 1


@pytest.mark.asyncio
async def test_add_done_callback_from_a_loop_runs_on_that_loop(grid: Grid) -> None:
    gate = Gate()
    h = grid.spawn(gated, gate)
    loop = asyncio.get_running_loop()
    seen: list[tuple[Any, Any, int]] = []
    called = asyncio.Event()

    def cb(hh: Handle[Any]) -> None:
        seen.append((hh, asyncio.get_running_loop(), threading.get_ident()))
        called.set()

    h.add_done_callback(cb)
    gate.set()
    await asyncio.wait_for(called.wait(), WAIT)
    assert seen == [(h, loop, threading.get_ident())]


@pytest.mark.asyncio
async def test_add_done_callback_from_a_loop_uses_the_given_context(grid: Grid) -> None:
    import contextvars

    var: contextvars.ContextVar[str] = contextvars.ContextVar("cbvar", default="none")
    ctx = contextvars.copy_context()
    ctx.run(var.set, "in ctx")
    got: list[str] = []
    called = asyncio.Event()

    def cb(_: Any) -> None:
        got.append(var.get())
        called.set()

    grid.spawn(identity, 1).add_done_callback(cb, context=ctx)
    await asyncio.wait_for(called.wait(), WAIT)
    assert got == ["in ctx"]


def test_remove_done_callback(grid: Grid) -> None:
    gate = Gate()
    h = grid.spawn(gated, gate)
    calls: list[str] = []

    def removed(_: Any) -> None:
        calls.append("removed")

    def kept(_: Any) -> None:
        calls.append("kept")

    h.add_done_callback(removed)
    h.add_done_callback(kept)
    h.add_done_callback(removed)
    assert h.remove_done_callback(removed) == 2
    assert h.remove_done_callback(removed) == 0
    gate.set()
    h.result(WAIT)  # callbacks added earlier have run when result() returns
    assert calls == ["kept"]


def test_each_callback_runs_once_even_when_added_concurrently(grid: Grid) -> None:
    """As with ``concurrent.futures``, ``result()`` may return while the
    finishing thread is still running callbacks: the test waits for all 200
    to have run before it counts them."""
    gate = Gate()
    h = grid.spawn(gated, gate)
    counts = [0] * 200
    ran = Countdown(200)
    lock = threading.Lock()
    start = threading.Barrier(6)  # five adders and this thread

    def adder(k: int) -> None:
        start.wait()
        for i in range(k * 40, (k + 1) * 40):

            def cb(_: Any, i: int = i) -> None:
                with lock:
                    counts[i] += 1
                ran.hit()

            h.add_done_callback(cb)

    threads = [threading.Thread(target=adder, args=(k,)) for k in range(5)]
    for t in threads:
        t.start()
    start.wait()
    gate.set()
    for t in threads:
        t.join(WAIT)
    h.result(WAIT)
    assert ran.wait(WAIT), f"{counts.count(0)} callbacks never ran"
    assert counts == [1] * 200


def test_callback_exception_is_logged_not_raised(grid: Grid, caplog: Any) -> None:
    def bad(_: Any) -> None:
        raise RuntimeError("callback broke")

    h = grid.spawn(identity, 1)
    h.result(WAIT)
    with caplog.at_level("ERROR", logger="loopgrid"):
        h.add_done_callback(bad)  # runs at once, on this thread
    assert any("callback.failed" in r.getMessage() for r in caplog.records)


# -- the record ----------------------------------------------------------------------


def test_record_fields() -> None:
    with Grid(1) as g:
        _, release = block_worker(g)
        try:
            h = g.spawn(identity, 1, priority=Priority.HIGH, name="rec")
            assert h.name == "rec"
            assert h.priority is Priority.HIGH
            assert h.state is TaskState.PENDING
            assert h.state == "pending"
            assert h.worker is None
            assert h.pinned is None
            assert isinstance(h.id, int)
            assert "rec" in repr(h)
            assert "pending" in repr(h)
        finally:
            release.set()
        assert h.result(WAIT) == 1
        assert h.state is TaskState.COMPLETED
        assert h.state == "completed"
        assert h.worker == 0
        assert "worker=0" in repr(h)


def test_state_running(grid: Grid) -> None:
    started = threading.Event()
    gate = Gate()

    async def run() -> None:
        started.set()
        await gate.wait()

    h = grid.spawn(run)
    assert started.wait(WAIT)
    assert h.state is TaskState.RUNNING
    assert h.state == "running"
    assert h.worker in (0, 1)
    assert not h.done()
    gate.set()
    h.result(WAIT)
    assert h.state is TaskState.COMPLETED


def test_task_state_values() -> None:
    assert {s.value for s in TaskState} == {
        "pending",
        "running",
        "completed",
        "failed",
        "cancelled",
        "paused",
    }
    assert TaskState.FAILED == "failed"


def test_await_is_not_allowed_on_a_plain_thread(grid: Grid) -> None:
    h = grid.spawn(identity, 1)
    h.result(WAIT)
    with pytest.raises(RuntimeError, match="no event loop is running"):
        h.get_loop()


# -- cancellation --------------------------------------------------------------------


def test_cancel_pending_task_never_starts_and_closes_its_coroutine() -> None:
    started = threading.Event()

    async def target() -> None:
        started.set()

    with Grid(1) as g:
        _, release = block_worker(g)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                coro = target()
                h = g.spawn(coro)
                fn_h = g.spawn(target)
                assert h.cancel("stop") is True
                assert fn_h.cancel() is True
                assert h.cancel() is False  # already finished
                assert coro.cr_frame is None  # closed
            finally:
                release.set()
            del coro
            gc.collect()
        assert not [w for w in caught if "never awaited" in str(w.message)]
        assert h.cancelled()
        assert h.state is TaskState.CANCELLED
        assert h.worker is None
        with pytest.raises(asyncio.CancelledError, match="stop"):
            h.result()
        with pytest.raises(asyncio.CancelledError):
            h.exception()
        assert fn_h.cancelled()
    assert not started.is_set()


def test_cancel_a_pinned_pending_task(grid: Grid) -> None:
    ran = threading.Event()

    async def target() -> None:
        ran.set()

    _, release = block_worker(grid, 1)
    try:
        h = grid.spawn(target, worker=1)
        assert h.cancel()
    finally:
        release.set()
    assert grid.spawn(identity, 1, worker=1).result(WAIT) == 1
    assert h.cancelled()
    assert not ran.is_set()


def test_cancel_running_task_delivers_cancelled_error_on_its_loop(grid: Grid) -> None:
    started = threading.Event()
    seen: dict[str, Any] = {}

    async def victim() -> None:
        seen["loop"] = asyncio.get_running_loop()
        started.set()
        try:
            await forever()
        except asyncio.CancelledError as exc:
            seen["cancel_loop"] = asyncio.get_running_loop()
            seen["thread"] = threading.get_ident()
            seen["args"] = exc.args
            raise

    h = grid.spawn(victim)
    assert started.wait(WAIT)
    assert h.cancel("why") is True
    with pytest.raises(asyncio.CancelledError):
        h.result(WAIT)
    assert h.cancelled()
    assert seen["cancel_loop"] is seen["loop"]
    assert seen["thread"] == grid.workers[h.worker].thread.ident
    assert seen["args"] == ("why",)
    assert h.cancel() is False


def test_cancel_running_task_from_its_own_worker(grid: Grid) -> None:
    async def parent() -> tuple[bool, bool]:
        box: dict[str, Any] = {"ev": asyncio.Event()}

        async def child() -> None:
            box["ev"].set()
            await forever()

        me = loopgrid.current_worker().index
        h = loopgrid.spawn(child, worker=me)
        await box["ev"].wait()
        ok = h.cancel()
        try:
            await h
        except asyncio.CancelledError:
            return ok, h.cancelled()
        return ok, False

    assert grid.spawn(parent, worker=0).result(WAIT) == (True, True)


def test_a_task_may_catch_cancellation_and_return(grid: Grid) -> None:
    started = threading.Event()

    async def stubborn() -> str:
        started.set()
        try:
            await forever()
        except asyncio.CancelledError:
            return "caught"
        return "unreachable"

    h = grid.spawn(stubborn)
    assert started.wait(WAIT)
    assert h.cancel()
    assert h.result(WAIT) == "caught"
    assert h.state is TaskState.COMPLETED


@pytest.mark.asyncio
async def test_cancelling_the_awaiter_cancels_the_spawned_task(grid: Grid) -> None:
    started = threading.Event()

    async def child() -> None:
        started.set()
        await forever()

    h = grid.spawn(child)
    awaiter = asyncio.ensure_future(_await(h))
    await asyncio.to_thread(started.wait, WAIT)  # the awaiter has suspended on h by now
    awaiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await awaiter
    await asyncio.wait([h])
    assert h.cancelled()


def test_cancelling_an_awaiter_on_the_grid_cancels_the_child(grid: Grid) -> None:
    child_started = threading.Event()
    parent_started = threading.Event()
    box: dict[str, Any] = {}

    async def child() -> None:
        child_started.set()
        await forever()

    async def parent() -> None:
        box["child"] = loopgrid.spawn(child)
        parent_started.set()
        await box["child"]

    p = grid.spawn(parent)
    assert parent_started.wait(WAIT)
    assert child_started.wait(WAIT)
    p.cancel()
    with pytest.raises(asyncio.CancelledError):
        p.result(WAIT)
    with pytest.raises(asyncio.CancelledError):
        box["child"].result(WAIT)
    assert box["child"].cancelled()


async def _await(h: Handle[Any]) -> Any:
    return await h


def test_cancel_after_completion_returns_false(grid: Grid) -> None:
    h = grid.spawn(identity, 1)
    assert h.result(WAIT) == 1
    assert h.cancel() is False
    assert h.state is TaskState.COMPLETED
    f = grid.spawn(fail)
    with pytest.raises(ValueError):
        f.result(WAIT)
    assert f.cancel() is False
    assert f.state is TaskState.FAILED


class _HookLoop(asyncio.SelectorEventLoop):
    """An asyncio loop whose task factory calls ``hook`` (once, on its own
    thread) just before it creates a task: the window between the dispatcher
    marking a task RUNNING and the task's first step. (With a task factory set,
    the dispatcher goes through it and does not start tasks eagerly.)"""

    hook: Any = None

    def __init__(self) -> None:
        super().__init__()
        self.set_task_factory(self._factory)  # type: ignore[arg-type]

    def _factory(self, loop: Any, coro: Any, **kwargs: Any) -> Any:
        if self.hook is not None:
            hook, self.hook = self.hook, None
            hook()
        return asyncio.Task(coro, loop=loop, **kwargs)


@pytest.mark.parametrize("as_coroutine", [False, True], ids=["function", "coroutine-object"])
def test_cancel_between_start_and_first_step_still_resolves_the_handle(
    as_coroutine: bool,
) -> None:
    """cancel() from another thread in the instant after the dispatcher marked
    the task RUNNING and before its coroutine took its first step: the handle
    must still end cancelled (and the grid still close), and a coroutine object
    that never ran is closed without a "never awaited" warning."""
    in_window = threading.Event()
    cancel_sent = threading.Event()

    def hook() -> None:  # on the worker thread, inside the dispatcher's start
        in_window.set()
        assert cancel_sent.wait(WAIT)

    g = Grid(1, loop_factory=_HookLoop)
    try:
        loop = g.workers[0].loop
        assert isinstance(loop, _HookLoop)
        _, release = block_worker(g)  # so that arming the hook cannot race
        loop.hook = hook
        h = g.spawn(forever() if as_coroutine else forever, name="victim")
        release.set()
        assert in_window.wait(WAIT)
        assert h.state is TaskState.RUNNING
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            assert h.cancel() is True
            cancel_sent.set()
            with pytest.raises(asyncio.CancelledError):
                h.result(timeout=10)  # a guard: it resolves at once when correct
            gc.collect()
        assert h.state is TaskState.CANCELLED
        assert not [w for w in caught if "never awaited" in str(w.message)]
    finally:
        cancel_sent.set()
        close_or_fail(g, cancel=True, timeout=5)
