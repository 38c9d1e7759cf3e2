"""grid_loop_factory() and GridLoop: pytest-asyncio's and anyio's tests on a grid.

Through inner pytest runs, as in test_pytest_plugin.py (whose helpers these
reuse): the loops of a factory that does not say come from the run's options,
the worker loops can be of the suite's own class, and anyio's pytest plugin
runs its tests, async fixtures and task groups on worker 0 of a grid, with the
leak checks. Nothing waits for time to pass.
"""

from __future__ import annotations

import asyncio
import contextvars
import sys
from typing import Any

import pytest
from test_pytest_plugin import ini, line_of, log, needs_loop_factories, run, write

from loopgrid.pytest_plugin import DEFAULT_LOOPS, GridLoop, grid_loop_factory

pytest_plugins = ["pytester"]


# -- loops and close timeout from the run's options -------------------------------------

FACTORY_CONFTEST = """
from loopgrid.pytest_plugin import grid_loop_factory

def pytest_asyncio_loop_factories(config, item):
    return {"default": grid_loop_factory(), "one": grid_loop_factory(loops=1)}
"""

FACTORY_TESTS = """
from loopgrid.pytest_plugin import grid_loop_factory

@pytest.mark.asyncio
async def test_pytest_asyncio(request):
    record(request.node.name, len(loopgrid.current_grid().workers))

def test_called_directly():
    loop = grid_loop_factory()()
    try:
        record("direct", len(loop.grid.workers), loop.close_timeout)
    finally:
        loop.close()
"""


@needs_loop_factories
@pytest.mark.parametrize(
    ("args", "ini_lines", "loops", "timeout"),
    [
        pytest.param((), "", DEFAULT_LOOPS, 30, id="default"),
        pytest.param(("--loopgrid-loops", "3"), "", 3, 30, id="option"),
        pytest.param((), "loopgrid_loops = 4\nloopgrid_close_timeout = 7", 4, 7, id="ini"),
        pytest.param(("--loopgrid-loops", "3"), "loopgrid_loops = 4", 3, 30, id="option-wins"),
    ],
)
def test_a_factory_that_does_not_say_takes_its_loops_from_the_runs_options(
    pytester: pytest.Pytester, args: tuple[str, ...], ini_lines: str, loops: int, timeout: int
) -> None:
    ini(pytester, extra=ini_lines)
    pytester.makeconftest(FACTORY_CONFTEST)
    write(pytester, FACTORY_TESTS)
    run(pytester, *args).assert_outcomes(passed=3)
    assert sorted(log(pytester)) == sorted(
        [
            ["test_pytest_asyncio[default]", loops],
            ["test_pytest_asyncio[one]", 1],
            ["direct", loops, timeout],
        ]
    )


def test_a_bad_loopgrid_loops_ini_value_is_a_usage_error(pytester: pytest.Pytester) -> None:
    ini(pytester, extra="loopgrid_loops = many")
    write(pytester, "def test_x():\n    pass\n")
    bad = run(pytester)
    assert bad.ret == pytest.ExitCode.USAGE_ERROR
    bad.stderr.fnmatch_lines(["*loopgrid_loops must be an int >= 1, got 'many'*"])


def test_the_ini_loops_are_the_markers_default_too(pytester: pytest.Pytester) -> None:
    ini(pytester, extra="loopgrid_loops = 3")
    write(
        pytester,
        """
        @pytest.mark.loopgrid
        async def test_marked():
            record("marked", len(loopgrid.current_grid().workers))

        def test_fixture(loopgrid_grid):
            record("fixture", len(loopgrid_grid.workers))
        """,
    )
    run(pytester).assert_outcomes(passed=2)
    assert log(pytester) == [["marked", 3], ["fixture", 3]]


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"loops": 0}, ValueError),
        ({"loops": 2.0}, ValueError),
        ({"loop_factory": "SelectorEventLoop"}, TypeError),
        ({"close_timeout": 0}, ValueError),
    ],
)
def test_bad_factory_arguments_are_refused_at_once(kwargs: dict[str, Any], error: type) -> None:
    with pytest.raises(error, match=next(iter(kwargs))):
        grid_loop_factory(**kwargs)


def test_factories_with_equal_arguments_compare_equal() -> None:
    # pytest-asyncio shares a loop across a loop_scope only between equal factories.
    assert grid_loop_factory() == grid_loop_factory()
    assert grid_loop_factory(loop_factory=asyncio.SelectorEventLoop) == grid_loop_factory(
        loop_factory=asyncio.SelectorEventLoop
    )
    assert grid_loop_factory() != grid_loop_factory(loops=3)
    assert grid_loop_factory() != grid_loop_factory(loop_factory=asyncio.SelectorEventLoop)


# -- the worker loops' class ------------------------------------------------------------------

CUSTOM_LOOP_CONFTEST = """
import asyncio
from loopgrid.pytest_plugin import grid_loop_factory

class VirtualClockLoop(asyncio.SelectorEventLoop):
    virtual_clock = "yes"

def pytest_asyncio_loop_factories(config, item):
    return {"grid": grid_loop_factory(loops=3, loop_factory=VirtualClockLoop)}
"""


@needs_loop_factories
def test_the_worker_loops_are_of_the_class_the_loop_factory_makes(
    pytester: pytest.Pytester,
) -> None:
    ini(pytester)
    pytester.makeconftest(CUSTOM_LOOP_CONFTEST)
    write(
        pytester,
        """
        import conftest

        def loop_class():
            loop = asyncio.get_running_loop()
            return [
                loopgrid.current_worker().index,
                type(loop) is conftest.VirtualClockLoop,
                getattr(loop, "virtual_clock", None),
            ]

        async def on_worker():
            return loop_class()

        @pytest_asyncio.fixture
        async def fixture_loop():
            yield loop_class()

        @pytest.mark.asyncio
        async def test_custom_loops(fixture_loop):
            spawned = [await loopgrid.spawn(on_worker, worker=i) for i in (1, 2)]
            record("fixture", fixture_loop)
            record("test", loop_class())
            record("spawned", spawned)

        GRIDS = []

        @pytest.mark.asyncio(loop_scope="module")
        async def test_module_loop_1():
            GRIDS.append(loopgrid.current_grid())

        @pytest.mark.asyncio(loop_scope="module")
        async def test_module_loop_2():
            record("module loop shared", loopgrid.current_grid() is GRIDS[0], loop_class())
        """,
    )
    run(pytester).assert_outcomes(passed=3)
    assert log(pytester) == [
        ["fixture", [0, True, "yes"]],
        ["test", [0, True, "yes"]],
        ["spawned", [[1, True, "yes"], [2, True, "yes"]]],
        ["module loop shared", True, [0, True, "yes"]],
    ]


# -- anyio ----------------------------------------------------------------------------------

ANYIO_TESTS = """
import anyio
from loopgrid.pytest_plugin import grid_loop_factory

@pytest.fixture
def anyio_backend():
    return ("asyncio", {"loop_factory": grid_loop_factory(loops=3)})

@pytest.fixture
async def resource():
    record("setup", where(), on_main_thread())
    VAR.set("set by resource")
    yield "resource"
    record("teardown", where())

async def triple(x):
    return 3 * x

@pytest.mark.anyio
async def test_on_grid(resource):
    w = loopgrid.current_worker()
    tripled = await loopgrid.spawn(triple, 7, worker=2)
    record("test", w.index, len(w.grid.workers), resource, VAR.get(), tripled)

@pytest.mark.anyio
async def test_task_group_and_threads():
    seen = []

    async def child(i):
        seen.append([i, where()])

    async with anyio.create_task_group() as tg:
        for i in range(3):
            tg.start_soon(child, i)
    with anyio.CancelScope() as scope:
        scope.cancel()
        await anyio.sleep_forever()
    thread = await anyio.to_thread.run_sync(threading.current_thread)
    off_thread = thread is not threading.current_thread()
    record("task group", sorted(seen), scope.cancelled_caught, off_thread)

def boom():
    raise LookupError("raised in a callback on worker 1")

async def schedule_boom():
    asyncio.get_running_loop().call_soon(boom)
    await asyncio.sleep(0)  # boom was queued first: it has run when this resumes

@pytest.mark.anyio
async def test_callback_error():
    await loopgrid.spawn(schedule_boom, worker=1)
    record("callback error reported")

@pytest.mark.anyio
async def test_leaks():
    started = loopgrid.Event()
    loopgrid.spawn(parked, started, name="left-behind", worker=2)
    await started.wait()

@pytest.mark.anyio
async def test_after_the_leak():
    record("after", where())
"""


def test_anyio_tests_run_on_a_grid_with_the_grid_loop_factory(pytester: pytest.Pytester) -> None:
    ini(pytester)
    src = write(pytester, ANYIO_TESTS)
    result = run(pytester, "-p", "anyio")
    result.assert_outcomes(passed=3, failed=2)
    assert log(pytester) == [
        ["setup", 0, False],
        ["test", 0, 3, "resource", "set by resource", 21],
        ["teardown", 0],
        ["task group", [[0, 0], [1, 0], [2, 0]], True, True],
        ["callback error reported"],
        ["after", 0],
    ]
    result.stdout.fnmatch_lines(
        [
            "*_ test_callback_error _*",
            "*LookupError: raised in a callback on worker 1",
            "*_ test_leaks _*",
            "loopgrid: 1 task(s) of grid 'pytest-gridloop' still pending or running when "
            "its runner closed the GridLoop (they were cancelled):",
            "  task 'left-behind' (id *, running on worker 2), waiting at:",
            f"*test_inner.py:{line_of(src, 'PARKED HERE')} in parked",
        ]
    )
    # anyio's own task that runs the tests is cancelled when its runner closes the
    # loop, as on any loop: it is never reported.
    result.stdout.no_fnmatch_line("*_run_tests_and_fixtures*")


def test_a_leak_in_a_failing_anyio_test_is_added_to_its_report(
    pytester: pytest.Pytester,
) -> None:
    ini(pytester)
    write(
        pytester,
        """
        from loopgrid.pytest_plugin import grid_loop_factory

        @pytest.fixture
        def anyio_backend():
            return ("asyncio", {"loop_factory": grid_loop_factory()})

        @pytest.mark.anyio
        async def test_leaks_and_fails():
            started = loopgrid.Event()
            loopgrid.spawn(parked, started, name="left-behind", worker=1)
            await started.wait()
            value = 1
            assert value == 2
        """,
    )
    result = run(pytester, "-p", "anyio")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*assert 1 == 2",
            "*loopgrid: left on the grid*",
            "loopgrid: 1 task(s) of grid 'pytest-gridloop' still pending or running *",
            "  task 'left-behind' (id *, running on worker 1), waiting at:",
        ]
    )


# -- GridLoop's own methods -------------------------------------------------------------------


def test_the_exception_handler_is_every_worker_loops() -> None:
    loop = GridLoop(2)  # type: ignore[abstract]
    try:
        assert loop.get_exception_handler() is None

        def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
            pass

        loop.set_exception_handler(handler)
        assert loop.get_exception_handler() is handler
        assert [w.loop.get_exception_handler() for w in loop.grid.workers] == [handler, handler]
        loop.set_exception_handler(None)
        assert [w.loop.get_exception_handler() for w in loop.grid.workers] == [None, None]
        with pytest.raises(TypeError, match="callable"):
            loop.set_exception_handler("handler")  # type: ignore[arg-type]
    finally:
        loop.close()


def test_create_future_is_worker_0s_there_and_refused_elsewhere() -> None:
    loop = GridLoop(2)  # type: ignore[abstract]

    async def make() -> bool:
        fut = loop.create_future()
        fut.set_result(None)
        await fut
        return fut.get_loop() is asyncio.get_running_loop()

    try:
        assert loop.run_until_complete(make()) is True
        with pytest.raises(NotImplementedError, match="worker 0's thread"):
            loop.create_future()
        on_worker_1 = loop.grid.spawn(make, worker=1)
        with pytest.raises(NotImplementedError, match="worker 0's thread"):
            on_worker_1.result()
        with pytest.raises(NotImplementedError, match=r"call_later\(\)"):
            loop.call_later(1, print)
    finally:
        loop.close()


def test_close_cancels_what_create_task_left_running(pytester: pytest.Pytester) -> None:
    # As asyncio.Runner.close does: a runner's own long-lived task (anyio's) is
    # not a leak. What such a task spawned is.
    ini(pytester)
    write(
        pytester,
        """
        from loopgrid.pytest_plugin import GridLoop

        async def runner_task(started):
            started.set()
            await asyncio.Event().wait()

        def test_close():
            loop = GridLoop(2)
            started = loopgrid.Event()
            h = loop.create_task(runner_task(started), name="runner-task")
            loop.run_until_complete(started.wait())
            loop.close()
            record("cancelled", h.cancelled(), loop.is_closed())

        def test_close_reports_what_it_spawned():
            loop = GridLoop(2)
            started = loopgrid.Event()

            async def spawner():
                loopgrid.spawn(parked, started, name="spawned-by-runner", worker=1)
                await asyncio.Event().wait()

            loop.create_task(spawner(), name="runner-task")
            loop.run_until_complete(started.wait())
            loop.close()
        """,
    )
    result = run(pytester)
    result.assert_outcomes(passed=1, failed=1)
    assert log(pytester) == [["cancelled", True, True]]
    result.stdout.fnmatch_lines(["  task 'spawned-by-runner' (id *, running on worker 1)*"])
    result.stdout.no_fnmatch_line("  task 'runner-task'*")


VAR: contextvars.ContextVar[str] = contextvars.ContextVar("VAR", default="unset")


@pytest.mark.skipif(
    sys.version_info >= (3, 11), reason="the backport of asyncio.Runner is for Python 3.10"
)
def test_create_task_puts_back_what_the_runner_backport_patches(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # As backports.asyncio.runner does around create_task, in every thread at once.
    meant = contextvars.copy_context()
    meant.run(VAR.set, "meant")
    original_copy, original_task = contextvars.copy_context, asyncio.tasks.Task
    monkeypatch.setattr(contextvars, "copy_context", lambda: meant)
    monkeypatch.setattr(asyncio.tasks, "Task", object)

    async def read() -> str:
        return VAR.get()

    loop = GridLoop(2)  # type: ignore[abstract]
    try:
        h = loop.create_task(read())
        assert contextvars.copy_context is original_copy
        assert asyncio.tasks.Task is original_task
        assert loop.run_until_complete(h) == "meant"
    finally:
        loop.close()


def test_the_public_names_are_importable_from_the_package() -> None:
    import loopgrid.pytest_plugin as plugin

    assert set(plugin.__all__) == {"DEFAULT_LOOPS", "GridLoop", "grid_loop_factory"}
    assert plugin.DEFAULT_LOOPS == 2
    # The hooks pytest finds on the entry point's module.
    for hook in (
        "pytest_addoption",
        "pytest_configure",
        "pytest_runtest_makereport",
        "pytest_fixture_setup",
        "pytest_pyfunc_call",
    ):
        assert callable(getattr(plugin, hook)), hook
