//! The `awx-gateway` binary: loads settings (`AWX_GATEWAY_CONFIG` names an optional TOML file;
//! `AWX_GATEWAY__…` variables override), starts telemetry, serves until SIGTERM or Ctrl-C.

use anyhow::Context as _;
use awx_gateway::{App, GatewaySettings};
use awx_service_kit::shutdown::Shutdown;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let file = std::env::var_os("AWX_GATEWAY_CONFIG").map(std::path::PathBuf::from);
    let settings: GatewaySettings = awx_service_kit::config::load("gateway", file.as_deref())
        .context("loading the gateway settings")?;
    let _telemetry = awx_service_kit::telemetry::init("awx-gateway", &settings.telemetry)?;
    let app = App::build(settings).await?;
    tracing::info!(addr = %app.local_addr()?, "gateway listening");
    let shutdown = Shutdown::new();
    shutdown.trigger_on_signals();
    app.run(shutdown).await
}
