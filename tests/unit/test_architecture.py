"""The layering of DESIGN.md section 1, each third-party SDK behind its modules, no MCP cycle.

Imports are read from the source (ast), including imports inside functions, so a lazy import
cannot sneak past the rule.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import vultrino

PKG = Path(vultrino.__file__).parent

# module prefix -> prefixes it must never import
FORBIDDEN: dict[str, tuple[str, ...]] = {
    "vultrino.runtime": (
        "vultrino.store",
        "vultrino.plugins",
        "vultrino.core",
        "vultrino.cli",
        "vultrino.mcp",
    ),
    "vultrino.store": (
        "vultrino.runtime",
        "vultrino.plugins",
        "vultrino.core",
        "vultrino.cli",
        "vultrino.mcp",
    ),
    "vultrino.plugins": ("vultrino.store", "vultrino.core", "vultrino.cli", "vultrino.mcp"),
    "vultrino.core": ("vultrino.cli", "vultrino.mcp"),
    "vultrino.agents": ("vultrino.cli", "vultrino.mcp", "vultrino.store"),
    "vultrino.mcp": ("vultrino.cli",),
    "vultrino.paths": ("vultrino.",),
    "vultrino.errors": ("vultrino.",),
}

# third-party top-level package -> the only modules allowed to import it
SDK_HOMES: dict[str, tuple[str, ...]] = {
    "wasmtime": ("vultrino.runtime._wasmtime", "vultrino.runtime._component"),
    "wasmer": ("vultrino.runtime._wasmer",),
    "wasmer_compiler_cranelift": ("vultrino.runtime._wasmer",),
    "nacl": ("vultrino.store._sealing",),
    "msgpack": ("vultrino._msgpack",),
    "httpx": ("vultrino._net",),
    "mcp": ("vultrino.mcp.server", "vultrino.mcp._relay", "vultrino.mcp.http"),
    "starlette": ("vultrino.mcp.http",),
    "uvicorn": ("vultrino.mcp.http",),
    "typer": ("vultrino.cli",),
    "click": ("vultrino.cli",),
}


def _modules() -> list[tuple[str, Path]]:
    out = []
    for path in sorted(PKG.rglob("*.py")):
        rel = path.relative_to(PKG.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts.pop()
        out.append((".".join(parts), path))
    return out


def _imports(path: Path, module: str) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                if path.name != "__init__.py":
                    base = base[:-1]
                base = base[: len(base) - (node.level - 1)]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            found.add(name)
            found.update(f"{name}.{a.name}" for a in node.names)
    return found


MODULES = _modules()


def test_the_package_has_the_layers() -> None:
    names = {m for m, _ in MODULES}
    for layer in ("vultrino.runtime", "vultrino.store", "vultrino.plugins", "vultrino.core"):
        assert layer in names


@pytest.mark.parametrize(("module", "path"), MODULES, ids=[m for m, _ in MODULES])
def test_imports_flow_one_way(module: str, path: Path) -> None:
    imported = _imports(path, module)
    for prefix, banned in FORBIDDEN.items():
        if module == prefix or module.startswith(prefix + "."):
            bad = sorted(
                i for i in imported for b in banned if i == b.rstrip(".") or i.startswith(b)
            )
            assert not bad, f"{module} must not import {bad} (DESIGN.md section 1)"


@pytest.mark.parametrize(("module", "path"), MODULES, ids=[m for m, _ in MODULES])
def test_each_sdk_lives_behind_one_module(module: str, path: Path) -> None:
    for name in _imports(path, module):
        top = name.split(".")[0]
        homes = SDK_HOMES.get(top)
        if homes is None:
            continue
        assert any(module == h or module.startswith(h + ".") for h in homes), (
            f"{module} imports {name}; only {homes} may import {top}"
        )


def _import_graph() -> dict[str, set[str]]:
    """Module -> the Vultrino modules it imports (anywhere in it, lazily or for type checking).

    A name resolves to the longest module it lies in; ``from vultrino import x`` counts as an
    import of ``vultrino.x``, not of the root package.
    """
    names = {m for m, _ in MODULES}

    def owner(name: str) -> str | None:
        while name:
            if name in names:
                return name
            name = name.rpartition(".")[0]
        return None

    graph: dict[str, set[str]] = {}
    for module, path in MODULES:
        targets = {owner(name) for name in _imports(path, module)}
        graph[module] = {t for t in targets if t is not None and t not in {module, "vultrino"}}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_cycle_finder_finds_a_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(graph) == [["a", "b", "c"]]


def test_the_mcp_package_is_in_no_import_cycle() -> None:
    """Not inside the package (the stdio entry point hands over to the SDK side, which never
    calls back), and not with the rest of Vultrino."""
    graph = _import_graph()
    assert "vultrino.mcp._relay" in graph["vultrino.mcp.stdio"]  # the lazy import is seen
    bad = [
        c
        for c in _cycles(graph)
        if any(m == "vultrino.mcp" or m.startswith("vultrino.mcp.") for m in c)
    ]
    assert not bad, f"import cycles through vultrino.mcp: {bad}"
