"""The direction of imports: `pipelines → sensors, assets → resources → chainlake`, with the
entry points (`cli`, `tools`) on top. Every import is read from the source, function-local
ones included, so a lazy import cannot hide an upward dependency or a cycle."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BELOW = {
    "chainlake": set(),
    "resources": {"chainlake"},
    "assets": {"resources", "chainlake"},
    "sensors": {"resources", "chainlake"},
    "pipelines": {"assets", "sensors", "resources", "chainlake"},
    "cli": {"pipelines", "assets", "sensors", "resources", "chainlake"},
    "tools": {"cli", "pipelines", "assets", "sensors", "resources", "chainlake"},
}
LAYERS = set(BELOW)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def project_modules() -> dict[str, Path]:
    return {module_name(p): p for layer in LAYERS for p in sorted((ROOT / layer).rglob("*.py"))}


def imports_of(path: Path, modules: dict[str, Path]) -> set[str]:
    """Project modules that `path` imports anywhere in its body (the longest known prefix of
    each imported name; `from a.b import c` counts `a.b.c` when that is a module)."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{a.name}" for a in node.names] + [node.module]
        for name in names:
            parts = name.split(".")
            for i in range(len(parts), 0, -1):
                candidate = ".".join(parts[:i])
                if candidate in modules:
                    out.add(candidate)
                    break
    return out


def graph() -> dict[str, set[str]]:
    modules = project_modules()
    return {m: imports_of(p, modules) - {m} for m, p in modules.items()}


def upward_imports(g: dict[str, set[str]]) -> list[str]:
    bad = []
    for mod, deps in sorted(g.items()):
        layer = mod.split(".")[0]
        for dep in sorted(deps):
            target = dep.split(".")[0]
            if target != layer and target not in BELOW[layer]:
                bad.append(f"{mod} imports {dep} ({layer} may import {sorted(BELOW[layer])})")
    return bad


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected group of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in g.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for v in sorted(g):
        if v not in index:
            visit(v)
    return found


def test_no_layer_imports_a_layer_above_it() -> None:
    bad = upward_imports(graph())
    assert not bad, "imports against the direction of the layers:\n" + "\n".join(bad)


def test_no_import_cycles() -> None:
    found = cycles(graph())
    assert not found, "import cycles:\n" + "\n".join(" ↔ ".join(c) for c in found)


def test_the_walk_sees_an_upward_import(tmp_path: Path) -> None:
    """The checks above can fail: a library module importing an asset is caught, function-local
    or not, and so is a two-module cycle."""
    g = graph()
    g["chainlake.rpc"] = {*g["chainlake.rpc"], "assets.core.balances"}
    assert any(
        b.startswith("chainlake.rpc imports assets.core.balances") for b in upward_imports(g)
    )
    g["chainlake.schema"] = {*g["chainlake.schema"], "chainlake.config"}
    g["chainlake.config"] = {*g["chainlake.config"], "chainlake.schema"}
    assert any({"chainlake.schema", "chainlake.config"} <= set(c) for c in cycles(g))
    lazy = tmp_path / "lazy.py"
    lazy.write_text("def f():\n    from assets.core.balances import balances\n")
    assert "assets.core.balances" in imports_of(lazy, project_modules())


@pytest.mark.parametrize("layer", sorted(LAYERS))
def test_every_layer_has_modules(layer: str) -> None:
    assert any(m.split(".")[0] == layer for m in project_modules()), layer
