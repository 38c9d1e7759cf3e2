"""loopgrid.web's ``offload=``: routes served by child processes of their own.

The app is ``web_apps:offload_app``, imported by the server and by each child
("spawn"); its routes under ``/off/`` are offloaded. Handlers in different
processes coordinate through marker files in a folder the tests give them
(``WEB_APPS_OFFLOAD_DIR``), never through sleeps in the tests.
"""

from __future__ import annotations

import http.client
import json
import multiprocessing
import os
import signal
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import WAIT, LogCatcher, grid_threads, wait_until

pytest.importorskip("uvicorn", reason="loopgrid.web needs the web extra (uvicorn)")
from web_client import InThread, get, get_body, request, serving

from loopgrid import web

APP = "web_apps:offload_app"


@pytest.fixture
def marks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The folder where handlers in any process leave their marker files."""
    monkeypatch.setenv("WEB_APPS_OFFLOAD_DIR", str(tmp_path))
    return tmp_path


@pytest.fixture(scope="module")
def served() -> Iterator[web.Server]:
    """One server for the tests that leave its processes as they found them."""
    with web.Server(APP, loops=2, port=0, offload=["/off"], worker_header=True) as server:
        yield server


def refuses(port: int) -> bool:
    """Whether 127.0.0.1:``port`` refuses connections (its server stopped listening)."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=WAIT).close()
    except ConnectionError:  # refused, or reset by a listener closing meanwhile
        return True
    return False


def get_json(server: web.Server, path: str) -> tuple[dict[str, Any], dict[str, str]]:
    status, headers, body = request(server, path)
    assert status == 200, body
    return json.loads(body), headers


@pytest.fixture
def no_children_left() -> Iterator[None]:
    """After the test, no process it started runs, nor any loopgrid thread."""
    before = set(multiprocessing.active_children())  # the module's server's
    yield
    assert set(multiprocessing.active_children()) <= before
    assert grid_threads() == []


def test_an_offloaded_route_runs_in_a_child_with_a_lifespan_of_its_own(
    served: web.Server,
) -> None:
    child, headers = get_json(served, "/off/pid")
    assert child["pid"] != os.getpid()
    assert child["started_in"] == child["pid"]  # the child ran the app's lifespan
    assert headers["x-loopgrid-worker"] == "offload-0"
    here, headers = get_json(served, "/pid")  # not offloaded: the server's own process
    assert here == {"pid": os.getpid(), "started_in": os.getpid()}
    assert headers["x-loopgrid-worker"] in ("0", "1", "front")


def test_offload_children_open_no_debug_endpoint_of_their_own(
    monkeypatch: pytest.MonkeyPatch, no_children_left: None
) -> None:
    monkeypatch.setenv("LOOPGRID_DEBUG_PORT", "0")  # the server's grid gets one
    with web.Server(APP, loops=1, port=0, offload=["/off"]) as server:
        assert server.grid.debug_url is not None
        assert get_json(server, "/debug-port")[0] == {"env": "0"}
        assert get_json(server, "/off/debug-port")[0] == {"env": None}


def test_request_and_response_cross_whole(served: web.Server) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", served.port, timeout=WAIT)
    try:
        body = bytes(range(256)) * 1000
        conn.request("POST", "/off/echo?x=1", body=body, headers={"x-test": "yes"})
        resp = conn.getresponse()
        data = resp.read()
    finally:
        conn.close()
    assert resp.status == 201
    assert resp.getheader("x-echo") == "1"
    assert data == b"POST x=1 yes|" + body  # two body messages, sent as one response


def test_a_failing_offloaded_handler_gets_a_500_and_is_logged(served: web.Server) -> None:
    with LogCatcher("web.offload_failed") as log:
        status, _, _ = request(served, "/off/boom")
    assert status == 500
    assert log.messages and "boom from an offloaded handler" in log.messages[0]
    assert get_json(served, "/off/pid")[0]["pid"] != os.getpid()  # still serving


def test_many_clients_at_once_each_get_their_own_answer(served: web.Server) -> None:
    def one(i: int) -> bytes:
        conn = http.client.HTTPConnection("127.0.0.1", served.port, timeout=WAIT)
        try:
            conn.request("POST", f"/off/echo?i={i}", body=b"%d" % i)
            return conn.getresponse().read()
        finally:
            conn.close()

    calls = [InThread(one, i) for i in range(40)]
    assert [c.result() for c in calls] == [b"POST i=%d -|%d" % (i, i) for i in range(40)]


@pytest.mark.usefixtures("no_children_left")
def test_requests_spread_over_the_offload_processes(marks: Path) -> None:
    with web.Server(APP, loops=2, port=0, offload=["/off"], offload_processes=2) as server:
        calls = [InThread(request, server, "/off/meet") for _ in range(2)]
        answers = [json.loads(c.result()[2]) for c in calls]
    assert all(a["met"] for a in answers), answers  # both in flight, in two processes
    assert answers[0]["pid"] != answers[1]["pid"]


@pytest.mark.usefixtures("no_children_left")
def test_a_child_that_dies_gets_a_502_and_is_replaced(marks: Path) -> None:
    with web.Server(APP, loops=1, port=0, offload=["/off"]) as server:
        first = get_json(server, "/off/pid")[0]["pid"]
        with LogCatcher("web.offload_died") as log:
            status, _, _ = request(server, "/off/die")
            assert status == 502
            assert log.seen.wait(WAIT)
        # While the new child starts, requests get 503; then it answers.
        assert wait_until(lambda: request(server, "/off/pid")[0] == 200)
        second = get_json(server, "/off/pid")[0]["pid"]
    assert second not in (first, os.getpid())


@pytest.mark.usefixtures("no_children_left")
def test_close_runs_each_childs_lifespan_shutdown_and_leaves_nothing(marks: Path) -> None:
    with web.Server(APP, loops=1, port=0, offload=["/off"], offload_processes=2) as server:
        pids = {get_json(server, "/off/pid")[0]["started_in"] for _ in range(2)}
    shut = {int(p.name.partition(".")[0]) for p in marks.glob("*.shutdown")}
    assert pids <= shut
    assert os.getpid() in shut  # and the server's own lifespan
    assert len(shut) == 3


@pytest.mark.usefixtures("no_children_left")
def test_a_graceful_stop_finishes_the_offloaded_request_in_flight(marks: Path) -> None:
    server = web.Server(APP, loops=1, port=0, offload=["/off"], grace=WAIT)
    server.start()
    call = InThread(request, server, "/off/wait")
    assert wait_until(lambda: any(marks.glob("*.entered")))
    stopping = InThread(server.close)
    try:
        assert wait_until(lambda: refuses(server.port))  # stopping, the request in flight
    finally:
        (marks / "release").touch()
        stopping.result()
    status, _, body = call.result()
    assert status == 200
    assert json.loads(body)["released"] is True


@pytest.mark.usefixtures("no_children_left")
def test_a_forced_stop_cancels_an_offloaded_request_in_flight(marks: Path) -> None:
    server = web.Server(APP, loops=1, port=0, offload=["/off"], grace=3600)
    server.start()
    call = InThread(request, server, "/off/forever")
    assert wait_until(lambda: any(marks.glob("*.entered")))
    InThread(server.close, True).result()  # well within WAIT: no grace given
    try:
        status, _, _ = call.result()
    except ConnectionError:
        status = None  # the connection was closed without an answer
    assert status in (500, None)


@pytest.mark.usefixtures("no_children_left")
def test_a_child_that_cannot_start_stops_the_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WEB_APPS_OFFLOAD_FAIL", "1")
    server = web.Server(APP, loops=1, port=0, offload=["/off"])
    with pytest.raises(web.StartupError, match="offload process 0 could not start"):
        server.start()


@pytest.mark.parametrize(
    ("app", "kwargs", "error", "match"),
    [
        ("web_apps:app", {"offload": "/off"}, TypeError, "list of path prefixes, got '/off'"),
        ("web_apps:app", {"offload": ["off"]}, ValueError, "starting with '/', got 'off'"),
        ("web_apps:app", {"offload": []}, ValueError, "at least one path prefix"),
        (None, {"offload": ["/off"]}, ValueError, "needs the app as an import string"),
        (
            "web_apps:app",
            {"offload": ["/off"], "dispatch": "connection"},
            ValueError,
            "offload .* needs dispatch='request'",
        ),
        ("web_apps:app", {"offload_processes": 0}, ValueError, "at least 1, got 0"),
        ("web_apps:app", {"offload_processes": "2"}, TypeError, "must be an int, got '2'"),
        ("web_apps:nowhere", {}, ValueError, "has no attribute 'nowhere'"),
    ],
)
def test_bad_offload_arguments_are_named(
    app: str | None, kwargs: dict[str, Any], error: type, match: str
) -> None:
    import web_apps

    with pytest.raises(error, match=match):
        web.Server(web_apps.app if app is None else app, port=0, **kwargs)


@pytest.mark.usefixtures("no_children_left")
def test_the_command_offloads_and_sigterm_stops_the_children(marks: Path) -> None:
    args = (APP, "--loops", "1", "--offload", "/off", "--worker-header")
    with serving(*args) as port:
        assert get(port, "/off/pid").getheader("x-loopgrid-worker") == "offload-0"
        child = json.loads(get_body(port, "/off/pid"))["pid"]
        os.kill(child, signal.SIGINT)  # Ctrl-C reaches the whole process group
        os.kill(child, signal.SIGTERM)  # children leave stopping to the server
        assert json.loads(get_body(port, "/off/pid"))["pid"] == child
    assert (marks / f"{child}.shutdown").exists()
    with pytest.raises(ProcessLookupError):
        os.kill(child, 0)


@pytest.mark.usefixtures("no_children_left")
def test_the_example_webapps_cpu_route_can_be_offloaded(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("starlette")
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parent.parent))  # children too
    app = "examples.webapp.app:app"
    with web.Server(app, loops=2, port=0, offload=["/cpu"], worker_header=True) as server:
        status, headers, body = request(server, "/cpu?ms=1")
        ping = request(server, "/ping")
    assert status == 200
    assert headers["x-loopgrid-worker"] == "offload-0"
    assert json.loads(body)["iterations"] > 0
    assert ping[0] == 200 and ping[1]["x-loopgrid-worker"] in ("0", "1", "front")
