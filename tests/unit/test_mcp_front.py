"""The stdio server without the SDK (vultrino/mcp/_session.py, _front.py) against the SDK server.

``vultrino mcp`` serves a client that opens with ``initialize`` with the standard-library
session, so its answers must be the ones the SDK server (which still serves HTTP and other
openings) would give: each case below sends the same messages to the real SDK server of
``vultrino mcp`` (driven in-process over memory streams) and to the session, on the same home,
and compares the answers whole — request by request, results and errors.
"""

from __future__ import annotations

import io
import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp_types import version as sdk_versions

from tests.e2e.mcp_helpers import PASSWORD, make_home
from vultrino.mcp._front import EOF, StdioFront
from vultrino.mcp._identity import HANDSHAKE_VERSIONS, MODERN_VERSIONS
from vultrino.mcp._session import METHODS, StdioSession

CLIENT_CAPABILITIES: list[dict[str, Any]] = [
    {},
    {"elicitation": {}, "roots": {"listChanged": True}, "sampling": {}},
]
REQUESTED = [*HANDSHAKE_VERSIONS, *sdk_versions.MODERN_PROTOCOL_VERSIONS, "2099-01-01", ""]


def initialize(
    version: str = "2025-06-18", capabilities: dict[str, Any] | None = None, rid: int | str = 1
) -> dict[str, Any]:
    return {
        "jsonrpc": "2.0",
        "id": rid,
        "method": "initialize",
        "params": {
            "protocolVersion": version,
            "capabilities": capabilities or {},
            "clientInfo": {"name": "unit", "version": "0"},
        },
    }


INITIALIZED = {"jsonrpc": "2.0", "method": "notifications/initialized"}


def req(rid: int | str, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
    msg: dict[str, Any] = {"jsonrpc": "2.0", "id": rid, "method": method}
    if params is not None:
        msg["params"] = params
    return msg


def call(rid: int | str, name: Any, arguments: Any = None, **extra: Any) -> dict[str, Any]:
    params: dict[str, Any] = {"name": name, **extra}
    if arguments is not None:
        params["arguments"] = arguments
    return req(rid, "tools/call", params)


@pytest.fixture
def home(isolated_home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    made = make_home(isolated_home)
    monkeypatch.setenv("VULTRINO_PASSWORD", PASSWORD)
    return made.root


def sdk_answers(messages: list[dict[str, Any]], home: Path) -> list[dict[str, Any]]:
    """What the real SDK server of ``vultrino mcp`` writes for ``messages`` (as on the wire)."""
    from mcp.shared.message import SessionMessage
    from mcp_types import jsonrpc_message_adapter

    from vultrino.core import Vultrino
    from vultrino.mcp.server import VultrinoMCP

    v = Vultrino.open(home)
    app = VultrinoMCP(v)
    out: list[dict[str, Any]] = []
    expected = sum("id" in m for m in messages)

    async def run() -> None:
        to_server, from_client = anyio.create_memory_object_stream[Any](len(messages))
        to_client, from_server = anyio.create_memory_object_stream[Any](len(messages) + 4)
        for m in messages:
            await to_server.send(
                SessionMessage(jsonrpc_message_adapter.validate_python(m, by_name=False))
            )
        async with from_client, to_client, from_server, anyio.create_task_group() as tg:
            tg.start_soon(
                app.server.run, from_client, to_client, app.server.create_initialization_options()
            )
            with anyio.fail_after(60):
                async for item in from_server:
                    out.append(
                        json.loads(item.message.model_dump_json(by_alias=True, exclude_unset=True))
                    )
                    if sum("id" in o for o in out) == expected:
                        break
            tg.cancel_scope.cancel()
        await to_server.aclose()

    try:
        anyio.run(run)
    finally:
        v.close()
    return out


class Lines(io.StringIO):
    """The session's protocol output: every line it writes, parsed."""

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()

    def write(self, s: str) -> int:
        with self._lock:
            return super().write(s)

    def messages(self) -> list[Any]:
        text = self.getvalue()
        assert text == "" or text.endswith("\n")
        return [json.loads(line) for line in text.splitlines()]


def session_answers(lines: list[dict[str, Any] | str], home: Path, **kw: Any) -> list[Any]:
    """What the standard-library session writes for ``lines``, fed as the front feeds it,
    then stdin closed (in-flight requests are answered before it stops)."""
    from vultrino.core import Vultrino

    out = Lines()
    with Vultrino.open(home) as v:
        v.unlock()
        session = StdioSession(v, out, **kw)
        for m in lines:
            session.receive(m if isinstance(m, str) else json.dumps(m) + "\n")
        session.receive_eof()
        session.serve()
    return out.messages()


def by_id(messages: list[Any]) -> dict[str, dict[str, Any]]:
    """The responses by id (as JSON, so 1 and "1" differ); an id answered twice fails."""
    out: dict[str, dict[str, Any]] = {}
    for m in messages:
        if "method" in m:
            continue
        key = json.dumps(m["id"])
        assert key not in out, f"{key} answered twice"
        out[key] = m
    return out


def assert_same(ours: dict[str, Any], sdk: dict[str, Any]) -> None:
    """The same answer; an invalid-params error may say more than the SDK's empty ``data``."""
    if "error" in sdk and sdk["error"].get("data") == "":
        assert ours["error"]["code"] == sdk["error"]["code"]
        assert ours["error"]["message"] == sdk["error"]["message"]
        assert isinstance(ours["error"].get("data"), str) and ours["error"]["data"]
        return
    assert ours == sdk


# --- identical answers -------------------------------------------------------------------------


@pytest.mark.parametrize("capabilities", CLIENT_CAPABILITIES, ids=["bare", "rich"])
@pytest.mark.parametrize("requested", REQUESTED)
def test_initialize_is_answered_exactly_as_by_the_sdk_server(
    home: Path, requested: str, capabilities: dict[str, Any]
) -> None:
    request = initialize(requested, capabilities)
    (sdk,) = sdk_answers([request], home)
    (ours,) = session_answers([request], home)
    assert ours == sdk
    assert sdk["result"]["protocolVersion"] == (
        requested if requested in HANDSHAKE_VERSIONS else HANDSHAKE_VERSIONS[-1]
    )


SESSIONS: dict[str, list[dict[str, Any]]] = {
    "tools": [
        initialize("2025-06-18"),
        INITIALIZED,
        req(2, "ping"),
        req(3, "tools/list"),
        req(4, "tools/list", {"cursor": "next"}),
        call(5, "list_credentials", {}),
        call(6, "echo_message", {"credential": "echo-one", "message": "hi", "n": 3}),
        call("seven", "echo_message", {"credential": "nope", "message": "x"}),
        call(8, "echo_message", {"credential": "echo-one"}),
        call(9, "echo_message", {"credential": 123, "message": "x"}),
        call(10, "list_credentials", {"surprise": 1}),
        call(11, "list_credentials"),
        call(12, "list_credentials", {}, _meta={"progressToken": "t"}),
        req(13, "ping", {"_meta": {"a": 1}}),
    ],
    "prompts": [
        initialize("2025-11-25"),
        INITIALIZED,
        req(2, "logging/setLevel", {"level": "info"}),
        req(3, "logging/setLevel", {}),
        req(4, "prompts/list"),
        req(5, "prompts/get", {"name": "echo_message"}),
        req(6, "prompts/get", {"name": "echo_message", "arguments": {"credential": "echo-one"}}),
        req(7, "prompts/get", {"name": "echo_message", "arguments": {"credential": "github"}}),
        req(8, "prompts/get", {"name": "use_credential", "arguments": {"credential": "github"}}),
        req(9, "prompts/get", {"name": "no_such_prompt"}),
        req(10, "prompts/get", {"name": "echo_message", "arguments": {"credential": "nope"}}),
        req(11, "prompts/get", {"name": "list_credentials"}),
        req(12, "prompts/get", {}),
        req(
            13,
            "completion/complete",
            {
                "ref": {"type": "ref/prompt", "name": "use_credential"},
                "argument": {"name": "credential", "value": "e"},
            },
        ),
        req(
            14,
            "completion/complete",
            {
                "ref": {"type": "ref/prompt", "name": "use_credential"},
                "argument": {"name": "action", "value": ""},
                "context": {"arguments": {"credential": "echo-one"}},
            },
        ),
        req(
            15,
            "completion/complete",
            {
                "ref": {"type": "ref/prompt", "name": "echo_message"},
                "argument": {"name": "credential", "value": ""},
            },
        ),
        req(
            16,
            "completion/complete",
            {
                "ref": {"type": "ref/prompt", "name": "test_prompt_with_arguments"},
                "argument": {"name": "arg1", "value": "x"},
            },
        ),
        req(
            17,
            "completion/complete",
            {
                "ref": {"type": "ref/resource", "uri": "vultrino://x"},
                "argument": {"name": "a", "value": ""},
            },
        ),
        req(18, "completion/complete", {"ref": {"type": "ref/prompt"}}),
    ],
    "old-version": [
        initialize("2024-11-05"),
        INITIALIZED,
        req(2, "tools/list"),
        call(3, "list_credentials", {}),
        call(4, "echo_message", {"credential": "echo-one", "message": "x"}),
    ],
    "errors": [
        initialize("2025-11-25"),
        INITIALIZED,
        call(2, "no_such_tool", {}),
        call(3, 5, {}),
        req(4, "tools/call", {}),
        req(5, "tools/call"),
        call(6, "list_credentials", []),
        req(7, "tools/list", {"cursor": 5}),
        req(8, "nope/method"),
        req(9, "resources/list"),
        req(10, "logging/setLevel", {"level": "loud"}),
        req(11, "server/discover"),
        req(12, "ping", {"_meta": 5}),
        call(
            13,
            "list_credentials",
            {},
            _meta={"io.modelcontextprotocol/protocolVersion": "2026-07-28"},
        ),
        {"jsonrpc": "2.0", "method": "notifications/unknown"},
        {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 99}},
        initialize("2025-06-18", rid=14),
        req(15, "ping"),
    ],
}


@pytest.mark.parametrize("name", list(SESSIONS))
def test_a_session_is_answered_exactly_as_by_the_sdk_server(home: Path, name: str) -> None:
    messages = SESSIONS[name]
    sdk = by_id(sdk_answers(messages, home))
    ours = by_id(session_answers(messages, home))
    assert set(ours) == set(sdk) == {json.dumps(m["id"]) for m in messages if "id" in m}
    for key in sdk:
        assert_same(ours[key], sdk[key])


def test_the_versions_are_the_sdks() -> None:
    assert HANDSHAKE_VERSIONS == sdk_versions.HANDSHAKE_PROTOCOL_VERSIONS
    assert frozenset(sdk_versions.MODERN_PROTOCOL_VERSIONS) == MODERN_VERSIONS


def test_the_method_table_is_what_vultrino_serves() -> None:
    assert set(METHODS) == {
        "initialize",
        "ping",
        "tools/list",
        "tools/call",
        "logging/setLevel",
        "prompts/list",
        "prompts/get",
        "completion/complete",
        "resources/list",
        "resources/read",
    }


# --- what only the session does -----------------------------------------------------------------


def test_batches_are_answered_on_2025_03_26_only(home: Path) -> None:
    batch = json.dumps(
        [
            req(2, "ping"),
            {"jsonrpc": "2.0", "method": "notifications/initialized"},
            call(3, "list_credentials", {}),
            {"jsonrpc": "2.0", "id": 4},
            req(5, "nope"),
        ]
    )
    old = session_answers([initialize("2025-03-26"), batch + "\n", "[]\n"], home)
    assert old[0]["id"] == 1
    (answers,) = [m for m in old if isinstance(m, list)]  # one answer for the whole batch
    (empty,) = [m for m in old[1:] if isinstance(m, dict)]
    got = {json.dumps(a["id"]): a for a in answers}
    assert set(got) == {"2", "3", "null", "5"}
    assert got["2"]["result"] == {} and got["3"]["result"]["isError"] is False
    assert got["null"]["error"]["code"] == -32600 and got["5"]["error"]["code"] == -32601
    assert empty["error"]["code"] == -32600 and "empty batch" in empty["error"]["message"]

    new = session_answers([initialize("2025-06-18"), batch + "\n"], home)
    assert new[1]["id"] is None and new[1]["error"]["code"] == -32600
    assert "no JSON-RPC batches" in new[1]["error"]["message"]


@pytest.mark.parametrize(
    ("line", "says"),
    [
        ("this is not json\n", "not JSON"),
        ("\n", "not JSON"),
        ('"a string"\n', "not a JSON object"),
        ('{"id": 2, "method": "ping"}\n', '"jsonrpc" must be "2.0"'),
        ('{"jsonrpc": "2.0", "id": null, "method": "ping"}\n', '"id" must be'),
        ('{"jsonrpc": "2.0", "id": 2.5, "method": "ping"}\n', '"id" must be'),
        ('{"jsonrpc": "2.0", "id": true, "method": "ping"}\n', '"id" must be'),
        ('{"jsonrpc": "2.0", "id": 2, "method": 7}\n', '"method" must be'),
        ('{"jsonrpc": "2.0", "id": 2, "method": "ping", "params": [1]}\n', '"params" must be'),
        ('{"jsonrpc": "2.0", "id": 2}\n', "neither a request"),
    ],
)
def test_a_line_that_is_not_jsonrpc_gets_an_error_that_says_why(
    home: Path, line: str, says: str
) -> None:
    answers = session_answers([initialize(), line, req(9, "ping")], home)
    errors = [a for a in answers if a.get("id") is None]
    assert len(errors) == 1
    code = -32700 if says == "not JSON" else -32600
    assert errors[0]["error"]["code"] == code
    assert says in errors[0]["error"]["message"]
    if len(line.strip()) > 12:
        assert line.strip() not in json.dumps(errors[0])  # the line is never echoed
    assert by_id(answers)["9"]["result"] == {}  # nothing else was disturbed


def test_an_id_in_use_by_a_request_in_flight_is_refused(home: Path) -> None:
    from vultrino.core import Vultrino

    out = Lines()
    with Vultrino.open(home) as v:
        session = StdioSession(v, out)
        session.receive(json.dumps(initialize()) + "\n")
        held = threading.Event()
        release = threading.Event()
        real = session.desk.call

        def slow(*args: Any, **kw: Any) -> dict[str, Any]:
            held.set()
            release.wait(30)
            return real(*args, **kw)

        session.desk.call = slow  # type: ignore[method-assign]
        session.receive(json.dumps(call(2, "list_credentials", {})) + "\n")
        assert held.wait(30)
        session.receive(json.dumps(req(2, "ping")) + "\n")
        release.set()
        session.receive_eof()
        session.serve()
    answers = out.messages()
    twice = [a for a in answers if a.get("id") == 2]
    assert len(twice) == 2
    assert {("error" in a) for a in twice} == {True, False}
    refused = next(a for a in twice if "error" in a)
    assert refused["error"]["code"] == -32600 and "in flight" in refused["error"]["message"]


def test_a_cancelled_call_is_never_answered(home: Path) -> None:
    from vultrino.core import Vultrino

    out = Lines()
    with Vultrino.open(home) as v:
        session = StdioSession(v, out)
        session.receive(json.dumps(initialize()) + "\n")
        held = threading.Event()
        release = threading.Event()
        real = session.desk.call

        def slow(*args: Any, **kw: Any) -> dict[str, Any]:
            held.set()
            release.wait(30)
            return real(*args, **kw)

        session.desk.call = slow  # type: ignore[method-assign]
        session.receive(json.dumps(call(2, "echo_message", {"credential": "echo-one"})) + "\n")
        assert held.wait(30)
        cancel = {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 2}}
        session.receive(json.dumps(cancel) + "\n")
        session.receive(json.dumps(req(3, "ping")) + "\n")
        release.set()
        session.receive_eof()
        session.serve()
    assert [a.get("id") for a in out.messages()] == [1, 3]


# --- the front: who serves the stream ---------------------------------------------------------


class Pipe:
    """A front on a real pipe, as ``vultrino mcp`` runs it on the process's fd 0."""

    def __init__(self) -> None:
        r, self._w = os.pipe()
        self.stdin = io.TextIOWrapper(os.fdopen(r, "rb"), encoding="utf-8")
        self.sdk_wanted = threading.Event()
        self.front = StdioFront(self.stdin, on_sdk=self.sdk_wanted.set)
        self.front.start()

    def send(self, *messages: dict[str, Any] | list[Any] | str) -> None:
        data = "".join(m if isinstance(m, str) else json.dumps(m) + "\n" for m in messages)
        os.write(self._w, data.encode())

    def close_input(self) -> None:
        if self._w >= 0:
            os.close(self._w)
            self._w = -1

    def close(self) -> None:
        self.close_input()
        self.front._thread.join(timeout=30)
        self.stdin.close()


class Recorder:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.eof = threading.Event()
        self.handed_over = threading.Event()

    def receive(self, line: str) -> None:
        self.lines.append(line)

    def receive_eof(self) -> None:
        self.eof.set()

    def hand_over(self) -> None:
        self.handed_over.set()


@pytest.fixture
def pipe() -> Iterator[Pipe]:
    p = Pipe()
    yield p
    p.close()


def test_an_initialize_opening_is_served_by_the_session_in_order(pipe: Pipe) -> None:
    lines = [
        "this is not json\n",
        json.dumps(initialize("2025-03-26", rid="a")) + "\n",
        '{"jsonrpc":"2.0","method":"notifications/initialized"}\n',
        '{"jsonrpc":"2.0","id":7,"method":"tools/list"}\n',
    ]
    pipe.send(*lines)
    session = Recorder()
    assert pipe.front.attach(session)
    pipe.send('{"jsonrpc":"2.0","id":8,"method":"ping"}\n')
    pipe.close_input()
    assert session.eof.wait(30)
    assert session.lines == [*lines, '{"jsonrpc":"2.0","id":8,"method":"ping"}\n']
    assert not session.handed_over.is_set() and not pipe.sdk_wanted.is_set()


@pytest.mark.parametrize(
    "opening",
    [
        {"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
        {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": 5}},
        {"jsonrpc": "2.0", "id": 1, "method": "initialize"},
        {**initialize(), "id": True},
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        [{"jsonrpc": "2.0", "id": 1, "method": "ping"}],
        {**initialize(), "extra": 1},
        {**initialize(), "jsonrpc": "1.0"},
        req(1, "server/discover", {"_meta": {"io.modelcontextprotocol/protocolVersion": "x"}}),
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
        "modern",
    ],
)
def test_a_stream_opening_with_anything_else_is_handed_to_the_sdk(pipe: Pipe, opening: Any) -> None:
    pipe.send("not json\n", opening, initialize(rid=2))
    assert pipe.sdk_wanted.wait(30)  # the SDK import starts before the store is unlocked
    session = Recorder()
    assert not pipe.front.attach(session)
    assert session.handed_over.is_set()
    assert session.lines == ["not json\n"]  # answered by the session: a parse error
    assert json.loads(pipe.front.get() or "") == opening  # the SDK reads from the opening on
    assert json.loads(pipe.front.get() or "")["id"] == 2


def test_an_opening_after_attach_is_handed_over_too(pipe: Pipe) -> None:
    session = Recorder()
    assert pipe.front.attach(session)
    pipe.send(req(1, "server/discover"))
    assert session.handed_over.wait(30)
    assert pipe.front.to_sdk
    assert json.loads(pipe.front.get() or "")["method"] == "server/discover"


def test_eof_before_any_message_ends_the_session(pipe: Pipe) -> None:
    session = Recorder()
    assert pipe.front.attach(session)
    pipe.close_input()
    assert session.eof.wait(30)
    assert session.lines == [] and not pipe.front.to_sdk


def test_eof_after_the_sdk_took_over_reaches_the_sdk(pipe: Pipe) -> None:
    pipe.send(req(1, "tools/list"))
    pipe.close_input()
    assert json.loads(pipe.front.get() or "")["id"] == 1
    assert pipe.front.get() is EOF


def test_importing_the_stdio_server_does_not_import_the_sdk() -> None:
    import subprocess
    import sys

    code = (
        "import sys, vultrino.mcp.stdio, vultrino.mcp._session, vultrino.cli; "
        "print(sorted(m for m in ('mcp', 'mcp_types', 'pydantic', 'anyio') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"


def test_every_method_served_is_documented() -> None:
    docs = (Path(__file__).resolve().parents[2] / "docs" / "mcp.md").read_text()
    for method in METHODS:
        assert f"`{method}`" in docs, f"docs/mcp.md does not mention `{method}`"
