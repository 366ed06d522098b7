"""Approvals: what a person is asked before a gated call runs, and who asks them."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["Approval", "ApprovalRequest", "Approver", "summarize"]

Approval = Literal["granted", "declined", "unavailable"]


@dataclass(frozen=True)
class ApprovalRequest:
    """What a person is asked to approve. ``summary`` is a short, secret-free description."""

    agent: str
    plugin: str
    action: str
    alias: str | None
    tool: str | None
    summary: str

    def message(self) -> str:
        via = (
            f"tool {self.tool!r} ({self.plugin}:{self.action})"
            if self.tool
            else (f"action {self.plugin}:{self.action}")
        )
        cred = f" with credential {self.alias!r}" if self.alias else ""
        return f"Agent {self.agent!r} asks to run {via}{cred}: {self.summary}. Approve this call?"


Approver = Callable[[ApprovalRequest], Approval]
"""Asks a person; returns ``granted``, ``declined`` or ``unavailable`` (no way to ask)."""


def summarize(plugin: str, action: str, params: Mapping[str, Any]) -> str:
    """A short, one-line description of a call for an approval prompt (no secret is in the
    parameters: they come from the agent)."""
    if plugin == "http" and "url" in params:
        return f"{str(params.get('method', 'GET')).upper()} {params['url']}"[:500]
    text = json.dumps(dict(params), ensure_ascii=False, default=str, sort_keys=True)
    return text if len(text) <= 500 else text[:497] + "..."
