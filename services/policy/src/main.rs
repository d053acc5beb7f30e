//! The `awx-policy` binary: loads settings (`AWX_POLICY_CONFIG` names an optional TOML file;
//! `AWX_POLICY__…` variables override; the decision key comes from `AWX_POLICY_DECISION_KEY` or
//! a file), starts telemetry, serves until SIGTERM or Ctrl-C.

use anyhow::Context as _;
use awx_policy_service::{PolicyService, PolicySettings};
use awx_service_kit::shutdown::Shutdown;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let file = std::env::var_os("AWX_POLICY_CONFIG").map(std::path::PathBuf::from);
    let settings: PolicySettings = awx_service_kit::config::load("policy", file.as_deref())
        .context("loading the policy settings")?;
    let _telemetry = awx_service_kit::telemetry::init("awx-policy", &settings.telemetry)?;
    let service = PolicyService::build(settings).await?;
    tracing::info!(ops = %service.ops_addr()?, "policy serving");
    let shutdown = Shutdown::new();
    shutdown.trigger_on_signals();
    service.run(shutdown).await
}
