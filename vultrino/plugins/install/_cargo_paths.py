"""Making a crate's private build copy stand alone: ``path`` dependencies and the workspace.

``--build`` builds a copy of the plugin, never the user's directory, so a ``path`` dependency
that leaves the copied directory (``vultrino-pdk = { path = "../../sdk/rust/vultrino-pdk" }``
in a workspace member) would point at nothing. :func:`prepare` fixes up the copy before cargo
runs:

* each ``path`` dependency inside the copied tree stays as it is;
* from a local directory, each one outside it is **vendored**: the crate's directory is copied
  into the build directory and the dependency pointed at the copy (as ``vultrino plugin new``
  vendors ``vultrino-pdk/`` into a scaffold); the copy's own ``path`` dependencies are handled
  the same way;
* from an archive or a git repository, one outside the fetched tree is refused: it would
  read the installing machine's files into a build the source controls;
* a crate whose workspace root was not copied becomes a workspace of its own (an empty
  ``[workspace]`` table, so no ``Cargo.toml`` above the build directory can claim it, and
  ``[package].workspace`` dropped), keeping the original root's ``[profile]`` settings (LTO,
  ``opt-level``, ``panic``), which cargo only reads from a workspace root. A crate that
  inherits keys from that workspace (``edition.workspace = true``, ``{ workspace = true }``)
  is refused with what to change: the values it would inherit are not in the copy.

A path dependency is refused (:class:`~vultrino.errors.UnsafeSourceError`) when it is absolute,
goes through a symbolic link, lands in a system directory (``/etc``, ``/usr``, ...) the plugin
is not in itself, inside the Vultrino home (or in a directory holding it), in a directory that
holds the plugin, or is not a crate; the copied crate may hold no link leading out of it and
no device file, and the usual size caps apply.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vultrino.errors import InstallError, UnsafeSourceError
from vultrino.plugins.install import _sources

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

__all__ = ["MAX_VENDORED", "SYSTEM_DIRS", "prepare"]

MANIFEST = "Cargo.toml"
#: At most this many crates are vendored for one build.
MAX_VENDORED = 32
#: Directories a path dependency may not reach into, unless the plugin itself lies there.
SYSTEM_DIRS = (
    "/bin",
    "/boot",
    "/dev",
    "/etc",
    "/lib",
    "/lib32",
    "/lib64",
    "/proc",
    "/run",
    "/sbin",
    "/sys",
    "/usr",
    "/var",
)
_DEPENDENCY_TABLES = (
    "dependencies",
    "dev-dependencies",
    "dev_dependencies",
    "build-dependencies",
    "build_dependencies",
)
_PATH_VALUE = re.compile(r"""(\bpath\s*=\s*)("(?:[^"\\\n]|\\.)*"|'[^'\n]*')""")
_TABLE_HEADER = re.compile(r"^\s*\[\s*([^\[\]]+?)\s*\]\s*(?:#.*)?$")
_PACKAGE_WORKSPACE = re.compile(r"^\s*workspace\s*=")
_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


@dataclass
class _Build:
    """One preparation: the copied region (original root -> copy), what was vendored."""

    original_root: Path
    copy_root: Path
    vendor_dir: Path
    local: bool
    protected: tuple[Path, ...]
    plugin_dir: Path
    label: str
    vendored: dict[Path, Path] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def prepare(
    project: Path,
    *,
    original: Path,
    original_root: Path,
    copy_root: Path,
    vendor_dir: Path,
    local: bool,
    protected: Sequence[Path],
    label: str,
) -> list[str]:
    """Fix up the crate in ``project`` (the build copy of ``original``, which lies in
    ``original_root``, copied to ``copy_root``) so that it builds there; returns notes on what
    was vendored, for the build output.

    ``local`` allows vendoring path dependencies from outside ``original_root`` (a local
    directory the user named); otherwise they are refused. ``protected`` are directories no
    dependency may reach into (the Vultrino home). For a fetched tree, ``original_root`` and
    ``copy_root`` are the same directory.
    """
    build = _Build(
        original_root=Path(os.path.realpath(original_root)),
        copy_root=Path(copy_root),
        vendor_dir=Path(vendor_dir),
        local=local,
        protected=tuple(Path(os.path.realpath(p)) for p in protected),
        plugin_dir=Path(os.path.realpath(original)),
        label=label,
    )
    manifest = _read(project / MANIFEST, label)
    pending: list[tuple[Path, Path]] = [(build.plugin_dir, Path(project))]
    if "workspace" not in manifest:
        root = _workspace_root(build.plugin_dir, manifest, build)
        if root is not None and _within(root, build.original_root):
            pending.append((root, build.copy_root / root.relative_to(build.original_root)))
        else:
            _stand_alone(Path(project) / MANIFEST, manifest, root, build)
    seen: set[Path] = set()
    while pending:
        orig_dir, copy_dir = pending.pop()
        if orig_dir in seen:
            continue
        seen.add(orig_dir)
        pending.extend(_fix_paths(orig_dir, copy_dir, build))
    return build.notes


# --- the workspace ---------------------------------------------------------------------------


def _workspace_root(crate: Path, manifest: dict[str, Any], build: _Build) -> Path | None:
    """The original workspace root of ``crate``, as cargo would find it, or None. Outside the
    copied tree only a local source's ancestors are read."""
    package = manifest.get("package")
    declared = package.get("workspace") if isinstance(package, dict) else None
    if isinstance(declared, str):
        return Path(os.path.normpath(crate / declared))
    for ancestor in crate.parents:
        if not build.local and not _within(ancestor, build.original_root):
            return None
        candidate = ancestor / MANIFEST
        if not candidate.is_file() or candidate.is_symlink():
            continue
        try:
            data = tomllib.loads(candidate.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
            continue
        if "workspace" in data:
            return ancestor if _is_member(crate, ancestor, data["workspace"]) else None
    return None


def _is_member(crate: Path, root: Path, workspace: Any) -> bool:
    if not isinstance(workspace, dict):
        return False
    rel = crate.relative_to(root).as_posix()

    def matches(patterns: Any) -> bool:
        from fnmatch import fnmatchcase

        return isinstance(patterns, list) and any(
            isinstance(p, str) and fnmatchcase(rel, p.rstrip("/")) for p in patterns
        )

    return matches(workspace.get("members")) and not matches(workspace.get("exclude"))


def _stand_alone(
    cargo_toml: Path, manifest: dict[str, Any], root: Path | None, build: _Build
) -> None:
    """Make the copied crate its own workspace root, with its original root's profiles."""
    inherited = sorted(_inherited_keys(manifest))
    if inherited:
        raise InstallError(
            f"{build.label}: the crate inherits {', '.join(inherited)} from its Cargo "
            f"workspace{f' ({root})' if root else ''}, which is not part of the build; write "
            "the values into the plugin's Cargo.toml, or install the workspace's directory "
            "with --subdir pointing at the plugin"
        )
    text = _drop_package_workspace(cargo_toml.read_text(encoding="utf-8"))
    text = text.rstrip("\n") + "\n\n# Added by vultrino plugin install: the build stands alone.\n"
    text += "[workspace]\n"
    if root is not None and "profile" not in manifest:
        profile = _read(root / MANIFEST, build.label).get("profile")
        if isinstance(profile, dict) and profile:
            text += "\n" + "\n".join(_toml_tables(profile, "profile")) + "\n"
            build.notes.append(f"kept the [profile] settings of the workspace at {root}")
    cargo_toml.write_text(text, encoding="utf-8")
    checked = _read(cargo_toml, build.label)
    package = checked.get("package")
    if "workspace" not in checked or (isinstance(package, dict) and "workspace" in package):
        raise InstallError(f"{build.label}: could not make Cargo.toml a workspace of its own")


def _inherited_keys(manifest: dict[str, Any]) -> Iterator[str]:
    package = manifest.get("package")
    if isinstance(package, dict):
        for key, value in package.items():
            if isinstance(value, dict) and value.get("workspace") is True:
                yield f"package.{key}"
    for where, table in _dependency_tables(manifest):
        for name, spec in table.items():
            if isinstance(spec, dict) and spec.get("workspace") is True:
                yield f"{where}.{name}"
    lints = manifest.get("lints")
    if isinstance(lints, dict) and lints.get("workspace") is True:
        yield "lints"


def _drop_package_workspace(text: str) -> str:
    out: list[str] = []
    section = None
    for line in text.splitlines(keepends=True):
        header = _TABLE_HEADER.match(line)
        if header:
            section = header.group(1).strip()
        elif section == "package" and _PACKAGE_WORKSPACE.match(line):
            continue
        out.append(line)
    return "".join(out)


def _toml_tables(table: dict[str, Any], prefix: str) -> list[str]:
    """``table`` as TOML (profiles hold only scalars, arrays of scalars and tables)."""
    lines = [f"[{prefix}]"]
    nested = []
    for key, value in table.items():
        if isinstance(value, dict):
            nested.append((key, value))
        else:
            lines.append(f"{_toml_key(key)} = {_toml_value(value)}")
    for key, value in nested:
        lines.extend(["", *_toml_tables(value, f"{prefix}.{_toml_key(key)}")])
    return lines


def _toml_key(key: str) -> str:
    return key if _BARE_KEY.match(key) else json.dumps(key)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise InstallError(f"cannot carry the profile value {value!r} into the build")


# --- path dependencies -----------------------------------------------------------------------


def _dependency_tables(manifest: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for name in _DEPENDENCY_TABLES:
        table = manifest.get(name)
        if isinstance(table, dict):
            yield name, table
    targets = manifest.get("target")
    if isinstance(targets, dict):
        for cfg, spec in targets.items():
            if isinstance(spec, dict):
                for name in _DEPENDENCY_TABLES:
                    table = spec.get(name)
                    if isinstance(table, dict):
                        yield f"target.{cfg}.{name}", table
    workspace = manifest.get("workspace")
    if isinstance(workspace, dict) and isinstance(workspace.get("dependencies"), dict):
        yield "workspace.dependencies", workspace["dependencies"]
    patches = manifest.get("patch")
    if isinstance(patches, dict):
        for registry, table in patches.items():
            if isinstance(table, dict):
                yield f"patch.{registry}", table
    replace = manifest.get("replace")
    if isinstance(replace, dict):
        yield "replace", replace


def _path_dependencies(manifest: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(``table.name``, path) of every dependency given by ``path``."""
    for where, table in _dependency_tables(manifest):
        for name, spec in table.items():
            if isinstance(spec, dict) and isinstance(spec.get("path"), str):
                yield f"{where}.{name}", spec["path"]


def _fix_paths(orig_dir: Path, copy_dir: Path, build: _Build) -> list[tuple[Path, Path]]:
    """Vendor or check each path dependency of the crate at ``copy_dir`` (originally at
    ``orig_dir``) and point it at its copy; returns the crates to look at next."""
    cargo_toml = copy_dir / MANIFEST
    manifest = _read(cargo_toml, build.label)
    rewrites: dict[str, str] = {}
    following: list[tuple[Path, Path]] = []
    for where, path in _path_dependencies(manifest):
        target = _resolve(orig_dir, where, path, build)
        dest = _copied(target, build) or _vendor(target, where, path, build)
        following.append((target, dest))
        new = os.path.relpath(dest, copy_dir)
        if Path(os.path.normpath(copy_dir / path)) != Path(os.path.normpath(copy_dir / new)):
            rewrites[path] = Path(new).as_posix()
    if rewrites:
        _rewrite(cargo_toml, rewrites, build.label)
    return following


def _copied(target: Path, build: _Build) -> Path | None:
    """Where ``target`` is in the build when the copied tree or a vendored crate holds it."""
    for original, copy in [(build.original_root, build.copy_root), *build.vendored.items()]:
        if _within(target, original):
            return copy / target.relative_to(original)
    return None


def _resolve(orig_dir: Path, where: str, path: str, build: _Build) -> Path:
    """Where the dependency ``path`` of the crate in ``orig_dir`` is, refusing unsafe ones."""
    shown = f"{build.label}: the path dependency {where} = {path!r}"
    if not path or any(ord(c) < 32 for c in path):
        raise UnsafeSourceError(f"{shown} is empty or holds control characters; refusing it")
    if os.path.isabs(path) or path.startswith("~"):
        raise UnsafeSourceError(
            f"{shown} is an absolute path; a plugin may only depend on crates by a path "
            "relative to its Cargo.toml"
        )
    target = Path(os.path.normpath(orig_dir / path))
    if os.path.realpath(target) != str(target):
        raise UnsafeSourceError(f"{shown} goes through a symbolic link; refusing it")
    if _within(target, build.original_root):
        return target
    if not build.local:
        raise UnsafeSourceError(
            f"{shown} leads outside the fetched source; refusing it (it would build files "
            "of this machine into the plugin)"
        )
    for system in SYSTEM_DIRS:
        if _within(target, Path(system)) and not _within(build.plugin_dir, Path(system)):
            raise UnsafeSourceError(f"{shown} leads into {system}; refusing it")
    for protected in build.protected:
        if _within(target, protected) or _within(protected, target):
            raise UnsafeSourceError(
                f"{shown} leads into the Vultrino home ({protected}) or a directory holding "
                "it; refusing it"
            )
    if _within(build.plugin_dir, target) or _within(build.original_root, target):
        raise UnsafeSourceError(
            f"{shown} names a directory that holds the plugin itself; refusing it (depend "
            "on the crate's own directory)"
        )
    return target


def _vendor(target: Path, where: str, path: str, build: _Build) -> Path:
    """Copy the crate at ``target`` into the build and return where it went."""
    shown = f"{build.label}: the path dependency {where} = {path!r}"
    if _sources.safe_file(target, (MANIFEST,), what=MANIFEST, label=shown) is None:
        raise InstallError(f"{shown} ({target}) is not a crate: it has no Cargo.toml")
    if len(build.vendored) >= MAX_VENDORED:
        raise InstallError(
            f"{build.label}: more than {MAX_VENDORED} path dependencies outside the plugin "
            "to copy into the build; build the plugin yourself and install its module"
        )
    dest = build.vendor_dir / target.name
    n = 1
    while dest.exists():
        n += 1
        dest = build.vendor_dir / f"{target.name}-{n}"
    dest.mkdir(parents=True)
    _sources.copy_tree(target, dest, label=f"{build.label} (path dependency {target})")
    _sources.audit_tree(dest, f"{build.label} (path dependency {target})")
    build.vendored[target] = dest
    build.notes.append(f"copied the path dependency {where} ({target}) into the build")
    manifest = _read(dest / MANIFEST, shown)
    inherited = sorted(_inherited_keys(manifest))
    if inherited:
        raise InstallError(
            f"{shown}: the crate inherits {', '.join(inherited)} from its Cargo workspace, "
            "which is not part of the build"
        )
    package = manifest.get("package")
    if isinstance(package, dict) and "workspace" in package:
        cargo_toml = dest / MANIFEST
        cargo_toml.write_text(
            _drop_package_workspace(cargo_toml.read_text(encoding="utf-8")), encoding="utf-8"
        )
    return dest


def _rewrite(cargo_toml: Path, rewrites: dict[str, str], label: str) -> None:
    """Replace each ``path = "<old>"`` value by its new path, then check the result parses to
    exactly the intended dependencies."""
    text = cargo_toml.read_text(encoding="utf-8")

    def swap(m: re.Match[str]) -> str:
        try:
            old = tomllib.loads(f"v = {m.group(2)}")["v"]
        except tomllib.TOMLDecodeError:
            return m.group(0)
        new = rewrites.get(old)
        return m.group(0) if new is None else f"{m.group(1)}{json.dumps(new)}"

    cargo_toml.write_text(_PATH_VALUE.sub(swap, text), encoding="utf-8")
    left = [p for _, p in _path_dependencies(_read(cargo_toml, label)) if p in rewrites]
    if left:
        raise InstallError(
            f"{label}: could not point the path dependencies {', '.join(left)} at their "
            'copies in the build; write them as `name = {{ path = "..." }}`'
        )


# --- helpers ---------------------------------------------------------------------------------


def _within(path: Path, root: Path) -> bool:
    """``path`` is ``root`` or under it, lexically (both already free of links)."""
    return path == root or root in path.parents


def _read(cargo_toml: Path, label: str) -> dict[str, Any]:
    try:
        data: dict[str, Any] = tomllib.loads(cargo_toml.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise InstallError(f"{label}: cannot read {cargo_toml}: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise InstallError(f"{label}: {cargo_toml.name} is not valid TOML: {exc}") from exc
    return data
