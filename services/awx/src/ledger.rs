//! `awx ledger`: operator commands on the ledger: `check` (the invariants, and with
//! `--rpc-url` the ledger against chains, see [`crate::chain_check`]) and `bench`.

use std::io::Write as _;

use anyhow::Context as _;
use secrecy::SecretString;

/// Options of `awx ledger`.
#[derive(Debug, clap::Args)]
pub(crate) struct LedgerArgs {
    /// The Postgres URL of the platform's database (before or after the subcommand).
    #[arg(
        long,
        global = true,
        env = "AWX_DATABASE_URL",
        default_value = "postgres://postgres:postgres@127.0.0.1:5432/awx"
    )]
    database_url: String,
    #[command(subcommand)]
    command: LedgerCommand,
}

#[derive(Debug, clap::Subcommand)]
enum LedgerCommand {
    /// Recompute every balance from the entries and check the invariants; with `--rpc-url`,
    /// also check each confirmed net settlement batch against that chain, and with `--chain`,
    /// every agent wallet's token balance on it; exit 1 on any violation.
    Check {
        /// Also compare, on this chain's node, what each confirmed net settlement batch moved
        /// (its `Transfer` logs) with what the ledger recorded for it, and with `--chain` every
        /// agent wallet's token balance with what the ledger holds for it (repeat for more
        /// chains).
        #[arg(long)]
        rpc_url: Vec<String>,
        /// Also compare every agent wallet's token balance on the chains of `--rpc-url` with
        /// what the ledger holds for it: available + held + captured not yet paid on chain +
        /// fees not yet collected (withdrawals are not counted yet).
        #[arg(long, requires = "rpc_url")]
        chain: bool,
    },
    /// Measure operations per second against the database (see docs/benchmarks.md).
    Bench(crate::ledger_bench::BenchArgs),
}

impl LedgerArgs {
    /// The database URL in effect.
    #[cfg(test)]
    pub(crate) fn database_url(&self) -> &str {
        &self.database_url
    }
}

pub(crate) async fn run(args: LedgerArgs) -> anyhow::Result<()> {
    let settings = awx_service_kit::db::DatabaseSettings {
        url: SecretString::from(args.database_url),
        max_connections: 2,
        migrate: false,
        ..awx_service_kit::db::DatabaseSettings::default()
    };
    let bench_connections = match &args.command {
        LedgerCommand::Bench(bench) => bench.workers.saturating_mul(2),
        LedgerCommand::Check { .. } => 2,
    };
    // The checker only reads; the benchmark may start from an empty database.
    let migrate = matches!(args.command, LedgerCommand::Bench(_));
    let settings = awx_service_kit::db::DatabaseSettings {
        max_connections: bench_connections,
        migrate,
        ..settings
    };
    let pool =
        awx_service_kit::db::connect(&settings).await.context("connecting to the database")?;
    match args.command {
        LedgerCommand::Bench(bench) => crate::ledger_bench::run(pool, bench).await,
        LedgerCommand::Check { rpc_url, chain } => {
            let mut violations =
                awx_ledger_service::check::check(&pool).await.context("checking the ledger")?;
            for url in &rpc_url {
                let client = awx_chain::ChainClient::connect(url)?;
                violations.extend(
                    crate::chain_check::check_batches(&pool, &client)
                        .await
                        .with_context(|| format!("checking the batches on {url}"))?,
                );
                if chain {
                    violations.extend(
                        crate::chain_check::check_wallets(&pool, &client)
                            .await
                            .with_context(|| format!("checking the wallets on {url}"))?,
                    );
                }
            }
            let mut out = std::io::stdout().lock();
            if violations.is_empty() {
                writeln!(out, "ledger check: every invariant holds")?;
                return Ok(());
            }
            for violation in &violations {
                writeln!(out, "VIOLATION [{}] {}", violation.check, violation.detail)?;
            }
            out.flush()?;
            drop(out);
            // A non-zero exit is the checker's answer; there is nothing to unwind.
            std::process::exit(1);
        }
    }
}
