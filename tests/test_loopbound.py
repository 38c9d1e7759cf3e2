"""loopgrid.loopbound: which objects are bound to one loop, and where an app keeps them."""

from __future__ import annotations

import asyncio
import sys
import types
from pathlib import Path
from typing import Any

import pytest

from loopgrid import loopbound


class HoldsALoop:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop


def test_asyncio_primitives_are_bound_and_loopgrids_equivalents_are_named() -> None:
    lock = loopbound.describe(asyncio.Lock())
    assert lock is not None
    what, fix, adaptable = lock
    assert what == "an asyncio.Lock" and "loopgrid.Lock" in fix
    assert adaptable  # idle: loopgrid can put its cross-loop Lock underneath
    condition = loopbound.describe(asyncio.Condition())
    assert condition is not None and "loopgrid.Condition" in condition[1]
    assert "LoopLocal(asyncio.Condition)" in condition[1] and condition[2]
    priority = loopbound.describe(asyncio.PriorityQueue())  # a Queue subclass
    assert priority is not None and priority[0] == "an asyncio.PriorityQueue"
    assert "loopgrid.PriorityQueue" in priority[1] and priority[2]
    bounded = loopbound.describe(asyncio.BoundedSemaphore())  # a Semaphore subclass
    assert bounded is not None and "loopgrid.BoundedSemaphore" in bounded[1]
    lifo = loopbound.describe(asyncio.LifoQueue())
    assert lifo is not None and "loopgrid.LifoQueue" in lifo[1]
    if sys.version_info >= (3, 11):
        barrier = loopbound.describe(asyncio.Barrier(2))
        assert barrier is not None and "loopgrid.Barrier" in barrier[1] and barrier[2]


class _MyCondition(asyncio.Condition):
    """A subclass: loopgrid cannot know what it adds, so it is never taken over."""


def test_a_subclass_or_a_held_lock_is_named_but_not_adaptable() -> None:
    found = loopbound.describe(_MyCondition())
    assert found is not None and "loopgrid.Condition" in found[1] and not found[2]
    held = asyncio.Lock()
    asyncio.run(held.acquire())
    cond = asyncio.Condition(held)
    found = loopbound.describe(cond)
    assert found is not None and not found[2]


def test_plain_values_and_loopgrid_primitives_are_not_bound() -> None:
    import loopgrid

    for value in (1, "text", {"a": 1}, [1, 2], loopgrid.Lock(), loopgrid.Queue(), len, Path):
        assert loopbound.describe(value) is None, value


def test_an_object_that_holds_a_loop_is_bound() -> None:
    loop = asyncio.new_event_loop()
    try:
        found = loopbound.describe(HoldsALoop(loop))
    finally:
        loop.close()
    assert found is not None and found[0] == "a HoldsALoop that holds an event loop"


def test_known_clients_are_recognised_by_name_without_importing_them() -> None:
    httpx = pytest.importorskip("httpx", reason="an httpx client to recognise")
    client = httpx.AsyncClient()
    found = loopbound.describe(client)
    assert found is not None and found[0] == "an httpx.AsyncClient" and found[2] is True


def test_scan_looks_into_containers_and_session_makers() -> None:
    sa = pytest.importorskip("sqlalchemy.ext.asyncio", reason="a session maker to look into")
    pytest.importorskip("aiosqlite", reason="the engine's driver")
    engine = sa.create_async_engine("sqlite+aiosqlite:///:memory:")
    maker = sa.async_sessionmaker(engine)
    found = loopbound.scan([("state.conds", {"a": _MyCondition()}), ("Session", maker), ("n", 3)])
    assert [(f.where, f.adaptable) for f in found] == [
        ("state.conds['a']", False),
        ("Session.kw['bind']", True),
    ]
    expected = "state.conds['a'] is a _MyCondition (an asyncio.Condition), bound to one"
    assert expected in str(found[0])


def test_the_apps_modules_are_those_beside_the_module_that_holds_it(tmp_path: Path) -> None:
    app: Any = object()
    (tmp_path / "app").mkdir()
    main = types.ModuleType("lg_test_main")
    main.__file__ = str(tmp_path / "app" / "lg_test_main.py")
    main.app = app  # type: ignore[attr-defined]
    db = types.ModuleType("lg_test_db")
    db.__file__ = str(tmp_path / "app" / "lg_test_db.py")
    db.lock = asyncio.Lock()  # type: ignore[attr-defined]
    elsewhere = types.ModuleType("lg_test_elsewhere")
    (tmp_path / "other").mkdir()
    elsewhere.__file__ = str(tmp_path / "other" / "lg_test_elsewhere.py")
    elsewhere.lock = asyncio.Lock()  # type: ignore[attr-defined]
    modules = {m.__name__: m for m in (main, db, elsewhere)}
    sys.modules.update(modules)
    try:
        picked = loopbound.app_modules(app)
        found = loopbound.scan_modules(picked)
    finally:
        for name in modules:
            del sys.modules[name]
    assert {m.__name__ for m in picked} == {"lg_test_main", "lg_test_db"}
    assert [f.where for f in found] == ["lg_test_db.lock"]


def test_an_app_held_by_no_module_has_no_modules() -> None:
    assert loopbound.app_modules(object()) == []


@pytest.mark.parametrize(
    ("module", "name", "what"),
    [
        ("aiohttp.client", "ClientSession", "an aiohttp.ClientSession"),
        ("asyncpg.pool", "Pool", "an asyncpg pool"),
        ("redis.asyncio.client", "Redis", "a redis.asyncio client"),
        ("anyio._core._synchronization", "Lock", "an anyio.Lock"),
    ],
)
def test_clients_loopgrid_cannot_adapt_are_named_with_the_fix(
    module: str, name: str, what: str
) -> None:
    # A stand-in class with the library's module and name: these libraries
    # are not installed for the tests, and recognising them imports nothing.
    cls = type(name, (), {"__module__": module})
    found = loopbound.describe(cls())
    assert found is not None
    assert found[0] == what
    assert "LoopLocal" in found[1] and "lifespan" in found[1]
    assert found[2] is False
