#!/usr/bin/env bash
# Several agents, each seeing only what it needs: two agent profiles with different credential
# globs, URL patterns, tools and rates, and a read-only role for a monitoring key. Each agent's
# allowed call works; the calls outside its profile are refused (the original Vultrino's
# multi-agent-setup.sh, run for real).
#
#   bash examples/multi-agent-setup.sh
#
# EXAMPLE_API_URL  the API both example credentials are for (default https://api.github.com;
#                  a real deployment would have GitHub and Stripe here)

source "$(dirname "$0")/_common.sh"

API_URL=${EXAMPLE_API_URL:-https://api.github.com}

step "Setting up: a throwaway home with a GitHub and a Stripe credential"
throwaway_home
printf 'ghp_madeUpExampleToken0000000000000000' |
  vultrino add --alias github-api --type api_key --field key=- --allow "$API_URL/*" 2>/dev/null
printf 'sk_test_madeUpExampleKey000000000000' |
  vultrino add --alias stripe-api --type api_key --field key=- --allow "$API_URL/*" 2>/dev/null
run vultrino list

step "1. A code agent: github-* only, only GET under /repos and /user, the HTTP tool only"
run vultrino agent add code-bot --credential 'github-*' --tool http_request \
  --allow "GET $API_URL/repos/*" --allow "GET $API_URL/user" --rate 60/min \
  --token-file "$WORK/code-bot.token"

step "2. A payments agent: stripe-* only, any method, 30 calls a minute"
run vultrino agent add pay-bot --credential 'stripe-*' --tool http_request --rate 30/min \
  --token-file "$WORK/pay-bot.token"

step "3. A monitoring key: sees every credential's metadata, may call nothing"
run vultrino role create monitor -p read -c '*' -d "dashboards"
MONITOR_KEY=$(vultrino key create grafana --role monitor 2>/dev/null)
run vultrino agent list

step "4. Serve them (REST API and /mcp) on 127.0.0.1; each agent sends its own token"
start_server
echo "listening on $VULTRINO_URL"

# as NAME CMD...: a remote CLI command sent with that agent's token (or a key)
as() {
  local who=$1 token
  shift
  case $who in
    monitor) token=$MONITOR_KEY ;;
    *) token=$(cat "$WORK/$who.token") ;;
  esac
  printf '[%s] $ vultrino %s\n' "$who" "$*"
  VULTRINO_API_KEY=$token vultrino --remote "$VULTRINO_URL" "$@"
}
# refused NAME CMD...: the same, expecting a refusal (the example fails if it is not refused)
refused() {
  if as "$@"; then
    echo "expected a refusal" >&2
    exit 1
  fi
  echo "(refused, as it should be)"
}

step "5. code-bot uses github-api within its URL patterns: allowed"
as code-bot request github-api "$API_URL/user"
as code-bot request github-api "$API_URL/repos/octocat/hello-world"

step "6. code-bot and the Stripe credential: refused (outside its credential globs)"
refused code-bot request stripe-api "$API_URL/v1/customers"

step "7. code-bot deleting a repository: refused (its patterns allow GET only)"
refused code-bot request github-api "$API_URL/repos/octocat/hello-world" -X DELETE

step "8. pay-bot uses stripe-api: allowed; github-api: refused"
as pay-bot request stripe-api "$API_URL/v1/customers" -X POST -d 'email=a@example.com'
refused pay-bot request github-api "$API_URL/user"

step "9. The monitoring key lists credentials but cannot use one"
as monitor list
refused monitor request github-api "$API_URL/user"

step "10. The audit log names the agent (or key) of every call, refusals included"
run vultrino audit --agent code-bot

printf '\nDone.\n'
