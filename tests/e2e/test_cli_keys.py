"""`vultrino role create|list|info|delete` and `vultrino key create|list|revoke` (CliRunner),
and what the sealed store keeps of them: digests, never a key."""

from __future__ import annotations

import json
import struct
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.leakcheck import LeakCheck
from vultrino import ExpiredApiKeyError, InvalidApiKeyError, Vultrino
from vultrino.cli import app

PASSWORD = "correct horse battery staple, keys"

runner = CliRunner()
Run = Callable[..., tuple[int, str, str]]


@pytest.fixture
def home(isolated_home: Path, monkeypatch: pytest.MonkeyPatch, leakcheck: LeakCheck) -> Path:
    (isolated_home / "config.toml").write_text("[store]\nkdf_opslimit = 1\nkdf_memlimit_mb = 1\n")
    monkeypatch.setenv("VULTRINO_PASSWORD", PASSWORD)
    leakcheck.add(PASSWORD)
    assert runner.invoke(app, ["init"]).exit_code == 0
    return isolated_home


@pytest.fixture
def run() -> Run:
    def invoke(*args: str) -> tuple[int, str, str]:
        r = runner.invoke(app, list(args))
        if r.exception and not isinstance(r.exception, SystemExit):
            raise r.exception
        return r.exit_code, r.stdout, r.stderr

    return invoke


def _format_byte(home: Path) -> int:
    return struct.unpack_from(">B", (home / "credentials.enc").read_bytes(), 8)[0]


def test_a_key_is_shown_once_and_only_its_digest_is_stored(
    home: Path, run: Run, leakcheck: LeakCheck
) -> None:
    assert _format_byte(home) == 1  # a store without keys stays what it always was
    code, out, err = run("key", "create", "ci-deploy", "--role", "executor", "--expires", "30d")
    assert code == 0, err
    key = out.strip()
    leakcheck.add(key)
    assert key.startswith("vk_") and len(key) == 35
    assert "shown only now" in err and key not in err
    assert _format_byte(home) == 2  # an older Vultrino refuses it rather than drop the key

    code, out, _ = run("key", "list", "--json")
    [row] = json.loads(out)
    assert row["name"] == "ci-deploy" and row["role"] == "executor"
    assert row["prefix"] == key[:11] and row["last_used_at"] is None
    expires = datetime.fromisoformat(row["expires_at"].replace("Z", "+00:00"))
    left = (expires - datetime.now(timezone.utc)).total_seconds()
    assert 30 * 86400 - 60 < left <= 30 * 86400
    assert key not in out

    with Vultrino.open() as v:
        assert v.key_identity(key).name == "ci-deploy"
        with pytest.raises(InvalidApiKeyError):
            v.key_identity(key[:-1] + ("A" if key[-1] != "A" else "B"))

    code, _, err = run("key", "revoke", key[:11], "--yes")
    assert code == 0 and "revoked API key ci-deploy" in err
    with Vultrino.open() as v, pytest.raises(InvalidApiKeyError, match="revoked"):
        v.key_identity(key)


def test_an_expired_key_is_refused_with_a_clear_error(home: Path, run: Run) -> None:
    code, out, _ = run("key", "create", "short", "--role", "read-only", "--expires", "1s")
    assert code == 0
    key = out.strip()
    with Vultrino.open() as v:
        record = v.key_identity(key)
        later = datetime.fromisoformat(record.expires_at.replace("Z", "+00:00"))  # type: ignore[union-attr]
        assert record.expired(later)
    code, _, err = run("key", "create", "past", "--role", "executor", "--expires", "2001-01-01")
    assert code == 2 and "in the past" in err
    code, _, err = run("key", "create", "odd", "--role", "executor", "--expires", "soon")
    assert code == 2 and "30d, 12h" in err
    import time

    time.sleep(1.2)
    with Vultrino.open() as v, pytest.raises(ExpiredApiKeyError, match="expired at"):
        v.key_identity(key)


def test_roles_are_created_listed_shown_and_deleted(home: Path, run: Run) -> None:
    code, _, err = run(
        "role", "create", "github-ci", "-p", "read,execute", "-c", "github-*", "--rate", "5/min"
    )
    assert code == 0, err
    code, out, _ = run("role", "list", "--json")
    rows = {r["name"]: r for r in json.loads(out)}
    assert {"admin", "executor", "read-only", "github-ci"} <= set(rows)
    assert rows["admin"]["builtin"] and rows["admin"]["permissions"] == [
        "read",
        "execute",
        "write",
        "admin",
    ]
    assert rows["read-only"]["permissions"] == ["read"]
    assert rows["github-ci"]["credentials"] == ["github-*"] and not rows["github-ci"]["builtin"]
    code, out, _ = run("role", "info", "github-ci")
    assert "permissions: read, execute" in out and "rate:        5/min" in out

    # a role in use is not deleted from under its keys; a built-in one never
    assert run("key", "create", "k1", "--role", "github-ci")[0] == 0
    code, _, err = run("role", "delete", "github-ci", "--yes")
    assert code == 2 and "revoke them first" in err
    code, _, err = run("role", "delete", "admin", "--yes")
    assert code == 2 and "built-in" in err
    assert run("key", "revoke", "k1", "--yes")[0] == 0
    assert run("role", "delete", "github-ci", "--yes")[0] == 0
    code, _, err = run("role", "info", "github-ci")
    assert code == 4


def test_bad_role_options_say_what_is_wrong(home: Path, run: Run) -> None:
    code, _, err = run("role", "create", "x", "-p", "fly")
    assert code == 2 and "'fly' is not a permission" in err
    code, _, err = run("role", "create", "executor", "-p", "read")
    assert code == 2 and "built-in role" in err
    assert run("agent", "add", "bot", "-c", "*")[0] == 0
    code, _, err = run("role", "create", "bot", "-p", "read")
    assert code == 4 and "already the name of an agent" in err
    code, _, err = run("key", "create", "k", "--role", "nobody")
    assert code == 4 and "no agent or role named 'nobody'" in err
    # keys can act as an agent profile too
    assert run("key", "create", "bot-key", "--role", "bot")[0] == 0
    assert run("key", "create", "bot-key", "--role", "bot")[0] == 4  # names are unique
    code, out, _ = run("agent", "list", "--json")
    assert [a["name"] for a in json.loads(out)] == ["bot"]  # roles are not agents


def test_every_key_and_role_command_is_documented_with_an_example() -> None:
    doc = (Path(__file__).parents[2] / "docs" / "cli.md").read_text()
    for cmd in (
        ["role", "create"],
        ["role", "list"],
        ["role", "info"],
        ["role", "delete"],
        ["key", "create"],
        ["key", "list"],
        ["key", "revoke"],
    ):
        r = runner.invoke(app, [*cmd, "--help"])
        assert r.exit_code == 0 and "Example" in r.stdout
        assert f"vultrino {' '.join(cmd)}" in doc
