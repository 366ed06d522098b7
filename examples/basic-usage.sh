#!/usr/bin/env bash
# Basic usage: the whole everyday flow on a throwaway home, from `vultrino init` to a request
# made with a credential the caller never sees, locally and then through `vultrino serve` with
# an API key (the original Vultrino's basic-usage.sh, run for real).
#
#   bash examples/basic-usage.sh
#
# EXAMPLE_API_URL  the API the credential is for (default https://api.github.com)
# GITHUB_TOKEN     the token to store (default: a made-up one; the API then answers 401)
#
# Your own home and password are not touched: everything lives in a temporary directory that
# is removed at the end.

source "$(dirname "$0")/_common.sh"

API_URL=${EXAMPLE_API_URL:-https://api.github.com}
TOKEN=${GITHUB_TOKEN:-ghp_madeUpExampleToken0000000000000000}

step "1. Create a sealed credential store (the password comes from VULTRINO_PASSWORD_FILE)"
throwaway_home

step "2. Add a credential: the token is read from stdin, never from the command line"
printf '%s' "$TOKEN" | run vultrino add --alias github-api --type api_key --field key=- \
  --description "GitHub for the example" --allow "$API_URL/*"

step "3. List credentials (metadata only, never a value)"
run vultrino list
run vultrino info github-api

step "4. Make a request with it: Vultrino adds the Authorization header"
run vultrino request github-api "$API_URL/user"

step "5. Serve the REST API and MCP over HTTP on 127.0.0.1"
start_server
echo "listening on $VULTRINO_URL"

step "6. Create an API key for an application (printed once; only its hash is stored)"
VULTRINO_API_KEY=$(vultrino key create my-app --role executor 2>/dev/null)
echo "created my-app: ${VULTRINO_API_KEY:0:11}…"
run vultrino key list

step "7. The application needs no password: the remote CLI sends the key to the server"
VULTRINO_API_KEY=$VULTRINO_API_KEY run vultrino --remote "$VULTRINO_URL" request github-api "$API_URL/user"

step "8. Revoke the key; it stops working at once"
run vultrino key revoke my-app --yes
printf '$ vultrino --remote %s list    (with the revoked key)\n' "$VULTRINO_URL"
if VULTRINO_API_KEY=$VULTRINO_API_KEY vultrino --remote "$VULTRINO_URL" list; then
  echo "the revoked key still worked" >&2
  exit 1
fi
echo "(refused, as it should be)"

step "9. Every use is in the audit log (never a secret)"
run vultrino audit

printf '\nDone.\n'
