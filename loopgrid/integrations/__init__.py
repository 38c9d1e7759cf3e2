"""Known loop-bound objects made safe for every loop of a grid, behind the same object.

Why: applications make their database engine and HTTP client once, at module
level, and use them from every request. Their connection pools are bound to
the event loop that first used them, so on a grid, where requests run on
several loops, they fail under load. :class:`loopgrid.LoopLocal` fixes code
that can be changed; these adapters fix the objects themselves, in place: the
object keeps its identity (every ``from app import engine`` still sees it),
and each loop that uses it gets its own connection pool, closed when that loop
shuts down.

asyncio primitives made at import are the other case: one per loop would
change what they mean, so :mod:`.primitives` puts one of loopgrid's
cross-loop primitives underneath instead.

``loopgrid serve`` calls :func:`adapt` on the objects of the app's
modules at startup. Applications (or their own runners) can call it, or the
adapters directly: :func:`loopgrid.integrations.sqlalchemy.per_loop_engine`,
:func:`loopgrid.integrations.httpx.per_loop_client`. The libraries are
optional: nothing here imports them unless it is given one of their objects.
Nor does this package import :mod:`.primitives` before :func:`adapt` runs:
``import loopgrid`` imports it (through ``integrations.anyio_hook``), and
most processes never adapt anything.
"""

from __future__ import annotations

__all__ = ["adapt"]

# (top-level package, qualified name) of a known class -> the adapter module's
# name. The package rather than the module: httpx sets its public classes'
# __module__ to "httpx", SQLAlchemy keeps "sqlalchemy.ext.asyncio.engine".
_KNOWN = {
    ("sqlalchemy", "AsyncEngine"): "sqlalchemy",
    ("httpx", "AsyncClient"): "httpx",
}


def _kind(obj: object) -> str | None:
    for cls in type(obj).__mro__:
        package = cls.__module__.partition(".")[0]
        kind = _KNOWN.get((package, cls.__qualname__))
        if kind is not None:
            return kind
    return None


def adapt(obj: object) -> str | None:
    """Make ``obj`` safe to use from every loop, in place, if loopgrid knows how.

    Known: a sqlalchemy ``AsyncEngine`` and an ``httpx.AsyncClient`` (and their
    subclasses) get one connection pool per event loop; an idle asyncio
    primitive or queue of asyncio's own class gets loopgrid's cross-loop
    counterpart underneath (:mod:`.primitives`). Returns a short label
    of what was done (for a log line), or None for any other object.
    Recognises the client classes by name, so it imports neither library.
    Applying it twice to an object is harmless.
    """
    from . import primitives

    label = primitives.cross_loop(obj)
    if label is not None:
        return label
    kind = _kind(obj)
    if kind == "sqlalchemy":
        from . import sqlalchemy

        return sqlalchemy._apply(obj)
    if kind == "httpx":
        from . import httpx

        return httpx._apply(obj)
    return None
