#!/usr/bin/env bash
# Benchmarks agent payments (see docs/benchmarks.md): /x402/pay latency one at a time, sustained
# payments per second with concurrent workers, and whole paid requests per second (pay, then the
# retry that the provider verifies and settles through our facilitator), through the gateway of
# a whole `awx dev` platform (release build) with its demo paid API on loopback; beside a plain
# pgbench run (TPC-B-like, scale 10) on the same Postgres in the same session. Rate limits are
# raised for the run so they never refuse; everything else is default. With BENCH_PROFILE_DIR set
# (scripts/profile-pay.sh), each concurrent phase is also profiled into that directory.
set -euo pipefail
cd "$(dirname "$0")/.."

SECONDS_EACH="${BENCH_SECONDS:-20}"
WORKERS="${BENCH_WORKERS:-16}"
SEQUENTIAL="${BENCH_SEQUENTIAL:-100}"
PORT="${BENCH_PORT:-18095}"
DEMO_PORT="${BENCH_DEMO_PORT:-18096}"
ADMIN="postgres://postgres:postgres@127.0.0.1:5432/postgres"
STATE="$(mktemp -d /tmp/awx-bench-pay.XXXXXX)"

scripts/setup.sh
cargo build --release --quiet -p awx-cli
scripts/pgbench-reference.sh "$SECONDS_EACH" 3leg

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
  --database-url "postgres://postgres:postgres@127.0.0.1:5432/awx_bench_pay" \
  --gateway-addr "127.0.0.1:$PORT" --demo-addr "127.0.0.1:$DEMO_PORT" \
  --ledger-ops-addr 127.0.0.1:0 --settlement-ops-addr 127.0.0.1:0 --policy-ops-addr 127.0.0.1:0 \
  --bus-prefix "bench-pay-$$" >"$STATE/dev.log" 2>&1 &
DEV=$!
trap 'kill -INT $DEV 2>/dev/null; wait $DEV 2>/dev/null; rm -rf "$STATE"' EXIT
until grep -q "Press Ctrl-C" "$STATE/dev.log" 2>/dev/null; do
  kill -0 $DEV 2>/dev/null || { cat "$STATE/dev.log"; exit 1; }
  sleep 0.2
done

echo "== /x402/pay ($WORKERS workers, ${SECONDS_EACH}s per phase)"
target/release/awx payments bench --gateway "http://127.0.0.1:$PORT" --state-file "$STATE/devchain.json" \
  --target "http://127.0.0.1:$DEMO_PORT/v1/weather" --workers "$WORKERS" --seconds "$SECONDS_EACH" \
  --sequential "$SEQUENTIAL" --platform-pid "$DEV" \
  --database-url "postgres://postgres:postgres@127.0.0.1:5432/awx_bench_pay" \
  ${BENCH_PROFILE_DIR:+--profile-dir "$BENCH_PROFILE_DIR"}
echo "== ledger check after the run"
AWX_DATABASE_URL="postgres://postgres:postgres@127.0.0.1:5432/awx_bench_pay" target/release/awx ledger check
