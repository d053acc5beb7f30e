//! What every policy operation shares: the database, the bus, the settings, the token registry
//! and the decision key.

use std::time::Duration;

use awx_decision::DecisionKey;
use awx_x402::TokenRegistry;
use sqlx::PgPool;

use crate::config::PolicySettings;

/// The policy service's state.
pub struct Engine {
    /// The service's own transactions (the bus's inbox has a pool of its own).
    pub pool: PgPool,
    /// To reach the ledger and the signer.
    pub bus: awx_bus::Bus,
    /// The settings.
    pub settings: PolicySettings,
    /// The tokens the platform can pay with.
    pub registry: TokenRegistry,
    /// Signs decision tokens for the signer.
    pub decision_key: DecisionKey,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").field("decision_key", &self.decision_key).finish_non_exhaustive()
    }
}

impl Engine {
    /// How long to wait for the ledger or the signer.
    pub fn upstream_timeout(&self) -> Duration {
        Duration::from_millis(self.settings.upstream_timeout_ms)
    }
}

/// Now, in Unix seconds.
pub fn now_unix() -> i64 {
    chrono::Utc::now().timestamp()
}
