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

# The layers, bottom first (docs/architecture.md draws them). A module may import modules of
# lower layers and of its own unit (the package or module it belongs to at this level); never a
# module of its own layer's other units, never one above. No exceptions.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("vultrino._version", "vultrino.errors", "vultrino._fs", "vultrino._json", "vultrino.paths"),
    (
        "vultrino._msgpack",
        "vultrino._allowlist",
        "vultrino.audit",
        "vultrino._scrub",
        "vultrino._keyring",
        "vultrino._keyuse",
    ),
    ("vultrino._net",),
    ("vultrino.runtime",),
    ("vultrino.config", "vultrino.store", "vultrino.unlock"),
    ("vultrino.plugins",),
    ("vultrino.policy",),
    ("vultrino.info", "vultrino._rust_import"),
    ("vultrino.services",),
    ("vultrino.pipeline",),
    ("vultrino.agents",),
    ("vultrino.core",),
    ("vultrino.mcp",),
    ("vultrino.server",),
    ("vultrino.cli",),
    ("vultrino", "vultrino.__main__"),  # the public surface: re-exports the facade
)

# Inside a unit, parts that must not know each other.
APART: dict[str, tuple[str, ...]] = {
    "vultrino.plugins.http": ("vultrino.plugins.install", "vultrino.plugins.registry"),
    "vultrino.plugins.install": ("vultrino.plugins.http",),
}

# leaf module -> the only vultrino modules it may import (shared helpers that every layer uses)
LEAVES: dict[str, tuple[str, ...]] = {
    "vultrino._allowlist": ("vultrino.errors",),
    "vultrino._fs": (),
    "vultrino._keyring": ("vultrino.errors",),
}

# third-party top-level package -> the only modules allowed to import it
SDK_HOMES: dict[str, tuple[str, ...]] = {
    "wasmtime": ("vultrino.runtime.wasmtime",),
    "wasmer": ("vultrino.runtime.wasmer",),
    "wasmer_compiler_cranelift": ("vultrino.runtime.wasmer",),
    "nacl": ("vultrino.store._sealing", "vultrino.runtime._keys"),
    "cryptography": ("vultrino.store.rust_vault", "vultrino.runtime._keys"),
    "coincurve": ("vultrino.runtime._keys",),
    "Crypto": ("vultrino.runtime._keys",),
    "msgpack": ("vultrino._msgpack",),
    "httpx": ("vultrino._net",),
    "httpcore": ("vultrino._net",),
    "mcp": ("vultrino.mcp.server", "vultrino.mcp._relay", "vultrino.mcp.http"),
    "starlette": ("vultrino.mcp.http", "vultrino.server"),
    "uvicorn": ("vultrino.mcp.http", "vultrino.server"),
    "keyring": ("vultrino._keyring",),
    "keyrings": ("vultrino._keyring",),
    "psycopg": (
        "vultrino.store.postgres",
        "vultrino.store.pg_approvals",
        "vultrino.store.pg_audit",
    ),
    "psycopg_pool": (
        "vultrino.store.postgres",
        "vultrino.store.pg_approvals",
        "vultrino.store.pg_audit",
    ),
    "typer": ("vultrino.cli",),
    "jinja2": ("vultrino.server.ui._templates",),
    "click": ("vultrino.cli",),
}


# The engine subpackages of the runtime: each may import the neutral runtime core, never the
# other engine. Everything else — the neutral core and every layer above it — holds an engine
# through the Engine protocol, loaded by name in the loader, which imports no engine itself.
ENGINE_PACKAGES: tuple[str, ...] = ("vultrino.runtime.wasmtime", "vultrino.runtime.wasmer")
ENGINE_LOADER = "vultrino.runtime._engines"


def _modules() -> list[tuple[str, Path]]:
    out = []
    for path in sorted(PKG.rglob("*.py")):
        rel = path.relative_to(PKG.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts.pop()
        out.append((".".join(parts), path))
    return out


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _import_nodes(tree: ast.AST, *, typing_too: bool) -> list[ast.Import | ast.ImportFrom]:
    """Every import statement, inside functions too; ``if TYPE_CHECKING:`` blocks only with
    ``typing_too``."""
    out: list[ast.Import | ast.ImportFrom] = []
    todo = [tree]
    while todo:
        node = todo.pop()
        if isinstance(node, ast.If) and _is_type_checking(node) and not typing_too:
            todo.extend(node.orelse)
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            out.append(node)
        todo.extend(ast.iter_child_nodes(node))
    return out


def _from_module(node: ast.ImportFrom, path: Path, module: str) -> str:
    """The absolute name of the module a ``from … import`` statement in ``module`` reads."""
    if not node.level:
        return node.module or ""
    base = module.split(".")
    if path.name != "__init__.py":
        base = base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _imports(path: Path, module: str, *, typing_too: bool = True) -> set[str]:
    """The dotted names ``module`` imports: ``from a import b`` gives ``a`` and ``a.b``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in _import_nodes(tree, typing_too=typing_too):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        else:
            name = _from_module(node, path, module)
            found.add(name)
            found.update(f"{name}.{a.name}" for a in node.names)
    return found


MODULES = _modules()


def test_the_package_has_the_layers() -> None:
    names = {m for m, _ in MODULES}
    for layer in ("vultrino.runtime", "vultrino.store", "vultrino.plugins", "vultrino.core"):
        assert layer in names
    for part in ("vultrino.plugins.http", "vultrino.plugins.install", *LEAVES):
        assert part in names


def _unit(module: str) -> tuple[int, str]:
    """(layer number, unit) of a module: the longest layer entry it lies in."""
    best: tuple[int, str] | None = None
    for i, layer in enumerate(LAYERS):
        for unit in layer:
            if _within(module, unit) and (best is None or len(unit) > len(best[1])):
                best = (i, unit)
    assert best is not None, f"{module} is in no layer: add it to LAYERS"
    return best


def _owner(name: str, names: set[str]) -> str | None:
    """The module a dotted import name lies in (``vultrino.store.Credential`` ->
    ``vultrino.store``); None outside Vultrino."""
    while name:
        if name in names:
            return name
        name = name.rpartition(".")[0]
    return None


def _targets(path: Path, module: str, *, typing_too: bool = True) -> set[str]:
    """The Vultrino modules ``module`` imports. ``from vultrino.x import y`` counts as an
    import of the module ``vultrino.x.y`` when there is one, else of ``vultrino.x``."""
    names = {m for m, _ in MODULES}
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str | None] = set()
    for node in _import_nodes(tree, typing_too=typing_too):
        if isinstance(node, ast.Import):
            found.update(_owner(alias.name, names) for alias in node.names)
            continue
        name = _from_module(node, path, module)
        for alias in node.names:
            sub = f"{name}.{alias.name}"
            found.add(sub if sub in names else _owner(name, names))
    return {t for t in found if t is not None and t != module}


@pytest.mark.parametrize(("module", "path"), MODULES, ids=[m for m, _ in MODULES])
def test_imports_flow_one_way(module: str, path: Path) -> None:
    """Type-checking imports and imports inside functions count: none may run upward."""
    layer, unit = _unit(module)
    bad = []
    for target in sorted(_targets(path, module)):
        t_layer, t_unit = _unit(target)
        if t_unit == unit:
            continue
        if t_layer >= layer:
            bad.append(f"{target} (layer {t_layer}: {t_unit})")
    assert not bad, (
        f"{module} (layer {layer}: {unit}) imports {bad}: imports flow down only "
        "(docs/architecture.md)"
    )


@pytest.mark.parametrize(("module", "path"), MODULES, ids=[m for m, _ in MODULES])
def test_parts_that_stay_apart(module: str, path: Path) -> None:
    for part, banned in APART.items():
        if _within(module, part):
            bad = sorted(t for t in _targets(path, module) for b in banned if _within(t, b))
            assert not bad, f"{module} must not import {bad}"


def test_every_module_is_in_a_layer() -> None:
    for module, _ in MODULES:
        _unit(module)


@pytest.mark.parametrize("module", sorted(LEAVES))
def test_leaves_import_nothing_above_them(module: str) -> None:
    path = dict(MODULES)[module]
    allowed = LEAVES[module]
    bad = sorted(
        i
        for i in _imports(path, module)
        if (i == "vultrino" or i.startswith("vultrino."))
        and not any(i == a or i.startswith(a + ".") for a in allowed)
    )
    assert not bad, f"{module} is a leaf: it may import only {allowed} of vultrino, not {bad}"


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


def _within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def test_there_is_one_subpackage_per_engine() -> None:
    from vultrino.runtime._engines import ENGINES

    names = {m for m, _ in MODULES}
    assert set(ENGINE_PACKAGES) == {f"vultrino.runtime.{e}" for e in ENGINES}
    assert set(ENGINE_PACKAGES) <= names


@pytest.mark.parametrize(("module", "path"), MODULES, ids=[m for m, _ in MODULES])
def test_engines_are_reached_only_through_the_loader(module: str, path: Path) -> None:
    """No module outside an engine subpackage imports one (the loader imports them by name,
    at run time), and no engine subpackage imports another."""
    home = next((p for p in ENGINE_PACKAGES if _within(module, p)), None)
    bad = sorted(
        i for i in _imports(path, module) for p in ENGINE_PACKAGES if p != home and _within(i, p)
    )
    assert not bad, (
        f"{module} imports {bad}; engines are loaded by name in {ENGINE_LOADER} and used "
        "through the Engine protocol (vultrino/runtime/engine.py)"
    )


# Names under which the package holds an engine adapter or what it makes.
_ENGINE_OBJECTS = ("engine", "instance", "memory", "helper", "staging")


@pytest.mark.parametrize(("module", "path"), MODULES, ids=[m for m, _ in MODULES])
def test_engines_are_not_probed(module: str, path: Path) -> None:
    """Capabilities are declared (``EngineCapabilities``), never probed: no ``hasattr``, and
    no ``getattr`` of a fixed attribute name on an engine, instance or memory."""
    probes = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)):
            continue
        if node.func.id == "hasattr":
            probes.append(f"line {node.lineno}: hasattr")
        elif (
            node.func.id == "getattr"
            and len(node.args) >= 2
            and isinstance(node.args[1], ast.Constant)
            and any(w in ast.unparse(node.args[0]).lower() for w in _ENGINE_OBJECTS)
        ):
            probes.append(f"line {node.lineno}: {ast.unparse(node)}")
    assert not probes, f"{module} probes for attributes: {probes}"


def _import_graph() -> dict[str, set[str]]:
    """Module -> the Vultrino modules it imports when it runs (lazily inside functions too;
    ``if TYPE_CHECKING:`` blocks are not run, so they are left out here and held to the layers
    above instead)."""
    return {m: _targets(p, m, typing_too=False) for m, p in MODULES}


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


def test_the_import_graph_has_no_cycle() -> None:
    graph = _import_graph()
    assert "vultrino.mcp._relay" in graph["vultrino.mcp.stdio"]  # a lazy import is seen
    assert _cycles(graph) == []


@pytest.mark.parametrize(("module", "path"), MODULES, ids=[m for m, _ in MODULES])
def test_only_the_pipeline_runs_a_plugin_action(module: str, path: Path) -> None:
    """One way through: above the plugins, nothing but the pipeline prepares or executes a
    plugin's action (everything else calls the pipeline, or the facade that calls it)."""
    if any(_within(module, p) for p in ("vultrino.plugins", "vultrino.runtime")):
        return
    if module == "vultrino.pipeline":
        return
    bad = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        receiver = ast.unparse(node.func.value).lower()
        if node.func.attr == "prepare" or (
            node.func.attr == "execute"
            and any(w in receiver for w in ("plugin", "registry", "owner", "module"))
        ):
            bad.append(f"line {node.lineno}: {ast.unparse(node.func)}")
    assert not bad, f"{module} runs a plugin action around the pipeline: {bad}"
