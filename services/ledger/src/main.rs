//! The `awx-ledger` binary: loads settings (`AWX_LEDGER_CONFIG` names an optional TOML file;
//! `AWX_LEDGER__…` variables override), starts telemetry, serves until SIGTERM or Ctrl-C.

use anyhow::Context as _;
use awx_ledger_service::{LedgerService, LedgerSettings};
use awx_service_kit::shutdown::Shutdown;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let file = std::env::var_os("AWX_LEDGER_CONFIG").map(std::path::PathBuf::from);
    let settings: LedgerSettings = awx_service_kit::config::load("ledger", file.as_deref())
        .context("loading the ledger settings")?;
    let _telemetry = awx_service_kit::telemetry::init("awx-ledger", &settings.telemetry)?;
    let service = LedgerService::build(settings).await?;
    tracing::info!(ops = %service.ops_addr()?, "ledger serving");
    let shutdown = Shutdown::new();
    shutdown.trigger_on_signals();
    service.run(shutdown).await
}
