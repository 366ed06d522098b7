"""The sealed file format: header layout, bounds, key derivation, secretbox (docs/store.md)."""

from __future__ import annotations

import struct

import pytest

from vultrino.errors import ConfigError, StoreCorruptError, StoreFormatError
from vultrino.store import KdfParams, _sealing
from vultrino.store._sealing import HEADER_SIZE, MAC_SIZE, Unauthentic


def _header(fmt: int = 1, kdf: int = 1, ops: int = 1, mem: int = 8192) -> bytes:
    return b"VULTRINO" + struct.pack(">BBII", fmt, kdf, ops, mem) + bytes(range(16)) + b"N" * 24


def test_header_layout_is_58_big_endian_bytes() -> None:
    params = KdfParams(2, 65536)
    header = _sealing.new_header(params, b"S" * 16)
    raw = header.raw
    assert len(raw) == HEADER_SIZE == 58
    assert raw[:8] == b"VULTRINO"
    assert raw[8] == 1  # format
    assert raw[9] == 1  # kdf = argon2id
    assert raw[10:14] == (2).to_bytes(4, "big")
    assert raw[14:18] == (65536).to_bytes(4, "big")
    assert raw[18:34] == b"S" * 16
    assert raw[34:58] == header.nonce
    parsed = _sealing.parse_header(raw + bytes(MAC_SIZE), "f")
    assert parsed == header


def test_every_write_gets_a_fresh_nonce() -> None:
    params = KdfParams.minimal()
    nonces = {_sealing.new_header(params, b"s" * 16).nonce for _ in range(50)}
    assert len(nonces) == 50


def test_defaults_use_at_least_64_mib_and_minimal_is_libsodium_minimum() -> None:
    default = KdfParams.default()
    assert default.memlimit >= 64 << 20
    assert default.opslimit >= 2
    assert KdfParams.minimal() == KdfParams(1, 8192)


@pytest.mark.parametrize(
    ("ops", "mem"),
    [(0, 8192), (17, 8192), (1, 8191), (1, (1 << 30) + 1), (1, 2**32 - 1), ("3", 8192)],
)
def test_kdf_params_out_of_bounds_are_a_config_error(ops: object, mem: object) -> None:
    with pytest.raises(ConfigError, match="invalid key-derivation parameters"):
        KdfParams(ops, mem)  # type: ignore[arg-type]


def test_derive_key_depends_on_password_salt_and_every_parameter() -> None:
    salt = b"\x01" * 16
    base = _sealing.derive_key(b"pw", salt, KdfParams(1, 8192))
    assert len(base) == 32
    assert _sealing.derive_key(b"pw", salt, KdfParams(1, 8192)) == base
    others = [
        _sealing.derive_key(b"pW", salt, KdfParams(1, 8192)),
        _sealing.derive_key(b"pw", b"\x02" * 16, KdfParams(1, 8192)),
        _sealing.derive_key(b"pw", salt, KdfParams(2, 8192)),
        _sealing.derive_key(b"pw", salt, KdfParams(1, 16384)),
    ]
    assert all(key != base for key in others)


def test_seal_then_open_round_trip_and_wrong_key_is_unauthentic() -> None:
    params = KdfParams.minimal()
    salt = _sealing.new_salt()
    key = _sealing.derive_key(b"pw", salt, params)
    header = _sealing.new_header(params, salt)
    data = _sealing.seal_box(key, header, b"plaintext document")
    assert data[:HEADER_SIZE] == header.raw
    assert len(data) == HEADER_SIZE + MAC_SIZE + len(b"plaintext document")
    assert b"plaintext" not in data
    assert _sealing.open_box(key, header, data) == b"plaintext document"
    wrong = _sealing.derive_key(b"other", salt, params)
    with pytest.raises(Unauthentic):
        _sealing.open_box(wrong, header, data)
    flipped = bytearray(data)
    flipped[-1] ^= 1
    with pytest.raises(Unauthentic):
        _sealing.open_box(key, header, bytes(flipped))


def test_truncation_at_every_header_offset_is_corrupt() -> None:
    data = _header() + bytes(MAC_SIZE)
    for cut in range(len(data)):
        with pytest.raises(StoreCorruptError):
            _sealing.parse_header(data[:cut], "f")
    _sealing.parse_header(data, "f")  # the full length parses


def test_wrong_magic_is_corrupt() -> None:
    with pytest.raises(StoreCorruptError, match="not a Vultrino credential store"):
        _sealing.parse_header(b"NOTASTORE" + bytes(100), "f")


@pytest.mark.parametrize(("fmt", "kdf"), [(0, 1), (3, 1), (255, 1), (1, 0), (1, 2), (1, 255)])
def test_unknown_format_or_kdf_is_a_format_error(fmt: int, kdf: int) -> None:
    with pytest.raises(StoreFormatError, match="upgrade Vultrino"):
        _sealing.parse_header(_header(fmt=fmt, kdf=kdf) + bytes(MAC_SIZE), "f")


@pytest.mark.parametrize(
    ("ops", "mem"), [(0, 8192), (2**32 - 1, 8192), (1, 2**32 - 1), (1, 1 << 31), (1, 0)]
)
def test_out_of_bounds_header_params_are_corrupt(ops: int, mem: int) -> None:
    with pytest.raises(StoreCorruptError, match="out-of-bounds key-derivation parameters"):
        _sealing.parse_header(_header(ops=ops, mem=mem) + bytes(MAC_SIZE), "f")


def test_wipe_zeroes_the_buffer() -> None:
    buf = bytearray(b"key material")
    _sealing.wipe(buf)
    assert buf == bytearray(len(b"key material"))
    _sealing.wipe(None)
