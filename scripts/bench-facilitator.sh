#!/usr/bin/env bash
# Benchmarks the facilitator (see docs/benchmarks.md): verify throughput and latency for outside
# payers and for our own agents' payments, each with its CPU per verify per process group and its
# Postgres transactions and rows written per verify; the settle (capture) throughput of our own
# agents' payments; settle latency one at a time and settle throughput under concurrency; through
# the gateway of a whole `awx dev` platform (release build) on its own anvil, database and Redis
# prefix, beside the pgbench reference measured first in the same run. Rate limits are raised
# for the run so they never refuse; everything else is default.
set -euo pipefail
cd "$(dirname "$0")/.."

SECONDS_EACH="${BENCH_SECONDS:-20}"
WORKERS="${BENCH_WORKERS:-16}"
SEQUENTIAL="${BENCH_SEQUENTIAL:-50}"
PORT="${BENCH_PORT:-18090}"
DEMO_PORT="${BENCH_DEMO_PORT:-18091}"
MODES="${BENCH_MODES:-verify verify-own settle-own settle}"
OWN_PAYMENTS="${BENCH_OWN_PAYMENTS:-64}"
DATABASE="postgres://postgres:postgres@127.0.0.1:5432/awx_bench_facilitator"
ADMIN="postgres://postgres:postgres@127.0.0.1:5432/postgres"
STATE="$(mktemp -d /tmp/awx-bench-facilitator.XXXXXX)"

scripts/setup.sh
cargo build --release --quiet -p awx-cli
scripts/pgbench-reference.sh "$SECONDS_EACH"
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
  --database-url "$DATABASE" --demo-addr "127.0.0.1:$DEMO_PORT" \
  --gateway-addr "127.0.0.1:$PORT" --ledger-ops-addr 127.0.0.1:0 --settlement-ops-addr 127.0.0.1:0 \
  --policy-ops-addr 127.0.0.1:0 \
  --bus-prefix "bench-facilitator-$$" >"$STATE/dev.log" 2>&1 &
DEV=$!
trap 'kill -INT $DEV 2>/dev/null; wait $DEV 2>/dev/null; rm -rf "$STATE"' EXIT
until grep -q "Press Ctrl-C" "$STATE/dev.log" 2>/dev/null; do
  kill -0 $DEV 2>/dev/null || { cat "$STATE/dev.log"; exit 1; }
  sleep 0.2
done

for mode in $MODES; do
  echo "== $mode ($WORKERS workers, ${SECONDS_EACH}s)"
  target/release/awx facilitator bench --mode "$mode" --gateway "http://127.0.0.1:$PORT" \
    --state-file "$STATE/devchain.json" --workers "$WORKERS" --seconds "$SECONDS_EACH" --sequential "$SEQUENTIAL" \
    --own-payments "$OWN_PAYMENTS" \
    --demo-url "http://127.0.0.1:$DEMO_PORT/v1/weather" --platform-pid "$DEV" --database-url "$DATABASE"
done
