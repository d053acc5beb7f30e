//! The `awx` command line: `awx dev` brings up the local platform; `awx admin` creates accounts
//! (`bootstrap` makes the first one and prints its admin key); `awx openapi` prints the API
//! document; `awx ledger check` verifies the ledger's invariants; `awx ledger bench`,
//! `awx facilitator bench`, `awx payments bench`, `awx settlement bench` and `awx watcher bench`
//! are the benchmarks of docs/benchmarks.md.
//!
//! For now `awx dev` starts the development chain (anvil on loopback), deploys our EIP-3009
//! token, funds development wallets with it, prints what it started, writes the same facts to
//! `.awx/devchain.json` for scripts, and runs until interrupted. Later issues add the services.

mod admin;
mod bench;
pub mod chain_check;
mod demo;
mod dev;
mod facilitator_bench;
mod ledger;
mod ledger_bench;
mod pay_bench;
pub mod platform;
mod settlement_bench;
mod walkthrough;
mod watch_bench;

use clap::{Parser, Subcommand};

/// The awx platform command.
#[derive(Debug, Parser)]
#[command(name = "awx", version, about = "awx: x402 payments for AI agents")]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the platform locally: the development chain with the token deployed and wallets
    /// funded.
    Dev(dev::DevArgs),
    /// Administer accounts directly in the database (operators only).
    Admin(admin::AdminArgs),
    /// Print the OpenAPI document of the public API.
    Openapi,
    /// Ledger operations for operators.
    Ledger(ledger::LedgerArgs),
    /// The facilitator, measured against a running `awx dev` (see docs/benchmarks.md).
    Facilitator(FacilitatorArgs),
    /// Agent payments, measured against a running `awx dev` (see docs/benchmarks.md).
    Payments(PaymentsArgs),
    /// Net settlement, measured on chains and a platform of its own (see docs/benchmarks.md).
    Settlement(SettlementArgs),
    /// The chain watcher, measured on a chain and a platform of its own (see
    /// docs/benchmarks.md).
    Watcher(WatcherArgs),
}

/// Options of `awx watcher`.
#[derive(Debug, clap::Args)]
struct WatcherArgs {
    #[command(subcommand)]
    command: WatcherCommand,
}

#[derive(Debug, Subcommand)]
enum WatcherCommand {
    /// Lag behind the head and deposit latency under a load of token transfers on anvil.
    Bench(watch_bench::BenchArgs),
}

/// Options of `awx settlement`.
#[derive(Debug, clap::Args)]
struct SettlementArgs {
    #[command(subcommand)]
    command: SettlementCommand,
}

#[derive(Debug, Subcommand)]
enum SettlementCommand {
    /// Gas per settled payment (per payment, batched, netted) and the batch worker's throughput.
    Bench(settlement_bench::BenchArgs),
}

/// Options of `awx payments`.
#[derive(Debug, clap::Args)]
struct PaymentsArgs {
    #[command(subcommand)]
    command: PaymentsCommand,
}

#[derive(Debug, Subcommand)]
enum PaymentsCommand {
    /// `/x402/pay` latency and throughput, and paid requests per second, through the gateway.
    Bench(pay_bench::BenchArgs),
}

/// Options of `awx facilitator`.
#[derive(Debug, clap::Args)]
struct FacilitatorArgs {
    #[command(subcommand)]
    command: FacilitatorCommand,
}

#[derive(Debug, Subcommand)]
enum FacilitatorCommand {
    /// Verify throughput and latency, or settle latency and throughput, through the gateway.
    Bench(facilitator_bench::BenchArgs),
}

impl Cli {
    /// Runs the chosen subcommand.
    pub async fn run(self) -> anyhow::Result<()> {
        match self.command {
            Command::Dev(args) => dev::run(args).await,
            Command::Admin(args) => admin::run(args).await,
            Command::Ledger(args) => ledger::run(args).await,
            Command::Facilitator(FacilitatorArgs { command: FacilitatorCommand::Bench(args) }) => {
                facilitator_bench::run(args).await
            }
            Command::Payments(PaymentsArgs { command: PaymentsCommand::Bench(args) }) => {
                pay_bench::run(args).await
            }
            Command::Settlement(SettlementArgs { command: SettlementCommand::Bench(args) }) => {
                settlement_bench::run(args).await
            }
            Command::Watcher(WatcherArgs { command: WatcherCommand::Bench(args) }) => {
                watch_bench::run(args).await
            }
            Command::Openapi => {
                use std::io::Write as _;
                std::io::stdout().write_all(awx_gateway::openapi::document_json().as_bytes())?;
                Ok(())
            }
        }
    }
}

/// Logs to stderr, filtered by `RUST_LOG` (default `info`).
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
}
