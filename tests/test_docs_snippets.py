"""Every Python snippet of the README and the docs runs, as a reader would run it.

Why: snippets drift from the code they show (an undefined name, a missing
import, an API that changed), and a reader who copies one is the first to
find out. Each ```` ```python ```` block of README.md and docs/ is collected by
pytest-examples and run here as a program of its own (``__name__`` is
``"__main__"``), so each must be complete: its imports, its definitions, no
top-level ``await``.

What is not run is marked where the reader sees it, never skipped silently
(the settings go in braces, the form Python-Markdown's attribute lists and
pymdownx.superfences accept, so the site still highlights the snippet):

- shell commands and sample output use other fences (``sh``, ``text``),
  which are not collected;
- a Python snippet that cannot run on its own (it blocks until Ctrl-C, it
  starts processes) says so in its fence, with the reason the skip reports:
  ```` ```{.python test="skip" reason="serves until Ctrl-C"} ````;
- ```` ```{.python test="pytest"} ```` is a test module: it is run by pytest,
  in a process of its own, as ``pytest that_file.py``;
- ```` ```{.python requires="fastapi"} ```` needs a package that not every
  test environment has (FastAPI: the ``dev`` extra, as pydantic-core has no
  wheel for free-threaded builds; Ray: the ``ray`` extra, whose CI step runs
  the tests marked ``ray``): skipped, naming it, where it is missing.
"""

from __future__ import annotations

import re
import subprocess
import sys
import types
from pathlib import Path

import pytest
from pytest_examples import CodeExample, find_examples

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = list(find_examples(ROOT / "README.md", ROOT / "docs"))


def _param(example: CodeExample) -> object:
    requires = example.prefix_settings().get("requires", "").split()
    marks = [pytest.mark.ray] if "ray" in requires else []
    rel = example.path.relative_to(ROOT).as_posix()
    return pytest.param(example, id=f"{rel}:{example.start_line}", marks=marks)


def test_snippets_found() -> None:
    # The README's tutorial alone has four; a wrong path would find none.
    readme = [e for e in EXAMPLES if e.path.name == "README.md"]
    assert len(readme) >= 4
    assert len(EXAMPLES) > len(readme)


@pytest.mark.parametrize("example", [_param(e) for e in EXAMPLES])
def test_snippet_runs(example: CodeExample, tmp_path: Path) -> None:
    settings = example.prefix_settings()
    mode = settings.get("test", "run")
    assert mode in ("run", "skip", "pytest"), f"unknown test={mode!r} in {example}"
    if mode == "skip":
        # The reason as written (pytest-examples lowercases the fence's line).
        fence = example.path.read_text(encoding="utf-8").splitlines()[example.start_line - 1]
        reason = re.search(r'reason="([^"]+)"', fence)
        assert reason, f'{example}: test="skip" needs reason="..."'
        pytest.skip(reason.group(1))
    for package in settings.get("requires", "").split():
        pytest.importorskip(package, reason=f"the snippet needs {package}, not installed here")
    if mode == "pytest":
        path = tmp_path / f"test_{example.module_name}.py"
        path.write_text(example.source, encoding="utf-8")
        run = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(path)],
            cwd=tmp_path,
            capture_output=True,
            text=True,
        )
        assert run.returncode == 0, f"{example}:\n{run.stdout}\n{run.stderr}"
        return
    # Run as a program runs, as the module __main__, compiled with the
    # markdown file's name and line numbers, so that a failure's traceback
    # shows the snippet's own lines. (pytest-examples' own runner rewrites
    # tracebacks in a way Python 3.11's traceback module cannot print.) Then
    # put pytest's __main__ back, or a later test that starts a process with
    # "spawn" (which imports __main__ in the child) would run the snippet.
    code = compile("\n" * example.start_line + example.source, str(example.path), "exec")
    module = types.ModuleType("__main__")
    module.__file__ = str(example.path)
    main = sys.modules["__main__"]
    sys.modules["__main__"] = module
    try:
        exec(code, module.__dict__)
    finally:
        sys.modules["__main__"] = main
