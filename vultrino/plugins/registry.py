"""The plugin registry: the built-in plugins plus one :class:`WasmPlugin` per directory in
``$VULTRINO_HOME/plugins``.

Every plugin goes through the same door: built-ins describe themselves with the same manifest
specs a ``plugin.toml`` is parsed into. A plugin that cannot be loaded — bad manifest, missing
module, a name that does not match its directory, a name or tool that collides with another —
is recorded in :meth:`PluginRegistry.broken` with its reason and never takes the others down.
So is an installed module whose bytes no longer match the size and sha256 its
``.installed.json`` recorded at install time (a corrupted or swapped file); the check hashes the
module (well under a millisecond for a typical plugin) on every load, except that a full scan
(:meth:`PluginRegistry.load_all`) skips parsing a manifest and hashing a module that the
manifest cache (:mod:`vultrino.plugins._manifest_cache`) shows unchanged since they were last
parsed and verified.

Modules are compiled lazily (on a plugin's first call), so scanning the directory is cheap.
``generation`` changes on every load, reload or unload, so a long-running MCP server can notice
and refresh its tool list. Mutations and reads are serialized by one lock.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vultrino.errors import (
    PluginConflictError,
    PluginDisabledError,
    PluginError,
    PluginNotFoundError,
    UnknownCredentialTypeError,
    VultrinoError,
)
from vultrino.plugins._manifest_cache import ManifestCache
from vultrino.plugins.base import (
    PLUGIN_TYPE_PREFIX,
    ActionSpec,
    CredentialTypeSpec,
    Plugin,
    PluginManifest,
    qualified_type,
)
from vultrino.plugins.manifest import (
    MANIFEST_FILE,
    PLUGIN_NAME_RE,
    parse_manifest_bytes,
    read_manifest,
)
from vultrino.plugins.validation import tool_params_schema
from vultrino.plugins.wasm import RuntimeLike, RuntimeSource, WasmPlugin

__all__ = ["RESERVED_TOOL_NAMES", "PluginRegistry", "ToolBinding", "module_problem"]

#: What the installer records next to an installed plugin (name, source, size, sha256, ...).
METADATA_FILE = ".installed.json"
#: Present in a plugin's directory while it is disabled (``vultrino plugin disable NAME``).
DISABLED_FILE = ".disabled"

#: MCP tools the server itself provides; no plugin may declare a tool with one of these names.
RESERVED_TOOL_NAMES: frozenset[str] = frozenset(
    {"list_credentials", "get_credential_info", "http_request"}
)


@dataclass(frozen=True)
class ToolBinding:
    """One MCP tool: its name, the plugin and action it runs, and its description."""

    name: str
    plugin: Plugin
    action: ActionSpec
    description: str
    annotations: dict[str, bool] = field(default_factory=dict)  # MCP behaviour hints
    #: the manifest's ``input_schema`` (JSON text) and ``parameter_mappings``
    schema_json: str | None = None
    mappings: tuple[tuple[str, str], ...] = ()

    def params_schema(self) -> dict[str, Any]:
        """The tool's schema of the action's parameters (its own ``input_schema``, or the
        parameters renamed by ``parameter_mappings``), without the ``credential`` argument."""
        return tool_params_schema(self.action, self.schema_json, self.mappings)

    def input_schema(self) -> dict[str, Any]:
        """:meth:`params_schema` plus a required ``credential`` (the alias) when the action
        acts on a credential (DESIGN.md 7); a manifest's own ``credential`` property is kept."""
        schema = self.params_schema()
        if self.action.credential_type is not None:
            if "credential" not in schema["properties"]:
                schema["properties"] = {
                    "credential": {
                        "type": "string",
                        "description": "Alias of the credential to use "
                        f"(type {_type_label(self.plugin, self.action.credential_type)})",
                    },
                    **schema["properties"],
                }
            if "credential" not in schema["required"]:
                schema["required"] = ["credential", *schema["required"]]
        return schema


def module_problem(
    directory: Path, module_path: Path, *, cache: ManifestCache | None = None
) -> tuple[str | None, str | None]:
    """Check an installed module against what ``.installed.json`` recorded at install time.

    Returns ``(problem, sha256)``: ``problem`` says what is wrong and what to do (None when the
    module is the installed one), ``sha256`` is the recorded digest the module must keep (None
    for a plugin copied in by hand, without metadata: there is nothing to compare with).
    With ``cache``, a module verified before and unchanged since (same file, size, mtime and
    ctime, same ``.installed.json``) is not hashed again, and a module that passes is recorded.
    """
    reinstall = "reinstall the plugin (`vultrino plugin install SOURCE --force`)"
    try:
        meta_text = (directory / METADATA_FILE).read_text(encoding="utf-8")
        meta: Any = json.loads(meta_text)
    except FileNotFoundError:
        return None, None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        return f"its {METADATA_FILE} cannot be read ({exc}); {reinstall}", None
    if not isinstance(meta, dict):
        return f"its {METADATA_FILE} is not a JSON object; {reinstall}", None
    recorded, size = meta.get("sha256"), meta.get("size")
    if not isinstance(recorded, str):
        return None, None  # written by a version that did not record it
    try:
        with module_path.open("rb") as fh:
            stat = os.fstat(fh.fileno())  # before reading: a later change shows in the stat
            expected = recorded.lower()
            if cache is not None and cache.module_verified(
                directory.name, module_path.name, meta_text, stat, expected
            ):
                return None, expected
            data = fh.read()
    except OSError as exc:
        return (
            f"cannot read its module {module_path.name}: {exc.strerror or exc}; {reinstall}",
            None,
        )
    if isinstance(size, int) and len(data) != size:
        return (
            f"its module {module_path.name} changed after it was installed ({len(data)} bytes, "
            f"{size} when installed); {reinstall}"
        ), recorded
    import hashlib  # here: a scan served by the cache hashes nothing

    actual = hashlib.sha256(data).hexdigest()
    if actual != recorded.lower():
        return (
            f"its module {module_path.name} changed after it was installed (sha256 "
            f"{actual[:12]}…, {recorded[:12]}… when installed); {reinstall}"
        ), recorded
    if cache is not None:
        cache.put_module(directory.name, module_path.name, meta_text, stat, actual)
    return None, actual


def _type_label(plugin: Plugin, short: str) -> str:
    return short if plugin.builtin else qualified_type(plugin.name, short)


class PluginRegistry:
    """Built-in plugins first, then the installed ones, by name.

    ``runtime`` is a ``WasmRuntime`` or a zero-argument factory; a factory is called once, on
    the first plugin call, so building a registry never imports an engine. The runtime is not
    closed by the registry. ``manifest_cache`` is the file :meth:`load_all` keeps parsed
    manifests and verified module digests in (None: no cache).
    """

    def __init__(
        self,
        plugins_dir: Path,
        runtime: RuntimeSource,
        builtins: Sequence[Plugin] = (),
        *,
        reserved_tools: Iterable[str] = RESERVED_TOOL_NAMES,
        log: Any = None,
        log_for: Callable[[str], Any] | None = None,
        manifest_cache: Path | None = None,
    ) -> None:
        self.plugins_dir = Path(plugins_dir)
        self.manifest_cache = manifest_cache
        self._runtime_source = runtime
        self._runtime: RuntimeLike | None = runtime if isinstance(runtime, RuntimeLike) else None
        self._log = log
        self._log_for = log_for  # plugin name -> its log(level, text); wins over ``log``
        self._builtins: dict[str, Plugin] = {}
        for plugin in builtins:
            if plugin.name in self._builtins:
                raise PluginConflictError(
                    f"two built-in plugins are named {plugin.name}", plugin=plugin.name
                )
            self._builtins[plugin.name] = plugin
        self.reserved_tools = frozenset(reserved_tools)
        self._plugins: dict[str, WasmPlugin] = {}
        self._broken: dict[str, str] = {}
        self._disabled: set[str] = set()  # loaded, but off: no tools, actions refused
        self._lock = threading.RLock()
        self._generation = 0
        #: The manifest cache of the last :meth:`load_all` (its hit and miss counts).
        self.last_cache: ManifestCache | None = None
        # plugins refused before they reached the directory (a shared plugin whose files
        # failed their checks): shown by broken() beside the ones that failed to load
        self._refused: dict[str, str] = {}

    # --- runtime -------------------------------------------------------------------------

    def _get_runtime(self) -> RuntimeLike:
        """The shared runtime, created from the factory on first use."""
        with self._lock:
            if self._runtime is None:
                source = self._runtime_source
                assert not isinstance(source, RuntimeLike)
                self._runtime = source()
            return self._runtime

    # --- loading -------------------------------------------------------------------------

    @property
    def generation(self) -> int:
        """Incremented on every change to the set of plugins."""
        return self._generation

    def load_all(self) -> None:
        """(Re)scan ``plugins_dir``: one plugin per subdirectory, dot-directories skipped.

        A plugin that cannot be loaded is recorded in :meth:`broken` with its reason. Plugins
        are loaded in name order, so of two plugins declaring the same tool the first keeps it.
        """
        with self._lock:
            old = list(self._plugins.values())
            self._plugins = {}
            self._broken = {}
            self._disabled = set()
            for plugin in old:
                plugin.close()
            entries = self._entries()
            cache = (
                ManifestCache(self.manifest_cache)
                if entries and self.manifest_cache is not None
                else None
            )
            for entry in entries:
                try:
                    self._plugins[entry.name] = self._load_dir(entry, replacing=None, cache=cache)
                except VultrinoError as exc:
                    self._broken[entry.name] = str(exc)
                except Exception as exc:  # one odd plugin must not take the others down
                    self._broken[entry.name] = f"unexpected error: {type(exc).__name__}: {exc}"
            if cache is not None:
                cache.save()
            self.last_cache = cache
            for name, reason in self._refused.items():
                if name not in self._plugins:
                    self._broken.setdefault(name, reason)
            self._generation += 1

    def set_refused(self, refused: dict[str, str]) -> None:
        """Plugins refused before they reached the plugins directory (name -> why), listed
        by :meth:`broken` from the next :meth:`load_all` on, unless one of that name loads."""
        with self._lock:
            self._refused = dict(refused)

    def _entries(self) -> list[Path]:
        if not self.plugins_dir.is_dir():
            return []
        try:
            entries = sorted(self.plugins_dir.iterdir())
        except OSError as exc:
            raise PluginError(
                f"cannot read the plugins directory {self.plugins_dir}: {exc.strerror or exc}"
            ) from exc
        return [e for e in entries if not e.name.startswith(".") and e.is_dir()]

    def _load_dir(
        self, directory: Path, *, replacing: str | None, cache: ManifestCache | None = None
    ) -> WasmPlugin:
        manifest_path = directory / MANIFEST_FILE
        if not manifest_path.is_file():
            raise PluginError(
                f"{directory.name}: no {MANIFEST_FILE} in {directory}; remove the directory "
                "or reinstall the plugin",
                plugin=directory.name,
            )
        data, stat = read_manifest(manifest_path)
        manifest = cache.manifest(directory.name, data, stat) if cache is not None else None
        if manifest is None:
            manifest = parse_manifest_bytes(data, manifest_path)
            if cache is not None:
                cache.put_manifest(directory.name, data, stat, manifest)
        if manifest.name != directory.name:
            raise PluginError(
                f"{directory.name}: the directory holds plugin {manifest.name!r}; a plugin's "
                f"directory must be named after it — reinstall it with "
                f"`vultrino plugin install`",
                plugin=directory.name,
            )
        module = str(manifest.plugin.wasm_module)
        module_path = directory / module
        root = directory.resolve()
        if not module_path.is_file() or root not in module_path.resolve().parents:
            raise PluginError(
                f"{manifest.name}: its module {module} is missing from {directory}; "
                "reinstall the plugin",
                plugin=manifest.name,
            )
        problem, sha = module_problem(directory, module_path, cache=cache)
        if problem is not None:
            raise PluginError(f"{manifest.name}: {problem}", plugin=manifest.name)
        conflicts = self.check_conflicts(manifest, replacing=replacing)
        if conflicts:
            lines = "\n".join(f"  - {c}" for c in conflicts)
            raise PluginConflictError(
                f"{manifest.name}: conflicts with other plugins:\n{lines}\n"
                "Rename the plugin or its tools, or remove the other plugin.",
                plugin=manifest.name,
            )
        log = self._log_for(manifest.name) if self._log_for is not None else self._log
        if (directory / DISABLED_FILE).exists():
            self._disabled.add(manifest.name)
        else:
            self._disabled.discard(manifest.name)
        return WasmPlugin(
            directory,
            manifest,
            self._get_runtime,
            log=log,
            expected_sha256=sha,
            http=self._builtins.get("http") if manifest.http is not None else None,
        )

    def load_one(self, name: str, *, validate: bool = False) -> WasmPlugin:
        """(Re)load ``plugins_dir/name``, replacing a loaded plugin of that name.

        With ``validate`` the module is compiled now rather than on first call. On failure the
        plugin is recorded as broken (a previously loaded version is dropped: the registry
        mirrors what is on disk) and the error is raised.
        """
        if not PLUGIN_NAME_RE.fullmatch(name):
            raise PluginNotFoundError(f"{name!r} is not a plugin name", plugin=name)
        if name in self._builtins:
            raise PluginConflictError(
                f"{name} is a built-in plugin; it is not loaded from the plugins directory",
                plugin=name,
            )
        directory = self.plugins_dir / name
        with self._lock:
            old = self._plugins.pop(name, None)
            self._broken.pop(name, None)
            self._generation += 1
            if old is not None:
                old.close()
            if not directory.is_dir():
                raise PluginNotFoundError(
                    f"no plugin {name} in {self.plugins_dir}; run `vultrino plugin list`",
                    plugin=name,
                )
            try:
                plugin = self._load_dir(directory, replacing=name)
                if validate:
                    plugin.ensure_loaded()
            except VultrinoError as exc:
                self._broken[name] = str(exc)
                raise
            self._plugins[name] = plugin
            return plugin

    def reload(self, name: str) -> WasmPlugin:
        """Reload an installed plugin from disk and compile its module now."""
        if name in self._builtins:
            raise PluginError(f"{name} is a built-in plugin and cannot be reloaded", plugin=name)
        with self._lock:
            known = name in self._plugins or name in self._broken
            if not known and not (PLUGIN_NAME_RE.fullmatch(name) and self._dir(name).is_dir()):
                raise self._not_found(name)
            return self.load_one(name, validate=True)

    def set_enabled(self, name: str, enabled: bool) -> bool:
        """Enable or disable the installed plugin ``name``; whether that changed anything.
        The state is the ``.disabled`` file in its directory, so it outlives this process
        and a running server notices it (the directory changed)."""
        if name in self._builtins:
            raise PluginError(
                f"{name} is a built-in plugin and cannot be {'enabled' if enabled else 'disabled'}",
                plugin=name,
            )
        with self._lock:
            if name not in self._plugins and name not in self._broken:
                raise self._not_found(name)
            marker = self._dir(name) / DISABLED_FILE
            if marker.exists() != enabled:
                return False
            try:
                if enabled:
                    marker.unlink()
                else:
                    marker.write_text(
                        "disabled with `vultrino plugin disable`; "
                        "`vultrino plugin enable` removes this file\n",
                        encoding="utf-8",
                    )
            except OSError as exc:
                raise PluginError(
                    f"cannot change {marker} ({exc.strerror or exc}); nothing was changed",
                    plugin=name,
                ) from exc
            if name in self._plugins:
                self.load_one(name)
            return True

    def is_disabled(self, name: str) -> bool:
        """Whether the installed plugin ``name`` is disabled."""
        return name in self._disabled

    def check_enabled(self, name: str) -> None:
        """PluginDisabledError when plugin ``name`` is disabled."""
        if name in self._disabled:
            raise PluginDisabledError(
                f"plugin {name} is disabled, so its actions and tools are off; enable it with "
                f"`vultrino plugin enable {name}`",
                plugin=name,
            )

    def unload(self, name: str) -> None:
        """Forget a plugin (after its directory was removed); its module is closed."""
        if name in self._builtins:
            raise PluginError(f"{name} is a built-in plugin and cannot be unloaded", plugin=name)
        with self._lock:
            plugin = self._plugins.pop(name, None)
            reason = self._broken.pop(name, None)
            self._disabled.discard(name)
            if plugin is None and reason is None:
                raise self._not_found(name)
            self._generation += 1
        if plugin is not None:
            plugin.close()

    def _dir(self, name: str) -> Path:
        return self.plugins_dir / name

    # --- conflicts -----------------------------------------------------------------------

    def check_conflicts(
        self, manifest: PluginManifest, *, replacing: str | None = None
    ) -> list[str]:
        """What would collide if ``manifest`` were loaded, as ``key.path: problem`` lines.

        A plugin name may not shadow a built-in plugin or (unless ``replacing`` names it) an
        installed one; a tool name may not be reserved, a built-in plugin's, or another
        plugin's.
        """
        problems: list[str] = []
        name = manifest.name
        with self._lock:
            if name in self._builtins:
                problems.append(f"plugin.name: {name} is the name of a built-in plugin")
            elif name in self._plugins and name != replacing:
                problems.append(
                    f"plugin.name: a plugin named {name} is already installed "
                    "(replace it with --force)"
                )
            owners: dict[str, str] = {}
            for plugin in [*self._builtins.values(), *self._plugins.values()]:
                if plugin.name in (name, replacing):
                    continue
                for tool in plugin.manifest.mcp_tools:
                    kind = "built-in plugin" if plugin.builtin else "plugin"
                    owners.setdefault(tool.name, f"{kind} {plugin.name}")
        for i, tool in enumerate(manifest.mcp_tools):
            where = f"mcp_tools[{i}].name"
            if tool.name in self.reserved_tools:
                problems.append(f"{where}: {tool.name} is a built-in MCP tool")
            elif tool.name in owners:
                problems.append(
                    f"{where}: tool {tool.name} is already provided by {owners[tool.name]}"
                )
        return problems

    # --- queries -------------------------------------------------------------------------

    def plugins(self) -> list[Plugin]:
        """Built-in plugins first, then installed ones by name."""
        with self._lock:
            return [*self._builtins.values(), *(self._plugins[n] for n in sorted(self._plugins))]

    def broken(self) -> dict[str, str]:
        """Installed plugins that failed to load: name -> reason."""
        with self._lock:
            return dict(sorted(self._broken.items()))

    def _find(self, name: str) -> Plugin | None:
        with self._lock:
            return self._builtins.get(name) or self._plugins.get(name)

    def _not_found(self, name: str) -> PluginNotFoundError:
        with self._lock:
            if name in self._broken:
                return PluginNotFoundError(
                    f"plugin {name} is installed but broken: {self._broken[name]}", plugin=name
                )
            names = ", ".join(p.name for p in self.plugins()) or "none"
        return PluginNotFoundError(
            f"no plugin named {name!r} (installed: {names}); run `vultrino plugin list`",
            plugin=name,
        )

    def get(self, name: str) -> Plugin:
        """The plugin called ``name``; :class:`PluginNotFoundError` naming what exists."""
        plugin = self._find(name)
        if plugin is None:
            raise self._not_found(name)
        return plugin

    def types(self) -> list[tuple[str, Plugin, CredentialTypeSpec]]:
        """Every credential type as users write it: short for built-ins, else qualified."""
        return [
            (_type_label(p, spec.name), p, spec)
            for p in self.plugins()
            for spec in p.manifest.credential_types
        ]

    def resolve_type(self, type_str: str) -> tuple[Plugin, CredentialTypeSpec]:
        """The plugin and spec for a credential type string (``api_key`` or
        ``plugin:<plugin>:<type>``); :class:`UnknownCredentialTypeError` otherwise."""
        if type_str.startswith(PLUGIN_TYPE_PREFIX):
            plugin_name, sep, short = type_str[len(PLUGIN_TYPE_PREFIX) :].partition(":")
            if not sep or not plugin_name or not short:
                raise self._unknown_type(
                    type_str, "plugin types are written plugin:<plugin>:<type>"
                )
            plugin = self._find(plugin_name)
            if plugin is None:
                broken = self.broken().get(plugin_name)
                why = (
                    f"plugin {plugin_name} is installed but broken: {broken}"
                    if broken
                    else f"no plugin named {plugin_name} is installed"
                )
                raise self._unknown_type(type_str, why)
            spec = plugin.manifest.credential_type(short)
            if spec is None:
                own = ", ".join(t.name for t in plugin.manifest.credential_types) or "none"
                raise self._unknown_type(
                    type_str, f"plugin {plugin_name} defines no type {short} (its types: {own})"
                )
            return plugin, spec
        for plugin in self.plugins():
            if plugin.builtin:
                spec = plugin.manifest.credential_type(type_str)
                if spec is not None:
                    return plugin, spec
        guesses = [
            qualified_type(p.name, type_str)
            for p in self.plugins()
            if not p.builtin and p.manifest.credential_type(type_str) is not None
        ]
        hint = f"did you mean {' or '.join(guesses)}?" if guesses else ""
        raise self._unknown_type(type_str, hint)

    def _unknown_type(self, type_str: str, why: str) -> UnknownCredentialTypeError:
        labels = [label for label, _, _ in self.types()]
        known = ", ".join(labels) or "none"
        bundled = self._bundled_hint(type_str) if isinstance(type_str, str) else ""
        if bundled:
            # The one thing to do: a plugin that ships with Vultrino defines the type
            why = f"{why}; {bundled}" if why else bundled
            return UnknownCredentialTypeError(f"unknown credential type {type_str!r}; {why}")
        if not why and isinstance(type_str, str):
            import difflib

            close = difflib.get_close_matches(type_str, labels, n=2, cutoff=0.6)
            why = f"did you mean {' or '.join(close)}?" if close else ""
        reason = f": {why}" if why else ""
        return UnknownCredentialTypeError(
            f"unknown credential type {type_str!r}{reason}. Known types: {known} "
            "(see `vultrino types`)"
        )

    def _bundled_hint(self, type_str: str) -> str:
        """How to get credential type ``type_str`` when a plugin shipped with Vultrino defines
        it and no plugin of that name is installed, else ``""``."""
        from vultrino.plugins.install._shipped import bundled_provider

        found = bundled_provider(type_str)
        if found is None or self._find(found[0]) is not None:
            return ""
        name, full = found
        then = "" if full == type_str else f" (then use --type {full})"
        return f"the bundled plugin {name!r} provides it: vultrino plugin install {name}{then}"

    def tools(self) -> list[ToolBinding]:
        """One binding per ``[[mcp_tools]]`` entry of every loaded plugin that is enabled."""
        bindings: list[ToolBinding] = []
        for plugin in self.plugins():
            if plugin.name in self._disabled:
                continue
            for tool in plugin.manifest.mcp_tools:
                action = plugin.manifest.action(tool.action)
                if action is None:  # a built-in's self-description can be wrong; skip it
                    continue
                bindings.append(
                    ToolBinding(
                        tool.name,
                        plugin,
                        action,
                        tool.description or action.description,
                        tool.annotations(),
                        tool.input_schema,
                        tool.parameter_mappings,
                    )
                )
        return bindings

    def close(self) -> None:
        """Close every plugin (idempotent). The runtime stays open: it belongs to the caller,
        who may share it."""
        with self._lock:
            plugins = [*self._builtins.values(), *self._plugins.values()]
        for plugin in plugins:
            plugin.close()

    def __enter__(self) -> PluginRegistry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
