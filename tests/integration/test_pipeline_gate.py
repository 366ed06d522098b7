"""The one pipeline and its gate against a hostile caller of the Python API: names that are not
plain strings, actions no tool grants, approval summaries, and the audit of refused tool calls.

Real store, real wasm plugins (a recording echo guest and a credential-less one), the real HTTP
plugin against a server on 127.0.0.1 that records what reached it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.mcp_helpers import PASSWORD, make_home
from tests.e2e.test_cli_ux import MANIFEST as NOTES_MANIFEST
from tests.e2e.test_cli_ux import notes_source
from tests.leakcheck import LeakCheck
from tests.localhttp import Recorder, serving
from vultrino import Vultrino
from vultrino.errors import (
    AgentPolicyError,
    ApprovalError,
    CredentialNotFoundError,
    ToolNotFoundError,
)
from vultrino.policy import ApprovalRequest

PROD = "prod-secret-0a1b2c3d4e5f6a7b"
DEV = "dev-secret-9f8e7d6c5b4a3928"


@pytest.fixture
def server() -> Iterator[Recorder]:
    with serving(Recorder()) as srv:
        yield srv


@pytest.fixture
def v(isolated_home: Path, server: Recorder, leakcheck: LeakCheck) -> Iterator[Vultrino]:
    home = make_home(isolated_home)
    leakcheck.add(*home.secrets, PROD, DEV)
    src = notes_source(isolated_home.parent / "src")
    assert "requires_credential = false" in NOTES_MANIFEST
    with Vultrino.open(isolated_home, PASSWORD) as vv:
        vv.install_plugin(str(src))
        for alias, key in (("prod", PROD), ("dev", DEV)):
            vv.add_credential(alias, "bearer", {"token": key}, allow=[f"{server.base}/*"])
        yield vv


class Disguised(str):
    """Spells one name and compares (and hashes) equal to another."""

    other = ""

    def __hash__(self) -> int:
        return hash(self.other)

    def __eq__(self, o: object) -> bool:
        return o == self.other or str.__eq__(self, o)


def disguised(text: str, other: str) -> Disguised:
    d = Disguised(text)
    d.other = other
    return d


def test_a_name_that_equals_a_hidden_alias_cannot_reach_it(v: Vultrino, server: Recorder) -> None:
    v.add_agent("bot", credentials=["dev"], tools=["http_request"])
    s = v.as_agent("bot")
    s.execute(disguised("dev", "prod"), "request", {"url": f"{server.base}/a"})
    s.call_tool("http_request", {"credential": disguised("dev", "prod"), "url": f"{server.base}/b"})
    assert server.auth == [f"Bearer {DEV}", f"Bearer {DEV}"]  # never prod's key
    assert s.credential_info(disguised("dev", "prod")).alias == "dev"
    with pytest.raises(CredentialNotFoundError):
        s.execute(disguised("prod", "dev"), "request", {"url": f"{server.base}/c"})
    assert len(server.paths) == 2


def test_an_action_name_that_equals_an_allowed_one_runs_as_what_it_spells(v: Vultrino) -> None:
    v.add_agent("n", credentials=["*"], tools=["notes_note"], actions=["notes:note"])
    s = v.as_agent("n")
    with pytest.raises(AgentPolicyError, match="may not run action notes:banner"):
        s.run_action("notes", disguised("banner", "note"))
    record = v.audit(agent="n")[-1]
    assert (record["action"], record["outcome"]) == ("banner", "denied")


def test_an_action_without_a_credential_needs_a_tool_of_the_profile(v: Vultrino) -> None:
    v.add_agent("none", credentials=[], tools=[])
    with pytest.raises(AgentPolicyError, match="no tool of its profile runs it"):
        v.as_agent("none").run_action("notes", "banner")
    assert v.audit(agent="none")[-1]["outcome"] == "denied"
    v.add_agent("some", credentials=[], tools=["notes_*"])
    with pytest.raises(AgentPolicyError, match="no tool of its profile runs it"):
        v.as_agent("some").run_action("notes", "banner")  # no tool is bound to banner at all
    assert v.run_action("notes", "banner") == "line one\nline two\n"  # the user: no profile


def test_the_approval_summary_is_of_what_is_sent(v: Vultrino, server: Recorder) -> None:
    asked: list[ApprovalRequest] = []

    def approve(request: ApprovalRequest) -> str:
        asked.append(request)
        return "granted"

    class Shown(str):
        def __str__(self) -> str:
            return f"{server.base}/harmless/read"

    class Get(str):
        def __str__(self) -> str:
            return "GET"

    v.add_agent("a", credentials=["dev"], tools=["http_request"], approve=["http_request"])
    s = v.as_agent("a", approver=approve)  # type: ignore[arg-type]
    s.execute(
        "dev", "request", {"url": Shown(f"{server.base}/admin/drop"), "method": Get("DELETE")}
    )
    assert server.paths == ["DELETE /admin/drop"]
    assert asked[0].summary == f"DELETE {server.base}/admin/drop"


def test_the_prompt_shows_the_whole_request_and_hides_nothing(
    v: Vultrino, server: Recorder
) -> None:
    asked: list[ApprovalRequest] = []

    def approve(request: ApprovalRequest) -> str:
        asked.append(request)
        return "declined"

    v.add_agent("a", credentials=["dev"], tools=["http_request"], approve=["http_request"])
    s = v.as_agent("a", approver=approve)  # type: ignore[arg-type]
    body = "x" * 70 + "\u202eevil"
    with pytest.raises(ApprovalError):
        s.execute(
            "dev",
            "request",
            {
                "url": f"{server.base}/items?keep=1",
                "method": "POST",
                "query": {"_method": "DELETE", "force": "true"},
                "headers": {"X-Note": "hi there"},
                "body": body,
            },
        )
    summary = asked[0].summary
    digest = hashlib.sha256(body.encode()).hexdigest()
    assert summary.splitlines() == [
        f"POST {server.base}/items?keep=1&_method=DELETE&force=true",
        "header X-Note: hi there",
        f"body: {len(body.encode())} bytes, sha256 {digest}: {body!r}",
    ]
    assert "\u202e" not in summary
    assert "Approve this call?" in asked[0].message()
    assert server.paths == []  # declined: nothing sent


def test_a_gated_call_too_large_to_show_is_refused_not_cut(v: Vultrino) -> None:
    asked: list[ApprovalRequest] = []
    v.add_agent("e", credentials=["echo-one"], tools=["echo_message"], approve=["echo_message"])
    s = v.as_agent("e", approver=lambda r: asked.append(r) or "granted")  # type: ignore[arg-type, func-returns-value]
    with pytest.raises(ApprovalError, match="too large to show a person"):
        s.call_tool("echo_message", {"credential": "echo-one", "message": "m" * 5000})
    assert asked == []
    record = v.audit(agent="e")[-1]
    assert (record["outcome"], record["approval"]) == ("denied", "unavailable")
    s.call_tool("echo_message", {"credential": "echo-one", "message": "m" * 100 + "\u202e\u200b"})
    assert len(asked) == 1 and "m" * 100 + "\\u{202E}\\u{200B}" in asked[0].summary


def test_refused_tool_calls_are_recorded_and_tool_calls_name_their_tool(
    v: Vultrino, server: Recorder
) -> None:
    v.add_agent("t", credentials=["dev"], tools=["http_request"])
    s = v.as_agent("t")
    with pytest.raises(ToolNotFoundError):
        s.call_tool("no_such_tool", {})
    with pytest.raises(ToolNotFoundError):
        s.call_tool("echo_message", {"credential": "echo-one", "message": "x"})
    with pytest.raises(Exception, match="needs a 'credential' argument"):
        s.call_tool("http_request", {"url": f"{server.base}/x"})
    s.call_tool("http_request", {"credential": "dev", "url": f"{server.base}/y"})
    records = v.audit(agent="t")
    assert [(r["tool"], r["outcome"], r.get("error")) for r in records] == [
        ("no_such_tool", "denied", "ToolOutsideProfile"),
        ("echo_message", "denied", "ToolOutsideProfile"),
        ("http_request", "error", "ParameterError"),
        ("http_request", "ok", None),
    ]
    # a call without a tool after one with it: its record names no tool
    s.execute("dev", "request", {"url": f"{server.base}/z"})
    assert "tool" not in v.audit(agent="t")[-1]


def test_a_scope_shows_its_profile_without_the_token_digest(v: Vultrino) -> None:
    v.add_agent("p", credentials=["dev"])
    info = v.as_agent("p").profile()
    assert not hasattr(info, "token_hash")
    assert not hasattr(v.as_agent("p"), "v")
    assert all("sha256" not in str(x) for x in info.to_dict().values())


def test_a_narrowing_read_before_a_profile_change_is_never_cached_for_the_new_profile(
    v: Vultrino, server: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The race the key closes: a call reads the profile (old URL patterns), the profile is
    narrowed, and the call's plan is made under the store's new revision. The next call, which
    reads the narrowed profile, must not get the plan made with the old patterns."""
    from vultrino.errors import AgentPolicyError as Refused
    from vultrino.services import Services

    v.add_agent("r", credentials=["dev"], tools=["http_request"], allow=[f"{server.base}/*"])
    s = v.as_agent("r")
    stale = v.agent_profile("r")
    v.add_agent(
        "r",
        credentials=["dev"],
        tools=["http_request"],
        allow=[f"{server.base}/only/*"],
        replace=True,
    )
    real = Services.profile
    calls = {"n": 0}

    def profile_once_stale(self: Services, name: str):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        return stale if calls["n"] == 1 else real(self, name)

    monkeypatch.setattr(Services, "profile", profile_once_stale)
    s.execute("dev", "request", {"url": f"{server.base}/other"})  # the racing call: old patterns
    with pytest.raises(Refused, match="outside the URL patterns of agent 'r'"):
        s.execute("dev", "request", {"url": f"{server.base}/other"})
    assert server.paths == ["GET /other"]


def test_an_oversized_alias_is_not_echoed_back_and_hidden_equals_missing(v: Vultrino) -> None:
    v.add_agent("o", credentials=["dev"], tools=["http_request"])
    huge = "a" * 100_000
    with pytest.raises(CredentialNotFoundError) as missing:
        v.execute(huge, "request", {"url": "https://example.invalid/"})
    assert len(str(missing.value)) < 200
    with pytest.raises(CredentialNotFoundError) as hidden:
        v.as_agent("o").execute("prod", "request", {"url": "https://example.invalid/"})
    with pytest.raises(CredentialNotFoundError) as absent:
        v.as_agent("o").execute("nope", "request", {"url": "https://example.invalid/"})
    assert str(hidden.value).replace("prod", "X") == str(absent.value).replace("nope", "X")


def test_an_allowlist_refusal_is_audited_as_denied(v: Vultrino, server: Recorder) -> None:
    from vultrino.errors import AccessDeniedError

    with pytest.raises(AccessDeniedError):
        v.execute("dev", "request", {"url": "https://elsewhere.example/x"})
    record = v.audit(alias="dev")[-1]
    assert (record["outcome"], record["error"]) == ("denied", "AccessDeniedError")
    assert server.paths == []


def test_a_caller_given_without_its_profile_still_meets_the_gate(v: Vultrino) -> None:
    """The pipeline's entry reads the caller's profile itself when an entry point leaves it
    out: no way in skips the gate by forgetting it."""
    from vultrino.pipeline import Caller

    v.add_agent("g", credentials=["dev"], tools=["http_request"])
    with pytest.raises(CredentialNotFoundError):
        v._pipeline.call(
            "prod", None, "request", {"url": "https://x/"}, Caller("g"), None, None, "api", False
        )
