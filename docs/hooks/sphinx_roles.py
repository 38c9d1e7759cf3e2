"""A griffe extension: the docstrings' Sphinx roles as links into the API reference.

Why: loopgrid's docstrings name other objects with Sphinx roles
(``:class:`Handle```, ``:func:`~loopgrid.spawn```), which Markdown would show
as they are. This turns each role into a mkdocstrings cross-reference when
the API reference documents its target, and into plain code otherwise
(asyncio's names, loopgrid's private modules). A role is resolved as Python
resolves the name in the docstring's scope (the object, its class, its
module's imports), then mapped to the public path the reference shows it
under (``loopgrid.handle.Handle`` is documented as ``loopgrid.Handle``).

Which modules the reference documents is read from the ``::: module`` lines
of ``docs/reference/*.md``, so this never links to a page that is not built;
a link it makes that mkdocstrings cannot resolve fails ``mkdocs build --strict``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import griffe

REFERENCE = Path(__file__).resolve().parent.parent / "reference"
ROLE = re.compile(r":(?:py:)?(?:class|func|meth|mod|attr|exc|data|obj|const):`(~?)([^`]+)`")


def _documented_modules() -> list[str]:
    found: list[str] = []
    for page in sorted(REFERENCE.glob("*.md")):
        found += re.findall(r"^::: (\S+)", page.read_text(), flags=re.M)
    return found


def _target(obj: griffe.Object | griffe.Alias) -> griffe.Object | None:
    try:
        return obj.final_target if isinstance(obj, griffe.Alias) else obj
    except griffe.AliasResolutionError:
        return None  # imported from another package


def _public_paths(pkg: griffe.Module) -> dict[str, str]:
    """Every path (canonical or public) of a documented object -> its path in the reference."""
    public: dict[str, str] = {}

    def shown(name: str, member: griffe.Object | griffe.Alias, exports: Any) -> bool:
        # mkdocstrings' defaults: the names of __all__ where there is one,
        # else public names; only objects with a docstring.
        if exports is not None:
            if name not in exports:
                return False
        elif name.startswith("_"):
            return False
        target = _target(member)
        return target is not None and bool(target.docstring)

    def add(path: str, obj: griffe.Object) -> None:
        public.setdefault(path, path)
        public.setdefault(obj.path, path)

    for name in _documented_modules():
        module = pkg if name == pkg.path else pkg[name.removeprefix(pkg.path + ".")]
        add(module.path, module)
        for member_name, member in module.members.items():
            if not shown(member_name, member, module.exports):
                continue
            target = _target(member)
            assert target is not None
            path = f"{module.path}.{member_name}"
            add(path, target)
            if target.is_class:
                for sub_name, sub in target.members.items():
                    sub_target = _target(sub)
                    if sub_name.startswith("_") and not sub_name.startswith("__"):
                        continue
                    if sub_target is None or not sub_target.docstring or sub_name == "__init__":
                        continue
                    public.setdefault(f"{path}.{sub_name}", f"{path}.{sub_name}")
                    public.setdefault(f"{target.path}.{sub_name}", f"{path}.{sub_name}")
    return public


def _resolve(obj: griffe.Object, pkg: griffe.Module, name: str) -> str | None:
    """The canonical path of ``name`` as seen from ``obj``'s docstring, if in the package."""
    if name.startswith("."):
        level = len(name) - len(name.lstrip("."))
        module = obj.module
        base = module if module.is_init_module else module.parent
        for _ in range(level - 1):
            base = base.parent if base is not None else None
        if base is None:
            return None
        path = f"{base.path}.{name.lstrip('.')}"
    else:
        head, _, rest = name.partition(".")
        if head == pkg.path:
            path = name
        else:
            try:
                path = obj.resolve(head) + (f".{rest}" if rest else "")
            except griffe.NameResolutionError:
                return None
    if path != pkg.path and not path.startswith(pkg.path + "."):
        return None
    try:
        found = pkg[path.removeprefix(pkg.path + ".")] if path != pkg.path else pkg
    except (KeyError, griffe.AliasResolutionError):
        return None
    target = _target(found)
    return target.path if target is not None else None


class SphinxRoles(griffe.Extension):
    """Rewrites the Sphinx roles of every docstring in the ``loopgrid`` package."""

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        if pkg.path != "loopgrid":
            return
        public = _public_paths(pkg)

        def rewrite(obj: griffe.Object) -> None:
            if obj.docstring is not None:
                obj.docstring.value = ROLE.sub(
                    lambda m: self._ref(obj, pkg, public, m), obj.docstring.value
                )
            for member in obj.members.values():
                if not member.is_alias:
                    rewrite(member)  # type: ignore[arg-type]

        rewrite(pkg)

    @staticmethod
    def _ref(
        obj: griffe.Object, pkg: griffe.Module, public: dict[str, str], m: re.Match[str]
    ) -> str:
        short, written = m.group(1) == "~", m.group(2)
        name = written.removesuffix("()")
        shown = written.rsplit(".", 1)[-1] if short else written
        canonical = _resolve(obj, pkg, name)
        path = public.get(canonical) if canonical is not None else None
        if path is None:
            return f"`{shown}`"
        return f"[`{shown}`][{path}]"
