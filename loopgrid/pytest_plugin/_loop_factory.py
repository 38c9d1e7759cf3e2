"""Other plugins' async tests on a grid: :func:`grid_loop_factory` and :class:`GridLoop`.

Why: a suite written for pytest-asyncio or anyio already says how its tests
get an event loop, through a *loop factory* (pytest-asyncio 1.x's
``pytest_asyncio_loop_factories`` hook, anyio's ``loop_factory`` backend
option). Handing those runners a grid instead of a loop runs the suite, unchanged,
on worker 0 of a grid, where ``loopgrid.spawn``, ``current_worker()`` and the
cross-loop primitives work as in production, with the plugin's leak checks
when the loop closes.

Both runners drive their loop with ``asyncio.Runner`` (or a copy of it) from
pytest's thread: ``create_task`` then ``run_until_complete``. :class:`GridLoop`
answers those from pytest's thread by spawning on worker 0 and blocking on the
handle; code running on the grid sees the worker's own loop
(``asyncio.get_running_loop()``), never this object.
"""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import sys
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from ..grid import Grid
from ..handle import Handle
from ._leaks import TestGrid, cancel_and_wait, finish
from ._options import default_close_timeout, default_loops
from ._run import spawn_in_context, wait

T = TypeVar("T")

LoopFactory = Callable[[], asyncio.AbstractEventLoop]
ExceptionHandler = Callable[[asyncio.AbstractEventLoop, dict[str, Any]], object]


def grid_loop_factory(
    loops: int | None = None,
    *,
    loop_factory: LoopFactory | None = None,
    close_timeout: float | None = None,
) -> Callable[[], GridLoop]:
    """A loop factory whose loops are worker 0 of a fresh grid, for pytest-asyncio or anyio.

    For pytest-asyncio 1.x, return it from the ``pytest_asyncio_loop_factories``
    hook in a ``conftest.py``::

        from loopgrid.pytest_plugin import grid_loop_factory

        def pytest_asyncio_loop_factories(config, item):
            return {"loopgrid": grid_loop_factory()}

    For anyio's pytest plugin, pass it as the asyncio backend's ``loop_factory``::

        @pytest.fixture
        def anyio_backend():
            return ("asyncio", {"loop_factory": grid_loop_factory()})

    Each event loop the runner asks for (pytest-asyncio: one per ``loop_scope``)
    is a :class:`GridLoop`: a fresh grid of ``loops`` workers (default:
    ``--loopgrid-loops``, else the ``loopgrid_loops`` ini option, else 2, read
    when the loop is made), whose every worker loop is made by ``loop_factory``
    (default: the grid's, uvloop when installed), for example a test loop class
    with a virtual clock. When the runner closes it, a task left on the grid or a
    worker thread that does not stop within ``close_timeout`` seconds (default:
    the ``loopgrid_close_timeout`` ini option, else 30) fails the test.

    Factories made with equal arguments compare equal, as pytest-asyncio needs
    them to for tests to share a ``loop_scope`` wider than the function: pass
    the same ``loop_factory`` object (a class or a module-level function, not a
    new lambda) each time.
    """
    if loops is not None and (type(loops) is not int or loops < 1):
        raise ValueError(f"loops must be an int >= 1 or None, got {loops!r}")
    if loop_factory is not None and not callable(loop_factory):
        raise TypeError(f"loop_factory must be callable or None, got {loop_factory!r}")
    if close_timeout is not None and not close_timeout > 0:
        raise ValueError(f"close_timeout must be > 0 or None, got {close_timeout!r}")
    return _GridLoopFactory(loops, loop_factory, close_timeout)


@dataclasses.dataclass(frozen=True)
class _GridLoopFactory:
    loops: int | None
    loop_factory: LoopFactory | None
    close_timeout: float | None

    def __call__(self) -> GridLoop:
        return GridLoop(  # type: ignore[abstract]
            self.loops, loop_factory=self.loop_factory, close_timeout=self.close_timeout
        )


class GridLoop(asyncio.AbstractEventLoop):
    """Worker 0 of a fresh grid, seen from pytest's thread as an event loop to drive.

    An event loop runner (``asyncio.Runner``, which pytest-asyncio and anyio use)
    calls ``create_task`` and ``run_until_complete`` on its loop from its own
    thread. Here ``create_task`` spawns the coroutine on worker 0 (running in the
    context the runner gives) and returns its :class:`~loopgrid.Handle`;
    ``run_until_complete`` blocks until it is done. ``close`` cancels what
    ``create_task`` started and is still running (as ``asyncio.Runner.close``
    cancels the tasks left on its loop), then checks the grid for leaks and
    closes it. What the check finds fails the phase of the test (setup, call or
    teardown) in which the runner closed the loop, once the runner is done;
    outside a test, ``close`` raises it.

    Called from code running on worker 0, ``create_future`` makes a future of
    the worker's loop. The exception handler (``set_exception_handler``, which
    anyio's runner sets to collect the errors of callbacks) is every worker
    loop's: an error in a callback on any loop of the grid reaches it. Code
    running on the grid sees the worker's own loop
    (``asyncio.get_running_loop()``), never this object; the other loop methods
    raise ``NotImplementedError`` saying so.

    ``loops`` and ``close_timeout`` default to the options of the pytest run
    (see :func:`grid_loop_factory`); ``loop_factory`` makes every worker's loop.
    """

    def __init__(
        self,
        loops: int | None = None,
        *,
        loop_factory: LoopFactory | None = None,
        close_timeout: float | None = None,
    ) -> None:
        self._tg = TestGrid(
            default_loops() if loops is None else loops,
            "pytest-gridloop",
            "when its runner closed the GridLoop",
            default_close_timeout() if close_timeout is None else close_timeout,
            loop_factory,
        )
        self._closed = False
        self._debug = False
        self._exception_handler: ExceptionHandler | None = None
        #: Handles from create_task (pytest's thread, or worker 0 for anyio's
        #: runner task): only one of the two runs at a time, the lock is a guard.
        self._lock = threading.Lock()
        self._made: list[Handle[Any]] = []

    @property
    def grid(self) -> Grid:
        return self._tg.grid

    @property
    def close_timeout(self) -> float:
        return self._tg.timeout

    def __repr__(self) -> str:
        return f"<GridLoop on worker 0 of {self._tg.grid!r}>"

    def create_task(  # type: ignore[override]
        self,
        coro: Coroutine[Any, Any, T],
        *,
        name: str | None = None,
        context: contextvars.Context | None = None,
    ) -> Handle[T]:
        self._check_open()
        if context is None:
            # Python 3.10's backport of asyncio.Runner passes no context, and
            # makes copy_context() return the one it means while it calls us.
            context = contextvars.copy_context()
            _undo_runner_backport_patches()
        if name is None:
            name = getattr(coro, "__qualname__", None) or "task"
        h = spawn_in_context(self._tg.grid, coro, context, name)
        with self._lock:
            self._made = [m for m in self._made if not m.done()]
            self._made.append(h)
        return h

    def run_until_complete(self, future: Any) -> Any:
        __tracebackhide__ = True
        self._check_open()
        if asyncio.iscoroutine(future):
            future = self.create_task(future)
        if not isinstance(future, Handle):
            raise TypeError(
                f"{self!r}.run_until_complete() takes a coroutine or a handle from its "
                f"create_task(), got {future!r}"
            )
        return wait(future)

    def create_future(self) -> asyncio.Future[Any]:
        """A future of worker 0's loop, for code running there (as anyio's runner does)."""
        loop = self._worker0_loop()
        if threading.get_ident() != self._tg.grid.workers[0].thread.ident:
            raise NotImplementedError(
                f"{self!r}.create_future(): a future of worker 0's loop can only be made and "
                f"used on worker 0's thread, by code running on the grid"
            )
        return loop.create_future()

    async def shutdown_asyncgens(self) -> None:
        """Nothing to do here: closing the grid finishes every worker loop."""

    async def shutdown_default_executor(self, timeout: float | None = None) -> None:
        """Nothing to do here: closing the grid finishes every worker loop."""

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with self._lock:
            made, self._made = [m for m in self._made if not m.done()], []
        # asyncio.Runner.close cancels the tasks left on its loop, but finds them
        # with asyncio.all_tasks(self), which knows no handle: cancelled here.
        # What they spawned in turn is left to the leak check.
        cancel_and_wait(made, self._tg.timeout)
        finish(self._tg, defer=True)

    def is_closed(self) -> bool:
        return self._closed

    def is_running(self) -> bool:
        return False

    def get_debug(self) -> bool:
        return self._debug

    def set_debug(self, enabled: bool) -> None:
        self._debug = enabled
        for w in self._tg.grid.workers:
            w.loop.call_soon_threadsafe(w.loop.set_debug, enabled)

    def set_exception_handler(self, handler: ExceptionHandler | None) -> None:
        """Set ``handler`` on every worker loop of the grid.

        Set from pytest's thread, straight away rather than through a queued
        callback, so that no error raised in between reaches the old handler: a
        loop's handler is one attribute, which the loop reads when it reports.
        The handler is called on the thread of the loop that reports, with that
        loop as its first argument.
        """
        if handler is not None and not callable(handler):
            raise TypeError(f"A callable object or None is expected, got {handler!r}")
        self._exception_handler = handler
        for w in self._tg.grid.workers:
            w.loop.set_exception_handler(handler)

    def get_exception_handler(self) -> ExceptionHandler | None:
        return self._exception_handler

    def default_exception_handler(self, context: dict[str, Any]) -> None:
        """Log ``context`` as worker 0's loop would (asyncio's default handler only logs)."""
        self._worker0_loop().default_exception_handler(context)

    def call_soon_threadsafe(  # type: ignore[override]
        self,
        callback: Callable[..., object],
        *args: Any,
        context: contextvars.Context | None = None,
    ) -> asyncio.Handle:
        return self._worker0_loop().call_soon_threadsafe(callback, *args, context=context)

    def call_exception_handler(self, context: dict[str, Any]) -> None:
        loop = self._worker0_loop()
        loop.call_soon_threadsafe(loop.call_exception_handler, context)

    def _worker0_loop(self) -> asyncio.AbstractEventLoop:
        return self._tg.grid.workers[0].loop

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"{self!r} is closed")


#: What the backport of asyncio.Runner patches (see _undo_runner_backport_patches).
_COPY_CONTEXT = contextvars.copy_context
_TASK = asyncio.tasks.Task


def _undo_runner_backport_patches() -> None:
    """Put back what Python 3.10's backport of ``asyncio.Runner`` patched to call us.

    That backport (``backports.asyncio.runner``, pytest-asyncio's on 3.10) has
    no ``create_task(context=...)`` to call: it patches ``contextvars.copy_context``
    to return its context, and ``asyncio.tasks.Task``, for as long as it calls
    ``create_task``, in every thread at once. A worker running asyncio's loop
    (uvloop reads neither) would make its callbacks and tasks in that one
    context object meanwhile, and two workers entering it together fail with
    "cannot enter context: ... is already entered". ``create_task`` has read
    the context by now: the originals go back before the grid is touched (the
    backport puts back the same ones when ``create_task`` returns).
    """
    if sys.version_info >= (3, 11):
        return
    if contextvars.copy_context is not _COPY_CONTEXT:
        setattr(contextvars, "copy_context", _COPY_CONTEXT)  # noqa: B010
    if asyncio.tasks.Task is not _TASK:
        setattr(asyncio.tasks, "Task", _TASK)  # noqa: B010


def _not_here(name: str) -> Callable[..., Any]:
    def method(self: GridLoop, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(
            f"{self!r}.{name}(): this object only lets a runner drive worker 0 from pytest's "
            f"thread. Call {name}() on the worker's own loop, from code running on the grid "
            f"(asyncio.get_running_loop())."
        )

    method.__name__ = name
    return method


for _name, _value in vars(asyncio.AbstractEventLoop).items():
    if not _name.startswith("_") and callable(_value) and _name not in vars(GridLoop):
        setattr(GridLoop, _name, _not_here(_name))
del _name, _value
