"""Requests as grid tasks: the HTTP loop parses, any worker runs the app.

With ``dispatch="request"`` one *front* loop, on a thread of its own, owns
every connection (and runs the requests of routes learned to be short itself:
``inline.py``): uvicorn accepts, reads and parses there
and writes the responses. Each request's call of the app becomes a grid task,
queued in the grid's injection queue, with the route's priority: the first
worker free to take it runs it, so a request never waits behind a loop that a
blocking handler holds, as long as another worker is free (with one server per
loop, ``dispatch="connection"``, it waits for as long as the loop that
accepted its connection is held).

The app's ``receive`` and ``send`` are proxies (:class:`_Exchange`) that cross
back to the front loop:

* the first ``http.request`` message (the whole body of most requests) is read
  on the front before the task is spawned, so ``receive()`` returns it at
  once; later calls (``http.disconnect``, a streamed body) run uvicorn's
  ``receive`` on the front loop and wait for it;
* ``send()`` queues the message and posts one wake-up to the front loop's
  mailbox (one ``call_soon_threadsafe`` per burst, see ``mailbox.py``), and
  returns without waiting, for ``http.response.start`` and the last body
  chunk: a plain response costs one crossing each way. A body chunk with more
  to come (a streaming response) and every websocket message wait until the
  front has handed them to uvicorn, which keeps uvicorn's flow control: a
  slow client slows the producer instead of growing a buffer.

Thread ownership of an exchange: the front loop's thread creates it, reads
``out`` and resolves acks; the worker running the app appends to ``out``
(an atomic deque append) and reads ``first`` (written before the spawn, which
orders it). ``waiter`` is front-only: the kick that sets it runs on the front
loop, so a kick and the front's check of ``out`` never interleave.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from ..mailbox import Mailbox, mailbox_for_running_loop
from ..priority import Priority
from .inline import Measure, Route, Routes, run_timed

if TYPE_CHECKING:
    from ..grid import Grid
    from ..handle import Handle
    from .offload import Offload

__all__ = ["RequestBridge"]

_Message = dict[str, Any]
_AppCall = Callable[[dict[str, Any], Any, Any], Any]


def _kick(ex: _Exchange) -> None:
    w = ex.waiter
    if w is not None and not w.done():
        w.set_result(None)


def _resolve(ack: asyncio.Future[None]) -> None:
    if not ack.done():
        ack.set_result(None)


def _fail(pair: tuple[asyncio.Future[None], BaseException]) -> None:
    ack, exc = pair
    if not ack.done():
        ack.set_exception(exc)


class _Exchange:
    """The app's side of one request: proxies of uvicorn's receive and send."""

    __slots__ = ("_mb", "_receive", "ended", "final", "first", "out", "took", "waiter")

    def __init__(self, first: _Message | None, receive: Any, mb: Mailbox) -> None:
        self.first = first
        self.out: deque[tuple[_Message, asyncio.Future[None] | None, Mailbox | None]] = deque()
        self.waiter: asyncio.Future[None] | None = None
        self.ended = False  # the app returned or raised (worker writes, once)
        self.final = False  # the last body message is in out (worker writes, once)
        self.took: Measure | None = None  # the worker writes it (if asked) before ended
        self._receive = receive
        self._mb = mb

    async def receive(self) -> _Message:
        first = self.first
        if first is not None:
            self.first = None
            return first
        cf = asyncio.run_coroutine_threadsafe(self._receive(), self._mb.loop)
        message: _Message = await asyncio.wrap_future(cf)
        return message

    async def send(self, message: _Message) -> None:
        kind = message["type"]
        if kind == "http.response.start" or (
            kind == "http.response.body" and not message.get("more_body")
        ):
            self.out.append((message, None, None))
            if kind == "http.response.body":
                self.final = True  # after the append: see RequestBridge.__call__
            self._mb.post(_kick, self, None)
            return
        # A chunk with more to come, a websocket message: wait until the front
        # has handed it to uvicorn, whose flow control then paces the app.
        mb = mailbox_for_running_loop()
        assert mb is not None  # a grid task runs on a worker's loop
        ack: asyncio.Future[None] = mb.loop.create_future()
        self.out.append((message, ack, mb))
        self._mb.post(_kick, self, None)
        await ack


async def _run_app(call: _AppCall, scope: dict[str, Any], ex: _Exchange, learn: bool) -> None:
    m = Measure() if learn else None  # measured for the front's table only
    try:
        await call(scope, ex.receive, ex.send)
    finally:
        if m is not None:
            m.end()
            ex.took = m
        # After the app's last send. With a complete response queued, the
        # front already knows it is done; it waits for this task itself.
        ex.ended = True
        if not ex.final:
            ex._mb.post(_kick, ex, None)


class RequestBridge:
    """The ASGI app the front loop's uvicorn serves: it spawns the real one."""

    def __init__(
        self,
        grid: Grid,
        call: _AppCall,
        priority_of: Callable[[dict[str, Any]], Priority],
        front_call: _AppCall,
        routes: Routes | None,
        offload: Offload | None = None,
        spread: bool = False,
    ) -> None:
        self._grid = grid
        # Round-robin over the workers instead of the first free one: the
        # test client's choice (loopgrid.testing), so that a request uses a
        # loop other than the last one's every time. Front-thread only.
        self._spread = len(grid.workers) if spread else 0
        self._next = 0
        self._call = call
        self._priority_of = priority_of
        self._front_call = front_call
        self._routes = routes
        self._offload = offload

    def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Awaitable[None]:
        """The awaitable that serves this request: a plain function, not a
        coroutine of its own in front of the one that does the work (uvicorn
        awaits what an ASGI 3 app returns; ``make_server`` says it is one)."""
        offload = self._offload
        if offload is not None and offload.matches(scope):
            return offload.call(scope, receive, send)
        routes = self._routes
        route = routes.route(scope) if routes is not None else None
        if route is not None and route.inline:
            assert routes is not None
            return run_timed(route, routes, self._front_call, scope, receive, send)
        return self._dispatch(route, scope, receive, send)

    async def _dispatch(
        self, route: Route | None, scope: dict[str, Any], receive: Any, send: Any
    ) -> None:
        """Serve the request from a grid task, crossing to it and back."""
        first = await receive() if scope["type"] == "http" else None
        mb = mailbox_for_running_loop()
        assert mb is not None  # uvicorn calls us on the front loop
        ex = _Exchange(first, receive, mb)
        worker = None
        if self._spread:
            worker = self._next % self._spread
            self._next += 1
        h: Handle[None] = self._grid.spawn(
            _run_app,
            self._call,
            scope,
            ex,
            route is not None and route.learning,
            priority=self._priority_of(scope),
            worker=worker,
            name=f"{scope.get('method', scope['type'])} {scope.get('path', '')}",
        )
        loop = mb.loop
        try:
            while not (await self._forward(ex, send) or ex.ended):
                ex.waiter = loop.create_future()
                await ex.waiter
            await h
        except BaseException:
            h.cancel()
            raise
        if route is not None and ex.took is not None:
            route.dispatched(ex.took)
        # Anything sent after the response ended goes to uvicorn too, which
        # reports the app's mistake.
        await self._forward(ex, send)

    @staticmethod
    async def _forward(ex: _Exchange, send: Any) -> bool:
        """Hand what the app sent to uvicorn; True once the response is complete."""
        out = ex.out
        while out:
            message, ack, ack_mb = out.popleft()
            try:
                await send(message)
            except BaseException as exc:
                if ack is not None and ack_mb is not None:
                    ack_mb.post(_fail, (ack, exc), None)
                raise
            if ack is not None and ack_mb is not None:
                ack_mb.post(_resolve, ack, None)
        # ``final`` is set after its message was queued: read True, that
        # message has been sent by now.
        return ex.final and not out
