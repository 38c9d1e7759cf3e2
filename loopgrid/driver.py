"""The task driver: how a grid task's coroutine is run, resolved and paused.

Each grid task runs in an ordinary :class:`asyncio.Task`. What that Task steps
is a :class:`Driver` around ``drive(h, w)``, a coroutine that binds the task's
log context, creates the user's coroutine on the first step, awaits it, and
resolves the handle on the worker's thread the moment it ends (no done-callback
round trip through the loop).

The driver exists for *pausing a running task at its next suspension point*.
asyncio has no hook between a Task being woken and it stepping its coroutine:
the C Task's step cannot be overridden, and a pure-Python Task costs several
times more per step. But the Task looks up ``coro.send`` afresh for every
step, so a driver whose ``send`` attribute is simply ``drive(...).send`` costs
next to nothing per step; *arming* it swaps in a Python check that runs before
each step until the task is let go. When the check finds the task (or its worker) paused,
it does not step the coroutine: it hands the Task a *gate* future to wait on,
and keeps what the Task was delivering (``send(None)`` or an exception thrown
in). Resuming opens the gate and the delivery goes through. So what a paused
task awaited may complete while it is paused, but its code does not run again
until it is resumed.

Cancellations that loopgrid asks for (``Handle.cancel``, a closing grid, loop
shutdown: all through :func:`cancel_task`) pass a pause at once. Any other
``Task.cancel()`` (an ``asyncio.timeout`` expiring, say) is kept, like any other
delivery, until the task resumes.

Thread ownership: ``drive`` and a driver's ``send``/``throw``/``release`` run
on the worker's thread (called by the Task or the loop). A driver's two slots,
``_target`` and ``send``, must name the same :class:`_Pause` (or both the inner
coroutine): the gate a held task waits on is kept in the ``_Pause`` that
``send`` belongs to, and opened through ``_target``. Each write of the pair, an
arm (any thread: ``Handle.pause``, or the loop) or a disarm (the loop thread,
in :meth:`_Pause.send`), is therefore made under the grid's ``_control`` lock,
which ``Handle.pause`` also holds while it sets the task's pause flag: a disarm
that re-checks the flags under the lock cannot miss a pause, and two writers
never interleave their slot writes. (Without it, an arm preempted between its
two writes while the loop disarmed and re-armed left ``_target`` and ``send``
naming two different ``_Pause`` objects; the task was held through one and
never released through the other. Free-threaded CPython hit it; the GIL only
made it rare.) The Task reads ``send`` without the lock: between an arm's two
writes it sees the inner coroutine's ``send`` and takes one unchecked step, as
if the pause had come a moment later. Unarmed steps and the steps of a timed
driver take no lock. Holding and releasing both happen on the loop thread, so
a resume (which asks the loop to call :meth:`Worker._release_held`) can never
slip between a driver deciding to hold and it registering as held.

A task's end is published in this order (``drive`` and :func:`cancel_task`):
its worker's counter first, then its final state and result, then its pause
bookkeeping, then its callbacks (which wake whoever waits). So whoever sees a
task finished, by its state or by being woken, also sees it counted in
``grid.stats()`` and no longer paused.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import sys
import time
import types
from collections.abc import Coroutine, Generator
from typing import TYPE_CHECKING, Any

from . import logs
from .affinity import annotate as _annotate
from .handle import COMPLETED, RUNNING
from .trace import ACTIVE as _TRACING
from .waitgraph import TaskLink

if TYPE_CHECKING:
    from .handle import Handle
    from .worker import Worker

__all__ = ["Driver", "cancel_task", "drive"]

_CoroutineType = types.CoroutineType
_perf_counter = time.perf_counter
_COMPLETED = COMPLETED
_GRID_VAR = logs.GRID_VAR
_WORKER_VAR = logs.WORKER_VAR
_TASK_ID_VAR = logs.TASK_ID_VAR
_TASK_VAR = logs.TASK_VAR
#: The worker whose grid and worker keys are bound in a context (so a task
#: spawned from a task on the same worker binds only its own two keys).
_WHERE: contextvars.ContextVar[Worker | None] = contextvars.ContextVar(
    "loopgrid_where", default=None
)


async def drive(h: Handle[Any], w: Worker) -> None:
    """Run one task's coroutine and resolve its handle (see the module doc).

    The structlog context (grid, worker, task_id, task) is bound here, in the
    task's own context; grid and worker only when the spawner's context had
    another worker's.
    """
    if _WHERE.get() is not w:
        _WHERE.set(w)
        _GRID_VAR.set(w.grid.name)
        _WORKER_VAR.set(w.index)
    _TASK_ID_VAR.set(h._id)
    _TASK_VAR.set(h._name)
    loop = w.loop
    try:
        fn = h._fn
        args = h._args
        if args is None:
            coro = fn
        else:
            coro = fn(*args)
            if type(coro) is not _CoroutineType and not asyncio.iscoroutine(coro):
                raise TypeError(
                    f"{fn!r} returned {coro!r}, not a coroutine: spawn() needs an "
                    "async function or a coroutine object"
                )
            # The handle keeps the coroutine from now on (Handle.get_coro).
            h._fn = coro
            h._args = None
        result = await coro
    except (asyncio.CancelledError, GeneratorExit) as exc:
        # GeneratorExit: the coroutine was closed while suspended (a task the
        # grid gave up on, Worker._give_up; or one garbage-collected), and
        # never runs again: cancelled too.
        w.cancelled += 1  # counted before it is seen finished (module doc)
        h._set_cancelled(exc.args[0] if exc.args else None, loop)
        if logs.DEBUG_EVENTS:
            logs.debug("task.cancelled")
        raise
    except BaseException as exc:
        # Drop this frame from the traceback: users see their own frames only.
        tb = exc.__traceback__
        if tb is not None and tb.tb_frame is sys._getframe():
            exc.__traceback__ = tb.tb_next
        del tb
        _annotate(exc)  # a loop-affinity error gets its explanation (affinity.py)
        w.failed += 1
        h._set_exception(exc, loop)
        if logs.DEBUG_EVENTS:
            logs.debug("task.failed", error=repr(exc))
    else:
        w.completed += 1
        # Handle._set_result, inlined on the hottest path.
        h._result = result
        h._state = _COMPLETED
        h._fn = h._ctx = h._task = None
        h._args = ()
        if h._paused:
            h._unpause_finished()
        if h._callbacks:
            h._run_callbacks(loop)
        if logs.DEBUG_EVENTS:
            logs.debug("task.completed")
    finally:
        # Counted above in every branch; a closing grid waits for this count.
        if w.grid._closing:
            w.grid._check_quiescent()
        # The stored exception must not keep the handle alive: on 3.12+ the
        # traceback's first frame links back (f_back) to this frame, whose
        # locals are kept once it ends; without ``h`` there, a forgotten failed
        # handle is freed at once, not by a later cycle collection, and its
        # unretrieved-error log comes when it dies (logs.UnretrievedGuard).
        del h


class _Pause:
    """An armed driver's bookkeeping (see :meth:`Driver.arm`).

    Also what times the steps of an armed driver while step timing or a trace
    is on (``timed``): such a driver stays armed, and each step goes through
    :meth:`step`.
    """

    __slots__ = (
        "cancel_now",
        "drv",
        "gate",
        "h",
        "inner",
        "stash",
        "step_time",
        "steps",
        "timed",
        "w",
    )

    def __init__(self, drv: Driver, inner: Any, h: Handle[Any], w: Worker) -> None:
        self.drv = drv
        self.inner = inner
        self.h = h
        self.w = w
        #: While held: the future the Task waits on, and what to deliver after.
        self.gate: asyncio.Future[None] | None = None
        self.stash: BaseException | None = None
        #: Set by cancel_task(): the next exception thrown in passes the pause.
        self.cancel_now = False
        self.timed = False
        self.steps = 0
        self.step_time = 0.0

    def send(self, value: Any) -> Any:
        """The armed driver's step: hold the task, or disarm and step it."""
        drv = self.drv
        h = self.h
        w = self.w
        if h._paused or w._hold:
            return drv._hold(self, None)
        if self.timed:
            return self.step(self.inner.send, value)
        inner = self.inner
        with h._grid._control:  # no arm() in between (module doc)
            held = h._paused or w._hold  # a pause since the look above
            if not held:  # disarm: nothing holds the task
                drv._target = inner
                drv.send = inner.send
        if held:
            return drv._hold(self, None)
        return inner.send(value)

    def step(self, fn: Any, arg: Any) -> Any:
        """Step the coroutine with ``fn(arg)``, timed, and record it in a trace."""
        t0 = _perf_counter()
        try:
            return fn(arg)
        finally:
            dt = _perf_counter() - t0
            self.steps += 1
            self.step_time += dt
            w = self.w
            tracer = _TRACING.tracer
            if tracer is not None and tracer.grid is w.grid:
                tracer.step(self.h, w.index, t0, dt)
            if not w._timing:
                self.timed = False  # timing was switched off: the next step disarms


class Driver(TaskLink):
    """The coroutine an asyncio.Task runs for a grid task (see the module doc).

    Made by ``Worker._start``, on the hot path of every spawn.
    """

    # ``send`` is a slot holding a bound method: unarmed, the inner coroutine's
    # own ``send`` (so a step costs a slot read more than a plain Task's);
    # armed, the ``send`` of a _Pause, which checks first. ``_target`` is the
    # inner coroutine or the _Pause. ``handle`` (TaskLink's slot) is the
    # task's handle, how waitgraph.handle_of finds it from the asyncio Task.
    # Measured with callgrind (Python 3.11):
    # 220 instructions per step more than no driver, where a ``send``
    # property reading ``_target.send`` cost 1,000, and a ``__next__`` (which
    # PyIter_Send prefers) 900. No ``__init__``: Worker._start sets the slots,
    # since an ``__init__`` frame measurably slowed every spawn.
    __slots__ = ("_target", "send")

    _target: Any
    send: Any

    def _inner(self) -> Any:
        t = self._target
        return t.inner if type(t) is _Pause else t

    def arm(self, h: Handle[Any], w: Worker, timed: bool = False) -> None:
        """Check for a pause before every step from now on; any thread.

        ``timed``: also time every step while the worker's ``_timing`` is on
        (per-task step timing, or a trace); from the worker's thread only.
        Takes the grid's ``_control`` lock (see the module doc).
        """
        with h._grid._control:
            self._arm(h, w, timed)

    def _arm(self, h: Handle[Any], w: Worker, timed: bool) -> _Pause:
        """:meth:`arm` with ``_control`` held, or on a driver no other thread knows yet."""
        t = self._target
        if type(t) is not _Pause:
            self._target = t = _Pause(self, t, h, w)
            self.send = t.send
        if timed:
            t.timed = True
        return t

    def timing(self) -> tuple[int, float] | None:
        """(steps, seconds in them) measured so far, or None if never timed."""
        t = self._target
        if type(t) is _Pause and t.steps:
            return t.steps, t.step_time
        return None

    def throw(
        self,
        typ: type[BaseException] | BaseException,
        val: BaseException | None = None,
        tb: types.TracebackType | None = None,
    ) -> Any:
        exc = _as_exception(typ, val, tb)
        p = self._target
        if type(p) is not _Pause:
            return p.throw(exc)
        if p.gate is not None:
            # Woken through the gate without our opening it: Task.cancel() was
            # called while held. The cancellation replaces whatever was kept,
            # as a Task's pending cancel overrides the result it was woken with.
            p.gate = None
            p.stash = None
            p.w._held.discard(self)
        if (p.h._paused or p.w._hold) and not p.cancel_now:
            return self._hold(p, exc)
        p.cancel_now = False
        if p.timed:
            return p.step(p.inner.throw, exc)
        return p.inner.throw(exc)

    def close(self) -> None:
        self._inner().close()

    # No __next__: PyIter_Send (the Task's step) would prefer it to ``send``.
    def __await__(self) -> Generator[Any, None, None]:
        return self._inner().__await__()  # type: ignore[no-any-return]

    # What asyncio's task repr, get_stack() and debuggers read from a coroutine.
    @property
    def cr_frame(self) -> types.FrameType | None:
        return self._inner().cr_frame  # type: ignore[no-any-return]

    @property
    def cr_await(self) -> Any:
        return self._inner().cr_await

    @property
    def cr_code(self) -> types.CodeType:
        return self._inner().cr_code  # type: ignore[no-any-return]

    @property
    def cr_running(self) -> bool:
        return self._inner().cr_running  # type: ignore[no-any-return]

    # -- holding -----------------------------------------------------------------

    def _hold(self, p: _Pause, exc: BaseException | None) -> asyncio.Future[None]:
        """Park the Task on a gate instead of stepping the coroutine."""
        gate: asyncio.Future[None] = p.w.loop.create_future()
        gate._asyncio_future_blocking = True
        p.gate = gate
        p.stash = exc
        p.w._held.add(self)
        if logs.DEBUG_EVENTS:
            logs.debug("task.held", task_id=p.h._id, task=p.h._name)
        return gate

    def release(self) -> None:
        """Open the gate if nothing holds the task any more; loop thread only."""
        p = self._target
        if type(p) is not _Pause or p.gate is None or p.h._paused or p.w._hold:
            return
        gate, p.gate = p.gate, None
        exc, p.stash = p.stash, None
        p.w._held.discard(self)
        if gate.done():
            # Cancelled (Task.cancel cancels what its task awaits) earlier in
            # this turn of the loop: the Task's wake-up is on its way, with
            # the CancelledError that passes the hold (Handle.cancel).
            return
        if exc is None:
            gate.set_result(None)
        else:
            gate.set_exception(exc)


Coroutine.register(Driver)


def _as_exception(
    typ: type[BaseException] | BaseException,
    val: BaseException | None,
    tb: types.TracebackType | None,
) -> BaseException:
    # A Task calls throw(exc); the legacy (type, value, tb) form is accepted too.
    if isinstance(typ, BaseException):
        exc = typ
    else:
        exc = typ() if val is None else val if isinstance(val, typ) else typ(val)
    return exc if tb is None else exc.with_traceback(tb)


def cancel_task(
    task: asyncio.Task[Any],
    msg: Any | None,
    h: Handle[Any] | None = None,
    w: Worker | None = None,
) -> bool:
    """Cancel ``task`` from its own loop's thread, as loopgrid itself asks to.

    A grid task's cancellation passes its pause. ``h``, the task's handle, and
    ``w``, its worker (the caller), are given by ``Handle.cancel``: the driver
    is then armed (under ``_control``) to let the cancellation through, so
    that a pause being armed on another thread at this very moment cannot
    hold it either. Without ``h`` (a closing
    grid, where no pause can begin), only an armed driver is told. An armed
    driver stays armed until its loop (this thread) disarms it, so that look
    needs no lock.

    And an asyncio.Task cancelled before its first step throws CancelledError
    into a coroutine that has not begun: ``drive``'s body never runs, so it
    could not resolve its handle; such a handle is resolved here instead. (On
    3.12+ grid tasks start eagerly and are never in that state.)
    """
    drv: Any = task.get_coro()
    created: Handle[Any] | None = None
    if type(drv) is Driver:
        if h is not None:
            assert w is not None
            with h._grid._control:
                drv._arm(h, w, False).cancel_now = True
        else:
            t = drv._target
            if type(t) is _Pause:
                t.cancel_now = True
        inner = drv._inner()
        if inspect.getcoroutinestate(inner) == inspect.CORO_CREATED:
            created = drv.handle
    cancelled = task.cancel(msg)
    if created is not None and created._state is RUNNING:
        cw = created._worker
        assert cw is not None
        cw.cancelled += 1  # counted before it is seen finished (module doc)
        created._set_cancelled(msg, cw.loop)
        if cw.grid._closing:
            cw.grid._check_quiescent()
    return cancelled
