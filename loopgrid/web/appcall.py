"""How the app is called on a loop: with that loop's lifespan state, the
worker header, and the ``connection: close`` of a failed 5xx.

:func:`with_state` is the one per-request wrapper of every dispatch mode;
:func:`call_on_its_worker` is the app as request tasks call it (on whichever
worker runs them), :func:`call_on_front` as a front loop calls it for the
requests it runs inline, :func:`call_with` as a worker's own server calls it
with connection dispatch. Each loop gets its own
snapshot of its lifespan state, made once startup ended.

Thread ownership: the snapshots and labels are made by the controlling
thread before any request is served and only read after; each request's
``scope["state"]`` is a copy of its loop's snapshot, owned by that request.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from ..worker import _current
from . import appstate
from .failclose import call_closing_on_failure
from .offload import with_header

__all__ = ["WORKER_HEADER", "call_on_front", "call_on_its_worker", "call_with", "with_state"]

#: The response header ``worker_header=True`` adds, naming the worker's index.
WORKER_HEADER = b"x-loopgrid-worker"

_Scope = dict[str, Any]


def with_state(app: Any, header: bool, per_loop: bool) -> Callable[..., Any]:
    """``bind(state, label)``, which makes ``call(scope, receive, send)`` for one
    loop: the app called with a shallow copy of ``state`` in the scope, as
    uvicorn does, and with the worker header (``label``) if asked. With
    ``per_loop`` (a per-loop ``app.state``), the request is marked with its
    loop, for the code it runs in threads (``appstate.enter``). An HTTP
    request's 5xx response says ``connection: close`` when the app then
    raised (``failclose.py``). ``call`` returns the awaitable to await, with
    no coroutine of its own: one frame less on every request.

    Each thread that calls it binds a state dict of its own: a snapshot of
    the lifespan state taken once startup ended (:func:`_snapshot`). Two
    threads that copy one dict contend for its lock on free-threaded builds:
    two threads copying a shared dict did 0.77x the work of one there, with a
    dict each 1.25x (bench/notes/web.md).
    """
    enter = appstate.enter

    def bind(
        state: dict[str, Any], label: bytes, marked: bool = False
    ) -> Callable[..., Awaitable[None]]:
        # ``marked``: the loop's own server marked the context its requests
        # copy (uvicornserver.py), so each request is marked already.
        mark = per_loop and not marked

        def call(scope: _Scope, receive: Any, send: Any) -> Awaitable[None]:
            kind = scope["type"]
            if kind == "http":
                scope["state"] = state.copy()
                if mark:
                    enter()
                if header:

                    async def send_with_header(message: dict[str, Any]) -> None:
                        await send(with_header(message, WORKER_HEADER, label))

                    return call_closing_on_failure(app, scope, receive, send_with_header)
                return call_closing_on_failure(app, scope, receive, send)
            if kind == "websocket":
                scope["state"] = state.copy()
                if mark:
                    enter()
            return app(scope, receive, send)  # type: ignore[no-any-return]

        return call

    return bind


def _snapshot(state: dict[str, Any]) -> dict[str, Any]:
    """One thread's copy of a lifespan state, made after startup: the objects
    startup put there stay shared, but a key added to the state later is not
    seen (the ASGI spec has the state filled by startup)."""
    return dict(state)


def call_on_its_worker(wrapped: Any, states: list[dict[str, Any]]) -> Any:
    """The app (``wrapped``, made by :func:`with_state`) as request tasks call
    it, on whichever worker runs them (a plain function: the task awaits what
    it returns)."""
    calls = [wrapped(_snapshot(s), str(i).encode()) for i, s in enumerate(states)]

    def call(scope: _Scope, receive: Any, send: Any) -> Awaitable[None]:
        w = _current.worker  # not current_worker(): that counts as the app asking
        assert w is not None
        return calls[w.index](scope, receive, send)  # type: ignore[no-any-return]

    return call


def call_with(wrapped: Any, state: dict[str, Any], label: bytes) -> Any:
    """The app (``wrapped``, made by :func:`with_state`) as one worker's server
    calls it with connection dispatch: an ASGI app, so a coroutine function,
    as uvicorn requires."""
    inner = wrapped(_snapshot(state), label, marked=True)

    async def call(scope: _Scope, receive: Any, send: Any) -> None:
        await inner(scope, receive, send)

    return call


def call_on_front(wrapped: Any, state: dict[str, Any], label: bytes) -> Any:
    """The app (``wrapped``, made by :func:`with_state`) as a front loop calls
    it for a request it runs inline: the bridge awaits what it returns."""
    return wrapped(_snapshot(state), label, marked=True)
