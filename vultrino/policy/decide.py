"""The one policy gate: what may agent X do, and may it do this call?

:func:`decide` is pure: it reads an :class:`~vultrino.policy.profile.AgentProfile` and a plain
description of one call (:class:`Call`) and answers :class:`Allow`, :class:`Deny` or
:class:`NeedsApproval`. It touches no store, no plugin and no clock; the call pipeline
(:mod:`vultrino.pipeline`) asks it once per call and acts on the answer. The visibility rules
that listings apply (which credentials and tools an agent is shown) live here too, so every
rule an agent is held to is in this module and :mod:`~vultrino.policy.profile`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import time
from types import MappingProxyType
from typing import Any, Literal, NamedTuple

from vultrino.errors import (
    AgentPolicyError,
    ApprovalError,
    CredentialDeniedError,
    PermissionDeniedError,
    RateLimitedError,
)
from vultrino.policy.approval import Approval, summarize
from vultrino.policy.profile import ALWAYS_VISIBLE_TOOLS, AgentProfile, Rate
from vultrino.policy.rules import Policy, evaluate

__all__ = [
    "Allow",
    "Call",
    "Decision",
    "Deny",
    "NeedsApproval",
    "approval_refused",
    "decide",
    "hidden_credential",
    "over_policy_rate",
    "over_rate",
    "require",
    "sees_credential",
    "sees_tool",
    "url_narrowing",
    "visible_tool",
]


class Call(NamedTuple):
    """One call as the gate sees it. ``alias`` is None for an action that needs no credential,
    ``tool`` None for a call that did not come through an MCP tool; ``bound_tools`` names every
    tool bound to the action (an approval rule written for a tool holds however the action is
    reached). ``params`` are the validated parameters (for the approval summary)."""

    agent: str
    plugin: str
    action: str
    alias: str | None = None
    tool: str | None = None
    bound_tools: tuple[str, ...] = ()
    params: Mapping[str, Any] = MappingProxyType({})
    now: time | None = None  # the local time of day, for policies' time windows

    @property
    def url(self) -> str | None:
        value = self.params.get("url")
        return value if isinstance(value, str) else None

    @property
    def method(self) -> str | None:
        value = self.params.get("method")
        return value if isinstance(value, str) else None


Limits = tuple[tuple[str, Rate], ...]
"""Buckets a call takes a token from besides its profile's: (bucket name, rate)."""


class Allow(NamedTuple):
    """The call may run. ``narrow`` holds URL patterns every HTTP request of the call (and
    every redirect hop) must match besides the credential's allowlist (empty: no narrowing).
    ``rate`` is the bucket the call takes a token from first (None: no limit); ``limits`` the
    policies' per-credential buckets, shared by every caller."""

    narrow: tuple[str, ...] = ()
    rate: Rate | None = None
    limits: Limits = ()


class NeedsApproval(NamedTuple):
    """The call may run once a person approves ``summary``; then as :class:`Allow`."""

    summary: str
    narrow: tuple[str, ...] = ()
    rate: Rate | None = None
    limits: Limits = ()


class Deny(NamedTuple):
    """The call is refused. ``rule`` names the part of the profile that refused it:
    ``credential`` and ``tool`` refusals look exactly like a name that does not exist."""

    rule: Literal["credential", "tool", "action", "permission", "policy"]
    reason: str


Decision = Allow | NeedsApproval | Deny


def sees_credential(profile: AgentProfile, alias: str) -> bool:
    """Whether the agent may see (list, name, use) the credential ``alias``."""
    return profile.sees_credential(alias)


def sees_tool(profile: AgentProfile, tool: str) -> bool:
    """Whether the agent may see the MCP tool ``tool`` at all."""
    return profile.sees_tool(tool)


def url_narrowing(profile: AgentProfile) -> tuple[str, ...]:
    """The URL patterns every HTTP request the agent makes (and every redirect hop) must
    match besides the credential's allowlist; empty: no narrowing. Handed to the plugin as
    data: the plugin never learns what an agent is."""
    return profile.allow


def visible_tool(profile: AgentProfile, tool: str, plugin: str, action: str) -> bool:
    """Whether ``tools/list`` shows the agent a tool: its name matches and its action may run."""
    return profile.sees_tool(tool) and (
        tool in ALWAYS_VISIBLE_TOOLS or profile.allows_action(plugin, action)
    )


def require(profile: AgentProfile, verb: str) -> None:
    """Raise PermissionDeniedError unless the profile holds permission ``verb``."""
    if not profile.allows(verb):
        raise PermissionDeniedError(
            f"{profile.kind} {profile.name!r} does not have the {verb!r} permission "
            f"(it has: {', '.join(profile.permissions) or 'none'})",
            agent=profile.name,
            verb=verb,
        )


def decide(profile: AgentProfile | None, call: Call, policies: Sequence[Policy] = ()) -> Decision:
    """The gate. For a caller with a profile (an agent, a key's role): the ``execute``
    permission, credential and tool visibility, the action globs and the approval rules. For
    every caller, the user too (``profile`` None): the ``[[policies]]`` covering the call's
    credential (deny, prompt, and their per-credential rate limits)."""
    narrow: tuple[str, ...] = ()
    rate: Rate | None = None
    ask = False
    if profile is not None:
        refused = _profile_refusal(profile, call)
        if refused is not None:
            return refused
        tools = (call.tool, *call.bound_tools) if call.tool else call.bound_tools
        ask = profile.needs_approval(call.plugin, call.action, tools)
        narrow, rate = url_narrowing(profile), profile.rate
    limits: Limits = ()
    if policies and call.alias is not None:
        verdict = evaluate(policies, call.alias, call.url, call.method, call.now)
        if verdict.deny is not None:
            return Deny("policy", verdict.deny)
        ask = ask or bool(verdict.prompt)
        limits = verdict.limits
    if ask:
        return NeedsApproval(summarize(call.plugin, call.action, call.params), narrow, rate, limits)
    return Allow(narrow, rate, limits)


def _profile_refusal(profile: AgentProfile, call: Call) -> Deny | None:
    """What the profile refuses of the call (None: nothing)."""
    if not profile.allows("execute"):
        return Deny(
            "permission",
            f"{profile.kind} {profile.name!r} does not have the 'execute' permission (it has: "
            f"{', '.join(profile.permissions) or 'none'}); use a key of a role with execute",
        )
    if call.alias is not None and not profile.sees_credential(call.alias):
        return Deny("credential", hidden_credential(call.alias).args[0])
    if call.tool is not None and not profile.sees_tool(call.tool):
        return Deny("tool", f"no tool named {call.tool!r}")
    if (
        call.alias is None
        and call.tool is None
        and not any(profile.sees_tool(t) for t in call.bound_tools)
    ):
        # nothing names a call that needs no credential but a tool: without one of its
        # tools in the profile, the action is not granted
        return Deny(
            "action",
            f"agent {profile.name!r} may not run action {call.plugin}:{call.action}: no tool "
            f"of its profile runs it (tools: {', '.join(call.bound_tools) or 'none'}); ask "
            "the user to add one with `vultrino agent add --force --tool NAME`",
        )
    if not profile.allows_action(call.plugin, call.action):
        return Deny(
            "action",
            f"agent {profile.name!r} may not run action {call.plugin}:{call.action} (its "
            f"profile allows actions: {', '.join(profile.actions) or 'none'}); ask the user to "
            "change the profile with `vultrino agent add --force`",
        )
    return None


# --- the errors a refusal raises ---------------------------------------------------------------


def hidden_credential(alias: str) -> CredentialDeniedError:
    """The error for an alias outside the profile: word for word the store's error for an
    alias that does not exist, so an agent cannot probe which aliases exist (the REST API
    answers it ``403 credential_denied``, decided by the globs alone, before the store)."""
    message = CredentialDeniedError.named(alias).args[0]
    return CredentialDeniedError(message, alias=alias)


def over_rate(agent: str, rate: Rate, wait: float, plugin: str) -> RateLimitedError:
    return RateLimitedError(
        f"agent {agent!r} is over its rate limit of {rate.text}; "
        f"try again in {max(wait, 0.1):.1f} s",
        agent=agent,
        retry_after=wait,
        plugin=plugin,
    )


def over_policy_rate(
    bucket: str, rate: Rate, wait: float, plugin: str, agent: str
) -> RateLimitedError:
    """The error of a call over a policy's per-credential limit (``policy:NAME:ALIAS``)."""
    _, name, alias = bucket.split(":", 2)
    return RateLimitedError(
        f"credential {alias!r} is over the rate limit of policy {name!r} ({rate.text}, for "
        f"all callers together); try again in {max(wait, 0.1):.1f} s",
        agent=agent,
        retry_after=wait,
        plugin=plugin,
    )


def approval_refused(
    agent: str, outcome: Approval, what: str, plugin: str
) -> AgentPolicyError | None:
    """The error for an approval that was not granted (None when it was)."""
    if outcome == "granted":
        return None
    by = f" by agent {agent!r}" if agent else ""
    if outcome == "declined":
        return ApprovalError(
            f"the user declined this call of {what!r}{by}; do not retry it unless the user asks",
            agent=agent,
            approval=outcome,
            plugin=plugin,
        )
    if outcome == "expired":
        return ApprovalError(
            f"nobody approved this call of {what!r}{by} in time, so it was not run; ask the "
            "user to approve it (`vultrino approvals list`), then call again",
            agent=agent,
            approval=outcome,
            plugin=plugin,
        )
    if not agent:
        return ApprovalError(
            f"{what!r} needs a person's approval (a `prompt` policy in config.toml), and there "
            "is no terminal to ask on; run the command on a terminal, or make the call through "
            "`vultrino serve`, whose approvals inbox a person decides",
            agent=agent,
            approval="unavailable",
            plugin=plugin,
        )
    return ApprovalError(
        f"{what!r} needs a person's approval for agent {agent!r}, and there is no way to ask "
        "a person for it here (the MCP client did not declare the elicitation capability on a "
        "protocol version that carries it, or the call came over HTTP, where the client is a "
        "program, not a person); use a stdio client that shows its user the prompt, or ask the "
        "user to drop --approve from the profile",
        agent=agent,
        approval="unavailable",
        plugin=plugin,
    )
