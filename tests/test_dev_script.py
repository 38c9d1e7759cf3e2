"""scripts/dev.py: which venv each command gets (issue 23, item 4).

Why: the demo needs loopgrid and rich (the ``cli`` extra, about 50 MB), not
the ``dev`` extra (linters, matplotlib, test and benchmark tools: hundreds of
megabytes); a contributor whose ``.venv`` is installed already should not get
a second venv for it. Nothing is installed here: the installing step is
replaced by a stand-in that records what it was asked for.
"""

from __future__ import annotations

import ast
import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "dev.py"


@pytest.fixture
def dev(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """scripts/dev.py with its root in ``tmp_path`` (holding a copy of
    pyproject.toml) and ``_venv`` recording the extras it is asked for."""
    spec = importlib.util.spec_from_file_location("dev_script", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    (tmp_path / "pyproject.toml").write_bytes(
        (SCRIPT.parent.parent / "pyproject.toml").read_bytes()
    )
    monkeypatch.setattr(module, "ROOT", tmp_path)
    module.installed = []

    def fake_venv(python: str, extra: str) -> Path:
        module.installed.append(extra)
        venv, _ = module._venv_path(python, extra)
        return Path(module._python_of(venv))

    monkeypatch.setattr(module, "_venv", fake_venv)
    return module


def _install_default(dev: ModuleType, extra: str) -> Path:
    """Make ``.venv`` look installed with ``extra`` for the current pyproject.toml."""
    venv, _ = dev._venv_path(sys.executable, "dev")
    py = Path(dev._python_of(venv))
    py.parent.mkdir(parents=True)
    py.write_text("")
    (venv / ".installed").write_text(dev._stamp(extra))
    return py


def test_the_demo_installs_the_cli_extra_in_a_venv_of_its_own(dev: ModuleType) -> None:
    py = dev.choose_venv("demo", sys.executable, None)
    assert dev.installed == ["cli"]
    assert py.parent.parent.name.endswith("-cli")


@pytest.mark.parametrize("extra", ["dev", "test"])
def test_the_demo_reuses_an_installed_default_venv(dev: ModuleType, extra: str) -> None:
    default_python = _install_default(dev, extra)
    assert dev.choose_venv("demo", sys.executable, None) == default_python
    assert dev.installed == []


def test_the_demo_does_not_reuse_a_stale_default_venv(dev: ModuleType) -> None:
    _install_default(dev, "dev")
    (dev.ROOT / "pyproject.toml").write_text("# changed\n")
    dev.choose_venv("demo", sys.executable, None)
    assert dev.installed == ["cli"]


@pytest.mark.parametrize("cmd", ["test", "bench", "python"])
def test_the_other_commands_install_the_dev_extra(dev: ModuleType, cmd: str) -> None:
    dev.choose_venv(cmd, sys.executable, None)
    assert dev.installed == ["dev"]


def test_an_explicit_extra_wins(dev: ModuleType) -> None:
    _install_default(dev, "dev")
    dev.choose_venv("demo", sys.executable, "dev,ray")
    assert dev.installed == ["dev,ray"]


def _third_party_imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name.partition(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.partition(".")[0])
    return {n for n in names if n not in sys.stdlib_module_names and n != "loopgrid"}


def test_the_cli_extra_has_what_the_demo_imports() -> None:
    """What examples/demo.py and its live view (loopgrid.top) import beyond
    loopgrid and the standard library is rich, and the cli extra has it."""
    root = SCRIPT.parent.parent
    needed = _third_party_imports(root / "examples" / "demo.py") | _third_party_imports(
        root / "loopgrid" / "top.py"
    )
    assert needed == {"rich"}
    pyproject = (root / "pyproject.toml").read_text(encoding="utf-8")
    cli = re.search(r"^cli = \[(.*)\]$", pyproject, re.MULTILINE)
    assert cli is not None
    assert re.findall(r'"([A-Za-z0-9_.-]+)', cli.group(1)) == ["rich"]
