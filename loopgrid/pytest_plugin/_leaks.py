"""Leak checks: the grids the plugin makes, and what is left on them when a test ends.

Why: a grid left with tasks or threads at the end of one test leaks them into
the next, and the test that left them passes. Every grid the plugin makes (for
the ``loopgrid`` marker, the ``loopgrid_grid`` fixture, or a
:class:`~loopgrid.pytest_plugin.GridLoop`) is a :class:`TestGrid`, checked by
:func:`finish` when it closes: a task still pending or running fails the test,
named with the ``file:line`` where it waits, and so does a worker thread that
does not stop. The grid is then closed with ``cancel=True``.

What a task awaits and what a thread runs is read with :mod:`loopgrid.introspect`,
as ``loopgrid ps`` and the stall monitor read it, so the three agree.

Which thread does what:

* pytest's thread asks for the report and closes the grid.
* Each worker's own thread collects the report for its loop (:func:`_probe`, a
  callback it runs between two task steps, so every stack it reads is at rest)
  and hands it back through a ``concurrent.futures.Future``. A worker that does
  not answer within the timeout is reported as stuck, with its thread's stack.
* Pending tasks are read from the run queues, from pytest's thread.
* A short-lived closer thread runs ``Grid.close``, so that a worker stuck in a
  blocking call fails the test after ``loopgrid_close_timeout`` seconds instead
  of hanging the session.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import threading
from collections.abc import Callable, Generator, Iterable
from typing import Any

import pytest

from ..grid import Grid
from ..handle import PENDING, Handle
from ..introspect import queued, task_where, tasks_of, thread_stack
from ..waitgraph import handle_of
from ._options import current_state

#: What the GridLoops closed during the current phase of a test found wrong.
_DEFERRED = pytest.StashKey[list[str]]()


class TestGrid:
    """A grid the plugin made, how long to wait for it to close, and when it ends."""

    __test__ = False  # not a test class, whatever its name

    def __init__(
        self,
        loops: int,
        name: str,
        ends: str,
        timeout: float,
        loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None,
    ) -> None:
        self.ends = ends
        self.timeout = timeout
        self.grid = Grid(loops, name=name, loop_factory=loop_factory)


@dataclasses.dataclass
class Leak:
    """One task (or one stuck worker) found on a grid."""

    id: int  # 0 for a stuck worker
    text: str
    handle: Handle[Any] | None = None


def live_tasks(grid: Grid, timeout: float) -> list[Leak]:
    """Every task of ``grid`` still pending or running, with where it waits.

    Running tasks are read by their own worker, between two steps; a worker
    that does not answer within ``timeout`` is reported as stuck, with the
    frame its thread is in. Pending tasks are read from the run queues.
    """
    if grid._closed:
        return []
    probes: list[tuple[int, concurrent.futures.Future[list[Leak]]]] = []
    for w in grid.workers:
        fut: concurrent.futures.Future[list[Leak]] = concurrent.futures.Future()
        try:
            w.loop.call_soon_threadsafe(_probe, w.loop, w.index, fut)
        except RuntimeError:  # the loop has closed: nothing runs there
            continue
        probes.append((w.index, fut))
    found: dict[int, Leak] = {}
    stuck: list[Leak] = []
    done, _ = concurrent.futures.wait([f for _, f in probes], timeout=timeout)
    for index, fut in probes:
        if fut in done:
            for leak in fut.result():
                found[leak.id] = leak
        else:
            thread = grid.workers[index].thread
            stuck.append(
                Leak(
                    0,
                    f"worker {index} did not answer within {timeout:g} s: its thread "
                    f"{thread.name!r} is blocked" + _thread_where(thread),
                )
            )
    for _queue, _worker, handles in queued(grid):
        for h in handles:
            if h._id not in found and h._state == PENDING:
                pin = "" if h._pin is None else f", pinned to worker {h._pin}"
                state = "paused, pending" if h._paused else "pending"
                found[h._id] = Leak(
                    h._id, f"task {h._name!r} (id {h._id}{pin}): {state}, never started", h
                )
    return sorted(found.values(), key=lambda r: r.id) + stuck


def _probe(
    loop: asyncio.AbstractEventLoop, index: int, fut: concurrent.futures.Future[list[Leak]]
) -> None:
    """On a worker's thread: the grid tasks of its loop that have not finished."""
    try:
        out = []
        for task in tasks_of(loop):
            h = handle_of(task)
            if h is None or h.done():
                continue
            text = f"task {h.name!r} (id {h.id}, {h.state.value} on worker {index})"
            where = task_where(task)
            if where:
                text += ", waiting at:\n" + "\n".join(f"      {line}" for line in where)
            out.append(Leak(h.id, text, h))
        fut.set_result(out)
    except BaseException as exc:  # report it rather than leave the main thread waiting
        fut.set_exception(exc)


def _thread_where(thread: threading.Thread) -> str:
    lines = thread_stack(thread, limit=8)
    if not lines:
        return ""
    return ", at (innermost first):\n" + "\n".join(f"      {line}" for line in lines)


def leak_message(grid: Grid, leaks: list[Leak], when: str) -> str:
    tasks = [r for r in leaks if r.id]
    lines = [
        f"loopgrid: {len(tasks)} task(s) of grid {grid.name!r} still pending or running {when}"
        " (they were cancelled):"
        if tasks
        else f"loopgrid: grid {grid.name!r} could not be checked {when}:"
    ]
    lines += [f"  {r.text}" for r in leaks]
    return "\n".join(lines)


def cancel_and_wait(handles: Iterable[Handle[Any]], timeout: float) -> None:
    """Cancel ``handles`` and wait, up to ``timeout`` seconds, for them to be done."""
    handles = list(handles)
    if not handles:
        return
    for h in handles:
        h.cancel()
    done = threading.Event()
    left = [len(handles)]
    lock = threading.Lock()

    def one_done(_: object) -> None:
        with lock:
            left[0] -= 1
            if left[0] == 0:
                done.set()

    for h in handles:
        h.add_done_callback(one_done)
    done.wait(timeout)
    for h in handles:
        if h.done() and not h.cancelled():
            h.exception()  # retrieved: no "never retrieved" log for a reported leak


def cancel_leaks(leaks: list[Leak], timeout: float) -> None:
    cancel_and_wait((r.handle for r in leaks if r.handle is not None), timeout)


def finish(tg: TestGrid, *, defer: bool = False) -> None:
    """Check ``tg``'s grid for leaks, close it with cancel=True, check its threads.

    What is wrong fails the test, there and then; or, with ``defer`` and while a
    test runs, when pytest reports the phase of the test that is running (see
    :func:`pytest_runtest_makereport`), so that the caller carries on.
    """
    __tracebackhide__ = True
    grid = tg.grid
    problems = []
    leaks = live_tasks(grid, tg.timeout)
    if leaks:
        problems.append(leak_message(grid, leaks, tg.ends))
    stuck = _close(grid, tg.timeout)
    if stuck:
        problems.append(
            f"loopgrid: {len(stuck)} thread(s) of grid {grid.name!r} did not stop within "
            f"{tg.timeout:g} s of close(cancel=True):\n"
            + "\n".join(f"  thread {t.name!r}{_thread_where(t)}" for t in stuck)
        )
    if problems:
        message = "\n".join(problems)
        st = current_state()
        if defer and st is not None and st.item is not None:
            st.item.stash.setdefault(_DEFERRED, []).append(message)
            return
        pytest.fail(message, pytrace=False)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Fail the phase of the test in which a GridLoop found leaks (setup, call or teardown).

    A :class:`~loopgrid.pytest_plugin.GridLoop` is closed by its runner, and
    anyio's runner does not survive an exception from ``loop.close()``: every
    later test would get the closed runner. So its findings wait for the report
    of the phase that closed it; if that phase failed already, they are added to
    its report as a section of their own.
    """
    report = yield
    messages = item.stash.get(_DEFERRED, None)
    if messages:
        text = "\n".join(messages)
        messages.clear()
        if report.failed:
            report.sections.append(("loopgrid: left on the grid", text))
        else:
            report.outcome = "failed"
            report.longrepr = text
    return report


def _close(grid: Grid, timeout: float) -> list[threading.Thread]:
    """Close ``grid`` (cancelling) on a closer thread; return its threads still alive."""
    closer = threading.Thread(
        target=grid.close, kwargs={"cancel": True}, name=f"loopgrid-{grid.name}-closer", daemon=True
    )
    closer.start()
    closer.join(timeout)
    threads = [w.thread for w in grid.workers] + [grid._monitor.thread]
    if not closer.is_alive():
        threads = [t for t in threads if t.is_alive()]
        return threads
    return [t for t in threads if t.is_alive()] or [closer]
