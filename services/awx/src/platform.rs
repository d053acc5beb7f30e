//! The services of the platform, run in this one process for local use (and by the cross-service
//! tests): the ledger, the signer, the settlement service, the policy service and the gateway,
//! on a database created
//! and migrated if missing, with a development account and admin key. The gateway also reads its
//! own settings layers (`AWX_GATEWAY_CONFIG`, `AWX_GATEWAY__…`: rate limits, say); what the
//! arguments set wins.

use std::io::Write as _;
use std::path::PathBuf;

use anyhow::Context as _;
use awx_gateway::accounts;
use awx_gateway::auth::key::PlaintextApiKey;
use awx_gateway::{App, GatewaySettings};
use awx_service_kit::shutdown::Shutdown;
use secrecy::SecretString;
use sqlx::{AssertSqlSafe, Connection as _, Executor as _};

/// Where the services connect and listen.
#[derive(Debug, Clone)]
pub struct PlatformArgs {
    /// The platform's database (created if missing).
    pub database_url: String,
    /// Redis.
    pub redis_url: String,
    /// The key prefix of this deployment in Redis.
    pub bus_prefix: String,
    /// Where the gateway listens.
    pub gateway_addr: String,
    /// Where the ledger's ops endpoints listen.
    pub ledger_ops_addr: String,
    /// Where the settlement service's ops endpoints listen.
    pub settlement_ops_addr: String,
    /// Where the policy service's ops endpoints listen.
    pub policy_ops_addr: String,
    /// Tokens to add to the registry (the development chain's).
    pub tokens: Vec<awx_x402::TokenInfo>,
    /// The chains the facilitator settles on.
    pub networks: Vec<awx_settlement_service::config::NetworkSettings>,
    /// The contracts the signer may call, by CAIP-2 network.
    pub allowed_contracts: std::collections::BTreeMap<String, Vec<awx_x402::Address>>,
    /// The signer's key-encryption key (64 hex characters).
    pub signer_kek_hex: String,
    /// The policy service's decision key (an Ed25519 seed, 64 hex characters); the signer
    /// trusts its public half.
    pub decision_key_hex: String,
    /// The chain of agents created without one.
    pub default_chain: String,
    /// Let the gateway fetch loopback and private targets (development: the demo API runs on
    /// this machine).
    pub allow_private_targets: bool,
    /// How long the policy service waits for the ledger and the signer.
    pub policy_upstream_timeout_ms: u64,
    /// How long after an authorization's `validBefore` the policy service decides its fate (the
    /// chain is asked whether it was used before anything is released).
    pub policy_expiry_grace_seconds: u64,
    /// Holds the development admin key between runs.
    pub state_dir: PathBuf,
    /// The batch settlement worker's settings.
    pub batch: awx_settlement_service::config::BatchSettings,
    /// The chain watcher's settings.
    pub watch: awx_settlement_service::config::WatchSettings,
}

/// The running services.
#[derive(Debug)]
pub struct Platform {
    shutdown: Shutdown,
    gateway: tokio::task::JoinHandle<anyhow::Result<()>>,
    ledger: tokio::task::JoinHandle<anyhow::Result<()>>,
    policy: tokio::task::JoinHandle<anyhow::Result<()>>,
    signer: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    signer_shutdown: Shutdown,
    settlement: tokio::task::JoinHandle<anyhow::Result<()>>,
    /// The settlement service's facilitator (the batch worker and tests drive it in-process).
    pub facilitator: std::sync::Arc<awx_settlement_service::Facilitator>,
    /// The relayer addresses (they need native currency for gas).
    pub relayers: Vec<awx_x402::Address>,
    /// The gateway's base URL.
    pub gateway_url: String,
    /// The development admin key.
    pub admin_key: String,
    admin_key_new: bool,
    admin_key_file: PathBuf,
}

/// A connection to the server's `postgres` database, and the (checked) name of the database
/// in `url`.
async fn admin_connection(url: &str) -> anyhow::Result<(sqlx::PgConnection, String)> {
    let options: sqlx::postgres::PgConnectOptions =
        url.parse().context("parsing the database URL")?;
    let name = options.get_database().unwrap_or("awx").to_owned();
    anyhow::ensure!(
        name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'),
        "database name {name:?} must be letters, digits and underscores"
    );
    let admin = sqlx::PgConnection::connect_with(&options.clone().database("postgres"))
        .await
        .context("connecting to Postgres (is it running? `make setup` starts it)")?;
    Ok((admin, name))
}

/// Creates the database named in `url` when it does not exist.
pub(crate) async fn ensure_database(url: &str) -> anyhow::Result<()> {
    let (mut admin, name) = admin_connection(url).await?;
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(&name)
            .fetch_one(&mut admin)
            .await?;
    if !exists {
        admin.execute(AssertSqlSafe(format!("CREATE DATABASE {name}"))).await?;
    }
    Ok(())
}

/// Drops and recreates the database named in `url` (development only).
pub async fn reset_database(url: &str) -> anyhow::Result<()> {
    let (mut admin, name) = admin_connection(url).await?;
    admin.execute(AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))).await?;
    admin.execute(AssertSqlSafe(format!("CREATE DATABASE {name}"))).await?;
    Ok(())
}

/// The development admin key: the one remembered from an earlier run if it still works, else a
/// new one (bootstrapping the first account on a fresh database).
pub(crate) async fn dev_admin_key(
    pool: &sqlx::PgPool,
    settings: &GatewaySettings,
    state_dir: &std::path::Path,
) -> anyhow::Result<(String, bool)> {
    let path = state_dir.join("dev-admin-key");
    if let Ok(saved) = std::fs::read_to_string(&path) {
        let saved = saved.trim().to_owned();
        if let Some((key_id, _)) = PlaintextApiKey::parse(&saved) {
            let row = awx_gateway::store::key_by_id(pool, key_id).await?;
            if row.is_some_and(|row| row.is_active(chrono::Utc::now())) {
                return Ok((saved, false));
            }
        }
    }
    let issued = match accounts::bootstrap(pool, &settings.auth, "development").await {
        Ok((_, issued)) => issued,
        Err(accounts::AccountError::AlreadyBootstrapped) => {
            let account: uuid::Uuid =
                sqlx::query_scalar("SELECT id FROM gateway.accounts ORDER BY created_at LIMIT 1")
                    .fetch_one(pool)
                    .await?;
            accounts::issue_key(
                pool,
                &settings.auth,
                awx_types::AccountId::from_uuid(account),
                "development admin",
                &[awx_gateway::auth::key::Scope::Admin],
            )
            .await?
        }
        Err(error) => return Err(error.into()),
    };
    crate::write_secret_file(&path, issued.plaintext.expose().as_bytes())?;
    Ok((issued.plaintext.expose().to_owned(), true))
}

/// Starts the services.
pub async fn start(args: PlatformArgs) -> anyhow::Result<Platform> {
    ensure_database(&args.database_url).await?;
    let database = |url: &str| awx_service_kit::db::DatabaseSettings {
        url: SecretString::from(url.to_owned()),
        ..awx_service_kit::db::DatabaseSettings::default()
    };
    let bus = |service: &str| {
        let mut config = awx_bus::BusConfig::new(service, service);
        config.redis_url = SecretString::from(args.redis_url.clone());
        config.prefix.clone_from(&args.bus_prefix);
        config
    };
    // The ledger migrates the shared database first; the others find it migrated.
    let ledger_settings = awx_ledger_service::LedgerSettings {
        database: database(&args.database_url),
        bus: bus("ledger"),
        ops_addr: args.ledger_ops_addr.clone(),
        ..awx_ledger_service::LedgerSettings::default()
    };
    let ledger = awx_ledger_service::LedgerService::build(ledger_settings)
        .await
        .context("starting the ledger")?;

    let signer_settings = awx_signer_service::SignerSettings {
        database: database(&args.database_url),
        bus: bus("signer"),
        allowed_contracts: args.allowed_contracts.clone(),
        ..awx_signer_service::SignerSettings::default()
    };
    let decision_key = awx_decision::DecisionKey::from_seed_hex(&args.decision_key_hex)
        .map_err(|error| anyhow::anyhow!("the decision key: {error}"))?;
    let signer_settings = awx_signer_service::SignerSettings {
        decision_public_key_hex: Some(decision_key.public_key_hex()),
        ..signer_settings
    };
    let kek = awx_signer_service::kek::Kek::from_hex(
        &args.signer_kek_hex,
        "the development key-encryption key",
    )
    .map_err(|error| anyhow::anyhow!("{error}"))?;
    let signer = awx_signer_service::SignerService::build_with_kek(signer_settings, kek)
        .await
        .context("starting the signer")?;
    let relayers = signer.relayers().await.context("reading the relayers")?;

    let settlement_settings = awx_settlement_service::SettlementSettings {
        database: database(&args.database_url),
        bus: bus("settlement"),
        ops_addr: args.settlement_ops_addr.clone(),
        networks: args.networks.clone(),
        batch: args.batch.clone(),
        watch: args.watch.clone(),
        ..awx_settlement_service::SettlementSettings::default()
    };
    let settlement = awx_settlement_service::SettlementService::build(settlement_settings)
        .await
        .context("starting the settlement service")?;
    let facilitator = settlement.facilitator();

    let policy_settings = awx_policy_service::PolicySettings {
        database: database(&args.database_url),
        bus: bus("policy"),
        ops_addr: args.policy_ops_addr.clone(),
        tokens: args.tokens.clone(),
        default_chain: args.default_chain.clone(),
        upstream_timeout_ms: args.policy_upstream_timeout_ms,
        expiry_grace_seconds: args.policy_expiry_grace_seconds,
        ..awx_policy_service::PolicySettings::default()
    };
    let policy = awx_policy_service::PolicyService::build_with_key(policy_settings, decision_key)
        .await
        .context("starting the policy service")?;

    // The gateway's own layers (defaults, the file named by `AWX_GATEWAY_CONFIG`, then
    // `AWX_GATEWAY__…` variables) for what the arguments do not set, such as rate limits.
    let file = std::env::var_os("AWX_GATEWAY_CONFIG").map(PathBuf::from);
    let mut settings: GatewaySettings = awx_service_kit::config::load("gateway", file.as_deref())
        .context("loading the gateway settings")?;
    settings.database.url = SecretString::from(args.database_url);
    settings.bus.redis_url = SecretString::from(args.redis_url);
    settings.bus.prefix = args.bus_prefix;
    settings.http.addr = args.gateway_addr;
    settings.tokens = args.tokens;
    settings.outbound.allow_private_targets = args.allow_private_targets;
    settings.telemetry.log_format = awx_service_kit::telemetry::LogFormat::Compact;
    let app = App::build(settings.clone()).await.context("starting the gateway")?;
    let gateway_url = format!("http://{}", app.local_addr()?);
    let (admin_key, admin_key_new) =
        dev_admin_key(&app.state().pool, &settings, &args.state_dir).await?;
    let shutdown = Shutdown::new();
    let ledger = tokio::spawn(ledger.run(shutdown.clone()));
    // The signer has its own shutdown, so a test can stop it alone.
    let signer_shutdown = Shutdown::new();
    let signer = Some(tokio::spawn(signer.run(signer_shutdown.clone())));
    let policy = tokio::spawn(policy.run(shutdown.clone()));
    let settlement = tokio::spawn(settlement.run(shutdown.clone()));
    let gateway = tokio::spawn(app.run(shutdown.clone()));
    let admin_key_file = args.state_dir.join("dev-admin-key");
    Ok(Platform {
        shutdown,
        gateway,
        ledger,
        policy,
        signer,
        signer_shutdown,
        settlement,
        facilitator,
        relayers,
        gateway_url,
        admin_key,
        admin_key_new,
        admin_key_file,
    })
}

impl Platform {
    /// Prints what runs where. The relayers (which pay settlement gas) go to the log: a
    /// newcomer does not need them, an operator finds them there.
    pub fn print_summary(&self) -> anyhow::Result<()> {
        for relayer in &self.relayers {
            tracing::info!(%relayer, "relayer (pays settlement gas)");
        }
        let mut out = std::io::stdout().lock();
        writeln!(out, "awx dev: services are up")?;
        writeln!(out, "  gateway   {}   (docs {}/docs)", self.gateway_url, self.gateway_url)?;
        writeln!(
            out,
            "  facilitator {}/api/v1/x402/facilitator (provider scope)",
            self.gateway_url
        )?;
        let file = self.admin_key_file.display();
        let note = if self.admin_key_new {
            format!("new; saved in {file}")
        } else {
            format!("from {file}")
        };
        writeln!(out, "  admin key {} ({note})", self.admin_key)?;
        out.flush()?;
        Ok(())
    }

    /// Stops the signer alone (to see how the rest behaves without it).
    pub async fn stop_signer(&mut self) -> anyhow::Result<()> {
        self.signer_shutdown.trigger();
        if let Some(signer) = self.signer.take() {
            signer.await.context("signer task")??;
        }
        Ok(())
    }

    /// Stops the services, letting in-flight requests finish.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.shutdown.trigger();
        self.gateway.await.context("gateway task")??;
        self.policy.await.context("policy task")??;
        self.settlement.await.context("settlement task")??;
        self.signer_shutdown.trigger();
        if let Some(signer) = self.signer {
            signer.await.context("signer task")??;
        }
        self.ledger.await.context("ledger task")?
    }
}
