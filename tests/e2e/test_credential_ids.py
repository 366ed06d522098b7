"""Credential ids: every credential has a stable UUID, shown in `info` and `list --json`, kept
by every change, and accepted wherever an alias is — the CLI, the Python API, an agent's
scope, MCP's `credential` argument and the REST API — all resolved by the store's one lookup.
"""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.e2e.mcp_helpers import McpHome, RawClient, make_home
from tests.e2e.serve_helpers import audit_records, make_key, serve
from tests.e2e.test_serve import Client
from tests.leakcheck import LeakCheck
from vultrino import CredentialNotFoundError, Vultrino
from vultrino.store import CredentialStore, KdfParams
from vultrino.store import credentials as store_module
from vultrino.store.credentials import Credential, derived_id

UUID4 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
PASSWORD = "ids-test-password"
runner = CliRunner()


@pytest.fixture
def home(isolated_home: Path) -> McpHome:
    return make_home(isolated_home)


def cli(home: McpHome, *args: str) -> tuple[int, str, str]:
    r = home.cli(*args)
    return r.returncode, r.stdout, r.stderr


def test_an_id_is_shown_kept_by_every_change_and_accepted_by_every_command(
    home: McpHome,
) -> None:
    code, out, err = cli(home, "list", "--json")
    assert code == 0, err
    ids = {c["alias"]: c["id"] for c in json.loads(out)}
    assert all(UUID4.fullmatch(i) for i in ids.values()) and len(set(ids.values())) == len(ids)
    gid = ids["github"]

    code, out, err = cli(home, "info", gid)
    assert code == 0, err
    assert f"id:          {gid}" in out and "alias:       github" in out
    code, out, _ = cli(home, "info", gid, "--json")
    assert json.loads(out)["alias"] == "github"

    assert cli(home, "edit", gid, "-d", "renamed by id")[0] == 0
    code, _, err = cli(home, "rotate", gid, "--field", "key=ghp_rotatedByIdValue0000")
    assert code == 0, err
    code, out, _ = cli(home, "versions", gid, "--json")
    assert code == 0 and len(json.loads(out)) == 2
    assert cli(home, "rollback", gid, "--yes")[0] == 0
    code, out, _ = cli(home, "info", "github", "--json")
    after = json.loads(out)
    assert after["id"] == gid and after["description"] == "renamed by id"

    eid = ids["echo-one"]
    code, out, err = cli(
        home, "request", eid, "--action", "echo", "--param", "message=hi", "--json"
    )
    assert code == 0, err
    assert json.loads(out)["credential"]["alias"] == "echo-one"
    # the audit log knows the credential by its alias, whatever name the call used
    assert audit_records(home)[-1]["alias"] == "echo-one"

    code, _, err = cli(home, "remove", gid, "--yes")
    assert code == 0, err
    code, _, err = cli(home, "info", gid)
    assert code == 4 and gid in err


def test_replace_keeps_the_id_and_an_id_shaped_alias_is_refused(home: McpHome) -> None:
    with Vultrino.open(home.root, PASSWORD_OF(home)) as v:
        before = v.credential_info("github").id
        v.add_credential("github", "api_key", {"key": "ghp_replacedValue00000000"}, replace=True)
        assert v.credential_info("github").id == before
    code, _, err = cli(
        home, "add", "--alias", before, "--type", "bearer", "--field", "token=@/dev/null"
    )
    assert code == 4
    assert "written as a credential id" in err


def PASSWORD_OF(home: McpHome) -> str:
    return home.password_file.read_text().strip()


def test_an_agent_uses_an_id_it_may_see_and_a_hidden_one_fails_like_a_missing_one(
    home: McpHome, leakcheck: LeakCheck
) -> None:
    with Vultrino.open(home.root, PASSWORD_OF(home)) as v:
        v.add_agent("bot", credentials=["echo-*"], tools=["*"])
        eid = v.credential_info("echo-one").id
        gid = v.credential_info("github").id
        scope = v.as_agent("bot")
        assert scope.credential_info(eid).alias == "echo-one"
        assert scope.execute(eid, "echo", {"message": "x"})["credential"]["alias"] == "echo-one"
        with pytest.raises(CredentialNotFoundError) as hidden:
            scope.credential_info(gid)
        with pytest.raises(CredentialNotFoundError) as missing:
            scope.credential_info("00000000-0000-4000-8000-000000000000")
        # word for word the missing-name error, naming the id it was given: never the alias
        assert str(hidden.value) == str(missing.value).replace(
            "00000000-0000-4000-8000-000000000000", gid
        )
        assert "github" not in str(hidden.value)
        with pytest.raises(CredentialNotFoundError) as used:
            scope.execute(gid, "request", {"url": "https://api.github.com/user"})
        assert "github" not in str(used.value)


def test_mcp_takes_an_id_as_the_credential_argument(home: McpHome) -> None:
    with Vultrino.open(home.root, PASSWORD_OF(home)) as v:
        eid = v.credential_info("echo-one").id
    with tempfile.TemporaryFile("w+", encoding="utf-8") as errlog, RawClient(home, errlog) as c:
        c.handshake("2025-06-18")
        reply = c.request(
            "tools/call",
            {"name": "echo_message", "arguments": {"credential": eid, "message": "by id"}},
        )
        c.close()
    result = reply["result"]
    assert result["isError"] is False, result
    assert result["structuredContent"]["credential"]["alias"] == "echo-one"


def test_rest_takes_an_id_and_a_role_sees_it_only_through_its_globs(home: McpHome) -> None:
    assert (
        home.cli("role", "create", "echo-only", "-p", "read,execute", "-c", "echo*").returncode == 0
    )
    key = make_key(home, "echo", "echo-only")
    with Vultrino.open(home.root, PASSWORD_OF(home)) as v:
        eid = v.credential_info("echo-one").id
        gid = v.credential_info("github").id
    with serve(home) as s:
        c = Client(s.url, key)
        listed = c.list_credentials().json()["credentials"]
        assert [(x["alias"], x["id"]) for x in listed] == [("echo-one", eid)]
        one = c.session.get(f"{s.api}/credentials/{eid}")
        assert one.status_code == 200 and one.json()["alias"] == "echo-one"
        used = c.action(eid, "echo", message="rest by id")
        assert used.status_code == 200, used.text
        assert used.json()["result"]["credential"]["alias"] == "echo-one"
        hidden = c.action(gid, "request", url="https://api.github.com/user")
        assert hidden.status_code == 403
        assert hidden.json() == {
            "error": f"Access denied to credential: {gid}",
            "code": "credential_denied",
            "type": "CredentialDeniedError",
        }


# --- the store: ids assigned, kept, and derived for records that predate them ----------------


def test_a_record_written_without_an_id_gets_one_derived_and_keeps_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "credentials.enc"
    encode = store_module._encode_record

    def without_id(c: Credential) -> dict[str, object]:  # what a store before ids wrote
        rec = encode(c)
        del rec["id"]
        return rec

    monkeypatch.setattr(store_module, "_encode_record", without_id)
    with CredentialStore.create(path, PASSWORD, kdf=KdfParams.minimal()) as store:
        store.add(Credential("old", "bearer", {"token": "t"}))
        store.add(Credential("other", "bearer", {"token": "u"}))
    monkeypatch.setattr(store_module, "_encode_record", encode)

    with CredentialStore.open(path, PASSWORD) as store:
        first = store.get("old")
        assert first.id == derived_id("old", first.created_at)
    with CredentialStore.open(path, PASSWORD) as store:
        assert store.get("old").id == first.id  # the same on every read
        assert store.get(first.id).alias == "old"
        store.remove("other")  # any write keeps the derived id for good
    with CredentialStore.open(path, PASSWORD) as store:
        assert store.get("old").id == first.id
        assert store.alias_of(first.id) == "old"
        assert store.alias_of("old") == "old"
        assert store.alias_of("11111111-1111-4111-8111-111111111111").startswith("1111")


def test_an_alias_wins_over_an_id_and_ids_stay_unique(tmp_path: Path) -> None:
    path = tmp_path / "credentials.enc"
    with CredentialStore.create(path, PASSWORD, kdf=KdfParams.minimal()) as store:
        a = store.add(Credential("a", "bearer", {"token": "t"}))
        # an id given by the caller (an import keeping the original's) is used...
        given = "5d2f8a10-aaaa-4bbb-8ccc-123456789abc"
        b = store.add(Credential("b", "bearer", {"token": "u"}, id=given))
        assert b.id == given
        # ...unless another credential holds it: then a fresh one is assigned
        c = store.add(Credential("c", "bearer", {"token": "v"}, id=given))
        assert c.id != given and UUID4.fullmatch(c.id)
        assert UUID4.fullmatch(a.id)
        # a pre-existing alias spelled like an id is found by that name first
        legacy = store.add(Credential(a.id, "bearer", {"token": "w"}))
        assert store.get(a.id).alias == legacy.alias == a.id
        assert store.get("a").id == a.id
