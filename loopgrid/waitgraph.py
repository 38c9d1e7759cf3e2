"""The wait-for graph: tasks and threads awaiting tasks and locks, and its cycles.

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

A *node* is whoever waits or holds: the :class:`asyncio.Task` running the
code (a grid task's, or a plain task on any loop), or a plain thread (for the
blocking variants of the primitives). A wait's *target* is a node, or a
:class:`~loopgrid.Handle`, which stands for its task's node once it has
started (a pending or finished task waits for nothing). Tasks on every grid and
every loop share the graph, so cycles across loops and grids are found too.

Go's other check, "all goroutines are asleep", reads this graph from each
grid's monitor thread (``deadlock.py``).

Why a module of its own, that imports nothing of loopgrid's but its errors:
the await path of a :class:`~loopgrid.Handle` and of every primitive writes
here, and the graph needs to know of handles and grid tasks only what they
tell it: a handle is a :class:`WaitTarget` (it stands for its task's node and
names itself), and a grid task's coroutine, the driver, is a :class:`TaskLink`
holding the task's handle (set where the task is started, ``Worker._start``;
an explicit link, not a look at a frame's locals). So every other module may
import this one, and it imports none of them.

Thread ownership: ``_edges`` is a dict written by every thread. Each waiter
writes only its own key (``dict`` item assignment and ``pop`` are atomic, also
free-threaded), and publishes its edge *before* walking the chain. Of two tasks
that close a cycle at the same moment, at least one therefore sees the other's
edge; both may, and then both get the error, which is still true of each.

Stale edges, and why a cycle is confirmed before it is reported: an edge to a
lock's owner is recorded from a read of the owner that the lock's lock-free
release path can make out of date at once (the holder is mid-release; a third
party then takes the lock without the mutex, and nobody re-points the waiter
until that party releases). With the GIL off this happens under contention,
and the past owner, queueing again behind the waiter, would close a cycle that
does not exist. So an edge may name its *source* (``what`` is then an object
with ``_still_waits(node, target)`` and ``_wait_label()``, the lock itself),
and a cycle found by the walk is reported only if every such edge on it still
holds when looked at again (exactly for the lock whose mutex the caller holds,
as a racy read for others: a cycle may go unreported, none is invented).
"""

from __future__ import annotations

import asyncio
import threading
from typing import TYPE_CHECKING, Any, Protocol

from .errors import DeadlockError

if TYPE_CHECKING:
    from .handle import Handle

__all__ = [
    "TaskLink",
    "WaitSource",
    "WaitTarget",
    "begin_wait",
    "check_cycle",
    "current_node",
    "describe",
    "end_wait",
    "explain",
    "handle_of",
    "waiting_for",
]


class WaitSource(Protocol):
    """What an edge may name instead of a message: the primitive waited on,
    which can say whether the edge still holds (see the module docstring)."""

    def _still_waits(self, node: object, target: object) -> bool: ...

    def _wait_label(self) -> str: ...


class WaitTarget:
    """A target that stands for a node: :class:`~loopgrid.Handle` is one."""

    __slots__ = ()

    def _wait_node(self) -> object:
        """The node this target stands for now (None: it waits for nothing)."""
        raise NotImplementedError

    def _wait_name(self) -> str:
        """How a DeadlockError names it."""
        raise NotImplementedError


class TaskLink:
    """The base of a grid task's coroutine (``driver.Driver``): its handle.

    Set once, by the worker that starts the task, before the Task exists; read
    by :func:`handle_of` from any thread.
    """

    __slots__ = ("handle",)

    handle: Handle[Any]


#: waiter node -> (target it waits for, what it waits on).
_edges: dict[object, tuple[object, str | WaitSource | None]] = {}
_current_task = asyncio.current_task
#: Longest chain walked; a longer one can only come from a concurrent change
#: of the graph mid-walk, and is given up on rather than reported.
_MAX_WALK = 10_000


def current_node() -> object:
    """Who is running here: the current asyncio task, or else the thread."""
    try:
        task = _current_task()
    except RuntimeError:  # no running loop in this thread
        return threading.current_thread()
    return threading.current_thread() if task is None else task


def _resolve(target: object) -> object:
    """The node a target stands for (a handle's task: None unless running)."""
    if isinstance(target, WaitTarget):
        return target._wait_node()
    return target


def handle_of(node: object) -> Handle[Any] | None:
    """The grid handle whose task ``node`` is, if it is one."""
    if isinstance(node, asyncio.Task):
        coro = node.get_coro()
        if isinstance(coro, TaskLink):
            return coro.handle
    return None


def describe(node: object) -> str:
    """A short name for a node or target, as used in DeadlockError messages."""
    if isinstance(node, WaitTarget):
        return node._wait_name()
    h = handle_of(node)
    if h is not None:
        return h._wait_name()
    if isinstance(node, asyncio.Task):
        return f"asyncio task {node.get_name()!r}"
    if isinstance(node, threading.Thread):
        return f"thread {node.name!r}"
    return repr(node)


def begin_wait(
    target: object, what: str | WaitSource | None = None, waiter: object | None = None
) -> object:
    """Record that ``waiter`` (default: the caller) now waits for ``target``.

    ``target`` is a node (a handle, the owner of a lock); ``what`` says what is
    waited on: a message, or the primitive itself (see :class:`WaitSource`).
    Raises :class:`~loopgrid.DeadlockError` naming
    the cycle if this wait would close one; otherwise returns the waiter, to
    be passed to :func:`end_wait` when the wait is over.
    """
    me = current_node() if waiter is None else waiter
    _edges[me] = (target, what)
    check_cycle(me)
    return me


def check_cycle(me: object) -> None:
    """Raise DeadlockError (and drop ``me``'s edge) if ``me``'s wait closes a cycle."""
    edge = _edges.get(me)
    steps = 0
    while edge is not None and steps < _MAX_WALK:
        node = _resolve(edge[0])
        if node is me:
            cycle = _confirmed_cycle(me)
            if cycle is None:
                return
            _edges.pop(me, None)
            raise DeadlockError(cycle)
        edge = _edges.get(node)
        steps += 1


def _confirmed_cycle(me: object) -> str | None:
    """The cycle through ``me``, in words, walked once more; None unless every
    edge on it that names its source still holds (see the module docstring)."""
    parts: list[str] = []
    node: Any = me
    for _ in range(_MAX_WALK):
        edge = _edges.get(node)
        if edge is None:
            return None
        target, what = edge
        if what is not None and not isinstance(what, str) and not what._still_waits(node, target):
            return None
        parts.append(f"{describe(node)} waits for {explain(edge)}")
        node = _resolve(target)
        if node is me:
            return "wait-for cycle: " + "; ".join(parts) + " (and so on, for ever)"
    return None


def end_wait(waiter: object) -> None:
    """Remove the edge ``begin_wait`` added for ``waiter`` (idempotent)."""
    _edges.pop(waiter, None)


def waiting_for(node: object) -> tuple[object, str | WaitSource | None] | None:
    """What ``node`` waits for right now, if anything (a racy snapshot)."""
    return _edges.get(node)


def explain(edge: tuple[object, str | WaitSource | None]) -> str:
    """What an edge's waiter waits for, in words: ``lock <...>``, or the target."""
    what = edge[1]
    if what is None:
        return describe(edge[0])
    return what if isinstance(what, str) else what._wait_label()
