"""The cross-loop Barrier: asyncio's algorithm on a :class:`~loopgrid.Condition`.

Thread ownership: ``_state`` and ``_count`` are read and written only with the
condition's lock held (``n_waiting``, ``broken`` and ``repr`` read them
without it, as snapshots).
"""

from __future__ import annotations

import enum
import sys
from collections.abc import Callable

from ..mailbox import running_loop
from ._waiter import TASK, THREAD, Waits, begin_blocking, not_on_asyncio_error, run_blocking
from .condition import Condition

__all__ = ["Barrier", "BrokenBarrierError"]

if sys.version_info >= (3, 11):
    from asyncio import BrokenBarrierError
else:

    class BrokenBarrierError(RuntimeError):
        """Raised by a :class:`Barrier` that is broken or reset (asyncio's from 3.11)."""


class _BarrierState(enum.Enum):
    FILLING = "filling"
    DRAINING = "draining"
    RESETTING = "resetting"
    BROKEN = "broken"


_FILLING = _BarrierState.FILLING
_DRAINING = _BarrierState.DRAINING
_RESETTING = _BarrierState.RESETTING
_BROKEN = _BarrierState.BROKEN


class Barrier:
    """A barrier for ``parties`` tasks (on any loops) and plain threads.

    As :class:`asyncio.Barrier` (3.11): ``await barrier.wait()`` (or ``async
    with barrier``) waits until ``parties`` callers wait, then releases them
    all and returns each its arrival index (0 to parties - 1); the barrier
    then fills again. ``await reset()`` sends :class:`BrokenBarrierError` to
    the waiters and starts over; ``await abort()`` breaks it for good. A
    cancelled waiter leaves without breaking it. Plain threads use
    ``wait_blocking(timeout)``, ``reset_blocking()`` and ``abort_blocking()``;
    a thread's timeout breaks the barrier, as in :class:`threading.Barrier`.
    """

    __slots__ = ("__weakref__", "_cond", "_count", "_parties", "_state")

    def __init__(self, parties: int) -> None:
        if isinstance(parties, bool) or not isinstance(parties, int):
            raise TypeError(f"Barrier parties must be an int > 0, got {parties!r}")
        if parties < 1:
            raise ValueError(f"parties must be > 0, got {parties!r}")
        self._cond = Condition()
        self._parties = parties
        self._state = _FILLING
        self._count = 0

    def __repr__(self) -> str:
        extra = self._state.value
        if not self.broken:
            extra += f", waiters:{self.n_waiting}/{self.parties}"
        return f"<loopgrid.Barrier object at {id(self):#x} [{extra}]>"

    async def __aenter__(self) -> int:
        return await self.wait()

    async def __aexit__(self, *args: object) -> None:
        pass

    @property
    def parties(self) -> int:
        """The number of callers that pass the barrier together."""
        return self._parties

    @property
    def n_waiting(self) -> int:
        """How many callers wait in the barrier while it fills."""
        return self._count if self._state is _FILLING else 0

    @property
    def broken(self) -> bool:
        return self._state is _BROKEN

    # -- async ------------------------------------------------------------------------

    async def wait(self) -> int:
        """Wait for the barrier to fill; returns this caller's arrival index.

        Raises :class:`BrokenBarrierError` if the barrier is broken, or is
        reset or aborted while this caller waits.
        """
        self._on_asyncio("wait")
        return await self._wait(TASK, None)

    async def reset(self) -> None:
        """Return the barrier to its empty state; waiters get BrokenBarrierError."""
        self._on_asyncio("reset")
        await self._locked(TASK, self._reset)

    async def abort(self) -> None:
        """Break the barrier: waiters, and later callers, get BrokenBarrierError."""
        self._on_asyncio("abort")
        await self._locked(TASK, self._break)

    def _on_asyncio(self, method: str) -> None:
        if running_loop() is None:
            raise not_on_asyncio_error(self, method)

    # -- blocking ---------------------------------------------------------------------

    def wait_blocking(self, timeout: float | None = None) -> int:
        """:meth:`wait` from a plain thread. If ``timeout`` seconds pass first, the
        barrier breaks and BrokenBarrierError is raised (as in threading.Barrier).
        Raises :class:`~loopgrid.WouldBlockError` on a thread that runs an event loop."""
        deadline = begin_blocking("Barrier.wait_blocking()", self, timeout)
        return run_blocking(self._wait(THREAD, deadline))

    def reset_blocking(self) -> None:
        """:meth:`reset` from a plain thread."""
        begin_blocking("Barrier.reset_blocking()", self)
        run_blocking(self._locked(THREAD, self._reset))

    def abort_blocking(self) -> None:
        """:meth:`abort` from a plain thread."""
        begin_blocking("Barrier.abort_blocking()", self)
        run_blocking(self._locked(THREAD, self._break))

    # -- the cores, for tasks and threads ------------------------------------------------

    async def _wait(self, how: Waits, deadline: float | None) -> int:
        cond = self._cond
        lock = cond._lock
        await lock._acquire(how, how.node(lock), None)
        try:
            if not await cond._wait_for(how, self._passable, deadline):
                self._break()
                raise BrokenBarrierError("Barrier timed out")
            if self._state is _BROKEN:
                raise BrokenBarrierError("Barrier aborted")
            try:
                index = self._count
                self._count += 1
                if index + 1 == self._parties:
                    self._drain()
                else:
                    if not await cond._wait_for(how, self._released, deadline):
                        self._break()
                        raise BrokenBarrierError("Barrier timed out")
                    if self._state in (_BROKEN, _RESETTING):
                        raise BrokenBarrierError("Abort or reset of barrier")
                return index
            finally:
                self._count -= 1
                self._exit()
        finally:
            lock.release()

    async def _locked(self, how: Waits, change: Callable[[], None]) -> None:
        lock = self._cond._lock
        await lock._acquire(how, how.node(lock), None)
        try:
            change()
        finally:
            lock.release()

    # -- with the condition's lock held -------------------------------------------------

    def _passable(self) -> bool:
        """Not draining or resetting: a newcomer may enter (or see it broken)."""
        return self._state is not _DRAINING and self._state is not _RESETTING

    def _released(self) -> bool:
        return self._state is not _FILLING

    def _drain(self) -> None:
        self._state = _DRAINING
        self._cond.notify_all()

    def _exit(self) -> None:
        if self._count == 0:
            if self._state is _RESETTING or self._state is _DRAINING:
                self._state = _FILLING
            self._cond.notify_all()

    def _reset(self) -> None:
        if self._count > 0:
            if self._state is not _RESETTING:
                self._state = _RESETTING
        else:
            self._state = _FILLING
        self._cond.notify_all()

    def _break(self) -> None:
        self._state = _BROKEN
        self._cond.notify_all()
