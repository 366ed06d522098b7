#!/usr/bin/env bash
# Set up everything Vultrino's demo and test suite need, on a fresh Debian machine or a
# developer's: system packages (when run as root with apt), the Python 3.11 venv (.venv, the
# wasmtime engine), the Python 3.10 venv (.venv310, the wasmer engine) and the offline Rust
# wasm toolchain. Idempotent: a second run only checks.
#
#   bash scripts/setup.sh            # everything
#   bash scripts/setup.sh --no-apt   # skip system packages
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

APT_PACKAGES=(
  git gpg ca-certificates bubblewrap
  postgresql  # the PostgreSQL store backend's tests start throwaway clusters (initdb, pg_ctl)
  rustc cargo libstd-rust-dev-wasm32 wabt lld clang
  librust-serde-dev librust-serde-derive-dev librust-rmp-serde-dev librust-serde-json-dev
  librust-hmac-dev librust-sha1-dev librust-sha2-dev librust-base64-dev
  librust-data-encoding-dev librust-serde-bytes-dev
  chromium  # the web UI's browser tests (driven by Playwright, from the dev extra)
  systemd   # systemd-analyze verify lints deploy/systemd/ (works without systemd as PID 1)
  strace    # the server's system calls, checked against the unit's SystemCallFilter=
)

log() { printf '[setup] %s\n' "$*" >&2; }

want_apt=1
[ "${1:-}" = "--no-apt" ] && want_apt=0

if [ "$want_apt" = 1 ] && command -v apt-get >/dev/null 2>&1; then
  missing=()
  for p in "${APT_PACKAGES[@]}"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
  done
  if [ "${#missing[@]}" -gt 0 ]; then
    if [ "$(id -u)" = 0 ]; then
      log "installing system packages: ${missing[*]}"
      apt-get update -qq
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    else
      log "missing system packages (run as root or with sudo): apt-get install ${missing[*]}"
    fi
  fi
fi

find_python() {  # find_python 3.11 -> path of a working python of that minor version
  local v="$1" c
  if c=$(command -v "python$v") && "$c" -c 'import sys' >/dev/null 2>&1; then
    echo "$c"; return 0
  fi
  # pyenv shims fail for versions that are not selected, so look in pyenv's tree directly.
  if command -v pyenv >/dev/null 2>&1; then
    for c in "$(pyenv root)"/versions/"$v".*/bin/python"$v"; do
      [ -x "$c" ] && { echo "$c"; return 0; }
    done
  fi
  return 1
}

make_venv() {  # make_venv DIR PYTHON EXTRAS
  local dir="$1" py="$2" extras="$3"
  if [ ! -x "$dir/bin/python" ]; then
    log "creating $dir with $("$py" --version 2>&1)"
    "$py" -m venv "$dir"
  fi
  log "installing vultrino[$extras] into $dir"
  # pip repeats one warning per package for an index mirror this machine may not have
  "$dir/bin/python" -m pip install -q --disable-pip-version-check -e ".[$extras]" \
    2> >(grep -v '^WARNING: Location .* is ignored' >&2)
}

PY311=$(find_python 3.11 || find_python 3.12 || true)
[ -n "$PY311" ] || { log "need Python >= 3.11 (python3.11 on PATH or under pyenv)"; exit 1; }
make_venv .venv "$PY311" dev

if PY310=$(find_python 3.10); then
  make_venv .venv310 "$PY310" "wasmer,dev"
else
  log "no Python 3.10 found: the wasmer engine (wheels only up to CPython 3.10) is skipped"
fi

# The WASI preview-1 adapter, for checking modules against the WIT world
# (`wasm-tools component new`); it ships in the npm package @bytecodealliance/jco.
ADAPTER=.cache/wasi_snapshot_preview1.reactor.wasm
if [ ! -f "$ADAPTER" ] && command -v npm >/dev/null 2>&1; then
  mkdir -p .cache/jco
  if (cd .cache/jco && npm pack --silent @bytecodealliance/jco@1.35.0 >/dev/null 2>&1); then
    tar -xzf .cache/jco/bytecodealliance-jco-1.35.0.tgz -C .cache/jco \
      package/lib/wasi_snapshot_preview1.reactor.wasm
    mv .cache/jco/package/lib/wasi_snapshot_preview1.reactor.wasm "$ADAPTER"
    log "WASI adapter for the WIT check: $ADAPTER"
  else
    log "npm could not fetch @bytecodealliance/jco: the WIT-world check will be skipped"
  fi
fi

# The official MCP conformance suite (tests/e2e/test_mcp_conformance.py) and the Node 22 it
# needs, both from the npm registry (Debian's nodejs may be older): node_modules/.bin/node.
CONFORMANCE=.cache/conformance
if [ ! -x "$CONFORMANCE/node_modules/.bin/node" ] && command -v npm >/dev/null 2>&1; then
  mkdir -p "$CONFORMANCE"
  # its own package.json, so npm installs here rather than in a project found further up
  [ -f "$CONFORMANCE/package.json" ] || echo '{"private": true}' > "$CONFORMANCE/package.json"
  if (cd "$CONFORMANCE" && npm install --silent --no-audit --no-fund \
        node@22 @modelcontextprotocol/conformance@0.1.16 >/dev/null 2>&1); then
    log "MCP conformance suite: $CONFORMANCE ($("$CONFORMANCE/node_modules/.bin/node" --version))"
  else
    log "npm could not fetch the MCP conformance suite: its test will be skipped"
  fi
fi

# The offline Rust toolchain for wasm plugins (Debian's rustc + crates).
if [ -x /usr/bin/cargo ]; then
  # shellcheck source=scripts/rust-env.sh
  source scripts/rust-env.sh >/dev/null
  log "Rust wasm toolchain: $("$CARGO" --version 2>/dev/null || echo missing)"
fi
log "done"
