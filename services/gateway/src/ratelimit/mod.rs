//! Rate limits: per (API key, action) and global per action, the same across every replica.
//!
//! Every authenticated request names an action (`keys.write`, `ping`, …; see `routes::action`).
//! Its limits come from `rate_limits` in the settings, with per-key overrides per account
//! (`gateway.accounts.rate_limits`, re-read at most every 5 s).
//!
//! 1. An in-process flood guard (`governor`) admits up to `flood_factor` times the per-key rate
//!    and sheds the rest without asking Redis, so a flood costs no Redis round trips.
//! 2. The shared limiter (`awx_bus::ratelimit`, GCRA) checks the per-key and global limits in one atomic Redis
//!    script: these are the limits that hold across replicas. It uses the bus's Redis settings
//!    (`bus.redis_url`, `bus.redis_mode`), so it works on a Redis Cluster too: both keys of an
//!    action carry the action as their hash tag (`<prefix>:rl:{<action>}:…`), one slot per action.
//! 3. If Redis is unreachable the gateway does not stop limiting: each replica enforces its share
//!    of each limit locally (`rate / replicas_expected`), and counts the fallback in
//!    `gateway_rate_limit_fallback_total`. After a failure it stays local for a second before
//!    asking Redis again, so a sick Redis does not add its timeout to every request.
//!
//! Answers carry `RateLimit-Policy` and `RateLimit` headers (IETF httpapi draft syntax:
//! `"per-key";q=40;w=2`, `"per-key";r=39;t=1`); a refusal is 429 with `Retry-After`.

use std::collections::{BTreeMap, HashMap};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use awx_types::AccountId;
use axum::http::{HeaderMap, HeaderValue};
use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};
use sqlx::PgPool;

use crate::auth::Principal;
use crate::config::{Rate, RateLimitSettings};
use crate::store;
use awx_bus::ratelimit::{LimitSpec, SharedLimiter};

/// How long the limiter stays local after Redis failed.
const REDIS_RETRY_AFTER: Duration = Duration::from_secs(1);

/// How long an account's overrides are cached.
const OVERRIDES_TTL: Duration = Duration::from_secs(5);

/// The state of one named limit, for the response headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyState {
    /// `per-key` or `global`.
    pub name: &'static str,
    /// The limit.
    pub rate: Rate,
    /// Requests that would still pass now.
    pub remaining: u64,
    /// Seconds until fully replenished.
    pub reset_seconds: u64,
}

/// The outcome of a rate-limit check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Whether the request may go on.
    pub allowed: bool,
    /// When refused, how long to wait.
    pub retry_after: Duration,
    /// The limits applied.
    pub policies: Vec<PolicyState>,
}

impl Outcome {
    /// Adds `RateLimit-Policy` and `RateLimit` (and `Retry-After` when refused).
    pub fn write_headers(&self, headers: &mut HeaderMap) {
        let policy = self
            .policies
            .iter()
            .map(|p| {
                let window =
                    u64::from(p.rate.burst).div_ceil(u64::from(p.rate.per_second.max(1))).max(1);
                format!("\"{}\";q={};w={window}", p.name, p.rate.burst)
            })
            .collect::<Vec<_>>()
            .join(", ");
        let state = self
            .policies
            .iter()
            .map(|p| format!("\"{}\";r={};t={}", p.name, p.remaining, p.reset_seconds))
            .collect::<Vec<_>>()
            .join(", ");
        if let Ok(value) = HeaderValue::from_str(&policy) {
            headers.insert("ratelimit-policy", value);
        }
        if let Ok(value) = HeaderValue::from_str(&state) {
            headers.insert("ratelimit", value);
        }
        if !self.allowed {
            let seconds = self.retry_after.as_secs_f64().ceil().max(1.0);
            headers.insert("retry-after", HeaderValue::from(seconds_u64(seconds)));
        }
    }
}

fn seconds_u64(seconds: f64) -> u64 {
    // Retry-After is whole seconds; the value is small and positive by construction.
    format!("{seconds:.0}").parse().unwrap_or(1)
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum LocalPurpose {
    Flood,
    FallbackKey,
    FallbackGlobal,
}

type LocalLimiter = DefaultKeyedRateLimiter<String>;

/// The gateway's rate limiter.
#[derive(Debug)]
pub struct RateLimiter {
    settings: RateLimitSettings,
    bus: awx_bus::Bus,
    shared: SharedLimiter,
    started: Instant,
    /// Milliseconds after `started` until which Redis is not asked (after a failure).
    local_until_ms: AtomicU64,
    local: Mutex<HashMap<(LocalPurpose, String, Rate), Arc<LocalLimiter>>>,
    overrides: moka::future::Cache<AccountId, Arc<BTreeMap<String, Rate>>>,
    pool: PgPool,
}

fn quota(rate: Rate) -> Quota {
    let per_second = NonZeroU32::new(rate.per_second.max(1)).unwrap_or(NonZeroU32::MIN);
    let burst = NonZeroU32::new(rate.burst.max(1)).unwrap_or(NonZeroU32::MIN);
    Quota::per_second(per_second).allow_burst(burst)
}

fn scaled(rate: Rate, factor: u32) -> Rate {
    Rate {
        per_second: rate.per_second.saturating_mul(factor),
        burst: rate.burst.saturating_mul(factor),
    }
}

fn shared_share(rate: Rate, replicas: u32) -> Rate {
    Rate {
        per_second: (rate.per_second / replicas.max(1)).max(1),
        burst: (rate.burst / replicas.max(1)).max(1),
    }
}

fn whole_seconds(duration: Duration) -> u64 {
    duration.as_secs() + u64::from(duration.subsec_nanos() > 0)
}

impl RateLimiter {
    /// A limiter using `shared` (Redis, on `bus`'s key prefix).
    pub fn new(
        settings: RateLimitSettings,
        bus: awx_bus::Bus,
        shared: SharedLimiter,
        pool: PgPool,
    ) -> Self {
        Self {
            settings,
            bus,
            shared,
            started: Instant::now(),
            local_until_ms: AtomicU64::new(0),
            local: Mutex::new(HashMap::new()),
            overrides: moka::future::Cache::builder().time_to_live(OVERRIDES_TTL).build(),
            pool,
        }
    }

    async fn per_key_rate(&self, account: AccountId, action: &str, default: Rate) -> Rate {
        let overrides = self
            .overrides
            .get_with(account, async {
                match store::account(&self.pool, account).await {
                    Ok(Some(row)) => Arc::new(parse_overrides(&row.rate_limits)),
                    Ok(None) => Arc::new(BTreeMap::new()),
                    Err(error) => {
                        tracing::warn!(error.message = %error, "cannot read rate-limit overrides; using defaults");
                        Arc::new(BTreeMap::new())
                    }
                }
            })
            .await;
        overrides.get(action).copied().unwrap_or(default)
    }

    fn local_check(
        &self,
        purpose: LocalPurpose,
        action: &str,
        rate: Rate,
        key: &str,
    ) -> Result<(), Duration> {
        let limiter = {
            let mut map = self.local.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            map.entry((purpose, action.to_owned(), rate))
                .or_insert_with(|| Arc::new(LocalLimiter::keyed(quota(rate))))
                .clone()
        };
        limiter
            .check_key(&key.to_owned())
            .map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now()))
    }

    /// Checks (and counts) one request of `principal` for `action`.
    pub async fn check(&self, principal: &Principal, action: &str) -> Outcome {
        let limits = self.settings.for_action(action);
        let per_key = self.per_key_rate(principal.account_id, action, limits.per_key).await;
        let key_id = principal.key_id.to_string();

        let flood_rate = scaled(per_key, self.settings.flood_factor);
        if let Err(wait) = self.local_check(LocalPurpose::Flood, action, flood_rate, &key_id) {
            metrics::counter!("gateway_rate_limited_total", "action" => action.to_owned(), "limit" => "flood")
                .increment(1);
            return Outcome {
                allowed: false,
                retry_after: wait,
                policies: vec![PolicyState {
                    name: "per-key",
                    rate: per_key,
                    remaining: 0,
                    reset_seconds: whole_seconds(wait),
                }],
            };
        }

        let now_ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        if now_ms < self.local_until_ms.load(Ordering::Relaxed) {
            metrics::counter!("gateway_rate_limit_fallback_total").increment(1);
            return self.fallback(action, per_key, limits.global, &key_id);
        }
        let specs = [
            LimitSpec {
                key: SharedLimiter::key(&self.bus, action, &format!("key:{key_id}")),
                per_second: per_key.per_second,
                burst: per_key.burst,
            },
            LimitSpec {
                key: SharedLimiter::key(&self.bus, action, "global"),
                per_second: limits.global.per_second,
                burst: limits.global.burst,
            },
        ];
        match self.shared.check(&specs).await {
            Ok(decision) => {
                let rates = [("per-key", per_key), ("global", limits.global)];
                let policies = rates
                    .iter()
                    .zip(&decision.limits)
                    .map(|(&(name, rate), state)| PolicyState {
                        name,
                        rate,
                        remaining: state.remaining,
                        reset_seconds: whole_seconds(state.reset),
                    })
                    .collect();
                if !decision.allowed {
                    metrics::counter!("gateway_rate_limited_total", "action" => action.to_owned(), "limit" => "shared")
                        .increment(1);
                }
                Outcome { allowed: decision.allowed, retry_after: decision.retry_after, policies }
            }
            Err(error) => {
                let retry_ms = u64::try_from(REDIS_RETRY_AFTER.as_millis()).unwrap_or(1_000);
                self.local_until_ms.store(now_ms.saturating_add(retry_ms), Ordering::Relaxed);
                tracing::warn!(error.message = %error, action, "Redis unreachable: rate limiting locally");
                metrics::counter!("gateway_rate_limit_fallback_total").increment(1);
                self.fallback(action, per_key, limits.global, &key_id)
            }
        }
    }

    /// Local limits when Redis is unreachable: this replica's share of each limit.
    fn fallback(&self, action: &str, per_key: Rate, global: Rate, key_id: &str) -> Outcome {
        let replicas = self.settings.replicas_expected;
        let key_share = shared_share(per_key, replicas);
        let global_share = shared_share(global, replicas);
        let verdict =
            self.local_check(LocalPurpose::FallbackKey, action, key_share, key_id).and_then(|()| {
                self.local_check(LocalPurpose::FallbackGlobal, action, global_share, "global")
            });
        let policies = vec![
            PolicyState { name: "per-key", rate: key_share, remaining: 0, reset_seconds: 0 },
            PolicyState { name: "global", rate: global_share, remaining: 0, reset_seconds: 0 },
        ];
        match verdict {
            Ok(()) => Outcome { allowed: true, retry_after: Duration::ZERO, policies },
            Err(wait) => Outcome { allowed: false, retry_after: wait, policies },
        }
    }
}

/// Reads `{"<action>": {"per_second": n, "burst": n}}`, skipping malformed entries.
fn parse_overrides(value: &serde_json::Value) -> BTreeMap<String, Rate> {
    let Some(object) = value.as_object() else { return BTreeMap::new() };
    object
        .iter()
        .filter_map(|(action, rate)| {
            let rate: Rate = serde_json::from_value(rate.clone()).ok()?;
            (rate.per_second > 0 && rate.burst > 0).then(|| (action.clone(), rate))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_follow_the_draft_syntax() {
        let outcome = Outcome {
            allowed: false,
            retry_after: Duration::from_millis(1_200),
            policies: vec![
                PolicyState {
                    name: "per-key",
                    rate: Rate { per_second: 20, burst: 40 },
                    remaining: 0,
                    reset_seconds: 2,
                },
                PolicyState {
                    name: "global",
                    rate: Rate { per_second: 50, burst: 10 },
                    remaining: 7,
                    reset_seconds: 1,
                },
            ],
        };
        let mut headers = HeaderMap::new();
        outcome.write_headers(&mut headers);
        assert_eq!(headers["ratelimit-policy"], "\"per-key\";q=40;w=2, \"global\";q=10;w=1");
        assert_eq!(headers["ratelimit"], "\"per-key\";r=0;t=2, \"global\";r=7;t=1");
        assert_eq!(headers["retry-after"], "2");
    }

    #[test]
    fn overrides_skip_malformed_entries() {
        let value = serde_json::json!({"ping": {"per_second": 5, "burst": 9}, "bad": {"per_second": 0, "burst": 1}, "worse": 3});
        let parsed = parse_overrides(&value);
        assert_eq!(parsed.len(), 1);
        assert_eq!(parsed["ping"], Rate { per_second: 5, burst: 9 });
    }
}
