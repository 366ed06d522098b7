#!/usr/bin/env bash
# Build the Rust SDK template and the first-party plugins (totp, jwt, hmac, pgp, ecdsa, github) for WebAssembly with
# the offline Debian toolchain (see scripts/rust-env.sh), check their sizes, and put each plugin's
# module beside its manifest in plugins/<name>/ (the wheel ships both from there, as
# vultrino/_plugins/<name>/; see pyproject.toml).
#
# The plugins are members of the Cargo workspace at the top of the repository and depend on the
# guest SDK crate sdk/rust/vultrino-pdk by path; the template stands alone (it is what
# `vultrino plugin new` copies) with the same path dependency. The workspace's sources are
# copied, in the same layout, to a staging directory first, so the repository gets no
# Cargo.lock or target/ (a lock file resolved against Debian's crates would not match crates.io
# checksums).
#
# Usage: scripts/build-plugins.sh [--out DIR] [--work DIR] [--target TRIPLE] [--only NAME]...
#   --out DIR      where built modules go, as DIR/<name>/<module> (default: plugins)
#   --work DIR     staging + cargo target directory (default: .cache/plugin-build)
#   --target T     wasm target (default: wasm32-wasi; wasm32-wasip1 on Rust >= 1.78)
#   --only NAME    build only this crate directory name (template, totp, jwt, hmac, pgp, ecdsa, github); repeatable
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
out="$root/plugins"
work="$root/.cache/plugin-build"
target="wasm32-wasi"
only=()

TEMPLATE_LIMIT=$((200 * 1024))
PLUGIN_LIMIT=$((1024 * 1024))

die() {
    echo "build-plugins.sh: $*" >&2
    exit 1
}

while [ $# -gt 0 ]; do
    case "$1" in
        --out) out="${2:?--out needs a directory}"; shift 2 ;;
        --work) work="${2:?--work needs a directory}"; shift 2 ;;
        --target) target="${2:?--target needs a triple}"; shift 2 ;;
        --only) only+=("${2:?--only needs a name}"); shift 2 ;;
        -h | --help) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown argument '$1' (see --help)" ;;
    esac
done

# shellcheck source=scripts/rust-env.sh
source "$here/rust-env.sh" || die "the Debian Rust toolchain is not usable (see above)"

sysroot="$("$RUSTC" --print sysroot)"
[ -d "$sysroot/lib/rustlib/$target/lib" ] ||
    die "no $target standard library in $sysroot; install it with 'apt-get install libstd-rust-dev-wasm32'"

mkdir -p "$work/src" "$out"
work="$(cd "$work" && pwd)"
out="$(cd "$out" && pwd)"
# Keep machine paths out of the shipped modules (panic locations embed source paths).
export RUSTFLAGS="--remap-path-prefix=$work/src=/src --remap-path-prefix=${VULTRINO_DEBIAN_CRATES:-/usr/share/cargo/registry}=/crates"

# The first `key = "value"` in a TOML file.
toml_value() {
    sed -n "s/^$2[[:space:]]*=[[:space:]]*\"\\([^\"]*\\)\".*/\\1/p" "$1" | head -n 1
}

wanted() {
    [ ${#only[@]} -eq 0 ] && return 0
    local name
    for name in "${only[@]}"; do
        [ "$name" = "$1" ] && return 0
    done
    return 1
}

# The workspace's sources, in their layout: the root manifest, the SDK crate, every plugin
# (cargo loads every member of the workspace, whichever one it builds) and the template.
stage_sources() {
    local src="$work/src" crate
    rm -rf "$src"
    mkdir -p "$src/sdk/rust" "$src/plugins"
    cp "$root/Cargo.toml" "$src/"
    mkdir -p "$src/sdk/rust/vultrino-pdk"
    cp -R "$root/sdk/rust/vultrino-pdk/Cargo.toml" "$root/sdk/rust/vultrino-pdk/src" \
        "$src/sdk/rust/vultrino-pdk/"
    for crate in "$root/sdk-rust-template" "$root"/plugins/totp "$root"/plugins/jwt "$root"/plugins/hmac "$root"/plugins/pgp "$root"/plugins/ecdsa "$root"/plugins/github; do
        local dest="$src/${crate#"$root"/}"
        mkdir -p "$dest"
        cp -R "$crate/Cargo.toml" "$crate/plugin.toml" "$crate/src" "$crate/.cargo" "$dest/"
    done
}

build_one() {
    local label="$1" stage="$2" limit="$3" ship="$4"

    local crate module plugin artifact size
    crate="$(toml_value "$stage/Cargo.toml" name)"
    module="$(toml_value "$stage/plugin.toml" wasm_module)"
    plugin="$(toml_value "$stage/plugin.toml" name)"
    [ -n "$crate" ] && [ -n "$module" ] && [ -n "$plugin" ] ||
        die "$label: Cargo.toml needs [package] name, plugin.toml needs name and wasm_module"
    [ "${crate//-/_}.wasm" = "$module" ] ||
        die "$label/plugin.toml: wasm_module is '$module' but cargo builds '${crate//-/_}.wasm'"

    echo "==> $label: cargo build --release --target $target" >&2
    (cd "$stage" && "$CARGO" build --release --target "$target" --target-dir "$work/target")
    artifact="$work/target/$target/release/$module"
    [ -f "$artifact" ] || die "$label: cargo did not produce $artifact"
    size="$(wc -c <"$artifact" | tr -d ' ')"
    [ "$size" -le "$limit" ] || die "$label: $module is $size bytes, over the $limit byte limit"
    printf '%-10s %-22s %8d bytes\n' "$label" "$module" "$size"

    if [ "$ship" = yes ]; then
        # Only the module: the manifest's one home is the plugin's source directory.
        local dest="$out/$plugin"
        mkdir -p "$dest"
        cp "$artifact" "$dest/$module.tmp"
        mv -f "$dest/$module.tmp" "$dest/$module"
    fi
}

stage_sources
if wanted template; then
    build_one template "$work/src/sdk-rust-template" "$TEMPLATE_LIMIT" no
fi
for name in totp jwt hmac pgp ecdsa github; do
    if wanted "$name"; then
        build_one "$name" "$work/src/plugins/$name" "$PLUGIN_LIMIT" yes
    fi
done
echo "build-plugins.sh: done; modules in $out" >&2
