"""Safe extraction of ``.tar.gz`` plugin archives.

An archive is hostile until proven otherwise, so extraction never trusts a member:

* names are checked before anything is written: no absolute paths, no ``..``, no control
  characters;
* only regular files, directories, symbolic links and hard links are accepted; devices, FIFOs
  and exotic member types are refused;
* nothing is ever written *through* a link: symbolic links are created only after every file
  and directory is on disk, a link may not sit under another link, and every link must resolve
  (physically, with ``realpath``) inside the target directory. Hard links become plain copies
  of a file extracted earlier from the same archive;
* files are opened with ``O_EXCL | O_NOFOLLOW``, so a duplicate member cannot overwrite one
  that is already there;
* sizes are counted while streaming (the decompressed stream is capped as a whole, and every
  file's bytes are counted as they are written), so a decompression bomb stops at the cap
  whatever its headers claim.

Every failure is an :class:`~vultrino.errors.UnsafeSourceError` (hostile content) or an
:class:`~vultrino.errors.InstallError` (not a readable archive); nothing else escapes.
"""

from __future__ import annotations

import gzip
import io
import os
import stat
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import IO, BinaryIO, Protocol

from vultrino.errors import InstallError, UnsafeSourceError

MIB = 1024 * 1024
DEFAULT_MAX_BYTES = 256 * MIB
"""Default cap on the total size of the files an archive unpacks to."""
DEFAULT_MAX_FILES = 20_000
"""Default cap on the number of members (files, directories and links) of an archive."""

_CHUNK = 256 * 1024
_HEADER_SLACK = 1024  # per member: a header block plus padding, for the raw-stream cap


def relative_parts(text: str, *, what: str) -> tuple[str, ...]:
    """Split a relative POSIX path into its components, refusing anything that could escape.

    ``what`` names the path in the error (``"archive member 'x'"``, ``"--subdir"``). ``.`` and
    empty components are dropped; the result is empty for the root itself.
    """
    if any(ord(c) < 32 or ord(c) == 127 for c in text):
        raise UnsafeSourceError(f"{what} contains control characters; refusing it")
    if text.startswith(("/", "\\")) or (len(text) >= 2 and text[1] == ":" and text[0].isalpha()):
        raise UnsafeSourceError(f"{what} is an absolute path; only relative paths are allowed")
    parts = tuple(p for p in text.split("/") if p not in ("", "."))
    if ".." in parts:
        raise UnsafeSourceError(f"{what} contains '..'; paths may not leave the tree")
    return parts


def is_inside(path: Path, root: Path) -> bool:
    """True when ``path`` resolves (following every link) to ``root`` or somewhere under it."""
    real_root = os.path.realpath(root)
    real = os.path.realpath(path)
    return real == real_root or real.startswith(real_root + os.sep)


@dataclass
class ExtractStats:
    """What an extraction wrote: member count and file bytes."""

    members: int = 0
    bytes: int = 0


class _Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


class _CappedReader(io.RawIOBase):
    """A read-only stream that fails once more than ``cap`` bytes have been read from it.

    Wrapped around the decompressed stream, it bounds what a gzip bomb can expand to before
    tarfile sees a single header, whatever the headers claim.
    """

    def __init__(self, inner: _Readable, cap: int, label: str) -> None:
        super().__init__()
        self._inner = inner
        self._cap = cap
        self._seen = 0
        self._label = label

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        want = len(buffer)
        if want == 0:
            return 0
        if self._seen >= self._cap:
            # At the cap: the stream may end exactly here (fine) or go on (a bomb).
            if self._inner.read(1):
                raise UnsafeSourceError(
                    f"{self._label} unpacks to more than {self._cap // MIB} MiB; refusing it "
                    "(a decompression bomb or a plugin far larger than any plugin needs)"
                )
            return 0
        data = self._inner.read(min(want, self._cap - self._seen))
        n = len(data)
        buffer[:n] = data
        self._seen += n
        return n


def extract_tar_gz(
    source: Path | BinaryIO,
    dest: Path,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_files: int = DEFAULT_MAX_FILES,
    label: str | None = None,
) -> ExtractStats:
    """Unpack the gzip-compressed tar ``source`` into ``dest`` (created; must not exist yet).

    On any error the caller owns cleanup of ``dest`` (the installer removes its whole staging
    directory); nothing is ever written outside ``dest``.
    """
    name = label or (f"archive {source}" if isinstance(source, Path) else "archive")
    dest.mkdir(mode=0o755)
    try:
        if isinstance(source, Path):
            with source.open("rb") as raw:
                return _extract(raw, dest, max_bytes, max_files, name)
        return _extract(source, dest, max_bytes, max_files, name)
    except InstallError:
        raise
    except (tarfile.TarError, EOFError, zlib.error, OSError, ValueError, UnicodeError) as exc:
        # gzip.BadGzipFile is an OSError; tarfile raises ValueError/UnicodeError on some
        # malformed headers. None of these says anything secret: the archive is public input.
        raise InstallError(
            f"{name} is not a readable .tar.gz archive ({type(exc).__name__}: {exc}); "
            "check that the file is complete and really a gzip-compressed tar"
        ) from exc


def _extract(raw: BinaryIO, dest: Path, max_bytes: int, max_files: int, name: str) -> ExtractStats:
    stream_cap = max_bytes + max_files * _HEADER_SLACK + MIB
    gz = gzip.GzipFile(fileobj=raw, mode="rb")
    capped = io.BufferedReader(_CappedReader(gz, stream_cap, name), buffer_size=_CHUNK)
    stats = ExtractStats()
    links: list[tuple[tuple[str, ...], str]] = []
    files: set[tuple[str, ...]] = set()
    with tarfile.open(fileobj=capped, mode="r|") as tar:
        for member in tar:
            stats.members += 1
            if stats.members > max_files:
                raise UnsafeSourceError(
                    f"{name} has more than {max_files} members; refusing it (a plugin archive "
                    "needs a handful of files)"
                )
            what = f"{name}: member {member.name!r}"
            parts = relative_parts(member.name, what=what)
            if member.isdir():
                if parts:
                    _make_dirs(dest, parts, what)
            elif member.isreg():
                if not parts:
                    raise UnsafeSourceError(f"{what} is a file without a name; refusing it")
                if member.size > max_bytes - stats.bytes:
                    raise _too_large(name, max_bytes)
                fileobj = tar.extractfile(member)
                assert fileobj is not None  # a regular member always has data
                stats.bytes = _write_file(
                    dest,
                    parts,
                    fileobj,
                    mode=member.mode,
                    total=stats.bytes,
                    max_bytes=max_bytes,
                    name=name,
                    what=what,
                )
                files.add(parts)
            elif member.islnk():
                target = relative_parts(member.linkname, what=f"{what} (hard link target)")
                if target not in files:
                    raise UnsafeSourceError(
                        f"{what} is a hard link to {member.linkname!r}, which is not a file "
                        "extracted earlier from this archive; refusing it"
                    )
                with (dest.joinpath(*target)).open("rb") as src:
                    stats.bytes = _write_file(
                        dest,
                        parts,
                        src,
                        mode=member.mode,
                        total=stats.bytes,
                        max_bytes=max_bytes,
                        name=name,
                        what=what,
                    )
                files.add(parts)
            elif member.issym():
                if not parts:
                    raise UnsafeSourceError(f"{what} is a link without a name; refusing it")
                links.append((parts, member.linkname))
            elif member.ischr() or member.isblk() or member.isfifo():
                raise UnsafeSourceError(
                    f"{what} is a device or FIFO; plugin archives may only hold files, "
                    "directories and links"
                )
            else:
                raise UnsafeSourceError(
                    f"{what} has an unsupported tar member type {member.type!r}; refusing it"
                )
    made: list[tuple[Path, str]] = []
    try:
        for parts, link_target in links:
            made.append(_make_symlink(dest, parts, link_target, name))
        # Chained links can escape although each one looks harmless on its own (``a -> .``
        # then ``b -> a/..``), and only once all of them exist: check where each really lands.
        for path, what in made:
            if not is_inside(path, dest):
                raise UnsafeSourceError(f"{what} resolves outside the archive; refusing it")
    except BaseException:
        for path, _ in made:  # leave no link behind that a careless caller could follow
            path.unlink()
        raise
    return stats


def _too_large(name: str, max_bytes: int) -> UnsafeSourceError:
    return UnsafeSourceError(
        f"{name} unpacks to more than {max_bytes // MIB} MiB; refusing it "
        "(a decompression bomb or a plugin far larger than any plugin needs)"
    )


def _make_dirs(dest: Path, parts: tuple[str, ...], what: str) -> Path:
    """Create ``dest/parts`` one component at a time, refusing to pass through a non-directory."""
    path = dest
    for part in parts:
        path = path / part
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            os.mkdir(path, 0o755)
            continue
        if not stat.S_ISDIR(st.st_mode):
            raise UnsafeSourceError(
                f"{what} needs {part!r} to be a directory, but the archive already made it a "
                "file or link; refusing it"
            )
    return path


def _write_file(
    dest: Path,
    parts: tuple[str, ...],
    src: IO[bytes],
    *,
    mode: int,
    total: int,
    max_bytes: int,
    name: str,
    what: str,
) -> int:
    parent = _make_dirs(dest, parts[:-1], what)
    path = parent / parts[-1]
    perms = 0o755 if mode & 0o111 else 0o644
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags, perms)
    except FileExistsError as exc:
        raise UnsafeSourceError(
            f"{what} appears twice (or collides with a directory); refusing it"
        ) from exc
    with os.fdopen(fd, "wb") as out:
        while chunk := src.read(_CHUNK):
            total += len(chunk)
            if total > max_bytes:
                raise _too_large(name, max_bytes)
            out.write(chunk)
    return total


def _make_symlink(dest: Path, parts: tuple[str, ...], target: str, name: str) -> tuple[Path, str]:
    what = f"{name}: link {'/'.join(parts)!r} -> {target!r}"
    if not target:
        raise UnsafeSourceError(f"{what} has an empty target; refusing it")
    if any(ord(c) < 32 or ord(c) == 127 for c in target):
        raise UnsafeSourceError(f"{what} has control characters in its target; refusing it")
    if target.startswith("/"):
        raise UnsafeSourceError(f"{what} points to an absolute path; links may not leave the tree")
    lexical = os.path.normpath(os.path.join(*parts[:-1], target) if parts[:-1] else target)
    if lexical == ".." or lexical.startswith("../"):
        raise UnsafeSourceError(f"{what} points outside the archive; refusing it")
    parent = _make_dirs(dest, parts[:-1], what)
    path = parent / parts[-1]
    try:
        os.symlink(target, path)
    except FileExistsError as exc:
        raise UnsafeSourceError(f"{what} collides with another member; refusing it") from exc
    return path, what
