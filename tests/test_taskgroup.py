"""loopgrid.TaskGroup: asyncio.TaskGroup's semantics for children on every loop.

Each test runs its group in a task on the grid (``main``, pinned to worker 0
unless said otherwise) or on a foreign ``asyncio.run`` loop, and looks at the
outcome from the test thread. Children that must still be running when a
failure strikes signal it through a :class:`Gate`; nothing sleeps.
"""

from __future__ import annotations

import asyncio
import inspect
import sys
import threading
from typing import Any

import pytest
from helpers import WAIT, Gate, block_worker, close_or_fail, fail, forever, identity

import loopgrid
from loopgrid import Grid, Handle, NotOnGridError, Priority, TaskGroup

if sys.version_info < (3, 11):
    from exceptiongroup import ExceptionGroup


async def where() -> int:
    return loopgrid.current_worker().index


async def gated_where(gate: Gate) -> int:
    await gate.wait()
    return loopgrid.current_worker().index


async def sibling(started: Gate) -> None:
    """Say it has started, then block until cancelled."""
    started.set()
    await forever()


async def fail_after(gates: list[Gate], msg: str = "child failed") -> None:
    """Fail once every sibling has started (so that they must be cancelled)."""
    for g in gates:
        await g.wait()
    raise ValueError(msg)


async def fail_after_all(gates: list[Gate], first: Handle[Any]) -> None:
    await first
    await fail_after(gates)


async def raise_on_cancel(started: Gate) -> None:
    started.set()
    try:
        await forever()
    except asyncio.CancelledError:
        raise RuntimeError("cleanup failed") from None


def run_on(grid: Grid, main: Any, worker: int = 0) -> Any:
    return grid.spawn(main, worker=worker).result(WAIT)


# -- waiting -----------------------------------------------------------------------


def test_block_waits_for_children_on_every_worker(grid: Grid) -> None:
    gate = Gate()
    body_done = threading.Event()

    async def main() -> tuple[list[bool], list[int], list[int | None], list[int]]:
        async with TaskGroup() as tg:
            pinned = [tg.spawn(gated_where, gate, worker=i) for i in (0, 1)]
            free = [tg.spawn(identity, n) for n in range(20)]
            body_done.set()
        done = [h.done() for h in pinned + free]
        return (
            done,
            [h.result() for h in pinned],
            [h.worker for h in pinned],
            [h.result() for h in free],
        )

    h = grid.spawn(main, worker=0)
    assert body_done.wait(WAIT)
    # The body is over, but the pinned children wait for the gate: so must main.
    assert not h.done()
    gate.set()
    done, results, workers, free = h.result(WAIT)
    assert all(done)
    assert workers == [0, 1]
    assert results == [0, 1]  # each child saw the worker it was pinned to
    assert free == list(range(20))


@pytest.mark.loopgrid(loops=2)  # the body runs on worker 0 of a fresh grid
async def test_spawn_returns_handles_of_the_grid() -> None:
    async with TaskGroup() as tg:
        h = tg.spawn(identity, "x")
        coro_h = tg.spawn(identity("y"))
        assert isinstance(h, Handle)
        assert await h == "x"
    assert coro_h.result() == "y"


@pytest.mark.loopgrid(loops=2)
async def test_exception_group_contents() -> None:
    g1, g2 = Gate(), Gate()
    with pytest.raises(ExceptionGroup) as info:
        async with TaskGroup() as tg:
            ok = tg.spawn(identity, 5, worker=1)
            quiet = tg.spawn(sibling, g1, worker=1)  # ends cancelled: not an error
            tg.spawn(raise_on_cancel, g2, worker=0)  # fails while cancelled
            tg.spawn(fail_after_all, [g1, g2], ok, worker=1)
            await ok
    eg = info.value
    assert type(eg) is ExceptionGroup
    assert eg.message == "unhandled errors in a TaskGroup"
    # The first failure first, then the error raised while it was being handled.
    assert [(type(e), str(e)) for e in eg.exceptions] == [
        (ValueError, "child failed"),
        (RuntimeError, "cleanup failed"),
    ]
    assert ok.result() == 5
    assert quiet.cancelled()


def test_children_on_other_workers_can_spawn_into_the_group(grid: Grid) -> None:
    gate = Gate()
    holder: dict[str, Handle[Any]] = {}
    spawner_known = threading.Event()

    async def late(gate: Gate) -> None:
        await gate.wait()
        raise ValueError("late child")

    async def spawner(tg: TaskGroup) -> None:
        # Runs on worker 1, the group on worker 0: the spawn crosses threads.
        holder["late"] = tg.spawn(late, gate, worker=1)

    async def main() -> tuple[BaseException, bool]:
        try:
            async with TaskGroup() as tg:
                holder["spawner"] = tg.spawn(spawner, tg, worker=1)
                spawner_known.set()
        except ExceptionGroup as eg:
            return eg, holder["late"].done()
        raise AssertionError("the late child's error was lost")

    h = grid.spawn(main, worker=0)
    assert spawner_known.wait(WAIT)
    # Let the spawner end before the late child fails: a group that lost
    # track of the late child would have finished without its error.
    assert holder["spawner"].result(WAIT) is None
    assert holder["spawner"].worker == 1
    gate.set()
    eg, late_done = h.result(WAIT)
    assert late_done
    assert [str(e) for e in eg.exceptions] == ["late child"]


def test_a_spawn_from_another_thread_racing_the_end_of_the_block_is_waited_for(
    grid: Grid,
) -> None:
    # The order is forced: the group's last child ends on worker 0, the group
    # hears of it, and before the parent task looks again, a spawn from the
    # test thread is under way. The group must wait for that child too.
    gate_c, gate_x = Gate(), Gate()
    holder: dict[str, TaskGroup] = {}
    body_done, may_spawn, spawned = threading.Event(), threading.Event(), threading.Event()

    def hold_worker_0(_: Handle[Any]) -> None:
        # Scheduled right after the group's own done callback for the child.
        may_spawn.set()
        assert spawned.wait(WAIT)

    async def late(gate: Gate) -> None:
        await gate.wait()
        raise ValueError("late child")

    async def main() -> BaseException:
        try:
            async with TaskGroup() as tg:
                holder["tg"] = tg
                last = tg.spawn(gate_c.wait, worker=0)
                last.add_done_callback(hold_worker_0)
                body_done.set()
        except ExceptionGroup as eg:
            return eg
        raise AssertionError("the group finished without the late child")

    h = grid.spawn(main, worker=0)
    assert body_done.wait(WAIT)
    gate_c.set()
    assert may_spawn.wait(WAIT)
    try:
        x = holder["tg"].spawn(late, gate_x, worker=1)
    finally:
        spawned.set()
    gate_x.set()
    eg = h.result(WAIT)
    assert [str(e) for e in eg.exceptions] == ["late child"]
    assert x.done()


def test_spawn_from_a_plain_thread_into_a_group(grid: Grid) -> None:
    def from_thread(tg: TaskGroup) -> tuple[list[Handle[int]], str]:
        handles = [tg.spawn(identity, n) for n in range(5)]
        try:
            tg.spawn(len, [])  # type: ignore[arg-type]
        except TypeError as exc:  # the grid's own error; the group must not wait for it
            return handles, str(exc)
        return handles, "no TypeError"

    async def main() -> tuple[list[int], str]:
        async with TaskGroup() as tg:
            handles, error = await asyncio.to_thread(from_thread, tg)
        assert all(h.done() for h in handles)
        return [h.result() for h in handles], error

    results, error = run_on(grid, main)
    assert results == [0, 1, 2, 3, 4]
    assert "spawn() needs an async function" in error


# -- failures ----------------------------------------------------------------------


def test_first_failure_cancels_siblings_on_other_loops(grid: Grid) -> None:
    async def main() -> tuple[BaseException, list[Handle[Any]], Handle[Any], bool]:
        gates = [Gate(), Gate(), Gate()]
        body_cancelled = False
        try:
            async with TaskGroup() as tg:
                sibs = [tg.spawn(sibling, g, worker=i % 2) for i, g in enumerate(gates)]
                bad = tg.spawn(fail_after, gates, worker=1)
                try:
                    await forever()
                except asyncio.CancelledError:
                    body_cancelled = True
                    raise
        except ExceptionGroup as eg:
            # The group uncancelled us: the task goes on normally.
            await asyncio.sleep(0)
            return eg, sibs, bad, body_cancelled
        raise AssertionError("no ExceptionGroup")

    eg, sibs, bad, body_cancelled = run_on(grid, main)
    assert [type(e) for e in eg.exceptions] == [ValueError]
    assert body_cancelled
    assert all(h.cancelled() for h in sibs)
    assert [h.worker for h in sibs] == [0, 1, 0]  # siblings on both loops
    assert bad.worker == 1


def test_body_exception_cancels_children_and_comes_last(grid: Grid) -> None:
    async def main() -> tuple[BaseException, Handle[Any], Handle[Any]]:
        g1, g2 = Gate(), Gate()
        try:
            async with TaskGroup() as tg:
                plain = tg.spawn(sibling, g1, worker=1)
                noisy = tg.spawn(raise_on_cancel, g2, worker=0)
                await g1.wait()
                await g2.wait()
                raise KeyError("body")
        except ExceptionGroup as eg:
            return eg, plain, noisy
        raise AssertionError("no ExceptionGroup")

    eg, plain, noisy = run_on(grid, main)
    assert [type(e) for e in eg.exceptions] == [RuntimeError, KeyError]
    assert plain.cancelled()
    assert isinstance(noisy.exception(), RuntimeError)


@pytest.mark.parametrize("exc_type", [KeyboardInterrupt, SystemExit])
def test_keyboard_interrupt_and_system_exit_are_not_wrapped(
    grid: Grid, exc_type: type[BaseException]
) -> None:
    async def stop(gate: Gate) -> None:
        await gate.wait()
        raise exc_type("stop")

    async def main() -> tuple[BaseException, Handle[Any]]:
        started = Gate()
        try:
            async with TaskGroup() as tg:
                sib = tg.spawn(sibling, started, worker=1)
                tg.spawn(stop, started, worker=0)
                await forever()
        except exc_type as exc:
            return exc, sib
        raise AssertionError(f"no {exc_type.__name__}")

    exc, sib = run_on(grid, main)
    assert type(exc) is exc_type
    assert str(exc) == "stop"
    assert sib.cancelled()


# -- cancellation from outside -----------------------------------------------------


@pytest.mark.parametrize("where_", ["body", "exit"])
def test_outer_cancellation_cancels_children_then_propagates(grid: Grid, where_: str) -> None:
    gates = [Gate(), Gate()]
    seen: dict[str, Any] = {}
    in_place = threading.Event()

    async def main() -> None:
        try:
            async with TaskGroup() as tg:
                seen["children"] = [tg.spawn(sibling, g, worker=i) for i, g in enumerate(gates)]
                if where_ == "body":
                    in_place.set()
                    await forever()
                in_place.set()  # and wait for the children in __aexit__
        except asyncio.CancelledError:
            seen["done_when_cancelled"] = [h.done() for h in seen["children"]]
            raise

    h = grid.spawn(main, worker=0)
    assert in_place.wait(WAIT)
    for g in gates:
        assert g.wait_sync()
    assert h.cancel()
    with pytest.raises(asyncio.CancelledError):
        h.result(WAIT)
    assert h.cancelled()
    assert seen["done_when_cancelled"] == [True, True]
    assert all(c.cancelled() for c in seen["children"])


def test_outer_cancellation_is_kept_when_a_child_fails_while_cancelled(grid: Grid) -> None:
    # As in Python 3.13: the errors win, and the outside cancellation is not
    # lost: it strikes the parent's next await.
    started, in_body = Gate(), threading.Event()
    seen: dict[str, Any] = {}

    async def main() -> None:
        try:
            async with TaskGroup() as tg:
                tg.spawn(raise_on_cancel, started, worker=1)
                in_body.set()
                await forever()
        except ExceptionGroup as eg:
            seen["eg"] = eg
        await asyncio.sleep(0)
        seen["went on"] = True

    h = grid.spawn(main, worker=0)
    assert started.wait_sync()
    assert in_body.wait(WAIT)
    h.cancel()
    with pytest.raises(asyncio.CancelledError):
        h.result(WAIT)
    assert [type(e) for e in seen["eg"].exceptions] == [RuntimeError]
    assert "went on" not in seen


@pytest.mark.skipif(sys.version_info < (3, 11), reason="asyncio.timeout is 3.11+")
def test_asyncio_timeout_around_a_group(grid: Grid) -> None:
    async def main() -> None:
        # An expiring timeout cancels the body: children cancelled, TimeoutError.
        gates = [Gate(), Gate()]
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(None) as cm:
                async with TaskGroup(grid=grid) as tg:
                    children = [tg.spawn(sibling, g, worker=i) for i, g in enumerate(gates)]
                    for g in gates:
                        await g.wait()
                    cm.reschedule(asyncio.get_running_loop().time())
                    await forever()
        assert all(c.cancelled() for c in children)
        task = asyncio.current_task()
        assert task is not None
        assert task.cancelling() == 0

        # The group's own cancel of its body is not mistaken for the timeout's.
        async with asyncio.timeout(WAIT):
            with pytest.raises(ExceptionGroup):
                async with TaskGroup(grid=grid) as tg:
                    tg.spawn(fail)
                    await forever()
            assert task.cancelling() == 0
            await asyncio.sleep(0)

    asyncio.run(main())


# -- spawning rules ----------------------------------------------------------------


def test_spawn_outside_the_block_or_while_shutting_down_raises(grid: Grid) -> None:
    async def main() -> list[str]:
        messages: list[str] = []
        tg = TaskGroup()
        early = identity(1)
        with pytest.raises(RuntimeError, match="has not been entered") as info:
            tg.spawn(early)
        messages.append(str(info.value))
        assert inspect.getcoroutinestate(early) == inspect.CORO_CLOSED
        with pytest.raises(ExceptionGroup):
            async with tg:
                with pytest.raises(TypeError, match=r"spawn\(\) needs an async function"):
                    tg.spawn(len, [])  # type: ignore[arg-type]
                tg.spawn(fail)
                try:
                    await forever()
                except asyncio.CancelledError:
                    with pytest.raises(RuntimeError, match="shutting down") as info:
                        tg.spawn(identity, 2)
                    messages.append(str(info.value))
                    raise
        late = identity(3)
        with pytest.raises(RuntimeError, match="is finished") as info:
            tg.spawn(late)
        messages.append(str(info.value))
        assert inspect.getcoroutinestate(late) == inspect.CORO_CLOSED
        with pytest.raises(RuntimeError, match="already been entered"):
            async with tg:
                pass
        # From another thread, too.
        errors: list[BaseException] = []

        def other_thread() -> None:
            try:
                tg.spawn(identity, 4)
            except RuntimeError as exc:
                errors.append(exc)

        await asyncio.to_thread(other_thread)
        assert [type(e) for e in errors] == [RuntimeError]
        messages.append(str(errors[0]))
        return messages

    messages = run_on(grid, main)
    assert len(messages) == 4
    assert all("loopgrid.TaskGroup" in m for m in messages)  # names the group


def test_a_child_spawning_from_another_loop_while_shutting_down(grid: Grid) -> None:
    async def spawn_when_cancelled(tg: TaskGroup, started: Gate) -> str:
        started.set()
        try:
            await forever()
        except asyncio.CancelledError:
            try:
                tg.spawn(identity, 1)
            except RuntimeError as exc:
                return str(exc)
        return "spawned"

    async def main() -> tuple[Handle[str], int | None]:
        started = Gate()
        with pytest.raises(ExceptionGroup):
            async with TaskGroup() as tg:
                h = tg.spawn(spawn_when_cancelled, tg, started, worker=1)
                tg.spawn(fail_after, [started], worker=0)
        return h, h.worker

    h, worker = run_on(grid, main)
    assert worker == 1
    assert "shutting down" in h.result()


def test_entering_off_the_grid_without_a_grid_says_what_to_do(grid: Grid) -> None:
    async def main() -> None:
        async with TaskGroup():
            pass

    with pytest.raises(NotOnGridError, match=r"TaskGroup\(grid=grid\)"):
        asyncio.run(main())
    with pytest.raises(TypeError, match=r"grid must be a loopgrid\.Grid"):
        TaskGroup(grid="grid")  # type: ignore[arg-type]


# -- nesting, foreign loops, priorities --------------------------------------------


def test_nested_groups(grid: Grid) -> None:
    grandchildren: list[Handle[Any]] = []

    async def inner(fail_it: bool) -> list[int]:
        gates = [Gate(), Gate()]
        async with TaskGroup() as tg:
            if fail_it:
                hs = [tg.spawn(sibling, g, worker=i) for i, g in enumerate(gates)]
                grandchildren.extend(hs)
                tg.spawn(fail_after, gates, "grandchild failed")
            else:
                hs = [tg.spawn(where, worker=i) for i in (0, 1)]
        return [h.result() for h in hs]

    async def blocked_inner(started: Gate) -> None:
        async with TaskGroup() as tg:
            grandchildren.append(tg.spawn(sibling, started, worker=0))

    async def main() -> tuple[list[int], BaseException, Handle[Any]]:
        async with TaskGroup() as outer:
            ok = outer.spawn(inner, False, worker=1)
        started = Gate()
        try:
            async with TaskGroup() as outer:
                blocked = outer.spawn(blocked_inner, started, worker=1)
                await started.wait()
                outer.spawn(inner, True)
        except ExceptionGroup as eg:
            return ok.result(), eg, blocked
        raise AssertionError("no ExceptionGroup")

    ok, eg, blocked = run_on(grid, main)
    assert ok == [0, 1]
    assert len(eg.exceptions) == 1
    nested = eg.exceptions[0]
    assert isinstance(nested, ExceptionGroup)
    assert [str(e) for e in nested.exceptions] == ["grandchild failed"]
    assert blocked.cancelled()  # its own group was cancelled from outside
    assert len(grandchildren) == 3
    assert all(h.cancelled() for h in grandchildren)


def test_from_a_foreign_asyncio_loop(grid: Grid) -> None:
    async def main() -> tuple[list[int], BaseException, list[Handle[Any]]]:
        async with TaskGroup(grid=grid) as tg:
            hs = [tg.spawn(where, worker=i) for i in (0, 1)]
        gates = [Gate(), Gate()]
        with pytest.raises(ExceptionGroup) as info:
            async with TaskGroup(grid=grid) as tg:
                sibs = [tg.spawn(sibling, g, worker=i) for i, g in enumerate(gates)]
                tg.spawn(fail_after, gates)
                await forever()
        await asyncio.sleep(0)  # not left cancelled
        return [h.result() for h in hs], info.value, sibs

    workers, eg, sibs = asyncio.run(main())
    assert workers == [0, 1]
    assert [type(e) for e in eg.exceptions] == [ValueError]
    assert all(h.cancelled() for h in sibs)
    assert [h.worker for h in sibs] == [0, 1]


def test_priority_name_and_worker_pass_through() -> None:
    g = Grid(loops=2, aging=None)  # no aging: the order is the priorities'
    try:
        order: list[str] = []
        spawned = threading.Event()

        async def record(label: str) -> str:
            order.append(label)
            return label

        async def main() -> list[Handle[str]]:
            async with TaskGroup() as tg:
                hs = [
                    tg.spawn(record, "low", priority=Priority.LOW, worker=1, name="low-one"),
                    tg.spawn(record, "high", priority=Priority.HIGH, worker=1, name="high-one"),
                ]
                spawned.set()
            return hs

        _, release = block_worker(g, 1)
        try:
            h = g.spawn(main, worker=0)
            assert spawned.wait(WAIT)  # both are queued on the blocked worker 1
        finally:
            release.set()
        low, high = h.result(WAIT)
        assert (low.priority, high.priority) == (Priority.LOW, Priority.HIGH)
        assert (low.name, high.name) == ("low-one", "high-one")
        assert low.pinned == high.pinned == low.worker == high.worker == 1
        assert order == ["high", "low"]  # the scheduler saw the priorities
    finally:
        close_or_fail(g, cancel=True)


def test_repr_tracks_the_state(grid: Grid) -> None:
    async def main() -> list[str]:
        tg = TaskGroup()
        states = [repr(tg)]
        gate = Gate()
        async with tg:
            tg.spawn(gated_where, gate)
            states.append(repr(tg))
            gate.set()
        states.append(repr(tg))
        return states

    new, entered, finished = run_on(grid, main)
    assert new == "<loopgrid.TaskGroup>"
    assert entered.startswith(f"<loopgrid.TaskGroup grid={grid.name!r} tasks=1")
    assert entered.endswith(" entered>")
    assert finished == f"<loopgrid.TaskGroup grid={grid.name!r} finished>"
