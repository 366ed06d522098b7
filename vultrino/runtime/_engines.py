"""Which engines exist, which are installed, and how to load one.

Adapters are imported lazily, by name, so a missing optional engine (wasmer has wheels only up
to CPython 3.10) costs nothing until it is asked for — and then fails with a message that says
how to install it. This is the one module of the neutral runtime that names the engine
subpackages (``vultrino.runtime.wasmtime``, ``vultrino.runtime.wasmer``); everything else
holds an engine through the :class:`~vultrino.runtime.engine.Engine` protocol.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Final

from vultrino.errors import EngineUnavailableError
from vultrino.runtime.engine import Engine

__all__ = ["DEFAULT_ENGINE", "ENGINES", "available_engines", "load_engine"]


@dataclass(frozen=True)
class _Spec:
    module: str
    factory: str
    install: str


_SPECS: Final[dict[str, _Spec]] = {
    "wasmtime": _Spec(
        "vultrino.runtime.wasmtime",
        "WasmtimeEngine",
        "wasmtime is a core dependency: reinstall with `pip install vultrino`",
    ),
    "wasmer": _Spec(
        "vultrino.runtime.wasmer",
        "WasmerEngine",
        "install it with `pip install 'vultrino[wasmer]'` (wasmer-python has wheels only for "
        "CPython <= 3.10)",
    ),
}

#: Every engine Vultrino knows, the default first.
ENGINES: Final[tuple[str, ...]] = tuple(_SPECS)
DEFAULT_ENGINE: Final = "wasmtime"

_available: list[str] | None = None


def available_engines() -> list[str]:
    """The engines that can be loaded here, ``wasmtime`` first. Imports each adapter once."""
    global _available  # noqa: PLW0603 - a process-wide memo of what imports
    if _available is None:
        found = []
        for name in ENGINES:
            try:
                _factory(name)
            except EngineUnavailableError:
                continue
            found.append(name)
        _available = found
    return list(_available)


def load_engine(name: str) -> Engine:
    """A new engine adapter; ``EngineUnavailableError`` saying how to install a missing one."""
    engine: Engine = _factory(name)()
    return engine


def _factory(name: str) -> type[Engine]:
    spec = _SPECS.get(name)
    if spec is None:
        raise EngineUnavailableError(
            f"unknown WebAssembly engine {name!r}; choose one of {', '.join(ENGINES)} "
            "(VULTRINO_ENGINE or `engine` in config.toml)"
        )
    try:
        module = importlib.import_module(spec.module)
    except ImportError as exc:
        raise EngineUnavailableError(
            f"the {name} engine is not available ({exc}); {spec.install}"
        ) from exc
    factory: type[Engine] = getattr(module, spec.factory)
    return factory
