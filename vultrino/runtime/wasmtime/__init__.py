"""The wasmtime engine: the default, and the only one that runs WASI 0.2 components.

This subpackage and :mod:`vultrino.runtime.wasmer` are the only homes of an engine SDK; the
neutral runtime reaches them only through the loader, ``vultrino.runtime._engines``.

* ``_engine.py`` — :class:`WasmtimeEngine`, the core-module adapter: the configured
  ``wasmtime.Engine``, the epoch :class:`~vultrino.runtime.wasmtime._engine.Ticker` that
  enforces deadlines, and two call paths with the same behaviour: the ctypes fast path (with
  the fused ABI 2 call) and wasmtime-py's public API.
* ``_component.py`` — :class:`~vultrino.runtime.wasmtime._component.WasmtimeComponentEngine`,
  which compiles, checks against the plugin world and instantiates components on the same
  engine and ticker; ``WasmtimeEngine.components()`` hands it out.

See ``docs/engines.md``.
"""

from __future__ import annotations

from vultrino.runtime.wasmtime._engine import ENV_FASTPATH, VERIFIED_VERSION, WasmtimeEngine

__all__ = ["ENV_FASTPATH", "VERIFIED_VERSION", "WasmtimeEngine"]
