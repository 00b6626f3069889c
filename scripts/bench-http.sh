#!/usr/bin/env bash
# ems-http under wrk on loopback: event detail reads and full checkouts (hold →
# booking → FakeGateway → confirm → tickets, one unit each under its own
# Idempotency-Key), on the in-memory backend and then on PostgreSQL, in one run.
#
#   bash scripts/bench-http.sh            # EMS_BENCH_SECS (20), EMS_BENCH_CONNS (64)
#
# The server and wrk share the machine; the release binary serves with rate
# limits lifted. Each backend gets a fresh world: the demo accounts and one
# published event of 1,000,000 units.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${EMS_BENCH_SECS:-20}
conns=${EMS_BENCH_CONNS:-64}
pg_url=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}
command -v wrk >/dev/null || { echo "wrk is needed (apt-get install wrk)" >&2; exit 1; }
cargo build --quiet --release -p ems-http
bin=target/release/ems-http
json() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }

server=""
trap '[ -n "$server" ] && kill "$server" 2>/dev/null || true' EXIT

run() {
  local backend=$1; shift
  local port base org cust org_id event tier etag
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  base="http://127.0.0.1:$port"
  RUST_LOG=warn "$bin" --bind "127.0.0.1:$port" --rate-limit-ip 100000000 --rate-limit-user 100000000 \
    --demo "$@" >/tmp/ems-bench-http.out 2>/tmp/ems-bench-http.log &
  server=$!
  for _ in $(seq 1 100); do curl -fs "$base/health" >/dev/null 2>&1 && break; sleep 0.2; done
  login() { curl -fs "$base/auth/login" -H 'content-type: application/json' \
    -d "{\"email\":\"$1\",\"password\":\"demo-password-1\"}" | json 'd["access_token"]'; }
  org=$(login organizer@ems.test)
  cust=$(login customer@ems.test)
  org_id=$(curl -fs "$base/me" -H "authorization: Bearer $org" | json 'd["organization"]')
  event=$(curl -fs "$base/events" -H "authorization: Bearer $org" -H 'content-type: application/json' -d "{
    \"organization\":\"$org_id\",\"title\":\"Bench Night\",\"description\":\"\",\"category\":\"bench\",
    \"venue\":{\"name\":\"Hall\",\"city\":\"Lisbon\",\"address\":null},\"time_zone\":\"UTC\",
    \"starts_at\":\"2099-01-01T20:00:00Z\",\"ends_at\":\"2099-01-01T23:00:00Z\",\"capacity\":1000000,
    \"currency\":\"EUR\",\"refund_policy\":{\"rules\":[]}}" | json 'd["id"]')
  tier=$(curl -fs "$base/events/$event/tiers" -H "authorization: Bearer $org" -H 'content-type: application/json' -d '{
    "name":"GA","price":{"amount":"20.00","currency":"EUR"},"capacity":1000000,"min_per_order":1,
    "max_per_order":10,"sales_start":null,"sales_end":null,"shared_quotas":[]}' | json 'd["id"]')
  etag=$(curl -fsI "$base/events/$event" -H "authorization: Bearer $org" | tr -d '\r' | awk -F': ' 'tolower($1)=="etag"{print $2}')
  curl -fs -X POST "$base/events/$event/publish" -H "authorization: Bearer $org" -H "if-match: $etag" >/dev/null
  echo
  echo "=== $backend: GET /events/{id} (wrk -t2 -c$conns -d${secs}s)"
  EMS_EVENT=$event wrk -t2 -c"$conns" -d"${secs}s" --latency -s benches/http/event.lua "$base"
  echo
  echo "=== $backend: POST /checkout (wrk -t2 -c$conns -d${secs}s)"
  EMS_TOKEN=$cust EMS_EVENT=$event EMS_TIER=$tier \
    wrk -t2 -c"$conns" -d"${secs}s" --latency -s benches/http/checkout.lua "$base"
  curl -fs "$base/events/$event/availability" | json '"sold check: " + str([t for t in d["tiers"]])[:300]'
  kill "$server"; wait "$server" 2>/dev/null || true; server=""
}

run memory
db="ems_bench_http_$$"
psql "$pg_url" -qc "create database $db" >/dev/null
run postgres --database-url "${pg_url%/*}/$db"
psql "$pg_url" -qc "drop database if exists $db with (force)" >/dev/null
