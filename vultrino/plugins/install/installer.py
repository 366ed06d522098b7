"""Installing and removing plugins: ``vultrino plugin install | remove``.

One install runs in four steps, and nothing reaches ``plugins/<name>`` before the last:

1. **Acquire** the source (:mod:`._sources`): a directory is read in place; an archive is
   unpacked, a URL downloaded and unpacked, a git repository cloned — all into a staging
   directory ``plugins/.staging-<pid>-<random>/`` on the same filesystem as the plugins.
2. **Build** (:mod:`._cargo`) only when the manifest's ``wasm_module`` is not in the source but
   a ``Cargo.toml`` (or, for a Python plugin, an ``app.py``: :mod:`._componentize`) is, and
   only when the caller passed ``build=True`` (``--build``): building runs the source's own
   code (build scripts, procedural macros, the plugin's Python) with the user's rights, so
   without it the install stops with a :class:`~vultrino.errors.BuildRequiredError` saying
   what would run, and where. The build never sees a ``VULTRINO_*`` variable, runs on a
   copy whose ``path`` dependencies and workspace :mod:`._cargo_paths` has made stand alone,
   and runs in :mod:`._sandbox` (no network, neither ``$HOME`` nor the Vultrino home).
3. **Stage and validate** ``plugin.toml``, the module, README/LICENSE files and
   ``.installed.json`` in ``<staging>/plugin``: manifest, name, ABI, imports and exports,
   instantiation under the runtime's limits, tool and plugin-name conflicts.
4. **Move** the staged directory to ``plugins/<name>`` with one ``rename`` (with a PostgreSQL
   store, the staged files are first shared through the database, under the same lock:
   ``publish``, :mod:`.shared`; a failure there leaves ``plugins/`` as it was). ``force=True`` moves
   the old directory aside first, puts the new one in, then deletes the old one; if anything
   fails the old one is put back.

The staging directory is deleted on every path out, success or failure. Directories starting
with ``.`` in ``plugins/`` belong to the installer and are never plugins.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import json
import os
import re
import shutil
import stat
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vultrino._fs import fsync_dir, fsync_tree
from vultrino._version import __version__
from vultrino.errors import (
    BuildRequiredError,
    EngineError,
    InstallError,
    ManifestError,
    PluginConflictError,
    PluginNotFoundError,
    UnsafeSourceError,
    VultrinoError,
)
from vultrino.plugins.install import (
    _buildcache,
    _cargo,
    _cargo_paths,
    _componentize,
    _freshness,
    _sandbox,
    _sources,
    _toolchain,
)
from vultrino.plugins.manifest import (
    MAX_NAME_LENGTH,
    PLUGIN_NAME_RE,
    load_manifest,
    parse_manifest_bytes,
    read_manifest,
)

if TYPE_CHECKING:
    from vultrino.plugins.base import CredentialTypeSpec, PluginManifest
    from vultrino.plugins.registry import PluginRegistry
    from vultrino.runtime import WasmRuntime

__all__ = [
    "METADATA_FILE",
    "InstallResult",
    "install",
    "read_metadata",
    "remove",
]

METADATA_FILE = ".installed.json"
#: The marker of a disabled plugin (the registry's DISABLED_FILE), kept by a replacement.
DISABLED_FILE = ".disabled"
MANIFEST_FILE = "plugin.toml"
MAX_MODULE_BYTES = 64 * 1024 * 1024
"""A module larger than this is refused before it is read into memory."""
MAX_EXTRA_BYTES = 1024 * 1024
"""README / LICENSE files larger than this are left behind (with a warning)."""

_EXTRA_FILE = re.compile(r"(?i)^(readme|license|licence|copying|notice)([-.][A-Za-z0-9.-]*)?$")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_STAGING = ".staging-"
_REPLACED = ".replaced-"
_REMOVING = ".removing-"

BuildOutput = Callable[[str], None]
Progress = Callable[[int, int | None], None]
#: Called with the staged, validated plugin directory and its name just before it is moved in
#: (under the plugins directory's lock); an error stops the install with nothing moved.
Publish = Callable[[Path, str], None]


@dataclass
class InstallResult:
    """What :func:`install` did. ``source`` is what ``.installed.json`` records (a URL's password
    masked); ``commit`` is the resolved git commit; ``built`` tells whether cargo or
    componentize-py ran; ``notes`` say where the module came from when that is worth knowing
    (cargo's ``target/``, a rebuild of a stale module); ``dry_run`` results (``plugin check``)
    were validated, not installed (``path`` is where they would go)."""

    name: str
    version: str
    path: Path
    abi: int
    sha256: str
    source: str
    ref: str | None
    commit: str | None
    replaced: bool
    built: bool
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    dry_run: bool = False


def install(
    source: str,
    *,
    plugins_dir: Path,
    runtime: WasmRuntime,
    registry: PluginRegistry | None = None,
    subdir: str | None = None,
    force: bool = False,
    build: bool = False,
    build_output: BuildOutput | None = None,
    build_sandbox: str = _sandbox.DEFAULT_MODE,
    progress: Progress | None = None,
    build_cache: Path | None = None,
    fast_build: bool = False,
    dry_run: bool = False,
    module: Path | None = None,
    publish: Publish | None = None,
) -> InstallResult:
    """Install the plugin at ``source`` into ``plugins_dir/<name>``; see the module docstring.

    ``build_cache`` is the persistent build cache's root (:mod:`._buildcache`; default
    ``cache/builds`` beside ``plugins_dir``); ``fast_build`` builds with cargo's quick profile
    (``plugin dev``). ``dry_run`` runs every check an install runs, the build included, and
    stops before anything is written to ``plugins_dir`` (``plugin check``; an installed plugin
    of the same name is not an error). ``module`` names the module file to use instead of the
    one the manifest names (``plugin call X.wasm``). ``publish`` (:data:`Publish`) shares the
    validated plugin before it is moved in (a PostgreSQL store's replicas).

    ``build=True`` allows building a source that has no prebuilt module (``cargo build``, which
    runs the source's build scripts); without it such a source raises
    :class:`~vultrino.errors.BuildRequiredError` before anything runs. ``build_sandbox``
    (``auto`` | ``require`` | ``off``) says whether the build must run in :mod:`._sandbox`.

    Raises :class:`UnsafeSourceError` for hostile sources, :class:`InstallError` when the
    source cannot be fetched, built or placed, :class:`~vultrino.errors.ManifestError` for an
    invalid ``plugin.toml``, :class:`~vultrino.errors.EngineError` subclasses when the module
    does not load, and :class:`PluginConflictError` for name or tool collisions. On every error
    ``plugins_dir`` is left as it was.
    """
    _sandbox.check_mode(build_sandbox, where="--build-sandbox")
    spec = _sources.parse_source(source)
    sub = _sources.check_subdir(subdir)
    plugins_dir = Path(plugins_dir)
    options = _Options(
        force=force or dry_run,
        build=build,
        build_output=build_output,
        build_sandbox=build_sandbox,
        build_cache=Path(build_cache) if build_cache else plugins_dir.parent / "cache" / "builds",
        fast_build=fast_build,
        dry_run=dry_run,
        module=Path(module) if module is not None else None,
        publish=publish,
    )
    with _os_errors(f"installing from {spec.display}"):
        plugins_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        with _locked(plugins_dir):
            _recover(plugins_dir)
        staging = Path(tempfile.mkdtemp(prefix=f"{_STAGING}{os.getpid()}-", dir=plugins_dir))
        try:
            return _install(
                spec,
                sub=sub,
                staging=staging,
                plugins_dir=plugins_dir,
                runtime=runtime,
                registry=registry,
                options=options,
                progress=progress,
            )
        finally:
            shutil.rmtree(staging, ignore_errors=True)


@contextlib.contextmanager
def _os_errors(doing: str) -> Iterator[None]:
    """Translate a filesystem failure (disk full, permissions, I/O) into an InstallError."""
    try:
        yield
    except OSError as exc:
        where = f" ({exc.filename})" if exc.filename else ""
        raise InstallError(f"{doing} failed: {exc.strerror or exc}{where}") from exc


@dataclass(frozen=True)
class _Options:
    """What the caller asked of one install (see :func:`install`)."""

    force: bool
    build: bool
    build_output: BuildOutput | None
    build_sandbox: str
    build_cache: Path
    fast_build: bool
    dry_run: bool
    module: Path | None
    publish: Publish | None = None


def _install(
    spec: _sources.SourceSpec,
    *,
    sub: tuple[str, ...],
    staging: Path,
    plugins_dir: Path,
    runtime: WasmRuntime,
    registry: PluginRegistry | None,
    options: _Options,
    progress: Progress | None,
) -> InstallResult:
    label = spec.display
    warnings: list[str] = []
    notes: list[str] = []
    force = options.force
    if spec.kind == "url" and spec.location.lower().startswith("http://"):
        warnings.append(
            f"{label} was downloaded over plain http, which anyone on the way can alter"
        )
    acquired = _sources.acquire(spec, staging, progress=progress)
    root = acquired.root
    plugin_root = _sources.safe_dir(root, sub, label=label) if sub else root

    # The manifest first: it names the plugin, so an install that cannot succeed (already
    # installed, a conflict) stops before anything is built.
    manifest_src = _sources.safe_file(
        plugin_root, (MANIFEST_FILE,), what=MANIFEST_FILE, label=label
    )
    if manifest_src is None:
        raise InstallError(_no_manifest_message(label, root, sub))
    stage = staging / "plugin"
    stage.mkdir(mode=0o755)
    os.chmod(stage, 0o755)  # noqa: S103 - not group/world-writable, whatever the umask
    # Parsed from the very bytes that are staged; an error names the author's file (a local
    # directory's own, or its path inside an archive or repository), never the staging copy.
    manifest_bytes, _ = read_manifest(manifest_src)
    _write_file(stage / MANIFEST_FILE, manifest_bytes)
    try:
        manifest = parse_manifest_bytes(manifest_bytes, stage / MANIFEST_FILE)
    except ManifestError as exc:
        shown = _authors_manifest(manifest_src, acquired, staging / "src", label)
        raise _renamed(exc, str(stage / MANIFEST_FILE), shown) from None
    warnings.extend(manifest.warnings)
    name = manifest.name
    _check_name(name, what="the manifest's plugin name")
    module_name = _module_name(manifest.plugin.wasm_module, name)
    target = plugins_dir / name
    replacing = os.path.lexists(target)
    if replacing and not force:
        raise InstallError(
            f"plugin {name!r} is already installed at {target}; pass --force to "
            "replace it, or remove it first",
            plugin=name,
        )
    if replacing:
        _check_host_fields_kept(target / MANIFEST_FILE, manifest)
    if registry is not None:
        problems = registry.check_conflicts(manifest, replacing=name if replacing else None)
        if problems:
            listing = "\n".join(f"  - {p}" for p in problems)
            raise PluginConflictError(
                f"plugin {name!r} from {label} cannot be installed:\n{listing}", plugin=name
            )

    if options.module is not None:
        module_src, built = _explicit_module(options.module, label), False
    else:
        module_src, built = _module_source(
            spec,
            sub,
            acquired,
            plugin_root,
            module_name,
            staging=staging,
            home=plugins_dir.parent,
            options=options,
            label=label,
            plugin=name,
            warnings=warnings,
            notes=notes,
        )
    wasm = _read_module(module_src, label)
    _write_file(stage / module_name, wasm)
    sha = hashlib.sha256(wasm).hexdigest()

    try:
        # Validate the very bytes that will be installed: ABI, imports, exports, instantiation.
        try:
            info = runtime.inspect(wasm)
        except EngineError as exc:  # name the plugin, as load() does, keeping the error's class
            if exc.plugin is None:
                raise type(exc)(f"plugin {name}: {exc}", plugin=name) from exc
            raise
        runtime.load(wasm, plugin=name).close()
        if options.dry_run:
            if sha not in _installed_hashes(plugins_dir):
                _drop_cache(runtime, sha)
            return InstallResult(
                name=name,
                version=manifest.plugin.version,
                path=target,
                abi=info.abi,
                sha256=sha,
                source=label,
                ref=spec.ref,
                commit=acquired.commit,
                replaced=replacing,
                built=built,
                warnings=warnings,
                notes=notes,
                dry_run=True,
            )
        warnings.extend(_copy_extras(plugin_root, stage, {MANIFEST_FILE, module_name}, label))
        metadata = {
            "name": name,
            "version": manifest.plugin.version,
            "source": label,
            "kind": spec.kind,
            "ref": spec.ref,
            "commit": acquired.commit,
            "subdir": "/".join(sub) or None,
            "installed_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "sha256": sha,
            "abi": info.abi,
            "size": len(wasm),
            "built": built,
            "vultrino_version": __version__,
        }
        _write_json(stage / METADATA_FILE, metadata)
        fsync_tree(stage)
        with _locked(plugins_dir):
            if replacing:
                _keep_disabled(stage, target)  # before publishing: replicas keep it off too
            if options.publish is not None:
                options.publish(stage, name)
            old_sha = _move_in(stage, target, name, replacing=replacing)
            _fsync_dir(plugins_dir)
    except BaseException:
        # inspect/load compiled the module into the cache; a failed install leaves no trace.
        if sha not in _installed_hashes(plugins_dir):
            _drop_cache(runtime, sha)
        raise
    if old_sha and old_sha != sha:
        warnings.extend(_drop_cache(runtime, old_sha))
    return InstallResult(
        name=name,
        version=manifest.plugin.version,
        path=target,
        abi=info.abi,
        sha256=sha,
        source=label,
        ref=spec.ref,
        commit=acquired.commit,
        replaced=replacing,
        built=built,
        warnings=warnings,
        notes=notes,
    )


def _explicit_module(path: Path, label: str) -> Path:
    """The module file the caller named (``plugin call X.wasm``): a regular file."""
    try:
        st = os.stat(path)
    except OSError as exc:
        raise InstallError(f"{label}: cannot read the module {path}: {exc.strerror}") from exc
    if not stat.S_ISREG(st.st_mode):
        raise InstallError(f"{label}: the module {path} is not a regular file")
    return Path(os.path.realpath(path))


def _shown(path: Path, root: Path) -> str:
    try:
        return Path(path).relative_to(root).as_posix()
    except ValueError:
        return str(path)


def _module_source(
    spec: _sources.SourceSpec,
    sub: tuple[str, ...],
    acquired: _sources.Acquired,
    plugin_root: Path,
    module_name: str,
    *,
    staging: Path,
    home: Path,
    options: _Options,
    label: str,
    plugin: str,
    warnings: list[str],
    notes: list[str],
) -> tuple[Path, bool]:
    """The module to install and whether it was built.

    The prebuilt one in the source when there is one; for a local Rust project without one,
    the module cargo left in its ``target/<wasm triple>/release/``. A local Rust project's
    module older than its sources is stale: with ``--build`` it is rebuilt, without a warning
    says so. Otherwise ``cargo build`` runs on the source's ``Cargo.toml`` in the persistent
    build cache, on a copy whose path dependencies and workspace :mod:`._cargo_paths` has made
    stand alone (nothing of ``home``, the directory holding ``plugins/``, may be part of it)."""

    def note(text: str) -> None:
        notes.append(text)
        if options.build_output is not None:
            options.build_output(f"vultrino: {text}")

    prebuilt = _sources.safe_file(
        plugin_root, (module_name,), what=f"wasm_module {module_name!r}", label=label
    )
    rust = (
        _sources.safe_file(plugin_root, ("Cargo.toml",), what="Cargo.toml", label=label) is not None
    )
    local_rust = rust and acquired.in_place and not _componentize.is_python_project(plugin_root)
    if prebuilt is None and local_rust:
        picked = _freshness.built_module(plugin_root, module_name)
        if picked is not None:
            prebuilt = picked
            note(
                f"using {_shown(picked, plugin_root)}, the module cargo built (there is no "
                f"{module_name} beside plugin.toml)"
            )
    if prebuilt is not None:
        newer = _freshness.newer_sources(plugin_root, prebuilt) if local_rust else []
        if not newer:
            return prebuilt, False
        changed = ", ".join(newer[:3]) + (f" and {len(newer) - 3} more" if len(newer) > 3 else "")
        if not options.build:
            warnings.append(
                f"{_shown(prebuilt, plugin_root)} is older than its sources ({changed} changed "
                "since it was built): it may not hold your latest changes; rebuild it, or pass "
                "--build to let Vultrino build it"
            )
            return prebuilt, False
        note(
            f"{_shown(prebuilt, plugin_root)} is older than its sources ({changed}): building "
            "it afresh instead of installing it"
        )
    elif _componentize.is_python_project(plugin_root):
        return _build_python(
            acquired,
            plugin_root,
            module_name,
            staging,
            options.build_output,
            label=label,
            build=options.build,
            sandbox=options.build_sandbox,
            home=home,
        )
    elif not rust:
        raise InstallError(
            f"{label}: the manifest names the module {module_name!r}, but it is not in the "
            "plugin directory and there is no Cargo.toml to build it from"
        )
    if not options.build:
        raise _build_required(acquired, plugin_root, module_name, label=label, plugin=plugin)
    built = _build_rust(
        spec,
        sub,
        acquired,
        plugin_root,
        module_name,
        name=plugin,
        staging=staging,
        home=home,
        options=options,
        label=label,
    )
    return built, True


def _build_rust(
    spec: _sources.SourceSpec,
    sub: tuple[str, ...],
    acquired: _sources.Acquired,
    plugin_root: Path,
    module_name: str,
    *,
    name: str,
    staging: Path,
    home: Path,
    options: _Options,
    label: str,
) -> Path:
    """``cargo build`` in the plugin's persistent build cache (:mod:`._buildcache`); returns
    the built module, copied into ``staging``."""
    real_root = Path(os.path.realpath(acquired.root))
    rel = Path(os.path.realpath(plugin_root)).relative_to(real_root)
    identity = (
        f"dir:{os.path.realpath(plugin_root)}"
        if acquired.in_place
        else f"{spec.kind}:{spec.display}:{'/'.join(sub)}"
    )
    # Copied and made to stand alone in staging first, so a source refused on the way leaves
    # no cache behind; then synced into the cache by content (relative paths kept).
    work = staging / "build"
    work.mkdir(mode=0o700)
    _sources.copy_tree(real_root, work / "src", label=label)
    (work / "path-deps").mkdir(mode=0o700)
    notes = _cargo_paths.prepare(
        work / "src" / rel,
        original=plugin_root,
        original_root=real_root,
        copy_root=work / "src",
        vendor_dir=work / "path-deps",
        local=acquired.in_place,
        protected=(home,),
        label=label,
    )
    # Then the toolchain: a machine that cannot build fails before the cache is touched.
    toolchain = _toolchain.find(cwd=plugin_root, state_dir=options.build_cache.parent, label=label)
    cache_root = _buildcache.checked_dir(options.build_cache)
    cache = _buildcache.checked_dir(cache_root / _buildcache.cache_key(name, identity))
    with _buildcache.locked(cache):
        for part in ("src", "path-deps"):
            _buildcache.sync_tree(work / part, cache / part)
        project = cache / "src" / rel
        if options.build_output is not None:
            options.build_output(f"vultrino: build cache {cache}")
            for text in notes:
                options.build_output(f"vultrino: {text}")
        target = cache / "target"
        target.mkdir(mode=0o700, exist_ok=True)
        result = _cargo.build(
            project,
            wasm_module=module_name,
            target_dir=target,
            state_dir=cache_root.parent,
            output=options.build_output,
            label=label,
            sandbox=options.build_sandbox,
            writable=(cache,),
            hidden=(home,),
            fast=options.fast_build,
            toolchain=toolchain,
        )
        # copied out under the lock: the next build of the same source replaces it
        out = staging / "built" / module_name
        out.parent.mkdir(mode=0o700)
        shutil.copyfile(result.module, out)
    return out


def _build_required(
    acquired: _sources.Acquired,
    plugin_root: Path,
    module_name: str,
    *,
    label: str,
    plugin: str,
) -> BuildRequiredError:
    """The refusal to build without ``--build``: what would run, where, and how to allow it."""
    command = _cargo.describe_command()
    where = (
        f"a private copy of {os.path.realpath(plugin_root)}"
        if acquired.in_place
        else f"the {'cloned' if acquired.commit else 'unpacked'} source ({label})"
    )
    sub = plugin_root.relative_to(acquired.root).as_posix() if plugin_root != acquired.root else ""
    if sub:
        where += f", folder {sub}"
    return BuildRequiredError(
        f"plugin {plugin!r} from {label} has no prebuilt module {module_name!r}: installing it "
        f"means running `{command}` in {where}. That runs the crate's build scripts and "
        "procedural macros with your rights. Read the source first; then pass --build "
        "(Python: build=True) to allow the build, or install a directory or archive that "
        "already holds the module.",
        plugin=plugin,
        command=command,
        directory=str(os.path.realpath(plugin_root)),
    )


def _build_python(
    acquired: _sources.Acquired,
    plugin_root: Path,
    module_name: str,
    staging: Path,
    build_output: BuildOutput | None,
    *,
    label: str,
    build: bool,
    sandbox: str,
    home: Path,
) -> tuple[Path, bool]:
    """A Python plugin (``app.py``) built into a component by componentize-py, on request."""
    if not build:
        raise BuildRequiredError(
            f"{label}: the manifest names the module {module_name!r}, which is not in the "
            "plugin directory; it is a Python plugin, and building it with componentize-py "
            "runs its code with your rights. Read the source first; then pass --build "
            "(Python: build=True) to allow the build",
            command="componentize-py componentize app",
            directory=str(os.path.realpath(plugin_root)),
        )
    project = plugin_root
    if acquired.in_place:  # never build inside the user's own directory: copy it first
        real_root = os.path.realpath(acquired.root)
        rel = Path(os.path.realpath(plugin_root)).relative_to(real_root)
        _sources.copy_tree(Path(real_root), staging / "src", label=label)
        project = staging / "src" / rel
    out = _componentize.build(
        project,
        out=staging / "build" / module_name,
        output=build_output,
        label=label,
        sandbox=sandbox,
        writable=(staging,),
        hidden=(home,),
    )
    return out, True


def _keep_disabled(stage: Path, target: Path) -> None:
    """A replaced plugin stays disabled: its ``.disabled`` marker goes into the new copy."""
    if (target / DISABLED_FILE).exists():
        (stage / DISABLED_FILE).write_text(
            (target / DISABLED_FILE).read_text(encoding="utf-8"), encoding="utf-8"
        )


def _move_in(stage: Path, target: Path, name: str, *, replacing: bool) -> str | None:
    """Rename ``stage`` to ``target`` (under the lock); returns the replaced module's sha256.
    ``stage`` is taken as it is (a shared plugin's copy is exactly what the database holds,
    its ``.disabled`` marker included or not)."""
    if replacing:
        return _swap_in(stage, target, name)
    try:
        os.rename(stage, target)
    except OSError as exc:  # someone installed the same name meanwhile
        raise InstallError(
            f"cannot move the plugin into {target}: {exc.strerror or exc}; is another "
            "install of it running?",
            plugin=name,
        ) from exc
    return None


def _exchange(a: Path, b: Path) -> bool:
    """Swap two directories in one atomic step (Linux ``renameat2(RENAME_EXCHANGE)``).

    With it, a process killed at any instant leaves ``plugins/<name>`` complete, old or new.
    Returns False where the call is not available (other systems, old kernels, filesystems
    without support); the caller then falls back to two renames, whose window the next
    install or remove repairs by putting the aside copy back.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.c_uint,
    ]
    renameat2.restype = ctypes.c_int
    at_fdcwd, rename_exchange = -100, 2
    result: int = renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange)
    return result == 0


def _swap_in(stage: Path, target: Path, name: str) -> str | None:
    """Replace ``target`` by ``stage``: old aside, new in, old deleted; on failure the old one
    is put back. Returns the old module's sha256 (from its metadata)."""
    try:
        old_sha = read_metadata(target).get("sha256")
    except InstallError:
        old_sha = None
    if target.is_symlink():  # a hand-made link to a development directory: replace the link
        target.unlink()
        os.rename(stage, target)
        return None
    aside = target.parent / f"{_REPLACED}{os.getpid()}-{name}-{os.urandom(4).hex()}"
    if _exchange(stage, target):
        aside = stage  # the old plugin is now where the staged one was
    else:
        os.rename(target, aside)
        try:
            os.rename(stage, target)
        except BaseException:
            os.rename(aside, target)
            raise
    if aside.is_dir():
        shutil.rmtree(aside, ignore_errors=True)
    else:
        aside.unlink()
    return old_sha if isinstance(old_sha, str) else None


def remove(name: str, *, plugins_dir: Path, runtime: WasmRuntime | None = None) -> Path:
    """Delete the installed plugin ``name`` and drop its compiled-module cache entries.

    ``name`` must be a plugin name, never a path (``../x``, ``/etc``, ``a/b`` are refused with
    :class:`UnsafeSourceError`). Returns the path that was removed.
    """
    _check_name(name, what="plugin name")
    plugins_dir = Path(plugins_dir)
    target = plugins_dir / name
    if not os.path.lexists(target):
        raise PluginNotFoundError(
            f"plugin {name!r} is not installed (in {plugins_dir}); `vultrino plugin list` "
            "shows what is",
            plugin=name,
        )
    if target.is_symlink():
        target.unlink()  # a link the user made: remove the link, never what it points to
        return target
    if not target.is_dir():
        raise InstallError(f"{target} is not a plugin directory; remove it by hand", plugin=name)
    shas = _module_hashes(target)
    with _os_errors(f"removing plugin {name!r}"), _locked(plugins_dir):
        _recover(plugins_dir)
        doomed = plugins_dir / f"{_REMOVING}{os.getpid()}-{name}-{os.urandom(4).hex()}"
        os.rename(target, doomed)  # one step: the plugin is gone for every reader at once
        _fsync_dir(plugins_dir)
    shutil.rmtree(doomed, ignore_errors=True)
    if runtime is not None:
        for sha in shas:
            _drop_cache(runtime, sha)
    return target


def read_metadata(plugin_dir: Path) -> dict[str, Any]:
    """The plugin's ``.installed.json`` as a dict; ``{}`` when there is none (a plugin copied
    in by hand). A file that is not a JSON object is an :class:`InstallError`."""
    path = Path(plugin_dir) / METADATA_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as exc:
        raise InstallError(f"{path}: cannot read installation metadata: {exc}") from exc
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise InstallError(f"{path}: not valid JSON ({exc}); reinstall the plugin") from exc
    if not isinstance(data, dict):
        raise InstallError(f"{path}: expected a JSON object; reinstall the plugin")
    return data


# --- helpers ---------------------------------------------------------------------------------


def _check_name(name: str, *, what: str) -> None:
    """A plugin name is also a directory name: refuse anything that could be a path."""
    if (
        not name
        or name in (".", "..")
        or "/" in name
        or "\\" in name
        or "\x00" in name
        or os.path.isabs(name)
    ):
        raise UnsafeSourceError(
            f"{what} {name!r} is a path, not a plugin name (lowercase letters, digits and '-')"
        )
    if not PLUGIN_NAME_RE.fullmatch(name) or len(name) > MAX_NAME_LENGTH:
        raise InstallError(
            f"{what} {name!r} is not a valid plugin name: use lowercase letters, digits and "
            f"single '-' between them, at most {MAX_NAME_LENGTH} characters"
        )


def _module_name(wasm_module: str | None, plugin: str) -> str:
    if not wasm_module:
        raise InstallError(
            f"plugin {plugin!r}: plugin.toml has no [plugin].wasm_module naming its module",
            plugin=plugin,
        )
    if (
        "/" in wasm_module
        or "\\" in wasm_module
        or wasm_module in (".", "..")
        or wasm_module.startswith(".")
        or wasm_module in (MANIFEST_FILE, METADATA_FILE)
    ):
        raise UnsafeSourceError(
            f"plugin {plugin!r}: wasm_module {wasm_module!r} must be a bare file name inside "
            "the plugin directory",
            plugin=plugin,
        )
    return wasm_module


def _check_host_fields_kept(installed: Path, manifest: PluginManifest) -> None:
    """Refuse a version that would hand the plugin a field the installed version keeps in the
    host (``access = "host"``): credentials were stored trusting that the plugin never sees
    it. Likewise a version that stops naming a field as another's ``passphrase_field`` (only
    then may a key operation take it as a key). An installed manifest that cannot be read has
    nothing to compare (it is broken)."""
    try:
        old = load_manifest(installed)
    except (ManifestError, OSError):
        return
    exposed: list[str] = []
    as_key: list[str] = []
    for spec in old.credential_types:
        new = manifest.credential_type(spec.name)
        if new is None:
            continue  # the type is gone: its credentials reach no plugin
        exposed += [f"{spec.name}.{f}" for f in spec.host_fields if f not in new.host_fields]
        names = {g.name for g in new.fields}
        as_key += [
            f"{spec.name}.{f}"
            for f in sorted(_passphrase_fields(spec) - _passphrase_fields(new))
            if f in names
        ]
    if as_key:
        raise InstallError(
            f"plugin {manifest.name!r} {manifest.plugin.version} no longer names "
            f"{', '.join(as_key)} as a passphrase_field, so its key operations could take that "
            "passphrase as a key (an HMAC of it could be guessed offline): credentials were "
            "stored trusting that it only unlocks its key. Keep passphrase_field in the new "
            "manifest, or remove the plugin and its credentials first",
            plugin=manifest.name,
        )
    if exposed:
        raise InstallError(
            f"plugin {manifest.name!r} {manifest.plugin.version} would hand the plugin "
            f"{', '.join(exposed)}, which the installed version keeps in the host (access = "
            '"host"): credentials were stored trusting that the plugin never sees them. '
            "Keep the field host-only in the new manifest, or remove the plugin and its "
            "credentials first",
            plugin=manifest.name,
        )


def _passphrase_fields(spec: CredentialTypeSpec) -> set[str]:
    """The fields of ``spec`` that unlock another (``passphrase_field``): no key operation
    takes them as a key, so a version that stops naming one would turn it into a key."""
    return {f.passphrase_field for f in spec.fields if f.passphrase_field is not None}


def _authors_manifest(
    manifest_src: Path, acquired: _sources.Acquired, unpacked: Path, label: str
) -> str:
    """How to name the manifest the author wrote: its own path for a directory source, its
    path inside the archive or repository otherwise (never the staging copy, which is gone
    by the time anyone reads the message)."""
    if acquired.in_place:
        return str(manifest_src)
    try:
        inside = manifest_src.relative_to(unpacked).as_posix()
    except ValueError:
        inside = MANIFEST_FILE
    return f"{inside} in {label}"


def _renamed(exc: ManifestError, staged: str, shown: str) -> ManifestError:
    """``exc`` with every mention of the staged copy ``staged`` replaced by ``shown``."""
    exc.args = tuple(a.replace(staged, shown) if isinstance(a, str) else a for a in exc.args)
    exc.problems = [p.replace(staged, shown) for p in exc.problems]
    return exc


def _no_manifest_message(label: str, root: Path, sub: tuple[str, ...]) -> str:
    where = f"--subdir {'/'.join(sub)!r}" if sub else "the top of the source"
    found = sorted(
        p.parent.relative_to(root).as_posix()
        for pattern in ("*/plugin.toml", "*/*/plugin.toml", "*/*/*/plugin.toml")
        for p in root.glob(pattern)
        if ".git" not in p.parts
    )[:5]
    hint = (
        f"; found one in {', '.join(found)} — pass --subdir {found[0]}"
        if found and not sub
        else "; pass --subdir with the plugin's folder"
    )
    return f"{label}: no plugin.toml at {where}{hint}"


def _read_module(path: Path, label: str) -> bytes:
    size = path.stat().st_size
    if size > MAX_MODULE_BYTES:
        raise InstallError(
            f"{label}: the module {path.name} is {size // (1024 * 1024)} MiB; modules over "
            f"{MAX_MODULE_BYTES // (1024 * 1024)} MiB are refused"
        )
    with path.open("rb") as fh:
        data = fh.read(MAX_MODULE_BYTES + 1)
    if len(data) > MAX_MODULE_BYTES:
        raise InstallError(f"{label}: the module {path.name} grew while being read")
    return data


#: Every installed file gets this mode whatever the umask (a umask of 000 must not leave a
#: module, which the engines compile to native code, writable by other users).
FILE_MODE = 0o644


def _create(dst: Path) -> Any:
    fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    os.fchmod(fd, FILE_MODE)  # the umask cannot add bits, but be explicit about the result
    return os.fdopen(fd, "wb")


def _copy_file(src: Path, dst: Path) -> None:
    with src.open("rb") as fin, _create(dst) as fout:
        shutil.copyfileobj(fin, fout)


def _write_file(dst: Path, data: bytes) -> None:
    with _create(dst) as fout:
        fout.write(data)


def _copy_extras(plugin_root: Path, stage: Path, taken: set[str], label: str) -> list[str]:
    """Copy README / LICENSE / COPYING / NOTICE files that sit next to plugin.toml."""
    warnings: list[str] = []
    for entry in sorted(os.listdir(plugin_root)):
        if entry in taken or not _EXTRA_FILE.match(entry):
            continue
        try:
            src = _sources.safe_file(plugin_root, (entry,), what=entry, label=label)
        except UnsafeSourceError as exc:
            warnings.append(f"{exc}; not copied")
            continue
        if src is None:
            continue
        if src.stat().st_size > MAX_EXTRA_BYTES:
            warnings.append(f"{entry} is larger than 1 MiB; not copied")
            continue
        _copy_file(src, stage / entry)
    return warnings


def _write_json(path: Path, data: dict[str, Any]) -> None:
    _write_file(path, (json.dumps(data, indent=2, sort_keys=True) + "\n").encode("utf-8"))


def _fsync_dir(directory: Path) -> None:
    """Best effort: the rename it makes durable has happened, so the install has too."""
    with contextlib.suppress(OSError):
        fsync_dir(directory)


def _module_hashes(plugin_dir: Path) -> set[str]:
    """sha256 of the plugin's module(s): from the metadata, else hashed from the ``.wasm``."""
    try:
        sha = read_metadata(plugin_dir).get("sha256")
    except InstallError:
        sha = None
    if isinstance(sha, str) and sha:
        return {sha}
    hashes = set()
    for p in plugin_dir.glob("*.wasm"):
        if p.is_file() and not p.is_symlink():
            hashes.add(hashlib.sha256(p.read_bytes()).hexdigest())
    return hashes


def _installed_hashes(plugins_dir: Path) -> set[str]:
    """Module hashes of every installed plugin (their cache entries must survive)."""
    hashes: set[str] = set()
    for entry in plugins_dir.iterdir():
        if not entry.name.startswith(".") and entry.is_dir():
            hashes |= _module_hashes(entry)
    return hashes


def _drop_cache(runtime: WasmRuntime, sha: str) -> list[str]:
    if not _SHA256.fullmatch(sha):  # a hand-edited .installed.json: nothing we could drop
        return []
    try:
        runtime.drop_cache(sha)
    except (OSError, VultrinoError) as exc:
        return [f"could not drop cached compiled modules for {sha[:12]}: {exc}"]
    return []


@contextlib.contextmanager
def _locked(plugins_dir: Path) -> Iterator[None]:
    """Serialize the final moves of concurrent installs and removes: an advisory lock on the
    plugins directory itself (POSIX), so no lock file is left behind."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    fd = os.open(plugins_dir, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _recover(plugins_dir: Path) -> None:
    """Tidy up after an install or remove that was killed half-way (call under the lock).

    Staging and removal leftovers of dead processes are deleted; a plugin moved aside by a
    ``--force`` replace that never completed is put back.
    """
    for entry in plugins_dir.iterdir():
        for prefix in (_STAGING, _REPLACED, _REMOVING):
            if not entry.name.startswith(prefix):
                continue
            pid_text, _, rest = entry.name[len(prefix) :].partition("-")
            if not pid_text.isdigit() or _pid_alive(int(pid_text)):
                continue
            if prefix == _REPLACED:
                name = rest.rpartition("-")[0]
                original = plugins_dir / name
                if PLUGIN_NAME_RE.fullmatch(name) and not os.path.lexists(original):
                    os.rename(entry, original)
                    continue
            shutil.rmtree(entry, ignore_errors=True)
