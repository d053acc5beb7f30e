#!/usr/bin/env bash
# Benchmarks the gateway on loopback (see docs/benchmarks.md):
#   1. latency (p50, p99) and throughput of an authenticated, rate-limited request that does
#      nothing else (GET /api/v1/ping), with wrk;
#   2. the cost of a cold authentication (first use of a key: lookup + argon2id) against a warm
#      one (cache hit), with curl.
# It builds release binaries, uses its own database (awx_bench, recreated) and Redis prefix, and
# limits that are evaluated on every request but never refuse.
set -euo pipefail
cd "$(dirname "$0")/.."

PORT="${BENCH_PORT:-18080}"
DURATION="${BENCH_DURATION:-20s}"
CONNECTIONS="${BENCH_CONNECTIONS:-32}"
DB_URL="postgres://postgres:postgres@127.0.0.1:5432/awx_bench"

scripts/setup.sh
command -v wrk >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; }
cargo build --release --quiet -p awx-cli -p awx-gateway

psql -q "postgres://postgres:postgres@127.0.0.1:5432/postgres" -c "DROP DATABASE IF EXISTS awx_bench WITH (FORCE)" -c "CREATE DATABASE awx_bench"
KEY=$(AWX_DATABASE_URL="$DB_URL" target/release/awx admin bootstrap --name bench | awk '/^api key/{print $3}')

export AWX_GATEWAY__DATABASE__URL="$DB_URL"
export AWX_GATEWAY__HTTP__ADDR="127.0.0.1:$PORT"
export AWX_GATEWAY__BUS__PREFIX="bench-$$"
export AWX_GATEWAY__RATE_LIMITS__DEFAULT__PER_KEY__PER_SECOND=1000000
export AWX_GATEWAY__RATE_LIMITS__DEFAULT__PER_KEY__BURST=1000000
export AWX_GATEWAY__RATE_LIMITS__DEFAULT__GLOBAL__PER_SECOND=1000000
export AWX_GATEWAY__RATE_LIMITS__DEFAULT__GLOBAL__BURST=1000000
export RUST_LOG=warn
target/release/awx-gateway >/tmp/awx-bench-gateway.log 2>&1 &
GATEWAY=$!
trap 'kill $GATEWAY 2>/dev/null; wait $GATEWAY 2>/dev/null' EXIT
for _ in $(seq 1 100); do curl -fsS "http://127.0.0.1:$PORT/health/ready" >/dev/null 2>&1 && break; sleep 0.1; done

echo "== warm-up"
wrk -t2 -c"$CONNECTIONS" -d3s -H "X-API-Key: $KEY" "http://127.0.0.1:$PORT/api/v1/ping" >/dev/null
echo "== GET /api/v1/ping: $CONNECTIONS connections, $DURATION"
wrk -t2 -c"$CONNECTIONS" -d"$DURATION" --latency -H "X-API-Key: $KEY" "http://127.0.0.1:$PORT/api/v1/ping"

echo "== cold vs warm authentication (20 new keys, one request each, then again)"
cold=(); warm=()
for _ in $(seq 1 20); do
  # A new account's admin key (the key-creation endpoint is itself rate limited).
  NEW=$(AWX_DATABASE_URL="$DB_URL" target/release/awx admin create-account --name "bench-$RANDOM" | awk '/^api key/{print $3}')
  cold+=("$(curl -fsS -o /dev/null -w '%{time_total}' "http://127.0.0.1:$PORT/api/v1/ping" -H "X-API-Key: $NEW")")
  warm+=("$(curl -fsS -o /dev/null -w '%{time_total}' "http://127.0.0.1:$PORT/api/v1/ping" -H "X-API-Key: $NEW")")
done
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {m=a[int((NR+1)/2)]; printf "%.1f ms\n", m*1000}'; }
echo "cold (lookup + argon2id) median: $(median "${cold[@]}")"
echo "warm (cache hit)          median: $(median "${warm[@]}")"
