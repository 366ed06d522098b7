"""The Vultrino facade: the one object the CLI, the MCP server and scripts call.

::

    from vultrino import Vultrino

    with Vultrino.open() as v:
        v.add_credential("github", "api_key", {"key": token}, allow=["https://api.github.com/*"])
        v.execute("github", "request", {"url": "https://api.github.com/user"})

Opening is cheap: nothing is decrypted and no engine is imported until a method needs it. The
store key is derived once, on first use, and reused for the life of the object. Plugins stay
instantiated, so repeated calls on one ``Vultrino`` cost microseconds, not a compile.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from vultrino import audit
from vultrino._scrub import clear_scrubbers, scrub_error, scrubber
from vultrino.config import ENGINE_NAMES, Config, load_config
from vultrino.errors import (
    ActionFailedError,
    ActionNotFoundError,
    AgentNotFoundError,
    AgentPolicyError,
    ConfigError,
    CredentialMismatchError,
    ParameterError,
    PasswordRequiredError,
    PluginNotFoundError,
    VultrinoError,
)
from vultrino.paths import Home, resolve_home
from vultrino.plugins.base import (
    ActionSpec,
    CredentialTypeSpec,
    CredentialView,
    Plugin,
    PreparedAction,
    qualified_type,
)
from vultrino.plugins.validation import (
    params_json_schema,
    type_name,
    validate_params,
)

if TYPE_CHECKING:
    from vultrino._scrub import Scrubber
    from vultrino.agents import AgentInfo, AgentProfile, AgentScope, Approver, RateLimiter
    from vultrino.plugins.install.installer import InstallResult
    from vultrino.plugins.registry import PluginRegistry
    from vultrino.runtime import WasmRuntime
    from vultrino.store import CredentialStore, KdfParams

ENV_PASSWORD = "VULTRINO_PASSWORD"  # noqa: S105 - a variable name
ENV_PASSWORD_FILE = "VULTRINO_PASSWORD_FILE"  # noqa: S105

LIST_CREDENTIALS_TOOL = "list_credentials"
#: What list_credentials returns: one entry per credential, never a secret value.
LIST_CREDENTIALS_SCHEMA: dict[str, Any] = {
    "type": "array",
    "items": {
        "type": "object",
        "properties": {
            "alias": {"type": "string"},
            "type": {"type": "string"},
            "description": {"type": "string"},
        },
        "required": ["alias", "type", "description"],
        "additionalProperties": False,
    },
}

Prompt = Callable[[str], str]

_PLANS_MAX = 1024
_KEY_PART = (str, type(None))  # what a plan's key may hold besides the alias and action
_SOURCE_TAIL = {s: ',"source":' + audit.json_text(s) for s in ("api", "cli", "mcp")}


def _millis(nanos: int) -> float:
    return round(nanos / 1_000_000, 3)


@dataclass(frozen=True, slots=True)
class _Plan:
    """What one (alias, action, plugin, agent) resolves to, while ``stamp`` (the store's
    revision, the registry's generation) holds: the plugin's name and its action, the credential's
    secret values and their scrubber, the action bound to the credential as the plugin sees it
    (:meth:`Plugin.prepare`; one read-only view shared by the plan's calls), and the audit
    record of a successful call up to its duration (``…,"duration_ms":``)."""

    stamp: tuple[int, int]
    plugin: str
    act: ActionSpec
    secrets: list[Any]
    scrub: Scrubber
    run: PreparedAction
    audit_ok: str


@dataclass(frozen=True)
class CredentialInfo:
    """A credential's metadata. Secret field values are never included."""

    alias: str
    type: str
    description: str
    plugin: str | None
    allow: tuple[str, ...]
    fields: dict[str, Any]  # non-secret values; secret ones are "********"
    created_at: str
    updated_at: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "alias": self.alias,
            "type": self.type,
            "description": self.description,
            "plugin": self.plugin,
            "allow": list(self.allow),
            "fields": dict(self.fields),
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }


@dataclass(frozen=True)
class ToolInfo:
    """An MCP tool: its name, description and JSON Schema, and what it runs."""

    name: str
    description: str
    input_schema: dict[str, Any]
    plugin: str
    action: str
    # MCP behaviour hints (readOnlyHint, destructiveHint, idempotentHint, openWorldHint)
    annotations: dict[str, bool] = field(default_factory=dict)
    # JSON Schema of the result, when its shape is known
    output_schema: dict[str, Any] | None = None


@dataclass(frozen=True)
class TypeInfo:
    """A credential type users can add."""

    name: str  # as written on the command line: "api_key" or "plugin:<plugin>:<type>"
    plugin: str
    spec: CredentialTypeSpec


def resolve_password(password: str | None, prompt: Prompt | None) -> str:
    """The explicit password, else VULTRINO_PASSWORD, else VULTRINO_PASSWORD_FILE, else prompt."""
    if password is not None:
        return password
    env = os.environ.get(ENV_PASSWORD)
    if env:
        return env
    file = os.environ.get(ENV_PASSWORD_FILE)
    if file:
        try:
            mode = os.stat(file).st_mode
        except OSError as exc:
            raise PasswordRequiredError(
                f"{ENV_PASSWORD_FILE}={file}: cannot read the password file ({exc.strerror})"
            ) from exc
        if mode & 0o077:  # as the MCP token file: a password others can read is no secret
            raise ConfigError(
                f"{ENV_PASSWORD_FILE}={file}: the password file is readable or writable by "
                f"other users (mode {mode & 0o777:o}); run `chmod 600 {file}`"
            )
        try:
            text = Path(file).read_text(encoding="utf-8")
        except OSError as exc:
            raise PasswordRequiredError(
                f"{ENV_PASSWORD_FILE}={file}: cannot read the password file ({exc.strerror})"
            ) from exc
        return text.rstrip("\r\n")
    if prompt is not None:
        return prompt("Store password: ")
    raise PasswordRequiredError(
        "the credential store is locked and there is no terminal to ask for its password: "
        f"set {ENV_PASSWORD} or {ENV_PASSWORD_FILE}"
    )


def kdf_params(opslimit: int | None, memlimit: int | None) -> KdfParams | None:
    """Argon2id parameters with the built-in default for what is not given; None if neither."""
    if opslimit is None and memlimit is None:
        return None
    from vultrino.store import KdfParams

    default = KdfParams.default()
    return KdfParams(opslimit=opslimit or default.opslimit, memlimit=memlimit or default.memlimit)


class Vultrino:
    """The facade over the store, the plugin registry and the runtime."""

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
        self._password = password
        self._prompt = prompt
        self._runtime = runtime
        self._store: CredentialStore | None = None
        self._registry: PluginRegistry | None = None
        # _lock serialises mutations and refreshes. The lazily built parts have their own
        # locks, taken innermost and never around a call back into the facade: a plugin that
        # loads its module from a worker thread asks for the runtime while another thread may
        # hold _lock in refresh(), and one shared lock would deadlock the two.
        self._lock = threading.RLock()
        self._store_lock = threading.Lock()
        self._runtime_lock = threading.Lock()
        self._registry_lock = threading.Lock()
        self._tools_signature = ""  # what refresh() last saw of the tool list
        self._audit = audit.AuditLog(home.audit_log)  # opened on the first record
        # (alias, action, plugin, agent) -> what execute() resolved them to, kept while the
        # store and the plugins are unchanged; they hold secrets, so close() drops them
        self._plans: dict[tuple[Any, ...], _Plan] = {}
        self._plugins_signature = ""
        self._rate_limiter: RateLimiter | None = None  # agent rate limits, per process
        self._profiles_cache: tuple[int, tuple[AgentProfile, ...]] | None = None

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
        from vultrino.store import CredentialStore

        v = cls.open(home, password, prompt=prompt)
        pw = resolve_password(password, prompt)
        v.home.ensure()
        v._store = CredentialStore.create(v.home.store, pw, kdf or v._configured_kdf())
        return v

    def _configured_kdf(self) -> KdfParams | None:
        return kdf_params(self.config.kdf_opslimit, self.config.kdf_memlimit)

    def close(self) -> None:
        """Close plugins, the runtime and the store; idempotent."""
        with self._lock:
            if self._registry is not None:
                self._registry.close()
                self._registry = None
            if self._runtime is not None:
                self._runtime.close()
                self._runtime = None
            if self._store is not None:
                self._store.close()
                self._store = None
            self._audit.close()
            self._plans.clear()
            self._profiles_cache = None
            # the scrubbers hold every form of the secrets they were built for (other open
            # facades of this process just build theirs again)
            clear_scrubbers()

    def __enter__(self) -> Vultrino:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- lazily built parts ------------------------------------------------------------------

    @property
    def store(self) -> CredentialStore:
        """The unlocked store; the key is derived on first access."""
        if self._store is not None:
            return self._store
        with self._store_lock:
            if self._store is None:
                from vultrino.store import CredentialStore

                if not CredentialStore.exists(self.home.store):
                    from vultrino.errors import StoreNotInitializedError

                    raise StoreNotInitializedError(
                        f"no credential store at {self.home.store}: run `vultrino init` first"
                    )
                pw = resolve_password(self._password, self._prompt)
                self._store = CredentialStore.open(self.home.store, pw)
            return self._store

    def unlock(self) -> None:
        """Derive the store key now (the MCP server does this once at start)."""
        _ = self.store

    @property
    def runtime(self) -> WasmRuntime:
        if self._runtime is not None:
            return self._runtime
        with self._runtime_lock:
            if self._runtime is None:
                from vultrino.runtime import WasmRuntime

                self._runtime = WasmRuntime(
                    engine=self.config.engine, cache_dir=self.home.cache, limits=self.config.limits
                )
            return self._runtime

    @property
    def registry(self) -> PluginRegistry:
        if self._registry is not None:
            return self._registry
        with self._registry_lock:
            if self._registry is None:
                from vultrino.plugins.http import HttpPlugin
                from vultrino.plugins.registry import PluginRegistry

                http = HttpPlugin(max_response_bytes=self.config.http_max_response_bytes)
                registry = PluginRegistry(
                    self.home.plugins,
                    lambda: self.runtime,
                    builtins=[http],
                    manifest_cache=self.home.manifest_cache,
                )
                registry.load_all()
                self._plugins_signature = self._scan_plugins_dir()
                self._registry = registry
            return registry

    # --- credentials -------------------------------------------------------------------------

    def credentials(self) -> list[CredentialInfo]:
        """Metadata of every credential, sorted by alias. Never a secret value."""
        return [self._info(c) for c in self.store.credentials()]

    def credential_info(self, alias: str) -> CredentialInfo:
        return self._info(self.store.get(alias))

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

        plugin, spec = self.registry.resolve_type(type)
        clean = plugin.validate_credential(spec.name, fields)
        patterns = plugin.validate_allow(list(allow)) if allow else []
        cred = Credential(
            alias=alias,
            type=self._canonical_type(plugin, spec),
            fields=clean,
            description=description or "",
            allow=patterns,
            secret_fields=list(spec.secret_fields),
        )
        with self._lock:
            stored = self.store.add(cred, replace=replace)
        return self._info(stored)

    def remove_credential(self, alias: str) -> CredentialInfo:
        with self._lock:
            return self._info(self.store.remove(alias))

    def rekey(self, new_password: str, kdf: KdfParams | None = None) -> None:
        """Re-seal the store under a new password (and KDF parameters), atomically."""
        with self._lock:
            self.store.rekey(new_password, kdf or self._configured_kdf())

    def types(self) -> list[TypeInfo]:
        """Every credential type that can be added: built-in first, then plugin types."""
        return [TypeInfo(name, p.name, spec) for name, p, spec in self.registry.types()]

    @staticmethod
    def _canonical_type(plugin: Plugin, spec: CredentialTypeSpec) -> str:
        return spec.name if plugin.builtin else qualified_type(plugin.name, spec.name)

    def _info(self, cred: Any) -> CredentialInfo:
        secret = set(cred.secret_fields)
        plugin_name: str | None
        try:
            plugin, spec = self.registry.resolve_type(cred.type)
            secret |= set(spec.secret_fields)
            plugin_name = plugin.name
        except VultrinoError:
            plugin_name = None  # its plugin was removed: still listable, not usable
        shown = {k: ("********" if k in secret else v) for k, v in cred.fields.items()}
        return CredentialInfo(
            alias=cred.alias,
            type=cred.type,
            description=cred.description,
            plugin=plugin_name,
            allow=tuple(cred.allow),
            fields=shown,
            created_at=cred.created_at,
            updated_at=cred.updated_at,
        )

    # --- actions -----------------------------------------------------------------------------

    def execute(
        self,
        alias: str,
        action: str,
        params: Mapping[str, Any] | None = None,
        *,
        from_cli: bool = False,
        plugin: str | None = None,
        source: str = "api",
        scope: AgentScope | None = None,
        tool: str | None = None,
    ) -> Any:
        """Run ``action`` of the plugin that owns ``alias``'s type; return its (scrubbed) result.

        ``plugin``, when given, must own the credential's type (MCP tools pass their plugin).
        ``scope`` (what :meth:`as_agent` returns) enforces an agent profile; ``tool`` names the
        MCP tool the call came through.
        """
        started = time.perf_counter_ns()
        agent = scope.name if scope is not None else None
        record: dict[str, Any] = {
            "alias": alias,
            "plugin": plugin,
            "action": action,
            "agent": agent,
        }
        try:
            profile = None
            if scope is not None:
                profile = scope.profile()
                if not profile.sees_credential(alias):
                    from vultrino.agents import hidden_credential

                    record.update(outcome="denied", error="CredentialOutsideProfile")
                    raise hidden_credential(alias)
            plan = self._plan(alias, action, plugin, profile, record)
            try:
                clean = validate_params(plan.act, params or {}, from_cli=from_cli)
                if scope is not None and profile is not None:
                    scope.admit(
                        profile,
                        plugin=plan.plugin,
                        action=action,
                        alias=alias,
                        tool=tool,
                        params=clean,
                        record=record,
                    )
                result = plan.run(clean)
                scrub = plan.scrub
                if result.new_state is not None:
                    with self._lock:
                        self.store.update_state(alias, result.new_state)
                    scrub = scrubber([*plan.secrets, *result.new_state.values()])
                value = scrub.in_place(result.value)  # a result is the caller's own
            except VultrinoError as exc:
                # Any message may quote what the agent sent, the server answered or the plugin
                # wrote (a URL, a Location, a guest's error text): none leaves with a secret in it.
                raise scrub_error(exc, plan.scrub) from None
        except BaseException as exc:
            self._audit_failure(record, source, started, exc)
            raise
        elapsed = time.perf_counter_ns() - started
        if len(record) == 4:  # nothing added on the way (an approval): the plan's text holds
            tail = _SOURCE_TAIL.get(source) or ',"source":' + audit.json_text(source)
            self._audit.write_text(plan.audit_ok + audit.millis_text(elapsed) + tail)
        else:
            record.update(outcome="ok", duration_ms=_millis(elapsed), source=source)
            self._audit.write(record)
        return value

    def _plan(
        self,
        alias: str,
        action: str,
        plugin: str | None,
        profile: AgentProfile | None,
        record: dict[str, Any],
    ) -> _Plan:
        """What a call of ``action`` with ``alias`` resolves to, reused while the store's
        revision and the registry's generation are what they were when it was made (so a
        changed credential, agent profile or plugin is seen on the very next call)."""
        store = self._store if self._store is not None else self.store
        registry = self._registry if self._registry is not None else self.registry
        stamp = (store.revision, registry.generation)  # before reading: never newer
        agent = record["agent"]
        key = (alias, action, plugin, agent)
        # Exact types only: a str subclass could compare equal to another alias's key.
        hashable = type(alias) is str and type(action) is str and type(plugin) in _KEY_PART
        if hashable:
            plan = self._plans.get(key)
            if plan is not None and plan.stamp == stamp:
                record["plugin"] = plan.plugin
                return plan
        cred = store.get(alias)
        owner, spec = registry.resolve_type(cred.type)
        record["plugin"] = owner.name
        if plugin is not None and owner.name != plugin:
            raise CredentialMismatchError(
                f"credential {alias!r} is of type {cred.type!r}, which plugin {plugin!r} "
                f"does not handle; pick a credential of one of: {self._plugin_types(plugin)}",
                plugin=plugin,
            )
        act = self._action(owner, action)
        if not act.needs_credential:
            raise CredentialMismatchError(
                f"action {action!r} of plugin {owner.name!r} needs no credential: run it "
                f"without an alias (`vultrino request --plugin {owner.name} --action "
                f"{action}`, or Vultrino.run_action in Python)",
                plugin=owner.name,
            )
        if not act.accepts(spec.name):
            raise CredentialMismatchError(
                f"action {action!r} of plugin {owner.name!r} needs a credential of type "
                f"{self._type_list(owner, act)}, but {alias!r} is of type {cred.type!r}",
                plugin=owner.name,
            )
        secret_names = tuple(dict.fromkeys([*cred.secret_fields, *spec.secret_fields]))
        secrets = [cred.fields.get(f) for f in secret_names]
        secrets += cred.state.values()  # scrubber() keeps only the strings
        view = CredentialView(
            alias=cred.alias,
            type=spec.name,
            fields=MappingProxyType(cred.fields),  # cred is this plan's own copy
            allow=tuple(cred.allow),
            state=MappingProxyType(cred.state),
            agent=agent,
            agent_allow=profile.allow if profile is not None else (),
            secret_fields=secret_names,
        )
        plan = _Plan(
            stamp=stamp,
            plugin=owner.name,
            act=act,
            secrets=secrets,
            scrub=scrubber(secrets),
            run=owner.prepare(action, view),
            audit_ok=audit.fields_text({**record, "outcome": "ok"}) + ',"duration_ms":',
        )
        if hashable:
            if len(self._plans) >= _PLANS_MAX:
                self._plans.clear()
            self._plans[key] = plan
        return plan

    def run_action(
        self,
        plugin: str,
        action: str,
        params: Mapping[str, Any] | None = None,
        *,
        from_cli: bool = False,
        source: str = "api",
        scope: AgentScope | None = None,
        tool: str | None = None,
    ) -> Any:
        """Run an action that needs no credential (``requires_credential = false``)."""
        record: dict[str, Any] = {
            "alias": None,
            "plugin": plugin,
            "action": action,
            "agent": scope.name if scope is not None else None,
        }

        def run() -> Any:
            owner = self.registry.get(plugin)
            act = self._action(owner, action)
            if act.needs_credential:
                raise CredentialMismatchError(
                    f"action {action!r} of plugin {plugin!r} needs a credential of type "
                    f"{self._type_list(owner, act)}: run it with an alias",
                    plugin=plugin,
                )
            clean = validate_params(act, params or {}, from_cli=from_cli)
            if scope is not None:
                scope.admit(
                    scope.profile(),
                    plugin=owner.name,
                    action=action,
                    alias=None,
                    tool=tool,
                    params=clean,
                    record=record,
                )
            return owner.execute(action, clean, None).value

        return self._audited(record, source, run)

    def _audited(self, record: dict[str, Any], source: str, run: Callable[[], Any]) -> Any:
        """Run ``run`` and append its audit record (outcome, error class or code, duration)."""
        started = time.perf_counter_ns()
        try:
            result = run()
        except BaseException as exc:
            self._audit_failure(record, source, started, exc)
            raise
        record.update(
            outcome="ok", duration_ms=_millis(time.perf_counter_ns() - started), source=source
        )
        self._audit.write(record)
        return result

    def _audit_failure(
        self, record: dict[str, Any], source: str, started: int, exc: BaseException
    ) -> None:
        """Append the audit record of a call that raised ``exc``: ``error`` is the plugin's
        error code or the error's class; a refusal by the agent profile is ``denied``."""
        if isinstance(exc, ActionFailedError):
            record.update(outcome="error", error=exc.code)
        elif isinstance(exc, AgentPolicyError):
            record.update(outcome="denied", error=type(exc).__name__)
        elif isinstance(exc, VultrinoError) and record.get("outcome") != "denied":
            record.update(outcome="error", error=type(exc).__name__)
        record["duration_ms"] = _millis(time.perf_counter_ns() - started)
        record["source"] = source
        record.setdefault("outcome", "error")
        self._audit.write(record)

    def _action(self, plugin: Plugin, name: str) -> ActionSpec:
        act = plugin.manifest.action(name)
        if act is None:
            known = ", ".join(a.name for a in plugin.manifest.actions) or "none"
            raise ActionNotFoundError(
                f"plugin {plugin.name!r} has no action {name!r} (actions: {known})",
                plugin=plugin.name,
            )
        return act

    def _type_list(self, plugin: Plugin, act: ActionSpec) -> str:
        return " or ".join(
            repr(self._canonical_type(plugin, CredentialTypeSpec(t))) for t in act.accepted_types
        )

    def _plugin_types(self, plugin: str) -> str:
        p = self.registry.get(plugin)
        return ", ".join(self._canonical_type(p, t) for t in p.manifest.credential_types)

    # --- plugins -----------------------------------------------------------------------------

    def plugins(self) -> list[Plugin]:
        return self.registry.plugins()

    def broken_plugins(self) -> dict[str, str]:
        return self.registry.broken()

    def plugin(self, name: str) -> Plugin:
        return self.registry.get(name)

    def install_plugin(
        self,
        source: str,
        *,
        subdir: str | None = None,
        force: bool = False,
        build: bool = False,
        build_output: Callable[[str], None] | None = None,
        progress: Callable[[int, int | None], None] | None = None,
    ) -> InstallResult:
        """Install a plugin (see :func:`vultrino.plugins.install.installer.install`).

        ``build=True`` allows building a source without a prebuilt module, which runs its
        build scripts; without it such a source raises ``BuildRequiredError``.
        """
        from vultrino.plugins.install import installer

        self.home.ensure()
        with self._lock:
            result = installer.install(
                source,
                plugins_dir=self.home.plugins,
                runtime=self.runtime,
                registry=self.registry,
                subdir=subdir,
                force=force,
                build=build,
                build_output=build_output,
                progress=progress,
            )
            if result.replaced:
                self.registry.reload(result.name)
            else:
                self.registry.load_one(result.name)
            self._plugins_signature = self._scan_plugins_dir()
        return result

    def remove_plugin(self, name: str) -> Path:
        from vultrino.plugins.install import installer

        with self._lock:
            if name in self._plugin_names():
                self.registry.unload(name)
            path = installer.remove(name, plugins_dir=self.home.plugins, runtime=self.runtime)
            self._plugins_signature = self._scan_plugins_dir()
        return path

    def reload_plugin(self, name: str) -> Plugin:
        """Re-read and re-validate an installed plugin (its module is instantiated now)."""
        with self._lock:
            self.registry.reload(name)
            plugin = self.registry.get(name)
            ensure = getattr(plugin, "ensure_loaded", None)
            if ensure is not None:
                ensure()
            return plugin

    def _plugin_names(self) -> set[str]:
        return {p.name for p in self.registry.plugins()} | set(self.registry.broken())

    # --- MCP tools ---------------------------------------------------------------------------

    def tools(self, *, visible: Callable[[str], bool] | None = None) -> list[ToolInfo]:
        """Every MCP tool: ``list_credentials`` then one per plugin ``[[mcp_tools]]`` entry.

        ``visible`` filters the aliases named in the ``credential`` descriptions (an agent
        profile's credential globs)."""
        creds = self.store.credentials()
        if visible is not None:
            creds = [c for c in creds if visible(c.alias)]
        tools = [
            ToolInfo(
                name=LIST_CREDENTIALS_TOOL,
                description="List the credentials you can use, by alias, with their type and "
                "description. Secret values are never shown.",
                input_schema={"type": "object", "properties": {}, "additionalProperties": False},
                plugin="vultrino",
                action=LIST_CREDENTIALS_TOOL,
                annotations={
                    "readOnlyHint": True,
                    "destructiveHint": False,
                    "idempotentHint": True,
                    "openWorldHint": False,
                },
                output_schema=LIST_CREDENTIALS_SCHEMA,
            )
        ]
        for binding in self.registry.tools():
            plugin = binding.plugin
            act = binding.action
            schema = params_json_schema(act)
            if act.needs_credential:
                types = {
                    self._canonical_type(plugin, CredentialTypeSpec(t)) for t in act.accepted_types
                }
                aliases = sorted(c.alias for c in creds if c.type in types)
                props = {
                    "credential": self._credential_prop(sorted(types), aliases),
                    **schema["properties"],
                }
                schema = {
                    **schema,
                    "properties": props,
                    "required": ["credential", *schema.get("required", [])],
                }
            tools.append(
                ToolInfo(
                    name=binding.name,
                    description=binding.description or act.description,
                    input_schema=schema,
                    plugin=plugin.name,
                    action=act.name,
                    annotations=dict(binding.annotations),
                )
            )
        return tools

    @staticmethod
    def _credential_prop(types: list[str], aliases: list[str]) -> dict[str, Any]:
        listed = ", ".join(aliases) if aliases else "none yet (add one with `vultrino add`)"
        return {
            "type": "string",
            "description": f"Alias of a credential of type {' or '.join(types)}. "
            f"Available: {listed}.",
        }

    def call_tool(
        self,
        name: str,
        arguments: Mapping[str, Any],
        *,
        source: str = "mcp",
        scope: AgentScope | None = None,
    ) -> Any:
        """Run an MCP tool by name with JSON arguments (validated before anything runs).

        With ``scope`` a tool outside the agent's profile is as unknown as one that does not
        exist, and ``list_credentials`` lists only the profile's credentials."""
        args = dict(arguments or {})
        if name == LIST_CREDENTIALS_TOOL:
            if args:
                raise ParameterError(f"{name} takes no arguments; got {sorted(args)}")
            listed = scope.credentials() if scope is not None else self.credentials()
            return [
                {"alias": c.alias, "type": c.type, "description": c.description} for c in listed
            ]
        binding = next((b for b in self.registry.tools() if b.name == name), None)
        if binding is None or (scope is not None and not scope.profile().sees_tool(name)):
            if scope is not None:  # an agent reaching past its profile is worth a record
                self._audit.write(
                    {
                        "alias": None,
                        "plugin": None,
                        "action": None,
                        "agent": scope.name,
                        "tool": name,
                        "outcome": "denied",
                        "error": "ToolOutsideProfile",
                        "duration_ms": 0.0,
                        "source": source,
                    }
                )
            raise PluginNotFoundError(f"no tool named {name!r}")
        act = binding.action
        if not act.needs_credential:
            return self.run_action(
                binding.plugin.name, act.name, args, source=source, scope=scope, tool=name
            )
        alias = args.pop("credential", None)
        if alias is None:
            raise ParameterError(
                f"tool {name!r} needs a 'credential' argument: the alias of the credential to use "
                "(call list_credentials to see them)",
                plugin=binding.plugin.name,
            )
        if not isinstance(alias, str):
            raise ParameterError(
                f"tool {name!r}: wrong type: credential must be a string (the alias of a "
                f"credential), got {type_name(alias)}; call list_credentials to see the aliases",
                plugin=binding.plugin.name,
            )
        if not alias:
            raise ParameterError(
                f"tool {name!r}: credential must not be empty: pass the alias of a credential "
                "(call list_credentials to see them)",
                plugin=binding.plugin.name,
            )
        return self.execute(
            alias,
            act.name,
            args,
            plugin=binding.plugin.name,
            source=source,
            scope=scope,
            tool=name,
        )

    # --- agents ------------------------------------------------------------------------------

    def agents(self) -> list[AgentInfo]:
        """Every agent profile, sorted by name (never the token)."""
        return [p.info() for p in self._profiles()]

    def agent_info(self, name: str) -> AgentInfo:
        return self.agent_profile(name).info()

    def agent_profile(self, name: str) -> AgentProfile:
        """The stored profile of agent ``name`` (AgentNotFoundError if there is none)."""
        for p in self._profiles():
            if p.name == name:
                return p
        raise AgentNotFoundError(f"no agent named {name!r}; `vultrino agent list` shows them")

    def _profiles(self) -> list[AgentProfile]:
        """The stored profiles, parsed once per store revision (every write, here or in
        another process, changes it), not on every call an agent makes."""
        store = self.store
        revision = store.revision
        cached = self._profiles_cache
        if cached is not None and cached[0] == revision:
            return list(cached[1])
        from vultrino.agents import AgentProfile

        profiles = [AgentProfile.from_record(r) for r in store.agent_records()]
        self._profiles_cache = (revision, tuple(profiles))
        return profiles

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
        from vultrino.agents import AgentProfile, hash_token, new_token, stamped

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
                created = self.agent_profile(name).created_at
            except AgentNotFoundError:
                created = None
        profile = stamped(profile, created)
        with self._lock:
            self.store.put_agent(profile.to_record(), replace=replace)
        return profile.info(), token

    def remove_agent(self, name: str) -> AgentInfo:
        """Delete an agent profile; its token stops working on the next request."""
        from vultrino.agents import AgentProfile

        with self._lock:
            return AgentProfile.from_record(self.store.remove_agent(name)).info()

    def agent_for_token(self, token: str) -> str | None:
        """The name of the agent whose bearer token this is, else None (every profile is
        compared, each in constant time)."""
        found = None
        for p in self._profiles():
            if p.verify_token(token) and found is None:
                found = p.name
        return found

    def as_agent(self, name: str, *, approver: Approver | None = None) -> AgentScope:
        """This facade narrowed to agent ``name``'s profile (see :mod:`vultrino.agents`).

        ``approver`` asks a person about calls the profile marks ``approve``; without one they
        are refused."""
        from vultrino.agents import AgentScope

        return AgentScope(self, name, approver=approver)

    @property
    def rate_limiter(self) -> RateLimiter:
        """The agents' rate-limit buckets; one per facade, so limits hold per process."""
        if self._rate_limiter is None:
            with self._lock:
                if self._rate_limiter is None:
                    from vultrino.agents import RateLimiter

                    self._rate_limiter = RateLimiter()
        return self._rate_limiter

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

    def refresh(self) -> bool:
        """Pick up plugins and credentials changed by other processes.

        Returns True when the tool list changed (an MCP server then notifies its client).
        """
        with self._lock:
            signature = self._scan_plugins_dir()
            if signature != self._plugins_signature:
                self.registry.load_all()
                self._plugins_signature = signature
            tools = self.tools()
            new = json.dumps([t.__dict__ for t in tools], sort_keys=True, default=str)
            changed = bool(self._tools_signature) and new != self._tools_signature
            self._tools_signature = new
            return changed

    def _scan_plugins_dir(self) -> str:
        parts: list[str] = []
        root = self.home.plugins
        if not root.is_dir():
            return ""
        for entry in sorted(root.iterdir()):
            if entry.name.startswith("."):
                continue
            try:
                files = sorted(entry.iterdir()) if entry.is_dir() else [entry]
                for f in files:
                    st = f.stat()
                    parts.append(f"{entry.name}/{f.name}:{st.st_mtime_ns}:{st.st_size}:{st.st_ino}")
            except OSError:
                parts.append(f"{entry.name}:-")
        return "|".join(parts)
