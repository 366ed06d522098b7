"""Identity at the edge: the bearer credential of a request, turned into who it is, once.

Three credentials are accepted, every one compared in constant time:

- an **API key** (``vk_…``, ``vultrino key create``): its role's profile and permissions;
- an **agent token** (``vagent_…``, ``vultrino agent add``): the agent's profile (``read`` and
  ``execute`` on its globs);
- the **server token** of the home (``$VULTRINO_HOME/mcp-token``, 0600): the home's owner,
  every permission, no profile — what the approvals CLI on the same machine uses.

:class:`Identity` is placed in the request's scope by the application and read by every
handler; nothing downstream parses a header again. A later web UI puts a session's identity
in the same place.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from vultrino.core import Vultrino
from vultrino.errors import (
    AgentNotFoundError,
    InvalidApiKeyError,
    MissingApiKeyError,
    VultrinoError,
)
from vultrino.policy.access import KEY_PREFIX
from vultrino.policy.decide import require

__all__ = ["Authenticator", "Identity"]


@dataclass(frozen=True)
class Identity:
    """Who a request is. ``profile`` names the role or agent it acts as (None: the server
    token, which acts as the home's owner); ``key_id`` is set for an API key."""

    kind: str  # "key", "agent" or "server"
    name: str
    profile: str | None
    key_id: str | None = None

    @property
    def label(self) -> str:
        """How audit records and approvals name it: ``key:NAME``, ``agent:NAME``, ``server``."""
        return "server-token" if self.kind == "server" else f"{self.kind}:{self.name}"


SERVER = Identity("server", "server-token", None)


class Authenticator:
    """Checks bearer credentials against the home (keys and profiles are re-read when the
    store changes, so a revoked key is refused on its next request)."""

    def __init__(self, v: Vultrino, server_token: str) -> None:
        self._v = v
        self._server_token = server_token.encode()

    def identify(self, authorization: str | None) -> Identity:
        """The identity of an ``Authorization`` header value (MissingApiKeyError,
        InvalidApiKeyError, ExpiredApiKeyError). A key's use is noted for ``key list``."""
        if not authorization:
            raise MissingApiKeyError("Authorization header with Bearer token required")
        scheme, _, credential = authorization.partition(" ")
        credential = credential.strip()
        if scheme.lower() != "bearer" or not credential:
            raise MissingApiKeyError(
                "Authorization header with Bearer token required (`Authorization: Bearer KEY`)"
            )
        if hmac.compare_digest(credential.encode(), self._server_token):
            return SERVER
        if credential.startswith(KEY_PREFIX):
            key = self._v.key_identity(credential)
            self._v.note_key_use(key.id)
            return Identity("key", key.name, key.role, key.id)
        agent = self._v.agent_for_token(credential)
        if agent is None:
            raise InvalidApiKeyError(
                "invalid API key: not a key or agent token of this server (or it was revoked)"
            )
        return Identity("agent", agent, agent)

    def profile_for(self, credential: str) -> str | None:
        """For the MCP endpoint: the profile a bearer credential runs under, None when it is
        refused (the server token is checked by the endpoint itself)."""
        try:
            who = self.identify(f"Bearer {credential}")
        except VultrinoError:
            return None
        return who.profile

    def require(self, who: Identity, verb: str) -> None:
        """PermissionDeniedError unless ``who`` holds ``verb`` (the server token holds all)."""
        if who.profile is None:
            return
        try:
            profile = self._v.agent_profile(who.profile)
        except AgentNotFoundError:
            raise InvalidApiKeyError(
                f"{who.label} acts as {who.profile!r}, which no longer exists"
            ) from None
        require(profile, verb)
