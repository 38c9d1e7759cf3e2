"""Small synchronisation helpers shared by the tests (no sleeps, no timing)."""

from __future__ import annotations

import asyncio
import logging
import os
import sysconfig
import threading
from typing import Any

import pytest

#: A free-threaded build (3.13t and later).
FREE_THREADED = bool(sysconfig.get_config_var("Py_GIL_DISABLED"))

#: SQLAlchemy's asyncio runs its synchronous core on greenlets; greenlet has
#: not declared free-threading support, and it crashed the interpreter with the
#: GIL disabled (3.13t, PYTHON_GIL=0, greenlet 3.5).
needs_greenlet = pytest.mark.skipif(
    FREE_THREADED,
    reason="greenlet (SQLAlchemy's asyncio) crashes free-threaded builds with the GIL off",
)

#: Upper bound for any blocking wait in the tests: a guard against hangs, never
#: an assertion about speed. A test that reaches it has failed for another reason.
WAIT = 30.0
#: The same guard for a stress test's whole run: thousands of cross-thread
#: hand-overs take 2-5 s on 3.13t alone, and 13-57 s beside two CPU-burning
#: processes (test_sync's lock and queue stresses, measured to the end).
STRESS_WAIT = 4 * WAIT


class Countdown:
    """A latch that plain threads wait on until ``hit()`` was called ``n`` times.

    ``hit()`` is thread-safe: tasks on any worker count down concurrently.
    """

    def __init__(self, n: int) -> None:
        self._left = n
        self._lock = threading.Lock()
        self._done = threading.Event()

    def hit(self) -> None:
        with self._lock:
            self._left -= 1
            if self._left == 0:
                self._done.set()

    def wait(self, timeout: float) -> bool:
        return self._done.wait(timeout)


class Gate:
    """A one-shot event that coroutines on any loop, and plain threads, can wait on.

    ``set()`` may be called from any thread. Coroutines await ``wait()`` on their
    own loop; threads call ``wait_sync()``.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._flag = threading.Event()
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []

    def is_set(self) -> bool:
        return self._flag.is_set()

    def set(self) -> None:
        with self._lock:
            self._flag.set()
            waiters, self._waiters = self._waiters, []
        for loop, fut in waiters:
            try:
                loop.call_soon_threadsafe(_resolve, fut)
            except RuntimeError:
                pass  # that loop is closed: its waiter is gone

    async def wait(self) -> None:
        loop = asyncio.get_running_loop()
        with self._lock:
            if self._flag.is_set():
                return
            fut: asyncio.Future[None] = loop.create_future()
            self._waiters.append((loop, fut))
        await fut

    def wait_sync(self, timeout: float = WAIT) -> bool:
        return self._flag.wait(timeout)


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


async def forever() -> None:
    """A task that only ends by being cancelled."""
    await asyncio.Event().wait()


async def identity(x: Any) -> Any:
    return x


async def fail(msg: str = "boom") -> None:
    raise ValueError(msg)


def block_worker(grid: Any, worker: int = 0) -> tuple[Any, threading.Event]:
    """Occupy ``worker``'s thread synchronously until the returned event is set.

    Returns (handle of the blocker, release event); the blocker has started (and
    holds its thread) when this returns. The release event must be set before
    the grid closes.
    """
    started = threading.Event()
    release = threading.Event()

    async def blocker() -> None:
        started.set()
        assert release.wait(WAIT), "blocker was never released"

    h = grid.spawn(blocker, worker=worker, name="blocker")
    assert started.wait(WAIT), "blocker did not start"
    return h, release


def step_over(grid: Any, worker: int) -> None:
    """Return once the step that ``worker``'s loop runs now (if any) is over.

    A callback queued from here runs on that loop only after the callback
    running there now: a task seen to start (an event it set) has reached
    its next suspension when this returns.
    """
    done = threading.Event()
    grid.workers[worker].loop.call_soon_threadsafe(done.set)
    assert done.wait(WAIT), f"worker {worker}'s loop never came back"


def quiet_child_env() -> dict[str, str]:
    """The environment, less ``PYTHONASYNCIODEBUG``, for a child whose output a test reads.

    The suite is also run with asyncio's debug mode on (the environment
    variable reaches every child). There each Task records the stack that
    made it, reading source files: on a loaded machine that took 0.17-0.87 s
    in a child, which asyncio then prints as a slow callback and the
    monitor reports as a stall, with that stack rather than the one the
    test looks for (seen on 3.13t beside two CPU-burning processes).
    """
    env = dict(os.environ)
    env.pop("PYTHONASYNCIODEBUG", None)
    return env


#: Grid threads alive when the current test began (set by conftest.py). Only a
#: test that failed leaves threads behind; later tests look past them.
baseline: set[int | None] = set()


def grid_threads() -> list[threading.Thread]:
    """Live loopgrid worker threads that the current test started."""
    return [
        t
        for t in threading.enumerate()
        if t.name.startswith("loopgrid-") and t.ident not in baseline
    ]


class LogCatcher(logging.Handler):
    """Collects the messages of the stdlib ``"loopgrid"`` logger that contain
    ``needle`` (at ``level`` and above) while used as a context manager;
    ``seen`` is set at the first one."""

    def __init__(self, needle: str, level: int = logging.ERROR) -> None:
        super().__init__(level=level)
        self.needle = needle
        self.messages: list[str] = []
        self.seen = threading.Event()
        self._logger = logging.getLogger("loopgrid")
        self._old_level = self._logger.level

    def emit(self, record: logging.LogRecord) -> None:
        msg = record.getMessage()
        if self.needle in msg:
            self.messages.append(msg)
            self.seen.set()

    def __enter__(self) -> LogCatcher:
        self._old_level = self._logger.level
        self._logger.addHandler(self)
        self._logger.setLevel(self.level)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._logger.removeHandler(self)
        self._logger.setLevel(self._old_level)


def worker_threads() -> list[threading.Thread]:
    """The grid threads that run worker loops (not monitors or servers)."""
    return [t for t in grid_threads() if t.name.rpartition("-")[2].isdigit()]


def wait_until(predicate: Any, timeout: float = WAIT) -> bool:
    """Poll ``predicate`` until true. Only for states that have no event to wait
    on (such as "close() has begun"); returns False if it never became true."""
    pause = threading.Event()
    for _ in range(int(timeout / 0.001)):
        if predicate():
            return True
        pause.wait(0.001)
    return bool(predicate())


def close_or_fail(grid: Any, *, cancel: bool = False, timeout: float = WAIT) -> None:
    """``grid.close()`` on a helper thread, so that a close that never returns
    fails the test instead of hanging the suite."""
    closer = threading.Thread(target=grid.close, kwargs={"cancel": cancel}, daemon=True)
    closer.start()
    closer.join(timeout)
    assert not closer.is_alive(), f"{grid!r}.close(cancel={cancel}) did not return"
