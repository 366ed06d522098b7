"""MCP parity with the original Vultrino: `get_credential_info`, `list_credentials(pattern)`,
credentials as resources (`vultrino://credential/ALIAS`, scoped by the agent) and the
original's `<plugin>_<tool>` names accepted as aliases — on raw JSON-RPC over stdio (the
stdio server's own method table) and with the real SDK client over stdio (2026-07-28 era,
the SDK server core) and over streamable HTTP (both eras, and as an agent)."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import anyio
import pytest
from mcp import types
from mcp.client.session import ClientSession
from mcp.shared.exceptions import MCPError

from tests.e2e.mcp_helpers import (
    ECHO_SECRET,
    GITHUB_SECRET,
    HANG_GUARD_S,
    McpHome,
    RawClient,
    http_server,
    make_home,
    read_token,
    scan_log,
    sdk_stdio,
)
from tests.e2e.serve_helpers import audit_records
from tests.e2e.test_mcp_http import sdk_http
from tests.leakcheck import LeakCheck


@pytest.fixture
def errlog() -> Iterator[IO[str]]:
    with tempfile.TemporaryFile("w+", encoding="utf-8") as f:
        yield f


@pytest.fixture
def home(isolated_home: Path) -> McpHome:
    return make_home(isolated_home)


def test_raw_stdio_serves_the_originals_tools_resources_and_tool_names(
    home: McpHome, errlog: IO[str], leakcheck: LeakCheck
) -> None:
    leakcheck.add(*home.secrets)
    with RawClient(home, errlog) as c:
        init = c.handshake("2025-06-18")
        assert init["result"]["capabilities"]["resources"] == {
            "subscribe": False,
            "listChanged": True,
        }
        tools = {t["name"]: t for t in c.request("tools/list")["result"]["tools"]}
        assert {"list_credentials", "get_credential_info", "http_request"} <= set(tools)
        assert "pattern" in tools["list_credentials"]["inputSchema"]["properties"]
        assert "echo_echo_message" not in tools  # an alias is accepted, not listed

        def call(name: str, arguments: dict[str, Any]) -> dict[str, Any]:
            answer = c.request("tools/call", {"name": name, "arguments": arguments})
            assert "result" in answer, answer
            result: dict[str, Any] = answer["result"]
            return result

        every = call("list_credentials", {})
        assert {x["alias"] for x in json.loads(every["content"][0]["text"])} == {
            "echo-one",
            "github",
        }
        some = call("list_credentials", {"pattern": "echo-*"})
        assert [x["alias"] for x in some["structuredContent"]["result"]] == ["echo-one"]
        assert call("list_credentials", {"pattern": "nothing*"})["structuredContent"] == {
            "result": []
        }
        assert call("list_credentials", {"pattern": 3})["isError"] is True

        info = call("get_credential_info", {"credential": "echo-one"})
        assert info["isError"] is False
        shown = info["structuredContent"]
        assert (shown["alias"], shown["type"]) == ("echo-one", "plugin:echo:key")
        assert shown["fields"] == {"token": "********"}
        missing = call("get_credential_info", {"credential": "nope"})
        assert missing["isError"] is True and "nope" in missing["content"][0]["text"]
        assert call("get_credential_info", {})["isError"] is True

        # the original's name of a plugin tool runs our tool, through the same pipeline
        aliased = call("echo_echo_message", {"credential": "echo-one", "message": "old name"})
        assert aliased["isError"] is False, aliased
        assert aliased["structuredContent"]["params"] == {"message": "old name"}
        unknown = c.request("tools/call", {"name": "echo_nothing", "arguments": {}})
        assert unknown["error"]["code"] == -32602 and "echo_nothing" in unknown["error"]["message"]

        listed = c.request("resources/list")["result"]["resources"]
        assert [(r["uri"], r["name"], r["mimeType"]) for r in listed] == [
            ("vultrino://credential/echo-one", "echo-one", "application/json"),
            ("vultrino://credential/github", "github", "application/json"),
        ]
        read = c.request("resources/read", {"uri": "vultrino://credential/github"})["result"]
        [content] = read["contents"]
        assert content["uri"] == "vultrino://credential/github"
        doc = json.loads(content["text"])
        assert doc["type"] == "api_key" and doc["allow"] == ["https://api.github.com/*"]
        assert doc["fields"]["key"] == "********"
        for uri in ("vultrino://credential/nope", "https://example.com/", "vultrino://credential/"):
            err = c.request("resources/read", {"uri": uri})["error"]
            assert err["code"] == -32002 and err["data"] == {"uri": uri}
        assert c.request("resources/read", {})["error"]["code"] == -32602
        outputs = b"".join(c.lines)
    assert GITHUB_SECRET.encode() not in outputs and ECHO_SECRET.encode() not in outputs
    recs = [r for r in audit_records(home) if r.get("source") == "mcp"]
    assert [(r["tool"], r["outcome"]) for r in recs] == [("echo_message", "ok")]
    scan_log(leakcheck, home, errlog)


async def _parity(s: ClientSession, seen: dict[str, Any]) -> None:
    seen["tools"] = {t.name for t in (await s.list_tools()).tools}
    seen["resources"] = [str(r.uri) for r in (await s.list_resources()).resources]
    seen["read"] = await s.read_resource("vultrino://credential/echo-one")
    seen["info"] = await s.call_tool("get_credential_info", {"credential": "echo-one"})
    seen["pattern"] = await s.call_tool("list_credentials", {"pattern": "git*"})
    seen["alias"] = await s.call_tool(
        "echo_echo_message", {"credential": "echo-one", "message": "via alias"}
    )
    try:
        await s.read_resource("vultrino://credential/github")
    except MCPError as exc:
        seen["hidden"] = exc


def _check_parity(seen: dict[str, Any], *, agent: bool) -> None:
    assert {"list_credentials", "get_credential_info"} <= seen["tools"]
    expected = ["vultrino://credential/echo-one"]
    if not agent:
        expected.append("vultrino://credential/github")
    assert seen["resources"] == expected
    [content] = seen["read"].contents
    assert json.loads(content.text)["fields"] == {"token": "********"}
    assert seen["info"].structured_content["alias"] == "echo-one"
    rows = seen["pattern"].structured_content  # an array is wrapped before the 2026 era
    found = [x["alias"] for x in (rows["result"] if isinstance(rows, dict) else rows)]
    assert found == ([] if agent else ["github"])
    assert seen["alias"].is_error is False
    assert seen["alias"].structured_content["params"] == {"message": "via alias"}
    if agent:  # a credential outside the profile is as missing as one that does not exist
        assert seen["hidden"].error.code == -32002
    else:
        assert "hidden" not in seen


def _run(fn: Any) -> None:
    async def guarded() -> None:
        with anyio.fail_after(HANG_GUARD_S):
            await fn()

    anyio.run(guarded)


def test_the_sdk_client_over_stdio_in_the_2026_era(
    home: McpHome, errlog: IO[str], leakcheck: LeakCheck
) -> None:
    seen: dict[str, Any] = {}

    async def main() -> None:
        async with sdk_stdio(home, errlog, era="modern") as sdk:
            await _parity(sdk.session, seen)

    _run(main)
    _check_parity(seen, agent=False)
    scan_log(leakcheck, home, errlog, ("read", seen["read"].model_dump_json()))


@pytest.mark.parametrize("era", ["handshake", "modern"])
def test_the_sdk_client_over_http_with_the_server_token_and_as_an_agent(
    home: McpHome, errlog: IO[str], leakcheck: LeakCheck, era: str
) -> None:
    added = home.cli("agent", "add", "bot", "-c", "echo-*", "-t", "echo_message", "--json")
    assert added.returncode == 0, added.stderr
    agent_token = json.loads(added.stdout)["token"]
    leakcheck.add(agent_token)
    full: dict[str, Any] = {}
    scoped: dict[str, Any] = {}

    async def main() -> None:
        async with sdk_http(url, read_token(home), era=era) as (s, _):
            full["caps"] = s.server_capabilities
            await _parity(s, full)
        async with sdk_http(url, agent_token, era=era) as (s, _):
            await _parity(s, scoped)

    with http_server(home, errlog) as url:
        _run(main)
    _check_parity(full, agent=False)
    _check_parity(scoped, agent=True)
    assert isinstance(full["caps"], types.ServerCapabilities)
    assert full["caps"].resources is not None
    recs = [r for r in audit_records(home) if r.get("tool") == "echo_message"]
    assert [r.get("agent") for r in recs] == [None, "bot"]
    scan_log(leakcheck, home, errlog)
