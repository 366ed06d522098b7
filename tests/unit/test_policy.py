"""The policy gate: decide(profile, call) is pure and is the one answer to "may agent X do this"."""

from __future__ import annotations

import pytest

from vultrino.errors import ApprovalError, CredentialNotFoundError
from vultrino.policy import AgentProfile, Allow, Call, Deny, NeedsApproval, decide
from vultrino.policy.decide import (
    approval_refused,
    hidden_credential,
    url_narrowing,
    visible_tool,
)


def profile(**kw: object) -> AgentProfile:
    return AgentProfile.build("bot", **kw)  # type: ignore[arg-type]


def test_a_call_inside_the_profile_is_allowed_with_its_narrowing_and_rate() -> None:
    p = profile(
        credentials=["gh*"],
        tools=["http_request"],
        allow=["GET https://api.github.com/*"],
        rate="5/min",
    )
    d = decide(p, Call("bot", "http", "request", alias="gh-api", tool="http_request"))
    assert isinstance(d, Allow)
    assert d.narrow == ("GET https://api.github.com/*",) == url_narrowing(p)
    assert d.rate is not None and d.rate.count == 5


def test_a_hidden_credential_is_denied_as_if_it_did_not_exist() -> None:
    d = decide(profile(credentials=["gh*"]), Call("bot", "http", "request", alias="prod-db"))
    assert isinstance(d, Deny) and d.rule == "credential"
    assert d.reason == str(hidden_credential("prod-db"))
    assert isinstance(hidden_credential("x"), CredentialNotFoundError)


def test_a_tool_outside_the_profile_is_denied_as_unknown() -> None:
    d = decide(
        profile(credentials=["*"], tools=["totp_*"]),
        Call("bot", "http", "request", alias="a", tool="http_request"),
    )
    assert d == Deny("tool", "no tool named 'http_request'")


@pytest.mark.parametrize("actions", [["code"], ["totp:code"]])
def test_the_action_globs_match_action_or_plugin_action(actions: list[str]) -> None:
    p = profile(credentials=["*"], tools=["*"], actions=actions)
    assert isinstance(decide(p, Call("bot", "totp", "code", alias="t")), Allow)
    denied = decide(p, Call("bot", "totp", "reveal", alias="t"))
    assert isinstance(denied, Deny) and denied.rule == "action"
    assert "may not run action totp:reveal" in denied.reason


def test_an_approval_rule_on_a_bound_tool_holds_for_every_way_to_the_action() -> None:
    p = profile(credentials=["*"], tools=["*"], approve=["totp_code"])
    via_python = Call(
        "bot", "totp", "code", alias="t", bound_tools=("totp_code",), params={"digits": 6}
    )
    d = decide(p, via_python)
    assert isinstance(d, NeedsApproval)
    assert d.summary == '{"digits": 6}'
    assert isinstance(decide(p, Call("bot", "totp", "code", alias="t")), Allow)


def test_decide_reads_nothing_but_its_arguments() -> None:
    p = profile(credentials=["a"], tools=["*"], approve=["http:request"])
    call = Call("bot", "http", "request", alias="a", params={"url": "https://x/", "method": "post"})
    assert (
        decide(p, call)
        == decide(p, call)
        == NeedsApproval('{"method": "post", "url": "https://x/"}', (), None)
    )


def test_listings_show_a_tool_only_when_its_action_may_run() -> None:
    p = profile(tools=["*"], actions=["code"])
    assert visible_tool(p, "totp_code", "totp", "code")
    assert not visible_tool(p, "http_request", "http", "request")
    assert visible_tool(p, "list_credentials", "vultrino", "list_credentials")


def test_an_approval_not_granted_is_an_approval_error() -> None:
    assert approval_refused("bot", "granted", "t", "p") is None
    declined = approval_refused("bot", "declined", "t", "p")
    unavailable = approval_refused("bot", "unavailable", "t", "p")
    assert isinstance(declined, ApprovalError) and declined.approval == "declined"
    assert isinstance(unavailable, ApprovalError) and unavailable.approval == "unavailable"


def test_plugins_receive_the_narrowing_as_data_and_know_no_agent() -> None:
    import dataclasses

    from vultrino.plugins.base import CredentialView

    names = {f.name for f in dataclasses.fields(CredentialView)}
    assert {"narrow", "narrowed_by"} <= names
    assert not any("agent" in n for n in names)
