//! Building and running the ledger service: the command server, the hold sweeper, and the
//! operations endpoints (`/health/*`, `/metrics`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use awx_service_kit::ops::{self, ReadinessCheck};
use awx_service_kit::shutdown::Shutdown;

use crate::commands::LedgerHandlers;
use crate::config::{LedgerSettings, SERVICE};
use crate::ops::Ledger;

/// A built ledger service, not yet running.
#[derive(Debug)]
pub struct LedgerService {
    ledger: Arc<Ledger>,
    bus: awx_bus::Bus,
    ops_listener: tokio::net::TcpListener,
}

impl LedgerService {
    /// Connects Postgres (migrating if configured) and the bus, and binds the ops listener.
    pub async fn build(mut settings: LedgerSettings) -> anyhow::Result<Self> {
        settings.bus.service = SERVICE.to_owned();
        settings.bus.schema = SERVICE.to_owned();
        let pool = awx_service_kit::db::connect(&settings.database)
            .await
            .context("connecting to Postgres")?;
        let bus =
            awx_bus::Bus::connect(settings.bus.clone()).await.context("connecting the bus")?;
        let ops_listener = tokio::net::TcpListener::bind(&settings.ops_addr)
            .await
            .with_context(|| format!("binding {}", settings.ops_addr))?;
        Ok(Self { ledger: Arc::new(Ledger::new(pool, settings)), bus, ops_listener })
    }

    /// The ledger (for callers in the same process, such as tests).
    pub fn ledger(&self) -> Arc<Ledger> {
        self.ledger.clone()
    }

    /// Where the ops endpoints listen.
    pub fn ops_addr(&self) -> anyhow::Result<SocketAddr> {
        self.ops_listener.local_addr().context("reading the ops address")
    }

    /// Serves commands, sweeps expired holds and serves the ops endpoints until `shutdown`.
    pub async fn run(self, shutdown: Shutdown) -> anyhow::Result<()> {
        let server = LedgerHandlers::new(self.ledger.clone())
            .server(&self.bus)
            .context("registering the ledger commands")?;
        let commands = shutdown.spawn(server.run(shutdown.token()));
        let relay = awx_bus::OutboxRelay::new(&self.bus, self.ledger.pool.clone());
        shutdown.spawn(relay.run(shutdown.token()));
        let interval = Duration::from_millis(self.ledger.settings.sweep_interval_ms);
        shutdown.spawn(crate::sweeper::run(self.ledger.clone(), interval, shutdown.token()));
        let bus = self.bus.clone();
        let checks = vec![
            ReadinessCheck::postgres(self.ledger.pool.clone()),
            ReadinessCheck::new("redis", move || {
                let bus = bus.clone();
                async move { bus.ping().await.map_err(|error| error.to_string()) }
            }),
        ];
        ops::spawn_server(&shutdown, self.ops_listener, checks, "ledger");
        shutdown.cancelled().await;
        let drained = shutdown.drain(Duration::from_secs(10)).await;
        if !drained {
            tracing::warn!("ledger tasks outlived the shutdown grace");
        }
        self.bus.close();
        match commands.await {
            Ok(result) => result.context("serving ledger commands"),
            Err(error) if error.is_cancelled() => Ok(()),
            Err(error) => Err(error).context("ledger command task"),
        }
    }
}
