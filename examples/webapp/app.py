"""A Starlette app to serve from a grid: ``loopgrid serve examples.webapp.app:app``.

Routes, each showing what a grid of loops changes for a web app:

* ``/ping``: answers at once; it stays fast while other handlers misbehave.
* ``/hash?kb=256``: sha256 of a buffer; hashlib releases the GIL, so several
  of these use several cores.
* ``/block?ms=50``: a blocking call (``time.sleep``) that holds its loop, as a
  slow synchronous driver would; only that loop is held.
* ``/cpu?ms=20``: about that much pure-Python work, holding the GIL that
  every loop shares (``--offload /cpu`` serves it from a process of its own).
* ``/spawn?n=4``: fans ``n`` hashing jobs out to other loops with
  ``loopgrid.spawn`` (the first at HIGH priority) and gathers them.

Every response says which worker ran it (``worker`` in the JSON).

It needs Starlette, which no loopgrid extra installs (``loopgrid serve`` serves
any ASGI app: the ``web`` extra brings uvicorn only): ``pip install starlette``.
Without it, importing this module says so rather than only "No module named".
"""

from __future__ import annotations

import asyncio
import hashlib
import time

try:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, PlainTextResponse
    from starlette.routing import Route
except ModuleNotFoundError as exc:
    if exc.name is None or exc.name.partition(".")[0] != "starlette":
        raise
    raise ModuleNotFoundError(
        "examples/webapp is a Starlette app, and Starlette is not installed: pip install starlette",
        name=exc.name,
    ) from exc

import loopgrid
from loopgrid import Priority

_BUFFER = bytes(range(256)) * 4096  # 1 MiB to hash from


def _worker() -> int:
    return loopgrid.current_worker().index


def _int_param(request: Request, name: str, default: int, most: int) -> int:
    try:
        value = int(request.query_params.get(name, default))
    except ValueError:
        value = default
    return max(0, min(value, most))


async def ping(request: Request) -> PlainTextResponse:
    return PlainTextResponse("pong")


def _sha256(kb: int) -> str:
    return hashlib.sha256(_BUFFER[: kb * 1024]).hexdigest()


async def hash_route(request: Request) -> JSONResponse:
    kb = _int_param(request, "kb", 256, 1024)
    return JSONResponse({"sha256": _sha256(kb), "kb": kb, "worker": _worker()})


async def block(request: Request) -> JSONResponse:
    ms = _int_param(request, "ms", 50, 5000)
    time.sleep(ms / 1000)  # a blocking call that holds this loop, on purpose
    return JSONResponse({"blocked_ms": ms, "worker": _worker()})


def _spin(ms: int) -> int:
    end = time.perf_counter() + ms / 1000
    n = 0
    while time.perf_counter() < end:
        n += 1
    return n


async def cpu(request: Request) -> JSONResponse:
    ms = _int_param(request, "ms", 20, 5000)
    return JSONResponse({"iterations": _spin(ms), "worker": _worker()})


async def _hash_job(kb: int) -> tuple[str, int]:
    return _sha256(kb), _worker()


async def spawn(request: Request) -> JSONResponse:
    n = _int_param(request, "n", 4, 64)
    handles = [
        loopgrid.spawn(_hash_job, 64, priority=Priority.HIGH if i == 0 else Priority.NORMAL)
        for i in range(n)
    ]
    results = await asyncio.gather(*handles)
    return JSONResponse(
        {"jobs": [{"sha256": d[:16], "worker": w} for d, w in results], "worker": _worker()}
    )


app = Starlette(
    routes=[
        Route("/ping", ping),
        Route("/hash", hash_route),
        Route("/block", block),
        Route("/cpu", cpu),
        Route("/spawn", spawn),
    ]
)
