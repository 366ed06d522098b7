"""Agent profiles through the Python API: ``Vultrino.as_agent`` on a real store, a real wasm
plugin, the real HTTP plugin and a real HTTP server on 127.0.0.1 that records what reached it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.mcp_helpers import PASSWORD, make_home
from tests.leakcheck import LeakCheck
from tests.localhttp import Recorder, serving
from vultrino import Vultrino
from vultrino.errors import (
    AgentNotFoundError,
    AgentPolicyError,
    ApprovalError,
    CredentialNotFoundError,
    PluginNotFoundError,
    RateLimitedError,
)
from vultrino.policy import ApprovalRequest

LOCAL_SECRET = "local-key-0c9a8b7d6e5f4a3b"


@pytest.fixture
def server() -> Iterator[Recorder]:
    with serving(Recorder()) as srv:
        yield srv


@pytest.fixture
def v(isolated_home: Path, server: Recorder, leakcheck: LeakCheck) -> Iterator[Vultrino]:
    home = make_home(isolated_home)
    leakcheck.add(*home.secrets, LOCAL_SECRET)
    with Vultrino.open(isolated_home, PASSWORD) as vv:
        vv.add_credential("local", "api_key", {"key": LOCAL_SECRET}, allow=[f"{server.base}/*"])
        yield vv


def test_a_scope_sees_only_its_credentials_and_tools(v: Vultrino) -> None:
    _, token = v.add_agent("web", credentials=["loc*"], tools=["http_request"])
    s = v.as_agent("web")
    assert [c.alias for c in s.credentials()] == ["local"]
    tools = {t.name: t for t in s.tools()}
    assert set(tools) == {"list_credentials", "get_credential_info", "http_request"}
    described = tools["http_request"].input_schema["properties"]["credential"]["description"]
    assert "local" in described and "github" not in described and "echo-one" not in described
    assert [c["alias"] for c in s.call_tool("list_credentials", {})] == ["local"]
    # the full facade is unchanged
    assert {"echo_message", "http_request"} <= {t.name for t in v.tools()}
    assert token not in repr(v.agents())


def test_outside_the_profile_fails_as_if_absent_and_nothing_runs(
    v: Vultrino, server: Recorder
) -> None:
    v.add_agent("web", credentials=["local"], tools=["http_request"])
    s = v.as_agent("web")
    with pytest.raises(PluginNotFoundError) as hidden_tool:
        s.call_tool("echo_message", {"credential": "echo-one", "message": "hi"})
    with pytest.raises(PluginNotFoundError) as absent_tool:
        s.call_tool("no_such_tool", {})
    assert str(hidden_tool.value).replace("echo_message", "X") == str(absent_tool.value).replace(
        "no_such_tool", "X"
    )
    with pytest.raises(CredentialNotFoundError) as hidden:
        s.call_tool("http_request", {"credential": "github", "url": "https://api.github.com/"})
    with pytest.raises(CredentialNotFoundError) as absent:
        s.call_tool("http_request", {"credential": "nope", "url": "https://api.github.com/"})
    assert str(hidden.value).replace("github", "X") == str(absent.value).replace("nope", "X")
    with pytest.raises(CredentialNotFoundError):
        s.credential_info("github")
    with pytest.raises(CredentialNotFoundError):
        s.execute("echo-one", "echo", {"message": "hi"})
    assert server.paths == []
    denied = v.audit(agent="web", outcome="denied")
    by_alias = [r for r in denied if r["error"] != "ToolOutsideProfile"]
    assert [r["alias"] for r in by_alias] == ["github", "nope", "echo-one"]
    assert len(denied) - len(by_alias) == 2  # the hidden and the absent tool
    assert all(r["agent"] == "web" for r in denied)


def test_url_patterns_narrow_the_credential_allowlist_including_redirects(
    v: Vultrino, server: Recorder
) -> None:
    v.add_agent(
        "web",
        credentials=["local"],
        tools=["http_request"],
        allow=[f"GET {server.base}/ok/*", f"GET {server.base}/redirect"],
    )
    s = v.as_agent("web")
    out = s.call_tool("http_request", {"credential": "local", "url": f"{server.base}/ok/1"})
    assert out["status"] == 200
    for args in (
        {"url": f"{server.base}/secret"},
        {"url": f"{server.base}/ok/1", "method": "POST"},
        {"url": "https://api.github.com/"},  # outside the credential's list too
    ):
        with pytest.raises(AgentPolicyError if "github" not in args["url"] else Exception):
            s.call_tool("http_request", {"credential": "local", **args})
    with pytest.raises(AgentPolicyError, match="redirect to"):
        s.call_tool("http_request", {"credential": "local", "url": f"{server.base}/redirect"})
    assert server.paths == ["GET /ok/1", "GET /redirect"]  # the landing page was never asked
    # the same credential without a profile may go wherever its own allowlist says
    v.execute("local", "request", {"url": f"{server.base}/secret"})
    assert server.paths[-1] == "GET /secret"


def test_a_replaced_profile_holds_from_the_next_call_of_a_live_scope(
    v: Vultrino, server: Recorder
) -> None:
    # What a call resolved to (the profile's URL patterns included) is kept between calls only
    # while the store is unchanged.
    v.add_agent("web", credentials=["local"], tools=["*"], allow=[f"GET {server.base}/ok/*"])
    s = v.as_agent("web")
    for _ in range(2):
        s.execute("local", "request", {"url": f"{server.base}/ok/1"})
    v.add_agent(
        "web", credentials=["local"], tools=["*"], allow=[f"GET {server.base}/new/*"], replace=True
    )
    with pytest.raises(AgentPolicyError):
        s.execute("local", "request", {"url": f"{server.base}/ok/1"})
    s.execute("local", "request", {"url": f"{server.base}/new/1"})
    assert server.paths == ["GET /ok/1", "GET /ok/1", "GET /new/1"]


def test_action_allowlist(v: Vultrino) -> None:
    v.add_agent("e", credentials=["*"], tools=["*"], actions=["http:*"])
    s = v.as_agent("e")
    assert {t.name for t in s.tools()} == {
        "list_credentials",
        "get_credential_info",
        "http_request",
    }
    with pytest.raises(AgentPolicyError, match="may not run action echo:echo"):
        s.execute("echo-one", "echo", {"message": "hi"})


def test_rate_limit_is_per_agent(v: Vultrino) -> None:
    v.add_agent("slow", credentials=["echo-one"], tools=["echo_message"], rate="2/h")
    v.add_agent("other", credentials=["echo-one"], tools=["echo_message"], rate="2/h")
    s = v.as_agent("slow")
    args = {"credential": "echo-one", "message": "hi"}
    s.call_tool("echo_message", args)
    s.call_tool("echo_message", args)
    with pytest.raises(RateLimitedError, match="rate limit of 2/h") as exc:
        s.call_tool("echo_message", args)
    assert exc.value.retry_after > 0
    v.as_agent("other").call_tool("echo_message", args)  # its own bucket
    v.as_agent("slow")  # a new scope shares the process's bucket
    with pytest.raises(RateLimitedError):
        v.as_agent("slow").call_tool("echo_message", args)
    assert v.audit(agent="slow", outcome="denied")[0]["error"] == "RateLimitedError"


def test_approval(v: Vultrino) -> None:
    v.add_agent("care", credentials=["echo-one"], tools=["echo_message"], approve=["echo_message"])
    asked: list[ApprovalRequest] = []
    args = {"credential": "echo-one", "message": "sign me"}

    def yes(req: ApprovalRequest) -> Any:
        asked.append(req)
        return "granted"

    out = v.as_agent("care", approver=yes).call_tool("echo_message", args)
    assert out["params"]["message"] == "sign me"
    assert asked[0].agent == "care" and asked[0].tool == "echo_message"
    assert "sign me" in asked[0].message() and "echo-one" in asked[0].message()
    with pytest.raises(ApprovalError, match="declined"):
        v.as_agent("care", approver=lambda r: "declined").call_tool("echo_message", args)
    with pytest.raises(ApprovalError, match="no way to ask") as exc:
        v.as_agent("care").call_tool("echo_message", args)
    assert exc.value.approval == "unavailable"
    records = v.audit(agent="care")
    assert [(r["outcome"], r.get("approval")) for r in records] == [
        ("ok", "granted"),
        ("denied", "declined"),
        ("denied", "unavailable"),
    ]


def test_an_approval_rule_on_a_tool_holds_when_the_action_is_run_directly(v: Vultrino) -> None:
    # approve names the tool; execute() reaches the same action without naming any tool
    v.add_agent("tooly", credentials=["echo-one"], tools=["echo_message"], approve=["echo_message"])
    asked: list[ApprovalRequest] = []

    def no(req: ApprovalRequest) -> Any:
        asked.append(req)
        return "declined"

    with pytest.raises(ApprovalError, match="declined"):
        v.as_agent("tooly", approver=no).execute("echo-one", "echo", {"message": "hi"})
    assert len(asked) == 1
    with pytest.raises(ApprovalError, match="no way to ask"):
        v.as_agent("tooly").execute("echo-one", "echo", {"message": "hi"})
    assert [r.get("approval") for r in v.audit(agent="tooly")] == ["declined", "unavailable"]


def test_a_tool_outside_the_profile_is_unknown_and_audited(v: Vultrino) -> None:
    v.add_agent("narrow", credentials=["echo-one"], tools=["echo_message"])
    for tool in ("http_request", "no_such_tool"):
        with pytest.raises(PluginNotFoundError, match="no tool named"):
            v.as_agent("narrow").call_tool(tool, {"credential": "echo-one"})
    records = v.audit(agent="narrow", outcome="denied")
    assert [(r["tool"], r["error"]) for r in records] == [
        ("http_request", "ToolOutsideProfile"),
        ("no_such_tool", "ToolOutsideProfile"),
    ]


def test_removing_a_profile_revokes_a_live_scope(v: Vultrino) -> None:
    _, token = v.add_agent("gone", credentials=["*"], tools=["*"])
    s = v.as_agent("gone")
    assert v.agent_for_token(token) == "gone"
    v.remove_agent("gone")
    with pytest.raises(AgentNotFoundError):
        s.credentials()
    with pytest.raises(AgentNotFoundError):
        s.call_tool("echo_message", {"credential": "echo-one", "message": "x"})
    assert v.agent_for_token(token) is None
    with pytest.raises(AgentNotFoundError, match="agent list"):
        v.as_agent("gone")


def test_replacing_a_profile_issues_a_new_token_and_keeps_created_at(v: Vultrino) -> None:
    first, t1 = v.add_agent("r", credentials=["a"])
    second, t2 = v.add_agent("r", credentials=["b"], replace=True)
    assert t1 != t2
    assert v.agent_for_token(t1) is None and v.agent_for_token(t2) == "r"
    assert second.created_at == first.created_at and second.credentials == ("b",)


def test_every_record_names_the_agent(v: Vultrino) -> None:
    v.add_agent("a", credentials=["echo-one"], tools=["echo_message"])
    v.execute("echo-one", "echo", {"message": "x"})
    v.as_agent("a").execute("echo-one", "echo", {"message": "x"})
    records = [r for r in v.audit() if r["source"] != "admin"]  # the calls, not the changes
    assert [r["agent"] for r in records] == [None, "a"]
    assert all("agent" in r for r in records)
