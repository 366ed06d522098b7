"""`vultrino mcp` as a desktop host sees it: raw line-delimited JSON-RPC on stdin/stdout.

The client here is a few lines of Python writing exactly the bytes Claude Desktop and similar
hosts write — ``initialize`` with the protocol version they send today, then
``notifications/initialized``, ``tools/list`` and ``tools/call`` — and reading the server's stdout
line by line. Every line the server writes must be one JSON-RPC 2.0 message, whatever plugins do.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pytest

from tests.e2e.mcp_helpers import (
    BINARY_WAT,
    ECHO_SECRET,
    ECHO_WAT,
    GITHUB_SECRET,
    HANG_GUARD_S,
    HANG_WAT,
    NOISE,
    NOISY_WAT,
    PASSWORD,
    SERVER_COMMAND,
    McpHome,
    RawClient,
    install_late_plugin,
    make_home,
    scan_log,
)
from tests.leakcheck import LeakCheck

DESKTOP_VERSIONS = ["2024-11-05", "2025-03-26", "2025-06-18"]


@pytest.fixture
def errlog() -> Iterator[IO[str]]:
    """The server's stderr; shown when a test fails, so a failure explains itself."""
    with tempfile.TemporaryFile("w+", encoding="utf-8") as f:
        yield f
        f.seek(0)
        sys.stderr.write("--- server stderr ---\n" + f.read()[-8000:])


@pytest.fixture
def home(isolated_home: Path) -> McpHome:
    return make_home(isolated_home)


def assert_all_jsonrpc(lines: list[bytes]) -> list[dict[str, Any]]:
    """Every stdout line is one JSON-RPC 2.0 object: nothing else ever reaches the stream."""
    messages = []
    for line in lines:
        assert line.endswith(b"\n"), line
        msg = json.loads(line)
        assert isinstance(msg, dict) and msg.get("jsonrpc") == "2.0", line
        messages.append(msg)
    return messages


@pytest.mark.parametrize("version", DESKTOP_VERSIONS)
def test_a_desktop_host_session_in_the_protocol_version_it_sends(
    home: McpHome, errlog: IO[str], leakcheck: LeakCheck, version: str
) -> None:
    with RawClient(home, errlog) as c:
        init = c.handshake(version)
        listed = c.request("tools/list")
        creds = c.request("tools/call", {"name": "list_credentials", "arguments": {}})
        echo = c.request(
            "tools/call",
            {"name": "echo_message", "arguments": {"credential": "echo-one", "message": "raw"}},
        )
        code = c.close()
    assert code == 0

    result = init["result"]
    assert result["protocolVersion"] == version
    assert result["capabilities"]["tools"]["listChanged"] is True
    assert result["serverInfo"]["name"] == "vultrino"
    assert "list_credentials" in result["instructions"]

    names = {t["name"] for t in listed["result"]["tools"]}
    assert {"list_credentials", "http_request", "echo_message"} <= names
    for tool in listed["result"]["tools"]:
        assert tool["inputSchema"]["type"] == "object"

    assert creds["result"]["isError"] is False
    aliases = {c["alias"] for c in json.loads(creds["result"]["content"][0]["text"])}
    assert aliases == {"echo-one", "github"}

    assert echo["result"]["isError"] is False
    assert echo["result"]["structuredContent"]["params"] == {"message": "raw"}
    assert json.loads(echo["result"]["content"][0]["text"]) == echo["result"]["structuredContent"]

    assert_all_jsonrpc(c.lines)
    stdout = b"".join(c.lines)
    assert ECHO_SECRET.encode() not in stdout and GITHUB_SECRET.encode() not in stdout
    scan_log(leakcheck, home, errlog, ("stdout", stdout))


def test_an_unknown_tool_is_a_jsonrpc_error_and_a_bad_call_a_tool_error(
    home: McpHome, errlog: IO[str], leakcheck: LeakCheck
) -> None:
    with RawClient(home, errlog) as c:
        c.handshake("2025-06-18")
        unknown = c.request("tools/call", {"name": "nope_tool", "arguments": {}})
        bad = c.request(
            "tools/call", {"name": "echo_message", "arguments": {"credential": "echo-one"}}
        )
        c.close()
    assert unknown["error"]["code"] == -32602
    assert "nope_tool" in unknown["error"]["message"]
    assert "result" not in unknown
    assert bad["result"]["isError"] is True
    assert "message" in bad["result"]["content"][0]["text"]
    assert_all_jsonrpc(c.lines)
    scan_log(leakcheck, home, errlog, ("stdout", b"".join(c.lines)))


def test_lines_that_are_not_jsonrpc_get_an_error_and_lose_nothing(
    home: McpHome, errlog: IO[str], leakcheck: LeakCheck
) -> None:
    with RawClient(home, errlog) as c:
        c.handshake("2025-06-18")
        assert c.proc.stdin is not None
        c.proc.stdin.write(b"this is not json\n[1, 2]\n")
        c.proc.stdin.flush()
        parse_error = c.wait_for(lambda m: m.get("error", {}).get("code") == -32700)
        invalid = c.wait_for(lambda m: m.get("error", {}).get("code") == -32600)
        after = c.request("tools/call", {"name": "list_credentials", "arguments": {}})
        c.close()
    assert parse_error["id"] is None and invalid["id"] is None
    assert "this is not json" not in json.dumps(parse_error)
    assert after["result"]["isError"] is False
    assert_all_jsonrpc(c.lines)
    scan_log(leakcheck, home, errlog)


def test_requests_piped_in_at_once_are_all_answered_after_stdin_closes(
    home: McpHome, errlog: IO[str], leakcheck: LeakCheck
) -> None:
    """`printf '...' | vultrino mcp`: stdin is at EOF before the server has read a line."""
    lines = [
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "initialize",
            "params": {
                "protocolVersion": "2025-06-18",
                "capabilities": {},
                "clientInfo": {"name": "script", "version": "1"},
            },
        },
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {"jsonrpc": "2.0", "id": 2, "method": "tools/list"},
        {"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": "list_credentials"}},
        *(
            {
                "jsonrpc": "2.0",
                "id": 10 + i,
                "method": "tools/call",
                "params": {
                    "name": "echo_message",
                    "arguments": {"credential": "echo-one", "message": f"p{i}"},
                },
            }
            for i in range(5)
        ),
    ]
    done = subprocess.run(
        SERVER_COMMAND,
        input="".join(json.dumps(m) + "\n" for m in lines).encode(),
        stdout=subprocess.PIPE,
        stderr=errlog,
        env=home.env(),
        timeout=HANG_GUARD_S,
    )
    assert done.returncode == 0
    messages = assert_all_jsonrpc(done.stdout.splitlines(keepends=True))
    by_id = {m["id"]: m for m in messages}
    assert set(by_id) == {1, 2, 3, 10, 11, 12, 13, 14}
    for i in range(5):
        assert by_id[10 + i]["result"]["structuredContent"]["params"] == {"message": f"p{i}"}
    scan_log(leakcheck, home, errlog, ("stdout", done.stdout))


def test_a_plugin_printing_a_forged_response_on_stdout_never_reaches_the_stream(
    isolated_home: Path, errlog: IO[str], leakcheck: LeakCheck
) -> None:
    home = make_home(
        isolated_home,
        plugins=[("echo", ECHO_WAT, "echo_message"), ("noisy", NOISY_WAT, "noisy_echo")],
    )
    with RawClient(home, errlog) as c:
        c.handshake("2024-11-05")
        answers = [
            c.request(
                "tools/call",
                {"name": "noisy_echo", "arguments": {"credential": "noisy-one", "message": f"{i}"}},
            )
            for i in range(3)
        ]
        listed = c.request("tools/list")
        c.close()
    messages = assert_all_jsonrpc(c.lines)
    # Exactly one answer per request, none of them the plugin's forgery.
    assert [m.get("id") for m in messages] == [1, 2, 3, 4, 5]
    assert all(m.get("result", {}).get("forged") is None for m in messages)
    assert NOISE.encode().strip() not in b"".join(c.lines)
    assert all(a["result"]["isError"] is False for a in answers), answers
    assert "noisy_echo" in {t["name"] for t in listed["result"]["tools"]}
    scan_log(leakcheck, home, errlog)


def test_results_json_cannot_express_still_come_back_as_json(
    isolated_home: Path, errlog: IO[str], leakcheck: LeakCheck
) -> None:
    """MessagePack has bytes, integer map keys and NaN; the result is still plain JSON."""
    home = make_home(isolated_home, plugins=[("binary", BINARY_WAT, "binary_blob")])
    with RawClient(home, errlog) as c:
        c.handshake("2025-06-18")
        answer = c.request(
            "tools/call",
            {"name": "binary_blob", "arguments": {"credential": "binary-one", "message": "x"}},
        )
        c.close()
    assert_all_jsonrpc(c.lines)
    result = answer["result"]
    assert result["isError"] is False
    expected = {"1": "AAEC", "nan": "nan", "list": ["/w=="]}
    assert result["structuredContent"] == expected
    assert json.loads(result["content"][0]["text"]) == expected
    scan_log(leakcheck, home, errlog)


def test_tools_list_changed_reaches_a_raw_client_when_a_plugin_is_installed(
    home: McpHome, errlog: IO[str], leakcheck: LeakCheck, tmp_path: Path
) -> None:
    with RawClient(home, errlog) as c:
        c.handshake("2025-06-18")
        c.request("tools/list")
        done = install_late_plugin(home, tmp_path)
        assert done.returncode == 0, done.stderr
        note = c.wait_for(lambda m: m.get("method") == "notifications/tools/list_changed")
        listed = c.request("tools/list")
        c.close()
    assert "id" not in note
    assert "late_echo" in {t["name"] for t in listed["result"]["tools"]}
    assert_all_jsonrpc(c.lines)
    scan_log(leakcheck, home, errlog)


def test_mcp_config_output_starts_a_working_server(
    home: McpHome, errlog: IO[str], leakcheck: LeakCheck
) -> None:
    """What `vultrino mcp config` prints is ready to paste: run it the way a host would."""
    done = home.cli("mcp", "config")
    assert done.returncode == 0, done.stderr
    config = json.loads(done.stdout)
    entry = config["mcpServers"]["vultrino"]
    assert entry["args"][-1] == "mcp"
    assert entry["env"]["VULTRINO_HOME"] == str(home.root)
    # The entry names the user's own 0600 password file (VULTRINO_PASSWORD_FILE, outside the
    # home), which `mcp config` checked; the host starts exactly its command and environment.
    assert entry["env"]["VULTRINO_PASSWORD_FILE"] == str(home.password_file)
    assert PASSWORD not in done.stdout and PASSWORD not in done.stderr
    env = {"PATH": os.environ.get("PATH", ""), **entry["env"]}
    proc = subprocess.Popen(
        [entry["command"], *entry["args"]],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=errlog,
        env=env,
    )
    init = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-06-18",
            "capabilities": {},
            "clientInfo": {"name": "claude-ai", "version": "0.1.0"},
        },
    }
    out, _ = proc.communicate(json.dumps(init).encode() + b"\n", timeout=HANG_GUARD_S)
    assert proc.returncode == 0
    (answer,) = assert_all_jsonrpc(out.splitlines(keepends=True))
    assert answer["result"]["serverInfo"]["name"] == "vultrino"
    scan_log(leakcheck, home, errlog, ("config", done.stdout + done.stderr))


def test_a_cancelled_call_is_never_answered_and_the_session_goes_on(
    isolated_home: Path, errlog: IO[str], leakcheck: LeakCheck
) -> None:
    home = make_home(
        isolated_home,
        plugins=[("echo", ECHO_WAT, "echo_message"), ("hang", HANG_WAT, "hang_echo")],
        config="[limits]\ndeadline_s = 1.0\n",
    )
    with RawClient(home, errlog) as c:
        c.handshake("2025-06-18")
        c.send(
            {
                "jsonrpc": "2.0",
                "id": "slow",
                "method": "tools/call",
                "params": {
                    "name": "hang_echo",
                    "arguments": {"credential": "hang-one", "message": "h"},
                },
            }
        )
        c.notify("notifications/cancelled", {"requestId": "slow", "reason": "user gave up"})
        pong = c.request("ping")
        echo = c.request(
            "tools/call",
            {"name": "echo_message", "arguments": {"credential": "echo-one", "message": "after"}},
        )
        code = c.close()  # waits for the hung call to end (its 1 s deadline) before exiting
    assert code == 0
    assert pong["result"] == {}
    assert echo["result"]["structuredContent"]["params"] == {"message": "after"}
    messages = assert_all_jsonrpc(c.lines)
    assert all(m.get("id") != "slow" for m in messages)
    scan_log(leakcheck, home, errlog)
