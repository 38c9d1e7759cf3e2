"""Test an ASGI app as ``loopgrid serve`` runs it: :class:`GridClient`.

Why: an app's own test suite usually calls the app on one event loop
(Starlette's ``TestClient``, httpx's ``ASGITransport``), so an object bound to
one loop - a client made once and reused, a lock, a pool - passes every test
and then fails under ``loopgrid serve``, where requests run on several loops.
A :class:`GridClient` serves the app with the server itself
(:class:`loopgrid.web.Server`, on 127.0.0.1 and a free port): the lifespan
runs on every loop, and each request is a grid task, as under ``serve``. One
difference, on purpose: requests go to the workers in turn (request *i* to
worker *i* mod *loops*) instead of to the first free one, and none runs on
the front loop, so that a loop-bound object made by one request and used by
the next fails in the test every time, not now and then under load.

``GridClient`` is an ``httpx.Client`` (``AsyncGridClient`` an
``httpx.AsyncClient``) whose base URL is the server: use it as a context
manager, which starts the server (its lifespan startup included) and stops
it (lifespan shutdown, grid closed) on exit. ``ws_url(path)`` gives the
``ws://`` URL of a websocket route. Needs httpx and the ``web`` extra.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from .web import Server

__all__ = ["AsyncGridClient", "GridClient"]


def _server(app: Any, loops: int, options: dict[str, Any]) -> Server:
    options.setdefault("inline", False)
    options.setdefault("switch_interval", None)
    server = Server(app, loops=loops, host="127.0.0.1", port=0, **options)
    server._dispatch.spread = True
    return server


class _Served:
    """What both clients add: the server, and its websocket URLs."""

    def __init__(
        self,
        app: Any,
        *,
        loops: int = 2,
        server_options: dict[str, Any] | None = None,
        **client_options: Any,
    ) -> None:
        self.server = _server(app, loops, dict(server_options or {}))
        super().__init__(**client_options)

    def ws_url(self, path: str) -> str:
        """The ``ws://`` URL of ``path`` on the server."""
        return "ws" + self.server.url[len("http") :] + path


class GridClient(_Served, httpx.Client):
    """An ``httpx.Client`` for ``app`` served on a grid of ``loops`` loops.

    ``server_options`` go to :class:`loopgrid.web.Server` (``lifespan=``,
    ``worker_header=True``...); ``client_options`` to ``httpx.Client``.
    """

    def __enter__(self) -> GridClient:
        self.server.start()
        self.base_url = httpx.URL(self.server.url)
        try:
            super().__enter__()
        except BaseException:
            self.server.close()
            raise
        return self

    def __exit__(self, *exc: Any) -> None:
        try:
            super().__exit__(*exc)
        finally:
            self.server.close()


class AsyncGridClient(_Served, httpx.AsyncClient):
    """An ``httpx.AsyncClient`` for ``app`` served on a grid; see :class:`GridClient`.

    The server starts and stops in a thread, so the test's loop keeps running.
    """

    async def __aenter__(self) -> AsyncGridClient:
        await asyncio.to_thread(self.server.start)
        self.base_url = httpx.URL(self.server.url)
        try:
            await super().__aenter__()
        except BaseException:
            await asyncio.to_thread(self.server.close)
            raise
        return self

    async def __aexit__(self, *exc: Any) -> None:
        try:
            await super().__aexit__(*exc)
        finally:
            await asyncio.to_thread(self.server.close)
