"""The WebAssembly runtime: engines, the two plugin ABIs, sandbox limits, the module cache.

It knows nothing about credentials, manifests or the CLI. The surface other layers use::

    from vultrino.runtime import WasmRuntime, Limits

    with WasmRuntime("wasmtime", cache_dir=home.cache, limits=Limits(deadline_s=5)) as rt:
        module = rt.load(wasm_bytes, plugin="pgp-signing")
        module.execute({"action": "sign", "params": {...}, "credential": {...}})

What lives where — a neutral core, and one subpackage per engine:

* ``engine.py`` — the protocol every adapter implements (``Engine``, ``Instance``, ``Memory``,
  ``ComponentEngine``), the capabilities an engine declares (``EngineCapabilities``:
  ``components``, ``thread_affinity``, ``fused_call``) and ``Limits``.
* ``_engines.py`` — the loader: which engines exist and are installed; the only neutral module
  that names the engine subpackages (imported by name, on first use).
* ``module.py`` — ``WasmRuntime`` (compile, cache, check, load) and ``PluginModule`` (the
  instance pool, thread ownership on thread-affine engines, error reporting).
* ``abi.py`` — the two plugin ABIs: checking a module's shape, the ABI 1 and ABI 2 sessions
  (with the fused ABI 2 call), the host's ``log`` import.
* ``wit.py`` — the names of the plugin world (``wit/vultrino-plugin.wit``), spelled once.
* ``cache.py`` — the on-disk compiled-module cache.
* ``_wasi.py`` — WASI preview 1 with no capabilities; guest stdout/stderr to the plugin log.
* ``_signatures.py`` — a pre-compile check of a module's function types.
* ``_instrument.py`` — the pure-Python module rewriter that makes limits hold on wasmer.
* ``_logtext.py`` — escaping of guest text for logs.
* ``wasmtime/`` — the wasmtime adapter (core modules, both call paths) and WASI 0.2 components.
* ``wasmer/`` — the wasmer adapter.

Only the two engine subpackages import an engine SDK; they import the neutral core, never
each other, and the neutral core reaches them only through ``_engines.py``.

See ``docs/plugins/abi.md`` for the ABIs and ``docs/engines.md`` for engines and limits.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from vultrino.runtime.engine import (
    Engine,
    EngineCapabilities,
    ExportDesc,
    FuncType,
    ImportDesc,
    Limits,
)

if TYPE_CHECKING:
    from vultrino.runtime._engines import DEFAULT_ENGINE, ENGINES, available_engines, load_engine
    from vultrino.runtime._keys import KeyRing
    from vultrino.runtime.abi import ModuleInfo
    from vultrino.runtime.module import PluginModule, WasmRuntime

# Loaded on first use, so that importing the package (config.py needs Limits) stays cheap for
# commands that never run a plugin (`--help`, `plugin list`).
_LAZY = {
    "DEFAULT_ENGINE": "vultrino.runtime._engines",
    "ENGINES": "vultrino.runtime._engines",
    "available_engines": "vultrino.runtime._engines",
    "load_engine": "vultrino.runtime._engines",
    "KeyRing": "vultrino.runtime._keys",
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
    "EngineCapabilities",
    "ExportDesc",
    "FuncType",
    "ImportDesc",
    "KeyRing",
    "Limits",
    "ModuleInfo",
    "PluginModule",
    "WasmRuntime",
    "available_engines",
    "load_engine",
]
