"""The wasmer engine (wasmer-python with Cranelift): an optional extra, CPython <= 3.10 only.

This subpackage and :mod:`vultrino.runtime.wasmtime` are the only homes of an engine SDK; the
neutral runtime reaches them only through the loader, ``vultrino.runtime._engines``.

* ``_engine.py`` — :class:`WasmerEngine`, the core-module adapter. wasmer-python has no fuel,
  interruption or memory limiter, so the adapter compiles modules rewritten by
  :mod:`vultrino.runtime._instrument` (a fuel counter that checks the wall clock, a memory
  maximum). Its objects are bound to the thread that made them: the engine declares
  ``thread_affinity``. It runs no components.

See ``docs/engines.md``.
"""

from __future__ import annotations

from vultrino.runtime.wasmer._engine import WasmerEngine

__all__ = ["WasmerEngine"]
