"""`vultrino agent add|list|info|remove` and `vultrino audit`, as a user meets them (CliRunner)."""

from __future__ import annotations

import json
import stat
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.leakcheck import LeakCheck
from vultrino import Vultrino
from vultrino.cli import app

PASSWORD = "correct horse battery staple, agents"
KEY = "ak-cli-agents-0123456789abcdef"

runner = CliRunner()
Run = Callable[..., tuple[int, str, str]]


@pytest.fixture
def home(isolated_home: Path, monkeypatch: pytest.MonkeyPatch, leakcheck: LeakCheck) -> Path:
    (isolated_home / "config.toml").write_text("[store]\nkdf_opslimit = 1\nkdf_memlimit_mb = 1\n")
    monkeypatch.setenv("VULTRINO_PASSWORD", PASSWORD)
    leakcheck.add(PASSWORD, KEY)
    r = runner.invoke(app, ["init"])
    assert r.exit_code == 0, r.stderr
    return isolated_home


@pytest.fixture
def run(leakcheck: LeakCheck) -> Run:
    def invoke(*args: str, input: str | None = None) -> tuple[int, str, str]:
        r = runner.invoke(app, list(args), input=input)
        leakcheck.scan(r.stderr, f"stderr of {args[:2]}")
        if r.exception and not isinstance(r.exception, SystemExit):
            raise r.exception
        return r.exit_code, r.stdout, r.stderr

    return invoke


def test_add_shows_the_token_once_and_only_its_digest_is_kept(
    home: Path, run: Run, leakcheck: LeakCheck
) -> None:
    code, out, err = run(
        "agent",
        "add",
        "ci-bot",
        "--credential",
        "github*",
        "--tool",
        "http_request",
        "--allow",
        "GET https://api.github.com/repos/*",
        "--approve",
        "http_request",
        "--rate",
        "60/min",
        "-d",
        "CI",
    )
    assert code == 0, err
    token = out.strip()
    assert token.startswith("vagent_")
    assert "shown only now" in err
    leakcheck.add(token)  # from here on it must appear nowhere: not in listings, files or logs
    with Vultrino.open(home, PASSWORD) as v:
        assert v.agent_for_token(token) == "ci-bot"
    code, out, _ = run("agent", "list", "--json")
    listed = json.loads(out)
    assert listed == [
        {
            "name": "ci-bot",
            "description": "CI",
            "credentials": ["github*"],
            "tools": ["http_request"],
            "actions": ["*"],
            "allow": ["GET https://api.github.com/repos/*"],
            "approve": ["http_request"],
            "rate": "60/min",
            "created_at": listed[0]["created_at"],
            "updated_at": listed[0]["updated_at"],
        }
    ]
    code, out, _ = run("agent", "list")
    assert "ci-bot" in out and "github*" in out and "60/min" in out
    code, out, _ = run("agent", "info", "ci-bot")
    assert "approve:     http_request" in out
    code, out, _ = run("agent", "info", "ci-bot", "--json")
    assert json.loads(out)["rate"] == "60/min"
    leakcheck.scan(out, "agent info")


def test_token_file_is_private_and_never_overwritten(home: Path, run: Run, tmp_path: Path) -> None:
    dest = tmp_path / "bot.token"
    code, out, err = run("agent", "add", "bot", "-c", "x", "--token-file", str(dest), "--json")
    assert code == 0, err
    data = json.loads(out)
    assert data["token"] is None and data["token_file"] == str(dest)
    assert stat.S_IMODE(dest.stat().st_mode) == 0o600
    token = dest.read_text().strip()
    with Vultrino.open(home, PASSWORD) as v:
        assert v.agent_for_token(token) == "bot"
    code, _, err = run("agent", "add", "bot2", "-c", "x", "--token-file", str(dest))
    assert code == 2 and "already exists" in err
    code, out, _ = run("agent", "list", "--json")
    assert [a["name"] for a in json.loads(out)] == ["bot"]  # bot2 was not half-created


def test_duplicates_bad_options_and_missing_agents(home: Path, run: Run) -> None:
    code, _, err = run("agent", "add", "a", "-c", "x", "-t", "http_*")
    assert code == 0
    assert "note: 'x' matches nothing yet" in err  # no such credential (yet)
    assert "'http_*'" not in err  # http_request exists
    code, _, err = run("agent", "add", "a", "-c", "y")
    assert code == 4 and "already exists" in err and "--force" in err
    code, out, err = run("agent", "add", "a", "-c", "y", "--force")
    assert code == 0 and "replaced agent a" in err
    code, _, err = run("agent", "add", "Bad Name")
    assert code == 2 and "agent name" in err
    code, _, err = run("agent", "add", "b", "--rate", "often")
    assert code == 2 and "N/UNIT" in err
    code, _, err = run("agent", "add", "b", "--allow", "ftp://x/")
    assert code == 2 and "--allow" in err
    code, out, err = run("agent", "info", "nobody", "--json")
    assert code == 4 and json.loads(out)["error"]["type"] == "AgentNotFoundError"
    code, _, err = run("agent", "remove", "nobody", "--yes")
    assert code == 4 and "no agent or role named 'nobody'" in err
    code, out, _ = run("agent", "remove", "a", "--yes", "--json")
    assert code == 0 and json.loads(out) == {"removed": "a"}
    code, _, err = run("agent", "list")
    assert code == 0 and "no agents yet" in err


def test_audit_filters_and_json(home: Path, run: Run) -> None:
    with Vultrino.open(home, PASSWORD) as v:
        v.add_credential("k", "api_key", {"key": KEY}, allow=["https://example.invalid/*"])
        v.add_agent("bot", credentials=["nothing"], tools=["*"])
        with pytest.raises(Exception):  # noqa: B017 - any refusal; the audit is what is tested
            v.as_agent("bot").execute("k", "request", {"url": "https://example.invalid/"})
        with pytest.raises(Exception):  # noqa: B017 - a bad parameter: an error, not a refusal
            v.execute("k", "request", {"url": "not a url"})
    code, out, _ = run("audit", "--json")
    records = [r for r in json.loads(out) if r["source"] != "admin"]  # calls, not changes
    assert [(r["agent"], r["outcome"]) for r in records] == [("bot", "denied"), (None, "error")]
    changes = [(r["action"], r.get("alias"), r.get("subject")) for r in json.loads(out)]
    assert changes[:2] == [("credential.add", "k", None), ("agent.add", None, "bot")]
    code, out, _ = run("audit", "--agent", "bot", "--json")
    assert [r["alias"] for r in json.loads(out)] == ["k"]
    code, out, _ = run("audit", "--agent", "-", "--outcome", "error", "--json")
    assert len(json.loads(out)) == 1
    code, out, _ = run("audit", "--outcome", "ok", "--json")
    assert [r["source"] for r in json.loads(out)] == ["admin", "admin"]  # only the changes
    future = (datetime.now(timezone.utc) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    code, out, _ = run("audit", "--since", future, "--json")
    assert json.loads(out) == []
    code, out, _ = run("audit", "--since", "1h", "--alias", "k", "-n", "1", "--json")
    assert [r["agent"] for r in json.loads(out)] == [None]
    code, out, _ = run("audit")
    assert "bot" in out and "denied" in out and "CredentialOutsideProfile" in out
    code, _, err = run("audit", "--since", "last tuesday")
    assert code == 2 and "ISO-8601" in err
    code, _, err = run("audit", "--outcome", "fine")
    assert code == 2 and "ok, error, denied" in err


COMMANDS = [
    ["agent", "add"],
    ["agent", "list"],
    ["agent", "info"],
    ["agent", "remove"],
    ["audit"],
]


@pytest.mark.parametrize("cmd", COMMANDS, ids=[" ".join(c) for c in COMMANDS])
def test_every_agent_command_has_help_with_an_example_and_is_documented(cmd: list[str]) -> None:
    r = runner.invoke(app, [*cmd, "--help"])
    assert r.exit_code == 0
    assert "Example" in r.stdout
    doc = (Path(__file__).parents[2] / "docs" / "cli.md").read_text()
    assert f"vultrino {' '.join(cmd)}" in doc
    assert "--agent" in runner.invoke(app, ["mcp", "--help"]).stdout


def test_mcp_config_for_an_agent(run: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pw = tmp_path / "password"
    pw.write_text(PASSWORD)
    pw.chmod(0o600)
    monkeypatch.setenv("VULTRINO_PASSWORD_FILE", str(pw))
    code, out, _ = run("mcp", "config", "--agent", "ci-bot")
    assert code == 0
    entry = json.loads(out)["mcpServers"]["vultrino"]
    assert entry["args"][-3:] == ["mcp", "--agent", "ci-bot"]
    code, out, _ = run("mcp", "config", "--agent", "ci-bot", "--http", "--port", "9")
    header = json.loads(out)["mcpServers"]["vultrino"]["headers"]["Authorization"]
    assert header == "Bearer <the token `vultrino agent add ci-bot` printed>"


def test_an_agent_cannot_forge_a_row_of_the_audit_table(home: Path, run: Run) -> None:
    forged = "nope\n2099-01-01T00:00:00.000+00:00  a  dev  http:request  ok\rFAKE\u202eevil"
    with Vultrino.open(home, PASSWORD) as v:
        v.add_agent("a", credentials=["dev"], tools=["*"])
        with pytest.raises(Exception):  # noqa: B017 - refused; the table is what is tested
            v.as_agent("a").call_tool("http_request", {"credential": forged, "url": "https://x/"})
    code, out, _ = run("audit")
    assert code == 0
    rows = out.splitlines()
    assert len(rows) == 3, out  # the header, the agent.add change and the one refused call
    assert "2099-01-01" in rows[2] and "\\u{000A}" in rows[2] and "\\u{000D}" in rows[2]
    assert "\r" not in out and "\u202e" not in out and "\\u{202E}" in rows[2]


def test_strict_refuses_globs_that_match_nothing_and_stores_nothing(home: Path, run: Run) -> None:
    with Vultrino.open(home, PASSWORD) as v:
        v.add_credential("github-api", "api_key", {"key": KEY}, allow=["https://x.example/*"])
    code, _, err = run("agent", "add", "ci", "-c", "gihtub*", "-t", "http_request", "--strict")
    assert code == 2 and "--strict: 'gihtub*' match nothing" in err
    code, _, err = run("agent", "add", "ci", "-c", "github*", "-t", "htp_*", "--strict")
    assert code == 2 and "'htp_*'" in err
    code, out, _ = run("agent", "list", "--json")
    assert json.loads(out) == []  # nothing was stored
    code, _, err = run("agent", "add", "ci", "-c", "github*", "-t", "http_*", "--strict")
    assert code == 0 and "matches nothing" not in err
