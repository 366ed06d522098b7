"""Agent profiles through real MCP clients: `vultrino mcp --agent NAME` over stdio, and
per-agent bearer tokens over streamable HTTP (with and without `--agent`).

The server is a real ``python -m vultrino mcp`` subprocess; the clients are the SDK's own. A
real HTTP server on 127.0.0.1 records every request that reaches it, so "refused" means
"nothing was sent", not just "an error came back". Approval goes through MCP elicitation: a
client that declares an elicitation callback answers it; one that does not gets a refusal.
"""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import IO, Any

import anyio
import httpx2
import pytest
from mcp import types
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from tests.e2e.mcp_helpers import (
    HANG_GUARD_S,
    PASSWORD,
    SERVER_COMMAND,
    McpHome,
    http_server,
    make_home,
    read_token,
    scan_log,
    show_server_log,
)
from tests.leakcheck import LeakCheck
from tests.localhttp import Recorder, serving
from vultrino import Vultrino, audit

LOCAL_SECRET = "local-key-e2e-77aa66bb55cc"

Elicit = Callable[[Any, types.ElicitRequestParams], Awaitable[types.ElicitResult]]


def run(fn: Callable[[], Awaitable[None]]) -> None:
    async def guarded() -> None:
        with anyio.fail_after(HANG_GUARD_S):
            await fn()

    anyio.run(guarded)


@pytest.fixture
def errlog() -> Iterator[IO[str]]:
    with tempfile.TemporaryFile("w+", encoding="utf-8") as f:
        yield f


@pytest.fixture
def web() -> Iterator[Recorder]:
    with serving(Recorder(b'{"hello": "agent"}')) as srv:
        yield srv


@pytest.fixture
def home(isolated_home: Path, web: Recorder) -> McpHome:
    """The MCP home (echo plugin, `echo-one`, `github`) plus `local`, allowed on the recorder,
    and three profiles: `web` (local + http_request, GET /ok/* only), `echoer` (echo only,
    approval required) and `limited` (echo, 2 calls an hour)."""
    h = make_home(isolated_home)
    h.secrets.append(LOCAL_SECRET)
    with Vultrino.open(h.root, PASSWORD) as v:
        v.add_credential("local", "api_key", {"key": LOCAL_SECRET}, allow=[f"{web.base}/*"])
        _, token = v.add_agent(
            "web", credentials=["local"], tools=["http_request"], allow=[f"GET {web.base}/ok/*"]
        )
        v.add_agent("echoer", credentials=["echo-*"], tools=["echo_*"], approve=["echo_message"])
        v.add_agent("limited", credentials=["echo-one"], tools=["echo_message"], rate="2/h")
    (h.password_file.parent / "web.token").write_text(token)  # outside the home
    h.secrets.append(token)
    return h


@asynccontextmanager
async def stdio_agent(
    home: McpHome,
    errlog: IO[str],
    agent: str,
    *,
    elicit: Elicit | None = None,
    era: str = "handshake",
) -> AsyncIterator[ClientSession]:
    params = StdioServerParameters(
        command=SERVER_COMMAND[0], args=[*SERVER_COMMAND[1:], "--agent", agent], env=home.env()
    )
    async with (
        stdio_client(params, errlog=errlog) as (read, write),
        ClientSession(read, write, elicitation_callback=elicit) as session,
    ):
        try:
            if era == "modern":
                await session.discover()
            else:
                await session.initialize()
            yield session
        except BaseException:
            show_server_log(errlog)
            raise


@asynccontextmanager
async def http_agent(
    url: str, token: str, *, era: str = "handshake", elicit: Elicit | None = None
) -> AsyncIterator[ClientSession]:
    async with (
        httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=30) as client,
        streamable_http_client(url, http_client=client) as (read, write),
        ClientSession(read, write, elicitation_callback=elicit) as session,
    ):
        if era == "modern":
            await session.discover()
        else:
            await session.initialize()
        yield session


def text(result: types.CallToolResult) -> str:
    return " ".join(c.text for c in result.content if isinstance(c, types.TextContent))


async def _check_web_profile(s: ClientSession, web: Recorder) -> None:
    """What the `web` profile may and may not do, whichever transport carries it."""
    tools = {t.name: t for t in (await s.list_tools()).tools}
    assert set(tools) == {"list_credentials", "get_credential_info", "http_request"}
    assert "github" not in str(tools["http_request"].input_schema)
    listed = await s.call_tool("list_credentials", {})
    assert "local" in text(listed)
    assert "github" not in text(listed) and "echo-one" not in text(listed)

    ok = await s.call_tool("http_request", {"credential": "local", "url": f"{web.base}/ok/1"})
    assert ok.is_error is False, text(ok)
    assert "agent" in text(ok)

    outside = await s.call_tool(
        "http_request", {"credential": "local", "url": f"{web.base}/private"}
    )
    assert outside.is_error is True
    assert "outside the URL patterns of agent 'web'" in text(outside)
    post = await s.call_tool(
        "http_request", {"credential": "local", "url": f"{web.base}/ok/1", "method": "POST"}
    )
    assert post.is_error is True
    hidden = await s.call_tool(
        "http_request", {"credential": "github", "url": "https://api.github.com/user"}
    )
    assert hidden.is_error is True and "no credential named 'github'" in text(hidden)
    with pytest.raises(MCPError, match="Unknown tool: 'echo_message'"):
        await s.call_tool("echo_message", {"credential": "echo-one", "message": "x"})
    assert web.paths == ["GET /ok/1"]  # nothing refused reached the server


def test_stdio_agent_sees_and_uses_only_its_profile(
    home: McpHome, web: Recorder, errlog: IO[str], leakcheck: LeakCheck
) -> None:
    async def main() -> None:
        async with stdio_agent(home, errlog, "web") as s:
            await _check_web_profile(s, web)

    run(main)
    records = audit.query(home.root / "audit.log", agent="web")
    # the last: the tool outside the profile, refused by the pipeline and recorded as such
    assert [r["outcome"] for r in records] == ["ok", "denied", "denied", "denied", "denied"]
    assert (records[-1]["tool"], records[-1]["error"]) == ("echo_message", "ToolOutsideProfile")
    assert all(r["source"] == "mcp" for r in records)
    scan_log(leakcheck, home, errlog)


@pytest.mark.parametrize("era", ["handshake", "modern"])
def test_http_agent_token_selects_its_profile(
    home: McpHome, web: Recorder, errlog: IO[str], leakcheck: LeakCheck, era: str
) -> None:
    agent_token = (home.password_file.parent / "web.token").read_text()

    async def main() -> None:
        with http_server(home, errlog) as url:
            async with http_agent(url, agent_token, era=era) as s:
                await _check_web_profile(s, web)
            async with http_agent(url, read_token(home), era=era) as full:  # server token: all
                names = {t.name for t in (await full.list_tools()).tools}
                assert {"echo_message", "http_request"} <= names
            async with httpx2.AsyncClient(timeout=30) as raw:
                wrong = await raw.post(
                    url,
                    json={"jsonrpc": "2.0", "id": 1, "method": "ping"},
                    headers={"Authorization": f"Bearer {agent_token}x"},
                )
                assert wrong.status_code == 401

    run(main)
    records = audit.query(home.root / "audit.log", agent="web")
    # the last: the tool outside the profile, refused by the pipeline and recorded as such
    assert [r["outcome"] for r in records] == ["ok", "denied", "denied", "denied", "denied"]
    assert (records[-1]["tool"], records[-1]["error"]) == ("echo_message", "ToolOutsideProfile")
    scan_log(leakcheck, home, errlog)


def test_http_with_agent_accepts_only_that_agents_token(
    home: McpHome, web: Recorder, errlog: IO[str], leakcheck: LeakCheck
) -> None:
    agent_token = (home.password_file.parent / "web.token").read_text()

    async def main() -> None:
        with http_server(home, errlog, "--agent", "web") as url:
            async with httpx2.AsyncClient(timeout=30) as raw:
                full = await raw.post(
                    url,
                    json={"jsonrpc": "2.0", "id": 1, "method": "ping"},
                    headers={"Authorization": f"Bearer {read_token(home)}"},
                )
                assert full.status_code == 401  # the server token is not the agent's
            async with http_agent(url, agent_token) as s:
                await _check_web_profile(s, web)

    run(main)
    scan_log(leakcheck, home, errlog)


def test_approval_by_elicitation_accept_decline_and_unsupported(
    home: McpHome, errlog: IO[str], leakcheck: LeakCheck
) -> None:
    prompts: list[str] = []

    def answer(action: str, approve: bool) -> Elicit:
        async def callback(ctx: Any, params: types.ElicitRequestParams) -> types.ElicitResult:
            prompts.append(params.message)
            if action == "accept":
                return types.ElicitResult(action="accept", content={"approve": approve})
            return types.ElicitResult(action="decline")

        return callback

    args = {"credential": "echo-one", "message": "please sign"}
    results: dict[str, types.CallToolResult] = {}

    async def main() -> None:
        async with stdio_agent(home, errlog, "echoer", elicit=answer("accept", True)) as s:
            results["granted"] = await s.call_tool("echo_message", args)
        async with stdio_agent(home, errlog, "echoer", elicit=answer("accept", False)) as s:
            results["unticked"] = await s.call_tool("echo_message", args)
        async with stdio_agent(home, errlog, "echoer", elicit=answer("decline", False)) as s:
            results["declined"] = await s.call_tool("echo_message", args)
        async with stdio_agent(home, errlog, "echoer") as s:  # no elicitation capability
            results["unavailable"] = await s.call_tool("echo_message", args)
        # 2026-07-28 sessions carry no server-initiated request: refused, never hung
        async with stdio_agent(
            home, errlog, "echoer", elicit=answer("accept", True), era="modern"
        ) as s:
            results["modern"] = await s.call_tool("echo_message", args)

    run(main)
    assert results["granted"].is_error is False, text(results["granted"])
    assert "please sign" in text(results["granted"])
    for key in ("unticked", "declined"):
        assert results[key].is_error is True
        assert "declined" in text(results[key])
    for key in ("unavailable", "modern"):
        assert results[key].is_error is True
        assert "did not declare the elicitation capability" in text(results[key])
    assert len(prompts) == 3  # the client without the capability was never asked
    assert "echoer" in prompts[0] and "echo_message" in prompts[0] and "please sign" in prompts[0]
    records = audit.query(home.root / "audit.log", agent="echoer")
    assert [(r["outcome"], r.get("approval")) for r in records] == [
        ("ok", "granted"),
        ("denied", "declined"),
        ("denied", "declined"),
        ("denied", "unavailable"),
        ("denied", "unavailable"),
    ]
    scan_log(leakcheck, home, errlog)


def test_over_http_the_agents_own_client_cannot_approve_its_calls(
    home: McpHome, errlog: IO[str], leakcheck: LeakCheck
) -> None:
    """A client that declares elicitation and accepts everything is the agent approving
    itself when it holds an agent token over HTTP: gated calls are refused, never asked."""
    prompts: list[str] = []

    async def always_yes(ctx: Any, params: types.ElicitRequestParams) -> types.ElicitResult:
        prompts.append(params.message)
        return types.ElicitResult(action="accept", content={"approve": True})

    with Vultrino.open(home.root, PASSWORD) as v:
        _, token = v.add_agent(
            "echoer",
            credentials=["echo-*"],
            tools=["echo_*"],
            approve=["echo_message"],
            replace=True,
        )
    home.secrets.append(token)
    results: list[types.CallToolResult] = []

    async def main() -> None:
        with http_server(home, errlog) as url:
            async with http_agent(url, token, elicit=always_yes) as s:
                results.append(
                    await s.call_tool("echo_message", {"credential": "echo-one", "message": "m"})
                )

    run(main)
    assert results[0].is_error is True
    assert "came over HTTP" in text(results[0])
    assert prompts == []
    records = audit.query(home.root / "audit.log", agent="echoer")
    assert [(r["outcome"], r.get("approval")) for r in records] == [("denied", "unavailable")]
    scan_log(leakcheck, home, errlog)


def test_an_http_session_answers_only_the_token_that_opened_it(
    home: McpHome, errlog: IO[str]
) -> None:
    web_token = (home.password_file.parent / "web.token").read_text()
    with Vultrino.open(home.root, PASSWORD) as v:
        _, other_token = v.add_agent("other", credentials=["echo-*"], tools=["echo_*"])
    home.secrets.append(other_token)
    from tests.e2e.test_mcp_http import INIT as init

    accept = {"Accept": "application/json, text/event-stream"}
    statuses: dict[str, int] = {}

    async def main() -> None:
        with http_server(home, errlog) as url:
            async with httpx2.AsyncClient(timeout=30) as raw:
                opened = await raw.post(
                    url, json=init, headers={**accept, "Authorization": f"Bearer {web_token}"}
                )
                assert opened.status_code == 200, opened.text
                session = opened.headers["mcp-session-id"]
                ping = {"jsonrpc": "2.0", "id": 2, "method": "ping"}
                for who, token in (("other", other_token), ("web", web_token)):
                    r = await raw.post(
                        url,
                        json=ping,
                        headers={
                            **accept,
                            "Authorization": f"Bearer {token}",
                            "mcp-session-id": session,
                            "mcp-protocol-version": "2025-06-18",
                        },
                    )
                    statuses[who] = r.status_code

            async with httpx2.AsyncClient(timeout=30) as raw:
                ping = {"jsonrpc": "2.0", "id": 3, "method": "ping"}
                auth = {**accept, "Authorization": f"Bearer {web_token}"}
                made_up = await raw.post(
                    url, json=ping, headers={**auth, "mcp-session-id": "0" * 32}
                )
                statuses["made-up"] = made_up.status_code
                gone = await raw.delete(url, headers={**auth, "mcp-session-id": session})
                statuses["delete"] = gone.status_code
                after = await raw.post(url, json=ping, headers={**auth, "mcp-session-id": session})
                statuses["after delete"] = after.status_code

    run(main)
    assert statuses == {
        "other": 404,
        "web": 200,
        "made-up": 404,  # a session id this server never bound: refused, never passed through
        "delete": 200,
        "after delete": 404,
    }


def test_rate_limit_over_mcp(home: McpHome, errlog: IO[str], leakcheck: LeakCheck) -> None:
    seen: list[types.CallToolResult] = []

    async def main() -> None:
        async with stdio_agent(home, errlog, "limited") as s:
            for _ in range(3):
                seen.append(
                    await s.call_tool("echo_message", {"credential": "echo-one", "message": "m"})
                )

    run(main)
    assert [r.is_error for r in seen] == [False, False, True]
    assert "rate limit of 2/h" in text(seen[2])
    scan_log(leakcheck, home, errlog)


def test_an_unknown_agent_fails_before_serving(home: McpHome) -> None:
    r = home.cli("mcp", "--agent", "nobody")
    assert r.returncode == 4
    assert "no agent or role named 'nobody'" in r.stderr
    assert r.stdout == ""


def test_an_http_request_whose_identity_is_missing_is_refused_not_trusted(
    isolated_home: Path,
) -> None:
    """Fail closed: if the token's verdict did not reach the handler, the request must not fall
    back to the full facade."""
    from types import SimpleNamespace

    from vultrino.mcp.http import build_http_app
    from vultrino.mcp.server import VultrinoMCP

    with Vultrino.open(isolated_home) as v:
        app = VultrinoMCP(v)
        build_http_app(app, "t" * 32)
        for ctx in (
            SimpleNamespace(request=None),
            SimpleNamespace(request=SimpleNamespace(scope={})),
        ):
            with pytest.raises(MCPError, match="cannot tell which token"):
                app._agent_for(ctx)  # type: ignore[arg-type]
        named = SimpleNamespace(request=SimpleNamespace(scope={"state": {"vultrino_agent": "a"}}))
        assert app._agent_for(named) == "a"  # type: ignore[arg-type]
        full = SimpleNamespace(request=SimpleNamespace(scope={"state": {"vultrino_agent": None}}))
        assert app._agent_for(full) is None  # type: ignore[arg-type]
