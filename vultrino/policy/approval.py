"""Approvals: what a person is asked before a gated call runs, and who asks them."""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

__all__ = [
    "SUMMARY_MAX_CHARS",
    "Approval",
    "ApprovalRequest",
    "Approver",
    "fits",
    "shown",
    "summarize",
]

Approval = Literal["granted", "declined", "unavailable", "expired"]


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
        who = f"Agent {self.agent!r}" if self.agent else "The user"
        via = (
            f"tool {self.tool!r} ({self.plugin}:{self.action})"
            if self.tool
            else (f"action {self.plugin}:{self.action}")
        )
        cred = f" with credential {self.alias!r}" if self.alias else ""
        return f"{who} asks to run {via}{cred}:\n{self.summary}\nApprove this call?"


Approver = Callable[[ApprovalRequest], Approval]
"""Asks a person; returns ``granted``, ``declined``, ``unavailable`` (no way to ask) or
``expired`` (nobody answered in time)."""


#: The most a prompt shows; a gated call whose description is longer is refused, never cut.
SUMMARY_MAX_CHARS = 4000

# What a person could misread: control and format characters (bidi overrides and isolates,
# zero-width joiners), separators, private-use, surrogates and unassigned code points.
_HIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Co", "Cs", "Cn"})


def summarize(plugin: str, action: str, params: Mapping[str, Any]) -> str:
    """The parameters of a call, whole, as a prompt's generic summary (no secret is in them:
    they come from the agent). A plugin may describe its calls better (``Plugin.describe``)."""
    return json.dumps(dict(params), ensure_ascii=False, default=str, sort_keys=True)


def shown(text: str, *, lines: bool = True) -> str:
    """``text`` as a person will read it: every character that could hide or reorder what
    follows is written as ``\\u{XXXX}`` (line breaks between lines are kept unless ``lines``
    is false, as in one cell of a table)."""
    out = []
    for ch in text:
        if (ch != "\n" or not lines) and unicodedata.category(ch) in _HIDDEN_CATEGORIES:
            out.append(f"\\u{{{ord(ch):04X}}}")
        else:
            out.append(ch)
    return "".join(out)


def fits(text: str) -> bool:
    """Whether a summary can be shown whole (gated calls that cannot are refused)."""
    return len(text) <= SUMMARY_MAX_CHARS
