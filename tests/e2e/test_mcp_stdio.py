"""`vultrino mcp` over stdio, driven by the official MCP SDK client in both protocol eras.

Every test starts a real ``python -m vultrino mcp`` subprocess on a real home (sealed store,
wasm plugins) and talks to it with ``mcp.client.stdio.stdio_client`` + ``ClientSession``:
``initialize`` for the handshake era (the SDK's newest handshake version) and
``server/discover`` for the 2026-07-28 per-request era. What the client sees is asserted, and
the server's stderr is scanned for every secret the home holds.
"""

from __future__ import annotations

import http.server
import json
import os
import re
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import IO, Any

import anyio
import pytest
from mcp import types
from mcp.client.subscriptions import listen
from mcp.shared.exceptions import MCPError

from tests.component_guests import waiter_wat
from tests.e2e.mcp_helpers import (
    ECHO_SECRET,
    ECHO_WAT,
    GITHUB_SECRET,
    HANG_GUARD_S,
    HANG_WAT,
    LATE_SECRET,
    NOISE,
    NOISY_WAT,
    PASSWORD,
    McpHome,
    SdkSession,
    install_late_plugin,
    make_home,
    scan_log,
    sdk_stdio,
    transport_errors,
)
from tests.leakcheck import LeakCheck

ERAS = ["handshake", "modern"]


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


def text_of(result: types.CallToolResult) -> str:
    assert len(result.content) == 1
    block = result.content[0]
    assert isinstance(block, types.TextContent)
    return block.text


def dump(result: Any) -> str:
    return json.dumps(result.model_dump(mode="json", by_alias=True))


async def call(s: SdkSession, name: str, arguments: dict[str, Any]) -> types.CallToolResult:
    result = await s.session.call_tool(name, arguments)
    assert isinstance(result, types.CallToolResult)
    return result


# --- tools/list --------------------------------------------------------------------------------


@pytest.mark.parametrize("era", ERAS)
def test_tools_list_has_builtins_and_plugin_tools_in_both_eras(
    home: McpHome, errlog: IO[str], leakcheck: LeakCheck, era: str
) -> None:
    seen: dict[str, Any] = {}

    async def main() -> None:
        async with sdk_stdio(home, errlog, era=era) as s:
            seen["version"] = s.session.protocol_version
            seen["caps"] = s.session.server_capabilities
            seen["tools"] = (await s.session.list_tools()).tools

    run(main)
    tools = {t.name: t for t in seen["tools"]}
    assert {"list_credentials", "http_request", "echo_message"} <= set(tools)
    assert seen["version"] == ("2026-07-28" if era == "modern" else "2025-11-25")
    assert seen["caps"].tools is not None and seen["caps"].tools.list_changed is True

    schema = tools["echo_message"].input_schema
    assert schema["type"] == "object"
    assert {"credential", "message"} <= set(schema["required"])
    assert schema["properties"]["message"]["type"] == "string"
    assert schema["properties"]["n"]["type"] == "integer"
    credential = schema["properties"]["credential"]
    assert credential["type"] == "string"
    # The description lists the aliases of the right type, and only those.
    assert "echo-one" in credential["description"]
    assert "github" not in credential["description"]
    assert tools["echo_message"].description == "Echo a message through the echo plugin"

    # Behaviour hints: list_credentials only reads; http_request may do anything a URL allows.
    hints = tools["list_credentials"].annotations
    assert hints is not None
    assert (hints.read_only_hint, hints.destructive_hint) == (True, False)
    assert (hints.idempotent_hint, hints.open_world_hint) == (True, False)
    hints = tools["http_request"].annotations
    assert hints is not None
    assert (hints.read_only_hint, hints.destructive_hint, hints.open_world_hint) == (
        False,
        True,
        True,
    )
    assert tools["echo_message"].annotations is None  # its manifest declares no hints
    # list_credentials' result shape is advertised; handshake versions need an object root.
    out = tools["list_credentials"].output_schema
    assert out is not None
    items = out["items"] if era == "modern" else out["properties"]["result"]["items"]
    assert out["type"] == ("array" if era == "modern" else "object")
    assert items["required"] == ["alias", "id", "type", "description"]
    assert tools["echo_message"].output_schema is None
    scan_log(
        leakcheck, home, errlog, ("tools", [t.model_dump(mode="json") for t in tools.values()])
    )


# --- list_credentials --------------------------------------------------------------------------


@pytest.mark.parametrize("era", ERAS)
def test_list_credentials_shows_alias_type_description_never_a_value(
    home: McpHome, errlog: IO[str], leakcheck: LeakCheck, era: str
) -> None:
    got: list[types.CallToolResult] = []

    async def main() -> None:
        async with sdk_stdio(home, errlog, era=era) as s:
            got.append(await call(s, "list_credentials", {}))

    run(main)
    result = got[0]
    assert result.is_error is False
    listed = json.loads(text_of(result))
    # Lists are structuredContent too: as is on 2026-07-28, wrapped where it must be an object.
    expected_structured = listed if era == "modern" else {"result": listed}
    assert result.structured_content == expected_structured
    by_alias = {c["alias"]: c for c in listed}
    assert set(by_alias) == {"echo-one", "github"}
    assert by_alias["echo-one"] == {
        "alias": "echo-one",
        "id": by_alias["echo-one"]["id"],
        "type": "plugin:echo:key",
        "description": "echo key",
    }
    assert re.fullmatch(r"[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}", by_alias["echo-one"]["id"])
    assert by_alias["github"]["type"] == "api_key"
    blob = dump(result)
    assert ECHO_SECRET not in blob and GITHUB_SECRET not in blob
    scan_log(leakcheck, home, errlog, ("result", blob))


# --- plugin tools ------------------------------------------------------------------------------


@pytest.mark.parametrize("era", ERAS)
def test_plugin_tool_runs_with_the_alias_and_never_returns_the_secret(
    home: McpHome, errlog: IO[str], leakcheck: LeakCheck, era: str
) -> None:
    got: list[types.CallToolResult] = []

    async def main() -> None:
        async with sdk_stdio(home, errlog, era=era) as s:
            got.append(
                await call(s, "echo_message", {"credential": "echo-one", "message": "hi", "n": 3})
            )

    run(main)
    result = got[0]
    assert result.is_error is False
    # The echo plugin answers with the request it received: a map, so structuredContent + JSON.
    echoed = result.structured_content
    assert isinstance(echoed, dict)
    assert json.loads(text_of(result)) == echoed
    assert echoed["action"] == "echo"
    assert echoed["params"] == {"message": "hi", "n": 3}
    assert echoed["credential"]["alias"] == "echo-one"
    # The guest did get the secret; the host scrubbed it out of the result.
    assert echoed["credential"]["fields"]["token"] != ECHO_SECRET
    assert ECHO_SECRET not in dump(result)
    # Every call is audited, as coming from MCP.
    records = [json.loads(line) for line in (home.root / "audit.log").read_text().splitlines()]
    mine = [r for r in records if r.get("alias") == "echo-one" and r.get("action") == "echo"]
    assert mine and mine[-1]["source"] == "mcp" and mine[-1]["outcome"] == "ok"
    scan_log(leakcheck, home, errlog, ("result", dump(result)))


def test_mistakes_the_model_can_fix_are_tool_errors_that_say_what_to_change(
    home: McpHome, errlog: IO[str], leakcheck: LeakCheck
) -> None:
    cases: list[tuple[str, dict[str, Any], tuple[str, ...]]] = [
        ("echo_message", {"credential": "echo-one"}, ("message",)),
        ("echo_message", {"credential": "echo-one", "message": "x", "n": "three"}, ("n",)),
        ("echo_message", {"message": "x"}, ("credential", "list_credentials")),
        ("echo_message", {"credential": "nope", "message": "x"}, ("nope", "list_credentials")),
        ("echo_message", {"credential": "github", "message": "x"}, ("github", "plugin:echo:key")),
        ("list_credentials", {"surprise": 1}, ("surprise",)),
        # A wrong type is not a missing argument; null is not an integer.
        (
            "echo_message",
            {"credential": 123, "message": "x"},
            ("wrong type: credential must be a string", "got integer"),
        ),
        (
            "echo_message",
            {"credential": "echo-one", "message": "x", "n": None},
            ("n: null is not an integer",),
        ),
    ]
    results: list[types.CallToolResult] = []

    async def main() -> None:
        async with sdk_stdio(home, errlog) as s:
            for name, args, _ in cases:
                results.append(await call(s, name, args))
            # None of that broke anything.
            results.append(
                await call(s, "echo_message", {"credential": "echo-one", "message": "ok"})
            )

    run(main)
    for (name, args, words), result in zip(cases, results, strict=False):
        assert result.is_error is True, (name, args)
        text = text_of(result)
        for word in words:
            assert word in text, (args, text)
    assert results[-1].is_error is False
    scan_log(leakcheck, home, errlog, *(("result", dump(r)) for r in results))


@pytest.mark.parametrize("era", ERAS)
def test_an_unknown_tool_is_a_protocol_error(
    home: McpHome, errlog: IO[str], leakcheck: LeakCheck, era: str
) -> None:
    errors: list[MCPError] = []

    async def main() -> None:
        async with sdk_stdio(home, errlog, era=era) as s:
            try:
                await s.session.call_tool("no_such_tool", {})
            except MCPError as exc:
                errors.append(exc)
            # The connection is still good.
            assert (await call(s, "list_credentials", {})).is_error is False

    run(main)
    assert len(errors) == 1
    assert errors[0].error.code == types.INVALID_PARAMS
    assert "no_such_tool" in errors[0].error.message
    scan_log(leakcheck, home, errlog)


def test_twenty_parallel_calls_each_get_their_own_answer(
    home: McpHome, errlog: IO[str], leakcheck: LeakCheck
) -> None:
    answers: dict[int, types.CallToolResult] = {}

    async def main() -> None:
        async with sdk_stdio(home, errlog) as s:

            async def one(i: int) -> None:
                answers[i] = await call(
                    s, "echo_message", {"credential": "echo-one", "message": f"msg-{i}", "n": i}
                )

            async with anyio.create_task_group() as tg:
                for i in range(20):
                    tg.start_soon(one, i)
                tg.start_soon(call, s, "list_credentials", {})

    run(main)
    assert sorted(answers) == list(range(20))
    for i, result in answers.items():
        assert result.is_error is False
        assert isinstance(result.structured_content, dict)
        assert result.structured_content["params"] == {"message": f"msg-{i}", "n": i}
    scan_log(leakcheck, home, errlog)


def test_a_plugin_writing_to_stdout_does_not_corrupt_the_stream(
    isolated_home: Path, errlog: IO[str], leakcheck: LeakCheck
) -> None:
    home = make_home(
        isolated_home,
        plugins=[("echo", ECHO_WAT, "echo_message"), ("noisy", NOISY_WAT, "noisy_echo")],
    )
    results: list[types.CallToolResult] = []
    incoming: list[Any] = []

    async def main() -> None:
        async with sdk_stdio(home, errlog) as s:
            async with anyio.create_task_group() as tg:
                for i in range(5):

                    async def one(i: int = i) -> None:
                        results.append(
                            await call(
                                s, "noisy_echo", {"credential": "noisy-one", "message": f"m{i}"}
                            )
                        )

                    tg.start_soon(one)
            results.append(
                await call(s, "echo_message", {"credential": "echo-one", "message": "z"})
            )
            incoming.extend(s.incoming)

    run(main)
    assert not transport_errors(incoming), incoming
    assert len(results) == 6
    assert all(r.is_error is False for r in results), [text_of(r) for r in results]
    assert sorted(r.structured_content["params"]["message"] for r in results[:5]) == [  # type: ignore[index]
        f"m{i}" for i in range(5)
    ]
    assert all("forged" not in dump(r) for r in results)
    assert NOISE.strip() not in "".join(dump(r) for r in results)
    scan_log(leakcheck, home, errlog)


def test_a_hanging_plugin_fails_only_its_own_call(
    isolated_home: Path, errlog: IO[str], leakcheck: LeakCheck
) -> None:
    home = make_home(
        isolated_home,
        plugins=[("echo", ECHO_WAT, "echo_message"), ("hang", HANG_WAT, "hang_echo")],
        config="[limits]\ndeadline_s = 1.0\n",
    )
    hung: list[types.CallToolResult] = []
    fine: list[types.CallToolResult] = []

    async def main() -> None:
        async with sdk_stdio(home, errlog) as s:

            async def hang() -> None:
                hung.append(await call(s, "hang_echo", {"credential": "hang-one", "message": "h"}))

            async def echo() -> None:
                fine.append(
                    await call(s, "echo_message", {"credential": "echo-one", "message": "e"})
                )

            async with anyio.create_task_group() as tg:
                tg.start_soon(hang)
                tg.start_soon(echo)
            # The plugin is usable (and fails the same clean way) on the next call.
            await hang()
            await echo()

    run(main)
    assert len(hung) == 2 and len(fine) == 2
    for r in hung:
        assert r.is_error is True
        assert "hang" in text_of(r)
    assert all(r.is_error is False for r in fine)
    scan_log(leakcheck, home, errlog)


@pytest.mark.skipif(
    os.environ.get("VULTRINO_TEST_ENGINE", "wasmtime") != "wasmtime",
    reason="components run only on the wasmtime engine",
)
def test_calls_to_a_sleeping_component_leave_the_server_answering(
    isolated_home: Path, errlog: IO[str], leakcheck: LeakCheck
) -> None:
    """45 concurrent calls to a component that sleeps 10 s per call (wasi:clocks + poll, which
    used to block past the deadline and hold every worker thread): each ends with an error
    (the deadline, or busy), and list_credentials answers meanwhile within a few seconds."""
    home = make_home(
        isolated_home,
        plugins=[("sleepy", waiter_wat("block_10s"), "sleepy_echo")],
        config="[limits]\ndeadline_s = 1.0\n",
    )
    calls = 45
    sleepy: list[tuple[float, types.CallToolResult]] = []
    listing: list[tuple[float, types.CallToolResult]] = []

    async def main() -> None:
        async with sdk_stdio(home, errlog) as s:

            async def one() -> None:
                start = time.monotonic()
                result = await call(s, "sleepy_echo", {"credential": "sleepy-one", "message": "z"})
                sleepy.append((time.monotonic() - start, result))

            async with anyio.create_task_group() as tg:
                for _ in range(calls):
                    tg.start_soon(one)
                await anyio.sleep(0.5)  # every call is in (running, waiting or refused)
                start = time.monotonic()
                result = await call(s, "list_credentials", {})
                listing.append((time.monotonic() - start, result))

    run(main)
    ((took, result),) = listing
    assert result.is_error is False and "sleepy-one" in text_of(result)
    assert took < 5.0, f"list_credentials took {took:.1f} s"
    assert len(sleepy) == calls
    texts = [text_of(r) for _, r in sleepy]
    assert all(r.is_error is True for _, r in sleepy), texts
    assert all("deadline" in t or "busy" in t for t in texts), texts
    assert any("busy" in t for t in texts) and any("1 s deadline" in t for t in texts)
    # no call waited out its 10 s sleep: each ended within two deadlines and some slack
    assert max(t for t, _ in sleepy) < 2 * 1.0 + 5.0
    scan_log(leakcheck, home, errlog)


BEARER_SECRET = "local-bearer-9d8c7b6a5f4e3d2c1b0a"


class _WhoAmI(http.server.BaseHTTPRequestHandler):
    """Answers whether the request carried the expected bearer token (never the token)."""

    def do_GET(self) -> None:
        saw = self.headers.get("Authorization") == f"Bearer {BEARER_SECRET}"
        body = json.dumps({"saw_token": saw, "path": self.path}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_http_request_sends_the_credential_without_showing_it(
    home: McpHome, errlog: IO[str], leakcheck: LeakCheck
) -> None:
    leakcheck.add(BEARER_SECRET)
    web = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _WhoAmI)
    port = web.server_address[1]
    threading.Thread(target=web.serve_forever, daemon=True).start()
    from vultrino.core import Vultrino

    with Vultrino.open(home.root, PASSWORD) as v:
        v.add_credential(
            "local-api",
            "bearer",
            {"token": BEARER_SECRET},
            allow=[f"http://127.0.0.1:{port}/api/*"],
        )
    got: dict[str, Any] = {}

    async def main() -> None:
        async with sdk_stdio(home, errlog) as s:
            tools = {t.name: t for t in (await s.session.list_tools()).tools}
            got["schema"] = tools["http_request"].input_schema
            got["ok"] = await call(
                s,
                "http_request",
                {"credential": "local-api", "url": f"http://127.0.0.1:{port}/api/whoami"},
            )
            got["outside"] = await call(
                s,
                "http_request",
                {"credential": "local-api", "url": f"http://127.0.0.1:{port}/admin"},
            )

    try:
        run(main)
    finally:
        web.shutdown()
        web.server_close()
    assert "local-api" in got["schema"]["properties"]["credential"]["description"]
    ok = got["ok"]
    assert ok.is_error is False, text_of(ok)
    assert ok.structured_content["status"] == 200
    assert json.loads(ok.structured_content["body"]) == {"saw_token": True, "path": "/api/whoami"}
    outside = got["outside"]
    assert outside.is_error is True
    assert "/admin" in text_of(outside)
    for r in (ok, outside):
        assert BEARER_SECRET not in dump(r)
    scan_log(leakcheck, home, errlog, ("ok", dump(ok)), ("outside", dump(outside)))


# --- changes while running ---------------------------------------------------------------------


def test_a_plugin_installed_while_running_is_announced_and_usable(
    home: McpHome, errlog: IO[str], leakcheck: LeakCheck, tmp_path: Path
) -> None:
    leakcheck.add(LATE_SECRET)
    seen: dict[str, Any] = {}

    async def main() -> None:
        async with sdk_stdio(home, errlog) as s:
            before = {t.name for t in (await s.session.list_tools()).tools}
            assert "late_echo" not in before
            done = await anyio.to_thread.run_sync(install_late_plugin, home, tmp_path)
            assert done.returncode == 0, done.stderr
            await s.changed.wait()
            tools = {t.name: t for t in (await s.session.list_tools()).tools}
            seen["schema_before_credential"] = tools["late_echo"].input_schema

            # A credential added by another process changes the schema (its alias list) too.
            s.expect_change()
            secret_file = tmp_path / "late-secret"
            secret_file.write_text(LATE_SECRET)
            added = await anyio.to_thread.run_sync(
                lambda: home.cli(
                    "add",
                    "--alias",
                    "late-one",
                    "--type",
                    "plugin:late:key",
                    "--field",
                    f"token=@{secret_file}",
                )
            )
            assert added.returncode == 0, added.stderr
            await s.changed.wait()
            tools = {t.name: t for t in (await s.session.list_tools()).tools}
            seen["schema_after_credential"] = tools["late_echo"].input_schema
            seen["result"] = await call(
                s, "late_echo", {"credential": "late-one", "message": "hello late"}
            )

    run(main)
    before = seen["schema_before_credential"]["properties"]["credential"]["description"]
    after = seen["schema_after_credential"]["properties"]["credential"]["description"]
    assert "late-one" not in before and "late-one" in after
    result = seen["result"]
    assert result.is_error is False
    assert result.structured_content["params"] == {"message": "hello late"}
    assert LATE_SECRET not in dump(result)
    scan_log(leakcheck, home, errlog)


def test_modern_era_clients_hear_of_changes_on_a_listen_stream(
    home: McpHome, errlog: IO[str], leakcheck: LeakCheck, tmp_path: Path
) -> None:
    seen: dict[str, Any] = {}

    async def main() -> None:
        async with sdk_stdio(home, errlog, era="modern") as s:
            async with listen(s.session, tools_list_changed=True) as subscription:
                done = await anyio.to_thread.run_sync(install_late_plugin, home, tmp_path)
                assert done.returncode == 0, done.stderr
                seen["event"] = await subscription.__anext__()
            seen["tools"] = {t.name for t in (await s.session.list_tools()).tools}

    run(main)
    assert type(seen["event"]).__name__ == "ToolsListChanged"
    assert "late_echo" in seen["tools"]
    scan_log(leakcheck, home, errlog)


# --- start-up ----------------------------------------------------------------------------------


def test_a_wrong_password_fails_at_start_with_a_message_and_nothing_on_stdout(
    home: McpHome, leakcheck: LeakCheck, tmp_path: Path
) -> None:
    wrong = tmp_path / "wrong"
    wrong.write_text("not the password")
    wrong.chmod(0o600)
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "vultrino", "mcp"],
        env=home.env(VULTRINO_PASSWORD_FILE=str(wrong)),
        input="",
        capture_output=True,
        text=True,
        timeout=HANG_GUARD_S,
    )
    assert done.returncode != 0
    assert done.stdout == ""
    assert "password" in done.stderr.lower()
    leakcheck.add(*home.secrets, "not the password")
    leakcheck.scan(done.stderr, "stderr")


def test_no_password_source_fails_at_start_and_names_the_variables(
    home: McpHome, leakcheck: LeakCheck
) -> None:
    import subprocess
    import sys

    env = home.env()
    del env["VULTRINO_PASSWORD_FILE"]
    done = subprocess.run(
        [sys.executable, "-m", "vultrino", "mcp"],
        env=env,
        input="",
        capture_output=True,
        text=True,
        timeout=HANG_GUARD_S,
    )
    assert done.returncode != 0
    assert done.stdout == ""
    assert "VULTRINO_PASSWORD" in done.stderr
    leakcheck.add(*home.secrets)
    leakcheck.scan(done.stderr, "stderr")
