//! Building and running the settlement service: the facilitator's command server, the resumers
//! (one per chain), and the operations endpoints.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use awx_service_kit::ops::{self, ReadinessCheck};
use awx_service_kit::shutdown::Shutdown;

use crate::commands::FacilitatorHandlers;
use crate::config::{SERVICE, SettlementSettings};
use crate::facilitator::Facilitator;

/// A built settlement service, not yet running.
#[derive(Debug)]
pub struct SettlementService {
    facilitator: Arc<Facilitator>,
    inbox_pool: sqlx::PgPool,
    ops_listener: tokio::net::TcpListener,
}

impl SettlementService {
    /// Connects Postgres (migrating if configured), the bus and the chains; binds the ops listener.
    pub async fn build(mut settings: SettlementSettings) -> anyhow::Result<Self> {
        settings.bus.service = SERVICE.to_owned();
        settings.bus.schema = SERVICE.to_owned();
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
        let facilitator =
            Facilitator::new(pool, bus, settings).context("configuring the chains")?;
        Ok(Self { facilitator: Arc::new(facilitator), inbox_pool, ops_listener })
    }

    /// The facilitator (for callers in the same process, such as tests).
    pub fn facilitator(&self) -> Arc<Facilitator> {
        self.facilitator.clone()
    }

    /// Where the ops endpoints listen.
    pub fn ops_addr(&self) -> anyhow::Result<SocketAddr> {
        self.ops_listener.local_addr().context("reading the ops address")
    }

    /// Serves the facilitator's commands and resumes settlements until `shutdown`.
    pub async fn run(self, shutdown: Shutdown) -> anyhow::Result<()> {
        let server = FacilitatorHandlers::new(self.facilitator.clone())
            .server(&self.facilitator.bus, self.inbox_pool.clone())
            .context("registering the facilitator commands")?;
        let commands = shutdown.spawn(server.run(shutdown.token()));
        let interval = Duration::from_millis(self.facilitator.settings.resume_interval_ms);
        // One resumer per chain: a node that does not answer holds up only its own chain.
        for chain in self.facilitator.chains() {
            shutdown.spawn(crate::resumer::run(
                self.facilitator.clone(),
                chain.clone(),
                interval,
                shutdown.token(),
            ));
        }
        if self.facilitator.settings.batch.enabled {
            let worker = Arc::new(crate::batch::BatchWorker::new(self.facilitator.clone()));
            shutdown.spawn(crate::batch::run(worker, shutdown.token()));
        }
        if self.facilitator.settings.watch.enabled {
            let watcher = Arc::new(crate::watcher::Watcher::new(self.facilitator.clone()));
            shutdown.spawn(crate::watcher::run(watcher, shutdown.token()));
        }
        // Every replica hears every announced authorization and capture.
        let facilitator = self.facilitator.clone();
        let issued = awx_bus::NoticeListener::new(
            &self.facilitator.bus,
            move |notice: awx_api::issued::IssuedNotice| {
                if !facilitator.issued.apply(notice) {
                    metrics::counter!("settlement_issued_memory_full_total").increment(1);
                }
            },
        )
        .context("listening to the announced authorizations")?;
        shutdown.spawn(issued.run(shutdown.token()));
        let relay = awx_bus::OutboxRelay::new(&self.facilitator.bus, self.facilitator.pool.clone());
        shutdown.spawn(relay.run(shutdown.token()));
        // Captures queue their items from the policy service's outbox too.
        let captured = awx_bus::EventConsumer::new(&self.facilitator.bus, self.inbox_pool.clone())
            .on::<awx_api::policy::PaymentCaptured, _>(crate::own::CapturedHandler(
                self.facilitator.clone(),
            ))
            .context("registering the payment.captured consumer")?;
        let events = shutdown.spawn(captured.run(shutdown.token()));
        let bus = self.facilitator.bus.clone();
        let checks = vec![
            ReadinessCheck::postgres(self.facilitator.pool.clone()),
            ReadinessCheck::new("redis", move || {
                let bus = bus.clone();
                async move { bus.ping().await.map_err(|error| error.to_string()) }
            }),
        ];
        ops::spawn_server(&shutdown, self.ops_listener, checks, "settlement");
        shutdown.cancelled().await;
        if !shutdown.drain(Duration::from_secs(20)).await {
            tracing::warn!("settlement tasks outlived the shutdown grace");
        }
        self.facilitator.bus.close();
        match events.await {
            Ok(Err(error)) => {
                tracing::warn!(error.message = %error, "the payment.captured consumer stopped with an error")
            }
            Ok(Ok(())) => {}
            Err(error) if error.is_cancelled() => {}
            Err(error) => {
                tracing::warn!(error.message = %error, "the payment.captured consumer task failed")
            }
        }
        match commands.await {
            Ok(result) => result.context("serving facilitator commands"),
            Err(error) if error.is_cancelled() => Ok(()),
            Err(error) => Err(error).context("facilitator command task"),
        }
    }
}
