"""What each record of the original (Rust) Vultrino's store becomes here. No I/O.

:func:`map_credential` turns one of the original's credentials into this store's type name and
fields, or says why it cannot; :func:`map_role` and :func:`map_key` do the same for roles and
API keys. The facade (``Vultrino.import_rust``) checks the results against the installed
plugins and the store, and writes what passes. docs/cli.md ("Coming from the original
Vultrino") lists the mapping.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

__all__ = [
    "PERMISSION_MAP",
    "ImportItem",
    "ImportReport",
    "MappedCredential",
    "MappedKey",
    "MappedRole",
    "builtin_role",
    "map_credential",
    "map_key",
    "map_role",
    "original_type",
    "slug_name",
]

#: The original's permissions and the verb each becomes (its write, update and delete are one
#: verb here: ``write``).
PERMISSION_MAP: Mapping[str, str] = {
    "read": "read",
    "execute": "execute",
    "write": "write",
    "update": "write",
    "delete": "write",
}
_BUILTIN_ROLES = ("admin", "executor", "read-only")
_PREFIX_RE = re.compile(r"^vk_[A-Za-z0-9]{8}$")

_UNSUPPORTED: Mapping[str, str] = {
    "private_key": "the original's private_key type has no counterpart here; store the key "
    "as a plugin credential (a signing plugin's type) with `vultrino add`",
    "certificate": "mTLS client certificates are not supported by this Vultrino's HTTP plugin",
    "ecdsa_key": "ECDSA (Ethereum-style) keys go to the first-party `ecdsa` plugin, which keeps "
    "the key in the host: `vultrino plugin install ecdsa`, then add the key with `vultrino add "
    "--type plugin:ecdsa:ecdsa_key --field private_key=-`",
}


@dataclass(frozen=True)
class ImportItem:
    """One record of the original's store and what became of it. ``status`` is ``imported``,
    ``would import`` (a dry run), ``built-in`` (a role that exists here already) or
    ``skipped`` (``reason`` says why and what to do); ``note`` is something the user should
    know about an imported one. Never a secret value."""

    kind: str  # credential | role | key
    name: str
    source: str
    target: str
    status: str
    reason: str = ""
    note: str = ""

    def to_dict(self) -> dict[str, str]:
        return {
            "kind": self.kind,
            "name": self.name,
            "source": self.source,
            "target": self.target,
            "status": self.status,
            "reason": self.reason,
            "note": self.note,
        }


@dataclass(frozen=True)
class ImportReport:
    """What ``vultrino import --from-rust`` did (or, with ``dry_run``, would do)."""

    path: str
    dry_run: bool
    items: tuple[ImportItem, ...] = ()

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for item in self.items:
            out[item.status] = out.get(item.status, 0) + 1
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "dry_run": self.dry_run,
            "counts": self.counts(),
            "items": [i.to_dict() for i in self.items],
        }


@dataclass(repr=False)
class MappedCredential:
    """An original credential as this store would hold it (``fields`` are secret)."""

    id: str
    alias: str
    type: str
    fields: dict[str, Any]
    description: str = ""
    created_at: str = ""
    note: str = ""

    def __repr__(self) -> str:
        return f"MappedCredential(alias={self.alias!r}, type={self.type!r}, fields=<hidden>)"


@dataclass(frozen=True)
class MappedRole:
    name: str
    permissions: tuple[str, ...]
    credentials: tuple[str, ...]
    description: str
    note: str = ""


@dataclass(frozen=True)
class MappedKey:
    name: str
    prefix: str
    digest: str = field(repr=False)
    role_id: str = ""
    expires_at: str | None = None
    created_at: str = ""


def _str(value: object) -> str:
    return value if isinstance(value, str) else ""


def _time(value: object) -> str:
    """The original's chrono time (RFC 3339, maybe with nanoseconds) as this store's
    ``YYYY-MM-DDTHH:MM:SSZ``; "" when absent or unreadable."""
    text = _str(value)
    if not text:
        return ""
    m = re.fullmatch(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)", text)
    if not m:
        return ""
    zone = "+00:00" if m.group(3) == "Z" else m.group(3)
    try:
        when = datetime.fromisoformat(m.group(1) + zone)
    except ValueError:
        return ""
    return when.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def original_type(record: Mapping[str, Any]) -> str:
    """The original's name of a credential's type (its data's ``type`` tag; serde spells
    OAuth2 ``o_auth2``), as its own CLI shows it."""
    data = record.get("data")
    tag = _str(data.get("type")) if isinstance(data, dict) else ""
    return {"o_auth2": "oauth2"}.get(tag, tag) or "?"


def _plugin_type(metadata: Mapping[str, Any]) -> str:
    """``metadata.plugin_type`` as ``plugin:<plugin>:<type>`` (the original's web UI stores it
    so; a bare ``<plugin>:<type>`` is accepted too), or ""."""
    raw = _str(metadata.get("plugin_type")).strip()
    if raw.startswith("plugin:"):
        raw = raw[len("plugin:") :]
    plugin, sep, name = raw.partition(":")
    if not (sep and plugin and name) or ":" in name:
        return ""
    return f"plugin:{plugin}:{name}"


def map_credential(record: Mapping[str, Any]) -> MappedCredential | str:
    """The credential this store would hold for ``record``, or why there is none."""
    alias = _str(record.get("alias"))
    if not alias:
        return "the record has no alias"
    data = record.get("data")
    if not isinstance(data, dict):
        return "the record has no data"
    meta = record.get("metadata")
    metadata: Mapping[str, Any] = meta if isinstance(meta, dict) else {}
    tag = original_type(record)
    fields: dict[str, Any]
    note = ""
    if tag == "api_key":
        fields = {
            "key": _str(data.get("key")),
            "header": _str(data.get("header_name")) or "Authorization",
            "prefix": data.get("header_prefix") if "header_prefix" in data else "Bearer ",
        }
        our = "api_key"
    elif tag == "basic_auth":
        fields = {"username": _str(data.get("username")), "password": _str(data.get("password"))}
        our = "basic_auth"
    elif tag == "oauth2":
        refresh = _str(data.get("refresh_token"))
        scopes = data.get("scopes")
        fields = {
            "token_url": _str(data.get("token_url")),
            "client_id": _str(data.get("client_id")),
            "grant_type": "refresh_token" if refresh else "client_credentials",
        }
        if _str(data.get("client_secret")):
            fields["client_secret"] = _str(data.get("client_secret"))
        if refresh:
            fields["refresh_token"] = refresh
        if isinstance(scopes, list) and scopes:
            fields["scope"] = " ".join(str(s) for s in scopes)
        our = "oauth2"
        if data.get("access_token"):
            note = "its cached access token was left behind: a fresh one is fetched on first use"
    elif tag == "hmac_api_key":  # Binance-style signed requests: the HTTP plugin's type
        fields = {
            "api_key": _str(data.get("api_key")),
            "api_secret": _str(data.get("api_secret")),
            "header_name": _str(data.get("header_name")) or "X-MBX-APIKEY",
        }
        window = data.get("recv_window")
        if type(window) is int:
            fields["recv_window"] = window
        our = "hmac_api_key"
    elif tag == "custom":
        our = _plugin_type(metadata)
        if not our:
            return (
                "a custom credential without metadata.plugin_type: nothing says which "
                "plugin's type it is; add it again with `vultrino add --type "
                "plugin:<plugin>:<type>`"
            )
        fields = {str(k): v for k, v in data.items() if k != "type"}
    elif tag in _UNSUPPORTED:
        return _UNSUPPORTED[tag]
    else:
        return f"the original's type {tag[:40]!r} is not one this importer knows"
    if our in ("api_key", "basic_auth", "oauth2", "hmac_api_key"):
        extra = "no URL allowlist: add one with `vultrino edit " + alias + " --add-allow URL`"
        note = f"{note}; {extra}" if note else extra
    return MappedCredential(
        id=_str(record.get("id")),
        alias=alias,
        type=our,
        fields=fields,
        description=_str(metadata.get("description")),
        created_at=_time(record.get("created_at")),
        note=note,
    )


def map_role(record: Mapping[str, Any]) -> MappedRole | str:
    """The role this store would hold for ``record`` (permissions mapped by
    :data:`PERMISSION_MAP`; no credential scope means every credential), or why none."""
    name = _str(record.get("name"))
    if not name:
        return "the role has no name"
    raw = record.get("permissions")
    perms = raw if isinstance(raw, list) else []
    unknown = sorted({str(p) for p in perms} - set(PERMISSION_MAP))
    if unknown:
        return f"unknown permission(s) {', '.join(unknown)[:60]}"
    mapped = tuple(dict.fromkeys(PERMISSION_MAP[str(p)] for p in perms))
    if not mapped:
        return "the role grants no permission"
    scopes = record.get("credential_scopes")
    globs = tuple(str(s) for s in scopes) if isinstance(scopes, list) and scopes else ("*",)
    merged = sorted({str(p) for p in perms} & {"update", "delete"})
    note = f"{', '.join(merged)} became write" if merged else ""
    return MappedRole(name, mapped, globs, _str(record.get("description")), note)


def map_key(record: Mapping[str, Any]) -> MappedKey | str:
    """The API key record this store would hold, or why none. The original keeps the key's
    SHA-256 in base64, this store in hex (``sha256:<hex>``): the same digest, so the keys
    already handed out keep working."""
    name = _str(record.get("name"))
    prefix = _str(record.get("key_prefix"))
    if not _PREFIX_RE.fullmatch(prefix):
        return "its key prefix is not vk_ and 8 letters or digits"
    try:
        digest = base64.b64decode(_str(record.get("key_hash")), validate=True)
    except (binascii.Error, ValueError):
        digest = b""
    if len(digest) != 32:
        return "its key hash is not a base64 SHA-256 digest"
    expires = record.get("expires_at")
    expires_at = _time(expires) if expires else None
    if expires and not expires_at:
        return "its expiry time cannot be read"
    return MappedKey(
        name=name,
        prefix=prefix,
        digest="sha256:" + digest.hex(),
        role_id=_str(record.get("role_id")),
        expires_at=expires_at,
        created_at=_time(record.get("created_at")),
    )


def builtin_role(name: str) -> bool:
    """Whether ``name`` is one of the original's predefined roles (all three exist here)."""
    return name in _BUILTIN_ROLES


def slug_name(name: str) -> str:
    """``name`` as a role or key name this Vultrino accepts (lowercase letters, digits, ``-``
    and ``_``, at most 64, starting with a letter or digit): "CI Deploy" -> "ci-deploy"."""
    slug = re.sub(r"[^a-z0-9_-]+", "-", name.lower()).strip("-_")
    return slug[:64].rstrip("-_") or "imported"
