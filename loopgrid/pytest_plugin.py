"""The pytest plugin: run async tests and fixtures on a grid, and check that nothing leaks.

Why: code written for a grid (``loopgrid.spawn``, ``current_worker()``, handles,
the cross-loop primitives) only runs on a grid worker's loop, and a grid left
with tasks or threads at the end of one test leaks them into the next. The
plugin runs a test where its code would run in production, on worker 0 of a
fresh grid, and fails the test if the grid is not empty when it ends.

Registered through the ``pytest11`` entry point, and inert unless used: it
only acts on tests marked ``@pytest.mark.loopgrid`` (their async fixtures
included) and on tests that request the ``loopgrid_grid`` fixture. Everything
else, pytest-asyncio tests in strict and auto mode included, runs exactly as
without it.

* ``@pytest.mark.loopgrid(loops=N, scope="function")``: the ``async def``
  test runs on worker 0 of a grid of ``N`` loops (default ``--loopgrid-loops``,
  else 2), made for that test (``scope="module"`` and so on share one grid
  across that scope). Its async fixtures run on the same worker, setup and
  teardown. A marked synchronous test runs as usual, on pytest's thread, with
  that grid as its ``loopgrid_grid``.
* ``loopgrid_grid``: the grid of the current test (for a marked test, the one
  it runs on; for any other test, a fresh grid closed when it ends).
* Leak checks: when a test's grid closes, a task still pending or running on
  it fails the test, naming the task and where it waits; so does a worker
  thread that did not stop. The grid is then closed with ``cancel=True``.
* :func:`grid_loop_factory`: for pytest-asyncio 1.x's
  ``pytest_asyncio_loop_factories`` hook, so that pytest-asyncio tests run on
  worker 0 of a grid too.

Which thread owns what:

* pytest's own thread (the "main thread" below) creates and closes every grid,
  calls fixture functions and hooks, and blocks on a test's handle while the
  test runs. It writes the plugin's per-run state (``_State``, in the config's
  stash) and per-test state (in the item's stash); no other thread touches them.
* Worker 0 of the test's grid runs the test body (a grid task) and the async
  fixtures (each in an ``asyncio.Task`` of its own, in the context pytest-asyncio
  would give it). The main thread only waits for them.
* Each worker's own thread collects the leak report for its loop (a callback
  it runs between two task steps, so every stack it reads is at rest), and
  hands it back through a ``concurrent.futures.Future``.
* A short-lived closer thread runs ``Grid.close``, so that a worker stuck in
  a blocking call fails the test after ``loopgrid_close_timeout`` seconds
  instead of hanging the session.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextvars
import dataclasses
import inspect
import sys
import threading
from collections.abc import Callable, Coroutine, Generator, Iterator
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import pytest

from .deadlock import describe, handle_of, waiting_for
from .grid import Grid
from .handle import PENDING, Handle
from .introspect import await_chain, thread_stack

if TYPE_CHECKING:
    from _pytest.fixtures import FixtureDef

__all__ = ["DEFAULT_LOOPS", "GridLoop", "grid_loop_factory"]

T = TypeVar("T")

#: Loops of a test's grid when neither the marker nor ``--loopgrid-loops`` says.
DEFAULT_LOOPS = 2
_ScopeName = Literal["function", "class", "module", "package", "session"]
_SCOPES: tuple[_ScopeName, ...] = ("function", "class", "module", "package", "session")
_MARKER = "loopgrid"
#: Markers of other plugins that run a test on their own event loop.
_RIVALS = ("asyncio", "anyio")
#: pytest-asyncio's fixture that its loop factories parametrize (see pytest_generate_tests).
_ASYNCIO_FACTORY_FIXTURE = "_asyncio_loop_factory"
_TASK_HAS_CONTEXT = sys.version_info >= (3, 11)


# -- per-run and per-test state -------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Settings:
    """Where a test's grid comes from: its loops and the scope it is shared in."""

    loops: int
    scope: str
    marked: bool


class _State:
    """Per-run state (main thread only): the item whose protocol is running."""

    def __init__(self) -> None:
        self.item: pytest.Item | None = None
        self.close_timeout = 30.0


_STATE = pytest.StashKey[_State]()
_SETTINGS = pytest.StashKey[_Settings]()
#: Ids of the tasks that were live on a shared grid when the test's call began.
_BEFORE = pytest.StashKey[set[int]]()


def _state(config: pytest.Config) -> _State:
    st = config.stash.get(_STATE, None)
    if st is None:
        st = config.stash[_STATE] = _State()
    return st


def _marked_settings(item: pytest.Item) -> _Settings | None:
    """The settings of a loopgrid-marked item that passed validation, else None."""
    s = item.stash.get(_SETTINGS, None)
    return s if s is not None and s.marked else None


# -- options and markers ----------------------------------------------------------


def _loops_option(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"needs an int >= 1, got {text!r}")
    return n


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("loopgrid")
    group.addoption(
        "--loopgrid-loops",
        dest="loopgrid_loops",
        type=_loops_option,
        default=None,
        metavar="N",
        help=f"event loops of a test's grid when its loopgrid marker does not say (default "
        f"{DEFAULT_LOOPS})",
    )
    parser.addini(
        "loopgrid_close_timeout",
        help="seconds to wait for a test's grid to answer the leak check and to stop "
        "before failing the test with the stuck worker threads (default 30)",
        default="30",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "loopgrid(loops=N, scope='function'): run this async def test, and its async "
        "fixtures, on worker 0 of a loopgrid grid of N event loops (default "
        "--loopgrid-loops, else 2), made for the test or shared within the given scope; "
        "the test fails if a task or a worker thread of the grid outlives it.",
    )
    _state(config).close_timeout = _close_timeout(config)


def _close_timeout(config: pytest.Config) -> float:
    raw = config.getini("loopgrid_close_timeout")
    try:
        value = float(raw)
    except (TypeError, ValueError):
        value = -1.0
    if not value > 0:
        raise pytest.UsageError(
            f"loopgrid_close_timeout must be a number of seconds > 0, got {raw!r}"
        )
    return value


def _default_loops(config: pytest.Config) -> int:
    n = config.getoption("loopgrid_loops", None)
    return DEFAULT_LOOPS if n is None else int(n)


def _parse_marker(item: pytest.Item) -> _Settings:
    """Validate the item's loopgrid marker (pytest.fail with the reason if wrong)."""
    mark = item.get_closest_marker(_MARKER)
    assert mark is not None
    where = f"{item.nodeid}: @pytest.mark.loopgrid"
    if mark.args:
        pytest.fail(
            f"{where}{mark.args!r} takes keyword arguments only: loops=N, scope='function'",
            pytrace=False,
        )
    unknown = set(mark.kwargs) - {"loops", "scope"}
    if unknown:
        pytest.fail(
            f"{where} got unknown argument(s) {', '.join(sorted(unknown))}; "
            "it takes loops=N and scope='function'",
            pytrace=False,
        )
    loops = mark.kwargs.get("loops")
    if loops is None:
        loops = _default_loops(item.config)
    if type(loops) is not int or loops < 1:
        pytest.fail(f"{where} needs loops to be an int >= 1, got {loops!r}", pytrace=False)
    scope = mark.kwargs.get("scope", "function")
    if scope not in _SCOPES:
        pytest.fail(
            f"{where} got scope={scope!r}; valid scopes: {', '.join(_SCOPES)}", pytrace=False
        )
    return _Settings(loops, scope, marked=True)


def _marks_of(obj: object) -> list[pytest.Mark]:
    marks = getattr(obj, "pytestmark", [])
    if not isinstance(marks, list):
        marks = [marks]
    return [m for m in marks if isinstance(m, pytest.Mark)]


def _explicit_rival(node: pytest.Item, name: str) -> bool:
    """Whether ``name`` marks the item explicitly, not as pytest-asyncio's auto mode adds it.

    Auto mode adds an ``asyncio`` marker to the item itself; the user's come from the
    function, a ``pytest.param``, or an enclosing class or module.
    """
    if any(m.name == name for m in _marks_of(getattr(node, "obj", None))):
        return True
    callspec = getattr(node, "callspec", None)
    if callspec is not None and any(m.name == name for m in callspec.marks):
        return True
    parent = node.parent
    return parent is not None and parent.get_closest_marker(name) is not None


# -- collection: the loopgrid marker wins over pytest-asyncio's auto mode -----------


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_pycollect_makeitem(
    collector: pytest.Module | pytest.Class, name: str, obj: object
) -> Generator[None, Any, Any]:
    result = yield
    if not result:
        return result
    items = result if isinstance(result, list) else [result]
    changed = False
    out: list[Any] = []
    for node in items:
        if (
            isinstance(node, pytest.Function)
            and node.get_closest_marker(_MARKER) is not None
            and node.get_closest_marker("asyncio") is not None
            and not _explicit_rival(node, "asyncio")
        ):
            # pytest-asyncio's auto mode claimed this test: give it back as a plain
            # Function, without the marker auto mode added, so that it runs once,
            # on the grid, and pytest-asyncio makes no loop for it.
            node = _plain_function(node)
            changed = True
        out.append(node)
    if not changed:
        return result
    return out


def _plain_function(node: pytest.Function) -> pytest.Function:
    assert node.parent is not None
    plain = pytest.Function.from_parent(
        node.parent,
        name=node.name,
        callspec=getattr(node, "callspec", None),
        callobj=node.obj,
        fixtureinfo=node._fixtureinfo,
        keywords={k: v for k, v in node.keywords.items() if k != "asyncio"},
        originalname=node.originalname,
    )
    plain.own_markers = [m for m in node.own_markers if m.name != "asyncio"]
    return plain


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_generate_tests(metafunc: pytest.Metafunc) -> Generator[None, None, None]:
    definition = metafunc.definition
    if definition.get_closest_marker(_MARKER) is None or _explicit_rival(definition, "asyncio"):
        yield
        return
    # In auto mode, pytest-asyncio parametrizes every async test over the loop
    # factories of a pytest_asyncio_loop_factories hook. A loopgrid test runs on
    # its grid, not on those loops: running it once per factory would run it
    # several times, so that parametrization is left out for it.
    original = metafunc.parametrize
    swallowed = False

    def parametrize(argnames: Any, *args: Any, **kwargs: Any) -> None:
        nonlocal swallowed
        if argnames == _ASYNCIO_FACTORY_FIXTURE:
            swallowed = True
            return
        original(argnames, *args, **kwargs)

    metafunc.parametrize = parametrize  # type: ignore[method-assign]
    try:
        yield
    finally:
        del metafunc.parametrize
        if swallowed:
            names = metafunc.fixturenames
            while _ASYNCIO_FACTORY_FIXTURE in names:
                names.remove(_ASYNCIO_FACTORY_FIXTURE)


# -- running a test ---------------------------------------------------------------


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(
    item: pytest.Item, nextitem: pytest.Item | None
) -> Generator[None, Any, Any]:
    st = _state(item.config)
    previous, st.item = st.item, item
    try:
        return (yield)
    finally:
        st.item = previous


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker(_MARKER) is None:
        return
    for rival in _RIVALS:
        if item.get_closest_marker(rival) is not None:
            hint = (
                "; to run pytest-asyncio tests on a grid's loop instead, return "
                "loopgrid.pytest_plugin.grid_loop_factory() from a "
                "pytest_asyncio_loop_factories hook"
                if rival == "asyncio"
                else ""
            )
            pytest.fail(
                f"{item.nodeid} is marked with both @pytest.mark.{rival} and "
                f"@pytest.mark.loopgrid: each would run it on its own event loop, and it must "
                f"run once. Keep one of the two: @pytest.mark.loopgrid runs it on worker 0 of "
                f"a grid{hint}.",
                pytrace=False,
            )
    if "anyio_backend" in getattr(item, "fixturenames", ()):
        pytest.fail(
            f"{item.nodeid} is marked with @pytest.mark.loopgrid and requests anyio_backend "
            f"(as anyio's auto mode makes every async test do): anyio's plugin would run it on "
            f"its own event loop, once per backend. Keep loopgrid tests out of anyio's auto "
            f"mode (use @pytest.mark.anyio on anyio tests instead).",
            pytrace=False,
        )
    fn = getattr(item, "obj", None)
    if inspect.isasyncgenfunction(fn):
        pytest.fail(
            f"{item.nodeid}: @pytest.mark.loopgrid runs 'async def' tests; this one is an "
            "async generator, which pytest cannot run as a test",
            pytrace=False,
        )
    item.stash[_SETTINGS] = _parse_marker(item)
    if isinstance(item, pytest.Function):
        # First up, last down: the grid outlives every other function-scoped
        # fixture of the test, so the leak check sees their teardown done.
        # (A new list: parametrized siblings share the old one.)
        others = [name for name in item.fixturenames if name != "loopgrid_grid"]
        item.fixturenames = ["loopgrid_grid", *others]


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_call(item: pytest.Item) -> None:
    settings = _marked_settings(item)
    if settings is not None and settings.scope != "function":
        tg = _shared_grid_of(item)
        if tg is not None:
            item.stash[_BEFORE] = {r.id for r in _live_tasks(tg.grid, tg.timeout) if r.id}


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    if _marked_settings(pyfuncitem) is None or not inspect.iscoroutinefunction(pyfuncitem.obj):
        return None
    __tracebackhide__ = True
    grid: Grid = pyfuncitem.funcargs["loopgrid_grid"]  # type: ignore[assignment]
    fn = pyfuncitem.obj
    kwargs = {name: pyfuncitem.funcargs[name] for name in pyfuncitem._fixtureinfo.argnames}
    _wait(grid.spawn(_call, fn, kwargs, worker=0, name=pyfuncitem.name))
    return True


async def _call(fn: Callable[..., Coroutine[Any, Any, Any]], kwargs: dict[str, Any]) -> None:
    await fn(**kwargs)


def _wait(h: Handle[T]) -> T:
    """Block pytest's thread until ``h`` is done; cancel it if the wait is interrupted."""
    __tracebackhide__ = True
    try:
        return h.result()
    except BaseException:
        if not h.done():  # Ctrl-C, or pytest-timeout: the task must not go on alone
            h.cancel()
        raise


# -- async fixtures -----------------------------------------------------------------


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_fixture_setup(
    fixturedef: FixtureDef[Any], request: pytest.FixtureRequest
) -> Generator[None, Any, Any]:
    item = _state(request.config).item
    settings = None if item is None else _marked_settings(item)
    func = fixturedef.func
    if settings is None or not (_is_async(func) or _wrapped_by_pytest_asyncio(func)):
        return (yield)
    assert item is not None
    if _SCOPES.index(fixturedef.scope) > _SCOPES.index(settings.scope):
        pytest.fail(
            f"{item.nodeid}: the async fixture {fixturedef.argname!r} has scope "
            f"{fixturedef.scope!r}, wider than the {settings.scope!r}-scoped grid the test runs "
            f"on, which would close before the fixture's teardown. Share the grid as widely: "
            f"@pytest.mark.loopgrid(scope={fixturedef.scope!r}).",
            pytrace=False,
        )
    # The grid of the fixture's own scope (which the test's grid is, or outlives):
    # requested here, it is set up first and so torn down after the fixture.
    tg: _TestGrid = request.getfixturevalue(f"_loopgrid_grid_{settings.scope}")
    if _is_async(func):
        from _pytest.fixtures import resolve_fixture_function

        target = resolve_fixture_function(fixturedef, request)  # bound to the test's instance
    else:
        wrapper: Any = func
        target = _rebind(wrapper.__wrapped__, request.instance)
    sync = _sync_fixture(target, tg.grid, fixturedef.argname, request)
    fd: Any = fixturedef  # FixtureDef.func is Final to type checkers, not at run time
    fd.func = sync
    try:
        return (yield)
    finally:
        fd.func = func


def _is_async(func: object) -> bool:
    return inspect.iscoroutinefunction(func) or inspect.isasyncgenfunction(func)


def _wrapped_by_pytest_asyncio(func: Any) -> bool:
    """Whether pytest-asyncio 1.0 replaced this async fixture at collection time.

    That version swaps an async fixture's function for a synchronous wrapper
    (``functools.wraps``, marked ``_force_asyncio_fixture``) that runs it on
    its own loop; a loopgrid test runs the original on its grid instead.
    """
    return getattr(func, "_force_asyncio_fixture", False) is True and _is_async(
        getattr(func, "__wrapped__", None)
    )


def _rebind(func: Any, instance: object) -> Any:
    """A fixture method bound to the test's own instance, as pytest itself binds it."""
    owner = getattr(func, "__self__", None)
    if instance is not None and owner is not None and isinstance(instance, type(owner)):
        return func.__func__.__get__(instance)
    return func


def _sync_fixture(
    func: Callable[..., Any], grid: Grid, name: str, request: pytest.FixtureRequest
) -> Callable[..., Any]:
    """A synchronous stand-in for an async fixture: each step runs on worker 0.

    Each fixture runs in a copy of pytest's context, setup and teardown in the same
    one (as pytest-asyncio does), and the context variables its setup set are then
    set in pytest's context for the test (and reset after its teardown).
    """
    is_generator = inspect.isasyncgenfunction(func)
    func = _taking_only_its_arguments(func)
    if is_generator:

        def asyncgen_fixture(**kwargs: Any) -> Iterator[Any]:
            __tracebackhide__ = True
            ctx = contextvars.copy_context()
            agen = func(**kwargs)
            try:
                value = _run_on_worker0(grid, agen.__anext__(), ctx, f"fixture {name} (setup)")
            except StopAsyncIteration:
                raise ValueError(f"async fixture {name!r} did not yield a value") from None
            reset = _apply_context(ctx)
            try:
                yield value
                try:
                    _run_on_worker0(grid, agen.__anext__(), ctx, f"fixture {name} (teardown)")
                except StopAsyncIteration:
                    pass
                else:
                    raise ValueError(f"async fixture {name!r} yielded more than once")
            finally:
                reset()

        return asyncgen_fixture

    def async_fixture(**kwargs: Any) -> Any:
        __tracebackhide__ = True
        ctx = contextvars.copy_context()
        value = _run_on_worker0(grid, func(**kwargs), ctx, f"fixture {name}")
        request.addfinalizer(_apply_context(ctx))
        return value

    return async_fixture


def _taking_only_its_arguments(func: Callable[..., T]) -> Callable[..., T]:
    """``func``, dropping keyword arguments it does not take (pytest-asyncio 1.0
    adds ``request`` to an async fixture's arguments)."""
    params = inspect.signature(func).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return func
    return lambda **kwargs: func(**{k: v for k, v in kwargs.items() if k in params})


def _run_on_worker0(
    grid: Grid, coro: Coroutine[Any, Any, T], ctx: contextvars.Context, name: str
) -> T:
    __tracebackhide__ = True
    h: Handle[T] = grid.spawn(_in_context, coro, ctx, worker=0, name=name)
    return _wait(h)


async def _in_context(coro: Coroutine[Any, Any, T], ctx: contextvars.Context) -> T:
    """Await ``coro`` in its own task on this loop, running in ``ctx`` itself.

    Python 3.10's tasks cannot be given a context: the task runs in a copy of
    ``ctx``, whose changes are written back into ``ctx`` when it ends.
    """
    loop = asyncio.get_running_loop()
    if _TASK_HAS_CONTEXT:
        return await loop.create_task(coro, context=ctx)  # type: ignore[call-arg,unused-ignore]
    task: asyncio.Task[tuple[T, contextvars.Context]] = ctx.run(loop.create_task, _exporting(coro))
    value, after = await task
    for var, val in after.items():
        if var not in ctx or ctx[var] is not val:
            ctx.run(var.set, val)
    return value


async def _exporting(coro: Coroutine[Any, Any, T]) -> tuple[T, contextvars.Context]:
    value = await coro
    return value, contextvars.copy_context()


def _apply_context(ctx: contextvars.Context) -> Callable[[], None]:
    """Set in the current context what ``ctx`` changed; return how to undo it."""
    tokens: list[tuple[contextvars.ContextVar[Any], contextvars.Token[Any]]] = []
    for var, value in ctx.items():
        try:
            if var.get() is value:
                continue
        except LookupError:
            pass
        tokens.append((var, var.set(value)))

    def reset() -> None:
        while tokens:
            var, token = tokens.pop()
            var.reset(token)

    return reset


# -- the grids of tests ----------------------------------------------------------------


class _TestGrid:
    """A grid the plugin made, how long to wait for it to close, and when it ends."""

    def __init__(self, loops: int, name: str, ends: str, timeout: float) -> None:
        self.ends = ends
        self.timeout = timeout
        self.grid = Grid(loops, name=name)


def _make_grid_fixture(scope: _ScopeName) -> Any:
    @pytest.fixture(scope=scope, name=f"_loopgrid_grid_{scope}")
    def fixture(request: pytest.FixtureRequest) -> Iterator[_TestGrid]:
        item = _state(request.config).item
        settings = None if item is None else item.stash.get(_SETTINGS, None)
        loops = _default_loops(request.config) if settings is None else settings.loops
        label = getattr(request.node, "name", "") or scope
        tg = _TestGrid(
            loops,
            f"pytest-{scope}-{label}",
            f"when its {scope} scope ended",
            _state(request.config).close_timeout,
        )
        try:
            yield tg
        finally:
            _finish(tg)

    return fixture


_loopgrid_grid_function = _make_grid_fixture("function")
_loopgrid_grid_class = _make_grid_fixture("class")
_loopgrid_grid_module = _make_grid_fixture("module")
_loopgrid_grid_package = _make_grid_fixture("package")
_loopgrid_grid_session = _make_grid_fixture("session")


_SHARED = pytest.StashKey[_TestGrid]()


def _shared_grid_of(item: pytest.Item) -> _TestGrid | None:
    return item.stash.get(_SHARED, None)


@pytest.fixture
def loopgrid_grid(request: pytest.FixtureRequest) -> Iterator[Grid]:
    """The grid of the current test.

    In a test marked ``@pytest.mark.loopgrid``, the grid the test runs on (shared
    within the marker's scope). In any other test, a fresh grid of
    ``--loopgrid-loops`` loops (default 2). Either way, when the test ends a task
    still on the grid, or a worker thread that does not stop, fails it.
    """
    item = request.node
    settings = item.stash.get(_SETTINGS, None)
    if settings is None:
        settings = item.stash[_SETTINGS] = _Settings(
            _default_loops(request.config), "function", marked=False
        )
    tg: _TestGrid = request.getfixturevalue(f"_loopgrid_grid_{settings.scope}")
    if len(tg.grid.workers) != settings.loops:
        pytest.fail(
            f"{item.nodeid} asks for a grid of {settings.loops} loops, but the "
            f"{settings.scope}-scoped grid it shares was made with {len(tg.grid.workers)} "
            f"by an earlier test: give every test sharing it the same loops",
            pytrace=False,
        )
    if settings.scope == "function":
        yield tg.grid  # checked and closed by _loopgrid_grid_function
        return
    item.stash[_SHARED] = tg
    yield tg.grid
    # A shared grid outlives the test: the test is checked for the tasks that
    # were not there when its call began, which are cancelled; what is left is
    # checked when the grid closes.
    before = item.stash.get(_BEFORE, None)
    if before is None:
        return  # the test never ran
    leaks = [r for r in _live_tasks(tg.grid, tg.timeout) if r.id not in before]
    if leaks:
        _cancel_and_wait(leaks, tg.timeout)
        pytest.fail(_leak_message(tg.grid, leaks, "when the test ended"), pytrace=False)


# -- leak checks ------------------------------------------------------------------------


@dataclasses.dataclass
class _Leak:
    """One task (or one stuck worker) found on a grid."""

    id: int  # 0 for a stuck worker
    text: str
    handle: Handle[Any] | None = None


def _live_tasks(grid: Grid, timeout: float) -> list[_Leak]:
    """Every task of ``grid`` still pending or running, with where it waits.

    Running tasks are read by their own worker, between two steps; a worker
    that does not answer within ``timeout`` is reported as stuck, with the
    frame its thread is in. Pending tasks are read from the run queues.
    """
    if grid._closed:
        return []
    probes: list[tuple[int, concurrent.futures.Future[list[_Leak]]]] = []
    for w in grid.workers:
        fut: concurrent.futures.Future[list[_Leak]] = concurrent.futures.Future()
        try:
            w.loop.call_soon_threadsafe(_probe, w.loop, w.index, fut)
        except RuntimeError:  # the loop has closed: nothing runs there
            continue
        probes.append((w.index, fut))
    found: dict[int, _Leak] = {}
    stuck: list[_Leak] = []
    done, _ = concurrent.futures.wait([f for _, f in probes], timeout=timeout)
    for index, fut in probes:
        if fut in done:
            for leak in fut.result():
                found[leak.id] = leak
        else:
            thread = grid.workers[index].thread
            stuck.append(
                _Leak(
                    0,
                    f"worker {index} did not answer within {timeout:g} s: its thread "
                    f"{thread.name!r} is blocked" + _thread_where(thread),
                )
            )
    for h in _queued(grid):
        if h._id not in found and h._state == PENDING:
            pin = "" if h._pin is None else f", pinned to worker {h._pin}"
            state = "paused, pending" if h._paused else "pending"
            found[h._id] = _Leak(
                h._id, f"task {h._name!r} (id {h._id}{pin}): {state}, never started", h
            )
    return sorted(found.values(), key=lambda r: r.id) + stuck


def _queued(grid: Grid) -> list[Handle[Any]]:
    queues = [grid._injection]
    for w in grid.workers:
        queues += (w._local, w._pinned)
    out: list[Handle[Any]] = []
    for q in queues:
        for d in q.levels:
            out += _copy(d)
    out += _copy(grid._shelf.values())
    return out


def _copy(items: Any) -> list[Handle[Any]]:
    # Other threads may push or pop meanwhile (a finished test's grid is normally
    # quiet); copying retries rather than fail on a concurrent change.
    for _ in range(100):
        try:
            return list(items)
        except RuntimeError:
            continue
    return []


def _probe(
    loop: asyncio.AbstractEventLoop, index: int, fut: concurrent.futures.Future[list[_Leak]]
) -> None:
    """On a worker's thread: the grid tasks of its loop that have not finished."""
    try:
        out = []
        for task in asyncio.all_tasks(loop):
            h = handle_of(task)
            if h is None or h.done():
                continue
            state = h.state.value
            text = f"task {h.name!r} (id {h.id}, {state} on worker {index})"
            where = await_chain(task.get_coro())
            edge = waiting_for(task)
            if edge is not None:
                where.append(f"waiting for {edge[1] or describe(edge[0])}")
            if where:
                text += ", waiting at:\n" + "\n".join(f"      {line}" for line in where)
            out.append(_Leak(h.id, text, h))
        fut.set_result(out)
    except BaseException as exc:  # report it rather than leave the main thread waiting
        fut.set_exception(exc)


def _thread_where(thread: threading.Thread) -> str:
    lines = thread_stack(thread, limit=8)
    if not lines:
        return ""
    return ", at (innermost first):\n" + "\n".join(f"      {line}" for line in lines)


def _leak_message(grid: Grid, leaks: list[_Leak], when: str) -> str:
    tasks = [r for r in leaks if r.id]
    lines = [
        f"loopgrid: {len(tasks)} task(s) of grid {grid.name!r} still pending or running {when}"
        " (they were cancelled):"
        if tasks
        else f"loopgrid: grid {grid.name!r} could not be checked {when}:"
    ]
    lines += [f"  {r.text}" for r in leaks]
    return "\n".join(lines)


def _cancel_and_wait(leaks: list[_Leak], timeout: float) -> None:
    handles = [r.handle for r in leaks if r.handle is not None]
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

    if not handles:
        return
    for h in handles:
        h.add_done_callback(one_done)
    done.wait(timeout)
    for h in handles:
        if h.done() and not h.cancelled():
            h.exception()  # retrieved: no "never retrieved" log for a reported leak


def _finish(tg: _TestGrid) -> None:
    """Check ``tg``'s grid for leaks, close it with cancel=True, check its threads."""
    __tracebackhide__ = True
    grid = tg.grid
    problems = []
    leaks = _live_tasks(grid, tg.timeout)
    if leaks:
        problems.append(_leak_message(grid, leaks, tg.ends))
    stuck = _close(grid, tg.timeout)
    if stuck:
        problems.append(
            f"loopgrid: {len(stuck)} thread(s) of grid {grid.name!r} did not stop within "
            f"{tg.timeout:g} s of close(cancel=True):\n"
            + "\n".join(f"  thread {t.name!r}{_thread_where(t)}" for t in stuck)
        )
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


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


# -- pytest-asyncio tests on a grid -------------------------------------------------------


def grid_loop_factory(
    loops: int = DEFAULT_LOOPS, *, close_timeout: float = 30.0
) -> Callable[[], GridLoop]:
    """A loop factory for pytest-asyncio 1.x: its tests run on worker 0 of a grid.

    Return it from the ``pytest_asyncio_loop_factories`` hook in a ``conftest.py``::

        from loopgrid.pytest_plugin import grid_loop_factory

        def pytest_asyncio_loop_factories(config, item):
            return {"loopgrid": grid_loop_factory(loops=2)}

    Each event loop pytest-asyncio asks for (one per ``loop_scope``) is a
    :class:`GridLoop`: a fresh grid of ``loops`` workers, which pytest-asyncio's
    runner drives from pytest's thread while the tests and async fixtures run on
    worker 0. When pytest-asyncio closes it, a task left on the grid or a worker
    thread that does not stop within ``close_timeout`` seconds fails the test.
    Factories made with the same arguments compare equal, as pytest-asyncio
    needs them to for tests to share a ``loop_scope`` wider than the function.
    """
    if type(loops) is not int or loops < 1:
        raise ValueError(f"loops must be an int >= 1, got {loops!r}")
    if not close_timeout > 0:
        raise ValueError(f"close_timeout must be > 0, got {close_timeout!r}")
    return _GridLoopFactory(loops, close_timeout)


@dataclasses.dataclass(frozen=True)
class _GridLoopFactory:
    loops: int
    close_timeout: float

    def __call__(self) -> GridLoop:
        return GridLoop(self.loops, close_timeout=self.close_timeout)  # type: ignore[abstract]


class GridLoop(asyncio.AbstractEventLoop):
    """Worker 0 of a fresh grid, seen from pytest's thread as an event loop to drive.

    An event loop runner (``asyncio.Runner``, which pytest-asyncio uses) calls
    ``create_task`` and ``run_until_complete`` on its loop from its own thread.
    Here ``create_task`` spawns the coroutine on worker 0 (running in the
    context the runner gives) and returns its :class:`~loopgrid.Handle`;
    ``run_until_complete`` blocks until it is done. ``close`` checks the grid
    for leaks and closes it. Code running on the grid sees the worker's own
    loop (``asyncio.get_running_loop()``), never this object; the other loop
    methods raise ``NotImplementedError`` saying so.
    """

    def __init__(self, loops: int = DEFAULT_LOOPS, *, close_timeout: float = 30.0) -> None:
        self._tg = _TestGrid(
            loops, "pytest-asyncio", "when pytest-asyncio closed its loop", close_timeout
        )
        self._closed = False
        self._debug = False

    @property
    def grid(self) -> Grid:
        return self._tg.grid

    def __repr__(self) -> str:
        return f"<GridLoop on worker 0 of {self._tg.grid!r}>"

    def create_task(  # type: ignore[override]
        self,
        coro: Coroutine[Any, Any, T],
        *,
        name: str | None = None,
        context: contextvars.Context | None = None,
    ) -> Handle[T]:
        self._check_open()
        if context is None:
            # Python 3.10's backport of asyncio.Runner passes no context, and
            # makes copy_context() return the one it means while it calls us.
            context = contextvars.copy_context()
        if name is None:
            name = getattr(coro, "__qualname__", None) or "task"
        return self._tg.grid.spawn(_in_context, coro, context, worker=0, name=name)

    def run_until_complete(self, future: Any) -> Any:
        __tracebackhide__ = True
        self._check_open()
        if asyncio.iscoroutine(future):
            future = self.create_task(future)
        if not isinstance(future, Handle):
            raise TypeError(
                f"{self!r}.run_until_complete() takes a coroutine or a handle from its "
                f"create_task(), got {future!r}"
            )
        return _wait(future)

    async def shutdown_asyncgens(self) -> None:
        """Nothing to do here: closing the grid finishes every worker loop."""

    async def shutdown_default_executor(self, timeout: float | None = None) -> None:
        """Nothing to do here: closing the grid finishes every worker loop."""

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        _finish(self._tg)

    def is_closed(self) -> bool:
        return self._closed

    def is_running(self) -> bool:
        return False

    def get_debug(self) -> bool:
        return self._debug

    def set_debug(self, enabled: bool) -> None:
        self._debug = enabled
        for w in self._tg.grid.workers:
            w.loop.call_soon_threadsafe(w.loop.set_debug, enabled)

    def call_soon_threadsafe(  # type: ignore[override]
        self,
        callback: Callable[..., object],
        *args: Any,
        context: contextvars.Context | None = None,
    ) -> asyncio.Handle:
        return self._tg.grid.workers[0].loop.call_soon_threadsafe(callback, *args, context=context)

    def call_exception_handler(self, context: dict[str, Any]) -> None:
        loop = self._tg.grid.workers[0].loop
        loop.call_soon_threadsafe(loop.call_exception_handler, context)

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"{self!r} is closed")


def _not_here(name: str) -> Callable[..., Any]:
    def method(self: GridLoop, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(
            f"{self!r}.{name}(): this object only lets a runner drive worker 0 from pytest's "
            f"thread. Call {name}() on the worker's own loop, from code running on the grid "
            f"(asyncio.get_running_loop())."
        )

    method.__name__ = name
    return method


for _name, _value in vars(asyncio.AbstractEventLoop).items():
    if not _name.startswith("_") and callable(_value) and _name not in vars(GridLoop):
        setattr(GridLoop, _name, _not_here(_name))
del _name, _value
