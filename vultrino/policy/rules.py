"""``[[policies]]``: rules about a credential that hold for every caller. No I/O.

The original Vultrino's policy format, parsed from config.toml::

    [[policies]]
    name = "github-readonly"
    credential_pattern = "github-*"      # glob over aliases
    default_action = "deny"              # when no rule matches: allow, deny or prompt
                                         # (default deny, as in the original)
    [[policies.rules]]
    condition = { method_match = ["GET", "HEAD"] }
    action = "allow"                     # allow, deny or prompt

    [[policies.rules]]
    condition = { rate_limit = { max = 100, window_secs = 60 } }
    action = "allow"

Conditions: ``url_match`` (a glob over the call's ``url`` parameter; ``*`` matches any run of
characters), ``method_match`` (a list; the call's ``method`` parameter, any case),
``time_window`` (``{start = "09:00", end = "17:00"}``, local time; a window may cross
midnight), ``and`` / ``or`` (lists), ``not``, and ``"always"``. ``rate_limit`` is a rule of its
own: a token bucket of ``max`` calls per ``window_secs`` for each credential the policy covers,
shared by **every** caller (agents, keys, the CLI, scripts, the server token), enforced
whenever the policy applies; over it, a call is refused with a ``retry_after``.

Evaluation (:func:`evaluate`): every policy whose pattern matches the call's credential is
consulted; in each, the first rule whose condition holds decides (``allow`` lets that policy
pass, ``deny`` refuses the call, ``prompt`` needs a person's approval); when none holds, its
``default_action`` does. The call runs only if no policy denies it, after an approval if any
policy prompts. Calls that use no credential are not covered by policies.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import time
from typing import Any

from vultrino.errors import ConfigError
from vultrino.policy.profile import Rate

__all__ = ["Condition", "Policy", "Rule", "Verdict", "evaluate", "parse_policies"]

ACTIONS = ("allow", "deny", "prompt")
_LEAVES = ("url_match", "method_match", "time_window", "rate_limit", "and", "or", "not")


@dataclass(frozen=True)
class Condition:
    """One condition: ``kind`` is a key of the TOML form; ``value`` its parsed argument."""

    kind: str
    value: Any = None

    def holds(self, url: str | None, method: str | None, now: time | None) -> bool:
        k, v = self.kind, self.value
        if k == "always":
            return True
        if k == "url_match":
            return url is not None and fnmatch.fnmatchcase(url, str(v))
        if k == "method_match":
            return method is not None and method.upper() in v
        if k == "time_window":
            if now is None:
                return False
            start: time = v[0]
            end: time = v[1]
            return start <= now <= end if start <= end else (now >= start or now <= end)
        if k == "and":
            return all(c.holds(url, method, now) for c in v)
        if k == "or":
            return any(c.holds(url, method, now) for c in v)
        if k == "not":
            return not bool(v.holds(url, method, now))
        return False  # pragma: no cover - parse_policies admits no other kind


@dataclass(frozen=True)
class Rule:
    condition: Condition
    action: str


@dataclass(frozen=True)
class Policy:
    name: str
    credential_pattern: str
    rules: tuple[Rule, ...]
    default_action: str
    limits: tuple[Rate, ...]

    def covers(self, alias: str) -> bool:
        return fnmatch.fnmatchcase(alias, self.credential_pattern)


@dataclass(frozen=True)
class Verdict:
    """What the policies say of one call: ``deny`` (a reason) wins; else ``prompt`` names
    the policies that want a person to approve it; ``limits`` are the buckets it takes from
    (``policy:NAME:ALIAS``)."""

    deny: str | None = None
    prompt: tuple[str, ...] = ()
    limits: tuple[tuple[str, Rate], ...] = ()


def evaluate(
    policies: Sequence[Policy],
    alias: str,
    url: str | None,
    method: str | None,
    now: time | None,
) -> Verdict:
    """The verdict of the policies covering ``alias`` on one call (see the module docstring)."""
    prompts: list[str] = []
    limits: list[tuple[str, Rate]] = []
    for policy in policies:
        if not policy.covers(alias):
            continue
        limits.extend((f"policy:{policy.name}:{alias}", rate) for rate in policy.limits)
        action = policy.default_action
        why = "no rule matched; its default_action is deny"
        for index, rule in enumerate(policy.rules):
            if rule.condition.holds(url, method, now):
                action = rule.action
                why = f"rule {index + 1} ({_describe(rule.condition)}) says deny"
                break
        if action == "deny":
            return Verdict(
                deny=f"denied by policy {policy.name!r} for credential {alias!r}: {why} "
                "(config.toml [[policies]])"
            )
        if action == "prompt":
            prompts.append(policy.name)
    return Verdict(prompt=tuple(prompts), limits=tuple(limits))


def _describe(c: Condition) -> str:
    if c.kind in ("and", "or"):
        return f" {c.kind} ".join(_describe(x) for x in c.value)
    if c.kind == "not":
        return f"not {_describe(c.value)}"
    if c.kind == "time_window":
        return f"time_window {c.value[0]:%H:%M}-{c.value[1]:%H:%M}"
    if c.kind == "always":
        return "always"
    return f"{c.kind} {c.value!r}"


# --- parsing ---------------------------------------------------------------------------------


def parse_policies(raw: Sequence[Mapping[str, Any]], where: str) -> tuple[Policy, ...]:
    """Parse the ``[[policies]]`` tables; ConfigError names the policy, the rule and the key."""
    out: list[Policy] = []
    names: set[str] = set()
    for index, table in enumerate(raw):
        at = f"{where}: policies[{index}]"
        unknown = sorted(set(table) - {"name", "credential_pattern", "rules", "default_action"})
        if unknown:
            raise ConfigError(f"{at}: unknown key(s) {unknown}")
        name = table.get("name")
        if not isinstance(name, str) or not name.strip():
            raise ConfigError(f"{at}.name: every policy needs a name (a string)")
        if name in names:
            raise ConfigError(f"{at}.name: {name!r} names two policies")
        names.add(name)
        pattern = table.get("credential_pattern")
        if not isinstance(pattern, str) or not pattern.strip():
            raise ConfigError(f"{at}.credential_pattern: a glob over aliases, such as 'github-*'")
        default = table.get("default_action", "deny")
        if default not in ACTIONS:
            raise ConfigError(f"{at}.default_action: one of {', '.join(ACTIONS)}, not {default!r}")
        rules_raw = table.get("rules", [])
        if not isinstance(rules_raw, list):
            raise ConfigError(f"{at}.rules: a list of {{condition, action}} tables")
        rules: list[Rule] = []
        limits: list[Rate] = []
        for r_index, rule in enumerate(rules_raw):
            r_at = f"{at}.rules[{r_index}]"
            if not isinstance(rule, dict) or set(rule) - {"condition", "action"}:
                raise ConfigError(f"{r_at}: a rule is {{condition = ..., action = ...}}")
            action = rule.get("action", "allow")
            if action not in ACTIONS:
                raise ConfigError(f"{r_at}.action: one of {', '.join(ACTIONS)}, not {action!r}")
            cond = rule.get("condition")
            if isinstance(cond, dict) and set(cond) == {"rate_limit"}:
                limits.append(_rate(cond["rate_limit"], f"{r_at}.condition.rate_limit"))
                continue
            rules.append(Rule(_condition(cond, f"{r_at}.condition"), action))
        out.append(Policy(name, pattern.strip(), tuple(rules), default, tuple(limits)))
    return tuple(out)


def _rate(value: Any, at: str) -> Rate:
    if not isinstance(value, dict) or set(value) != {"max", "window_secs"}:
        raise ConfigError(f"{at}: {{ max = N, window_secs = S }}")
    count, window = value["max"], value["window_secs"]
    if (
        not isinstance(count, int)
        or isinstance(count, bool)
        or count < 1
        or not isinstance(window, (int, float))
        or isinstance(window, bool)
        or window <= 0
    ):
        raise ConfigError(f"{at}: max must be a whole number >= 1 and window_secs > 0")
    return Rate(count=count, period=float(window), text=f"{count} per {window:g} s")


def _condition(value: Any, at: str) -> Condition:
    if value == "always":
        return Condition("always")
    if not isinstance(value, dict) or len(value) != 1:
        raise ConfigError(f'{at}: one of {", ".join(_LEAVES)} (as {{ kind = value }}), or "always"')
    ((kind, arg),) = value.items()
    if kind == "url_match" and isinstance(arg, str) and arg:
        return Condition(kind, arg)
    if (
        kind == "method_match"
        and isinstance(arg, list)
        and arg
        and all(isinstance(m, str) for m in arg)
    ):
        return Condition(kind, frozenset(m.upper() for m in arg))
    if kind == "time_window" and isinstance(arg, dict) and set(arg) == {"start", "end"}:
        return Condition(kind, (_time(arg["start"], f"{at}.start"), _time(arg["end"], f"{at}.end")))
    if kind in ("and", "or") and isinstance(arg, list) and arg:
        return Condition(kind, tuple(_condition(c, f"{at}.{kind}[{i}]") for i, c in enumerate(arg)))
    if kind == "not":
        return Condition(kind, _condition(arg, f"{at}.not"))
    if kind == "rate_limit":
        raise ConfigError(f"{at}: rate_limit must be a rule's whole condition, not part of one")
    raise ConfigError(f"{at}: {kind!r} with {arg!r} is not a condition Vultrino knows")


def _time(value: Any, at: str) -> time:
    if isinstance(value, time):
        return value
    if isinstance(value, str):
        try:
            return time.fromisoformat(value)
        except ValueError:
            pass
    raise ConfigError(f'{at}: a time of day such as "09:00", not {value!r}')
