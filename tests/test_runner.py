"""loopgrid.run and loopgrid.Runner: the asyncio.run / asyncio.Runner look-alikes."""

from __future__ import annotations

import asyncio
import contextvars
import gc
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
async def test_run_from_a_running_loop_raises_and_leaves_the_coroutine_unawaited() -> None:
    # As asyncio (test_asyncio_run_from_running_loop, test_recursive_run): the
    # coroutine is not closed, so it warns that it was never awaited.
    coro = main_info()
    with pytest.raises(RuntimeError, match=r"loopgrid\.run\(\) cannot be called from a running"):
        loopgrid.run(coro)
    assert coro.cr_frame is not None
    coro.close()
    with loopgrid.Runner(loops=1) as runner:
        coro2 = main_info()
        with pytest.raises(RuntimeError, match=r"Runner\.run\(\) cannot be called from a running"):
            runner.run(coro2)
        assert coro2.cr_frame is not None
        coro2.close()


def test_recursive_run_warns_that_the_coroutine_was_never_awaited() -> None:
    async def g() -> None:
        pass

    async def f() -> None:
        runner.run(g())

    with loopgrid.Runner(loops=1) as runner:  # noqa: SIM117
        with pytest.warns(RuntimeWarning, match="coroutine .+ was never awaited"):
            with pytest.raises(
                RuntimeError, match=r"Runner\.run\(\) cannot be called from a running"
            ):
                runner.run(f())
            gc.collect()


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


# -- ported from CPython's Lib/test/test_asyncio/test_runners.py -------------------


def test_runner_get_loop_is_worker_0s_and_is_closed_with_the_runner() -> None:
    async def f() -> str:
        await asyncio.sleep(0)
        return "done"

    with loopgrid.Runner(loops=2) as runner:
        assert runner.run(f()) == "done"
        loop = runner.get_loop()
        assert loop is runner.get_grid().workers[0].loop
    with pytest.raises(RuntimeError, match="Runner is closed"):
        runner.get_loop()
    assert loop.is_closed()
    runner.close()  # a second close does nothing
    assert grid_threads() == []


def test_runner_explicit_close_and_second_with_block() -> None:
    ret: list[int] = []

    async def f(arg: int) -> None:
        ret.append(arg)

    runner = loopgrid.Runner(loops=1)
    loop = runner.get_loop()
    with runner:
        runner.run(f(1))
    assert loop.is_closed()
    with pytest.raises(RuntimeError, match="Runner is closed"):  # noqa: SIM117
        with runner:
            runner.run(f(2))
    assert ret == [1]
    assert grid_threads() == []


@pytest.mark.parametrize("factory", [None, asyncio.new_event_loop])
@pytest.mark.parametrize("debug", [True, False])
def test_runner_debug(debug: bool, factory: Any) -> None:
    async def main() -> bool:
        return asyncio.get_running_loop().get_debug()

    with loopgrid.Runner(loops=2, debug=debug, loop_factory=factory) as runner:
        assert runner.get_loop().get_debug() is debug
        assert all(w.loop.get_debug() is debug for w in runner.get_grid().workers)
        assert runner.run(main()) is debug
    assert loopgrid.run(main(), loops=1, debug=debug, loop_factory=factory) is debug


def test_runner_custom_factory() -> None:
    made: list[asyncio.AbstractEventLoop] = []

    def factory() -> asyncio.AbstractEventLoop:
        loop = asyncio.new_event_loop()
        made.append(loop)
        return loop

    with loopgrid.Runner(loops=2, loop_factory=factory) as runner:
        assert runner.get_loop() in made
        assert len(made) == 2


def test_run_non_coro_and_future() -> None:
    with loopgrid.Runner(loops=1) as runner:
        with pytest.raises(ValueError, match="a coroutine was expected"):
            runner.run(123)  # type: ignore[arg-type]
        fut = runner.get_loop().create_future()
        with pytest.raises(ValueError, match="a coroutine was expected"):
            runner.run(fut)  # type: ignore[arg-type]


@pytest.mark.skipif(
    sys.version_info < (3, 11),
    reason="3.10's asyncio.Task takes no context= (it runs in a copy): no asyncio.Runner there",
)
def test_run_keeps_context() -> None:
    cvar: contextvars.ContextVar[int] = contextvars.ContextVar("cvar", default=-1)

    async def f(val: int) -> int:
        old = cvar.get()
        await asyncio.sleep(0)
        cvar.set(val)
        return old

    async def get_context() -> contextvars.Context:
        return contextvars.copy_context()

    with loopgrid.Runner(loops=2) as runner:
        assert runner.run(f(1)) == -1
        assert runner.run(f(2)) == 1
        assert runner.run(get_context()).get(cvar) == 2
        ctx = contextvars.Context()
        assert runner.run(f(3), context=ctx) == -1
        assert ctx.get(cvar) == 3
        assert runner.run(f(4)) == 2  # the runner's own context again
    assert cvar.get() == -1  # the caller's is untouched


def test_no_repr_is_called_on_the_task_result() -> None:
    class MyResult:
        repr_count = 0

        def __repr__(self) -> str:
            self.repr_count += 1
            return super().__repr__()

    async def coro() -> MyResult:
        return MyResult()

    with loopgrid.Runner(loops=1) as runner:
        result = runner.run(coro())
    assert result.repr_count == 0


def test_run_reports_hanging_tasks_errors_to_the_exception_handler() -> None:
    reports: list[dict[str, Any]] = []
    plain: list[Any] = []

    async def leftover() -> None:
        try:
            await forever()
        except asyncio.CancelledError:
            1 / 0  # noqa: B018

    async def main() -> tuple[int, Any]:
        for w in loopgrid.current_grid().workers:
            w.loop.set_exception_handler(lambda loop, ctx: reports.append(ctx))
        plain.append(asyncio.get_running_loop().create_task(leftover()))
        return 123, loopgrid.spawn(leftover, worker=1)

    result, handle = loopgrid.run(main(), loops=2)
    assert result == 123
    assert plain[0].done() and handle.done()
    assert len(reports) == 2, reports
    assert {id(r["task"]) for r in reports} == {id(plain[0]), id(handle)}
    for r in reports:
        assert "loopgrid.run() shutdown" in r["message"]
        assert isinstance(r["exception"], ZeroDivisionError)
    assert grid_threads() == []


def test_run_closes_gens_after_hanging_tasks_errors() -> None:
    spinner: list[Any] = []
    lazyboy: list[Any] = []

    class FancyExit(Exception):
        pass

    async def fidget() -> Any:
        while True:
            yield 1
            await forever()

    async def spin() -> None:
        spinner.append(fidget())
        try:
            async for _ in spinner[0]:
                pass
        except asyncio.CancelledError:
            1 / 0  # noqa: B018

    async def main() -> None:
        asyncio.get_running_loop().set_exception_handler(lambda loop, ctx: None)
        lazyboy.append(asyncio.get_running_loop().create_task(spin()))
        await asyncio.sleep(0)
        raise FancyExit

    with pytest.raises(FancyExit):
        loopgrid.run(main(), loops=1)
    assert lazyboy[0].done()
    assert spinner[0].ag_frame is None
    assert not spinner[0].ag_running


def _raise_keyboard_interrupt() -> None:
    raise KeyboardInterrupt


# A worker thread that ended with the exception would warn (pytest's threadexception plugin).
@pytest.mark.filterwarnings("error::pytest.PytestUnhandledThreadExceptionWarning")
@pytest.mark.parametrize("exc", [SystemExit, KeyboardInterrupt])
@pytest.mark.parametrize("worker", [0, 1])
@pytest.mark.parametrize("factory", [None, asyncio.new_event_loop])
def test_an_exception_escaping_a_worker_loop_is_raised_by_run(
    exc: type[BaseException], worker: int, factory: Any
) -> None:
    """As asyncio.run: SystemExit or KeyboardInterrupt out of a callback stops
    the loop and is raised by run(), on whichever worker it happens; the dead
    worker's tasks are cancelled and their cleanup runs; no thread is left."""
    before = set(threading.enumerate())
    handles: dict[str, Any] = {}
    cleaned = threading.Event()
    main_cancelled = threading.Event()

    def die() -> None:
        if exc is SystemExit:
            sys.exit(5)
        _raise_keyboard_interrupt()

    async def dies() -> None:
        asyncio.get_running_loop().call_soon(die)
        try:
            await forever()
        finally:
            await asyncio.sleep(0)  # the loop's finish awaits cleanup, as asyncio's does
            cleaned.set()

    async def main() -> None:
        try:
            if worker == 0:
                await dies()
            handles["dies"] = loopgrid.spawn(dies, worker=worker)
            await forever()
        except asyncio.CancelledError:
            main_cancelled.set()  # by the dead loop's finish, or by close()
            raise

    with pytest.raises(exc) as info:
        loopgrid.run(main(), loops=2, loop_factory=factory)
    if exc is SystemExit:
        assert info.value.code == 5
    assert cleaned.is_set()
    assert main_cancelled.is_set()
    if worker == 1:
        assert handles["dies"].cancelled()
    assert [t for t in threading.enumerate() if t not in before] == []


def test_a_runner_whose_worker_died_refuses_to_run_again() -> None:
    async def exit_on_worker_1() -> None:
        async def exits() -> None:
            asyncio.get_running_loop().call_soon(sys.exit, 2)
            await forever()

        await loopgrid.spawn(exits, worker=1)

    async def nothing() -> None:
        pass

    with loopgrid.Runner(loops=2) as runner:
        with pytest.raises(SystemExit):
            runner.run(exit_on_worker_1())
        coro = nothing()
        lost = r"lost worker 1 to SystemExit\(2\).+close the runner"
        with pytest.raises(RuntimeError, match=lost):
            runner.run(coro)
        coro.close()
    assert grid_threads() == []


# -- Ctrl-C, as asyncio.Runner (3.11+) or asyncio.run (3.10) ------------------------

_CTRL_C_PRELUDE = """
import asyncio, signal, sys, threading
import loopgrid

signal.signal(signal.SIGINT, signal.default_int_handler)  # see _SIGINT_SCRIPT
RUNNER = sys.argv[1]  # "loopgrid", or "asyncio" for the same case under asyncio.run

def report(what):
    left = [t.name for t in threading.enumerate() if t.name.startswith("loopgrid-")]
    print("%s threads-left=%d threads=%d" % (what, len(left), threading.active_count()), flush=True)

def start_child(fn):
    if RUNNER == "asyncio":
        return asyncio.get_running_loop().create_task(fn())
    return loopgrid.spawn(fn, worker=1)
"""

_SWALLOWING_MAIN = """
async def main():
    if CHILD is not None:
        start_child(CHILD)
    print("ready", flush=True)
    while True:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            print("swallowed", flush=True)
"""

_CTRL_C_CASES = {
    # A main task busy in call_soon callbacks (test_interrupt_call_soon).
    "call_soon": """
async def main():
    print("ready", flush=True)
    try:
        while True:
            await asyncio.sleep(0)
    except asyncio.CancelledError:
        print("main cancelled", flush=True)
        raise
""",
    # One waiting on a future (test_interrupt_wait): both are cancelled.
    "wait": """
async def main():
    fut = asyncio.get_running_loop().create_future()
    try:
        print("ready", flush=True)
        await fut
    finally:
        print("main cancelled fut-cancelled=%s" % fut.cancelled(), flush=True)
""",
    # One already cancelled (test_interrupt_cancelled_task): CancelledError.
    "cancelled": """
async def main():
    asyncio.get_running_loop().call_soon(asyncio.current_task().cancel)
    try:
        await asyncio.Event().wait()
    except asyncio.CancelledError:
        print("ready", flush=True)
        await asyncio.Event().wait()  # the SIGINT's cancellation ends this
""",
    # One that swallows every cancellation: each SIGINT is answered by a line.
    "swallow": "CHILD = None\n" + _SWALLOWING_MAIN,
    # Main and a child (on another worker) both swallow every cancellation.
    "swallow_with_child": """
async def stubborn_child():
    while True:  # (no print: lines from two threads could interleave)
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            pass

CHILD = stubborn_child
"""
    + _SWALLOWING_MAIN,
}

_CTRL_C_RUN = """
try:
    if RUNNER == "asyncio":
        asyncio.run(main())
    else:
        loopgrid.run(main(), loops=2)
except KeyboardInterrupt:
    report("KeyboardInterrupt")
    sys.exit(3)
except asyncio.CancelledError:
    report("CancelledError")
    sys.exit(4)
"""


def _ctrl_c(tmp_path: Path, case: str, runner: str = "loopgrid") -> tuple[int, str, str, int]:
    """Run a case in a child (under ``runner``: "loopgrid" or "asyncio");
    send SIGINT at each "ready"/"swallowed" line."""
    script = tmp_path / f"ctrl_c_{case}.py"
    script.write_text(_CTRL_C_PRELUDE + _CTRL_C_CASES[case] + _CTRL_C_RUN)
    proc = subprocess.Popen(
        [sys.executable, str(script), runner],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    out: list[str] = []
    sent = 0
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            out.append(line)
            if line.strip() in ("ready", "swallowed"):
                proc.send_signal(signal.SIGINT)
                sent += 1
                assert sent <= 5, out
        _, err = proc.communicate(timeout=WAIT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return proc.returncode, "".join(out), err, sent


_POSIX = pytest.mark.skipif(sys.platform == "win32", reason="SIGINT via os.kill is POSIX-only")


@_POSIX
def test_ctrl_c_while_main_is_busy_in_call_soon_callbacks(tmp_path: Path) -> None:
    rc, out, err, sent = _ctrl_c(tmp_path, "call_soon")
    assert (rc, sent) == (3, 1), (out, err)
    assert "main cancelled" in out
    assert "KeyboardInterrupt threads-left=0" in out


@_POSIX
def test_ctrl_c_while_main_waits_cancels_what_it_waits_on(tmp_path: Path) -> None:
    rc, out, err, sent = _ctrl_c(tmp_path, "wait")
    assert (rc, sent) == (3, 1), (out, err)
    assert "main cancelled fut-cancelled=True" in out
    assert "KeyboardInterrupt threads-left=0" in out


@_POSIX
def test_ctrl_c_on_a_main_already_cancelled(tmp_path: Path) -> None:
    rc, out, err, sent = _ctrl_c(tmp_path, "cancelled")
    if sys.version_info >= (3, 11):
        # asyncio.Runner: the cancellation was not the SIGINT's own.
        assert (rc, sent) == (4, 1), (out, err)
        assert "CancelledError threads-left=0" in out
    else:
        # asyncio.run on 3.10 installs no handler: KeyboardInterrupt.
        assert (rc, sent) == (3, 1), (out, err)
        assert "KeyboardInterrupt threads-left=0" in out


#: SIGINTs that end a run whose tasks swallow every cancellation. 3.11+: the
#: 1st cancels main, the 2nd raises KeyboardInterrupt out of run(), whose
#: close() cancels main again; the 3rd ends the wait there, which gives up on
#: the tasks. 3.10: the 1st raises out of run(), the 2nd ends close()'s wait.
_SWALLOW_SIGINTS = 3 if sys.version_info >= (3, 11) else 2


@_POSIX
@pytest.mark.parametrize("case", ["swallow", "swallow_with_child"])
def test_ctrl_c_on_tasks_that_swallow_cancellation_ends_as_asyncio_does(
    tmp_path: Path, case: str
) -> None:
    rc, out, err, sent = _ctrl_c(tmp_path, case)
    assert (rc, sent) == (3, _SWALLOW_SIGINTS), (out, err)
    assert out.count("\nswallowed") == sent - 1, (out, err)
    # Given up on, not left running: no thread is left when run() raises.
    assert "KeyboardInterrupt threads-left=0 threads=1" in out, (out, err)
    assert "Traceback" not in err, err
    if case != "swallow":
        # Under asyncio.run, a SIGINT that lands while main's own code runs
        # (on the loop's thread) ends main with KeyboardInterrupt; the child
        # then swallows the next cancellation without a line to answer.
        return
    # The same case under asyncio.run on this Python ends with the same code,
    # after as many SIGINTs, or fewer: one that lands while main's own code
    # runs is raised there and ends it (loopgrid's main runs on a worker,
    # never on the thread that gets the signal).
    a_rc, a_out, a_err, a_sent = _ctrl_c(tmp_path, case, "asyncio")
    assert a_rc == rc, (a_out, a_err)
    assert 1 <= a_sent <= sent, (a_out, a_err)
    assert "KeyboardInterrupt threads-left=0 threads=1" in a_out, (a_out, a_err)
