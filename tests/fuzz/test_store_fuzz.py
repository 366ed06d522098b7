"""Property tests: whatever bytes sit in credentials.enc, opening or re-reading it either works
(and yields well-formed credentials) or raises a StoreError subclass - never anything else.

Three layers are fuzzed: arbitrary files, mutations of a real store (bit flips, truncation,
insertion, splicing), and arbitrary documents sealed with the right key (so the MAC passes and
the msgpack/record parser behind it is exercised). ``VULTRINO_FUZZ_EXAMPLES`` raises the
example count (``just fuzz``); without it the run is derandomized with a fixed count.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

from vultrino._msgpack import packb
from vultrino.errors import StoreCorruptError, StoreError
from vultrino.store import Credential, CredentialStore, KdfParams, _sealing
from vultrino.store.credentials import decode_document

PASSWORD = "fuzz password"
MIN = KdfParams.minimal()
_EXAMPLES = os.environ.get("VULTRINO_FUZZ_EXAMPLES")
FUZZ = settings(
    max_examples=int(_EXAMPLES) if _EXAMPLES else 200,
    derandomize=not _EXAMPLES,
    deadline=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,
    ],
)
# Generating whole documents is the slow part; half the examples keep CI time in check.
FUZZ_DOCUMENTS = settings(FUZZ, max_examples=int(_EXAMPLES) if _EXAMPLES else 100)
# Mutations may land on an in-bounds but expensive KDF setting (up to 1 GiB is allowed); the
# fuzzer skips those rather than spend seconds and gigabytes per example.
CHEAP_OPS, CHEAP_MEM = 4, 1 << 20


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("storefuzz")


@pytest.fixture(scope="module")
def real_store(workdir: Path) -> bytes:
    """The bytes of a genuine store with a few varied credentials."""
    path = workdir / "seed" / "credentials.enc"
    with CredentialStore.create(path, PASSWORD, MIN) as store:
        store.add(Credential("github", "api_key", {"key": "s3cret", "header": "Authorization"}))
        store.add(
            Credential(
                "release-key",
                "plugin:pgp-signing:pgp_key",
                {"armored": "-----BEGIN PGP-----", "raw": b"\x00\x01"},
                description="signing",
                allow=["https://example.com/*"],
                secret_fields=["armored"],
                state={"n": 1, "nested": {"a": [1, 2.5, None, True]}},
            )
        )
    return path.read_bytes()


@pytest.fixture(scope="module")
def target(workdir: Path) -> Path:
    path = workdir / "target" / "credentials.enc"
    path.parent.mkdir(mode=0o700)
    return path


def _cheap(data: bytes) -> bool:
    if len(data) < 18 or data[:8] != b"VULTRINO":
        return True
    ops, mem = struct.unpack(">II", data[10:18])
    return not (_sealing.MIN_OPSLIMIT <= ops <= _sealing.MAX_OPSLIMIT) or (
        ops <= CHEAP_OPS and mem <= CHEAP_MEM
    )


def _assert_well_formed(creds: list[Credential]) -> None:
    aliases = [c.alias for c in creds]
    assert aliases == sorted(aliases) and len(set(aliases)) == len(aliases)
    for c in creds:
        assert isinstance(c.alias, str) and c.alias
        assert isinstance(c.type, str) and isinstance(c.description, str)
        assert isinstance(c.fields, dict) and all(isinstance(k, str) for k in c.fields)
        assert isinstance(c.state, dict) and all(isinstance(k, str) for k in c.state)
        assert all(isinstance(v, str) for v in c.allow)
        assert all(isinstance(v, str) for v in c.secret_fields)
        assert isinstance(c.created_at, str) and isinstance(c.updated_at, str)
        repr(c)


def _open(path: Path, data: bytes) -> list[Credential] | None:
    """Write ``data`` as the store and open it: a StoreError is fine, anything else fails."""
    path.write_bytes(data)
    try:
        with CredentialStore.open(path, PASSWORD) as store:
            creds = store.credentials()
    except StoreError as exc:
        assert PASSWORD not in str(exc)
        return None
    _assert_well_formed(creds)
    return creds


# --- arbitrary files -------------------------------------------------------------------------

_in_bounds_cheap = st.tuples(st.integers(1, CHEAP_OPS), st.integers(8192, CHEAP_MEM))
_out_of_bounds = st.tuples(
    st.sampled_from([0, 17, 1000, 2**32 - 1]), st.integers(0, 2**32 - 1)
) | st.tuples(st.integers(1, 4), st.sampled_from([0, 8191, (1 << 30) + 1, 2**32 - 1]))

headers = st.builds(
    lambda fmt, kdf, params, salt, nonce: (
        b"VULTRINO" + struct.pack(">BBII", fmt, kdf, *params) + salt + nonce
    ),
    st.sampled_from([1, 1, 1, 0, 2, 255]),
    st.sampled_from([1, 1, 1, 0, 2, 255]),
    _in_bounds_cheap | _out_of_bounds,
    st.binary(min_size=16, max_size=16),
    st.binary(min_size=24, max_size=24),
)


@FUZZ
@given(data=st.binary(max_size=400))
def test_arbitrary_bytes(target: Path, data: bytes) -> None:
    assume(_cheap(data))
    _open(target, data)


@FUZZ
@given(header=headers, body=st.binary(max_size=300))
def test_plausible_header_then_garbage(target: Path, header: bytes, body: bytes) -> None:
    assert _open(target, header + body) is None


# --- mutations of a real store ---------------------------------------------------------------


def _mutations() -> st.SearchStrategy[Any]:
    flip = st.tuples(st.just("flip"), st.integers(0, 10_000), st.integers(1, 255))
    cut = st.tuples(st.just("cut"), st.integers(0, 10_000), st.just(0))
    insert = st.tuples(st.just("insert"), st.integers(0, 10_000), st.integers(0, 255))
    delete = st.tuples(st.just("delete"), st.integers(0, 10_000), st.integers(1, 8))
    return st.lists(flip | cut | insert | delete, min_size=1, max_size=4)


def _apply(data: bytes, ops: list[tuple[str, int, int]]) -> bytes:
    buf = bytearray(data)
    for kind, pos, arg in ops:
        pos = pos % (len(buf) + 1)
        if kind == "flip" and pos < len(buf):
            buf[pos] ^= arg
        elif kind == "cut":
            del buf[pos:]
        elif kind == "insert":
            buf[pos:pos] = bytes([arg])
        elif kind == "delete":
            del buf[pos : pos + arg]
    return bytes(buf)


@FUZZ
@given(ops=_mutations())
def test_mutated_store_fresh_open(target: Path, real_store: bytes, ops: Any) -> None:
    data = _apply(real_store, ops)
    assume(data != real_store and _cheap(data))
    assert _open(target, data) is None  # any change to a sealed store is refused


@FUZZ
@given(ops=_mutations())
def test_mutated_store_seen_by_an_open_handle(target: Path, real_store: bytes, ops: Any) -> None:
    data = _apply(real_store, ops)
    assume(data != real_store and _cheap(data))
    target.write_bytes(real_store)
    with CredentialStore.open(target, PASSWORD) as store:
        target.write_bytes(data)
        os.utime(target, ns=(1, 1))  # make sure the stat signature changes
        with pytest.raises(StoreError):
            store.credentials()
        with pytest.raises(StoreError):
            store.add(Credential("new", "api_key", {}))
    assert target.read_bytes() == data  # a refused write touched nothing


# --- documents sealed with the right key -----------------------------------------------------

scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats()
    | st.text(max_size=20)
    | st.binary(max_size=20)
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=6,
)
str_maps = st.dictionaries(st.text(max_size=5), values, max_size=3)
record_keys = st.sampled_from(
    [
        "alias",
        "type",
        "description",
        "fields",
        "allow",
        "secret_fields",
        "state",
        "created_at",
        "updated_at",
        "other",
    ]
)
# Either anything under the record keys, or a record close to valid (often fully valid).
records = st.dictionaries(record_keys, values, max_size=6) | st.fixed_dictionaries(
    {"alias": st.text(min_size=1, max_size=6), "type": st.text(max_size=6), "fields": str_maps},
    optional={
        "state": str_maps | values,
        "allow": st.lists(st.text(max_size=5) | st.integers(-5, 5), max_size=3),
        "secret_fields": st.lists(st.text(max_size=5), max_size=3),
        "description": st.text(max_size=5) | st.integers(-5, 5),
        "created_at": st.text(max_size=5),
    },
)


@pytest.fixture(scope="module")
def sealer() -> Iterator[Any]:
    salt = _sealing.new_salt()
    key = _sealing.derive_key(PASSWORD.encode(), salt, MIN)

    def seal(make_document: Any) -> bytes:
        header = _sealing.new_header(MIN, salt)
        return _sealing.seal_box(key, header, make_document(header))

    yield seal


@FUZZ
@given(plaintext=st.binary(max_size=300))
def test_sealed_arbitrary_bytes(target: Path, sealer: Any, plaintext: bytes) -> None:
    assert _open(target, sealer(lambda header: plaintext)) is None


@FUZZ
@given(doc=values)
def test_sealed_arbitrary_msgpack(target: Path, sealer: Any, doc: Any) -> None:
    assert _open(target, sealer(lambda header: packb(doc))) is None


@FUZZ_DOCUMENTS
@given(items=st.lists(records, max_size=4), extra=str_maps)
def test_sealed_plausible_documents(
    target: Path, sealer: Any, items: list[dict[str, Any]], extra: dict[str, Any]
) -> None:
    def make(header: _sealing.Header) -> bytes:
        return packb({**extra, "header": header.raw, "credentials": items})

    creds = _open(target, sealer(make))
    event("accepted" if creds is not None else "refused")
    if creds is not None:
        assert len(creds) == len(items)


@FUZZ
@given(plaintext=st.binary(max_size=300) | values.map(packb))
def test_decode_document_raises_only_store_corrupt(plaintext: bytes) -> None:
    header = _sealing.new_header(MIN, b"s" * 16)
    try:
        result = decode_document(plaintext, header, "fuzz")
    except StoreCorruptError:
        return
    _assert_well_formed(sorted(result.values(), key=lambda c: c.alias))
