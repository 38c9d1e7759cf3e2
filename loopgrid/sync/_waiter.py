"""Waiter records, and the two ways of waiting that each primitive's one core is written for.

A primitive that must wait queues a :class:`Waiter`. A task's record,
:class:`TaskWaiter`, holds a future of *its own* loop and that loop's
:class:`~loopgrid.mailbox.Mailbox`: a waker on the same thread resolves the
future directly, a waker on another thread posts to the mailbox (one
thread-safe call per burst, as for handles). A plain thread's record,
:class:`ThreadWaiter`, holds a ``threading`` lock that the thread blocks on and
the waker releases.

Why one core per algorithm: each primitive's waiting algorithm (take or queue,
wait, give up or pass on what was handed over) is written once, as a coroutine
that ``await``s its waiter record, and both the async and the blocking method
run it. A task runs it as any coroutine: ``await task_waiter`` suspends on the
future. A plain thread runs it with :func:`run_blocking`, which calls
``send(None)`` once: ``await thread_waiter`` blocks the thread in place and
returns, so the coroutine never suspends and finishes within that one call.
What differs between the two is only what :class:`Waits` says: who the caller
is (a task or a thread, for deadlock edges) and which record it waits on. A
thread's wait may time out (its ``await`` returns False); a task's never does
(asyncio code times out by cancelling, which the core sees as an exception).
The cores are for waiting: what never waits (an uncontended lock, a put with
room, a get with an item) is done before a core is called, so those paths pay
for no coroutine of ours.

Thread ownership: a record's ``granted`` and ``skipped`` flags are written
under its primitive's mutex only: by the waker when it grants or wakes it, and
read by the waiter under that mutex when it gives up, so exactly one of
"granted" and "gave up" wins. A task record's future is resolved only on its
own loop's thread; a thread record's ``parked`` lock is released by the one
waker that took the record out of its queue.
"""

from __future__ import annotations

import asyncio
import math
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Coroutine, Generator, Sized
from typing import Any, TypeVar

from ..errors import WouldBlockError, check_timeout
from ..handle import _wait_sliced, not_on_asyncio
from ..mailbox import Mailbox, mailbox_for_running_loop, running_loop

__all__ = [
    "TASK",
    "THREAD",
    "TaskWaiter",
    "ThreadWaiter",
    "Waiter",
    "Waits",
    "begin_blocking",
    "describe",
    "expired",
    "not_on_asyncio_error",
    "pick",
    "pick_many",
    "remove",
    "run_blocking",
    "task_node",
    "wait_or_give_up",
]

T = TypeVar("T")

_allocate_lock = threading.Lock
_monotonic = time.monotonic
_current_thread = threading.current_thread

#: The blocking variant of each waiting method, named by the error for trio code.
_BLOCKING = {
    "acquire": "acquire_blocking",
    "wait": "wait_blocking",
    "get": "get_blocking",
    "put": "put_blocking, item",
    "join": "join_blocking",
    "reset": "reset_blocking",
    "abort": "abort_blocking",
}


def not_on_asyncio_error(obj: object, method: str) -> RuntimeError:
    """The error for an async ``method`` of ``obj`` awaited where no asyncio loop runs (trio)."""
    name = type(obj).__name__
    return not_on_asyncio(f"{name}.{method}() on {obj!r}", f"{name.lower()}.{_BLOCKING[method]}")


def describe(obj: object, state: str, waiters: Sized) -> str:
    """A primitive's repr: its class, address, ``state`` and how many wait."""
    n = len(waiters)
    extra = f", waiters:{n}" if n else ""
    return f"<loopgrid.{type(obj).__name__} object at {id(obj):#x} [{state}{extra}]>"


def _resolve(fut: asyncio.Future[None]) -> None:
    """Resolve ``fut`` unless it is done (a callback for ``call_soon_threadsafe``;
    web/front.py reuses it)."""
    if not fut.done():
        fut.set_result(None)


def _grant(fut: asyncio.Future[bool]) -> None:
    """Wake a task waiter: its future's True is what ``await waiter`` returns."""
    if not fut.done():
        fut.set_result(True)


# -- records --------------------------------------------------------------------------


class Waiter:
    """One party waiting on a primitive; ``await`` it to wait (see the module docstring).

    ``node`` is who waits, for deadlock edges (Lock only; None elsewhere).
    """

    __slots__ = ("granted", "node", "skipped")

    def __init__(self, node: object) -> None:
        self.node = node
        #: Woken, and for Lock and Semaphore handed the lock or a permit.
        self.granted = False
        #: Taken out of its queue without being granted (cancelled or dead).
        self.skipped = False

    def gone(self) -> bool:
        """True if this waiter will not take a hand-over (see :class:`TaskWaiter`)."""
        return False

    def dead(self) -> bool:
        """True if nobody will ever see a wake-up (see :class:`TaskWaiter`)."""
        return False

    def wake(self) -> None:
        """Wake the waiter, whose record was taken out of its queue (any thread)."""
        raise NotImplementedError

    def __await__(self) -> Generator[Any, None, bool]:
        """Wait until woken (True) or the waiter's deadline passed (False)."""
        raise NotImplementedError


class TaskWaiter(Waiter):
    """A task on an asyncio (or uvloop) loop, waiting on a future of that loop."""

    __slots__ = ("fut", "mb")

    def __init__(self, node: object, mb: Mailbox) -> None:
        self.node = node
        self.granted = False
        self.skipped = False
        self.mb = mb
        self.fut: asyncio.Future[bool] = mb.loop.create_future()

    def gone(self) -> bool:
        """True if its future was cancelled (its task is on its way out, and will
        not look at a grant) or it is :meth:`dead`. Read from any thread: a
        snapshot, and a stale False only means a grant that the waiter passes
        on when it gives up."""
        return self.fut.cancelled() or self.mb.loop.is_closed()

    def dead(self) -> bool:
        """True if the waiting task's loop is closed: nobody will see a wake-up.

        Such a record is skipped rather than granted, so that a loop closed
        without cancelling its tasks does not take a lock or a permit with it.
        The task itself is destroyed later, by the garbage collector, which
        closes its coroutine with GeneratorExit at whatever point the
        collection ran, possibly while this very thread holds a primitive's
        mutex: the cores therefore let GeneratorExit through untouched, and
        never take a mutex from a finalizer.
        """
        return self.mb.loop.is_closed()

    def wake(self) -> None:
        mb = self.mb
        if mb.loop is running_loop():
            _grant(self.fut)
        else:
            mb.post(_grant, self.fut, None)

    def __await__(self) -> Generator[Any, None, bool]:
        # The future's own iterator: no frame of ours between the task and it.
        return self.fut.__await__()


class ThreadWaiter(Waiter):
    """A plain thread, blocked on a lock of its own until woken or ``deadline``."""

    __slots__ = ("deadline", "parked")

    def __init__(self, node: object, deadline: float | None) -> None:
        self.node = node
        self.granted = False
        self.skipped = False
        self.deadline = deadline
        self.parked = _allocate_lock()
        self.parked.acquire()

    def wake(self) -> None:
        self.parked.release()

    def __await__(self) -> Generator[Any, None, bool]:
        # A generator that returns before it yields: the thread blocks here, in
        # place, and the awaiting coroutine goes on without ever suspending.
        return self._park()
        yield  # pragma: no cover - never reached; makes this a generator

    def _park(self) -> bool:
        parked = self.parked

        def acquire(timeout: float | None) -> bool:
            return parked.acquire(timeout=-1 if timeout is None else timeout)

        deadline = self.deadline
        left = None if deadline is None else max(0.0, deadline - _monotonic())
        # In slices on the main thread, so that Ctrl-C is not lost (handle.py).
        return _wait_sliced(acquire, left)


# -- the two ways of waiting -------------------------------------------------------------


class Waits:
    """How the caller of a core waits: as a task (:data:`TASK`) or a thread (:data:`THREAD`)."""

    __slots__ = ()

    def node(self, obj: object) -> object:
        """Who calls, for deadlock edges (see ``waitgraph.current_node``)."""
        raise NotImplementedError

    def waiter(self, node: object, obj: object, method: str, deadline: float | None) -> Waiter:
        """A new record for the caller, about to wait in ``obj.method``."""
        raise NotImplementedError


class _TaskWaits(Waits):
    __slots__ = ()

    def node(self, obj: object) -> object:
        return task_node(obj)

    def waiter(self, node: object, obj: object, method: str, deadline: float | None) -> Waiter:
        mb = mailbox_for_running_loop()
        if mb is None:  # an await outside asyncio: trio code, say
            raise not_on_asyncio_error(obj, method)
        return TaskWaiter(node, mb)


class _ThreadWaits(Waits):
    __slots__ = ()

    def node(self, obj: object) -> object:
        return _current_thread()

    def waiter(self, node: object, obj: object, method: str, deadline: float | None) -> Waiter:
        return ThreadWaiter(node, deadline)


#: The caller is a task on an asyncio loop: it waits on a future.
TASK: Waits = _TaskWaits()
#: The caller is a plain thread: it blocks (see :func:`run_blocking`).
THREAD: Waits = _ThreadWaits()


if sys.version_info >= (3, 12):
    _c_current_task = asyncio.current_task  # implemented in C from 3.12

    def task_node(obj: object) -> object:
        """``waitgraph.current_node()`` for an async method of ``obj``: the current
        task, or the thread if a loop runs without one; the error for trio code
        (no asyncio loop) instead of filing the caller under its thread."""
        try:
            task = _c_current_task()
        except RuntimeError:
            raise not_on_asyncio_error(obj, "acquire") from None
        return _current_thread() if task is None else task

else:
    #: The dict asyncio's Task steps keep the current task of each loop in.
    _current_tasks: dict[asyncio.AbstractEventLoop, asyncio.Task[Any]] = vars(asyncio.tasks)[
        "_current_tasks"
    ]

    def task_node(obj: object) -> object:
        """``waitgraph.current_node()`` for an async method of ``obj``: the current
        task, or the thread if a loop runs without one; the error for trio code
        (no asyncio loop) instead of filing the caller under its thread.

        Before 3.12 ``asyncio.current_task()`` is Python code that asks for the
        running loop with a ``getpid()`` system call; on a grid worker the loop
        is known from a thread-local (``running_loop``), which makes an
        uncontended ``async with lock`` about a quarter faster.
        """
        loop = running_loop()
        if loop is None:
            raise not_on_asyncio_error(obj, "acquire")
        task = _current_tasks.get(loop)
        return _current_thread() if task is None else task


# -- running a core -----------------------------------------------------------------------


def run_blocking(core: Coroutine[Any, Any, T]) -> T:
    """Run a core for a plain thread (its waits are :class:`ThreadWaiter`\\ s): it
    blocks where it waits and is done when ``send`` returns."""
    try:
        core.send(None)
    except StopIteration as done:
        result: T = done.value
        return result
    core.close()
    raise RuntimeError(f"{core!r} suspended on a thread's wait")  # a bug: thread waits block


async def wait_or_give_up(w: Waiter, give_up: Callable[..., object], *args: object) -> bool:
    """Wait on ``w``: True if woken, False if its deadline passed (threads only).

    If the wait ends any other way (a task cancelled, a thread interrupted),
    ``give_up(*args)`` takes ``w`` out of its queue, or passes on what was
    handed to it meanwhile, and the exception goes on. GeneratorExit (the
    waiting coroutine closed without running again, see
    :meth:`TaskWaiter.dead`) is let through untouched.
    """
    try:
        return await w
    except GeneratorExit:
        raise
    except BaseException:
        give_up(*args)
        raise


def begin_blocking(what: str, obj: object, timeout: float | None = None) -> float | None:
    """Begin ``what``, a blocking call on ``obj``: refuse it on a thread that runs an
    event loop; else validate ``timeout`` and return it as a deadline.

    Always refused there, not only when the wait would actually block: a call
    that passes while uncontended and freezes the loop under load is a bug
    best found on its first run. Use the ``async`` method there.
    """
    if running_loop() is not None:
        raise WouldBlockError(
            f"{what} on {obj!r} from a thread that runs an event loop: waiting "
            f"would block that loop; await the async method there instead"
        )
    seconds = check_timeout(timeout)
    if seconds is None or math.isinf(seconds):
        return None
    return _monotonic() + seconds


def expired(deadline: float | None) -> bool:
    """Whether a blocking call's ``deadline`` has passed (a task's is None: never)."""
    return deadline is not None and deadline <= _monotonic()


# -- queues of waiters (their primitive's mutex held) ----------------------------------------


def pick(waiters: deque[Waiter]) -> Waiter | None:
    """Take the first waiter that can still be served out of ``waiters`` and mark
    it granted, marking those skipped on the way (mutex held); the caller wakes it."""
    while waiters:
        w = waiters.popleft()
        if w.gone():
            w.skipped = True
            continue
        w.granted = True
        return w
    return None


def pick_many(waiters: deque[Waiter], n: int | None = None) -> list[Waiter]:
    """:func:`pick` up to ``n`` waiters (None: all that can be served)."""
    picked: list[Waiter] = []
    while n is None or len(picked) < n:
        w = pick(waiters)
        if w is None:
            break
        picked.append(w)
    return picked


def remove(waiters: deque[Waiter], w: Waiter) -> int:
    """Remove ``w``, which has not been woken, from ``waiters``; return its index (mutex held)."""
    i = waiters.index(w)
    del waiters[i]
    return i
