//! `awx ledger bench`: operations per second of the ledger against its database, for
//! docs/benchmarks.md. Each operation is one Postgres transaction, as a command's would be
//! (without the bus around it).
//!
//! - `holds`: a hold (amount plus fee, three accounts) and its capture, per iteration.
//! - `transfers`: a single-phase transfer between two wallets.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use awx_api::ledger::{Asset, Capture, Deposit, DepositSource, Hold};
use awx_ledger_service::error::LedgerFailure;
use awx_ledger_service::ops::{GenericTransfer, wallet_spec};
use awx_ledger_service::{Ledger, LedgerSettings};
use awx_types::{AccountId, AgentId, Amount, PaymentId};
use sqlx::PgPool;

/// What to measure.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub(crate) enum BenchMode {
    /// A hold and its capture per iteration.
    Holds,
    /// A wallet-to-wallet transfer per iteration.
    Transfers,
}

/// Options of `awx ledger bench`.
#[derive(Debug, clap::Args)]
pub(crate) struct BenchArgs {
    /// What to measure.
    #[arg(long, value_enum)]
    mode: BenchMode,
    /// Concurrent workers.
    #[arg(long, default_value_t = 8)]
    pub(crate) workers: u32,
    /// How long to measure.
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// Agent wallets to spread the load over.
    #[arg(long, default_value_t = 1000)]
    wallets: usize,
    /// Payees (payable accounts) to spread the load over.
    #[arg(long, default_value_t = 100)]
    payees: u8,
}

fn asset() -> Asset {
    Asset {
        network: "eip155:31337".into(),
        token: awx_x402::Address::repeat_byte(0xbe),
        decimals: 6,
    }
}

pub(crate) async fn run(pool: PgPool, args: BenchArgs) -> anyhow::Result<()> {
    let ledger = Arc::new(Ledger::new(pool, LedgerSettings::default()));
    let owner = AccountId::new();
    let agents: Arc<Vec<AgentId>> = Arc::new((0..args.wallets).map(|_| AgentId::new()).collect());
    for agent in agents.iter() {
        let deposit = Deposit {
            owner,
            agent: *agent,
            asset: asset(),
            amount: Amount::from_atomic(1_000_000_000_000),
            tx_hash: awx_x402::B256::random(),
            log_index: 0,
            source: DepositSource::Faucet,
            block_hash: None,
        };
        let funded: Result<_, LedgerFailure> =
            awx_ledger_service::committed!(ledger, |conn| ledger.deposit(conn, &deposit));
        funded.context("funding the wallets")?;
    }
    let done = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(args.seconds);
    let mut workers = Vec::new();
    for worker in 0..args.workers {
        let (ledger, agents, done, mode, payees) =
            (ledger.clone(), agents.clone(), done.clone(), args.mode, args.payees.max(1));
        workers.push(tokio::spawn(async move {
            let mut i: u64 = u64::from(worker).wrapping_mul(7919);
            while Instant::now() < deadline {
                i = i.wrapping_add(1);
                let count = u64::try_from(agents.len()).unwrap_or(1).max(1);
                let pick = |salt: u64| {
                    usize::try_from(i.wrapping_mul(2_654_435_761).wrapping_add(salt) % count)
                        .unwrap_or(0)
                };
                let result: Result<(), LedgerFailure> = match mode {
                    BenchMode::Holds => {
                        let hold = Hold {
                            payment_id: PaymentId::new(),
                            owner,
                            agent: agents[pick(0)],
                            asset: asset(),
                            payee: awx_x402::Address::repeat_byte(
                                u8::try_from(i % u64::from(payees)).unwrap_or(0).saturating_add(1),
                            ),
                            amount: Amount::from_atomic(100_000),
                            timeout_seconds: 600,
                        };
                        let held: Result<_, LedgerFailure> =
                            awx_ledger_service::committed!(ledger, |conn| ledger.hold(conn, &hold));
                        match held {
                            Ok(reply) => {
                                let capture = Capture { hold_id: reply.ledger_id, amount: None };
                                let captured: Result<_, LedgerFailure> =
                                    awx_ledger_service::committed!(ledger, |conn| ledger
                                        .capture(conn, &capture));
                                captured.map(|_| ())
                            }
                            Err(error) => Err(error),
                        }
                    }
                    BenchMode::Transfers => {
                        let (from, to) = (pick(0), pick(1));
                        if from == to {
                            continue;
                        }
                        let transfer = GenericTransfer {
                            idempotency_key: uuid::Uuid::now_v7().to_string(),
                            legs: vec![(
                                wallet_spec(owner, agents[from], &asset()),
                                wallet_spec(owner, agents[to], &asset()),
                                Amount::from_atomic(1),
                            )],
                            hold_timeout_seconds: None,
                        };
                        let moved: Result<_, LedgerFailure> =
                            awx_ledger_service::committed!(ledger, |conn| ledger
                                .transfer(conn, &transfer));
                        moved.map(|_| ())
                    }
                };
                match result {
                    Ok(()) => {
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(error) => return Err(error),
                }
            }
            Ok(())
        }));
    }
    for worker in workers {
        worker.await.context("bench worker")?.context("a ledger operation failed")?;
    }
    let count = done.load(Ordering::Relaxed);
    let per_second = count / args.seconds.max(1);
    let what = match args.mode {
        BenchMode::Holds => "holds+captures",
        BenchMode::Transfers => "transfers",
    };
    use std::io::Write as _;
    writeln!(
        std::io::stdout(),
        "{what}: {count} in {} s = {per_second}/s ({} workers)",
        args.seconds,
        args.workers
    )?;
    Ok(())
}
