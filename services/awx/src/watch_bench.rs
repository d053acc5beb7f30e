//! `awx watcher bench`: how far behind the chain's head the chain watcher
//! ([`awx_settlement_service::watcher`]) stays, and how long a deposit takes from its block to
//! the agent's available balance, on anvil with `--transfers-per-block` token transfers a block
//! (see `scripts/bench-watcher.sh` and docs/benchmarks.md).
//!
//! Set-up: anvil with our token and Multicall3, and the whole platform in this process
//! ([`crate::settlement_bench::setup`], batch worker off) on a fresh database, watching our token
//! from block 0 with no confirmations; `--agents` agents created through the gateway. The
//! token's deployer is made a minter and mints a large amount to Multicall3, so every transfer
//! is a `transfer` call from Multicall3 inside `aggregate3` transactions of
//! `--calls-per-transaction` calls each.
//!
//! Load: the bench mines the blocks itself (automine off, `evm_mine` every
//! `--block-interval-ms`, the block gas limit raised to fit), each with `--transfers-per-block`
//! `Transfer`s: `--deposits-per-block` into agents' wallets (deposits, spread evenly over the
//! block and over the agents) and the rest to fresh random addresses.
//!
//! The watcher: with `--driver bench` (the default) the bench runs the real pass
//! ([`Watcher::pass_locked`]) in the loop [`awx_settlement_service::watcher::run`] runs (a pass;
//! again at once while behind; otherwise wait `--watch-interval-ms`), timing every pass; the
//! platform's own watcher is off so nothing competes for the chain's lock. With
//! `--driver service` the platform's watcher runs as deployed and only what is visible from
//! outside is measured (the lag and the deposits' latency; not the passes).
//!
//! Measured: the lag (head − last scanned block) sampled every `--sample-interval-ms` while the
//! blocks are produced; each deposit's latency from the moment its block was mined (the bench's
//! clock when `evm_mine` returned) to `credited_at` (the ledger has answered: the amount is in
//! the agent's available balance); the watcher's time per block and logs per second. The
//! references, measured in the same run: the block interval, and a bare `eth_getLogs` of each
//! block with the watcher's filter ([`ChainClient::token_logs`]), once the watcher is stopped;
//! beside it, to see where a pass's time goes, the wallet lookup of each block's addresses (one
//! `LookupWallets` over the bus, as the watcher sends it) and new Postgres connections.
//!
//! Checked before any figure is printed: every transaction succeeded in its block, every deposit
//! is credited exactly once (rows per agent and their sum), each agent's available balance
//! (through the gateway) is exactly what was sent to it, no alert was raised, and the ledger
//! check passes.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use alloy::network::TransactionBuilder as _;
use alloy::primitives::{B256, U256};
use alloy::providers::{DynProvider, Provider as _};
use alloy::rpc::types::TransactionRequest;
use alloy::sol_types::SolCall as _;
use anyhow::{Context as _, bail, ensure};
use awx_api::policy::LookupWallets;
use awx_chain::token::Eip3009Token;
use awx_chain::{Call3, ChainClient, MULTICALL3_ADDRESS, TokenEvent, aggregate3_calldata};
use awx_settlement_service::Facilitator;
use awx_settlement_service::config::{BatchSettings, NetworkWatch, WatchSettings};
use awx_settlement_service::watcher::{WatchReport, Watcher};
use awx_types::Amount;
use awx_x402::{Address, Bytes};
use serde_json::{Value, json};
use sqlx::Connection as _;
use tokio_util::sync::CancellationToken;

use crate::bench::say;
use crate::settlement_bench::DECIMALS;
use crate::settlement_bench::setup::{BenchPlatform, Gateway, PlatformOptions};

/// What the deployer mints to Multicall3 to send from: 10^12 USDC.
const MULTICALL3_FUNDS: u128 = 1_000_000_000_000_000_000;
/// A transfer to a random address: one atomic unit.
const NOISE_VALUE: u128 = 1;
/// A deposit: 0.01 USDC plus its sequence number (so every deposit of an agent differs).
const DEPOSIT_BASE: u128 = 10_000;
/// The fees of the load's transactions (anvil's base fee stays far below).
const MAX_FEE_PER_GAS: u128 = 20_000_000_000;
const PRIORITY_FEE_PER_GAS: u128 = 1_000_000_000;
/// The database connections of the bench itself (sampling and checks).
const POOL_CONNECTIONS_MAX: u32 = 2;
/// New connections timed (a reference).
const CONNECTIONS_TIMED: usize = 10;
/// How long a wallet lookup of the reference may take.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(10);

/// Who runs the watcher.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Driver {
    /// The bench runs the real pass in the service's loop and times every pass.
    Bench,
    /// The platform's own watcher (as deployed); passes are not timed.
    Service,
}

/// Options of `awx watcher bench`.
#[derive(Debug, clap::Args)]
pub(crate) struct BenchArgs {
    /// Blocks produced.
    #[arg(long, default_value_t = 30)]
    blocks: usize,
    /// Token transfers in each block.
    #[arg(long, default_value_t = 1_000)]
    transfers_per_block: usize,
    /// How many of a block's transfers go to agents' wallets (deposits); the rest go to fresh
    /// random addresses.
    #[arg(long, default_value_t = 100)]
    deposits_per_block: usize,
    /// Agents (their wallets receive the deposits, in turn).
    #[arg(long, default_value_t = 100)]
    agents: usize,
    /// Time between blocks.
    #[arg(long, default_value_t = 1_000)]
    block_interval_ms: u64,
    /// Transfers per `aggregate3` transaction.
    #[arg(long, default_value_t = 250)]
    calls_per_transaction: usize,
    /// The watcher's `watch.interval_ms`.
    #[arg(long, default_value_t = 200)]
    watch_interval_ms: u64,
    /// How often the lag is sampled.
    #[arg(long, default_value_t = 100)]
    sample_interval_ms: u64,
    /// Who runs the watcher.
    #[arg(long, value_enum, default_value = "bench")]
    driver: Driver,
    /// The database (dropped and recreated).
    #[arg(
        long,
        env = "AWX_BENCH_DATABASE_URL",
        default_value = "postgres://postgres:postgres@127.0.0.1:5432/awx_bench_watcher"
    )]
    database_url: String,
    /// Redis.
    #[arg(long, env = "AWX_REDIS_URL", default_value = "redis://127.0.0.1:6379")]
    redis_url: String,
}

pub(crate) async fn run(args: BenchArgs) -> anyhow::Result<()> {
    ensure!(args.blocks > 0 && args.agents > 0, "nothing to measure");
    ensure!(
        args.deposits_per_block > 0 && args.deposits_per_block <= args.transfers_per_block,
        "--deposits-per-block must be 1 to --transfers-per-block"
    );
    ensure!(
        (1..=1_000).contains(&args.calls_per_transaction),
        "--calls-per-transaction must be 1 to 1000"
    );
    ensure!(
        args.block_interval_ms > 0 && args.watch_interval_ms > 0 && args.sample_interval_ms > 0,
        "intervals must be positive"
    );
    say(&format!(
        "== the chain watcher: {} blocks of {} transfers ({} deposits to {} agents), one every {} ms, watcher every {} ms ({:?} driver)",
        args.blocks,
        args.transfers_per_block,
        args.deposits_per_block,
        args.agents,
        args.block_interval_ms,
        args.watch_interval_ms,
        args.driver
    ))?;
    let bench = BenchPlatform::start(PlatformOptions {
        name: "watcher",
        database_url: args.database_url.clone(),
        redis_url: args.redis_url.clone(),
        batch: BatchSettings { enabled: false, ..BatchSettings::default() },
        watch: WatchSettings {
            enabled: args.driver == Driver::Service,
            interval_ms: args.watch_interval_ms,
            ..WatchSettings::default()
        },
        network_watch: NetworkWatch { tokens: Vec::new(), from_block: Some(0) },
    })
    .await?;
    let outcome = measure(&args, &bench).await;
    let stopped = bench.stop().await;
    outcome?;
    stopped
}

// ---------------------------------------------------------------------------------------------
// The load.

/// One transfer of the load.
struct Transfer {
    to: Address,
    value: u128,
    /// The agent receiving it (a deposit), if any.
    agent: Option<usize>,
}

/// Block `block`'s transfers: `deposits` of them (spread evenly) to agents in turn, starting
/// where the previous block stopped, the rest to fresh random addresses.
fn block_transfers(args: &BenchArgs, wallets: &[Address], block: usize) -> Vec<Transfer> {
    let (total, deposits) = (args.transfers_per_block, args.deposits_per_block);
    let mut sequence = block.saturating_mul(deposits);
    (0..total)
        .map(|index| {
            // Bresenham: exactly `deposits` of the `total` indexes, evenly spaced.
            let is_deposit = index.saturating_add(1).saturating_mul(deposits) / total
                > index.saturating_mul(deposits) / total;
            if is_deposit {
                let agent = sequence % wallets.len();
                let value = DEPOSIT_BASE.saturating_add(u128::try_from(sequence).unwrap_or(0));
                sequence = sequence.saturating_add(1);
                Transfer { to: wallets[agent], value, agent: Some(agent) }
            } else {
                Transfer { to: Address::random(), value: NOISE_VALUE, agent: None }
            }
        })
        .collect()
}

/// The `aggregate3` calldata of each transaction sending `transfers` from Multicall3.
fn batches(token: Address, transfers: &[Transfer], calls_max: usize) -> Vec<Bytes> {
    transfers
        .chunks(calls_max)
        .map(|chunk| {
            let calls: Vec<Call3> = chunk
                .iter()
                .map(|transfer| Call3 {
                    target: token,
                    allow_failure: false,
                    call_data: Bytes::from(
                        Eip3009Token::transferCall {
                            to: transfer.to,
                            value: U256::from(transfer.value),
                        }
                        .abi_encode(),
                    ),
                })
                .collect();
            aggregate3_calldata(&calls)
        })
        .collect()
}

/// Sends the deployer's transactions without waiting for them (automine is off).
struct Sender {
    deployer: DynProvider,
    nonce: u64,
    gas_limit: u64,
}

impl Sender {
    async fn send(&mut self, input: Bytes) -> anyhow::Result<B256> {
        let request = TransactionRequest::default()
            .with_to(MULTICALL3_ADDRESS)
            .with_input(input)
            .with_nonce(self.nonce)
            .with_gas_limit(self.gas_limit)
            .with_max_fee_per_gas(MAX_FEE_PER_GAS)
            .with_max_priority_fee_per_gas(PRIORITY_FEE_PER_GAS);
        let pending = self.deployer.send_transaction(request).await?;
        self.nonce = self.nonce.saturating_add(1);
        Ok(*pending.tx_hash())
    }
}

/// Sends block `block`'s transactions and adds its deposits to `expected` (per agent: how many,
/// and their sum).
async fn send_block(
    args: &BenchArgs,
    wallets: &[Address],
    token: Address,
    block: usize,
    sender: &mut Sender,
    expected: &mut BTreeMap<usize, (u64, u128)>,
) -> anyhow::Result<Vec<B256>> {
    let transfers = block_transfers(args, wallets, block);
    for transfer in &transfers {
        if let Some(agent) = transfer.agent {
            let entry = expected.entry(agent).or_default();
            entry.0 = entry.0.saturating_add(1);
            entry.1 = entry.1.saturating_add(transfer.value);
        }
    }
    let mut hashes = Vec::new();
    for input in batches(token, &transfers, args.calls_per_transaction) {
        hashes.push(sender.send(input).await?);
    }
    Ok(hashes)
}

async fn rpc(
    provider: &DynProvider,
    method: &'static str,
    params: Vec<Value>,
) -> anyhow::Result<Value> {
    provider.raw_request(method.into(), params).await.context(method)
}

/// A mined block of the load.
struct Mined {
    number: u64,
    /// When `evm_mine` returned, by the bench's clock.
    at: Instant,
    /// The same moment as Unix seconds (to compare with the database's timestamps).
    at_unix: f64,
    /// How long `evm_mine` took.
    mining: Duration,
    transactions: Vec<B256>,
}

fn unix_now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |elapsed| elapsed.as_secs_f64())
}

// ---------------------------------------------------------------------------------------------
// What runs beside the load: the lag sampler and the bench's watcher loop.

/// One sample of the lag.
struct Sample {
    at: Instant,
    head: u64,
    /// The watcher's cursor (the next block it will scan), if it has one yet.
    next_block: Option<u64>,
    /// Connections to the bench's database.
    connections: i64,
}

impl Sample {
    /// Blocks the watcher is behind the head.
    fn lag(&self) -> Option<u64> {
        self.next_block.map(|next| self.head.saturating_add(1).saturating_sub(next))
    }
}

async fn cursor(pool: &sqlx::PgPool, network: &str) -> anyhow::Result<(Option<u64>, i64)> {
    let (next, connections): (Option<i64>, i64) = sqlx::query_as(
        "SELECT (SELECT next_block FROM settlement.watch_cursors WHERE network = $1),
                (SELECT count(*) FROM pg_stat_activity WHERE datname = current_database())",
    )
    .bind(network)
    .fetch_one(pool)
    .await?;
    Ok((next.map(|next| u64::try_from(next).unwrap_or(0)), connections))
}

/// Samples the lag every `every` until `stop`: the cursor first, then the head, so a sample
/// never shows less lag than there was.
async fn sample(
    pool: sqlx::PgPool,
    client: ChainClient,
    network: String,
    every: Duration,
    stop: CancellationToken,
) -> anyhow::Result<Vec<Sample>> {
    let mut samples = Vec::new();
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return Ok(samples),
            _ = ticks.tick() => {}
        }
        let (next_block, connections) = cursor(&pool, &network).await?;
        let head = client.block_number().await?;
        samples.push(Sample { at: Instant::now(), head, next_block, connections });
    }
}

/// A timed pass of the bench's watcher loop.
struct Pass {
    took: Duration,
    ended: Instant,
    report: WatchReport,
}

/// The loop of [`awx_settlement_service::watcher::run`] over the one chain, timing each pass: a
/// pass; again at once while behind; otherwise wait `interval`. A failed pass fails the bench.
async fn drive(
    facilitator: Arc<Facilitator>,
    interval: Duration,
    stop: CancellationToken,
) -> anyhow::Result<Vec<Pass>> {
    let watcher = Watcher::new(facilitator.clone());
    let chain = facilitator.chains().next().context("the platform has no chain")?;
    let mut passes = Vec::new();
    while !stop.is_cancelled() {
        let started = Instant::now();
        let report = watcher.pass_locked(chain).await.context("a watcher pass")?;
        let ended = Instant::now();
        ensure!(!report.skipped, "another watcher holds the chain's lock");
        let behind = report
            .scanned
            .is_some_and(|(_, to)| to.saturating_add(chain.confirmations) < report.head);
        passes.push(Pass { took: ended.duration_since(started), ended, report });
        if !behind {
            tokio::select! {
                () = stop.cancelled() => {}
                () = tokio::time::sleep(interval) => {}
            }
        }
    }
    Ok(passes)
}

// ---------------------------------------------------------------------------------------------
// Figures.

/// The value at `per_mille` of sorted `values` (nearest rank below), or `None` when empty.
fn quantile<T: Copy>(sorted: &[T], per_mille: usize) -> Option<T> {
    let index = sorted.len().saturating_mul(per_mille) / 1_000;
    sorted.get(index.min(sorted.len().saturating_sub(1))).copied()
}

fn count(value: usize) -> f64 {
    f64::from(u32::try_from(value).unwrap_or(u32::MAX))
}

fn ms(seconds: f64) -> String {
    format!("{:.0} ms", seconds * 1_000.0)
}

/// p50, p99 and max of `values` (seconds), in milliseconds.
fn spread(mut values: Vec<f64>) -> String {
    values.sort_by(f64::total_cmp);
    let at = |per_mille| quantile(&values, per_mille).map_or_else(|| "-".into(), ms);
    format!("p50 {}, p99 {}, max {}", at(500), at(990), at(1_000))
}

fn mean(values: &[f64]) -> f64 {
    values.iter().fold(0.0, |sum, value| sum + value) / count(values.len().max(1))
}

fn row(what: &str, figure: &str) -> anyhow::Result<()> {
    say(&format!("| {what} | {figure} |"))
}

// ---------------------------------------------------------------------------------------------
// The measurement.

#[allow(
    clippy::too_many_lines,
    reason = "one measurement from set-up to checks, read top to bottom"
)]
async fn measure(args: &BenchArgs, bench: &BenchPlatform) -> anyhow::Result<()> {
    let platform = &bench.platform;
    let facilitator = platform.facilitator.clone();
    let network = format!("eip155:{}", bench.anvil.chain_id());
    let token = bench.token.address();
    let client = ChainClient::connect(bench.anvil.endpoint())?;
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(POOL_CONNECTIONS_MAX)
        .connect(&args.database_url)
        .await
        .context("connecting to the bench database")?;

    // Agents, through the gateway.
    let gateway = bench.gateway(4)?;
    let admin = platform.admin_key.clone();
    let mut agents = Vec::new();
    let mut wallets = Vec::new();
    for index in 0..args.agents {
        let agent = gateway
            .post("/api/v1/agents", &admin, &json!({"name": format!("watch-bench-{index}")}))
            .await?;
        agents.push(agent["id"].as_str().context("no agent id")?.to_owned());
        wallets.push(agent["address"].as_str().context("no address")?.parse::<Address>()?);
    }

    // Multicall3 holds what the load sends; the block gas limit fits the load's transactions.
    let deployer_address = bench.anvil.dev_key(0)?.address();
    bench.token.configure_minter(deployer_address, true).await?;
    bench.token.mint(MULTICALL3_ADDRESS, U256::from(MULTICALL3_FUNDS)).await?;
    let probe: Vec<Transfer> = (0..args.calls_per_transaction)
        .map(|_| Transfer { to: Address::random(), value: NOISE_VALUE, agent: None })
        .collect();
    let probe = batches(token, &probe, args.calls_per_transaction)
        .into_iter()
        .next()
        .context("no probe transaction")?;
    let estimate = bench
        .deployer
        .estimate_gas(TransactionRequest::default().with_to(MULTICALL3_ADDRESS).with_input(probe))
        .await
        .context("estimating an aggregate3 of transfers to new addresses")?;
    let gas_limit = estimate.saturating_add(estimate / 5);
    let transactions_per_block = args.transfers_per_block.div_ceil(args.calls_per_transaction);
    let block_gas_limit = gas_limit
        .saturating_mul(u64::try_from(transactions_per_block)?)
        .saturating_mul(2)
        .max(30_000_000);
    let raised = rpc(
        &bench.deployer,
        "anvil_setBlockGasLimit",
        vec![json!(format!("{:#x}", U256::from(block_gas_limit)))],
    )
    .await?;
    ensure!(raised == json!(true), "anvil_setBlockGasLimit answered {raised}");
    rpc(&bench.deployer, "evm_setAutomine", vec![json!(false)]).await?;
    let nonce = bench.deployer.get_transaction_count(deployer_address).pending().await?;
    let mut sender = Sender { deployer: bench.deployer.clone(), nonce, gas_limit };
    say(&format!(
        "set-up: {} agents; {transactions_per_block} aggregate3 transactions a block, gas limit {gas_limit} each \
         (estimate {estimate} for {} transfers to new addresses), block gas limit {block_gas_limit}",
        args.agents, args.calls_per_transaction
    ))?;

    // The watcher (the service's own, or the bench's loop) and the sampler.
    let stop = CancellationToken::new();
    let driver = (args.driver == Driver::Bench).then(|| {
        tokio::spawn(drive(
            facilitator.clone(),
            Duration::from_millis(args.watch_interval_ms),
            stop.clone(),
        ))
    });
    let sampler = tokio::spawn(sample(
        pool.clone(),
        ChainClient::connect(bench.anvil.endpoint())?,
        network.clone(),
        Duration::from_millis(args.sample_interval_ms),
        stop.clone(),
    ));
    // The watcher must have caught up with the set-up's blocks before the load starts.
    let base = client.block_number().await?;
    wait_for(Duration::from_secs(60), "the watcher to scan the set-up's blocks", || async {
        Ok(cursor(&pool, &network).await?.0.is_some_and(|next| next > base))
    })
    .await?;

    // The load: block k is mined at start + k × interval; its transactions wait in the pool,
    // sent after the block before it was mined.
    let interval = Duration::from_millis(args.block_interval_ms);
    let mut expected: BTreeMap<usize, (u64, u128)> = BTreeMap::new();
    let mut pending = Some(send_block(args, &wallets, token, 0, &mut sender, &mut expected).await?);
    let mut mined: Vec<Mined> = Vec::new();
    let start = tokio::time::Instant::now();
    for block in 0..args.blocks {
        let tick = start + interval.saturating_mul(u32::try_from(block)?);
        tokio::time::sleep_until(tick).await;
        let before = Instant::now();
        rpc(&bench.deployer, "evm_mine", Vec::new()).await?;
        let at = Instant::now();
        mined.push(Mined {
            number: base.saturating_add(1).saturating_add(u64::try_from(block)?),
            at,
            at_unix: unix_now(),
            mining: at.duration_since(before),
            transactions: pending.take().unwrap_or_default(),
        });
        if block.saturating_add(1) < args.blocks {
            let next = block.saturating_add(1);
            pending =
                Some(send_block(args, &wallets, token, next, &mut sender, &mut expected).await?);
        }
    }
    let (first, last) = match (mined.first(), mined.last()) {
        (Some(first), Some(last)) => (first, last),
        _ => bail!("no block mined"),
    };
    let last_number = last.number;
    let deposits_expected = args.blocks.saturating_mul(args.deposits_per_block);

    // Drained: every block scanned, every deposit credited.
    let drain_limit = Duration::from_secs(120).saturating_add(
        interval.saturating_mul(u32::try_from(args.blocks.saturating_mul(10)).unwrap_or(u32::MAX)),
    );
    wait_for(drain_limit, "every block scanned and every deposit credited", || async {
        let scanned = cursor(&pool, &network).await?.0.is_some_and(|next| next > last_number);
        let credited: i64 =
            sqlx::query_scalar("SELECT count(*) FROM settlement.deposits WHERE state = 'credited'")
                .fetch_one(&pool)
                .await?;
        Ok(scanned && credited >= i64::try_from(deposits_expected)?)
    })
    .await?;
    let drained = last.at.elapsed();
    stop.cancel();
    let samples = sampler.await??;
    let passes = match driver {
        Some(driver) => Some(driver.await??),
        None => None,
    };

    // The references: a bare eth_getLogs of each block with the watcher's filter; then, to see
    // where a pass's time goes, the wallet lookup of the same block's addresses (one bus round
    // trip to the policy service, as the watcher asks it) and new Postgres connections (each
    // pass takes one out of the pool for its advisory lock and closes it afterwards).
    let known: BTreeSet<Address> = wallets.iter().copied().collect();
    let (mut get_logs, mut lookups) = (Vec::new(), Vec::new());
    let mut addresses_per_block = 0;
    for block in &mined {
        let began = Instant::now();
        let logs = client.token_logs(&[token], block.number, block.number).await?;
        get_logs.push(began.elapsed().as_secs_f64());
        ensure!(
            logs.len() == args.transfers_per_block,
            "block {} has {} logs, expected {}",
            block.number,
            logs.len(),
            args.transfers_per_block
        );
        let mut addresses = BTreeSet::new();
        for log in &logs {
            if let TokenEvent::Transfer { from, to, .. } = log.event {
                addresses.extend([from, to]);
            }
        }
        addresses.remove(&Address::ZERO);
        let ours = addresses.intersection(&known).count();
        addresses_per_block = addresses.len();
        let began = Instant::now();
        let reply = facilitator
            .bus
            .send(&LookupWallets { addresses: addresses.into_iter().collect() }, LOOKUP_TIMEOUT)
            .await?;
        lookups.push(began.elapsed().as_secs_f64());
        ensure!(
            reply.wallets.len() == ours,
            "the lookup found {} wallets of {ours}",
            reply.wallets.len()
        );
    }
    let mut connects = Vec::new();
    for _ in 0..CONNECTIONS_TIMED {
        let began = Instant::now();
        let connection = sqlx::PgConnection::connect(&args.database_url).await?;
        connects.push(began.elapsed().as_secs_f64());
        connection.close().await?;
    }

    // Checks: the chain, the deposits, the balances, the ledger.
    for block in &mined {
        for hash in &block.transactions {
            let receipt = client.receipt(*hash).await?.context("a load transaction was lost")?;
            ensure!(receipt.status(), "a load transaction reverted");
            ensure!(
                receipt.block_number == Some(block.number),
                "a load transaction landed in block {:?}, not {}",
                receipt.block_number,
                block.number
            );
        }
    }
    let rows: Vec<(String, i64, i64, String)> = sqlx::query_as(
        "SELECT wallet, count(*), count(*) FILTER (WHERE state = 'credited' AND source = 'chain'),
                coalesce(sum(amount) FILTER (WHERE state = 'credited'), 0)::text
         FROM settlement.deposits GROUP BY wallet",
    )
    .fetch_all(&pool)
    .await?;
    ensure!(
        rows.len() == expected.len(),
        "deposits to {} wallets, expected {}",
        rows.len(),
        expected.len()
    );
    for (wallet, rows_count, credited, sum) in &rows {
        let agent = wallets
            .iter()
            .position(|known| format!("{known:#x}") == *wallet)
            .with_context(|| format!("a deposit to {wallet}, which is no agent's"))?;
        let (count_expected, sum_expected) = expected.get(&agent).copied().unwrap_or_default();
        ensure!(
            *rows_count == i64::try_from(count_expected)? && rows_count == credited,
            "agent {agent}: {rows_count} deposits ({credited} credited), expected {count_expected}"
        );
        ensure!(
            Amount::parse_atomic(sum)?.atomic() == sum_expected,
            "agent {agent}: {sum} credited, expected {sum_expected}"
        );
    }
    for (agent, id) in agents.iter().enumerate() {
        let available = available(&gateway, &admin, id, &network, token).await?;
        let (_, sent) = expected.get(&agent).copied().unwrap_or_default();
        ensure!(available == sent, "agent {agent}: {available} available, expected {sent}");
    }
    let alerts: i64 =
        sqlx::query_scalar("SELECT count(*) FROM settlement.chain_alerts").fetch_one(&pool).await?;
    ensure!(alerts == 0, "{alerts} alerts raised");
    let violations = awx_ledger_service::check::check(&pool).await?;
    ensure!(violations.is_empty(), "ledger check: {violations:?}");

    // Figures.
    let mined_at: BTreeMap<u64, &Mined> = mined.iter().map(|block| (block.number, block)).collect();
    let deposit_times: Vec<(i64, f64, f64)> = sqlx::query_as(
        "SELECT block_number, extract(epoch FROM created_at)::float8, extract(epoch FROM credited_at)::float8
         FROM settlement.deposits WHERE state = 'credited'",
    )
    .fetch_all(&pool)
    .await?;
    let (mut seen, mut credited, mut crediting) = (Vec::new(), Vec::new(), Vec::new());
    for (number, created_at, credited_at) in &deposit_times {
        let block = mined_at
            .get(&u64::try_from(*number)?)
            .with_context(|| format!("a deposit in block {number}, which the load did not mine"))?;
        seen.push(created_at - block.at_unix);
        credited.push(credited_at - block.at_unix);
        crediting.push(credited_at - created_at);
    }
    let window_end = last.at + interval;
    let in_window: Vec<&Sample> =
        samples.iter().filter(|sample| sample.at >= first.at && sample.at < window_end).collect();
    let mut lags: Vec<u64> = in_window.iter().filter_map(|sample| sample.lag()).collect();
    lags.sort_unstable();
    let lag_at =
        |per_mille| quantile(&lags, per_mille).map_or_else(|| "-".into(), |l| l.to_string());
    let connections_max = samples.iter().map(|sample| sample.connections).max().unwrap_or(0);
    let intervals: Vec<f64> =
        mined.windows(2).map(|pair| pair[1].at.duration_since(pair[0].at).as_secs_f64()).collect();
    let interval_measured =
        if intervals.is_empty() { interval.as_secs_f64() } else { mean(&intervals) };
    let mining: Vec<f64> = mined.iter().map(|block| block.mining.as_secs_f64()).collect();
    let get_logs_mean = mean(&get_logs);
    let mut credited_sorted = credited.clone();
    credited_sorted.sort_by(f64::total_cmp);
    let credited_p50 = quantile(&credited_sorted, 500).unwrap_or(0.0);

    say("")?;
    row("what", "figure")?;
    say("|---|---|")?;
    row(
        "load",
        &format!(
            "{} blocks × {} transfers ({} deposits to {} agents, {} to new addresses), {} aggregate3 transactions a block",
            args.blocks,
            args.transfers_per_block,
            args.deposits_per_block,
            args.agents,
            args.transfers_per_block.saturating_sub(args.deposits_per_block),
            transactions_per_block
        ),
    )?;
    row(
        "block interval (reference)",
        &format!(
            "{} set, {} measured (mean); evm_mine took {}",
            ms(interval.as_secs_f64()),
            ms(interval_measured),
            spread(mining)
        ),
    )?;
    row(
        "lag behind the head (blocks, sampled while producing)",
        &format!(
            "p50 {}, p99 {}, max {} ({} samples, one per {} ms)",
            lag_at(500),
            lag_at(990),
            lag_at(1_000),
            lags.len(),
            args.sample_interval_ms
        ),
    )?;
    let scanned_at = scan_times(&mined, passes.as_deref(), &samples);
    row(
        &format!(
            "block mined → scanned ({})",
            if passes.is_some() { "end of its pass" } else { "first sample past it" }
        ),
        &spread(scanned_at),
    )?;
    row("block mined → deposit stored (seen)", &spread(seen))?;
    row("block mined → deposit credited (available)", &format!("**{}**", spread(credited)))?;
    row(
        "deposit latency p50 ÷ block interval",
        &format!("**{:.2}**", credited_p50 / interval_measured.max(1e-9)),
    )?;
    row("one deposit stored → credited (the ledger over the bus)", &spread(crediting))?;
    row("after the last block: everything scanned and credited", &ms(drained.as_secs_f64()))?;
    row(
        "bare eth_getLogs of one block (reference)",
        &format!("mean {}, {}", ms(get_logs_mean), spread(get_logs.clone())),
    )?;
    row(
        &format!(
            "wallet lookup of one block's {addresses_per_block} addresses (LookupWallets over the bus)"
        ),
        &format!("mean {}, {}", ms(mean(&lookups)), spread(lookups.clone())),
    )?;
    row(
        "a new Postgres connection",
        &format!("mean {}, {}", ms(mean(&connects)), spread(connects.clone())),
    )?;
    if let Some(passes) = &passes {
        let load = (first.number, last_number);
        let working: Vec<&Pass> = passes
            .iter()
            .filter(|pass| {
                pass.report.scanned.is_some_and(|(from, to)| from >= load.0 && to <= load.1)
            })
            .collect();
        let idle: Vec<f64> = passes
            .iter()
            .filter(|pass| {
                pass.report.scanned.is_none() && pass.ended >= first.at && pass.ended < window_end
            })
            .map(|pass| pass.took.as_secs_f64())
            .collect();
        let busy: f64 = working.iter().map(|pass| pass.took.as_secs_f64()).sum();
        let blocks: u64 = working
            .iter()
            .filter_map(|pass| {
                pass.report.scanned.map(|(from, to)| to.saturating_sub(from).saturating_add(1))
            })
            .sum();
        let logs: usize = working.iter().map(|pass| pass.report.logs).sum();
        let deposits: usize = working.iter().map(|pass| pass.report.deposits).sum();
        let per_block = busy / u32::try_from(blocks.max(1)).map_or(1.0, f64::from);
        let produced = last.at.duration_since(first.at).saturating_add(interval).as_secs_f64();
        row(
            "watcher passes over the load",
            &format!(
                "{} passes over {blocks} blocks ({} scanned more than one block), {} each; {} idle passes while producing ({} each, mean)",
                working.len(),
                working
                    .iter()
                    .filter(|pass| pass.report.scanned.is_some_and(|(from, to)| to > from))
                    .count(),
                spread(working.iter().map(|pass| pass.took.as_secs_f64()).collect()),
                idle.len(),
                if idle.is_empty() { "-".into() } else { ms(mean(&idle)) }
            ),
        )?;
        row(
            "watcher time per block",
            &format!(
                "{} = **{:.1} ×** the bare eth_getLogs, {:.2} × the block interval (busy {:.0} % of the time)",
                ms(per_block),
                per_block / get_logs_mean.max(1e-9),
                per_block / interval_measured.max(1e-9),
                busy / produced.max(1e-9) * 100.0
            ),
        )?;
        row(
            "watcher throughput (while busy)",
            &format!(
                "{:.0} logs/s, {:.0} deposits/s (the load: {:.0} logs/s, {:.0} deposits/s)",
                count(logs) / busy.max(1e-9),
                count(deposits) / busy.max(1e-9),
                count(args.transfers_per_block) / interval_measured.max(1e-9),
                count(args.deposits_per_block) / interval_measured.max(1e-9)
            ),
        )?;
    }
    row("connections to the bench database (max sampled)", &connections_max.to_string())?;
    say("")?;
    say(&format!(
        "checks passed: {} transactions succeeded in their blocks; {deposits_expected} deposits credited exactly once \
         (rows and sums per agent); every agent's available balance is what was sent; no alert; ledger check passed",
        mined.iter().map(|block| block.transactions.len()).sum::<usize>()
    ))?;
    Ok(())
}

/// When each load block was scanned, after it was mined (seconds): from the passes (the end of
/// the pass that scanned it) or, without them, from the first sample past it.
fn scan_times(mined: &[Mined], passes: Option<&[Pass]>, samples: &[Sample]) -> Vec<f64> {
    mined
        .iter()
        .filter_map(|block| {
            let scanned = match passes {
                Some(passes) => passes
                    .iter()
                    .find(|pass| {
                        pass.report
                            .scanned
                            .is_some_and(|(from, to)| from <= block.number && block.number <= to)
                    })
                    .map(|pass| pass.ended),
                None => samples
                    .iter()
                    .find(|sample| sample.next_block.is_some_and(|next| next > block.number))
                    .map(|sample| sample.at),
            }?;
            Some(scanned.checked_duration_since(block.at).unwrap_or_default().as_secs_f64())
        })
        .collect()
}

/// The agent's available balance in `token` on `network`, through the gateway (atomic units).
async fn available(
    gateway: &Gateway,
    key: &str,
    agent: &str,
    network: &str,
    token: Address,
) -> anyhow::Result<u128> {
    let answer = gateway.get(&format!("/api/v1/agents/{agent}/balances"), key).await?;
    let balances = answer["balances"].as_array().context("no balances")?;
    let mut total = 0u128;
    for balance in balances {
        let asset: Option<Address> = balance["asset"].as_str().and_then(|a| a.parse().ok());
        if balance["chain"] == network && asset == Some(token) {
            let text = balance["available"].as_str().context("no available amount")?;
            total = total.saturating_add(Amount::from_decimal_str(text, DECIMALS)?.atomic());
        }
    }
    Ok(total)
}

/// Polls `done` every 50 ms until it is true, for at most `limit`.
async fn wait_for<F, Fut>(limit: Duration, what: &str, done: F) -> anyhow::Result<()>
where
    F: Fn() -> Fut,
    Fut: Future<Output = anyhow::Result<bool>>,
{
    let deadline = Instant::now() + limit;
    while !done().await? {
        ensure!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}
