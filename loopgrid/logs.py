"""Structured logs through structlog, with task context bound per task.

Every task runs with four structlog context variables bound (``grid``,
``worker``, ``task_id``, ``task``), so a user's own ``structlog`` calls inside a
task carry them (structlog's default processors include ``merge_contextvars``).

Where loopgrid's own events go: if the application configured structlog
(``structlog.is_configured()``), through its pipeline; otherwise through the
standard library logger ``"loopgrid"``, so that an application that configured
nothing sees warnings and errors on stderr (``logging.lastResort``) and no
chatter on stdout. Nothing is configured on import;
:func:`configure_logging` is the one helper that does configure.

Why structlog is imported late: it costs more than asyncio itself (with rich,
which its console renderer imports when installed), and most processes never
log anything through it. So ``import loopgrid`` does not import it; the first
event loopgrid writes does, or :func:`configure_logging`. An event that the
``"loopgrid"`` logger would filter out anyway, while nothing has imported
structlog (so nothing can have configured it), returns before that import: a
grid that runs without warnings and with logging left alone never imports it.

The four context variables are therefore plain :class:`contextvars.ContextVar`
objects, made here and named as structlog names its own
(``structlog_<key>``, with ``Ellipsis`` for "unbound"): ``merge_contextvars``
and ``get_contextvars`` find context variables by that name prefix. structlog
also keeps a registry of the variables it made, which ``bind_contextvars`` and
``unbind_contextvars`` use; so that a user's ``bind_contextvars(task=...)``
sets loopgrid's variable rather than a second one of the same name, ours are
entered in it: at once if structlog is already imported, else right after
``structlog.contextvars`` is first imported (a finder on ``sys.meta_path``,
``_afterimport.py``, removed once it has run).

Per-task events (spawn, steal, completion) are behind :data:`DEBUG_EVENTS`, a
module flag that is off by default: even a filtered structlog call costs
microseconds, and the hot path checks one global instead.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import sys
import threading
from collections import deque
from types import ModuleType
from typing import Any

from ._afterimport import AfterImport

__all__ = ["DEBUG_EVENTS", "configure_logging", "set_debug_events"]

#: When true, loopgrid logs an event per spawn, steal and completion (at debug).
DEBUG_EVENTS = False


def _exception_formatter(show_locals: bool) -> Any:
    """How tracebacks are rendered: never with local variables unless asked.

    structlog's console renderer, when rich is installed, prints each frame's
    local variables by default: passwords, tokens and connection URLs among
    them, for every "task exception was never retrieved". Logs travel further
    than the process that wrote them, so the default is a plain traceback.
    """
    import structlog

    if show_locals:
        return structlog.dev.RichTracebackFormatter(show_locals=True)
    return structlog.dev.plain_traceback


_stdlib_logger = logging.getLogger("loopgrid")
#: The pipeline used while structlog is not configured; made at first use.
_fallback: Any = None
_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


def _make_fallback() -> Any:
    import structlog

    return structlog.wrap_logger(
        _stdlib_logger,
        processors=[
            structlog.stdlib.filter_by_level,
            structlog.contextvars.merge_contextvars,
            structlog.dev.ConsoleRenderer(
                colors=False, exception_formatter=_exception_formatter(False)
            ),
        ],
        wrapper_class=structlog.stdlib.BoundLogger,
    )


def _logger() -> Any:
    import structlog

    if structlog.is_configured():
        return structlog.get_logger("loopgrid")
    global _fallback
    if _fallback is None:
        _fallback = _make_fallback()  # two threads may both make one: equal, harmless
    return _fallback


def _log(level: str, event: str, **kw: Any) -> None:
    if "structlog" not in sys.modules and not _stdlib_logger.isEnabledFor(_LEVELS[level]):
        # Nothing imported structlog, so nothing configured it: the fallback
        # pipeline would drop this event at its first processor (filter_by_level).
        return
    getattr(_logger(), level)(event, **kw)


def debug(event: str, **kw: Any) -> None:
    _log("debug", event, **kw)


def info(event: str, **kw: Any) -> None:
    _log("info", event, **kw)


def warning(event: str, **kw: Any) -> None:
    _log("warning", event, **kw)


def error(event: str, **kw: Any) -> None:
    _log("error", event, **kw)


def set_debug_events(enabled: bool) -> None:
    """Turn the per-task debug events (spawn, steal, completion) on or off."""
    global DEBUG_EVENTS
    DEBUG_EVENTS = bool(enabled)


def configure_logging(
    json: bool = False,
    level: str | int = "INFO",
    *,
    debug_events: bool | None = None,
    show_locals: bool = False,
) -> None:
    """Configure structlog (globally) for console or JSON output on stderr.

    A convenience for applications and examples: libraries should not call it.
    ``debug_events`` turns on per-task events; by default it follows
    ``level == "DEBUG"``. ``show_locals=True`` prints each traceback frame's
    local variables on the console (it needs rich): useful while debugging,
    and a risk anywhere logs are kept or shipped, since locals hold
    passwords, tokens and connection strings.
    """
    lvl = logging.getLevelName(level.upper()) if isinstance(level, str) else level
    if not isinstance(lvl, int):
        raise ValueError(f"level must be a logging level name or number, got {level!r}")
    import structlog

    renderer: Any = (
        structlog.processors.JSONRenderer()
        if json
        else structlog.dev.ConsoleRenderer(
            colors=sys.stderr.isatty(), exception_formatter=_exception_formatter(show_locals)
        )
    )
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso"),
    ]
    if json:
        processors += [structlog.processors.dict_tracebacks]
    processors.append(renderer)
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(lvl),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=False,
    )
    set_debug_events(lvl <= logging.DEBUG if debug_events is None else debug_events)


# -- context bound per task -----------------------------------------------------

#: structlog.contextvars.STRUCTLOG_KEY_PREFIX: how merge_contextvars tells its
#: context variables from others (tests/test_import_cost.py checks it).
_KEY_PREFIX = "structlog_"


def _registry(module: ModuleType | None) -> dict[str, contextvars.ContextVar[Any]] | None:
    """structlog's name -> ContextVar registry (``_CONTEXT_VARS``, private,
    unchanged since 21.1), or None if this structlog has none."""
    registry = getattr(module, "_CONTEXT_VARS", None)
    return registry if isinstance(registry, dict) else None


def _task_var(key: str) -> contextvars.ContextVar[Any]:
    name = _KEY_PREFIX + key
    var: contextvars.ContextVar[Any] = contextvars.ContextVar(name, default=Ellipsis)
    registry = _registry(sys.modules.get("structlog.contextvars"))
    if registry is not None:
        # structlog came first: the variable it made if a key was bound already.
        var = registry.setdefault(name, var)
    return var


GRID_VAR = _task_var("grid")
WORKER_VAR = _task_var("worker")
TASK_ID_VAR = _task_var("task_id")
TASK_VAR = _task_var("task")


def _register_task_vars(module: ModuleType) -> None:
    """structlog.contextvars has just been executed: enter our variables in
    its registry before anything can bind those keys."""
    try:
        sys.meta_path.remove(_structlog_finder)
    except ValueError:
        pass
    registry = _registry(module)
    if registry is not None:
        for var in (GRID_VAR, WORKER_VAR, TASK_ID_VAR, TASK_VAR):
            registry.setdefault(var.name, var)


_structlog_finder = AfterImport("structlog.contextvars", _register_task_vars)
if "structlog.contextvars" not in sys.modules:
    sys.meta_path.insert(0, _structlog_finder)


# -- exceptions nobody retrieved ------------------------------------------------

#: Errors waiting to be logged: appended by any thread (a finalizer), drained
#: by flush_unretrieved on any thread (atomic deque ops).
_unretrieved: deque[tuple[BaseException, int, str, str]] = deque()
#: Set by the reporter that schedules a flush, cleared by the flush before it
#: drains: a report that sees it set is drained by that flush. Two reporters
#: may both schedule one (harmless). A flush scheduled on a loop that then
#: closes without running it leaves it set until the closing grid's own flush.
_flush_scheduled = threading.Event()


class UnretrievedGuard:
    """Owned by a failed handle alone; reports its error if nobody retrieved it.

    A finalizer registered on the handle would hold the exception, whose
    traceback frames can hold the handle: the handle would never be collected.
    The guard sits inside that cycle instead, so the cycle collector frees it
    and runs ``__del__`` (PEP 442), as the old ``asyncio._TracebackLogger`` did.
    ``loop`` is the worker loop the task failed on, where the log record is
    written if the handle dies on a thread that runs no loop.
    """

    __slots__ = ("exc", "grid", "loop", "name", "task_id")

    def __init__(
        self,
        exc: BaseException,
        task_id: int,
        name: str,
        grid: str,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self.exc: BaseException | None = exc
        self.task_id = task_id
        self.name = name
        self.grid = grid
        self.loop = loop

    def __del__(self) -> None:
        exc = self.exc
        if exc is not None:
            self.exc = None
            report_unretrieved(exc, self.task_id, self.name, self.grid, self.loop)


def report_unretrieved(
    exc: BaseException,
    task_id: int,
    name: str,
    grid: str,
    loop: asyncio.AbstractEventLoop | None = None,
) -> None:
    """Called when a failed handle is collected before anyone looked at its error.

    This runs from a finalizer, possibly inside garbage collection, where logging
    a traceback can crash the interpreter (CPython gh-106905). So it only queues
    the error; the log record is written by :func:`flush_unretrieved`, scheduled
    on this thread's running loop, else on ``loop``; every grid also flushes as
    it closes, and so does interpreter exit.
    """
    _unretrieved.append((exc, task_id, name, grid))
    if _flush_scheduled.is_set():
        return
    running = asyncio._get_running_loop()
    target = running if running is not None else loop
    if target is None:
        return
    _flush_scheduled.set()
    try:
        if target is running:
            target.call_soon(flush_unretrieved)
        else:
            target.call_soon_threadsafe(flush_unretrieved)
    except RuntimeError:  # that loop is closed: the grid's close flushed or will
        _flush_scheduled.clear()


def flush_unretrieved() -> None:
    """Log every queued unretrieved exception, as asyncio does for futures."""
    _flush_scheduled.clear()
    while True:
        try:
            exc, task_id, name, grid = _unretrieved.popleft()
        except IndexError:
            return
        error(
            "task exception was never retrieved",
            grid=grid,
            task_id=task_id,
            task=name,
            exc_info=(type(exc), exc, exc.__traceback__),
        )
