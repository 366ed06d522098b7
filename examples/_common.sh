# Shared by the shell examples (sourced, not run): a throwaway Vultrino home, and a
# `vultrino serve` on 127.0.0.1 that is stopped when the example ends. Nothing here touches
# your own home (~/.vultrino) or its password.

set -euo pipefail

command -v vultrino >/dev/null 2>&1 || {
  echo "vultrino is not on PATH: run 'source .venv/bin/activate' in the checkout (or pipx install .)" >&2
  exit 2
}

# The example's own directory: the home, its password file, the server's log. Removed at exit.
WORK=$(mktemp -d "${TMPDIR:-/tmp}/vultrino-example.XXXXXX")
SERVER_PID=""

cleanup() {
  if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -TERM "$SERVER_PID"          # a clean stop: calls in flight finish, the audit is signed
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT

# A new home with a random password in a 0600 file (Vultrino refuses one others can read).
throwaway_home() {
  unset VULTRINO_PASSWORD VULTRINO_API_URL VULTRINO_API_KEY VULTRINO_STORE_URL
  export VULTRINO_HOME="$WORK/home"
  export VULTRINO_PASSWORD_FILE="$WORK/password"
  (umask 077; head -c 24 /dev/urandom | base64 > "$VULTRINO_PASSWORD_FILE")
  vultrino init
}

# `vultrino serve` on a free port of 127.0.0.1; sets VULTRINO_URL once it listens.
start_server() {
  : >"$WORK/server.log"   # exists before the server (started in the background) opens it
  vultrino serve --bind 127.0.0.1:0 >"$WORK/server.log" 2>&1 &
  SERVER_PID=$!
  local _
  for _ in $(seq 1 600); do
    VULTRINO_URL=$(sed -n 's/^Vultrino server listening on \(http[^ ]*\).*/\1/p' "$WORK/server.log")
    if [ -n "$VULTRINO_URL" ]; then
      return 0
    fi
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then
      echo "vultrino serve exited:" >&2
      cat "$WORK/server.log" >&2
      return 1
    fi
    sleep 0.1
  done
  echo "vultrino serve did not start within 60 s" >&2
  return 1
}

# Print a step's heading, then run and echo the command.
step() { printf '\n== %s\n' "$*"; }
run() { printf '$ %s\n' "$*"; "$@"; }
