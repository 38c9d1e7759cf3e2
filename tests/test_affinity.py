"""Loop-affinity errors: a grid task that uses an object of another worker's loop
fails with asyncio's error plus one note naming both loops and the fix."""

from __future__ import annotations

import asyncio
import sys
import traceback
from typing import Any

import pytest
from helpers import WAIT

from loopgrid import Grid, affinity

if sys.version_info >= (3, 11):
    format_exception = traceback.format_exception
else:  # 3.10's traceback knows no notes; the exceptiongroup backport prints them
    from exceptiongroup import format_exception


def notes_of(exc: BaseException) -> list[str]:
    """The loop-affinity notes on ``exc`` (any other note is not ours)."""
    notes = getattr(exc, "__notes__", None) or []
    return [n for n in notes if affinity.FIX in n]


def the_note(exc: BaseException) -> str:
    notes = notes_of(exc)
    assert len(notes) == 1, f"want exactly one loop-affinity note on {exc!r}, got {notes}"
    return notes[0]


async def bind_lock_here(lock: asyncio.Lock) -> None:
    """Hold ``lock`` and bind it to this loop; it stays held when this returns.

    An asyncio.Lock binds a loop only when a waiter needs a future: so a second
    acquire waits on it here, and is then cancelled.
    """
    await lock.acquire()
    waiter = asyncio.ensure_future(lock.acquire())
    # One trip round the loop (not a wait for time): the waiter, queued before
    # this task's wake-up, takes its first step and waits on a future of this loop.
    await asyncio.sleep(0)
    assert not waiter.done()
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert lock.locked()


async def acquire_with_guard(lock: asyncio.Lock) -> None:
    # Were the lock not bound to another loop, it would bind here and wait:
    # the guard turns that into a failure (TimeoutError) rather than a hang.
    await asyncio.wait_for(lock.acquire(), WAIT)


def lock_error(grid: Grid) -> BaseException:
    """The exception of a task on worker 1 that used a lock bound to worker 0."""
    lock = asyncio.Lock()
    grid.spawn(bind_lock_here, lock, worker=0).result(WAIT)
    exc = grid.spawn(acquire_with_guard, lock, worker=1).exception(WAIT)
    assert isinstance(exc, RuntimeError), repr(exc)
    assert "is bound to a different event loop" in str(exc)
    return exc


def test_lock_of_another_worker_is_explained(grid: Grid) -> None:
    note = the_note(lock_error(grid))
    assert f"asyncio.locks.Lock is bound to the event loop of worker 0 of grid {grid.name!r}" in (
        note
    )
    assert f"used from worker 1 of grid {grid.name!r}" in note
    assert "LoopLocal" in note
    assert "lifespan" in note
    assert "loopgrid.Lock" in note
    # No local variable's repr (the lock's, the waiter's) is in the note.
    assert "<asyncio.locks.Lock object" not in note


def test_future_of_another_worker_is_explained(grid: Grid) -> None:
    async def make_future() -> asyncio.Future[None]:
        return asyncio.get_running_loop().create_future()

    async def await_it(fut: asyncio.Future[None]) -> None:
        await fut

    fut = grid.spawn(make_future, worker=0).result(WAIT)
    exc = grid.spawn(await_it, fut, worker=1).exception(WAIT)
    assert isinstance(exc, RuntimeError), repr(exc)
    assert "attached to a different loop" in str(exc)
    note = the_note(exc)
    assert f"used from worker 1 of grid {grid.name!r}" in note
    assert "LoopLocal" in note


def test_unrelated_error_gets_no_note(grid: Grid) -> None:
    async def boom() -> None:
        raise RuntimeError("something else went wrong on this loop")

    exc = grid.spawn(boom).exception(WAIT)
    assert isinstance(exc, RuntimeError)
    assert getattr(exc, "__notes__", None) is None
    assert affinity.explain(exc) is None


def test_note_is_added_once(grid: Grid) -> None:
    exc = lock_error(grid)
    affinity.annotate(exc)
    affinity.annotate(exc)
    assert len(notes_of(exc)) == 1

    fresh = RuntimeError("<asyncio.locks.Event object at 0x1> is bound to a different event loop")
    affinity.annotate(fresh)
    affinity.annotate(fresh)
    assert len(notes_of(fresh)) == 1
    # Off any grid and with no traceback: neither the owner nor a worker is known.
    assert "an object bound to another event loop was used from a thread" in the_note(fresh)


def test_error_passed_through_tasks_and_wrapped_is_noted_once(grid: Grid) -> None:
    """A task that awaits the failed one re-raises the same exception, and one
    that wraps it (as clients wrap their pool's errors) raises a new one: the
    note, naming the worker that used the lock, is on one of them only."""
    lock = asyncio.Lock()
    grid.spawn(bind_lock_here, lock, worker=0).result(WAIT)

    async def use_it() -> None:
        inner = grid.spawn(acquire_with_guard, lock, worker=1)
        try:
            await inner
        except RuntimeError as exc:
            raise ConnectionError("the pool's connection failed") from exc

    exc = grid.spawn(use_it, worker=0).exception(WAIT)
    assert isinstance(exc, ConnectionError), repr(exc)
    cause = exc.__cause__
    assert isinstance(cause, RuntimeError)
    assert f"used from worker 1 of grid {grid.name!r}" in the_note(cause)
    assert notes_of(exc) == []
    # Wrapped only (not annotated on the way), the wrapper gets the note.
    wrapper = ConnectionError("the pool's connection failed")
    wrapper.__cause__ = RuntimeError("Task <x> got Future <y> attached to a different loop")
    note = affinity.explain(wrapper)
    assert note is not None
    assert "LoopLocal" in note
    affinity.annotate(wrapper)
    assert notes_of(wrapper) == [note]


@pytest.mark.parametrize(
    "exc",
    [
        RuntimeError(
            "<asyncio.locks.Lock object at 0x1 [unlocked]> is bound to a different event loop"
        ),
        RuntimeError(
            "Task <Task pending name='x'> got Future <Future pending> attached to a different loop"
        ),
        ValueError(
            "The future belongs to a different loop than the one specified as the loop argument"
        ),
        RuntimeError(
            "Non-thread-safe operation invoked on an event loop other than the current one"
        ),
    ],
    ids=["loop-bound", "task-step", "ensure-future", "debug-check-thread"],
)
def test_asyncio_messages_are_recognised(exc: BaseException) -> None:
    assert affinity.explain(exc) is not None


@pytest.mark.parametrize(
    "exc",
    [
        RuntimeError("Event loop is closed"),
        ValueError("a different loop"[::-1]),
        TypeError("is bound to a different event loop"),  # not an asyncio error type
        RuntimeError(),
    ],
)
def test_other_errors_are_not_recognised(exc: BaseException) -> None:
    assert affinity.explain(exc) is None


def test_unnamed_loop_is_described_by_its_repr() -> None:
    loop = asyncio.new_event_loop()
    try:
        text = affinity.describe_loop(loop)
        assert text.startswith("another event loop (not one of this grid's workers)")
        assert repr(loop) in text
        affinity.name_loop(loop, "the test's loop")
        assert affinity.describe_loop(loop) == "the event loop of the test's loop"
    finally:
        loop.close()


def test_formatted_traceback_shows_the_note(grid: Grid) -> None:
    exc = lock_error(grid)
    note = the_note(exc)
    text = "".join(format_exception(exc))
    assert "is bound to a different event loop" in text
    assert note in text
    # The owner was found in the traceback, which still ends in asyncio's check.
    frames: list[Any] = traceback.extract_tb(exc.__traceback__)
    assert frames[-1].name == "_get_loop"
