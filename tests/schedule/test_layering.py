"""The schedule layer is pure data: no module under cachesearch/schedule imports the runtime, the models,
the evaluator, the search, torch or diffusers, not even under TYPE_CHECKING or inside a function.

Checked statically: importing ``cachesearch.schedule`` runs ``cachesearch/__init__.py`` (which imports the
runtime) first, so ``sys.modules`` cannot tell.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import cachesearch.schedule

SCHEDULE = Path(cachesearch.schedule.__file__).parent
FORBIDDEN = (
    "cachesearch.runtime",
    "cachesearch.models",
    "cachesearch.evaluate",
    "cachesearch.search",
    "cachesearch._compile",
    "cachesearch.cli",
    "cachesearch.commands",
    "torch",
    "diffusers",
)


def _package_of(path: Path) -> str:
    parts = ["cachesearch", "schedule", *path.relative_to(SCHEDULE).with_suffix("").parts]
    return ".".join(parts if path.name == "__init__.py" else parts[:-1]).removesuffix(".__init__")


def imported_modules(source: str, package: str) -> set[str]:
    """Every absolute module name an import statement in ``source`` (a module of ``package``) may load."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            out.add(mod)
            out.update(f"{mod}.{a.name}" for a in node.names)  # `from .. import runtime`
    return out


def _forbidden(mods: set[str]) -> set[str]:
    return {m for m in mods if any(m == f or m.startswith(f + ".") for f in FORBIDDEN)}


def test_checker_sees_relative_lazy_and_type_checking_imports():
    src = (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from ..runtime import AppliedSchedule\n"
        "def f():\n    from .. import models\n    import torch.nn\n"
        "from .._util import utc_now\nfrom ._ir import Schedule\n"
    )
    mods = imported_modules(src, "cachesearch.schedule")
    assert _forbidden(mods) == {
        "cachesearch.runtime",
        "cachesearch.runtime.AppliedSchedule",
        "cachesearch.models",
        "torch.nn",
    }
    assert {"cachesearch._util", "cachesearch.schedule._ir"} <= mods
    assert "cachesearch.schedule._ir" in imported_modules("from .._ir import X\n", "cachesearch.schedule.policies")


def test_package_of_resolves_nested_modules():
    assert _package_of(SCHEDULE / "_ir.py") == "cachesearch.schedule"
    assert _package_of(SCHEDULE / "__init__.py") == "cachesearch.schedule"
    assert _package_of(SCHEDULE / "policies" / "base.py") == "cachesearch.schedule.policies"
    assert _package_of(SCHEDULE / "policies" / "__init__.py") == "cachesearch.schedule.policies"


FILES = sorted(SCHEDULE.rglob("*.py"))


def test_the_policy_families_are_among_the_files_checked():
    names = {p.relative_to(SCHEDULE).as_posix() for p in FILES}
    assert {
        "_ir.py",
        "_apply.py",
        "_yaml.py",
        "policies/base.py",
        "policies/deepcache.py",
        "policies/joint.py",
    } <= names


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.relative_to(SCHEDULE).as_posix())
def test_schedule_module_imports_no_heavier_layer(path):
    assert _forbidden(imported_modules(path.read_text(), _package_of(path))) == set()
