//! The `awx-settlement` binary: loads settings (`AWX_SETTLEMENT_CONFIG` names an optional TOML
//! file; `AWX_SETTLEMENT__…` variables override), starts telemetry, serves until SIGTERM or
//! Ctrl-C.

use anyhow::Context as _;
use awx_service_kit::shutdown::Shutdown;
use awx_settlement_service::{SettlementService, SettlementSettings};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let file = std::env::var_os("AWX_SETTLEMENT_CONFIG").map(std::path::PathBuf::from);
    let settings: SettlementSettings = awx_service_kit::config::load("settlement", file.as_deref())
        .context("loading the settlement settings")?;
    let _telemetry = awx_service_kit::telemetry::init("awx-settlement", &settings.telemetry)?;
    let service = SettlementService::build(settings).await?;
    tracing::info!(ops = %service.ops_addr()?, "settlement serving");
    let shutdown = Shutdown::new();
    shutdown.trigger_on_signals();
    service.run(shutdown).await
}
