#!/usr/bin/env bash
# Benchmarks the ledger (see docs/benchmarks.md): holds plus captures per second and transfers
# per second, each operation one durable Postgres transaction, beside a plain pgbench run
# (TPC-B-like, scale 10) on the same server in the same session. The ratio is the figure that
# matters: it says how close the ledger's write path is to what this Postgres can do at all.
set -euo pipefail
cd "$(dirname "$0")/.."

SECONDS_EACH="${BENCH_SECONDS:-20}"
WORKERS="${BENCH_WORKERS:-8}"
ADMIN="postgres://postgres:postgres@127.0.0.1:5432/postgres"

scripts/setup.sh
cargo build --release --quiet -p awx-cli
psql -q "$ADMIN" -c "DROP DATABASE IF EXISTS awx_bench_ledger WITH (FORCE)" -c "CREATE DATABASE awx_bench_ledger" \
  -c "DROP DATABASE IF EXISTS awx_bench_pgbench WITH (FORCE)" -c "CREATE DATABASE awx_bench_pgbench"

echo "== pgbench (TPC-B-like, scale 10, $WORKERS clients, ${SECONDS_EACH}s)"
PGPASSWORD=postgres pgbench -q -h 127.0.0.1 -U postgres -i -s 10 awx_bench_pgbench >/dev/null 2>&1
PGPASSWORD=postgres pgbench -h 127.0.0.1 -U postgres -M prepared -c "$WORKERS" -j 2 -T "$SECONDS_EACH" awx_bench_pgbench | grep -E 'tps|latency average'

export AWX_DATABASE_URL="postgres://postgres:postgres@127.0.0.1:5432/awx_bench_ledger"
echo "== ledger: holds + captures ($WORKERS workers, ${SECONDS_EACH}s)"
target/release/awx ledger bench --mode holds --workers "$WORKERS" --seconds "$SECONDS_EACH"
echo "== ledger: transfers ($WORKERS workers, ${SECONDS_EACH}s)"
target/release/awx ledger bench --mode transfers --workers "$WORKERS" --seconds "$SECONDS_EACH"
echo "== ledger check after the run"
target/release/awx ledger check
