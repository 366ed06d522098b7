"""The Vultrino facade: the one object the CLI, the MCP server and scripts call.

::

    from vultrino import Vultrino

    with Vultrino.open() as v:
        v.add_credential("github", "api_key", {"key": token}, allow=["https://api.github.com/*"])
        v.execute("github", "request", {"url": "https://api.github.com/user"})

Opening is cheap: nothing is decrypted and no engine is imported until a method needs it. The
store key is derived once, on first use, and reused for the life of the object. Plugins stay
instantiated, so repeated calls on one ``Vultrino`` cost microseconds, not a compile.

The facade is thin. Calls (``execute``, ``run_action``, ``call_tool``) and what a caller may see
go through the call pipeline (:mod:`vultrino.pipeline`) and its policy gate; the facade itself
administers the home: credentials, plugins, agent profiles, the audit log. The store, the
registry and the runtime (:mod:`vultrino.services`) are not public.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vultrino import audit
from vultrino.audit import Verdict
from vultrino.config import ENGINE_NAMES, Config, load_config
from vultrino.errors import AgentNotFoundError, ConfigError
from vultrino.info import CredentialInfo, ToolInfo, TypeInfo, canonical_type, credential_info
from vultrino.paths import Home, resolve_home
from vultrino.pipeline import Pipeline
from vultrino.policy.profile import AgentInfo, AgentProfile, hash_token, new_token, stamped
from vultrino.services import (
    ENV_PASSWORD,
    ENV_PASSWORD_FILE,
    Prompt,
    Services,
    kdf_params,
    resolve_password,
)

if TYPE_CHECKING:
    from vultrino.agents import AgentScope
    from vultrino.plugins.base import CredentialTypeSpec, Plugin
    from vultrino.plugins.install.installer import InstallResult
    from vultrino.plugins.logs import LogLine
    from vultrino.policy.approval import Approver
    from vultrino.runtime import WasmRuntime
    from vultrino.store import KdfParams

__all__ = [
    "ENV_PASSWORD",
    "ENV_PASSWORD_FILE",
    "CredentialInfo",
    "Prompt",
    "ToolInfo",
    "TypeInfo",
    "Vultrino",
    "kdf_params",
    "resolve_password",
]


class Vultrino:
    """The facade over one home: its store, plugins, agent profiles and audit log."""

    def __init__(
        self,
        home: Home,
        *,
        password: str | None = None,
        prompt: Prompt | None = None,
        config: Config | None = None,
        runtime: WasmRuntime | None = None,
    ) -> None:
        self.home = home
        self.config = config if config is not None else load_config(home.config)
        self._s = Services(home, self.config, password=password, prompt=prompt, runtime=runtime)
        self._pipeline = Pipeline(self._s)

    # --- lifecycle ---------------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        home: str | os.PathLike[str] | None = None,
        password: str | None = None,
        *,
        prompt: Prompt | None = None,
        engine: str | None = None,
    ) -> Vultrino:
        """Open the home (``VULTRINO_HOME`` by default). Nothing is decrypted yet."""
        h = resolve_home(home)
        config = load_config(h.config)
        if engine is not None:
            if engine not in ENGINE_NAMES:
                raise ConfigError(f"unknown engine {engine!r}; expected one of {ENGINE_NAMES}")
            config = replace(config, engine=engine)
        return cls(h, password=password, prompt=prompt, config=config)

    @classmethod
    def init(
        cls,
        home: str | os.PathLike[str] | None = None,
        password: str | None = None,
        *,
        kdf: KdfParams | None = None,
        prompt: Prompt | None = None,
    ) -> Vultrino:
        """Create a new, empty store in the home and return the opened facade."""
        v = cls.open(home, password, prompt=prompt)
        v._s.create_store(kdf or v._s.configured_kdf())
        return v

    def close(self) -> None:
        """Close plugins, the runtime and the store; idempotent."""
        with self._s.lock:
            self._pipeline.forget()
            self._s.close()

    def __enter__(self) -> Vultrino:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def unlock(self) -> None:
        """Derive the store key now (the MCP server does this once at start)."""
        _ = self._s.store

    @property
    def engine(self) -> tuple[str, str]:
        """The engine plugins run on: (name, version)."""
        runtime = self._s.runtime
        return runtime.engine_name, runtime.engine_version

    # --- credentials -------------------------------------------------------------------------

    def credentials(self) -> list[CredentialInfo]:
        """Metadata of every credential, sorted by alias. Never a secret value."""
        return self._pipeline.credentials()

    def credential_info(self, alias: str) -> CredentialInfo:
        return self._pipeline.credential_info(alias)

    def add_credential(
        self,
        alias: str,
        type: str,
        fields: Mapping[str, Any],
        description: str | None = None,
        allow: Sequence[str] | None = None,
        *,
        replace: bool = False,
    ) -> CredentialInfo:
        """Validate ``fields`` (the plugin's checks: the manifest's, then its own) and store the
        credential. Nothing is stored when a check fails.

        ``allow`` is the URL allowlist used by the built-in HTTP plugin (``["*"]`` allows any
        URL, and must be asked for explicitly).
        """
        from vultrino.store import Credential

        s = self._s
        plugin, spec = s.registry.resolve_type(type)
        clean = plugin.validate_credential(spec.name, fields)
        patterns = plugin.validate_allow(list(allow)) if allow else []
        cred = Credential(
            alias=alias,
            type=canonical_type(plugin, spec),
            fields=clean,
            description=description or "",
            allow=patterns,
            secret_fields=list(spec.secret_fields),
        )
        with s.lock:
            stored = s.store.add(cred, replace=replace)
        self._changed("credential.replace" if replace else "credential.add", alias=alias)
        return credential_info(stored, s.registry)

    def remove_credential(self, alias: str) -> CredentialInfo:
        s = self._s
        with s.lock:
            removed = credential_info(s.store.remove(alias), s.registry)
        self._changed("credential.remove", alias=alias)
        return removed

    def rekey(self, new_password: str, kdf: KdfParams | None = None) -> None:
        """Re-seal the store under a new password (and KDF parameters), atomically."""
        s = self._s
        with s.lock:
            s.store.rekey(new_password, kdf or s.configured_kdf())
        self._changed("store.rekey")

    def types(self) -> list[TypeInfo]:
        """Every credential type that can be added: built-in first, then plugin types."""
        return [TypeInfo(name, p.name, spec) for name, p, spec in self._s.registry.types()]

    def credential_type(self, type: str) -> tuple[Plugin, CredentialTypeSpec]:
        """The plugin that owns credential type ``type`` and the type's declaration
        (UnknownCredentialTypeError names the types there are)."""
        return self._s.registry.resolve_type(type)

    # --- actions: through the call pipeline --------------------------------------------------

    def execute(
        self,
        alias: str,
        action: str,
        params: Mapping[str, Any] | None = None,
        *,
        from_cli: bool = False,
        plugin: str | None = None,
        source: str = "api",
    ) -> Any:
        """Run ``action`` of the plugin that owns ``alias``'s type; return its (scrubbed) result.

        ``plugin``, when given, must own the credential's type (MCP tools pass their plugin).
        An agent's calls go through :meth:`as_agent` instead.
        """
        return self._pipeline.call(
            alias, plugin, action, params, None, None, None, source, from_cli
        )

    def run_action(
        self,
        plugin: str,
        action: str,
        params: Mapping[str, Any] | None = None,
        *,
        from_cli: bool = False,
        source: str = "api",
    ) -> Any:
        """Run an action that needs no credential (``requires_credential = false``)."""
        return self._pipeline.call(None, plugin, action, params, None, None, None, source, from_cli)

    def tools(self) -> list[ToolInfo]:
        """Every MCP tool: ``list_credentials`` then one per plugin ``[[mcp_tools]]`` entry."""
        return self._pipeline.tools()

    def call_tool(self, name: str, arguments: Mapping[str, Any], *, source: str = "mcp") -> Any:
        """Run an MCP tool by name with JSON arguments (validated before anything runs)."""
        return self._pipeline.call_tool(name, arguments, source=source)

    # --- plugins -----------------------------------------------------------------------------

    def plugins(self) -> list[Plugin]:
        return self._s.registry.plugins()

    def broken_plugins(self) -> dict[str, str]:
        return self._s.registry.broken()

    def plugin(self, name: str) -> Plugin:
        return self._s.registry.get(name)

    def install_plugin(
        self,
        source: str,
        *,
        subdir: str | None = None,
        force: bool = False,
        build: bool = False,
        build_output: Callable[[str], None] | None = None,
        build_sandbox: str | None = None,
        progress: Callable[[int, int | None], None] | None = None,
    ) -> InstallResult:
        """Install a plugin (see :func:`vultrino.plugins.install.installer.install`).

        ``build=True`` allows building a source without a prebuilt module, which runs its
        build scripts; without it such a source raises ``BuildRequiredError``. The build
        runs in a sandbox as ``build_sandbox`` says (``auto``, ``require``, ``off``; default:
        config.toml's ``[build] sandbox``, else ``auto``).
        """
        from vultrino.plugins.install import installer

        s = self._s
        s.home.ensure()
        with s.lock:
            result = installer.install(
                source,
                plugins_dir=s.home.plugins,
                runtime=s.runtime,
                registry=s.registry,
                subdir=subdir,
                force=force,
                build=build,
                build_output=build_output,
                build_sandbox=build_sandbox or self.config.build_sandbox,
                progress=progress,
            )
            if result.replaced:
                s.registry.reload(result.name)
            else:
                s.registry.load_one(result.name)
            s.plugins_signature = s.scan_plugins_dir()
        self._changed("plugin.install", plugin=result.name)
        return result

    def remove_plugin(self, name: str) -> Path:
        from vultrino.plugins.install import installer

        s = self._s
        with s.lock:
            if name in self._plugin_names():
                s.registry.unload(name)
            path = installer.remove(name, plugins_dir=s.home.plugins, runtime=s.runtime)
            s.plugins_signature = s.scan_plugins_dir()
        self._changed("plugin.remove", plugin=name)
        return path

    def reload_plugin(self, name: str) -> Plugin:
        """Re-read and re-validate an installed plugin (its module is instantiated now)."""
        s = self._s
        with s.lock:
            s.registry.reload(name)
            plugin = s.registry.get(name)
            ensure = getattr(plugin, "ensure_loaded", None)
            if ensure is not None:
                ensure()
            return plugin

    def plugin_logs(self, name: str, *, limit: int = 50) -> list[LogLine]:
        """The last ``limit`` lines plugin ``name`` logged (scrubbed before they were written),
        oldest first. :class:`PluginNotFoundError` for a name that is neither installed nor
        has logs left from an earlier install."""
        self._log_owner(name)
        return self._s.plugin_logs.tail(name, limit)

    def follow_plugin_logs(
        self, name: str, *, last: int = 0, stop: Callable[[], bool] = lambda: False
    ) -> Iterator[LogLine]:
        """The last ``last`` lines plugin ``name`` logged, then each line it logs from then on
        (from any process), until ``stop()`` is true."""
        self._log_owner(name)
        return self._s.plugin_logs.follow(name, last=last, stop=stop)

    def _log_owner(self, name: str) -> None:
        from vultrino.errors import PluginNotFoundError
        from vultrino.plugins.manifest import PLUGIN_NAME_RE

        if not isinstance(name, str) or not PLUGIN_NAME_RE.fullmatch(name):
            raise PluginNotFoundError(f"{str(name)[:64]!r} is not a plugin name", plugin=None)
        if name in self._plugin_names() or self._s.plugin_logs.exists(name):
            return
        self._s.registry.get(name)  # raises the registry's own not-found error

    def _plugin_names(self) -> set[str]:
        registry = self._s.registry
        return {p.name for p in registry.plugins()} | set(registry.broken())

    # --- agents ------------------------------------------------------------------------------

    def agents(self) -> list[AgentInfo]:
        """Every agent profile, sorted by name (never the token)."""
        return [p.info() for p in self._s.profiles()]

    def agent_info(self, name: str) -> AgentInfo:
        return self._s.profile(name).info()

    def agent_profile(self, name: str) -> AgentProfile:
        """The stored profile of agent ``name`` (AgentNotFoundError if there is none)."""
        return self._s.profile(name)

    def add_agent(
        self,
        name: str,
        *,
        credentials: Sequence[str] = (),
        tools: Sequence[str] = (),
        actions: Sequence[str] | None = None,
        allow: Sequence[str] = (),
        approve: Sequence[str] = (),
        rate: str | None = None,
        description: str = "",
        replace: bool = False,
    ) -> tuple[AgentInfo, str]:
        """Create (or with ``replace`` overwrite) an agent profile, sealed in the store.

        Returns the profile and its new HTTP bearer token. The token is not stored (only its
        SHA-256), so this is the only time it can be read; replacing a profile issues a new one.
        """
        token = new_token()
        profile = AgentProfile.build(
            name,
            credentials=credentials,
            tools=tools,
            actions=actions,
            allow=allow,
            approve=approve,
            rate=rate,
            description=description,
            token_hash=hash_token(token),
        )
        created: str | None = None
        if replace:
            try:
                created = self._s.profile(name).created_at
            except AgentNotFoundError:
                created = None
        profile = stamped(profile, created)
        with self._s.lock:
            self._s.store.put_agent(profile.to_record(), replace=replace)
        self._changed("agent.replace" if replace else "agent.add", subject=name)
        return profile.info(), token

    def remove_agent(self, name: str) -> AgentInfo:
        """Delete an agent profile; its token stops working on the next request."""
        with self._s.lock:
            removed = AgentProfile.from_record(self._s.store.remove_agent(name)).info()
        self._changed("agent.remove", subject=name)
        return removed

    def agent_for_token(self, token: str) -> str | None:
        """The name of the agent whose bearer token this is, else None (every profile is
        compared, each in constant time)."""
        found = None
        for p in self._s.profiles():
            if p.verify_token(token) and found is None:
                found = p.name
        return found

    def as_agent(self, name: str, *, approver: Approver | None = None) -> AgentScope:
        """Vultrino as agent ``name`` may use it (see :mod:`vultrino.agents`): every call goes
        through the same pipeline, decided by the agent's profile.

        ``approver`` asks a person about calls the profile marks ``approve``; without one they
        are refused."""
        from vultrino.agents import AgentScope

        return AgentScope(self._pipeline, name, approver=approver)

    # --- audit and refresh -------------------------------------------------------------------

    def _changed(
        self,
        what: str,
        *,
        alias: str | None = None,
        plugin: str | None = None,
        subject: str | None = None,
    ) -> None:
        """The audit record of a change to the home (never a value): ``action`` says which
        (``credential.add``, ``agent.remove``, ``plugin.install``, ``store.rekey``, ...),
        ``subject`` names the agent profile changed, ``source`` is ``admin``."""
        record: dict[str, Any] = {"alias": alias, "plugin": plugin, "action": what, "agent": None}
        if subject is not None:
            record["subject"] = subject
        record.update(outcome="ok", duration_ms=0.0, source="admin")
        self._s.audit.write(record)

    def audit(
        self,
        *,
        agent: str | None = None,
        alias: str | None = None,
        outcome: str | None = None,
        since: str | None = None,
        limit: int | None = None,
    ) -> list[dict[str, Any]]:
        """Audit records, oldest first, filtered (see :func:`vultrino.audit.query`)."""
        return audit.query(
            self.home.audit_log,
            agent=agent,
            alias=alias,
            outcome=outcome,
            since=since,
            limit=limit,
        )

    def audit_verify(self, *, strict: bool = False, check_key: bool = False) -> Verdict:
        """Check the audit log's hash chain and its signed head (see :func:`vultrino.audit.verify`).

        Needs no password, unless ``check_key``: then the store is unlocked and the head must
        be signed by the store's own key (not just by the key it names). ``strict`` also
        refuses records past the signed head."""
        from vultrino.store import verify_signature

        key = None
        if check_key:
            key = self._s.store.audit_public_key() or b""
        return audit.verify(self.home.audit_log, verify_signature, key=key, strict=strict)

    def refresh(self) -> bool:
        """Pick up plugins and credentials changed by other processes.

        Returns True when the tool list changed (an MCP server then notifies its client).
        """
        return self._pipeline.refresh()
