#!/usr/bin/env python3
"""Set up a virtual environment and run the demo, the tests or the benchmarks.

Usage (from the repository root, with any Python 3.10+ that has pip and venv):

    python3 scripts/dev.py demo           # the live demo (examples/demo.py)
    python3 scripts/dev.py test [ARGS]    # the test suite (pytest ARGS)
    python3 scripts/dev.py bench [ARGS]   # the benchmarks (bench/run.py ARGS)

The first run creates ``.venv`` (``.venv-X.Y`` for another interpreter, chosen
with ``--python``; ``.venv-X.Yt`` for a free-threaded one) and installs the
project with its ``dev`` extra (``--extra test``: only what the tests need, for
interpreters where the linters or matplotlib have no wheels; ``--extra dev,ray``
adds Ray, in a venv of its own, ``.venv-dev-ray``; ``--extra docs`` has only
the docs tools, in ``.venv-docs``: ``python3 scripts/dev.py --extra docs python
-m mkdocs serve``); later runs reuse it, re-installing only when pyproject.toml
or the extra changed.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


_VERSION = (
    "import sys, sysconfig; print('%d.%d' % sys.version_info[:2] "
    "+ ('t' if sysconfig.get_config_var('Py_GIL_DISABLED') else ''))"
)


def _venv(python: str, extra: str) -> Path:
    version = subprocess.run(
        [python, "-c", _VERSION], check=True, capture_output=True, text=True
    ).stdout.strip()
    same = Path(python).resolve() == Path(sys.executable).resolve()
    name = ".venv" if same else f".venv-{version}"
    if extra not in ("dev", "test"):
        # Other extras (``--extra dev,ray``) get a venv of their own, so that
        # switching back to the default one neither reinstalls nor keeps
        # their packages around (Ray's tests would run in every suite).
        name += "-" + extra.replace(",", "-")
    venv = ROOT / name
    bindir = venv / ("Scripts" if os.name == "nt" else "bin")
    py = bindir / "python"
    stamp = venv / ".installed"
    want = hashlib.sha256((ROOT / "pyproject.toml").read_bytes() + extra.encode()).hexdigest()
    if not py.exists():
        print(f"dev.py: creating {venv.name} with {python} (Python {version})", flush=True)
        if subprocess.run([python, "-m", "venv", str(venv)]).returncode != 0:
            # Debian's python3 without the python3-venv package has no ensurepip:
            # make the venv without pip; the pip running this script fills it.
            bare = [python, "-m", "venv", "--clear", "--without-pip", str(venv)]
            subprocess.run(bare, check=True)
    if not stamp.exists() or stamp.read_text() != want:
        print(f"dev.py: installing loopgrid[{extra}] into {venv.name}", flush=True)
        quiet = ["--disable-pip-version-check", "-q"]
        has_pip = subprocess.run([str(py), "-m", "pip", "--version"], capture_output=True)
        if has_pip.returncode == 0:
            pip = [str(py), "-m", "pip", "install", *quiet]
            subprocess.run([*pip, "--upgrade", "pip"], check=True)
        else:  # pip >= 22.3 installs into another environment with --python
            pip = [sys.executable, "-m", "pip", "--python", str(py), "install", *quiet]
        # Free-threaded builds: some packages' newest releases have wheels only
        # for GIL builds, and their sources need tools we cannot fetch (Rust
        # crates): take the newest release that has a wheel.
        binary = ["--prefer-binary"] if version.endswith("t") else []
        subprocess.run([*pip, *binary, "-e", f"{ROOT}[{extra}]"], check=True)
        stamp.write_text(want)
    return py


def main(argv: list[str]) -> int:
    python = sys.executable
    extra = "dev"
    while len(argv) >= 2 and argv[0] in ("--python", "--extra"):
        if argv[0] == "--python":
            python = argv[1]
        else:
            extra = argv[1]
        argv = argv[2:]
    if not argv or argv[0] not in ("demo", "test", "bench", "python"):
        print(__doc__)
        return 2
    cmd, rest = argv[0], argv[1:]
    py = _venv(python, extra)
    if cmd == "demo":
        args = [str(py), str(ROOT / "examples" / "demo.py"), *rest]
    elif cmd == "test":
        args = [str(py), "-m", "pytest", *rest]
    elif cmd == "bench":
        args = [str(py), str(ROOT / "bench" / "run.py"), *rest]
    else:
        args = [str(py), *rest]
    return subprocess.run(args, cwd=ROOT).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
