"""credentials.enc: the sealed, crash-safe, multi-process credential store (DESIGN.md section 4).

The whole store is one secretbox around one msgpack document, so a reader sees either the old
or the new file and never half of one. Every mutation runs the same cycle under an exclusive
``flock`` on ``credentials.enc.lock``: re-read the current file, apply the change, write a temp
file in the same directory (0600), fsync it, ``os.replace`` it over the store, fsync the
directory (:mod:`vultrino._fs`). Two processes adding at once therefore lose nothing, and a
SIGKILL at any instant leaves either the old or the new store. See docs/store.md for the
byte-level format.

The key is derived once (Argon2id is deliberately slow) and reused for later reads and writes;
it is derived again only when another process re-keyed the store (salt or parameters changed).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import stat
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from vultrino._fs import TEMP_SUFFIX, atomic_write, fsync_dir, temp_prefix
from vultrino._msgpack import DecodeError, packb, unpackb
from vultrino.errors import (
    AgentExistsError,
    AgentNotFoundError,
    AgentValidationError,
    CredentialExistsError,
    CredentialNotFoundError,
    CredentialValidationError,
    PasswordRequiredError,
    StoreCorruptError,
    StoreError,
    StoreExistsError,
    StoreNotInitializedError,
    WrongPasswordError,
)
from vultrino.store import _sealing
from vultrino.store._generation import Generation
from vultrino.store._lock import DEFAULT_LOCK_TIMEOUT, FileLock, lock_path_for
from vultrino.store._sealing import Header, KdfParams, StoreKey, Unauthentic

__all__ = [
    "ALIAS_MAX_LENGTH",
    "MAX_STORE_BYTES",
    "Credential",
    "CredentialStore",
    "SecretVersion",
    "VersionRetention",
    "decode_all",
    "decode_document",
    "document_format",
    "decode_sections",
    "decode_store",
    "encode_document",
    "validate_alias",
]

ALIAS_MAX_LENGTH = 128
TYPE_MAX_LENGTH = 200
FIELD_NAME_MAX_LENGTH = 128
MAX_STORE_BYTES = 256 << 20  # refuse to read anything bigger: it is not a store we wrote
# Reads skip the stat of the store file while the change counter (credentials.enc.gen) is
# unchanged, but stat it at least this often: the bound on seeing a store replaced by
# something that does not bump the counter (documented in docs/store.md).
UNSIGNALLED_CHANGE_SECONDS = 1.0

_T = TypeVar("_T")


# --- the record ------------------------------------------------------------------------------


@dataclass(repr=False)
class SecretVersion:
    """An earlier value of a credential's secret fields, kept sealed after a rotation so that
    ``rollback`` can bring it back (docs/store.md, "Secret versions"). ``repr()`` hides values.

    ``fields`` holds the secret fields as they were (a secret field absent then is absent
    here), ``state`` the plugin state that went with them; ``since`` is when this version
    became current, ``retired_at`` when it stopped being current, ``changed`` the secret
    field names that differed from the version before it.
    """

    version: int
    fields: dict[str, Any]
    state: dict[str, Any] = field(default_factory=dict)
    since: str = ""
    retired_at: str = ""
    changed: list[str] = field(default_factory=list)

    def __repr__(self) -> str:
        names = ", ".join(sorted(str(k) for k in self.fields)) if _is_dict(self.fields) else "?"
        return (
            f"SecretVersion(version={self.version!r}, fields=<values hidden: {names}>, "
            f"since={self.since!r}, retired_at={self.retired_at!r}, changed={self.changed!r})"
        )

    __str__ = __repr__


@dataclass(frozen=True)
class VersionRetention:
    """How long earlier secret versions are kept: at most ``count`` of them, each for ``days``
    after it was retired (``[store] keep_versions`` and ``keep_versions_days`` in
    config.toml). Older ones are no longer listed or restorable, and the next write of the
    store drops them from the file."""

    count: int = 1
    days: float = 7.0

    def expires_at(self, retired_at: str) -> datetime | None:
        """When a version retired at ``retired_at`` stops being kept (None: unparsable)."""
        when = _parse_time(retired_at)
        return None if when is None else when + timedelta(days=self.days)

    def live(self, kept: list[SecretVersion], now: datetime | None = None) -> list[SecretVersion]:
        """The versions of ``kept`` still kept at ``now``: unexpired, newest retired first, at
        most ``count``."""
        now = now or _utcnow()
        alive = []
        for v in kept:
            end = self.expires_at(v.retired_at)
            if end is not None and end > now:
                alive.append(v)
        alive.sort(key=lambda v: (v.retired_at, v.version), reverse=True)
        return alive[: self.count]


@dataclass(repr=False)
class Credential:
    """One credential. ``fields``, ``state`` and ``kept`` hold secrets; ``repr()`` never shows
    their values.

    ``created_at`` and ``updated_at`` are ISO-8601 UTC strings (``2025-01-31T12:00:00Z``); the
    store fills them in when they are empty. ``state`` is plugin-owned data that changes without
    the user editing the credential (a refreshed OAuth token); see ``update_state``.

    ``version`` numbers the current value of the secret fields (1 until the first rotation);
    ``version_since`` is when it became current ("" = ``created_at``), ``version_changed`` the
    secret fields its rotation changed, and ``kept`` the earlier versions still kept
    (:class:`SecretVersion`, newest first).
    """

    alias: str
    type: str
    fields: dict[str, Any]
    description: str = ""
    allow: list[str] = field(default_factory=list)
    secret_fields: list[str] = field(default_factory=list)
    state: dict[str, Any] = field(default_factory=dict)
    created_at: str = ""
    updated_at: str = ""
    version: int = 1
    version_since: str = ""
    version_changed: list[str] = field(default_factory=list)
    kept: list[SecretVersion] = field(default_factory=list)
    #: a stable id (a UUID): assigned when the credential is added (or derived, once and for
    #: good, for a record written before ids existed) and kept by every change; it names the
    #: credential wherever an alias does
    id: str = ""
    #: the fields its plugin kept in the host (``access = "host"``) when it was stored: they
    #: stay host-only for this credential whatever a later manifest of that plugin says, and a
    #: change of the credential only ever adds to them
    host_fields: list[str] = field(default_factory=list)

    def __repr__(self) -> str:
        names = ", ".join(sorted(str(k) for k in self.fields)) if _is_dict(self.fields) else "?"
        state = f"<{len(self.state)} keys hidden>" if _is_dict(self.state) else "<hidden>"
        kept = len(self.kept) if isinstance(self.kept, list) else "?"
        return (
            f"Credential(alias={self.alias!r}, id={self.id!r}, type={self.type!r}, "
            f"description={self.description!r}, fields=<values hidden: {names}>, "
            f"allow={self.allow!r}, secret_fields={self.secret_fields!r}, state={state}, "
            f"created_at={self.created_at!r}, updated_at={self.updated_at!r}, "
            f"version={self.version!r}, kept=<{kept} earlier versions, values hidden>)"
        )

    __str__ = __repr__


def _is_dict(value: object) -> bool:
    return isinstance(value, dict)


_SCALARS = frozenset({str, bytes, int, float, bool, type(None)})


def _copy_value(value: Any) -> Any:
    """Deep-copy containers, share immutable scalars: callers cannot edit the store's copy."""
    if isinstance(value, dict):
        return {k: v if type(v) in _SCALARS else _copy_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [v if type(v) in _SCALARS else _copy_value(v) for v in value]
    return value


def _copy_version(v: SecretVersion) -> SecretVersion:
    return SecretVersion(
        version=v.version,
        fields=_copy_value(v.fields),
        state=_copy_value(v.state),
        since=v.since,
        retired_at=v.retired_at,
        changed=list(v.changed),
    )


def _copy_credential(cred: Credential) -> Credential:
    """A copy for a caller, without the kept secret versions: those leave the store only
    through ``kept()`` (and copying them would slow every read of a rotated store)."""
    return Credential(
        alias=cred.alias,
        type=cred.type,
        fields=_copy_value(cred.fields),
        description=cred.description,
        allow=list(cred.allow),
        secret_fields=list(cred.secret_fields),
        state=_copy_value(cred.state),
        created_at=cred.created_at,
        updated_at=cred.updated_at,
        version=cred.version,
        version_since=cred.version_since,
        version_changed=list(cred.version_changed),
        id=cred.id,
        host_fields=list(cred.host_fields),
    )


_UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
#: the namespace of the ids derived for records written before ids existed
_ID_NAMESPACE = uuid.UUID("6f1c2a9e-3b4d-5e6f-8a7b-0c1d2e3f4a5b")


def new_credential_id() -> str:
    """A fresh credential id: a random (version 4) UUID."""
    return str(uuid.uuid4())


def derived_id(alias: str, created_at: str) -> str:
    """The id of a record that has none (written before ids existed): a UUID derived from
    its alias and creation time, so every reader sees the same one until a write keeps it."""
    return str(uuid.uuid5(_ID_NAMESPACE, f"{created_at}\0{alias}"))


def is_credential_id(value: object) -> bool:
    """Whether ``value`` is written as a credential id is (a lowercase UUID)."""
    return isinstance(value, str) and _UUID_RE.fullmatch(value) is not None


def _utcnow() -> datetime:
    """The clock of version retention (tests replace it)."""
    return datetime.now(timezone.utc)


def _parse_time(value: str) -> datetime | None:
    text = value[:-1] + "+00:00" if value.endswith("Z") else value
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        return None
    return when if when.tzinfo is not None else when.replace(tzinfo=timezone.utc)


def _now() -> str:
    return _utcnow().strftime("%Y-%m-%dT%H:%M:%SZ")


# --- validation ------------------------------------------------------------------------------


def _check_name(value: object, what: str, max_length: int) -> str:
    if not isinstance(value, str):
        raise CredentialValidationError(f"{what} must be a string, not {type(value).__name__}")
    if not value:
        raise CredentialValidationError(f"{what} must not be empty")
    if len(value) > max_length:
        raise CredentialValidationError(
            f"{what} is {len(value)} characters long; the limit is {max_length}"
        )
    if not value.isprintable():
        raise CredentialValidationError(
            f"{what} {value[:40]!r} contains a control, format or non-space separator "
            "character; use printable characters only"
        )
    if value != value.strip():
        raise CredentialValidationError(
            f"{what} {value[:40]!r} must not start or end with whitespace"
        )
    return value


def validate_alias(alias: object) -> str:
    """Return ``alias`` if it is a valid alias, else raise CredentialValidationError.

    The rule (docs/store.md): a string of 1 to 128 characters, every one printable in the
    sense of ``str.isprintable`` (no control, format, surrogate or unassigned characters, no
    separators other than the ASCII space), and no leading or trailing whitespace.
    """
    return _check_name(alias, "the credential alias", ALIAS_MAX_LENGTH)


def refuse_id_shaped_alias(alias: str) -> None:
    """A new alias may not be written as a credential id is: a reference to it would be
    ambiguous (an alias wins over an id, so it would hide the credential with that id)."""
    if is_credential_id(alias):
        raise CredentialValidationError(
            f"the alias {alias!r} is written as a credential id (a UUID) is; pick a name "
            "(ids are given to credentials, never chosen)"
        )


def _check_str_list(value: object, what: str) -> list[str]:
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise CredentialValidationError(f"{what} must be a list of strings")
    return list(value)


def _check_str_dict(value: object, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise CredentialValidationError(f"{what} must be a mapping, not {type(value).__name__}")
    for key in value:
        _check_name(key, f"a key of {what}", FIELD_NAME_MAX_LENGTH)
    return value


def _check_timestamp(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise CredentialValidationError(f"{what} must be an ISO-8601 string")
    if value:
        text = value[:-1] + "+00:00" if value.endswith("Z") else value
        try:
            datetime.fromisoformat(text)
        except ValueError:
            raise CredentialValidationError(
                f"{what} {value[:40]!r} is not an ISO-8601 timestamp"
            ) from None
    return value


def _check_packable(value: dict[str, Any], what: str) -> None:
    """Reject values msgpack cannot store, naming the key but never showing the value."""
    for key, item in value.items():
        try:
            packb(item)
        except (TypeError, ValueError, OverflowError) as exc:
            raise CredentialValidationError(
                f"{what} {key!r} holds a value that cannot be stored (a {type(item).__name__}); "
                "use strings, numbers, booleans, bytes, lists or mappings"
            ) from exc


def _validated(cred: object) -> Credential:
    """A private, validated copy of ``cred`` (so later edits by the caller do not leak in)."""
    if not isinstance(cred, Credential):
        raise CredentialValidationError(f"expected a Credential, got {type(cred).__name__}")
    alias = validate_alias(cred.alias)
    _check_name(cred.type, f"the type of credential {alias!r}", TYPE_MAX_LENGTH)
    if not isinstance(cred.description, str):
        raise CredentialValidationError(f"the description of {alias!r} must be a string")
    fields = _check_str_dict(cred.fields, f"the fields of {alias!r}")
    state = _check_str_dict(cred.state, f"the state of {alias!r}")
    allow = _check_str_list(cred.allow, f"the allow list of {alias!r}")
    secret = _check_str_list(cred.secret_fields, f"secret_fields of {alias!r}")
    host = _check_str_list(cred.host_fields, f"host_fields of {alias!r}")
    created = _check_timestamp(cred.created_at, f"created_at of {alias!r}")
    updated = _check_timestamp(cred.updated_at, f"updated_at of {alias!r}")
    _check_packable(fields, f"field of {alias!r}")
    _check_packable(state, f"state key of {alias!r}")
    version = _check_version(cred.version, f"the version of {alias!r}")
    if cred.id != "" and not is_credential_id(cred.id):
        raise CredentialValidationError(
            f"the id of {alias!r} must be a lowercase UUID (or empty, to have one assigned)"
        )
    since = _check_timestamp(cred.version_since, f"version_since of {alias!r}")
    changed = _check_str_list(cred.version_changed, f"version_changed of {alias!r}")
    if not isinstance(cred.kept, list) or not all(isinstance(v, SecretVersion) for v in cred.kept):
        raise CredentialValidationError(f"the kept versions of {alias!r} must be SecretVersions")
    kept = []
    for v in cred.kept:
        what = f"kept version of {alias!r}"
        vfields = _check_str_dict(v.fields, f"the fields of a {what}")
        vstate = _check_str_dict(v.state, f"the state of a {what}")
        _check_packable(vfields, f"field of a {what}")
        _check_packable(vstate, f"state key of a {what}")
        kept.append(
            SecretVersion(
                version=_check_version(v.version, f"the number of a {what}"),
                fields=_copy_value(vfields),
                state=_copy_value(vstate),
                since=_check_timestamp(v.since, f"since of a {what}"),
                retired_at=_check_timestamp(v.retired_at, f"retired_at of a {what}"),
                changed=_check_str_list(v.changed, f"changed of a {what}"),
            )
        )
    return Credential(
        alias=alias,
        type=cred.type,
        fields=_copy_value(fields),
        description=cred.description,
        allow=allow,
        secret_fields=secret,
        state=_copy_value(state),
        created_at=created,
        updated_at=updated,
        version=version,
        version_since=since,
        version_changed=changed,
        kept=kept,
        id=cred.id,
        host_fields=host,
    )


def _check_version(value: object, what: str) -> int:
    if type(value) is not int or not 1 <= value < 2**31:
        raise CredentialValidationError(f"{what} must be a positive integer")
    return value


# --- the document inside the secretbox -------------------------------------------------------


def _all_str(items: Any) -> bool:
    # A plain loop, not all(<generator>): this runs four times per record on every load.
    for item in items:  # noqa: SIM110
        if type(item) is not str:
            return False
    return True


def encode_document(
    header: Header,
    records: dict[str, Credential],
    agents: dict[str, dict[str, Any]] | None = None,
    audit_key: bytes | None = None,
    api_keys: dict[str, dict[str, Any]] | None = None,
    *,
    admin_hash: str | None = None,
) -> bytes:
    """The msgpack plaintext: a copy of the header (binding it), the records by alias, the
    agent profiles and roles by name (a key written only when there is at least one), the
    audit log's signing key (written only once there is one), the API keys by id (written
    only when there is at least one) and the web UI's admin password hash (written only once
    one is set)."""
    doc: dict[str, Any] = {
        "header": header.raw,
        "credentials": [_encode_record(c) for c in sorted(records.values(), key=lambda c: c.alias)],
    }
    if agents:
        doc["agents"] = [agents[name] for name in sorted(agents)]
    if audit_key is not None:
        doc["audit_key"] = audit_key
    if api_keys:
        doc["api_keys"] = [api_keys[k] for k in sorted(api_keys)]
    if admin_hash is not None:
        doc["admin_password"] = admin_hash
    return packb(doc)


def _encode_record(c: Credential) -> dict[str, Any]:
    rec: dict[str, Any] = {
        "id": c.id,
        "alias": c.alias,
        "type": c.type,
        "description": c.description,
        "fields": c.fields,
        "allow": c.allow,
        "secret_fields": c.secret_fields,
        "state": c.state,
        "created_at": c.created_at,
        "updated_at": c.updated_at,
    }
    if c.host_fields:  # written only when there are some: other records are as they were
        rec["host_fields"] = c.host_fields
    # Written only once a credential has been rotated: a record that never was is
    # byte for byte the format it always was.
    if c.version != 1 or c.version_since or c.version_changed or c.kept:
        rec["version"] = c.version
        rec["version_since"] = c.version_since
        rec["version_changed"] = c.version_changed
        rec["kept"] = [
            {
                "version": v.version,
                "fields": v.fields,
                "state": v.state,
                "since": v.since,
                "retired_at": v.retired_at,
                "changed": v.changed,
            }
            for v in c.kept
        ]
    return rec


def _decode_kept(raw: Any) -> list[SecretVersion] | None:
    """The kept versions of a record, or None when malformed."""
    if not isinstance(raw, list):
        return None
    out = []
    for item in raw:
        if not isinstance(item, dict):
            return None
        number = item.get("version")
        fields = item.get("fields")
        state = item.get("state", {})
        since = item.get("since", "")
        retired = item.get("retired_at", "")
        changed = item.get("changed", [])
        if not (
            type(number) is int
            and number >= 1
            and isinstance(fields, dict)
            and _all_str(fields)
            and isinstance(state, dict)
            and _all_str(state)
            and isinstance(since, str)
            and isinstance(retired, str)
            and isinstance(changed, list)
            and _all_str(changed)
        ):
            return None
        out.append(SecretVersion(number, fields, state, since, retired, changed))
    return out


def document_format(
    agents: dict[str, dict[str, Any]],
    api_keys: dict[str, dict[str, Any]],
    admin_hash: str | None = None,
) -> int:
    """The format byte a document needs: 2 once it holds an API key, a role or an admin
    password (an older Vultrino would drop them on its next write, so it must refuse the store
    instead), else 1 (byte for byte what stores were before)."""
    if (
        api_keys
        or admin_hash is not None
        or any(rec.get("kind") == "role" for rec in agents.values())
    ):
        return 2
    return 1


def decode_document(plaintext: bytes, header: Header, where: str) -> dict[str, Credential]:
    """Parse the decrypted document's credentials; see :func:`decode_sections`."""
    return decode_sections(plaintext, header, where)[0]


def decode_sections(
    plaintext: bytes, header: Header, where: str
) -> tuple[dict[str, Credential], dict[str, dict[str, Any]]]:
    records, agents, _ = decode_store(plaintext, header, where)
    return records, agents


def decode_store(
    plaintext: bytes, header: Header, where: str
) -> tuple[dict[str, Credential], dict[str, dict[str, Any]], bytes | None]:
    """:func:`decode_sections` and the audit log's Ed25519 signing key (its 32-byte seed;
    None in a store that never signed an audit head)."""
    records, agents, audit_key, _, _ = decode_all(plaintext, header, where)
    return records, agents, audit_key


def decode_all(
    plaintext: bytes, header: Header, where: str
) -> tuple[
    dict[str, Credential],
    dict[str, dict[str, Any]],
    bytes | None,
    dict[str, dict[str, Any]],
    str | None,
]:
    """Parse the decrypted document: the credentials by alias, the agent profiles and roles
    by name, the audit signing key, the API key records by id and the admin password hash.

    Anything malformed is a StoreCorruptError. The document must repeat the file header byte
    for byte, which binds every header byte to the authenticated content. A document without
    ``agents`` (every store written before profiles existed) has none. Other unknown keys are
    ignored (and dropped on the next write). The store checks only the shape of a profile (a
    map with a string ``name``) and of an API key (a map with a string ``id``); what their keys
    mean is :mod:`vultrino.policy`'s business.
    """

    def corrupt(what: str) -> StoreCorruptError:
        return StoreCorruptError(
            f"{where} decrypted but its contents are malformed ({what}); restore it from a backup"
        )

    try:
        doc = unpackb(plaintext)
    except DecodeError:
        raise corrupt("not a MessagePack document") from None
    if not isinstance(doc, dict):
        raise corrupt("the document is not a map")
    if doc.get("header") != header.raw:
        raise corrupt("the sealed copy of the header does not match the file header")
    items = doc.get("credentials")
    if not isinstance(items, list):
        raise corrupt("no credential list")
    out: dict[str, Credential] = {}
    for index, rec in enumerate(items):
        if not isinstance(rec, dict):
            raise corrupt(f"record {index} is not a map")
        alias = rec.get("alias")
        ctype = rec.get("type")
        fields = rec.get("fields")
        state = rec.get("state", {})
        allow = rec.get("allow", [])
        secret = rec.get("secret_fields", [])
        description = rec.get("description", "")
        created = rec.get("created_at", "")
        updated = rec.get("updated_at", "")
        if not (
            isinstance(alias, str)
            and alias
            and isinstance(ctype, str)
            and isinstance(description, str)
            and isinstance(created, str)
            and isinstance(updated, str)
            and isinstance(fields, dict)
            and _all_str(fields)
            and isinstance(state, dict)
            and _all_str(state)
            and isinstance(allow, list)
            and _all_str(allow)
            and isinstance(secret, list)
            and _all_str(secret)
        ):
            raise corrupt(f"record {index} has missing or mistyped keys")
        if alias in out:
            raise corrupt(f"record {index} repeats an alias")
        cred = Credential(
            alias=alias,
            type=ctype,
            fields=fields,
            description=description,
            allow=allow,
            secret_fields=secret,
            state=state,
            created_at=created,
            updated_at=updated,
        )
        stored_id = rec.get("id")
        if stored_id is None or stored_id == "":
            cred.id = derived_id(alias, created)
        elif is_credential_id(stored_id):
            cred.id = stored_id
        else:
            raise corrupt(f"record {index} has a malformed id")
        host = rec.get("host_fields")
        if host is not None:
            if not (isinstance(host, list) and _all_str(host)):
                raise corrupt(f"record {index} has malformed host_fields")
            cred.host_fields = host
        if "version" in rec:  # a rotated credential (older stores have none)
            number = rec.get("version")
            since = rec.get("version_since", "")
            changed = rec.get("version_changed", [])
            kept = _decode_kept(rec.get("kept", []))
            if not (
                type(number) is int
                and number >= 1
                and isinstance(since, str)
                and isinstance(changed, list)
                and _all_str(changed)
                and kept is not None
            ):
                raise corrupt(f"record {index} has malformed secret versions")
            cred.version, cred.version_since = number, since
            cred.version_changed, cred.kept = changed, kept
        out[alias] = cred
    agents: dict[str, dict[str, Any]] = {}
    raw_agents = doc.get("agents", [])
    if not isinstance(raw_agents, list):
        raise corrupt("the agent list is not a list")
    for index, rec in enumerate(raw_agents):
        if not isinstance(rec, dict) or not _all_str(rec):
            raise corrupt(f"agent profile {index} is not a map with string keys")
        name = rec.get("name")
        if not isinstance(name, str) or not name:
            raise corrupt(f"agent profile {index} has no name")
        if name in agents:
            raise corrupt(f"agent profile {index} repeats a name")
        agents[name] = rec
    audit_key = doc.get("audit_key")
    if audit_key is not None and not (isinstance(audit_key, bytes) and len(audit_key) == 32):
        raise corrupt("the audit signing key is not 32 bytes")
    keys: dict[str, dict[str, Any]] = {}
    raw_keys = doc.get("api_keys", [])
    if not isinstance(raw_keys, list):
        raise corrupt("the API key list is not a list")
    for index, rec in enumerate(raw_keys):
        if not isinstance(rec, dict) or not _all_str(rec):
            raise corrupt(f"API key {index} is not a map with string keys")
        key_id = rec.get("id")
        if not isinstance(key_id, str) or not key_id:
            raise corrupt(f"API key {index} has no id")
        if key_id in keys:
            raise corrupt(f"API key {index} repeats an id")
        keys[key_id] = rec
    admin_hash = doc.get("admin_password")
    if admin_hash is not None and not (isinstance(admin_hash, str) and admin_hash):
        raise corrupt("the admin password hash is not a string")
    return out, agents, audit_key, keys, admin_hash


# --- files -----------------------------------------------------------------------------------

_Signature = tuple[int, int, int, int, int]


def _signature(st: os.stat_result) -> _Signature:
    """What tells a changed file apart cheaply: writers always rename a new inode into place."""
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _fingerprint(data: bytes) -> bytes:
    """A digest of the whole file: equal means the very version we already decrypted and
    parsed (hashing 2 MB costs milliseconds; decrypting and parsing it costs far more)."""
    return hashlib.blake2b(data, digest_size=32).digest()


def _read_store(path: Path) -> tuple[bytes, _Signature]:
    """The whole file and its stat signature, read through one descriptor (so they agree)."""
    try:
        # O_NONBLOCK: a FIFO planted at the path must not hang us (no effect on regular files).
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    except FileNotFoundError:
        raise StoreNotInitializedError(
            f"no credential store at {path}; run `vultrino init` to create one"
        ) from None
    except IsADirectoryError:
        raise StoreCorruptError(f"{path} is a directory, not a credential store") from None
    except OSError as exc:
        raise StoreError(f"cannot read {path} ({exc.strerror}); check its permissions") from exc
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise StoreCorruptError(f"{path} is a directory, not a credential store")
        if not stat.S_ISREG(st.st_mode):
            raise StoreCorruptError(f"{path} is not a regular file, so not a credential store")
        if st.st_size > MAX_STORE_BYTES:
            raise StoreCorruptError(
                f"{path} is {st.st_size} bytes, larger than any store Vultrino writes "
                f"({MAX_STORE_BYTES}); it is not a credential store"
            )
        chunks = []
        remaining = MAX_STORE_BYTES + 1
        while remaining > 0:
            chunk = os.read(fd, min(remaining, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            remaining -= len(chunk)
        data = b"".join(chunks)
    except OSError as exc:
        raise StoreError(f"cannot read {path} ({exc.strerror})") from exc
    finally:
        os.close(fd)
    if len(data) > MAX_STORE_BYTES:
        raise StoreCorruptError(f"{path} is larger than any store Vultrino writes")
    return data, _signature(st)


def _remove_stale_temps(path: Path) -> None:
    """Delete temp files left by writers that died. Only called while holding the lock, so
    any temp file present belongs to a dead process (writers write only under the lock)."""
    prefix = temp_prefix(path)
    with contextlib.suppress(OSError):
        for entry in os.scandir(path.parent):
            if entry.name.startswith(prefix) and entry.name.endswith(TEMP_SUFFIX):
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)


def _write_file(path: Path, data: bytes) -> None:
    """Replace the store file with ``data`` (0600, fsynced); the caller syncs the directory."""
    try:
        atomic_write(path, data, mode=0o600, fsync_parent=False)
    except OSError as exc:
        hint = "; check the directory permissions" if isinstance(exc, PermissionError) else ""
        raise StoreError(
            f"cannot write the credential store in {path.parent} ({exc.strerror}{hint}); "
            "the store is unchanged"
        ) from exc


def _fsync_dir(directory: Path) -> None:
    try:
        fsync_dir(directory)
    except OSError as exc:
        raise StoreError(
            f"the store in {directory} was written, but syncing the directory failed "
            f"({exc.strerror}); the change may not survive a power loss"
        ) from exc


def _password_bytes(password: object, *, new: bool) -> bytearray:
    if not isinstance(password, str):
        raise PasswordRequiredError(
            "a store password is required (set VULTRINO_PASSWORD or VULTRINO_PASSWORD_FILE)"
        )
    if new and not password:
        raise PasswordRequiredError("the store password must not be empty")
    return bytearray(password.encode("utf-8"))


# --- the store -------------------------------------------------------------------------------


class _Unchanged(Exception):  # noqa: N818 - control flow inside modify(), never raised out
    def __init__(self, cred: Credential) -> None:
        super().__init__("unchanged")
        self.cred = cred


def _retired(cred: Credential, names: set[str], now: str) -> SecretVersion:
    """``cred``'s current secret values (the fields in ``names``) as a kept version."""
    return SecretVersion(
        version=cred.version,
        fields={k: _copy_value(cred.fields[k]) for k in sorted(names) if k in cred.fields},
        state=_copy_value(cred.state),
        since=cred.version_since or cred.created_at,
        retired_at=now,
        changed=list(cred.version_changed),
    )


class CredentialStore:
    """An open credential store. Create with :meth:`create`, open with :meth:`open`.

    Thread-safe; safe to use from several processes at once (see the module docstring). Use it
    as a context manager, or call :meth:`close`, to wipe the key (best effort).
    """

    def __init__(
        self,
        path: Path,
        *,
        password: bytearray | None,
        key: bytearray,
        header: Header,
        records: dict[str, Credential],
        signature: _Signature,
        fingerprint: bytes,
        lock_timeout: float,
        agents: dict[str, dict[str, Any]] | None = None,
        audit_key: bytes | None = None,
        retention: VersionRetention | None = None,
        api_keys: dict[str, dict[str, Any]] | None = None,
        admin_hash: str | None = None,
    ) -> None:
        """Internal: use :meth:`create` or :meth:`open`."""
        self._init_state(
            password=password,
            key=key,
            header=header,
            records=records,
            agents=agents,
            audit_key=audit_key,
            retention=retention,
            api_keys=api_keys,
            admin_hash=admin_hash,
        )
        self._path = path
        self._signature = signature
        self._fingerprint = fingerprint
        self._lock_timeout = lock_timeout
        self._generation = Generation(path)
        self._generation.attach()
        self._seen_generation: int | None = None  # None: the next read stats the file
        self._stat_at = 0.0

    def _init_state(
        self,
        *,
        password: bytearray | None,
        key: bytearray,
        header: Header,
        records: dict[str, Credential],
        agents: dict[str, dict[str, Any]] | None,
        audit_key: bytes | None,
        retention: VersionRetention | None,
        api_keys: dict[str, dict[str, Any]] | None,
        admin_hash: str | None = None,
    ) -> None:
        """What every backend keeps in memory: the key, the header, the decoded records."""
        self._admin_hash = admin_hash
        self._pending_admin: tuple[str | None] | None = None
        self._retention = retention or VersionRetention()
        self._api_keys: dict[str, dict[str, Any]] = api_keys or {}
        self._pending_keys: dict[str, dict[str, Any]] | None = None
        self._audit_key = audit_key
        self._pending_audit_key: bytes | None = None
        self._agents: dict[str, dict[str, Any]] = agents or {}
        self._pending_agents: dict[str, dict[str, Any]] | None = None
        self._password: bytearray | None = password
        self._key: bytearray | None = key
        self._header = header
        self._records = records
        self._revision = 0  # see the revision property
        self._sorted: list[Credential] | None = None
        self._id_index: tuple[int, dict[str, str]] | None = None  # (revision, id -> alias)
        self._mutex = threading.RLock()

    # -- constructors ---------------------------------------------------------------------

    @staticmethod
    def exists(path: Path) -> bool:
        """Whether something (a store, or anything else) is at ``path``."""
        return os.path.lexists(path)

    @classmethod
    def set_aside(
        cls, path: Path, backups: Path, *, lock_timeout: float = DEFAULT_LOCK_TIMEOUT
    ) -> Path:
        """Move the store file at ``path``, unchanged (still sealed under its password), into
        ``backups`` (created 0700) as ``<name>.<UTC time>``, under the store's lock so no
        writer is cut off mid-write; the path it now has (``vultrino init --force``)."""
        path = Path(path)
        try:
            backups.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(
                f"cannot create {backups} ({exc.strerror}); nothing was moved"
            ) from exc
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        with FileLock(lock_path_for(path), timeout=lock_timeout):
            if not cls.exists(path):
                raise StoreNotInitializedError(f"no credential store at {path} to set aside")
            target, n = backups / f"{path.name}.{stamp}", 1
            while cls.exists(target):
                target, n = backups / f"{path.name}.{stamp}-{n}", n + 1
            try:
                os.rename(path, target)
            except OSError as exc:
                raise StoreError(
                    f"cannot move {path} to {target} ({exc.strerror}); nothing was changed"
                ) from exc
            fsync_dir(backups)
            _fsync_dir(path.parent)
            Generation(path).bump()  # a process holding the old store sees it changed
        return target

    @classmethod
    def create(
        cls,
        path: Path,
        password: str,
        kdf: KdfParams | None = None,
        *,
        lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
        retention: VersionRetention | None = None,
    ) -> CredentialStore:
        """Create an empty store (file 0600; a missing parent directory is created 0700)."""
        path = Path(path)
        if cls.exists(path):
            raise cls._exists_error(path)
        pw = _password_bytes(password, new=True)
        params = kdf if kdf is not None else KdfParams.default()
        salt = _sealing.new_salt()
        key = _sealing.derive_key(bytes(pw), salt, params)
        parent = path.parent
        if not parent.exists():
            try:
                parent.mkdir(mode=0o700, parents=True, exist_ok=True)
                os.chmod(parent, 0o700)
            except OSError as exc:
                raise StoreError(f"cannot create {parent} ({exc.strerror})") from exc
        with FileLock(lock_path_for(path), timeout=lock_timeout):
            if cls.exists(path):
                _sealing.wipe(key)
                raise cls._exists_error(path)
            _remove_stale_temps(path)
            header = _sealing.new_header(params, salt)
            data = _sealing.seal_box(key, header, encode_document(header, {}))
            _write_file(path, data)
            signature = _signature(os.stat(path))
            _fsync_dir(parent)
            Generation(path).bump()
        return cls(
            path,
            password=pw,
            key=key,
            header=header,
            records={},
            signature=signature,
            fingerprint=_fingerprint(data),
            lock_timeout=lock_timeout,
            retention=retention,
        )

    @staticmethod
    def _exists_error(path: Path) -> StoreExistsError:
        return StoreExistsError(
            f"a credential store already exists at {path}; use it (`vultrino rekey` changes "
            "its password), or replace it with `vultrino init --force`, which keeps the old "
            "one in backups/"
        )

    @classmethod
    def open(
        cls,
        path: Path,
        password: str | None = None,
        *,
        key: StoreKey | None = None,
        lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
        retention: VersionRetention | None = None,
    ) -> CredentialStore:
        """Open an existing store with its password (the key is derived once) or with ``key``,
        a key derived earlier (:meth:`session_key`; what an unlock session holds), which must
        be for the file's header binding. Either way the secretbox is opened the same way.
        ``retention`` says how long earlier secret versions are kept (default: the last one,
        for 7 days)."""
        path = Path(path)
        if key is not None and password is not None:
            raise ValueError("open a store with its password or with a key, not both")
        pw = None if key is not None else _password_bytes(password, new=False)
        data, signature = _read_store(path)
        header = _sealing.parse_header(data, str(path))
        if key is None:
            assert pw is not None
            opened = _sealing.derive_key(bytes(pw), header.salt, header.kdf)
        elif key.binding != header.binding:
            _sealing.wipe(pw)
            raise WrongPasswordError(
                f"cannot open {path} with the unlock session's key: the store was re-keyed "
                "since the session began; run `vultrino unlock` again"
            )
        else:
            opened = bytearray(key.key)
        try:
            plaintext = _sealing.open_box(opened, header, data)
        except Unauthentic:
            _sealing.wipe(opened)
            _sealing.wipe(pw)
            if key is not None:
                raise WrongPasswordError(
                    f"cannot open {path} with the unlock session's key although the store was "
                    "not re-keyed: the file was modified; run `vultrino lock`, and restore the "
                    "store from a backup if the password does not open it either"
                ) from None
            raise WrongPasswordError(
                f"cannot open {path}: wrong password, or the file was modified; check the "
                "password (VULTRINO_PASSWORD / VULTRINO_PASSWORD_FILE) or restore the store "
                "from a backup"
            ) from None
        records, agents, audit_key, api_keys, admin_hash = decode_all(plaintext, header, str(path))
        return cls(
            path,
            password=pw,
            key=opened,
            header=header,
            records=records,
            agents=agents,
            audit_key=audit_key,
            api_keys=api_keys,
            admin_hash=admin_hash,
            signature=signature,
            fingerprint=_fingerprint(data),
            lock_timeout=lock_timeout,
            retention=retention,
        )

    # -- context manager ------------------------------------------------------------------

    def __enter__(self) -> CredentialStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Wipe the key and password (best effort) and drop the cached records. Idempotent."""
        with self._mutex:
            _sealing.wipe(self._key)
            _sealing.wipe(self._password)
            self._key = None
            self._password = None
            self._records = {}
            self._agents = {}
            self._api_keys = {}
            self._admin_hash = None
            self._audit_key = None
            self._sorted = None
            self._release()

    def _release(self) -> None:
        """What closing frees besides the key: here, the change counter's mapping."""
        self._generation.detach()

    def __repr__(self) -> str:
        state = "closed" if self._key is None else "open"
        return f"<CredentialStore {str(self._path)!r} {state}>"

    # -- reading --------------------------------------------------------------------------

    #: which backend holds the store ("file" or "postgresql"), what `vultrino store info` says
    backend = "file"
    #: whether :meth:`take_token` shares rate-limit buckets with other processes
    shares_rate_limits = False

    @property
    def path(self) -> Path:
        return self._path

    @property
    def location(self) -> str:
        """Where the store lives, fit to print: the file's path (a database URL without its
        password, for the PostgreSQL backend)."""
        return str(self._path)

    def take_token(self, bucket: str, count: int, period: float) -> float:
        """A rate-limit token from a bucket shared by every process on this store: 0.0 when
        the call may go ahead, else seconds until one is free. Only backends that declare
        ``shares_rate_limits`` keep such buckets; a file store keeps none."""
        raise StoreError(f"the {self.backend} store keeps no shared rate-limit buckets")

    @property
    def retention(self) -> VersionRetention:
        """How long earlier secret versions are kept."""
        return self._retention

    def kept(self, alias: str) -> list[SecretVersion]:
        """The earlier secret versions of ``alias`` still kept (copies, newest first)."""
        with self._mutex:
            self._refresh(force=False)
            cred = self._lookup(self._records, alias)
            return [_copy_version(v) for v in self._retention.live(cred.kept)]

    @property
    def kdf(self) -> KdfParams:
        """The KDF parameters of the file as last read or written."""
        return self._header.kdf

    def credentials(self) -> list[Credential]:
        """Every credential, sorted by alias (copies; editing them changes nothing)."""
        with self._mutex:
            self._refresh(force=False)
            if self._sorted is None:
                self._sorted = sorted(self._records.values(), key=lambda c: c.alias)
            return [_copy_credential(c) for c in self._sorted]

    def count(self) -> int:
        """How many credentials there are (no copies made: what a dashboard shows)."""
        with self._mutex:
            self._refresh(force=False)
            return len(self._records)

    @property
    def revision(self) -> int:
        """A number that changes whenever the credentials this handle sees change (after
        picking up other processes' writes, as every read does). Equal numbers mean every
        credential read before is still current: callers use it to keep derived data."""
        # The common case needs no lock: an open store whose change counter is the one it last
        # saw (and whose stat is recent). A write racing with this read makes the caller see
        # the old number and re-read on its next call, or the new one: never a stale one later.
        if (
            self._key is not None
            and self._generation.read() == self._seen_generation is not None
            and time.monotonic() - self._stat_at < UNSIGNALLED_CHANGE_SECONDS
        ):
            return self._revision
        with self._mutex:
            self._refresh(force=False)
            return self._revision

    def get(self, alias: str) -> Credential:
        """The credential named ``alias`` (a copy); CredentialNotFoundError if there is none."""
        with self._mutex:
            self._refresh(force=False)
            return _copy_credential(self._lookup(self._records, alias))

    def agent_records(self) -> list[dict[str, Any]]:
        """Every agent profile record, sorted by name (copies)."""
        with self._mutex:
            self._refresh(force=False)
            return [_copy_value(self._agents[n]) for n in sorted(self._agents)]

    def key_records(self) -> list[dict[str, Any]]:
        """Every API key record (never a key: only its digest), sorted by id (copies)."""
        with self._mutex:
            self._refresh(force=False)
            return [_copy_value(self._api_keys[k]) for k in sorted(self._api_keys)]

    # -- writing --------------------------------------------------------------------------

    def add(self, cred: Credential, *, replace: bool = False) -> Credential:
        """Store ``cred``; CredentialExistsError if the alias is taken and not ``replace``.

        On replace the original ``created_at`` is kept and ``updated_at`` becomes now. Returns
        the stored credential, timestamps filled in.
        """
        return self.add_many([cred], replace=replace)[0]

    def put(
        self, cred: Credential, *, replace: bool = False
    ) -> tuple[Credential, Credential | None]:
        """:meth:`add`, also returning the credential it replaced (None when the alias was
        free). A replaced credential's kept secret versions go with it."""
        olds: list[Credential | None] = []
        stored = self.add_many([cred], replace=replace, replaced=olds)[0]
        return stored, olds[0]

    def add_many(
        self,
        creds: list[Credential],
        *,
        replace: bool = False,
        replaced: list[Credential | None] | None = None,
    ) -> list[Credential]:
        """Store several credentials in one locked, atomic write (all or none). ``replaced``,
        when given, receives what each one replaced (None for a new alias)."""
        news = [_validated(c) for c in creds]

        def apply(records: dict[str, Credential]) -> list[Credential]:
            now = _now()
            stored = []
            olds: list[Credential | None] = []
            for new in news:
                old = records.get(new.alias)
                olds.append(None if old is None else _copy_credential(old))
                if old is not None:
                    new.id = old.id  # a replaced credential keeps its id, as its created_at
                elif not new.id or any(
                    c.id == new.id for c in records.values() if c.alias != new.alias
                ):
                    new.id = new_credential_id()
                if old is not None:
                    if not replace:
                        raise CredentialExistsError(
                            f"a credential named {new.alias!r} already exists; remove it first "
                            "or replace it (`vultrino add --replace`, or replace=True in Python)"
                        )
                    new.created_at = old.created_at or new.created_at or now
                    new.updated_at = now
                else:
                    new.created_at = new.created_at or now
                    new.updated_at = new.updated_at or new.created_at
                records[new.alias] = new
                stored.append(_copy_credential(new))
            if replaced is not None:
                replaced[:] = olds
            return stored

        return self._mutate(apply)

    def modify(
        self,
        alias: str,
        change: Callable[[Credential], Credential | None],
        *,
        rotate: bool = False,
    ) -> tuple[Credential, Credential]:
        """Change ``alias`` in one locked, atomic write: ``change`` gets a copy of the current
        record (read under the lock, so another process's change is never lost) and returns
        the new one, or None to write nothing. Returns (before, after).

        The alias, type and ``created_at`` stay; ``updated_at`` becomes now. With ``rotate``
        the secret fields' current values (and the plugin state that went with them) become
        a kept :class:`SecretVersion`, the version number goes up and the state starts empty;
        CredentialValidationError when no secret value changed.
        """

        def apply(records: dict[str, Credential]) -> tuple[Credential, Credential]:
            old = self._lookup(records, alias)
            wanted = change(_copy_credential(old))
            if wanted is None:
                raise _Unchanged(_copy_credential(old))
            new = _validated(wanted)
            new.alias, new.type, new.created_at = old.alias, old.type, old.created_at
            new.id = old.id
            # a field once kept in the host stays there: no change hands it to a plugin
            new.host_fields = sorted(set(old.host_fields) | set(new.host_fields))
            now = _now()
            new.updated_at = now
            if rotate:
                names = set(old.secret_fields) | set(new.secret_fields)
                changed = sorted(k for k in names if old.fields.get(k) != new.fields.get(k))
                if not changed:
                    raise CredentialValidationError(
                        f"nothing to rotate in {alias!r}: the new secret values are the ones "
                        "it already holds"
                    )
                numbers = [old.version, *(v.version for v in old.kept)]
                new.kept = self._retention.live([_retired(old, names, now), *old.kept])
                new.version, new.version_since, new.version_changed = max(numbers) + 1, now, changed
                new.state = {}
            else:
                new.version, new.version_since = old.version, old.version_since
                new.version_changed = list(old.version_changed)
                new.kept = old.kept  # the stored versions, unchanged (never handed out)
            records[old.alias] = new
            return _copy_credential(old), _copy_credential(new)

        try:
            return self._mutate(apply)
        except _Unchanged as same:
            return same.cred, _copy_credential(same.cred)

    def rollback(
        self, alias: str, check: Callable[[Credential], Credential] | None = None
    ) -> tuple[Credential, Credential]:
        """Swap ``alias``'s secret fields with the newest kept version, in one atomic write;
        returns (before, after). The values swapped out become a kept version themselves, so
        a second rollback rolls forward again. ``check`` (the plugin's validation) sees the
        restored record and may refuse it; then nothing changes. CredentialValidationError
        when no earlier version is kept."""

        def apply(records: dict[str, Credential]) -> tuple[Credential, Credential]:
            old = self._lookup(records, alias)
            kept = self._retention.live(old.kept)
            if not kept:
                rotated = "" if old.version == 1 else " any more"
                raise CredentialValidationError(
                    f"{alias!r} has no earlier secret version to roll back to{rotated}: a "
                    f"rotation keeps the previous one for {self._retention.days:g} days "
                    "(`vultrino versions ALIAS` lists what is kept)"
                )
            target = kept[0]
            new = _copy_credential(old)
            names = set(old.secret_fields) | set(target.fields)
            for name in names:
                if name in target.fields:
                    new.fields[name] = _copy_value(target.fields[name])
                else:
                    new.fields.pop(name, None)
            new.state = _copy_value(target.state)
            if check is not None:
                new = check(new)
            new = _validated(new)
            now = _now()
            new.alias, new.type, new.created_at, new.updated_at = (
                old.alias,
                old.type,
                old.created_at,
                now,
            )
            new.id = old.id
            new.version, new.version_since = target.version, now
            new.version_changed = list(target.changed)
            new.kept = self._retention.live(
                [_retired(old, names, now), *(v for v in kept if v is not target)]
            )
            records[old.alias] = new
            return _copy_credential(old), _copy_credential(new)

        return self._mutate(apply)

    def remove(self, alias: str) -> Credential:
        """Delete ``alias`` and return what was stored; CredentialNotFoundError if absent."""

        def apply(records: dict[str, Credential]) -> Credential:
            old = self._lookup(records, alias)
            del records[old.alias]
            return _copy_credential(old)

        return self._mutate(apply)

    def put_agent(self, record: dict[str, Any], *, replace: bool = False) -> dict[str, Any] | None:
        """Store an agent profile record (a map with a string ``name``), atomically.

        Returns the record it replaced, or None. AgentExistsError if the name is taken and not
        ``replace``.
        """
        name = record.get("name") if isinstance(record, dict) else None
        if not isinstance(name, str) or not name:
            raise AgentValidationError("an agent profile needs a non-empty string name")
        _check_str_dict(record, f"the profile of agent {name!r}")
        _check_packable(record, f"key of agent profile {name!r}")
        copied = _copy_value(record)

        def apply(records: dict[str, Credential]) -> dict[str, Any] | None:
            old = self._agents.get(name)
            if old is not None and not replace:
                raise AgentExistsError(
                    f"an agent named {name!r} already exists; remove it first "
                    "(`vultrino agent remove`) or replace it (--force / replace=True)"
                )
            self._pending_agents = {**self._agents, name: copied}
            return old

        return self._mutate(apply)

    def remove_agent(self, name: str) -> dict[str, Any]:
        """Delete agent profile ``name`` and return its record; AgentNotFoundError if absent."""

        def apply(records: dict[str, Credential]) -> dict[str, Any]:
            old = self._agents.get(name)
            if old is None:
                raise AgentNotFoundError(
                    f"no agent named {name!r}; `vultrino agent list` shows them"
                )
            self._pending_agents = {k: v for k, v in self._agents.items() if k != name}
            return old

        return self._mutate(apply)

    def put_key(self, record: dict[str, Any], *, unique: tuple[str, ...] = ()) -> None:
        """Store a new API key record (a map with a string ``id``), atomically. ``unique``
        names fields no other key may share (its name, its prefix): AgentExistsError if one
        does, checked under the store's lock so two processes cannot both win."""
        key_id = record.get("id") if isinstance(record, dict) else None
        if not isinstance(key_id, str) or not key_id:
            raise AgentValidationError("an API key record needs a non-empty string id")
        _check_str_dict(record, f"API key {key_id!r}")
        _check_packable(record, f"key of API key {key_id!r}")
        copied = _copy_value(record)

        def apply(records: dict[str, Credential]) -> None:
            for other in self._api_keys.values():
                for name in ("id", *unique):
                    if other.get(name) == copied.get(name):
                        raise AgentExistsError(
                            f"an API key with {name} {copied.get(name)!r} already exists; "
                            "pick another name (`vultrino key list` shows them)"
                        )
            self._pending_keys = {**self._api_keys, key_id: copied}

        self._mutate(apply)

    def remove_key(self, key_id: str) -> dict[str, Any]:
        """Delete the API key ``key_id`` and return its record; KeyNotFoundError if absent."""
        from vultrino.errors import KeyNotFoundError

        def apply(records: dict[str, Credential]) -> dict[str, Any]:
            old = self._api_keys.get(key_id)
            if old is None:
                raise KeyNotFoundError(f"no API key {key_id!r}; `vultrino key list` shows them")
            self._pending_keys = {k: v for k, v in self._api_keys.items() if k != key_id}
            return old

        return self._mutate(apply)

    # -- the web UI's admin password ------------------------------------------------------

    def set_admin_password(self, password: str | None) -> None:
        """Set the web UI's admin password (kept as its Argon2id hash, sealed with everything
        else), or remove it (None), atomically."""
        hashed = None if password is None else _sealing.hash_password(password.encode())

        def apply(records: dict[str, Credential]) -> None:
            self._pending_admin = (hashed,)

        self._mutate(apply)

    def check_admin_password(self, password: str) -> bool:
        """Whether ``password`` is the admin password (False while none is set)."""
        with self._mutex:
            self._refresh(force=False)
            hashed = self._admin_hash
        return hashed is not None and _sealing.check_password(hashed, password.encode())

    def has_admin_password(self) -> bool:
        with self._mutex:
            self._refresh(force=False)
            return self._admin_hash is not None

    def admin_password_digest(self) -> str | None:
        """A SHA-256 of the admin password's stored hash (None: none set), to compare two
        stores' copies without handing the hash out."""
        with self._mutex:
            self._refresh(force=False)
            hashed = self._admin_hash
        return None if hashed is None else hashlib.sha256(hashed.encode()).hexdigest()

    def update_state(self, alias: str, state: dict[str, Any]) -> None:
        """Replace the plugin state of ``alias`` atomically. ``updated_at`` is left alone:
        it records when the user last changed the credential, not when a token refreshed."""
        checked = _check_str_dict(state, f"the state of {alias!r}")
        _check_packable(checked, f"state key of {alias!r}")
        copied = _copy_value(checked)

        def apply(records: dict[str, Credential]) -> None:
            old = self._lookup(records, alias)
            updated = _copy_credential(old)
            updated.state = copied
            records[old.alias] = updated

        self._mutate(apply)

    def copy_from(self, source: CredentialStore) -> int:
        """Make this store, which must be empty, hold exactly what ``source`` holds (its
        credentials with their kept versions, agent profiles and roles, API key records, audit
        signing key and the web admin password's hash), in one write; `vultrino store
        migrate`. Returns the records copied.
        StoreExistsError if this store holds anything."""
        with source._mutex:
            source._refresh(force=False)
            records = {a: _copy_credential(c) for a, c in source._records.items()}
            agents = _copy_value(source._agents)
            keys = _copy_value(source._api_keys)
            audit_key = source._audit_key
            admin_hash = source._admin_hash

        def apply(mine: dict[str, Credential]) -> None:
            if mine or self._agents or self._api_keys or self._audit_key is not None:
                raise StoreExistsError(
                    f"the store at {self.location} is not empty; migrate into a new file or an "
                    "empty database"
                )
            mine.update(records)
            self._pending_agents, self._pending_keys = agents, keys
            self._pending_audit_key = audit_key
            if admin_hash is not None:
                self._pending_admin = (admin_hash,)

        self._mutate(apply)
        extra = (audit_key is not None) + (admin_hash is not None)
        return len(records) + len(agents) + len(keys) + extra

    def rekey(self, new_password: str, kdf: KdfParams | None = None) -> None:
        """Re-seal the store under ``new_password`` with a fresh salt, atomically.

        ``kdf=None`` keeps the current parameters; pass ``KdfParams.default()`` to upgrade an
        old store to today's defaults. The old password stops working when this returns.
        """
        new_pw = _password_bytes(new_password, new=True)
        with self._mutex:
            self._refresh(force=False)
            params = kdf if kdf is not None else self._header.kdf
            salt = _sealing.new_salt()
            new_key = _sealing.derive_key(bytes(new_pw), salt, params)

            def attempt() -> None:
                self._refresh(force=True)
                self._write(dict(self._records), params, salt, new_key, new_pw)

            try:
                self._exclusive(attempt)
            except BaseException:
                if self._key is not new_key:
                    _sealing.wipe(new_key)
                    _sealing.wipe(new_pw)
                raise

    # -- the audit log's signing key ------------------------------------------------------

    def sign_audit_head(self, message: bytes) -> tuple[bytes, bytes]:
        """Sign ``message`` (an audit head) with the store's Ed25519 key: (signature, public
        key). The key is made on first need and sealed with everything else; ``rekey`` keeps
        it."""
        with self._mutex:
            self._refresh(force=False)
            if self._audit_key is None:

                def apply(records: dict[str, Credential]) -> None:
                    if self._audit_key is None:  # not made by another process meanwhile
                        self._pending_audit_key = _sealing.new_signing_seed()

                self._mutate(apply)
            seed = self._audit_key
            assert seed is not None
            return _sealing.sign(seed, message)

    def session_key(self) -> StoreKey:
        """A copy of the key this store is open with and the header binding it fits: what
        an unlock session keeps (so it never needs the password). Wipe it after use."""
        with self._mutex:
            self._refresh(force=False)
            return StoreKey(bytearray(self._live_key()), self._header.binding)

    def audit_public_key(self) -> bytes | None:
        """The public half of the audit signing key, or None while there is none."""
        with self._mutex:
            self._refresh(force=False)
            seed = self._audit_key
        return None if seed is None else _sealing.sign(seed, b"")[1]

    # -- internals ------------------------------------------------------------------------

    def _lookup(self, records: dict[str, Credential], alias: str) -> Credential:
        """The credential ``alias`` names: the one with that alias, else the one whose id it
        is (an alias wins over an id). The one lookup every read and write goes through."""
        try:
            return records[alias]
        except (KeyError, TypeError):
            pass
        if is_credential_id(alias):
            for cred in records.values():
                if cred.id == alias:
                    return cred
        raise CredentialNotFoundError.named(alias) from None

    def alias_of(self, ref: str) -> str:
        """The alias ``ref`` names (itself, or the alias of the credential whose id it is),
        or ``ref`` unchanged when it names none (a lookup of it then fails as for a missing
        alias). Cheap for an alias: one look at the records held in memory."""
        if ref in self._records:
            return ref
        if not is_credential_id(ref):
            return ref
        with self._mutex:
            self._refresh(force=False)
            index = self._id_index
            if index is None or index[0] != self._revision:
                # rebuilt once per change of the records (the revision counts every one)
                index = (self._revision, {c.id: a for a, c in self._records.items()})
                self._id_index = index
            return index[1].get(ref, ref)

    def _live_key(self) -> bytearray:
        if self._key is None:
            raise StoreError("this credential store was closed; open it again")
        return self._key

    def _mutate(self, apply: Callable[[dict[str, Credential]], _T]) -> _T:
        """Lock, re-read the current file, apply, write atomically, unlock."""
        with self._mutex:
            self._live_key()
            return self._exclusive(lambda: self._attempt(apply))

    def _exclusive(self, attempt: Callable[[], _T]) -> _T:
        """Run ``attempt`` (re-read, apply, write) with no other writer in between: here,
        under the file lock. A backend with optimistic writes retries it instead."""
        with FileLock(lock_path_for(self._path), timeout=self._lock_timeout):
            return attempt()

    def _attempt(self, apply: Callable[[dict[str, Credential]], _T]) -> _T:
        """One write cycle of :meth:`_mutate`: re-read the current store, apply, write."""
        self._refresh(force=True)
        key = self._live_key()
        records = dict(self._records)
        self._pending_agents = self._pending_audit_key = self._pending_keys = None
        self._pending_admin = None
        try:
            result = apply(records)
            agents, audit_key = self._pending_agents, self._pending_audit_key
            api_keys, admin = self._pending_keys, self._pending_admin
        finally:
            self._pending_agents = self._pending_audit_key = self._pending_keys = None
            self._pending_admin = None
        kept = self._audit_key
        if audit_key is not None:
            self._audit_key = audit_key  # sealed by this write
        try:
            self._write(
                records,
                self._header.kdf,
                self._header.salt,
                key,
                None,
                agents=agents,
                api_keys=api_keys,
                admin=admin,
            )
        except BaseException:
            self._audit_key = kept
            raise
        return result

    def _write(
        self,
        records: dict[str, Credential],
        params: KdfParams,
        salt: bytes,
        key: bytearray,
        new_password: bytearray | None,
        *,
        agents: dict[str, dict[str, Any]] | None = None,
        api_keys: dict[str, dict[str, Any]] | None = None,
        admin: tuple[str | None] | None = None,
    ) -> None:
        """Seal and atomically replace the file. Caller holds the mutex and the file lock.

        ``agents`` (``api_keys``) None keeps the profiles (the keys) as they are; ``admin``
        None keeps the admin password hash, ``(hash,)`` replaces it."""
        _remove_stale_temps(self._path)
        self._prune(records)
        profiles = self._agents if agents is None else agents
        keys = self._api_keys if api_keys is None else api_keys
        admin_hash = self._admin_hash if admin is None else admin[0]
        header = _sealing.new_header(params, salt, document_format(profiles, keys, admin_hash))
        document = encode_document(
            header, records, profiles, self._audit_key, keys, admin_hash=admin_hash
        )
        data = _sealing.seal_box(key, header, document)
        _write_file(self._path, data)
        # The new file is in place: from here on, our view must match it.
        self._header = header
        self._records = records
        self._agents = profiles
        self._api_keys = keys
        self._admin_hash = admin_hash
        self._revision += 1
        self._sorted = None
        self._fingerprint = _fingerprint(data)
        try:
            self._signature = _signature(os.stat(self._path))
        except OSError:
            self._signature = (0, 0, 0, 0, 0)
        if new_password is not None:
            old_key, old_pw = self._key, self._password
            self._key, self._password = key, new_password
            _sealing.wipe(old_key)
            _sealing.wipe(old_pw)
        _fsync_dir(self._path.parent)
        self._generation.bump()

    def _prune(self, records: dict[str, Credential]) -> None:
        """Drop kept secret versions past the retention from ``records`` (every write)."""
        now = _utcnow()
        for alias, cred in list(records.items()):
            if cred.kept:
                live = self._retention.live(cred.kept, now)
                if len(live) != len(cred.kept):
                    pruned = _copy_credential(cred)
                    pruned.kept = live
                    records[alias] = pruned

    def _refresh(self, *, force: bool) -> None:
        """Pick up changes other processes made. Cheap when nothing changed: one memory read
        of the change counter (and a stat at most every ``UNSIGNALLED_CHANGE_SECONDS``), or
        (``force``) one read compared against the header and size we last saw."""
        self._live_key()
        if not force:
            generation = self._generation.read()
            now = time.monotonic()
            if (
                generation is not None
                and generation == self._seen_generation
                and now - self._stat_at < UNSIGNALLED_CHANGE_SECONDS
            ):
                return
            if now - self._stat_at >= UNSIGNALLED_CHANGE_SECONDS:
                self._generation.attach()  # follows a replaced counter file
            self._seen_generation = None  # until this check succeeds
            self._reload(stat_first=True)
            # Read before the stat: a writer that bumps after it is seen on the next call.
            self._seen_generation, self._stat_at = generation, now
            return
        self._reload(stat_first=False)

    def _reload(self, *, stat_first: bool) -> None:
        if stat_first:
            try:
                st = os.stat(self._path)
            except FileNotFoundError:
                raise StoreNotInitializedError(
                    f"the credential store {self._path} was removed; run `vultrino init`"
                ) from None
            except OSError as exc:
                raise StoreError(f"cannot read {self._path} ({exc.strerror})") from exc
            if _signature(st) == self._signature:
                return
        data, signature = _read_store(self._path)
        where = str(self._path)
        header = _sealing.parse_header(data, where)
        if _fingerprint(data) == self._fingerprint:
            self._signature = signature
            return
        current = self._header
        same_key = header.salt == current.salt and header.kdf == current.kdf
        if same_key:
            key = self._live_key()
        elif self._password is None:  # opened with a session key, which fits the old binding
            raise WrongPasswordError(
                f"{where} was re-keyed by another process, and the unlock session's key this "
                "command opened it with no longer fits; run the command again"
            )
        else:
            key = _sealing.derive_key(bytes(self._password), header.salt, header.kdf)
        try:
            plaintext = _sealing.open_box(key, header, data)
            records, agents, audit_key, api_keys, admin_hash = decode_all(plaintext, header, where)
        except Unauthentic:
            if not same_key:
                _sealing.wipe(key)
                raise WrongPasswordError(
                    f"{where} was re-keyed by another process and this password no longer "
                    "opens it; run the command again with the new password"
                ) from None
            raise StoreCorruptError(
                f"{where} fails its integrity check although the key is right: the file was "
                "modified or damaged; restore it from a backup"
            ) from None
        except StoreError:
            if not same_key:
                _sealing.wipe(key)
            raise
        if not same_key:
            old, self._key = self._key, key
            _sealing.wipe(old)
        self._header = header
        self._records = records
        self._agents = agents
        self._api_keys = api_keys
        self._admin_hash = admin_hash
        self._audit_key = audit_key
        self._revision += 1
        self._sorted = None
        self._fingerprint = _fingerprint(data)
        self._signature = signature
