"""The stdio start-up front (vultrino/mcp/_front.py) against the real MCP SDK server.

The front answers ``initialize`` before the SDK is imported, so its answer must be the one the
SDK server would give: each case below asks the real SDK server (the one ``vultrino mcp`` runs,
driven in-process over memory streams) and the front the same question and compares the two
answers whole.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp_types import version as sdk_versions

from vultrino.mcp._front import StdioFront
from vultrino.mcp._identity import HANDSHAKE_VERSIONS

CLIENT_CAPABILITIES: list[dict[str, Any]] = [
    {},
    {"elicitation": {}, "roots": {"listChanged": True}, "sampling": {}},
]
REQUESTED = [*HANDSHAKE_VERSIONS, *sdk_versions.MODERN_PROTOCOL_VERSIONS, "2099-01-01", ""]


def initialize(version: str, capabilities: dict[str, Any], rid: int | str = 1) -> dict[str, Any]:
    return {
        "jsonrpc": "2.0",
        "id": rid,
        "method": "initialize",
        "params": {
            "protocolVersion": version,
            "capabilities": capabilities,
            "clientInfo": {"name": "unit", "version": "0"},
        },
    }


def sdk_answers(messages: list[dict[str, Any]], isolated_home: Path) -> list[dict[str, Any]]:
    """What the real SDK server of ``vultrino mcp`` writes for ``messages`` (as on the wire)."""
    from mcp.shared.message import SessionMessage
    from mcp_types import jsonrpc_message_adapter

    from vultrino.core import Vultrino
    from vultrino.mcp.server import VultrinoMCP

    v = Vultrino.open(isolated_home)
    app = VultrinoMCP(v)
    out: list[dict[str, Any]] = []

    async def run() -> None:
        to_server, from_client = anyio.create_memory_object_stream[Any](len(messages))
        to_client, from_server = anyio.create_memory_object_stream[Any](len(messages) + 4)
        for m in messages:
            await to_server.send(
                SessionMessage(jsonrpc_message_adapter.validate_python(m, by_name=False))
            )
        await to_server.aclose()
        async with from_client, to_client, from_server, anyio.create_task_group() as tg:
            tg.start_soon(
                app.server.run, from_client, to_client, app.server.create_initialization_options()
            )
            with anyio.fail_after(60):
                async for item in from_server:
                    out.append(
                        json.loads(item.message.model_dump_json(by_alias=True, exclude_unset=True))
                    )
                    if sum("id" in o for o in out) == sum("id" in m for m in messages):
                        break
            tg.cancel_scope.cancel()

    try:
        anyio.run(run)
    finally:
        v.close()
    return out


class Pipes:
    """A front on real pipes, as ``vultrino mcp`` runs it on the process's fds."""

    def __init__(self) -> None:
        in_r, self._in_w = os.pipe()
        self._out_r, out_w = os.pipe()
        self.front = StdioFront(
            io.TextIOWrapper(os.fdopen(in_r, "rb"), encoding="utf-8"),
            io.TextIOWrapper(os.fdopen(out_w, "wb"), encoding="utf-8", newline="\n"),
        )
        self._stdin, self._stdout = self.front._stdin, self.front._stdout
        self.out = os.fdopen(self._out_r, "rb")
        self._in_open = True
        self.front.start()

    def send(self, *messages: dict[str, Any] | str) -> None:
        data = "".join(m if isinstance(m, str) else json.dumps(m) + "\n" for m in messages)
        os.write(self._in_w, data.encode())

    def lines_handed_over(self, n: int) -> list[str | None]:
        return [self.front.get() for _ in range(n)]

    def answer(self) -> dict[str, Any]:
        line = self.out.readline()
        assert line.endswith(b"\n")
        reply: dict[str, Any] = json.loads(line)
        return reply

    def close_input(self) -> None:
        if self._in_open:
            self._in_open = False
            os.close(self._in_w)

    def close(self) -> None:
        self.close_input()
        self.front._thread.join(timeout=30)  # the reader ends at the end of its input
        for f in (self._stdin, self._stdout, self.out):
            f.close()


@pytest.fixture
def pipes() -> Iterator[Pipes]:
    p = Pipes()
    yield p
    p.close()


@pytest.mark.parametrize("capabilities", CLIENT_CAPABILITIES, ids=["bare", "rich"])
@pytest.mark.parametrize("requested", REQUESTED)
def test_the_front_answers_initialize_exactly_as_the_sdk_server(
    isolated_home: Path, pipes: Pipes, requested: str, capabilities: dict[str, Any]
) -> None:
    request = initialize(requested, capabilities)
    (sdk,) = sdk_answers([request], isolated_home)
    pipes.send(request)
    assert pipes.lines_handed_over(1) == [json.dumps(request) + "\n"]
    pipes.front.ready()
    assert pipes.answer() == sdk
    assert pipes.front.hand_over() == [1]
    assert sdk["result"]["protocolVersion"] == (
        requested if requested in HANDSHAKE_VERSIONS else HANDSHAKE_VERSIONS[-1]
    )


def test_the_front_answers_ping_as_the_sdk_server(isolated_home: Path, pipes: Pipes) -> None:
    opening = initialize("2025-06-18", {})
    ping = {"jsonrpc": "2.0", "id": "p-1", "method": "ping"}
    sdk = sdk_answers([opening, ping], isolated_home)
    pipes.send(opening, ping)
    pipes.front.ready()
    assert [pipes.answer(), pipes.answer()] == sdk
    assert pipes.front.hand_over() == [1, "p-1"]


def test_the_handshake_versions_are_the_sdks() -> None:
    assert HANDSHAKE_VERSIONS == sdk_versions.HANDSHAKE_PROTOCOL_VERSIONS


def test_nothing_is_written_before_ready_and_every_line_is_handed_over_in_order(
    pipes: Pipes,
) -> None:
    lines = [
        "this is not json\n",
        json.dumps(initialize("2025-03-26", {}, rid="a")) + "\n",
        '{"jsonrpc":"2.0","method":"notifications/initialized"}\n',
        '{"jsonrpc":"2.0","id":7,"method":"tools/list"}\n',
        '{"jsonrpc":"2.0","id":8,"method":"ping"}\n',
    ]
    pipes.send(*lines)
    assert pipes.lines_handed_over(len(lines)) == lines  # all read, none answered yet
    pipes.front.ready()
    assert pipes.answer()["id"] == "a"
    assert pipes.answer() == {"jsonrpc": "2.0", "id": 8, "result": {}}
    assert pipes.front.hand_over() == ["a", 8]
    pipes.close_input()
    assert pipes.front.get() is None


@pytest.mark.parametrize(
    "opening",
    [
        {"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
        {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": 5}},
        {"jsonrpc": "2.0", "id": 1, "method": "initialize"},
        {**initialize("2025-06-18", {}), "id": True},
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        [{"jsonrpc": "2.0", "id": 1, "method": "ping"}],
        {**initialize("2025-06-18", {}), "extra": 1},
        {**initialize("2025-06-18", {}), "jsonrpc": "1.0"},
    ],
    ids=[
        "request",
        "bad-version",
        "no-params",
        "bool-id",
        "notification",
        "batch",
        "extra-key",
        "not-2.0",
    ],
)
def test_a_stream_opening_with_anything_else_is_left_to_the_sdk(pipes: Pipes, opening: Any) -> None:
    later = initialize("2025-06-18", {}, rid=2)
    pipes.send(opening, later, {"jsonrpc": "2.0", "id": 3, "method": "ping"})
    pipes.front.ready()
    assert len(pipes.lines_handed_over(3)) == 3
    assert pipes.front.hand_over() == []  # nothing answered: the SDK answers all of it


def test_hand_over_before_ready_leaves_the_held_answers_to_the_sdk(pipes: Pipes) -> None:
    pipes.send(initialize("2025-06-18", {}))
    pipes.lines_handed_over(1)
    assert pipes.front.hand_over() == []
    pipes.front.ready()  # nothing is written after the hand-over
    pipes.close_input()
    assert pipes.front.get() is None


def test_importing_the_front_does_not_import_the_sdk() -> None:
    code = (
        "import sys, vultrino.mcp.stdio; "
        "print(sorted(m for m in ('mcp', 'mcp_types', 'pydantic', 'anyio') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"
