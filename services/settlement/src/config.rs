//! The settlement service's settings (`AWX_SETTLEMENT__…`; see `awx_service_kit::config`).

use awx_service_kit::config::Validate;
use awx_service_kit::db::DatabaseSettings;
use awx_service_kit::telemetry::TelemetrySettings;
use serde::Deserialize;

/// The settlement service's name on the bus, and its Postgres schema.
pub const SERVICE: &str = "settlement";

/// A chain the facilitator works on.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkSettings {
    /// The CAIP-2 network (`eip155:8453`).
    pub network: String,
    /// The JSON-RPC endpoint.
    pub rpc_url: String,
    /// How long a settle waits for the receipt before answering `settlement_pending`.
    #[serde(default = "default_receipt_wait_ms")]
    pub receipt_wait_ms: u64,
}

fn default_receipt_wait_ms() -> u64 {
    15_000
}

/// Everything the settlement service can be configured with.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SettlementSettings {
    /// Where `/health/*` and `/metrics` are served.
    pub ops_addr: String,
    /// Postgres.
    pub database: DatabaseSettings,
    /// Redis and the bus (the service and schema are the settlement service's own).
    pub bus: awx_bus::BusConfig,
    /// The chains served.
    pub networks: Vec<NetworkSettings>,
    /// Gas limit = estimate × this / 100.
    pub gas_limit_percent: u64,
    /// How often in-flight transactions are re-broadcast or checked for receipts.
    pub resume_interval_ms: u64,
    /// How long to wait for the signer.
    pub signer_timeout_ms: u64,
    /// Logs and traces.
    pub telemetry: TelemetrySettings,
}

impl Default for SettlementSettings {
    fn default() -> Self {
        Self {
            ops_addr: "127.0.0.1:8082".into(),
            database: DatabaseSettings::default(),
            bus: awx_bus::BusConfig::new(SERVICE, SERVICE),
            networks: Vec::new(),
            gas_limit_percent: 130,
            resume_interval_ms: 1_000,
            signer_timeout_ms: 10_000,
            telemetry: TelemetrySettings::default(),
        }
    }
}

impl Validate for SettlementSettings {
    fn validate(&self) -> Result<(), String> {
        for network in &self.networks {
            let parsed = awx_x402::Network::parse_caip2(&network.network)
                .map_err(|error| error.to_string())?;
            if parsed.evm_chain_id().is_none() {
                return Err(format!("networks: {} is not an EVM network", network.network));
            }
            if network.receipt_wait_ms == 0 {
                return Err(format!(
                    "networks.{}: receipt_wait_ms must be positive",
                    network.network
                ));
            }
        }
        if self.gas_limit_percent < 100
            || self.resume_interval_ms == 0
            || self.signer_timeout_ms == 0
        {
            return Err("gas_limit_percent must be at least 100, resume_interval_ms and signer_timeout_ms positive".into());
        }
        let mut bus = self.bus.clone();
        bus.service = SERVICE.to_owned();
        bus.schema = SERVICE.to_owned();
        bus.validate().map_err(|error| error.to_string())
    }
}
