"""Building a plugin from its Rust sources with cargo.

``cargo build --release --target wasm32-wasip1``, falling back to ``wasm32-wasi`` when the
toolchain does not know or has not installed ``wasm32-wasip1`` (Rust before 1.78, and Debian's
packaged toolchain, only have ``wasm32-wasi``). The build's output is streamed line by line to
the caller, and its artifacts go to a target directory the installer owns (inside its staging
directory), so nothing is written next to the sources.

``VULTRINO_CARGO`` names the cargo executable (default: ``cargo`` on ``PATH``); ``CARGO_HOME``,
``RUSTC`` and the rest of cargo's environment are passed through untouched — except every
``VULTRINO_*`` variable, which the build never sees (``VULTRINO_PASSWORD`` would hand the store's
password to the crate's build scripts).

Building runs the crate's build scripts and procedural macros with the user's rights, exactly as
``cargo build`` in a terminal would: it is only as safe as the sources are trustworthy, which is
why the installer builds only when asked to (``--build``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from vultrino.errors import InstallError

ENV_CARGO = "VULTRINO_CARGO"
TARGETS = ("wasm32-wasip1", "wasm32-wasi")

INSTALL_HINT = (
    "install the Rust toolchain and its WebAssembly target: with rustup, "
    "`rustup target add wasm32-wasip1`; on Debian/Ubuntu, "
    "`apt-get install rustc cargo libstd-rust-dev-wasm32`"
)

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


def cargo_executable() -> str:
    """The cargo to run: ``$VULTRINO_CARGO`` or ``cargo`` on ``PATH``."""
    override = os.environ.get(ENV_CARGO)
    if override:
        return override
    found = shutil.which("cargo")
    if found is None:
        raise InstallError(
            f"the plugin has no prebuilt module, so it must be built, but cargo is not "
            f"installed; {INSTALL_HINT} (or set {ENV_CARGO} to a cargo executable)"
        )
    return found


def describe_command() -> str:
    """The build command as the user would type it (for messages)."""
    return f"cargo build --release --target {TARGETS[0]}"


def build_environment() -> dict[str, str]:
    """The environment a build runs with: this process's, without any ``VULTRINO_*``."""
    return {k: v for k, v in os.environ.items() if not k.upper().startswith("VULTRINO_")}


def build(
    project: Path,
    *,
    wasm_module: str,
    target_dir: Path,
    output: Callable[[str], None] | None = None,
    label: str = "plugin",
) -> BuildResult:
    """Build the crate in ``project`` for wasm and return ``<target>/release/<wasm_module>``."""
    cargo = cargo_executable()
    env = dict(build_environment(), CARGO_TARGET_DIR=str(target_dir), CARGO_TERM_COLOR="never")
    missing: list[str] = []
    for target in TARGETS:
        code, tail = _run(
            [cargo, "build", "--release", "--target", target],
            cwd=project,
            env=env,
            output=output,
            label=label,
        )
        if code == 0:
            return BuildResult(_pick(target_dir / target / "release", wasm_module, label), target)
        text = "\n".join(tail).lower()
        if not any(marker in text for marker in _TARGET_MISSING):
            last = "\n  ".join(tail[-8:])
            raise InstallError(
                f"{label}: `cargo build --release --target {target}` failed (exit {code}):\n"
                f"  {last}\nFix the build, or install a directory that already holds the module."
            )
        missing.append(target)
        if output is not None and target != TARGETS[-1]:
            output(f"vultrino: target {target} is not available; trying {TARGETS[-1]}")
    raise InstallError(
        f"{label}: this Rust toolchain cannot build WebAssembly (no {' or '.join(missing)} "
        f"target); {INSTALL_HINT}"
    )


def _run(
    cmd: list[str],
    *,
    cwd: Path,
    env: dict[str, str],
    output: Callable[[str], None] | None,
    label: str,
) -> tuple[int, list[str]]:
    """Run ``cmd``, streaming merged stdout/stderr lines; return (exit code, last lines)."""
    tail: deque[str] = deque(maxlen=_TAIL_LINES)
    try:
        proc = subprocess.Popen(
            cmd,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            bufsize=1,
        )
    except FileNotFoundError as exc:
        raise InstallError(
            f"{label}: cannot run cargo ({cmd[0]}: not found); {INSTALL_HINT}"
        ) from exc
    except PermissionError as exc:
        raise InstallError(f"{label}: cannot run cargo ({cmd[0]}: not executable)") from exc
    assert proc.stdout is not None
    try:
        for raw in proc.stdout:
            line = raw.rstrip("\n")
            tail.append(line)
            if output is not None:
                output(line)
    finally:
        proc.stdout.close()
        code = proc.wait()
    return code, list(tail)


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
