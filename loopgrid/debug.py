"""The debug endpoint: a grid's stats and task list as JSON over loopback HTTP.

Opt-in (``Grid(debug_port=0)``, or ``LOOPGRID_DEBUG_PORT`` in the
environment), for ``loopgrid ps`` and ``loopgrid top`` and for a quick look
with ``curl``. It listens on 127.0.0.1 only, because what it serves (task
names, source paths, stacks) is nobody else's business, and it has no
authentication; it answers only requests whose Host is a loopback name, so
that a web page whose name was rebound to 127.0.0.1 (DNS rebinding) cannot
read it through the user's browser.

It runs on its own thread, ``loopgrid-<grid>-debug`` (``serverthread.py``),
each client on a thread of its own for at most 10 s (an idle or trickling
client holds up nobody, nor the grid's close), and reads the grid the way
``grid.stats()`` does from any thread: it never enters a worker's loop, so it
still answers when a loop is stalled, which is when it is wanted. The grid
stops it (and joins its threads) when it closes.

Routes: ``/stats`` (``grid.stats()``), ``/tasks?limit=N`` (``{"grid": name,
"tasks": grid.stats(tasks=True)["tasks"]}``), and ``/`` listing them.
"""

from __future__ import annotations

import http.server
import json
import os
import urllib.parse
from typing import TYPE_CHECKING, Any

from . import logs
from .serverthread import ConcurrentClients, ServerThread

if TYPE_CHECKING:
    from .grid import Grid

__all__ = ["ENV_VAR", "DebugServer", "debug_port_from_env"]

#: The environment variable that turns the endpoint on for grids that do not
#: pass ``debug_port`` (its value is the port; 0 picks a free one).
ENV_VAR = "LOOPGRID_DEBUG_PORT"

_HOST = "127.0.0.1"


def debug_port_from_env() -> int | None:
    """The port named by :data:`ENV_VAR`, or None when it is unset or empty."""
    raw = os.environ.get(ENV_VAR, "").strip()
    if not raw:
        return None
    try:
        port = int(raw)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise ValueError(f"{ENV_VAR} must be a port number (0 for any free port), got {raw!r}")
    return port


class DebugServer:
    """The debug endpoint of one grid; started by the constructor."""

    def __init__(self, grid: Grid, port: int) -> None:
        self.grid = grid
        handler = type("_BoundHandler", (_Handler,), {"grid": grid})
        self._server = _DebugHTTPServer((_HOST, port), handler)
        self.port: int = self._server.server_address[1]
        self.url = f"http://{_HOST}:{self.port}"
        self._runner = ServerThread(self._server, f"loopgrid-{grid.name}-debug")
        logs.info("grid.debug_endpoint", grid=grid.name, url=self.url)

    def stop(self) -> None:
        """Stop serving and join the thread; idempotent."""
        self._runner.close()


class _DebugHTTPServer(ConcurrentClients, http.server.HTTPServer):
    """Each client on a thread of its own, for a bounded time (``serverthread.py``)."""


#: Host header values the endpoint answers to (with or without a port): a web
#: page that rebinds its own name to 127.0.0.1 (DNS rebinding) sends its name.
_LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "[::1]"})


def _loopback_host(host: str) -> bool:
    name = host.strip().lower()
    bracketed = name.startswith("[")  # an IPv6 address, maybe with a port
    name = name[: name.find("]") + 1] if bracketed else name.rsplit(":", 1)[0]
    return name in _LOOPBACK_NAMES


class _Handler(http.server.BaseHTTPRequestHandler):
    grid: Grid
    timeout = 5.0  # each read and write; the server cuts off clients after 10 s

    def do_GET(self) -> None:
        host = self.headers.get("Host")
        if host is None or not _loopback_host(host):
            self._send(
                403,
                {
                    "error": f"this endpoint answers only to Host 127.0.0.1 or localhost, got "
                    f"{host!r}: a page on another name could read it (DNS rebinding)"
                },
            )
            return
        # Imported here: grid.py imports this module before the task modules
        # that introspect.py needs are initialised.
        from .introspect import TASK_LIMIT, task_rows

        url = urllib.parse.urlsplit(self.path)
        query = urllib.parse.parse_qs(url.query)
        try:
            if url.path == "/stats":
                self._send(200, self.grid.stats())
            elif url.path == "/tasks":
                limit = _int_param(query, "limit", TASK_LIMIT)
                self._send(200, {"grid": self.grid.name, "tasks": task_rows(self.grid, limit)})
            elif url.path == "/":
                self._send(200, {"grid": self.grid.name, "endpoints": ["/stats", "/tasks"]})
            else:
                self._send(404, {"error": f"no such endpoint {url.path!r}; try /stats or /tasks"})
        except ValueError as exc:
            self._send(400, {"error": str(exc)})

    def _send(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        # The stdlib writes every request to stderr; ours go to loopgrid's log.
        if logs.DEBUG_EVENTS:
            logs.debug("debug_endpoint.request", grid=self.grid.name, line=format % args)


def _int_param(query: dict[str, list[str]], name: str, default: int) -> int:
    values = query.get(name)
    if not values:
        return default
    try:
        n = int(values[-1])
    except ValueError:
        n = -1
    if n < 1:
        raise ValueError(f"{name} must be a positive integer, got {values[-1]!r}")
    return n
