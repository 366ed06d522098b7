"""Editing, rotating and rolling back credentials through the real CLI, in real processes.

A local HTTP server stands in for the API a credential is for, so each test checks what was
actually sent (the key in the Authorization header, an allowlist still in force), and the
first-party hmac plugin checks that a rotation keeps a field it did not name (`encoding`).
Prompts run on a real pseudo-terminal.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.test_cli_paste import PASSWORD, Terminal
from tests.leakcheck import LeakCheck
from tests.localhttp import Recorder, serving
from vultrino.cli.demo import shipped_plugin

OLD = "sk-old-4f1c2b9a7e3d5c60"
NEW = "sk-new-81e0d2c4b6a8f0e2"
HMAC_OLD = base64.b64encode(b"webhook-secret-old-\x00\xff").decode()
HMAC_NEW = base64.b64encode(b"webhook-secret-new-\x01\xfe").decode()


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


def info(alias: str) -> dict[str, object]:
    data = json.loads(ok("info", alias, "--json").stdout)
    assert isinstance(data, dict)
    return data


@pytest.fixture
def server() -> Iterator[Recorder]:
    with serving(Recorder()) as srv:
        yield srv


@pytest.fixture
def home(
    isolated_home: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    leakcheck: LeakCheck,
    server: Recorder,
) -> Path:
    """A home with `svc`, an api_key for the local server, its key read from a file."""
    (isolated_home / "config.toml").write_text("[store]\nkdf_opslimit = 1\nkdf_memlimit_mb = 1\n")
    monkeypatch.setenv("VULTRINO_PASSWORD", PASSWORD)
    leakcheck.add(PASSWORD, OLD, NEW, HMAC_OLD, HMAC_NEW)
    (tmp_path / "old.txt").write_text(OLD + "\n")
    (tmp_path / "new.txt").write_text(NEW + "\n")
    ok("init")
    ok(
        "add", "--alias", "svc", "--type", "api_key", "--field", f"key=@{tmp_path / 'old.txt'}",
        "--allow", f"{server.base}/v1/*", "-d", "the service",
    )  # fmt: skip
    return isolated_home


def sent_key(server: Recorder, url: str) -> str:
    """Request ``url`` with `svc` and return the Authorization header the server got."""
    ok("request", "svc", url)
    return server.auth[-1]


# --- edit ------------------------------------------------------------------------------------


def test_edit_keeps_everything_not_named_and_requests_keep_working(
    home: Path, server: Recorder
) -> None:
    r = ok(
        "edit", "svc", "--add-allow", f"{server.base}/v2/*", "--field", "prefix=Token ",
        "-d", "the service, v1 and v2",
    )  # fmt: skip
    assert "edited svc: changed prefix, allow, description" in r.stderr
    after = info("svc")
    assert after["allow"] == [f"{server.base}/v1/*", f"{server.base}/v2/*"]
    assert after["description"] == "the service, v1 and v2"
    assert sent_key(server, f"{server.base}/v1/a") == f"Token {OLD}"  # key and allow kept
    assert sent_key(server, f"{server.base}/v2/b") == f"Token {OLD}"
    ok("edit", "svc", "--remove-allow", f"{server.base}/v2/*", "--field", "prefix=")
    assert info("svc")["allow"] == [f"{server.base}/v1/*"]
    assert sent_key(server, f"{server.base}/v1/c") == f"Bearer {OLD}"  # prefix back to default
    assert cli("request", "svc", f"{server.base}/v2/d").returncode == 8
    edits = [
        r for r in json.loads(ok("audit", "--json").stdout) if r["action"] == "credential.edit"
    ]
    assert [e["fields"] for e in edits] == [["prefix", "allow", "description"], ["prefix", "allow"]]


def test_edit_with_nothing_new_writes_nothing(home: Path) -> None:
    before = (home / "credentials.enc").read_bytes()
    r = ok("edit", "svc", "-d", "the service", "--json")
    assert json.loads(r.stdout)["changed"] == []
    assert "svc unchanged" not in r.stdout
    assert (home / "credentials.enc").read_bytes() == before


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--field", "kye=x"], "kye: unknown field (did you mean key?"),
        (
            ["--field", "key=x"],
            "key of 'svc' is a secret field: change secrets with `vultrino rotate",
        ),
        (["--field", "header=not a header"], "does not match the pattern"),
        (["--remove-allow", "https://elsewhere.example/*"], "is not in the allowlist of 'svc'"),
        (["--add-allow", "ftp://nope"], "invalid allowlist pattern"),
        ([], "nothing to edit in 'svc'"),
    ],
    ids=["unknown", "secret", "invalid", "not-in-allowlist", "bad-pattern", "nothing"],
)
def test_a_refused_edit_says_why_and_loses_nothing(
    home: Path, args: list[str], message: str
) -> None:
    before = (home / "credentials.enc").read_bytes()
    r = cli("edit", "svc", *args)
    assert r.returncode == 4, r.stderr
    assert message in r.stderr
    assert (home / "credentials.enc").read_bytes() == before


def test_an_unknown_alias_gets_a_suggestion(home: Path) -> None:
    for cmd in (
        ["edit", "scv", "-d", "x"],
        ["rotate", "scv", "--field", "key=-"],
        ["versions", "scv"],
    ):
        r = cli(*cmd, input=NEW)
        assert r.returncode == 4
        assert "did you mean 'svc'?" in r.stderr


# --- rotate, versions, rollback --------------------------------------------------------------


def test_rotate_then_rollback_then_roll_forward(
    home: Path, server: Recorder, tmp_path: Path
) -> None:
    url = f"{server.base}/v1/x"
    r = ok("rotate", "svc", "--field", f"key=@{tmp_path / 'new.txt'}")
    assert "rotated svc: key (now version 2)" in r.stderr
    assert "kept sealed for 7 days" in r.stderr
    assert sent_key(server, url) == f"Bearer {NEW}"
    after = info("svc")
    assert (after["allow"], after["description"], after["version"]) == (
        [f"{server.base}/v1/*"], "the service", 2,
    )  # fmt: skip
    versions = json.loads(ok("versions", "svc", "--json").stdout)
    assert [(v["version"], v["current"], v["changed"]) for v in versions] == [
        (2, True, ["key"]),
        (1, False, []),
    ]
    assert versions[1]["expires_at"] > versions[1]["retired_at"]
    table = ok("versions", "svc").stdout
    assert table.splitlines()[0].split()[:3] == ["VERSION", "STATE", "SINCE"]
    r = ok("rollback", "svc", "--yes")
    assert "rolled back svc to version 1 (key)" in r.stderr
    assert sent_key(server, url) == f"Bearer {OLD}"
    ok("rollback", "svc", "--yes")  # the swapped-out version was kept: roll forward
    assert sent_key(server, url) == f"Bearer {NEW}"
    actions = [
        (a["action"], a.get("fields"))
        for a in json.loads(ok("audit", "--json").stdout)
        if a["action"].startswith("credential.")
    ]
    assert actions == [
        ("credential.add", None),
        ("credential.rotate", ["key"]),
        ("credential.rollback", ["key"]),
        ("credential.rollback", ["key"]),
    ]


def test_rotate_from_stdin_and_its_refusals(home: Path, server: Recorder) -> None:
    before = (home / "credentials.enc").read_bytes()
    for args, message in [
        (["--field", "header=X-Key"], "header of 'svc' is not a secret field"),
        (["--field", "kye=-"], "kye: unknown field (did you mean key?"),
        (["--field", "key=-"], "nothing to rotate in 'svc': the new secret values are the ones"),
        ([], "nothing to rotate: there is no terminal to ask on"),
    ]:
        r = cli("rotate", "svc", *args, input=OLD + "\n")
        assert r.returncode == 4, (args, r.stderr)
        assert message in r.stderr
    assert (home / "credentials.enc").read_bytes() == before
    r = cli("rotate", "svc", "--field", "key=-", "--json", input=NEW + "\n")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["changed"] == ["key"] and NEW not in r.stdout
    assert sent_key(server, f"{server.base}/v1/y") == f"Bearer {NEW}"


def test_rollback_of_a_never_rotated_credential_is_refused(home: Path) -> None:
    r = cli("rollback", "svc", "--yes")
    assert r.returncode == 4
    assert "'svc' has no earlier secret version to roll back to" in r.stderr


def test_rollback_asks_without_yes(home: Path, tmp_path: Path) -> None:
    ok("rotate", "svc", "--field", f"key=@{tmp_path / 'new.txt'}")
    r = cli("rollback", "svc")
    assert r.returncode == 2 and "--yes" in r.stderr
    t = Terminal("rollback", "svc")
    t.expect(r"Roll 'svc' back from version 2 to version 1 .*\[y/N\]")
    t.type("y\n")
    assert t.finish() == 0, t.seen
    assert info("svc")["version"] == 1


def test_rotate_asks_for_the_secret_hidden_on_a_terminal(home: Path, server: Recorder) -> None:
    t = Terminal("rotate", "svc")
    t.expect(r"API key: ")
    t.type(NEW + "\n")
    assert t.finish() == 0, t.seen
    assert NEW not in t.seen  # never echoed
    assert "Extra headers" not in t.seen  # optional: asked only with --all-fields
    assert sent_key(server, f"{server.base}/v1/z") == f"Bearer {NEW}"


# --- add: only required prompts, --all-fields, --replace -------------------------------------


def test_add_asks_only_for_required_fields(home: Path) -> None:
    t = Terminal("add", "--alias", "quick", "--type", "api_key")
    t.expect(r"API key: ")
    t.type(NEW + "\n")
    assert t.finish() == 0, t.seen
    assert "added quick" in t.seen
    for optional in ("Header", "Prefix", "Query parameter", "Extra headers"):
        assert optional not in t.seen
    assert info("quick")["fields"] == {"key": "********", "header": "Authorization"}


def test_all_fields_asks_the_optional_ones_and_enter_ends_an_empty_textarea(home: Path) -> None:
    t = Terminal("add", "--alias", "full", "--type", "api_key", "--all-fields")
    t.expect(r"API key.*: ")
    t.type(NEW + "\n")
    t.expect(r"Header .*\[Authorization\]: ")
    t.type("X-Api-Key\n")
    t.expect(r"Prefix .*: ")
    t.type("\n")
    t.expect(r"Query parameter .*: ")
    t.type("\n")
    t.expect(r"Extra headers .*Enter on the first line leaves it empty")
    t.type("\n")  # a bare Enter: done, no '.' line needed
    assert t.finish() == 0, t.seen
    assert info("full")["fields"] == {"key": "********", "header": "X-Api-Key"}


def test_replace_lists_what_it_drops_and_points_at_edit(home: Path, tmp_path: Path) -> None:
    ok("plugin", "install", str(shipped_plugin("hmac")))
    key = tmp_path / "hmac.txt"
    key.write_text(HMAC_OLD)
    ok(
        "add", "--alias", "hook", "--type", "plugin:hmac:hmac_key", "--field", f"key=@{key}",
        "--field", "encoding=base64", "-d", "release webhook",
    )  # fmt: skip
    key.write_text(HMAC_NEW)
    r = ok("add", "--alias", "hook", "--type", "plugin:hmac:hmac_key", "--field", f"key=@{key}",
           "--replace", "--json")  # fmt: skip
    assert json.loads(r.stdout)["dropped"] == {
        "fields": ["encoding"],
        "allow": [],
        "description": True,
        "versions": 0,
    }
    assert "replaced hook (plugin:hmac:hmac_key), dropping what was not given again" in r.stderr
    assert "fields not given again: encoding" in r.stderr
    assert "`vultrino edit hook`" in r.stderr
    assert HMAC_NEW not in r.stdout + r.stderr
    r = ok("add", "--alias", "hook", "--type", "plugin:hmac:hmac_key", "--field", f"key=@{key}",
           "--field", "encoding=utf8", "--replace")  # fmt: skip
    assert "nothing of the old one was dropped" in r.stderr


def test_rotating_an_hmac_key_keeps_its_encoding(home: Path, tmp_path: Path) -> None:
    """The issue's case: a replace sent `encoding` back to utf8 and changed every signature;
    a rotation changes the key alone."""
    ok("plugin", "install", str(shipped_plugin("hmac")))
    key = tmp_path / "hmac.txt"
    key.write_text(HMAC_OLD)
    ok("add", "--alias", "hook", "--type", "plugin:hmac:hmac_key", "--field", f"key=@{key}",
       "--field", "encoding=base64")  # fmt: skip

    def signature() -> str:
        r = ok(
            "request", "hook", "--action", "sign", "--param", "message=payload", "-F", "signature"
        )
        return r.stdout.strip()

    def expected(b64: str) -> str:
        return hmac.new(base64.b64decode(b64), b"payload", hashlib.sha256).hexdigest()

    assert signature() == expected(HMAC_OLD)
    key.write_text(HMAC_NEW)
    ok("rotate", "hook", "--field", f"key=@{key}")
    assert signature() == expected(HMAC_NEW)
    assert info("hook")["fields"] == {"key": "********", "encoding": "base64"}
    ok("rollback", "hook", "--yes")
    assert signature() == expected(HMAC_OLD)


def test_an_unknown_field_is_reported_as_unknown_not_as_a_missing_required_one(
    home: Path,
) -> None:
    r = cli("add", "--alias", "typo", "--type", "api_key", "--field", "kye=-", input=NEW)
    assert r.returncode == 4
    assert "kye: unknown field (did you mean key?" in r.stderr
    assert "missing required" not in r.stderr
    assert os.path.exists(home / "credentials.enc")
    assert "typo" not in ok("list").stdout
