"""Opening the store with a derived key (what an unlock session holds) instead of a password,
and the durations `vultrino unlock --for` takes."""

from __future__ import annotations

from pathlib import Path

import pytest

from vultrino.errors import ConfigError, StoreError, WrongPasswordError
from vultrino.store import Credential, CredentialStore, KdfParams, StoreKey
from vultrino.unlock import MAX_SECONDS, parse_duration

PASSWORD = "store-key unit password"


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    path = tmp_path / "credentials.enc"
    with CredentialStore.create(path, PASSWORD, KdfParams.minimal()) as s:
        s.add(Credential(alias="a", type="bearer", fields={"token": "t0ken-a"}))
    return path


def test_a_session_key_opens_the_store_and_writes_to_it(store_path: Path) -> None:
    with CredentialStore.open(store_path, PASSWORD) as s:
        key = s.session_key()
    assert repr(key) == "StoreKey(<hidden>)"
    with CredentialStore.open(store_path, key=key) as s:
        assert s.get("a").fields == {"token": "t0ken-a"}
        s.add(Credential(alias="b", type="bearer", fields={"token": "t0ken-b"}))
    # the key stays good for every later version of the file, until a rekey
    with CredentialStore.open(store_path, key=key) as s:
        assert [c.alias for c in s.credentials()] == ["a", "b"]
    with CredentialStore.open(store_path, PASSWORD) as s:
        assert s.get("b").fields == {"token": "t0ken-b"}


def test_a_key_from_before_a_rekey_is_refused_by_name(store_path: Path) -> None:
    with CredentialStore.open(store_path, PASSWORD) as s:
        key = s.session_key()
        s.rekey("a new password")
    with pytest.raises(WrongPasswordError, match="re-keyed since the session began"):
        CredentialStore.open(store_path, key=key)


def test_a_wrong_key_for_the_right_binding_means_a_modified_file(store_path: Path) -> None:
    with CredentialStore.open(store_path, PASSWORD) as s:
        good = s.session_key()
    bad = StoreKey(bytearray(b"\x01" * 32), good.binding)
    with pytest.raises(WrongPasswordError, match="the file was modified"):
        CredentialStore.open(store_path, key=bad)


def test_a_store_open_with_a_key_does_not_follow_another_processes_rekey(
    store_path: Path,
) -> None:
    """With a password the handle derives the new key; with only a key it cannot, and says
    so rather than reading with a stale key."""
    with CredentialStore.open(store_path, PASSWORD) as s:
        key = s.session_key()
    with CredentialStore.open(store_path, key=key) as by_key:
        with CredentialStore.open(store_path, PASSWORD) as other:
            other.rekey("another password")
        with pytest.raises(WrongPasswordError, match="re-keyed by another process"):
            by_key.add(Credential(alias="c", type="bearer", fields={"token": "t"}))


def test_password_and_key_together_are_a_mistake(store_path: Path) -> None:
    with CredentialStore.open(store_path, PASSWORD) as s:
        key = s.session_key()
    with pytest.raises(ValueError, match="not both"):
        CredentialStore.open(store_path, PASSWORD, key=key)


def test_a_store_key_has_the_sizes_of_one(store_path: Path) -> None:
    with pytest.raises(StoreError, match="32 bytes"):
        StoreKey(bytearray(16), b"x" * 34)
    key = StoreKey(bytearray(b"\x07" * 32), b"x" * 34)
    key.wipe()
    assert key.key == bytearray(32)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90", 90), ("30s", 30), ("15m", 900), ("1h", 3600), ("2h30m", 9000), ("1d", 86400)],
)
def test_durations(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "m", "1x", "1h 5m", "-5m", "1.5h", "0", "8d"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ConfigError, match="--for"):
        parse_duration(text)
    assert MAX_SECONDS == 7 * 86400
