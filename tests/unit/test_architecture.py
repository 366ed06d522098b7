"""The layering of DESIGN.md section 1, and each third-party SDK behind one module.

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
        "vultrino.mcp_server",
    ),
    "vultrino.store": (
        "vultrino.runtime",
        "vultrino.plugins",
        "vultrino.core",
        "vultrino.cli",
        "vultrino.mcp_server",
    ),
    "vultrino.plugins": ("vultrino.store", "vultrino.core", "vultrino.cli", "vultrino.mcp_server"),
    "vultrino.core": ("vultrino.cli", "vultrino.mcp_server"),
    "vultrino.agents": ("vultrino.cli", "vultrino.mcp_server", "vultrino.store"),
    "vultrino.mcp_server": ("vultrino.cli",),
    "vultrino.plugins.http": ("vultrino.plugins.install", "vultrino.plugins.registry"),
    "vultrino.plugins.install": ("vultrino.plugins.http",),
    "vultrino.paths": ("vultrino.",),
    "vultrino.errors": ("vultrino.",),
}

# leaf module -> the only vultrino modules it may import (shared helpers that every layer uses)
LEAVES: dict[str, tuple[str, ...]] = {
    "vultrino._allowlist": ("vultrino.errors",),
    "vultrino._fs": (),
}

# third-party top-level package -> the only modules allowed to import it
SDK_HOMES: dict[str, tuple[str, ...]] = {
    "wasmtime": ("vultrino.runtime.wasmtime",),
    "wasmer": ("vultrino.runtime.wasmer",),
    "wasmer_compiler_cranelift": ("vultrino.runtime.wasmer",),
    "nacl": ("vultrino.store._sealing",),
    "msgpack": ("vultrino._msgpack",),
    "httpx": ("vultrino._net",),
    "mcp": ("vultrino.mcp_server",),
    "starlette": ("vultrino.mcp_server",),
    "uvicorn": ("vultrino.mcp_server",),
    "typer": ("vultrino.cli",),
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
    for part in ("vultrino.plugins.http", "vultrino.plugins.install", *LEAVES):
        assert part in names


@pytest.mark.parametrize(("module", "path"), MODULES, ids=[m for m, _ in MODULES])
def test_imports_flow_one_way(module: str, path: Path) -> None:
    imported = _imports(path, module)
    for prefix, banned in FORBIDDEN.items():
        if module == prefix or module.startswith(prefix + "."):
            bad = sorted(
                i for i in imported for b in banned if i == b.rstrip(".") or i.startswith(b)
            )
            assert not bad, f"{module} must not import {bad} (DESIGN.md section 1)"


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
