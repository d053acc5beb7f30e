#!/usr/bin/env bash
# The same-run reference of the benchmarks (docs/benchmarks.md): plain pgbench, TPC-B-like,
# scale 10, 8 clients, prepared statements, on the local Postgres, for SECONDS (default 20).
# With `3leg` as the second argument, also the durable 3-leg payment of bench/payment-3leg.sql
# (one payment per transaction, 8 clients). Prints pgbench's tps and average latency lines. A
# benchmark figure is read as a ratio to this.
set -euo pipefail
SECONDS_EACH="${1:-20}"
WITH_3LEG="${2:-}"
cd "$(dirname "$0")/.."
ADMIN="postgres://postgres:postgres@127.0.0.1:5432/postgres"
psql -q "$ADMIN" -c "DROP DATABASE IF EXISTS awx_bench_pgbench WITH (FORCE)" -c "CREATE DATABASE awx_bench_pgbench"
echo "== pgbench reference (TPC-B-like, scale 10, 8 clients, ${SECONDS_EACH}s)"
PGPASSWORD=postgres pgbench -q -h 127.0.0.1 -U postgres -i -s 10 awx_bench_pgbench >/dev/null 2>&1
PGPASSWORD=postgres pgbench -h 127.0.0.1 -U postgres -M prepared -c 8 -j 2 -T "$SECONDS_EACH" awx_bench_pgbench | grep -E 'tps|latency average'
if [ "$WITH_3LEG" = "3leg" ]; then
  echo "== pgbench reference: the durable 3-leg payment (bench/payment-3leg.sql, 8 clients, ${SECONDS_EACH}s)"
  PGPASSWORD=postgres psql -q -h 127.0.0.1 -U postgres -d awx_bench_pgbench -f bench/payment-3leg-setup.sql >/dev/null
  PGPASSWORD=postgres pgbench -h 127.0.0.1 -U postgres -n -M prepared -c 8 -j 2 -T "$SECONDS_EACH" -f bench/payment-3leg.sql awx_bench_pgbench | grep -E 'tps|latency average'
fi
