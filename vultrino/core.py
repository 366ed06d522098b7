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
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vultrino import audit
from vultrino._scrub import scrub, secret_forms
from vultrino.config import ENGINE_NAMES, Config, load_config
from vultrino.errors import (
    ActionFailedError,
    ActionNotFoundError,
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
    qualified_type,
)

if TYPE_CHECKING:
    from vultrino.plugins.installer import InstallResult
    from vultrino.plugins.registry import PluginRegistry
    from vultrino.runtime import WasmRuntime
    from vultrino.store import CredentialStore, KdfParams

ENV_PASSWORD = "VULTRINO_PASSWORD"  # noqa: S105 - a variable name
ENV_PASSWORD_FILE = "VULTRINO_PASSWORD_FILE"  # noqa: S105

LIST_CREDENTIALS_TOOL = "list_credentials"

Prompt = Callable[[str], str]


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
        self._plugins_signature = ""

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
                registry = PluginRegistry(self.home.plugins, lambda: self.runtime, builtins=[http])
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
        """Validate ``fields`` against the type and store the credential.

        ``allow`` is the URL allowlist used by the built-in HTTP plugin (``["*"]`` allows any
        URL, and must be asked for explicitly).
        """
        from vultrino.plugins.validation import validate_fields
        from vultrino.store import Credential

        plugin, spec = self.registry.resolve_type(type)
        clean = validate_fields(spec, fields)
        patterns: list[str] = []
        if allow:
            validate_allow = getattr(plugin, "validate_allow", None)
            if validate_allow is not None:
                patterns = list(validate_allow(list(allow)))
            else:
                patterns = list(allow)
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
    ) -> Any:
        """Run ``action`` of the plugin that owns ``alias``'s type; return its (scrubbed) result.

        ``plugin``, when given, must own the credential's type (MCP tools pass their plugin).
        """
        record: dict[str, Any] = {"alias": alias, "plugin": plugin, "action": action}

        def run() -> Any:
            cred = self.store.get(alias)
            owner, spec = self.registry.resolve_type(cred.type)
            record["plugin"] = owner.name
            if plugin is not None and owner.name != plugin:
                raise CredentialMismatchError(
                    f"credential {alias!r} is of type {cred.type!r}, which plugin {plugin!r} "
                    f"does not handle; pick a credential of one of: {self._plugin_types(plugin)}",
                    plugin=plugin,
                )
            act = self._action(owner, action)
            if not act.accepts(spec.name):
                raise CredentialMismatchError(
                    f"action {action!r} of plugin {owner.name!r} needs a credential of type "
                    f"{self._type_list(owner, act)}, but {alias!r} is of type {cred.type!r}",
                    plugin=owner.name,
                )
            from vultrino.plugins.validation import validate_params

            clean = validate_params(act, params or {}, from_cli=from_cli)
            secrets = [
                cred.fields.get(f) for f in set(cred.secret_fields) | set(spec.secret_fields)
            ]
            secrets += [v for v in cred.state.values() if isinstance(v, str)]
            view = CredentialView(
                alias=cred.alias,
                type=spec.name,
                fields=dict(cred.fields),
                allow=tuple(cred.allow),
                state=dict(cred.state),
            )
            try:
                result = owner.execute(action, clean, view)
            except ActionFailedError as exc:
                message = scrub(str(exc), secret_forms(secrets))
                raise type(exc)(message, plugin=exc.plugin, code=exc.code) from None
            if result.new_state is not None:
                with self._lock:
                    self.store.update_state(alias, result.new_state)
                secrets += [v for v in result.new_state.values() if isinstance(v, str)]
            return scrub(result.value, secret_forms(secrets))

        return self._audited(record, source, run)

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
        record: dict[str, Any] = {"alias": None, "plugin": plugin, "action": action}

        def run() -> Any:
            owner = self.registry.get(plugin)
            act = self._action(owner, action)
            if act.needs_credential:
                raise CredentialMismatchError(
                    f"action {action!r} of plugin {plugin!r} needs a credential of type "
                    f"{self._type_list(owner, act)}: run it with an alias",
                    plugin=plugin,
                )
            from vultrino.plugins.validation import validate_params

            clean = validate_params(act, params or {}, from_cli=from_cli)
            return owner.execute(action, clean, None).value

        return self._audited(record, source, run)

    def _audited(self, record: dict[str, Any], source: str, run: Callable[[], Any]) -> Any:
        """Run ``run`` and append its audit record (outcome, error class or code, duration)."""
        started = time.perf_counter()
        try:
            result = run()
            record["outcome"] = "ok"
            return result
        except ActionFailedError as exc:
            record.update(outcome="error", error=exc.code)
            raise
        except VultrinoError as exc:
            record.update(outcome="error", error=type(exc).__name__)
            raise
        finally:
            record["duration_ms"] = round((time.perf_counter() - started) * 1000, 3)
            record["source"] = source
            record.setdefault("outcome", "error")
            audit.append_record(self.home.audit_log, **record)

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
        build_output: Callable[[str], None] | None = None,
        progress: Callable[[int, int | None], None] | None = None,
        build: bool = False,
    ) -> InstallResult:
        from vultrino.plugins import installer

        self.home.ensure()
        with self._lock:
            result = installer.install(
                source,
                plugins_dir=self.home.plugins,
                runtime=self.runtime,
                registry=self.registry,
                subdir=subdir,
                force=force,
                build_output=build_output,
                progress=progress,
                build=build,
            )
            if result.replaced:
                self.registry.reload(result.name)
            else:
                self.registry.load_one(result.name)
            self._plugins_signature = self._scan_plugins_dir()
        return result

    def remove_plugin(self, name: str) -> Path:
        from vultrino.plugins import installer

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

    def tools(self) -> list[ToolInfo]:
        """Every MCP tool: ``list_credentials`` then one per plugin ``[[mcp_tools]]`` entry."""
        from vultrino.plugins.validation import params_json_schema

        creds = self.store.credentials()
        tools = [
            ToolInfo(
                name=LIST_CREDENTIALS_TOOL,
                description="List the credentials you can use, by alias, with their type and "
                "description. Secret values are never shown.",
                input_schema={"type": "object", "properties": {}, "additionalProperties": False},
                plugin="vultrino",
                action=LIST_CREDENTIALS_TOOL,
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

    def call_tool(self, name: str, arguments: Mapping[str, Any], *, source: str = "mcp") -> Any:
        """Run an MCP tool by name with JSON arguments (validated before anything runs)."""
        args = dict(arguments or {})
        if name == LIST_CREDENTIALS_TOOL:
            if args:
                raise ParameterError(f"{name} takes no arguments; got {sorted(args)}")
            return [
                {"alias": c.alias, "type": c.type, "description": c.description}
                for c in self.credentials()
            ]
        binding = next((b for b in self.registry.tools() if b.name == name), None)
        if binding is None:
            raise PluginNotFoundError(f"no tool named {name!r}")
        act = binding.action
        if not act.needs_credential:
            return self.run_action(binding.plugin.name, act.name, args, source=source)
        alias = args.pop("credential", None)
        if not isinstance(alias, str) or not alias:
            raise ParameterError(
                f"tool {name!r} needs a 'credential' argument: the alias of the credential to use "
                "(call list_credentials to see them)",
                plugin=binding.plugin.name,
            )
        return self.execute(alias, act.name, args, plugin=binding.plugin.name, source=source)

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
