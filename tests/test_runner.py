"""loopgrid.run and loopgrid.Runner: the asyncio.run / asyncio.Runner look-alikes."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import pytest
from helpers import WAIT, forever, grid_threads, worker_threads

import loopgrid


async def main_info() -> tuple[int, str, int]:
    w = loopgrid.current_worker()
    return w.index, threading.current_thread().name, len(loopgrid.current_grid().workers)


def test_run_returns_the_result_and_runs_main_on_worker_0() -> None:
    index, thread_name, loops = loopgrid.run(main_info(), loops=2)
    assert index == 0
    assert thread_name.startswith("loopgrid-") and thread_name.endswith("-0")
    assert loops == 2
    assert grid_threads() == []


def test_run_default_loops() -> None:
    _, _, loops = loopgrid.run(main_info())
    assert loops == (os.cpu_count() or 1)


def test_run_propagates_exceptions() -> None:
    class Boom(Exception):
        pass

    async def main() -> None:
        raise Boom("main failed")

    with pytest.raises(Boom, match="main failed"):
        loopgrid.run(main(), loops=2)
    assert grid_threads() == []


def test_run_spawned_tasks_work_and_leftovers_are_cancelled() -> None:
    async def main() -> tuple[int, Any, Any]:
        children = [loopgrid.spawn(_double, i) for i in range(10)]
        total = sum([await c for c in children])
        running = loopgrid.spawn(forever)
        pending_low = loopgrid.spawn(forever, priority=loopgrid.Priority.LOW, worker=1)
        return total, running, pending_low

    total, running, other = loopgrid.run(main(), loops=2)
    assert total == sum(2 * i for i in range(10))
    assert running.cancelled()
    assert other.cancelled()
    assert grid_threads() == []


async def _double(x: int) -> int:
    await asyncio.sleep(0)
    return 2 * x


def test_run_finalizes_async_generators_and_plain_asyncio_tasks() -> None:
    finalized = threading.Event()
    task_cancelled = threading.Event()
    keep: list[Any] = []

    async def agen() -> Any:
        try:
            yield 1
            yield 2
        finally:
            finalized.set()

    async def plain_task() -> None:
        try:
            await forever()
        except asyncio.CancelledError:
            task_cancelled.set()
            raise

    async def main() -> int:
        g = agen()
        keep.append(g)  # still referenced: only loop shutdown can finalize it
        keep.append(asyncio.get_running_loop().create_task(plain_task()))
        first: int = await g.__anext__()
        return first

    assert loopgrid.run(main(), loops=2) == 1
    assert finalized.is_set()
    assert task_cancelled.is_set()
    assert grid_threads() == []


def test_run_with_asyncio_loop_factory_and_debug() -> None:
    async def main() -> tuple[bool, bool]:
        loop = asyncio.get_running_loop()
        return loop.get_debug(), isinstance(loop, asyncio.BaseEventLoop)

    assert loopgrid.run(main(), loops=1, debug=True, loop_factory=asyncio.new_event_loop) == (
        True,
        True,
    )


def test_runner_runs_several_mains_on_one_grid() -> None:
    async def grid_of() -> loopgrid.Grid:
        return loopgrid.current_grid()

    async def add(a: int, b: int) -> int:
        return a + b

    with loopgrid.Runner(loops=2) as runner:
        g1 = runner.run(grid_of())
        assert runner.run(add(1, 2)) == 3
        g2 = runner.run(grid_of())
        assert g1 is g2 is runner.get_grid()
        assert len(g1.workers) == 2
        assert not g1.closed
    assert g1.closed
    assert grid_threads() == []
    coro = add(1, 1)
    with pytest.raises(RuntimeError, match="closed"):
        runner.run(coro)
    coro.close()
    runner.close()  # idempotent


def test_runner_lazy_grid_and_close_without_run() -> None:
    runner = loopgrid.Runner(loops=1)
    assert grid_threads() == []
    g = runner.get_grid()
    assert len(worker_threads()) == 1
    runner.close()
    assert g.closed
    assert grid_threads() == []


@pytest.mark.asyncio
async def test_run_from_a_running_loop_raises_and_closes_the_coroutine() -> None:
    coro = main_info()
    with pytest.raises(RuntimeError, match="running event loop"):
        loopgrid.run(coro)
    assert coro.cr_frame is None
    with loopgrid.Runner(loops=1) as runner:
        coro2 = main_info()
        with pytest.raises(RuntimeError, match="running event loop"):
            runner.run(coro2)
        assert coro2.cr_frame is None


def test_run_rejects_non_coroutines() -> None:
    with pytest.raises(ValueError, match="main_info"):
        loopgrid.run(main_info)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="42"):
        loopgrid.run(42)  # type: ignore[arg-type]
    with loopgrid.Runner(loops=1) as runner, pytest.raises(ValueError, match="coroutine"):
        runner.run(main_info)  # type: ignore[arg-type]
    assert grid_threads() == []


_SIGINT_SCRIPT = textwrap.dedent(
    """
    import asyncio, signal, sys
    import loopgrid

    # A shell starting this in the background may have set SIGINT to "ignore",
    # which the child inherits; Python then installs no handler. Ctrl-C is
    # what this test is about, so put Python's default one back.
    signal.signal(signal.SIGINT, signal.default_int_handler)

    async def child():
        await asyncio.Event().wait()

    async def main():
        h = loopgrid.spawn(child, worker=1)
        try:
            print("ready", flush=True)
            await asyncio.Event().wait()
        finally:
            print("main cleanup", flush=True)
            await asyncio.sleep(0)

    try:
        loopgrid.run(main(), loops=2)
    except KeyboardInterrupt:
        import threading
        left = [t.name for t in threading.enumerate() if t.name.startswith("loopgrid-")]
        print("KeyboardInterrupt threads-left=%d" % len(left), flush=True)
        sys.exit(3)
    """
)


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT delivery via os.kill is POSIX-only")
def test_ctrl_c_cancels_main_then_raises_keyboard_interrupt(tmp_path: Path) -> None:
    script = tmp_path / "sigint_main.py"
    script.write_text(_SIGINT_SCRIPT)
    proc = subprocess.Popen(
        [sys.executable, str(script)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=WAIT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 3, (out, err)
    assert "main cleanup" in out
    assert "KeyboardInterrupt threads-left=0" in out
