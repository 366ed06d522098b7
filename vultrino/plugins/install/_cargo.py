"""Building a plugin from its Rust sources with cargo.

``cargo build --release --target wasm32-wasip1``, or ``wasm32-wasi`` when that is the one the
toolchain has (Rust before 1.78, and Debian's packaged toolchain, only have ``wasm32-wasi``).
The toolchain is found by :mod:`._toolchain` (``$VULTRINO_CARGO``, cargo on ``PATH``, Debian's
packaged toolchain and crates), which probes which targets have their standard library
installed, so cargo runs once, for a target that can work, and a machine with no toolchain
that can fails at once with what to install. When the probe cannot tell, both targets are tried
in turn. A build that fails because cargo could not fetch the crate's dependencies (offline)
says how to build offline. The build's output is streamed line by line to the caller, and its
artifacts go to a target directory the installer owns (its persistent build cache), so nothing
is written next to the sources.

Every ``VULTRINO_*`` variable is kept from the build (``VULTRINO_PASSWORD`` would hand the
store's password to the crate's build scripts).

Building runs the crate's build scripts and procedural macros, so the installer builds only when
asked to (``--build``), and cargo runs in :mod:`._sandbox`: no network, the toolchain read-only,
only the build's cache directory writable, neither ``$HOME`` nor the rest of the Vultrino home
visible (where bubblewrap cannot run, the build warns and runs with the user's rights, unless
the sandbox is required).
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from vultrino.errors import InstallError
from vultrino.plugins.install import _sandbox, _toolchain
from vultrino.plugins.install._build import build_environment, run_streamed

ENV_CARGO = _toolchain.ENV_CARGO
TARGETS = _toolchain.TARGETS
INSTALL_HINT = _toolchain.INSTALL_HINT
OFFLINE_HINT = (
    "build where crates.io is reachable, or give cargo an offline crate source: on "
    "Debian/Ubuntu, `sudo apt install cargo rustc libstd-rust-dev-wasm32` and the crates as "
    "librust-*-dev packages (Vultrino then uses that toolchain and those crates offline, by "
    "itself); or install a directory that already holds the built module"
)
#: Settings that make ``fast`` builds (``vultrino plugin dev``) quick to redo: no link-time
#: optimisation, parallel and incremental code generation. The plugin's other release
#: settings (``opt-level``, ``panic``, ``strip``) stay.
FAST_PROFILE = {
    "CARGO_PROFILE_RELEASE_LTO": "false",
    "CARGO_PROFILE_RELEASE_CODEGEN_UNITS": "16",
    "CARGO_PROFILE_RELEASE_INCREMENTAL": "true",
}

# What cargo prints when it cannot fetch the crate's dependencies.
_FETCH_FAILED = (
    "failed to download",
    "unable to update registry",
    "could not resolve host",
    "couldn't resolve host",
    "spurious network error",
    "failed to query replaced source registry",
    "--offline was specified",
    "failed to load source for dependency",
    "no matching package named",
)
# What rustup's proxy prints when it has no toolchain to run.
_NO_TOOLCHAIN = ("rustup could not choose a version", "no default is configured")

# What cargo/rustc print when a target is unknown or its standard library is missing.
_TARGET_MISSING = (
    "could not find specification for target",
    "error loading target specification",
    "unknown target",
    "may not be installed",
    "can't find crate for `std`",
    "can't find crate for `core`",
)
_TAIL_LINES = 15


@dataclass(frozen=True)
class BuildResult:
    """The built module and the target triple that produced it."""

    module: Path
    target: str


def _rustc_for(cargo: str) -> str:
    """The rustc cargo will use: ``$RUSTC``, else the one beside cargo, else ``rustc``."""
    override = os.environ.get("RUSTC")
    if override:
        return override
    beside = Path(cargo).with_name("rustc")
    return str(beside) if beside.is_file() else "rustc"


def probe_targets(cargo: str, cwd: Path | None = None) -> tuple[list[str], str] | None:
    """Which of :data:`TARGETS` the toolchain of ``cargo`` has a standard library for, and
    the sysroot looked in; None when rustc cannot be asked (:func:`._toolchain.probe_targets`)."""
    return _toolchain.probe_targets(_rustc_for(cargo), cwd)


def describe_command() -> str:
    """The build command as the user would type it (for messages)."""
    return f"cargo build --release --target {TARGETS[0]}"


def build(
    project: Path,
    *,
    wasm_module: str,
    target_dir: Path,
    state_dir: Path,
    output: Callable[[str], None] | None = None,
    label: str = "plugin",
    sandbox: str = _sandbox.DEFAULT_MODE,
    writable: tuple[Path, ...] = (),
    hidden: tuple[Path, ...] = (),
    fast: bool = False,
    toolchain: _toolchain.Toolchain | None = None,
) -> BuildResult:
    """Build the crate in ``project`` for wasm and return ``<target>/release/<wasm_module>``.

    The toolchain is found by :func:`._toolchain.find` (``state_dir`` may receive a private
    ``CARGO_HOME`` for Debian's packaged crates). The build runs in :mod:`._sandbox`
    (``sandbox`` is its mode) seeing the toolchain read-only, ``project``, ``target_dir`` and
    ``writable`` writable, and never ``hidden``. ``fast`` builds with :data:`FAST_PROFILE`.
    ``toolchain``, when the caller found it already, is used instead of looking again."""
    tc = toolchain or _toolchain.find(cwd=project, state_dir=state_dir, label=label)
    extra = dict(tc.env, CARGO_TARGET_DIR=str(target_dir), CARGO_TERM_COLOR="never")
    if fast:
        extra.update(FAST_PROFILE)
    env = build_environment(**extra)
    targets = tc.targets
    cargo, read_only = _toolchain_paths(tc.cargo, tc.sysroot, env)
    if output is not None:
        output(f"vultrino: building with {tc.origin}")
    missing: list[str] = []
    for target in targets:
        run = _sandbox.prepare(
            [cargo, "build", "--release", "--target", target],
            cwd=project,
            env=env,
            mode=sandbox,
            read_only=read_only,
            writable=(project, target_dir, *writable),
            hidden=hidden,
            output=output,
            label=label,
        )
        code, tail = _run(run.cmd, cwd=project, env=run.env, output=output, label=label)
        if code == 0:
            return BuildResult(_pick(target_dir / target / "release", wasm_module, label), target)
        text = "\n".join(tail).lower()
        last = "\n  ".join(tail[-8:])
        if any(marker in text for marker in _NO_TOOLCHAIN):
            raise InstallError(
                f"{label}: {cargo} is rustup's, and rustup has no default toolchain:\n  {last}\n"
                f"Run `rustup default stable` and `rustup target add wasm32-wasip1`, or "
                f"{INSTALL_HINT}"
            )
        if any(marker in text for marker in _FETCH_FAILED):
            raise InstallError(
                f"{label}: `cargo build --release --target {target}` could not fetch the "
                f"crate's dependencies ({cargo}; no network?):\n  {last}\n{OFFLINE_HINT}"
            )
        if not any(marker in text for marker in _TARGET_MISSING):
            raise InstallError(
                f"{label}: `cargo build --release --target {target}` failed (exit {code}):\n"
                f"  {last}\nFix the build, or install a directory that already holds the module."
            )
        missing.append(target)
        if output is not None and target != targets[-1]:
            output(f"vultrino: trying target {targets[-1]} instead of {target}")
    raise InstallError(
        f"{label}: this Rust toolchain ({cargo}) cannot build WebAssembly (no "
        f"{' or '.join(missing)} standard library); {INSTALL_HINT}"
    )


def _toolchain_paths(
    cargo: str, sysroot: str | None, env: dict[str, str]
) -> tuple[str, list[Path]]:
    """The cargo to run and what the sandbox must show of the toolchain (read-only).

    Executables are named by their real paths. rustup's proxies (``~/.cargo/bin/cargo`` is
    rustup itself, next to the crates.io token) are replaced by the toolchain's own cargo and
    rustc in the sysroot, so only that toolchain is shown. ``env`` gets ``RUSTC`` accordingly.
    Of ``CARGO_HOME`` only its configuration, crate sources and git checkouts are shown, and
    any local crate directory its configuration names (``directory = ...``: vendored or
    Debian's packaged crates)."""
    real = Path(os.path.realpath(cargo))
    wanted = env.get("RUSTC") or _rustc_for(cargo)
    found = shutil.which(wanted, path=env.get("PATH"))
    rustc = Path(os.path.realpath(found)) if found else None
    if sysroot is not None and real.name.startswith("rustup"):
        bindir = Path(sysroot) / "bin"
        if (bindir / "cargo").is_file():
            real, rustc = bindir / "cargo", bindir / "rustc"
    home = env.get("CARGO_HOME") or str(Path("~/.cargo").expanduser())
    cargo_home = Path(os.path.realpath(home))

    def prefix(exe: Path) -> Path:  # the installation an executable belongs to
        up = exe.parent.parent  # never all of CARGO_HOME (credentials.toml): only its bin/
        return exe.parent if cargo_home == up or cargo_home.is_relative_to(up) else up

    read_only = [prefix(real)]
    if rustc is not None:
        env["RUSTC"] = str(rustc)
        read_only.append(prefix(rustc))
    if env.get("RUSTDOC"):
        read_only.append(prefix(Path(os.path.realpath(env["RUSTDOC"]))))
    if sysroot is not None:
        read_only.append(Path(sysroot))
    for name in ("config.toml", "config", "registry", "git"):
        read_only.append(Path(home) / name)
        if name.startswith("config"):
            read_only.extend(_local_sources(Path(home) / name))
    return str(real), read_only


def _local_sources(config: Path) -> list[Path]:
    """The ``[source.*] directory`` entries of a cargo configuration file."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - exercised on the Python 3.10 CI leg
        import tomli as tomllib
    try:
        data = tomllib.loads(config.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return []
    sources = data.get("source")
    if not isinstance(sources, dict):
        return []
    found = [s.get("directory") for s in sources.values() if isinstance(s, dict)]
    return [Path(d) for d in found if isinstance(d, str)]


def _run(
    cmd: list[str],
    *,
    cwd: Path,
    env: dict[str, str],
    output: Callable[[str], None] | None,
    label: str,
) -> tuple[int, list[str]]:
    """Run ``cmd``, streaming merged stdout/stderr lines; return (exit code, last lines)."""
    try:
        return run_streamed(cmd, cwd=cwd, env=env, output=output, tail_lines=_TAIL_LINES)
    except FileNotFoundError as exc:
        raise InstallError(
            f"{label}: cannot run cargo ({cmd[0]}: not found); {INSTALL_HINT}"
        ) from exc
    except PermissionError as exc:
        raise InstallError(f"{label}: cannot run cargo ({cmd[0]}: not executable)") from exc


def _pick(release: Path, wasm_module: str, label: str) -> Path:
    module = release / wasm_module
    if module.is_file():
        return module
    built = sorted(p.name for p in release.glob("*.wasm")) if release.is_dir() else []
    hint = (
        f"the build produced {', '.join(built)}; set [plugin].wasm_module to one of them"
        if built
        else "the build produced no .wasm file; is the crate a `cdylib`?"
    )
    raise InstallError(f"{label}: cargo built, but there is no {wasm_module!r}: {hint}")
