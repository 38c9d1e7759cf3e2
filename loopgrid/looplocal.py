"""One value per event loop: :class:`LoopLocal`, and the hook that closes it.

Why: most asyncio clients and pools (httpx and aiohttp clients, database
engines and pools, ``redis.asyncio``) are bound to the loop that first used
them: their connections are that loop's transports, their waiters that loop's
futures. On a grid, a module-level client shared by every request is used
from several loops, and fails there, intermittently, under load. ``threading.local``
is the wrong scope too: what matters is the loop, not the thread (a plain
``asyncio.run`` per test makes a new loop on the same thread each time).

A :class:`LoopLocal` makes the value lazily, once per running loop, on that
loop, and closes it when that loop is shut down. The closing rides on the
asynchronous-generator hooks every event loop has (asyncio's and uvloop's):
each loop's value is paired with a suspended async generator, registered with
the loop by its first step; ``loop.shutdown_asyncgens()``, which
``asyncio.run``, ``asyncio.Runner``, uvicorn and every loopgrid worker call
before closing a loop, closes that generator, and its ``finally`` awaits the
value's close on the still-running loop. A loop closed without
``shutdown_asyncgens()`` never closes its values (nor frees them).

Thread ownership: ``_values`` maps each loop to its entry. Only the thread
running a loop adds or removes that loop's entry (creation and the close hook
both run on it), and dict operations on distinct keys are atomic (per-object
locks on free-threaded builds), so no lock is needed.
"""

from __future__ import annotations

import asyncio
import inspect
from asyncio.events import _get_running_loop
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Any, Generic, TypeVar

__all__ = ["LoopLocal", "at_loop_close"]

T = TypeVar("T")

_Closer = Callable[[], "Awaitable[object] | object"]


async def _closing(close: _Closer) -> AsyncGenerator[None, None]:
    try:
        yield
    finally:
        result = close()
        if inspect.isawaitable(result):
            await result


def at_loop_close(close: _Closer) -> AsyncGenerator[None, None]:
    """Call ``close()`` (awaiting what it returns) when the running loop shuts down.

    Returns the generator that carries the hook: the caller keeps it alive as
    long as the hook should stay (if it is collected first, the loop closes
    it then, which runs ``close`` early). Must be called on the loop's thread.
    """
    if _get_running_loop() is None:
        raise RuntimeError("at_loop_close() needs a running event loop")
    agen = _closing(close)
    try:
        # The first step registers the generator with the running loop
        # (sys.set_asyncgen_hooks' firstiter) and stops at its yield.
        agen.__anext__().send(None)
    except StopIteration:
        pass
    return agen


def _default_close(value: Any) -> Awaitable[object] | object:
    for name in ("aclose", "dispose", "close"):
        method = getattr(value, name, None)
        if callable(method):
            result: Awaitable[object] | object = method()
            return result
    return None


class LoopLocal(Generic[T]):
    """A value made once per event loop, by ``factory()`` on that loop.

    ``client = LoopLocal(httpx.AsyncClient)`` at module level, then
    ``await client.value.get(url)`` (or ``client.get(url)``: attributes that
    are not the LoopLocal's own are looked up on the running loop's value)
    in grid tasks, ``loopgrid serve`` requests and plain asyncio alike. The
    value is closed when its loop shuts down, on that loop: by ``close(value)``
    if given, else by the first of its ``aclose()``, ``dispose()`` or
    ``close()`` (awaited if that returns an awaitable). A failing close is
    reported to the loop's exception handler.

    A factory that returns an awaitable (``aiosqlite.connect``,
    ``asyncpg.create_pool``) needs ``await local.aget()``; tasks of one loop
    that ask at once share one creation.
    """

    __slots__ = ("_close", "_factory", "_name", "_pending", "_values")

    def __init__(
        self,
        factory: Callable[[], T | Awaitable[T]],
        *,
        close: Callable[[T], Awaitable[object] | object] | None = None,
        name: str | None = None,
    ) -> None:
        if not callable(factory):
            raise TypeError(f"LoopLocal needs a callable that makes the value, got {factory!r}")
        if close is not None and not callable(close):
            raise TypeError(f"close must be a callable taking the value, or None, got {close!r}")
        self._factory = factory
        self._close = close
        self._name = name or getattr(factory, "__qualname__", repr(factory))
        self._values: dict[asyncio.AbstractEventLoop, tuple[T, AsyncGenerator[None, None]]] = {}
        self._pending: dict[asyncio.AbstractEventLoop, asyncio.Future[T]] = {}

    def __repr__(self) -> str:
        return f"<loopgrid.LoopLocal {self._name} on {len(self._values)} loop(s)>"

    @property
    def value(self) -> T:
        """The running loop's value, made now if this loop has none yet."""
        loop = self._loop("value")
        entry = self._values.get(loop)
        if entry is not None:
            return entry[0]
        made = self._factory()
        if inspect.isawaitable(made):
            if inspect.iscoroutine(made):
                made.close()
            raise TypeError(
                f"the factory of {self!r} returned an awaitable: use 'await local.aget()' "
                "instead of 'local.value'"
            )
        return self._keep(loop, made)

    async def aget(self) -> T:
        """The running loop's value, made (and awaited, if need be) now if
        this loop has none yet."""
        loop = self._loop("aget()")
        entry = self._values.get(loop)
        if entry is not None:
            return entry[0]
        pending = self._pending.get(loop)
        if pending is not None:
            return await asyncio.shield(pending)
        fut: asyncio.Future[T] = loop.create_future()
        self._pending[loop] = fut
        try:
            made = self._factory()
            if inspect.isawaitable(made):
                made = await made
            value = self._keep(loop, made)
        except BaseException as exc:
            fut.set_exception(exc)
            fut.exception()  # retrieved: the caller raises it
            raise
        finally:
            del self._pending[loop]
        fut.set_result(value)
        return value

    def for_loop(self, loop: asyncio.AbstractEventLoop) -> T | None:
        """The value ``loop`` holds, if it made one (from any thread)."""
        entry = self._values.get(loop)
        return None if entry is None else entry[0]

    def items(self) -> list[tuple[asyncio.AbstractEventLoop, T]]:
        """A snapshot of each loop that holds a value, with its value (any thread)."""
        return [(loop, entry[0]) for loop, entry in list(self._values.items())]

    def loops(self) -> int:
        """How many loops hold a value now."""
        return len(self._values)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.value, name)

    def _loop(self, what: str) -> asyncio.AbstractEventLoop:
        loop = _get_running_loop()
        if loop is None:
            raise RuntimeError(
                f"{self!r}.{what} was used outside a running event loop: each loop has "
                "its own value, so use it from async code (a grid task, a request, "
                "asyncio.run)"
            )
        return loop

    def _keep(self, loop: asyncio.AbstractEventLoop, value: T) -> T:
        def close() -> Awaitable[None]:
            return self._close_on(loop, value)

        self._values[loop] = (value, at_loop_close(close))
        return value

    async def _close_on(self, loop: asyncio.AbstractEventLoop, value: T) -> None:
        self._values.pop(loop, None)
        try:
            result = self._close(value) if self._close is not None else _default_close(value)
            if inspect.isawaitable(result):
                await result
        except Exception as exc:
            loop.call_exception_handler(
                {
                    "message": f"loopgrid: closing the value of {self!r} at loop shutdown failed",
                    "exception": exc,
                }
            )
