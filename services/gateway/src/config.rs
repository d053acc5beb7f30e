//! The gateway's settings: `Default` gives local-development values; deployments override them
//! with `deploy/config/gateway.toml` and `AWX_GATEWAY__…` environment variables
//! (see `awx_service_kit::config`).

use std::collections::BTreeMap;
use std::time::Duration;

use awx_service_kit::config::Validate;
use awx_service_kit::db::DatabaseSettings;
use awx_service_kit::telemetry::TelemetrySettings;
use serde::Deserialize;

/// Everything the gateway can be configured with.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GatewaySettings {
    /// The HTTP listener.
    pub http: HttpSettings,
    /// Postgres.
    pub database: DatabaseSettings,
    /// Redis and the bus (`bus.redis_url`, `bus.prefix`, …; the service and schema are the
    /// gateway's own).
    pub bus: awx_bus::BusConfig,
    /// API key authentication.
    pub auth: AuthSettings,
    /// Rate limits.
    pub rate_limits: RateLimitSettings,
    /// `Idempotency-Key` handling.
    pub idempotency: IdempotencySettings,
    /// Logs and traces.
    pub telemetry: TelemetrySettings,
    /// Tokens beyond the built-in USDC registry (the development chain's token, say).
    pub tokens: Vec<awx_x402::TokenInfo>,
    /// How long the gateway waits for another service's answer.
    pub upstream_timeout_ms: u64,
    /// How long a settle may take (it waits for a receipt on chain).
    pub settle_timeout_ms: u64,
    /// Requests the gateway makes to URLs agents name (x402 challenges).
    pub outbound: OutboundSettings,
}

impl Default for GatewaySettings {
    fn default() -> Self {
        Self {
            http: HttpSettings::default(),
            database: DatabaseSettings::default(),
            bus: awx_bus::BusConfig::new(SERVICE, SERVICE),
            auth: AuthSettings::default(),
            rate_limits: RateLimitSettings::default(),
            idempotency: IdempotencySettings::default(),
            telemetry: TelemetrySettings::default(),
            tokens: Vec::new(),
            upstream_timeout_ms: 10_000,
            settle_timeout_ms: 45_000,
            outbound: OutboundSettings::default(),
        }
    }
}

impl GatewaySettings {
    /// The route that may wait longest for other services and the target, and that wait in
    /// milliseconds (each wait includes the bus's `reply_grace_ms`): a settle waits
    /// `settle_timeout_ms`; a payment fetches the challenge (`outbound.timeout_ms`) and then
    /// waits twice `upstream_timeout_ms` (the policy service waits for the ledger and the
    /// signer in turn).
    pub fn longest_wait_ms(&self) -> (&'static str, u64) {
        let grace = self.bus.reply_grace_ms;
        let settle = self.settle_timeout_ms.saturating_add(grace);
        let pay = self
            .outbound
            .timeout_ms
            .saturating_add(self.upstream_timeout_ms.saturating_mul(2))
            .saturating_add(grace);
        if settle >= pay {
            ("settle (settle_timeout_ms)", settle)
        } else {
            ("pay (outbound.timeout_ms + 2 x upstream_timeout_ms)", pay)
        }
    }

    /// The token registry: the built-in USDC tokens and the configured ones.
    pub fn registry(&self) -> Result<awx_x402::TokenRegistry, String> {
        let mut registry = awx_x402::TokenRegistry::builtin();
        for token in &self.tokens {
            registry.register(token.clone()).map_err(|error| error.to_string())?;
        }
        Ok(registry)
    }
}

/// The gateway's service name on the bus, and its Postgres schema.
pub const SERVICE: &str = "gateway";

/// The HTTP listener and its limits.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpSettings {
    /// The address to listen on (`127.0.0.1:8080`; port 0 picks a free port).
    pub addr: String,
    /// The largest request body accepted.
    pub body_bytes_max: usize,
    /// The most bytes all request headers together may take.
    pub header_bytes_max: usize,
    /// How long a request may take before it is answered 504 `timeout`. It must be above the
    /// longest wait of a route (see [`GatewaySettings::longest_wait_ms`]: 45.25 s for a settle
    /// with the defaults), so that every route answers how its work ended before this fires.
    pub request_timeout_ms: u64,
    /// How long shutdown waits for in-flight requests.
    pub shutdown_grace_ms: u64,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            addr: "127.0.0.1:8080".into(),
            body_bytes_max: 64 * 1024,
            header_bytes_max: 16 * 1024,
            request_timeout_ms: 60_000,
            shutdown_grace_ms: 10_000,
        }
    }
}

/// API key authentication.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthSettings {
    /// argon2id memory cost in KiB (OWASP: 19456).
    pub argon2_memory_kib: u32,
    /// argon2id iterations (OWASP: 2).
    pub argon2_iterations: u32,
    /// argon2id lanes.
    pub argon2_parallelism: u32,
    /// How many argon2 verifications may run at once in this replica; more wait briefly, then
    /// get 503. Bounds the CPU bad keys can burn.
    pub argon2_concurrency_max: usize,
    /// How long a verified key is remembered (only its keyed hash is kept).
    pub cache_ttl_seconds: u64,
    /// How stale a remembered key's revocation state may get: the bound within which a
    /// revocation reaches every replica.
    pub revocation_check_seconds: u64,
    /// Wrong secrets allowed per key id per minute before further attempts are refused without
    /// running argon2.
    pub failed_attempts_per_minute_max: u32,
}

impl Default for AuthSettings {
    fn default() -> Self {
        Self {
            argon2_memory_kib: 19_456,
            argon2_iterations: 2,
            argon2_parallelism: 1,
            argon2_concurrency_max: 2,
            cache_ttl_seconds: 300,
            revocation_check_seconds: 5,
            failed_attempts_per_minute_max: 10,
        }
    }
}

impl AuthSettings {
    /// The revocation bound.
    pub fn revocation_check(&self) -> Duration {
        Duration::from_secs(self.revocation_check_seconds)
    }
}

/// One rate: a sustained number of requests per second and the burst allowed at once.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, serde::Serialize, utoipa::ToSchema,
)]
#[serde(deny_unknown_fields)]
pub struct Rate {
    /// Sustained requests per second.
    pub per_second: u32,
    /// Requests allowed at once (at least 1).
    pub burst: u32,
}

/// The limits of one action: per API key, and across all keys and replicas.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionLimits {
    /// Per API key.
    pub per_key: Rate,
    /// Across every key and replica.
    pub global: Rate,
}

/// The limits of each Gate envelope action.
pub const GATE_LIMITS: ActionLimits = ActionLimits {
    per_key: Rate { per_second: 1, burst: 1 },
    global: Rate { per_second: 50, burst: 50 },
};

/// Rate limits by action, with a default for actions not listed.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimitSettings {
    /// Limits of actions without their own entry.
    pub default: ActionLimits,
    /// Limits by action name (`keys.write`, `x402.verify`, …).
    pub actions: BTreeMap<String, ActionLimits>,
    /// How many replicas share the limits; when Redis is unreachable each replica enforces its
    /// share (limit / replicas) locally, so the platform-wide limit still roughly holds.
    pub replicas_expected: u32,
    /// The in-process flood guard in front of Redis admits this many times the per-key rate
    /// before shedding without asking Redis.
    pub flood_factor: u32,
}

impl Default for RateLimitSettings {
    fn default() -> Self {
        Self {
            default: ActionLimits {
                per_key: Rate { per_second: 20, burst: 40 },
                global: Rate { per_second: 2_000, burst: 4_000 },
            },
            actions: BTreeMap::from([
                (
                    "keys.write".to_owned(),
                    ActionLimits {
                        per_key: Rate { per_second: 2, burst: 10 },
                        global: Rate { per_second: 200, burst: 400 },
                    },
                ),
                // Money leaving the platform: an admin's occasional action.
                (
                    "withdrawals.write".to_owned(),
                    ActionLimits {
                        per_key: Rate { per_second: 2, burst: 10 },
                        global: Rate { per_second: 200, burst: 400 },
                    },
                ),
                // An agent pays once per paid request it makes; bursts of parallel calls are
                // normal for agents.
                (
                    "x402.pay".to_owned(),
                    ActionLimits {
                        per_key: Rate { per_second: 100, burst: 250 },
                        global: Rate { per_second: 4_000, burst: 8_000 },
                    },
                ),
                // A provider's server verifies and settles once per paid request it serves.
                (
                    "facilitator.write".to_owned(),
                    ActionLimits {
                        per_key: Rate { per_second: 200, burst: 400 },
                        global: Rate { per_second: 4_000, burst: 8_000 },
                    },
                ),
                // Gate's published limits for its action envelope: 1 request/s per key per
                // action, 50/s per action across everyone.
                ("gate.x402.supported".to_owned(), GATE_LIMITS),
                ("gate.x402.verify".to_owned(), GATE_LIMITS),
                ("gate.x402.settle".to_owned(), GATE_LIMITS),
                // Each check fetches a URL on the internet (up to `outbound.timeout_ms`).
                (
                    "x402.check".to_owned(),
                    ActionLimits {
                        per_key: Rate { per_second: 5, burst: 20 },
                        global: Rate { per_second: 500, burst: 1_000 },
                    },
                ),
            ]),
            replicas_expected: 1,
            flood_factor: 4,
        }
    }
}

impl RateLimitSettings {
    /// The configured limits of `action`.
    pub fn for_action(&self, action: &str) -> ActionLimits {
        self.actions.get(action).copied().unwrap_or(self.default)
    }
}

/// `Idempotency-Key` handling.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IdempotencySettings {
    /// How long a stored response is replayed.
    pub retention_hours: u32,
    /// How long an in-progress request holds its key before another may take over.
    pub lease_seconds: u32,
    /// How long a concurrent duplicate waits for the first request's response.
    pub wait_ms: u64,
}

impl Default for IdempotencySettings {
    fn default() -> Self {
        Self { retention_hours: 24, lease_seconds: 60, wait_ms: 30_000 }
    }
}

/// Requests to URLs agents name: the SSRF guard and the limits of each fetch
/// (see [`crate::outbound`]).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OutboundSettings {
    /// Development only: allow loopback and private addresses (and the other non-public
    /// ranges, except unspecified, broadcast and multicast addresses), so a provider running
    /// on the same machine can be checked and paid. Never set this in a deployment: agents
    /// could then make the gateway reach internal services and the cloud metadata address.
    pub allow_private_targets: bool,
    /// The time limit of one fetch, redirects and the whole body included.
    pub timeout_ms: u64,
    /// The largest response body read; a larger one fails the fetch.
    pub body_bytes_max: usize,
    /// How many redirects one fetch follows.
    pub redirects_max: u32,
}

impl Default for OutboundSettings {
    fn default() -> Self {
        Self {
            allow_private_targets: false,
            timeout_ms: 5_000,
            body_bytes_max: 256 * 1024,
            redirects_max: 3,
        }
    }
}

/// The most redirects `outbound.redirects_max` may allow.
pub const OUTBOUND_REDIRECTS_MAX: u32 = 10;

/// The largest `outbound.body_bytes_max`.
pub const OUTBOUND_BODY_BYTES_MAX: usize = 16 * 1024 * 1024;

fn check_rate(name: &str, rate: Rate) -> Result<(), String> {
    if rate.per_second == 0 || rate.burst == 0 {
        return Err(format!("{name}: per_second and burst must be at least 1"));
    }
    Ok(())
}

impl Validate for GatewaySettings {
    fn validate(&self) -> Result<(), String> {
        if self.http.body_bytes_max == 0 || self.http.header_bytes_max < 1024 {
            return Err(
                "http.body_bytes_max must be positive and http.header_bytes_max at least 1024"
                    .into(),
            );
        }
        if self.auth.argon2_concurrency_max == 0 || self.auth.revocation_check_seconds == 0 {
            return Err(
                "auth.argon2_concurrency_max and auth.revocation_check_seconds must be positive"
                    .into(),
            );
        }
        if self.rate_limits.replicas_expected == 0 || self.rate_limits.flood_factor == 0 {
            return Err(
                "rate_limits.replicas_expected and rate_limits.flood_factor must be positive"
                    .into(),
            );
        }
        check_rate("rate_limits.default.per_key", self.rate_limits.default.per_key)?;
        check_rate("rate_limits.default.global", self.rate_limits.default.global)?;
        for (action, limits) in &self.rate_limits.actions {
            check_rate(&format!("rate_limits.actions.{action}.per_key"), limits.per_key)?;
            check_rate(&format!("rate_limits.actions.{action}.global"), limits.global)?;
        }
        // The bus identity is fixed to the gateway's own (App::build sets it), whatever a file or
        // the environment left in `bus.service` and `bus.schema`.
        let mut bus = self.bus.clone();
        bus.service = SERVICE.to_owned();
        bus.schema = SERVICE.to_owned();
        bus.validate().map_err(|error| error.to_string())?;
        self.registry()?;
        if self.upstream_timeout_ms == 0 {
            return Err("upstream_timeout_ms must be positive".into());
        }
        if self.idempotency.retention_hours == 0 || self.idempotency.lease_seconds == 0 {
            return Err(
                "idempotency.retention_hours and idempotency.lease_seconds must be positive".into(),
            );
        }
        let outbound = &self.outbound;
        if outbound.timeout_ms == 0 || outbound.timeout_ms >= self.http.request_timeout_ms {
            return Err(format!(
                "outbound.timeout_ms must be positive and below http.request_timeout_ms ({})",
                self.http.request_timeout_ms
            ));
        }
        if self.settle_timeout_ms == 0 {
            return Err("settle_timeout_ms must be positive".into());
        }
        // A route's own wait must end before the request's: otherwise the client gets a bare
        // 504 while the settle (or the payment) goes on, and never learns how it ended.
        let (route, wait_ms) = self.longest_wait_ms();
        if wait_ms >= self.http.request_timeout_ms {
            return Err(format!(
                "http.request_timeout_ms ({}) must be above the longest wait of a route: {route} \
                 takes up to {wait_ms} ms",
                self.http.request_timeout_ms
            ));
        }
        if outbound.body_bytes_max == 0 || outbound.body_bytes_max > OUTBOUND_BODY_BYTES_MAX {
            return Err(format!(
                "outbound.body_bytes_max must be between 1 and {OUTBOUND_BODY_BYTES_MAX}"
            ));
        }
        if outbound.redirects_max > OUTBOUND_REDIRECTS_MAX {
            return Err(format!("outbound.redirects_max must be at most {OUTBOUND_REDIRECTS_MAX}"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partial_bus_section_keeps_the_gateway_identity() {
        let settings: GatewaySettings =
            serde_json::from_value(serde_json::json!({"bus": {"prefix": "bench"}})).unwrap();
        assert_eq!(settings.bus.prefix, "bench");
        assert!(settings.validate().is_ok());
        let defaults = GatewaySettings::default();
        assert_eq!(defaults.bus.service, SERVICE);
        assert!(defaults.validate().is_ok());
    }

    #[test]
    fn outbound_settings_are_checked() {
        let defaults = GatewaySettings::default();
        assert!(!defaults.outbound.allow_private_targets);
        assert_eq!(defaults.outbound.timeout_ms, 5_000);
        assert_eq!(defaults.outbound.body_bytes_max, 256 * 1024);
        assert_eq!(defaults.outbound.redirects_max, 3);
        let settings: GatewaySettings = serde_json::from_value(serde_json::json!({
            "outbound": {"allow_private_targets": true, "redirects_max": 0}
        }))
        .unwrap();
        assert!(settings.outbound.allow_private_targets);
        assert_eq!(settings.outbound.timeout_ms, 5_000);
        assert!(settings.validate().is_ok());
        for bad in [
            serde_json::json!({"outbound": {"timeout_ms": 0}}),
            serde_json::json!({"outbound": {"timeout_ms": 60_000}}),
            serde_json::json!({"outbound": {"body_bytes_max": 0}}),
            serde_json::json!({"outbound": {"redirects_max": 11}}),
        ] {
            let settings: GatewaySettings = serde_json::from_value(bad.clone()).unwrap();
            assert!(settings.validate().is_err(), "{bad}");
        }
        let unknown = serde_json::from_value::<GatewaySettings>(
            serde_json::json!({"outbound": {"allow_private": true}}),
        );
        assert!(unknown.is_err());
    }

    /// A settle that may outlast its request would be answered 504 while it goes on.
    #[test]
    fn every_route_answers_before_the_request_timeout() {
        let defaults = GatewaySettings::default();
        assert_eq!(defaults.longest_wait_ms(), ("settle (settle_timeout_ms)", 45_250));
        assert!(defaults.http.request_timeout_ms > defaults.longest_wait_ms().1);
        for (bad, names) in [
            (serde_json::json!({"http": {"request_timeout_ms": 30_000}}), "settle"),
            (serde_json::json!({"settle_timeout_ms": 1_000, "upstream_timeout_ms": 30_000}), "pay"),
        ] {
            let settings: GatewaySettings = serde_json::from_value(bad.clone()).unwrap();
            let error = settings.validate().unwrap_err();
            assert!(error.contains("request_timeout_ms") && error.contains(names), "{error}");
        }
        let settings: GatewaySettings = serde_json::from_value(serde_json::json!({
            "http": {"request_timeout_ms": 30_000}, "settle_timeout_ms": 20_000
        }))
        .unwrap();
        assert!(settings.validate().is_ok());
    }
}
