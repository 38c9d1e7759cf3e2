"""The pytest plugin (loopgrid/pytest_plugin.py), through inner pytest runs.

Each test writes an inner test module and runs pytest on it with ``pytester``:
in-process where every grid it makes is closed by the plugin, in a subprocess
where a worker thread is left blocked on purpose (and to check the ``pytest11``
entry point). Inner tests record what they saw in ``log.jsonl``, which the outer
test reads back; nothing waits for time to pass.
"""

from __future__ import annotations

import json
import textwrap
from typing import Any

import pytest
import pytest_asyncio.plugin

pytest_plugins = ["pytester"]

#: pytest-asyncio versions before the pytest_asyncio_loop_factories hook.
needs_loop_factories = pytest.mark.skipif(
    not hasattr(
        getattr(pytest_asyncio.plugin, "PytestAsyncioSpecs", None), "pytest_asyncio_loop_factories"
    ),
    reason="this pytest-asyncio has no pytest_asyncio_loop_factories hook",
)

PRELUDE = """\
import asyncio, contextvars, json, pathlib, threading
import pytest, pytest_asyncio
import loopgrid

LOG = pathlib.Path(__file__).with_name("log.jsonl")
VAR = contextvars.ContextVar("VAR", default="unset")


def record(*values):
    with LOG.open("a") as f:
        f.write(json.dumps(values) + "\\n")


def where():
    try:
        return loopgrid.current_worker().index
    except loopgrid.NotOnGridError:
        return None


def on_main_thread():
    return threading.current_thread() is threading.main_thread()


#: What parked tasks wait on, kept reachable: a task whose future nobody holds
#: may be garbage-collected (as asyncio's are) before the leak check sees it.
PARKING = []


async def parked(started):
    parking = asyncio.Event()
    PARKING.append(parking)
    started.set()
    await parking.wait()  # PARKED HERE
"""


def write(pytester: pytest.Pytester, body: str, name: str = "test_inner.py") -> str:
    """Write an inner test module (PRELUDE + body); return its source."""
    src = PRELUDE + textwrap.dedent(body)
    pytester.path.joinpath(name).write_text(src)
    return src


def ini(pytester: pytest.Pytester, mode: str = "strict", extra: str = "") -> None:
    pytester.makeini(
        f"[pytest]\nasyncio_mode = {mode}\nasyncio_default_fixture_loop_scope = function\n{extra}"
    )


def log(pytester: pytest.Pytester) -> list[list[Any]]:
    path = pytester.path / "log.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def line_of(src: str, marker: str) -> int:
    (n,) = [i for i, text in enumerate(src.splitlines(), 1) if marker in text]
    return n


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest("-p", "no:cacheprovider", *args)


# -- the marker ---------------------------------------------------------------------


def test_marker_runs_an_async_test_once_on_worker_0_of_a_fresh_grid(
    pytester: pytest.Pytester,
) -> None:
    ini(pytester)
    write(
        pytester,
        """
        GRIDS = []

        @pytest.mark.loopgrid(loops=3)
        async def test_a(loopgrid_grid):
            w = loopgrid.current_worker()
            GRIDS.append(w.grid)
            record("a", w.index, len(w.grid.workers), w.grid is loopgrid_grid, on_main_thread())

        @pytest.mark.loopgrid
        async def test_b(loopgrid_grid):
            w = loopgrid.current_worker()
            GRIDS.append(w.grid)
            record("b", w.index, len(w.grid.workers), w.grid is loopgrid_grid)

        def test_grids_were_fresh_and_are_closed():
            a, b = GRIDS
            record("c", a is b, a.closed, b.closed)

        @pytest.mark.loopgrid
        async def test_fails():
            value = 1
            assert value == 2  # FAILS HERE
        """,
    )
    result = run(pytester)
    result.assert_outcomes(passed=3, failed=1)
    assert log(pytester) == [
        ["a", 0, 3, True, False],
        ["b", 0, 2, True],
        ["c", False, True, True],
    ]
    # The failure is the test's own assertion, at its own line.
    result.stdout.fnmatch_lines(["*assert 1 == 2", "test_inner.py:*: AssertionError"])
    result.stdout.no_fnmatch_line("*not natively supported*")


def test_a_marked_sync_test_runs_on_pytests_thread_with_the_markers_grid(
    pytester: pytest.Pytester,
) -> None:
    ini(pytester)
    write(
        pytester,
        """
        pytestmark = pytest.mark.loopgrid(loops=3)

        def test_sync(loopgrid_grid):
            h = loopgrid_grid.spawn(asyncio.sleep, 0, "done")
            record("sync", on_main_thread(), len(loopgrid_grid.workers), h.result(timeout=30))

        async def test_async():
            record("async", where(), len(loopgrid.current_grid().workers))
        """,
    )
    run(pytester).assert_outcomes(passed=2)
    assert log(pytester) == [["sync", True, 3, "done"], ["async", 0, 3]]


def test_a_bad_marker_is_an_error_naming_the_problem(pytester: pytest.Pytester) -> None:
    ini(pytester)
    write(
        pytester,
        """
        @pytest.mark.loopgrid(loops=0)
        async def test_zero():
            record("ran")

        @pytest.mark.loopgrid(loops="2")
        async def test_str():
            record("ran")

        @pytest.mark.loopgrid(2)
        async def test_positional():
            record("ran")

        @pytest.mark.loopgrid(workers=2)
        async def test_unknown():
            record("ran")

        @pytest.mark.loopgrid(scope="galaxy")
        async def test_scope():
            record("ran")

        @pytest.mark.loopgrid
        async def test_gen():
            record("ran")
            yield
        """,
    )
    result = run(pytester)
    result.assert_outcomes(errors=6)
    result.stdout.fnmatch_lines(
        [
            "*test_zero: @pytest.mark.loopgrid needs loops to be an int >= 1, got 0",
            "*test_str: @pytest.mark.loopgrid needs loops to be an int >= 1, got '2'",
            "*test_positional: @pytest.mark.loopgrid(2,) takes keyword arguments only*",
            "*test_unknown: @pytest.mark.loopgrid got unknown argument(s) workers*",
            "*test_scope: @pytest.mark.loopgrid got scope='galaxy'; valid scopes: function, "
            "class, module, package, session",
            "*test_gen: @pytest.mark.loopgrid runs 'async def' tests; this one is an async "
            "generator*",
        ]
    )
    assert log(pytester) == []


# -- fixtures -----------------------------------------------------------------------


def test_async_fixtures_set_up_and_tear_down_on_worker_0_of_the_tests_grid(
    pytester: pytest.Pytester,
) -> None:
    ini(pytester)
    write(
        pytester,
        """
        @pytest.fixture
        def number():
            return 41

        @pytest.fixture
        async def plus_one(number, loopgrid_grid):
            record("plus_one", where(), loopgrid.current_grid() is loopgrid_grid)
            return number + 1

        @pytest.fixture
        async def resource(loopgrid_grid):
            record("setup", where(), loopgrid.current_grid() is loopgrid_grid)
            token = VAR.set("set by resource")
            yield "res"
            record("teardown", where(), loopgrid.current_grid() is loopgrid_grid, VAR.get())

        @pytest_asyncio.fixture
        async def pa_fixture():
            record("pa_fixture", where())
            return "pa"

        @pytest.mark.loopgrid
        async def test_uses(plus_one, resource, pa_fixture, loopgrid_grid):
            record("test", where(), plus_one, resource, pa_fixture, VAR.get())

        def test_context_was_reset():
            record("after", VAR.get())

        class TestInAClass:
            @pytest.fixture
            async def method_fixture(self):
                record("method_fixture", where())
                return self

            @pytest.mark.loopgrid
            async def test_method(self, method_fixture):
                record("method", where(), method_fixture is self)

        @pytest.mark.asyncio
        async def test_plain_pytest_asyncio(pa_fixture):
            record("plain", where(), on_main_thread())
        """,
    )
    run(pytester).assert_outcomes(passed=4)
    assert log(pytester) == [
        ["plus_one", 0, True],
        ["setup", 0, True],
        ["pa_fixture", 0],
        ["test", 0, 42, "res", "pa", "set by resource"],
        ["teardown", 0, True, "set by resource"],
        ["after", "unset"],
        ["method_fixture", 0],
        ["method", 0, True],
        # Not marked: pytest-asyncio runs it and its fixture, on pytest's thread.
        ["pa_fixture", None],
        ["plain", None, True],
    ]


def test_a_failing_async_fixture_fails_the_test_with_its_own_traceback(
    pytester: pytest.Pytester,
) -> None:
    ini(pytester)
    write(
        pytester,
        """
        @pytest.fixture
        async def broken():
            raise LookupError("no such thing")  # RAISES HERE

        @pytest.mark.loopgrid
        async def test_x(broken):
            record("ran")
        """,
    )
    result = run(pytester)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*LookupError: no such thing", "test_inner.py:*: LookupError"])
    assert log(pytester) == []


def test_loops_option_is_the_default_and_the_marker_wins(pytester: pytest.Pytester) -> None:
    ini(pytester)
    write(
        pytester,
        """
        @pytest.mark.loopgrid
        async def test_default():
            record("default", len(loopgrid.current_grid().workers))

        @pytest.mark.loopgrid(loops=1)
        async def test_marker():
            record("marker", len(loopgrid.current_grid().workers))

        def test_fixture_only(loopgrid_grid):
            record("fixture", len(loopgrid_grid.workers))
        """,
    )
    run(pytester, "--loopgrid-loops", "3").assert_outcomes(passed=3)
    assert log(pytester) == [["default", 3], ["marker", 1], ["fixture", 3]]
    (pytester.path / "log.jsonl").unlink()
    run(pytester).assert_outcomes(passed=3)
    assert log(pytester) == [["default", 2], ["marker", 1], ["fixture", 2]]
    bad = run(pytester, "--loopgrid-loops", "0")
    assert bad.ret == pytest.ExitCode.USAGE_ERROR
    bad.stderr.fnmatch_lines(["*--loopgrid-loops: needs an int >= 1, got '0'*"])
    bad_timeout = run(pytester, "-o", "loopgrid_close_timeout=soon")
    assert bad_timeout.ret == pytest.ExitCode.USAGE_ERROR
    bad_timeout.stderr.fnmatch_lines(
        ["*loopgrid_close_timeout must be a number of seconds > 0, got 'soon'*"]
    )


# -- leak checks --------------------------------------------------------------------


def test_a_task_left_on_the_grid_fails_the_test_naming_it_and_where_it_waits(
    pytester: pytest.Pytester,
) -> None:
    ini(pytester)
    src = write(
        pytester,
        """
        @pytest.mark.loopgrid
        async def test_running():
            started = loopgrid.Event()
            loopgrid.spawn(parked, started, name="parked-task", worker=1)
            await started.wait()

        @pytest.mark.loopgrid
        async def test_pending():
            loopgrid.current_grid().workers[1].pause()
            loopgrid.spawn(parked, loopgrid.Event(), name="never-started", worker=1)

        def test_sync_with_the_fixture(loopgrid_grid):
            started = threading.Event()
            loopgrid_grid.spawn(parked, started, name="from-sync", worker=0)
            assert started.wait(30)

        def test_nothing_is_left_behind():
            record([t.name for t in threading.enumerate() if t.name.startswith("loopgrid-")])
        """,
    )
    result = run(pytester)
    result.assert_outcomes(passed=4, errors=3)
    parked_at = f"*test_inner.py:{line_of(src, 'PARKED HERE')} in parked"
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_running*",
            "loopgrid: 1 task(s) of grid 'pytest-function-test_running' still pending or "
            "running when its function scope ended (they were cancelled):",
            "  task 'parked-task' (id *, running on worker 1), waiting at:",
            parked_at,
            "*asyncio*locks.py:* in wait",
            "*ERROR at teardown of test_pending*",
            "  task 'never-started' (id *, pinned to worker 1): pending, never started",
            "*ERROR at teardown of test_sync_with_the_fixture*",
            "  task 'from-sync' (id *, running on worker 0), waiting at:",
            parked_at,
        ]
    )
    # Every grid was closed (cancelling) before the next test began.
    assert log(pytester) == [[[]]]


def test_a_worker_thread_that_does_not_stop_fails_the_test(pytester: pytest.Pytester) -> None:
    ini(pytester, extra="loopgrid_close_timeout = 0.5\n")
    src = write(
        pytester,
        """
        NEVER = threading.Event()

        @pytest.mark.loopgrid
        async def test_blocks_a_worker():
            started = loopgrid.Event()

            async def blocker():
                started.set()
                NEVER.wait()  # BLOCKS HERE

            loopgrid.spawn(blocker, worker=1, name="blocker")
            await started.wait()

        def test_next():
            pass
        """,
    )
    # In a subprocess: the blocked worker thread cannot be stopped, and must not
    # outlive the inner run in this process.
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", timeout=120)
    result.assert_outcomes(passed=2, errors=1)
    blocked_at = f"*test_inner.py:{line_of(src, 'BLOCKS HERE')} in blocker"
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_blocks_a_worker*",
            "loopgrid: grid 'pytest-function-test_blocks_a_worker' could not be checked when its "
            "function scope ended:",
            "  worker 1 did not answer within 0.5 s: its thread "
            "'loopgrid-pytest-function-test_blocks_a_worker-1' is blocked, at (innermost first):",
            blocked_at,
            # The close waits for the blocked task: no thread of the grid has stopped.
            "loopgrid: 3 thread(s) of grid 'pytest-function-test_blocks_a_worker' did not stop "
            "within 0.5 s of close(cancel=True):",
            "  thread 'loopgrid-pytest-function-test_blocks_a_worker-1', at (innermost first):",
            blocked_at,
        ]
    )


# -- scopes -------------------------------------------------------------------------


def test_a_module_scoped_grid_is_shared_and_each_test_is_checked_for_its_own_tasks(
    pytester: pytest.Pytester,
) -> None:
    ini(pytester)
    write(
        pytester,
        """
        pytestmark = pytest.mark.loopgrid(scope="module")
        GRIDS = []

        @pytest.fixture(scope="module")
        async def server():
            started = loopgrid.Event()
            h = loopgrid.spawn(parked, started, name="server")
            await started.wait()
            record("server up", where())
            yield loopgrid.current_grid()
            h.cancel()  # and wait for it: a task cancelled but still running is a leak
            await asyncio.wait([h])
            record("server down", where(), h.cancelled())

        async def test_one(server, loopgrid_grid):
            GRIDS.append(loopgrid_grid)
            record("one", where(), server is loopgrid_grid)

        async def test_leaks(loopgrid_grid):
            started = loopgrid.Event()
            loopgrid.spawn(parked, started, name="leaked", worker=1)
            await started.wait()

        async def test_two(server, loopgrid_grid):
            record("two", loopgrid_grid is GRIDS[0], loopgrid_grid.closed)

        @pytest.mark.loopgrid
        async def test_own_grid(loopgrid_grid):
            record("own", loopgrid_grid is GRIDS[0])
        """,
        name="test_shared.py",
    )
    write(
        pytester,
        """
        import sys

        def test_after_the_module():
            record("after", sys.modules["test_shared"].GRIDS[0].closed)

        @pytest.fixture(scope="module")
        async def wide():
            record("wide ran")

        @pytest.mark.loopgrid
        async def test_wide(wide):
            pass

        @pytest.mark.loopgrid(scope="module", loops=2)
        async def test_two_loops():
            pass

        @pytest.mark.loopgrid(scope="module", loops=3)
        async def test_three_loops():
            pass
        """,
        name="test_shared_errors.py",
    )
    result = run(pytester, "test_shared.py", "test_shared_errors.py")
    result.assert_outcomes(passed=6, errors=3)
    assert log(pytester) == [
        ["server up", 0],
        ["one", 0, True],
        ["two", True, False],
        ["own", False],
        ["server down", 0, True],
        ["after", True],
    ]
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_leaks*",
            "loopgrid: 1 task(s) of grid 'pytest-module-test_shared.py' still pending or "
            "running when the test ended (they were cancelled):",
            "  task 'leaked' (id *, running on worker 1), waiting at:",
            "*ERROR at setup of test_wide*",
            "*the async fixture 'wide' has scope 'module', wider than the 'function'-scoped grid*"
            "@pytest.mark.loopgrid(scope='module')*",
            "*ERROR at setup of test_three_loops*",
            "*asks for a grid of 3 loops, but the module-scoped grid it shares was made with 2*",
        ]
    )
    result.stdout.no_fnmatch_line("*'server'*")  # the module's own task is no test's leak


# -- pytest-asyncio -----------------------------------------------------------------

BOTH = """
@pytest_asyncio.fixture
async def pa_fixture():
    record("pa_fixture")

@pytest.mark.loopgrid
@pytest.mark.asyncio
async def test_both_on_the_function(pa_fixture):
    record("ran")
"""


@pytest.mark.parametrize("mode", ["strict", "auto"])
def test_both_markers_are_an_error_and_the_test_never_runs(
    pytester: pytest.Pytester, mode: str
) -> None:
    ini(pytester, mode)
    write(pytester, BOTH)
    write(
        pytester,
        """
        pytestmark = pytest.mark.asyncio

        @pytest.mark.loopgrid
        async def test_module_asyncio_function_loopgrid():
            record("ran")
        """,
        name="test_module_mark.py",
    )
    write(
        pytester,
        """
        @pytest.mark.loopgrid
        @pytest.mark.anyio
        async def test_anyio_and_loopgrid():
            record("ran")
        """,
        name="test_with_anyio.py",
    )
    result = run(pytester)
    result.assert_outcomes(errors=4)  # anyio's marker makes one test per backend
    result.stdout.fnmatch_lines(
        [
            "*ERROR at setup of test_both_on_the_function*",
            "*test_both_on_the_function is marked with both @pytest.mark.asyncio and "
            "@pytest.mark.loopgrid: each would run it on its own event loop*Keep one*",
            "*ERROR at setup of test_module_asyncio_function_loopgrid*",
            "*marked with both @pytest.mark.asyncio and @pytest.mark.loopgrid*",
            "*ERROR at setup of test_anyio_and_loopgrid[[]asyncio[]]*",
            "*marked with both @pytest.mark.anyio and @pytest.mark.loopgrid*"
            "*from the anyio_backend fixture.",
            "*ERROR at setup of test_anyio_and_loopgrid[[]trio[]]*",
        ]
    )
    assert log(pytester) == []


@pytest.mark.parametrize(
    "factories",
    [False, pytest.param(True, marks=needs_loop_factories)],
    ids=["no_factories", "two_factories"],
)
def test_auto_mode_leaves_loopgrid_tests_to_the_grid(
    pytester: pytest.Pytester, factories: bool
) -> None:
    ini(pytester, "auto")
    if factories:
        pytester.makeconftest(
            """
            import asyncio
            from loopgrid.pytest_plugin import grid_loop_factory

            def pytest_asyncio_loop_factories(config, item):
                return {"plain": asyncio.new_event_loop, "grid": grid_loop_factory()}
            """
        )
    write(
        pytester,
        """
        @pytest.fixture
        async def fixture_where():
            yield where()
            record("fixture teardown", where())

        @pytest.mark.loopgrid
        async def test_on_grid(fixture_where, request):
            record("grid", request.node.name, fixture_where, where(), on_main_thread())

        async def test_auto(fixture_where, request):
            record("auto", request.node.name, fixture_where, where())
        """,
    )
    result = run(pytester)
    if not factories:
        result.assert_outcomes(passed=2)
        assert log(pytester) == [
            ["grid", "test_on_grid", 0, 0, False],
            ["fixture teardown", 0],
            ["auto", "test_auto", None, None],
            ["fixture teardown", None],
        ]
    else:
        # Once, on its grid: pytest-asyncio's factories do not multiply it.
        result.assert_outcomes(passed=3)
        assert log(pytester) == [
            ["grid", "test_on_grid", 0, 0, False],
            ["fixture teardown", 0],
            ["auto", "test_auto[plain]", None, None],
            ["fixture teardown", None],
            ["auto", "test_auto[grid]", 0, 0],
            ["fixture teardown", 0],
        ]


@needs_loop_factories
def test_pytest_asyncio_tests_run_on_a_grid_through_the_loop_factories_hook(
    pytester: pytest.Pytester,
) -> None:
    ini(pytester)
    pytester.makeconftest(
        """
        from loopgrid.pytest_plugin import grid_loop_factory

        def pytest_asyncio_loop_factories(config, item):
            return {"grid": grid_loop_factory(loops=3)}
        """
    )
    src = write(
        pytester,
        """
        async def double(x):
            return 2 * x

        @pytest_asyncio.fixture
        async def resource():
            record("setup", where(), on_main_thread())
            VAR.set("set by resource")
            yield
            record("teardown", where())

        @pytest.mark.asyncio
        async def test_on_grid(resource):
            w = loopgrid.current_worker()
            doubled = await loopgrid.spawn(double, 21)
            record("test", w.index, len(w.grid.workers), VAR.get(), doubled)

        GRIDS = []

        @pytest.mark.asyncio(loop_scope="module")
        async def test_module_loop_1():
            GRIDS.append(loopgrid.current_grid())

        @pytest.mark.asyncio(loop_scope="module")
        async def test_module_loop_2():
            record("module loop shared", loopgrid.current_grid() is GRIDS[0])

        @pytest.mark.asyncio
        async def test_leaks():
            started = loopgrid.Event()
            loopgrid.spawn(parked, started, name="left-behind", worker=2)
            await started.wait()

        @pytest.mark.asyncio
        async def test_fails():
            value = 1
            assert value == 2
        """,
    )
    result = run(pytester)
    result.assert_outcomes(passed=4, failed=1, errors=1)
    assert log(pytester) == [
        ["setup", 0, False],
        ["test", 0, 3, "set by resource", 42],
        ["teardown", 0],
        ["module loop shared", True],
    ]
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_leaks*",
            "loopgrid: 1 task(s) of grid 'pytest-gridloop' still pending or running when "
            "its runner closed the GridLoop (they were cancelled):",
            "  task 'left-behind' (id *, running on worker 2), waiting at:",
            f"*test_inner.py:{line_of(src, 'PARKED HERE')} in parked",
            "*assert 1 == 2",
        ]
    )


# -- inertness and registration -----------------------------------------------------

UNTOUCHED = """
@pytest_asyncio.fixture
async def pa_fixture():
    record("pa_fixture", where(), on_main_thread())
    yield asyncio.get_running_loop()

@pytest.mark.asyncio
async def test_pytest_asyncio(pa_fixture):
    record("pytest-asyncio", where(), on_main_thread(), pa_fixture is asyncio.get_running_loop())

async def test_unmarked_async():
    record("unmarked async ran")

@pytest.fixture
async def plain_async_fixture():
    record("plain async fixture ran")

def test_sync_requests_an_async_fixture(plain_async_fixture):
    record("sync test ran")

def test_no_grid_threads():
    record([t.name for t in threading.enumerate() if t.name.startswith("loopgrid-")])
"""


@pytest.mark.parametrize("mode", ["strict", "auto"])
def test_tests_that_do_not_use_the_plugin_run_exactly_as_without_it(
    pytester: pytest.Pytester, mode: str
) -> None:
    ini(pytester, mode)
    write(pytester, UNTOUCHED)
    without = run(pytester, "-p", "no:loopgrid", "-rA")
    log_without = log(pytester)
    (pytester.path / "log.jsonl").unlink()
    with_plugin = run(pytester, "-rA")
    assert with_plugin.parseoutcomes() == without.parseoutcomes()
    assert log(pytester) == log_without

    def summary(result: pytest.RunResult) -> list[str]:
        return [
            line
            for line in result.outlines
            if line.startswith(("PASSED", "FAILED", "ERROR")) and "passed" not in line
        ]

    assert summary(with_plugin) == summary(without)
    assert ["pytest-asyncio", None, True, True] in log_without
    if mode == "strict":  # what pytest says without any plugin for these
        with_plugin.stdout.fnmatch_lines(["*async def functions are not natively supported*"])
        with_plugin.stdout.fnmatch_lines(["*requested an async fixture*no plugin or hook*"])


def test_the_plugin_is_registered_through_its_entry_point(pytester: pytest.Pytester) -> None:
    ini(pytester)
    markers = pytester.runpytest_subprocess("--markers", timeout=120)
    markers.stdout.fnmatch_lines(["@pytest.mark.loopgrid(loops=N, scope='function'): *"])
    help_text = pytester.runpytest_subprocess("--help", timeout=120)
    help_text.stdout.fnmatch_lines(["*--loopgrid-loops=N*"])
    disabled = pytester.runpytest_subprocess("-p", "no:loopgrid", "--markers", timeout=120)
    disabled.stdout.no_fnmatch_line("*pytest.mark.loopgrid*")
