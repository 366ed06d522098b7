"""`[[policies]]`: parsing (errors name the key), evaluation, and the gate for every caller."""

from __future__ import annotations

from datetime import time

import pytest

from vultrino.errors import ConfigError
from vultrino.policy.decide import Allow, Call, Deny, NeedsApproval, decide
from vultrino.policy.rules import evaluate, parse_policies

RAW = [
    {
        "name": "gh",
        "credential_pattern": "github-*",
        "default_action": "allow",
        "rules": [
            {"condition": {"method_match": ["delete"]}, "action": "deny"},
            {"condition": {"url_match": "https://api.github.com/admin/*"}, "action": "prompt"},
            {"condition": {"rate_limit": {"max": 5, "window_secs": 60}}, "action": "allow"},
        ],
    },
    {
        "name": "office-hours",
        "credential_pattern": "db-*",
        "rules": [
            {"condition": {"time_window": {"start": "09:00", "end": "17:00"}}, "action": "allow"}
        ],
    },
    {
        "name": "night",
        "credential_pattern": "ops",
        "default_action": "allow",
        "rules": [
            {
                "condition": {"not": {"time_window": {"start": "22:00", "end": "06:00"}}},
                "action": "prompt",
            }
        ],
    },
]
POLICIES = parse_policies(RAW, "config.toml")


def test_first_matching_rule_decides_and_limits_always_apply() -> None:
    v = evaluate(POLICIES, "github-ci", "https://api.github.com/x", "DELETE", None)
    assert v.deny is not None and "'gh'" in v.deny and "rule 1" in v.deny
    v = evaluate(POLICIES, "github-ci", "https://api.github.com/admin/keys", "GET", None)
    assert v.deny is None and v.prompt == ("gh",)
    v = evaluate(POLICIES, "github-ci", "https://api.github.com/user", "GET", None)
    assert v.deny is None and not v.prompt
    assert [(b, r.count, r.period) for b, r in v.limits] == [("policy:gh:github-ci", 5, 60.0)]
    assert evaluate(POLICIES, "other", None, None, None).limits == ()


def test_default_is_deny_and_time_windows_may_cross_midnight() -> None:
    assert evaluate(POLICIES, "db-main", None, None, time(10, 0)).deny is None
    assert evaluate(POLICIES, "db-main", None, None, time(18, 0)).deny is not None
    assert evaluate(POLICIES, "ops", None, None, time(23, 30)).prompt == ()
    assert evaluate(POLICIES, "ops", None, None, time(3, 0)).prompt == ()
    assert evaluate(POLICIES, "ops", None, None, time(12, 0)).prompt == ("night",)


def test_the_gate_applies_policies_to_the_user_too() -> None:
    call = Call("", "http", "request", "github-ci", params={"method": "DELETE", "url": "u"})
    assert isinstance(decide(None, call, POLICIES), Deny)
    call = Call("", "http", "request", "github-ci", params={"method": "GET", "url": "u"})
    allowed = decide(None, call, POLICIES)
    assert isinstance(allowed, Allow) and allowed.limits
    admin = Call("", "http", "request", "github-ci",
                 params={"method": "GET", "url": "https://api.github.com/admin/k"})  # fmt: skip
    assert isinstance(decide(None, admin, POLICIES), NeedsApproval)


@pytest.mark.parametrize(
    ("raw", "where"),
    [
        ([{"credential_pattern": "x"}], "policies[0].name"),
        ([{"name": "a", "credential_pattern": "x", "default_action": "maybe"}], "default_action"),
        (
            [{"name": "a", "credential_pattern": "x", "rules": [{"condition": {"url": "x"}}]}],
            "policies[0].rules[0].condition",
        ),
        (
            [
                {
                    "name": "a",
                    "credential_pattern": "x",
                    "rules": [
                        {"condition": {"and": [{"rate_limit": {"max": 1, "window_secs": 1}}]}}
                    ],
                }
            ],
            "rate_limit must be a rule's whole condition",
        ),
        (
            [
                {
                    "name": "a",
                    "credential_pattern": "x",
                    "rules": [{"condition": {"rate_limit": {"max": 0, "window_secs": 1}}}],
                }
            ],
            "max must be",
        ),
        ([{"name": "a", "credential_pattern": "x", "colour": 1}], "unknown key"),
        (
            [{"name": "a", "credential_pattern": "x"}, {"name": "a", "credential_pattern": "y"}],
            "names two policies",
        ),
    ],
)
def test_a_malformed_policy_names_what_is_wrong(raw: list[dict[str, object]], where: str) -> None:
    with pytest.raises(ConfigError, match=r"config\.toml") as info:
        parse_policies(raw, "config.toml")
    assert where in str(info.value)
