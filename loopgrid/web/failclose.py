"""A 5xx response from an app that then raises says ``connection: close``.

Why: Starlette's and FastAPI's error middleware answers an unhandled
exception with a 500 and then re-raises it, for the server to log. uvicorn
then closes the connection, but the response did not say so: a keep-alive
client that sent its next request on that connection meanwhile gets it reset
(with a grid between the app and the socket, the close comes a little later
than on one loop, and the next request is more often already on its way).

So a 5xx response start is held back until its last body message, and both
until the app's call has ended: if it raised, the start gets a
``connection: close`` header, which uvicorn honours (it closes after that
response) and clients too (they open a new connection for the next request).
A streamed 5xx response (a body message with more to come) is handed over at
once and left as it is. A 5xx response that the app returns normally is
unchanged, only handed over when the app's call ends (after any background
tasks of that request). Other statuses pass straight through.

Everything here runs on the thread that runs the app's call.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

__all__ = ["call_closing_on_failure"]

_Message = dict[str, Any]
_CLOSE = (b"connection", b"close")


async def _nothing() -> None:
    pass


async def _flush(send: Any, messages: list[_Message]) -> None:
    for message in messages:
        await send(message)


async def call_closing_on_failure(app: Any, scope: dict[str, Any], receive: Any, send: Any) -> None:
    """``app(scope, receive, send)`` for an HTTP request, as described above.

    The app's ``send`` is a closure (cheaper to make than an object, on every
    request): a plain function that returns the real send's awaitable, so no
    frame of its own on the way of every message that is not held. A call
    cancelled (a forced stop) drops what it held: its connection is being
    closed anyway.
    """
    held: list[_Message] | None = None
    passing = False  # a streamed 5xx response: handed over as it comes

    def sender(message: _Message) -> Awaitable[None]:
        nonlocal held, passing
        if held is None:
            if message["type"] != "http.response.start" or message["status"] < 500 or passing:
                return send(message)  # type: ignore[no-any-return]
            held = [message]
            return _nothing()
        held.append(message)
        if message.get("more_body"):  # streamed: hand it over as it comes
            messages, held, passing = held, None, True
            return _flush(send, messages)
        return _nothing()

    try:
        await app(scope, receive, sender)
    except Exception:
        if held:
            start = held[0]
            start["headers"] = [*start.get("headers", ()), _CLOSE]
            messages, held = held, None
            await _flush(send, messages)
        raise
    if held:
        messages, held = held, None
        await _flush(send, messages)
