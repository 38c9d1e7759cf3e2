"""Where ``loopgrid.web.Server`` listens: TCP, a unix socket, an inherited
file descriptor, or a socket bound by another process (``listen.py``)."""

from __future__ import annotations

import http.client
import os
import socket
import tempfile
from typing import Any

import pytest
from helpers import WAIT

from loopgrid import web


async def hello(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"hello"})


class UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("localhost", timeout=WAIT)
        self._path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(WAIT)
        self.sock.connect(self._path)


def body(conn: http.client.HTTPConnection) -> bytes:
    try:
        conn.request("GET", "/")
        return conn.getresponse().read()
    finally:
        conn.close()


@pytest.mark.parametrize("dispatch", ["request", "connection"])
def test_a_unix_socket_is_served_and_removed_at_close(dispatch: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "app.sock")
        with web.Server(hello, loops=2, uds=path, dispatch=dispatch) as server:
            assert server.url == f"http+unix://{path}"
            assert oct(os.stat(path).st_mode & 0o777) == oct(0o666)
            assert [body(UnixConnection(path)) for _ in range(4)] == [b"hello"] * 4
            with pytest.raises(RuntimeError, match="no TCP port"):
                server.port  # noqa: B018
        assert not os.path.exists(path)


def test_a_socket_bound_elsewhere_or_an_fd_is_served_and_left_open() -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    port = sock.getsockname()[1]
    try:
        with web.Server(hello, loops=2, sock=sock) as server:
            assert server.url == f"http://127.0.0.1:{port}" and server.port == port
            assert body(http.client.HTTPConnection("127.0.0.1", port, timeout=WAIT)) == b"hello"
        with web.Server(hello, loops=1, fd=sock.fileno()) as server:
            assert server.port == port
            assert body(http.client.HTTPConnection("127.0.0.1", port, timeout=WAIT)) == b"hello"
        assert sock.fileno() >= 0  # the caller's socket is still the caller's
    finally:
        sock.close()


def test_bad_listening_options_are_named() -> None:
    with pytest.raises(TypeError, match="uds must be a path"):
        web.Server(hello, uds=3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="fd must be a file descriptor"):
        web.Server(hello, fd=-1)
    with pytest.raises(TypeError, match="sock must be a listening socket"):
        web.Server(hello, sock="127.0.0.1:80")  # type: ignore[arg-type]
    server = web.Server(hello, fd=10_000)
    with pytest.raises(web.StartupError, match="socket fd 10000"):
        server.start()
