#!/usr/bin/env bash
# Set up the offline Debian Rust toolchain for building Vultrino plugins.
#
# Debian ships rustc 1.63 + cargo with the `wasm32-wasi` standard library
# (libstd-rust-dev-wasm32) and crate sources under /usr/share/cargo/registry.
# A rustup toolchain earlier on PATH usually has no wasm target, so this script
# points RUSTC/CARGO at Debian's binaries explicitly and gives cargo a private
# CARGO_HOME whose config replaces crates.io with the Debian crate directory.
# Nothing outside the repository's git-ignored `.cache/` is written.
#
# `vultrino plugin install --build`, `plugin call --build` and `plugin dev` do not need this
# script: vultrino/plugins/install/_toolchain.py finds the same toolchain and writes the same
# cargo configuration (into $VULTRINO_HOME/cache/cargo-debian/) by itself. Keep the two in step.
# This script is for running cargo by hand in a shell.
#
# Use it either way:
#   source scripts/rust-env.sh          # exports into the current shell
#   eval "$(scripts/rust-env.sh)"       # prints `export ...` lines
#
# Overrides: VULTRINO_DEBIAN_RUST_BIN (default /usr/bin),
#            VULTRINO_DEBIAN_CRATES   (default /usr/share/cargo/registry).

_vr_sourced=0
if [ -n "${BASH_SOURCE[0]:-}" ] && [ "${BASH_SOURCE[0]}" != "$0" ]; then
    _vr_sourced=1
fi

_vr_main() {
    local script_dir repo_root bin_dir crates cargo_home shim
    script_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)" || return 1
    repo_root="$(cd "$script_dir/.." && pwd)" || return 1
    bin_dir="${VULTRINO_DEBIAN_RUST_BIN:-/usr/bin}"
    crates="${VULTRINO_DEBIAN_CRATES:-/usr/share/cargo/registry}"

    if [ ! -x "$bin_dir/rustc" ] || [ ! -x "$bin_dir/cargo" ]; then
        echo "rust-env.sh: no Debian rustc/cargo in $bin_dir; install them with" \
            "'apt-get install rustc cargo libstd-rust-dev-wasm32' or set VULTRINO_DEBIAN_RUST_BIN" >&2
        return 1
    fi
    if [ ! -d "$crates" ]; then
        echo "rust-env.sh: no Debian crate directory at $crates; install the librust-*-dev" \
            "packages (see docs/plugins/developing.md) or set VULTRINO_DEBIAN_CRATES" >&2
        return 1
    fi

    cargo_home="$repo_root/.cache/cargo-debian"
    shim="$cargo_home/bin"
    mkdir -p "$shim" || return 1
    cat >"$cargo_home/config.toml" <<EOF
# Written by scripts/rust-env.sh; safe to delete (it is regenerated).
[source.crates-io]
replace-with = "debian-packages"

[source.debian-packages]
directory = "$crates"

[net]
offline = true
EOF
    # `cargo` / `rustc` on PATH mean Debian's (so tools that run plain `cargo build`,
    # such as `vultrino plugin install`, use the offline toolchain too).
    local tool
    for tool in cargo rustc rustdoc; do
        if [ -x "$bin_dir/$tool" ]; then
            ln -sfn "$bin_dir/$tool" "$shim/$tool" || return 1
        fi
    done

    _VR_RUSTC="$bin_dir/rustc"
    _VR_CARGO="$bin_dir/cargo"
    _VR_RUSTDOC="$bin_dir/rustdoc"
    _VR_CARGO_HOME="$cargo_home"
    _VR_SHIM="$shim"
}

if _vr_main; then
    if [ "$_vr_sourced" = 1 ]; then
        export RUSTC="$_VR_RUSTC" CARGO="$_VR_CARGO" RUSTDOC="$_VR_RUSTDOC"
        export CARGO_HOME="$_VR_CARGO_HOME"
        case ":$PATH:" in
            *":$_VR_SHIM:"*) ;;
            *) export PATH="$_VR_SHIM:$PATH" ;;
        esac
        echo "rust-env.sh: RUSTC=$RUSTC CARGO=$CARGO CARGO_HOME=$CARGO_HOME (offline, Debian crates)" >&2
    else
        printf 'export RUSTC=%q\n' "$_VR_RUSTC"
        printf 'export CARGO=%q\n' "$_VR_CARGO"
        printf 'export RUSTDOC=%q\n' "$_VR_RUSTDOC"
        printf 'export CARGO_HOME=%q\n' "$_VR_CARGO_HOME"
        printf 'export PATH=%q:"$PATH"\n' "$_VR_SHIM"
    fi
    unset _VR_RUSTC _VR_CARGO _VR_RUSTDOC _VR_CARGO_HOME _VR_SHIM _vr_sourced
    unset -f _vr_main
else
    unset _vr_sourced
    unset -f _vr_main
    # `return` ends a sourced script; when executed it fails and we exit instead.
    return 1 2>/dev/null || exit 1
fi
