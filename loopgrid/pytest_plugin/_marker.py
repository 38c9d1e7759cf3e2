"""The ``loopgrid`` marker, its grids, and the ``loopgrid_grid`` fixture.

Why: code written for a grid (``loopgrid.spawn``, ``current_worker()``,
handles, the cross-loop primitives) only runs on a grid worker's loop. A test
marked ``@pytest.mark.loopgrid(loops=N, scope="function")`` runs where its code
would run in production: on worker 0 of a grid made for it (or shared within
``scope``), its async fixtures too, setup and teardown. ``loopgrid_grid`` is
the test's grid (for an unmarked test, a fresh one). Either way, the grid is
checked for leaks when it closes (:mod:`._leaks`).

Inert unless used: only tests marked ``loopgrid`` (their async fixtures
included) and tests that request ``loopgrid_grid`` are touched. In
pytest-asyncio's auto mode, which claims every ``async def`` test, the marked
ones are given back to the grid, once each.

Which thread owns what:

* pytest's own thread makes and closes every grid, calls fixture functions and
  hooks, and blocks on a test's handle while the test runs. It writes the
  per-run state (in the config's stash) and per-test state (in the item's
  stash); no other thread touches them.
* Worker 0 of the test's grid runs the test body (a grid task) and the async
  fixtures (each in an ``asyncio.Task`` of its own, in the context
  pytest-asyncio would give it). The main thread only waits for them.
"""

from __future__ import annotations

import contextvars
import inspect
from collections.abc import Callable, Coroutine, Generator, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

import pytest

from ..grid import Grid
from ._leaks import TestGrid, cancel_leaks, finish, leak_message, live_tasks
from ._options import SCOPES, ScopeName, Settings, state
from ._run import apply_context, run_on_worker0, wait

if TYPE_CHECKING:
    from _pytest.fixtures import FixtureDef

T = TypeVar("T")

_MARKER = "loopgrid"
#: Markers of other plugins that run a test on their own event loop.
_RIVALS = ("asyncio", "anyio")
#: pytest-asyncio's fixture that its loop factories parametrize (see pytest_generate_tests).
_ASYNCIO_FACTORY_FIXTURE = "_asyncio_loop_factory"

_SETTINGS = pytest.StashKey[Settings]()
#: Ids of the tasks that were live on a shared grid when the test's call began.
_BEFORE = pytest.StashKey[set[int]]()
#: The shared (wider than function-scoped) grid a test runs on.
_SHARED = pytest.StashKey[TestGrid]()


# -- the marker -------------------------------------------------------------------


def _marked_settings(item: pytest.Item) -> Settings | None:
    """The settings of a loopgrid-marked item that passed validation, else None."""
    s = item.stash.get(_SETTINGS, None)
    return s if s is not None and s.marked else None


def _parse_marker(item: pytest.Item) -> Settings:
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
        loops = state(item.config).loops
    if type(loops) is not int or loops < 1:
        pytest.fail(f"{where} needs loops to be an int >= 1, got {loops!r}", pytrace=False)
    scope = mark.kwargs.get("scope", "function")
    if scope not in SCOPES:
        pytest.fail(
            f"{where} got scope={scope!r}; valid scopes: {', '.join(SCOPES)}", pytrace=False
        )
    return Settings(loops, scope, marked=True)


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
    st = state(item.config)
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
                else "; to run anyio tests on a grid's loop instead, return "
                '("asyncio", {"loop_factory": loopgrid.pytest_plugin.grid_loop_factory()}) '
                "from the anyio_backend fixture"
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
            item.stash[_BEFORE] = {r.id for r in live_tasks(tg.grid, tg.timeout) if r.id}


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    if _marked_settings(pyfuncitem) is None or not inspect.iscoroutinefunction(pyfuncitem.obj):
        return None
    __tracebackhide__ = True
    grid: Grid = pyfuncitem.funcargs["loopgrid_grid"]  # type: ignore[assignment]
    fn = pyfuncitem.obj
    kwargs = {name: pyfuncitem.funcargs[name] for name in pyfuncitem._fixtureinfo.argnames}
    wait(grid.spawn(_call, fn, kwargs, worker=0, name=pyfuncitem.name))
    return True


async def _call(fn: Callable[..., Coroutine[Any, Any, Any]], kwargs: dict[str, Any]) -> None:
    await fn(**kwargs)


# -- async fixtures -----------------------------------------------------------------


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_fixture_setup(
    fixturedef: FixtureDef[Any], request: pytest.FixtureRequest
) -> Generator[None, Any, Any]:
    item = state(request.config).item
    settings = None if item is None else _marked_settings(item)
    func = fixturedef.func
    if settings is None or not (_is_async(func) or _wrapped_by_pytest_asyncio(func)):
        return (yield)
    assert item is not None
    if SCOPES.index(fixturedef.scope) > SCOPES.index(settings.scope):
        pytest.fail(
            f"{item.nodeid}: the async fixture {fixturedef.argname!r} has scope "
            f"{fixturedef.scope!r}, wider than the {settings.scope!r}-scoped grid the test runs "
            f"on, which would close before the fixture's teardown. Share the grid as widely: "
            f"@pytest.mark.loopgrid(scope={fixturedef.scope!r}).",
            pytrace=False,
        )
    # The grid of the fixture's own scope (which the test's grid is, or outlives):
    # requested here, it is set up first and so torn down after the fixture.
    tg: TestGrid = request.getfixturevalue(f"_loopgrid_grid_{settings.scope}")
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
                value = run_on_worker0(grid, agen.__anext__(), ctx, f"fixture {name} (setup)")
            except StopAsyncIteration:
                raise ValueError(f"async fixture {name!r} did not yield a value") from None
            reset = apply_context(ctx)
            try:
                yield value
                try:
                    run_on_worker0(grid, agen.__anext__(), ctx, f"fixture {name} (teardown)")
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
        value = run_on_worker0(grid, func(**kwargs), ctx, f"fixture {name}")
        request.addfinalizer(apply_context(ctx))
        return value

    return async_fixture


def _taking_only_its_arguments(func: Callable[..., T]) -> Callable[..., T]:
    """``func``, dropping keyword arguments it does not take (pytest-asyncio 1.0
    adds ``request`` to an async fixture's arguments)."""
    params = inspect.signature(func).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return func
    return lambda **kwargs: func(**{k: v for k, v in kwargs.items() if k in params})


# -- the grids of tests -------------------------------------------------------------


def _make_grid_fixture(scope: ScopeName) -> Any:
    @pytest.fixture(scope=scope, name=f"_loopgrid_grid_{scope}")
    def fixture(request: pytest.FixtureRequest) -> Iterator[TestGrid]:
        item = state(request.config).item
        settings = None if item is None else item.stash.get(_SETTINGS, None)
        loops = state(request.config).loops if settings is None else settings.loops
        label = getattr(request.node, "name", "") or scope
        tg = TestGrid(
            loops,
            f"pytest-{scope}-{label}",
            f"when its {scope} scope ended",
            state(request.config).close_timeout,
        )
        try:
            yield tg
        finally:
            finish(tg)

    return fixture


_loopgrid_grid_function = _make_grid_fixture("function")
_loopgrid_grid_class = _make_grid_fixture("class")
_loopgrid_grid_module = _make_grid_fixture("module")
_loopgrid_grid_package = _make_grid_fixture("package")
_loopgrid_grid_session = _make_grid_fixture("session")


def _shared_grid_of(item: pytest.Item) -> TestGrid | None:
    return item.stash.get(_SHARED, None)


@pytest.fixture
def loopgrid_grid(request: pytest.FixtureRequest) -> Iterator[Grid]:
    """The grid of the current test.

    In a test marked ``@pytest.mark.loopgrid``, the grid the test runs on (shared
    within the marker's scope). In any other test, a fresh grid of
    ``--loopgrid-loops`` loops (else the ``loopgrid_loops`` ini option, else 2).
    Either way, when the test ends a task still on the grid, or a worker thread
    that does not stop, fails it.
    """
    item = request.node
    settings = item.stash.get(_SETTINGS, None)
    if settings is None:
        settings = item.stash[_SETTINGS] = Settings(
            state(request.config).loops, "function", marked=False
        )
    tg: TestGrid = request.getfixturevalue(f"_loopgrid_grid_{settings.scope}")
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
    leaks = [r for r in live_tasks(tg.grid, tg.timeout) if r.id not in before]
    if leaks:
        cancel_leaks(leaks, tg.timeout)
        pytest.fail(leak_message(tg.grid, leaks, "when the test ended"), pytrace=False)
