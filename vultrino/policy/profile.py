"""The agent profile model: what one agent may see and do, as stored (sealed) in the store.

A profile names (docs/agents.md):

- ``credentials``: globs over aliases. A credential outside them is invisible: it is not
  listed, not named in tool schemas, and using it fails exactly as an alias that does not
  exist.
- ``tools``: globs over MCP tool names. ``list_credentials`` is always available (it lists only
  the profile's credentials). A tool outside them is unknown to the agent.
- ``actions``: globs over ``ACTION`` or ``PLUGIN:ACTION`` (default ``*``). A tool or
  ``execute`` whose action does not match is refused.
- ``allow``: URL patterns (docs/http.md syntax) that narrow every HTTP request the agent makes:
  a request, and every redirect hop, must match the credential's allowlist *and* one of these.
- ``rate``: ``N/UNIT`` (``60/min``): a token bucket of N calls refilled over UNIT, per agent and
  per process (each server process keeps its own buckets).
- ``approve``: globs over tool names, ``ACTION`` or ``PLUGIN:ACTION``; a matching call runs only
  after a person approves it (through MCP elicitation, or the ``approver`` callback).
- ``permissions`` (roles): the verbs ``read`` (list credentials and plugins), ``execute`` (use
  credentials), ``write`` (administer credentials) and ``admin`` (keys, roles, the audit log,
  approvals; implies the other three). An agent profile has ``read`` and ``execute``.
- ``kind``: ``agent`` (made by ``vultrino agent add``, with its own bearer token) or ``role``
  (``vultrino role create``: no token of its own, used through API keys). Both are profiles:
  API keys can be issued for either.

The HTTP bearer token is generated at ``add``, returned once, and only its SHA-256 is stored;
tokens are compared in constant time. What a profile means for one call is decided in
:mod:`vultrino.policy.decide`.
"""

from __future__ import annotations

import fnmatch
import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Any

from vultrino.errors import AgentValidationError, CredentialValidationError

__all__ = [
    "AGENT_NAME_RE",
    "ALWAYS_VISIBLE_TOOLS",
    "PERMISSIONS",
    "AgentInfo",
    "AgentProfile",
    "Rate",
    "hash_token",
    "new_token",
    "parse_rate",
    "stamped",
    "validate_name",
]

AGENT_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
TOKEN_PREFIX = "vagent_"  # noqa: S105 - a prefix that makes the token recognisable, not a secret
GLOB_MAX_LENGTH = 200
ALWAYS_VISIBLE_TOOLS = frozenset({"list_credentials", "get_credential_info"})
#: The permission verbs of a role, weakest first; ``admin`` implies the others.
PERMISSIONS: tuple[str, ...] = ("read", "execute", "write", "admin")
AGENT_PERMISSIONS: tuple[str, ...] = ("read", "execute")

_UNITS: dict[str, float] = {
    "s": 1.0,
    "sec": 1.0,
    "second": 1.0,
    "m": 60.0,
    "min": 60.0,
    "minute": 60.0,
    "h": 3600.0,
    "hour": 3600.0,
    "d": 86400.0,
    "day": 86400.0,
}
_RATE_RE = re.compile(r"^\s*(\d+)\s*/\s*(\d*)\s*([a-z]+)\s*$")


# --- rate ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rate:
    """``count`` calls per ``period`` seconds; ``text`` is the spelling it was given in."""

    count: int
    period: float
    text: str


def parse_rate(text: str) -> Rate:
    """Parse ``N/UNIT`` or ``N/KUNIT`` (``60/min``, ``5/s``, ``1000/day``, ``10/5min``)."""
    m = _RATE_RE.match(text.lower()) if isinstance(text, str) else None
    unit = None
    if m is not None:
        word = m.group(3)
        unit = _UNITS.get(word)
        if unit is None and len(word) > 3 and word.endswith("s"):  # plurals: mins, hours
            unit = _UNITS.get(word[:-1])
    if m is None or unit is None:
        raise AgentValidationError(
            f"rate {str(text)[:40]!r} is not N/UNIT: use for example 60/min, 5/s, 1000/day "
            "(units: s, min, h, day)"
        )
    count = int(m.group(1))
    multiplier = int(m.group(2)) if m.group(2) else 1
    if count < 1 or multiplier < 1:
        raise AgentValidationError(f"rate {text!r}: the count and the period must be at least 1")
    return Rate(count=count, period=unit * multiplier, text=text.strip())


# --- tokens ----------------------------------------------------------------------------------


def new_token() -> str:
    """A fresh bearer token for an agent (256 random bits)."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    """What the store keeps of a token: ``sha256:<hex>`` (tokens are random, so no KDF)."""
    return "sha256:" + hashlib.sha256(token.encode("utf-8")).hexdigest()


# --- the profile -----------------------------------------------------------------------------


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def validate_name(name: object, *, what: str = "agent name") -> str:
    if not isinstance(name, str) or not AGENT_NAME_RE.fullmatch(name):
        shown = name[:40] if isinstance(name, str) else type(name).__name__
        raise AgentValidationError(
            f"{what} {shown!r} is not valid: use 1 to 64 lowercase letters, digits, '-' or "
            "'_', starting with a letter or digit"
        )
    return name


def _globs(values: Iterable[str] | None, option: str) -> tuple[str, ...]:
    out: list[str] = []
    for raw in values or ():
        if not isinstance(raw, str):
            raise AgentValidationError(f"{option} expects strings, got {type(raw).__name__}")
        g = raw.strip()
        if not g or len(g) > GLOB_MAX_LENGTH or not g.isprintable():
            raise AgentValidationError(
                f"{option} {raw[:40]!r} is not a usable glob: it must be 1 to "
                f"{GLOB_MAX_LENGTH} printable characters (for example 'github-*')"
            )
        if g not in out:
            out.append(g)
    return tuple(out)


def permissions_of(values: Iterable[str] | None, option: str = "--permission") -> tuple[str, ...]:
    """The permission verbs named (comma-separated items allowed), in :data:`PERMISSIONS`
    order; AgentValidationError names an unknown one."""
    found: set[str] = set()
    for raw in values or ():
        if not isinstance(raw, str):
            raise AgentValidationError(f"{option} expects strings, got {type(raw).__name__}")
        for part in raw.split(","):
            verb = part.strip().lower()
            if not verb:
                continue
            if verb not in PERMISSIONS:
                raise AgentValidationError(
                    f"{option} {part.strip()[:40]!r} is not a permission: use "
                    f"{', '.join(PERMISSIONS)} (admin implies the others)"
                )
            found.add(verb)
    return tuple(p for p in PERMISSIONS if p in found)


def _matches(globs: Sequence[str], *names: str) -> bool:
    return any(fnmatch.fnmatchcase(n, g) for g in globs for n in names)


@dataclass(frozen=True)
class AgentProfile:
    """One agent's policy, as stored. See the module docstring for what each part means."""

    name: str
    description: str = ""
    credentials: tuple[str, ...] = ()
    tools: tuple[str, ...] = ()
    actions: tuple[str, ...] = ("*",)
    allow: tuple[str, ...] = ()
    approve: tuple[str, ...] = ()
    rate: Rate | None = None
    token_hash: str = field(default="", repr=False)
    created_at: str = ""
    updated_at: str = ""
    kind: str = "agent"
    permissions: tuple[str, ...] = AGENT_PERMISSIONS

    @classmethod
    def build(
        cls,
        name: str,
        *,
        credentials: Sequence[str] = (),
        tools: Sequence[str] = (),
        actions: Sequence[str] | None = None,
        allow: Sequence[str] = (),
        approve: Sequence[str] = (),
        rate: str | None = None,
        description: str = "",
        token_hash: str = "",
        kind: str = "agent",
        permissions: Sequence[str] | None = None,
    ) -> AgentProfile:
        """Validate every option and return the profile (AgentValidationError names the bad
        option). A ``role`` needs at least one permission; an agent has read and execute."""
        from vultrino._allowlist import validate_patterns

        try:
            patterns = tuple(validate_patterns(list(allow)))
        except CredentialValidationError as exc:
            raise AgentValidationError(f"--allow: {exc}") from None
        if not isinstance(description, str):
            raise AgentValidationError("the description must be a string")
        acts = _globs(actions, "--action") if actions is not None else ("*",)
        if kind not in ("agent", "role"):
            raise AgentValidationError(f"a profile is an agent or a role, not {kind!r}")
        perms = AGENT_PERMISSIONS if permissions is None else permissions_of(permissions)
        if not perms:
            raise AgentValidationError(
                f"a role needs at least one --permission ({', '.join(PERMISSIONS)})"
            )
        return cls(
            name=validate_name(name, what=f"{kind} name"),
            description=description,
            credentials=_globs(credentials, "--credential"),
            tools=_globs(tools, "--tool"),
            actions=acts,
            allow=patterns,
            approve=_globs(approve, "--approve"),
            rate=parse_rate(rate) if rate else None,
            token_hash=token_hash,
            kind=kind,
            permissions=perms,
        )

    # -- decisions ---------------------------------------------------------------------------

    def sees_credential(self, alias: str) -> bool:
        return _matches(self.credentials, alias)

    def sees_tool(self, tool: str) -> bool:
        return tool in ALWAYS_VISIBLE_TOOLS or _matches(self.tools, tool)

    def allows_action(self, plugin: str, action: str) -> bool:
        return _matches(self.actions, action, f"{plugin}:{action}")

    def needs_approval(self, plugin: str, action: str, tools: Sequence[str] = ()) -> bool:
        """Whether an ``approve`` glob names the action, or any tool bound to it: a rule
        written for a tool holds however the action is reached (another tool bound to the
        same action, or ``execute`` from Python)."""
        return _matches(self.approve, action, f"{plugin}:{action}", *tools)

    def allows(self, verb: str) -> bool:
        """Whether the profile holds permission ``verb`` (``admin`` implies every verb)."""
        return verb in self.permissions or "admin" in self.permissions

    def verify_token(self, token: str) -> bool:
        """Whether ``token`` is this agent's (constant-time comparison of the digests)."""
        if not self.token_hash:
            return False
        return hmac.compare_digest(hash_token(token).encode(), self.token_hash.encode())

    # -- the sealed record -------------------------------------------------------------------

    def to_record(self) -> dict[str, Any]:
        extra: dict[str, Any] = {}
        if self.kind != "agent" or self.permissions != AGENT_PERMISSIONS:
            # an agent's record stays what it always was (format 1 stores keep format 1)
            extra = {"kind": self.kind, "permissions": list(self.permissions)}
        return {
            **extra,
            "name": self.name,
            "description": self.description,
            "credentials": list(self.credentials),
            "tools": list(self.tools),
            "actions": list(self.actions),
            "allow": list(self.allow),
            "approve": list(self.approve),
            "rate": self.rate.text if self.rate else None,
            "token_hash": self.token_hash,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }

    @classmethod
    def from_record(cls, rec: Mapping[str, Any]) -> AgentProfile:
        """Parse a stored record. A record this build cannot read grants nothing: it raises."""

        def strs(key: str, default: Sequence[str] = ()) -> tuple[str, ...]:
            value = rec.get(key, list(default))
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise AgentValidationError(
                    f"the stored profile of agent {rec.get('name')!r} has a malformed {key!r}; "
                    "remove it and add it again"
                )
            return tuple(value)

        rate = rec.get("rate")
        kind = rec.get("kind", "agent")
        if kind not in ("agent", "role"):
            raise AgentValidationError(
                f"the stored profile {rec.get('name')!r} is of an unknown kind; remove it"
            )
        perms = strs("permissions", AGENT_PERMISSIONS)
        if any(p not in PERMISSIONS for p in perms):
            raise AgentValidationError(
                f"the stored profile {rec.get('name')!r} names an unknown permission; remove it "
                "and create it again"
            )
        return cls(
            name=str(rec.get("name", "")),
            description=str(rec.get("description", "")),
            credentials=strs("credentials"),
            tools=strs("tools"),
            actions=strs("actions", ("*",)),
            allow=strs("allow"),
            approve=strs("approve"),
            rate=parse_rate(rate) if isinstance(rate, str) and rate else None,
            token_hash=str(rec.get("token_hash", "")),
            created_at=str(rec.get("created_at", "")),
            updated_at=str(rec.get("updated_at", "")),
            kind=kind,
            permissions=perms,
        )

    def info(self) -> AgentInfo:
        return AgentInfo(
            name=self.name,
            description=self.description,
            credentials=self.credentials,
            tools=self.tools,
            actions=self.actions,
            allow=self.allow,
            approve=self.approve,
            rate=self.rate.text if self.rate else None,
            created_at=self.created_at,
            updated_at=self.updated_at,
        )


@dataclass(frozen=True)
class AgentInfo:
    """A profile as listings show it: everything but the token digest."""

    name: str
    description: str
    credentials: tuple[str, ...]
    tools: tuple[str, ...]
    actions: tuple[str, ...]
    allow: tuple[str, ...]
    approve: tuple[str, ...]
    rate: str | None
    created_at: str
    updated_at: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "credentials": list(self.credentials),
            "tools": list(self.tools),
            "actions": list(self.actions),
            "allow": list(self.allow),
            "approve": list(self.approve),
            "rate": self.rate,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }


def stamped(profile: AgentProfile, created_at: str | None) -> AgentProfile:
    """``profile`` with timestamps: a replaced profile keeps its creation time."""
    now = _now()
    return replace(profile, created_at=created_at or now, updated_at=now)
