"""An ASGI app whose module holds asyncio primitives made at import, shared by
every request (tests/test_web.py, tests/test_real_app.py).

``lock`` is taken by every request: ``loopgrid serve`` puts a loopgrid.Lock
underneath, so it stays one lock for every loop. With the environment
variable ``WEB_APPS_LOCKED_CONDITION`` set, the module also holds an
instance of its own subclass of ``asyncio.Condition``, which loopgrid cannot
take over (it cannot know what the subclass changed): the server refuses to
start, naming it.
"""

from __future__ import annotations

import asyncio
import os
import threading
from typing import Any

lock = asyncio.Lock()
if os.environ.get("WEB_APPS_LOCKED_CONDITION"):

    class Ready(asyncio.Condition):
        """A condition of the app's own."""

    condition = Ready()

#: Requests inside the lock now, and the most there ever were at once.
inside = [0, 0]
_count = threading.Lock()


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    async with lock:
        with _count:
            inside[0] += 1
            inside[1] = max(inside[1], inside[0])
        await asyncio.sleep(0)  # held across a yield, so that others wait
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": threading.current_thread().name.encode()})
        with _count:
            inside[0] -= 1
