"""Deadlock detection: a wait-for graph of tasks awaiting tasks and locks.

A task that awaits a :class:`~loopgrid.Handle`, or waits for a loopgrid
:class:`~loopgrid.Lock` held by another task, adds an edge *waiter -> what it
waits for* to one process-wide graph; the edge goes away when the wait ends. A
task has at most one outgoing edge (it waits for one thing at a time), so the
graph is a set of chains, and a wait that would close a cycle is found by
walking the chain from its target: if the walk comes back to the waiter, every
task on the cycle would wait forever, and the waiter gets
:class:`~loopgrid.DeadlockError` instead of hanging (Go reports the same
situation only once *every* goroutine is asleep; finding the cycle at the await
names the culprits while the rest of the program still runs).

A *node* is whoever waits or holds: the :class:`~loopgrid.Handle` of a grid
task, a plain :class:`asyncio.Task` on any loop, or a plain thread (for the
blocking variants of the primitives). Tasks on every grid and every loop share
the graph, so cycles across loops and grids are found too.

Thread ownership: ``_edges`` is a dict written by every thread. Each waiter
writes only its own key (``dict`` item assignment and ``pop`` are atomic, also
free-threaded), and publishes its edge *before* walking the chain. Of two tasks
that close a cycle at the same moment, at least one therefore sees the other's
edge; both may, and then both get the error, which is still true of each.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from .errors import DeadlockError

__all__ = ["begin_wait", "current_node", "describe", "end_wait", "waiting_for"]

#: waiter node -> (node it waits for, what it waits on, for messages).
_edges: dict[object, tuple[object, str]] = {}
_current_task = asyncio.current_task
#: Longest chain walked; a longer one can only come from a concurrent change
#: of the graph mid-walk, and is given up on rather than reported.
_MAX_WALK = 10_000


def current_node() -> object:
    """Who is running here: a grid task's handle, an asyncio task, or the thread."""
    try:
        task = _current_task()
    except RuntimeError:  # no running loop in this thread
        return threading.current_thread()
    if task is None:
        return threading.current_thread()
    h = getattr(task.get_coro(), "_h", None)
    return task if h is None else h


def describe(node: object) -> str:
    """A short name for a node, as used in DeadlockError messages."""
    from .handle import Handle

    if isinstance(node, Handle):
        where = "" if node.worker is None else f" on worker {node.worker}"
        return f"task {node.name!r} (id {node.id}{where})"
    if isinstance(node, asyncio.Task):
        return f"asyncio task {node.get_name()!r}"
    if isinstance(node, threading.Thread):
        return f"thread {node.name!r}"
    return repr(node)


def begin_wait(target: object, what: str, waiter: object | None = None) -> object:
    """Record that ``waiter`` (default: the caller) now waits for ``target``.

    ``target`` is a node (a handle, the owner of a lock); ``what`` says what is
    waited on, for the message. Raises :class:`~loopgrid.DeadlockError` naming
    the cycle if this wait would close one; otherwise returns the waiter, to
    be passed to :func:`end_wait` when the wait is over.
    """
    me = current_node() if waiter is None else waiter
    _edges[me] = (target, what)
    node: object = target
    steps = 0
    while node is not me:
        edge = _edges.get(node)
        steps += 1
        if edge is None or steps > _MAX_WALK:
            return me
        node = edge[0]
    cycle = _cycle_from(me)
    del _edges[me]
    raise DeadlockError(cycle)


def end_wait(waiter: object) -> None:
    """Remove the edge ``begin_wait`` added for ``waiter`` (idempotent)."""
    _edges.pop(waiter, None)


def waiting_for(node: object) -> tuple[object, str] | None:
    """What ``node`` waits for right now, if anything (a racy snapshot)."""
    return _edges.get(node)


def _cycle_from(me: object) -> str:
    parts: list[str] = []
    node: Any = me
    for _ in range(_MAX_WALK):
        edge = _edges.get(node)
        if edge is None:
            break
        target, what = edge
        parts.append(f"{describe(node)} waits for {what}")
        node = target
        if node is me:
            break
    return "wait-for cycle: " + ", which ".join(parts) + f", which is {describe(me)}"
