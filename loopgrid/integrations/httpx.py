"""One httpcore connection pool per event loop, behind the same ``httpx.AsyncClient``.

Why: a module-level ``httpx.AsyncClient`` is the usual way to reuse
connections across requests. Its pool (``httpcore.AsyncConnectionPool``,
inside each ``httpx.AsyncHTTPTransport``) is bound to the loop that used it: its
connections are that loop's sockets, and a request waiting for a free
connection waits on that loop's event, set by whichever request frees one.
Used from several loops at once (a grid's workers, ``loopgrid serve``), a
request on one loop can be handed a connection opened on another, or be woken
from another loop's thread, and fails or hangs under load.

:func:`per_loop_client` keeps the client object (its name, its settings, its
cookies) and gives each of its HTTP transports a :class:`_PerLoopConnectionPool`
in place of its pool: each loop that sends a request through it gets its own
copy of the pool, with the same configuration (``limits``, TLS context, HTTP/2,
proxy, retries, network backend) and none of the connections or queued
requests. Each loop's copy is closed when that loop shuts down, on that loop
(through :class:`~loopgrid.looplocal.LoopLocal`, at
``loop.shutdown_asyncgens()``).

What is per loop: connections, queued requests, and the ``limits`` (N loops
may open N times ``max_connections``). What stays shared: the client (headers,
cookies, auth, event hooks, timeouts) and its open/closed state: ``await
client.aclose()`` (or leaving ``async with client``) on one loop closes that
loop's connections and the client for every loop, as with one loop. Limits:

- A streamed response belongs to the loop that sent its request: read it there.
- Transports other than ``httpx.AsyncHTTPTransport`` (``MockTransport``,
  ``ASGITransport``, custom ones) are left as they are, with a log line.
- Connections opened before the call stay in the original pool (the
  ``template``), unused. A loop closed without ``shutdown_asyncgens()`` never
  closes its copy.
"""

from __future__ import annotations

import asyncio
import copy
import types
from asyncio.events import _get_running_loop
from typing import Any, cast

import httpcore
import httpx

from .. import logs
from ..looplocal import LoopLocal

__all__ = ["per_loop_client"]

_LABEL = "httpx AsyncClient: one connection pool per loop"

# What a copy of an httpcore.AsyncConnectionPool must not share with the
# original: its connections, its queue of requests, and its lock (a no-op in
# async mode, but an object per pool all the same). Everything else on the
# pool (and on its proxy subclasses) is configuration, set at construction.
_STATE = ("_connections", "_requests", "_optional_thread_lock")


class _PerLoopConnectionPool:
    """Stands in for an ``AsyncHTTPTransport``'s pool: one copy per running loop.

    Made by :func:`per_loop_client`; see the module's docstring. ``template``
    is the transport's original pool: each loop's copy is a shallow copy of it
    with fresh per-connection state, and code that runs outside any event loop
    is answered by it.

    Thread ownership: the copies live in a :class:`LoopLocal`: only a loop's
    own thread makes or drops its copy.
    """

    def __init__(self, template: httpcore.AsyncConnectionPool) -> None:
        self.template = template
        self._local: LoopLocal[httpcore.AsyncConnectionPool] = LoopLocal(
            self._make, close=self._close_on_loop, name=f"per-loop copy of {template!r}"
        )

    def __repr__(self) -> str:
        return f"<loopgrid per-loop pool of {self.template!r} on {self._local.loops()} loop(s)>"

    def current(self) -> httpcore.AsyncConnectionPool:
        """The running loop's copy, made now if this loop has none yet."""
        return self._local.value

    def loops(self) -> int:
        """How many loops hold a copy now."""
        return self._local.loops()

    def _make(self) -> httpcore.AsyncConnectionPool:
        pool = copy.copy(self.template)
        pool._connections = []
        pool._requests = []
        pool._optional_thread_lock = type(self.template._optional_thread_lock)()
        return pool

    async def _close_on_loop(self, pool: httpcore.AsyncConnectionPool) -> None:
        await pool.aclose()

    def _target(self) -> httpcore.AsyncConnectionPool:
        if _get_running_loop() is None:
            return self.template
        return self._local.value

    # -- what AsyncHTTPTransport uses -------------------------------------------

    async def handle_async_request(self, request: httpcore.Request) -> httpcore.Response:
        """Send ``request`` through the running loop's copy of the pool."""
        return await self._local.value.handle_async_request(request)

    async def aclose(self) -> None:
        """Close the running loop's copy (its connections); the others stay open."""
        pool = self._local.for_loop(asyncio.get_running_loop())
        if pool is not None:
            await pool.aclose()

    async def __aenter__(self) -> _PerLoopConnectionPool:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc_value: BaseException | None = None,
        traceback: types.TracebackType | None = None,
    ) -> None:
        await self.aclose()

    @property
    def connections(self) -> list[httpcore.AsyncConnectionInterface]:
        """The running loop's connections (none before it sent a request);
        outside any loop, the template's."""
        loop = _get_running_loop()
        if loop is None:
            return self.template.connections
        pool = self._local.for_loop(loop)
        return [] if pool is None else pool.connections

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return getattr(self._target(), name)


def _split(transport: httpx.AsyncBaseTransport) -> str | None:
    """Give ``transport`` a per-loop pool; None if done (or done before), else why not."""
    if not isinstance(transport, httpx.AsyncHTTPTransport):
        return f"{type(transport).__name__} is not an httpx.AsyncHTTPTransport"
    pool: object = transport._pool
    if isinstance(pool, _PerLoopConnectionPool):
        return None
    if not isinstance(pool, httpcore.AsyncConnectionPool) or not all(
        hasattr(pool, name) for name in _STATE
    ):
        return (
            f"its pool {pool!r} is not an httpcore.AsyncConnectionPool as httpcore "
            f"{httpcore.__version__} lays it out"
        )
    transport._pool = cast(httpcore.AsyncConnectionPool, _PerLoopConnectionPool(pool))
    return None


def _apply(client: object) -> str:
    """Install per-loop pools on ``client``'s transports; a label saying what was done."""
    if not isinstance(client, httpx.AsyncClient):
        raise TypeError(f"per_loop_client() needs an httpx.AsyncClient, got {client!r}")
    transports = [client._transport]
    transports += [t for t in client._mounts.values() if t is not None]
    left = [why for why in map(_split, transports) if why is not None]
    if not left:
        return _LABEL
    if len(left) == len(transports):
        return f"httpx AsyncClient: left as is ({'; '.join(left)})"
    return f"{_LABEL}, except where {'; '.join(left)}"


def per_loop_client(client: httpx.AsyncClient) -> None:
    """Give each HTTP transport of ``client`` one connection pool per event loop, in place.

    Covers ``client``'s default transport and its mounts (proxies). A second
    call does nothing; transports that are not ``httpx.AsyncHTTPTransport`` are
    left as they are, with a log line saying so. See the module's docstring for
    what stays shared and the limits.
    """
    label = _apply(client)
    if label != _LABEL:
        logs.info("integrations.left_shared", what=label)
