"""An ASGI app whose module holds an asyncio.Lock made at import, shared by
every request: ``loopgrid serve`` must refuse it by name (tests/test_web.py)."""

from __future__ import annotations

import asyncio
from typing import Any

lock = asyncio.Lock()


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    async with lock:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"locked"})
