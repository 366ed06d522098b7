"""What listings show: credential, tool and type metadata (never a secret value).

These are the values the facade, the call pipeline, the CLI and the MCP server pass around;
building them from the store's records and the registry's plugins lives here too, so a
credential or a tool is described the same way whoever asks.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from vultrino.errors import VultrinoError
from vultrino.plugins.base import CredentialTypeSpec, Plugin, qualified_type

if TYPE_CHECKING:
    from vultrino.plugins.registry import PluginRegistry
    from vultrino.store import Credential, SecretVersion, VersionRetention

__all__ = [
    "CREDENTIAL_INFO_SCHEMA",
    "CREDENTIAL_TOOLS",
    "GET_CREDENTIAL_INFO_TOOL",
    "LIST_CREDENTIALS_SCHEMA",
    "LIST_CREDENTIALS_TOOL",
    "CredentialInfo",
    "CredentialVersion",
    "ReplaceDrops",
    "ToolInfo",
    "TypeInfo",
    "canonical_type",
    "credential_info",
    "credential_versions",
    "replace_drops",
    "tool_infos",
]

LIST_CREDENTIALS_TOOL = "list_credentials"
GET_CREDENTIAL_INFO_TOOL = "get_credential_info"
#: The server's own tools (the original Vultrino's names): they read credential metadata,
#: never run an action.
CREDENTIAL_TOOLS = frozenset({LIST_CREDENTIALS_TOOL, GET_CREDENTIAL_INFO_TOOL})
#: What list_credentials returns: one entry per credential, never a secret value.
LIST_CREDENTIALS_SCHEMA: dict[str, Any] = {
    "type": "array",
    "items": {
        "type": "object",
        "properties": {
            "alias": {"type": "string"},
            "id": {
                "type": "string",
                "description": "the credential's id: names it as its alias does",
            },
            "type": {"type": "string"},
            "description": {"type": "string"},
        },
        "required": ["alias", "id", "type", "description"],
        "additionalProperties": False,
    },
}


#: What get_credential_info returns: a credential's metadata, secret fields masked.
CREDENTIAL_INFO_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "alias": {"type": "string"},
        "type": {"type": "string"},
        "description": {"type": "string"},
        "plugin": {"type": ["string", "null"]},
        "allow": {"type": "array", "items": {"type": "string"}},
        "fields": {"type": "object"},
        "created_at": {"type": "string"},
        "updated_at": {"type": "string"},
        "version": {"type": "integer"},
    },
    "required": ["alias", "type", "description", "fields"],
}


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
    #: the number of the secret fields' current version (1 until the first rotation)
    version: int = 1
    #: what the call that returned this changed (``edit``, ``rotate``, ``rollback``): field
    #: names, ``allow``, ``description``; empty elsewhere
    changed: tuple[str, ...] = ()
    #: what ``add_credential(..., replace=True)`` dropped from the credential it replaced
    dropped: ReplaceDrops | None = None
    #: the credential's stable id (a UUID), accepted wherever its alias is
    id: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "alias": self.alias,
            "type": self.type,
            "description": self.description,
            "plugin": self.plugin,
            "allow": list(self.allow),
            "fields": dict(self.fields),
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "version": self.version,
        }


@dataclass(frozen=True)
class ReplaceDrops:
    """What replacing a credential dropped: fields of the old one that were not given again
    (their names; the new credential holds their default, or nothing), allowlist patterns,
    the description, and kept secret versions (their count). Never a value."""

    fields: tuple[str, ...] = ()
    allow: tuple[str, ...] = ()
    description: bool = False
    versions: int = 0

    def __bool__(self) -> bool:
        return bool(self.fields or self.allow or self.description or self.versions)

    def to_dict(self) -> dict[str, Any]:
        return {
            "fields": list(self.fields),
            "allow": list(self.allow),
            "description": self.description,
            "versions": self.versions,
        }

    def lines(self) -> list[str]:
        """One human-readable line per kind of thing dropped."""
        out = []
        if self.fields:
            out.append(f"fields not given again: {', '.join(self.fields)}")
        if self.allow:
            out.append(f"allowlist patterns: {', '.join(self.allow)}")
        if self.description:
            out.append("the description")
        if self.versions:
            s = "s" if self.versions != 1 else ""
            out.append(f"{self.versions} kept earlier secret version{s} (no rollback to them)")
        return out


@dataclass(frozen=True)
class CredentialVersion:
    """One version of a credential's secret fields, as ``versions()`` lists it: never a value.

    ``since`` is when it became current; ``retired_at`` when it stopped (None for the current
    one); ``expires_at`` when a kept version stops being kept; ``changed`` the secret field
    names whose values it changed."""

    version: int
    current: bool
    since: str
    retired_at: str | None
    expires_at: str | None
    changed: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "current": self.current,
            "since": self.since,
            "retired_at": self.retired_at,
            "expires_at": self.expires_at,
            "changed": list(self.changed),
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
    # the credential types its ``credential`` argument takes (none: it takes no credential)
    credential_types: tuple[str, ...] = ()


@dataclass(frozen=True)
class TypeInfo:
    """A credential type users can add."""

    name: str  # as written on the command line: "api_key" or "plugin:<plugin>:<type>"
    plugin: str
    spec: CredentialTypeSpec


def canonical_type(plugin: Plugin, spec: CredentialTypeSpec) -> str:
    """A type as users write it: the bare name for a built-in, else ``plugin:<p>:<type>``."""
    return spec.name if plugin.builtin else qualified_type(plugin.name, spec.name)


def credential_info(cred: Credential, registry: PluginRegistry) -> CredentialInfo:
    """``cred``'s metadata, its secret fields (the stored ones and its type's) masked."""
    secret = set(cred.secret_fields)
    hidden: set[str] = set()
    plugin_name: str | None
    try:
        plugin, spec = registry.resolve_type(cred.type)
        secret |= set(spec.secret_fields)
        hidden = set(spec.hidden_fields)
        plugin_name = plugin.name
    except VultrinoError:
        plugin_name = None  # its plugin was removed: still listable, not usable
    shown = {
        k: ("********" if k in secret else "(hidden)" if k in hidden else v)
        for k, v in cred.fields.items()
    }
    return CredentialInfo(
        alias=cred.alias,
        type=cred.type,
        description=cred.description,
        plugin=plugin_name,
        allow=tuple(cred.allow),
        fields=shown,
        created_at=cred.created_at,
        updated_at=cred.updated_at,
        version=cred.version,
        id=cred.id,
    )


def credential_versions(
    cred: Credential, kept: Sequence[SecretVersion], retention: VersionRetention
) -> list[CredentialVersion]:
    """The current version of ``cred``'s secrets, then the ``kept`` ones, newest first."""
    out = [
        CredentialVersion(
            version=cred.version,
            current=True,
            since=cred.version_since or cred.created_at,
            retired_at=None,
            expires_at=None,
            changed=tuple(cred.version_changed),
        )
    ]
    for v in kept:
        end = retention.expires_at(v.retired_at)
        out.append(
            CredentialVersion(
                version=v.version,
                current=False,
                since=v.since,
                retired_at=v.retired_at,
                expires_at=None if end is None else end.strftime("%Y-%m-%dT%H:%M:%SZ"),
                changed=tuple(v.changed),
            )
        )
    return out


def replace_drops(
    old: Credential,
    new: Credential,
    given: Sequence[str],
    description_given: bool,
    kept_versions: int,
) -> ReplaceDrops:
    """What replacing ``old`` by ``new`` dropped: a field of ``old`` that was not ``given``
    again and whose value the new credential does not hold (compared here, never shown), the
    allowlist patterns ``new`` lacks, a description not given again, the kept versions."""
    fields = tuple(
        sorted(
            k
            for k, v in old.fields.items()
            if k not in given and (k not in new.fields or new.fields[k] != v)
        )
    )
    allow = tuple(p for p in old.allow if p not in new.allow)
    return ReplaceDrops(
        fields=fields,
        allow=allow,
        description=bool(old.description) and not description_given,
        versions=kept_versions,
    )


_READ_ONLY_HINTS = {
    "readOnlyHint": True,
    "destructiveHint": False,
    "idempotentHint": True,
    "openWorldHint": False,
}


def _list_credentials_tool() -> ToolInfo:
    return ToolInfo(
        name=LIST_CREDENTIALS_TOOL,
        description="List the credentials you can use, by alias, with their type and "
        "description. Secret values are never shown.",
        input_schema={
            "type": "object",
            "properties": {
                "pattern": {
                    "type": "string",
                    "description": "Optional glob to filter the aliases by (e.g. 'github-*')",
                }
            },
            "additionalProperties": False,
        },
        plugin="vultrino",
        action=LIST_CREDENTIALS_TOOL,
        annotations=dict(_READ_ONLY_HINTS),
        output_schema=LIST_CREDENTIALS_SCHEMA,
    )


def _get_credential_info_tool() -> ToolInfo:
    return ToolInfo(
        name=GET_CREDENTIAL_INFO_TOOL,
        description="Show one credential's metadata: its type, description, plugin, URL "
        "allowlist and non-secret fields (secret fields are shown as ********).",
        input_schema={
            "type": "object",
            "properties": {
                "credential": {
                    "type": "string",
                    "description": "The credential's alias (see list_credentials)",
                }
            },
            "required": ["credential"],
            "additionalProperties": False,
        },
        plugin="vultrino",
        action=GET_CREDENTIAL_INFO_TOOL,
        annotations=dict(_READ_ONLY_HINTS),
        output_schema=CREDENTIAL_INFO_SCHEMA,
    )


def _credential_prop(types: list[str], aliases: list[str]) -> dict[str, Any]:
    listed = ", ".join(aliases) if aliases else "none yet (add one with `vultrino add`)"
    return {
        "type": "string",
        "description": f"Alias of a credential of type {' or '.join(types)}. Available: {listed}.",
    }


def tool_infos(
    creds: Sequence[Credential],
    registry: PluginRegistry,
    visible: Callable[[str], bool] | None = None,
) -> list[ToolInfo]:
    """Every MCP tool: ``list_credentials``, ``get_credential_info``, then one per plugin
    ``[[mcp_tools]]`` entry.

    ``visible`` filters the aliases named in the ``credential`` descriptions."""
    aliases_of = [c for c in creds if visible is None or visible(c.alias)]
    tools = [_list_credentials_tool(), _get_credential_info_tool()]
    for binding in registry.tools():
        plugin = binding.plugin
        act = binding.action
        schema = binding.params_schema()  # its input_schema, or renamed by parameter_mappings
        types: set[str] = set()
        if act.needs_credential:
            types = {canonical_type(plugin, CredentialTypeSpec(t)) for t in act.accepted_types}
            aliases = sorted(c.alias for c in aliases_of if c.type in types)
            own = schema["properties"].pop("credential", None)  # a manifest's own is kept
            props = {
                "credential": own if own is not None else _credential_prop(sorted(types), aliases),
                **schema["properties"],
            }
            required = [r for r in schema.get("required", []) if r != "credential"]
            schema = {**schema, "properties": props, "required": ["credential", *required]}
        tools.append(
            ToolInfo(
                name=binding.name,
                description=binding.description or act.description,
                input_schema=schema,
                plugin=plugin.name,
                action=act.name,
                annotations=dict(binding.annotations),
                credential_types=tuple(sorted(types)),
            )
        )
    return tools
