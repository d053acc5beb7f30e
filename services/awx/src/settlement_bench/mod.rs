//! `awx settlement bench`: what net settlement saves on chain, and how fast the batch worker
//! nets (see `scripts/bench-settlement.sh` and docs/benchmarks.md). Two parts, each on an anvil
//! of its own:
//!
//! - **gas**: the gas of settling $0.10 payments three ways, from the receipts: one
//!   `transferWithAuthorization` transaction per payment (as outside payers are settled), the
//!   same authorizations in one Multicall3 `aggregate3` transaction, and netting as awx does it
//!   (one new authorization per (payer, payee) group for its sum, one per payer for its 2 %
//!   fees, all in one `aggregate3`). Case A: 100 payments, 1 payer, 1 payee; case B: 100
//!   payments, 100 payers, 10 payees. Every mode starts from fresh payers (minted 1,000 USDC)
//!   and payees, and must move exactly the expected amounts (balances read on chain) before
//!   its figure is printed.
//! - **throughput**: the real platform in this process (`crate::platform`, in-process worker
//!   off), agents paying paid APIs built with our middleware until `--items` payments are
//!   captured and queued; once every authorization has expired, passes of the real
//!   [`BatchWorker`] are timed until every item is settled on chain (and every transfer,
//!   fees included, confirmed and recorded in the ledger). Balances on chain and the ledger
//!   check must agree afterwards.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use alloy::network::TransactionBuilder as _;
use alloy::primitives::U256;
use alloy::providers::{DynProvider, Provider as _};
use alloy::rpc::types::TransactionRequest;
use alloy::signers::local::PrivateKeySigner;
use anyhow::{Context as _, ensure};
use awx_chain::{
    Anvil, AnvilOptions, Call3, MULTICALL3_ADDRESS, Token, aggregate3_calldata,
    connect_with_wallet, deploy_test_usdc, install_multicall3,
};
use awx_settlement_service::batch::{BatchWorker, PassReport};
use awx_types::Amount;
use awx_x402::{Address, Bytes, Eip3009Authorization, Eip3009Payload, TokenDomain};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::bench::say;

mod gas;
pub(crate) mod setup;
mod throughput;

use gas::gas_part;
use throughput::throughput_part;

const TOKEN_NAME: &str = "USD Coin";
const TOKEN_VERSION: &str = "2";
pub(crate) const DECIMALS: u8 = 6;
/// A payment: $0.10.
const VALUE: u128 = 100_000;
/// Its fee at 2 %.
const FEE: u128 = 2_000;
/// What each payer of the gas part is minted: 1,000 USDC (its balance never reaches zero).
const MINTED: u128 = 1_000_000_000;
/// The gas limit of the gas part's batch transactions (fixed, so no estimate is involved; the
/// gas used does not depend on it).
const BATCH_GAS_LIMIT: u64 = 25_000_000;

/// Which parts to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum BenchPart {
    /// Both.
    All,
    /// Gas per settled payment, three ways.
    Gas,
    /// The batch worker's items netted per second.
    Throughput,
}

/// Options of `awx settlement bench`.
#[derive(Debug, clap::Args)]
pub(crate) struct BenchArgs {
    /// Which parts to run.
    #[arg(long, value_enum, default_value = "all")]
    part: BenchPart,
    /// Captured payments queued for the worker (throughput part).
    #[arg(long, default_value_t = 10_000)]
    items: usize,
    /// Agents paying (throughput part).
    #[arg(long, default_value_t = 20)]
    agents: usize,
    /// Payees, one paid API each (throughput part).
    #[arg(long, default_value_t = 5)]
    payees: usize,
    /// Payments in flight while the items are made.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// How long the paid APIs' authorizations are valid (the facilitator wants 6 s left).
    #[arg(long, default_value_t = 10)]
    expiry_seconds: u64,
    /// The database of the throughput part (dropped and recreated).
    #[arg(
        long,
        env = "AWX_BENCH_DATABASE_URL",
        default_value = "postgres://postgres:postgres@127.0.0.1:5432/awx_bench_settlement"
    )]
    database_url: String,
    /// Redis.
    #[arg(long, env = "AWX_REDIS_URL", default_value = "redis://127.0.0.1:6379")]
    redis_url: String,
}

pub(crate) async fn run(args: BenchArgs) -> anyhow::Result<()> {
    ensure!(args.agents > 0 && args.payees > 0 && args.items > 0, "nothing to measure");
    ensure!(args.expiry_seconds >= 8, "--expiry-seconds must be at least 8");
    let mut reference = None;
    if matches!(args.part, BenchPart::All | BenchPart::Gas) {
        reference = Some(gas_part().await?);
    }
    if matches!(args.part, BenchPart::All | BenchPart::Throughput) {
        throughput_part(&args, reference).await?;
    }
    Ok(())
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_secs())
}

/// A `u64` as `f64` (no `as`: exact below 2^53, which every figure here is).
fn float(value: u64) -> f64 {
    let high = u32::try_from(value >> 32).unwrap_or(u32::MAX);
    let low = u32::try_from(value & 0xffff_ffff).unwrap_or(u32::MAX);
    f64::from(high) * 4_294_967_296.0 + f64::from(low)
}

fn count(value: usize) -> f64 {
    float(u64::try_from(value).unwrap_or(u64::MAX))
}

fn ratio(numerator: u64, denominator: u64) -> f64 {
    float(numerator) / float(denominator.max(1))
}

fn per_second(items: usize, took: Duration) -> f64 {
    count(items) / took.as_secs_f64().max(1e-9)
}

fn dollars(atomic: u128) -> anyhow::Result<String> {
    Ok(Amount::from_atomic(atomic).to_decimal_string(DECIMALS)?)
}
