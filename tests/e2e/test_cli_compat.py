"""The original Vultrino's command names and flags, through the real CLI (subprocesses):
`action`/`exec`, `req`, `-f/--format` on listings, and a confirmation piped on stdin."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.e2e.mcp_helpers import McpHome, make_home


@pytest.fixture
def home(isolated_home: Path) -> McpHome:
    return make_home(isolated_home)


def test_action_runs_plugin_dot_action_with_json_params(home: McpHome) -> None:
    r = home.cli("action", "echo-one", "echo.echo", "-p", '{"message": "hi"}')
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout)
    assert result["params"] == {"message": "hi"}
    assert result["credential"]["alias"] == "echo-one"
    assert "echo.echo with echo-one: ok" in r.stderr

    quiet = home.cli("exec", "echo-one", "echo.echo", "--params", '{"message": "q"}', "-q")
    assert quiet.returncode == 0, quiet.stderr
    assert json.loads(quiet.stdout)["params"] == {"message": "q"}
    assert "ok" not in quiet.stderr

    js = home.cli("action", "echo-one", "echo.echo", "-p", '{"message": "j"}', "--json")
    assert js.returncode == 0 and json.loads(js.stdout)["params"] == {"message": "j"}


@pytest.mark.parametrize(
    ("args", "code", "said"),
    [
        (["echo-one", "echo", "-p", "{}"], 6, "is not PLUGIN.ACTION"),
        (["echo-one", "echo.echo", "-p", "{not json"], 6, "-p/--params is not valid JSON"),
        (["echo-one", "echo.echo", "-p", "[1]"], 6, "must be a JSON object"),
        (["echo-one", "echo.echo"], 6, "message"),  # a required parameter missing
        (["github", "echo.echo", "-p", '{"message": "x"}'], 6, "does not handle"),
        (["nope", "echo.echo", "-p", '{"message": "x"}'], 4, "nope"),
    ],
)
def test_action_says_what_was_wrong(home: McpHome, args: list[str], code: int, said: str) -> None:
    r = home.cli("action", *args)
    assert r.returncode == code, r.stderr
    assert said in r.stderr


def test_req_is_request(home: McpHome) -> None:
    r = home.cli("req", "echo-one", "--action", "echo", "--param", "message=via req", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["params"] == {"message": "via req"}
    assert "req" not in home.cli("--help").stdout.split()  # an alias, not a second command


@pytest.mark.parametrize(
    "listing", [["list"], ["plugin", "list"], ["role", "list"], ["key", "list"]]
)
def test_format_json_is_json_and_format_table_is_the_table(
    home: McpHome, listing: list[str]
) -> None:
    as_json = home.cli(*listing, "--json")
    assert as_json.returncode == 0, as_json.stderr
    short = home.cli(*listing, "-f", "json")
    assert short.returncode == 0, short.stderr
    assert json.loads(short.stdout) == json.loads(as_json.stdout)
    table = home.cli(*listing, "--format", "table")
    assert table.returncode == 0 and table.stdout == home.cli(*listing).stdout
    bad = home.cli(*listing, "-f", "yaml")
    assert bad.returncode == 2 and "table or json" in bad.stderr
    both = home.cli(*listing, "-f", "table", "--json")
    assert both.returncode == 2 and "pick one" in both.stderr


def test_a_y_piped_on_stdin_confirms_a_removal(home: McpHome) -> None:
    nothing = home.cli("plugin", "remove", "echo", input="")
    assert nothing.returncode == 2 and "--yes" in nothing.stderr
    declined = home.cli("plugin", "remove", "echo", input="n\n")
    assert declined.returncode == 1 and "aborted" in declined.stderr
    assert (home.root / "plugins" / "echo").is_dir()
    removed = home.cli("plugin", "remove", "echo", input="y\n")
    assert removed.returncode == 0, removed.stderr
    assert "removed echo" in removed.stderr
    assert not (home.root / "plugins" / "echo").exists()
    # the same answer works for the other confirmations
    gone = home.cli("remove", "github", input="yes\n")
    assert gone.returncode == 0, gone.stderr
    assert "github" not in home.cli("list").stdout


def _fields(home: McpHome, alias: str) -> dict[str, object]:
    from vultrino import Vultrino

    with Vultrino.open(home.root, home.password_file.read_text().strip()) as v:
        v.unlock()
        return dict(v._s.store.get(alias).fields)


def test_add_takes_the_original_short_and_type_specific_flags(home: McpHome) -> None:
    secret = "sk-from-argv-8d2e"
    r = home.cli(
        "add", "-a", "svc", "-t", "api_key", "--key", secret,
        "--header-name", "X-Api-Key", "--header-prefix", "Token ", "-d", "from flags",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    # the warning the original never gave is kept: a secret on the command line is seen by ps
    assert "the secret field 'key' was given on the command line" in r.stderr
    assert secret not in r.stdout + r.stderr
    assert _fields(home, "svc") == {"key": secret, "header": "X-Api-Key", "prefix": "Token "}

    r = home.cli(
        "add", "-a", "idp", "-t", "oauth2", "--client-id", "cid", "--client-secret", "cs-1",
        "--token-url", "https://auth.example.com/token", "--scopes", "read, write",
        "--refresh-token", "rt-1",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "'client_secret' was given" in r.stderr and "'refresh_token' was given" in r.stderr
    fields = _fields(home, "idp")
    assert fields["scope"] == "read write" and fields["grant_type"] == "refresh_token"
    assert fields["client_id"] == "cid" and fields["refresh_token"] == "rt-1"

    r = home.cli("add", "-a", "bb", "-t", "basic_auth", "--username", "u", "--password", "pw-1")
    assert r.returncode == 0, r.stderr
    assert _fields(home, "bb") == {"username": "u", "password": "pw-1"}


def test_add_flags_that_clash_or_do_not_fit_the_type_are_errors(home: McpHome) -> None:
    both = home.cli("add", "-a", "x", "-t", "api_key", "--key", "a", "--field", "key=b")
    assert both.returncode == 6 and "--key and --field key=... both set" in both.stderr
    wrong = home.cli("add", "-a", "y", "-t", "basic_auth", "--username", "u", "--key", "k")
    assert wrong.returncode == 4 and "key" in wrong.stderr
    assert "x" not in home.cli("list").stdout.split() and "y" not in home.cli("list").stdout.split()


def test_serve_mcp_is_mcp_over_stdio(home: McpHome, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys
    import tempfile

    from tests.e2e import mcp_helpers

    monkeypatch.setattr(
        mcp_helpers, "SERVER_COMMAND", [sys.executable, "-m", "vultrino", "serve", "--mcp"]
    )
    with (
        tempfile.TemporaryFile("w+", encoding="utf-8") as errlog,
        mcp_helpers.RawClient(home, errlog) as c,
    ):
        c.handshake("2025-06-18")
        reply = c.request(
            "tools/call",
            {"name": "echo_message", "arguments": {"credential": "echo-one", "message": "m"}},
        )
        assert c.close() == 0
    assert reply["result"]["isError"] is False
    assert reply["result"]["structuredContent"]["params"] == {"message": "m"}

    mixed = home.cli("serve", "--mcp", "--bind", "127.0.0.1:0")
    assert mixed.returncode == 2 and "--bind mean nothing" in mixed.stderr


def test_req_quiet_prints_the_body_alone(home: McpHome) -> None:
    import http.server

    from tests.localhttp import LocalServer, serving

    class Hello(http.server.BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", "5")
            self.end_headers()
            self.wfile.write(b"hello")

    with serving(LocalServer(Hello)) as srv:
        assert home.cli("edit", "github", "--add-allow", f"{srv.base}/*").returncode == 0
        loud = home.cli("req", "github", f"{srv.base}/x")
        quiet = home.cli("req", "github", f"{srv.base}/x", "-q")
    assert loud.returncode == 0 and quiet.returncode == 0, quiet.stderr
    assert loud.stdout == quiet.stdout == "hello\n"
    assert "HTTP 200" in loud.stderr and "HTTP 200" not in quiet.stderr
