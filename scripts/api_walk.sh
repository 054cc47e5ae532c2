#!/usr/bin/env bash
# The new user's walk over the REST API, with nothing but curl and two tokens:
#   a publisher creates an integration, PUTs a draft (config with a secret, an HTTP resource,
#   an RPC handler, an event handler, a timer), validates and publishes it; a customer of
#   ANOTHER organization creates a device, installs the version with config and a device
#   binding, calls the RPC handler, posts an event, reads the runs and their logs (the
#   publisher sees that run only as status and timing); the publisher publishes v2, the
#   customer upgrades, then uninstalls.
#
#   scripts/api_walk.sh [BASE PUBLISHER_TOKEN CUSTOMER_TOKEN]
#   (or JUNCTION_API_BASE, JUNCTION_PUBLISHER_TOKEN, JUNCTION_CUSTOMER_TOKEN in the environment;
#    `scripts/api_server.py --worker -- scripts/api_walk.sh` runs it on a throw-away server)
#
# Each step prints its request, the HTTP status and the answer's key fields. The walk stops
# with exit 1 at the first unexpected status, or when the secret config value shows up in
# any answer. The event's run needs a Celery worker: the walk waits for it up to
# WALK_WAIT seconds (60). Needs curl, and jq or python3 for reading JSON.
set -euo pipefail

BASE="${1:-${JUNCTION_API_BASE:-http://127.0.0.1:8000}}"
PUB="${2:-${JUNCTION_PUBLISHER_TOKEN:?publisher token: argument 2 or JUNCTION_PUBLISHER_TOKEN}}"
CUS="${3:-${JUNCTION_CUSTOMER_TOKEN:?customer token: argument 3 or JUNCTION_CUSTOMER_TOKEN}}"
API="${BASE%/}/api/v1"
WAIT="${WALK_WAIT:-60}"
STAMP="$(date +%s)"
SECRET="walk-secret-$STAMP-$$"   # the secret config value: no answer may contain it
BODY="$(mktemp)"
trap 'rm -f "$BODY"' EXIT

# jq when it is installed (and WALK_NO_JQ is unset); otherwise python3 reads the same simple
# filters (.a.b, .a[0], .a | length, .a | keys).
if command -v jq >/dev/null 2>&1 && [ -z "${WALK_NO_JQ:-}" ]; then
  q() { jq -c "$1" "$BODY"; }
  qr() { jq -r "$1" "$BODY"; }
else
  _py() {
    python3 - "$1" "$2" "$BODY" <<'PY'
import json, re, sys
expr, raw, path = sys.argv[1], sys.argv[2] == "raw", sys.argv[3]
value = json.load(open(path))
for part in [p.strip() for p in expr.split("|")]:
    if part in ("length", "keys"):
        value = len(value) if part == "length" else sorted(value)
        continue
    for key, index in re.findall(r"\.([A-Za-z_][\w]*)|\[(\d+)\]", part):
        value = value.get(key) if key else (value[int(index)] if len(value) > int(index) else None)
        if value is None:
            break
print(value if raw and isinstance(value, str) else json.dumps(value, separators=(",", ":")))
PY
  }
  q() { _py "$1" json; }
  qr() { _py "$1" raw; }
fi

step() { printf '\n== %s\n' "$*"; }

# call WHO METHOD PATH EXPECTED [JSON]: prints the request and the status; the answer lands in $BODY.
call() {
  local who="$1" method="$2" path="$3" expected="$4" data="${5:-}" token status
  if [ "$who" = publisher ]; then token="$PUB"; else token="$CUS"; fi
  local shown="${data:+ -d '$(printf %s "$data" | tr -s '\n ' ' ' | cut -c1-100)$([ ${#data} -gt 100 ] && echo …)'}"
  echo "\$ curl -X $method \$API$path -H \"Authorization: Bearer \$${who^^}_TOKEN\"$shown"
  local args=(-sS -o "$BODY" -w '%{http_code}' -X "$method" -H "Authorization: Bearer $token" -H "Accept: application/json")
  if [ -n "$data" ]; then args+=(-H "Content-Type: application/json" --data-binary "$data"); fi
  status="$(curl "${args[@]}" "$API$path")" || { echo "curl failed for $method $path" >&2; exit 1; }
  echo "→ HTTP $status"
  if grep -qF "$SECRET" "$BODY"; then
    echo "FAIL: the secret config value appears in the answer to $method $path" >&2
    exit 1
  fi
  if ! [[ "$status" =~ ^($expected)$ ]]; then
    echo "FAIL: $method $path answered $status, expected $expected:" >&2
    head -c 2000 "$BODY" >&2; echo >&2
    exit 1
  fi
}

show() { echo "  $1: $(q "$2")"; }

manifest() {  # manifest VERSION_NUMBER SLUG → the draft's JSON body
  cat <<JSON
{
  "manifest": {
    "name": "$2",
    "title": "Walk Demo $STAMP",
    "description": "The REST API walk's integration (v$1).",
    "configSchema": {
      "type": "object",
      "properties": {
        "site": {"type": "string", "title": "Site name"},
        "apiKey": {"type": "string", "format": "password", "title": "API key"}
      },
      "required": ["site", "apiKey"]
    },
    "resources": {"printer": {"kind": "http", "description": "The printer's HTTP API"}},
    "permissions": ["device.http", "log"],
    "handlers": {
      "status": {"type": "rpc", "file": "main.lua", "function": "status",
                 "inputSchema": {"type": "object", "properties": {"echo": {"type": "string"}}},
                 "outputSchema": {"type": "object"}},
      "onOrder": {"type": "event", "event": "order.created", "file": "main.lua", "function": "on_order"},
      "tick": {"type": "timer", "file": "main.lua", "function": "tick", "schedule": {"every": "1h"}}
    }
  },
  "files": {
    "main.lua": "local VERSION = $1\\n\\nfunction status(ctx, input)\\n  ctx.log.info(\\"status asked\\", { site = ctx.config.site })\\n  return { site = ctx.config.site, echo = input.echo, version = VERSION }\\nend\\n\\nfunction on_order(ctx, input)\\n  local order = input.payload or {}\\n  ctx.log.info(\\"order received\\", { id = order.id })\\n  return { seen = order.id, version = VERSION }\\nend\\n\\n-- hourly: asks the bound printer for its status\\nfunction tick(ctx, input)\\n  local resp = ctx.device.http(\\"printer\\", { method = \\"GET\\", path = \\"/status\\" })\\n  ctx.log.info(\\"printer status\\", { code = resp.status })\\n  return { ok = resp.status == 200 }\\nend\\n"
  }
}
JSON
}

echo "Junction REST API walk: API=$API; every call also sends -H \"Content-Type: application/json\""

step "1. publisher: create an integration"
call publisher POST /integrations/ 201 \
  "{\"name\": \"Walk Demo $STAMP\", \"summary\": \"Made by the API walk.\", \"description\": \"Created, published and installed over the REST API.\", \"category\": \"printing\", \"visibility\": \"public\"}"
SLUG="$(qr .slug)"
show slug .slug; show organization .organization; show visibility .visibility

step "2. publisher: PUT the draft (manifest + main.lua)"
call publisher PUT "/integrations/$SLUG/draft/" '200|201' "$(manifest 1 "$SLUG")"
show handlers '.manifest.handlers | keys'

step "3. publisher: validate the draft"
call publisher POST "/integrations/$SLUG/draft/validate/" 200
show valid .valid; show errors .errors; show warnings '.warnings | length'
[ "$(qr .valid)" = true ] || { echo "FAIL: the draft is not valid" >&2; exit 1; }

step "4. publisher: publish v1"
call publisher POST "/integrations/$SLUG/draft/publish/" 201 '{"notes": "First release, published over the API."}'
show number .number; show available .available; show published_at .published_at
V1="$(qr .number)"

step "5. customer (another organization): create an HTTP device"
call customer POST /devices/ 201 \
  "{\"name\": \"Walk printer $STAMP\", \"kind\": \"http\", \"base_url\": \"https://printer.example.com/\", \"credentials\": {\"apiKey\": \"$SECRET-device\"}}"
DEVICE="$(qr .id)"
show id .id; show kind .kind; show organization .organization
if grep -qF "$SECRET-device" "$BODY"; then echo "FAIL: the device credentials came back" >&2; exit 1; fi

step "6. customer: install v$V1 with config (incl. the secret apiKey) and the device binding"
call customer POST /instances/ 201 \
  "{\"integration\": \"$SLUG\", \"version\": $V1, \"name\": \"Walk install $STAMP\", \"config\": {\"site\": \"Umbrella HQ\", \"apiKey\": \"$SECRET\"}, \"bindings\": {\"printer\": $DEVICE}}"
INSTANCE="$(qr .id)"
show id .id; show version .version; show state .state; show config .config; show bindings .bindings

step "7. customer: the instance's timers"
call customer GET "/timers/?instance=$INSTANCE" 200
show count .count; show first '.results[0]'

step "8. customer: call the RPC handler 'status'"
call customer POST "/instances/$INSTANCE/rpc/status/" 200 '{"echo": "hello"}'
show status .status; show result .result; show logs .logs; show run .run
[ "$(qr .status)" = succeeded ] || { echo "FAIL: the RPC run did not succeed" >&2; exit 1; }

step "9. customer: post the event 'order.created'"
call customer POST "/instances/$INSTANCE/events/order.created/" 202 '{"id": 42}'
show runs .runs
EVENT_RUN="$(qr '.runs[0]')"
[ -n "$EVENT_RUN" ] && [ "$EVENT_RUN" != null ] || { echo "FAIL: the event queued no run" >&2; exit 1; }

step "10. customer: read the runs and the event run's logs (waits up to ${WAIT}s for the worker)"
call customer GET "/runs/?instance=$INSTANCE" 200
show count .count
for i in $(seq 0 $(( $(qr '.results | length') - 1 ))); do
  echo "  run $(qr ".results[$i].id"): handler $(qr ".results[$i].handler"), trigger $(qr ".results[$i].trigger"), status $(qr ".results[$i].status")"
done
deadline=$(( $(date +%s) + WAIT ))
while :; do
  call customer GET "/runs/$EVENT_RUN/" 200 >/dev/null
  status="$(qr .status)"
  case "$status" in succeeded|failed) break ;; esac
  if [ "$(date +%s)" -ge "$deadline" ]; then
    echo "FAIL: run $EVENT_RUN still '$status' after ${WAIT}s (is a worker running?)" >&2; exit 1
  fi
  sleep 1
done
echo "\$ curl \$API/runs/$EVENT_RUN/ -H \"Authorization: Bearer \$CUSTOMER_TOKEN\"   # once finished"
show status .status; show handler .handler; show result .result; show logs .logs; show duration_ms .duration_ms
[ "$status" = succeeded ] || { echo "FAIL: the event run failed: $(q .error)" >&2; exit 1; }

step "11. publisher: the customer's run, as support fields only (no result, no logs)"
call publisher GET "/runs/$EVENT_RUN/" 200
show status .status; show handler .handler; show duration_ms .duration_ms; show result .result; show logs .logs
case "$(q .result)$(q .logs)" in nullnull|null\[\]) ;; *) echo "FAIL: the publisher sees the customer's run data" >&2; exit 1 ;; esac

step "12. publisher: PUT the v2 draft and publish it"
call publisher PUT "/integrations/$SLUG/draft/" '200|201' "$(manifest 2 "$SLUG")"
call publisher POST "/integrations/$SLUG/draft/publish/" 201 '{"notes": "Second release."}'
show number .number
V2="$(qr .number)"

step "13. customer: upgrade to v$V2, and call the RPC handler again"
call customer POST "/instances/$INSTANCE/upgrade/" 200 "{\"version\": $V2}"
show version .version; show state .state
call customer POST "/instances/$INSTANCE/rpc/status/" 200 '{"echo": "after the upgrade"}'
show result .result
[ "$(qr .result.version)" = "$V2" ] || { echo "FAIL: the RPC did not run v$V2's code" >&2; exit 1; }

step "14. customer: uninstall"
call customer DELETE "/instances/$INSTANCE/" 204
call customer GET "/instances/$INSTANCE/" 404
show error .error.code

printf '\nWalk passed: %s v%s and v%s published, installed, run, upgraded and uninstalled over the API.\n' "$SLUG" "$V1" "$V2"
