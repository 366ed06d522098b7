"""MCP logging, prompts, completion and resumable streams, through the real ``vultrino mcp``.

Each behaviour is checked the way a client meets it: raw JSON-RPC lines on stdio (what a
desktop host writes), the SDK's client over stdio, and the SDK's client (or raw HTTP) against
``vultrino mcp --http``. The plugin ``logger`` writes the whole request it receives — the
credential's secret included — to the plugin log, so the log entries a client receives show
that they are scrubbed.
"""

from __future__ import annotations

import json
import tempfile
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import IO, Any

import anyio
import httpx2
import pytest
from mcp import types
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from tests.e2e import mcp_helpers
from tests.e2e.mcp_helpers import (
    _ALLOC,
    _ECHO_BODY,
    _LOCALS,
    ECHO_WAT,
    HANG_GUARD_S,
    PASSWORD,
    SERVER_COMMAND,
    McpHome,
    RawClient,
    http_server,
    make_home,
    plugin_secret,
    sdk_stdio,
)
from vultrino import Vultrino

#: Logs the request it receives (msgpack: action, params, the credential with its secret) at
#: `warn` through the host's `log` import, then echoes it.
LOG_WAT = f"""
(module
  (import "vultrino:plugin/host@1.0.0" "log" (func $log (param i32 i32 i32)))
{_ALLOC}
  (func (export "vultrino:plugin/handler@1.0.0#execute") (param $ptr i32) (param $len i32)
        (result i32)
{_LOCALS}
    (call $log (i32.const 2) (local.get $ptr) (local.get $len))
{_ECHO_BODY})
)
"""

LOGGER_SECRET = plugin_secret("logger")


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
def home(isolated_home: Path) -> McpHome:
    """Plugins `echo` (tool echo_message, credential echo-one) and `logger` (logger_echo,
    logger-one), the api_key `github`, and an agent `echoer` that sees only echo's."""
    h = make_home(
        isolated_home,
        plugins=[("echo", ECHO_WAT, "echo_message"), ("logger", LOG_WAT, "logger_echo")],
    )
    with Vultrino.open(h.root, PASSWORD) as v:
        _, token = v.add_agent("echoer", credentials=["echo-*"], tools=["echo_*"])
    (h.password_file.parent / "echoer.token").write_text(token)
    h.secrets.append(token)
    return h


def agent_token(home: McpHome) -> str:
    return (home.password_file.parent / "echoer.token").read_text()


def server_token(home: McpHome) -> str:
    return (home.root / "mcp-token").read_text().strip()


def log_entries(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [m["params"] for m in messages if m.get("method") == "notifications/message"]


# --- raw JSON-RPC over stdio ---------------------------------------------------------------------


def test_stdio_declares_logging_prompts_and_completions(home: McpHome, errlog: IO[str]) -> None:
    with RawClient(home, errlog) as c:
        caps = c.handshake("2025-11-25")["result"]["capabilities"]
        assert caps["logging"] == {}
        assert caps["completions"] == {}
        assert caps["prompts"] == {"listChanged": True}
        assert caps["tools"] == {"listChanged": True}


def test_stdio_log_entries_reach_the_client_at_its_level_scrubbed(
    home: McpHome, errlog: IO[str]
) -> None:
    args = {"credential": "logger-one", "message": "hello"}
    with RawClient(home, errlog) as c:
        c.handshake("2025-11-25")
        # no level set: nothing is sent
        assert c.request("tools/call", {"name": "logger_echo", "arguments": args})["result"]
        assert c.request("ping")["result"] == {}
        assert log_entries(c._pending) == []

        bad = c.request("logging/setLevel", {"level": "loud"})
        assert bad["error"]["code"] == -32602
        assert "debug, info, notice, warning" in bad["error"]["data"]

        assert c.request("logging/setLevel", {"level": "error"})["result"] == {}
        assert c.request("tools/call", {"name": "logger_echo", "arguments": args})["result"]
        assert c.request("ping")["result"] == {}
        assert log_entries(c._pending) == []  # a warning is below `error`

        assert c.request("logging/setLevel", {"level": "warning"})["result"] == {}
        assert c.request("tools/call", {"name": "logger_echo", "arguments": args})["result"]
        entry = c.wait_for(lambda m: m.get("method") == "notifications/message")["params"]
    assert entry["level"] == "warning"
    assert entry["logger"] == "vultrino.plugin.logger"
    assert "logger-one" in entry["data"] and "hello" in entry["data"]
    assert LOGGER_SECRET not in entry["data"]
    assert all(LOGGER_SECRET.encode() not in line for line in c.lines)


def test_stdio_prompts_and_completion(home: McpHome, errlog: IO[str]) -> None:
    with RawClient(home, errlog) as c:
        c.handshake("2025-06-18")
        prompts = {p["name"]: p for p in c.request("prompts/list")["result"]["prompts"]}
        assert set(prompts) == {"use_credential", "echo_message", "logger_echo", "http_request"}
        assert "list_credentials" not in prompts  # it runs no plugin action
        assert prompts["echo_message"]["arguments"] == [
            {"name": "credential", "description": "The alias of the credential to use",
             "required": False}
        ]  # fmt: skip

        got = c.request("prompts/get", {"name": "echo_message"})["result"]
        text = got["messages"][0]["content"]["text"]
        assert got["messages"][0]["role"] == "user"
        assert "`echo_message` (plugin `echo`, action `echo`)" in text
        assert "`echo-one`" in text and "github" not in text  # only the aliases that fit
        assert "- `message` (string, required): Text to echo" in text
        assert plugin_secret("echo") not in json.dumps(got)

        chosen = c.request(
            "prompts/get", {"name": "use_credential", "arguments": {"credential": "github"}}
        )["result"]["messages"][0]["content"]["text"]
        assert "type `api_key`" in chosen
        assert "https://api.github.com/*" in chosen and "`http_request`" in chosen

        wrong = c.request(
            "prompts/get", {"name": "echo_message", "arguments": {"credential": "github"}}
        )
        assert wrong["error"]["code"] == -32602
        assert "does not take credential 'github'" in wrong["error"]["message"]
        missing = c.request("prompts/get", {"name": "nope"})
        assert missing["error"]["code"] == -32602
        assert "prompts/list" in missing["error"]["message"]

        def complete(prompt: str, arg: str, value: str, **ctx: str) -> list[str]:
            params: dict[str, Any] = {
                "ref": {"type": "ref/prompt", "name": prompt},
                "argument": {"name": arg, "value": value},
            }
            if ctx:
                params["context"] = {"arguments": ctx}
            result = c.request("completion/complete", params)["result"]["completion"]
            assert result["total"] == len(result["values"]) and result["hasMore"] is False
            return list(result["values"])

        assert complete("use_credential", "credential", "") == ["echo-one", "github", "logger-one"]
        assert complete("use_credential", "credential", "l") == ["logger-one"]
        assert complete("echo_message", "credential", "") == ["echo-one"]
        assert complete("use_credential", "action", "", credential="github") == ["http_request"]
        assert complete("use_credential", "action", "e") == ["echo_message"]
        assert complete("nope", "credential", "") == []


def test_stdio_agent_sees_only_its_own_prompts_and_aliases(
    home: McpHome, errlog: IO[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(mcp_helpers, "SERVER_COMMAND", [*SERVER_COMMAND, "--agent", "echoer"])
    with RawClient(home, errlog) as c:
        c.handshake("2025-11-25")
        names = {p["name"] for p in c.request("prompts/list")["result"]["prompts"]}
        assert names == {"use_credential", "echo_message"}
        values = c.request(
            "completion/complete",
            {
                "ref": {"type": "ref/prompt", "name": "use_credential"},
                "argument": {"name": "credential", "value": ""},
            },
        )["result"]["completion"]["values"]
        assert values == ["echo-one"]
        hidden = c.request("prompts/get", {"name": "logger_echo"})
        missing = c.request("prompts/get", {"name": "no_such_tool"})
        assert hidden["error"] == {**missing["error"], "message": hidden["error"]["message"]}
        assert hidden["error"]["message"] == missing["error"]["message"].replace(
            "no_such_tool", "logger_echo"
        )


# --- the SDK client over stdio -----------------------------------------------------------------


def test_sdk_stdio_client_gets_logs_prompts_and_completions(home: McpHome, errlog: IO[str]) -> None:
    async def main() -> None:
        async with sdk_stdio(home, errlog) as s:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # deprecated for 2026-07-28 clients only
                await s.session.set_logging_level("info")
            await s.session.call_tool(
                "logger_echo", {"credential": "logger-one", "message": "from sdk"}
            )
            with anyio.fail_after(HANG_GUARD_S):
                while not any(isinstance(m, types.LoggingMessageNotification) for m in s.incoming):
                    await anyio.sleep(0.02)
            (log,) = [m for m in s.incoming if isinstance(m, types.LoggingMessageNotification)]
            assert log.params.level == "warning" and "from sdk" in str(log.params.data)
            assert LOGGER_SECRET not in str(log.params.data)

            listed = await s.session.list_prompts()
            assert "echo_message" in {p.name for p in listed.prompts}
            got = await s.session.get_prompt("echo_message", {"credential": "echo-one"})
            assert isinstance(got.messages[0].content, types.TextContent)
            assert 'credential: "echo-one"' in got.messages[0].content.text
            done = await s.session.complete(
                types.PromptReference(name="use_credential"), {"name": "credential", "value": "g"}
            )
            assert done.completion.values == ["github"]

    run(main)


# --- HTTP --------------------------------------------------------------------------------------


@asynccontextmanager
async def sdk_http(url: str, token: str, seen: list[Any]) -> AsyncIterator[ClientSession]:
    async def on_message(message: Any) -> None:
        seen.append(message)

    async with (
        httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=30) as client,
        streamable_http_client(url, http_client=client) as (read, write),
        ClientSession(read, write, message_handler=on_message) as session,
    ):
        await session.initialize()
        yield session


def test_http_logs_prompts_and_completion_scoped_by_the_agent(
    home: McpHome, errlog: IO[str]
) -> None:
    async def main(url: str) -> None:
        seen: list[Any] = []
        async with sdk_http(url, server_token(home), seen) as s:
            assert (await s.send_ping()) is not None
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                await s.set_logging_level("debug")
            await s.call_tool("logger_echo", {"credential": "logger-one", "message": "over http"})
            logs = [m for m in seen if isinstance(m, types.LoggingMessageNotification)]
            assert logs, "the call's log entry travels on the call's own stream"
            assert "over http" in str(logs[0].params.data)
            assert LOGGER_SECRET not in str(logs[0].params.data)
            names = {p.name for p in (await s.list_prompts()).prompts}
            assert {"use_credential", "echo_message", "logger_echo"} <= names

        async with sdk_http(url, agent_token(home), []) as agent:
            names = {p.name for p in (await agent.list_prompts()).prompts}
            assert names == {"use_credential", "echo_message"}
            done = await agent.complete(
                types.PromptReference(name="use_credential"), {"name": "credential", "value": ""}
            )
            assert done.completion.values == ["echo-one"]  # github and logger-one are hidden
            with pytest.raises(MCPError) as hidden:
                await agent.get_prompt("logger_echo")
            assert "Unknown prompt: 'logger_echo'" in str(hidden.value)
            with pytest.raises(MCPError) as other:
                await agent.get_prompt("use_credential", {"credential": "github"})
            assert "Unknown credential: 'github'" in str(other.value)

    with http_server(home, errlog) as url:
        run(lambda: main(url))


def _sse_events(body: str) -> list[dict[str, str]]:
    events = []
    for block in body.replace("\r\n", "\n").split("\n\n"):
        fields: dict[str, str] = {}
        for line in block.split("\n"):
            if not line or line.startswith(":"):
                continue
            key, _, value = line.partition(":")
            value = value.removeprefix(" ")
            fields[key] = fields[key] + "\n" + value if key in fields else value
        if fields:
            events.append(fields)
    return events


def test_http_streams_are_primed_and_resume_with_last_event_id(
    home: McpHome, errlog: IO[str]
) -> None:
    with http_server(home, errlog) as url:
        headers = {
            "Authorization": f"Bearer {server_token(home)}",
            "Accept": "application/json, text/event-stream",
            "Content-Type": "application/json",
        }
        with httpx2.Client(timeout=HANG_GUARD_S) as http:
            init = http.post(
                url,
                headers=headers,
                json={
                    "jsonrpc": "2.0",
                    "id": 1,
                    "method": "initialize",
                    "params": {
                        "protocolVersion": "2025-11-25",
                        "capabilities": {},
                        "clientInfo": {"name": "raw", "version": "0"},
                    },
                },
            )
            session = init.headers["mcp-session-id"]
            headers |= {"mcp-session-id": session, "mcp-protocol-version": "2025-11-25"}
            http.post(
                url, headers=headers, json={"jsonrpc": "2.0", "method": "notifications/initialized"}
            )
            call = http.post(
                url,
                headers=headers,
                json={
                    "jsonrpc": "2.0",
                    "id": 2,
                    "method": "tools/call",
                    "params": {"name": "list_credentials", "arguments": {}},
                },
            )
            assert call.headers["content-type"].startswith("text/event-stream")
            events = _sse_events(call.text)
            priming, *rest = events
            assert priming["id"] and priming["data"] == "" and priming["retry"] == "1000"
            answer = json.loads(rest[-1]["data"])
            assert answer["id"] == 2 and "echo-one" in json.dumps(answer["result"])
            assert rest[-1]["id"]

            # A client whose stream dropped right after the priming event reconnects with it
            # and gets the answer it missed.
            with http.stream(
                "GET", url, headers={**headers, "Last-Event-ID": priming["id"]}
            ) as resumed:
                assert resumed.status_code == 200
                text = ""
                for chunk in resumed.iter_text():
                    text += chunk
                    flat = text.replace("\r\n", "\n")
                    if '"id":2' in flat.replace(" ", "") and flat.endswith("\n\n"):
                        break
            replayed = [e for e in _sse_events(text) if e.get("data")]
            assert json.loads(replayed[0]["data"]) == answer
            assert replayed[0]["id"] == rest[-1]["id"]
