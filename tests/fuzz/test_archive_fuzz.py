"""Fuzzing the archive extractor: whatever the bytes, it only ever raises InstallError (or its
subclass UnsafeSourceError), and it never writes outside its target directory.

Three generators: arbitrary bytes; structured archives built from hostile pieces (absolute
names, ``..``, links in and out, hard links, devices, duplicates); and real archives with bytes
flipped, truncated or appended after compression. After every example the test checks that
the sibling of the target directory is untouched and that nothing under the target resolves
outside it.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import os
import tarfile
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vultrino.errors import InstallError
from vultrino.plugins.install._archive import extract_tar_gz, is_inside

MAX_BYTES = 64 * 1024
MAX_FILES = 40
FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

_PARTS = st.sampled_from(["a", "b", "..", ".", "", "/", "sub", "x.wasm", "plugin.toml", "\x01"])
_NAMES = st.lists(_PARTS, min_size=1, max_size=4).map("/".join) | st.sampled_from(
    ["/abs", "../up", "a/../../up", "./a", "a/", "//", "C:/x"]
)
_KINDS = st.sampled_from(
    [
        tarfile.REGTYPE,
        tarfile.REGTYPE,
        tarfile.DIRTYPE,
        tarfile.SYMTYPE,
        tarfile.SYMTYPE,
        tarfile.SYMTYPE,
        tarfile.LNKTYPE,
        tarfile.FIFOTYPE,
        tarfile.CHRTYPE,
        b"V",
        b"K",
    ]
)
# Link targets that combine into escapes: ``a -> .`` plus ``b -> a/..`` is the parent.
_LINKS = st.sampled_from([".", "a/..", "b/..", "sub", "a/b/../..", "..", "/etc/passwd"])
_MEMBERS = st.lists(
    st.tuples(
        st.sampled_from(["a", "b", "sub", "a/b", "sub/x"]) | _NAMES,
        _KINDS,
        st.binary(max_size=64),
        _LINKS | _NAMES,
    ),
    max_size=8,
)


def _build(members: list[tuple[str, bytes, bytes, str]]) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for name, kind, data, link in members:
            info = tarfile.TarInfo(name)
            info.type = kind
            info.linkname = link
            if kind == tarfile.REGTYPE:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            else:
                tar.addfile(info)
    return gzip.compress(raw.getvalue(), compresslevel=1)


def _check(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        decoy = base / "decoy"
        decoy.mkdir()
        (decoy / "keep").write_text("keep")
        archive = base / "in.tar.gz"
        archive.write_bytes(data)
        target = base / "out"
        with contextlib.suppress(InstallError):  # refusing is fine; anything else fails
            extract_tar_gz(archive, target, max_bytes=MAX_BYTES, max_files=MAX_FILES)
        # Nothing appeared next to the target, and the decoy is as it was.
        assert sorted(os.listdir(base)) == ["decoy", "in.tar.gz", "out"]
        assert os.listdir(decoy) == ["keep"]
        assert (decoy / "keep").read_text() == "keep"
        # Nothing under the target leads outside it.
        for dirpath, dirnames, filenames in os.walk(target):
            for name in [*dirnames, *filenames]:
                assert is_inside(Path(dirpath) / name, target), (dirpath, name)


@FUZZ
@given(st.binary(max_size=2048))
def test_arbitrary_bytes(data: bytes) -> None:
    _check(data)


@FUZZ
@given(st.binary(max_size=512).map(lambda b: gzip.compress(b, compresslevel=1)))
def test_arbitrary_gzipped_bytes(data: bytes) -> None:
    _check(data)


@FUZZ
@given(_MEMBERS)
def test_structured_hostile_archives(members: list[tuple[str, bytes, bytes, str]]) -> None:
    _check(_build(members))


@FUZZ
@given(
    _MEMBERS,
    st.lists(st.tuples(st.integers(min_value=0), st.integers(0, 255)), max_size=6),
    st.integers(min_value=0),
    st.binary(max_size=32),
)
def test_mutated_archives(
    members: list[tuple[str, bytes, bytes, str]],
    flips: list[tuple[int, int]],
    cut: int,
    tail: bytes,
) -> None:
    data = bytearray(_build(members))
    for pos, value in flips:
        data[pos % len(data)] = value
    data = data[: max(1, cut % (len(data) + 1))] + tail
    _check(bytes(data))


@FUZZ
@given(_MEMBERS, st.lists(st.tuples(st.integers(min_value=0), st.integers(0, 255)), max_size=6))
def test_mutated_tar_before_compression(
    members: list[tuple[str, bytes, bytes, str]], flips: list[tuple[int, int]]
) -> None:
    """Flips inside the tar stream itself (headers, checksums, sizes), then a valid gzip."""
    raw = bytearray(gzip.decompress(_build(members)))
    for pos, value in flips:
        raw[pos % len(raw)] = value
    _check(gzip.compress(bytes(raw), compresslevel=1))


_LINK_SOUP = st.lists(
    st.tuples(
        st.sampled_from(["a", "b", "c", "d/x"]),
        st.sampled_from([tarfile.SYMTYPE] * 4 + [tarfile.DIRTYPE, tarfile.REGTYPE]),
        st.just(b"x"),
        st.sampled_from([".", "a/..", "b/..", "c/../..", "a/b/..", "d", "../x"]),
    ),
    min_size=1,
    max_size=5,
    unique_by=lambda m: m[0],
)


@FUZZ
@given(_LINK_SOUP)
def test_link_soup(members: list[tuple[str, bytes, bytes, str]]) -> None:
    """Only links (and a few dirs/files) whose targets chain: the realpath check must hold."""
    _check(_build(members))
