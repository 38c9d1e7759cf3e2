"""loopgrid: asyncio on several event loops at once, scheduled like Go's runtime.

Each worker is an event loop (uvloop when installed) on its own thread with a
local priority run queue; idle workers steal pending tasks from busy ones; a
:class:`Handle` is a future that any loop can await and any thread can wait on.
See the README and docs/ for the why and the how.
"""

from typing import TYPE_CHECKING, Any

from .errors import (
    DeadlockError,
    GridClosedError,
    LoopgridError,
    NotOnGridError,
    WorkerDiedError,
    WouldBlockError,
)
from .grid import Grid, current_grid, spawn
from .handle import Handle, TaskState
from .logs import configure_logging
from .priority import Priority
from .worker import Worker, current_worker

if TYPE_CHECKING:
    from .decorator import TaskFunction, task
    from .looplocal import LoopLocal
    from .runner import Runner, run
    from .sync import (
        Barrier,
        BoundedSemaphore,
        BrokenBarrierError,
        Condition,
        Event,
        LifoQueue,
        Lock,
        PriorityQueue,
        Queue,
        QueueShutDown,
        Semaphore,
    )
    from .taskgroup import TaskGroup

#: Names imported from their module at first use (PEP 562), and the module.
#: Why: ``import loopgrid`` should cost little more than ``import asyncio``
#: (issue 23; ``bench/bench_import.py``), and these modules (the cross-loop
#: primitives, the runner, the decorator, task groups, LoopLocal) are about a
#: quarter of loopgrid's own import. Type checkers read the imports above.
_LAZY = {
    "TaskFunction": "decorator",
    "task": "decorator",
    "LoopLocal": "looplocal",
    "Runner": "runner",
    "run": "runner",
    "TaskGroup": "taskgroup",
    **dict.fromkeys(
        (
            "Barrier",
            "BoundedSemaphore",
            "BrokenBarrierError",
            "Condition",
            "Event",
            "LifoQueue",
            "Lock",
            "PriorityQueue",
            "Queue",
            "QueueShutDown",
            "Semaphore",
        ),
        "sync",
    ),
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None and name in _LAZY.values():
        module, name = name, ""  # the submodule itself: ``loopgrid.sync``
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib import import_module

    value = import_module(f"{__name__}.{module}")
    if name:
        value = getattr(value, name)
        globals()[name] = value  # later lookups find it without this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


__all__ = [
    "Barrier",
    "BoundedSemaphore",
    "BrokenBarrierError",
    "Condition",
    "DeadlockError",
    "Event",
    "Grid",
    "GridClosedError",
    "Handle",
    "LifoQueue",
    "Lock",
    "LoopLocal",
    "LoopgridError",
    "NotOnGridError",
    "Priority",
    "PriorityQueue",
    "Queue",
    "QueueShutDown",
    "Runner",
    "Semaphore",
    "TaskFunction",
    "TaskGroup",
    "TaskState",
    "Worker",
    "WorkerDiedError",
    "WouldBlockError",
    "configure_logging",
    "current_grid",
    "current_worker",
    "run",
    "spawn",
    "task",
]

__version__ = "0.1.0"
