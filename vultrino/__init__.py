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
    AgentError,
    AgentExistsError,
    AgentNotFoundError,
    AgentPolicyError,
    AgentValidationError,
    ApprovalError,
    ApprovalNotFoundError,
    AuthenticationError,
    BuildRequiredError,
    ConfigError,
    CredentialDeniedError,
    CredentialError,
    CredentialExistsError,
    CredentialMismatchError,
    CredentialNotFoundError,
    CredentialValidationError,
    EngineError,
    EngineUnavailableError,
    ExpiredApiKeyError,
    InstallError,
    InvalidApiKeyError,
    KeyNotFoundError,
    KeyringError,
    ManifestError,
    MissingApiKeyError,
    ModuleError,
    ParameterError,
    PasswordRequiredError,
    PermissionDeniedError,
    PluginABIError,
    PluginBusyError,
    PluginConflictError,
    PluginDisabledError,
    PluginError,
    PluginMemoryError,
    PluginNotFoundError,
    PluginTimeoutError,
    PluginTrapError,
    RateLimitedError,
    RequestError,
    ServerConfigError,
    ServerError,
    ServerNotRunningError,
    StoreCorruptError,
    StoreError,
    StoreExistsError,
    StoreFormatError,
    StoreLockedError,
    StoreNotInitializedError,
    StoreUnavailableError,
    ToolNotFoundError,
    UnknownCredentialTypeError,
    UnlockSessionError,
    UnsafeSourceError,
    VultrinoError,
    WrongPasswordError,
)

if TYPE_CHECKING:
    from vultrino.agents import AgentScope
    from vultrino.core import Vultrino
    from vultrino.info import CredentialInfo, CredentialVersion, ReplaceDrops, ToolInfo, TypeInfo
    from vultrino.policy import AgentInfo, ApprovalRequest, KeyInfo, RoleInfo

# name -> the module it lives in, imported on first use so the CLI's --help starts without it
_LAZY = {
    "Vultrino": "vultrino.core",
    "CredentialInfo": "vultrino.info",
    "CredentialVersion": "vultrino.info",
    "ReplaceDrops": "vultrino.info",
    "ToolInfo": "vultrino.info",
    "TypeInfo": "vultrino.info",
    "AgentScope": "vultrino.agents",
    "AgentInfo": "vultrino.policy",
    "ApprovalRequest": "vultrino.policy",
    "KeyInfo": "vultrino.policy",
    "RoleInfo": "vultrino.policy",
}


def __getattr__(name: str) -> Any:
    """The facade is imported on first use, so the CLI's --help starts without it."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "AccessDeniedError",
    "ActionFailedError",
    "ActionNotFoundError",
    "AgentError",
    "AgentExistsError",
    "AgentInfo",
    "AgentNotFoundError",
    "AgentPolicyError",
    "AgentScope",
    "AgentValidationError",
    "ApprovalError",
    "ApprovalNotFoundError",
    "ApprovalRequest",
    "AuthenticationError",
    "BuildRequiredError",
    "ConfigError",
    "CredentialDeniedError",
    "CredentialError",
    "CredentialExistsError",
    "CredentialInfo",
    "CredentialMismatchError",
    "CredentialNotFoundError",
    "CredentialValidationError",
    "CredentialVersion",
    "EngineError",
    "EngineUnavailableError",
    "ExpiredApiKeyError",
    "InstallError",
    "InvalidApiKeyError",
    "KeyInfo",
    "KeyNotFoundError",
    "KeyringError",
    "ManifestError",
    "MissingApiKeyError",
    "ModuleError",
    "ParameterError",
    "PasswordRequiredError",
    "PermissionDeniedError",
    "PluginABIError",
    "PluginBusyError",
    "PluginConflictError",
    "PluginDisabledError",
    "PluginError",
    "PluginMemoryError",
    "PluginNotFoundError",
    "PluginTimeoutError",
    "PluginTrapError",
    "RateLimitedError",
    "ReplaceDrops",
    "RequestError",
    "RoleInfo",
    "ServerConfigError",
    "ServerError",
    "ServerNotRunningError",
    "StoreCorruptError",
    "StoreError",
    "StoreExistsError",
    "StoreFormatError",
    "StoreLockedError",
    "StoreNotInitializedError",
    "StoreUnavailableError",
    "ToolInfo",
    "ToolNotFoundError",
    "TypeInfo",
    "UnknownCredentialTypeError",
    "UnlockSessionError",
    "UnsafeSourceError",
    "Vultrino",
    "VultrinoError",
    "WrongPasswordError",
    "__version__",
]
