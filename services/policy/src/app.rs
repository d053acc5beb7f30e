//! Building and running the policy service: its command server, the sweeper, the outbox relay, and the
//! operations endpoints.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use awx_service_kit::ops::{self, ReadinessCheck};
use awx_service_kit::shutdown::Shutdown;

use crate::commands::PolicyHandlers;
use crate::config::{PolicySettings, SERVICE};
use crate::engine::Engine;

/// A built policy service, not yet running.
#[derive(Debug)]
pub struct PolicyService {
    engine: Arc<Engine>,
    inbox_pool: sqlx::PgPool,
    ops_listener: tokio::net::TcpListener,
}

impl PolicyService {
    /// Connects Postgres (migrating if configured) and the bus, reads the decision key, and
    /// binds the ops listener.
    pub async fn build(settings: PolicySettings) -> anyhow::Result<Self> {
        let decision_key = settings.decision_key()?;
        Self::build_with_key(settings, decision_key).await
    }

    /// As [`PolicyService::build`], with the decision key given.
    pub async fn build_with_key(
        mut settings: PolicySettings,
        decision_key: awx_decision::DecisionKey,
    ) -> anyhow::Result<Self> {
        settings.bus.service = SERVICE.to_owned();
        settings.bus.schema = SERVICE.to_owned();
        let mut registry = awx_x402::TokenRegistry::builtin();
        for token in &settings.tokens {
            registry.register(token.clone()).map_err(|error| anyhow::anyhow!("tokens: {error}"))?;
        }
        let pool = awx_service_kit::db::connect(&settings.database)
            .await
            .context("connecting to Postgres")?;
        let mut inbox_settings = settings.database.clone();
        inbox_settings.migrate = false;
        let inbox_pool = awx_service_kit::db::connect(&inbox_settings)
            .await
            .context("connecting the inbox pool")?;
        let bus =
            awx_bus::Bus::connect(settings.bus.clone()).await.context("connecting the bus")?;
        let ops_listener = tokio::net::TcpListener::bind(&settings.ops_addr)
            .await
            .with_context(|| format!("binding {}", settings.ops_addr))?;
        let engine = Engine { pool, bus, settings, registry, decision_key };
        Ok(Self { engine: Arc::new(engine), inbox_pool, ops_listener })
    }

    /// Where the ops endpoints listen.
    pub fn ops_addr(&self) -> anyhow::Result<SocketAddr> {
        self.ops_listener.local_addr().context("reading the ops address")
    }

    /// The decision key's public half (the signer verifies decisions with it).
    pub fn decision_public_key_hex(&self) -> String {
        self.engine.decision_key.public_key_hex()
    }

    /// Serves the commands and sweeps payments until `shutdown`.
    pub async fn run(self, shutdown: Shutdown) -> anyhow::Result<()> {
        let server = PolicyHandlers::new(self.engine.clone())
            .server(&self.engine.bus, self.inbox_pool.clone())
            .context("registering the policy commands")?;
        let commands = shutdown.spawn(server.run(shutdown.token()));
        let interval = Duration::from_millis(self.engine.settings.sweep_interval_ms);
        shutdown.spawn(crate::sweeper::run(self.engine.clone(), interval, shutdown.token()));
        let relay = awx_bus::OutboxRelay::new(&self.engine.bus, self.engine.pool.clone());
        shutdown.spawn(relay.run(shutdown.token()));
        let bus = self.engine.bus.clone();
        let checks = vec![
            ReadinessCheck::postgres(self.engine.pool.clone()),
            ReadinessCheck::new("redis", move || {
                let bus = bus.clone();
                async move { bus.ping().await.map_err(|error| error.to_string()) }
            }),
        ];
        ops::spawn_server(&shutdown, self.ops_listener, checks, "policy");
        shutdown.cancelled().await;
        if !shutdown.drain(Duration::from_secs(20)).await {
            tracing::warn!("policy tasks outlived the shutdown grace");
        }
        self.engine.bus.close();
        match commands.await {
            Ok(result) => result.context("serving policy commands"),
            Err(error) if error.is_cancelled() => Ok(()),
            Err(error) => Err(error).context("policy command task"),
        }
    }
}
