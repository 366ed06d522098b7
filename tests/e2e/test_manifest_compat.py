"""Manifest keys the original Vultrino honours, through the real CLI and a real MCP server:
`[[mcp_tools]] input_schema` and `parameter_mappings`, field types `file` and `hidden`, and
`vultrino plugin disable|enable NAME` (the original's `enabled = false`)."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import wasmtime

from tests.e2e.mcp_helpers import ECHO_WAT, McpHome, RawClient, make_home
from tests.e2e.test_cli_paste import Terminal

TOKEN = "tok-manifest-compat-5b9e1d"
CERT = "-----BEGIN CERTIFICATE-----\nMIIBcert\n-----END CERTIFICATE-----\n"

MANIFEST = """\
[plugin]
name = "legacy"
version = "1.0.0"
wasm_module = "legacy.wasm"

[[credential_types]]
name = "account"

[[credential_types.fields]]
name = "token"
type = "password"
required = true
secret = true

[[credential_types.fields]]
name = "cert"
label = "Client certificate"
type = "file"
required = true

[[credential_types.fields]]
name = "region"
type = "hidden"
default = "eu-west"

[[credential_types.fields]]
name = "note"
type = "text"

[[actions]]
name = "echo"
description = "Echo the request"

[[actions.parameters]]
name = "message"
type = "string"
required = true

[[actions.parameters]]
name = "count"
type = "integer"

[[mcp_tools]]
name = "legacy_renamed"
action = "echo"
parameter_mappings = { text = "message" }

[[mcp_tools]]
name = "legacy_schema"
action = "echo"
description = "Echo with the author's schema"
parameter_mappings = { times = "count" }

[mcp_tools.input_schema]
type = "object"
required = ["message"]

[mcp_tools.input_schema.properties.message]
type = "string"
description = "What to say"
maxLength = 40

[mcp_tools.input_schema.properties.times]
type = "integer"
minimum = 1
"""


def write_source(root: Path, manifest: str = MANIFEST, name: str = "legacy") -> Path:
    src = root / name
    src.mkdir(parents=True, exist_ok=True)
    (src / "plugin.toml").write_text(manifest)
    (src / f"{name}.wasm").write_bytes(wasmtime.wat2wasm(ECHO_WAT))  # answers with its request
    return src


@pytest.fixture
def home(isolated_home: Path, tmp_path: Path) -> McpHome:
    h = make_home(isolated_home)
    r = h.cli("plugin", "install", str(write_source(tmp_path / "src")))
    assert r.returncode == 0, r.stderr
    cert = tmp_path / "cert.pem"
    cert.write_text(CERT)
    token = tmp_path / "token"
    token.write_text(TOKEN)
    r = h.cli(
        "add", "-a", "acct", "-t", "plugin:legacy:account",
        "--field", f"token=@{token}", "--field", f"cert=@{cert}",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    h.secrets.append(TOKEN)
    return h


@pytest.fixture
def mcp(home: McpHome) -> Iterator[RawClient]:
    with tempfile.TemporaryFile("w+", encoding="utf-8") as errlog, RawClient(home, errlog) as c:
        c.handshake("2025-06-18")
        yield c


def _tools(c: RawClient) -> dict[str, Any]:
    return {t["name"]: t for t in c.request("tools/list")["result"]["tools"]}


def _call(c: RawClient, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = c.request("tools/call", {"name": name, "arguments": arguments})[
        "result"
    ]
    return result


# --- input_schema and parameter_mappings ----------------------------------------------------


def test_mappings_rename_the_schema_and_the_arguments(mcp: RawClient) -> None:
    tool = _tools(mcp)["legacy_renamed"]
    props = tool["inputSchema"]["properties"]
    assert set(props) == {"credential", "text", "count"}  # message is shown as text
    assert tool["inputSchema"]["required"] == ["credential", "text"]
    ok = _call(mcp, "legacy_renamed", {"credential": "acct", "text": "hi", "count": 2})
    assert ok["isError"] is False, ok
    assert ok["structuredContent"]["params"] == {"message": "hi", "count": 2}  # renamed back
    wrong = _call(mcp, "legacy_renamed", {"credential": "acct", "message": "hi"})
    assert wrong["isError"] is True
    assert "takes 'text', not 'message'" in wrong["content"][0]["text"]


def test_plugin_info_shows_the_schema_and_the_renames(home: McpHome) -> None:
    tools = {
        t["name"]: t
        for t in json.loads(home.cli("plugin", "info", "legacy", "--json").stdout)["tools"]
    }
    assert tools["legacy_renamed"]["parameter_mappings"] == {"text": "message"}
    assert tools["legacy_schema"]["input_schema"]["properties"]["times"]["minimum"] == 1
    text = home.cli("plugin", "info", "legacy").stdout
    assert "mcp tool legacy_renamed -> echo (renames: text = message)" in text


def test_input_schema_is_the_tools_schema(mcp: RawClient) -> None:
    tool = _tools(mcp)["legacy_schema"]
    schema = tool["inputSchema"]
    assert schema["properties"]["message"] == {
        "type": "string",
        "description": "What to say",
        "maxLength": 40,
    }
    assert schema["properties"]["times"] == {"type": "integer", "minimum": 1}
    assert schema["required"] == ["credential", "message"]  # the alias argument is added
    assert tool["description"] == "Echo with the author's schema"
    ok = _call(mcp, "legacy_schema", {"credential": "acct", "message": "m", "times": 3})
    assert ok["isError"] is False, ok
    assert ok["structuredContent"]["params"] == {"message": "m", "count": 3}


BAD = [
    (
        'input_schema = { type = "object", properties = { text = { type = "string" }, '
        'colour = { type = "string" } } }\nparameter_mappings = { text = "message" }',
        'mcp_tools[0].input_schema.properties.colour: action echo takes no parameter "colour"',
    ),
    (
        'input_schema = { type = "object", properties = { count = { type = "integer" } } }',
        "mcp_tools[0].input_schema.properties: the action's required parameter message is missing",
    ),
    (
        'input_schema = { properties = { message = { type = "integer" } } }',
        'input_schema.properties.message.type: "integer" does not match the parameter\'s '
        "type string",
    ),
    (
        'parameter_mappings = { text = "mesage" }',
        'mcp_tools[0].parameter_mappings.text: "mesage" is not a parameter of action echo',
    ),
    (
        'input_schema = "{}"',
        "mcp_tools[0].input_schema: expected a table: a JSON Schema object",
    ),
]


@pytest.mark.parametrize(("tool_keys", "said"), BAD)
def test_a_schema_that_does_not_fit_the_action_is_an_install_error(
    home: McpHome, tmp_path: Path, tool_keys: str, said: str
) -> None:
    head = MANIFEST.split("[[mcp_tools]]", maxsplit=1)[0].replace(
        'name = "legacy"', 'name = "bad-one"'
    )
    head = head.replace("legacy.wasm", "bad-one.wasm")
    text = head + f'[[mcp_tools]]\nname = "bad_tool"\naction = "echo"\n{tool_keys}\n'
    r = home.cli("plugin", "install", str(write_source(tmp_path, text, "bad-one")))
    assert r.returncode == 5, r.stderr
    assert said in r.stderr
    assert not (home.root / "plugins" / "bad-one").exists()


# --- file and hidden fields -------------------------------------------------------------------


def test_file_and_hidden_fields_are_stored_and_sent(home: McpHome) -> None:
    info = json.loads(home.cli("info", "acct", "--json").stdout)
    assert info["fields"]["cert"] == CERT  # read from the file as it is
    assert info["fields"]["region"] == "(hidden)"  # never shown, though not secret
    assert info["fields"]["token"] == "********"
    out = home.cli("action", "acct", "legacy.echo", "-p", '{"message": "x"}', "-q")
    assert out.returncode == 0, out.stderr
    fields = json.loads(out.stdout)["credential"]["fields"]
    assert (fields["cert"], fields["region"]) == (CERT, "eu-west")  # the plugin gets both
    assert TOKEN not in out.stdout + out.stderr


def test_file_and_hidden_field_errors(home: McpHome, tmp_path: Path) -> None:
    base = ["add", "-a", "other", "-t", "plugin:legacy:account", "--field", "token=-"]
    literal = home.cli(*base, "--field", "cert=-----BEGIN", input=TOKEN)
    assert literal.returncode == 4
    assert "cert is a file field: give the file to read, --field cert=@PATH" in literal.stderr
    big = tmp_path / "big.pem"
    big.write_text("x" * (1024 * 1024 + 1))
    too_big = home.cli(*base, "--field", f"cert=@{big}", input=TOKEN)
    assert too_big.returncode == 4
    assert "a file field holds at most 1048576 bytes" in too_big.stderr
    (tmp_path / "c.pem").write_text(CERT)
    hidden = home.cli(
        *base, "--field", f"cert=@{tmp_path / 'c.pem'}", "--field", "region=us-east",
        input=TOKEN,
    )  # fmt: skip
    assert hidden.returncode == 0, hidden.stderr  # set by --field, as it may only be
    out = home.cli("action", "other", "legacy.echo", "-p", '{"message": "x"}', "-q")
    assert json.loads(out.stdout)["credential"]["fields"]["region"] == "us-east"


def test_on_a_terminal_a_file_field_asks_for_a_path_and_hidden_is_never_asked(
    home: McpHome, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cert = tmp_path / "prompted.pem"
    cert.write_text(CERT)
    from tests.e2e import mcp_helpers, test_cli_paste

    for key, value in home.env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(test_cli_paste, "PASSWORD", mcp_helpers.PASSWORD)  # Terminal's env
    t = Terminal("add", "-a", "typed", "-t", "plugin:legacy:account", "--all-fields")
    t.expect(r"token.*: ")
    t.type(TOKEN + "\n")
    t.expect(r"Client certificate.*\(path of the file to read\)")
    t.type(f"{cert}\n")
    t.expect(r"read \d+ bytes")
    t.expect(r"note.*: ")
    t.type("\n")
    assert t.finish() == 0, t.seen
    assert "region" not in t.seen  # a hidden field is never asked for
    assert TOKEN not in t.seen and "MIIBcert" not in t.seen
    out = home.cli("action", "typed", "legacy.echo", "-p", '{"message": "x"}', "-q")
    fields = json.loads(out.stdout)["credential"]["fields"]
    assert (fields["cert"], fields["region"]) == (CERT, "eu-west")


# --- plugin disable / enable ------------------------------------------------------------------


def test_disable_hides_tools_refuses_actions_and_survives_restarts(
    home: McpHome, tmp_path: Path
) -> None:
    r = home.cli("plugin", "disable", "legacy")
    assert r.returncode == 0 and "disabled legacy" in r.stderr
    listed = {p["name"]: p for p in json.loads(home.cli("plugin", "list", "--json").stdout)}
    assert listed["legacy"]["status"] == "disabled" and listed["legacy"]["enabled"] is False
    assert "disabled" in home.cli("plugin", "list").stdout

    refused = home.cli("action", "acct", "legacy.echo", "-p", '{"message": "x"}')
    assert refused.returncode == 5
    assert "plugin legacy is disabled" in refused.stderr
    assert "vultrino plugin enable legacy" in refused.stderr

    with tempfile.TemporaryFile("w+", encoding="utf-8") as errlog, RawClient(home, errlog) as c:
        c.handshake("2025-06-18")
        tools = _tools(c)
        assert "legacy_renamed" not in tools and "legacy_schema" not in tools
        assert "echo_message" in tools  # other plugins are untouched
        gone = c.request(
            "tools/call", {"name": "legacy_renamed", "arguments": {"credential": "acct"}}
        )
        refusal = json.dumps(gone)
        assert "legacy_renamed" in refusal and "ok" not in gone.get("result", {})
        assert gone.get("result", {}).get("isError", True) is True

    # kept by a reinstall, and said once more is no change
    again = home.cli("plugin", "install", "--force", str(write_source(tmp_path / "again")))
    assert again.returncode == 0, again.stderr
    assert "already disabled" in home.cli("plugin", "disable", "legacy").stderr
    audit = (home.root / "audit.log").read_text()
    assert '"action":"plugin.disable"' in audit

    assert home.cli("plugin", "enable", "legacy").returncode == 0
    back = home.cli("action", "acct", "legacy.echo", "-p", '{"message": "x"}', "-q")
    assert back.returncode == 0, back.stderr
    assert json.loads(home.cli("plugin", "info", "legacy", "--json").stdout)["enabled"] is True
    builtin = home.cli("plugin", "disable", "http")
    assert builtin.returncode == 5 and "built-in" in builtin.stderr
    missing = home.cli("plugin", "enable", "nope")
    assert missing.returncode == 5 and "nope" in missing.stderr


def test_a_running_server_drops_the_tools_of_a_plugin_disabled_meanwhile(
    home: McpHome,
) -> None:
    with tempfile.TemporaryFile("w+", encoding="utf-8") as errlog, RawClient(home, errlog) as c:
        c.handshake("2025-06-18")
        assert "legacy_renamed" in _tools(c)
        assert home.cli("plugin", "disable", "legacy").returncode == 0
        assert "legacy_renamed" not in _tools(c)
        assert home.cli("plugin", "enable", "legacy").returncode == 0
        assert "legacy_renamed" in _tools(c)


def test_rest_refuses_a_disabled_plugins_action_with_its_own_code(home: McpHome) -> None:
    import httpx

    from tests.e2e.serve_helpers import make_key, serve

    assert home.cli("plugin", "disable", "legacy").returncode == 0
    key = make_key(home, "ops", "admin")
    with serve(home) as server:
        r = httpx.post(
            f"{server.api}/execute",
            headers={"Authorization": f"Bearer {key}"},
            json={"credential": "acct", "action": "legacy.echo", "params": {"message": "x"}},
            timeout=60,
        )
    assert r.status_code == 409, r.text
    body = r.json()
    assert body["code"] == "plugin_disabled" and body["type"] == "PluginDisabledError"
    assert "vultrino plugin enable legacy" in body["error"]


def test_a_value_read_from_an_endless_or_binary_file_is_a_clear_error(
    home: McpHome, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found in review: `--field NAME=@/dev/zero` (or a pipe that never ends) was read into
    memory until the process died, the same path typed at a file field's prompt too (its
    size said 0 bytes), and a binary file was a traceback."""
    base = ["add", "-a", "other", "-t", "plugin:legacy:account", "--field", "token=-"]
    endless = home.cli(*base, "--field", "cert=@/dev/zero", input=TOKEN)
    assert endless.returncode == 2
    assert "/dev/zero holds more than 16777216 bytes (16 MiB)" in endless.stderr
    binary = tmp_path / "blob.bin"
    binary.write_bytes(b"\xd0\x00\xff" * 100)
    got = home.cli(*base, "--field", f"cert=@{binary}", input=TOKEN)
    assert got.returncode == 2
    assert "blob.bin is not UTF-8 text; encode a binary value first" in got.stderr
    assert "Traceback" not in got.stderr
    (tmp_path / "c.pem").write_text(CERT)
    piped = home.cli(
        "add", "-a", "other", "-t", "plugin:legacy:account",
        "--field", f"cert=@{tmp_path / 'c.pem'}", "--field", "token=-",
        input="x" * (16 * 1024 * 1024 + 1),
    )  # fmt: skip
    assert piped.returncode == 2
    assert "stdin holds more than 16777216 bytes" in piped.stderr
    assert "other" not in home.cli("list").stdout  # nothing was added

    from tests.e2e import mcp_helpers, test_cli_paste

    for key, value in home.env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(test_cli_paste, "PASSWORD", mcp_helpers.PASSWORD)  # Terminal's env
    t = Terminal("add", "-a", "typed", "-t", "plugin:legacy:account", "--all-fields")
    t.expect(r"token.*: ")
    t.type(TOKEN + "\n")
    t.expect(r"Client certificate.*\(path of the file to read\)")
    t.type("/dev/zero\n")
    assert t.finish() == 4, t.seen
    assert "/dev/zero holds more than 1048576 bytes" in t.seen
