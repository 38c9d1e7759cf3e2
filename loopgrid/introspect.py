"""Introspection: what a task awaits, what a thread runs, which tasks a grid has.

Read from *other* threads: by the monitor (a stalled worker's stack), by the
debug endpoint and ``grid.stats(tasks=True)`` (the task list of ``loopgrid
ps``), and by the pytest plugin (tasks a test left behind). Nothing here stops
or enters a worker's loop, so it also answers about a loop that is stuck, which
is when it is wanted most.

Reading another thread's objects without its cooperation gives snapshots:
asyncio's task registry (a WeakSet) and the run queues (deques) are copied with
a retry when a concurrent change interrupts the copy, coroutine chains are
walked through attributes that a running coroutine updates as it goes, and a
task may finish between two reads. Every reader here tolerates that: a row may
be a step stale, never an exception.
"""

from __future__ import annotations

import asyncio
import sys
import threading
import time
import types
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from .driver import Driver
from .handle import Handle
from .waitgraph import explain, handle_of, waiting_for

if TYPE_CHECKING:
    from .grid import Grid

__all__ = [
    "await_chain",
    "frame_stack",
    "queued",
    "short_repr",
    "task_rows",
    "task_where",
    "tasks_of",
    "thread_stack",
]

#: Rows of ``task_rows`` by default: a grid may hold a million pending tasks.
TASK_LIMIT = 1000


def short_repr(obj: object, limit: int = 200) -> str:
    text = repr(obj)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def await_chain(coro: Any) -> list[str]:
    """``file:line in function`` of each coroutine the task awaits, innermost last.

    Starts below loopgrid's driver, at the task's own coroutine, and follows
    ``cr_await`` (``gi_yieldfrom``, ``ag_await``) down to the innermost frame;
    what that frame awaits, when it is a future or a handle, ends the list.
    """
    lines: list[str] = []
    obj = coro.cr_await if type(coro) is Driver else coro
    for _ in range(200):
        if obj is None:
            break
        frame = _frame_of(obj)
        if frame is None:
            if isinstance(obj, (asyncio.Future, Handle)):  # not a bare iterator
                lines.append(f"awaiting {short_repr(obj)}")
            break
        lines.append(_where(frame))
        obj = _awaited_by(obj)
    return lines


def task_where(task: asyncio.Task[Any]) -> list[str]:
    """Where ``task`` waits: its :func:`await_chain`, then the lock, event or
    handle it waits for when the deadlock detector knows it (``waiting for ...``)."""
    where = await_chain(task.get_coro())
    edge = waiting_for(task)
    if edge is not None:
        where.append(f"waiting for {explain(edge)}")
    return where


def frame_stack(frame: types.FrameType | None, limit: int = 30) -> list[str]:
    """``file:line in function`` from ``frame`` outwards, innermost first."""
    lines: list[str] = []
    while frame is not None and len(lines) < limit:
        lines.append(_where(frame))
        frame = frame.f_back
    return lines


def thread_stack(thread: threading.Thread, limit: int = 30) -> list[str]:
    """What ``thread`` runs now, innermost frame first (empty if it has ended)."""
    return frame_stack(sys._current_frames().get(thread.ident or -1), limit)


def tasks_of(loop: asyncio.AbstractEventLoop) -> list[asyncio.Task[Any]]:
    """``asyncio.all_tasks(loop)`` from any thread, retried if a change interrupts it."""
    for _ in range(100):
        try:
            return list(asyncio.all_tasks(loop))
        except RuntimeError:  # a set or WeakSet changed size while copied
            continue
    return []


def task_rows(grid: Grid, limit: int = TASK_LIMIT) -> list[dict[str, Any]]:
    """The tasks of ``grid`` that have not finished, as JSON-ready rows.

    Running (and paused-while-running) tasks first, by worker, then pending
    tasks (queued on a worker, in the injection queue, or paused), at most
    ``limit`` rows in all. Each row: ``id``, ``name``, ``priority``, ``state``,
    ``worker`` (None while not placed), ``age`` (seconds since spawn),
    ``where`` (the await chain, innermost last; for a pending task, the queue)
    and, when step timing is on, ``steps`` and ``step_time``.
    """
    now = time.monotonic()
    rows: list[dict[str, Any]] = []
    seen: set[int] = set()
    for w in grid.workers:
        current = asyncio.current_task(w.loop)  # a read of asyncio's dict, from here
        for task in tasks_of(w.loop):
            h = handle_of(task)
            if h is None or h._id in seen or h.done():
                continue
            seen.add(h._id)
            if task is current:
                # Executing right now: it awaits nothing; say where its thread is.
                where = [f"running: {line}" for line in thread_stack(w.thread, limit=1)]
                edge = waiting_for(task)
                if edge is not None:
                    where.append(f"waiting for {explain(edge)}")
            else:
                where = task_where(task)
            row = _row(h, now, w.index, where)
            timing = _timing_of(task)
            if timing is not None:
                row["steps"], row["step_time"] = timing
            rows.append(row)
            if len(rows) >= limit:
                return rows
    for queue_name, worker, handles in queued(grid):
        for h in handles:
            if h._id in seen or h.done():
                continue
            seen.add(h._id)
            rows.append(_row(h, now, worker, [queue_name]))
            if len(rows) >= limit:
                return rows
    return rows


def _row(h: Handle[Any], now: float, worker: int | None, where: list[str]) -> dict[str, Any]:
    return {
        "id": h._id,
        "name": h._name,
        "priority": h._priority.name.lower(),
        "state": h.state.value,
        "worker": worker,
        "age": round(now - h._enqueued, 6),
        "where": where,
    }


def _timing_of(task: asyncio.Task[Any]) -> tuple[int, float] | None:
    drv: Any = task.get_coro()
    if type(drv) is not Driver:
        return None
    return drv.timing()


def queued(grid: Grid) -> Iterable[tuple[str, int | None, list[Handle[Any]]]]:
    """The handles waiting in ``grid``'s queues, not started yet: per queue, its
    description, the worker it belongs to (None: any worker), and its handles,
    highest priority first. A snapshot, taken from any thread: a handle may
    start meanwhile (its state says)."""
    for w in grid.workers:
        yield f"queued on worker {w.index}", w.index, _copy(w._pinned.levels, w._local.levels)
    yield "queued for any worker (injection queue)", None, _copy(grid._injection.levels)
    yield "paused before starting", None, _copied(grid._shelf.values())


def _copy(*level_lists: Any) -> list[Handle[Any]]:
    out: list[Handle[Any]] = []
    for levels in level_lists:
        for d in reversed(levels):  # highest priority first
            out.extend(_copied(d))
    return out


def _copied(items: Iterable[Handle[Any]]) -> list[Handle[Any]]:
    """``list(items)``, retried when another thread changes them meanwhile."""
    for _ in range(100):
        try:
            return list(items)
        except RuntimeError:  # deque or dict mutated during iteration
            continue
    return []


def _where(frame: types.FrameType) -> str:
    code = frame.f_code
    return f"{code.co_filename}:{frame.f_lineno} in {code.co_name}"


def _frame_of(obj: Any) -> types.FrameType | None:
    for attr in ("cr_frame", "gi_frame", "ag_frame"):
        frame = getattr(obj, attr, None)
        if frame is not None:
            return frame  # type: ignore[no-any-return]
    return None


def _awaited_by(obj: Any) -> Any:
    for attr in ("cr_await", "gi_yieldfrom", "ag_await"):
        inner = getattr(obj, attr, None)
        if inner is not None:
            return inner
    return None
