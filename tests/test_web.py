"""loopgrid.web and ``loopgrid serve``: an ASGI app served from every loop of a grid.

Every server binds 127.0.0.1 on a port the system picks. Handlers coordinate
with the tests through events and barriers (tests/web_apps.py), never sleeps.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import web_apps
from helpers import FREE_THREADED, WAIT, grid_threads, wait_until
from web_client import InThread, get, get_body, request, serve_process, serving

import loopgrid
from loopgrid import Grid, Priority

pytest.importorskip("uvicorn", reason="loopgrid.web needs the web extra (uvicorn)")
from loopgrid import web
from loopgrid.web import inline
from loopgrid.web.inline import PROMOTE

#: Front loops of a 2-worker server by default: one with the GIL, one per worker without.
FRONTS = 2 if FREE_THREADED else 1

TESTS = Path(__file__).resolve().parent


@pytest.fixture(autouse=True)
def _reset_apps() -> Iterator[None]:
    web_apps.reset()
    yield
    web_apps.release.set()  # never leave a handler holding its loop


@pytest.fixture(autouse=True)
def _wide_inline_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    """What counts as a short run, widened (20 ms of CPU, 100 ms of wall, a
    hog at 50 ms of CPU): a trivial request must never look long, even on a
    loaded machine or under ``-X dev`` with asyncio's debug mode (which made
    it cost over 1 ms), and web_apps' long runs scale with the limits."""
    monkeypatch.setattr(inline, "CPU_LIMIT", 0.02)
    monkeypatch.setattr(inline, "WALL_LIMIT", 0.1)
    monkeypatch.setattr(inline, "HOG_LIMIT", 0.05)


def get_json(server: web.Server, path: str) -> Any:
    status, _, body = request(server, path)
    assert status == 200, body
    return json.loads(body)


@pytest.mark.parametrize("dispatch", web.DISPATCH)
def test_serves_on_an_ephemeral_loopback_port_and_stops_cleanly(dispatch: str) -> None:
    with web.Server(web_apps.app, loops=2, port=0, dispatch=dispatch) as server:
        assert server.url == f"http://127.0.0.1:{server.port}"
        assert server.port != 0
        status, headers, body = request(server, "/ping")
        assert status == 200
        assert json.loads(body)["worker"] in (0, 1)
        assert "x-loopgrid-worker" not in headers  # opt-in only
        grid = server.grid
    assert grid.closed
    assert grid_threads() == []
    with pytest.raises(ConnectionRefusedError):
        request(server, "/ping")


def test_a_request_runs_on_another_worker_while_one_is_held() -> None:
    # /meet blocks its loop until a second /meet arrives: the pair can only
    # meet if the second request runs on the other worker.
    with web.Server(web_apps.app, loops=2, port=0) as server:
        first = InThread(get_json, server, "/meet")
        second = InThread(get_json, server, "/meet")
        a, b = first.result(), second.result()
    assert a["met"] and b["met"]
    assert {a["worker"], b["worker"]} == {0, 1}


def test_requests_keep_being_served_while_a_handler_holds_its_loop() -> None:
    with web.Server(web_apps.app, loops=2, port=0, worker_header=True) as server:
        held = InThread(get_json, server, "/hold")
        assert web_apps.entered.wait(WAIT)
        seen = set()
        for _ in range(20):
            status, headers, _ = request(server, "/ping")
            assert status == 200
            seen.add(int(headers["x-loopgrid-worker"]))
        web_apps.release.set()
        out = held.result()
    assert out["released"]
    # Every ping was answered while /hold held its loop: by the other one.
    assert seen == {1 - out["worker"]}


def test_connection_dispatch_spreads_connections_over_the_loops() -> None:
    # One listening socket per loop: the kernel hashes each new connection to
    # one of them (64 all on one loop: a chance of 2**-63).
    with web.Server(web_apps.app, loops=2, port=0, dispatch="connection") as server:
        seen = {get_json(server, "/ping")["worker"] for _ in range(64)}
    assert seen == {0, 1}


def test_worker_header_names_the_worker_that_served() -> None:
    with web.Server(web_apps.app, loops=2, port=0, worker_header=True) as server:
        status, headers, body = request(server, "/ping")
    assert status == 200
    assert headers["x-loopgrid-worker"] == str(json.loads(body)["worker"])


@pytest.mark.parametrize("dispatch", web.DISPATCH)
def test_handlers_can_spawn_onto_the_grid(dispatch: str) -> None:
    with web.Server(web_apps.app, loops=2, port=0, dispatch=dispatch) as server:
        out = get_json(server, "/spawn")
    assert len(out["jobs"]) == 4
    assert set(out["jobs"]) <= {0, 1}


@pytest.mark.parametrize("dispatch", web.DISPATCH)
def test_request_and_response_bodies_cross_intact(dispatch: str) -> None:
    payload = os.urandom(300_000)  # several receive() messages
    with web.Server(web_apps.app, loops=2, port=0, dispatch=dispatch) as server:
        status, _, body = request(server, "/echo", "POST", payload)
        s_status, _, streamed = request(server, "/stream")
    assert status == 200 and body == payload
    assert s_status == 200 and streamed == b"0;1;2;3;4;end"


def test_routes_give_request_tasks_their_priority() -> None:
    routes = {"/prio": Priority.LOW, "/priority": Priority.CRITICAL}
    with web.Server(web_apps.app, loops=2, port=0, routes=routes) as server:
        assert get_json(server, "/priority") == {"priority": "CRITICAL"}
    with web.Server(web_apps.app, loops=1, port=0, routes=lambda scope: 2) as server:
        assert get_json(server, "/priority") == {"priority": "HIGH"}


def test_a_failing_handler_gets_a_500_and_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    with web.Server(web_apps.app, loops=2, port=0) as server:
        status, _, _ = request(server, "/boom")
        after, _, _ = request(server, "/ping")
    assert status == 500
    assert after == 200
    errors = [r for r in caplog.records if r.name == "uvicorn.error" and r.exc_info]
    assert any("boom from a handler" in str(r.exc_info[1]) for r in errors if r.exc_info)


def test_graceful_stop_finishes_the_request_in_flight() -> None:
    server = web.Server(web_apps.app, loops=2, port=0, grace=WAIT)
    server.start()
    held = InThread(get_json, server, "/hold")
    assert web_apps.entered.wait(WAIT)
    closing = InThread(server.close)

    def refusing() -> bool:
        try:
            request(server, "/ping")
        except ConnectionError:
            return True
        return False

    # The server stops accepting first; only then is the request let go.
    assert wait_until(refusing), "the server kept accepting after close()"
    web_apps.release.set()
    assert held.result()["released"] is True
    closing.result()
    assert server.grid.closed
    assert grid_threads() == []


@pytest.mark.parametrize("dispatch", web.DISPATCH)
def test_a_forced_stop_cancels_the_request_in_flight(dispatch: str) -> None:
    server = web.Server(web_apps.app, loops=2, port=0, grace=3600, dispatch=dispatch)
    server.start()
    waiting = InThread(request, server, "/forever")
    assert web_apps.entered.wait(WAIT)
    InThread(server.close, True).result()  # well within WAIT: no hour of grace
    try:
        status, _, _ = waiting.result()
    except ConnectionError:
        status = None  # the connection was closed without an answer
    assert status in (500, None)
    assert grid_threads() == []


@pytest.mark.parametrize("mode", ["shared", "process"])
def test_lifespan_shared_runs_once_and_shares_its_state(mode: str) -> None:
    with web.Server(web_apps.app, loops=2, port=0, lifespan=mode) as server:
        assert server.lifespan == "shared"
        assert web_apps.startups == [0]
        out = get_json(server, "/state")
    assert out["state"] == {"started_on": 0}


def test_lifespan_per_loop_by_default_gives_each_loop_its_own_state() -> None:
    with web.Server(web_apps.app, loops=2, port=0) as server:
        assert server.lifespan == "loop"
        # Each worker, and each front loop (one per worker without a GIL),
        # which runs short routes itself.
        assert sorted(map(str, web_apps.startups)) == ["0", "1"] + ["front"] * FRONTS
        held = InThread(get_json, server, "/hold")
        assert web_apps.entered.wait(WAIT)
        other = get_json(server, "/state")  # runs on the worker /hold does not hold
        web_apps.release.set()
        held.result()
    assert other["state"] == {"started_on": other["worker"]}


def test_a_state_loopgrid_cannot_make_per_loop_is_checked_after_every_startup() -> None:
    app = web_apps.OtherFrameworkApp()
    with pytest.raises(web.StartupError) as caught:
        web.Server(app, loops=2, port=0).start()
    message = str(caught.value)
    assert "app.state.lock is an asyncio.Lock" in message
    assert "one object for every loop" in message
    assert "app.state.name" not in message  # plain data is fine
    assert grid_threads() == []
    with web.Server(app, loops=2, port=0, loop_check=False) as server:
        assert get_json(server, "/") == {"name": "other"}


def test_lifespan_off_and_apps_that_do_not_speak_it() -> None:
    with web.Server(web_apps.app, loops=1, port=0, lifespan="off") as server:
        assert web_apps.startups == []
        assert get_json(server, "/state")["state"] == {}
    with web.Server(web_apps.http_only, loops=1, port=0) as server:
        assert get_json(server, "/") == {"ok": True}


@pytest.mark.parametrize("mode", ["shared", "loop"])
def test_a_failing_startup_stops_everything_with_a_clear_error(
    mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    failing = "1" if mode == "loop" else "0"
    monkeypatch.setenv("WEB_APPS_FAIL_ON", failing)
    server = web.Server(web_apps.app, loops=2, port=0, lifespan=mode)
    with pytest.raises(web.StartupError, match=f"worker {failing}: no database on {failing}"):
        server.start()
    assert grid_threads() == []
    with pytest.raises(web.StartupError, match="ConnectionError"):
        web.Server(web_apps.raising_startup, loops=1, port=0).start()
    assert grid_threads() == []


def test_a_port_in_use_is_a_startup_error() -> None:
    with (
        web.Server(web_apps.app, loops=1, port=0) as first,
        pytest.raises(web.StartupError, match=f"cannot listen on 127.0.0.1:{first.port}"),
    ):
        web.Server(web_apps.app, loops=1, port=first.port).start()
    assert grid_threads() == []


@pytest.mark.skipif(
    not getattr(sys, "_is_gil_enabled", lambda: True)(),
    reason="the switch interval is the GIL's: it does nothing without one",
)
@pytest.mark.parametrize(
    ("options", "during"),
    [
        ({"switch_interval": 0.002}, 0.002),
        ({}, web.SERVE_SWITCH_INTERVAL),  # "auto", with request dispatch
        ({"dispatch": "connection"}, None),  # "auto" leaves it alone there
        ({"switch_interval": None}, None),
    ],
)
def test_switch_interval_holds_while_serving_and_is_restored(
    options: dict[str, Any], during: float | None
) -> None:
    before = sys.getswitchinterval()
    with web.Server(web_apps.app, loops=1, port=0, **options):
        assert sys.getswitchinterval() == pytest.approx(before if during is None else during)
    assert sys.getswitchinterval() == before


def test_serving_on_a_grid_of_ones_own_leaves_it_open() -> None:
    with Grid(2, name="mine") as grid:
        with web.Server(web_apps.app, grid=grid, port=0) as server:
            assert get_json(server, "/ping")["worker"] in (0, 1)
        assert not grid.closed
        assert grid.spawn(web_apps._where).result(WAIT) in (0, 1)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"app": print}, TypeError, "ASGI application"),
        ({"dispatch": "thread"}, ValueError, "dispatch must be one of"),
        ({"lifespan": "sometimes"}, ValueError, "lifespan must be one of"),
        ({"port": 70000}, ValueError, "port must be a port number"),
        ({"port": "80"}, ValueError, "port must be a port number"),
        ({"grace": -1}, ValueError, "grace must be"),
        ({"host": 127}, TypeError, "host must be a str"),
        ({"grid": "grid"}, TypeError, "grid must be a loopgrid.Grid"),
        ({"routes": {"ping": 1}}, ValueError, "route prefix must be a str starting with '/'"),
        ({"routes": {"/ping": 9}}, ValueError, "9"),
        ({"routes": 3}, TypeError, "routes must map"),
        ({"fronts": 0}, ValueError, r"fronts must be at least 1 \(or None\), got 0"),
        ({"fronts": "2"}, TypeError, "fronts must be an int or None, got '2'"),
        ({"fronts": 2, "dispatch": "connection"}, ValueError, "fronts .* needs dispatch='request'"),
        (
            {"routes": {"/a": 1}, "fronts": 2, "dispatch": "connection"},
            ValueError,
            r"routes \(request priorities\) and fronts \(front loops\) need dispatch='request'",
        ),
        (
            {"switch_interval": 0},
            ValueError,
            r"switch_interval \(or 'auto' or None\) must be a number",
        ),
    ],
)
def test_bad_arguments_are_named(kwargs: dict[str, Any], error: type, match: str) -> None:
    args = {"app": web_apps.app, **kwargs}
    with pytest.raises(error, match=match):
        web.Server(**args)
    assert grid_threads() == []


# -- the command ------------------------------------------------------------------


def test_the_command_serves_and_sigterm_runs_lifespan_shutdown(tmp_path: Path) -> None:
    record = tmp_path / "shutdown.txt"
    env = {"WEB_APPS_SHUTDOWN_FILE": str(record)}
    with serving("web_apps:app", "--loops", "2", env=env) as port:
        assert get(port, "/ping").status == 200
    shutdowns = sorted(record.read_text().splitlines())
    assert shutdowns == ["shutdown on 0", "shutdown on 1"] + ["shutdown on front"] * FRONTS


def test_the_command_names_a_bad_target_and_a_failing_startup() -> None:
    bad = serve_process("web_apps:nothing_here")
    _, err = bad.communicate(timeout=WAIT)
    assert bad.returncode == 2
    assert "module 'web_apps' has no attribute 'nothing_here'" in err
    not_app = serve_process("web_apps:reset")
    _, err = not_app.communicate(timeout=WAIT)
    assert not_app.returncode == 2
    assert "not an ASGI application" in err
    bad_priority = serve_process("web_apps:app", "--priority", "/ping=urgent")
    _, err = bad_priority.communicate(timeout=WAIT)
    assert bad_priority.returncode == 2
    assert "LEVEL one of low, normal, high, critical, got '/ping=urgent'" in err
    failing = serve_process("web_apps:app", "--loops", "2", env={"WEB_APPS_FAIL_ON": "0"})
    _, err = failing.communicate(timeout=WAIT)
    assert failing.returncode == 1
    assert "lifespan startup failed on worker 0: no database on 0" in err


def test_the_command_refuses_a_module_level_condition_by_name_unless_told_not_to() -> None:
    env = {"WEB_APPS_LOCKED_CONDITION": "1"}
    refused = serve_process("web_apps_locked:app", "--loops", "2", env=env)
    _, err = refused.communicate(timeout=WAIT)
    assert refused.returncode == 1
    assert "web_apps_locked.condition is a Ready (an asyncio.Condition)" in err
    assert "web_apps_locked.lock" not in err  # that one is shared by every loop
    assert "--no-loop-check" in err
    with serving("web_apps_locked:app", "--loops", "2", "--no-loop-check", env=env) as port:
        assert get_body(port, "/").startswith(b"loopgrid-web-")


@pytest.mark.parametrize("flags", [[], ["--no-inline"]])
def test_the_command_runs_short_routes_inline_unless_told_not_to(flags: list[str]) -> None:
    args = ("web_apps:short_app", "--loops", "2", "--fronts", "1", "--worker-header", *flags)
    with serving(*args) as port:
        seen = [get(port, "/quick").getheader("x-loopgrid-worker") for _ in range(3 * PROMOTE)]
    assert set(seen[:PROMOTE]) <= {"0", "1"}
    if flags:
        assert set(seen) <= {"0", "1"}
    else:
        assert "front" in seen


def test_ctrl_c_during_a_hanging_startup_undoes_everything() -> None:
    proc = serve_process("web_apps:hanging_startup", "--loops", "2")
    assert proc.stdout is not None
    assert "in startup" in proc.stdout.readline()  # every loop's startup hangs
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=WAIT)
    assert proc.returncode == 130


def test_sigterm_during_a_hanging_startup_is_taken_and_a_second_undoes_everything() -> None:
    """Handlers are installed before the startup, as uvicorn's: a SIGTERM then
    is taken (a graceful stop once the startup ends), never the default action
    that killed a server whose "running on" line had just appeared (exit -15);
    a second one, with the startup still hanging, undoes everything as Ctrl-C
    does (exit 130)."""
    proc = serve_process("web_apps:hanging_startup", "--loops", "2")
    assert proc.stdout is not None and proc.stderr is not None
    assert "in startup" in proc.stdout.readline()
    proc.send_signal(signal.SIGTERM)
    for line in proc.stderr:  # taken, and said so (signals sent together count once)
        if "Shutting down once the application startup is complete" in line:
            break
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=WAIT)
    assert proc.returncode == 130


def test_loopgrid_is_importable_without_the_web_extra() -> None:
    code = (
        "import sys, loopgrid, loopgrid.cli; "
        "assert 'uvicorn' not in sys.modules, 'importing loopgrid imported uvicorn'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=WAIT)
    assert loopgrid.Grid is Grid


def test_the_example_webapp_answers_on_every_route() -> None:
    sys.path.insert(0, str(TESTS.parent))
    try:
        from examples.webapp.app import app
    finally:
        sys.path.remove(str(TESTS.parent))
    with web.Server(app, loops=2, port=0, worker_header=True) as server:
        status, headers, body = request(server, "/ping")
        assert (status, body) == (200, b"pong")
        assert headers["x-loopgrid-worker"] in ("0", "1")
        digest = get_json(server, "/hash?kb=1")
        assert digest["sha256"] == hashlib.sha256((bytes(range(256)) * 4)[:1024]).hexdigest()
        assert get_json(server, "/block?ms=1")["blocked_ms"] == 1
        assert get_json(server, "/cpu?ms=1")["iterations"] > 0
        fan = get_json(server, "/spawn?n=3")
        assert len(fan["jobs"]) == 3 and {j["worker"] for j in fan["jobs"]} <= {0, 1}


def test_a_fastapi_app_from_the_readme_runs_on_the_grid() -> None:
    fastapi = pytest.importorskip("fastapi", reason="FastAPI is in the dev extra only")
    app = fastapi.FastAPI()

    @app.get("/ping")
    async def ping() -> dict[str, Any]:
        return {"pong": True, "worker": loopgrid.current_worker().index}

    with web.Server(app, loops=2, port=0) as server:
        out = get_json(server, "/ping")
    assert out["pong"] is True and out["worker"] in (0, 1)


# -- routes run inline on the front loop (web/inline.py) ---------------------------


def inline_server(**options: Any) -> web.Server:
    """A server with one front loop (each front learns its routes alone)."""
    return web.Server(web_apps.short_app, loops=2, port=0, worker_header=True, fronts=1, **options)


def served_by(server: web.Server, path: str) -> str:
    status, headers, body = request(server, path)
    assert status == 200, body
    return headers["x-loopgrid-worker"]


def promote(server: web.Server, path: str) -> None:
    """Request ``path`` until the front serves it; the first PROMOTE go to workers."""
    for _ in range(PROMOTE):
        assert served_by(server, path) in ("0", "1")
    for _ in range(50 * PROMOTE):  # a run that was not short starts the count again
        if served_by(server, path) == "front":
            return
    raise AssertionError(f"{path} never ran inline")


class _CpuClock:
    """A stand-in for the front thread's CPU clock: counts its readings."""

    def __init__(self) -> None:
        self.now = 5.0
        self.reads = 0

    def __call__(self) -> float:
        self.reads += 1
        return self.now


def _timing(monkeypatch: pytest.MonkeyPatch) -> tuple[_CpuClock, inline.Routes, inline.Route]:
    """inline.py's default limits (the autouse fixture widens them), the
    front thread's CPU clock the test moves, and a table with one route
    running inline."""
    monkeypatch.setattr(inline, "CPU_LIMIT", 0.001)
    monkeypatch.setattr(inline, "HOG_LIMIT", 0.010)
    monkeypatch.setattr(inline, "FRESH", 0.002)
    cpu = _CpuClock()
    monkeypatch.setattr(inline, "_thread_time", cpu)
    routes = inline.Routes()
    route = routes.route({"type": "http", "method": "GET", "path": "/x"})
    assert route is not None
    route.inline = True
    return cpu, routes, route


def _run(
    routes: inline.Routes,
    route: inline.Route,
    cpu: _CpuClock,
    start: float,
    ran: float,
    on_cpu: float | None = None,
) -> None:
    """One inline run of ``route`` from ``start`` (the clock) for ``ran``
    seconds, ``on_cpu`` of them on the CPU (all, by default)."""
    reading = routes.reading(start, route)
    cpu.now += ran if on_cpu is None else on_cpu
    route.ran_inline(reading, start, ran, loopgrid.worker._current.asked)


def test_an_inline_run_reads_the_cpu_clock_only_when_the_clock_says_it_may_be_long(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cpu, routes, route = _timing(monkeypatch)
    # Runs that start within FRESH of a reading share it.
    first = routes.reading(100.0, route)
    assert (first.cpu, first.at) == (5.0, 100.0)
    cpu.now = 5.001
    assert routes.reading(100.0 + inline.FRESH / 2, route) is first
    assert cpu.reads == 1
    again = routes.reading(100.0 + 2 * inline.FRESH, route)
    assert (again.cpu, again.at) == (5.001, 100.0 + 2 * inline.FRESH)
    assert cpu.reads == 2
    # A run shorter than CPU_LIMIT from start to end was short: no reading.
    _run(routes, route, cpu, again.at + 0.0001, inline.CPU_LIMIT / 2)
    assert cpu.reads == 2
    assert route.inline and route.strikes == 0 and not route.precise


def test_an_inline_run_is_judged_on_what_is_certain(monkeypatch: pytest.MonkeyPatch) -> None:
    cpu, routes, route = _timing(monkeypatch)
    reading = routes.reading(100.0, route)
    # The front ran 1.5 ms after the reading; then a run of 1.2 ms on the
    # clock spent 0.8 ms on the CPU. Known: between 0.8 and 2.3 ms. Not known
    # to be under CPU_LIMIT or over it: no verdict, and its next run is timed
    # exactly.
    cpu.now += 0.0015
    _run(routes, route, cpu, reading.at + 0.0015, 0.0012, on_cpu=0.0008)
    assert route.strikes == 0 and route.precise and route.inline
    # Timed exactly (a reading at its start), the next run of 1.2 ms is a strike.
    reads = cpu.reads
    _run(routes, route, cpu, reading.at + 0.0030, 0.0012)
    assert cpu.reads == reads + 2  # at its start and at its end
    assert route.strikes == 1 and route.precise
    # A short one clears the exact timing (the strike stays, to be forgiven).
    _run(routes, route, cpu, reading.at + 0.0050, 0.0001)
    assert route.strikes == 1 and not route.precise
    # A run whose least possible CPU time is over CPU_LIMIT is a strike at once.
    fresh = routes.reading(200.0, route)
    _run(routes, route, cpu, fresh.at + 0.0001, 0.003)
    assert route.strikes == 2 and route.inline
    # The run after a strike is timed exactly; a third strike sends it back.
    assert route.precise
    _run(routes, route, cpu, 250.0, 0.003)
    assert not route.inline and not route.precise and route.demotions == 1
    # A route timed from a shared reading whose run is over HOG_LIMIT even
    # less the whole of FRESH: sent back at once.
    hog = routes.route({"type": "http", "method": "GET", "path": "/hog"})
    assert hog is not None
    hog.inline = True
    fresh = routes.reading(300.0, hog)
    cpu.now += inline.FRESH / 2  # other requests, after the reading
    _run(routes, hog, cpu, fresh.at + inline.FRESH / 2, inline.HOG_LIMIT + inline.FRESH)
    assert not hog.inline and hog.strikes == 0 and hog.demotions == 1


def test_an_inline_run_is_never_charged_what_ran_before_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cpu, routes, route = _timing(monkeypatch)
    reading = routes.reading(100.0, route)
    # The front ran 1.9 ms of other requests after the reading; then a run of
    # 1.1 ms on the clock spent only 0.1 ms on the CPU (it waited for the
    # GIL): the most it can have run is 2.0 ms, the least 0.1 ms. No strike.
    cpu.now += 0.0019
    start = reading.at + 0.0019
    assert routes.reading(start, route) is reading
    cpu.now += 0.0001
    route.ran_inline(reading, start, 0.0011, loopgrid.worker._current.asked)
    assert route.strikes == 0 and route.inline
    assert route.precise  # the next one is timed exactly: 0.1 ms, short
    _run(routes, route, cpu, start + 0.002, 0.0001)
    assert not route.precise and route.strikes == 0


def test_a_route_learned_to_be_short_runs_on_the_front_loop() -> None:
    with inline_server() as server:
        promote(server, "/quick")
        assert served_by(server, "/quick") == "front"
        # Learning is by route: another path starts out on the workers.
        assert served_by(server, "/changes") in ("0", "1")


@pytest.mark.parametrize("change", ["compute", "ask"])
def test_an_inline_route_that_stops_being_short_goes_back_to_the_workers(change: str) -> None:
    with inline_server() as server:
        promote(server, "/changes")
        web_apps.behaviour[0] = change
        _, headers, body = request(server, "/changes")
        assert headers["x-loopgrid-worker"] == "front"  # this run showed it
        if change == "ask":
            assert "front loop" in json.loads(body)["error"]
        # Back on the workers, for four times as many runs as the first time
        # (and for good after asking for its worker).
        web_apps.behaviour[0] = "short"
        assert {served_by(server, "/changes") for _ in range(4 * PROMOTE)} <= {"0", "1"}


@pytest.mark.parametrize(("change", "front_runs"), [("block", 3), ("sometimes", 5), ("hiccup", 3)])
def test_an_inline_route_that_blocks_goes_back_after_three_strikes(
    change: str, front_runs: int
) -> None:
    # A blocking call uses no CPU: each run over the wall limit is a strike,
    # and short runs in between do not wipe them out. A run over the CPU
    # limit but under the hog limit (a garbage collection, the VM taking the
    # core) is a strike too, not a return at once.
    with inline_server() as server:
        promote(server, "/changes")
        web_apps.behaviour[0] = change
        web_apps._calls[0] = 0  # "sometimes" blocks on the 1st, 3rd, 5th call
        served = [served_by(server, "/changes") for _ in range(front_runs + 1)]
    # Three strikes, and no more than front_runs runs: on a loaded machine a
    # short run may outlast the wall limit too, and count as a strike (seen
    # on 3.13t beside two CPU-burning processes: back after 3 of "sometimes");
    # short runs that wiped strikes out would keep it on the front for ever.
    on_front = len(list(itertools.takewhile(lambda where: where == "front", served)))
    assert 3 <= on_front <= front_runs, served
    assert set(served[on_front:]) <= {"0", "1"}, served


@pytest.mark.parametrize("fronts", [1, 2])
def test_front_loops_share_the_connections(fronts: int) -> None:
    with web.Server(web_apps.app, loops=2, port=0, fronts=fronts) as server:
        names = sorted(t.name for t in grid_threads() if "-http" in t.name)
        seen = {get_json(server, "/ping")["worker"] for _ in range(16)}
    assert names == (
        ["loopgrid-web-http"] if fronts == 1 else ["loopgrid-web-http-0", "loopgrid-web-http-1"]
    )
    assert seen <= {0, 1}
    assert grid_threads() == []


def test_front_loops_default_to_one_per_worker_without_the_gil() -> None:
    with web.Server(web_apps.app, loops=2, port=0) as server:
        fronts = [t for t in grid_threads() if "-http" in t.name]
        assert get_json(server, "/ping")["worker"] in (0, 1)
    assert len(fronts) == (1 if web.server._GIL else 2)


def test_a_route_that_asks_for_its_worker_never_runs_inline() -> None:
    with inline_server() as server:
        seen = {served_by(server, "/asks") for _ in range(3 * PROMOTE)}
    assert seen <= {"0", "1"}


def _where_app() -> Any:
    """A Starlette app whose lifespan (run on each loop) notes its thread in
    ``app.state``, and whose ``/where`` is a plain function, which Starlette
    runs in a thread of its pool: it reads the state of the loop that serves
    the request, found by the mark of that loop on the request's context."""
    from contextlib import asynccontextmanager

    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    @asynccontextmanager
    async def lifespan(app: Any) -> Any:
        app.state.where = threading.current_thread().name
        yield

    def where(request: Any) -> PlainTextResponse:
        return PlainTextResponse(request.app.state.where)

    return Starlette(routes=[Route("/where", where)], lifespan=lifespan)


def test_a_request_run_inline_sees_its_loops_app_state_from_a_thread() -> None:
    with web.Server(_where_app(), loops=2, port=0, worker_header=True, fronts=1) as server:
        seen = []
        for _ in range(50 * PROMOTE):  # until the front runs it (after PROMOTE short runs)
            _, headers, body = request(server, "/where")
            seen.append((headers["x-loopgrid-worker"], body.decode()))
            if seen[-1][0] == "front":
                break
    assert seen[-1] == ("front", "loopgrid-web-http")
    assert len(seen) > PROMOTE
    for label, where in seen[:-1]:
        assert where == f"loopgrid-web-{label}"


def test_spawn_works_in_a_request_run_inline() -> None:
    with inline_server() as server:
        promote(server, "/fan")
        status, headers, body = request(server, "/fan")
    assert status == 200
    assert headers["x-loopgrid-worker"] == "front"
    assert json.loads(body)["job_ran_on"] in ("loopgrid-web-0", "loopgrid-web-1")


def test_nothing_runs_inline_when_told_not_to() -> None:
    with inline_server(inline=False) as server:
        seen = {served_by(server, "/quick") for _ in range(3 * PROMOTE)}
    assert seen <= {"0", "1"}


def test_inline_must_be_a_bool() -> None:
    with pytest.raises(TypeError, match="inline must be True or False, got 'yes'"):
        web.Server(web_apps.short_app, inline="yes")  # type: ignore[arg-type]


@pytest.mark.parametrize("fronts", [1, 2])
def test_many_clients_while_routes_go_inline_and_back_lose_no_request(fronts: int) -> None:
    # Stress: 8 client threads on routes that the fronts promote, while the
    # main thread flips /changes between short and computing (which sends it
    # back): every request gets its answer, from a worker or from a front.
    with web.Server(
        web_apps.short_app, loops=2, port=0, worker_header=True, fronts=fronts
    ) as server:
        stop = threading.Event()

        def client(path: str) -> list[str]:
            seen = []
            while not stop.is_set() or len(seen) < 3 * PROMOTE:
                seen.append(served_by(server, path))
            return seen

        paths = ["/quick", "/changes", "/fan", "/asks"] * 2
        clients = [InThread(client, p) for p in paths]
        for i in range(40):
            web_apps.behaviour[0] = ("short", "compute")[i % 2]
            served_by(server, "/quick")
        stop.set()
        results = [c.result() for c in clients]
    assert grid_threads() == []
    for path, seen in zip(paths, results, strict=True):
        assert set(seen) <= {"0", "1", "front"}, path
        if path == "/asks":
            assert "front" not in seen
