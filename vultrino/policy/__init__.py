"""Agent policy: every rule an agent is held to, in one place, with no I/O.

- :mod:`~vultrino.policy.profile` — the agent profile model (globs over credentials, tools and
  actions; URL patterns; a rate; approval rules), its sealed record, bearer-token hashing.
- :mod:`~vultrino.policy.decide` — the gate: ``decide(profile, call) -> Allow | Deny |
  NeedsApproval`` over a plain description of one call, and the visibility rules listings use.
- :mod:`~vultrino.policy.rate` — the token buckets that enforce a profile's rate.
- :mod:`~vultrino.policy.approval` — what a person is asked (:class:`ApprovalRequest`) and the
  callback that asks (:data:`Approver`).
- :mod:`~vultrino.policy.access` — roles (profiles with permission verbs, three built in) and
  API keys (digests, prefixes, expiry).
- :mod:`~vultrino.policy.rules` — the ``[[policies]]`` of config.toml: deny, prompt and
  per-credential rate rules that hold for every caller.

Nothing here reads the store, runs a plugin or knows an entry point: the call pipeline
(:mod:`vultrino.pipeline`) feeds it and acts on its answers, for every way in (CLI, Python, MCP).
"""

from vultrino.policy.access import BUILTIN_ROLES, ApiKey, KeyInfo, RoleInfo
from vultrino.policy.approval import Approval, ApprovalRequest, Approver, summarize
from vultrino.policy.decide import Allow, Call, Decision, Deny, NeedsApproval, decide
from vultrino.policy.profile import (
    AgentInfo,
    AgentProfile,
    Rate,
    hash_token,
    new_token,
    parse_rate,
    stamped,
)
from vultrino.policy.rate import RateLimiter

__all__ = [
    "BUILTIN_ROLES",
    "AgentInfo",
    "AgentProfile",
    "Allow",
    "ApiKey",
    "Approval",
    "ApprovalRequest",
    "Approver",
    "Call",
    "Decision",
    "Deny",
    "KeyInfo",
    "NeedsApproval",
    "Rate",
    "RateLimiter",
    "RoleInfo",
    "decide",
    "hash_token",
    "new_token",
    "parse_rate",
    "stamped",
    "summarize",
]
