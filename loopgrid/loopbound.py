"""Which objects are bound to one event loop, and where an app keeps them.

Why: an object bound to the loop that made or first used it (an
``asyncio.Lock`` with waiters, a client whose pooled connections are that
loop's transports) works under one loop and fails under several, with
asyncio's "bound to a different event loop" - intermittently, under load,
when a request on one loop waits on what another loop holds. That is the
worst way to fail, so ``loopgrid serve`` looks for such objects before it
serves: in the app's modules (engines, clients and primitives made at import)
and, when the app's state is shared by every loop, in that state. Those
``loopgrid.integrations`` can adapt in place are marked ``adaptable``; the
others it names, with the fix.

Known types are recognised by the module and name of a class in the object's
MRO, so nothing optional is imported to check them. An object of an unknown
type is flagged only when it holds an event loop itself (a ``_loop``
attribute). An unstarted ``asyncio`` primitive is flagged too: it binds to
the first loop that waits on it.

Everything here runs on the controlling thread at startup.
"""

from __future__ import annotations

import asyncio
import os
import sys
import sysconfig
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from types import BuiltinFunctionType, FunctionType, MethodType, ModuleType
from typing import Any

from .integrations import primitives

__all__ = ["Finding", "app_modules", "describe", "scan", "scan_modules"]

#: How to fix each kind of finding, by what it is.
FIX_PRIMITIVE = (
    "use loopgrid's cross-loop {name} (loopgrid.{name}) for one {name} shared by every "
    "loop, or loopgrid.LoopLocal(asyncio.{name}) for one per loop"
)
FIX_CLIENT = (
    "make it per loop: create it in the app's lifespan (loopgrid serve runs the lifespan on "
    "every loop by default), or wrap its creation in loopgrid.LoopLocal(factory) for a "
    "module-level one"
)
FIX_ANYIO = (
    "make it with no loop running (at import) or while the grid runs: anyio's primitives "
    "made then work across loops (docs/porting.md, 'anyio'); or make it per loop, in the "
    "app's lifespan or with loopgrid.LoopLocal(factory)"
)

#: Subclasses before their bases: the first match names the fix.
_PRIMITIVES = {
    asyncio.Lock: "Lock",
    asyncio.Event: "Event",
    asyncio.Condition: "Condition",
    asyncio.BoundedSemaphore: "BoundedSemaphore",
    asyncio.Semaphore: "Semaphore",
    asyncio.PriorityQueue: "PriorityQueue",
    asyncio.LifoQueue: "LifoQueue",
    asyncio.Queue: "Queue",
}
if sys.version_info >= (3, 11):
    _PRIMITIVES[asyncio.Barrier] = "Barrier"
#: Every asyncio primitive has a cross-loop loopgrid equivalent of the same name.
_LOOPGRID_EQUIVALENT = set(_PRIMITIVES.values())

#: (module prefix, class name) -> (what it is, whether loopgrid.integrations
#: can give each loop its own pool behind the same object).
_KNOWN: dict[tuple[str, str], tuple[str, bool]] = {
    ("sqlalchemy.ext.asyncio", "AsyncEngine"): ("a SQLAlchemy AsyncEngine", True),
    ("httpx", "AsyncClient"): ("an httpx.AsyncClient", True),
    ("aiohttp", "ClientSession"): ("an aiohttp.ClientSession", False),
    ("aiohttp", "BaseConnector"): ("an aiohttp connector", False),
    ("asyncpg", "Pool"): ("an asyncpg pool", False),
    ("asyncpg", "Connection"): ("an asyncpg connection", False),
    ("redis.asyncio", "Redis"): ("a redis.asyncio client", False),
    ("redis.asyncio", "ConnectionPool"): ("a redis.asyncio connection pool", False),
    ("motor", "AsyncIOMotorClient"): ("a Motor client", False),
    ("anyio", "Lock"): ("an anyio.Lock", False),
    ("anyio", "Event"): ("an anyio.Event", False),
    ("anyio", "Semaphore"): ("an anyio.Semaphore", False),
    ("anyio", "Condition"): ("an anyio.Condition", False),
    ("anyio", "CapacityLimiter"): ("an anyio.CapacityLimiter", False),
}


_NOT_OBJECTS = (type, ModuleType, FunctionType, BuiltinFunctionType, MethodType)


@dataclass(frozen=True)
class Finding:
    """One loop-bound object: where it is kept, what it is, and the fix."""

    where: str
    obj: Any
    what: str
    fix: str
    #: loopgrid.integrations can give each loop its own behind this object.
    adaptable: bool = False

    def __str__(self) -> str:
        return f"{self.where} is {self.what}, bound to one event loop: {self.fix}"


def describe(obj: Any) -> tuple[str, str, bool] | None:
    """``(what, fix, adaptable)`` if ``obj`` is bound to one event loop, else None."""
    if isinstance(obj, _NOT_OBJECTS) or primitives.is_shared(obj):
        return None
    for kind, name in _PRIMITIVES.items():
        if isinstance(obj, kind):
            fix = FIX_PRIMITIVE.format(name=name)
            if name not in _LOOPGRID_EQUIVALENT:
                fix = f"use loopgrid.LoopLocal(asyncio.{name}) for one per loop"
            cls = type(obj)
            what = (
                f"an asyncio.{cls.__name__}"
                if cls.__module__.startswith("asyncio")
                else f"a {cls.__qualname__} (an asyncio.{name})"
            )
            return what, fix, primitives.adoptable(obj)
    if isinstance(obj, asyncio.Future):
        return "an asyncio future or task", "create it inside the code that awaits it", False
    for cls in type(obj).__mro__:
        module = cls.__module__ or ""
        for (prefix, name), (what, adaptable) in _KNOWN.items():
            if cls.__name__ == name and (module == prefix or module.startswith(prefix + ".")):
                if prefix != "anyio":
                    return what, FIX_CLIENT, adaptable
                if _anyio_crosses_loops(obj):
                    return None
                return what, FIX_ANYIO, adaptable
    try:
        loop = getattr(obj, "_loop", None)
    except Exception:
        return None
    if isinstance(loop, asyncio.AbstractEventLoop):
        return f"a {type(obj).__qualname__} that holds an event loop", FIX_CLIENT, False
    return None


def _anyio_crosses_loops(obj: Any) -> bool:
    """True for an anyio primitive that loopgrid makes work across loops; asks
    :mod:`.integrations.anyio` (which loads anyio's asyncio backend) only when
    anyio is imported, as it is when ``obj`` is really anyio's."""
    if "anyio" not in sys.modules:
        return False
    from .integrations.anyio import crosses_loops

    return crosses_loops(obj)


def scan(items: Iterable[tuple[str, Any]], depth: int = 1) -> list[Finding]:
    """Findings among named values, looking ``depth`` levels into plain
    containers (dict, list, tuple, set) and into SQLAlchemy session makers
    (the engine they are bound to)."""
    found: list[Finding] = []
    seen: set[int] = set()
    for where, value in items:
        _scan_one(where, value, depth, found, seen)
    return found


def _scan_one(where: str, value: Any, depth: int, found: list[Finding], seen: set[int]) -> None:
    if id(value) in seen:
        return
    seen.add(id(value))
    described = describe(value)
    if described is not None:
        what, fix, adaptable = described
        found.append(Finding(where, value, what, fix, adaptable))
        return
    for name, inner in _inside(value, depth):
        _scan_one(f"{where}{name}", inner, depth - 1, found, seen)


def _inside(value: Any, depth: int) -> Iterator[tuple[str, Any]]:
    if type(value).__name__ in ("async_sessionmaker", "sessionmaker"):
        bind = getattr(value, "kw", {}).get("bind")
        if bind is not None:
            yield ".kw['bind']", bind
        return
    if depth <= 0:
        return
    if isinstance(value, Mapping):
        try:
            entries = list(value.items())
        except Exception:
            return
        for key, inner in entries:
            yield f"[{key!r}]", inner
    elif isinstance(value, (list, tuple, set, frozenset)):
        for i, inner in enumerate(value):
            yield f"[{i}]", inner


def _library_dirs() -> tuple[str, ...]:
    paths = sysconfig.get_paths()
    dirs = {paths[k] for k in ("stdlib", "platstdlib", "purelib", "platlib") if k in paths}
    dirs.add(os.path.dirname(os.path.abspath(__file__)))  # loopgrid itself
    return tuple(os.path.join(os.path.realpath(d), "") for d in dirs)


def _file_of(module: ModuleType) -> str | None:
    file = getattr(module, "__file__", None)
    if not isinstance(file, str):
        return None
    return os.path.realpath(file)


def _root_of(file: str) -> str:
    """The folder of a module's top-level package (its own folder if it has none)."""
    folder = os.path.dirname(file)
    while os.path.exists(os.path.join(folder, "__init__.py")):
        parent = os.path.dirname(folder)
        if parent == folder:
            break
        folder = parent
    return os.path.join(folder, "")


def app_modules(app: Any) -> list[ModuleType]:
    """The modules of the app's own code: every module loaded from the folder
    of a module that holds ``app`` as a global (its top-level package's
    folder), library and loopgrid modules excluded."""
    libraries = _library_dirs()
    modules = [m for m in list(sys.modules.values()) if isinstance(m, ModuleType)]
    roots: set[str] = set()
    for module in modules:
        file = _file_of(module)
        if file is None or file.startswith(libraries):
            continue
        try:
            holds = any(v is app for v in list(vars(module).values()))
        except Exception:
            continue
        if holds:
            roots.add(_root_of(file))
    if not roots:
        return []
    picked = []
    for module in modules:
        file = _file_of(module)
        if file is not None and not file.startswith(libraries) and file.startswith(tuple(roots)):
            picked.append(module)
    return picked


def scan_modules(modules: Iterable[ModuleType]) -> list[Finding]:
    """Loop-bound objects among the modules' globals (and in the session
    makers and containers they hold)."""
    items: list[tuple[str, Any]] = []
    for module in modules:
        for name, value in list(vars(module).items()):
            if not name.startswith("__"):
                items.append((f"{module.__name__}.{name}", value))
    return scan(items)
