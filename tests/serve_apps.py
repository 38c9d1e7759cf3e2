"""ASGI apps for tests/test_serve_command.py, served by ``loopgrid serve``
subprocesses (their module is imported by each serving process)."""

from __future__ import annotations

import json
import os
from typing import Any


async def _reply(send: Any, status: int, body: dict[str, Any]) -> None:
    data = json.dumps(body).encode()
    headers = [(b"content-type", b"application/json")]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": data})


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Tells what the request looked like from inside, and which process served it."""
    if scope["type"] == "lifespan":
        message = await receive()
        assert message["type"] == "lifespan.startup"
        await send({"type": "lifespan.startup.complete"})
        message = await receive()
        await send({"type": "lifespan.shutdown.complete"})
        return
    if scope["path"].endswith("/die"):
        os._exit(3)  # a worker process that dies while serving
    await _reply(
        send,
        200,
        {
            "pid": os.getpid(),
            "root_path": scope.get("root_path", ""),
            "client": list(scope["client"]) if scope.get("client") else None,
            "scheme": scope["scheme"],
            "env": os.environ.get("SERVE_APPS_SETTING"),
        },
    )


async def no_lifespan(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """An app that speaks only HTTP, as bare ASGI apps may."""
    if scope["type"] != "http":
        raise RuntimeError(f"no {scope['type']} here")
    await _reply(send, 200, {"pid": os.getpid()})


def make_app() -> Any:
    """For --factory."""
    return app


async def failing_startup(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        await receive()
        await send({"type": "lifespan.startup.failed", "message": "no database"})
        return
    await _reply(send, 200, {})
