"""The WebAssembly runtime: engines, the two plugin ABIs, sandbox limits, the module cache.

It knows nothing about credentials, manifests or the CLI. The surface other layers use::

    from vultrino.runtime import WasmRuntime, Limits

    with WasmRuntime("wasmtime", cache_dir=home.cache, limits=Limits(deadline_s=5)) as rt:
        module = rt.load(wasm_bytes, plugin="pgp-signing")
        module.execute({"action": "sign", "params": {...}, "credential": {...}})

See ``docs/plugins/abi.md`` for the ABIs and ``docs/engines.md`` for engines and limits.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from vultrino.runtime.engine import Engine, ExportDesc, FuncType, ImportDesc, Limits

if TYPE_CHECKING:
    from vultrino.runtime._engines import DEFAULT_ENGINE, ENGINES, available_engines, load_engine
    from vultrino.runtime.abi import ModuleInfo
    from vultrino.runtime.module import PluginModule, WasmRuntime

# Loaded on first use, so that importing the package (config.py needs Limits) stays cheap for
# commands that never run a plugin (`--help`, `plugin list`).
_LAZY = {
    "DEFAULT_ENGINE": "vultrino.runtime._engines",
    "ENGINES": "vultrino.runtime._engines",
    "available_engines": "vultrino.runtime._engines",
    "load_engine": "vultrino.runtime._engines",
    "ModuleInfo": "vultrino.runtime.abi",
    "PluginModule": "vultrino.runtime.module",
    "WasmRuntime": "vultrino.runtime.module",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "DEFAULT_ENGINE",
    "ENGINES",
    "Engine",
    "ExportDesc",
    "FuncType",
    "ImportDesc",
    "Limits",
    "ModuleInfo",
    "PluginModule",
    "WasmRuntime",
    "available_engines",
    "load_engine",
]
