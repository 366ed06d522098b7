#!/usr/bin/env bash
# The REST API of `vultrino serve` with curl: the health check, creating an API key, listing
# credentials, POST /api/v1/execute (GET with a query, POST with a body), and the errors a
# client meets (no key, a bad key, a read-only key executing, a credential outside the key's
# role). The original Vultrino's curl-examples.sh, run for real.
#
#   bash examples/curl-examples.sh
#       sets up a throwaway home with one credential and serves it on 127.0.0.1
#   VULTRINO_URL=http://127.0.0.1:7879 VULTRINO_API_KEY=vk_… EXAMPLE_CREDENTIAL=github-api \
#     bash examples/curl-examples.sh
#       uses your running server (the error part needs a throwaway home, so it is skipped)
#
# EXAMPLE_API_URL  the API the credential is for (default https://api.github.com)
# GITHUB_TOKEN     the token the throwaway home stores (default: a made-up one)

source "$(dirname "$0")/_common.sh"

API_URL=${EXAMPLE_API_URL:-https://api.github.com}
CREDENTIAL=${EXAMPLE_CREDENTIAL:-github-api}

# curl with the status on a line of its own, the body pretty-printed when jq is there
call() {
  local body status
  body=$(curl -sS -w '\n%{http_code}' "$@")
  status=${body##*$'\n'}
  body=${body%$'\n'*}
  if command -v jq >/dev/null 2>&1 && jq . <<<"$body" >/dev/null 2>&1; then
    jq . <<<"$body"
  else
    printf '%s\n' "$body"
  fi
  echo "HTTP $status"
}

standalone=0
if [ -z "${VULTRINO_URL:-}" ]; then
  standalone=1
  step "Setting up: a throwaway home with one credential, served on 127.0.0.1"
  throwaway_home
  printf '%s' "${GITHUB_TOKEN:-ghp_madeUpExampleToken0000000000000000}" |
    vultrino add --alias "$CREDENTIAL" --type api_key --field key=- --allow "$API_URL/*"
  start_server

  step "Create an API key (on the server's host; printed once)"
  echo "$ vultrino key create curl-demo --role executor"
  VULTRINO_API_KEY=$(vultrino key create curl-demo --role executor 2>/dev/null)
fi
: "${VULTRINO_API_KEY:?set VULTRINO_API_KEY to a key of the server at VULTRINO_URL}"
AUTH="Authorization: Bearer $VULTRINO_API_KEY"
echo "server: $VULTRINO_URL"

step "1. Health (no key needed)"
echo "\$ curl $VULTRINO_URL/api/v1/health"
call "$VULTRINO_URL/api/v1/health"

step "2. List the credentials the key's role may see (secret fields are ********)"
echo "\$ curl -H 'Authorization: Bearer \$VULTRINO_API_KEY' $VULTRINO_URL/api/v1/credentials"
call -H "$AUTH" "$VULTRINO_URL/api/v1/credentials"

step "3. Execute a GET with a query string: Vultrino adds the credential"
echo "\$ curl -X POST -H 'Authorization: Bearer \$VULTRINO_API_KEY' -H 'Content-Type: application/json' \\"
echo "       -d '{\"credential\": \"$CREDENTIAL\", \"method\": \"GET\", \"url\": \"$API_URL/search/repositories\", \"query\": {\"q\": \"vultrino\"}}' \\"
echo "       $VULTRINO_URL/api/v1/execute"
call -X POST -H "$AUTH" -H "Content-Type: application/json" \
  -d "{\"credential\": \"$CREDENTIAL\", \"method\": \"GET\", \"url\": \"$API_URL/search/repositories\", \"query\": {\"q\": \"vultrino\"}}" \
  "$VULTRINO_URL/api/v1/execute"

step "4. Execute a POST with a JSON body"
call -X POST -H "$AUTH" -H "Content-Type: application/json" \
  -d "{\"credential\": \"$CREDENTIAL\", \"method\": \"POST\", \"url\": \"$API_URL/user/repos\", \"body\": {\"name\": \"example\"}}" \
  "$VULTRINO_URL/api/v1/execute"

step "5. Errors"
echo "-- no key: 401 missing_api_key"
call "$VULTRINO_URL/api/v1/credentials"
echo "-- a key the server does not know: 401 invalid_api_key"
call -H "Authorization: Bearer vk_notAKeyOfThisServer" "$VULTRINO_URL/api/v1/credentials"
if [ "$standalone" = 1 ]; then
  echo "-- a read-only key executing: 403 permission_denied"
  readonly_key=$(vultrino key create monitor --role read-only 2>/dev/null)
  call -X POST -H "Authorization: Bearer $readonly_key" -H "Content-Type: application/json" \
    -d "{\"credential\": \"$CREDENTIAL\", \"method\": \"GET\", \"url\": \"$API_URL/user\"}" \
    "$VULTRINO_URL/api/v1/execute"
  echo "-- a key whose role sees only stripe-*: 403 credential_denied"
  vultrino role create payments -p read,execute -c 'stripe-*' >/dev/null 2>&1
  stripe_key=$(vultrino key create billing --role payments 2>/dev/null)
  call -X POST -H "Authorization: Bearer $stripe_key" -H "Content-Type: application/json" \
    -d "{\"credential\": \"$CREDENTIAL\", \"method\": \"GET\", \"url\": \"$API_URL/user\"}" \
    "$VULTRINO_URL/api/v1/execute"
  echo "-- a URL outside the credential's allowlist: 403 access_denied"
  call -X POST -H "$AUTH" -H "Content-Type: application/json" \
    -d "{\"credential\": \"$CREDENTIAL\", \"method\": \"GET\", \"url\": \"https://evil.example/steal\"}" \
    "$VULTRINO_URL/api/v1/execute"
fi

printf '\nDone.\n'
