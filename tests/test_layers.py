"""The layer rule of docs/design.md, checked statically on every module's imports (function-local ones too).

A module may import only from its own layer or the layers before it, and no two modules import each other
in a cycle (package ``__init__`` re-exports and ``if TYPE_CHECKING:`` imports excepted).
"""

from __future__ import annotations

import ast
from pathlib import Path

import cachesearch

PACKAGE = Path(cachesearch.__file__).resolve().parent

# Ordered layers: prefixes of dotted module names (inside cachesearch), most specific first.
LAYERS: list[tuple[str, int]] = [
    ("_version", 0), ("_atomic", 0), ("_util", 0), ("_quiet", 0),
    ("schedule", 1),
    ("adapters", 2),
    ("runtime", 3),
    ("embedded", 4),
    ("models", 5),
    ("_compile", 6),
    ("evaluate", 7),
    ("search", 8),
    ("commands", 9), ("cli", 9),
]


def _layer(module: str) -> int:
    for prefix, layer in LAYERS:
        if module == prefix or module.startswith(prefix + "."):
            return layer
    raise AssertionError(f"module cachesearch.{module} is in no layer of tests/test_layers.py")


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        if parts:
            out[".".join(parts)] = path
    return out


# Method-level delegations inside one package that are cycles by the letter, each with its reason.
ALLOWED_CYCLES = {
    # Schedule.to_yaml()/save() call the dumper; the parser builds Schedule objects. Public API of the README.
    frozenset({"schedule._ir", "schedule._yaml"}),
}


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip.update(id(n) for stmt in node.body for n in ast.walk(stmt))
    return skip


def _imports(module: str, path: Path) -> set[str]:
    """Dotted cachesearch-internal modules imported anywhere in ``path`` (not under ``TYPE_CHECKING``)."""
    is_pkg = path.name == "__init__.py"
    base = module.split(".") if is_pkg else module.split(".")[:-1]
    found = set()
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skip = _type_checking_nodes(tree)
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = base[: len(base) - (node.level - 1)] if node.level > 1 else base
                target = ".".join([*anchor, *(node.module.split(".") if node.module else [])])
            elif node.module and (node.module == "cachesearch" or node.module.startswith("cachesearch.")):
                target = node.module.removeprefix("cachesearch").lstrip(".")
            else:
                continue
            names = [a.name for a in node.names]
            for name in names:  # `from . import runtime` names a module
                candidate = f"{target}.{name}" if target else name
                found.add(candidate if candidate in _MODULES else target)
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("cachesearch."):
                    found.add(a.name.removeprefix("cachesearch."))
    return {m for m in found if m}


_MODULES = _modules()


def _resolve(name: str) -> str | None:
    while name and name not in _MODULES:
        name = name.rpartition(".")[0]
    return name or None


def test_every_import_respects_the_layer_order():
    bad = []
    for module, path in _MODULES.items():
        for target in _imports(module, path):
            resolved = _resolve(target)
            if resolved is None:
                continue
            if _layer(resolved) > _layer(module):
                bad.append(f"cachesearch.{module} (layer {_layer(module)}) imports cachesearch.{resolved} "
                           f"(layer {_layer(resolved)})")
    assert not bad, "\n".join(sorted(bad))


def test_no_import_cycles_between_modules():
    graph: dict[str, set[str]] = {}
    for module, path in _MODULES.items():
        if path.name == "__init__.py":
            continue  # a package's __init__ re-exports its own modules
        edges = set()
        for target in _imports(module, path):
            resolved = _resolve(target)
            if resolved and resolved != module and _MODULES[resolved].name != "__init__.py":
                edges.add(resolved)
        graph[module] = edges
    # Tarjan's strongly connected components
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1 and frozenset(comp) not in ALLOWED_CYCLES:
                cycles.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    assert not cycles, f"import cycles: {cycles}"


def test_the_package_never_imports_the_trainers():
    """The repository's ``training/`` scripts are not installed: nothing in the package may import them."""
    bad = []
    for module, path in _MODULES.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module] if isinstance(node, ast.ImportFrom) and not node.level and node.module else [])
            bad += [f"cachesearch.{module} imports {n}" for n in names if n.split(".")[0] == "training"]
    assert not bad, "\n".join(bad)
