//! The `awx-signer` binary: loads settings (`AWX_SIGNER_CONFIG` names an optional TOML file;
//! `AWX_SIGNER__…` variables override), reads the key-encryption key (`AWX_SIGNER_KEK` or
//! `kek_file`), starts telemetry, serves bus commands until SIGTERM or Ctrl-C. It listens on no
//! port.

use anyhow::Context as _;
use awx_service_kit::shutdown::Shutdown;
use awx_signer_service::{SignerService, SignerSettings};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let file = std::env::var_os("AWX_SIGNER_CONFIG").map(std::path::PathBuf::from);
    let settings: SignerSettings = awx_service_kit::config::load("signer", file.as_deref())
        .context("loading the signer settings")?;
    let _telemetry = awx_service_kit::telemetry::init("awx-signer", &settings.telemetry)?;
    let service = SignerService::build(settings).await?;
    tracing::info!(kek_id = %service.kek_id(), "signer serving bus commands");
    let shutdown = Shutdown::new();
    shutdown.trigger_on_signals();
    service.run(shutdown).await
}
