"""MCP prompts and completion, whatever the transport (standard library only).

One prompt per tool that runs a plugin action, named like the tool: it tells the model (or the
person picking it in their client) how to call that tool — the plugin and action behind it, its
arguments, and which of the caller's credentials it takes. Its one argument, ``credential``,
names the alias to use. A second prompt, :data:`USE_CREDENTIAL`, takes a ``credential`` and an
optional ``action`` (a tool name) and says what can be done with that credential.

``completion/complete`` completes those arguments: ``credential`` with the aliases the caller
may use (for a tool's prompt, only those of a type the tool takes), ``action`` with the tools
that take the credential already chosen. Everything is scoped by the caller's agent profile
through the facade (``Vultrino.as_agent``): a credential or tool outside the profile appears
nowhere, and a prompt of a hidden tool fails exactly like one that does not exist. Nothing here
reads a secret: descriptions and aliases are the non-secret metadata listings show.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

from vultrino.errors import VultrinoError
from vultrino.info import CredentialInfo, ToolInfo
from vultrino.mcp._tools import INVALID_PARAMS, INVALID_REQUEST, RpcError, ToolDesk

__all__ = ["COMPLETION_MAX", "USE_CREDENTIAL", "complete", "get_prompt", "list_prompts"]

USE_CREDENTIAL: Final = "use_credential"
"""The prompt that says what can be done with one credential."""

COMPLETION_MAX: Final = 100
"""The most values one ``completion/complete`` answer carries (the protocol's limit)."""


def _view(desk: ToolDesk, agent: str | None) -> tuple[list[ToolInfo], list[CredentialInfo]]:
    """The tools that run an action, and the credentials, this caller may see."""
    try:
        if agent is None:
            tools, creds = desk.v.tools(), desk.v.credentials()
        else:
            scope = desk.v.as_agent(agent)
            tools, creds = scope.tools(), scope.credentials()
    except VultrinoError as exc:
        raise RpcError(INVALID_REQUEST, str(exc)) from None
    return [t for t in tools if ToolDesk.runs_an_action(t.name)], creds


def _fits(tool: ToolInfo, cred: CredentialInfo) -> bool:
    return cred.type in tool.credential_types


def _argument(name: str, description: str, *, required: bool) -> dict[str, Any]:
    return {"name": name, "description": description, "required": required}


def list_prompts(desk: ToolDesk, agent: str | None) -> list[dict[str, Any]]:
    """The ``prompts`` of a ``prompts/list`` answer."""
    tools, _ = _view(desk, agent)
    prompts = [
        {
            "name": USE_CREDENTIAL,
            "title": "Use a credential",
            "description": "What Vultrino can do with one of your credentials, and how to ask "
            "for it (the secret is never shown).",
            "arguments": [
                _argument("credential", "The credential's alias", required=True),
                _argument("action", "A tool to use it with (optional)", required=False),
            ],
        }
    ]
    for tool in tools:
        entry: dict[str, Any] = {
            "name": tool.name,
            "title": f"Call {tool.name}",
            "description": f"How to call {tool.name} (plugin {tool.plugin}, action "
            f"{tool.action}): {tool.description}",
        }
        if tool.credential_types:
            entry["arguments"] = [
                _argument("credential", "The alias of the credential to use", required=False)
            ]
        prompts.append(entry)
    return prompts


def _unknown_prompt(name: str) -> RpcError:
    return RpcError(
        INVALID_PARAMS, f"Unknown prompt: {name!r}. Call prompts/list to see the available prompts."
    )


def _params_text(tool: ToolInfo) -> list[str]:
    schema = tool.input_schema
    required = set(schema.get("required", ()))
    lines = []
    for name, prop in schema.get("properties", {}).items():
        if name == "credential":
            continue
        kind = prop.get("type", "any")
        need = "required" if name in required else "optional"
        about = f": {prop['description']}" if prop.get("description") else ""
        lines.append(f"- `{name}` ({kind}, {need}){about}")
    return lines


def _tool_text(tool: ToolInfo, creds: Sequence[CredentialInfo], chosen: str | None) -> str:
    lines = [
        f"Use the tool `{tool.name}` (plugin `{tool.plugin}`, action `{tool.action}`): "
        f"{tool.description}"
    ]
    if tool.credential_types:
        fitting = [c for c in creds if _fits(tool, c)]
        if chosen is not None:
            lines.append(f'Pass `credential: "{chosen}"`.')
        elif fitting:
            listed = ", ".join(f"`{c.alias}`" for c in fitting)
            lines.append(f"Pass the alias of one of these credentials as `credential`: {listed}.")
        else:
            types = " or ".join(tool.credential_types)
            lines.append(
                f"It needs a credential of type {types}; there is none yet (the user adds one "
                "with `vultrino add`)."
            )
    params = _params_text(tool)
    if params:
        lines.append("Its other arguments:")
        lines.extend(params)
    lines.append(
        "Vultrino performs the action with the secret; the secret itself is never shown, so "
        "never ask for it."
    )
    return "\n".join(lines)


def _credential_text(cred: CredentialInfo, tools: Sequence[ToolInfo], action: str | None) -> str:
    usable = [t for t in tools if _fits(t, cred)]
    if action is not None:
        usable = [t for t in usable if t.name == action]
        if not usable:
            raise RpcError(
                INVALID_PARAMS,
                f"Tool {action!r} does not take credential {cred.alias!r}. Call "
                "completion/complete on the `action` argument to see the tools that do.",
            )
    about = f" ({cred.description})" if cred.description else ""
    lines = [f"The credential `{cred.alias}`{about} is of type `{cred.type}`."]
    if cred.allow:
        lines.append(f"It may only be sent to: {', '.join(cred.allow)}.")
    if usable:
        lines.append("Tools that take it:")
        lines.extend(f"- `{t.name}`: {t.description}" for t in usable)
        lines.append(f'Pass `credential: "{cred.alias}"` to the tool you choose.')
    else:
        lines.append("No tool takes it.")
    lines.append("The secret is never shown, so never ask for it.")
    if action is not None and usable:
        lines.append("")
        lines.append(_tool_text(usable[0], [cred], cred.alias))
    return "\n".join(lines)


def _string_arg(arguments: Mapping[str, Any], name: str) -> str | None:
    value = arguments.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise RpcError(INVALID_PARAMS, f"prompt argument {name!r} must be a string")
    return value


def get_prompt(
    desk: ToolDesk, name: str, arguments: Mapping[str, Any], agent: str | None
) -> dict[str, Any]:
    """The ``prompts/get`` result; -32602 for a prompt or credential this caller cannot see."""
    tools, creds = _view(desk, agent)
    by_alias = {c.alias: c for c in creds}
    credential = _string_arg(arguments, "credential")
    if credential is not None and credential not in by_alias:
        raise RpcError(
            INVALID_PARAMS,
            f"Unknown credential: {credential!r}. Call completion/complete on the `credential` "
            "argument (or the list_credentials tool) to see the aliases.",
        )
    if name == USE_CREDENTIAL:
        if credential is None:
            raise RpcError(
                INVALID_PARAMS, f"prompt {USE_CREDENTIAL} needs the `credential` argument"
            )
        text = _credential_text(by_alias[credential], tools, _string_arg(arguments, "action"))
        description = f"Using credential {credential}"
    else:
        tool = next((t for t in tools if t.name == name), None)
        if tool is None:
            raise _unknown_prompt(name)
        if credential is not None and not _fits(tool, by_alias[credential]):
            raise RpcError(
                INVALID_PARAMS,
                f"Tool {name!r} does not take credential {credential!r} (it takes "
                f"{' or '.join(tool.credential_types) or 'none'}).",
            )
        text = _tool_text(tool, creds, credential)
        description = f"How to call {tool.name}"
    return {
        "description": description,
        "messages": [{"role": "user", "content": {"type": "text", "text": text}}],
    }


def complete(
    desk: ToolDesk,
    ref: Mapping[str, Any],
    argument: Mapping[str, Any],
    context: Mapping[str, Any],
    agent: str | None,
) -> dict[str, Any]:
    """The ``completion/complete`` result: values for a prompt argument naming a credential
    alias or a tool, starting with what the client typed. Anything else completes to nothing
    (as does a prompt this caller cannot see)."""
    prefix = argument.get("value")
    prefix = prefix if isinstance(prefix, str) else ""
    values: list[str] = []
    if ref.get("type") == "ref/prompt":
        tools, creds = _view(desk, agent)
        prompt = ref.get("name")
        arg = argument.get("name")
        if prompt == USE_CREDENTIAL and arg == "credential":
            values = [c.alias for c in creds]
        elif prompt == USE_CREDENTIAL and arg == "action":
            chosen = context.get("credential")
            cred = next((c for c in creds if c.alias == chosen), None)
            values = [t.name for t in tools if cred is None or _fits(t, cred)]
        elif arg == "credential":
            tool = next((t for t in tools if t.name == prompt), None)
            if tool is not None:
                values = [c.alias for c in creds if _fits(tool, c)]
    matches = sorted(v for v in values if v.startswith(prefix))
    return {
        "completion": {
            "values": matches[:COMPLETION_MAX],
            "total": len(matches),
            "hasMore": len(matches) > COMPLETION_MAX,
        }
    }
