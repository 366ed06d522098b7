"""Vultrino: a credential proxy for AI agents, extended by sandboxed WebAssembly plugins.

The public surface for scripts::

    from vultrino import Vultrino

    with Vultrino.open() as v:
        v.execute("release-key", "sign_cleartext", {"message": "I approve"})

Everything else (the store, the runtime, the registry) is reached through the facade.
"""

from typing import TYPE_CHECKING, Any

from vultrino._version import __version__
from vultrino.errors import (
    AccessDeniedError,
    ActionFailedError,
    ActionNotFoundError,
    BuildRequiredError,
    ConfigError,
    CredentialError,
    CredentialExistsError,
    CredentialMismatchError,
    CredentialNotFoundError,
    CredentialValidationError,
    EngineError,
    EngineUnavailableError,
    InstallError,
    ManifestError,
    ModuleError,
    ParameterError,
    PasswordRequiredError,
    PluginABIError,
    PluginConflictError,
    PluginError,
    PluginMemoryError,
    PluginNotFoundError,
    PluginTimeoutError,
    PluginTrapError,
    StoreCorruptError,
    StoreError,
    StoreExistsError,
    StoreFormatError,
    StoreLockedError,
    StoreNotInitializedError,
    UnknownCredentialTypeError,
    UnsafeSourceError,
    VultrinoError,
    WrongPasswordError,
)

if TYPE_CHECKING:
    from vultrino.core import CredentialInfo, ToolInfo, TypeInfo, Vultrino

_FACADE = ("CredentialInfo", "ToolInfo", "TypeInfo", "Vultrino")


def __getattr__(name: str) -> Any:
    """The facade is imported on first use, so the CLI's --help starts without it."""
    if name not in _FACADE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from vultrino import core

    value = getattr(core, name)
    globals()[name] = value
    return value


__all__ = [
    "AccessDeniedError",
    "ActionFailedError",
    "ActionNotFoundError",
    "BuildRequiredError",
    "ConfigError",
    "CredentialError",
    "CredentialExistsError",
    "CredentialInfo",
    "CredentialMismatchError",
    "CredentialNotFoundError",
    "CredentialValidationError",
    "EngineError",
    "EngineUnavailableError",
    "InstallError",
    "ManifestError",
    "ModuleError",
    "ParameterError",
    "PasswordRequiredError",
    "PluginABIError",
    "PluginConflictError",
    "PluginError",
    "PluginMemoryError",
    "PluginNotFoundError",
    "PluginTimeoutError",
    "PluginTrapError",
    "StoreCorruptError",
    "StoreError",
    "StoreExistsError",
    "StoreFormatError",
    "StoreLockedError",
    "StoreNotInitializedError",
    "ToolInfo",
    "TypeInfo",
    "UnknownCredentialTypeError",
    "UnsafeSourceError",
    "Vultrino",
    "VultrinoError",
    "WrongPasswordError",
    "__version__",
]
