"""ASGI apps for tests/test_web.py, also served by ``loopgrid serve`` in a subprocess.

Handlers coordinate through module-level threading objects that the tests
reset (``reset()``), never through sleeps.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
import types
from pathlib import Path
from typing import Any

import loopgrid
from loopgrid import Priority
from loopgrid.waitgraph import handle_of
from loopgrid.web import inline

WAIT = 30.0

#: Set by ``/hold`` when its handler runs; ``release`` lets it answer.
entered = threading.Event()
release = threading.Event()
#: Two handlers of ``/meet`` each hold their loop until both have arrived.
meeting = threading.Barrier(2)
startups: list[int | str] = []


def reset() -> None:
    global meeting
    entered.clear()
    release.clear()
    meeting = threading.Barrier(2)
    startups.clear()
    behaviour[0] = "short"


async def _reply(send: Any, status: int, body: dict[str, Any] | bytes) -> None:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": data})


async def _read_body(receive: Any) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


def _task_priority() -> str:
    """The priority of the grid task running this request."""
    task = asyncio.current_task()
    h = None if task is None else handle_of(task)
    return "not a grid task" if h is None else h.priority.name


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """A bare ASGI app; it speaks lifespan, recording startups and shutdowns."""
    if scope["type"] == "lifespan":
        await _lifespan(scope, receive, send)
        return
    path = scope["path"]
    worker = loopgrid.current_worker().index
    state = scope.get("state", {})
    if path == "/ping":
        await _reply(send, 200, {"worker": worker})
    elif path == "/state":
        await _reply(send, 200, {"worker": worker, "state": {k: state[k] for k in sorted(state)}})
    elif path == "/hold":
        entered.set()
        # Blocks this loop, as a slow synchronous call would.
        ok = release.wait(WAIT)
        await _reply(send, 200, {"worker": worker, "released": ok})
    elif path == "/forever":
        entered.set()
        await asyncio.Event().wait()  # only a cancel ends it
    elif path == "/meet":
        try:
            meeting.wait(WAIT)  # blocks this loop until the other request arrives
            met = True
        except threading.BrokenBarrierError:
            met = False
        await _reply(send, 200, {"worker": worker, "met": met})
    elif path == "/echo":
        body = await _read_body(receive)
        await _reply(send, 200, body)
    elif path == "/stream":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for i in range(5):
            await send({"type": "http.response.body", "body": b"%d;" % i, "more_body": True})
        await send({"type": "http.response.body", "body": b"end"})
    elif path == "/spawn":
        hs = [loopgrid.spawn(_where, priority=Priority.HIGH) for _ in range(4)]
        ran_on = await asyncio.gather(*hs)
        await _reply(send, 200, {"worker": worker, "jobs": ran_on})
    elif path == "/priority":
        await _reply(send, 200, {"priority": _task_priority()})
    elif path == "/boom":
        raise ValueError("boom from a handler")
    else:
        await _reply(send, 404, {"error": path})


async def _where() -> int:
    return loopgrid.current_worker().index


def _loop_name() -> int | str:
    """The worker's index, or "front" on a front loop (which runs a lifespan
    too with lifespan="loop", and is no worker)."""
    try:
        return loopgrid.current_worker().index
    except loopgrid.NotOnGridError:
        return "front"


async def _lifespan(scope: dict[str, Any], receive: Any, send: Any) -> None:
    message = await receive()
    assert message["type"] == "lifespan.startup"
    worker = _loop_name()
    if os.environ.get("WEB_APPS_FAIL_ON") == str(worker):
        await send({"type": "lifespan.startup.failed", "message": f"no database on {worker}"})
        return
    startups.append(worker)
    scope["state"]["started_on"] = worker
    await send({"type": "lifespan.startup.complete"})
    message = await receive()
    assert message["type"] == "lifespan.shutdown"
    record = os.environ.get("WEB_APPS_SHUTDOWN_FILE")
    if record:
        with open(record, "a") as f:  # one line per loop
            f.write(f"shutdown on {worker}\n")
    await send({"type": "lifespan.shutdown.complete"})


class OtherFrameworkApp:
    """An app of a framework whose ``state`` loopgrid cannot make per loop (a
    plain namespace): its lifespan puts an asyncio.Lock there, on every loop."""

    def __init__(self) -> None:
        self.state = types.SimpleNamespace(name="other")

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await receive()
            self.state.lock = asyncio.Lock()
            await send({"type": "lifespan.startup.complete"})
            await receive()
            await send({"type": "lifespan.shutdown.complete"})
            return
        await _reply(send, 200, {"name": self.state.name})


async def http_only(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """An app that does not speak lifespan: it refuses every other scope type."""
    if scope["type"] != "http":
        raise RuntimeError(f"only http, got {scope['type']}")
    await _reply(send, 200, {"ok": True})


async def raising_startup(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """An app whose startup raises once it began."""
    if scope["type"] == "lifespan":
        await receive()
        raise ConnectionError("cannot reach the cache")
    await _reply(send, 200, {})


async def hanging_startup(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """An app whose startup never ends; it says so on stdout first."""
    if scope["type"] == "lifespan":
        await receive()
        print("in startup", flush=True)
        await asyncio.Event().wait()
    await _reply(send, 200, {})


#: What ``/changes`` does from now on: "short", "compute" (3x inline's CPU
#: limit of CPU), "ask" (call current_worker()), "block" (sleep 1.5x its wall
#: limit, with no CPU) or "sometimes" (block on every other call). The limits
#: are read at each call: tests widen them (tests/test_web.py).
behaviour = ["short"]
_calls = [0]


def _spin_cpu(seconds: float) -> None:
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass


async def _thread_name() -> str:
    return threading.current_thread().name


async def short_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Handlers that never call current_worker(), so their routes can run inline."""
    if scope["type"] == "lifespan":
        await _lifespan(scope, receive, send)
        return
    path = scope["path"]
    if path == "/quick":
        await _reply(send, 200, {"ok": True})
    elif path == "/asks":
        await _reply(send, 200, {"worker": loopgrid.current_worker().index})
    elif path == "/fan":
        # The job must not call current_worker() either: a call on the
        # request's thread while it runs counts as the request's.
        job = await loopgrid.spawn(_thread_name)
        await _reply(send, 200, {"job_ran_on": job})
    elif path == "/changes":
        now = behaviour[0]
        _calls[0] += 1
        if now == "block" or (now == "sometimes" and _calls[0] % 2):
            time.sleep(1.5 * inline.WALL_LIMIT)
            await _reply(send, 200, {"did": now})
        elif now == "compute":
            _spin_cpu(2 * inline.HOG_LIMIT)
            await _reply(send, 200, {"did": now})
        elif now == "hiccup":  # over the CPU limit, under the hog limit
            _spin_cpu(1.5 * inline.CPU_LIMIT)
            await _reply(send, 200, {"did": now})
        elif now == "ask":
            try:
                loopgrid.current_worker()
                error = ""
            except loopgrid.NotOnGridError as exc:
                error = str(exc)
            await _reply(send, 200, {"did": now, "error": error})
        else:
            await _reply(send, 200, {"did": now})
    else:
        await _reply(send, 404, {"error": path})


async def offload_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """An app whose routes under ``/off/`` the tests offload to child processes.

    It answers the same in the server's process and in a child; ``/pid`` says
    which process served. ``WEB_APPS_OFFLOAD_DIR`` (inherited by children)
    names a folder where handlers and lifespan shutdown leave marker files.
    """
    if scope["type"] == "lifespan":
        await _offload_lifespan(scope, receive, send)
        return
    path = scope["path"].removeprefix("/off")
    marks = Path(os.environ.get("WEB_APPS_OFFLOAD_DIR", "."))
    if path == "/pid":
        started_in = scope.get("state", {}).get("started_in")
        await _reply(send, 200, {"pid": os.getpid(), "started_in": started_in})
    elif path == "/echo":
        body = await _read_body(receive)
        headers = dict(scope["headers"])
        await send({"type": "http.response.start", "status": 201, "headers": [(b"x-echo", b"1")]})
        head = b"%s %s %s|" % (
            scope["method"].encode(),
            scope["query_string"],
            headers.get(b"x-test", b"-"),
        )
        await send({"type": "http.response.body", "body": head, "more_body": True})
        await send({"type": "http.response.body", "body": body})
    elif path == "/debug-port":
        await _reply(send, 200, {"env": os.environ.get("LOOPGRID_DEBUG_PORT")})
    elif path == "/boom":
        raise ValueError("boom from an offloaded handler")
    elif path == "/die":
        os._exit(3)
    elif path == "/forever":
        (marks / f"{os.getpid()}.entered").touch()
        await asyncio.Event().wait()  # only a cancel ends it
    elif path == "/wait":
        # Holds its request until the test creates the file "release".
        (marks / f"{os.getpid()}.entered").touch()
        released = False
        for _ in range(int(WAIT / 0.01)):
            if (marks / "release").exists():
                released = True
                break
            await asyncio.sleep(0.01)
        await _reply(send, 200, {"pid": os.getpid(), "released": released})
    elif path == "/meet":
        # Two requests in two processes: each waits until both have arrived
        # (a file each in the folder). Both in one process would not meet.
        (marks / f"{os.getpid()}.met").touch()
        met = False
        for _ in range(int(WAIT / 0.01)):
            if len(list(marks.glob("*.met"))) >= 2:
                met = True
                break
            await asyncio.sleep(0.01)
        await _reply(send, 200, {"pid": os.getpid(), "met": met})
    else:
        await _reply(send, 404, {"error": path})


async def _offload_lifespan(scope: dict[str, Any], receive: Any, send: Any) -> None:
    import multiprocessing

    message = await receive()
    assert message["type"] == "lifespan.startup"
    in_child = multiprocessing.parent_process() is not None
    if in_child and os.environ.get("WEB_APPS_OFFLOAD_FAIL"):
        await send({"type": "lifespan.startup.failed", "message": "no database in the child"})
        return
    scope["state"]["started_in"] = os.getpid()
    await send({"type": "lifespan.startup.complete"})
    message = await receive()
    assert message["type"] == "lifespan.shutdown"
    marks = os.environ.get("WEB_APPS_OFFLOAD_DIR")
    if marks:
        (Path(marks) / f"{os.getpid()}.shutdown").touch()
    await send({"type": "lifespan.shutdown.complete"})
