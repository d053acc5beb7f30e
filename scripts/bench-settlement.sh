#!/usr/bin/env bash
# Benchmarks net settlement (see docs/benchmarks.md), release build:
#   1. gas per settled payment, from the receipts on an anvil of its own: one
#      transferWithAuthorization transaction per payment, the same authorizations in one Multicall3
#      aggregate3, and netting as awx does it (one transfer per (payer, payee) group and one fee
#      transfer per payer, in one aggregate3); case A 100 payments from 1 payer to 1 payee, case B
#      100 payments from 100 payers to 10 payees;
#   2. the batch worker's throughput: BENCH_ITEMS (10000) real payments captured through the whole
#      platform in process (database awx_bench_settlement, recreated; its own anvil and Redis
#      prefix), then the real worker's passes timed until every item is settled on chain.
# Every mode must move exactly the expected amounts on chain before its figure is printed.
set -euo pipefail
cd "$(dirname "$0")/.."

ITEMS="${BENCH_ITEMS:-10000}"
CONCURRENCY="${BENCH_CONCURRENCY:-16}"

scripts/setup.sh
cargo build --release --quiet -p awx-cli

RUST_LOG="${RUST_LOG:-warn}" target/release/awx settlement bench --items "$ITEMS" --concurrency "$CONCURRENCY" \
  --database-url "postgres://postgres:postgres@127.0.0.1:5432/awx_bench_settlement"
