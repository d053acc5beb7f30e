#!/usr/bin/env bash
# Benchmarks the facilitator for outside payers (see docs/benchmarks.md): verify throughput and
# latency, settle latency one at a time and settle throughput under concurrency, through the
# gateway of a whole `awx dev` platform (release build) on its own anvil, database and Redis
# prefix. Rate limits are raised for the run so they never refuse; everything else is default.
set -euo pipefail
cd "$(dirname "$0")/.."

SECONDS_EACH="${BENCH_SECONDS:-20}"
WORKERS="${BENCH_WORKERS:-16}"
SEQUENTIAL="${BENCH_SEQUENTIAL:-50}"
PORT="${BENCH_PORT:-18090}"
ADMIN="postgres://postgres:postgres@127.0.0.1:5432/postgres"
STATE="$(mktemp -d /tmp/awx-bench-facilitator.XXXXXX)"

scripts/setup.sh
cargo build --release --quiet -p awx-cli
psql -q "$ADMIN" -c "DROP DATABASE IF EXISTS awx_bench_facilitator WITH (FORCE)"

cat >"$STATE/gateway.toml" <<'TOML'
[rate_limits]
actions = {}
[rate_limits.default.per_key]
per_second = 1000000
burst = 1000000
[rate_limits.default.global]
per_second = 1000000
burst = 1000000
TOML

RUST_LOG=warn AWX_GATEWAY_CONFIG="$STATE/gateway.toml" target/release/awx dev \
  --chain-port 0 --state-file "$STATE/devchain.json" \
  --database-url "postgres://postgres:postgres@127.0.0.1:5432/awx_bench_facilitator" \
  --gateway-addr "127.0.0.1:$PORT" --ledger-ops-addr 127.0.0.1:0 --settlement-ops-addr 127.0.0.1:0 \
  --bus-prefix "bench-facilitator-$$" >"$STATE/dev.log" 2>&1 &
DEV=$!
trap 'kill -INT $DEV 2>/dev/null; wait $DEV 2>/dev/null; rm -rf "$STATE"' EXIT
for _ in $(seq 1 300); do
  curl -fsS "http://127.0.0.1:$PORT/health/ready" >/dev/null 2>&1 && [ -f "$STATE/dev-admin-key" ] && break
  kill -0 $DEV 2>/dev/null || { cat "$STATE/dev.log"; exit 1; }
  sleep 0.1
done

for mode in verify settle; do
  echo "== $mode ($WORKERS workers, ${SECONDS_EACH}s)"
  target/release/awx facilitator bench --mode "$mode" --gateway "http://127.0.0.1:$PORT" \
    --state-file "$STATE/devchain.json" --workers "$WORKERS" --seconds "$SECONDS_EACH" --sequential "$SEQUENTIAL"
done
