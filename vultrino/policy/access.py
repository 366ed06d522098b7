"""Roles and API keys: what a key may do, and which key a bearer secret is. No I/O.

A **role** is an :class:`~vultrino.policy.profile.AgentProfile` of kind ``role``: the same
credential, tool and action globs, URL patterns, rate and approval rules as an agent, plus the
permission verbs ``read``, ``execute``, ``write`` and ``admin``. Three are built in and cannot be
changed or deleted (:data:`BUILTIN_ROLES`): ``admin`` (everything), ``executor`` (read and
execute every credential) and ``read-only`` (list, never use). An agent profile is a role too,
with ``read`` and ``execute`` on its globs: keys can be issued for either.

An **API key** is ``vk_`` and 32 random letters and digits (about 190 bits), shown once when it
is made. The store keeps its SHA-256 digest, its first 11 characters (``vk_`` and 8 more: the
*prefix* listings show), the role it acts as, and an optional expiry. :func:`find_key` picks
the candidates by prefix and compares digests in constant time.
"""

from __future__ import annotations

import hmac
import re
import secrets
import string
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from vultrino.errors import AgentValidationError, ExpiredApiKeyError, InvalidApiKeyError
from vultrino.policy.profile import PERMISSIONS, AgentProfile, hash_token, validate_name

__all__ = [
    "BUILTIN_ROLES",
    "KEY_PREFIX",
    "ApiKey",
    "KeyInfo",
    "RoleInfo",
    "find_key",
    "new_api_key",
    "parse_expiry",
    "role_info",
]

KEY_PREFIX = "vk_"
_KEY_CHARS = string.ascii_letters + string.digits
_KEY_RANDOM = 32
PREFIX_LENGTH = len(KEY_PREFIX) + 8
_KEY_RE = re.compile(r"^vk_[A-Za-z0-9]{32}$")


def _builtin(name: str, permissions: tuple[str, ...], description: str) -> AgentProfile:
    return AgentProfile(
        name=name,
        description=description,
        credentials=("*",),
        tools=("*",),
        actions=("*",),
        kind="role",
        permissions=permissions,
    )


#: The roles every home has. Their names cannot be taken by an agent or another role.
BUILTIN_ROLES: Mapping[str, AgentProfile] = {
    "admin": _builtin(
        "admin", PERMISSIONS, "Full access: every credential, keys, roles, audit, approvals"
    ),
    "executor": _builtin(
        "executor", ("read", "execute"), "Use every credential, administer nothing"
    ),
    "read-only": _builtin("read-only", ("read",), "List credentials and plugins, use nothing"),
}


# --- roles as listings show them -------------------------------------------------------------


@dataclass(frozen=True)
class RoleInfo:
    """A role (or an agent profile acting as one) as listings show it: never a token."""

    name: str
    kind: str  # "role" or "agent"
    builtin: bool
    permissions: tuple[str, ...]
    description: str
    credentials: tuple[str, ...]
    tools: tuple[str, ...]
    actions: tuple[str, ...]
    allow: tuple[str, ...]
    approve: tuple[str, ...]
    rate: str | None
    created_at: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "builtin": self.builtin,
            "permissions": list(self.permissions),
            "description": self.description,
            "credentials": list(self.credentials),
            "tools": list(self.tools),
            "actions": list(self.actions),
            "allow": list(self.allow),
            "approve": list(self.approve),
            "rate": self.rate,
            "created_at": self.created_at,
        }


def role_info(profile: AgentProfile) -> RoleInfo:
    return RoleInfo(
        name=profile.name,
        kind=profile.kind,
        builtin=BUILTIN_ROLES.get(profile.name) is profile,
        permissions=profile.permissions,
        description=profile.description,
        credentials=profile.credentials,
        tools=profile.tools,
        actions=profile.actions,
        allow=profile.allow,
        approve=profile.approve,
        rate=profile.rate.text if profile.rate else None,
        created_at=profile.created_at,
    )


# --- keys ------------------------------------------------------------------------------------


def new_api_key() -> str:
    """A fresh API key: ``vk_`` and 32 random letters and digits."""
    return KEY_PREFIX + "".join(secrets.choice(_KEY_CHARS) for _ in range(_KEY_RANDOM))


@dataclass(frozen=True)
class KeyInfo:
    """An API key as listings show it: never the key, never its digest."""

    id: str
    name: str
    prefix: str
    role: str
    expires_at: str | None
    created_at: str
    last_used_at: str | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "prefix": self.prefix,
            "role": self.role,
            "expires_at": self.expires_at,
            "created_at": self.created_at,
            "last_used_at": self.last_used_at,
        }


@dataclass(frozen=True)
class ApiKey:
    """One stored key: its id, name, display prefix, SHA-256 digest, role and expiry (an
    ISO-8601 UTC time, or None for a key that never expires)."""

    id: str
    name: str
    prefix: str
    digest: str = field(repr=False)
    role: str
    expires_at: str | None
    created_at: str

    @classmethod
    def make(
        cls, name: str, role: str, expires_at: str | None, now: datetime
    ) -> tuple[ApiKey, str]:
        """A new key record and the key itself (the caller shows it once)."""
        validate_name(name, what="key name")
        key = new_api_key()
        record = cls(
            id=secrets.token_hex(6),
            name=name,
            prefix=key[:PREFIX_LENGTH],
            digest=hash_token(key),
            role=role,
            expires_at=expires_at,
            created_at=_iso(now),
        )
        return record, key

    def expired(self, now: datetime) -> bool:
        return self.expires_at is not None and _parse_iso(self.expires_at) <= now

    def matches(self, key: str) -> bool:
        """Whether ``key`` is this one (constant-time comparison of the digests)."""
        return hmac.compare_digest(hash_token(key).encode(), self.digest.encode())

    def info(self, last_used_at: str | None = None) -> KeyInfo:
        return KeyInfo(
            self.id,
            self.name,
            self.prefix,
            self.role,
            self.expires_at,
            self.created_at,
            last_used_at,
        )

    def to_record(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "prefix": self.prefix,
            "hash": self.digest,
            "role": self.role,
            "expires_at": self.expires_at or "",
            "created_at": self.created_at,
        }

    @classmethod
    def from_record(cls, rec: Mapping[str, Any]) -> ApiKey:
        """Parse a stored record; a malformed one raises (it grants nothing)."""
        values = {k: rec.get(k) for k in ("id", "name", "prefix", "hash", "role", "created_at")}
        expires = rec.get("expires_at", "")
        if not all(isinstance(v, str) and v for v in values.values()) or not isinstance(
            expires, str
        ):
            raise AgentValidationError(
                f"the stored API key {str(rec.get('id'))[:16]!r} is malformed; revoke it "
                "(`vultrino key revoke ID`) and create a new one"
            )
        return cls(
            id=str(values["id"]),
            name=str(values["name"]),
            prefix=str(values["prefix"]),
            digest=str(values["hash"]),
            role=str(values["role"]),
            expires_at=expires or None,
            created_at=str(values["created_at"]),
        )


def find_key(keys: Iterable[ApiKey], presented: str, now: datetime) -> ApiKey:
    """The key ``presented`` is, else InvalidApiKeyError; a key past its expiry is
    ExpiredApiKeyError. Candidates are picked by the (public) prefix; the secret part is only
    ever compared as a digest, in constant time."""
    if not _KEY_RE.fullmatch(presented):
        raise InvalidApiKeyError("invalid API key: not a key of this server")
    prefix = presented[:PREFIX_LENGTH]
    found = None
    for key in keys:
        if key.prefix == prefix and key.matches(presented) and found is None:
            found = key
    if found is None:
        raise InvalidApiKeyError(
            "invalid API key: not a key of this server (or it was revoked); "
            "`vultrino key list` shows the keys there are"
        )
    if found.expired(now):
        raise ExpiredApiKeyError(
            f"API key {found.prefix}... ({found.name!r}) expired at {found.expires_at}; "
            "create a new one with `vultrino key create`"
        )
    return found


# --- expiry ----------------------------------------------------------------------------------

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400, "y": 365 * 86400}
_SPAN_RE = re.compile(r"^\s*(\d+)\s*([smhdwy])\s*$")


def parse_expiry(text: str, now: datetime) -> str | None:
    """``never`` -> None; ``30d``, ``12h``, ``90m``, ``2w``, ``1y``, ``45s`` -> that long from
    ``now``; an ISO-8601 date or time (UTC unless it says) -> itself. The result is an ISO-8601
    UTC time; a time not in the future is an error."""
    raw = text.strip().lower() if isinstance(text, str) else ""
    if raw == "never":
        return None
    m = _SPAN_RE.match(raw)
    if m is not None:
        seconds = int(m.group(1)) * _UNITS[m.group(2)]
        if seconds <= 0:
            raise AgentValidationError(f"--expires {text!r}: the time must be at least 1 s")
        return _iso(now + timedelta(seconds=seconds))
    try:
        when = _parse_iso(text.strip())
    except (ValueError, AttributeError):
        raise AgentValidationError(
            f"--expires {str(text)[:40]!r} is not a span or a date: use 30d, 12h, 90m, 2w, 1y, "
            "45s, an ISO-8601 date or time (2030-01-31, 2030-01-31T12:00:00Z), or never"
        ) from None
    if when <= now:
        raise AgentValidationError(
            f"--expires {text!r} is in the past; a key must expire later than now"
        )
    return _iso(when)


def _iso(when: datetime) -> str:
    return when.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_iso(text: str) -> datetime:
    value = text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text
    when = datetime.fromisoformat(value)
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return when
