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

``demo`` needs less: loopgrid and rich (the ``cli`` extra, for its live view),
in ``.venv-cli``, tens of megabytes where ``dev`` (linters, matplotlib, the
test and benchmark tools) is hundreds. Where ``.venv`` is already installed
and up to date (``dev`` or ``test``), the demo runs from it instead of
making a second venv.
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


#: The extra each command installs unless ``--extra`` names one: the demo needs
#: rich for its live view (``cli``), not the test, lint and benchmark tools.
DEFAULT_EXTRA = {"demo": "cli", "test": "dev", "bench": "dev", "python": "dev"}


def _venv_path(python: str, extra: str) -> tuple[Path, str]:
    """The venv for ``python`` and ``extra``, and the interpreter's version."""
    version = subprocess.run(
        [python, "-c", _VERSION], check=True, capture_output=True, text=True
    ).stdout.strip()
    same = Path(python).resolve() == Path(sys.executable).resolve()
    name = ".venv" if same else f".venv-{version}"
    if extra not in ("dev", "test"):
        # Other extras (``--extra dev,ray``, the demo's ``cli``) get a venv of
        # their own, so that switching back to the default one neither
        # reinstalls nor keeps their packages around (Ray's tests would run in
        # every suite), and the demo's stays small.
        name += "-" + extra.replace(",", "-")
    return ROOT / name, version


def _python_of(venv: Path) -> Path:
    return venv / ("Scripts" if os.name == "nt" else "bin") / "python"


def _stamp(extra: str) -> str:
    """What ``.installed`` holds once ``extra`` is installed for this pyproject.toml."""
    return hashlib.sha256((ROOT / "pyproject.toml").read_bytes() + extra.encode()).hexdigest()


def _up_to_date(venv: Path, extra: str) -> bool:
    stamp = venv / ".installed"
    return _python_of(venv).exists() and stamp.exists() and stamp.read_text() == _stamp(extra)


def _venv(python: str, extra: str) -> Path:
    venv, version = _venv_path(python, extra)
    py = _python_of(venv)
    stamp = venv / ".installed"
    want = _stamp(extra)
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


def choose_venv(cmd: str, python: str, extra: str | None) -> Path:
    """The interpreter to run ``cmd`` with, installing what it needs first.

    The demo, with no ``--extra``, reuses an up-to-date ``.venv`` (its
    ``dev`` or ``test`` extra has rich too) rather than making its own.
    """
    if extra is None:
        extra = DEFAULT_EXTRA[cmd]
        if cmd == "demo":
            default, _ = _venv_path(python, "dev")
            if _up_to_date(default, "dev") or _up_to_date(default, "test"):
                return _python_of(default)
    return _venv(python, extra)


def main(argv: list[str]) -> int:
    python = sys.executable
    extra: str | None = None
    while len(argv) >= 2 and argv[0] in ("--python", "--extra"):
        if argv[0] == "--python":
            python = argv[1]
        else:
            extra = argv[1]
        argv = argv[2:]
    if not argv or argv[0] not in DEFAULT_EXTRA:
        print(__doc__)
        return 2
    cmd, rest = argv[0], argv[1:]
    py = choose_venv(cmd, python, extra)
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
