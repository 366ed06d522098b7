"""Secret versions in the sealed store: rotate keeps the previous values sealed, rollback swaps
them back (and a second rollback rolls forward), the retention prunes on write, and a store
written before versions existed still opens and works."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from vultrino._msgpack import packb, unpackb
from vultrino.errors import CredentialValidationError, StoreCorruptError
from vultrino.store import (
    Credential,
    CredentialStore,
    KdfParams,
    SecretVersion,
    VersionRetention,
    _sealing,
)
from vultrino.store import credentials as credentials_module

PASSWORD = "correct horse battery staple, versions"
OLD = "sk-OLD-secret-value-5e1f0c2a9b"
NEW = "sk-NEW-secret-value-77d2a4c1e0"
NEWER = "sk-NEWER-secret-value-0b9e3f55"
STATE = "cached-access-token-3c1d9a"
FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "stores" / "before-versions.enc"
T0 = datetime(2030, 1, 1, 12, 0, 0, tzinfo=timezone.utc)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kw: float) -> None:
        self.now += timedelta(**kw)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    c = Clock()
    monkeypatch.setattr(credentials_module, "_utcnow", c)
    return c


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    return tmp_path / "home" / "credentials.enc"


@pytest.fixture(params=["file", "postgresql"])
def store(request: pytest.FixtureRequest, clock: Clock) -> Iterator[CredentialStore]:
    """On each backend (the PostgreSQL store is skipped for tests about the file)."""
    if request.param == "file":
        location: Path | str = request.getfixturevalue("store_path")
    elif "store_path" in request.fixturenames or "tmp_path" in request.fixturenames:
        pytest.skip("about the store file itself")
    else:
        location = request.getfixturevalue("pg_url")
    from vultrino.store import create_store

    with create_store(location, PASSWORD, KdfParams.minimal()) as s:
        s.add(
            Credential(
                "svc",
                "api_key",
                {"key": OLD, "header": "X-Key"},
                description="the service",
                allow=["https://api.example.com/*"],
                secret_fields=["key", "extra_headers"],
                state={"access_token": STATE},
            )
        )
        yield s


def set_key(value: str) -> Any:
    def change(cred: Credential) -> Credential:
        cred.fields["key"] = value
        return cred

    return change


def document(path: Path, password: str = PASSWORD) -> dict[str, Any]:
    """The decrypted document of the store file at ``path``."""
    data = path.read_bytes()
    header = _sealing.parse_header(data, str(path))
    key = _sealing.derive_key(password.encode(), header.salt, header.kdf)
    doc = unpackb(_sealing.open_box(key, header, data))
    assert isinstance(doc, dict)
    return doc


def test_rotate_keeps_the_previous_secret_sealed_and_everything_else(
    store: CredentialStore, store_path: Path, clock: Clock
) -> None:
    clock.advance(hours=1)
    before, after = store.modify("svc", set_key(NEW), rotate=True)
    assert before.fields["key"] == OLD and after.fields["key"] == NEW
    assert (after.version, after.version_changed) == (2, ["key"])
    assert after.version_since == "2030-01-01T13:00:00Z"
    assert after.fields["header"] == "X-Key"
    assert after.allow == ["https://api.example.com/*"]
    assert after.description == "the service"
    assert after.state == {}  # derived from the old secret: starts over
    [kept] = store.kept("svc")
    assert (kept.version, kept.fields, kept.state) == (1, {"key": OLD}, {"access_token": STATE})
    assert kept.retired_at == "2030-01-01T13:00:00Z"
    data = store_path.read_bytes()
    assert OLD.encode() not in data and NEW.encode() not in data  # sealed, never plaintext
    reopened = CredentialStore.open(store_path, PASSWORD)
    assert reopened.get("svc").fields["key"] == NEW
    assert reopened.kept("svc")[0].fields == {"key": OLD}
    reopened.close()


def test_rollback_swaps_and_a_second_rollback_rolls_forward(store: CredentialStore) -> None:
    store.modify("svc", set_key(NEW), rotate=True)
    _, back = store.rollback("svc")
    assert (back.fields["key"], back.version, back.state) == (OLD, 1, {"access_token": STATE})
    assert [(v.version, v.fields) for v in store.kept("svc")] == [(2, {"key": NEW})]
    _, forward = store.rollback("svc")
    assert (forward.fields["key"], forward.version) == (NEW, 2)
    assert [(v.version, v.fields) for v in store.kept("svc")] == [(1, {"key": OLD})]


def test_version_numbers_keep_growing_and_count_bounds_what_is_kept(
    store_path: Path, clock: Clock
) -> None:
    retention = VersionRetention(count=2, days=7)
    with CredentialStore.create(store_path, PASSWORD, KdfParams.minimal()) as s:
        s.close()
    with CredentialStore.open(store_path, PASSWORD, retention=retention) as s:
        s.add(Credential("k", "bearer", {"token": OLD}, secret_fields=["token"]))
        for i, value in enumerate((NEW, NEWER, "fourth-value"), start=2):
            clock.advance(minutes=1)

            def change(cred: Credential, value: str = value) -> Credential:
                cred.fields["token"] = value
                return cred

            _, after = s.modify("k", change, rotate=True)
            assert after.version == i
        assert [v.version for v in s.kept("k")] == [3, 2]  # at most two, newest first
        assert [v.fields["token"] for v in s.kept("k")] == [NEWER, NEW]
        assert OLD not in repr(document(store_path))  # the oldest is gone from the file


def test_a_version_past_its_days_is_not_restorable_and_the_next_write_drops_it(
    store: CredentialStore, store_path: Path, clock: Clock
) -> None:
    store.modify("svc", set_key(NEW), rotate=True)
    clock.advance(days=6, hours=23)
    assert len(store.kept("svc")) == 1
    clock.advance(hours=2)
    assert store.kept("svc") == []
    with pytest.raises(CredentialValidationError, match=r"no earlier secret version.*any more"):
        store.rollback("svc")
    assert OLD in repr(document(store_path))  # still in the file: no write happened yet
    store.add(Credential("other", "bearer", {"token": "t"}))  # any write prunes
    assert OLD not in repr(document(store_path))
    assert store.get("svc").fields["key"] == NEW


def test_rotating_to_the_same_value_and_rolling_back_a_never_rotated_one_are_refused(
    store: CredentialStore, store_path: Path
) -> None:
    before = store_path.read_bytes()
    with pytest.raises(CredentialValidationError, match="nothing to rotate"):
        store.modify("svc", set_key(OLD), rotate=True)
    with pytest.raises(CredentialValidationError, match="no earlier secret version to roll back"):
        store.rollback("svc")
    assert store_path.read_bytes() == before


def test_a_rollback_the_check_refuses_changes_nothing(store: CredentialStore) -> None:
    store.modify("svc", set_key(NEW), rotate=True)

    def refuse(cred: Credential) -> Credential:
        raise CredentialValidationError("the restored values do not fit the type any more")

    with pytest.raises(CredentialValidationError, match="do not fit"):
        store.rollback("svc", refuse)
    assert store.get("svc").fields["key"] == NEW
    assert [v.version for v in store.kept("svc")] == [1]


def test_modify_keeps_versions_and_writes_nothing_when_told_nothing_changed(
    store: CredentialStore, store_path: Path
) -> None:
    store.modify("svc", set_key(NEW), rotate=True)

    def describe(cred: Credential) -> Credential:
        cred.description = "edited"
        cred.alias, cred.type = "hijack", "bearer"  # the store keeps alias and type
        return cred

    _, after = store.modify("svc", describe)
    assert (after.alias, after.type, after.description) == ("svc", "api_key", "edited")
    assert (after.version, [v.version for v in store.kept("svc")]) == (2, [1])
    before = store_path.read_bytes()
    same_before, same_after = store.modify("svc", lambda cred: None)
    assert same_before.description == same_after.description == "edited"
    assert store_path.read_bytes() == before


def test_kept_values_are_hidden_from_repr(store: CredentialStore) -> None:
    _, after = store.modify("svc", set_key(NEW), rotate=True)
    after.kept = store.kept("svc")
    text = repr(after) + repr(after.kept) + str(after.kept[0])
    assert OLD not in text and NEW not in text and STATE not in text
    assert "1 earlier versions, values hidden" in text


def test_a_record_never_rotated_is_written_as_before(
    store: CredentialStore, store_path: Path
) -> None:
    [record] = document(store_path)["credentials"]
    # no version keys until a rotation; "id" is new (readers that predate ids ignore it)
    assert set(record) == {
        "id", "alias", "type", "description", "fields", "allow", "secret_fields", "state",
        "created_at", "updated_at",
    }  # fmt: skip
    store.modify("svc", set_key(NEW), rotate=True)
    [record] = document(store_path)["credentials"]
    assert record["version"] == 2 and record["kept"][0]["fields"] == {"key": OLD}


@pytest.mark.parametrize(
    "bad",
    [
        {"version": "2"},
        {"version": 0},
        {"version": 2, "kept": "no"},
        {"version": 2, "kept": [{"version": 1}]},
        {"version": 2, "kept": [{"version": 1, "fields": {}, "changed": [1]}]},
    ],
)
def test_malformed_versions_are_corrupt(store_path: Path, bad: dict[str, Any]) -> None:
    salt = _sealing.new_salt()
    params = KdfParams.minimal()
    key = _sealing.derive_key(PASSWORD.encode(), salt, params)
    header = _sealing.new_header(params, salt)
    record = {"alias": "a", "type": "bearer", "fields": {"token": "t"}, **bad}
    store_path.parent.mkdir(mode=0o700)
    plaintext = packb({"header": header.raw, "credentials": [record]})
    store_path.write_bytes(_sealing.seal_box(key, header, plaintext))
    with pytest.raises(StoreCorruptError, match="malformed"):
        CredentialStore.open(store_path, PASSWORD)


def test_a_version_must_be_a_secret_version() -> None:
    from vultrino.store.credentials import _validated

    cred = Credential("a", "bearer", {"token": "t"})
    cred.kept = [{"version": 1}]  # type: ignore[list-item]
    with pytest.raises(CredentialValidationError, match="SecretVersions"):
        _validated(cred)
    cred.kept = [SecretVersion(0, {})]
    with pytest.raises(CredentialValidationError, match="positive integer"):
        _validated(cred)


def test_a_store_written_before_versions_opens_and_can_be_rotated(
    tmp_path: Path, clock: Clock
) -> None:
    """tests/fixtures/stores/before-versions.enc was written by the format as it was before
    secret versions (password "fixture-password", minimal KDF): it opens unchanged, its
    credentials are at version 1 with nothing kept, and rotating one works."""
    path = tmp_path / "credentials.enc"
    shutil.copyfile(FIXTURE, path)
    with CredentialStore.open(path, "fixture-password") as s:
        api = s.get("local-api")
        assert (api.fields, api.allow, api.description) == (
            {"key": "fixture-secret-0001", "header": "X-Api-Key"},
            ["http://127.0.0.1:*/*"],
            "the local API",
        )
        assert (api.version, api.kept, api.state) == (1, [], {"cached": 1})
        assert s.get("hook").fields == {"secret": "aGVsbG8=", "encoding": "base64"}
        assert [a["name"] for a in s.agent_records()] == ["bot"]
        assert s.audit_public_key() is not None
        s.modify("local-api", set_key("fixture-secret-0002"), rotate=True)
    with CredentialStore.open(path, "fixture-password") as s:
        assert s.get("local-api").fields["key"] == "fixture-secret-0002"
        assert s.kept("local-api")[0].fields == {"key": "fixture-secret-0001"}
        assert s.get("hook").fields["encoding"] == "base64"
        assert [a["name"] for a in s.agent_records()] == ["bot"]
