"""The ``loopgrid`` command (also ``python -m loopgrid``).

* ``loopgrid run module:func [args...] --loops N`` runs an async function on a
  fresh grid, as ``loopgrid.run`` does, so a program can be tried on several
  loops without a line of set-up. The current directory is importable, as with
  ``python -m``. Exit status: 0, 1 if the function raised (its traceback is
  printed), 2 for a bad ``module:func``, 130 on Ctrl-C.
* ``loopgrid serve module:app --loops N [uvicorn's options]`` serves an ASGI
  app from the N loops of a grid (``loopgrid.web.command``, which takes
  uvicorn's command line; needs the ``web`` extra). Ctrl-C or SIGTERM stops
  it gracefully, a second one at once. Exit status: 0 once stopped, 1 if it
  could not start, 2 for a bad command line or ``module:app``, 130 for
  Ctrl-C before it served.
* ``loopgrid ps --url URL`` lists the tasks of a running grid, read from its
  debug endpoint (``Grid(debug_port=...)`` or ``LOOPGRID_DEBUG_PORT``; see
  ``debug.py``): id, name, priority, state, worker, age, and where it waits.
* ``loopgrid top --url URL`` is a live view of that grid's workers (see
  ``top.py``), refreshed every ``--interval`` seconds until ``q`` or Ctrl-C.

Both ``ps`` and ``top`` only read JSON over HTTP, so they look at a grid in
another process, and keep answering while one of its loops is stalled.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import inspect
import json
import os
import select
import sys
import time
import traceback
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from typing import Any

from ._target import import_target

__all__ = ["main"]

#: Exit statuses.
OK, FAILED, USAGE, INTERRUPTED = 0, 1, 2, 130


class _Usage(Exception):
    """A mistake in what the command was given: one line, exit status 2."""


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["serve"]:
        from .web.command import main as serve

        return serve(argv[1:])
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args))
    except _Usage as exc:
        print(f"loopgrid {args.command}: {exc}", file=sys.stderr)
        return USAGE
    except KeyboardInterrupt:
        return INTERRUPTED


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="loopgrid", description="Run and watch asyncio code on a grid of event loops."
    )
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run an async function on a fresh grid")
    run.add_argument("target", help="module:function (an async function)")
    run.add_argument("args", nargs="*", help="string arguments passed to the function")
    run.add_argument("--loops", type=int, default=None, help="event loops (default: CPUs)")
    run.add_argument(
        "--debug-port",
        type=int,
        default=None,
        help="serve the debug endpoint on this port (0: any free port)",
    )
    run.set_defaults(handler=_run)

    # Parsed by loopgrid.web.command (uvicorn's options and loopgrid's): listed
    # here for `loopgrid --help` only.
    sub.add_parser(
        "serve",
        help="serve an ASGI app from every loop of a grid, with uvicorn's options "
        "(loopgrid serve --help)",
        add_help=False,
    )

    ps = sub.add_parser("ps", help="list the tasks of a grid with a debug endpoint")
    ps.add_argument("--url", required=True, help="the grid's debug_url, http://127.0.0.1:PORT")
    ps.add_argument("--json", action="store_true", help="print the rows as JSON")
    ps.add_argument("--limit", type=int, default=1000, help="at most this many rows")
    ps.set_defaults(handler=_ps)

    top = sub.add_parser("top", help="a live view of a grid with a debug endpoint")
    top.add_argument("--url", required=True, help="the grid's debug_url, http://127.0.0.1:PORT")
    top.add_argument("--interval", type=float, default=0.5, help="seconds between refreshes")
    top.add_argument("--once", action="store_true", help="print one frame and exit")
    top.set_defaults(handler=_top)
    return parser


def _version() -> str:
    import importlib.metadata
    import platform

    try:
        version = importlib.metadata.version("loopgrid")
    except importlib.metadata.PackageNotFoundError:  # run from a source tree
        version = "(not installed)"
    return (
        f"loopgrid {version} ({platform.python_implementation()} "
        f"{platform.python_version()}{_free_threaded()})"
    )


def _free_threaded() -> str:
    import sysconfig

    return ", free-threaded" if sysconfig.get_config_var("Py_GIL_DISABLED") else ""


# -- run ------------------------------------------------------------------------


def _load(target: str, what: str = "function") -> Any:
    """The object ``module:attr`` names; a bad target is a usage error."""
    try:
        return import_target(target, what, from_cwd=True)
    except ValueError as exc:
        raise _Usage(str(exc)) from None


def _check_loops(loops: int | None) -> None:
    if loops is not None and loops < 1:
        raise _Usage(f"--loops must be at least 1, got {loops}")


def _run(args: argparse.Namespace) -> int:
    import loopgrid

    _check_loops(args.loops)
    fn = _load(args.target)
    if not inspect.iscoroutinefunction(fn):
        raise _Usage(f"{args.target} is {fn!r}, not an async function")
    with _env("LOOPGRID_DEBUG_PORT", None if args.debug_port is None else str(args.debug_port)):
        runner = loopgrid.Runner(loops=args.loops)
        grid = runner.get_grid()
    with runner:
        if grid.debug_url is not None:
            print(f"loopgrid: debug endpoint at {grid.debug_url}", file=sys.stderr, flush=True)
        try:
            result = runner.run(fn(*args.args))
        except (KeyboardInterrupt, asyncio.CancelledError):
            return INTERRUPTED
        except Exception:
            traceback.print_exc()
            return FAILED
    if result is not None:
        print(result)
    return OK


@contextlib.contextmanager
def _env(name: str, value: str | None) -> Iterator[None]:
    if value is None:
        yield
        return
    old = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if old is None:
            del os.environ[name]
        else:
            os.environ[name] = old


# -- ps and top -------------------------------------------------------------------


def _fetch(url: str, path: str) -> Any:
    full = url.rstrip("/") + path
    try:
        with urllib.request.urlopen(full, timeout=10) as resp:
            return json.load(resp)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise _Unreachable(f"cannot read {full}: {reason}") from None


class _Unreachable(Exception):
    pass


def _age(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def _short_where(where: list[str]) -> str:
    """The innermost place a task waits, with the file's directory left out."""
    if not where:
        return ""
    last = where[-1]
    if last.startswith("running: "):
        return "running: " + _basename(last.removeprefix("running: "))
    if (last.startswith(("awaiting ", "waiting for ")) and len(where) > 1) or " in " not in last:
        inner = where[-2] if len(where) > 1 and " in " in where[-2] else ""
        place = _basename(inner) if inner else ""
        return f"{place} {last}".strip() if place else last
    return _basename(last)


def _basename(line: str) -> str:
    path, sep, rest = line.partition(":")
    return os.path.basename(path) + sep + rest if sep else line


def format_ps(rows: list[dict[str, Any]], width: int = 120) -> str:
    """The ``ps`` table for task rows (as ``/tasks`` serves them)."""
    header = ("ID", "NAME", "PRIORITY", "STATE", "WORKER", "AGE", "WHERE")
    table = [header] + [
        (
            str(r["id"]),
            str(r["name"]),
            str(r["priority"]),
            str(r["state"]),
            "-" if r["worker"] is None else str(r["worker"]),
            _age(float(r["age"])),
            _short_where(list(r["where"])),
        )
        for r in rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(header) - 1)]
    lines = []
    for row in table:
        cells = [row[i].ljust(widths[i]) for i in range(len(widths))]
        line = "  ".join(cells) + "  " + row[-1]
        lines.append(line[:width].rstrip())
    return "\n".join(lines)


def _ps(args: argparse.Namespace) -> int:
    if args.limit < 1:
        raise _Usage(f"--limit must be at least 1, got {args.limit}")
    try:
        body = _fetch(args.url, f"/tasks?limit={args.limit}")
    except _Unreachable as exc:
        print(f"loopgrid ps: {exc}", file=sys.stderr)
        return FAILED
    # By worker (pending tasks, on none, last), then by id: the order spawned.
    rows = sorted(body["tasks"], key=lambda r: (r["worker"] is None, r["worker"] or 0, r["id"]))
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        width = os.get_terminal_size().columns if sys.stdout.isatty() else 200
        print(format_ps(rows, width))
    return OK


def _top(args: argparse.Namespace) -> int:
    try:
        from rich.console import Console
        from rich.live import Live
    except ImportError:
        print("loopgrid top needs rich (loopgrid's cli extra): pip install rich", file=sys.stderr)
        return FAILED
    from .top import render

    if not args.interval > 0:
        raise _Usage(f"--interval must be a number of seconds > 0, got {args.interval}")
    # Off a terminal (a pipe, a file) rich assumes 80 columns; a frame needs more.
    console = Console(width=None if sys.stdout.isatty() else 120)
    try:
        stats = _fetch(args.url, "/stats")
    except _Unreachable as exc:
        print(f"loopgrid top: {exc}", file=sys.stderr)
        return FAILED
    if args.once:
        console.print(render(stats))
        return OK
    last = (time.monotonic(), {w["index"]: w["completed"] for w in stats["workers"]})
    rates: dict[int, float] = {}
    # Off a terminal a live view prints nothing until it stops: there, print
    # one frame after another instead (a log of frames, for a pipe or a file).
    live_view = Live(render(stats), console=console, auto_refresh=False)
    if not console.is_terminal:
        console.print(render(stats))
    with _keys() as pressed, live_view if console.is_terminal else contextlib.nullcontext():
        while True:
            if pressed(args.interval) == "q":
                return OK
            try:
                stats = _fetch(args.url, "/stats")
            except _Unreachable as exc:
                live_view.stop()
                print(f"loopgrid top: the grid went away ({exc})", file=sys.stderr)
                return FAILED
            now = time.monotonic()
            dt = max(now - last[0], 1e-9)
            rates = {
                w["index"]: (w["completed"] - last[1].get(w["index"], 0)) / dt
                for w in stats["workers"]
            }
            last = (now, {w["index"]: w["completed"] for w in stats["workers"]})
            if console.is_terminal:
                live_view.update(render(stats, rates=rates), refresh=True)
            else:
                console.print(render(stats, rates=rates))


@contextlib.contextmanager
def _keys() -> Iterator[Any]:
    """``pressed(timeout)``: waits up to ``timeout`` s for a key on a terminal.

    stdin goes to cbreak mode (keys arrive unbuffered, Ctrl-C still interrupts)
    and is restored on exit. Without a terminal, it only waits.
    """
    if not sys.stdin.isatty():
        yield lambda timeout: time.sleep(timeout)
        return
    import termios
    import tty

    fd = sys.stdin.fileno()
    saved = termios.tcgetattr(fd)
    tty.setcbreak(fd)

    def pressed(timeout: float) -> str | None:
        ready, _, _ = select.select([fd], [], [], timeout)
        return os.read(fd, 1).decode(errors="replace") if ready else None

    try:
        yield pressed
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)
