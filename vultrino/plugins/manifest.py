"""Reading ``plugin.toml`` into a :class:`~vultrino.plugins.base.PluginManifest`.

The parser never stops at the first mistake: it walks the whole document, records every problem
with its key path (``actions[1].parameters[0].type: expected one of ...``) and raises one
:class:`~vultrino.errors.ManifestError` listing them, so an author fixes everything in one pass.
Keys it does not know are warnings (``PluginManifest.warnings``), not errors, so a manifest
written for a newer Vultrino still loads. Manifests written for the Rust Vultrino parse
unchanged; the few keys of that format this version does not use are warned about and ignored.

The reference for every key is docs/plugins/manifest.md.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, cast

from vultrino._version import __version__
from vultrino.errors import ManifestError
from vultrino.plugins.base import (
    FIELD_KINDS,
    HTTP_AUTH_SCHEMES,
    PARAM_KINDS,
    ActionSpec,
    CredentialTypeSpec,
    FieldAccess,
    FieldKind,
    FieldSpec,
    HttpSpec,
    ParameterSpec,
    ParamKind,
    PluginInfo,
    PluginManifest,
    ToolSpec,
)
from vultrino.plugins.validation import (
    KIND_HINT,
    STRING_FIELD_KINDS,
    field_constraint_problems,
    param_type_fits,
    show_value,
    type_name,
)

__all__ = [
    "MANIFEST_FILE",
    "MAX_MANIFEST_BYTES",
    "MAX_NAME_LENGTH",
    "PLUGIN_NAME_RE",
    "TOOL_NAME_RE",
    "compare_versions",
    "load_manifest",
    "parse_manifest",
    "parse_manifest_bytes",
    "parse_semver",
    "read_manifest",
]

MANIFEST_FILE = "plugin.toml"
#: A manifest is a few kilobytes; anything past this is refused before parsing.
MAX_MANIFEST_BYTES = 1024 * 1024
#: Longest plugin, type, action, field, parameter or tool name.
MAX_NAME_LENGTH = 64

PLUGIN_NAME_RE = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")
SNAKE_CASE_RE = re.compile(r"[a-z][a-z0-9_]*")
IDENTIFIER_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
TOOL_NAME_RE = re.compile(r"[a-z][a-z0-9_]*")
_SEMVER_RE = re.compile(
    r"(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)"
    r"(?:-((?:0|[1-9][0-9]*|[0-9]*[A-Za-z-][0-9A-Za-z-]*)"
    r"(?:\.(?:0|[1-9][0-9]*|[0-9]*[A-Za-z-][0-9A-Za-z-]*))*))?"
    r"(?:\+([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?"
)
_PARTIAL_VERSION_RE = re.compile(r"(0|[1-9][0-9]*)(?:\.(0|[1-9][0-9]*))?")
_TOML_POSITION_RE = re.compile(r"\(at line (\d+), column (\d+)\)")

#: Parameter names an action may not use: MCP tools add ``credential`` (the alias) themselves.
RESERVED_PARAMETER_NAMES = frozenset({"credential"})

# Keys of the Rust Vultrino's manifest format that this version recognises but does not use.
_LEGACY = "a key of older Vultrino manifests that this version ignores"

# --- semver ----------------------------------------------------------------------------------

SemverKey = tuple[int, int, int, tuple[tuple[int, int | str], ...]]


def parse_semver(text: str) -> SemverKey | None:
    """A sortable key for a semver 2.0 version string (build metadata ignored), or None."""
    m = _SEMVER_RE.fullmatch(text)
    if m is None:
        return None
    pre: tuple[tuple[int, int | str], ...] = ()
    if m.group(4):
        # Numeric identifiers sort before alphanumeric ones, each group among itself.
        pre = tuple((0, int(p)) if p.isdigit() else (1, p) for p in m.group(4).split("."))
    return int(m.group(1)), int(m.group(2)), int(m.group(3)), pre


def _version_key(key: SemverKey) -> tuple[Any, ...]:
    major, minor, patch, pre = key
    # A release sorts after all of its pre-releases.
    return (major, minor, patch, 1 if not pre else 0, pre)


def compare_versions(a: str, b: str) -> int:
    """-1, 0 or 1 as semver ``a`` is lower than, equal to or higher than ``b``.

    ValueError when either is not a semver version.
    """
    ka, kb = parse_semver(a), parse_semver(b)
    if ka is None or kb is None:
        raise ValueError(f"not a semver version: {a if ka is None else b!r}")
    va, vb = _version_key(ka), _version_key(kb)
    return (va > vb) - (va < vb)


def _normalise_min_version(text: str) -> str | None:
    """``min_vultrino_version`` may omit trailing parts (``"0.2"`` means ``"0.2.0"``)."""
    if parse_semver(text) is not None:
        return text
    m = _PARTIAL_VERSION_RE.fullmatch(text)
    if m is None:
        return None
    return f"{m.group(1)}.{m.group(2) or 0}.0"


# --- reading tables --------------------------------------------------------------------------


def _key(key: str) -> str:
    """A key as it appears in a key path: bare when it can be, quoted otherwise."""
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else show_value(key)


class _Collector:
    """Problems and warnings gathered over the whole document."""

    def __init__(self) -> None:
        self.errors: list[str] = []
        self.warnings: list[str] = []

    def error(self, path: str, message: str) -> None:
        self.errors.append(f"{path}: {message}")

    def warn(self, path: str, message: str) -> None:
        self.warnings.append(f"{path}: {message}")


class _Table:
    """Typed access to one TOML table. Reading a key marks it known; a wrong type is a
    problem recorded with the key's path, and the reader returns the default instead."""

    def __init__(
        self,
        data: Mapping[str, Any],
        path: str,
        out: _Collector,
        known: tuple[str, ...],
        legacy: tuple[str, ...] = (),
    ) -> None:
        self.data = data
        self.path = path
        self.out = out
        for key in data:
            if key in known:
                continue
            where = self.at(key)
            if key in legacy:
                out.warn(where, _LEGACY)
            else:
                out.warn(where, f"unknown key, ignored (known keys: {', '.join(known)})")

    def at(self, key: str) -> str:
        return f"{self.path}.{_key(key)}" if self.path else _key(key)

    def has(self, key: str) -> bool:
        return key in self.data

    def raw(self, key: str) -> Any:
        return self.data.get(key)

    def string(self, key: str, *, required: bool = False) -> str | None:
        if key not in self.data:
            if required:
                self.out.error(self.at(key), "required")
            return None
        value = self.data[key]
        if not isinstance(value, str):
            self.out.error(self.at(key), f"expected a string, got {type_name(value)}")
            return None
        if "\x00" in value:
            self.out.error(self.at(key), "must not contain a NUL character")
            return None
        return value

    def text(self, key: str) -> str:
        """An optional descriptive string ("" when absent)."""
        return self.string(key) or ""

    def boolean(self, key: str, default: bool) -> bool:
        value = self.data.get(key, default)
        if not isinstance(value, bool):
            self.out.error(self.at(key), f"expected true or false, got {type_name(value)}")
            return default
        return value

    def count(self, key: str) -> int | None:
        if key not in self.data:
            return None
        value = self.data[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            self.out.error(self.at(key), f"expected a whole number >= 0, got {show_value(value)}")
            return None
        return value

    def tables(self, key: str) -> list[tuple[str, Mapping[str, Any]]]:
        """An array of tables (``[[key]]``) as ``(path, table)`` pairs."""
        if key not in self.data:
            return []
        value = self.data[key]
        where = self.at(key)
        if not isinstance(value, list):
            self.out.error(
                where, f"expected an array of tables ([[{key}]]), got {type_name(value)}"
            )
            return []
        items: list[tuple[str, Mapping[str, Any]]] = []
        for i, item in enumerate(value):
            if isinstance(item, Mapping):
                items.append((f"{where}[{i}]", item))
            else:
                self.out.error(f"{where}[{i}]", f"expected a table, got {type_name(item)}")
        return items


def _check_name(
    out: _Collector,
    path: str,
    name: str | None,
    pattern: re.Pattern[str],
    rule: str,
    *,
    seen: dict[str, str] | None = None,
) -> bool:
    """Check a name against its pattern and for duplicates; True when it is usable."""
    if name is None:
        return False
    ok = True
    if not pattern.fullmatch(name):
        out.error(path, f"{show_value(name)} is not a valid name: {rule}")
        ok = False
    elif len(name) > MAX_NAME_LENGTH:
        out.error(path, f"must be at most {MAX_NAME_LENGTH} characters long")
        ok = False
    if seen is not None:
        if name in seen:
            out.error(path, f"duplicate name {show_value(name)} (first used at {seen[name]})")
            ok = False
        else:
            seen[name] = path
    return ok


_SNAKE_RULE = "use snake_case: lowercase letters, digits and '_', starting with a letter"
_IDENT_RULE = "use letters, digits and '_', not starting with a digit"


# --- [plugin] --------------------------------------------------------------------------------


def _check_module_name(out: _Collector, path: str, name: str) -> None:
    if not name:
        out.error(path, "must not be empty")
    elif "/" in name or "\\" in name or ":" in name:
        out.error(
            path,
            f"{show_value(name)} must be a bare file name inside the plugin directory "
            "(no '/', '\\' or ':')",
        )
    elif name in (".", "..") or ".." in name:
        out.error(path, f"{show_value(name)} must not contain '..'")


def _parse_plugin(doc: Mapping[str, Any], out: _Collector) -> PluginInfo | None:
    if "plugin" not in doc:
        out.error("plugin", "missing the [plugin] table (with at least name and version)")
        return None
    data = doc["plugin"]
    if not isinstance(data, Mapping):
        out.error("plugin", f"expected a table ([plugin]), got {type_name(data)}")
        return None
    t = _Table(
        data,
        "plugin",
        out,
        (
            "name",
            "version",
            "description",
            "author",
            "license",
            "homepage",
            "repository",
            "format",
            "wasm_module",
            "min_vultrino_version",
        ),
    )
    name = t.string("name", required=True)
    if not _check_name(
        out,
        "plugin.name",
        name,
        PLUGIN_NAME_RE,
        "use lowercase letters, digits and single '-' between them (it is the directory name)",
    ):
        name = None
    version = t.string("version", required=True)
    if version is not None and parse_semver(version) is None:
        out.error(
            "plugin.version",
            f"{show_value(version)} is not a semver version (MAJOR.MINOR.PATCH, e.g. 1.0.0)",
        )
    fmt = t.string("format") or "wasm"
    if fmt != "wasm":
        out.error("plugin.format", f'expected "wasm" (the only format), got {show_value(fmt)}')
    module = t.string("wasm_module")
    if module is not None:
        _check_module_name(out, "plugin.wasm_module", module)
    elif fmt == "wasm" and not t.has("wasm_module"):
        out.error("plugin.wasm_module", "required: the module's file name, e.g. my_plugin.wasm")
    minimum = t.string("min_vultrino_version")
    if minimum is not None:
        normal = _normalise_min_version(minimum)
        if normal is None:
            out.error(
                "plugin.min_vultrino_version",
                f"{show_value(minimum)} is not a version (MAJOR.MINOR.PATCH, e.g. 0.1.0)",
            )
        elif compare_versions(__version__, normal) < 0:
            out.error(
                "plugin.min_vultrino_version",
                f"this plugin needs Vultrino {minimum} or newer; this is Vultrino "
                f"{__version__} — upgrade Vultrino to use it",
            )
    if name is None or version is None:
        return None
    return PluginInfo(
        name=name,
        version=version,
        description=t.text("description"),
        author=t.text("author"),
        license=t.text("license"),
        homepage=t.text("homepage"),
        repository=t.text("repository"),
        format=fmt,
        wasm_module=module,
        min_vultrino_version=minimum,
    )


# --- [[credential_types]] --------------------------------------------------------------------


def _parse_options(t: _Table) -> tuple[str, ...]:
    """``options``: strings, or ``{value, label}`` tables as the Rust Vultrino wrote them."""
    if not t.has("options"):
        return ()
    raw = t.raw("options")
    where = t.at("options")
    if not isinstance(raw, list):
        t.out.error(where, f"expected an array of strings, got {type_name(raw)}")
        return ()
    values: list[str] = []
    for i, entry in enumerate(raw):
        item = entry
        if isinstance(entry, Mapping):
            item = _Table(entry, f"{where}[{i}]", t.out, ("value", "label")).string(
                "value", required=True
            )
            if item is None:
                continue
        if not isinstance(item, str):
            t.out.error(f"{where}[{i}]", f"expected a string, got {type_name(item)}")
        elif item in values:
            t.out.error(f"{where}[{i}]", f"duplicate option {show_value(item)}")
        else:
            values.append(item)
    return tuple(values)


def _check_pattern(t: _Table) -> str | None:
    pattern = t.string("validation_pattern")
    if pattern is None:
        return None
    try:
        re.compile(pattern)
    except (re.error, RecursionError, OverflowError, ValueError) as exc:
        t.out.error(t.at("validation_pattern"), f"not a valid regular expression: {exc}")
        return None
    return pattern


def _field_default_fits(spec: FieldSpec, value: Any) -> str | None:
    if spec.type == "checkbox":
        return None if isinstance(value, bool) else "expected true or false"
    if spec.type == "number":
        return None if param_type_fits("number", value) else "expected a number"
    if not isinstance(value, str):
        return "expected a string"
    found = field_constraint_problems(spec, value)
    return "; ".join(found) if found else None


def _parse_field(
    path: str, data: Mapping[str, Any], out: _Collector, seen: dict[str, str]
) -> FieldSpec | None:
    t = _Table(
        data,
        path,
        out,
        (
            "name",
            "label",
            "type",
            "required",
            "secret",
            "help_text",
            "placeholder",
            "default",
            "options",
            "min_length",
            "max_length",
            "validation_pattern",
            "access",
            "passphrase_field",
        ),
        legacy=("validation_message",),
    )
    name = t.string("name", required=True)
    if not _check_name(out, t.at("name"), name, IDENTIFIER_RE, _IDENT_RULE, seen=seen):
        name = None
    kind = t.string("type") or "text"
    if kind not in FIELD_KINDS:
        out.error(t.at("type"), f"expected one of {', '.join(FIELD_KINDS)}, got {show_value(kind)}")
        kind = "text"
    options = _parse_options(t)
    if kind == "select" and not options:
        out.error(t.at("options"), "required for a select field: a non-empty array of strings")
    elif options and kind != "select":
        out.warn(t.at("options"), f"only used by select fields; this field is {kind}")
    min_length, max_length = t.count("min_length"), t.count("max_length")
    if min_length is not None and max_length is not None and min_length > max_length:
        out.error(t.at("min_length"), f"{min_length} is greater than max_length ({max_length})")
        min_length = max_length = None
    pattern = _check_pattern(t)
    access = t.string("access") or "guest"
    if access not in ("guest", "host"):
        out.error(t.at("access"), f'expected "guest" or "host", got {show_value(access)}')
        access = "guest"
    elif access == "host" and kind not in STRING_FIELD_KINDS:
        out.error(
            t.at("access"),
            f'"host" is for text fields (a key the host decodes); this field is {kind}',
        )
        access = "guest"
    if kind not in STRING_FIELD_KINDS:
        for key in ("min_length", "max_length", "validation_pattern"):
            if t.has(key):
                out.warn(t.at(key), f"only applies to text fields; this field is {kind}")
    spec = FieldSpec(
        name=name or "",
        label=t.text("label"),
        type=cast(FieldKind, kind),
        required=t.boolean("required", False),
        secret=t.boolean("secret", False),
        help_text=t.text("help_text"),
        placeholder=t.text("placeholder"),
        options=options,
        min_length=min_length,
        max_length=max_length,
        validation_pattern=pattern,
        access=cast(FieldAccess, access),
        passphrase_field=t.string("passphrase_field"),
    )
    default = t.raw("default")
    if default is not None:
        problem = _field_default_fits(spec, default)
        if problem is not None:
            out.error(t.at("default"), f"does not fit the {kind} field: {problem}")
        else:
            spec = dataclasses.replace(spec, default=default)
    return spec if name is not None else None


def _parse_credential_types(root: _Table, out: _Collector) -> tuple[CredentialTypeSpec, ...]:
    types: list[CredentialTypeSpec] = []
    seen: dict[str, str] = {}
    for path, data in root.tables("credential_types"):
        t = _Table(
            data, path, out, ("name", "display_name", "description", "fields"), legacy=("icon",)
        )
        name = t.string("name", required=True)
        _check_name(out, t.at("name"), name, SNAKE_CASE_RE, _SNAKE_RULE, seen=seen)
        fields: list[FieldSpec] = []
        seen_fields: dict[str, str] = {}
        paths: dict[str, str] = {}
        for fpath, fdata in t.tables("fields"):
            spec = _parse_field(fpath, fdata, out, seen_fields)
            if spec is not None:
                fields.append(spec)
                paths[spec.name] = fpath
        _check_passphrase_fields(fields, paths, out)
        if name is not None:
            types.append(
                CredentialTypeSpec(
                    name=name,
                    display_name=t.text("display_name"),
                    description=t.text("description"),
                    fields=tuple(fields),
                )
            )
    return tuple(types)


def _check_passphrase_fields(
    fields: list[FieldSpec], paths: dict[str, str], out: _Collector
) -> None:
    """``passphrase_field`` names another field of the same type, itself host-only (a
    passphrase the plugin could read would unlock the key it must not hold)."""
    by_name = {f.name: f for f in fields}
    for f in fields:
        if f.passphrase_field is None:
            continue
        where = f"{paths[f.name]}.passphrase_field"
        other = by_name.get(f.passphrase_field)
        if f.access != "host":
            out.error(where, 'only for a host-only key field (access = "host")')
        elif other is None or other is f:
            out.error(where, f"{show_value(f.passphrase_field)} is not another field of this type")
        elif other.access != "host":
            out.error(
                where,
                f"the passphrase field {show_value(other.name)} must be host-only too "
                '(access = "host")',
            )


# --- [[actions]] -----------------------------------------------------------------------------


def _parse_parameter(
    path: str, data: Mapping[str, Any], out: _Collector, seen: dict[str, str]
) -> ParameterSpec | None:
    t = _Table(
        data, path, out, ("name", "type", "required", "description", "default", "enum_values")
    )
    name = t.string("name", required=True)
    if not _check_name(out, t.at("name"), name, IDENTIFIER_RE, _IDENT_RULE, seen=seen):
        name = None
    elif name in RESERVED_PARAMETER_NAMES:
        out.error(
            t.at("name"),
            f"{show_value(name)} is reserved (MCP tools use it for the credential alias)",
        )
    kind = t.string("type") or "string"
    kind_ok = kind in PARAM_KINDS
    if not kind_ok:
        out.error(t.at("type"), f"expected one of {', '.join(PARAM_KINDS)}, got {show_value(kind)}")
    enum_values: list[Any] = []
    if t.has("enum_values"):
        raw = t.raw("enum_values")
        where = t.at("enum_values")
        if not isinstance(raw, list) or not raw:
            out.error(where, f"expected a non-empty array, got {show_value(raw)}")
        elif kind in ("object", "array"):
            out.error(where, f"not supported for {kind} parameters")
        else:
            for i, value in enumerate(raw):
                if kind_ok and not param_type_fits(kind, value):
                    out.error(
                        f"{where}[{i}]", f"expected {KIND_HINT[kind]}, got {type_name(value)}"
                    )
                elif value in enum_values:
                    out.error(f"{where}[{i}]", f"duplicate value {show_value(value)}")
                else:
                    enum_values.append(value)
    default = t.raw("default")
    if default is not None and kind_ok:
        if not param_type_fits(kind, default):
            out.error(t.at("default"), f"expected {KIND_HINT[kind]}, got {type_name(default)}")
            default = None
        elif enum_values and default not in enum_values:
            out.error(t.at("default"), f"{show_value(default)} is not one of enum_values")
            default = None
    if name is None or not kind_ok:
        return None
    return ParameterSpec(
        name=name,
        type=cast(ParamKind, kind),
        required=t.boolean("required", False),
        description=t.text("description"),
        default=default,
        enum_values=tuple(enum_values),
    )


def _action_credential_type(
    t: _Table, types: tuple[CredentialTypeSpec, ...], out: _Collector
) -> str | None:
    """Which credential type the action acts on; None for an action that needs none.

    ``requires_credential = false`` opts out. Otherwise ``credential_type`` names one of the
    plugin's types, defaulting to the only one when there is exactly one. The Rust Vultrino's
    ``credential_types = [...]`` list is accepted when it names a single type.
    """
    names = [ct.name for ct in types]
    listing = ", ".join(names) if names else "none"
    requires = t.boolean("requires_credential", True)
    chosen = t.string("credential_type")
    where = t.at("credential_type")
    if t.has("credential_types"):
        legacy = t.raw("credential_types")
        legacy_path = t.at("credential_types")
        if not isinstance(legacy, list) or not all(isinstance(x, str) for x in legacy):
            out.error(legacy_path, "expected an array of credential type names")
            return None
        if len(legacy) > 1:
            out.error(
                legacy_path,
                "an action acts on one credential type; set credential_type, or declare one "
                "action per type",
            )
            return None
        if legacy:
            if chosen is not None and chosen != legacy[0]:
                out.error(legacy_path, "contradicts credential_type")
                return None
            chosen, where = legacy[0], legacy_path
    if not requires:
        if chosen:
            out.error(where, "set, but requires_credential = false says the action needs none")
        return None
    if chosen is None:
        if len(types) == 1:
            return types[0].name
        if types:
            out.error(
                where,
                f"required because the plugin defines several credential types ({listing}); "
                "name one, or set requires_credential = false",
            )
        return None
    if chosen not in names:
        out.error(
            where,
            f"{show_value(chosen)} is not a credential type of this plugin (types: {listing}); "
            "for an action that needs no credential set requires_credential = false",
        )
        return None
    return chosen


def _parse_actions(
    root: _Table, types: tuple[CredentialTypeSpec, ...], out: _Collector
) -> tuple[ActionSpec, ...]:
    actions: list[ActionSpec] = []
    seen: dict[str, str] = {}
    for path, data in root.tables("actions"):
        t = _Table(
            data,
            path,
            out,
            (
                "name",
                "description",
                "credential_type",
                "requires_credential",
                "parameters",
                "credential_types",
            ),
        )
        name = t.string("name", required=True)
        _check_name(out, t.at("name"), name, SNAKE_CASE_RE, _SNAKE_RULE, seen=seen)
        ctype = _action_credential_type(t, types, out)
        params: list[ParameterSpec] = []
        seen_params: dict[str, str] = {}
        for ppath, pdata in t.tables("parameters"):
            spec = _parse_parameter(ppath, pdata, out, seen_params)
            if spec is not None:
                params.append(spec)
        if name is not None:
            actions.append(
                ActionSpec(
                    name=name,
                    description=t.text("description"),
                    credential_type=ctype,
                    parameters=tuple(params),
                )
            )
    return tuple(actions)


# --- [[mcp_tools]] ---------------------------------------------------------------------------


def _parse_tools(
    root: _Table, actions: tuple[ActionSpec, ...], out: _Collector
) -> tuple[ToolSpec, ...]:
    tools: list[ToolSpec] = []
    seen: dict[str, str] = {}
    action_names = [a.name for a in actions]
    for path, data in root.tables("mcp_tools"):
        t = _Table(
            data,
            path,
            out,
            ("name", "action", "description", "input_schema", "parameter_mappings", *_TOOL_HINTS),
        )
        name = t.string("name", required=True)
        _check_name(
            out,
            t.at("name"),
            name,
            TOOL_NAME_RE,
            "lowercase letters, digits and '_', starting with a letter",
            seen=seen,
        )
        action = t.string("action", required=True)
        if action is not None and action not in action_names:
            listing = ", ".join(action_names) if action_names else "none"
            out.error(
                t.at("action"),
                f"{show_value(action)} is not an action of this plugin (actions: {listing})",
            )
        hints = {key: t.boolean(key, False) if t.has(key) else None for key in _TOOL_HINTS}
        if hints["read_only"] and hints["destructive"]:
            out.error(
                t.at("destructive"),
                "a read_only tool cannot be destructive; drop one of the two",
            )
        act = next((a for a in actions if a.name == action), None)
        mappings = _parse_mappings(t, act)
        schema = _parse_input_schema(t, act, mappings)
        if name is not None and action is not None:
            tools.append(
                ToolSpec(
                    name=name,
                    action=action,
                    description=t.text("description"),
                    input_schema=schema,
                    parameter_mappings=mappings,
                    **hints,
                )
            )
    return tuple(tools)


def _param_list(act: ActionSpec) -> str:
    return ", ".join(p.name for p in act.parameters) or "none"


def _parse_mappings(t: _Table, act: ActionSpec | None) -> tuple[tuple[str, str], ...]:
    """``parameter_mappings = { tool_argument = "action_parameter" }``: renames."""
    raw = t.raw("parameter_mappings")
    if raw is None:
        return ()
    where = t.at("parameter_mappings")
    if not isinstance(raw, Mapping):
        t.out.error(
            where,
            'expected a table of renames, tool argument = "action parameter" '
            f'(e.g. {{ text = "message" }}), got {type_name(raw)}',
        )
        return ()
    params = [p.name for p in act.parameters] if act is not None else []
    pairs: list[tuple[str, str]] = []
    renamed: dict[str, str] = {}
    for left, right in raw.items():
        key = f"{where}.{_key(left)}"
        arg, param = left, right
        if isinstance(right, str) and act is not None and right not in params and left in params:
            # `parameter = "argument"`: how the original's code read the table (its docs said
            # the other way round); a table naming no parameter on the right is read so
            arg, param = right, left
        if not isinstance(param, str):
            t.out.error(
                key, f"expected the name of a parameter of the action, got {type_name(param)}"
            )
        elif not IDENTIFIER_RE.fullmatch(arg) or len(arg) > MAX_NAME_LENGTH:
            t.out.error(key, f"not a valid tool argument name: {_IDENT_RULE}")
        elif arg in RESERVED_PARAMETER_NAMES:
            t.out.error(key, "credential is every tool's alias argument; pick another name")
        elif act is not None and param not in params:
            t.out.error(
                key,
                f"{show_value(param)} is not a parameter of action {act.name} "
                f"(parameters: {_param_list(act)})",
            )
        elif param in renamed:
            t.out.error(key, f"parameter {param} is already renamed to {renamed[param]}")
        else:
            renamed[param] = arg
            pairs.append((arg, param))
    for arg, param in pairs:
        if arg in params and arg not in renamed and arg != param:
            t.out.error(
                f"{where}.{_key(arg)}",
                f"the action has a parameter named {arg} already; the tool would show two",
            )
    return tuple(pairs)


def _parse_input_schema(
    t: _Table, act: ActionSpec | None, mappings: tuple[tuple[str, str], ...]
) -> str | None:
    """``input_schema``: a JSON Schema object for the tool, as compact JSON text. Each of its
    properties must be a parameter of the action (under its ``parameter_mappings`` name), or
    ``credential``; each required parameter without a default must be one of them."""
    raw = t.raw("input_schema")
    if raw is None:
        return None
    where = t.at("input_schema")
    if not isinstance(raw, Mapping):
        t.out.error(
            where,
            'expected a table: a JSON Schema object (type = "object", properties, required), '
            f"got {type_name(raw)}",
        )
        return None
    try:
        text = json.dumps(raw, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError):
        t.out.error(where, "holds a TOML date or time, or a NaN: JSON Schema cannot carry it")
        return None
    kind = raw.get("type", "object")
    if kind != "object":
        t.out.error(
            f"{where}.type", f'a tool takes an object: expected "object", got {show_value(kind)}'
        )
    props = raw.get("properties", {})
    if not isinstance(props, Mapping):
        t.out.error(
            f"{where}.properties", f"expected a table of property schemas, got {type_name(props)}"
        )
        return None
    required = raw.get("required", [])
    if not isinstance(required, list) or not all(isinstance(r, str) for r in required):
        t.out.error(f"{where}.required", "expected an array of property names")
        required = []
    if act is None:
        return text  # the unknown action is reported already
    to_param = dict(mappings)
    shown = {param: arg for arg, param in mappings}
    params = {p.name: p for p in act.parameters}
    names = ", ".join(shown.get(p, p) for p in params) or "none"
    for prop, sub in props.items():
        key = f"{where}.properties.{_key(prop)}"
        if prop == "credential" and act.needs_credential:
            continue
        if prop in shown and prop not in to_param:
            t.out.error(
                key,
                f"parameter {prop} is renamed to {shown[prop]} by parameter_mappings: the "
                f"schema must call it {shown[prop]}",
            )
            continue
        param = params.get(to_param.get(prop) or prop)
        if param is None:
            t.out.error(
                key, f"action {act.name} takes no parameter {show_value(prop)} (it takes: {names})"
            )
            continue
        declared = sub.get("type") if isinstance(sub, Mapping) else None
        fits = declared == param.type or (declared == "integer" and param.type == "number")
        if isinstance(declared, str) and not fits:
            t.out.error(
                f"{key}.type",
                f"{show_value(declared)} does not match the parameter's type {param.type}",
            )
    for p in act.parameters:
        arg = shown.get(p.name, p.name)
        if p.required and p.default is None and arg not in props:
            t.out.error(
                f"{where}.properties",
                f"the action's required parameter {p.name} is missing"
                + (f" (as {arg}, its parameter_mappings name)" if arg != p.name else ""),
            )
    for r in required:
        if r not in props and r != "credential":
            t.out.error(f"{where}.required", f"{show_value(r)} is not one of its properties")
    return text


_TOOL_HINTS = ("read_only", "destructive", "idempotent", "open_world")


# --- [http] ----------------------------------------------------------------------------------

#: A host name as a URL names it (lowercase letters, digits, '-' and '.'), an IPv4 address, or
#: an IPv6 address in brackets; no port, no wildcard.
_HOST_RE = re.compile(
    r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)*|\[[0-9a-f:.]+\]"
)


def _parse_http(
    root: _Table, types: tuple[CredentialTypeSpec, ...], out: _Collector
) -> HttpSpec | None:
    if not root.has("http"):
        return None
    data = root.raw("http")
    if not isinstance(data, Mapping):
        out.error("http", f"expected a table ([http]), got {type_name(data)}")
        return None
    t = _Table(data, "http", out, ("hosts", "auth"))
    lists: dict[str, list[str]] = {}
    for key in ("hosts", "auth"):
        value = t.raw(key)
        if value is None:
            out.error(t.at(key), "required: a list of strings")
            continue
        if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
            out.error(t.at(key), f"expected a non-empty list of strings, got {show_value(value)}")
            continue
        lists[key] = list(dict.fromkeys(value))
    for i, host in enumerate(lists.get("hosts", [])):
        if host != host.lower() or not _HOST_RE.fullmatch(host) or len(host) > 253:
            out.error(
                f"http.hosts[{i}]",
                f"{show_value(host)} is not a host name: write it as a URL names it, lowercase, "
                'without scheme, port, path or wildcard (e.g. "api.github.com")',
            )
    fields = {f.name for ct in types for f in ct.fields}
    for i, scheme in enumerate(lists.get("auth", [])):
        needs = HTTP_AUTH_SCHEMES.get(scheme)
        if needs is None:
            out.error(
                f"http.auth[{i}]",
                f"{show_value(scheme)} is not an auth scheme (schemes: "
                f"{', '.join(HTTP_AUTH_SCHEMES)})",
            )
            continue
        missing = [n for n in needs if n not in fields]
        if missing:
            out.error(
                f"http.auth[{i}]",
                f"the {scheme} scheme reads the credential field(s) {', '.join(missing)}, "
                "which no credential type of this plugin declares",
            )
    if out.errors or "hosts" not in lists or "auth" not in lists:
        return None
    return HttpSpec(hosts=tuple(lists["hosts"]), auth=tuple(lists["auth"]))


# --- entry points ----------------------------------------------------------------------------


def _toml_error(source: str, text: str, exc: Exception) -> ManifestError:
    message = str(exc)
    m = _TOML_POSITION_RE.search(message)
    if m is not None:
        reason = message[: m.start()].rstrip()
        where = f"{source}:{m.group(1)}:{m.group(2)}"
        line = int(m.group(1))
    else:
        reason = message.replace("(at end of document)", "").strip()
        line = text.count("\n") + 1
        where = f"{source}:{line} (end of file)"
    problem = f"line {line}: invalid TOML: {reason}"
    return ManifestError(
        f"{where}: invalid TOML: {reason}. Fix the syntax and try again.", problems=[problem]
    )


def _validate(doc: Mapping[str, Any], out: _Collector) -> PluginManifest | None:
    root = _Table(
        doc,
        "",
        out,
        ("plugin", "credential_types", "actions", "mcp_tools", "http"),
        ("url_patterns",),
    )
    info = _parse_plugin(doc, out)
    types = _parse_credential_types(root, out)
    actions = _parse_actions(root, types, out)
    tools = _parse_tools(root, actions, out)
    http = _parse_http(root, types, out)
    if out.errors or info is None:
        return None
    return PluginManifest(
        plugin=info,
        credential_types=types,
        actions=actions,
        mcp_tools=tools,
        warnings=tuple(out.warnings),
        http=http,
    )


def _plugin_name(doc: Mapping[str, Any]) -> str | None:
    plugin = doc.get("plugin")
    name = plugin.get("name") if isinstance(plugin, Mapping) else None
    if isinstance(name, str) and PLUGIN_NAME_RE.fullmatch(name) and len(name) <= MAX_NAME_LENGTH:
        return name
    return None


def parse_manifest(text: str, *, source: str = MANIFEST_FILE) -> PluginManifest:
    """Parse and validate manifest text; ``source`` names it in messages.

    Raises one :class:`ManifestError` listing every problem with its key path (``.problems``),
    with ``.plugin`` set when the plugin's name could be read.
    """
    if len(text) > MAX_MANIFEST_BYTES:
        raise ManifestError(
            f"{source}: {len(text)} characters is too large for a manifest "
            f"(limit {MAX_MANIFEST_BYTES})",
            problems=[f"file: larger than {MAX_MANIFEST_BYTES} characters"],
        )
    if sys.version_info >= (3, 11):  # imported here: a cached scan never parses TOML
        import tomllib
    else:  # pragma: no cover - exercised under Python 3.10
        import tomli as tomllib
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise _toml_error(source, text, exc) from exc
    except RecursionError as exc:
        raise ManifestError(
            f"{source}: invalid TOML: arrays or tables nested too deeply",
            problems=["file: nested too deeply"],
        ) from exc
    out = _Collector()
    try:
        manifest = _validate(doc, out)
    except RecursionError as exc:  # a deeply nested default or enum value
        out.error("file", "values nested too deeply")
        manifest = None
        cause: BaseException | None = exc
    else:
        cause = None
    if manifest is None:
        name = _plugin_name(doc)
        count = len(out.errors)
        plural = "s" if count != 1 else ""
        lines = "\n".join(f"  - {p}" for p in out.errors)
        about = f" (plugin {name})" if name else ""
        raise ManifestError(
            f"{source}{about}: invalid plugin manifest, {count} problem{plural}:\n{lines}\n"
            "See docs/plugins/manifest.md for every key.",
            plugin=name,
            problems=out.errors,
        ) from cause
    return manifest


def load_manifest(path: Path) -> PluginManifest:
    """Read and validate ``path`` (a ``plugin.toml``); every failure is a :class:`ManifestError`
    naming the file."""
    data, _ = read_manifest(path)
    return parse_manifest_bytes(data, path)


def read_manifest(path: Path) -> tuple[bytes, os.stat_result]:
    """The bytes of ``path`` and the ``stat`` of the file they were read from (the manifest
    cache keys on it); a missing, unreadable or oversized file is a :class:`ManifestError`."""
    path = Path(path)
    try:
        with path.open("rb") as fh:
            stat = os.fstat(fh.fileno())
            data = fh.read(MAX_MANIFEST_BYTES + 1)
    except FileNotFoundError as exc:
        raise ManifestError(
            f"{path}: no plugin manifest here (a plugin needs a {MANIFEST_FILE})",
            problems=["file: missing"],
        ) from exc
    except OSError as exc:
        raise ManifestError(
            f"{path}: cannot read the manifest: {exc.strerror or exc}",
            problems=["file: unreadable"],
        ) from exc
    if len(data) > MAX_MANIFEST_BYTES:
        raise ManifestError(
            f"{path}: too large for a manifest (limit {MAX_MANIFEST_BYTES} bytes)",
            problems=[f"file: larger than {MAX_MANIFEST_BYTES} bytes"],
        )
    return data, stat


def parse_manifest_bytes(data: bytes, path: Path) -> PluginManifest:
    """Decode (UTF-8, a BOM allowed) and validate the bytes read from ``path``."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ManifestError(
            f"{path}: not UTF-8 text (byte {exc.start}); save the manifest as UTF-8",
            problems=["file: not UTF-8"],
        ) from exc
    return parse_manifest(text, source=str(path))
