"""``module:attr`` import strings, as ``loopgrid run``/``serve`` and offload processes take them."""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any

__all__ = ["import_target"]


def import_target(target: str, what: str = "function", *, from_cwd: bool = False) -> Any:
    """The object ``module:attr`` names, importing the module.

    ``from_cwd`` (the ``loopgrid`` command) puts the working directory on
    ``sys.path`` first, as ``python -m`` does; a library call leaves
    ``sys.path`` alone. Raises ValueError naming ``target`` when it is
    malformed or names nothing; an error raised by the module itself passes.
    """
    if not isinstance(target, str):
        raise TypeError(f"expected an import string module:{what}, got {target!r}")
    module_name, sep, attr = target.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"expected module:{what}, got {target!r}")
    if from_cwd and "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        obj: Any = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            raise ValueError(
                f"no module named {module_name!r} (from {target!r}){_hint(module_name, attr)}"
            ) from None
        raise
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ValueError(f"module {module_name!r} has no attribute {attr!r}") from None
    return obj


def _hint(module_name: str, attr: str) -> str:
    """How to write a file path as an import string, when that is the mistake."""
    if module_name.endswith(".py") or os.sep in module_name or "/" in module_name:
        dotted = module_name.removesuffix(".py").replace(os.sep, ".").replace("/", ".")
        return (
            f": an import string names a module, not a file; for {module_name} run it "
            f"from its folder as {dotted.strip('.')}:{attr}"
        )
    return ""
