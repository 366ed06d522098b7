"""CredentialStore on real files: round trips, modes, errors, tampering, locking, secrecy."""

from __future__ import annotations

import os
import pprint
import stat
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest

from vultrino._msgpack import packb
from vultrino.errors import (
    CredentialExistsError,
    CredentialNotFoundError,
    CredentialValidationError,
    PasswordRequiredError,
    StoreCorruptError,
    StoreError,
    StoreExistsError,
    StoreFormatError,
    StoreLockedError,
    StoreNotInitializedError,
    WrongPasswordError,
)
from vultrino.store import ALIAS_MAX_LENGTH, Credential, CredentialStore, KdfParams, _sealing
from vultrino.store import credentials as credentials_module
from vultrino.store._generation import Generation
from vultrino.store._lock import FileLock, lock_path_for
from vultrino.store.credentials import encode_document

PASSWORD = "correct horse battery staple"
SECRET = "sk-live-THIS-IS-THE-SECRET-VALUE-0123456789"
STATE_SECRET = "refresh-token-SECRET-abcdef"
MIN = KdfParams.minimal()


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    return tmp_path / "home" / "credentials.enc"


@pytest.fixture(params=["file", "postgresql"])
def store(request: pytest.FixtureRequest) -> Iterator[CredentialStore]:
    """A new store on each backend: the tests that use only the store's interface (not its
    file) hold for the PostgreSQL store too (docs/scaling.md)."""
    if request.param == "file":
        with CredentialStore.create(request.getfixturevalue("store_path"), PASSWORD, MIN) as s:
            yield s
        return
    if "store_path" in request.fixturenames or "tmp_path" in request.fixturenames:
        pytest.skip("about the store file itself")
    from vultrino.store import create_store

    with create_store(request.getfixturevalue("pg_url"), PASSWORD, MIN) as s:
        yield s


def _cred(alias: str = "github", **kw: object) -> Credential:
    fields: dict[str, object] = {"key": SECRET, "header": "Authorization"}
    return Credential(alias=alias, type="api_key", fields=fields, **kw)  # type: ignore[arg-type]


def _temp_files(path: Path) -> list[str]:
    return [n for n in os.listdir(path.parent) if n.endswith(".tmp")]


def _expect_any_store_error(path: Path) -> type[BaseException]:
    with pytest.raises(StoreError) as info:
        CredentialStore.open(path, PASSWORD)
    assert PASSWORD not in str(info.value)
    return type(info.value)


# --- round trip and files --------------------------------------------------------------------


def test_round_trip_keeps_every_attribute(store: CredentialStore, store_path: Path) -> None:
    cred = Credential(
        alias="release-key",
        type="plugin:pgp-signing:pgp_key",
        fields={"armored": "-----BEGIN-----", "raw": b"\x00\xff", "n": 42, "nested": {"a": [1]}},
        description="signing key",
        allow=["https://api.github.com/*"],
        secret_fields=["armored", "raw"],
        state={"token": STATE_SECRET, "expires": 1700000000},
    )
    stored = store.add(cred)
    assert stored.created_at and stored.created_at.endswith("Z")
    assert stored.updated_at == stored.created_at
    with CredentialStore.open(store_path, PASSWORD) as again:
        got = again.get("release-key")
    assert got == stored
    assert got.fields["raw"] == b"\x00\xff"
    assert got.fields["nested"] == {"a": [1]}
    assert got.state == {"token": STATE_SECRET, "expires": 1700000000}


def test_file_is_0600_in_a_new_0700_directory(store: CredentialStore, store_path: Path) -> None:
    assert stat.S_IMODE(store_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(store_path.parent.stat().st_mode) == 0o700
    store.add(_cred())
    assert stat.S_IMODE(store_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(lock_path_for(store_path).stat().st_mode) == 0o600


def test_mode_is_0600_even_under_a_permissive_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        path = tmp_path / "new" / "credentials.enc"
        CredentialStore.create(path, PASSWORD, MIN).close()
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


def test_the_file_holds_no_plaintext(store: CredentialStore, store_path: Path) -> None:
    store.add(_cred(state={"t": STATE_SECRET}))
    data = store_path.read_bytes()
    for needle in (SECRET, STATE_SECRET, "github", "api_key", "Authorization", PASSWORD):
        assert needle.encode() not in data


def test_kdf_params_are_recorded_and_reported(store_path: Path) -> None:
    params = KdfParams(2, 16384)
    CredentialStore.create(store_path, PASSWORD, params).close()
    assert store_path.read_bytes()[10:18] == struct.pack(">II", 2, 16384)
    with CredentialStore.open(store_path, PASSWORD) as s:
        assert s.kdf == params
        assert s.path == store_path


def test_create_over_existing_store_refuses(store: CredentialStore, store_path: Path) -> None:
    store.add(_cred())
    before = store_path.read_bytes()
    with pytest.raises(StoreExistsError, match="already exists"):
        CredentialStore.create(store_path, "another password", MIN)
    assert store_path.read_bytes() == before
    assert CredentialStore.exists(store_path)


def test_open_without_a_store_says_run_init(tmp_path: Path) -> None:
    path = tmp_path / "nothing" / "credentials.enc"
    assert not CredentialStore.exists(path)
    with pytest.raises(StoreNotInitializedError, match="vultrino init"):
        CredentialStore.open(path, PASSWORD)


def test_empty_password_cannot_create(store_path: Path) -> None:
    with pytest.raises(PasswordRequiredError):
        CredentialStore.create(store_path, "", MIN)
    assert not store_path.exists()


# --- CRUD ------------------------------------------------------------------------------------


def test_list_is_sorted_and_get_remove_work(store: CredentialStore) -> None:
    for alias in ["zeta", "alpha", "Mid", "beta"]:
        store.add(_cred(alias))
    assert [c.alias for c in store.credentials()] == ["Mid", "alpha", "beta", "zeta"]
    removed = store.remove("beta")
    assert removed.alias == "beta"
    assert removed.fields["key"] == SECRET
    with pytest.raises(CredentialNotFoundError, match="beta"):
        store.get("beta")
    with pytest.raises(CredentialNotFoundError):
        store.remove("beta")
    assert [c.alias for c in store.credentials()] == ["Mid", "alpha", "zeta"]


def test_add_existing_alias_needs_replace_and_keeps_created_at(store: CredentialStore) -> None:
    first = store.add(_cred(created_at="2020-01-01T00:00:00Z", updated_at="2020-01-02T00:00:00Z"))
    assert (first.created_at, first.updated_at) == ("2020-01-01T00:00:00Z", "2020-01-02T00:00:00Z")
    with pytest.raises(CredentialExistsError, match="already exists"):
        store.add(_cred(description="second"))
    assert store.get("github").description == ""
    second = store.add(_cred(description="second", created_at="2024-05-05T00:00:00Z"), replace=True)
    assert second.created_at == "2020-01-01T00:00:00Z"
    assert second.updated_at > "2020-01-02T00:00:00Z"
    assert store.get("github").description == "second"


def test_update_state_persists_and_leaves_the_rest(
    store: CredentialStore, store_path: Path
) -> None:
    stored = store.add(_cred())
    store.update_state("github", {"access_token": STATE_SECRET, "expires_at": 99})
    with CredentialStore.open(store_path, PASSWORD) as again:
        got = again.get("github")
    assert got.state == {"access_token": STATE_SECRET, "expires_at": 99}
    assert got.fields == stored.fields
    assert got.updated_at == stored.updated_at
    with pytest.raises(CredentialNotFoundError):
        store.update_state("missing", {})


def test_returned_credentials_are_copies(store: CredentialStore) -> None:
    cred = _cred(state={"nested": {"k": [1, 2]}})
    store.add(cred)
    cred.fields["key"] = "changed-after-add"
    got = store.get("github")
    got.fields["key"] = "changed"
    got.state["nested"]["k"].append(3)
    got.allow.append("x")
    listed = store.credentials()[0]
    listed.fields.clear()
    fresh = store.get("github")
    assert fresh.fields["key"] == SECRET
    assert fresh.state == {"nested": {"k": [1, 2]}}
    assert fresh.allow == []


def test_two_handles_see_each_others_writes(store: CredentialStore, store_path: Path) -> None:
    with CredentialStore.open(store_path, PASSWORD) as other:
        assert other.credentials() == []
        store.add(_cred("one"))
        assert [c.alias for c in other.credentials()] == ["one"]
        other.add(_cred("two"))
        assert [c.alias for c in store.credentials()] == ["one", "two"]
        store.remove("one")
        with pytest.raises(CredentialNotFoundError):
            other.get("one")


def test_ten_thousand_credentials_round_trip(store_path: Path) -> None:
    # Written in one sealed document through the store's own encoder, then read back
    # through the public API (adding 10,000 one by one would rewrite the file 10,000 times).
    records = {
        f"cred-{i:05d}": Credential(f"cred-{i:05d}", "api_key", {"key": f"v{i}"})
        for i in range(10_000)
    }
    salt = _sealing.new_salt()
    key = _sealing.derive_key(PASSWORD.encode(), salt, MIN)
    header = _sealing.new_header(MIN, salt)
    store_path.parent.mkdir(mode=0o700)
    store_path.write_bytes(_sealing.seal_box(key, header, encode_document(header, records)))
    with CredentialStore.open(store_path, PASSWORD) as s:
        listed = s.credentials()
        assert len(listed) == 10_000
        assert listed[1234].alias == "cred-01234"
        assert listed[1234].fields == {"key": "v1234"}
        s.add(_cred("zzz"))
        assert len(s.credentials()) == 10_001


# --- validation ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "alias",
    [
        "",
        " lead",
        "trail ",
        "new\nline",
        "tab\there",
        "nul\x00",
        "esc\x1b[31m",
        "zero\u200bwidth",
        "x" * (ALIAS_MAX_LENGTH + 1),
        42,
    ],
)
def test_bad_aliases_are_refused(store: CredentialStore, alias: object) -> None:
    with pytest.raises(CredentialValidationError):
        store.add(Credential(alias=alias, type="api_key", fields={}))  # type: ignore[arg-type]
    assert store.credentials() == []


@pytest.mark.parametrize(
    "alias", ["github-api", "a", "my key", "clé:prod/eu.1", "x" * ALIAS_MAX_LENGTH]
)
def test_good_aliases_are_accepted(store: CredentialStore, alias: str) -> None:
    assert store.add(Credential(alias=alias, type="api_key", fields={})).alias == alias
    assert store.get(alias).alias == alias


def test_unstorable_field_value_is_refused_without_showing_it(store: CredentialStore) -> None:
    with pytest.raises(CredentialValidationError, match="'key'") as info:
        store.add(Credential("a", "api_key", {"key": {SECRET}}))
    assert SECRET not in str(info.value)
    with pytest.raises(CredentialValidationError):
        store.add(Credential("a", "api_key", {"big": 2**70}))
    with pytest.raises(CredentialValidationError):
        store.add(Credential("a", "api_key", {"": "empty field name"}))
    with pytest.raises(CredentialValidationError):
        store.add(Credential("a", "", {}))
    with pytest.raises(CredentialValidationError):
        store.add(Credential("a", "api_key", {}, created_at="yesterday"))
    with pytest.raises(CredentialValidationError):
        store.add(Credential("a", "api_key", {}, allow="https://x/*"))  # type: ignore[arg-type]
    assert store.credentials() == []


# --- wrong password, tampering, truncation ---------------------------------------------------


def test_wrong_password(store: CredentialStore, store_path: Path) -> None:
    store.add(_cred())
    with pytest.raises(WrongPasswordError, match="wrong password") as info:
        CredentialStore.open(store_path, "not the password")
    assert "not the password" not in str(info.value)


def test_flipping_any_header_byte_is_refused(store: CredentialStore, store_path: Path) -> None:
    store.add(_cred())
    good = store_path.read_bytes()
    seen: dict[int, type[BaseException]] = {}
    for offset in range(_sealing.HEADER_SIZE):
        for mask in (0x01, 0x80, 0xFF):
            data = bytearray(good)
            data[offset] ^= mask
            store_path.write_bytes(bytes(data))
            seen[offset] = _expect_any_store_error(store_path)
    assert all(seen[o] is StoreCorruptError for o in range(8))  # magic
    assert seen[8] is StoreFormatError and seen[9] is StoreFormatError
    assert all(seen[o] is WrongPasswordError for o in range(18, 58))  # salt, nonce -> MAC
    store_path.write_bytes(good)
    assert CredentialStore.open(store_path, PASSWORD).get("github").fields["key"] == SECRET


def test_flipping_ciphertext_bytes_is_refused(store: CredentialStore, store_path: Path) -> None:
    store.add(_cred(state={"t": STATE_SECRET}))
    good = store_path.read_bytes()
    offsets = sorted({*range(_sealing.HEADER_SIZE, len(good), 7), len(good) - 1})
    for offset in offsets:
        data = bytearray(good)
        data[offset] ^= 0x01
        store_path.write_bytes(bytes(data))
        with pytest.raises(WrongPasswordError, match="or the file was modified"):
            CredentialStore.open(store_path, PASSWORD)


def test_tampering_seen_by_an_open_handle_is_corruption(
    store: CredentialStore, store_path: Path
) -> None:
    # With a key already proven right, a MAC failure can only mean modified bytes.
    store.add(_cred())
    data = bytearray(store_path.read_bytes())
    data[-5] ^= 0x40
    store_path.write_bytes(bytes(data))
    with pytest.raises(StoreCorruptError, match="modified or damaged"):
        store.credentials()
    with pytest.raises(StoreCorruptError):
        store.add(_cred("other"))
    assert store_path.read_bytes() == bytes(data)  # a refused write changed nothing


def test_truncation_is_refused(store: CredentialStore, store_path: Path) -> None:
    store.add(_cred())
    good = store_path.read_bytes()
    for cut in range(_sealing.HEADER_SIZE + _sealing.MAC_SIZE):
        store_path.write_bytes(good[:cut])
        with pytest.raises(StoreCorruptError):
            CredentialStore.open(store_path, PASSWORD)
    for cut in range(_sealing.HEADER_SIZE + _sealing.MAC_SIZE, len(good), 11):
        store_path.write_bytes(good[:cut])
        with pytest.raises(WrongPasswordError):
            CredentialStore.open(store_path, PASSWORD)


def test_unknown_format_byte(store: CredentialStore, store_path: Path) -> None:
    data = bytearray(store_path.read_bytes())
    data[8] = 3
    store_path.write_bytes(bytes(data))
    with pytest.raises(StoreFormatError, match="format 3"):
        CredentialStore.open(store_path, PASSWORD)


def test_a_format_1_store_relabelled_format_2_is_refused(
    store: CredentialStore, store_path: Path
) -> None:
    # The sealed copy of the header binds the format byte: it cannot be changed from outside.
    data = bytearray(store_path.read_bytes())
    data[8] = 2
    store_path.write_bytes(bytes(data))
    with pytest.raises(StoreCorruptError, match="header does not match"):
        CredentialStore.open(store_path, PASSWORD)


def test_absurd_memlimit_is_refused_before_any_key_derivation(
    store: CredentialStore, store_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_kdf(*args: object, **kwargs: object) -> bytearray:
        raise AssertionError("the KDF ran on a hostile header")

    monkeypatch.setattr(_sealing, "derive_key", no_kdf)
    for ops, mem in [(1, 2**32 - 1), (1, 3 << 30), (2**32 - 1, 8192), (1000, 1 << 20)]:
        data = bytearray(store_path.read_bytes())
        data[10:18] = struct.pack(">II", ops, mem)
        store_path.write_bytes(bytes(data))
        with pytest.raises(StoreCorruptError, match="out-of-bounds"):
            CredentialStore.open(store_path, PASSWORD)


@pytest.mark.parametrize(
    "content",
    [b"", b"VULTRINO", b"hello world", b"\x00" * 1000, b"VULTRINO\x01\x01" + b"\xff" * 200],
)
def test_not_a_store_is_corrupt(store_path: Path, content: bytes) -> None:
    store_path.parent.mkdir(mode=0o700)
    store_path.write_bytes(content)
    with pytest.raises(StoreCorruptError):
        CredentialStore.open(store_path, PASSWORD)


def test_a_fifo_is_not_a_store_and_does_not_hang(store_path: Path) -> None:
    store_path.parent.mkdir(mode=0o700)
    os.mkfifo(store_path)
    with pytest.raises(StoreCorruptError, match="not a regular file"):
        CredentialStore.open(store_path, PASSWORD)


def test_a_directory_is_not_a_store(store_path: Path) -> None:
    store_path.mkdir(parents=True)
    with pytest.raises(StoreCorruptError, match="directory"):
        CredentialStore.open(store_path, PASSWORD)


def test_sealed_garbage_with_the_right_key_is_corrupt(store_path: Path) -> None:
    salt = _sealing.new_salt()
    key = _sealing.derive_key(PASSWORD.encode(), salt, MIN)
    header = _sealing.new_header(MIN, salt)
    other_header = _sealing.new_header(MIN, salt)
    store_path.parent.mkdir(mode=0o700)
    bad_documents = [
        b"\xc1",  # never-used msgpack byte
        b"\x90",  # a list, not a map
        encode_document(other_header, {}),  # a header copy that does not match
        b"\x81\xa6header\xc4\x3a" + header.raw,  # no credential list
    ]
    for plaintext in bad_documents:
        store_path.write_bytes(_sealing.seal_box(key, header, plaintext))
        with pytest.raises(StoreCorruptError, match="malformed"):
            CredentialStore.open(store_path, PASSWORD)


# --- rekey -----------------------------------------------------------------------------------


def test_rekey_changes_password_and_params(store: CredentialStore, store_path: Path) -> None:
    store.add(_cred())
    salt_before = store_path.read_bytes()[18:34]
    new_params = KdfParams(2, 16384)
    store.rekey("the new password", new_params)
    assert store_path.read_bytes()[18:34] != salt_before
    assert store.kdf == new_params
    store.add(_cred("after-rekey"))
    with pytest.raises(WrongPasswordError):
        CredentialStore.open(store_path, PASSWORD)
    with CredentialStore.open(store_path, "the new password") as s:
        assert [c.alias for c in s.credentials()] == ["after-rekey", "github"]
        assert s.kdf == new_params
    assert _temp_files(store_path) == []


def test_rekey_keeps_params_when_none_given(store: CredentialStore) -> None:
    store.rekey("p2")
    assert store.kdf == MIN


def test_other_handle_follows_a_rekey_with_the_same_password(
    store: CredentialStore, store_path: Path
) -> None:
    with CredentialStore.open(store_path, PASSWORD) as other:
        store.rekey(PASSWORD, KdfParams(2, 8192))  # new salt and params, same password
        store.add(_cred())
        assert [c.alias for c in other.credentials()] == ["github"]  # re-derived silently
        other.add(_cred("from-other"))
    assert len(store.credentials()) == 2


def test_other_handle_after_a_password_change_is_refused(
    store: CredentialStore, store_path: Path
) -> None:
    with CredentialStore.open(store_path, PASSWORD) as other:
        store.rekey("changed")
        with pytest.raises(WrongPasswordError, match="re-keyed by another process"):
            other.credentials()
        with pytest.raises(WrongPasswordError):
            other.add(_cred())


def test_rekey_refuses_an_empty_password(store: CredentialStore, store_path: Path) -> None:
    with pytest.raises(PasswordRequiredError):
        store.rekey("")
    CredentialStore.open(store_path, PASSWORD).close()


# --- atomic writes and temp files ------------------------------------------------------------


def test_no_temp_files_after_writes_and_failures(store: CredentialStore, store_path: Path) -> None:
    store.add(_cred())
    store.update_state("github", {"a": 1})
    with pytest.raises(CredentialExistsError):
        store.add(_cred())
    with pytest.raises(CredentialValidationError):
        store.add(Credential("x", "t", {"k": object()}))
    store.remove("github")
    assert _temp_files(store_path) == []
    assert sorted(os.listdir(store_path.parent)) == [
        "credentials.enc",
        "credentials.enc.gen",
        "credentials.enc.lock",
    ]


def test_stale_temp_files_of_dead_writers_are_cleaned(
    store: CredentialStore, store_path: Path
) -> None:
    stale = store_path.parent / ".credentials.enc.99999.deadbeef.tmp"
    stale.write_bytes(b"half a store")
    unrelated = store_path.parent / "notes.tmp"
    unrelated.write_bytes(b"not ours")
    store.add(_cred())
    assert not stale.exists()
    assert unrelated.exists()


# --- locking ---------------------------------------------------------------------------------


def test_a_held_lock_times_out_with_store_locked(store_path: Path) -> None:
    CredentialStore.create(store_path, PASSWORD, MIN).close()
    with CredentialStore.open(store_path, PASSWORD, lock_timeout=0.2) as s:
        with FileLock(lock_path_for(store_path), timeout=1):
            with pytest.raises(StoreLockedError, match="held the store lock"):
                s.add(_cred())
            assert s.credentials() == []  # reads do not need the lock
        s.add(_cred())  # released: works again
    other = CredentialStore.open(store_path, PASSWORD, lock_timeout=0.05)
    with other, FileLock(lock_path_for(store_path), timeout=1), pytest.raises(StoreLockedError):
        other.rekey("x")
    CredentialStore.open(store_path, PASSWORD).close()  # the refused rekey changed nothing


# --- close and secrecy -----------------------------------------------------------------------


def test_close_wipes_and_refuses_further_use(store_path: Path) -> None:
    s = CredentialStore.create(store_path, PASSWORD, MIN)
    key = s._key
    assert key is not None and any(key)
    s.close()
    assert not any(key)
    s.close()  # idempotent
    with pytest.raises(StoreError, match="closed"):
        s.credentials()
    with pytest.raises(StoreError, match="closed"):
        s.add(_cred())
    assert "closed" in repr(s)


def test_repr_of_a_credential_hides_values() -> None:
    cred = _cred(state={"access_token": STATE_SECRET}, description="desc")
    for text in (repr(cred), str(cred), pprint.pformat(cred), f"{cred}", repr([cred])):
        assert SECRET not in text
        assert STATE_SECRET not in text
        assert "key" in text and "github" in text


def test_no_secret_or_password_in_any_error_message(store_path: Path) -> None:
    messages: list[str] = []

    def collect(fn: object, *args: object, **kwargs: object) -> None:
        try:
            fn(*args, **kwargs)  # type: ignore[operator]
        except Exception as exc:
            messages.append(f"{exc!s} {exc!r} {exc.__cause__!r} {exc.__context__!r}")

    s = CredentialStore.create(store_path, PASSWORD, MIN)
    s.add(_cred(state={"t": STATE_SECRET}))
    collect(CredentialStore.create, store_path, PASSWORD, MIN)
    collect(CredentialStore.open, store_path, SECRET)
    collect(s.add, _cred())
    collect(s.add, Credential("bad\n", "api_key", {"key": SECRET}))
    collect(s.add, Credential("x", "api_key", {"key": [SECRET, {SECRET}]}))
    collect(s.update_state, "github", {"t": {STATE_SECRET}})
    collect(s.get, "missing")
    data = bytearray(store_path.read_bytes())
    data[-1] ^= 1
    store_path.write_bytes(bytes(data))
    Generation(store_path).bump()  # seen now, not after UNSIGNALLED_CHANGE_SECONDS
    collect(s.credentials)
    collect(CredentialStore.open, store_path, PASSWORD)
    s.close()
    collect(s.get, "github")
    assert len(messages) == 10
    for message in messages:
        assert PASSWORD not in message
        assert SECRET not in message
        assert STATE_SECRET not in message


def test_add_many_is_one_atomic_write(store: CredentialStore, store_path: Path) -> None:
    stored = store.add_many([_cred(f"bulk-{i}") for i in range(50)])
    assert [c.alias for c in stored] == [f"bulk-{i}" for i in range(50)]
    with CredentialStore.open(store_path, PASSWORD) as again:
        assert len(again.credentials()) == 50
    # all or none: one taken alias refuses the whole batch
    with pytest.raises(CredentialExistsError):
        store.add_many([_cred("fresh"), _cred("bulk-3")])
    with CredentialStore.open(store_path, PASSWORD) as again:
        assert "fresh" not in {c.alias for c in again.credentials()}


# --- the change counter ----------------------------------------------------------------------


def test_writes_by_another_handle_are_seen_at_once_through_the_counter(
    store: CredentialStore, store_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # With the periodic stat pushed out of reach, only the counter can reveal the changes.
    monkeypatch.setattr(credentials_module, "UNSIGNALLED_CHANGE_SECONDS", 1e9)
    with CredentialStore.open(store_path, PASSWORD) as other:
        assert other.credentials() == []
        for i in range(3):
            store.add(_cred(f"c{i}"))
            assert [c.alias for c in other.credentials()][-1] == f"c{i}"
        store.update_state("c0", {"t": "new-state"})
        assert other.get("c0").state == {"t": "new-state"}
        store.remove("c1")
        with pytest.raises(CredentialNotFoundError):
            other.get("c1")


def test_reads_skip_the_stat_while_the_counter_is_unchanged(
    store: CredentialStore, store_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.add(_cred())
    store.get("github")  # the first read after a write checks the file
    monkeypatch.setattr(credentials_module, "UNSIGNALLED_CHANGE_SECONDS", 1e9)
    calls: list[object] = []
    real_stat = os.stat

    def counting_stat(path: object, *args: object, **kwargs: object) -> os.stat_result:
        calls.append(path)
        return real_stat(path, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(credentials_module.os, "stat", counting_stat)
    for _ in range(100):
        store.get("github")
    assert calls == []


def test_a_replacement_that_skips_the_counter_is_seen_by_the_periodic_stat(
    store: CredentialStore, store_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A backup copied back over the store does not bump the counter: the bounded fallback.
    store.add(_cred("old"))
    backup = store_path.read_bytes()
    store.add(_cred("new"))
    assert [c.alias for c in store.credentials()] == ["new", "old"]
    store_path.write_bytes(backup)
    monkeypatch.setattr(credentials_module, "UNSIGNALLED_CHANGE_SECONDS", 0.0)
    assert [c.alias for c in store.credentials()] == ["old"]


def test_a_deleted_counter_file_is_recreated_and_followed(
    store: CredentialStore, store_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gen = store_path.with_name("credentials.enc.gen")
    with CredentialStore.open(store_path, PASSWORD) as other:
        other.credentials()
        gen.unlink()
        monkeypatch.setattr(credentials_module, "UNSIGNALLED_CHANGE_SECONDS", 0.0)
        other.credentials()  # the periodic check maps the new file
        monkeypatch.setattr(credentials_module, "UNSIGNALLED_CHANGE_SECONDS", 1e9)
        other.credentials()
        store.add(_cred("after"))
        assert gen.exists() and gen.stat().st_mode & 0o777 == 0o600
        assert [c.alias for c in other.credentials()] == ["after"]


# --- the audit log's signing key -------------------------------------------------------------


def test_the_audit_key_is_made_on_first_need_sealed_and_kept_by_rekey(
    store: CredentialStore, store_path: Path
) -> None:
    from vultrino.store import verify_signature

    before = store_path.read_bytes()
    assert store.audit_public_key() is None
    sig, key = store.sign_audit_head(b"head")
    assert verify_signature(key, b"head", sig) and not verify_signature(key, b"other", sig)
    assert store_path.read_bytes() != before  # the new key was sealed into the file
    assert key not in store_path.read_bytes()
    other = CredentialStore.open(store_path, PASSWORD)
    assert other.audit_public_key() == key  # another handle (process) uses the same key
    assert other.sign_audit_head(b"x")[1] == key
    other.add(_cred("after"))  # a write by a handle that never signed keeps the key
    store.rekey("pw2", MIN)
    store.close()
    with CredentialStore.open(store_path, "pw2") as reopened:
        assert reopened.audit_public_key() == key
        assert verify_signature(key, b"y", reopened.sign_audit_head(b"y")[0])
    other.close()


def test_a_store_without_an_audit_key_reads_as_having_none(
    store: CredentialStore, store_path: Path
) -> None:
    from vultrino.store.credentials import decode_store

    header = _sealing.new_header(MIN, b"s" * 16)
    assert decode_store(packb({"header": header.raw, "credentials": []}), header, "x")[2] is None
    with pytest.raises(StoreCorruptError):
        decode_store(
            packb({"header": header.raw, "credentials": [], "audit_key": b"short"}), header, "x"
        )


def test_host_fields_persist_and_a_change_only_adds_to_them(
    store: CredentialStore, store_path: Path
) -> None:
    stored = store.add(_cred("signer", secret_fields=["key"], host_fields=["key"]))
    assert stored.host_fields == ["key"]

    def drop(c: Credential) -> Credential:
        c.host_fields = []  # what a re-installed manifest without access = "host" would say
        c.description = "changed"
        return c

    _, after = store.modify("signer", drop)
    assert after.host_fields == ["key"]
    with CredentialStore.open(store_path, PASSWORD) as again:
        assert again.get("signer").host_fields == ["key"]
    # a credential without host-only fields is written as it always was
    plain = store.add(_cred("plain"))
    assert plain.host_fields == []
    assert "host_fields" not in credentials_module._encode_record(plain)
