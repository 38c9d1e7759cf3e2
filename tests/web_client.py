"""HTTP clients and ``loopgrid serve`` subprocesses for the web tests.

Every server the tests start binds 127.0.0.1 on a port the system picks.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from helpers import WAIT

from loopgrid import web

TESTS = Path(__file__).resolve().parent
Response = tuple[int, dict[str, str], bytes]


def request(
    server: web.Server, path: str, method: str = "GET", body: bytes | None = None
) -> Response:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=WAIT)
    try:
        conn.request(method, path, body=body)
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


class InThread:
    """Run ``fn(*args)`` on a thread; ``result()`` joins it (bounded) and returns."""

    def __init__(self, fn: Any, *args: Any) -> None:
        self._out: list[Any] = []
        self._err: list[BaseException] = []
        self._thread = threading.Thread(target=self._run, args=(fn, args), daemon=True)
        self._thread.start()

    def _run(self, fn: Any, args: tuple[Any, ...]) -> None:
        try:
            self._out.append(fn(*args))
        except BaseException as exc:
            self._err.append(exc)

    def result(self) -> Any:
        self._thread.join(WAIT)
        assert not self._thread.is_alive(), "the call did not return"
        if self._err:
            raise self._err[0]
        return self._out[0]


def serve_process(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "loopgrid", "serve", *args, "--port", "0", "--no-access-log"],
        cwd=TESTS,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )


def url_of(proc: subprocess.Popen[str]) -> str:
    assert proc.stderr is not None
    for line in proc.stderr:  # the command logs its URL once it serves
        m = re.search(r"running on (http://127\.0\.0\.1:\d+)", line)
        if m:
            return m.group(1)
    raise AssertionError(f"loopgrid serve never said where it serves (exit {proc.wait()})")


@contextlib.contextmanager
def serving(*args: str, env: dict[str, str] | None = None) -> Iterator[int]:
    """``loopgrid serve *args`` in a subprocess: yields its port, then SIGTERM
    must stop it with exit status 0."""
    proc = serve_process(*args, env=env)
    try:
        yield int(url_of(proc).rpartition(":")[2])
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(WAIT) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=WAIT)  # and close the pipes


def get(port: int, path: str) -> http.client.HTTPResponse:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=WAIT)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        resp.read()
        return resp
    finally:
        conn.close()


def get_body(port: int, path: str) -> bytes:
    """The body of ``GET path`` on 127.0.0.1:``port``."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=WAIT)
    try:
        conn.request("GET", path)
        return conn.getresponse().read()
    finally:
        conn.close()
