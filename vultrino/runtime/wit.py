"""The names of the plugin world, ``wit/vultrino-plugin.wit``: the one place they are spelled.

Everything that names an item of the world imports it from here: the ABI 2 codec and its
module check (``abi.py``), the component world check and linker (``wasmtime/_component.py``),
and the Python plugin build (``vultrino.plugins.install._componentize``). The WIT file itself is the
contract for plugin authors; ``tests/unit/test_wit.py`` checks that these names match it.

Two spellings of the same items exist: a *component* names an interface
(:data:`HOST`, :data:`HANDLER`) and its functions (:data:`LOG`, :data:`EXECUTE`); a *core module*
(ABI 2) names their canonical-ABI lowering (:data:`HOST` as import module, :data:`EXECUTE_EXPORT`,
:data:`POST_EXECUTE_EXPORT`, :data:`REALLOC`).
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "EXECUTE",
    "EXECUTE_EXPORT",
    "HANDLER",
    "HOST",
    "LOG",
    "LOG_LEVEL",
    "LOG_LEVELS",
    "PACKAGE",
    "POST_EXECUTE_EXPORT",
    "REALLOC",
    "VERSION",
    "WIT_FILE",
    "WORLD",
]

#: Where the world is written down, for messages that send the reader there.
WIT_FILE: Final = "wit/vultrino-plugin.wit"
PACKAGE: Final = "vultrino:plugin"
VERSION: Final = "1.0.0"
#: The world a plugin targets (``--world plugin`` for wasm-tools, ``-w plugin`` for
#: componentize-py).
WORLD: Final = "plugin"

#: The interface the host provides: ``log: func(level: log-level, message: string)``.
HOST: Final = f"{PACKAGE}/host@{VERSION}"
LOG: Final = "log"
LOG_LEVEL: Final = "log-level"
#: The cases of ``enum log-level``, in order (their index is the level a core module passes).
LOG_LEVELS: Final = ("debug", "info", "warn", "error")

#: The interface the plugin exports: ``execute: func(request: list<u8>) -> list<u8>``.
HANDLER: Final = f"{PACKAGE}/handler@{VERSION}"
EXECUTE: Final = "execute"

#: The core-module (canonical ABI) names of the same items.
EXECUTE_EXPORT: Final = f"{HANDLER}#{EXECUTE}"
POST_EXECUTE_EXPORT: Final = f"cabi_post_{EXECUTE_EXPORT}"
REALLOC: Final = "cabi_realloc"
