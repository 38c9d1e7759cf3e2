"""loopgrid: asyncio on several event loops at once, scheduled like Go's runtime.

Each worker is an event loop (uvloop when installed) on its own thread with a
local priority run queue; idle workers steal pending tasks from busy ones; a
:class:`Handle` is a future that any loop can await and any thread can wait on.
See the README and docs/ for the why and the how.
"""

from .decorator import TaskFunction, task
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
from .looplocal import LoopLocal
from .priority import Priority
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
from .worker import Worker, current_worker

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
