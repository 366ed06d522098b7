"""The CLI as a user meets it: CliRunner flows and a few real `python -m vultrino` processes.

Every test registers the secrets it uses with the leak scanner, which fails the test if any of
them shows up in any output or file of the home (but the sealed store).
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.leakcheck import LeakCheck
from vultrino import audit
from vultrino.cli import app
from vultrino.cli.demo import shipped_plugin

PASSWORD = "correct horse battery staple"
TOKEN = "ghp_s3cr3tT0kenValue1234567890"
TOTP_SECRET = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"  # RFC 6238's "12345678901234567890"

runner = CliRunner()


@pytest.fixture
def home(isolated_home: Path, monkeypatch: pytest.MonkeyPatch, leakcheck: LeakCheck) -> Path:
    """A home whose config asks for cheap KDF parameters, and a password in the environment."""
    (isolated_home / "config.toml").write_text("[store]\nkdf_opslimit = 1\nkdf_memlimit_mb = 1\n")
    monkeypatch.setenv("VULTRINO_PASSWORD", PASSWORD)
    leakcheck.add(PASSWORD, TOKEN, TOTP_SECRET)
    return isolated_home


Run = Callable[..., tuple[int, str, str]]


@pytest.fixture
def run(leakcheck: LeakCheck) -> Run:
    """Invoke the CLI in-process; every output goes through the leak scanner."""

    def invoke(*args: str, input: str | None = None) -> tuple[int, str, str]:
        r = runner.invoke(app, list(args), input=input)
        leakcheck.scan(r.stdout, f"stdout of {args[:2]}")
        leakcheck.scan(r.stderr, f"stderr of {args[:2]}")
        if r.exception and not isinstance(r.exception, SystemExit):
            raise r.exception
        return r.exit_code, r.stdout, r.stderr

    return invoke


def init(run: Run) -> None:
    code, _, err = run("init")
    assert code == 0, err


def test_init_creates_a_private_store(home: Path, run: Run) -> None:
    init(run)
    store = home / "credentials.enc"
    assert stat.S_IMODE(store.stat().st_mode) == 0o600
    code, _, err = run("init")
    assert code == 3
    assert "already" in err.lower()


def test_add_list_info_remove(home: Path, tmp_path: Path, run: Run) -> None:
    init(run)
    token_file = tmp_path / "token.txt"
    token_file.write_text(TOKEN + "\n")
    code, _, err = run(
        "add",
        "--alias",
        "github",
        "--type",
        "api_key",
        "--field",
        f"key=@{token_file}",
        "--description",
        "CI bot",
        "--allow",
        "https://api.github.com/*",
    )
    assert code == 0, err

    code, out, _ = run("list")
    assert code == 0 and "github" in out and "api_key" in out and "CI bot" in out

    code, out, _ = run("list", "--json")
    [entry] = json.loads(out)
    assert entry["alias"] == "github" and entry["fields"]["key"] == "********"

    code, out, _ = run("info", "github", "--json")
    info = json.loads(out)
    assert info["allow"] == ["https://api.github.com/*"]
    assert info["plugin"] == "http"

    code, out, _ = run("info", "github")
    assert "********" in out

    code, _, err = run("remove", "github")
    assert code == 2 and "--yes" in err  # no terminal: no silent removal
    code, _, _ = run("remove", "github", "--yes")
    assert code == 0
    code, out, _ = run("list", "--json")
    assert json.loads(out) == []


def test_missing_field_without_a_terminal_is_a_clear_error(home: Path, run: Run) -> None:
    init(run)
    code, _, err = run("add", "--alias", "x", "--type", "api_key")
    assert code == 4
    assert "--field" in err and "key" in err


def test_field_from_stdin(home: Path, run: Run) -> None:
    init(run)
    code, _, err = run(
        "add",
        "--alias",
        "gh",
        "--type",
        "bearer",
        "--field",
        "token=-",
        "--allow",
        "*",
        input=TOKEN + "\n",
    )
    assert code == 0, err


def test_unknown_type_lists_the_known_ones(home: Path, run: Run) -> None:
    init(run)
    code, _, err = run("add", "--alias", "x", "--type", "plugin:nope:thing", "--field", "a=b")
    assert code == 4
    assert "api_key" in err


def test_wrong_password_is_a_clean_error(
    home: Path, monkeypatch: pytest.MonkeyPatch, run: Run
) -> None:
    init(run)
    monkeypatch.setenv("VULTRINO_PASSWORD", "not the password")
    code, out, err = run("list", "--json")
    assert code == 3
    assert "password" in err.lower()
    assert json.loads(out)["error"]["type"] == "WrongPasswordError"


def test_no_password_and_no_terminal_fails_fast(
    home: Path, monkeypatch: pytest.MonkeyPatch, run: Run
) -> None:
    init(run)
    monkeypatch.delenv("VULTRINO_PASSWORD")
    code, _, err = run("list")
    assert code == 3
    assert "VULTRINO_PASSWORD" in err


def test_password_file(
    home: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, run: Run
) -> None:
    init(run)
    monkeypatch.delenv("VULTRINO_PASSWORD")
    pw = tmp_path / "pw"
    pw.write_text(PASSWORD + "\n")
    pw.chmod(0o600)
    monkeypatch.setenv("VULTRINO_PASSWORD_FILE", str(pw))
    code, _, err = run("list")
    assert code == 0, err


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o620, 0o644])
def test_password_file_readable_by_others_is_refused(
    home: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, run: Run, mode: int
) -> None:
    """As the MCP token file: a password file with any group or other bit set is refused
    (exit 2), naming the file and the chmod that fixes it; the password is not shown."""
    init(run)
    monkeypatch.delenv("VULTRINO_PASSWORD")
    pw = tmp_path / "pw"
    pw.write_text(PASSWORD + "\n")
    pw.chmod(mode)
    monkeypatch.setenv("VULTRINO_PASSWORD_FILE", str(pw))
    code, out, err = run("list")
    assert code == 2, err
    assert f"chmod 600 {pw}" in err and f"mode {mode:o}" in err
    assert PASSWORD not in out + err


def test_store_not_initialised(home: Path, run: Run) -> None:
    code, _, err = run("list")
    assert code == 3
    assert "vultrino init" in err


def test_types_lists_builtin_types(home: Path, run: Run) -> None:
    code, out, _ = run("types", "--json")
    assert code == 0
    names = {t["type"] for t in json.loads(out)}
    assert {"api_key", "bearer", "basic_auth"} <= names


def test_plugin_lifecycle_and_action(home: Path, run: Run) -> None:
    init(run)
    code, out, err = run("plugin", "install", str(shipped_plugin("totp")), "--json")
    assert code == 0, err
    assert json.loads(out)["name"] == "totp"

    code, out, _ = run("plugin", "list", "--json")
    names = {p["name"]: p for p in json.loads(out)}
    assert names["http"]["builtin"] is True
    assert names["totp"]["status"] == "ok" and "totp_code" in names["totp"]["tools"]

    code, out, _ = run("plugin", "info", "totp", "--json")
    info = json.loads(out)
    assert info["actions"][0]["name"] == "code"
    assert info["installed"]["sha256"]

    code, _, err = run(
        "add",
        "--alias",
        "otp",
        "--type",
        "plugin:totp:totp",
        "--field",
        f"secret={TOTP_SECRET}",
        "--field",
        "digits=8",
    )
    assert code == 0, err
    # RFC 6238 appendix B: T = 59 s, SHA1, 8 digits -> 94287082
    code, out, err = run("request", "otp", "--action", "code", "--param", "time=59", "--json")
    assert code == 0, err
    assert json.loads(out)["code"] == "94287082"

    records = audit.read_records(home / "audit.log")
    assert records[-1]["alias"] == "otp" and records[-1]["outcome"] == "ok"
    assert records[-1]["plugin"] == "totp" and records[-1]["source"] == "cli"

    code, _, err = run("request", "otp", "--action", "nope")
    assert code == 5 and "code" in err  # names the actions that exist

    code, _, err = run("request", "otp", "--action", "code", "--param", "time=soon")
    assert code == 6 and "time" in err

    code, _, _ = run("plugin", "remove", "totp", "--yes")
    assert code == 0
    code, out, _ = run("plugin", "list", "--json")
    assert "totp" not in {p["name"] for p in json.loads(out)}


def test_a_broken_plugin_is_listed_with_its_reason(home: Path, run: Run) -> None:
    bad = home / "plugins" / "broken-one"
    bad.mkdir(parents=True)
    (bad / "plugin.toml").write_text("[plugin]\nname = 'broken-one'\n")
    code, out, _ = run("plugin", "list", "--json")
    assert code == 0
    rows = {p["name"]: p for p in json.loads(out)}
    assert rows["broken-one"]["status"] == "broken"
    assert "version" in rows["broken-one"]["reason"]
    assert rows["http"]["status"] == "ok"


COMMANDS = [
    ["init"],
    ["add"],
    ["edit"],
    ["rotate"],
    ["rollback"],
    ["versions"],
    ["list"],
    ["info"],
    ["remove"],
    ["types"],
    ["rekey"],
    ["request"],
    ["action"],
    ["import"],
    ["demo"],
    ["plugin", "list"],
    ["plugin", "info"],
    ["plugin", "install"],
    ["plugin", "remove"],
    ["plugin", "reload"],
    ["plugin", "new"],
    ["mcp"],
    ["mcp", "config"],
    ["audit", "verify"],
    ["gpg"],
]


@pytest.mark.parametrize("cmd", COMMANDS, ids=[" ".join(c) for c in COMMANDS])
def test_every_command_has_help_with_an_example(cmd: list[str]) -> None:
    r = runner.invoke(app, [*cmd, "--help"])
    assert r.exit_code == 0
    assert "Example" in r.stdout


@pytest.mark.parametrize("cmd", COMMANDS, ids=[" ".join(c) for c in COMMANDS])
def test_every_command_is_documented(cmd: list[str]) -> None:
    doc = (Path(__file__).parents[2] / "docs" / "cli.md").read_text()
    assert f"vultrino {' '.join(cmd)}" in doc


def test_real_process_json_and_exit_codes(home: Path, run: Run) -> None:
    init(run)
    env = {**os.environ}
    r = subprocess.run(
        [sys.executable, "-m", "vultrino", "list", "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == []
    r = subprocess.run(
        [sys.executable, "-m", "vultrino", "info", "missing", "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert r.returncode == 4
    assert json.loads(r.stdout)["error"]["type"] == "CredentialNotFoundError"
    assert "missing" in r.stderr


def test_real_process_never_hangs_without_a_password(home: Path, run: Run) -> None:
    init(run)
    env = {k: v for k, v in os.environ.items() if k != "VULTRINO_PASSWORD"}
    r = subprocess.run(
        [sys.executable, "-m", "vultrino", "list"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert r.returncode == 3
    assert "VULTRINO_PASSWORD" in r.stderr


def test_demo_runs_the_whole_flow_on_a_throwaway_home(isolated_home: Path) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "vultrino", "demo"],
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )
    assert r.returncode == 0, r.stderr
    assert "Installed plugin totp" in r.stdout
    assert "'code':" in r.stdout and "totp_code" in r.stdout
    assert "JBSWY3DPEHPK3PXP" not in r.stdout + r.stderr  # the demo secret never shows
    assert not any(isolated_home.iterdir())  # the real home is untouched


def test_mcp_config_forms(
    run: Run, home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pw = tmp_path / "password"
    pw.write_text(PASSWORD)
    pw.chmod(0o600)
    monkeypatch.setenv("VULTRINO_PASSWORD_FILE", str(pw))
    code, out, err = run("mcp", "config", "--form", "generic", "--http", "--port", "9123")
    assert code == 0, err
    assert "9123" in out
    assert PASSWORD not in out and "VULTRINO_PASSWORD_FILE" in err  # the note on stderr
    code, out, _ = run("mcp", "config")
    assert "mcpServers" in json.loads(out)
    code, _, err = run("mcp", "config", "--form", "yaml")
    assert code == 2 and "claude, vscode, generic" in err
