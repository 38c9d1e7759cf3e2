"""Task priorities.

Four levels, as the scheduler documents loopgrid answers asked for (RealTime,
High, Normal, Low). On one worker, of the tasks pending at the same moment, a
higher level always starts first; aging (see :class:`~loopgrid.Grid`) bounds how
long a lower level can wait.
"""

from __future__ import annotations

from enum import IntEnum

__all__ = ["Priority", "check_priority"]


class Priority(IntEnum):
    """Scheduling priority of a task; higher values start first."""

    LOW = 0
    NORMAL = 1
    HIGH = 2
    CRITICAL = 3


_BY_VALUE = tuple(Priority)


def check_priority(priority: object) -> Priority:
    """Return ``priority`` as a :class:`Priority`, or raise naming the bad value."""
    if priority.__class__ is Priority:
        return priority  # type: ignore[return-value,unused-ignore]
    if type(priority) is int and 0 <= priority <= 3:
        return _BY_VALUE[priority]
    raise ValueError(
        f"priority must be a loopgrid.Priority or an int from 0 (LOW) to 3 (CRITICAL), "
        f"got {priority!r}"
    )
