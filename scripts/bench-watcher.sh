#!/usr/bin/env bash
# Benchmarks the chain watcher (see docs/benchmarks.md), release build: on an anvil of its own,
# BENCH_BLOCKS (30) blocks of BENCH_TRANSFERS (1000) token transfers each, BENCH_DEPOSITS (100)
# of them into the wallets of BENCH_AGENTS (100) agents, one block every BENCH_BLOCK_INTERVAL_MS
# (1000), mined by the bench; the whole platform in process (database awx_bench_watcher,
# recreated; its own Redis prefix) with the watcher following the chain every 200 ms. Prints how
# far behind the head the watcher stays, each deposit's latency from its block to the agent's
# available balance, the watcher's time per block beside a bare eth_getLogs of the same block,
# after checking that every deposit was credited exactly once and the ledger check passes.
set -euo pipefail
cd "$(dirname "$0")/.."

BLOCKS="${BENCH_BLOCKS:-30}"
TRANSFERS="${BENCH_TRANSFERS:-1000}"
DEPOSITS="${BENCH_DEPOSITS:-100}"
AGENTS="${BENCH_AGENTS:-100}"
BLOCK_INTERVAL_MS="${BENCH_BLOCK_INTERVAL_MS:-1000}"

scripts/setup.sh
cargo build --release --quiet -p awx-cli

RUST_LOG="${RUST_LOG:-warn}" target/release/awx watcher bench --blocks "$BLOCKS" \
  --transfers-per-block "$TRANSFERS" --deposits-per-block "$DEPOSITS" --agents "$AGENTS" \
  --block-interval-ms "$BLOCK_INTERVAL_MS" \
  --database-url "postgres://postgres:postgres@127.0.0.1:5432/awx_bench_watcher"
