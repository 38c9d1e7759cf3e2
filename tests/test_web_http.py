"""HTTP behaviour of ``loopgrid serve`` that clients rely on: keep-alive after
errors, pipelining, and websockets, under both dispatch modes.

The sockets here are raw where it matters what exactly the server sends (a
``connection: close`` header, the end of the stream, the order of pipelined
responses); servers bind 127.0.0.1 on a port the system picks.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator

import pytest
from helpers import WAIT
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from loopgrid import web

websockets_client = pytest.importorskip("websockets.sync.client", reason="websocket client")


async def boom(request: Request) -> Response:
    raise ValueError("boom")


async def ok(request: Request) -> Response:
    return PlainTextResponse(f"ok {request.url.path}")


async def teapot(request: Request) -> Response:
    return PlainTextResponse("handled", status_code=503)


async def echo_body(request: Request) -> Response:
    return Response(await request.body())


async def echo_ws(ws: WebSocket) -> None:
    await ws.accept()
    while True:
        message = await ws.receive()
        if message["type"] == "websocket.disconnect":
            return
        if message.get("text") == "bye":
            await ws.close(code=4001)
            return
        if message.get("text") is not None:
            await ws.send_text(f"echo {message['text']}")
        else:
            await ws.send_bytes(message["bytes"][::-1])


app = Starlette(
    routes=[
        Route("/boom", boom),
        Route("/ok/{n}", ok),
        Route("/handled", teapot),
        Route("/echo", echo_body, methods=["POST"]),
        WebSocketRoute("/ws", echo_ws),
    ]
)


@pytest.fixture(params=["request", "connection"])
def server(request: pytest.FixtureRequest) -> Iterator[web.Server]:
    with web.Server(app, loops=2, port=0, dispatch=request.param, inline=False) as srv:
        yield srv


def connect(server: web.Server) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=WAIT)
    return sock


def get(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nhost: test\r\n\r\n".encode()


def read_response(sock: socket.socket, buf: bytearray) -> tuple[int, dict[str, str], bytes]:
    """One response off ``sock`` (``buf`` keeps what was read past it)."""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        assert chunk, f"the server closed the connection mid-response: {bytes(buf)!r}"
        buf += chunk
    head, _, rest = bytes(buf).partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    length = int(headers.get("content-length", "0"))
    while len(rest) < length:
        chunk = sock.recv(65536)
        assert chunk, "the server closed the connection mid-body"
        rest += chunk
    buf[:] = rest[length:]
    return status, headers, rest[:length]


def closed_by_server(sock: socket.socket) -> bool:
    """True if the server ended the stream cleanly (EOF, not a reset)."""
    return sock.recv(1) == b""


def test_a_failing_app_s_500_says_connection_close_and_closes_cleanly(
    server: web.Server,
) -> None:
    sock = connect(server)
    buf = bytearray()
    with sock:
        sock.sendall(get("/boom"))
        status, headers, body = read_response(sock, buf)
        assert status == 500 and body == b"Internal Server Error"
        assert headers.get("connection") == "close"
        assert closed_by_server(sock)
    # A client told to close opens a new connection: its next request works.
    with connect(server) as again:
        again.sendall(get("/ok/1"))
        assert read_response(again, bytearray())[:1] == (200,)


def test_keep_alive_survives_handled_errors(server: web.Server) -> None:
    """A 404 or a 503 the app returns (no exception) keeps the connection."""
    with connect(server) as sock:
        buf = bytearray()
        for path, want in [("/missing", 404), ("/handled", 503), ("/ok/2", 200)] * 3:
            sock.sendall(get(path))
            status, headers, _ = read_response(sock, buf)
            assert status == want
            assert headers.get("connection") != "close"


def test_a_keep_alive_client_never_meets_a_reset_after_failures(server: web.Server) -> None:
    """As an HTTP client does: reuse the connection unless told to close, and
    send the next request at once. Without ``connection: close`` on the 500
    that request would go out on a connection the server is closing."""
    sock = connect(server)
    buf = bytearray()
    opened = 1
    try:
        for i in range(40):
            path = "/boom" if i % 2 else f"/ok/{i}"
            sock.sendall(get(path))
            status, headers, _ = read_response(sock, buf)
            assert status == (500 if i % 2 else 200)
            if headers.get("connection") == "close":
                assert closed_by_server(sock)
                sock.close()
                sock, buf = connect(server), bytearray()
                opened += 1
    finally:
        sock.close()
    assert opened == 21  # one per failure, plus the first


def test_pipelined_requests_are_answered_in_order(server: web.Server) -> None:
    with connect(server) as sock:
        body = b"x" * 5000
        post = (
            f"POST /echo HTTP/1.1\r\nhost: test\r\ncontent-length: {len(body)}\r\n\r\n".encode()
            + body
        )
        sock.sendall(get("/ok/a") + post + get("/ok/b") + get("/missing") + get("/ok/c"))
        buf = bytearray()
        got = [read_response(sock, buf) for _ in range(5)]
    assert [(s, b) for s, _, b in got] == [
        (200, b"ok /ok/a"),
        (200, body),
        (200, b"ok /ok/b"),
        (404, b"Not Found"),
        (200, b"ok /ok/c"),
    ]


def test_websocket_messages_cross_both_ways(server: web.Server) -> None:
    url = f"ws://127.0.0.1:{server.port}/ws"
    with websockets_client.connect(url, open_timeout=WAIT) as ws:
        for i in range(10):
            ws.send(f"m{i}")
            assert ws.recv(timeout=WAIT) == f"echo m{i}"
        ws.send(b"\x01\x02\x03")
        assert ws.recv(timeout=WAIT) == b"\x03\x02\x01"
        big = "y" * 200_000
        ws.send(big)
        assert ws.recv(timeout=WAIT) == f"echo {big}"
        ws.send("bye")
        with pytest.raises(Exception) as closed:
            ws.recv(timeout=WAIT)
        assert ws.close_code == 4001, closed.value


def test_many_websockets_at_once(server: web.Server) -> None:
    url = f"ws://127.0.0.1:{server.port}/ws"
    with contextlib.ExitStack() as stack:
        sockets = [
            stack.enter_context(websockets_client.connect(url, open_timeout=WAIT)) for _ in range(8)
        ]
        for i, ws in enumerate(sockets):
            ws.send(f"from {i}")
        assert [ws.recv(timeout=WAIT) for ws in sockets] == [f"echo from {i}" for i in range(8)]
