"""What new users tripped on, through the real CLI in real processes: output that round-trips
(`request --raw`), actions that need no credential, a corrupted installed module, the flag names
the messages give, the help examples, and `mcp config`'s forms.

Every command runs as ``python -m vultrino`` in a subprocess, on a real home with a real sealed
store and real wasm plugins; pipes are real shell pipes.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.guests import abi2_fixed
from tests.leakcheck import LeakCheck
from vultrino._msgpack import packb
from vultrino.cli.demo import shipped_plugin

PASSWORD = "correct horse battery staple, ux edition"
NOTE_SECRET = "note-token-3b9d0e55c1a24f78"
TOTP_SECRET = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"
#: What the fixed guest answers to every action: text that already ends in a newline.
ANSWER = "line one\nline two\n"

MANIFEST = """\
[plugin]
name = "notes"
version = "1.0.0"
description = "Answers every action with the same two lines"
wasm_module = "notes.wasm"

[[credential_types]]
name = "key"

[[credential_types.fields]]
name = "token"
type = "password"
required = true
secret = true

[[actions]]
name = "note"
credential_type = "key"

[[actions]]
name = "banner"
description = "Needs no credential"
requires_credential = false

[[mcp_tools]]
name = "notes_note"
action = "note"
"""


def notes_source(dest: Path) -> Path:
    """A plugin source directory whose module answers ``{"ok": ANSWER}`` to everything."""
    d = dest / "notes"
    d.mkdir(parents=True, exist_ok=True)
    (d / "plugin.toml").write_text(MANIFEST, encoding="utf-8")
    (d / "notes.wasm").write_bytes(abi2_fixed(packb({"ok": ANSWER})))
    return d


@pytest.fixture
def home(isolated_home: Path, monkeypatch: pytest.MonkeyPatch, leakcheck: LeakCheck) -> Path:
    (isolated_home / "config.toml").write_text("[store]\nkdf_opslimit = 1\nkdf_memlimit_mb = 1\n")
    monkeypatch.setenv("VULTRINO_PASSWORD", PASSWORD)
    leakcheck.add(PASSWORD, NOTE_SECRET, TOTP_SECRET)
    return isolated_home


def cli(*args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vultrino", *args],
        input=input,
        capture_output=True,
        text=True,
        timeout=120,
    )


def ok(*args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
    r = cli(*args, input=input)
    assert r.returncode == 0, f"vultrino {' '.join(args)}: {r.stderr}"
    return r


@pytest.fixture
def notes_home(home: Path, tmp_path: Path) -> Path:
    """The home with the notes plugin installed and a credential `n1` of its type."""
    ok("init")
    ok("plugin", "install", str(notes_source(tmp_path / "src")))
    ok("add", "--alias", "n1", "--type", "plugin:notes:key", "--field", f"token={NOTE_SECRET}")
    return home


def shell_sha256(cmd: list[str]) -> str:
    """``sha256sum`` of what ``cmd`` writes to stdout, through a real shell pipe."""
    line = f"{shlex.join(cmd)} | sha256sum"
    r = subprocess.run(["bash", "-o", "pipefail", "-c", line], capture_output=True, timeout=120)
    assert r.returncode == 0, r.stderr.decode()
    return r.stdout.decode().split()[0]


# --- request output round-trips --------------------------------------------------------------


def test_raw_output_is_byte_for_byte_the_action_result(notes_home: Path) -> None:
    from vultrino.core import Vultrino

    with Vultrino.open(notes_home, PASSWORD) as v:
        result = v.execute("n1", "note", {})
    assert result == ANSWER
    want = hashlib.sha256(result.encode()).hexdigest()
    got = shell_sha256([sys.executable, "-m", "vultrino", "request", "n1", "-a", "note", "--raw"])
    assert got == want


def test_plain_output_adds_no_newline_to_text_that_ends_in_one(notes_home: Path) -> None:
    assert ok("request", "n1", "--action", "note").stdout == ANSWER


def test_raw_prints_a_map_result_as_compact_json_with_nothing_added(home: Path) -> None:
    ok("init")
    ok("plugin", "install", str(shipped_plugin("totp")))
    ok("add", "--alias", "otp", "--type", "plugin:totp:totp", "--field", f"secret={TOTP_SECRET}")
    at = ["--param", "time=59"]  # RFC 6238's first test vector: 287082 with 6 digits
    plain = ok("request", "otp", "--action", "code", *at).stdout
    raw = ok("request", "otp", "--action", "code", *at, "--raw").stdout
    assert json.loads(raw) == json.loads(plain)
    assert json.loads(raw)["code"] == "287082"
    assert "\n" not in raw and plain.endswith("}\n")


def test_raw_and_json_together_are_refused(notes_home: Path) -> None:
    r = cli("request", "n1", "--action", "note", "--raw", "--json")
    assert r.returncode == 6  # ParameterError
    assert "--raw, --json and --field" in r.stderr


def test_field_prints_one_value_of_a_result_and_keeps_the_exit_code(home: Path) -> None:
    """A CI job fetching one TOTP code: no jq, and Vultrino's exit code survives the pipe."""
    ok("init")
    ok("plugin", "install", str(shipped_plugin("totp")))
    ok("add", "--alias", "otp", "--type", "plugin:totp:totp", "--field", f"secret={TOTP_SECRET}")
    ok(
        "add",
        "--alias",
        "gh",
        "--type",
        "api_key",
        "-d",
        "GitHub token",
        "--field",
        "key=k" * 3,
        "--allow",
        "https://api.github.com/*",
    )
    at = ["--param", "time=59"]
    assert ok("request", "otp", "--action", "code", *at, "--field", "code").stdout == "287082\n"
    assert ok("request", "otp", "-a", "code", *at, "-F", ".code").stdout == "287082\n"
    assert ok("info", "gh", "--field", "description").stdout == "GitHub token\n"
    assert ok("info", "gh", "--field", "allow.0").stdout == "https://api.github.com/*\n"
    assert json.loads(ok("info", "gh", "--field", "fields").stdout)["key"] == "********"
    assert ok("list", "--field", "1.alias").stdout == "otp\n"
    missing = cli("request", "otp", "--action", "code", *at, "--field", "cod")
    assert missing.returncode == 6 and missing.stdout == ""
    assert "has no 'cod' (keys: code, expires_in" in missing.stderr
    piped = subprocess.run(
        [
            "bash",
            "-o",
            "pipefail",
            "-c",
            f"{shlex.join([sys.executable, '-m', 'vultrino', 'info', 'nope', '--field', 'type'])}"
            " | cat",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert piped.returncode == 4  # CredentialNotFoundError, through the pipe


def test_typos_get_a_suggestion(notes_home: Path) -> None:
    ok(
        "add",
        "--alias",
        "github-api",
        "--type",
        "api_key",
        "--field",
        "key=" + "k" * 12,
        "--allow",
        "https://api.github.com/*",
    )
    for args in (("info", "github-apj"), ("request", "github-ap", "https://api.github.com/x")):
        r = cli(*args)
        assert r.returncode == 4
        assert "did you mean 'github-api'?" in r.stderr, r.stderr
    r = cli("add", "--alias", "x", "--type", "api_kee", "--field", "key=abc")
    assert r.returncode == 4 and "did you mean api_key" in r.stderr, r.stderr


def test_timeout_is_for_http_requests(notes_home: Path) -> None:
    r = cli("request", "n1", "--action", "note", "--timeout", "5")
    assert r.returncode == 6 and "--timeout is for HTTP requests" in r.stderr


# --- actions that need no credential ----------------------------------------------------------


def test_an_action_needing_no_credential_runs_with_plugin_and_no_alias(notes_home: Path) -> None:
    r = ok("request", "--plugin", "notes", "--action", "banner", "--raw")
    assert r.stdout == ANSWER
    r = ok("request", "--plugin", "notes", "--action", "banner", "--json")
    assert json.loads(r.stdout) == ANSWER


def test_no_credential_action_with_an_alias_says_to_leave_the_alias_out(notes_home: Path) -> None:
    r = cli("request", "n1", "--action", "banner")
    assert r.returncode != 0
    assert "of type ," not in r.stderr and "type , but" not in r.stderr
    assert "needs no credential" in r.stderr
    assert "--plugin notes --action banner" in r.stderr


def test_a_credential_action_run_without_an_alias_names_the_type(notes_home: Path) -> None:
    r = cli("request", "--plugin", "notes", "--action", "note")
    assert r.returncode != 0
    assert "plugin:notes:key" in r.stderr and "alias" in r.stderr


def test_request_without_alias_or_plugin_says_what_to_give(notes_home: Path) -> None:
    r = cli("request", "--action", "banner")
    assert r.returncode == 6  # ParameterError
    assert "--plugin NAME --action NAME" in r.stderr


# --- a corrupted installed module -------------------------------------------------------------


def _module(home: Path) -> Path:
    return home / "plugins" / "notes" / "notes.wasm"


@pytest.mark.parametrize("how", ["same-size", "appended"])
def test_plugin_list_shows_a_module_changed_after_install_as_broken(
    notes_home: Path, how: str
) -> None:
    module = _module(notes_home)
    data = bytearray(module.read_bytes())
    if how == "same-size":
        data[len(data) // 2] ^= 0xFF  # a flipped bit deep in the code: size and name unchanged
    else:
        data += b"\x00"
    module.write_bytes(bytes(data))

    rows = {r["name"]: r for r in json.loads(ok("plugin", "list", "--json").stdout)}
    assert rows["notes"]["status"] == "broken"
    assert "changed after it was installed" in rows["notes"]["reason"]
    assert "reinstall" in rows["notes"]["reason"]
    table = ok("plugin", "list").stdout
    line = next(x for x in table.splitlines() if x.startswith("notes"))
    assert "broken" in line and "changed after it was installed" in line

    r = cli("request", "n1", "--action", "note")
    assert r.returncode != 0 and "changed after it was installed" in r.stderr


def test_an_intact_module_is_listed_ok(notes_home: Path) -> None:
    rows = {r["name"]: r for r in json.loads(ok("plugin", "list", "--json").stdout)}
    assert rows["notes"]["status"] == "ok"


# --- messages and help name what exists -------------------------------------------------------


def test_adding_a_taken_alias_names_the_replace_flag(notes_home: Path) -> None:
    r = cli("add", "--alias", "n1", "--type", "plugin:notes:key", "--field", "token=other")
    assert r.returncode != 0
    assert "--replace" in r.stderr and "--force" not in r.stderr
    ok("add", "--alias", "n1", "--type", "plugin:notes:key", "--field", "token=x", "--replace")


HELP_COMMANDS = [["add"], ["request"], ["plugin", "install"], ["mcp", "config"]]


@pytest.mark.parametrize("cmd", HELP_COMMANDS, ids=[" ".join(c) for c in HELP_COMMANDS])
def test_help_examples_use_shipped_plugins(cmd: list[str]) -> None:
    text = ok(*cmd, "--help").stdout
    assert "pgp-signing" not in text
    shipped = {"totp", "jwt", "hmac", "<plugin>"}  # the option help writes the form
    for word in text.split():
        if word.startswith("plugin:") and word.count(":") >= 2:
            assert word.split(":")[1] in shipped, word


# --- mcp config --------------------------------------------------------------------------------


def _password_file(path: Path, mode: int = 0o600) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(PASSWORD)
    os.chmod(path, mode)
    return path


def test_mcp_config_vscode_stdio_form(home: Path, tmp_path: Path) -> None:
    pw = _password_file(tmp_path / "private" / "password")
    cfg = json.loads(ok("mcp", "config", "--form", "vscode", "--password-file", str(pw)).stdout)
    assert list(cfg) == ["servers"]
    entry = cfg["servers"]["vultrino"]
    assert entry["type"] == "stdio"
    assert Path(entry["command"]).is_absolute()
    assert entry["args"][-1] == "mcp"
    assert entry["env"]["VULTRINO_HOME"] == str(home)
    assert entry["env"]["VULTRINO_PASSWORD_FILE"] == str(pw)
    assert PASSWORD not in json.dumps(cfg)


def test_mcp_config_recommends_a_password_file_outside_the_home(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 21/22: the default is ~/.config/vultrino/password, never $VULTRINO_HOME/password,
    and a configuration whose server could not start (no file, a file others can read) is not
    printed: the error says how to create the file."""
    user_home = tmp_path / "user"
    monkeypatch.setenv("HOME", str(user_home))
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    default = user_home / ".config" / "vultrino" / "password"
    missing = cli("mcp", "config")
    assert missing.returncode == 2 and missing.stdout == ""
    assert f"{default} does not exist" in missing.stderr
    assert "umask 077" in missing.stderr and "--password-file" in missing.stderr
    assert str(home / "password") not in missing.stderr

    _password_file(default, 0o640)
    loose = cli("mcp", "config")
    assert loose.returncode == 2 and loose.stdout == "" and f"chmod 600 {default}" in loose.stderr

    os.chmod(default, 0o600)
    r = ok("mcp", "config")
    env = json.loads(r.stdout)["mcpServers"]["vultrino"]["env"]
    assert env["VULTRINO_PASSWORD_FILE"] == str(default)
    assert "outside the Vultrino home" in r.stderr and "warning" not in r.stderr

    chosen = _password_file(tmp_path / "elsewhere" / "pw")
    monkeypatch.setenv("VULTRINO_PASSWORD_FILE", str(chosen))
    env = json.loads(ok("mcp", "config").stdout)["mcpServers"]["vultrino"]["env"]
    assert env["VULTRINO_PASSWORD_FILE"] == str(chosen)  # the user's choice is honoured

    inside = _password_file(home / "password")
    r = ok("mcp", "config", "--password-file", str(inside))
    assert "warning: the password file" in r.stderr and "inside the Vultrino home" in r.stderr
    inside.unlink()  # the home's leak scan would rightly find the password there
    # The --http entry starts no server, so it needs no password file.
    os.unlink(chosen)
    assert cli("mcp", "config", "--http", "--port", "9123").returncode == 0


@pytest.mark.parametrize("form", ["claude", "vscode", "generic"])
def test_mcp_config_http_carries_the_real_token(home: Path, form: str) -> None:
    r = ok("mcp", "config", "--form", form, "--http", "--port", "9123")
    token_file = home / "mcp-token"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    token = token_file.read_text().strip()
    cfg = json.loads(r.stdout)
    entry = {
        "claude": lambda c: c["mcpServers"]["vultrino"],
        "vscode": lambda c: c["servers"]["vultrino"],
        "generic": lambda c: c,
    }[form](cfg)
    assert entry["url"] == "http://127.0.0.1:9123/mcp"
    assert entry["headers"] == {"Authorization": f"Bearer {token}"}
    assert entry.get("type", entry.get("transport")) in ("http", "streamable-http")
    assert "<contents" not in r.stdout
    assert "mcp-token" in r.stderr and "private" in r.stderr
    # The same token is read back on the next run, never regenerated.
    again = json.loads(ok("mcp", "config", "--form", form, "--http", "--port", "9123").stdout)
    assert again == cfg


def test_mcp_config_refuses_a_group_readable_token_file(home: Path) -> None:
    token_file = home / "mcp-token"
    token_file.write_text("x" * 40 + "\n")
    os.chmod(token_file, 0o644)
    r = cli("mcp", "config", "--http")
    assert r.returncode != 0 and "chmod 600" in r.stderr
    assert r.stdout == ""
