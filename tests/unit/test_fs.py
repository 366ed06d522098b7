"""vultrino._fs: the one atomic-write helper every whole-file writer uses."""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import threading
from pathlib import Path
from typing import Any

import pytest

from vultrino import _fs


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _fsyncs(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record what each os.fsync call synced: 'dir' or 'file'."""
    calls: list[str] = []
    real = os.fsync

    def fsync(fd: int) -> None:
        calls.append("dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file")
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    return calls


def test_a_new_file_is_0600_whatever_the_umask(tmp_path: Path) -> None:
    target = tmp_path / "secret"
    old = os.umask(0)
    try:
        _fs.atomic_write(target, b"data")
    finally:
        os.umask(old)
    assert target.read_bytes() == b"data"
    assert _mode(target) == 0o600


def test_the_mode_is_exact_even_where_the_umask_would_take_bits(tmp_path: Path) -> None:
    target = tmp_path / "module"
    old = os.umask(0o077)
    try:
        _fs.atomic_write(target, b"x", mode=0o644)
    finally:
        os.umask(old)
    assert _mode(target) == 0o644


def test_replacing_a_file_gives_the_new_content_and_mode(tmp_path: Path) -> None:
    target = tmp_path / "f"
    target.write_bytes(b"old")
    target.chmod(0o644)
    _fs.atomic_write(target, b"new")
    assert target.read_bytes() == b"new"
    assert _mode(target) == 0o600
    assert os.listdir(tmp_path) == ["f"]


def test_a_failure_mid_write_leaves_the_old_content_and_no_temp_file(tmp_path: Path) -> None:
    target = tmp_path / "store"
    target.write_bytes(b"old content")
    with pytest.raises(RuntimeError, match="disk gone"), _fs.atomic_writer(target) as fh:
        fh.write(b"half of the new ")
        raise RuntimeError("disk gone")
    assert target.read_bytes() == b"old content"
    assert os.listdir(tmp_path) == ["store"]


def test_a_failing_fsync_leaves_the_old_content_and_no_temp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "store"
    target.write_bytes(b"old content")

    def fsync(fd: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "fsync", fsync)
    with pytest.raises(OSError, match="Input/output"):
        _fs.atomic_write(target, b"new content")
    assert target.read_bytes() == b"old content"
    assert os.listdir(tmp_path) == ["store"]


def test_a_failing_rename_leaves_the_old_content_and_no_temp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "store"
    target.write_bytes(b"old content")

    def replace(src: Any, dst: Any) -> None:
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(OSError, match="cross-device"):
        _fs.atomic_write(target, b"new content")
    assert target.read_bytes() == b"old content"
    assert os.listdir(tmp_path) == ["store"]


def test_an_unwritable_directory_is_an_oserror_and_changes_nothing(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("root writes anywhere")
    target = tmp_path / "f"
    target.write_bytes(b"old")
    tmp_path.chmod(0o500)
    try:
        with pytest.raises(PermissionError):
            _fs.atomic_write(target, b"new")
    finally:
        tmp_path.chmod(0o700)
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["f"]


def test_the_file_then_the_directory_are_synced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = _fsyncs(monkeypatch)
    _fs.atomic_write(tmp_path / "f", b"data")
    assert calls == ["file", "dir"]


def test_fsync_parent_false_leaves_the_directory_to_the_caller(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = _fsyncs(monkeypatch)
    _fs.atomic_write(tmp_path / "f", b"data", fsync_parent=False)
    assert calls == ["file"]
    _fs.fsync_dir(tmp_path)
    assert calls == ["file", "dir"]


def test_fsync_false_syncs_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _fsyncs(monkeypatch)
    _fs.atomic_write(tmp_path / "f", b"data", fsync=False)
    assert calls == []
    assert (tmp_path / "f").read_bytes() == b"data"


def test_fsync_dir_ignores_a_filesystem_that_cannot_sync_directories(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fsync(fd: int) -> None:
        raise OSError(errno.EINVAL, "Invalid argument")

    monkeypatch.setattr(os, "fsync", fsync)
    _fs.fsync_dir(tmp_path)  # nothing more to do there


def test_fsync_dir_reports_a_real_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def fsync(fd: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "fsync", fsync)
    with pytest.raises(OSError, match="Input/output"):
        _fs.fsync_dir(tmp_path)
    with pytest.raises(FileNotFoundError):
        _fs.fsync_dir(tmp_path / "missing")


def test_fsync_tree_syncs_every_file_and_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "a").write_bytes(b"1")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b").write_bytes(b"2")
    (tmp_path / "link").symlink_to("/etc/passwd")
    calls = _fsyncs(monkeypatch)
    _fs.fsync_tree(tmp_path)
    assert sorted(calls) == ["dir", "dir", "file", "file"]
    assert calls[-1] == "dir"  # the top directory last


def test_exclusive_creates_a_new_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _fsyncs(monkeypatch)
    target = tmp_path / "token"
    _fs.atomic_write(target, b"tok\n", exclusive=True)
    assert target.read_bytes() == b"tok\n"
    assert _mode(target) == 0o600
    assert os.listdir(tmp_path) == ["token"]
    assert calls == ["file", "dir"]


def test_exclusive_never_replaces_an_existing_file(tmp_path: Path) -> None:
    target = tmp_path / "token"
    target.write_bytes(b"first\n")
    with pytest.raises(FileExistsError):
        _fs.atomic_write(target, b"second\n", exclusive=True)
    assert target.read_bytes() == b"first\n"
    assert os.listdir(tmp_path) == ["token"]


def test_exclusive_racers_have_exactly_one_winner_and_readers_never_see_half(
    tmp_path: Path,
) -> None:
    target = tmp_path / "token"
    payloads = [bytes([65 + i]) * 65536 for i in range(8)]
    won: list[bytes] = []
    seen: list[bytes] = []
    done = threading.Event()

    def write(data: bytes) -> None:
        try:
            _fs.atomic_write(target, data, exclusive=True, fsync=False)
        except FileExistsError:
            return
        won.append(data)

    def read() -> None:
        while not done.is_set():
            with contextlib.suppress(FileNotFoundError):
                seen.append(target.read_bytes())

    reader = threading.Thread(target=read)
    reader.start()
    writers = [threading.Thread(target=write, args=(p,)) for p in payloads]
    for t in writers:
        t.start()
    for t in writers:
        t.join()
    done.set()
    reader.join()
    assert len(won) == 1
    assert target.read_bytes() == won[0]
    assert all(s == won[0] for s in seen)
    assert os.listdir(tmp_path) == ["token"]


def test_exclusive_without_hard_links_creates_in_place(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def link(src: Any, dst: Any) -> None:
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "link", link)
    target = tmp_path / "token"
    _fs.atomic_write(target, b"tok\n", exclusive=True)
    assert target.read_bytes() == b"tok\n"
    assert _mode(target) == 0o600
    assert os.listdir(tmp_path) == ["token"]
    with pytest.raises(FileExistsError):
        _fs.atomic_write(target, b"other\n", exclusive=True)
    assert target.read_bytes() == b"tok\n"


def test_temp_files_are_named_for_the_target(tmp_path: Path) -> None:
    target = tmp_path / "credentials.enc"
    names: list[str] = []
    with _fs.atomic_writer(target) as fh:
        names = os.listdir(tmp_path)
        fh.write(b"x")
    assert len(names) == 1
    assert names[0].startswith(_fs.temp_prefix(target))
    assert names[0].endswith(_fs.TEMP_SUFFIX)
    assert os.listdir(tmp_path) == ["credentials.enc"]
