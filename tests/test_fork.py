"""A child of fork() refuses the grids of its parent (loopgrid/fork.py).

fork() copies a process with only the thread that called it: the parent's
grids have no workers in the child. Each check runs in the child, which
reports through a pipe; the parent waits for it with a bounded wait.
"""

from __future__ import annotations

import asyncio
import json
import os
import warnings
from collections.abc import Callable
from typing import Any

import pytest
from helpers import WAIT, forever, identity

import loopgrid
from loopgrid import Grid, GridClosedError

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="fork() is POSIX-only")


def in_child(check: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Run ``check`` in a forked child; its JSON-able result, or its error."""
    read, write = os.pipe()
    with warnings.catch_warnings():
        # 3.12+ warns that fork() in a process with threads may deadlock: the
        # very case this module handles.
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 0
        try:
            out = check()
        except BaseException as exc:
            out = {"error": f"{type(exc).__name__}: {exc}"}
            code = 1
        with os.fdopen(write, "w") as f:
            json.dump(out, f)
        os._exit(code)
    os.close(write)
    with os.fdopen(read) as f:
        text = f.read()  # EOF when the child exits
    _, status = os.waitpid(pid, 0)
    result: dict[str, Any] = json.loads(text)
    assert os.waitstatus_to_exitcode(status) == 0, result
    return result


def _error_of(fn: Callable[[], Any]) -> str:
    try:
        fn()
    except GridClosedError as exc:
        return str(exc)
    return "no error"


def test_the_child_refuses_the_parents_grid_and_can_make_its_own() -> None:
    with Grid(2) as grid:
        pending = grid.spawn(forever)

        def check() -> dict[str, Any]:
            spawned = _error_of(lambda: grid.spawn(identity, 1))
            waited = _error_of(lambda: pending.result(timeout=WAIT))

            async def awaiting() -> Any:
                return await pending

            awaited = _error_of(lambda: asyncio.run(awaiting()))
            grid.close()  # returns: nothing to wait for here
            with Grid(1) as own:  # a grid made in the child works
                answer = own.spawn(identity, 42).result(timeout=WAIT)
            return {
                "spawned": spawned,
                "waited": waited,
                "awaited": awaited,
                "closed": grid.closed,
                "answer": answer,
            }

        out = in_child(check)
        # The parent's grid is untouched by its child's doings.
        assert grid.spawn(identity, 7).result(timeout=WAIT) == 7
        pending.cancel()
    for key in ("spawned", "waited", "awaited"):
        assert f"belongs to process {os.getpid()}" in out[key], out[key]
        assert "Make grids after the fork" in out[key] and "'spawn' start method" in out[key]
    assert out["closed"] is True and out["answer"] == 42


def test_loopgrid_run_works_in_a_child_forked_from_a_process_with_a_grid() -> None:
    async def main() -> int:
        return sum(await asyncio.gather(*(loopgrid.spawn(identity, i) for i in range(10))))

    with Grid(1):
        out = in_child(lambda: {"total": loopgrid.run(main(), loops=2)})
    assert out == {"total": 45}
