"""edit, rotate, rollback and versions through the Python API (`vultrino.Vultrino`): what is
kept, what is refused (and that a refusal loses nothing), the retention from config.toml, two
handles changing one credential at once, and the audit records (names, never values)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from tests.leakcheck import LeakCheck
from vultrino import (
    CredentialNotFoundError,
    CredentialValidationError,
    CredentialVersion,
    ReplaceDrops,
    Vultrino,
)
from vultrino.store import KdfParams
from vultrino.store import credentials as credentials_module

PASSWORD = "correct horse battery staple, api edits"
V1 = "client-secret-one-8d2f"
V2 = "client-secret-two-1c7e"
V3 = "client-secret-three-5a0b"


@pytest.fixture
def v(isolated_home: Path, leakcheck: LeakCheck) -> Iterator[Vultrino]:
    leakcheck.add(PASSWORD, V1, V2, V3)
    (isolated_home / "config.toml").write_text(
        "[store]\nkeep_versions = 2\nkeep_versions_days = 1.5\n"
    )
    with Vultrino.init(isolated_home, PASSWORD, kdf=KdfParams.minimal()) as vv:
        vv.add_credential(
            "idp",
            "oauth2",
            {
                "token_url": "https://auth.example.com/token",
                "client_id": "ci",
                "client_secret": V1,
                "scope": "read",
            },
            description="identity provider",
            allow=["https://api.example.com/*"],
        )
        yield vv


def secret(v: Vultrino, alias: str = "idp") -> object:
    return v._s.store.get(alias).fields["client_secret"]


def test_edit_changes_only_what_it_names(v: Vultrino) -> None:
    info = v.edit("idp", fields={"scope": "read write"}, add_allow=["https://up.example.com/*"])
    assert info.changed == ("scope", "allow")
    assert info.fields["scope"] == "read write"
    assert info.fields["client_secret"] == "********"
    assert info.allow == ("https://api.example.com/*", "https://up.example.com/*")
    assert info.description == "identity provider"
    assert secret(v) == V1
    cleared = v.edit("idp", fields={"scope": ""}, remove_allow=["https://up.example.com/*"])
    assert cleared.changed == ("scope", "allow")
    assert "scope" not in cleared.fields
    assert v.edit("idp", description="identity provider").changed == ()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"fields": {"scpoe": "x"}}, r"scpoe: unknown field \(did you mean scope\?"),
        ({"fields": {"client_secret": "x"}}, "is a secret field"),
        ({"fields": {"grant_type": "password"}}, "grant_type: must be one of"),
        ({"fields": {"grant_type": "refresh_token"}}, "refresh_token"),
        ({"remove_allow": ["https://nope.example/*"]}, "is not in the allowlist"),
        ({}, "nothing to edit"),
    ],
)
def test_a_refused_edit_changes_nothing(
    v: Vultrino, kwargs: dict[str, object], message: str
) -> None:
    before = v.credential_info("idp")
    with pytest.raises(CredentialValidationError, match=message):
        v.edit("idp", **kwargs)  # type: ignore[arg-type]
    assert v.credential_info("idp") == before
    assert secret(v) == V1


def test_rotate_keeps_versions_by_the_configured_retention(
    v: Vultrino, monkeypatch: pytest.MonkeyPatch
) -> None:
    t0 = datetime(2031, 5, 1, tzinfo=timezone.utc)
    now = [t0]
    monkeypatch.setattr(credentials_module, "_utcnow", lambda: now[0])
    assert v.rotate("idp", {"client_secret": V2}).version == 2
    now[0] += timedelta(hours=1)
    info = v.rotate("idp", {"client_secret": V3})
    assert (info.version, info.changed) == (3, ("client_secret",))
    found = v.versions("idp")
    assert all(isinstance(x, CredentialVersion) for x in found)
    assert [(x.version, x.current) for x in found] == [(3, True), (2, False), (1, False)]
    assert found[1].expires_at == "2031-05-02T13:00:00Z"  # 1.5 days after it was replaced
    assert V1 not in repr(found) and V2 not in repr(found)
    now[0] += timedelta(days=1, hours=11, minutes=30)  # version 1 is past its days, 2 is not
    assert [x.version for x in v.versions("idp")] == [3, 2]
    assert v.rollback("idp").version == 2
    assert secret(v) == V2
    assert v.rollback("idp").version == 3  # rolls forward
    now[0] += timedelta(days=2)
    with pytest.raises(CredentialValidationError, match="no earlier secret version"):
        v.rollback("idp")
    assert secret(v) == V3


def test_rotate_refuses_plain_fields_and_unknown_names(v: Vultrino) -> None:
    with pytest.raises(CredentialValidationError, match="scope of 'idp' is not a secret field"):
        v.rotate("idp", {"scope": "x", "client_secret": V2})
    with pytest.raises(CredentialValidationError, match="did you mean client_secret"):
        v.rotate("idp", {"client_secre": V2})
    with pytest.raises(CredentialValidationError, match="nothing to rotate"):
        v.rotate("idp", {})
    with pytest.raises(CredentialNotFoundError):
        v.rotate("nope", {"client_secret": V2})
    assert secret(v) == V1 and v.versions("idp")[0].version == 1


def test_replace_reports_what_it_dropped(v: Vultrino) -> None:
    v.rotate("idp", {"client_secret": V2})
    info = v.add_credential(
        "idp",
        "oauth2",
        {"token_url": "https://auth.example.com/token", "client_id": "ci", "client_secret": V3},
        replace=True,
    )
    assert info.dropped == ReplaceDrops(
        fields=("scope",), allow=("https://api.example.com/*",), description=True, versions=1
    )
    assert info.version == 1 and v.versions("idp")[1:] == []
    fresh = v.add_credential("new", "bearer", {"token": V1})
    assert fresh.dropped is None
    same = v.add_credential("new", "bearer", {"token": V1}, replace=True)
    assert same.dropped is not None and not same.dropped


def test_two_handles_editing_at_once_lose_nothing(v: Vultrino, isolated_home: Path) -> None:
    with Vultrino.open(isolated_home, PASSWORD) as other:
        other.unlock()
        v.edit("idp", description="changed here")
        other.edit("idp", fields={"scope": "admin"})  # reads the record under the lock
        other.rotate("idp", {"client_secret": V2})
        v.edit("idp", add_allow=["https://more.example.com/*"])
    info = v.credential_info("idp")
    assert (info.description, info.fields["scope"], info.version) == ("changed here", "admin", 2)
    assert info.allow == ("https://api.example.com/*", "https://more.example.com/*")
    assert secret(v) == V2


def test_changes_are_audited_with_names_never_values(v: Vultrino) -> None:
    v.edit("idp", fields={"scope": "s"}, description="d")
    v.rotate("idp", {"client_secret": V2})
    v.rollback("idp")
    v.add_credential("idp", "bearer", {"token": V3}, replace=True)
    records = [
        (r["action"], r.get("fields"))
        for r in v.audit(alias="idp")
        if r["action"].startswith("credential.")
    ]
    assert records == [
        ("credential.add", None),
        ("credential.edit", ["scope", "description"]),
        ("credential.rotate", ["client_secret"]),
        ("credential.rollback", ["client_secret"]),
        (
            "credential.replace",
            ["client_auth", "client_id", "client_secret", "grant_type", "scope", "token_url"],
        ),
    ]
    text = (v.home.audit_log).read_text()
    for value in (V1, V2, V3):
        assert value not in text
