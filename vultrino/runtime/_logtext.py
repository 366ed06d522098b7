"""How plugin log text is made safe to print: one definition, shared by the runtime (which
escapes) and the plugin wrapper (which must scrub secrets in the escaped form too)."""

from __future__ import annotations

import re

__all__ = ["escape_control"]

#: Every C0/C1 control character but the tab: a plugin cannot forge log lines or drive a
#: terminal with them.
CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f]")


def _escape(match: re.Match[str]) -> str:
    return f"\\x{ord(match.group()):02x}"


def escape_control(text: str) -> str:
    """``text`` with each control character written as ``\\xNN``."""
    return CONTROL.sub(_escape, text)
