"""Hostile sources are refused with a clear error, and nothing is written outside the staging area.

Every test snapshots the whole temporary tree (plugins directory, sources, a decoy ``outside``
directory) before the install and compares it afterwards: a refused install must leave no
trace, not even its staging directory. Archives are built member by member with ``tarfile`` so
they can hold what ``tar`` itself would refuse to write.
"""

from __future__ import annotations

import gzip
import io
import os
import tarfile
from pathlib import Path

import pytest

from tests.integration.test_installer import (
    abi2_wasm,
    make_plugin_dir,
    manifest_text,
    new_runtime,
    snapshot,
)
from vultrino.errors import (
    InstallError,
    ManifestError,
    PluginNotFoundError,
    UnsafeSourceError,
)
from vultrino.plugins.install import _sources, installer
from vultrino.plugins.install._archive import extract_tar_gz, relative_parts

# --- building hostile archives ---------------------------------------------------------------


def _member(name: str, kind: bytes = tarfile.REGTYPE, data: bytes = b"", link: str = "") -> tuple:
    return (name, kind, data, link)


def make_tar_gz(path: Path, members: list[tuple], *, level: int = 6) -> Path:
    """Write ``members`` ((name, type, data, linkname) tuples) exactly as given."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, kind, data, link in members:
            info = tarfile.TarInfo(name)
            info.type = kind
            info.linkname = link
            info.mode = 0o644
            if kind in (tarfile.REGTYPE, tarfile.AREGTYPE):
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            else:
                tar.addfile(info)
    path.write_bytes(gzip.compress(raw.getvalue(), compresslevel=level))
    return path


def plugin_members(prefix: str = "hello/") -> list[tuple]:
    """A valid plugin's members, to put hostile ones next to."""
    return [
        _member(f"{prefix}plugin.toml", data=manifest_text("hello").encode()),
        _member(f"{prefix}hello.wasm", data=abi2_wasm()),
    ]


@pytest.fixture
def area(tmp_path: Path) -> dict[str, Path]:
    """plugins/ (existing, empty), src/ for sources, outside/ as a decoy target."""
    paths = {name: tmp_path / name for name in ("plugins", "src", "outside")}
    for p in paths.values():
        p.mkdir()
    (paths["outside"] / "keep.txt").write_text("untouched")
    return paths


def refuse(
    tmp_path: Path, source: str, error: type[Exception] = UnsafeSourceError, **kwargs: object
) -> Exception:
    """Install ``source``, expect ``error``, and prove the filesystem did not change."""
    before = snapshot(tmp_path)
    with pytest.raises(error) as info:
        installer.install(source, plugins_dir=tmp_path / "plugins", runtime=new_runtime(), **kwargs)
    assert snapshot(tmp_path) == before
    return info.value


# --- archives --------------------------------------------------------------------------------


def test_absolute_member_refused(tmp_path: Path, area: dict[str, Path]) -> None:
    target = area["outside"] / "pwned"
    archive = make_tar_gz(
        area["src"] / "abs.tar.gz", [*plugin_members(), _member(str(target), data=b"x")]
    )
    err = refuse(tmp_path, str(archive))
    assert "absolute path" in str(err)
    assert not target.exists()


@pytest.mark.parametrize("name", ["../pwned", "hello/../../pwned", "hello/sub/../../../pwned"])
def test_dotdot_member_refused(tmp_path: Path, area: dict[str, Path], name: str) -> None:
    archive = make_tar_gz(area["src"] / "dots.tar.gz", [*plugin_members(), _member(name)])
    err = refuse(tmp_path, str(archive))
    assert "'..'" in str(err)
    assert not (tmp_path / "pwned").exists()
    assert not (area["plugins"] / "pwned").exists()


@pytest.mark.parametrize(
    "link",
    ["/etc", "../../outside", "../..", "sub/../../.."],
)
def test_symlink_leaving_tree_refused(tmp_path: Path, area: dict[str, Path], link: str) -> None:
    archive = make_tar_gz(
        area["src"] / "sym.tar.gz",
        [*plugin_members(), _member("hello/escape", tarfile.SYMTYPE, link=link)],
    )
    err = refuse(tmp_path, str(archive))
    assert "escape" in str(err)


def test_chained_symlinks_escaping_refused(tmp_path: Path, area: dict[str, Path]) -> None:
    """``a -> .`` and ``b -> a/..`` each look inside; together ``b`` is the parent directory."""
    archive = make_tar_gz(
        area["src"] / "chain.tar.gz",
        [
            *plugin_members(""),
            _member("b", tarfile.SYMTYPE, link="a/.."),
            _member("a", tarfile.SYMTYPE, link="."),
        ],
    )
    err = refuse(tmp_path, str(archive))
    assert "resolves outside" in str(err)


def test_file_through_symlink_refused(tmp_path: Path, area: dict[str, Path]) -> None:
    """A link to outside, then a file "inside" the link: the file must never land outside."""
    archive = make_tar_gz(
        area["src"] / "through.tar.gz",
        [
            *plugin_members(),
            _member("hello/d", tarfile.SYMTYPE, link=str(area["outside"])),
            _member("hello/d/pwned", data=b"x"),
        ],
    )
    refuse(tmp_path, str(archive))
    assert not (area["outside"] / "pwned").exists()


def test_file_through_inside_symlink_refused(tmp_path: Path, area: dict[str, Path]) -> None:
    """Even an in-tree link is never written through: link first, then a file below it."""
    archive = make_tar_gz(
        area["src"] / "through2.tar.gz",
        [
            *plugin_members(),
            _member("hello/sub/", tarfile.DIRTYPE),
            _member("hello/d", tarfile.SYMTYPE, link="sub"),
            _member("hello/d/x", data=b"x"),
        ],
    )
    err = refuse(tmp_path, str(archive))
    assert "collides" in str(err) or "directory" in str(err)


@pytest.mark.parametrize("link", ["/etc/passwd", "../../outside/keep.txt", "hello/nothing"])
def test_hardlink_outside_or_unknown_refused(
    tmp_path: Path, area: dict[str, Path], link: str
) -> None:
    archive = make_tar_gz(
        area["src"] / "hard.tar.gz",
        [*plugin_members(), _member("hello/h", tarfile.LNKTYPE, link=link)],
    )
    refuse(tmp_path, str(archive))
    assert (area["outside"] / "keep.txt").read_text() == "untouched"


def test_inside_hardlink_becomes_a_copy(tmp_path: Path) -> None:
    archive = make_tar_gz(
        tmp_path / "ok.tar.gz",
        [*plugin_members(), _member("hello/README.md", tarfile.LNKTYPE, link="hello/plugin.toml")],
    )
    dest = tmp_path / "x"
    extract_tar_gz(archive, dest)
    copy = dest / "hello" / "README.md"
    assert not copy.is_symlink()
    assert copy.read_bytes() == (dest / "hello" / "plugin.toml").read_bytes()
    assert os.stat(copy).st_ino != os.stat(dest / "hello" / "plugin.toml").st_ino


@pytest.mark.parametrize("kind", [tarfile.CHRTYPE, tarfile.BLKTYPE, tarfile.FIFOTYPE])
def test_device_and_fifo_members_refused(
    tmp_path: Path, area: dict[str, Path], kind: bytes
) -> None:
    archive = make_tar_gz(
        area["src"] / "dev.tar.gz", [*plugin_members(), _member("hello/dev", kind)]
    )
    err = refuse(tmp_path, str(archive))
    assert "device or FIFO" in str(err)


def test_duplicate_member_refused(tmp_path: Path, area: dict[str, Path]) -> None:
    """A second copy of a file cannot silently replace the first (e.g. a swapped module)."""
    archive = make_tar_gz(
        area["src"] / "dup.tar.gz", [*plugin_members(), _member("hello/hello.wasm", data=b"evil")]
    )
    err = refuse(tmp_path, str(archive))
    assert "twice" in str(err)


def test_decompression_bomb_refused_while_streaming(
    tmp_path: Path, area: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """8 MiB of zeros compress to a few KiB; the 1 MiB cap stops it, headers or not."""
    monkeypatch.setattr(_sources, "MAX_TREE_BYTES", 1024 * 1024)
    archive = make_tar_gz(
        area["src"] / "bomb.tar.gz",
        [*plugin_members(), _member("hello/zeros", data=bytes(8 * 1024 * 1024))],
        level=9,
    )
    assert archive.stat().st_size < 64 * 1024
    err = refuse(tmp_path, str(archive))
    assert "more than 1 MiB" in str(err)


def test_header_lying_about_size_cannot_bypass_the_cap(tmp_path: Path) -> None:
    """A pax header is data tarfile reads before any member: the raw-stream cap bounds it."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("big")
        info.pax_headers = {"comment": "A" * (6 * 1024 * 1024)}
        tar.addfile(info, io.BytesIO(b""))
    archive = tmp_path / "pax.tar.gz"
    archive.write_bytes(gzip.compress(raw.getvalue()))
    with pytest.raises(UnsafeSourceError, match="more than"):
        extract_tar_gz(archive, tmp_path / "x", max_bytes=1024 * 1024, max_files=10)


def test_file_count_cap(
    tmp_path: Path, area: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_sources, "MAX_TREE_FILES", 20)
    many = [_member(f"hello/f{i}", data=b"") for i in range(50)]
    archive = make_tar_gz(area["src"] / "many.tar.gz", [*plugin_members(), *many])
    err = refuse(tmp_path, str(archive))
    assert "more than 20 members" in str(err)


def test_not_an_archive(tmp_path: Path, area: dict[str, Path]) -> None:
    bogus = area["src"] / "bogus.tar.gz"
    bogus.write_bytes(b"this is not gzip at all")
    err = refuse(tmp_path, str(bogus), InstallError)
    assert "not a readable .tar.gz" in str(err)


def test_truncated_archive(tmp_path: Path, area: dict[str, Path]) -> None:
    good = make_tar_gz(area["src"] / "good.tar.gz", plugin_members())
    cut = area["src"] / "cut.tar.gz"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    refuse(tmp_path, str(cut), InstallError)


# --- manifests and modules -------------------------------------------------------------------


@pytest.mark.parametrize("module", ["../evil.wasm", "sub/evil.wasm", "/tmp/evil.wasm", ".."])
def test_wasm_module_with_a_path_refused(
    tmp_path: Path, area: dict[str, Path], module: str
) -> None:
    """The manifest loader refuses it first (ManifestError naming the key); the installer's
    own check behind it is exercised directly below."""
    src = make_plugin_dir(area["src"] / "p", "hello")
    (src / "plugin.toml").write_text(manifest_text("hello", wasm_module=module))
    err = refuse(tmp_path, str(src), ManifestError)
    assert any(p.startswith("plugin.wasm_module") for p in err.problems)  # type: ignore[attr-defined]


@pytest.mark.parametrize("module", ["../evil.wasm", "a/b.wasm", ".hidden.wasm", ".installed.json"])
def test_installer_module_name_check(module: str) -> None:
    with pytest.raises(UnsafeSourceError, match="bare file name"):
        installer._module_name(module, "hello")


def test_module_symlink_to_outside_refused(tmp_path: Path, area: dict[str, Path]) -> None:
    """A perfectly valid module outside the source, reached through a link: refused."""
    evil = area["outside"] / "evil.wasm"
    evil.write_bytes(abi2_wasm("evil"))
    src = make_plugin_dir(area["src"] / "p", "hello")
    (src / "hello.wasm").unlink()
    (src / "hello.wasm").symlink_to(evil)
    err = refuse(tmp_path, str(src))
    assert "leads outside the source" in str(err)


def test_manifest_symlink_to_outside_refused(tmp_path: Path, area: dict[str, Path]) -> None:
    (area["outside"] / "plugin.toml").write_text(manifest_text("hello"))
    src = make_plugin_dir(area["src"] / "p", "hello")
    (src / "plugin.toml").unlink()
    (src / "plugin.toml").symlink_to(area["outside"] / "plugin.toml")
    refuse(tmp_path, str(src))


def test_module_that_is_a_fifo_refused_without_blocking(
    tmp_path: Path, area: dict[str, Path]
) -> None:
    src = make_plugin_dir(area["src"] / "p", "hello")
    (src / "hello.wasm").unlink()
    os.mkfifo(src / "hello.wasm")
    err = refuse(tmp_path, str(src))
    assert "not a regular file" in str(err)


def test_subdir_symlink_to_outside_refused(tmp_path: Path, area: dict[str, Path]) -> None:
    make_plugin_dir(area["outside"] / "p", "hello")
    root = area["src"] / "repo"
    root.mkdir()
    (root / "plugins").symlink_to(area["outside"])
    err = refuse(tmp_path, str(root), subdir="plugins/p")
    assert "leads outside the source" in str(err)


# --- option injection, subdirs, names --------------------------------------------------------


@pytest.mark.parametrize(
    "source",
    [
        "--upload-pack=touch {marker}",
        "-oProxyCommand=touch {marker}",
        "file:///nonexistent.git#--upload-pack=touch {marker}",
        "https://example.invalid/repo.git#-b",
        "git@-oProxyCommand=pwned:repo.git",
        "-oProxyCommand=pwned@host:repo.git",
        "ssh://-oProxyCommand=pwned/repo.git",
        "ssh://-oProxyCommand=touch {marker}/repo.git",
        "ext::sh -c touch% {marker}",
        "fd::17",
    ],
)
def test_git_option_injection_refused(tmp_path: Path, area: dict[str, Path], source: str) -> None:
    marker = area["outside"] / "pwned"
    err = refuse(tmp_path, source.format(marker=marker))
    assert not marker.exists()
    assert (
        "'-'" in str(err)
        or "not allowed" in str(err)
        or "spaces" in str(err)
        or "not a git URL" in str(err)
    )


@pytest.mark.parametrize(
    "ref", ["-b", "--upload-pack=x", "a..b", "a b", "a\nb", "HEAD@{1}", "x:y", "x~1"]
)
def test_bad_refs_refused(ref: str) -> None:
    with pytest.raises(UnsafeSourceError):
        _sources.check_ref(ref, "src")


@pytest.mark.parametrize("subdir", ["../x", "a/../../x", "/etc", "\\\\server\\share", "C:/x", "-x"])
def test_subdir_escaping_refused(tmp_path: Path, area: dict[str, Path], subdir: str) -> None:
    src = make_plugin_dir(area["src"] / "p", "hello")
    refuse(tmp_path, str(src), subdir=subdir)


@pytest.mark.parametrize("name", ["../x", "/etc", "a/b", "..", ".", "", "x\\y", "../outside"])
def test_remove_refuses_paths(tmp_path: Path, area: dict[str, Path], name: str) -> None:
    before = snapshot(tmp_path)
    with pytest.raises(UnsafeSourceError, match="is a path"):
        installer.remove(name, plugins_dir=area["plugins"], runtime=new_runtime())
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("name", ["Upper", "x_y", "-x", "a--b"])
def test_remove_refuses_non_names(tmp_path: Path, area: dict[str, Path], name: str) -> None:
    (area["plugins"] / name).mkdir()
    with pytest.raises(InstallError, match="not a valid plugin name"):
        installer.remove(name, plugins_dir=area["plugins"])
    assert (area["plugins"] / name).is_dir()


def test_remove_not_installed(area: dict[str, Path]) -> None:
    with pytest.raises(PluginNotFoundError, match="not installed"):
        installer.remove("ghost", plugins_dir=area["plugins"])


def test_remove_symlinked_plugin_removes_only_the_link(area: dict[str, Path]) -> None:
    dev = make_plugin_dir(area["outside"] / "dev", "hello")
    (area["plugins"] / "hello").symlink_to(dev)
    installer.remove("hello", plugins_dir=area["plugins"])
    assert not os.path.lexists(area["plugins"] / "hello")
    assert (dev / "hello.wasm").is_file()


def test_relative_parts() -> None:
    assert relative_parts("./a//b/./c", what="x") == ("a", "b", "c")
    assert relative_parts(".", what="x") == ()
    for bad in ("/a", "a/../b", "..", "a\x00b", "C:\\x"):
        with pytest.raises(UnsafeSourceError):
            relative_parts(bad, what="x")


def test_fifo_in_a_directory_to_build_refused_before_cargo(
    tmp_path: Path, area: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A directory that must be built is copied first; a FIFO in it would block the copy."""
    tripwire = area["outside"] / "cargo-ran"
    cargo = area["outside"] / "cargo"
    cargo.write_text(f"#!/bin/sh\ntouch {tripwire}\nexit 1\n")
    cargo.chmod(0o755)
    monkeypatch.setenv("VULTRINO_CARGO", str(cargo))
    src = make_plugin_dir(area["src"] / "p", "hello")
    (src / "hello.wasm").unlink()
    (src / "Cargo.toml").write_text('[package]\nname = "hello"\nversion = "0.1.0"\n')
    os.mkfifo(src / "src" / "pipe")
    before = snapshot(tmp_path)
    with pytest.raises(UnsafeSourceError, match="FIFO"):
        installer.install(str(src), plugins_dir=area["plugins"], runtime=new_runtime(), build=True)
    assert snapshot(tmp_path) == before
    assert not tripwire.exists()
