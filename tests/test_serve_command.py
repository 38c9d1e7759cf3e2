"""``loopgrid serve`` as a drop-in for the ``uvicorn`` command
(``loopgrid.web.command``, ``loopgrid.web.supervisor``).

The first tests check the parsing (every uvicorn option is taken, and goes
somewhere); the others run the command in subprocesses on 127.0.0.1 and check
that each option does what it does in uvicorn. A server says where it serves
in its log; nothing here sleeps or times anything: a process is waited for
with a bounded ``wait``, and a change (a replaced worker, a reload) is polled
for with bounded retries.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import WAIT, wait_until

from loopgrid.web import command

pytest.importorskip("uvicorn", reason="loopgrid serve needs uvicorn")
from uvicorn.main import main as uvicorn_main

TESTS = Path(__file__).resolve().parent


# -- parsing -----------------------------------------------------------------------------


def _sample(param: Any) -> list[str]:
    """Arguments that give ``param`` a value other than its default."""
    import click

    opt = param.opts[0]
    if param.is_flag:
        if param.secondary_opts:
            return [param.secondary_opts[0] if param.default else opt]
        return [opt]
    if isinstance(param.type, click.Choice):
        choices = [c for c in param.type.choices if c != param.default]
        return [opt, str(choices[0])]
    if param.type is click.BOOL:
        return [opt, "false" if param.default else "true"]
    if param.type is click.INT or isinstance(param.type, click.IntRange):
        return [opt, "3"]
    if param.type is click.FLOAT:
        return [opt, "3.5"]
    if opt == "--header":
        return [opt, "x-a:b"]
    if isinstance(param.type, click.Path) or opt in ("--app-dir", "--reload-dir"):
        return [opt, str(TESTS / "serve_apps.py")] if opt != "--app-dir" else [opt, str(TESTS)]
    return [opt, "value"]


def test_every_uvicorn_option_is_taken_and_goes_somewhere() -> None:
    names = []
    for param in uvicorn_main.params:
        if param.name in ("app", "version") or param.expose_value is False:
            continue
        parsed = command.parse([*_sample(param), "serve_apps:app"])
        assert param.name in parsed.uvicorn, param.name
        default = command.parse(["serve_apps:app"]).uvicorn[param.name]
        assert parsed.uvicorn[param.name] != default, f"{param.name} kept its default"
        in_config = param.name in parsed.config_options
        assert in_config != (param.name in command._OURS), param.name
        names.append(param.name)
    assert len(names) >= 45  # uvicorn has over 50 options: none was skipped by accident
    import uvicorn

    # What goes to uvicorn.Config is what Config takes.
    uvicorn.Config("serve_apps:app", **command.parse(["serve_apps:app"]).config_options)


def test_lifespan_takes_uvicorns_meaning_and_the_old_values_name_the_scope(
    capsys: pytest.CaptureFixture[str],
) -> None:
    def mapped(*argv: str) -> tuple[str, bool]:
        options = command.server_options(command.parse([*argv, "serve_apps:app"]))
        return options["lifespan"], options["require_lifespan"]

    assert mapped() == ("loop", False)
    assert mapped("--lifespan", "on") == ("loop", True)
    assert mapped("--lifespan", "off") == ("off", False)
    assert mapped("--lifespan-scope", "shared", "--lifespan", "on") == ("shared", True)
    assert mapped("--lifespan", "shared") == ("shared", False)
    assert mapped("--lifespan=process") == ("shared", False)
    assert "--lifespan shared is now --lifespan-scope shared" in capsys.readouterr().err


def test_loopgrid_takes_its_own_share_of_uvicorns_options() -> None:
    parsed = command.parse(
        ["--timeout-graceful-shutdown", "4", "--loop", "asyncio", "--backlog", "7", "a:b"]
    )
    options = command.server_options(parsed)
    assert options["grace"] == 4.0 and options["backlog"] == 7
    import asyncio

    assert options["loop_factory"] is asyncio.new_event_loop
    assert command.server_options(command.parse(["--grace", "2", "a:b"]))["grace"] == 2.0


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--port", "eighty", "a:b"], "'eighty' is not a valid integer"),
        (["--workers", "0", "a:b"], "--workers must be at least 1"),
        (["--loops", "0", "a:b"], "--loops must be at least 1"),
        (["--lifespan", "sometimes", "a:b"], "sometimes"),
        (["--no-such-option", "a:b"], "no-such-option"),
        ([], "APP"),
    ],
)
def test_a_bad_command_line_is_a_usage_error_naming_it(argv: list[str], message: str) -> None:
    with pytest.raises(command.Usage, match=re.escape(message)):
        command.parse(argv)


# -- serving ---------------------------------------------------------------------------


def start(
    *args: str, cwd: Path = TESTS, env: dict[str, str] | None = None
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "loopgrid", "serve", *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )


def where(proc: subprocess.Popen[str], lines: list[str] | None = None) -> str:
    """The address the server logged (read off its stderr)."""
    assert proc.stderr is not None
    for line in proc.stderr:
        if lines is not None:
            lines.append(line)
        m = re.search(r"running on (\S+) with loopgrid", line)
        if m:
            return m.group(1)
    raise AssertionError(f"loopgrid serve never said where it serves (exit {proc.wait()})")


def stop(proc: subprocess.Popen[str]) -> tuple[int, str]:
    """SIGTERM, then its exit status and the rest of its output (uvicorn's
    access log goes to stdout, the rest of its log to stderr)."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        out, err = proc.communicate(timeout=WAIT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise
    return proc.returncode, out + err


@contextlib.contextmanager
def served(*args: str, **kwargs: Any) -> Iterator[tuple[subprocess.Popen[str], str]]:
    proc = start(*args, **kwargs)
    try:
        yield proc, where(proc)
    finally:
        if proc.poll() is None:  # a failed test: stop it (and its workers) anyway
            proc.send_signal(signal.SIGTERM)
            try:
                proc.communicate(timeout=WAIT)
            except subprocess.TimeoutExpired:
                proc.kill()
        proc.communicate(timeout=WAIT)


def get(url: str, path: str = "/", headers: dict[str, str] | None = None) -> Any:
    host, _, port = url.split("://", 1)[1].rpartition(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=WAIT)
    try:
        conn.request("GET", path, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, json.loads(resp.read())
    finally:
        conn.close()


def test_uvicorns_request_options_do_what_they_do(tmp_path: Path) -> None:
    env_file = tmp_path / "settings.env"
    env_file.write_text("SERVE_APPS_SETTING=from the env file\n")
    args = [
        "serve_apps:app",
        "--port=0",
        "--loops=2",
        "--no-access-log",
        "--root-path=/api",
        "--proxy-headers",
        "--forwarded-allow-ips=127.0.0.1",
        "--header=x-test:yes",
        "--no-server-header",
        f"--env-file={env_file}",
    ]
    with served(*args) as (proc, url):
        status, headers, body = get(url, "/x", {"x-forwarded-for": "10.1.2.3"})
        assert status == 200
        assert body["root_path"] == "/api"
        assert body["client"][0] == "10.1.2.3"
        assert body["env"] == "from the env file"
        assert headers["x-test"] == "yes"
        assert "server" not in headers
        assert stop(proc)[0] == 0


def test_the_access_log_is_on_by_default_as_in_uvicorn() -> None:
    with served("serve_apps:app", "--port", "0", "--loops", "1") as (proc, url):
        assert get(url, "/logged")[0] == 200
        code, err = stop(proc)
    assert code == 0
    assert re.search(r'"GET /logged HTTP/1.1" 200', err), err


def test_lifespan_on_refuses_an_app_without_lifespan_and_auto_serves_it() -> None:
    proc = start("serve_apps:no_lifespan", "--port", "0", "--lifespan", "on")
    _, err = proc.communicate(timeout=WAIT)
    assert proc.returncode == 1
    assert "does not support the ASGI lifespan protocol" in err and "--lifespan auto" in err
    with served("serve_apps:no_lifespan", "--port", "0", "--no-access-log") as (proc, url):
        assert get(url)[0] == 200
        assert stop(proc)[0] == 0


def test_factory_and_app_dir_find_the_app_as_uvicorn_does(tmp_path: Path) -> None:
    args = ["--factory", "--app-dir", str(TESTS), "serve_apps:make_app", "--port", "0"]
    with served(*args, "--no-access-log", cwd=tmp_path) as (proc, url):
        assert get(url)[2]["pid"] == proc.pid
        assert stop(proc)[0] == 0


def test_a_unix_socket(tmp_path: Path) -> None:
    path = tmp_path / "s.sock"
    with served("serve_apps:app", "--uds", str(path), "--no-access-log") as (proc, url):
        assert url == f"http+unix://{path}"
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(WAIT)
        sock.connect(str(path))
        with sock:
            sock.sendall(b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
        assert data.startswith(b"HTTP/1.1 200")
        assert stop(proc)[0] == 0


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl to make a certificate")
def test_tls_with_uvicorns_ssl_options(tmp_path: Path) -> None:
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
            *("-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(cert)),
        ],
        check=True,
        capture_output=True,
    )
    args = ["serve_apps:app", "--port", "0", "--no-access-log"]
    with served(*args, "--ssl-keyfile", str(key), "--ssl-certfile", str(cert)) as (proc, url):
        assert url.startswith("https://")
        host, _, port = url.split("://", 1)[1].rpartition(":")
        context = ssl.create_default_context(cafile=str(cert))
        context.check_hostname = False
        conn = http.client.HTTPSConnection(host, int(port), timeout=WAIT, context=context)
        conn.request("GET", "/")
        assert json.loads(conn.getresponse().read())["scheme"] == "https"
        conn.close()
        assert stop(proc)[0] == 0


def test_limit_max_requests_ends_the_process_as_in_uvicorn() -> None:
    with served("serve_apps:app", "--port", "0", "--limit-max-requests", "2") as (proc, url):
        assert get(url)[0] == 200
        assert get(url)[0] == 200
        assert proc.wait(WAIT) == 0


def test_version_and_help_name_both() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "loopgrid", "serve", "--version"],
        capture_output=True,
        text=True,
        timeout=WAIT,
    )
    assert out.returncode == 0 and re.match(r"Running loopgrid \S+ with uvicorn \S+", out.stdout)
    help_text = command.help_text()
    assert "--loops N" in help_text and "--ssl-keyfile" in help_text and "--workers" in help_text


# -- processes x loops --------------------------------------------------------------------


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _pids_seen(url: str, count: int) -> set[int]:
    """Distinct worker pids answering, one request per poll until ``count``
    answered (the last worker may still be starting) or WAIT passed."""
    seen: set[int] = set()

    def enough() -> bool:
        with contextlib.suppress(OSError, http.client.HTTPException):
            seen.add(get(url)[2]["pid"])
        return len(seen) >= count

    wait_until(enough)
    return seen


def test_workers_serve_from_several_processes_and_a_dead_one_is_replaced() -> None:
    args = ["serve_apps:app", "--port", "0", "--workers", "2", "--loops", "2", "--no-access-log"]
    with served(*args) as (proc, url):
        first = _pids_seen(url, 2)
        assert len(first) == 2 and proc.pid not in first
        with pytest.raises((OSError, http.client.HTTPException)):
            get(url, "/die")  # the worker that takes it exits at once
        assert wait_until(lambda: any(not _alive(pid) for pid in first))
        dead = {pid for pid in first if not _alive(pid)}
        after: set[int] = set()

        def replaced() -> bool:  # one request per poll, until a new worker answers
            with contextlib.suppress(OSError, http.client.HTTPException):
                after.add(get(url)[2]["pid"])
            return len(after - first) >= 1

        assert wait_until(replaced)
        assert not dead & after
        code, err = stop(proc)
        assert code == 0
        assert all(not _alive(pid) for pid in first | after)
        assert "died (exit status 3)" in err and "Stopping parent process" in err


def test_a_worker_that_cannot_start_stops_them_all() -> None:
    proc = start("serve_apps:failing_startup", "--port", "0", "--workers", "2")
    _, err = proc.communicate(timeout=WAIT * 2)
    assert proc.returncode == 1
    assert "no database" in err and "failed to start" in err


def test_reload_restarts_the_process_when_a_file_changes(tmp_path: Path) -> None:
    shutil.copy(TESTS / "serve_apps.py", tmp_path / "reloaded_app.py")
    args = ["reloaded_app:app", "--port", "0", "--reload", "--reload-dir", str(tmp_path)]
    with served(*args, "--app-dir", str(tmp_path), "--no-access-log", cwd=tmp_path) as (
        proc,
        url,
    ):
        before = get(url)[2]["pid"]
        source = tmp_path / "reloaded_app.py"
        after: list[int] = []

        def restarted() -> bool:
            # Changed at each look until the new process answers: uvicorn's
            # reloader takes the modification times it first sees as its
            # baseline, and its first look may come after a first change.
            source.write_text(source.read_text() + "\n# changed\n")
            with contextlib.suppress(OSError, http.client.HTTPException):
                after.append(get(url)[2]["pid"])
            return bool(after) and after[-1] != before

        assert wait_until(restarted)
        assert stop(proc)[0] == 0


def test_several_processes_default_to_two_loops_each(monkeypatch: pytest.MonkeyPatch) -> None:
    def loops(*argv: str) -> int | None:
        options: dict[str, Any] = command.server_options(command.parse([*argv, "a:b"]))
        return options["loops"]

    monkeypatch.delenv("WEB_CONCURRENCY", raising=False)
    assert loops() is None  # one process: the grid's default, one loop per CPU
    assert loops("--workers", "3") == command.LOOPS_PER_PROCESS == 2
    assert loops("--workers", "3", "--loops", "5") == 5
    monkeypatch.setenv("WEB_CONCURRENCY", "4")
    assert loops() == 2


def test_a_bad_web_concurrency_is_a_usage_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from loopgrid.web.command import workers_wanted

    monkeypatch.setenv("WEB_CONCURRENCY", "many")
    with pytest.raises(command.Usage, match=r"WEB_CONCURRENCY must be .* got 'many'"):
        workers_wanted(command.parse(["a:b"]))
    assert workers_wanted(command.parse(["--workers", "3", "a:b"])) == 3  # the option wins
