"""`vultrino mcp --http`: streamable HTTP on 127.0.0.1 behind a bearer token.

A real ``python -m vultrino mcp --http`` subprocess on a free port; the SDK's own
``streamable_http_client`` in both protocol eras, and plain HTTP requests for what must be
refused (no token, a wrong token, a foreign Host header).
"""

from __future__ import annotations

import json
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
from mcp.client.streamable_http import streamable_http_client
from mcp.client.subscriptions import listen
from mcp.shared.exceptions import MCPError

from tests.e2e.mcp_helpers import (
    ECHO_SECRET,
    HANG_GUARD_S,
    McpHome,
    http_server,
    install_late_plugin,
    make_home,
    read_token,
    scan_log,
)
from tests.leakcheck import LeakCheck

INIT = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "probe", "version": "1"},
    },
}
ACCEPT = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


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
    return make_home(isolated_home)


@asynccontextmanager
async def sdk_http(
    url: str, token: str, *, era: str = "handshake"
) -> AsyncIterator[tuple[ClientSession, anyio.Event]]:
    changed = anyio.Event()

    async def on_message(message: Any) -> None:
        if isinstance(message, types.ToolListChangedNotification):
            changed.set()

    async with (
        httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=30) as client,
        streamable_http_client(url, http_client=client) as (read, write),
        ClientSession(read, write, message_handler=on_message) as session,
    ):
        if era == "modern":
            await session.discover()
        else:
            await session.initialize()
        yield session, changed


def test_requests_without_the_right_bearer_token_get_401(
    home: McpHome, errlog: IO[str], leakcheck: LeakCheck
) -> None:
    with http_server(home, errlog) as url:
        token = read_token(home)
        body = json.dumps(INIT)
        with httpx2.Client(timeout=30) as client:
            none = client.post(url, content=body, headers=ACCEPT)
            wrong = client.post(
                url, content=body, headers={**ACCEPT, "Authorization": "Bearer " + "x" * 43}
            )
            basic = client.post(url, content=body, headers={**ACCEPT, "Authorization": token})
            get = client.get(url)
            right = client.post(
                url, content=body, headers={**ACCEPT, "Authorization": f"Bearer {token}"}
            )
            lower = client.post(
                url, content=body, headers={**ACCEPT, "Authorization": f"bearer {token}"}
            )
    for refused in (none, wrong, basic, get):
        assert refused.status_code == 401
        assert refused.headers["www-authenticate"].startswith("Bearer")
        assert token not in refused.text
    assert right.status_code == 200, right.text
    assert right.headers.get("mcp-session-id")
    assert lower.status_code == 200  # the auth scheme is case-insensitive (RFC 9110)
    scan_log(leakcheck, home, errlog)


def test_a_foreign_host_header_is_refused(
    home: McpHome, errlog: IO[str], leakcheck: LeakCheck
) -> None:
    """DNS rebinding: a web page that resolves its own name to 127.0.0.1 sends its Host."""
    with http_server(home, errlog) as url:
        token = read_token(home)
        with httpx2.Client(timeout=30) as client:
            r = client.post(
                url,
                content=json.dumps(INIT),
                headers={**ACCEPT, "Authorization": f"Bearer {token}", "Host": "evil.example"},
            )
    assert r.status_code in (403, 421), r.status_code
    scan_log(leakcheck, home, errlog)


@pytest.mark.parametrize("era", ["handshake", "modern"])
def test_the_sdk_client_lists_and_calls_tools_over_http(
    home: McpHome, errlog: IO[str], leakcheck: LeakCheck, era: str
) -> None:
    seen: dict[str, Any] = {}

    async def main() -> None:
        async with sdk_http(seen["url"], read_token(home), era=era) as (s, _):
            seen["version"] = s.protocol_version
            seen["tools"] = {t.name: t for t in (await s.list_tools()).tools}
            seen["creds"] = await s.call_tool("list_credentials", {})
            seen["echo"] = await s.call_tool(
                "echo_message", {"credential": "echo-one", "message": "over http"}
            )
            seen["bad"] = await s.call_tool(
                "echo_message", {"credential": "github", "message": "x"}
            )
            try:
                await s.call_tool("missing_tool", {})
            except MCPError as exc:
                seen["unknown"] = exc

    with http_server(home, errlog) as url:
        seen["url"] = url
        run(main)
    assert seen["version"] == ("2026-07-28" if era == "modern" else "2025-11-25")
    assert {"list_credentials", "http_request", "echo_message"} <= set(seen["tools"])
    creds = json.loads(seen["creds"].content[0].text)
    assert {c["alias"] for c in creds} == {"echo-one", "github"}
    echo = seen["echo"]
    assert echo.is_error is False
    assert echo.structured_content["params"] == {"message": "over http"}
    assert ECHO_SECRET not in echo.model_dump_json()
    assert seen["bad"].is_error is True
    assert seen["unknown"].error.code == types.INVALID_PARAMS
    scan_log(leakcheck, home, errlog, ("echo", echo.model_dump_json()))


def test_parallel_calls_over_http_get_their_own_answers(
    home: McpHome, errlog: IO[str], leakcheck: LeakCheck
) -> None:
    answers: dict[int, Any] = {}
    url_box: list[str] = []

    async def main() -> None:
        async with sdk_http(url_box[0], read_token(home)) as (s, _):

            async def one(i: int) -> None:
                answers[i] = await s.call_tool(
                    "echo_message", {"credential": "echo-one", "message": f"h{i}", "n": i}
                )

            async with anyio.create_task_group() as tg:
                for i in range(20):
                    tg.start_soon(one, i)

    with http_server(home, errlog) as url:
        url_box.append(url)
        run(main)
    assert sorted(answers) == list(range(20))
    for i, r in answers.items():
        assert r.structured_content["params"] == {"message": f"h{i}", "n": i}
    scan_log(leakcheck, home, errlog)


def test_http_sessions_hear_tools_list_changed(
    home: McpHome, errlog: IO[str], leakcheck: LeakCheck, tmp_path: Path
) -> None:
    seen: dict[str, Any] = {}

    async def main() -> None:
        token = read_token(home)
        async with (
            sdk_http(seen["url"], token) as (legacy, changed),
            sdk_http(seen["url"], token, era="modern") as (modern, _),
            listen(modern, tools_list_changed=True) as subscription,
        ):
            await legacy.list_tools()
            done = await anyio.to_thread.run_sync(install_late_plugin, home, tmp_path)
            assert done.returncode == 0, done.stderr
            await changed.wait()
            seen["event"] = await subscription.__anext__()
            seen["legacy"] = {t.name for t in (await legacy.list_tools()).tools}
            seen["modern"] = {t.name for t in (await modern.list_tools()).tools}

    with http_server(home, errlog) as url:
        seen["url"] = url
        run(main)
    assert type(seen["event"]).__name__ == "ToolsListChanged"
    assert "late_echo" in seen["legacy"] and "late_echo" in seen["modern"]
    scan_log(leakcheck, home, errlog)


def test_the_token_is_generated_once_with_mode_0600_and_never_printed(
    home: McpHome, leakcheck: LeakCheck
) -> None:
    token_file = home.root / "mcp-token"
    assert not token_file.exists()
    with tempfile.TemporaryFile("w+", encoding="utf-8") as first:
        with http_server(home, first):
            token = read_token(home)
        first.seek(0)
        first_log = first.read()
    assert token_file.stat().st_mode & 0o777 == 0o600
    assert len(token) >= 32
    assert token not in first_log  # stderr goes to service logs: only where it is kept
    assert "mcp-token" in first_log
    with tempfile.TemporaryFile("w+", encoding="utf-8") as second:
        with http_server(home, second):
            assert read_token(home) == token
        second.seek(0)
        assert token not in second.read()
    leakcheck.add(*home.secrets)
    leakcheck.scan(first_log, "first start")


def test_a_token_file_others_can_read_is_refused(home: McpHome, leakcheck: LeakCheck) -> None:
    token_file = home.root / "mcp-token"
    token_file.write_text("a-perfectly-fine-token-value-1234\n")
    token_file.chmod(0o644)
    done = home.cli("mcp", "--http", "--port", "1")
    assert done.returncode != 0
    assert "chmod 600" in done.stderr
    assert "a-perfectly-fine-token-value-1234" not in done.stderr + done.stdout
    leakcheck.add(*home.secrets)
    leakcheck.scan(done.stderr, "stderr")


def test_the_server_refuses_to_listen_beyond_loopback(home: McpHome) -> None:
    from vultrino.core import Vultrino
    from vultrino.errors import ConfigError
    from vultrino.mcp.http import serve_http

    with (
        Vultrino.open(home.root, home.password_file.read_text().strip()) as v,
        pytest.raises(ConfigError, match="loopback"),
    ):
        serve_http(v, host="0.0.0.0", port=0, token="t" * 32)
