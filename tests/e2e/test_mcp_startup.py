"""`vultrino mcp` start-up: the stdlib front answers the opening messages while the SDK loads.

Each test spawns the real server and writes raw bytes to its stdin — usually the whole opening in
one write, as an eager host does, so it all arrives while the SDK is still being imported — and
then reads everything the server writes until it exits. Whatever the front answered, each
request is answered exactly once, every line is JSON-RPC, and the session behaves as if the SDK
had read the stream itself.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pytest

from tests.e2e.mcp_helpers import HANG_GUARD_S, SERVER_COMMAND, McpHome, make_home

HANDSHAKE = ["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"]
MODERN = "2026-07-28"
INITIALIZED = {"jsonrpc": "2.0", "method": "notifications/initialized"}


@pytest.fixture
def errlog() -> Iterator[IO[str]]:
    with tempfile.TemporaryFile("w+", encoding="utf-8") as f:
        yield f
        f.seek(0)
        sys.stderr.write("--- server stderr ---\n" + f.read()[-8000:])


@pytest.fixture
def home(isolated_home: Path) -> McpHome:
    return make_home(isolated_home)


def initialize(version: str, rid: int | str = 1) -> dict[str, Any]:
    return {
        "jsonrpc": "2.0",
        "id": rid,
        "method": "initialize",
        "params": {
            "protocolVersion": version,
            "capabilities": {},
            "clientInfo": {"name": "eager-host", "version": "1.0"},
        },
    }


def request(rid: int | str, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
    msg: dict[str, Any] = {"jsonrpc": "2.0", "id": rid, "method": method}
    if params is not None:
        msg["params"] = params
    return msg


def session(
    home: McpHome, errlog: IO[str], *lines: dict[str, Any] | str, **env: str
) -> tuple[int, list[Any]]:
    """Write ``lines`` in one write, close stdin, and return (exit code, every message read).

    Every request written is answered before the server exits (stdin closing drains them)."""
    data = "".join(m if isinstance(m, str) else json.dumps(m) + "\n" for m in lines).encode()
    proc = subprocess.run(
        SERVER_COMMAND,
        input=data,
        stdout=subprocess.PIPE,
        stderr=errlog,
        env=home.env(**env),
        timeout=HANG_GUARD_S,
        check=False,
    )
    messages: list[Any] = []
    for line in proc.stdout.splitlines(keepends=True):
        assert line.endswith(b"\n"), line
        msg = json.loads(line)
        for one in msg if isinstance(msg, list) else [msg]:  # a batch's answer is a list
            assert isinstance(one, dict) and one.get("jsonrpc") == "2.0", line
        messages.append(msg)
    return proc.returncode, messages


def answers(messages: list[dict[str, Any]]) -> dict[Any, dict[str, Any]]:
    """The responses by id; an id answered twice fails the test."""
    out: dict[Any, dict[str, Any]] = {}
    for m in messages:
        if "method" in m:
            continue
        key = json.dumps(m.get("id"))
        assert key not in out, f"request {key} answered twice: {out[key]} and {m}"
        out[key] = m
    return {json.loads(k): v for k, v in out.items()}


def tool_names(response: dict[str, Any]) -> set[str]:
    return {t["name"] for t in response["result"]["tools"]}


@pytest.mark.parametrize("version", HANDSHAKE)
def test_initialize_initialized_and_tools_list_in_one_write(
    home: McpHome, errlog: IO[str], version: str
) -> None:
    code, messages = session(
        home,
        errlog,
        initialize(version),
        INITIALIZED,
        request(2, "tools/list"),
        request(3, "tools/call", {"name": "list_credentials", "arguments": {}}),
    )
    assert code == 0
    got = answers(messages)
    assert set(got) == {1, 2, 3}
    assert messages[0]["id"] == 1  # the initialize answer comes first
    init = got[1]["result"]
    assert init["protocolVersion"] == version
    assert init["capabilities"]["tools"] == {"listChanged": True}
    assert init["serverInfo"]["name"] == "vultrino"
    assert "list_credentials" in tool_names(got[2])
    assert got[3]["result"]["isError"] is False
    assert "echo-one" in got[3]["result"]["content"][0]["text"]


def test_an_unknown_version_is_answered_with_the_newest_handshake_version(
    home: McpHome, errlog: IO[str]
) -> None:
    code, messages = session(
        home, errlog, initialize("2099-01-01"), INITIALIZED, request(2, "tools/list")
    )
    got = answers(messages)
    assert code == 0
    assert got[1]["result"]["protocolVersion"] == HANDSHAKE[-1]
    assert "list_credentials" in tool_names(got[2])


def test_ping_while_the_sdk_loads_is_answered_once(home: McpHome, errlog: IO[str]) -> None:
    code, messages = session(
        home,
        errlog,
        initialize("2025-06-18"),
        request("ping-1", "ping"),
        INITIALIZED,
        request("ping-2", "ping", {}),
        request(2, "tools/list"),
    )
    assert code == 0
    got = answers(messages)
    assert got["ping-1"]["result"] == {}
    assert got["ping-2"]["result"] == {}
    assert [m.get("id") for m in messages][:3] == [1, "ping-1", "ping-2"]
    assert "list_credentials" in tool_names(got[2])


def test_a_2026_era_client_is_served_by_the_sdk(home: McpHome, errlog: IO[str]) -> None:
    envelope = {
        "io.modelcontextprotocol/protocolVersion": MODERN,
        "io.modelcontextprotocol/clientInfo": {"name": "modern-host", "version": "1.0"},
        "io.modelcontextprotocol/clientCapabilities": {},
    }
    code, messages = session(
        home,
        errlog,
        request(1, "server/discover", {"_meta": envelope}),
        request(2, "tools/list", {"_meta": envelope}),
    )
    assert code == 0
    got = answers(messages)
    assert MODERN in got[1]["result"]["supportedVersions"]
    assert "list_credentials" in tool_names(got[2])


def test_a_garbage_line_first_gets_an_error_and_the_session_still_opens(
    home: McpHome, errlog: IO[str]
) -> None:
    code, messages = session(
        home,
        errlog,
        "this is not json\n",
        initialize("2025-06-18"),
        INITIALIZED,
        request(2, "tools/list"),
    )
    assert code == 0
    errors = [m for m in messages if m.get("id") is None]
    assert [e["error"]["code"] for e in errors] == [-32700]
    got = answers([m for m in messages if m.get("id") is not None])
    assert got[1]["result"]["protocolVersion"] == "2025-06-18"
    assert "list_credentials" in tool_names(got[2])


def test_a_request_before_initialize_is_left_to_the_sdk(home: McpHome, errlog: IO[str]) -> None:
    code, messages = session(
        home,
        errlog,
        request(1, "tools/list"),
        initialize("2025-06-18", rid=2),
        INITIALIZED,
        request(3, "tools/list"),
    )
    assert code == 0
    got = answers(messages)
    assert got[1]["error"]["code"] == -32602  # not initialized yet, as documented
    assert got[2]["result"]["protocolVersion"] == "2025-06-18"
    assert "list_credentials" in tool_names(got[3])


def test_closing_stdin_right_after_initialize_exits_cleanly(home: McpHome, errlog: IO[str]) -> None:
    code, messages = session(home, errlog, initialize("2025-11-25"))
    assert code == 0
    assert list(answers(messages)) == [1]
    assert messages[0]["result"]["protocolVersion"] == "2025-11-25"


def test_a_wrong_password_fails_before_any_protocol_traffic(home: McpHome, errlog: IO[str]) -> None:
    code, messages = session(
        home, errlog, initialize("2025-06-18"), VULTRINO_PASSWORD="not the password"
    )
    assert code != 0
    assert messages == []
    errlog.seek(0)
    assert "password" in errlog.read().lower()


# --- served without the SDK ----------------------------------------------------------------------


def imported_modules(stderr: str) -> set[str]:
    """The modules ``python -X importtime`` reported importing."""
    names = set()
    for line in stderr.splitlines():
        if line.startswith("import time:") and line.count("|") == 2:
            names.add(line.rsplit("|", 1)[1].strip())
    return names


def traced_session(
    home: McpHome, *lines: dict[str, Any]
) -> tuple[int, list[dict[str, Any]], set[str]]:
    data = "".join(json.dumps(m) + "\n" for m in lines).encode()
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", *SERVER_COMMAND[1:]],
        input=data,
        capture_output=True,
        env=home.env(),
        timeout=HANG_GUARD_S,
        check=False,
    )
    messages = [json.loads(line) for line in proc.stdout.splitlines()]
    return proc.returncode, messages, imported_modules(proc.stderr.decode())


def test_a_handshake_session_is_served_without_importing_the_sdk(home: McpHome) -> None:
    code, messages, modules = traced_session(
        home,
        initialize("2025-06-18"),
        INITIALIZED,
        request(2, "tools/list"),
        request(
            3,
            "tools/call",
            {"name": "echo_message", "arguments": {"credential": "echo-one", "message": "m"}},
        ),
    )
    assert code == 0
    got = answers(messages)
    assert "echo_message" in tool_names(got[2])
    assert got[3]["result"]["structuredContent"]["params"] == {"message": "m"}
    assert "vultrino.mcp._session" in modules  # the trace does list what was imported
    sdk = {m for m in modules if m.split(".")[0] in ("mcp", "mcp_types", "pydantic", "anyio")}
    assert sdk == set()


def test_a_2026_era_opening_imports_the_sdk_and_is_served_by_it(home: McpHome) -> None:
    envelope = {
        "io.modelcontextprotocol/protocolVersion": MODERN,
        "io.modelcontextprotocol/clientInfo": {"name": "modern-host", "version": "1.0"},
        "io.modelcontextprotocol/clientCapabilities": {},
    }
    code, messages, modules = traced_session(
        home, request(1, "server/discover", {"_meta": envelope})
    )
    assert code == 0
    assert MODERN in answers(messages)[1]["result"]["supportedVersions"]
    assert "mcp.server.lowlevel" in modules and "vultrino.mcp.server" in modules


def test_a_batch_is_answered_on_2025_03_26_and_refused_on_later_versions(
    home: McpHome, errlog: IO[str]
) -> None:
    batch = json.dumps(
        [
            request(2, "tools/list"),
            request(3, "tools/call", {"name": "list_credentials", "arguments": {}}),
            INITIALIZED,
        ]
    )
    code, messages = session(home, errlog, initialize("2025-03-26"), batch + "\n")
    assert code == 0
    (answered,) = [m for m in messages if isinstance(m, list)]
    got = answers(answered)
    assert set(got) == {2, 3}
    assert "list_credentials" in tool_names(got[2])
    assert got[3]["result"]["isError"] is False

    code, messages = session(
        home, errlog, initialize("2025-06-18"), batch + "\n", request(4, "ping")
    )
    assert code == 0
    assert not any(isinstance(m, list) for m in messages)
    errors = [m for m in messages if m.get("id") is None]
    assert [e["error"]["code"] for e in errors] == [-32600]
    assert "batches" in errors[0]["error"]["message"]
    assert set(answers(messages)) == {1, 4, None}


def test_unknown_methods_and_bad_parameters_get_the_protocol_errors(
    home: McpHome, errlog: IO[str]
) -> None:
    code, messages = session(
        home,
        errlog,
        initialize("2025-06-18"),
        INITIALIZED,
        request(2, "resources/subscribe", {"uri": "vultrino://credential/x"}),
        request(3, "tools/call", {"arguments": {}}),
        request(4, "tools/list", {"cursor": 7}),
        '{"jsonrpc": "2.0", "id": null, "method": "ping"}\n',
    )
    assert code == 0
    got = answers(messages)
    assert got[2]["error"] == {
        "code": -32601,
        "message": "Method not found",
        "data": "resources/subscribe",
    }
    assert got[3]["error"]["code"] == -32602 and "params.name" in got[3]["error"]["data"]
    assert got[4]["error"]["code"] == -32602 and "cursor" in got[4]["error"]["data"]
    assert got[None]["error"]["code"] == -32600 and '"id"' in got[None]["error"]["message"]


def test_a_large_message_goes_through_whole(home: McpHome, errlog: IO[str]) -> None:
    big = "é" + "x" * (2 << 20) + "☃"
    code, messages = session(
        home,
        errlog,
        initialize("2025-06-18"),
        INITIALIZED,
        request(
            2,
            "tools/call",
            {"name": "echo_message", "arguments": {"credential": "echo-one", "message": big}},
        ),
    )
    assert code == 0
    result = answers(messages)[2]["result"]
    assert result["isError"] is False
    assert result["structuredContent"]["params"]["message"] == big
