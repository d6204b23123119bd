"""Import layering of design.md, checked on the source (AST), function-level imports included.

- ``quantizers`` and ``metrics`` import from ``vqbench`` only its leaf modules (``LEAVES``);
  ``metrics`` may also load the mini world's shipped evaluators (``vqbench.mini.assets``);
  neither imports the other.
- ``vqbench`` reaches ``quantizers`` and ``metrics`` only through the registries
  (``vqbench/registry.py`` reads their catalogues); the mini world's own tools
  (``vqbench/mini/``) may use metric formulas to evaluate its evaluators.
- A leaf module imports nothing from ``vqbench`` but other leaves.
- No cycles among the module-level imports of ``vqbench``. ``importlib.import_module`` of
  a literal name counts as an import (it is checked by the same rules).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("vqbench", "quantizers", "metrics")
LEAVES = ("vqbench.types", "vqbench.sampling", "vqbench.stats", "vqbench.video")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _sources() -> dict[str, Path]:
    return {
        _module_name(p): p
        for pkg in PACKAGES
        for p in sorted((ROOT / pkg).rglob("*.py"))
        if "assets" not in p.parts or p.name == "__init__.py"
    }


def _imports(path: Path, top_level_only: bool = False) -> list[str]:
    """Absolute module names imported by ``path`` (relative imports resolved)."""
    mod = _module_name(path)
    pkg = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
    return _imports_of_text(path.read_text(), pkg, top_level_only)


def _imports_of_text(text: str, pkg: str = "", top_level_only: bool = False) -> list[str]:
    tree = ast.parse(text)
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    out: list[str] = []
    for node in nodes:
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = pkg.split(".")[: len(pkg.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            out.append(base)
            out += [f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in SOURCES]
        elif (
            isinstance(node, ast.Call)
            and getattr(node.func, "attr", getattr(node.func, "id", "")) == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
        ):
            out.append(str(node.args[0].value))
    return out


SOURCES = _sources()


def _is(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def _violations(mod: str, imports: list[str]) -> list[str]:
    bad = []
    for imp in imports:
        if mod.startswith(("quantizers", "metrics")):
            allowed = LEAVES + (("vqbench.mini.assets",) if mod.startswith("metrics") else ())
            if _is(imp, ("vqbench",)) and not _is(imp, allowed):
                bad.append(imp)
            other = "metrics" if mod.startswith("quantizers") else "quantizers"
            if _is(imp, (other,)):
                bad.append(imp)
        elif _is(mod, LEAVES):
            if _is(imp, ("vqbench", "quantizers", "metrics")) and not _is(imp, LEAVES):
                bad.append(imp)
        elif mod.startswith("vqbench") and mod != "vqbench.registry":
            tools = ("metrics",) if mod.startswith("vqbench.mini") else ()
            if _is(imp, ("quantizers", "metrics")) and not _is(imp, tools):
                bad.append(imp)
    return bad


@pytest.mark.parametrize("mod", sorted(SOURCES))
def test_module_respects_the_layering(mod):
    bad = _violations(mod, _imports(SOURCES[mod]))
    assert bad == [], f"{mod} imports across the layering rules"


def test_no_import_cycles_in_vqbench():
    graph = {
        mod: {i for i in _imports(path, top_level_only=True) if i in SOURCES and i != mod}
        for mod, path in SOURCES.items()
        if mod.startswith("vqbench")
    }
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt) :] + [nxt] if nxt in stack else [node, nxt])
            elif nxt in graph and not state.get(nxt):
                visit(nxt, stack + [nxt])
        state[node] = 2

    for mod in sorted(graph):
        if not state.get(mod):
            visit(mod, [mod])
    assert cycles == []


def test_the_checker_sees_violations():
    """Each rule fires on the import it forbids, and passes the ones it allows."""
    assert _violations("quantizers.rtn", ["vqbench.runner", "vqbench.types"]) == ["vqbench.runner"]
    assert _violations("metrics.fvd", ["quantizers.core", "vqbench.mini.assets"]) == [
        "quantizers.core"
    ]
    assert _violations("quantizers.x", ["vqbench.mini.assets"]) == ["vqbench.mini.assets"]
    assert _violations("vqbench.types.media", ["vqbench.config"]) == ["vqbench.config"]
    assert _violations("vqbench.adapters.base", ["quantizers.core.context"]) != []
    assert _violations("vqbench.registry", ["quantizers", "metrics"]) == []
    assert _violations("vqbench.runner", ["metrics.efficiency"]) == ["metrics.efficiency"]
    assert not _is("vqbench.typesx", LEAVES)
    hidden = 'import importlib\nimportlib.import_module("vqbench.runner")\n'
    assert "vqbench.runner" in _imports_of_text(hidden)
