"""The web UI's admin password in the sealed store: an Argon2id hash, never the password."""

from __future__ import annotations

from pathlib import Path

import pytest

from vultrino.store import Credential, CredentialStore, KdfParams, _sealing
from vultrino.store.credentials import decode_all

MIN = KdfParams.minimal()


def _document(path: Path, password: str) -> bytes:
    data = path.read_bytes()
    header = _sealing.parse_header(data, str(path))
    key = _sealing.derive_key(password.encode(), header.salt, header.kdf)
    return _sealing.open_box(key, header, data)


def test_set_check_and_reopen(tmp_path: Path) -> None:
    path = tmp_path / "credentials.enc"
    with CredentialStore.create(path, "store-pw", MIN) as store:
        assert not store.has_admin_password()
        assert not store.check_admin_password("anything")
        store.put(Credential(alias="a", type="api_key", fields={"key": "k"}))
        assert path.read_bytes()[8] == 1  # no admin password: the format stays 1
        store.set_admin_password("correct horse")
        assert store.check_admin_password("correct horse")
        assert not store.check_admin_password("correct hors")
    assert path.read_bytes()[8] == 2  # an older Vultrino would drop the hash: it must refuse
    plaintext = _document(path, "store-pw")
    assert b"correct horse" not in plaintext
    data = path.read_bytes()
    header = _sealing.parse_header(data, str(path))
    *_, hashed = decode_all(plaintext, header, "t")
    assert hashed is not None and hashed.startswith("$argon2id$")
    with CredentialStore.open(path, "store-pw") as store:
        assert store.check_admin_password("correct horse")
        store.rekey("new-store-pw")  # a rekey keeps it
    with CredentialStore.open(path, "new-store-pw") as store:
        assert store.check_admin_password("correct horse")
        assert [c.alias for c in store.credentials()] == ["a"]


def test_another_process_sees_the_change(tmp_path: Path) -> None:
    path = tmp_path / "credentials.enc"
    with (
        CredentialStore.create(path, "store-pw", MIN) as one,
        CredentialStore.open(path, "store-pw") as two,
    ):
        one.set_admin_password("first password")
        assert two.check_admin_password("first password")
        two.set_admin_password("second password")
        assert not one.check_admin_password("first password")
        assert one.check_admin_password("second password")


@pytest.mark.parametrize("hashed", ["", "$argon2id$garbage", "not a hash"])
def test_a_malformed_hash_never_matches(hashed: str) -> None:
    assert not _sealing.check_password(hashed, b"")
    assert not _sealing.check_password(hashed, b"x")
