"""Where a plugin comes from: telling sources apart and fetching them into a staging directory.

A SOURCE is one of

* a local directory (read in place; copied into staging only when it must be built),
* the name of a first-party plugin (``totp``) when no such path exists: its directory with the
  prebuilt module (:func:`._shipped.first_party`),
* a local ``.tar.gz`` / ``.tgz`` archive, or an ``http(s)://`` URL of one,
* a git repository — ``https://``, ``http://``, ``ssh://``, ``git://``, ``git@host:path``,
  ``file://``, or a local repository path followed by ``#ref`` (a bare repository needs no
  ``#ref``) — with an optional ``#ref`` naming a branch, a tag or a commit.

Everything a source could use to attack the machine is refused here, before git or tar runs:
a URL or ref that git could read as an option, control characters, transports other than the
ones above (``ext::`` runs commands), a ``--subdir`` that leaves the tree. After fetching,
:func:`audit_tree` refuses trees with links that resolve outside them or device files, and
:func:`safe_file` is the only way the installer reads a file out of a source.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit, urlunsplit

from vultrino.errors import InstallError, UnsafeSourceError
from vultrino.plugins.install._archive import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_FILES,
    extract_tar_gz,
    is_inside,
    relative_parts,
)
from vultrino.plugins.install._shipped import first_party

SourceKind = Literal["directory", "archive", "url", "git"]
Progress = Callable[[int, int | None], None]

MIB = 1024 * 1024
MAX_DOWNLOAD_BYTES = 64 * MIB
"""Cap on a downloaded archive (compressed)."""
MAX_TREE_BYTES = DEFAULT_MAX_BYTES
"""Cap on what an archive unpacks to, and on a local directory copied for a build."""
MAX_TREE_FILES = DEFAULT_MAX_FILES
"""Cap on the members of an archive, and on the files of a directory copied for a build."""
GIT_TIMEOUT_S = 900.0

_ARCHIVE_SUFFIXES = (".tar.gz", ".tgz")
_GIT_SCHEMES = ("https", "http", "ssh", "git", "file")
_SCP_LIKE = re.compile(r"^(?:(?P<user>[^@/:]+)@)?(?P<host>[^/:]+):(?P<path>.+)$")
_HEX_REF = re.compile(r"^[0-9a-f]{7,40}$")
# Environment variables that would point git at another repository than the one we clone.
_GIT_LOCATION_VARS = (
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "GIT_OBJECT_DIRECTORY",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_COMMON_DIR",
    "GIT_NAMESPACE",
    "GIT_CONFIG_PARAMETERS",
    "GIT_CONFIG_COUNT",
)
_SKIPPED_DIRS = (".git",)


@dataclass(frozen=True)
class SourceSpec:
    """A parsed SOURCE. ``location`` is a path or URL without the ``#ref``; ``display`` is the
    form recorded in ``.installed.json`` and shown in messages (URL passwords masked)."""

    kind: SourceKind
    location: str
    ref: str | None
    display: str


@dataclass(frozen=True)
class Acquired:
    """A fetched source. ``root`` is inside the staging directory, except for a directory
    source, which is read in place (``in_place``)."""

    root: Path
    commit: str | None = None
    in_place: bool = False


def _has_control(text: str) -> bool:
    return any(ord(c) < 32 or ord(c) == 127 for c in text)


def redact(url: str) -> str:
    """``url`` with the password of its user-info (``https://user:token@host``) masked."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if parts.password is None or parts.hostname is None:
        return url
    host = parts.hostname + (f":{parts.port}" if parts.port else "")
    netloc = f"{parts.username}:***@{host}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def _is_archive_name(path: str) -> bool:
    return path.lower().endswith(_ARCHIVE_SUFFIXES)


def _split_ref(text: str) -> tuple[str, str | None]:
    base, sep, ref = text.rpartition("#")
    if not sep:
        return text, None
    return base, ref


def check_ref(ref: str, source: str) -> str:
    """Refuse a git ref that git could read as an option or that no ref can be."""
    if not ref:
        raise InstallError(f"{source}: empty #ref; name a branch, a tag or a commit after '#'")
    if ref.startswith("-"):
        raise UnsafeSourceError(
            f"{source}: the ref {ref!r} starts with '-', which git would read as an option; "
            "refusing it"
        )
    if _has_control(ref) or any(c in ref for c in " ~^:?*[\\") or ".." in ref or "@{" in ref:
        raise UnsafeSourceError(
            f"{source}: {ref!r} is not a valid branch, tag or commit name; refusing it"
        )
    return ref


def _check_git_url(url: str, display: str) -> None:
    if url.startswith("-"):
        raise UnsafeSourceError(
            f"{display}: a source may not start with '-' (git would read it as an option)"
        )
    if _has_control(url) or any(c.isspace() for c in url):
        raise UnsafeSourceError(f"{display}: the URL contains spaces or control characters")
    if "://" in url:
        parts = urlsplit(url)
        if parts.scheme.lower() not in _GIT_SCHEMES:
            raise UnsafeSourceError(
                f"{display}: git transport {parts.scheme!r} is not allowed "
                f"(use one of {', '.join(_GIT_SCHEMES)} or git@host:path)"
            )
        who = [parts.username or "", parts.hostname or ""]
    else:
        m = _SCP_LIKE.match(url)
        if m is None or "::" in url:
            raise UnsafeSourceError(f"{display}: not a git URL this installer accepts")
        who = [m["user"] or "", m["host"]]
    if any(w.startswith("-") for w in who):
        raise UnsafeSourceError(
            f"{display}: a user or host starting with '-' could be read by ssh as an option; "
            "refusing it"
        )


def _is_bare_repo(path: Path) -> bool:
    return (path / "HEAD").is_file() and (path / "objects").is_dir() and (path / "refs").is_dir()


def parse_source(source: str) -> SourceSpec:
    """Tell what kind of SOURCE ``source`` is, refusing unsafe forms before anything runs."""
    if not source:
        raise InstallError("no source given: name a directory, a .tar.gz, or a git URL")
    if source.startswith("-"):
        raise UnsafeSourceError(
            f"the source {source!r} starts with '-', which could be read as an option; "
            "write ./" + source + " for a local path"
        )
    if _has_control(source):
        raise UnsafeSourceError("the source contains control characters; refusing it")

    lower = source.lower()
    if lower.startswith(("http://", "https://")):
        url, ref = _split_ref(source)
        path = urlsplit(url).path
        if _is_archive_name(path):
            if ref is not None:
                raise InstallError(
                    f"{redact(url)}: '#{ref}' only applies to git sources, not to archives"
                )
            return SourceSpec("url", url, None, redact(url))
        return _git_spec(url, ref)
    # git's own rule: `host:path` with no '/' before the first ':' is scp-like ssh.
    if "://" in source or (_SCP_LIKE.match(source) and not Path(source).exists()):
        url, ref = _split_ref(source)
        return _git_spec(url, ref)

    local = Path(source).expanduser()
    if not local.exists():
        shipped = first_party(source)
        if shipped is not None:  # `vultrino plugin install totp`: a first-party plugin by name
            return SourceSpec("directory", str(shipped), None, str(shipped))
        base, ref = _split_ref(source)
        base_path = Path(base).expanduser()
        if ref is not None and base_path.is_dir():
            return _git_spec(base_path.absolute().as_uri(), ref, display=str(base_path.absolute()))
        raise InstallError(
            f"{source}: no such file or directory (expected a plugin directory, a .tar.gz "
            "archive, or a git URL such as https://host/repo.git#v1.0)"
        )
    absolute = local.absolute()
    if local.is_dir():
        if _is_bare_repo(absolute) and not (absolute / "plugin.toml").exists():
            return _git_spec(absolute.as_uri(), None, display=str(absolute))
        return SourceSpec("directory", str(absolute), None, str(absolute))
    if local.is_file() and _is_archive_name(local.name):
        return SourceSpec("archive", str(absolute), None, str(absolute))
    raise InstallError(
        f"{source}: not a directory or a .tar.gz/.tgz archive; a plugin source is one of "
        "those, or a git URL"
    )


def _git_spec(url: str, ref: str | None, *, display: str | None = None) -> SourceSpec:
    shown = display or redact(url)
    _check_git_url(url, shown)
    if ref is not None:
        check_ref(ref, shown)
    return SourceSpec("git", url, ref, shown)


def check_subdir(subdir: str | None) -> tuple[str, ...]:
    """``--subdir`` as path components: relative, no ``..``, no control characters."""
    if subdir is None:
        return ()
    if subdir.startswith("-"):
        raise UnsafeSourceError(f"--subdir {subdir!r} starts with '-'; refusing it")
    return relative_parts(subdir, what=f"--subdir {subdir!r}")


# --- acquisition -----------------------------------------------------------------------------


def acquire(
    spec: SourceSpec,
    staging: Path,
    *,
    progress: Progress | None = None,
) -> Acquired:
    """Fetch ``spec`` into ``staging`` (an empty directory the caller owns and removes)."""
    max_bytes, max_files = MAX_TREE_BYTES, MAX_TREE_FILES
    if spec.kind == "directory":
        return Acquired(Path(spec.location), in_place=True)
    root = staging / "src"
    if spec.kind == "archive":
        extract_tar_gz(
            Path(spec.location), root, max_bytes=max_bytes, max_files=max_files, label=spec.display
        )
    elif spec.kind == "url":
        from vultrino._net import download

        archive = staging / "download.tar.gz"
        download(spec.location, archive, max_bytes=MAX_DOWNLOAD_BYTES, progress=progress)
        extract_tar_gz(archive, root, max_bytes=max_bytes, max_files=max_files, label=spec.display)
        archive.unlink()
    else:
        commit = clone(spec, root)
        audit_tree(root, spec.display)
        return Acquired(root, commit=commit)
    audit_tree(root, spec.display)
    return Acquired(_single_top_dir(root))


def _single_top_dir(root: Path) -> Path:
    """The archive's content root: archives usually wrap everything in one top folder
    (``my-plugin-1.0/``); step into it unless ``plugin.toml`` sits at the top already."""
    if (root / "plugin.toml").exists() or (root / "Cargo.toml").exists():
        return root
    entries = list(root.iterdir())
    if len(entries) == 1 and entries[0].is_dir() and not entries[0].is_symlink():
        return entries[0]
    return root


def audit_tree(root: Path, label: str) -> None:
    """Refuse a fetched tree holding a link that resolves outside it, or a device/FIFO/socket.

    The check is physical (``realpath``), so chains of links that each look harmless are
    caught too. ``.git`` is skipped: git wrote it, not the source.
    """
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in _SKIPPED_DIRS or dirpath != str(root)]
        for entry in [*dirnames, *filenames]:
            path = Path(dirpath) / entry
            st = os.lstat(path)
            rel = path.relative_to(root).as_posix()
            if stat.S_ISLNK(st.st_mode):
                if not is_inside(path, root):
                    raise UnsafeSourceError(
                        f"{label}: {rel!r} is a link to {os.readlink(path)!r}, outside the "
                        "source tree; refusing the source"
                    )
            elif not (stat.S_ISDIR(st.st_mode) or stat.S_ISREG(st.st_mode)):
                raise UnsafeSourceError(
                    f"{label}: {rel!r} is a device, FIFO or socket; refusing the source"
                )


def safe_file(root: Path, parts: tuple[str, ...], *, what: str, label: str) -> Path | None:
    """The real path of the regular file ``root/parts``, or None when nothing is there.

    Refuses (``UnsafeSourceError``) a path that resolves outside ``root`` — a link leaving the
    source — and anything that is not a regular file (a FIFO would block the reader).
    """
    path = root.joinpath(*parts)
    if not os.path.lexists(path):
        return None
    if not is_inside(path, root):
        raise UnsafeSourceError(
            f"{label}: {what} ({'/'.join(parts)}) is a link that leads outside the source; "
            "refusing it"
        )
    real = Path(os.path.realpath(path))
    try:
        st = os.stat(real)
    except FileNotFoundError:
        return None
    if not stat.S_ISREG(st.st_mode):
        raise UnsafeSourceError(f"{label}: {what} ({'/'.join(parts)}) is not a regular file")
    return real


def safe_dir(root: Path, parts: tuple[str, ...], *, label: str) -> Path:
    """The real path of the directory ``root/parts`` (``--subdir``), which must stay inside."""
    path = root.joinpath(*parts)
    shown = "/".join(parts)
    if not os.path.lexists(path):
        raise InstallError(f"{label}: --subdir {shown!r} does not exist in the source")
    if not is_inside(path, root):
        raise UnsafeSourceError(
            f"{label}: --subdir {shown!r} is a link that leads outside the source; refusing it"
        )
    if not path.is_dir():
        raise InstallError(f"{label}: --subdir {shown!r} is not a directory")
    return Path(os.path.realpath(path))


def copy_tree(src: Path, dst: Path, *, label: str) -> None:
    """Copy a local source directory into staging so a build writes nothing into it.

    Links are copied as links (never followed), ``.git`` and cargo target directories (marked
    by ``CACHEDIR.TAG``) are skipped, FIFOs and devices are refused (reading one would block or
    worse), and the same size and count caps as for archives apply.
    """
    max_bytes, max_files = MAX_TREE_BYTES, MAX_TREE_FILES
    files = 0
    total = 0
    for dirpath, dirnames, filenames in os.walk(src):
        here = Path(dirpath)
        out = dst / here.relative_to(src)
        out.mkdir(mode=0o755, exist_ok=True)
        keep = []
        for d in dirnames:
            p = here / d
            if d in _SKIPPED_DIRS or (p / "CACHEDIR.TAG").is_file():
                continue
            if p.is_symlink():
                filenames.append(d)  # copy the link itself, never walk through it
                continue
            keep.append(d)
        dirnames[:] = keep
        for name in filenames:
            files += 1
            if files > max_files:
                raise InstallError(
                    f"{label}: more than {max_files} files to copy for the build; build the "
                    "plugin yourself and install the directory holding plugin.toml and the module"
                )
            p = here / name
            st = os.lstat(p)
            if stat.S_ISLNK(st.st_mode):
                os.symlink(os.readlink(p), out / name)
            elif stat.S_ISREG(st.st_mode):
                total += st.st_size
                if total > max_bytes:
                    raise InstallError(
                        f"{label}: the source is larger than {max_bytes // MIB} MiB; build the "
                        "plugin yourself and install the directory holding the module"
                    )
                shutil.copy2(p, out / name, follow_symlinks=False)
            else:
                rel = p.relative_to(src).as_posix()
                raise UnsafeSourceError(f"{label}: {rel!r} is a device, FIFO or socket")


# --- git -------------------------------------------------------------------------------------


def _git_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _GIT_LOCATION_VARS}
    env["GIT_TERMINAL_PROMPT"] = "0"  # never hang on a password prompt
    env.setdefault("GIT_SSH_COMMAND", "ssh -o BatchMode=yes")
    return env


_GIT_HARDENING = (
    "-c", "protocol.ext.allow=never",  # ext:: runs arbitrary commands
    "-c", "core.hooksPath=/dev/null",  # no hooks, whatever the user's config says
    "-c", "submodule.recurse=false",  # no submodules: they would fetch other URLs
    "-c", "core.symlinks=true",  # links stay links, and audit_tree checks where they go
    "-c", "core.fsmonitor=false",
    "-c", "transfer.fsckObjects=true",  # refuse malformed trees ('..', '.git' entries)
    "-c", "advice.detachedHead=false",
)  # fmt: skip


def _git(args: list[str], *, cwd: Path | None, label: str, secret: str | None) -> str:
    git = shutil.which("git")
    if git is None:
        raise InstallError(
            f"{label}: git is not installed; install it (e.g. `apt-get install git`) to install "
            "plugins from git repositories"
        )
    try:
        done = subprocess.run(
            [git, *_GIT_HARDENING, *args],
            cwd=cwd,
            env=_git_env(),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=GIT_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise InstallError(f"{label}: git took longer than {GIT_TIMEOUT_S:.0f} s") from exc
    if done.returncode != 0:
        detail = done.stderr.strip().splitlines()[-3:]
        text = " / ".join(detail) or f"exit status {done.returncode}"
        if secret:
            text = text.replace(secret, "***")
        raise _GitFailedError(f"{label}: git {args[0]} failed: {text}")
    return done.stdout.strip()


class _GitFailedError(InstallError):
    """A git command exited non-zero (the message carries git's last lines)."""


def clone(spec: SourceSpec, dest: Path) -> str:
    """Clone ``spec`` into ``dest`` and check out its ref; returns the resolved commit SHA.

    A branch or tag is cloned shallowly (``--depth 1 --branch``); a ref that looks like a
    commit SHA needs the history, so the repository is cloned in full and the ref resolved as a
    branch, then a tag, then a commit. Nothing is checked out until the commit is known.
    """
    url, ref, label = spec.location, spec.ref, spec.display
    secret = urlsplit(url).password if "://" in url else None
    base = ["clone", "--quiet", "--no-checkout", "--template="]
    if ref is None:
        _git([*base, "--depth", "1", "--", url, str(dest)], cwd=None, label=label, secret=secret)
        rev = "HEAD"
    elif not _HEX_REF.match(ref):
        try:
            _git(
                [*base, "--depth", "1", f"--branch={ref}", "--", url, str(dest)],
                cwd=None,
                label=label,
                secret=secret,
            )
        except _GitFailedError as exc:
            raise InstallError(
                f"{exc} (is {ref!r} a branch or tag of the repository? a commit needs its SHA)"
            ) from exc
        rev = "HEAD"
    else:
        _git([*base, "--", url, str(dest)], cwd=None, label=label, secret=secret)
        rev = _resolve(dest, ref, label)
    commit = _git(
        ["rev-parse", "--verify", "--end-of-options", f"{rev}^{{commit}}"],
        cwd=dest,
        label=label,
        secret=None,
    )
    _git(["checkout", "--quiet", "--detach", commit], cwd=dest, label=label, secret=None)
    return _git(["rev-parse", "HEAD"], cwd=dest, label=label, secret=None)


def _resolve(repo: Path, ref: str, label: str) -> str:
    for candidate in (f"refs/remotes/origin/{ref}", f"refs/tags/{ref}", ref):
        try:
            return _git(
                ["rev-parse", "--verify", "--quiet", "--end-of-options", f"{candidate}^{{commit}}"],
                cwd=repo,
                label=label,
                secret=None,
            )
        except _GitFailedError:
            continue
    raise InstallError(f"{label}: no branch, tag or commit named {ref!r} in the repository")
