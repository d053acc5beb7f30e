//! The ledger service's settings (`AWX_LEDGER__…`; see `awx_service_kit::config`).

use awx_service_kit::config::Validate;
use awx_service_kit::db::DatabaseSettings;
use awx_service_kit::telemetry::TelemetrySettings;
use serde::Deserialize;

/// The ledger's service name on the bus, and its Postgres schema.
pub const SERVICE: &str = "ledger";

/// Everything the ledger can be configured with.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LedgerSettings {
    /// Where `/health/*` and `/metrics` are served (the ledger has no public API).
    pub ops_addr: String,
    /// Postgres.
    pub database: DatabaseSettings,
    /// Redis and the bus (the service and schema are the ledger's own).
    pub bus: awx_bus::BusConfig,
    /// How many fee revenue accounts per asset share the fee credits, so no single row is hot.
    pub fee_shards: u8,
    /// Networks where the faucet may credit wallets (development chains).
    pub dev_networks: Vec<String>,
    /// How often expired holds are released.
    pub sweep_interval_ms: u64,
    /// Logs and traces.
    pub telemetry: TelemetrySettings,
}

impl Default for LedgerSettings {
    fn default() -> Self {
        Self {
            ops_addr: "127.0.0.1:8081".into(),
            database: DatabaseSettings::default(),
            bus: awx_bus::BusConfig::new(SERVICE, SERVICE),
            fee_shards: 16,
            dev_networks: vec!["eip155:31337".into()],
            sweep_interval_ms: 1_000,
            telemetry: TelemetrySettings::default(),
        }
    }
}

impl Validate for LedgerSettings {
    fn validate(&self) -> Result<(), String> {
        if self.fee_shards == 0 || self.fee_shards > 100 {
            return Err("fee_shards must be 1 to 100".into());
        }
        if self.sweep_interval_ms == 0 {
            return Err("sweep_interval_ms must be positive".into());
        }
        let mut bus = self.bus.clone();
        bus.service = SERVICE.to_owned();
        bus.schema = SERVICE.to_owned();
        bus.validate().map_err(|error| error.to_string())
    }
}
