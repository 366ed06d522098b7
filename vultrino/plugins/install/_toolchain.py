"""Finding a Rust toolchain that can build a plugin, without the user setting anything up.

A plugin build needs ``cargo``, a ``rustc`` whose sysroot holds a WebAssembly standard library
(``wasm32-wasip1``, or ``wasm32-wasi`` before Rust 1.78 and in Debian's packages) and a source
for the crate's dependencies. :func:`find` looks, in order, at

1. ``$VULTRINO_CARGO`` when set (with ``$RUSTC``, else the ``rustc`` beside it): the user's
   explicit choice, taken as it is;
2. ``cargo`` on ``PATH`` (a rustup toolchain, or Debian's), with ``$RUSTC`` or its own rustc;
3. Debian's packaged toolchain in ``$VULTRINO_DEBIAN_RUST_BIN`` (default ``/usr/bin``), when
   ``PATH`` found another cargo — a rustup toolchain without a wasm target is the usual case.

The first whose sysroot has a wasm standard library wins. For Debian's toolchain this module
does what ``scripts/rust-env.sh`` does in a shell: ``RUSTC`` names Debian's rustc, and unless
``CARGO_HOME`` is set, cargo gets a private ``CARGO_HOME`` (in Vultrino's cache) whose
configuration replaces crates.io by the packaged crates in ``$VULTRINO_DEBIAN_CRATES`` (default
``/usr/share/cargo/registry``, the ``librust-*-dev`` packages) and builds offline. When nothing
fits, the error says exactly what to install.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from vultrino.errors import InstallError
from vultrino.plugins.install._build import build_environment

__all__ = [
    "DEBIAN_HINT",
    "ENV_CARGO",
    "ENV_DEBIAN_BIN",
    "ENV_DEBIAN_CRATES",
    "INSTALL_HINT",
    "RUSTUP_HINT",
    "TARGETS",
    "Toolchain",
    "debian_cargo_home",
    "find",
    "probe_targets",
]

ENV_CARGO = "VULTRINO_CARGO"
ENV_DEBIAN_BIN = "VULTRINO_DEBIAN_RUST_BIN"
ENV_DEBIAN_CRATES = "VULTRINO_DEBIAN_CRATES"
DEFAULT_DEBIAN_BIN = "/usr/bin"
DEFAULT_DEBIAN_CRATES = "/usr/share/cargo/registry"
#: The wasm targets a plugin builds for, best first (the template's `.cargo/config.toml` names
#: the first; Rust before 1.78 only knows the second).
TARGETS = ("wasm32-wasip1", "wasm32-wasi")

DEBIAN_HINT = (
    "on Debian/Ubuntu `sudo apt install cargo rustc libstd-rust-dev-wasm32` and, to build "
    "offline, the crates the plugin uses as librust-*-dev packages (the template needs "
    "librust-serde-dev librust-serde-derive-dev librust-rmp-serde-dev); Vultrino finds that "
    "toolchain and those crates by itself"
)
RUSTUP_HINT = (
    "with rustup, `rustup target add wasm32-wasip1` (Rust 1.78 or newer; older toolchains: "
    "`rustup target add wasm32-wasi`)"
)
INSTALL_HINT = (
    f"install a Rust toolchain with a WebAssembly target: {DEBIAN_HINT}; or {RUSTUP_HINT}"
)


@dataclass(frozen=True)
class Toolchain:
    """The cargo to run, what to add to the build's environment (``RUSTC``, ``CARGO_HOME``),
    the wasm targets to try (best first), the sysroot probed (None: rustc could not be asked)
    and where the toolchain came from, for messages."""

    cargo: str
    targets: tuple[str, ...]
    sysroot: str | None
    origin: str
    env: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class _Candidate:
    cargo: str
    rustc: str
    origin: str
    debian: bool


def probe_targets(
    rustc: str, cwd: Path | None = None, env: dict[str, str] | None = None
) -> tuple[list[str], str] | None:
    """Which of :data:`TARGETS` ``rustc``'s sysroot has a standard library for, and the sysroot;
    None when rustc cannot be asked.

    Run in the project (``cwd``), as the build will be, so a toolchain file there picks the
    same rustc, and with the build's environment: no ``VULTRINO_*`` variable."""
    try:
        proc = subprocess.run(
            [rustc, "--print", "sysroot"],
            cwd=cwd,
            env=env if env is not None else build_environment(),
            capture_output=True,
            text=True,
            errors="replace",
            stdin=subprocess.DEVNULL,
            timeout=60,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    sysroot = proc.stdout.strip()
    if proc.returncode != 0 or not sysroot:
        return None
    rustlib = Path(sysroot) / "lib" / "rustlib"
    return [t for t in TARGETS if (rustlib / t / "lib").is_dir()], sysroot


def _executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def _real(path: str) -> str:
    return os.path.realpath(path)


def _candidates() -> list[_Candidate]:
    explicit = os.environ.get(ENV_CARGO)
    rustc_env = os.environ.get("RUSTC")
    if explicit:
        beside = Path(explicit).with_name("rustc")
        rustc = rustc_env or (str(beside) if beside.is_file() else "rustc")
        return [_Candidate(explicit, rustc, f"{explicit} (${ENV_CARGO})", debian=False)]
    debian_bin = Path(os.environ.get(ENV_DEBIAN_BIN) or DEFAULT_DEBIAN_BIN)
    debian_cargo, debian_rustc = debian_bin / "cargo", debian_bin / "rustc"
    has_debian = _executable(debian_cargo) and _executable(debian_rustc)
    found: list[_Candidate] = []
    on_path = shutil.which("cargo")
    if on_path is not None:
        is_debian = has_debian and _real(on_path) == _real(str(debian_cargo))
        beside = Path(on_path).with_name("rustc")
        rustc = rustc_env or (
            str(debian_rustc) if is_debian else str(beside) if beside.is_file() else "rustc"
        )
        found.append(_Candidate(on_path, rustc, f"{on_path} (on PATH)", debian=is_debian))
    if has_debian and not (found and found[0].debian):
        found.append(
            _Candidate(
                str(debian_cargo), str(debian_rustc), f"Debian's toolchain in {debian_bin}", True
            )
        )
    return found


def debian_cargo_home(state_dir: Path) -> Path | None:
    """A private ``CARGO_HOME`` whose configuration points cargo at Debian's packaged crates,
    offline (what ``scripts/rust-env.sh`` writes), created in ``state_dir``; None when there is
    no crate directory. Rewritten when its content differs, so it never drifts."""
    crates = Path(os.environ.get(ENV_DEBIAN_CRATES) or DEFAULT_DEBIAN_CRATES)
    if not crates.is_dir():
        return None
    home = state_dir / "cargo-debian"
    text = (
        "# Written by vultrino's plugin installer; safe to delete (it is regenerated).\n"
        '[source.crates-io]\nreplace-with = "debian-packages"\n\n'
        f'[source.debian-packages]\ndirectory = "{crates}"\n\n'
        "[net]\noffline = true\n"
    )
    config = home / "config.toml"
    try:
        home.mkdir(mode=0o700, parents=True, exist_ok=True)
        st = os.lstat(home)
        if not os.path.isdir(home) or os.path.islink(home) or st.st_uid != os.getuid():
            raise InstallError(
                f"{home} is not a directory of yours; remove it so Vultrino can recreate it"
            )
        if st.st_mode & 0o022:
            os.chmod(home, 0o700)
        if not config.is_file() or config.is_symlink() or config.read_text("utf-8") != text:
            if config.is_symlink():
                config.unlink()
            tmp = home / f".config.toml.{os.getpid()}"
            tmp.write_text(text, encoding="utf-8")
            os.replace(tmp, config)
    except OSError as exc:
        raise InstallError(f"cannot write cargo's configuration in {home}: {exc}") from exc
    return home


def find(*, cwd: Path | None, state_dir: Path, label: str = "plugin") -> Toolchain:
    """The toolchain to build with (see the module docstring); ``state_dir`` is where a
    private ``CARGO_HOME`` for Debian's crates may be written. Raises :class:`InstallError`
    saying exactly what to install when no toolchain can build WebAssembly."""
    candidates = _candidates()
    if not candidates:
        raise InstallError(
            f"{label}: the plugin must be built, but no Rust toolchain was found (no cargo on "
            f"PATH, none in {os.environ.get(ENV_DEBIAN_BIN) or DEFAULT_DEBIAN_BIN}); "
            f"{INSTALL_HINT} (or set {ENV_CARGO} to a cargo executable)"
        )
    unknown: _Candidate | None = None
    without: list[str] = []
    for cand in candidates:
        env = build_environment(RUSTC=cand.rustc) if cand.debian else build_environment()
        probed = probe_targets(cand.rustc, cwd, env)
        if probed is None:
            unknown = unknown or cand
            continue
        available, sysroot = probed
        if available:
            return _toolchain(cand, tuple(available[:1]), sysroot, state_dir)
        without.append(f"{cand.origin} (sysroot {sysroot})")
    if unknown is not None:  # rustc could not be asked: let cargo try each target in turn
        return _toolchain(unknown, TARGETS, None, state_dir)
    raise InstallError(
        f"{label}: the plugin must be built, but no Rust toolchain found has a WebAssembly "
        f"standard library (neither {' nor '.join(TARGETS)}): looked at "
        f"{'; '.join(without)}. {INSTALL_HINT[0].upper()}{INSTALL_HINT[1:]} (or set "
        f"{ENV_CARGO} to a cargo whose toolchain has one)"
    )


def _toolchain(
    cand: _Candidate, targets: tuple[str, ...], sysroot: str | None, state_dir: Path
) -> Toolchain:
    env: dict[str, str] = {}
    origin = cand.origin
    if cand.debian:
        env["RUSTC"] = cand.rustc
        if not os.environ.get("CARGO_HOME"):
            home = debian_cargo_home(state_dir)
            if home is not None:
                env["CARGO_HOME"] = str(home)
                crates = os.environ.get(ENV_DEBIAN_CRATES) or DEFAULT_DEBIAN_CRATES
                origin += f", offline with the packaged crates in {crates}"
    elif os.environ.get("RUSTC"):
        env["RUSTC"] = cand.rustc
    return Toolchain(cand.cargo, targets, sysroot, origin, env)
