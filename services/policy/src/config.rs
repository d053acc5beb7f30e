//! The policy service's settings: defaults, then `AWX_POLICY_CONFIG` (a TOML file), then
//! `AWX_POLICY__…` variables.

use awx_service_kit::config::Validate;
use awx_service_kit::db::DatabaseSettings;
use awx_service_kit::telemetry::TelemetrySettings;
use secrecy::SecretString;
use serde::Deserialize;

/// The service's name on the bus and its Postgres schema.
pub const SERVICE: &str = "policy";

/// Everything the policy service can be configured with.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PolicySettings {
    /// Where `/health/*` and `/metrics` are served.
    pub ops_addr: String,
    /// Postgres.
    pub database: DatabaseSettings,
    /// Redis and the bus (the service and schema are the policy service's own).
    pub bus: awx_bus::BusConfig,
    /// Tokens added to the built-in registry (a development chain's token, say).
    pub tokens: Vec<awx_x402::TokenInfo>,
    /// The chain of an agent created without one.
    pub default_chain: String,
    /// The Ed25519 key (64 hex characters) that signs decision tokens for the signer. Read from
    /// `AWX_POLICY_DECISION_KEY` or `decision_key_file` when not set here.
    pub decision_key_hex: Option<SecretString>,
    /// A file holding the decision key (64 hex characters).
    pub decision_key_file: Option<std::path::PathBuf>,
    /// How long a decision token lives.
    pub decision_lifetime_seconds: i64,
    /// How long to wait for the ledger and for the signer.
    pub upstream_timeout_ms: u64,
    /// A payment still authorizing after this long is swept and released.
    pub authorizing_timeout_seconds: u64,
    /// A payment waiting for approval longer than this expires.
    pub approval_ttl_seconds: u64,
    /// After an authorization's `validBefore`, how long before an uncaptured payment is expired
    /// and its hold released.
    pub expiry_grace_seconds: u64,
    /// The ledger hold outlives `validBefore` by this much (the sweeper releases it first).
    pub hold_margin_seconds: u64,
    /// `validAfter` is set this far in the past, for clock skew between us and the chain.
    pub valid_after_skew_seconds: u64,
    /// How often the sweeper runs.
    pub sweep_interval_ms: u64,
    /// The most URL patterns a policy or session may have.
    pub url_patterns_max: usize,
    /// The longest session.
    pub session_ttl_seconds_max: u64,
    /// Logs and traces.
    pub telemetry: TelemetrySettings,
}

impl Default for PolicySettings {
    fn default() -> Self {
        Self {
            ops_addr: "127.0.0.1:8083".into(),
            database: DatabaseSettings::default(),
            bus: awx_bus::BusConfig::new(SERVICE, SERVICE),
            tokens: Vec::new(),
            default_chain: "eip155:84532".into(),
            decision_key_hex: None,
            decision_key_file: None,
            decision_lifetime_seconds: 60,
            upstream_timeout_ms: 5_000,
            authorizing_timeout_seconds: 60,
            approval_ttl_seconds: 86_400,
            expiry_grace_seconds: 60,
            hold_margin_seconds: 900,
            valid_after_skew_seconds: 600,
            sweep_interval_ms: 2_000,
            url_patterns_max: 100,
            session_ttl_seconds_max: 30 * 86_400,
            telemetry: TelemetrySettings::default(),
        }
    }
}

impl Validate for PolicySettings {
    fn validate(&self) -> Result<(), String> {
        awx_x402::Network::parse_caip2(&self.default_chain)
            .map_err(|error| format!("default_chain: {error}"))?;
        if !(1..=awx_decision::LIFETIME_MAX_SECONDS).contains(&self.decision_lifetime_seconds) {
            return Err(format!(
                "decision_lifetime_seconds must be 1 to {}",
                awx_decision::LIFETIME_MAX_SECONDS
            ));
        }
        let positive = [
            ("upstream_timeout_ms", self.upstream_timeout_ms),
            ("authorizing_timeout_seconds", self.authorizing_timeout_seconds),
            ("approval_ttl_seconds", self.approval_ttl_seconds),
            ("sweep_interval_ms", self.sweep_interval_ms),
            ("session_ttl_seconds_max", self.session_ttl_seconds_max),
        ];
        for (name, value) in positive {
            if value == 0 {
                return Err(format!("{name} must be positive"));
            }
        }
        if self.decision_key_hex.is_some() && self.decision_key_file.is_some() {
            return Err("set decision_key_hex or decision_key_file, not both".into());
        }
        let mut bus = self.bus.clone();
        bus.service = SERVICE.to_owned();
        bus.schema = SERVICE.to_owned();
        bus.validate().map_err(|error| error.to_string())
    }
}

impl PolicySettings {
    /// The decision key: from the settings, `AWX_POLICY_DECISION_KEY`, or the key file.
    pub fn decision_key(&self) -> anyhow::Result<awx_decision::DecisionKey> {
        use anyhow::Context as _;
        use secrecy::ExposeSecret as _;
        let hex = if let Some(hex) = &self.decision_key_hex {
            hex.expose_secret().to_owned()
        } else if let Ok(hex) = std::env::var("AWX_POLICY_DECISION_KEY") {
            hex
        } else if let Some(file) = &self.decision_key_file {
            std::fs::read_to_string(file)
                .with_context(|| format!("reading the decision key file {}", file.display()))?
        } else {
            anyhow::bail!(
                "no decision key: set AWX_POLICY_DECISION_KEY, decision_key_hex or decision_key_file"
            );
        };
        awx_decision::DecisionKey::from_seed_hex(hex.trim())
            .map_err(|error| anyhow::anyhow!("the decision key: {error}"))
    }
}
