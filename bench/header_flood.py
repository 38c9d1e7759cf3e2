#!/usr/bin/env python3
"""Memory of a server process before, during and after floods of requests with huge headers.

What and why (issue 22, item 5): a probe found ``loopgrid serve`` kept
300-690 MB resident after bursts of requests with 16 MiB of headers each,
where uvicorn went back to 39 MB. This sends the same kind of flood to each
server in turn, on 127.0.0.1, and reads the server's RSS (``VmRSS`` of
``/proc/<pid>/status``):

* before: after startup and a few small requests;
* during: the peak, sampled every 20 ms while the flood runs;
* after: once the flood is over and a few small requests were served, then
  again ``--settle`` seconds later (what stays).

A flood is ``--bursts`` bursts of ``--connections`` concurrent connections,
each sending ``--requests`` requests whose headers total ``--header-mib``
MiB (``--header-kib`` KiB per header: many headers, as a client or an
attacker can send with httptools, which has no size limit of its own; with
``--http h11`` uvicorn refuses anything over
``--h11-max-incomplete-event-size``, 16 KiB by default, and so does
``loopgrid serve``, which passes the option on).

Servers (``--servers``, comma-separated): ``uvicorn`` (the baseline),
``loopgrid`` (``loopgrid serve --loops 2``), and any of them with ``+VAR=V``
for an environment variable of the server process (``loopgrid+MALLOC_ARENA_MAX=2``).
Extra server options go after ``--`` (``-- --http h11``).

Usage, from the repository root::

    .venv/bin/python bench/header_flood.py
    .venv/bin/python bench/header_flood.py --servers uvicorn,loopgrid,loopgrid+MALLOC_ARENA_MAX=1

Prints a table (and ``--json FILE``): figures in bench/notes/header-flood.md.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
PORT = 18871

APP = """
async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            await send({"type": message["type"] + ".complete"})
            if message["type"] == "lifespan.shutdown":
                return
    if scope["type"] != "http":
        return
    if scope["path"] == "/_trim":  # diagnosis: what stays once freed memory is given back
        import ctypes, gc
        gc.collect()
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    body = b"%d headers" % len(scope["headers"])
    headers = [(b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})
"""


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def threads_of(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


def request(header_bytes: int, header_kib: int) -> bytes:
    """GET / with ``header_bytes`` of headers, ``header_kib`` KiB each."""
    value = b"v" * (header_kib * 1024 - 16)
    n = max(1, header_bytes // len(value))
    lines = [b"GET / HTTP/1.1", b"Host: 127.0.0.1"]
    lines += [b"x-fill-%06d: %s" % (i, value) for i in range(n)]
    return b"\r\n".join(lines) + b"\r\n\r\n"


def exchange(port: int, payload: bytes, count: int) -> list[str]:
    """Send ``payload`` ``count`` times on one connection; the status lines."""
    out = []
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=60) as s:
            f = s.makefile("rb")
            for _ in range(count):
                s.sendall(payload)
                status = f.readline().decode(errors="replace").strip()
                out.append(status or "closed")
                length = 0
                while True:
                    line = f.readline()
                    if line in (b"\r\n", b""):
                        break
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                    elif line.lower().startswith(b"connection: close"):
                        length = -1
                if length > 0:
                    f.read(length)
                if length < 0 or not status:
                    break
    except OSError as exc:
        out.append(type(exc).__name__)
    return out


def small(port: int, n: int = 5) -> None:
    for _ in range(n):
        assert exchange(port, request(100, 1), 1)[0].startswith("HTTP/1.1 200"), "no answer"


def wait_ready(port: int, proc: subprocess.Popen[bytes], limit: float = 60) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("server did not start")


def command(kind: str, port: int, app_dir: str, extra: list[str]) -> list[str]:
    common = ["app:app", "--app-dir", app_dir, "--host", "127.0.0.1", "--port", str(port)]
    common += ["--no-access-log", "--log-level", "warning", *extra]
    if kind == "uvicorn":
        return [PY, "-m", "uvicorn", *common]
    if kind == "loopgrid":
        return [PY, "-m", "loopgrid", "serve", *common, "--loops", "2"]
    raise SystemExit(f"unknown server {kind!r}")


def run_one(spec: str, args: argparse.Namespace, app_dir: str, port: int) -> dict[str, Any]:
    kind, *envs = spec.split("+")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.update(e.split("=", 1) for e in envs)
    proc = subprocess.Popen(
        command(kind, port, app_dir, args.extra), env=env, stdout=subprocess.DEVNULL
    )
    try:
        wait_ready(port, proc)
        small(port, 20)
        pid = proc.pid
        before = rss_mib(pid)
        payload = request(int(args.header_mib * (1 << 20)), args.header_kib)
        peak = [before]
        flooding = threading.Event()
        flooding.set()

        def sample() -> None:
            while flooding.is_set():
                peak[0] = max(peak[0], rss_mib(pid))
                time.sleep(0.02)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        statuses: dict[str, int] = {}
        lock = threading.Lock()
        t0 = time.monotonic()
        for _ in range(args.bursts):

            def client() -> None:
                got = exchange(port, payload, args.requests)
                with lock:
                    for s in got:
                        key = s.split(" ", 2)[1] if s.startswith("HTTP/") else s
                        statuses[key] = statuses.get(key, 0) + 1

            clients = [threading.Thread(target=client) for _ in range(args.connections)]
            for c in clients:
                c.start()
            for c in clients:
                c.join()
        flood_s = time.monotonic() - t0
        flooding.clear()
        sampler.join()
        small(port)
        after = rss_mib(pid)
        time.sleep(args.settle)
        small(port)
        settled = rss_mib(pid)
        trimmed = None
        if args.trim:
            exchange(port, b"GET /_trim HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", 1)
            trimmed = round(rss_mib(pid), 1)
        return {
            "server": spec,
            "command": " ".join(command(kind, port, "APPDIR", args.extra)),
            "rss_before_mib": round(before, 1),
            "rss_peak_mib": round(peak[0], 1),
            "rss_after_mib": round(after, 1),
            "rss_settled_mib": round(settled, 1),
            "rss_trimmed_mib": trimmed,
            "threads": threads_of(pid),
            "statuses": statuses,
            "flood_s": round(flood_s, 2),
        }
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    extra: list[str] = []
    if "--" in argv:
        i = argv.index("--")
        argv, extra = argv[:i], argv[i + 1 :]
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--servers", default="uvicorn,loopgrid")
    ap.add_argument("--bursts", type=int, default=3)
    ap.add_argument("--connections", type=int, default=8)
    ap.add_argument("--requests", type=int, default=2, help="per connection and burst")
    ap.add_argument("--header-mib", type=float, default=16.0, help="headers per request")
    ap.add_argument("--header-kib", type=int, default=8, help="size of one header")
    ap.add_argument("--settle", type=float, default=5.0, help="seconds before the last reading")
    ap.add_argument("--rounds", type=int, default=1, help="each server this many times")
    ap.add_argument(
        "--trim",
        action="store_true",
        help="then GET /_trim: gc.collect() and glibc's malloc_trim(0) in the server, and "
        "read RSS again (what is held by the allocator, not by objects)",
    )
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    args.extra = extra
    rows = []
    with tempfile.TemporaryDirectory() as app_dir:
        Path(app_dir, "app.py").write_text(APP)
        for r in range(args.rounds):
            for i, spec in enumerate(args.servers.split(",")):
                row = run_one(spec, args, app_dir, PORT + (r * 7 + i) % 20)
                row["round"] = r
                rows.append(row)
                print(json.dumps(row), flush=True)
    print()
    print("| server | before | peak | after | settled | trimmed | threads | statuses |")
    print("|---|---|---|---|---|---|---|---|")
    for row in rows:
        print(
            f"| {row['server']} | {row['rss_before_mib']} | {row['rss_peak_mib']} | "
            f"{row['rss_after_mib']} | {row['rss_settled_mib']} | {row['rss_trimmed_mib']} | "
            f"{row['threads']} | "
            f"{row['statuses']} |"
        )
    if args.json:
        args.json.write_text(json.dumps({"argv": argv, "extra": extra, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
