//! The `awx` command line: `awx dev` brings up the local platform; `awx admin` creates accounts
//! (`bootstrap` makes the first one and prints its admin key); `awx openapi` prints the API
//! document; `awx ledger check` verifies the ledger's invariants; `awx ledger bench`,
//! `awx facilitator bench`, `awx payments bench`, `awx settlement bench` and `awx watcher bench`
//! are the benchmarks of docs/benchmarks.md.
//!
//! `awx dev` starts the development chain (anvil on loopback), deploys our EIP-3009 token, funds
//! development wallets with it, starts the services and a demo in this process, prints a
//! walkthrough, writes the chain's facts to `.awx/devchain.json` for scripts, and runs until
//! interrupted. Secrets the command writes (keys under `.awx/`) are owner-only files
//! ([`write_secret_file`]).

mod admin;
mod bench;
mod bench_cost;
mod bench_profile;
pub mod chain_check;
mod demo;
mod dev;
mod facilitator_bench;
mod ledger;
mod ledger_bench;
mod pay_bench;
pub mod platform;
pub mod processes;
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
    /// Create the database if it is missing and apply the migrations not applied yet: the one
    /// migration step of a deployment, run before the services (which do not migrate).
    Migrate(MigrateArgs),
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

/// Options of `awx migrate`.
#[derive(Debug, clap::Args)]
struct MigrateArgs {
    /// The Postgres URL of the platform's database.
    #[arg(
        long,
        env = "AWX_DATABASE_URL",
        default_value = "postgres://postgres:postgres@127.0.0.1:5432/awx"
    )]
    database_url: String,
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
            Command::Migrate(args) => {
                use std::io::Write as _;
                let applied = processes::migrate(&args.database_url).await?;
                let total = awx_service_kit::db::MIGRATOR.iter().count();
                writeln!(
                    std::io::stdout(),
                    "awx migrate: {applied} migration(s) applied now; {total} in all, the database is current"
                )?;
                Ok(())
            }
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

/// Where logs go and from which level; see [`Cli::init_logging`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogPlan {
    /// What reaches stderr: `RUST_LOG` when set, else this directive.
    pub console_default: &'static str,
    /// Under `awx dev`, the file that gets every service's logs (`RUST_LOG` when set, else
    /// `info`), truncated at start.
    pub file: Option<std::path::PathBuf>,
}

/// Postgres's notices ("relation … already exists, skipping") come at INFO through sqlx: noise
/// for anyone reading the logs, so they are shown only from WARN up.
const QUIET_NOTICES: &str = "sqlx::postgres::notice=warn";

impl Cli {
    /// Where this command's logs go: under `awx dev`, warnings and errors on stderr (so the
    /// walkthrough on stdout stands out) and everything from INFO up in
    /// `<state dir>/services.log`; for the other commands, INFO and up on stderr.
    pub fn log_plan(&self) -> LogPlan {
        match &self.command {
            Command::Dev(args) => LogPlan {
                // The gateway warns that it may fetch private addresses: `awx dev` says so itself.
                console_default: "warn,awx_gateway::outbound=error",
                file: Some(args.log_file()),
            },
            _ => LogPlan { console_default: "info", file: None },
        }
    }

    /// Installs logging as [`Cli::log_plan`] says. Colour codes only on a terminal, and never
    /// with `NO_COLOR` set; the log file never has them.
    pub fn init_logging(&self) -> anyhow::Result<()> {
        use anyhow::Context as _;
        use tracing_subscriber::Layer as _;
        use tracing_subscriber::layer::SubscriberExt as _;
        use tracing_subscriber::util::SubscriberInitExt as _;

        let plan = self.log_plan();
        let filter = |default: &str| {
            let filter = tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
            match QUIET_NOTICES.parse() {
                Ok(quiet) if std::env::var_os("RUST_LOG").is_none() => filter.add_directive(quiet),
                _ => filter,
            }
        };
        let colour = awx_service_kit::telemetry::use_colour(std::io::IsTerminal::is_terminal(
            &std::io::stderr(),
        ));
        let console = tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(colour)
            .with_filter(filter(plan.console_default));
        let file = match &plan.file {
            Some(path) => {
                if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir)
                        .with_context(|| format!("creating {}", dir.display()))?;
                }
                let file = std::fs::File::create(path)
                    .with_context(|| format!("creating the log file {}", path.display()))?;
                Some(
                    tracing_subscriber::fmt::layer()
                        .with_writer(std::sync::Mutex::new(file))
                        .with_ansi(false)
                        .with_filter(filter("info")),
                )
            }
            None => None,
        };
        tracing_subscriber::registry()
            .with(console)
            .with(file)
            .try_init()
            .context("installing the logger")?;
        Ok(())
    }
}

/// Writes a secret (a key) to `path`, readable and writable by the owner only: the file is
/// created with mode 0600 beside `path` and renamed over it, so the secret is never readable by
/// others, not even for a moment, and an older file with a wider mode is replaced.
pub fn write_secret_file(path: &std::path::Path, contents: &[u8]) -> anyhow::Result<()> {
    use std::io::Write as _;

    use anyhow::Context as _;
    let dir = path.parent().filter(|dir| !dir.as_os_str().is_empty());
    if let Some(dir) = dir {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let name = path.file_name().context("a secret file needs a file name")?.to_string_lossy();
    let temporary = path.with_file_name(format!(".{name}.{}.tmp", uuid::Uuid::new_v4().simple()));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let written = (|| {
        let mut file = options.open(&temporary)?;
        file.write_all(contents)?;
        file.sync_all()?;
        std::fs::rename(&temporary, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    written.with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail by panicking")]

    use clap::Parser as _;

    use super::*;

    fn database_url_of(cli: &Cli) -> Option<&str> {
        match &cli.command {
            Command::Admin(args) => Some(args.database_url()),
            Command::Ledger(args) => Some(args.database_url()),
            _ => None,
        }
    }

    #[test]
    fn database_url_parses_before_and_after_the_subcommand() {
        let url = "postgres://postgres:postgres@127.0.0.1:5432/elsewhere";
        for argv in [
            vec!["awx", "admin", "--database-url", url, "create-account", "--name", "x"],
            vec!["awx", "admin", "create-account", "--name", "x", "--database-url", url],
            vec!["awx", "admin", "bootstrap", "--database-url", url],
            vec!["awx", "ledger", "--database-url", url, "check"],
            vec!["awx", "ledger", "check", "--database-url", url],
        ] {
            let cli =
                Cli::try_parse_from(&argv).unwrap_or_else(|error| panic!("{argv:?}: {error}"));
            assert_eq!(database_url_of(&cli), Some(url), "{argv:?}");
        }
        // Without it, the default (or AWX_DATABASE_URL) still applies.
        let cli = Cli::try_parse_from(["awx", "admin", "create-account", "--name", "x"]).unwrap();
        assert!(database_url_of(&cli).is_some_and(|url| url.starts_with("postgres://")));
    }

    #[test]
    fn dev_logs_warnings_on_the_console_and_everything_in_a_file() {
        let cli =
            Cli::try_parse_from(["awx", "dev", "--state-file", "/tmp/x/devchain.json"]).unwrap();
        let plan = cli.log_plan();
        assert!(plan.console_default.starts_with("warn"), "{plan:?}");
        assert_eq!(plan.file, Some(std::path::PathBuf::from("/tmp/x/services.log")));
        let admin = Cli::try_parse_from(["awx", "admin", "bootstrap"]).unwrap();
        assert_eq!(admin.log_plan(), LogPlan { console_default: "info", file: None });
    }

    #[cfg(unix)]
    #[test]
    fn secret_files_are_created_owner_only_and_replace_wider_ones() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir =
            std::env::temp_dir().join(format!("awx-secret-{}", uuid::Uuid::new_v4().simple()));
        let path = dir.join("nested").join("dev-admin-key");
        write_secret_file(&path, b"first").unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(std::fs::read(&path).unwrap(), b"first");
        // A file left world-readable by an older version is replaced by an owner-only one.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        write_secret_file(&path, b"second").unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(std::fs::read(&path).unwrap(), b"second");
        let left: Vec<_> = std::fs::read_dir(path.parent().unwrap()).unwrap().collect();
        assert_eq!(left.len(), 1, "no temporary file is left behind");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
