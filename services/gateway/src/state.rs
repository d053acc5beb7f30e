//! What every request handler shares.

use sqlx::PgPool;

use crate::auth::Authenticator;
use crate::config::GatewaySettings;
use crate::outbound::Outbound;
use crate::ratelimit::RateLimiter;

/// The gateway's shared state.
#[derive(Debug)]
pub struct AppState {
    /// The settings.
    pub settings: GatewaySettings,
    /// Postgres.
    pub pool: PgPool,
    /// API key authentication.
    pub authenticator: Authenticator,
    /// Rate limits.
    pub rate_limiter: RateLimiter,
    /// The bus (Redis).
    pub bus: awx_bus::Bus,
    /// The tokens the platform knows.
    pub registry: awx_x402::TokenRegistry,
    /// The guarded client for URLs agents name (built once; its connections are pooled).
    pub outbound: Outbound,
    /// The authorizations our agents were issued, as announced (answers their verifies).
    pub issued: awx_api::issued::IssuedMemory,
}
