#!/usr/bin/env bash
# The same-run reference of the benchmarks (docs/benchmarks.md): plain pgbench, TPC-B-like,
# scale 10, 8 clients, prepared statements, on the local Postgres, for SECONDS (default 20).
# Prints pgbench's tps and average latency lines. A benchmark figure is read as a ratio to this.
set -euo pipefail
SECONDS_EACH="${1:-20}"
ADMIN="postgres://postgres:postgres@127.0.0.1:5432/postgres"
psql -q "$ADMIN" -c "DROP DATABASE IF EXISTS awx_bench_pgbench WITH (FORCE)" -c "CREATE DATABASE awx_bench_pgbench"
echo "== pgbench reference (TPC-B-like, scale 10, 8 clients, ${SECONDS_EACH}s)"
PGPASSWORD=postgres pgbench -q -h 127.0.0.1 -U postgres -i -s 10 awx_bench_pgbench >/dev/null 2>&1
PGPASSWORD=postgres pgbench -h 127.0.0.1 -U postgres -M prepared -c 8 -j 2 -T "$SECONDS_EACH" awx_bench_pgbench | grep -E 'tps|latency average'
