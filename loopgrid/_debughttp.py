"""The debug endpoint's HTTP server and request handler (see ``debug.py``).

A module of its own so that ``http.server`` is imported only when a grid
starts an endpoint, not by ``import loopgrid``.
"""

from __future__ import annotations

import http.server
import json
import urllib.parse
from typing import TYPE_CHECKING, Any

from . import logs
from .introspect import TASK_LIMIT, task_rows
from .serverthread import ConcurrentClients

if TYPE_CHECKING:
    from .grid import Grid

__all__ = ["DebugHTTPServer", "Handler"]


class DebugHTTPServer(ConcurrentClients, http.server.HTTPServer):
    """Each client on a thread of its own, for a bounded time (``serverthread.py``)."""


#: Host header values the endpoint answers to (with or without a port): a web
#: page that rebinds its own name to 127.0.0.1 (DNS rebinding) sends its name.
_LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "[::1]"})


def _loopback_host(host: str) -> bool:
    name = host.strip().lower()
    bracketed = name.startswith("[")  # an IPv6 address, maybe with a port
    name = name[: name.find("]") + 1] if bracketed else name.rsplit(":", 1)[0]
    return name in _LOOPBACK_NAMES


class Handler(http.server.BaseHTTPRequestHandler):
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
