"""``loopgrid serve``: uvicorn's command line, served from the loops of a grid.

Why uvicorn's own parser: a Procfile or Dockerfile line should switch from
``uvicorn app:app ...`` to ``loopgrid serve app:app ...`` by changing that one
word. loopgrid reads its own options (``--loops``, ``--dispatch``...) with
argparse and hands every other argument to uvicorn's click command, which
parses them exactly as uvicorn does (names, types, defaults, errors) without
running anything. Each value then goes where it does its job:

* to ``uvicorn.Config`` of each of loopgrid's uvicorn servers, unchanged: the
  protocol, TLS, proxy, header, limit, timeout and logging options (whatever
  options the installed uvicorn has, so a newer one's work too);
* to loopgrid: where to listen (``--host``/``--port``/``--uds``/``--fd``,
  ``--backlog``), the app (``--factory``, ``--app-dir``, ``--env-file``,
  ``--interface``), ``--lifespan`` (whether; where it runs is
  ``--lifespan-scope``), ``--loop`` (the worker loops' class),
  ``--timeout-graceful-shutdown`` (the grace period);
* to a supervisor: ``--workers N`` runs N processes, each a grid of
  ``--loops`` loops (``supervisor.py``); ``--reload`` restarts one such
  process when files change, with uvicorn's own reloader.

docs/serving.md has the table of every uvicorn option and what loopgrid does
with it. Everything here runs on the main thread of the command's process.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import importlib.metadata
import os
import platform
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["main"]

OK, FAILED, USAGE, INTERRUPTED = 0, 1, 2, 130

#: uvicorn options that loopgrid acts on itself; every other one goes to
#: uvicorn.Config as it is.
_OURS = frozenset(
    {
        "app",
        "host",
        "port",
        "uds",
        "fd",
        "backlog",
        "reload",
        "reload_dirs",
        "reload_includes",
        "reload_excludes",
        "reload_delay",
        "workers",
        "loop",
        "lifespan",
        "interface",
        "env_file",
        "app_dir",
        "factory",
        "version",
        "timeout_graceful_shutdown",
        "timeout_worker_healthcheck",
    }
)

#: ``--loops`` when ``--workers`` runs several processes: processes scale
#: Python throughput, loops isolation and GIL-releasing work, and two loops
#: per process already keep a blocked handler from holding up the others
#: (bench/notes/web.md, "Processes x loops": on 2 cores ``--workers 2 --loops
#: 2`` served /ping as fast as ``uvicorn --workers 2`` and kept its p99 beside
#: /block at a few ms, where ``--loops 1`` let it rise with the blocked loop).
LOOPS_PER_PROCESS = 2

#: ``--lifespan`` values that were loopgrid's before it took uvicorn's
#: meaning (auto/on/off): they now name ``--lifespan-scope``.
_OLD_SCOPES = {"loop": "loop", "shared": "shared", "process": "shared"}


class Usage(Exception):
    """A mistake in the command line: one line, exit status 2."""


@dataclass
class Command:
    """A parsed ``loopgrid serve`` command line."""

    #: loopgrid's own options (argparse).
    own: argparse.Namespace
    #: uvicorn's options as its click command parsed them.
    uvicorn: dict[str, Any]
    #: The arguments as given, for the processes of --workers and --reload.
    argv: list[str] = field(default_factory=list)

    @property
    def config_options(self) -> dict[str, Any]:
        """What goes to each ``uvicorn.Config`` unchanged."""
        options = {k: v for k, v in self.uvicorn.items() if k not in _OURS}
        if "headers" in options:
            # Pairs from uvicorn >= 0.55's option parser, "Name:Value" strings
            # from older ones (their command split them itself).
            options["headers"] = [
                tuple(h.split(":", 1)) if isinstance(h, str) else tuple(h)
                for h in options["headers"]
            ]
        if options.get("log_config") is None:
            from uvicorn.config import LOGGING_CONFIG

            options["log_config"] = LOGGING_CONFIG
        if options.get("log_level") is None:
            options["log_level"] = "info"
        return options


def main(argv: Sequence[str]) -> int:
    """Run ``loopgrid serve`` with ``argv`` (the arguments after ``serve``)."""
    argv = list(argv)
    if "--version" in argv:
        print(version_line())
        return OK
    if "--help" in argv or "-h" in argv:
        print(help_text())
        return OK
    try:
        command = parse(argv)
        if command.uvicorn["reload"]:
            return _reload(command)
        count = workers_wanted(command)
        if count > 1:
            from .supervisor import supervise  # multiprocessing: only for --workers

            return int(supervise(command, _child_target(command), count))
        return serve(command)
    except Usage as exc:
        print(f"loopgrid serve: {exc}", file=sys.stderr)
        return USAGE
    except KeyboardInterrupt:
        return INTERRUPTED


# -- parsing ------------------------------------------------------------------------------


def _own_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="loopgrid serve", add_help=False, allow_abbrev=False)
    p.add_argument("--loops", type=int, default=None, metavar="N")
    p.add_argument("--dispatch", choices=("request", "connection"), default="request")
    p.add_argument("--lifespan-scope", choices=("loop", "shared"), default=None)
    p.add_argument("--no-loop-check", dest="loop_check", action="store_false")
    p.add_argument("--grace", type=float, default=None, metavar="SECONDS")
    p.add_argument("--priority", action="append", default=[], metavar="PREFIX=LEVEL")
    p.add_argument("--switch-interval", type=float, default=None, metavar="SECONDS")
    p.add_argument("--fronts", type=int, default=None, metavar="N")
    p.add_argument("--no-inline", dest="inline", action="store_false")
    p.add_argument("--offload", action="append", default=[], metavar="PREFIX")
    p.add_argument("--offload-processes", type=int, default=1, metavar="N")
    p.add_argument("--worker-header", action="store_true")
    return p


_OWN_HELP = """\
loopgrid's options (every other option is uvicorn's, below):
  --loops N               event loops per process (default: CPUs; 2 with --workers)
  --dispatch MODE         request: each request is a grid task that any free loop
                          runs (default); connection: one server per loop
  --lifespan-scope SCOPE  where the lifespan runs: loop (on every loop, each with
                          its own state; default) or shared (once, its state shared)
  --no-loop-check         serve even when loop-bound objects would be shared by the
                          loops (logged; by default the server refuses to start)
  --grace SECONDS         seconds in-flight requests get on stop (default 10;
                          --timeout-graceful-shutdown sets it too)
  --priority PREFIX=LEVEL priority of requests under a path prefix (repeatable)
  --switch-interval S     the GIL switch interval while serving (0: leave it)
  --fronts N              front loops sharing the connections (request dispatch)
  --no-inline             dispatch every request, even routes learned to be short
  --offload PREFIX        serve routes under PREFIX from processes of their own
                          (repeatable); --offload-processes N of them (default 1)
  --worker-header         add x-loopgrid-worker to responses
"""


def help_text() -> str:
    from uvicorn.main import main as uvicorn_main

    ctx = uvicorn_main.make_context("loopgrid serve", ["x"], resilient_parsing=True)
    uvicorn_help = uvicorn_main.get_help(ctx).replace("Usage: loopgrid serve", "Usage:", 1)
    return (
        "Usage: loopgrid serve [LOOPGRID OPTIONS] [UVICORN OPTIONS] APP\n\n"
        "Serve an ASGI app from every loop of a grid, with uvicorn's command line.\n\n"
        + _OWN_HELP
        + "\nuvicorn's options:\n"
        + uvicorn_help.split("Options:", 1)[-1]
    )


def version_line() -> str:
    def version(name: str) -> str:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            return "not installed"

    return (
        f"Running loopgrid {version('loopgrid')} with uvicorn {version('uvicorn')}, "
        f"{platform.python_implementation()} {platform.python_version()} on {platform.system()}"
    )


def parse(argv: list[str]) -> Command:
    """Split ``argv`` into loopgrid's options and uvicorn's, parse both."""
    argv = _old_lifespan(argv)
    own, rest = _own_parser().parse_known_args(argv)
    try:
        import click
        from uvicorn.main import main as uvicorn_main
    except ImportError:
        raise Usage("serving needs uvicorn (loopgrid's web extra): pip install uvicorn") from None
    try:
        ctx = uvicorn_main.make_context("loopgrid serve", rest)
    except click.ClickException as exc:
        raise Usage(exc.format_message()) from None
    for name in ("loops", "fronts", "offload_processes"):
        value = getattr(own, name)
        if value is not None and value < 1:
            raise Usage(f"--{name.replace('_', '-')} must be at least 1, got {value}")
    workers = ctx.params["workers"]
    if workers is not None and workers < 1:
        raise Usage(f"--workers must be at least 1, got {workers}")
    return Command(own, dict(ctx.params), list(argv))


def _old_lifespan(argv: list[str]) -> list[str]:
    """``--lifespan loop|shared|process`` (loopgrid's meaning until uvicorn's
    took the name) becomes ``--lifespan-scope``, with a note."""
    out = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        name, eq, value = arg.partition("=")
        if name == "--lifespan" and not eq and i + 1 < len(argv):
            value = argv[i + 1]
            i += 1
        if name == "--lifespan" and value in _OLD_SCOPES:
            print(
                f"loopgrid serve: --lifespan {value} is now --lifespan-scope "
                f"{_OLD_SCOPES[value]} (--lifespan takes uvicorn's auto|on|off)",
                file=sys.stderr,
            )
            out += ["--lifespan-scope", _OLD_SCOPES[value]]
        elif name == "--lifespan":
            out += ["--lifespan", value]
        else:
            out.append(arg)
        i += 1
    return out


# -- the app ------------------------------------------------------------------------------


def load_app(command: Command) -> Any:
    """The ASGI app, as uvicorn finds it: ``--env-file`` loaded first,
    ``--app-dir`` (default: the current directory) on ``sys.path``,
    ``--factory`` called, ``--interface`` adapted to ASGI 3."""
    params = command.uvicorn
    if params["env_file"] is not None:
        try:
            from dotenv import load_dotenv
        except ImportError:
            raise Usage("--env-file needs python-dotenv: pip install python-dotenv") from None
        load_dotenv(dotenv_path=params["env_file"])
    sys.path.insert(0, os.path.abspath(params["app_dir"] or "."))
    from .._target import import_target

    try:
        app = import_target(params["app"], "app")
    except ValueError as exc:
        raise Usage(str(exc)) from None
    if params["factory"]:
        try:
            app = app()
        except TypeError as exc:
            raise Usage(f"--factory: {params['app']} could not be called: {exc}") from None
    return _as_asgi3(app, params["interface"], params["app"])


def _as_asgi3(app: Any, interface: str, name: str) -> Any:
    from ..grid import _is_async_callable

    if interface == "auto":
        if isinstance(app, type):
            interface = "asgi2"  # as uvicorn: a class called with the scope
        elif _is_async_callable(app):
            interface = "asgi3"
        else:
            raise Usage(
                f"{name} is {app!r}, not an ASGI application (an async callable); "
                "for a WSGI or ASGI 2 app say so with --interface wsgi or --interface asgi2"
            )
    if interface == "asgi2":
        from uvicorn.middleware.asgi2 import ASGI2Middleware

        return ASGI2Middleware(app)
    if interface == "wsgi":
        if not callable(app):
            raise Usage(f"{name} is {app!r}, not an ASGI or WSGI application")
        from uvicorn.middleware.wsgi import WSGIMiddleware  # type: ignore[attr-defined]

        return WSGIMiddleware(app)
    return app


# -- one process ---------------------------------------------------------------------------


def server_options(command: Command) -> dict[str, Any]:
    """``web.Server`` keyword arguments for ``command`` (not the app, not where
    to listen)."""
    own, params = command.own, command.uvicorn
    loops = own.loops
    if loops is None and workers_wanted(command) > 1:
        loops = LOOPS_PER_PROCESS
    options: dict[str, Any] = {
        "loops": loops,
        "dispatch": own.dispatch,
        "worker_header": own.worker_header,
        "inline": own.inline,
        "fronts": own.fronts,
        "loop_check": own.loop_check,
        "backlog": params["backlog"],
        **command.config_options,
    }
    lifespan = params["lifespan"]
    options["lifespan"] = "off" if lifespan == "off" else own.lifespan_scope or "loop"
    options["require_lifespan"] = lifespan == "on"
    grace = own.grace
    if grace is None:
        grace = params["timeout_graceful_shutdown"]
    if grace is not None:
        options["grace"] = float(grace)
    if own.switch_interval is not None:
        options["switch_interval"] = None if own.switch_interval == 0 else own.switch_interval
    routes = _priorities(own.priority)
    if routes:
        options["routes"] = routes
    if own.offload:
        options["offload"] = own.offload
        options["offload_processes"] = own.offload_processes
    factory = _loop_factory(params["loop"])
    if factory is not None:
        options["loop_factory"] = factory
    return options


def workers_wanted(command: Command) -> int:
    """``--workers``, else ``$WEB_CONCURRENCY``, else 1 (uvicorn's rule)."""
    workers = command.uvicorn["workers"]
    if workers is not None:
        return int(workers)
    raw = os.environ.get("WEB_CONCURRENCY", "1")
    try:
        count = int(raw)
    except ValueError:
        count = 0
    if count < 1:
        raise Usage(f"WEB_CONCURRENCY must be a number of processes >= 1, got {raw!r}")
    return count


def _priorities(items: list[str]) -> dict[str, int]:
    from ..priority import Priority

    routes: dict[str, int] = {}
    for item in items:
        prefix, sep, level = item.partition("=")
        if not sep or not prefix.startswith("/") or level.upper() not in Priority.__members__:
            names = ", ".join(p.name.lower() for p in Priority)
            raise Usage(f"--priority wants PREFIX=LEVEL with LEVEL one of {names}, got {item!r}")
        routes[prefix] = Priority[level.upper()]
    return routes


def _loop_factory(loop: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """``--loop``: auto/none keep loopgrid's default (uvloop where it is
    installed and safe); asyncio, uvloop, or ``module:factory``."""
    if loop in ("auto", "none"):
        return None
    if loop == "asyncio":
        return asyncio.new_event_loop
    if loop == "uvloop":
        try:
            import uvloop
        except ImportError:
            raise Usage("--loop uvloop: uvloop is not installed") from None
        return uvloop.new_event_loop
    from .._target import import_target

    try:
        factory = import_target(loop, "loop factory")
    except ValueError as exc:
        raise Usage(f"--loop: {exc}") from None
    if not callable(factory):
        raise Usage(f"--loop {loop} is {factory!r}, not a callable that makes an event loop")
    return factory  # type: ignore[no-any-return]


def serve(command: Command, sock: Any = None, ready: Any = None) -> int:
    """Serve in this process until SIGINT/SIGTERM (``sock``: bound by a
    supervisor, whose ``ready`` event is set once this process serves)."""
    from .lifespan import StartupError
    from .server import Server

    app = load_app(command)
    params = command.uvicorn
    if command.own.offload:
        if params["factory"] or params["interface"] not in ("auto", "asgi3"):
            raise Usage("--offload needs a plain ASGI 3 app given as module:app")
        app = params["app"]
    try:
        server = Server(
            app,
            host=params["host"],
            port=params["port"],
            uds=params["uds"] if sock is None else None,
            fd=params["fd"] if sock is None else None,
            sock=sock,
            **server_options(command),
        )
    except (TypeError, ValueError) as exc:
        raise Usage(str(exc)) from None

    def started(server: Any) -> None:
        if ready is not None:
            ready.set()

    try:
        server.run(on_started=started)
    except StartupError as exc:
        print(f"loopgrid serve: {exc}", file=sys.stderr)
        return FAILED
    return OK


# -- several processes ---------------------------------------------------------------------


def _child_target(command: Command) -> Callable[..., None]:
    """What a process of ``--workers``/``--reload`` runs: this command again,
    on the sockets its supervisor bound (a picklable function)."""
    return functools.partial(_child, command.argv)


def _child(argv: list[str], sockets: list[Any] | None = None, ready: Any = None) -> None:
    command = parse([a for a in argv if a != "--reload"])
    sys.exit(serve(command, sockets[0] if sockets else None, ready))


def _reload(command: Command) -> int:
    """``--reload``: one process, restarted by uvicorn's reloader when files change."""
    import uvicorn
    from uvicorn.supervisors import ChangeReload

    params = command.uvicorn
    config = uvicorn.Config(
        params["app"],
        host=params["host"],
        port=params["port"],
        uds=params["uds"],
        fd=params["fd"],
        reload=True,
        reload_dirs=list(params["reload_dirs"]) or None,
        reload_includes=list(params["reload_includes"]) or None,
        reload_excludes=list(params["reload_excludes"]) or None,
        reload_delay=params["reload_delay"],
        **{k: v for k, v in command.config_options.items() if k in _RELOAD_CONFIG},
    )
    sock = config.bind_socket()
    try:
        ChangeReload(config, target=_child_target(command), sockets=[sock]).run()
    finally:
        sock.close()
    return OK


#: The Config options the reloader's own process uses (its log lines).
_RELOAD_CONFIG = frozenset({"log_config", "log_level", "use_colors"})
