//! The platform as separate OS processes, as it is deployed (`awx dev --processes`, and the
//! multi-process tests): every service runs from its own binary (`awx-signer`, `awx-ledger`,
//! `awx-settlement`, `awx-policy`, `awx-gateway`) with its own configuration file, in several
//! replicas that share the database and the Redis prefix.
//!
//! - **Migrations run once**, as their own step ([`migrate`], what `awx migrate` does), before
//!   any replica starts; every configuration says `database.migrate = false`.
//! - **One configuration file per service** (`<run dir>/config/<service>.toml`, written from
//!   [`PlatformArgs`]); what differs between replicas (a listening address) is set by the
//!   service's own variables (`AWX_<SERVICE>__OPS_ADDR`, `AWX_GATEWAY__HTTP__ADDR`). Secrets go
//!   by variable, never into a file: the signer's key-encryption key (`AWX_SIGNER_KEK`) and the
//!   policy service's decision key (`AWX_POLICY_DECISION_KEY`). No other `AWX_…` variable of
//!   this process reaches a child.
//! - **Start order**: every signer replica (its relayer keys are created at first start under
//!   an advisory lock), then the ledger, the settlement service, the policy service and the
//!   gateways. A replica counts as started when it logs that it serves; its address is read
//!   from that line, so port 0 works.
//! - **One log per process**: `<run dir>/logs/<service>-<n>.log`, JSON lines.
//! - **Stop**: SIGTERM to the gateways first, then the policy service, the settlement service,
//!   the signer and the ledger; each replica gets [`STOP_GRACE`] before SIGKILL.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use awx_x402::Address;
use secrecy::SecretString;
use tokio::process::{Child, Command};

use crate::platform::PlatformArgs;

/// How long a replica may take to log that it serves.
pub const START_WAIT: Duration = Duration::from_secs(60);
/// How long a replica has to stop after SIGTERM before it is killed.
pub const STOP_GRACE: Duration = Duration::from_secs(15);
/// Postgres connections per process (ten processes stay well below a default server's 100).
const DATABASE_CONNECTIONS_MAX: u32 = 6;

/// A service of the platform.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    /// `awx-signer`.
    Signer,
    /// `awx-ledger`.
    Ledger,
    /// `awx-settlement`.
    Settlement,
    /// `awx-policy`.
    Policy,
    /// `awx-gateway`.
    Gateway,
}

impl Service {
    /// Every service, in start order.
    pub const ALL: [Self; 5] =
        [Self::Signer, Self::Ledger, Self::Settlement, Self::Policy, Self::Gateway];

    /// The service's name (`policy`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Signer => "signer",
            Self::Ledger => "ledger",
            Self::Settlement => "settlement",
            Self::Policy => "policy",
            Self::Gateway => "gateway",
        }
    }

    /// Its binary (`awx-policy`).
    pub fn binary(self) -> String {
        format!("awx-{}", self.name())
    }

    /// The variable naming its configuration file (`AWX_POLICY_CONFIG`).
    fn config_variable(self) -> String {
        format!("AWX_{}_CONFIG", self.name().to_ascii_uppercase())
    }

    /// The message its binary logs once it serves, and the field of that line holding its
    /// listening address (the signer listens on nothing).
    fn ready_line(self) -> (&'static str, Option<&'static str>) {
        match self {
            Self::Signer => ("signer serving bus commands", None),
            Self::Ledger => ("ledger serving", Some("ops")),
            Self::Settlement => ("settlement serving", Some("ops")),
            Self::Policy => ("policy serving", Some("ops")),
            Self::Gateway => ("gateway listening", Some("addr")),
        }
    }
}

/// How many processes run where.
#[derive(Debug, Clone)]
pub struct ProcessOptions {
    /// Where the service binaries are (`target/debug`).
    pub bin_dir: PathBuf,
    /// Where the configuration files (`config/`) and the logs (`logs/`) go.
    pub run_dir: PathBuf,
    /// Replicas of the signer, the ledger, the settlement service and the policy service.
    pub replicas: usize,
    /// One gateway per address.
    pub gateway_addrs: Vec<String>,
    /// `bus.claim_idle_ms` of every service, when not the default: how soon a command left
    /// pending by a dead replica is taken over by another.
    pub claim_idle_ms: Option<u64>,
}

/// One running (or stopped) replica.
#[derive(Debug)]
struct Replica {
    service: Service,
    /// `policy-2`.
    name: String,
    /// Variables of this replica beside the configuration file.
    env: Vec<(String, String)>,
    log: PathBuf,
    child: Option<Child>,
    /// Where it listens, read from its log.
    addr: Option<String>,
}

/// The platform running as separate processes.
#[derive(Debug)]
pub struct ProcessPlatform {
    replicas: Vec<Replica>,
    bin_dir: PathBuf,
    config_dir: PathBuf,
    /// The base URL of every gateway.
    pub gateway_urls: Vec<String>,
    /// The development admin key.
    pub admin_key: String,
    /// Whether the admin key is new (it was not saved by an earlier run).
    pub admin_key_new: bool,
    /// Where the admin key is saved.
    pub admin_key_file: PathBuf,
    /// The relayer addresses (they need native currency for gas).
    pub relayers: Vec<Address>,
}

/// Creates the database named in `url` if it is missing and applies every migration that is
/// not applied yet (the one migration step of a deployment, `awx migrate`). Returns how many
/// were applied now.
pub async fn migrate(url: &str) -> anyhow::Result<usize> {
    crate::platform::ensure_database(url).await?;
    let settings = awx_service_kit::db::DatabaseSettings {
        url: SecretString::from(url.to_owned()),
        max_connections: 2,
        migrate: false,
        ..awx_service_kit::db::DatabaseSettings::default()
    };
    let pool =
        awx_service_kit::db::connect(&settings).await.context("connecting to the database")?;
    let before: i64 = applied_count(&pool).await?;
    awx_service_kit::db::MIGRATOR.run(&pool).await.context("applying the migrations")?;
    let after: i64 = applied_count(&pool).await?;
    pool.close().await;
    Ok(usize::try_from(after.saturating_sub(before)).unwrap_or(0))
}

async fn applied_count(pool: &sqlx::PgPool) -> anyhow::Result<i64> {
    let exists: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM pg_tables WHERE schemaname = 'public' \
         AND tablename = '_sqlx_migrations')",
    )
    .fetch_one(pool)
    .await?;
    if !exists {
        return Ok(0);
    }
    Ok(sqlx::query_scalar("SELECT count(*) FROM public._sqlx_migrations WHERE success")
        .fetch_one(pool)
        .await?)
}

/// A TOML value from anything serializable.
fn value<T: serde::Serialize>(what: &T) -> anyhow::Result<toml::Value> {
    toml::Value::try_from(what).context("writing a setting as TOML")
}

/// The settings every service shares: its database (not migrating), the bus, JSON logs.
fn common(args: &PlatformArgs, options: &ProcessOptions) -> anyhow::Result<toml::Table> {
    let mut table = toml::Table::new();
    let mut database = toml::Table::new();
    database.insert("url".into(), args.database_url.clone().into());
    database.insert("migrate".into(), false.into());
    database.insert("max_connections".into(), i64::from(DATABASE_CONNECTIONS_MAX).into());
    table.insert("database".into(), database.into());
    let mut bus = toml::Table::new();
    bus.insert("redis_url".into(), args.redis_url.clone().into());
    bus.insert("prefix".into(), args.bus_prefix.clone().into());
    if let Some(claim_idle_ms) = options.claim_idle_ms {
        bus.insert("claim_idle_ms".into(), i64::try_from(claim_idle_ms)?.into());
    }
    table.insert("bus".into(), bus.into());
    let mut telemetry = toml::Table::new();
    telemetry.insert("log_format".into(), "json".into());
    table.insert("telemetry".into(), telemetry.into());
    Ok(table)
}

/// The configuration file of each service, from the same arguments the in-process platform
/// takes (secrets excepted: they go by variable).
fn configs(
    args: &PlatformArgs,
    options: &ProcessOptions,
) -> anyhow::Result<Vec<(Service, toml::Table)>> {
    let decision_key = awx_decision::DecisionKey::from_seed_hex(&args.decision_key_hex)
        .map_err(|error| anyhow::anyhow!("the decision key: {error}"))?;

    let mut signer = common(args, options)?;
    signer.insert("allowed_contracts".into(), value(&args.allowed_contracts)?);
    signer.insert("decision_public_key_hex".into(), decision_key.public_key_hex().into());

    let ledger = common(args, options)?;

    let mut settlement = common(args, options)?;
    settlement.insert("networks".into(), value(&args.networks)?);
    settlement.insert("batch".into(), value(&args.batch)?);
    settlement.insert("watch".into(), value(&args.watch)?);

    let mut policy = common(args, options)?;
    policy.insert("tokens".into(), value(&args.tokens)?);
    policy.insert("default_chain".into(), args.default_chain.clone().into());
    policy.insert(
        "upstream_timeout_ms".into(),
        i64::try_from(args.policy_upstream_timeout_ms)?.into(),
    );
    policy.insert(
        "expiry_grace_seconds".into(),
        i64::try_from(args.policy_expiry_grace_seconds)?.into(),
    );

    let mut gateway = common(args, options)?;
    gateway.insert("tokens".into(), value(&args.tokens)?);
    let mut outbound = toml::Table::new();
    outbound.insert("allow_private_targets".into(), args.allow_private_targets.into());
    gateway.insert("outbound".into(), outbound.into());

    Ok(vec![
        (Service::Signer, signer),
        (Service::Ledger, ledger),
        (Service::Settlement, settlement),
        (Service::Policy, policy),
        (Service::Gateway, gateway),
    ])
}

/// The address replica `index` (from 1) of `service` listens on: the first replica of a
/// service with an ops port takes the one in `args`, the others a free port.
fn listen_addr(args: &PlatformArgs, service: Service, index: usize) -> Option<String> {
    let first = match service {
        Service::Ledger => &args.ledger_ops_addr,
        Service::Settlement => &args.settlement_ops_addr,
        Service::Policy => &args.policy_ops_addr,
        Service::Signer | Service::Gateway => return None,
    };
    Some(if index == 1 { first.clone() } else { "127.0.0.1:0".into() })
}

impl ProcessPlatform {
    /// Migrates the database once, writes the configuration files and starts every replica,
    /// in order, each waited for; then reads the relayers and the development admin key.
    pub async fn start(args: PlatformArgs, options: ProcessOptions) -> anyhow::Result<Self> {
        anyhow::ensure!(options.replicas >= 1, "at least one replica of each service");
        anyhow::ensure!(!options.gateway_addrs.is_empty(), "at least one gateway");
        for service in Service::ALL {
            let binary = options.bin_dir.join(service.binary());
            anyhow::ensure!(
                binary.is_file(),
                "{} is missing: build the services first (`cargo build -p awx-gateway -p \
                 awx-policy-service -p awx-ledger-service -p awx-signer-service -p \
                 awx-settlement-service --bins`, which `make run-services` does)",
                binary.display()
            );
        }
        let applied = migrate(&args.database_url).await.context("migrating the database")?;
        tracing::info!(applied, "migrations applied once, before any replica starts");
        let config_dir = options.run_dir.join("config");
        let log_dir = options.run_dir.join("logs");
        std::fs::create_dir_all(&config_dir)?;
        std::fs::create_dir_all(&log_dir)?;
        for (service, table) in configs(&args, &options)? {
            let path = config_dir.join(format!("{}.toml", service.name()));
            // It holds the database and Redis URLs, which may carry passwords.
            crate::write_secret_file(&path, toml::to_string(&table)?.as_bytes())?;
        }

        let mut replicas = Vec::new();
        for service in Service::ALL {
            let count = if service == Service::Gateway {
                options.gateway_addrs.len()
            } else {
                options.replicas
            };
            for index in 1..=count {
                let mut env = Vec::new();
                match service {
                    Service::Signer => {
                        env.push(("AWX_SIGNER_KEK".into(), args.signer_kek_hex.clone()))
                    }
                    Service::Policy => {
                        env.push(("AWX_POLICY_DECISION_KEY".into(), args.decision_key_hex.clone()));
                    }
                    Service::Gateway => env.push((
                        "AWX_GATEWAY__HTTP__ADDR".into(),
                        options.gateway_addrs[index - 1].clone(),
                    )),
                    Service::Ledger | Service::Settlement => {}
                }
                if let Some(addr) = listen_addr(&args, service, index) {
                    env.push((
                        format!("AWX_{}__OPS_ADDR", service.name().to_ascii_uppercase()),
                        addr,
                    ));
                }
                let name = format!("{}-{index}", service.name());
                let log = log_dir.join(format!("{name}.log"));
                replicas.push(Replica { service, name, env, log, child: None, addr: None });
            }
        }
        let mut platform = Self {
            replicas,
            bin_dir: options.bin_dir,
            config_dir,
            gateway_urls: Vec::new(),
            admin_key: String::new(),
            admin_key_new: false,
            admin_key_file: args.state_dir.join("dev-admin-key"),
            relayers: Vec::new(),
        };
        for index in 0..platform.replicas.len() {
            if let Err(error) = platform.spawn(index).await {
                platform.stop_all().await;
                return Err(error);
            }
        }
        platform.gateway_urls = platform
            .replicas
            .iter()
            .filter(|replica| replica.service == Service::Gateway)
            .filter_map(|replica| replica.addr.as_ref().map(|addr| format!("http://{addr}")))
            .collect();

        let database = awx_service_kit::db::DatabaseSettings {
            url: SecretString::from(args.database_url.clone()),
            max_connections: 2,
            migrate: false,
            ..awx_service_kit::db::DatabaseSettings::default()
        };
        let pool = awx_service_kit::db::connect(&database).await?;
        let relayers: Vec<String> = sqlx::query_scalar(
            "SELECT address FROM signer.keys WHERE purpose = 'relayer' ORDER BY created_at, id",
        )
        .fetch_all(&pool)
        .await?;
        platform.relayers = relayers
            .iter()
            .map(|address| address.parse().context("a relayer address"))
            .collect::<anyhow::Result<_>>()?;
        let settings = awx_gateway::GatewaySettings::default();
        let (admin_key, admin_key_new) =
            crate::platform::dev_admin_key(&pool, &settings, &args.state_dir).await?;
        pool.close().await;
        platform.admin_key = admin_key;
        platform.admin_key_new = admin_key_new;
        Ok(platform)
    }

    fn find(&self, name: &str) -> anyhow::Result<usize> {
        self.replicas
            .iter()
            .position(|replica| replica.name == name)
            .with_context(|| format!("no process named {name}"))
    }

    /// Starts replica `index` and waits until it logs that it serves.
    async fn spawn(&mut self, index: usize) -> anyhow::Result<()> {
        let binary = self.bin_dir.join(self.replicas[index].service.binary());
        let config = self.config_dir.join(format!("{}.toml", self.replicas[index].service.name()));
        let replica = &mut self.replicas[index];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&replica.log)
            .with_context(|| format!("opening {}", replica.log.display()))?;
        let offset = log.metadata()?.len();
        let mut command = Command::new(&binary);
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("AWX_") {
                command.env_remove(key);
            }
        }
        command
            .env(replica.service.config_variable(), &config)
            .envs(replica.env.iter().map(|(key, value)| (key, value)))
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            .kill_on_drop(true);
        let child = command
            .spawn()
            .with_context(|| format!("starting {} ({})", replica.name, binary.display()))?;
        replica.child = Some(child);
        let (message, field) = replica.service.ready_line();
        let deadline = Instant::now() + START_WAIT;
        loop {
            let text = std::fs::read(&replica.log).unwrap_or_default();
            let new = String::from_utf8_lossy(text.get(usize::try_from(offset)?..).unwrap_or(&[]))
                .into_owned();
            let ready = new
                .lines()
                .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
                .find(|line| line["message"] == message);
            if let Some(line) = ready {
                replica.addr = field.and_then(|field| line[field].as_str().map(str::to_owned));
                return Ok(());
            }
            let exited = replica.child.as_mut().and_then(|child| child.try_wait().ok().flatten());
            if let Some(status) = exited {
                bail!("{} exited ({status}) before serving:\n{}", replica.name, tail(&new, 20));
            }
            if Instant::now() > deadline {
                bail!("{} did not serve within {START_WAIT:?}:\n{}", replica.name, tail(&new, 20));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Kills the process `name` (`policy-1`) with SIGKILL, as a crash would.
    pub async fn kill(&mut self, name: &str) -> anyhow::Result<()> {
        let index = self.find(name)?;
        if let Some(mut child) = self.replicas[index].child.take() {
            child.kill().await.with_context(|| format!("killing {name}"))?;
        }
        Ok(())
    }

    /// Starts the process `name` again (after [`ProcessPlatform::kill`]) and waits until it
    /// serves.
    pub async fn restart(&mut self, name: &str) -> anyhow::Result<()> {
        let index = self.find(name)?;
        anyhow::ensure!(self.replicas[index].child.is_none(), "{name} is running");
        self.spawn(index).await
    }

    /// The processes that have exited by themselves (name and status); empty while all run.
    pub fn exited(&mut self) -> Vec<String> {
        self.replicas
            .iter_mut()
            .filter_map(|replica| {
                let child = replica.child.as_mut()?;
                child.try_wait().ok().flatten().map(|status| format!("{} ({status})", replica.name))
            })
            .collect()
    }

    /// The processes: name, process id (none when stopped), address, log file.
    pub fn processes(&self) -> Vec<(String, Option<u32>, Option<String>, PathBuf)> {
        self.replicas
            .iter()
            .map(|replica| {
                (
                    replica.name.clone(),
                    replica.child.as_ref().and_then(Child::id),
                    replica.addr.clone(),
                    replica.log.clone(),
                )
            })
            .collect()
    }

    /// Where the process `name` listens (its ops port, or the gateway's port), if it does.
    pub fn addr(&self, name: &str) -> Option<String> {
        self.find(name).ok().and_then(|index| self.replicas[index].addr.clone())
    }

    /// The last `lines` lines of the log of `name`.
    pub fn log_tail(&self, name: &str, lines: usize) -> String {
        self.find(name)
            .ok()
            .and_then(|index| std::fs::read_to_string(&self.replicas[index].log).ok())
            .map(|text| tail(&text, lines))
            .unwrap_or_default()
    }

    /// Stops every process: SIGTERM, the gateways first; SIGKILL after [`STOP_GRACE`]. Fails
    /// if a process did not stop cleanly.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        let unclean = self.stop_all().await;
        if unclean.is_empty() {
            return Ok(());
        }
        let tails: Vec<String> = unclean
            .iter()
            .map(|entry| {
                let name = entry.split(' ').next().unwrap_or_default();
                format!("--- {entry}:\n{}", self.log_tail(name, 15))
            })
            .collect();
        bail!("did not stop cleanly: {}\n{}", unclean.join(", "), tails.join("\n"))
    }

    /// Stops every process in reverse start order; the names of those that did not exit
    /// cleanly after SIGTERM.
    async fn stop_all(&mut self) -> Vec<String> {
        let mut unclean = Vec::new();
        for service in Service::ALL.iter().rev() {
            let mut stopping = Vec::new();
            for replica in self.replicas.iter_mut().filter(|replica| replica.service == *service) {
                let Some(child) = replica.child.take() else { continue };
                if let Some(pid) = child.id().and_then(|pid| i32::try_from(pid).ok()) {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid),
                        nix::sys::signal::Signal::SIGTERM,
                    );
                }
                stopping.push((replica.name.clone(), child));
            }
            for (name, mut child) in stopping {
                match tokio::time::timeout(STOP_GRACE, child.wait()).await {
                    Ok(Ok(status)) if status.success() => {}
                    Ok(Ok(status)) => unclean.push(format!("{name} ({status})")),
                    Ok(Err(error)) => unclean.push(format!("{name} ({error})")),
                    Err(_) => {
                        let _ = child.kill().await;
                        unclean.push(format!("{name} (killed after {STOP_GRACE:?})"));
                    }
                }
            }
        }
        unclean
    }
}

/// The last `lines` lines of `text`.
fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// The directory of the running `awx` binary, where Cargo puts the service binaries too.
pub fn own_bin_dir() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("finding the awx binary")?;
    exe.parent().map(Path::to_path_buf).context("the awx binary has no directory")
}
