"""Where a server listens: TCP host and port, a unix socket, an inherited file
descriptor, or a socket bound by a supervising process.

Each loop (or front loop) that accepts connections gets a listening socket of
its own: on TCP, a separate socket bound to the one port with
``SO_REUSEPORT`` where the system has it (see :func:`_bind_each`), otherwise
duplicates of one socket, which share one accept queue. The server closes the
sockets it was given here once its uvicorn servers hold their own duplicates.

Everything here runs on the server's controlling thread, at start.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import stat
from dataclasses import dataclass

from .lifespan import StartupError

__all__ = ["Listen", "listening_sockets"]


@dataclass(frozen=True)
class Listen:
    """What to listen on: ``sock`` if given, else ``uds``, else ``fd``, else
    ``host``/``port`` (uvicorn's order of precedence for its options)."""

    host: str = "127.0.0.1"
    port: int = 8000
    uds: str | None = None
    fd: int | None = None
    sock: socket.socket | None = None
    backlog: int = 2048

    def describe(self) -> str:
        if self.sock is not None:
            return _name(self.sock)
        if self.uds is not None:
            return f"unix socket {self.uds}"
        if self.fd is not None:
            return f"socket fd {self.fd}"
        return f"{self.host}:{self.port}"


def listening_sockets(where: Listen, count: int) -> list[socket.socket]:
    """``count`` non-blocking listening sockets for ``where`` (StartupError if
    it cannot be bound)."""
    if where.sock is not None:
        base = where.sock.dup()
    elif where.uds is not None:
        base = _bind_unix(where.uds, where.backlog)
    elif where.fd is not None:
        try:
            base = socket.socket(fileno=os.dup(where.fd))
        except OSError as exc:
            raise StartupError(f"cannot listen on socket fd {where.fd}: {exc}") from exc
    else:
        return _bind_each(where.host, where.port, where.backlog, count)
    base.setblocking(False)
    return [base] + [base.dup() for _ in range(count - 1)]


def url_of(sock: socket.socket, scheme: str = "http") -> str:
    """The address a listening socket serves, as uvicorn names it in its log."""
    if sock.family == getattr(socket, "AF_UNIX", None):
        return f"{scheme}+unix://{sock.getsockname()}"
    host, port = sock.getsockname()[:2]
    host = f"[{host}]" if ":" in host else host
    return f"{scheme}://{host}:{port}"


def _name(sock: socket.socket) -> str:
    with contextlib.suppress(OSError):
        return str(sock.getsockname())
    return repr(sock)


def _bind_unix(path: str, backlog: int) -> socket.socket:
    """A unix socket at ``path``, readable and writable by all as uvicorn's is;
    a stale socket file left there by a server that died is replaced."""
    with contextlib.suppress(FileNotFoundError):
        if stat.S_ISSOCK(os.stat(path).st_mode):
            os.unlink(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(path)
        os.chmod(path, 0o666)
        sock.listen(backlog)
    except OSError as exc:
        sock.close()
        raise StartupError(f"cannot listen on unix socket {path}: {exc}") from exc
    return sock


_REUSEPORT = getattr(socket, "SO_REUSEPORT", None)


def _bind_each(host: str, port: int, backlog: int, count: int) -> list[socket.socket]:
    """``count`` listening sockets on one port, one per loop with SO_REUSEPORT.

    Why not duplicates of one socket: every loop's selector then wakes for
    each connection and the first to run accepts all that wait; wrk's 32
    connections, opened together, could all land on one loop, which cut the
    throughput of 2 loops from 1.3-1.5x that of 1 to 0.8x on a free-threaded
    build. With one socket each, the kernel spreads connections over them.
    """
    if count == 1 or _REUSEPORT is None:
        first = _bind(host, port, backlog, reuseport=False)
        return [first] + [first.dup() for _ in range(count - 1)]
    socks = [_bind(host, port, backlog, reuseport=True)]
    try:
        port = socks[0].getsockname()[1]
        socks += [_bind(host, port, backlog, reuseport=True) for _ in range(count - 1)]
    except BaseException:
        for sock in socks:
            sock.close()
        raise
    return socks


def _bind(host: str, port: int, backlog: int, reuseport: bool) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP said outright: asyncio's loop turns Nagle off (TCP_NODELAY)
    # on accepted connections only when the listener's proto says TCP, and
    # with Nagle on, a response written in two parts waits for a delayed ACK
    # (40 ms a request on loopback).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuseport and _REUSEPORT is not None:
            sock.setsockopt(socket.SOL_SOCKET, _REUSEPORT, 1)
        sock.bind((host, port))
        sock.listen(backlog)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        hint = " (the port is in use)" if exc.errno == errno.EADDRINUSE else ""
        raise StartupError(f"cannot listen on {host}:{port}{hint}: {exc}") from exc
    return sock
