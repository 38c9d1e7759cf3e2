"""One SQLAlchemy connection pool per event loop, behind the same ``AsyncEngine``.

Why: the usual application makes its ``AsyncEngine`` once, at module level,
and every request uses it. The engine's pool is bound to the event loop that
first used it: ``AsyncAdaptedQueuePool`` makes callers wait for a free
connection on an ``asyncio.Queue``, which belongs to one loop, and the pooled
connections of most drivers (asyncpg, asyncmy, psycopg) are that loop's
transports. Used from several loops (a grid's workers, ``loopgrid serve``), the
engine works until two loops contend for a connection, then fails with
"... is bound to a different event loop" or "attached to a different loop",
or hands one loop a connection whose I/O belongs to another.

:func:`per_loop_engine` keeps the engine object (so the module-level name, the
``async_sessionmaker`` bound to it and every import of it stay as they are)
and replaces its pool with a :class:`_PerLoopPool`, which keeps one real pool
per running loop, made the first time that loop asks, by the original pool's
``recreate()``: same class, same arguments (``pool_size``, ``max_overflow``,
``pool_timeout``, ``pool_pre_ping``, ...) and the same event listeners. A
checked-out connection keeps a reference to the pool it came from, so it goes
back there. Each loop's pool is disposed when that loop shuts down, on that
loop (through :class:`~loopgrid.looplocal.LoopLocal`, at
``loop.shutdown_asyncgens()``).

What is per loop: the pool, its queue, its connections, ``pool_size`` and
``max_overflow`` (so N loops may open N times as many connections to the
database). What stays shared: the engine, its dialect, URL, compiled-statement
cache and engine-level events. Limits:

- A connection, ``AsyncConnection`` or ``AsyncSession`` still belongs to the
  loop that checked it out: do not hand one to a task on another loop.
- Pool event listeners registered (on the engine or on ``engine.sync_engine.pool``)
  after a loop made its pool reach only the pools made after them: register
  them before the loops start using the engine.
- ``await engine.dispose()`` closes the calling loop's idle connections and
  starts a fresh set of per-loop pools; the other loops' previous pools are
  disposed when those loops shut down. A loop closed without
  ``shutdown_asyncgens()`` never disposes its pool.
- Connections pooled before the call stay in the original pool (the
  ``template``), unused.
- ``StaticPool`` (one connection for everyone, e.g. SQLite ``:memory:``: one
  per loop would give each loop its own database), ``SingletonThreadPool`` and
  ``NullPool`` (nothing kept between uses) are left as they are.
"""

from __future__ import annotations

from asyncio.events import _get_running_loop
from typing import Any, cast

from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import NullPool, Pool, PoolProxiedConnection, SingletonThreadPool, StaticPool
from sqlalchemy.util import greenlet_spawn

from .. import logs
from ..looplocal import LoopLocal

__all__ = ["per_loop_engine"]

_LABEL = "sqlalchemy AsyncEngine: one connection pool per loop"

# Pools that are not split, and why.
_LEFT_SHARED: tuple[tuple[type[Pool], str], ...] = (
    (
        StaticPool,
        "StaticPool shares one connection on purpose (a SQLite :memory: database); "
        "one per loop would give each loop its own database",
    ),
    (SingletonThreadPool, "SingletonThreadPool keeps one connection per thread already"),
    (NullPool, "NullPool keeps no connection between uses, so nothing in it is bound to a loop"),
)


class _PerLoopPool:
    """Stands in for ``engine.sync_engine.pool``: one real pool per running loop.

    Made by :func:`per_loop_engine`; see the module's docstring. ``template`` is
    the engine's original pool: each loop's pool is ``template.recreate()``,
    and code that runs outside any event loop (reading ``size()`` or
    ``echo`` at import time, say) is answered by it.

    Thread ownership: the pools live in a :class:`LoopLocal`: only a loop's
    own thread makes or drops its pool; other threads read snapshots.
    """

    def __init__(self, template: Pool) -> None:
        self.template = template
        self._local: LoopLocal[Pool] = LoopLocal(
            self._make, close=self._dispose_on_loop, name=f"per-loop pool of {template!r}"
        )

    def __repr__(self) -> str:
        return f"<loopgrid per-loop pool of {self.template!r} on {self._local.loops()} loop(s)>"

    # -- loopgrid's own ---------------------------------------------------------

    def current(self) -> Pool:
        """The running loop's pool, made now if this loop has none yet."""
        return self._local.value

    def loops(self) -> int:
        """How many loops hold a pool now."""
        return self._local.loops()

    def _make(self) -> Pool:
        return self.template.recreate()

    async def _dispose_on_loop(self, pool: Pool) -> None:
        # Closing a connection of an asyncio driver awaits inside the pool's
        # synchronous code, which needs SQLAlchemy's greenlet context.
        await greenlet_spawn(pool.dispose)

    def _mine(self) -> Pool | None:
        """The running loop's pool if it has one; the template outside any loop."""
        loop = _get_running_loop()
        if loop is None:
            return self.template
        return self._local.for_loop(loop)

    def _target(self) -> Pool:
        """The running loop's pool (made now if need be); the template outside any loop."""
        if _get_running_loop() is None:
            return self.template
        return self._local.value

    # -- what Engine and PoolEvents use -----------------------------------------

    def connect(self) -> PoolProxiedConnection:
        """A connection from the running loop's pool (it is returned there)."""
        return self._target().connect()

    def _invalidate(
        self,
        connection: PoolProxiedConnection,
        exception: BaseException | None = None,
        _checkin: bool = True,
    ) -> None:
        owner = getattr(connection, "_pool", None)
        if not isinstance(owner, Pool):
            owner = self._target()
        owner._invalidate(connection, exception, _checkin)
        # A disconnect seen on one loop usually means that the server dropped
        # every connection (a restart): as one shared pool would, mark the
        # other loops' older connections too, which each pool then replaces at
        # its next checkout. A float written across threads: at worst a
        # connection is recycled one checkout later.
        stamp = owner._invalidate_time
        for pool in (self.template, *(p for _, p in self._local.items())):
            if pool._invalidate_time < stamp:
                pool._invalidate_time = stamp

    def dispose(self) -> None:
        """Dispose of the running loop's pool (the template outside any loop)."""
        pool = self._mine()
        if pool is not None:
            pool.dispose()

    def recreate(self) -> _PerLoopPool:
        """A fresh per-loop pool over ``template.recreate()`` (``Engine.dispose``)."""
        return _PerLoopPool(self.template.recreate())

    def status(self) -> str:
        """The running loop's pool status; outside a loop, a summary of all."""
        pool = self._mine()
        if pool is not None and pool is not self.template:
            return pool.status()
        pools = self._local.items()
        lines = [f"one pool per event loop, {len(pools)} loop(s) with a pool"]
        lines += [f"  loop {id(loop):#x}: {p.status()}" for loop, p in pools]
        lines.append(f"  template: {self.template.status()}")
        return "\n".join(lines)

    @property
    def dispatch(self) -> Any:
        # Listeners registered through the engine or this object go to the
        # template, which recreate() copies them from.
        return self.template.dispatch

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return getattr(self._target(), name)


def _apply(engine: object) -> str:
    """Install the per-loop pool on ``engine``; a label saying what was done."""
    if not isinstance(engine, AsyncEngine):
        raise TypeError(f"per_loop_engine() needs a sqlalchemy AsyncEngine, got {engine!r}")
    sync_engine = engine.sync_engine
    pool: object = sync_engine.pool
    if isinstance(pool, _PerLoopPool):
        return _LABEL
    if not isinstance(pool, Pool):
        return f"sqlalchemy AsyncEngine: left as is (its pool {pool!r} is not a sqlalchemy Pool)"
    for cls, why in _LEFT_SHARED:
        if isinstance(pool, cls):
            return f"sqlalchemy AsyncEngine: left as is ({why})"
    if type(pool).recreate is Pool.recreate:
        return f"sqlalchemy AsyncEngine: left as is ({type(pool).__name__} has no recreate())"
    sync_engine.pool = cast(Pool, _PerLoopPool(pool))
    return _LABEL


def per_loop_engine(engine: AsyncEngine) -> None:
    """Give ``engine`` one connection pool per event loop, in place.

    The engine stays the same object; each loop that uses it gets its own pool
    (made by the original pool's ``recreate()``), disposed when that loop shuts
    down. A second call on the same engine does nothing; an engine whose pool
    is not bound to a loop, or must stay shared (``StaticPool``, ``NullPool``,
    ``SingletonThreadPool``), is left as it is, with a log line saying so. See
    the module's docstring for what stays shared and the limits.
    """
    label = _apply(engine)
    if label != _LABEL:
        logs.info("integrations.left_shared", what=label)
