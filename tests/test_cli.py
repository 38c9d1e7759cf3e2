"""The loopgrid command: run, ps and top."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from helpers import WAIT, Countdown, Gate, block_worker, identity, quiet_child_env

from loopgrid import Grid, Priority, cli
from loopgrid.cli import format_ps, main

APP = """
import asyncio
import loopgrid


async def total(n="3"):
    hs = [loopgrid.spawn(square, i) for i in range(int(n))]
    return sum(await asyncio.gather(*hs))


async def square(i):
    return i * i


async def where():
    return f"worker {loopgrid.current_worker().index} of {len(loopgrid.current_grid().workers)}"


async def nothing():
    return None


async def boom():
    raise ValueError("boom from the app")


async def crossed():
    # A future of worker 0's loop, awaited by a task on worker 1.
    fut = asyncio.get_running_loop().create_future()

    async def wait_for_it():
        await fut

    try:
        await loopgrid.spawn(wait_for_it, worker=1)
    finally:
        fut.cancel()


def plain():
    return 1
"""


def _loopgrid(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "app.py").write_text(APP)
    return subprocess.run(
        [sys.executable, "-m", "loopgrid", *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=quiet_child_env(),
    )


def test_run_prints_the_result(tmp_path: Path) -> None:
    proc = _loopgrid(tmp_path, "run", "app:total", "4", "--loops", "2")
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "14\n", "")
    proc = _loopgrid(tmp_path, "run", "app:where", "--loops", "3")
    assert proc.stdout == "worker 0 of 3\n"
    proc = _loopgrid(tmp_path, "run", "app:nothing")
    assert (proc.returncode, proc.stdout) == (0, "")


def test_run_reports_a_failure_with_its_traceback(tmp_path: Path) -> None:
    proc = _loopgrid(tmp_path, "run", "app:boom")
    assert proc.returncode == 1
    assert "ValueError: boom from the app" in proc.stderr
    assert 'app.py", line' in proc.stderr


def test_run_explains_a_loop_affinity_error(tmp_path: Path) -> None:
    proc = _loopgrid(tmp_path, "run", "app:crossed", "--loops", "2")
    assert proc.returncode == 1
    assert "attached to a different loop" in proc.stderr
    assert "used from worker 1" in proc.stderr
    assert "LoopLocal" in proc.stderr


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("app", "expected module:function, got 'app'"),
        ("nosuchmodule:f", "no module named 'nosuchmodule'"),
        (
            "app.py:total",
            "names a module, not a file; for app.py run it from its folder as app:total",
        ),
        ("sub/app.py:total", "as sub.app:total"),
        ("app:missing", "module 'app' has no attribute 'missing'"),
        ("app:plain", "app:plain is <function plain"),
    ],
)
def test_run_refuses_a_bad_target(tmp_path: Path, target: str, message: str) -> None:
    proc = _loopgrid(tmp_path, "run", target)
    assert proc.returncode == 2
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr


def test_run_serves_the_debug_endpoint_on_request(tmp_path: Path) -> None:
    proc = _loopgrid(tmp_path, "run", "app:total", "--debug-port", "0")
    assert proc.returncode == 0
    assert "loopgrid: debug endpoint at http://127.0.0.1:" in proc.stderr


def test_ps_lists_running_and_pending_tasks(capsys: pytest.CaptureFixture[str]) -> None:
    gate = Gate()
    started = threading.Event()

    async def waiting_for_gate() -> None:
        started.set()
        await gate.wait()

    with Grid(2, debug_port=0) as g:
        assert g.debug_url is not None
        _, release = block_worker(g, 0)
        try:
            w = g.spawn(waiting_for_gate, worker=1, name="gatekeeper")
            p = g.spawn(identity, 1, worker=0, priority=Priority.HIGH, name="queued-one")
            # "running" only once the gatekeeper's first step has run.
            assert started.wait(WAIT)
            assert main(["ps", "--url", g.debug_url]) == 0
            table = capsys.readouterr().out
            assert main(["ps", "--url", g.debug_url, "--json"]) == 0
            rows = json.loads(capsys.readouterr().out)
        finally:
            release.set()
            gate.set()
        p.result(WAIT)
        w.result(WAIT)
    lines = table.splitlines()
    assert lines[0].split() == ["ID", "NAME", "PRIORITY", "STATE", "WORKER", "AGE", "WHERE"]
    gate_line = next(line for line in lines if "gatekeeper" in line)
    assert gate_line.split()[:5] == [str(w.id), "gatekeeper", "normal", "running", "1"]
    assert "in waiting_for_gate" in gate_line or "in wait" in gate_line
    queued = next(line for line in lines if "queued-one" in line)
    assert queued.split()[:5] == [str(p.id), "queued-one", "high", "pending", "0"]
    assert queued.endswith("queued on worker 0")
    blocker = next(line for line in lines[1:] if line.split()[1] == "blocker")
    assert "running: threading.py:" in blocker
    assert {r["name"] for r in rows} == {"blocker", "gatekeeper", "queued-one"}
    # Sorted by worker, then id, in the table and the JSON alike.
    order = [(r["worker"], r["id"]) for r in rows]
    assert order == sorted(order)
    assert [line.split()[0] for line in lines[1:]] == [str(r["id"]) for r in rows]


def test_version_names_loopgrid_and_python(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert re.fullmatch(r"loopgrid \S+ \((CPython|PyPy) 3\.\d+\.\d+\S*(, free-threaded)?\)\n", out)


def _top_until_the_grid_closes(monkeypatch: pytest.MonkeyPatch, name: str) -> int:
    """``loopgrid top`` on a grid named ``name``, refreshing every 0.02 s, until
    the grid closes after the first frame and two refreshes; its exit status."""
    fetched = _count_fetches(monkeypatch)
    g = Grid(1, name=name, debug_port=0)
    url = g.debug_url
    assert url is not None
    status: list[int] = []
    argv = ["top", "--url", url, "--interval", "0.02"]
    t = threading.Thread(target=lambda: status.append(main(argv)))
    t.start()
    try:
        assert fetched.wait(WAIT)
    finally:
        g.close()
    t.join(WAIT)
    assert not t.is_alive()
    return status[0]


def _count_fetches(monkeypatch: pytest.MonkeyPatch) -> Countdown:
    """``top``'s fetches counted: the countdown reaches 0 at the first frame and
    two refreshes."""
    fetched = Countdown(3)
    real_fetch = cli._fetch

    def counting_fetch(url: str, path: str) -> Any:
        body = real_fetch(url, path)
        fetched.hit()
        return body

    monkeypatch.setattr(cli, "_fetch", counting_fetch)
    return fetched


def test_top_without_a_terminal_prints_frame_after_frame(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Piped (pytest captures stdout: no terminal), each refresh is printed."""
    assert _top_until_the_grid_closes(monkeypatch, "piped") == 1  # the grid went away
    assert capsys.readouterr().out.count("grid piped  1 loops") >= 3


def test_format_ps_shortens_where() -> None:
    rows = [
        {
            "id": 7,
            "name": "t",
            "priority": "low",
            "state": "running",
            "worker": None,
            "age": 75.0,
            "where": ["/a/b/app.py:3 in main", "/a/b/lib.py:9 in wait", "awaiting <Future>"],
        }
    ]
    line = format_ps(rows).splitlines()[1]
    assert line.split()[:6] == ["7", "t", "low", "running", "-", "1m15s"]
    assert line.endswith("lib.py:9 in wait awaiting <Future>")


def test_ps_and_top_say_when_the_endpoint_is_unreachable(
    capsys: pytest.CaptureFixture[str],
) -> None:
    g = Grid(1, debug_port=0)
    url = g.debug_url
    assert url is not None
    g.close()
    assert main(["ps", "--url", url]) == 1
    assert f"loopgrid ps: cannot read {url}/tasks" in capsys.readouterr().err
    assert main(["top", "--url", url, "--once"]) == 1
    assert f"loopgrid top: cannot read {url}/stats" in capsys.readouterr().err


def test_top_once_prints_a_frame(capsys: pytest.CaptureFixture[str]) -> None:
    with Grid(2, name="topped", debug_port=0) as g:
        assert g.debug_url is not None
        assert main(["top", "--url", g.debug_url, "--once"]) == 0
    out = capsys.readouterr().out
    assert "grid topped  2 loops  open" in out
    assert "pending L/N/H/C" in out


def test_top_refreshes_until_the_grid_goes_away(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert _top_until_the_grid_closes(monkeypatch, "watched") == 1
    assert "the grid went away" in capsys.readouterr().err
