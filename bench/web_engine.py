#!/usr/bin/env python3
"""Load test: an app with a module-level SQLAlchemy AsyncEngine, served by uvicorn and loopgrid.

What and why: ``loopgrid serve`` gives a module-level ``AsyncEngine`` one
connection pool per event loop behind the same object
(``loopgrid.integrations.sqlalchemy``), so that an app written the usual way
(``examples/dbapp/app.py``: engine and ``async_sessionmaker`` made at import,
``pool_size=5, max_overflow=10``, SQLite through aiosqlite) runs on several
loops unchanged. This measures that app, under wrk on 127.0.0.1, with more
connections (32) than one pool holds (15: requests wait for a connection):

* servers, restarted per round, in rotating order: ``uvicorn`` with 1 worker
  (the baseline of every ratio), ``uvicorn --workers 2``, ``loopgrid serve
  --loops 2`` (defaults: request dispatch, lifespan per loop), and what the
  adapter is for, the same with the adapter turned off (``--no-loop-check``,
  one pool shared by the loops, as without this feature):
  ``loopgrid-2-shared`` (lifespan per loop, as by default) and
  ``loopgrid-2-shared-once`` (``--lifespan-scope shared``: run once, so that the
  server starts and the load shows what the shared pool does to requests);
* ``GET /items/<id>``, ids drawn at random from 1..1000 by a wrk Lua script
  (``--id N``: always N), time-bounded (``-d``);
* reported: requests/s and p99 as ratios to single uvicorn (medians over
  rounds), and the errors, summed over rounds: non-2xx responses, wrk's
  socket errors (connect, read, write, timeout) and the tracebacks in the
  server's output. For ``loopgrid-2`` they must all be 0 (the script exits
  with 1 otherwise).

The micro-benchmark (run after the load; ``--micro``: alone): in one asyncio
loop, ``async with engine.connect(): pass`` (a pool checkout and checkin), N
times, with the plain pool against an engine given
``per_loop_engine(engine)``, in interleaved rounds: the per-call cost of the
per-loop dispatch, as a ratio; the same for ``session.get(Item, id)``, to put
it beside a real read.

Usage, from the repository root (wrk must be installed: ``apt-get install wrk``)::

    python3 scripts/dev.py python bench/web_engine.py            # full: 4 rounds of 5 s, ~3 min
    python3 scripts/dev.py python bench/web_engine.py --smoke    # ~1 s each: checks that it runs
    python3 scripts/dev.py python bench/web_engine.py --micro    # the micro-benchmark alone

Writes ``bench/results-web/engine.md`` and ``engine.json`` (``bench/out/``
with ``--smoke``; ``--out`` to change) with the command, the machine and the
tables. The database, the wrk script and the servers' output go to a
temporary directory, removed at the end unless something failed (then kept,
and named on stderr).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.web import PY, _ceiling, _command, _median, _parse, _server, _wrk_argv  # noqa: E402

APP = "examples.dbapp.app:app"
ROWS = 1000
DEFAULT_SERVERS = [
    "uvicorn-1",
    "uvicorn-2",
    "loopgrid-2",
    "loopgrid-2-shared",
    "loopgrid-2-shared-once",
]

# loopgrid serve with the engine's adapter turned off: the engine keeps one
# pool for every loop, as it would without loopgrid.integrations.sqlalchemy
# (--no-loop-check, or serve would refuse the engine by name).
_SHARED = """\
import sys
import loopgrid.integrations as integrations
from loopgrid.cli import main
_adapt = integrations.adapt
def adapt(obj):
    return None if type(obj).__name__ == "AsyncEngine" else _adapt(obj)
integrations.adapt = adapt
sys.exit(main())
"""

_LUA = """\
math.randomseed(1)
request = function()
  return wrk.format("GET", "/items/" .. math.random(1, %d))
end
"""


def _server_argv(name: str) -> list[str]:
    """uvicorn-N and loopgrid-N[...] as in bench/web.py, serving the db app;
    loopgrid-N-shared[-once]: loopgrid serve with the engine's pool left shared
    (-once: ``--lifespan-scope shared``, the lifespan run once instead of per loop)."""
    m = re.fullmatch(r"loopgrid-(\d+)-shared(-once)?", name)
    if m:
        once = ["--lifespan-scope", "shared"] if m.group(2) else []
        return [PY, "-c", _SHARED, "serve", APP, "--no-access-log", "--log-level", "warning",
                "--loops", m.group(1), "--no-loop-check", *once]  # fmt: skip
    cmd = _command(name, [], app=APP)
    if cmd is None:
        raise ValueError(f"unknown server {name!r}: uvicorn-N, loopgrid-N[...], loopgrid-N-shared")
    return cmd


def _display(argv: list[str]) -> str:
    """A server's command line after the interpreter, for the report."""
    if argv[1] == "-c":
        return (
            shlex.join(["-m", "loopgrid", *argv[3:]])
            + " (through python -c: loopgrid.integrations.adapt skips AsyncEngine)"
        )
    return shlex.join(argv[1:])


_SOCKET_KEYS = ("socket_errors", "socket_connect", "socket_read", "socket_write", "socket_timeout")


def _socket_errors(text: str) -> dict[str, float]:
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    kinds = ("connect", "read", "write", "timeout")
    return {k: float(m.group(i + 1)) if m else 0.0 for i, k in enumerate(kinds)}


def _load(url: str, seconds: float, connections: int, script: Path | None, path: str) -> dict:
    argv = _wrk_argv(url + path, seconds, connections)
    if script is not None:
        argv[-1:-1] = ["-s", str(script)]
    out = subprocess.run(argv, check=True, capture_output=True, text=True, timeout=seconds + 60)
    row = _parse(out.stdout)
    requests = re.search(r"(\d+) requests in", out.stdout)
    row["requests"] = float(requests.group(1)) if requests else 0.0
    sockets = _socket_errors(out.stdout)
    row["socket_errors"] = sum(sockets.values())
    row.update({f"socket_{k}": v for k, v in sockets.items()})
    return row


_REPR = re.compile(r"<([\w.]+)[^<>]*>")
_ERROR_LINE = re.compile(r"^([A-Za-z_][\w.]*(?:Error|Exception|Timeout)\w*): (.*)$", re.M)


def _shorten(message: str) -> str:
    """Reprs reduced to their type, innermost first: "<Queue at 0x.. tasks=12>" -> "<Queue ...>"."""
    while True:  # the reduced form has no angle brackets until the end, so each pass shrinks
        short = _REPR.sub("\0\\1\1", message)
        if short == message:
            return short.replace("\0", "<").replace("\1", " ...>")
        message = short


def _server_errors(text: str) -> tuple[int, list[str]]:
    """Tracebacks in a server's output, and their last lines (the errors)."""
    # Objects' reprs differ by address and state: one message per type.
    errors = [f"{m.group(1)}: {_shorten(m.group(2))[:160]}" for m in _ERROR_LINE.finditer(text)]
    return text.count("Traceback (most recent call last)"), errors


def run_load(args: argparse.Namespace, tmp: Path, rounds: int, seconds: float) -> dict[str, Any]:
    names = args.servers.split(",")
    catalogue = {n: _server_argv(n) for n in names}
    script = None
    path = f"/items/{args.id}"
    if args.id is None:
        script = tmp / "items.lua"
        script.write_text(_LUA % ROWS)
        path = "/items/1"  # wrk needs a URL; the script picks each request's path
    log = tmp / "servers.log"
    log.write_bytes(b"")
    raw: dict[str, list[dict[str, float]]] = {n: [] for n in names}
    messages: dict[str, collections.Counter[str]] = {n: collections.Counter() for n in names}
    for r in range(rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            start = log.stat().st_size
            try:
                with _server(name, catalogue[name], log) as url:
                    _load(url, min(seconds, 1.0), args.connections, script, path)  # warm-up
                    row = _load(url, seconds, args.connections, script, path)
                    row["started"] = 1.0
            except RuntimeError as exc:  # it exited before answering /ping
                if "exited with" not in str(exc):
                    raise
                row = dict.fromkeys(("rps", "p50_ms", "p99_ms", "errors", "requests"), 0.0)
                row.update(dict.fromkeys(_SOCKET_KEYS, 0.0), started=0.0)
            with open(log, "rb") as f:
                f.seek(start)
                tracebacks, errors = _server_errors(f.read().decode(errors="replace"))
            row["server_tracebacks"] = float(tracebacks)
            messages[name].update(errors)
            raw[name].append(row)
            print(f"round {r + 1} {name:18} {row}", file=sys.stderr, flush=True)
    base = "uvicorn-1" if "uvicorn-1" in names else names[0]
    table: dict[str, dict[str, float | None]] = {}
    for n in names:
        ran = [row for row in raw[n] if row["started"]]
        pairs = [
            (a, b) for a, b in zip(raw[n], raw[base], strict=True) if a["started"] and b["started"]
        ]
        med: dict[str, float | None] = {"rounds": len(raw[n]), "started": len(ran)}
        for k in ("requests", "errors", *_SOCKET_KEYS, "server_tracebacks"):
            med[k] = sum(row[k] for row in raw[n])
        for k in ("rps", "p50_ms", "p99_ms", "rps_ratio", "p99_ratio"):
            med[k] = None
        med["rps_ratio_min"] = med["rps_ratio_max"] = None
        if ran and pairs:
            med.update({k: _median(ran, k) for k in ("rps", "p50_ms", "p99_ms")})
            b = [row for row in raw[base] if row["started"]]
            med["rps_ratio"] = _median(ran, "rps") / _median(b, "rps")
            med["p99_ratio"] = _median(ran, "p99_ms") / _median(b, "p99_ms")
            med["rps_ratio_min"] = min(a["rps"] / b["rps"] for a, b in pairs)
            med["rps_ratio_max"] = max(a["rps"] / b["rps"] for a, b in pairs)
        table[n] = med
    return {
        "baseline": base,
        "path": path if script is None else f"/items/<random 1..{ROWS}>",
        "connections": args.connections,
        "rounds": rounds,
        "seconds": seconds,
        "servers": {n: _display(catalogue[n]) for n in names},
        "table": table,
        "server_errors": {n: messages[n].most_common(5) for n in names},
        "raw": raw,
    }


# -- micro-benchmark: the per-call cost of the per-loop dispatch ----------------


async def _checkouts(engine: Any, n: int) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        async with engine.connect():
            pass
    return (time.perf_counter() - t0) / n


async def _reads(sessions: Any, item: Any, n: int) -> float:
    t0 = time.perf_counter()
    for i in range(n):
        async with sessions() as session:
            await session.get(item, 1 + i % ROWS)
    return (time.perf_counter() - t0) / n


async def _micro(calls: int, rounds: int) -> dict[str, Any]:
    from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

    from examples.dbapp import app as dbapp
    from loopgrid.integrations.sqlalchemy import _PerLoopPool, per_loop_engine

    await dbapp.create_items()
    await dbapp.engine.dispose()
    url = f"sqlite+aiosqlite:///{dbapp.DB}"
    kw: dict[str, Any] = {"pool_size": 5, "max_overflow": 10, "connect_args": {"timeout": 30}}
    plain, split = create_async_engine(url, **kw), create_async_engine(url, **kw)
    per_loop_engine(split)
    assert isinstance(split.sync_engine.pool, _PerLoopPool), split.sync_engine.pool
    engines = {"plain": plain, "per_loop": split}
    sessions = {k: async_sessionmaker(e, expire_on_commit=False) for k, e in engines.items()}
    cases = {
        "checkout": lambda k, n: _checkouts(engines[k], n),
        "session_get": lambda k, n: _reads(sessions[k], dbapp.Item, n),
    }
    out: dict[str, Any] = {}
    for case, fn in cases.items():
        n = calls if case == "checkout" else max(calls // 5, 1)
        for k in engines:
            await fn(k, max(n // 10, 1))  # warm-up: opens the connection
        times: dict[str, list[float]] = {"plain": [], "per_loop": []}
        for r in range(rounds):
            for k in ("plain", "per_loop") if r % 2 == 0 else ("per_loop", "plain"):
                times[k].append(await fn(k, n))
        ratios = [a / b for a, b in zip(times["per_loop"], times["plain"], strict=True)]
        out[case] = {
            "calls": n,
            "plain_us": statistics.median(times["plain"]) * 1e6,
            "per_loop_us": statistics.median(times["per_loop"]) * 1e6,
            "ratio": statistics.median(ratios),
            "ratio_min": min(ratios),
            "ratio_max": max(ratios),
            "raw_us": {k: [t * 1e6 for t in v] for k, v in times.items()},
        }
        print(f"micro {case}: {out[case]['ratio']:.3f} {times}", file=sys.stderr, flush=True)
    # What the per-loop pool adds to each checkout, alone: finding the running
    # loop's pool (PerLoopPool.connect -> _target -> LoopLocal.value).
    pool = split.sync_engine.pool
    n = calls * 50
    spans = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        for _ in range(n):
            pool._target()
        spans.append((time.perf_counter() - t0) / n)
    dispatch_us = statistics.median(spans) * 1e6
    out["dispatch"] = {
        "calls": n,
        "us": dispatch_us,
        "share_of_checkout": dispatch_us / out["checkout"]["plain_us"],
        "share_of_session_get": dispatch_us / out["session_get"]["plain_us"],
    }
    for e in engines.values():
        await e.dispose()
    out["rounds"] = rounds
    return out


def run_micro(calls: int, rounds: int) -> dict[str, Any]:
    return asyncio.run(_micro(calls, rounds))


# -- report -------------------------------------------------------------------------


def _markdown(rep: dict[str, Any]) -> str:
    out = [
        "# Web: a module-level SQLAlchemy AsyncEngine under load (wrk on loopback)",
        "",
        f"Command: `{rep['command']}`, from the repository root. Written by "
        "bench/web_engine.py; the app is examples/dbapp/app.py.",
        "",
        f"- Date: {rep['date']}; Python {rep['python']}; {rep['cpus']} CPUs; load average "
        f"{rep['loadavg_before']:.2f} at the start, {rep['loadavg_after']:.2f} at the end; "
        f"SQLAlchemy {rep['sqlalchemy']}, aiosqlite {rep['aiosqlite']}; {rep['wrk']}",
    ]
    if "ceiling_before" in rep:
        out.append(
            f"- Parallel ceiling when the run began: 2 plain threads did "
            f"{rep['ceiling_before']:.2f}x the work of 1 (sha256, GIL released): 2x on an idle "
            "2-core machine, less while other processes hold the cores."
        )
    load = rep.get("load")
    if load:
        out += [
            f"- `GET {load['path']}` with {load['connections']} connections (one pool holds "
            f"15), {load['rounds']} round(s) of {load['seconds']:g} s after 1 s of warm-up, "
            "servers restarted per round in rotating order. req/s, p50, p99: medians over "
            f"rounds; ratios against {load['baseline']} in the same run (req/s: higher is "
            "better, [min, max] of the per-round ratios; p99: lower). Requests and errors: "
            "sums over the rounds.",
            "",
            "| server | req/s | ratio [min, max] | p50 ms | p99 ms | p99 ratio | requests | "
            "non-2xx | socket errors | server tracebacks |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for name, m in load["table"].items():
            kinds = [f"{k[7:]} {m[k]:.0f}" for k in _SOCKET_KEYS[1:] if m.get(k)]
            sockets = f"{m['socket_errors']:.0f}" + (f" ({', '.join(kinds)})" if kinds else "")
            counts = (
                f"{m['requests']:.0f} | {m['errors']:.0f} | {sockets} | "
                f"{m['server_tracebacks']:.0f} |"
            )
            if m["rps"] is None:
                out.append(
                    f"| {name} | did not start ({m['rounds'] - m['started']:.0f} of "
                    f"{m['rounds']:.0f} rounds) | - | - | - | - | {counts}"
                )
                continue
            started = "" if m["started"] == m["rounds"] else (
                f" ({m['rounds'] - m['started']:.0f} of {m['rounds']:.0f} rounds: did not start)"
            )  # fmt: skip
            out.append(
                f"| {name}{started} | {m['rps']:.0f} | {m['rps_ratio']:.2f}x "
                f"[{m['rps_ratio_min']:.2f}, {m['rps_ratio_max']:.2f}] | {m['p50_ms']:.2f} | "
                f"{m['p99_ms']:.2f} | {m['p99_ratio']:.2f}x | {counts}"
            )
        if any(m["started"] < m["rounds"] for m in load["table"].values()):
            out += [
                "",
                "A server that did not start in some rounds: req/s, p50 and p99 are medians over "
                "the rounds where it did, its ratio against the baseline's median over all "
                "rounds, [min, max] the per-round ratios of those rounds only.",
            ]
        errors = {n: e for n, e in load["server_errors"].items() if e}
        if errors:
            out += ["", "Errors in the servers' output (most frequent, with counts):", ""]
            for n, pairs in errors.items():
                out += [f"- {n}: " + "; ".join(f"`{msg}` ({c})" for msg, c in pairs)]
        out += ["", "Servers (after the interpreter):", ""]
        out += [f"- {n}: `{cmd}`" for n, cmd in load["servers"].items()]
    micro = rep.get("micro")
    if micro:
        out += [
            "",
            f"Micro-benchmark: one asyncio loop, plain pool vs `per_loop_engine(engine)`, "
            f"{micro['rounds']} interleaved rounds; times per call are medians, the ratio "
            "(per-loop / plain, lower is better) the median of the per-round ratios.",
            "",
            "| operation | calls per round | plain µs/call | per-loop µs/call | ratio [min, max] |",
            "|---|---|---|---|---|",
        ]
        what = {
            "checkout": "`async with engine.connect(): pass`",
            "session_get": "`session.get(Item, id)` in a new session",
        }
        for case, label in what.items():
            m = micro[case]
            out.append(
                f"| {label} | {m['calls']} | {m['plain_us']:.1f} | {m['per_loop_us']:.1f} | "
                f"{m['ratio']:.3f}x [{m['ratio_min']:.3f}, {m['ratio_max']:.3f}] |"
            )
        d = micro["dispatch"]
        out += [
            "",
            f"The per-loop dispatch alone (`_PerLoopPool._target()`: the running loop's pool "
            f"found in a `LoopLocal`, what each checkout adds), {d['calls']} calls per round: "
            f"{d['us'] * 1000:.0f} ns per call, {d['share_of_checkout']:.2%} of a plain "
            f"checkout and {d['share_of_session_get']:.2%} of a plain `session.get`.",
        ]
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    doc = __doc__ or "bench/web_engine.py"
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="1 round of 1 s: checks it runs")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--servers", default=",".join(DEFAULT_SERVERS))
    parser.add_argument("--id", type=int, default=None, help="always this id (default: random)")
    parser.add_argument("--micro", action="store_true", help="the micro-benchmark only")
    parser.add_argument("--no-micro", action="store_true", help="the load test only")
    parser.add_argument("--micro-calls", type=int, default=2000)
    parser.add_argument("--micro-rounds", type=int, default=15)
    parser.add_argument("--out", default=None, help="folder for engine.md and engine.json")
    args = parser.parse_args(argv)
    if not args.micro and shutil.which("wrk") is None:
        print("bench/web_engine.py needs wrk (Debian: apt-get install wrk)", file=sys.stderr)
        return 2
    for n in args.servers.split(","):
        try:
            _server_argv(n)
        except ValueError as exc:
            parser.error(str(exc))
    rounds, seconds = (1, 1.0) if args.smoke else (args.rounds, args.seconds)
    calls, micro_rounds = (300, 2) if args.smoke else (args.micro_calls, args.micro_rounds)
    out_dir = (
        Path(args.out) if args.out else ROOT / ("bench/out" if args.smoke else "bench/results-web")
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="loopgrid-web-engine-"))
    # The servers (subprocesses) and the micro-benchmark read it at import.
    os.environ["DBAPP_DB"] = str(tmp / "dbapp.db")
    rc = 1
    try:
        rc = _run(args, out_dir, tmp, (rounds, seconds), (calls, micro_rounds))
    finally:
        if rc == 0:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print(f"bench/web_engine.py: the servers' output is in {tmp}/", file=sys.stderr)
    return rc


def _run(
    args: argparse.Namespace,
    out_dir: Path,
    tmp: Path,
    load: tuple[int, float],
    micro: tuple[int, int],
) -> int:
    import aiosqlite
    import sqlalchemy

    wrk_version = subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout
    report: dict[str, Any] = {
        "command": shlex.join([Path(PY).name, "bench/web_engine.py", *sys.argv[1:]]),
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "python": sys.version.split()[0],
        "cpus": os.cpu_count(),
        "loadavg_before": os.getloadavg()[0],
        "sqlalchemy": sqlalchemy.__version__,
        "aiosqlite": getattr(aiosqlite, "__version__", "?"),
        "wrk": wrk_version.splitlines()[0] if wrk_version else "wrk",
    }
    if not args.micro:
        report["ceiling_before"] = _ceiling()
        report["load"] = run_load(args, tmp, *load)
    if not args.no_micro:
        report["micro"] = run_micro(*micro)
    report["loadavg_after"] = os.getloadavg()[0]
    (out_dir / "engine.json").write_text(json.dumps(report, indent=1) + "\n")
    md = _markdown(report)
    (out_dir / "engine.md").write_text(md)
    print(md)
    print(f"bench/web_engine.py: wrote {out_dir}/engine.md and engine.json", file=sys.stderr)
    if "load" in report:  # the point of the adapter: no errors (not a timing check)
        bad = [
            n
            for n, m in report["load"]["table"].items()
            if n.startswith("loopgrid") and "-shared" not in n
            and (m["started"] < m["rounds"]
                 or m["errors"] + m["socket_errors"] + m["server_tracebacks"] > 0)
        ]  # fmt: skip
        if bad:
            print(f"bench/web_engine.py: errors on {', '.join(bad)}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
