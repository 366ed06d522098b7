"""The whole Vultrino exception tree.

Every error Vultrino raises is a :class:`VultrinoError`. Foreign exceptions (wasmtime, wasmer,
nacl, msgpack, httpx, tomllib, OS errors) are translated at the adapter that met them and chained
with ``raise ... from exc``; they never escape to a caller.

::

    VultrinoError
    ├── ConfigError                     config.toml or an environment variable is wrong
    ├── StoreError                      the sealed credential store
    │   ├── StoreNotInitializedError    no credentials.enc yet (run `vultrino init`)
    │   ├── StoreExistsError            `init` over an existing store
    │   ├── PasswordRequiredError       no password source and no TTY to ask on
    │   ├── WrongPasswordError          the password does not open the store
    │   ├── StoreCorruptError           tampered, truncated or not a store at all
    │   ├── StoreFormatError            a format or KDF version this build does not know
    │   ├── StoreLockedError            another process held the lock for too long
    │   ├── StoreUnavailableError       the store's database cannot be reached
    │   ├── UnlockSessionError          the unlock agent cannot start, or its socket is unsafe
    │   └── KeyringError                no usable OS keyring, or it failed (`unlock --remember`)
    ├── CredentialError
    │   ├── CredentialNotFoundError     no credential with that alias
    │   │   └── CredentialDeniedError   outside the caller's profile (same words as missing)
    │   ├── CredentialExistsError       the alias is taken (use --replace / replace=True)
    │   ├── CredentialValidationError   fields do not match the credential type
    │   └── UnknownCredentialTypeError  the type is neither built in nor defined by a plugin
    ├── PluginError                     carries ``.plugin``
    │   ├── ManifestError               plugin.toml is invalid; ``.problems`` lists key paths
    │   ├── PluginNotFoundError
    │   │   └── ToolNotFoundError   no such MCP tool, or none the caller may see
    │   ├── PluginConflictError         a name or tool collides with another plugin / built-in
    │   ├── PluginDisabledError         the plugin is disabled (`vultrino plugin enable NAME`)
    │   ├── ActionNotFoundError
    │   ├── ParameterError              action parameters do not match the manifest
    │   ├── CredentialMismatchError     the credential belongs to another plugin / type
    │   ├── ActionFailedError           the plugin answered with an error; ``.code``
    │   ├── AccessDeniedError           e.g. a URL outside a credential's allowlist
    │   │   └── AgentPolicyError        an agent profile refused the call; ``.agent``
    │   │       ├── RateLimitedError    a rate limit is used up; ``.retry_after``
    │   │       ├── ApprovalError       approval was declined or could not be asked for
    │   │       └── PermissionDeniedError  the role lacks the verb (read, execute, admin)
    │   └── InstallError                the installer refused or failed
    │       ├── UnsafeSourceError       hostile archive, path, URL or ref
    │       └── BuildRequiredError      the source must be built: pass --build (build=True)
    ├── AgentError                      agent profiles and roles, API keys
    │   ├── AgentNotFoundError          no profile (agent or role) with that name
    │   ├── AgentExistsError            the name is taken (use --force / replace=True)
    │   ├── AgentValidationError        a profile, role or key option is malformed
    │   └── KeyNotFoundError            no API key with that id, prefix or name
    ├── AuthenticationError             an HTTP request's bearer credential (401)
    │   ├── MissingApiKeyError          no `Authorization: Bearer …` header
    │   └── InvalidApiKeyError          not a key, agent token or server token we know
    │       └── ExpiredApiKeyError      a key past its expiry
    ├── ServerError                     `vultrino serve` and the clients of a running server
    │   ├── ServerConfigError           a bind, TLS or proxy setting is refused
    │   ├── ServerNotRunningError       no server runs on this home (approvals CLI)
    │   ├── RequestError                a malformed REST request (body, query)
    │   └── ApprovalNotFoundError       no waiting approval with that id
    └── EngineError                     the WebAssembly runtime; carries ``.plugin``
        ├── EngineUnavailableError      the requested engine is not installed
        ├── ModuleError                 the module cannot be loaded (bad wasm, bad imports/exports)
        ├── PluginTrapError             the guest trapped (includes stack overflow)
        ├── PluginTimeoutError          the call passed its wall-clock deadline
        ├── PluginBusyError             every instance is busy and too many calls wait already
        ├── PluginMemoryError           the guest hit the memory cap
        └── PluginABIError              the guest broke the ABI (bad pointer, garbage, output cap)

Messages say what happened, where, and what to do next. They never contain a secret value.

Each class carries two answers for the surfaces in front of the facade: ``exit_code``, what the
CLI exits with, and ``hint``, what a model calling a tool over MCP can do about the error (the
MCP server appends it to the message of an ``isError`` result; docs/mcp.md). The hints name MCP
tools (``list_credentials``, ``tools/list``), so the CLI does not print them: its messages
already name the command to run.

A plugin's failure (:class:`ActionFailedError`, an :class:`EngineError` from a call) also carries
``detail``: what there is to debug it with — the log lines the guest wrote during the call
(``log``: ``[{"level", "message"}]``) and, when the guest reported one, its exception
(``exception``, ``message``) and ``traceback`` (``[{"module", "file", "line", "function"}]``).
The pipeline scrubs it like the message; the CLI shows it only with ``--debug`` or
``VULTRINO_LOG=debug``. ``None`` when there is nothing.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "AccessDeniedError",
    "ActionFailedError",
    "ActionNotFoundError",
    "AgentError",
    "AgentExistsError",
    "AgentNotFoundError",
    "AgentPolicyError",
    "AgentValidationError",
    "ApprovalError",
    "ApprovalNotFoundError",
    "AuthenticationError",
    "BuildRequiredError",
    "ConfigError",
    "CredentialDeniedError",
    "CredentialError",
    "CredentialExistsError",
    "CredentialMismatchError",
    "CredentialNotFoundError",
    "CredentialValidationError",
    "EngineError",
    "EngineUnavailableError",
    "ExpiredApiKeyError",
    "InstallError",
    "InvalidApiKeyError",
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
    "RequestError",
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
    "ToolNotFoundError",
    "UnknownCredentialTypeError",
    "UnlockSessionError",
    "UnsafeSourceError",
    "VultrinoError",
    "WrongPasswordError",
]


class VultrinoError(Exception):
    """Root of every error Vultrino raises.

    ``exit_code`` is what the CLI exits with when this error reaches it (see docs/cli.md).
    ``hint`` is what a model calling over MCP can do about it; empty when nothing but telling
    the user helps, or the message already says it.
    """

    exit_code: int = 1
    hint: str = ""
    detail: dict[str, Any] | None = None


class ConfigError(VultrinoError):
    """config.toml or a VULTRINO_* environment variable is invalid."""

    exit_code = 2


# --- store -----------------------------------------------------------------------------------


class StoreError(VultrinoError):
    """Something is wrong with the sealed credential store."""

    exit_code = 3
    hint = "Vultrino's credential store is unavailable; tell the user."


class StoreNotInitializedError(StoreError):
    """There is no credentials.enc yet."""


class StoreExistsError(StoreError):
    """A store already exists where a new one was to be created."""


class PasswordRequiredError(StoreError):
    """No password was given and there is no terminal to ask on."""


class WrongPasswordError(StoreError):
    """The password does not open the store."""


class StoreCorruptError(StoreError):
    """The store file is tampered with, truncated, or not a Vultrino store."""


class StoreFormatError(StoreError):
    """The store uses a format or KDF version this build does not know."""


class StoreLockedError(StoreError):
    """Another process held the store lock for too long."""


class StoreUnavailableError(StoreError):
    """The PostgreSQL database holding the store cannot be reached (down, wrong URL, refused
    login); nothing was read or changed."""


class UnlockSessionError(StoreError):
    """The unlock agent (``vultrino unlock``) could not start, or its socket or directory is
    not one only this user can reach, so it is not used (docs/security.md)."""


class KeyringError(StoreError):
    """The OS keyring that ``vultrino unlock --remember`` uses is missing (no ``keyring``
    package, or no usable backend) or failed."""


# --- credentials -----------------------------------------------------------------------------


class CredentialError(VultrinoError):
    """A credential cannot be found, added or used."""

    exit_code = 4


class CredentialNotFoundError(CredentialError):
    """No credential has that alias."""

    hint = "Call list_credentials to see the aliases you can use."

    @classmethod
    def named(cls, alias: object) -> CredentialNotFoundError:
        """The one message for an alias that is not there (or, for an agent, not visible):
        the same words whichever layer says it, so nobody can tell the two apart. An alias
        too long to be stored is shown cut, not echoed whole."""
        shown = alias if not isinstance(alias, str) or len(alias) <= 64 else alias[:64] + "…"
        return cls(f"no credential named {shown!r}; `vultrino list` shows them")


class CredentialDeniedError(CredentialNotFoundError):
    """The alias lies outside the caller's profile (a role's or agent's credential globs).

    Its message is word for word the one of an alias that does not exist, so an MCP agent
    cannot tell the two apart; the REST API answers it as ``403 credential_denied`` (as the
    original Vultrino does), which says nothing about the store either: the globs decide it
    before the store is read."""

    def __init__(self, message: str, *, alias: str = "") -> None:
        super().__init__(message)
        self.alias = alias


class CredentialExistsError(CredentialError):
    """The alias is already taken."""


class CredentialValidationError(CredentialError):
    """The fields do not satisfy the credential type. ``needs`` names optional fields whose
    value the rest of the fields make necessary (an oauth2 client_credentials grant needs
    client_secret), so an interactive ``add`` can ask for them."""

    def __init__(self, *args: object, needs: tuple[str, ...] = ()) -> None:
        super().__init__(*args)
        self.needs = needs


class UnknownCredentialTypeError(CredentialError):
    """The type is neither built in nor defined by an installed plugin."""


# --- plugins ---------------------------------------------------------------------------------


class PluginError(VultrinoError):
    """A plugin, its manifest, or one of its actions failed."""

    exit_code = 5

    def __init__(self, message: str, *, plugin: str | None = None) -> None:
        super().__init__(message)
        self.plugin = plugin


class ManifestError(PluginError):
    """plugin.toml is invalid. ``problems`` holds one ``key.path: message`` line per problem."""

    def __init__(
        self, message: str, *, plugin: str | None = None, problems: list[str] | None = None
    ) -> None:
        super().__init__(message, plugin=plugin)
        self.problems = list(problems or [])


class PluginNotFoundError(PluginError):
    """No plugin with that name is installed."""

    hint = "The tool list changed; call tools/list again."


class ToolNotFoundError(PluginNotFoundError):
    """No MCP tool with that name, or none the caller's profile shows it."""


class PluginConflictError(PluginError):
    """A plugin or tool name collides with an installed or built-in one."""


class PluginDisabledError(PluginError):
    """The plugin is installed but disabled (``vultrino plugin disable``): its actions are
    refused and its tools are not listed until ``vultrino plugin enable NAME``."""

    hint = "The plugin is disabled on this Vultrino; tell the user, who can enable it."


class ActionNotFoundError(PluginError):
    """The plugin has no action with that name."""


class ParameterError(PluginError):
    """Action parameters do not match the manifest."""

    exit_code = 6
    hint = "Fix the arguments to match the tool's input schema."


class CredentialMismatchError(PluginError):
    """The credential is of a type the plugin or action does not handle."""

    exit_code = 6
    hint = (
        "Use a credential of the type named in this tool's `credential` description "
        "(list_credentials shows the type of each alias)."
    )


_ACTION_FAILED_HINTS = {
    "invalid_params": "Fix the arguments and call again.",
    "invalid_credential": "This credential cannot be used for this action; try another alias.",
}


class ActionFailedError(PluginError):
    """The plugin ran and answered with an error. ``code`` is the plugin's error code.

    The hint depends on the code: only ``invalid_params`` and ``invalid_credential`` are
    something the caller can change.
    """

    exit_code = 7

    def __init__(self, message: str, *, plugin: str | None = None, code: str = "failed") -> None:
        super().__init__(message, plugin=plugin)
        self.code = code
        self.hint = _ACTION_FAILED_HINTS.get(code, "")


class AccessDeniedError(PluginError):
    """A policy (such as a credential's URL allowlist) refused the action before it ran."""

    exit_code = 8
    hint = "The credential's policy refused this call; stay within what it allows."


class AgentPolicyError(AccessDeniedError):
    """An agent profile refused the call before it ran. ``agent`` names the profile."""

    hint = "Your agent profile refused this call; stay within what it allows."

    def __init__(self, message: str, *, agent: str, plugin: str | None = None) -> None:
        super().__init__(message, plugin=plugin)
        self.agent = agent


class RateLimitedError(AgentPolicyError):
    """The agent used up its rate limit; ``retry_after`` is seconds until the next call fits."""

    hint = "Wait before calling again."

    def __init__(
        self, message: str, *, agent: str, retry_after: float, plugin: str | None = None
    ) -> None:
        super().__init__(message, agent=agent, plugin=plugin)
        self.retry_after = retry_after


class ApprovalError(AgentPolicyError):
    """The call needs a person's approval, which was declined or could not be asked for.

    ``approval`` is ``"declined"`` or ``"unavailable"``; the message says what to do.
    """

    hint = ""

    def __init__(
        self, message: str, *, agent: str, approval: str, plugin: str | None = None
    ) -> None:
        super().__init__(message, agent=agent, plugin=plugin)
        self.approval = approval


class PermissionDeniedError(AgentPolicyError):
    """The caller's role lacks the permission verb an operation needs (``read`` to list,
    ``execute`` to use a credential, ``admin`` to read the audit log or decide approvals).
    ``verb`` names it."""

    hint = "Your key's role does not allow this; ask the user for a key with that permission."

    def __init__(self, message: str, *, agent: str, verb: str, plugin: str | None = None) -> None:
        super().__init__(message, agent=agent, plugin=plugin)
        self.verb = verb


class InstallError(PluginError):
    """The installer could not install the plugin."""


class UnsafeSourceError(InstallError):
    """The source is hostile or unsafe: a path escaping the tree, a link, a device, an option."""


# --- agents ----------------------------------------------------------------------------------


class AgentError(VultrinoError):
    """An agent profile cannot be found, added or used."""

    exit_code = 4


class AgentNotFoundError(AgentError):
    """No agent profile has that name."""


class AgentExistsError(AgentError):
    """An agent profile with that name already exists."""


class AgentValidationError(AgentError):
    """A profile option (name, glob, rate, URL pattern) is malformed."""

    exit_code = 2


class KeyNotFoundError(AgentError):
    """No API key has that id, prefix or name."""


# --- the server ------------------------------------------------------------------------------


class AuthenticationError(VultrinoError):
    """An HTTP request's bearer credential is missing or not accepted (HTTP 401)."""

    exit_code = 8


class MissingApiKeyError(AuthenticationError):
    """The request has no ``Authorization: Bearer <key>`` header."""


class InvalidApiKeyError(AuthenticationError):
    """The bearer credential is not an API key, agent token or server token this home knows
    (or the key was revoked)."""


class ExpiredApiKeyError(InvalidApiKeyError):
    """The API key is past its expiry time."""


class ServerError(VultrinoError):
    """`vultrino serve`, or a command that talks to the running server."""

    exit_code = 11


class ServerConfigError(ServerError):
    """A bind address, TLS or proxy setting is refused (a public bind without TLS, a TLS
    certificate without its key, a malformed address)."""

    exit_code = 2


class ServerNotRunningError(ServerError):
    """No `vultrino serve` is running on this home (or it does not answer)."""


class RequestError(ServerError):
    """A REST request is malformed: its body is not the JSON it must be, or a query parameter
    is wrong. The message names the field."""

    exit_code = 2


class ApprovalNotFoundError(ServerError):
    """No call waits for approval under that id (decided already, expired, or never there)."""


class BuildRequiredError(InstallError):
    """The source has no prebuilt module and building it was not allowed.

    Building runs the source's own code (cargo build scripts, procedural macros) with the
    user's rights; it happens only with ``--build`` (Python: ``build=True``). ``command`` is
    what would run and ``directory`` where.
    """

    def __init__(
        self,
        message: str,
        *,
        plugin: str | None = None,
        command: str = "",
        directory: str = "",
    ) -> None:
        super().__init__(message, plugin=plugin)
        self.command = command
        self.directory = directory


# --- engine ----------------------------------------------------------------------------------


class EngineError(VultrinoError):
    """The WebAssembly runtime failed. ``plugin`` names the plugin when one is known."""

    exit_code = 9
    hint = "The plugin failed on this call only; you may retry, or tell the user."

    def __init__(self, message: str, *, plugin: str | None = None) -> None:
        super().__init__(message)
        self.plugin = plugin


class EngineUnavailableError(EngineError):
    """The requested engine is not installed."""


class ModuleError(EngineError):
    """The module is not valid wasm, or its imports/exports do not fit a Vultrino ABI."""


class PluginTrapError(EngineError):
    """The guest trapped (unreachable, out-of-bounds access, stack overflow, ...)."""


class PluginTimeoutError(EngineError):
    """The guest ran past its wall-clock deadline."""


class PluginBusyError(EngineError):
    """Every instance of the plugin is running a call, and the calls allowed to wait for one
    already do (or this one waited its deadline): refused at once, nothing ran."""

    hint = "The plugin is busy with other calls; wait a few seconds, then retry."


class PluginMemoryError(EngineError):
    """The guest tried to grow its memory past the cap."""


class PluginABIError(EngineError):
    """The guest broke the ABI: a bad pointer, bytes that do not decode, output over the cap."""
