"""The one call pipeline: every call, from every entry point, takes the same stages.

::

    resolve -> validate -> decide -> rate-limit -> approve -> run -> scrub -> audit

- **resolve**: the credential (for an agent, one outside its profile does not exist), its
  plugin, the action and the credential's view, kept as a plan while the store's revision and
  the registry's generation hold;
- **validate**: the parameters against the action's declaration;
- **decide**: :func:`vultrino.policy.decide` over a plain description of the call, for a call
  made under an agent profile (the user's own calls have no profile to decide on);
- **rate-limit**, **approve**: the profile's bucket, then a person (the caller's approver);
- **run**: the plugin, with the URL patterns the decision narrows HTTP requests by, as data;
- **scrub**: every form of the credential's secrets, from the result and from any error;
- **audit**: one record per call, whatever its outcome.

:class:`Pipeline` is the only code that runs a plugin action; the facade, the agent scope, the
CLI and the MCP server all call it. Listing what a caller may see (credentials, tools) lives here
too, so the same rules decide what an agent is shown and what it may run.
"""

from __future__ import annotations

import fnmatch
import functools
import json
import logging
import re
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from vultrino import audit
from vultrino._scrub import Scrubber, StreamScrubber, scrub_error, scrubber
from vultrino.errors import (
    AccessDeniedError,
    ActionFailedError,
    AgentPolicyError,
    ApprovalError,
    CredentialMismatchError,
    ParameterError,
    PermissionDeniedError,
    PluginNotFoundError,
    ToolNotFoundError,
    VultrinoError,
)
from vultrino.info import (
    CREDENTIAL_TOOLS,
    LIST_CREDENTIALS_TOOL,
    CredentialInfo,
    ToolInfo,
    canonical_type,
    credential_info,
    tool_infos,
)
from vultrino.plugins.base import (
    STREAM_PARAM,
    ActionSpec,
    CredentialTypeSpec,
    CredentialView,
    Plugin,
    StreamedBody,
    Streaming,
)
from vultrino.plugins.validation import renamed_arguments, type_name, validate_params
from vultrino.policy.approval import (
    SUMMARY_MAX_CHARS,
    ApprovalRequest,
    Approver,
    fits,
    shown,
)
from vultrino.policy.decide import (
    Call,
    Decision,
    Deny,
    NeedsApproval,
    approval_refused,
    decide,
    hidden_credential,
    over_policy_rate,
    over_rate,
    require,
    sees_credential,
    sees_tool,
    url_narrowing,
    visible_tool,
)
from vultrino.policy.rate import RateLimiter
from vultrino.policy.rules import Policy, parse_policies

if TYPE_CHECKING:
    from vultrino._scrub import Scrubber
    from vultrino.plugins.base import PreparedAction
    from vultrino.policy.profile import AgentProfile
    from vultrino.services import Services

__all__ = ["Caller", "Pipeline"]

_PLANS_MAX = 1024
_KEY_PART = (str, type(None))  # what a plan's key may hold besides the alias and action
_SOURCE_TAIL = {s: ',"source":' + audit.json_text(s) for s in ("api", "cli", "mcp")}
_NO_SECRETS = scrubber(())


@dataclass(frozen=True, slots=True)
class Caller:
    """Who a call runs for: a profile's name (an agent, or the role an API key acts as), and
    the person it asks about calls its profile marks ``approve`` (None: such calls are
    refused). ``key`` names the API key a REST call came with and ``client`` the address it
    came from; both go into the call's audit record. The user's own calls (CLI, Python) have
    no Caller."""

    agent: str
    approver: Approver | None = None
    key: str | None = None
    client: str | None = None


@dataclass(frozen=True, slots=True)
class _Plan:
    """What one (alias, action, plugin, agent, URL narrowing) resolves to, while ``stamp``
    (the store's revision, the registry's generation) holds: the plugin's name and its action,
    the tools bound to the action, the credential's secret values and their scrubber, the action
    bound to the credential as the plugin sees it (:meth:`Plugin.prepare`; one read-only view
    shared by the plan's calls), and the audit record of a successful call up to its duration
    (``…,"duration_ms":``). A call that needs no credential has a plan too (no secrets)."""

    stamp: tuple[int, int]
    plugin: str
    act: ActionSpec
    bound_tools: tuple[str, ...]
    secrets: list[Any]
    scrub: Scrubber
    run: PreparedAction
    describe: Callable[[Mapping[str, Any]], str | None]
    audit_ok: str
    # tool -> the gate's answer for this plan's agent (the profile cannot change while the
    # plan's stamp holds); approvals are decided afresh, their summary is per call
    decisions: dict[str | None, Decision]
    # the [[policies]] covering the credential: the gate runs for every caller then, and its
    # answer depends on the parameters, the time and the buckets, so it is never kept
    policies: tuple[Policy, ...] = ()


def _millis(nanos: int) -> float:
    return round(nanos / 1_000_000, 3)


class Pipeline:
    """Runs calls through the stages of the module docstring, over one home's parts."""

    def __init__(self, services: Services) -> None:
        self._s = services
        # (alias, action, plugin, agent, narrowing) -> what a call resolved them to, kept while
        # the store and the plugins are unchanged; they hold secrets, so forget() drops them
        self._plans: dict[tuple[Any, ...], _Plan] = {}
        # the agents' and policies' buckets: per process, or shared through the store
        self._limiter = RateLimiter(shared=services.shared_rate)
        config = services.config
        self._policies = parse_policies(config.policies, str(config.source or "config.toml"))
        #: who approves the user's own gated calls (a `prompt` policy); None: refused
        self.user_approver: Approver | None = None
        self._tools_signature = ""  # what refresh() last saw of the tool list

    def forget(self) -> None:
        """Drop every plan (they hold secrets' values); the facade's close() calls this."""
        self._plans.clear()

    # --- what a caller may see ---------------------------------------------------------------

    def profile(self, caller: Caller | None) -> AgentProfile | None:
        """The caller's profile, read once per call (None: the user, who has none)."""
        return None if caller is None else self._s.profile(caller.agent)

    def agent_profile(self, name: str) -> AgentProfile:
        return self._s.profile(name)

    def credentials(self, caller: Caller | None = None) -> list[CredentialInfo]:
        """Metadata of every credential the caller may see, sorted by alias (a role without
        ``read`` sees none: PermissionDeniedError)."""
        profile = self.profile(caller)
        if profile is not None:
            require(profile, "read")
        registry = self._s.registry
        return [
            credential_info(c, registry)
            for c in self._s.store.credentials()
            if profile is None or sees_credential(profile, c.alias)
        ]

    def credential_info(self, alias: str, caller: Caller | None = None) -> CredentialInfo:
        """A credential's metadata by its alias or its id."""
        ref = _exact(alias)
        profile = self.profile(caller)
        if profile is not None:
            require(profile, "read")
        alias = self._canonical(ref, profile, {})
        if profile is not None and not sees_credential(profile, alias):
            raise hidden_credential(ref)
        return credential_info(self._s.store.get(alias), self._s.registry)

    def tools(self, caller: Caller | None = None) -> list[ToolInfo]:
        """The MCP tools the caller may see; their ``credential`` descriptions name only the
        credentials it may see."""
        profile = self.profile(caller)
        creds = self._s.store.credentials()
        if profile is None:
            return tool_infos(creds, self._s.registry)
        return [
            t
            for t in tool_infos(creds, self._s.registry, lambda a: sees_credential(profile, a))
            if visible_tool(profile, t.name, t.plugin, t.action)
        ]

    def refresh(self) -> bool:
        """Pick up plugins and credentials changed by other processes; True when the tool
        list changed (an MCP server then notifies its client)."""
        with self._s.lock:
            self._s.reload_plugins_if_changed()
            new = json.dumps([t.__dict__ for t in self.tools()], sort_keys=True, default=str)
            changed = bool(self._tools_signature) and new != self._tools_signature
            self._tools_signature = new
            return changed

    # --- calls -------------------------------------------------------------------------------

    def execute(
        self,
        alias: str,
        action: str,
        params: Mapping[str, Any] | None = None,
        *,
        caller: Caller | None = None,
        plugin: str | None = None,
        tool: str | None = None,
        source: str = "api",
        from_cli: bool = False,
        stream: Streaming | None = None,
    ) -> Any:
        """Run ``action`` with credential ``alias``; ``plugin``, when given, must own its type.
        ``stream``: see :meth:`call`."""
        return self.call(
            alias, plugin, action, params, caller, None, tool, source, from_cli, stream=stream
        )

    def run_action(
        self,
        plugin: str,
        action: str,
        params: Mapping[str, Any] | None = None,
        *,
        caller: Caller | None = None,
        tool: str | None = None,
        source: str = "api",
        from_cli: bool = False,
    ) -> Any:
        """Run an action that needs no credential (``requires_credential = false``)."""
        return self.call(None, plugin, action, params, caller, None, tool, source, from_cli)

    def call_tool(
        self,
        name: str,
        arguments: Mapping[str, Any],
        *,
        caller: Caller | None = None,
        source: str = "mcp",
    ) -> Any:
        """Run an MCP tool by name with JSON arguments (validated before anything runs). For
        an agent, a tool outside its profile is as unknown as one that does not exist, and
        ``list_credentials`` lists only its credentials."""
        name = _exact(name)
        args = dict(arguments or {})
        profile = self.profile(caller)
        try:
            target = self._tool_target(name, args, profile)
        except VultrinoError as exc:  # refused before the stages, which write their own record
            if caller is not None:
                self._refused_tool(name, caller, source, exc)
            raise
        if target is None:  # a credential tool: metadata, through the caller's visibility
            return self._credential_tool(name, args, caller)
        alias, owner, action, mappings = target
        if mappings:  # the tool's argument names -> the action's (parameter_mappings)
            try:
                args = renamed_arguments(name, args, mappings)
            except ParameterError as exc:
                exc.plugin = owner
                if caller is not None:
                    self._refused_tool(name, caller, source, exc)
                raise
        return self.call(alias, owner, action, args, caller, profile, name, source, False)

    def _tool_target(
        self, name: str, args: dict[str, Any], profile: AgentProfile | None
    ) -> tuple[str | None, str, str, tuple[tuple[str, str], ...]] | None:
        """(alias, plugin, action, parameter_mappings) that tool ``name`` runs with ``args``
        (its ``credential`` argument taken out of them); None for ``list_credentials``."""
        if name in CREDENTIAL_TOOLS:
            allowed = {"pattern"} if name == LIST_CREDENTIALS_TOOL else {"credential"}
            extra = sorted(set(args) - allowed)
            if extra:
                raise ParameterError(
                    f"{name} takes only {' and '.join(sorted(allowed))}; got {extra}"
                )
            return None
        binding = next((b for b in self._s.registry.tools() if b.name == name), None)
        if binding is None or (profile is not None and not sees_tool(profile, name)):
            raise ToolNotFoundError(f"no tool named {name!r}")
        act = binding.action
        owner = binding.plugin.name
        if not act.needs_credential:
            return None, owner, act.name, binding.mappings
        alias = args.pop("credential", None)
        if alias is None:
            raise ParameterError(
                f"tool {name!r} needs a 'credential' argument: the alias of the credential to use "
                "(call list_credentials to see them)",
                plugin=owner,
            )
        if not isinstance(alias, str):
            raise ParameterError(
                f"tool {name!r}: wrong type: credential must be a string (the alias of a "
                f"credential), got {type_name(alias)}; call list_credentials to see the aliases",
                plugin=owner,
            )
        if not alias:
            raise ParameterError(
                f"tool {name!r}: credential must not be empty: pass the alias of a credential "
                "(call list_credentials to see them)",
                plugin=owner,
            )
        return alias, owner, act.name, binding.mappings

    def _credential_tool(
        self, name: str, args: dict[str, Any], caller: Caller | None
    ) -> list[dict[str, Any]] | dict[str, Any]:
        """``list_credentials`` (``pattern``: a glob over the aliases, as the original's) or
        ``get_credential_info`` (``credential``: an alias), for what the caller may see."""
        if name == LIST_CREDENTIALS_TOOL:
            pattern = args.get("pattern")
            if pattern is not None and not isinstance(pattern, str):
                raise ParameterError(
                    f"{name}: pattern must be a string glob such as 'github-*', got "
                    f"{type_name(pattern)}"
                )
            return [
                {"alias": c.alias, "id": c.id, "type": c.type, "description": c.description}
                for c in self.credentials(caller)
                if pattern is None or fnmatch.fnmatchcase(c.alias, pattern)
            ]
        alias = args.get("credential")
        if not isinstance(alias, str) or not alias:
            raise ParameterError(
                f"{name} needs 'credential': the alias of a credential, a non-empty string "
                "(call list_credentials to see them)"
            )
        return self.credential_info(alias, caller).to_dict()

    def _refused_tool(self, name: str, caller: Caller, source: str, exc: VultrinoError) -> None:
        """The record of an agent's tool call refused before it reached the stages (an
        unknown tool or one outside the profile, a bad ``credential`` argument)."""
        unknown = isinstance(exc, ToolNotFoundError)
        self._s.audit.write(
            {
                "alias": None,
                "plugin": None,
                "action": None,
                "agent": caller.agent,
                "tool": name,
                "outcome": "denied" if unknown else "error",
                "error": "ToolOutsideProfile" if unknown else type(exc).__name__,
                "duration_ms": 0.0,
                "source": source,
            }
        )

    # --- the stages --------------------------------------------------------------------------

    def call(  # noqa: PLR0917 - positional: the hot path of every call
        self,
        alias: str | None,
        plugin: str | None,
        action: str,
        params: Mapping[str, Any] | None,
        caller: Caller | None,
        profile: AgentProfile | None,
        tool: str | None,
        source: str,
        from_cli: bool,
        *,
        stream: Streaming | None = None,
    ) -> Any:
        """The stages, for one call: ``alias`` None for an action that needs no credential,
        ``caller`` None for the user's own calls (a caller's ``profile`` is read here when not
        given), ``tool`` the MCP tool the call came through. Every entry point ends here.

        ``stream`` (the forward proxy) makes the call stream its body both ways, for an
        action that can (``ActionSpec.streams``): the result is then a
        :class:`~vultrino.plugins.base.StreamedBody`, scrubbed as it is read, and the call's
        audit record is written when the reader closes it (with the bytes it passed)."""
        started = time.perf_counter_ns()
        if type(action) is not str or type(alias) not in _KEY_PART or type(plugin) not in _KEY_PART:
            # A str subclass may compare equal to another name than the one it spells: the
            # gate, the lookup and the plugin must all see the same plain name.
            alias, plugin, action = _exact(alias), _exact(plugin), _exact(action)
        if caller is not None and profile is None:
            profile = self._s.profile(caller.agent)  # a caller is never let past the gate
        record: dict[str, Any] = {
            "alias": alias,
            "plugin": plugin,
            "action": action,
            "agent": caller.agent if caller is not None else None,
        }
        if tool is not None:
            record["tool"] = tool
        if _log.isEnabledFor(logging.DEBUG):
            # the names of the parameters, never their values
            _log.debug(
                "call %s, parameters: %s",
                _fields_text(record),
                ", ".join(sorted(map(str, params or {}))) or "none",
            )
        if caller is not None:
            if caller.key is not None:
                record["key"] = caller.key
            if caller.client is not None:
                record["client"] = caller.client
        try:
            if alias is not None:
                alias = self._canonical(alias, profile, record)
            narrow = url_narrowing(profile) if profile is not None else ()
            plan = self._resolve(alias, action, plugin, narrow, record, profile)
            try:
                clean = validate_params(plan.act, params or {}, from_cli=from_cli)
                if plan.act.audited:
                    _note_params(record, plan.act.audited, clean, plan.scrub)
                if stream is not None and not plan.act.streams:
                    raise ParameterError(
                        f"action {plan.act.name!r} of plugin {plan.plugin!r} cannot stream",
                        plugin=plan.plugin,
                    )
                if profile is not None or plan.policies:
                    self._gate(
                        caller,
                        profile,
                        plan,
                        record,
                        alias=alias,
                        tool=tool,
                        params=clean,
                        streamed_body=stream is not None and stream.body is not None,
                    )
                result = plan.run(clean if stream is None else {**clean, STREAM_PARAM: stream})
                scrub = plan.scrub
                if result.new_state is not None and alias is not None:
                    with self._s.lock:
                        self._s.store.update_state(alias, result.new_state)
                    scrub = scrubber([*plan.secrets, *result.new_state.values()])
                done = result.scrubbed
                if done is not None and done.covers(scrub):
                    value = result.value  # scrubbed already, of these forms and more
                elif isinstance(result.value, StreamedBody):
                    value = _rescrubbed(result.value, scrub)
                else:
                    value = scrub.in_place(result.value)  # a result is the caller's own
            except VultrinoError as exc:
                if isinstance(exc, AgentPolicyError) and not exc.agent and caller is not None:
                    exc.agent = caller.agent  # a narrowing the plugin enforced names no agent
                # Any message may quote what the agent sent, the server answered or the plugin
                # wrote (a URL, a Location, a guest's error text): none leaves with a secret in it.
                raise scrub_error(exc, plan.scrub) from None
        except BaseException as exc:
            self._audit_failure(record, source, started, exc)
            raise
        if isinstance(value, StreamedBody):
            value.on_close = functools.partial(self._audit_stream, record, source, started)
            return value
        elapsed = time.perf_counter_ns() - started
        if len(record) == 4:  # no tool, nothing added on the way: the plan's text holds
            tail = _SOURCE_TAIL.get(source) or ',"source":' + audit.json_text(source)
            self._s.audit.write_text(plan.audit_ok + audit.millis_text(elapsed) + tail)
            if _log.isEnabledFor(logging.INFO):
                _log_call({**record, "outcome": "ok", "duration_ms": _millis(elapsed)}, source)
        else:
            record.update(outcome="ok", duration_ms=_millis(elapsed), source=source)
            self._s.audit.write(record)
            if _log.isEnabledFor(logging.INFO):
                _log_call(record, source)
        return value

    def _canonical(self, ref: str, profile: AgentProfile | None, record: dict[str, Any]) -> str:
        """The alias ``ref`` names: itself, or the alias of the credential whose id it is, as
        the store's one lookup resolves it. From here on the call (its gate, its plan, its
        audit record) knows the credential by its alias. A credential outside the caller's
        profile fails under the name it was given, word for word as a missing one."""
        alias = self._s.store.alias_of(ref)
        if alias != ref:
            if profile is not None and not sees_credential(profile, alias):
                record.update(outcome="denied", error="CredentialOutsideProfile")
                raise hidden_credential(ref)
            record["alias"] = alias
        return alias

    def _resolve(  # noqa: PLR0917 - positional: on every call's path
        self,
        alias: str | None,
        action: str,
        plugin: str | None,
        narrow: tuple[str, ...],
        record: dict[str, Any],
        profile: AgentProfile | None,
    ) -> _Plan:
        """What a call resolves to, reused while the store's revision and the registry's
        generation are what they were when it was made (so a changed credential, agent profile
        or plugin is seen on the very next call). The URL narrowing is part of the key, so a
        plan made under one profile is never used under a changed one. For an agent, a
        credential outside its profile does not exist: it is refused before the store is read
        (a plan is only ever made for a visible one)."""
        s = self._s
        store = s.loaded_store if s.loaded_store is not None else s.store
        registry = s.loaded_registry if s.loaded_registry is not None else s.registry
        stamp = (store.revision, registry.generation)  # before reading: never newer
        key = (alias, action, plugin, record["agent"], narrow)
        # Exact types only: a str subclass could compare equal to another alias's key.
        hashable = type(action) is str and type(alias) in _KEY_PART and type(plugin) in _KEY_PART
        if hashable:
            plan = self._plans.get(key)
            if plan is not None and plan.stamp == stamp:
                record["plugin"] = plan.plugin
                return plan
        if profile is not None and alias is not None and not sees_credential(profile, alias):
            record.update(outcome="denied", error="CredentialOutsideProfile")
            raise hidden_credential(alias)
        plan = (
            self._credential_plan(alias, action, plugin, record, stamp, narrow=narrow)
            if alias is not None
            else self._plain_plan(action, plugin, record, stamp)
        )
        if hashable:
            if len(self._plans) >= _PLANS_MAX:
                self._plans.clear()
            self._plans[key] = plan
        return plan

    def _credential_plan(
        self,
        alias: str,
        action: str,
        plugin: str | None,
        record: dict[str, Any],
        stamp: tuple[int, int],
        *,
        narrow: tuple[str, ...],
    ) -> _Plan:
        registry = self._s.registry
        cred = self._s.store.get(alias)
        owner, spec = registry.resolve_type(cred.type)
        record["plugin"] = owner.name
        registry.check_enabled(owner.name)
        if plugin is not None and owner.name != plugin:
            raise CredentialMismatchError(
                f"credential {alias!r} is of type {cred.type!r}, which plugin {plugin!r} "
                f"does not handle; pick a credential of one of: {self._plugin_types(plugin)}",
                plugin=plugin,
            )
        act = owner.manifest.require_action(action)
        if not act.needs_credential:
            raise CredentialMismatchError(
                f"action {action!r} of plugin {owner.name!r} needs no credential: run it "
                f"without an alias (`vultrino request --plugin {owner.name} --action "
                f"{action}`, or Vultrino.run_action in Python)",
                plugin=owner.name,
            )
        if not act.accepts(spec.name):
            raise CredentialMismatchError(
                f"action {action!r} of plugin {owner.name!r} needs a credential of type "
                f"{_type_list(owner, act)}, but {alias!r} is of type {cred.type!r}",
                plugin=owner.name,
            )
        secret_names = tuple(dict.fromkeys([*cred.secret_fields, *spec.secret_fields]))
        secrets = [cred.fields.get(f) for f in secret_names]
        secrets += cred.state.values()  # scrubber() keeps only the strings
        view = CredentialView(
            alias=cred.alias,
            type=spec.name,
            fields=MappingProxyType(cred.fields),  # cred is this plan's own copy
            allow=tuple(cred.allow),
            state=MappingProxyType(cred.state),
            narrow=narrow,
            narrowed_by=f"agent {record['agent']!r}" if record["agent"] else "",
            secret_fields=secret_names,
            host_fields=tuple(cred.host_fields),
        )
        return _Plan(
            stamp=stamp,
            plugin=owner.name,
            act=act,
            bound_tools=_bound_tools(owner, action),
            secrets=secrets,
            scrub=scrubber(secrets),
            run=owner.prepare(action, view),
            describe=functools.partial(owner.describe, action),
            audit_ok=_audit_ok(record),
            decisions={},
            policies=tuple(p for p in self._policies if p.covers(alias)),
        )

    def _plain_plan(
        self, action: str, plugin: str | None, record: dict[str, Any], stamp: tuple[int, int]
    ) -> _Plan:
        if plugin is None:
            raise PluginNotFoundError("an action without a credential needs its plugin's name")
        owner = self._s.registry.get(plugin)
        self._s.registry.check_enabled(owner.name)
        act = owner.manifest.require_action(action)
        if act.needs_credential:
            raise CredentialMismatchError(
                f"action {action!r} of plugin {plugin!r} needs a credential of type "
                f"{_type_list(owner, act)}: run it with an alias",
                plugin=plugin,
            )
        execute = owner.execute

        def run(clean: dict[str, Any]) -> Any:
            return execute(action, clean, None)

        return _Plan(
            stamp=stamp,
            plugin=owner.name,
            act=act,
            bound_tools=_bound_tools(owner, action),
            secrets=[],
            scrub=_NO_SECRETS,
            run=run,
            describe=functools.partial(owner.describe, action),
            audit_ok=_audit_ok(record),
            decisions={},
        )

    def _gate(
        self,
        caller: Caller | None,
        profile: AgentProfile | None,
        plan: _Plan,
        record: dict[str, Any],
        *,
        alias: str | None,
        tool: str | None,
        params: Mapping[str, Any],
        streamed_body: bool = False,
    ) -> None:
        """decide, then rate-limit, then approve; raise AgentPolicyError (or the error of a
        name that does not exist, or AccessDeniedError for a policy) to refuse. The rate
        limits are taken before asking a person, so a refused caller cannot flood them with
        prompts. The user's own calls (no caller) meet the policies only."""
        agent = caller.agent if caller is not None else ""
        decision = plan.decisions.get(tool)
        if decision is None:
            now = datetime.now().time() if plan.policies else None
            call = Call(
                agent, plan.plugin, plan.act.name, alias, tool, plan.bound_tools, params, now
            )
            decision = decide(profile, call, plan.policies)
            if not isinstance(decision, NeedsApproval) and not plan.policies:
                plan.decisions[tool] = decision
        if isinstance(decision, Deny):
            if decision.rule == "credential" and alias is not None:
                raise hidden_credential(alias)
            if decision.rule == "tool":
                raise ToolNotFoundError(decision.reason)
            if decision.rule == "permission":
                raise PermissionDeniedError(
                    decision.reason, agent=agent, verb="execute", plugin=plan.plugin
                )
            if decision.rule == "policy":
                raise AccessDeniedError(decision.reason, plugin=plan.plugin)
            raise AgentPolicyError(decision.reason, agent=agent, plugin=plan.plugin)
        if decision.rate is not None:
            wait = self._limiter.take(agent, decision.rate)
            if wait > 0:
                raise over_rate(agent, decision.rate, wait, plan.plugin)
        for bucket, rate in decision.limits:
            wait = self._limiter.take(bucket, rate)
            if wait > 0:
                raise over_policy_rate(bucket, rate, wait, plan.plugin, agent)
        if isinstance(decision, NeedsApproval):
            if streamed_body:
                record["approval"] = "unavailable"
                raise ApprovalError(
                    f"this call of {tool or plan.act.name!r} needs a person's approval, and its "
                    "body is streamed, so it cannot be shown to them whole; it was not run. Send "
                    "a body small enough to be shown (a few KiB), or ask the user to drop "
                    "--approve",
                    agent=agent,
                    approval="unavailable",
                    plugin=plan.plugin,
                )
            described = plan.describe(params)  # the plugin's view of exactly what is sent
            summary = shown(decision.summary if described is None else described)
            if not fits(summary):
                record["approval"] = "unavailable"
                raise ApprovalError(
                    f"this call of {tool or plan.act.name!r} is too large to show a person for "
                    f"approval ({len(summary)} characters; at most {SUMMARY_MAX_CHARS}); it was "
                    "not run. Send a smaller call, or ask the user to drop --approve",
                    agent=agent,
                    approval="unavailable",
                    plugin=plan.plugin,
                )
            request = ApprovalRequest(
                agent=agent,
                plugin=plan.plugin,
                action=plan.act.name,
                alias=alias,
                tool=tool,
                summary=summary,
            )
            approver = caller.approver if caller is not None else self.user_approver
            outcome = approver(request) if approver else "unavailable"
            record["approval"] = outcome
            refused = approval_refused(agent, outcome, tool or plan.act.name, plan.plugin)
            if refused is not None:
                raise refused

    def _audit_stream(  # noqa: PLR0917 - StreamedBody.on_close, bound by call()
        self,
        record: dict[str, Any],
        source: str,
        started: int,
        outcome: str,
        error: str | None,
        size: int,
    ) -> None:
        """The record of a streamed call, once its body has gone through (or stopped)."""
        record.update(outcome=outcome, duration_ms=_millis(time.perf_counter_ns() - started))
        if error is not None:
            record["error"] = error
        record.update(bytes=size, source=source)
        self._s.audit.write(record)

    def _audit_failure(
        self, record: dict[str, Any], source: str, started: int, exc: BaseException
    ) -> None:
        """Append the audit record of a call that raised ``exc``: ``error`` is the plugin's
        error code or the error's class; a refusal (the agent's profile, the credential's
        allowlist, the address rules) is ``denied``."""
        if isinstance(exc, ActionFailedError):
            record.update(outcome="error", error=exc.code)
        elif isinstance(exc, AccessDeniedError):  # a profile, an allowlist, an address rule
            record.update(outcome="denied", error=type(exc).__name__)
        elif isinstance(exc, VultrinoError) and record.get("outcome") != "denied":
            record.update(outcome="error", error=type(exc).__name__)
        record["duration_ms"] = _millis(time.perf_counter_ns() - started)
        record["source"] = source
        record.setdefault("outcome", "error")
        self._s.audit.write(record)
        if _log.isEnabledFor(logging.INFO):
            _log_call(record, source)

    def _plugin_types(self, plugin: str) -> str:
        p = self._s.registry.get(plugin)
        return ", ".join(canonical_type(p, t) for t in p.manifest.credential_types)


def _rescrubbed(body: StreamedBody, scrub: Scrubber) -> StreamedBody:
    """``body`` scrubbed (again) with ``scrub``: its head now, its chunks as they pass."""
    inner = body.chunks()

    def chunks() -> Iterator[bytes]:
        stream = StreamScrubber(scrub)
        for chunk in inner:
            out = stream.feed(chunk)
            if out:
                yield out
        rest = stream.finish()
        if rest:
            yield rest

    headers = [(scrub.text(n), scrub.text(v)) for n, v in body.headers]
    return StreamedBody(body.status, headers, scrub.text(body.url), chunks(), body.close)


def _type_list(plugin: Plugin, act: ActionSpec) -> str:
    return " or ".join(
        repr(canonical_type(plugin, CredentialTypeSpec(t))) for t in act.accepted_types
    )


def _bound_tools(plugin: Plugin, action: str) -> tuple[str, ...]:
    return tuple(t.name for t in plugin.manifest.mcp_tools if t.action == action)


#: The longest audited parameter value kept whole; a longer one is cut, marked with its length.
AUDITED_MAX_CHARS = 2048


def _note_params(
    record: dict[str, Any], names: tuple[str, ...], clean: Mapping[str, Any], scrub: Scrubber
) -> None:
    """Add the audited parameters' values (the HTTP method and URL) to ``record``: scrubbed of
    the credential's secrets, a URL's userinfo password masked, a long value cut."""
    for name in names:
        value = clean.get(name)
        if value is None:
            continue
        text = scrub.text(value if isinstance(value, str) else str(value))
        if name == "url":
            text = _USERINFO_PASSWORD.sub(r"\1***@", text, count=1)
        if len(text) > AUDITED_MAX_CHARS:
            text = f"{text[:AUDITED_MAX_CHARS]}… ({len(text)} chars)"
        record[name] = text


#: ``scheme://user:password@``: the password an agent wrote into a URL is not kept in the log.
_USERINFO_PASSWORD = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://[^/?#@:]*:)[^/?#@]*@")


_log = logging.getLogger("vultrino.pipeline")


def _fields_text(fields: Mapping[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in fields.items() if v is not None)


def _log_call(record: Mapping[str, Any], source: str) -> None:
    """One INFO line per call: what its audit record holds (names, outcome, error class,
    duration, a scrubbed URL), never a parameter's value or a secret. ``vultrino_fields``
    carries the same as data for the CLI's JSON log format."""
    fields = {**record, "source": source}
    _log.info("call %s", _fields_text(fields), extra={"vultrino_fields": fields})


def _audit_ok(record: dict[str, Any]) -> str:
    """The text of a successful call's record up to its duration: the four fields every
    record starts with (a call through a tool, which adds one, writes its record whole)."""
    base = {k: record[k] for k in ("alias", "plugin", "action", "agent")}
    return audit.fields_text({**base, "outcome": "ok"}) + ',"duration_ms":'


def _exact(name: Any) -> Any:
    """A name as the plain ``str`` it spells (a subclass's own ``__eq__``/``__hash__`` could
    make it equal to another name); anything else unchanged, for the stages to refuse."""
    return str.__str__(name) if isinstance(name, str) and type(name) is not str else name
