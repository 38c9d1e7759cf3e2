"""The standing fault suite (issue 22, item 7): each fault injected into a grid
that has a mixed load on it, then the same three checks after every one.

- Nothing hangs: every wait is bounded by ``WAIT``, close() included (it runs
  on a helper thread that is joined with that bound).
- Nothing is lost: every handle ends in exactly one final state, and the
  grid's counters agree with the handles, state by state (``spawned ==
  completed + failed + cancelled``, none pending or running).
- No thread outlives its grid: the threads alive after close are those alive
  before the grid was made.

A fault is a function that gets a :class:`Run` (the grid, its load, the
handles spawned so far) and injects one failure, checking what is particular
to it (the error a caller sees, the log line). The shared checks are in
:func:`test_fault`. Faults tested in depth elsewhere (tests/test_shutdown.py,
test_fork.py, test_debug_endpoint.py, test_metrics.py, test_runner.py) are
injected here again only to see them under load and through the same checks.

Run them alone with ``pytest -m faults``. A new fault is one more function in
``FAULTS``.
"""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from helpers import (
    WAIT,
    Gate,
    LogCatcher,
    fail,
    forever,
    grid_threads,
    identity,
    wait_until,
)

import loopgrid
import loopgrid.grid as grid_module
from loopgrid import Grid, GridClosedError, TaskState, WorkerDiedError

pytestmark = pytest.mark.faults

FINAL = (TaskState.COMPLETED, TaskState.FAILED, TaskState.CANCELLED)
LOOPS = 2


class Run:
    """One fault's grid, its load and every handle spawned on it.

    Spawn through :meth:`spawn` so that the final checks see the handle.
    ``close_kwargs`` is how the harness closes the grid; ``release`` whether it
    lets the load's waiting tasks end first (a close that cancels, or times
    out, ends them instead); ``goes_on`` whether the grid must still run a new
    task after the fault.
    """

    def __init__(self, grid: Grid) -> None:
        self.grid = grid
        self.handles: list[Any] = []
        self.gate = Gate()
        self.close_kwargs: dict[str, Any] = {}
        self.release = True
        self.goes_on = True

    def spawn(self, fn: Any, *args: Any, **kw: Any) -> Any:
        h = self.grid.spawn(fn, *args, **kw)
        self.handles.append(h)
        return h

    def load(self) -> None:
        """A mixed load: tasks that complete, fail, wait on the gate (pinned
        to each worker or free), one paused while running, one pending."""
        for i in range(20):
            self.spawn(identity, i)
        failing = [self.spawn(fail, f"load {i}") for i in range(5)]
        for h in failing:  # retrieved: no "never retrieved" log at close
            assert isinstance(h.exception(WAIT), ValueError)
        running = [self.spawn(self.gate.wait, worker=w) for w in range(LOOPS) for _ in range(2)]
        running += [self.spawn(self.gate.wait) for _ in range(4)]
        assert wait_until(lambda: all(h.state is TaskState.RUNNING for h in running))
        assert running[0].pause()
        queued = self.spawn(identity, "paused before it ran")
        assert queued.pause() or queued.done()  # it may have run already

    def wait_dead(self, index: int) -> None:
        """Until worker ``index``'s thread has ended (its loop died)."""
        w = self.grid.workers[index]
        w.thread.join(WAIT)
        assert not w.thread.is_alive(), f"worker {index} did not die"
        assert w.loop.is_closed()


def _raise(exc: type[BaseException]) -> None:
    raise exc()


def _kill(grid: Grid, index: int, exc: type[BaseException] = SystemExit) -> None:
    """An exception asyncio lets out of a loop, from a callback on worker ``index``."""
    grid.workers[index].loop.call_soon_threadsafe(_raise, exc)


async def _swallows_cancellation() -> None:
    while True:
        try:
            await forever()
        except asyncio.CancelledError:
            continue


# -- the faults ----------------------------------------------------------------------


def systemexit_in_a_done_callback(run: Run) -> None:
    """The issue's reproduction: a done callback raises SystemExit on the
    worker that finished the task, killing that worker's loop."""
    g = run.grid
    g.pause()
    h = run.spawn(identity, "done", worker=1)
    h.add_done_callback(lambda _: sys.exit(1))
    g.resume()
    run.wait_dead(1)
    assert h.result(WAIT) == "done"  # a completed task's result is not lost with its worker
    with pytest.raises(WorkerDiedError, match="worker 1"):
        g.spawn(identity, "pinned to the dead", worker=1)


def keyboardinterrupt_in_a_callback(run: Run) -> None:
    _kill(run.grid, 0, KeyboardInterrupt)
    run.wait_dead(0)


def a_worker_dies_while_the_grid_is_paused(run: Run) -> None:
    """close() must lift the pause itself, with one worker gone."""
    run.grid.pause()
    _kill(run.grid, 1)
    run.wait_dead(1)
    run.goes_on = False  # held by the pause until close() lifts it


def every_worker_dies(run: Run) -> None:
    """No worker is left: spawns are refused, what was queued ends cancelled,
    nothing waits for ever."""
    run.grid.pause()
    queued = run.spawn(identity, "queued")  # held by the pause
    for i in range(LOOPS):
        _kill(run.grid, i)
    for i in range(LOOPS):
        run.wait_dead(i)
    with pytest.raises(asyncio.CancelledError, match=r"every worker .* died .*SystemExit"):
        queued.result(WAIT)
    with pytest.raises(WorkerDiedError, match="every worker"):
        run.grid.spawn(identity, "nowhere to run")
    run.goes_on = False


def exceptions_escaping_callbacks(run: Run) -> None:
    """An Exception (not a BaseException) out of a loop callback, or out of a
    done callback on either kind of thread, is reported and kills nothing."""
    g = run.grid
    raised = threading.Event()

    def bad() -> None:
        raised.set()
        raise ValueError("from a loop callback")

    for w in g.workers:
        raised.clear()
        w.loop.call_soon_threadsafe(bad)
        assert raised.wait(WAIT)
    with LogCatcher("callback.failed") as caught:
        h = run.spawn(identity, "cb", worker=1)
        assert h.result(WAIT) == "cb"
        h.add_done_callback(lambda _: _raise(RuntimeError))  # done: runs here, at once
        assert caught.seen.is_set()

    async def adds_a_bad_callback() -> None:
        inner = loopgrid.spawn(identity, 1)
        inner.add_done_callback(lambda _: _raise(RuntimeError))  # runs on this loop
        await inner

    run.handles.append(run.spawn(adds_a_bad_callback, worker=0))
    assert run.handles[-1].result(WAIT) is None
    # Every worker still runs tasks pinned to it.
    for i in range(LOOPS):
        assert run.spawn(identity, i, worker=i).result(WAIT) == i
        assert g.workers[i].thread.is_alive()


def tasks_pinned_to_a_dying_worker(run: Run) -> None:
    """Tasks queued on worker 1 when it dies end cancelled, naming it."""
    g = run.grid
    blocking = threading.Event()
    release = threading.Event()

    def block_then_die() -> None:
        blocking.set()
        assert release.wait(WAIT)
        raise SystemExit(3)

    g.workers[1].loop.call_soon_threadsafe(block_then_die)
    assert blocking.wait(WAIT)
    pinned = [run.spawn(identity, i, worker=1) for i in range(5)]
    release.set()
    run.wait_dead(1)
    for h in pinned:
        with pytest.raises(asyncio.CancelledError, match=r"worker 1 .* died \(SystemExit\(3\)\)"):
            h.result(WAIT)
    with pytest.raises(WorkerDiedError, match="worker 1"):
        g.spawn(identity, "late", worker=1)


def a_worker_dies_while_close_drains(run: Run) -> None:
    g = run.grid
    closer = threading.Thread(target=g.close)
    closer.start()
    try:
        assert wait_until(lambda: g.closed)  # close() has begun
        _kill(g, 1)
        run.wait_dead(1)
        run.gate.set()
    finally:
        closer.join(WAIT)
    assert not closer.is_alive(), "close() did not return"
    run.goes_on = False


def close_cancel_timeout_with_tasks_that_swallow_cancellation(run: Run) -> None:
    for w in range(LOOPS):
        run.spawn(_swallows_cancellation, worker=w)
    run.spawn(_swallows_cancellation)
    run.close_kwargs = {"cancel": True, "timeout": 0.05}
    run.release = False


def close_timeout_with_tasks_that_never_end(run: Run) -> None:
    run.spawn(_swallows_cancellation, worker=0)
    run.spawn(forever, worker=1)
    run.close_kwargs = {"timeout": 0.05}
    run.release = False


def a_fork_child_uses_the_parents_grid(run: Run) -> None:
    from test_fork import in_child

    g = run.grid
    pending = run.spawn(run.gate.wait)

    def check() -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, fn in (
            ("spawn", lambda: g.spawn(identity, 1)),
            ("result", lambda: pending.result(timeout=WAIT)),
        ):
            try:
                out[key] = repr(fn())
            except GridClosedError as exc:
                out[key] = f"GridClosedError: {exc}"
        g.close()
        out["closed"] = g.closed
        return out

    out = in_child(check)
    assert out["spawn"].startswith("GridClosedError") and "fork" in out["spawn"], out
    assert out["result"].startswith("GridClosedError"), out
    assert out["closed"] is True


def _cut_off(client: socket.socket) -> bool:
    """Whether the server closed ``client``'s connection: an orderly end, or a
    reset where the server closed before it had accepted the connection (the
    kernel resets what waits in a closed listener's backlog)."""
    try:
        return client.recv(1) == b""
    except ConnectionResetError:
        return True


def an_idle_client_on_the_debug_endpoint(run: Run) -> Iterator[None]:
    server = run.grid._debug_server
    assert server is not None
    idle = socket.create_connection(("127.0.0.1", server.port), timeout=WAIT)
    trickle = socket.create_connection(("127.0.0.1", server.port), timeout=WAIT)
    trickle.sendall(b"GET /stats HTT")
    try:
        yield  # close() does not wait for them...
        assert _cut_off(idle) and _cut_off(trickle)  # ...and they were cut off
    finally:
        idle.close()
        trickle.close()


def an_idle_client_on_the_metrics_endpoint(run: Run) -> Iterator[None]:
    pytest.importorskip("prometheus_client", reason="the metrics endpoint needs prometheus_client")
    from loopgrid import metrics

    server = metrics.serve(run.grid)
    idle = socket.create_connection(("127.0.0.1", server.port), timeout=WAIT)
    try:
        yield  # the grid's close stops the exporter without waiting for the client
        assert _cut_off(idle)
    finally:
        idle.close()


Fault = Callable[[Run], "Iterator[None] | None"]
FAULTS: list[Any] = [
    systemexit_in_a_done_callback,
    keyboardinterrupt_in_a_callback,
    a_worker_dies_while_the_grid_is_paused,
    every_worker_dies,
    exceptions_escaping_callbacks,
    tasks_pinned_to_a_dying_worker,
    a_worker_dies_while_close_drains,
    close_cancel_timeout_with_tasks_that_swallow_cancellation,
    close_timeout_with_tasks_that_never_end,
    pytest.param(
        a_fork_child_uses_the_parents_grid,
        marks=pytest.mark.skipif(not hasattr(os, "fork"), reason="fork() is POSIX-only"),
    ),
    an_idle_client_on_the_debug_endpoint,
    an_idle_client_on_the_metrics_endpoint,
]
GRID_OPTIONS: dict[Any, dict[str, Any]] = {
    an_idle_client_on_the_debug_endpoint: {"debug_port": 0},
    # asyncio's loop stops at the exception, before the dispatcher call the
    # pinned spawns queued behind it (uvloop's runs the rest of its batch
    # first: those tasks could run before the worker dies).
    tasks_pinned_to_a_dying_worker: {"loop_factory": asyncio.new_event_loop},
}


def _close_bounded(grid: Grid, **kwargs: Any) -> None:
    errors: list[BaseException] = []

    def close() -> None:
        try:
            grid.close(**kwargs)
        except BaseException as exc:
            errors.append(exc)

    closer = threading.Thread(target=close, daemon=True)
    closer.start()
    closer.join(WAIT)
    assert not closer.is_alive(), f"{grid!r}.close(**{kwargs}) did not return"
    assert errors == [], errors


@pytest.mark.filterwarnings("error::pytest.PytestUnhandledThreadExceptionWarning")
@pytest.mark.parametrize("fault", FAULTS)
def test_fault(fault: Fault) -> None:
    before = set(threading.enumerate())
    run = Run(Grid(LOOPS, name=fault.__name__, **GRID_OPTIONS.get(fault, {})))
    try:
        run.load()
        during = fault(run)
        if run.goes_on:
            assert run.spawn(identity, "after").result(WAIT) == "after"
        if run.release:
            run.gate.set()
        if during is not None:
            next(during)  # the fault's checks around close()
        _close_bounded(run.grid, **run.close_kwargs)
        if during is not None:
            with pytest.raises(StopIteration):
                next(during)
    finally:
        run.gate.set()
        _close_bounded(run.grid, cancel=True)  # (a no-op after a close that returned)

    # Nothing is lost: one final state each, and the counters agree.
    states = {s: 0 for s in FINAL}
    for h in run.handles:
        assert h.done(), h
        assert h.state in FINAL, h
        assert h.cancelled() == (h.state is TaskState.CANCELLED), h
        states[h.state] += 1
    totals = run.grid.stats()["totals"]
    assert totals["pending"] == totals["running"] == 0, totals
    assert totals["spawned"] == len(run.handles), totals
    assert totals["completed"] == states[TaskState.COMPLETED], totals
    assert totals["failed"] == states[TaskState.FAILED], totals
    assert totals["cancelled"] == states[TaskState.CANCELLED], totals
    assert totals["spawned"] == totals["completed"] + totals["failed"] + totals["cancelled"]
    # No thread outlives the grid.
    assert grid_threads() == []
    assert all(w.loop.is_closed() and not w.thread.is_alive() for w in run.grid.workers)
    assert [t for t in threading.enumerate() if t not in before] == []


# -- found by bench/soak.py --------------------------------------------------------------


async def _stepping() -> None:
    while True:
        await asyncio.sleep(0.001)


def test_a_held_task_cancelled_just_before_its_worker_resumes() -> None:
    """A task held by its paused worker, cancelled and released in the same
    turn of its loop (the cancel first): its gate is already cancelled when
    the release comes. It ends cancelled, and nothing is reported to the
    loop's exception handler (it was: InvalidStateError from the release,
    seen by the soak with worker pauses and cancels from several threads)."""
    reported: list[dict[str, Any]] = []
    with Grid(2, loop_factory=asyncio.new_event_loop) as g:
        w = g.workers[1]
        w.loop.call_soon_threadsafe(w.loop.set_exception_handler, lambda _, c: reported.append(c))
        h = g.spawn(_stepping, worker=1)
        assert wait_until(lambda: h.state is TaskState.RUNNING)
        w.pause()
        assert wait_until(lambda: len(w._held) == 1)  # held on its gate
        blocking, release = threading.Event(), threading.Event()

        def block() -> None:
            blocking.set()
            assert release.wait(WAIT)

        w.loop.call_soon_threadsafe(block)
        assert blocking.wait(WAIT)
        h.cancel()  # queued on worker 1's loop first...
        w.resume()  # ...then the release
        release.set()
        with pytest.raises(asyncio.CancelledError):
            h.result(WAIT)
        assert g.spawn(identity, "on", worker=1).result(WAIT) == "on"
    assert reported == []


# -- what close() cannot end ----------------------------------------------------------


def test_close_with_a_timeout_leaves_a_thread_blocked_for_ever(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The decision (Grid.close's docstring; docs/scheduling.md, "Shutdown"):
    a task that blocks its worker's thread cannot be ended from outside, so
    ``close(timeout=)`` returns, leaving that thread running (named in an
    error log, with its stack) and its tasks as they are; everything else
    closes. When the call returns, the worker gives up on its tasks and the
    thread exits: then every handle has ended and no thread is left."""
    blocking, release = threading.Event(), threading.Event()

    async def blocks_its_thread() -> None:
        blocking.set()
        assert release.wait(WAIT)  # a blocking call: "for ever", until the test lets go
        await forever()  # back on its loop: given up on

    monkeypatch.setattr(grid_module, "JOIN_GRACE", 1.0)  # the least wait for threads
    g = Grid(2, name="stuck")
    try:
        stuck = g.spawn(blocks_its_thread, worker=1)
        others = [g.spawn(forever, worker=0), g.spawn(identity, 1, worker=0)]
        assert blocking.wait(WAIT)
        queued = g.spawn(identity, 2, worker=1)  # behind the blocked call
        with LogCatcher("grid.close_left_thread") as left:
            _close_bounded(g, cancel=True, timeout=0.05)
        assert [m for m in left.messages if "worker=1" in m and "blocks_its_thread" in m]
        g.workers[0].thread.join(WAIT)  # (left too, on a machine too busy for the grace)
        assert g.closed and not g.workers[0].thread.is_alive()
        assert g.workers[1].thread.is_alive() and g.workers[1].thread.daemon
        assert grid_threads() == [g.workers[1].thread]  # monitor and worker 0 stopped
        assert others[0].cancelled() and others[1].done()
        assert queued.cancelled()  # never started: cancelled by close
        assert stuck.state is TaskState.RUNNING  # it is: its call has not returned
        with pytest.raises(GridClosedError):
            g.spawn(identity, 3)
    finally:
        release.set()
    g.workers[1].thread.join(WAIT)
    assert not g.workers[1].thread.is_alive() and g.workers[1].loop.is_closed()
    assert stuck.cancelled()
    totals = g.stats()["totals"]
    assert totals["pending"] == totals["running"] == 0
    assert totals["spawned"] == totals["completed"] + totals["failed"] + totals["cancelled"] == 4
    assert grid_threads() == []
