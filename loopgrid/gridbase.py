"""What every grid shares, whichever runs its workers: threads or Ray actors.

:class:`~loopgrid.Grid` (worker threads in this process) and
:class:`~loopgrid.ray.RayGrid` (worker processes on Ray) differ in how tasks
reach a worker, not in how a grid is named, refuses work once closing,
validates a worker index, or closes when a ``with`` block ends. Those live
here once; how both schedule (queues, claims, counters, drain) lives in
``core.py``, whose :class:`~loopgrid.core.SchedulingCore` extends this class
and sets and documents the fields read here (``name``, ``_closing``,
``_closed``, ``_paused``).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from typing import Any, TypeVar

from . import logs
from .errors import GridClosedError, check_timeout
from .fork import forked_error

__all__ = ["GridBase"]

_G = TypeVar("_G", bound="GridBase")


class GridBase:
    """The lifecycle and validation shared by the grids (not used on its own)."""

    name: str
    _closing: bool
    _closed: bool
    _paused: bool
    #: The parent's pid, in a child of fork(): this copy of the grid is dead
    #: (``fork.py``); None everywhere else.
    _forked_from: int | None = None
    #: How long ``_stop_workers`` waits for each worker (None: for ever): the
    #: ``timeout`` given to ``close()``, which never waits for ever with one.
    _join_timeout: float | None = None

    def __repr__(self) -> str:
        state = "closed" if self._closed else "closing" if self._closing else "open"
        return f"<{type(self).__name__} {self.name!r} loops={len(self.workers)} {state}>"

    @property
    def workers(self) -> Sequence[Any]:
        """The grid's workers, by index."""
        raise NotImplementedError

    @property
    def closed(self) -> bool:
        """True once ``close()`` has begun: the grid takes no more outside spawns."""
        return self._closing

    @property
    def paused(self) -> bool:
        """Whether :meth:`pause` holds the grid."""
        return self._paused

    _close_lock: threading.Lock

    def _live(self) -> int:
        """Tasks spawned and not yet finished (``core.py``)."""
        raise NotImplementedError

    def close(self, *, cancel: bool = False, timeout: float | None = None) -> None:
        """Drain (or cancel) every task, then stop the workers; idempotent.

        A failure or interrupt while draining switches to cancelling, then
        propagates; one while waiting for cancelled tasks gives up on them
        (:meth:`_abandon`), as ``asyncio.Runner.close`` gives up on its loop
        when interrupted. ``timeout`` (seconds) bounds each wait: tasks still
        running ``timeout`` s after the drain began are cancelled, and those
        still running ``timeout`` s after being cancelled (a task that
        swallows its cancellation) are given up on, with a warning. The
        workers are stopped either way.
        """
        timeout = check_timeout(timeout)
        if self._forked_from is not None:  # its threads are the parent's (fork.py)
            self._closed = True
            return
        with self._close_lock:
            if self._closed:
                return
            self._join_timeout = timeout
            try:
                ended = self._drain(cancel, timeout)
                if not ended and not cancel:
                    ended = self._drain(True, timeout)
                if not ended:
                    logs.warning(
                        "grid.close_gave_up",
                        grid=self.name,
                        tasks=self._live(),
                        waited=timeout,
                        hint="these tasks did not end when cancelled: their coroutines "
                        "are closed where they are and their handles end cancelled",
                    )
                    self._abandon()
            except BaseException:
                try:
                    if not cancel:
                        self._drain(True)
                except BaseException:
                    self._abandon()
                    raise
                if cancel:
                    self._abandon()
                raise
            finally:
                self._stop_workers()

    def _abandon(self) -> None:
        """Give up on the tasks that did not end when cancelled (a grid whose
        workers cannot be made to: nothing; stopping them ends them)."""

    def _drain(self, cancel: bool, timeout: float | None = None) -> bool:
        """Refuse new work, then wait until no task is pending or running, for
        up to ``timeout`` s; True if that happened."""
        raise NotImplementedError

    def _stop_workers(self) -> None:
        """Stop what runs the workers; sets ``_closed``."""
        raise NotImplementedError

    def _mark_forked(self, parent: int) -> None:
        """In a child of fork(): this copy is dead; its locks are made anew (a
        lock another thread of the parent held would stay held for ever)."""
        self._forked_from = parent
        self._closing = True
        self._close_lock = threading.Lock()

    def _refuse(self, fn: Any) -> None:
        if asyncio.iscoroutine(fn):
            fn.close()
        if self._forked_from is not None:
            raise forked_error(self, f"spawn({fn!r})")
        raise GridClosedError(f"{self!r} is closed: it does not take new tasks (got {fn!r})")

    def _check_worker_index(self, worker: object) -> None:
        if type(worker) is not int or not 0 <= worker < len(self.workers):
            raise ValueError(
                f"worker must be an int from 0 to {len(self.workers) - 1} for {self!r}, "
                f"got {worker!r}"
            )

    def _check_pausable(self) -> None:
        # Under the grid's control lock: close() lifts every pause under it once
        # _closing is set, so a pause taken after that would make close() wait
        # for ever.
        if self._closing:
            raise GridClosedError(f"{self!r} is closing: it cannot be paused")

    def __enter__(self: _G) -> _G:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self.close(cancel=exc_type is not None)

    async def __aenter__(self: _G) -> _G:
        return self

    async def __aexit__(self, exc_type: object, exc: object, tb: object) -> None:
        await asyncio.to_thread(self.close, cancel=exc_type is not None)
