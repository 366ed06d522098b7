"""The WebAssembly runtime: engines, the two plugin ABIs, sandbox limits, the module cache.

It knows nothing about credentials, manifests or the CLI. The surface other layers use::

    from vultrino.runtime import WasmRuntime, Limits

    with WasmRuntime("wasmtime", cache_dir=home.cache, limits=Limits(deadline_s=5)) as rt:
        module = rt.load(wasm_bytes, plugin="pgp-signing")
        module.execute({"action": "sign", "params": {...}, "credential": {...}})

See ``docs/plugins/abi.md`` for the ABIs and ``docs/engines.md`` for engines and limits.
"""

from __future__ import annotations

from vultrino.runtime._engines import DEFAULT_ENGINE, ENGINES, available_engines, load_engine
from vultrino.runtime.abi import ModuleInfo
from vultrino.runtime.engine import Engine, ExportDesc, FuncType, ImportDesc, Limits
from vultrino.runtime.module import PluginModule, WasmRuntime

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
