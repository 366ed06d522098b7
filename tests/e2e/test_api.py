"""The Python API scripts use (DESIGN.md section 9), on real plugins and a real store."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from tests import guests
from tests.leakcheck import LeakCheck
from vultrino import (
    CredentialMismatchError,
    CredentialNotFoundError,
    ParameterError,
    Vultrino,
    WrongPasswordError,
    audit,
)
from vultrino.cli import app
from vultrino.store import KdfParams

PASSWORD = "api-test-password"
SECRET = "s3cret-token-value-0123456789"

MANIFEST = """
[plugin]
name = "{name}"
version = "1.0.0"
wasm_module = "echo.wasm"

[[credential_types]]
name = "token"
[[credential_types.fields]]
name = "secret"
type = "password"
required = true
secret = true

[[actions]]
name = "echo"
description = "Answers with the request it received"
[[actions.parameters]]
name = "message"
type = "string"
required = true

[[mcp_tools]]
name = "{tool}_echo"
action = "echo"
description = "Echo"
"""


def install_echo(home: Path, name: str) -> None:
    d = home / "plugins" / name
    d.mkdir(parents=True)
    (d / "plugin.toml").write_text(MANIFEST.format(name=name, tool=name.replace("-", "_")))
    (d / "echo.wasm").write_bytes(guests.echo())


@pytest.fixture
def v(isolated_home: Path, leakcheck: LeakCheck) -> Iterator[Vultrino]:
    leakcheck.add(PASSWORD, SECRET)
    install_echo(isolated_home, "echo-a")
    install_echo(isolated_home, "echo-b")
    vv = Vultrino.init(isolated_home, PASSWORD, kdf=KdfParams.minimal())
    vv.add_credential("a", "plugin:echo-a:token", {"secret": SECRET}, description="for A")
    yield vv
    vv.close()


def test_execute_returns_the_result_with_secrets_scrubbed(v: Vultrino) -> None:
    result = v.execute("a", "echo", {"message": "hi"})
    assert result["action"] == "echo"
    assert result["params"] == {"message": "hi"}
    assert result["credential"]["alias"] == "a"
    # the guest echoed the secret back; the host replaced it
    assert result["credential"]["fields"]["secret"] == "[REDACTED]"
    assert SECRET not in repr(result)
    [record] = calls(v)
    assert record["alias"] == "a" and record["plugin"] == "echo-a" and record["outcome"] == "ok"
    assert record["source"] == "api"


def test_closing_forgets_the_cached_scrubbers(v: Vultrino) -> None:
    from vultrino import _scrub

    v.execute("a", "echo", {"message": "hi"})
    assert _scrub._scrubber_of.cache_info().currsize > 0
    v.close()
    assert _scrub._scrubber_of.cache_info().currsize == 0  # no secret's forms stay behind


def calls(v: Vultrino) -> list[dict[str, Any]]:
    """The log's records of calls (without those of changes to the home, source ``admin``)."""
    return [r for r in audit.read_records(v.home.audit_log) if r["source"] != "admin"]


def test_metadata_never_holds_a_value(v: Vultrino) -> None:
    [info] = v.credentials()
    assert info.fields == {"secret": "********"}
    assert info.plugin == "echo-a" and info.type == "plugin:echo-a:token"
    assert SECRET not in repr(v.credential_info("a"))


def test_a_plugin_typed_credential_goes_only_to_its_plugin(v: Vultrino) -> None:
    with pytest.raises(CredentialMismatchError, match="echo-b"):
        v.call_tool("echo_b_echo", {"credential": "a", "message": "hi"})
    with pytest.raises(CredentialMismatchError):
        v.execute("a", "echo", {"message": "hi"}, plugin="echo-b")
    records = calls(v)
    assert [r["outcome"] for r in records] == ["error", "error"]


def test_tools_carry_the_credential_argument_and_the_aliases(v: Vultrino) -> None:
    tools = {t.name: t for t in v.tools()}
    assert {"list_credentials", "http_request", "echo_a_echo", "echo_b_echo"} <= set(tools)
    schema = tools["echo_a_echo"].input_schema
    assert schema["required"][0] == "credential"
    assert "a" in schema["properties"]["credential"]["description"]
    assert (
        "none yet" in tools["echo_b_echo"].input_schema["properties"]["credential"]["description"]
    )
    assert v.call_tool("echo_a_echo", {"credential": "a", "message": "x"})["params"] == {
        "message": "x"
    }
    with pytest.raises(ParameterError, match="credential"):
        v.call_tool("echo_a_echo", {"message": "x"})
    with pytest.raises(ParameterError, match="message"):
        v.call_tool("echo_a_echo", {"credential": "a"})
    with pytest.raises(CredentialNotFoundError):
        v.call_tool("echo_a_echo", {"credential": "nope", "message": "x"})


def test_list_credentials_tool(v: Vultrino) -> None:
    [listed] = v.call_tool("list_credentials", {})
    assert listed == {
        "alias": "a",
        "id": v.credential_info("a").id,  # what a model can name it by, too
        "type": "plugin:echo-a:token",
        "description": "for A",
    }


def test_refresh_sees_plugins_installed_by_another_process(v: Vultrino) -> None:
    v.refresh()
    install_echo(v.home.root, "echo-c")
    assert v.refresh() is True
    assert "echo_c_echo" in {t.name for t in v.tools()}
    assert v.refresh() is False


def test_remove_credential(v: Vultrino) -> None:
    v.remove_credential("a")
    assert v.credentials() == []
    with pytest.raises(CredentialNotFoundError):
        v.execute("a", "echo", {"message": "hi"})


def test_rekey_through_the_cli(isolated_home: Path, tmp_path: Path, leakcheck: LeakCheck) -> None:
    leakcheck.add(PASSWORD, "the-new-password")
    Vultrino.init(isolated_home, PASSWORD, kdf=KdfParams.minimal()).close()
    new = tmp_path / "new"
    new.write_text("the-new-password\n")
    r = CliRunner().invoke(
        app,
        ["rekey", "--new-password-file", str(new), "--kdf-opslimit", "1", "--kdf-memlimit-mb", "1"],
        env={"VULTRINO_PASSWORD": PASSWORD},
    )
    assert r.exit_code == 0, r.stderr
    leakcheck.scan(r.stdout + r.stderr, "rekey output")
    with pytest.raises(WrongPasswordError):
        Vultrino.open(isolated_home, PASSWORD).unlock()
    with Vultrino.open(isolated_home, "the-new-password") as v:
        assert v.credentials() == []


def _cli(home: Path, *args: str) -> None:
    import os
    import subprocess
    import sys

    env = {**os.environ, "VULTRINO_HOME": str(home), "VULTRINO_PASSWORD": PASSWORD}
    subprocess.run([sys.executable, "-m", "vultrino", *args], env=env, check=True, timeout=120)


def test_a_credential_removed_by_another_process_is_gone_on_the_next_call(v: Vultrino) -> None:
    # execute() keeps the credential it read while the store is unchanged; another process's
    # write must end that at once.
    for _ in range(3):
        v.execute("a", "echo", {"message": "hi"})
    _cli(v.home.root, "remove", "a", "--yes")
    with pytest.raises(CredentialNotFoundError):
        v.execute("a", "echo", {"message": "hi"})


def test_a_secret_replaced_by_another_process_is_used_and_scrubbed_at_once(
    v: Vultrino, leakcheck: LeakCheck
) -> None:
    new = "brand-new-secret-value-9876543210"
    leakcheck.add(new)
    v.execute("a", "echo", {"message": "hi"})
    _cli(
        v.home.root,
        "add",
        "--alias",
        "a",
        "--type",
        "plugin:echo-a:token",
        "--field",
        f"secret={new}",
        "--replace",
    )
    result = v.execute("a", "echo", {"message": "hi"})
    assert result["credential"]["fields"]["secret"] == "[REDACTED]"
    assert new not in repr(result) and SECRET not in repr(result)


def test_a_reloaded_plugin_serves_the_very_next_call(v: Vultrino) -> None:
    # execute() keeps what an (alias, action) resolved to, the bound plugin included, while the
    # plugins are unchanged: a reload must end that at once.
    assert v.execute("a", "echo", {"message": "hi"})["action"] == "echo"
    directory = v.home.plugins / "echo-a"
    manifest = MANIFEST.format(name="echo-a", tool="echo_a")
    tone = '[[actions.parameters]]\nname = "tone"\ntype = "string"\n\n[[mcp_tools]]'
    (directory / "plugin.toml").write_text(manifest.replace("[[mcp_tools]]", tone))
    (directory / "echo.wasm").write_bytes(guests.abi2_fixed(b"\x81\xa2ok\xa7swapped"))
    v.reload_plugin("echo-a")
    assert v.execute("a", "echo", {"message": "hi", "tone": "dry"}) == "swapped"


def test_every_record_has_the_same_fields_in_the_same_order(v: Vultrino) -> None:
    for _ in range(2):  # the first call resolves the credential, the second reuses that
        v.execute("a", "echo", {"message": "hi"})
    with pytest.raises(ParameterError):
        v.execute("a", "echo", {})
    ok1, ok2, failed = calls(v)
    head = ["ts", "alias", "plugin", "action", "agent", "outcome"]
    chain = ["seq", "prev"]
    assert list(ok1) == list(ok2) == [*head, "duration_ms", "source", *chain]
    assert list(failed) == [*head, "error", "duration_ms", "source", *chain]
    assert {k: ok1[k] for k in head[1:]} == {k: ok2[k] for k in head[1:]}
    assert ok1["outcome"] == "ok" and ok1["agent"] is None and ok1["source"] == "api"
    assert isinstance(ok2["duration_ms"], float) and ok2["duration_ms"] >= 0


def test_a_plugin_gets_one_read_only_view_of_an_unchanged_credential(
    v: Vultrino, monkeypatch: pytest.MonkeyPatch
) -> None:
    from vultrino.plugins.base import ActionResult, CredentialView
    from vultrino.plugins.http import HttpPlugin

    seen: list[CredentialView] = []

    def spy(
        self: HttpPlugin, action: str, params: object, credential: CredentialView, bound: object
    ) -> object:
        seen.append(credential)
        return ActionResult({"status": 200})

    monkeypatch.setattr(HttpPlugin, "_execute", spy)  # what a prepared action runs
    v.add_credential("k", "api_key", {"key": SECRET}, allow=["https://example.test/*"])
    for _ in range(2):
        v.execute("k", "request", {"url": "https://example.test/x"})
    first, second = seen
    assert first is second  # resolved once, while the store is unchanged
    assert "key" in first.secret_fields
    with pytest.raises(TypeError):
        first.fields["key"] = "changed"  # type: ignore[index]
    with pytest.raises(TypeError):
        first.state["token"] = "x"  # type: ignore[index]
    v.add_credential("k", "api_key", {"key": SECRET[::-1]}, replace=True)
    v.execute("k", "request", {"url": "https://example.test/x"})
    assert seen[2] is not first and seen[2].fields["key"] == SECRET[::-1]
