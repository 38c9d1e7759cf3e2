"""Logging: task context in structlog contextvars, JSON output, and errors
nobody retrieved."""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import threading
import weakref
from typing import Any

import pytest
import structlog
from helpers import WAIT, LogCatcher

import loopgrid
from loopgrid import Grid, logs


async def context_of() -> dict[str, Any]:
    return dict(structlog.contextvars.get_contextvars())


def test_task_context_is_bound_in_structlog_contextvars() -> None:
    with Grid(2, name="ctxgrid") as g:
        for i in range(2):
            h = g.spawn(context_of, worker=i, name=f"probe-{i}")
            ctx = h.result(WAIT)
            assert ctx["grid"] == "ctxgrid"
            assert ctx["worker"] == i
            assert ctx["task_id"] == h.id
            assert ctx["task"] == f"probe-{i}"


def test_child_task_context_is_its_own() -> None:
    async def parent() -> tuple[dict[str, Any], dict[str, Any], int]:
        child = loopgrid.spawn(context_of, name="child")
        inner = await child
        return inner, dict(structlog.contextvars.get_contextvars()), child.id

    with Grid(1, name="nest") as g:
        h = g.spawn(parent, name="parent")
        inner, outer, child_id = h.result(WAIT)
    assert inner["task"] == "child"
    assert inner["task_id"] == child_id
    assert outer["task"] == "parent"
    assert outer["task_id"] == h.id


def test_context_does_not_leak_to_the_spawner() -> None:
    with Grid(1) as g:
        g.spawn(context_of).result(WAIT)
    assert "task_id" not in structlog.contextvars.get_contextvars()


def test_configure_logging_json_lines(capsys: pytest.CaptureFixture[str]) -> None:
    loopgrid.configure_logging(json=True)

    async def chatty() -> None:
        structlog.get_logger().info("hello from task", answer=42)

    with Grid(1, name="jsongrid") as g:
        h = g.spawn(chatty, name="chatty")
        h.result(WAIT)
    err = capsys.readouterr().err
    records = [json.loads(line) for line in err.splitlines() if line.strip()]
    hello = [r for r in records if r["event"] == "hello from task"]
    assert len(hello) == 1
    r = hello[0]
    assert r["answer"] == 42
    assert r["grid"] == "jsongrid"
    assert r["worker"] == 0
    assert r["task_id"] == h.id
    assert r["task"] == "chatty"
    assert r["level"] == "info"
    assert "timestamp" in r
    events = {r["event"] for r in records}
    assert {"grid.started", "grid.closed"} <= events


def test_configure_logging_debug_events(capsys: pytest.CaptureFixture[str]) -> None:
    loopgrid.configure_logging(json=True, level="DEBUG")
    assert logs.DEBUG_EVENTS
    with Grid(1) as g:
        h = g.spawn(context_of, name="dbg")
        h.result(WAIT)
    records = [json.loads(x) for x in capsys.readouterr().err.splitlines() if x.strip()]
    spawned = [r for r in records if r["event"] == "task.spawned" and r.get("task") == "dbg"]
    assert len(spawned) == 1
    completed = [r for r in records if r["event"] == "task.completed" and r.get("task") == "dbg"]
    assert len(completed) == 1


def test_configure_logging_rejects_a_bad_level() -> None:
    with pytest.raises(ValueError, match="NOPE"):
        loopgrid.configure_logging(level="NOPE")


async def _boom(tag: str) -> None:
    raise ValueError(f"unretrieved {tag}")


def _fail_and_forget(g: Grid, tag: str) -> None:
    h = g.spawn(_boom, tag, name=f"forgotten-{tag}")
    finished = threading.Event()
    h.add_done_callback(lambda _: finished.set())  # waits without retrieving
    assert finished.wait(WAIT)
    assert h.state is loopgrid.TaskState.FAILED
    del h
    gc.collect()


def _unretrieved_messages(caplog: pytest.LogCaptureFixture, tag: str) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "loopgrid"
        and r.levelno == logging.ERROR
        and "never retrieved" in r.getMessage()
        and f"unretrieved {tag}" in r.getMessage()
    ]


def test_unretrieved_exception_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="loopgrid")
    with Grid(2) as g:
        _fail_and_forget(g, "A")
    # The grid has closed, which flushes the queue of unretrieved errors.
    msgs = _unretrieved_messages(caplog, "A")
    assert len(msgs) == 1
    assert "forgotten-A" in msgs[0]


def test_unretrieved_exception_is_logged_through_configured_structlog() -> None:
    with structlog.testing.capture_logs() as captured, Grid(1) as g:
        _fail_and_forget(g, "B")
    hits = [
        e
        for e in captured
        if e["event"] == "task exception was never retrieved" and e.get("task") == "forgotten-B"
    ]
    assert len(hits) == 1
    assert hits[0]["log_level"] == "error"


def test_a_forgotten_failed_handle_is_freed_without_the_cycle_collector() -> None:
    """Once nobody holds a failed handle, reference counting frees it (and
    its unretrieved-error guard reports at once). On 3.12+ the stored
    traceback's first frame links back, through ``f_back``, to the frames that
    stepped the task (the driver, and for an eager first step the dispatcher),
    whose locals are kept: a handle left there would sit in a cycle until the
    next collection, and a ``gc.collect()`` made while the worker was still
    finishing that step (which happened without a GIL) missed it."""
    gc.collect()
    gc.disable()
    try:
        with Grid(1) as g:
            h = g.spawn(_boom, "freed")
            finished = threading.Event()
            h.add_done_callback(lambda _: finished.set())
            assert finished.wait(WAIT)
            # A loop round trip: the step that failed has returned.
            asyncio.run_coroutine_threadsafe(asyncio.sleep(0), g.workers[0].loop).result(WAIT)
            ref = weakref.ref(h)
            del h
            assert ref() is None
    finally:
        gc.enable()


@pytest.mark.parametrize("how", ["result", "exception", "await"])
def test_retrieved_exception_is_not_logged(caplog: pytest.LogCaptureFixture, how: str) -> None:
    caplog.set_level(logging.ERROR, logger="loopgrid")

    async def awaiter(h: Any) -> str:
        try:
            await h
        except ValueError as exc:
            return str(exc)
        return "no error"

    with Grid(2) as g:
        h = g.spawn(_boom, how)
        if how == "result":
            with pytest.raises(ValueError):
                h.result(WAIT)
        elif how == "exception":
            assert isinstance(h.exception(WAIT), ValueError)
        else:
            assert g.spawn(awaiter, h).result(WAIT) == f"unretrieved {how}"
        del h
        gc.collect()
    assert _unretrieved_messages(caplog, how) == []


def test_unretrieved_exception_is_logged_while_the_grid_is_still_open() -> None:
    """The handle dies on a plain thread (no loop there): the record is written
    on the worker loop the task failed on, without waiting for close()."""
    with LogCatcher("unretrieved C") as logs, Grid(1) as g:
        _fail_and_forget(g, "C")
        assert logs.seen.wait(WAIT), "not logged while the grid was open"
    assert "never retrieved" in logs.messages[0]


async def _fail_holding_a_secret() -> None:
    password = "hunter2-secret"  # a local, as a database URL or a token would be
    raise ValueError(f"failed with a {len(password)}-character password")


@pytest.mark.parametrize("configured", [False, True])
def test_tracebacks_in_logs_show_no_local_variables(
    caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str], configured: bool
) -> None:
    """rich is installed in the test environment, where structlog's console
    renderer would print every frame's locals by default."""
    caplog.set_level(logging.ERROR, logger="loopgrid")
    if configured:
        loopgrid.configure_logging(level="ERROR")
    try:
        with Grid(1) as g:
            h = g.spawn(_fail_holding_a_secret, name="secretive")
            finished = threading.Event()
            h.add_done_callback(lambda _: finished.set())
            assert finished.wait(WAIT)
            del h
            gc.collect()
    finally:
        structlog.reset_defaults()
    logged = capsys.readouterr().err + "".join(r.getMessage() for r in caplog.records)
    assert "failed with a 14-character password" in logged  # the traceback is there
    assert "_fail_holding_a_secret" in logged
    assert "hunter2-secret" not in logged
