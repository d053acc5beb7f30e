//! Rate limiting shared by every replica: GCRA over several limits at once, in one atomic Redis
//! script. It lives here because this crate is the one home of Redis; the gateway decides what
//! to limit and what to do when Redis is unreachable.
//!
//! GCRA (the generic cell rate algorithm) keeps one number per limit, the theoretical arrival
//! time (TAT) of the next request. With emission interval `T = 1 / rate` and burst `B`, a
//! request at `now` conforms when `max(TAT, now) <= now + T * (B - 1)`; if it does,
//! `TAT = max(TAT, now) + T`. So `B` requests pass at once and `rate` per second after: over any
//! window of `w` seconds at most `B + rate * w` pass. The script checks every limit of a request
//! (per key and global) and updates them only if all conform, so a refused request costs no
//! quota. Time is Redis's own clock (`TIME`), the same for every replica.
//!
//! Keys share a hash tag (`{<action>}`), so with Redis Cluster all limits of an action live in
//! one slot, as a multi-key script requires.

use std::time::Duration;

use redis::Script;

use crate::connection::RedisConn;
use crate::{Bus, BusError};

/// One limit to check: a Redis key and its rate.
#[derive(Debug, Clone)]
pub struct LimitSpec {
    /// The Redis key holding this limit's TAT.
    pub key: String,
    /// Sustained requests per second.
    pub per_second: u32,
    /// Requests allowed at once.
    pub burst: u32,
}

/// The state of one limit after a check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitState {
    /// Requests that would still pass right now.
    pub remaining: u64,
    /// Time until the limit is fully replenished.
    pub reset: Duration,
}

/// The outcome of a check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedDecision {
    /// Whether the request conforms to every limit.
    pub allowed: bool,
    /// When refused, how long until it would conform.
    pub retry_after: Duration,
    /// Each limit's state, in the order given.
    pub limits: Vec<LimitState>,
}

const SCRIPT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local allowed = 1
local retry_after = 0
local tats = {}
for i = 1, #KEYS do
  local emission = tonumber(ARGV[2 * i - 1])
  local tolerance = tonumber(ARGV[2 * i])
  local tat = tonumber(redis.call('GET', KEYS[i]) or now)
  if tat < now then tat = now end
  tats[i] = tat
  if tat > now + tolerance then
    allowed = 0
    local wait = tat - tolerance - now
    if wait > retry_after then retry_after = wait end
  end
end
local out = {allowed, retry_after}
for i = 1, #KEYS do
  local emission = tonumber(ARGV[2 * i - 1])
  local tolerance = tonumber(ARGV[2 * i])
  local tat = tats[i]
  if allowed == 1 then
    tat = tat + emission
    redis.call('SET', KEYS[i], string.format('%.0f', tat), 'PX', math.ceil((tat - now) / 1000) + 1)
  end
  local remaining = math.floor((now + tolerance - tat) / emission) + 1
  if remaining < 0 then remaining = 0 end
  out[#out + 1] = remaining
  out[#out + 1] = tat - now
end
return out
";

/// Runs the GCRA script against Redis.
#[derive(Clone)]
pub struct SharedLimiter {
    connection: RedisConn,
    script: Script,
}

impl std::fmt::Debug for SharedLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedLimiter").finish_non_exhaustive()
    }
}

impl SharedLimiter {
    /// A limiter on the bus's Redis, with a connection of its own whose answers are awaited at
    /// most `response_timeout` (short: a limiter that waits on a sick Redis slows every request).
    pub fn new(bus: &Bus, response_timeout: Duration) -> Result<Self, BusError> {
        Ok(Self {
            connection: bus.connection_with_timeout(response_timeout)?,
            script: Script::new(SCRIPT),
        })
    }

    /// The key of a limit: `<prefix>:rl:{<scope>}:<name>`. The braces make `scope` the Redis
    /// Cluster hash tag, so every limit of one scope lives in one slot.
    pub fn key(bus: &Bus, scope: &str, name: &str) -> String {
        bus.keys().rate_limit(scope, name)
    }

    /// Checks, and if all conform counts, one request against every limit in `limits`.
    pub async fn check(&self, limits: &[LimitSpec]) -> Result<SharedDecision, BusError> {
        let mut invocation = self.script.prepare_invoke();
        for limit in limits {
            let emission_us = 1_000_000u64 / u64::from(limit.per_second.max(1));
            let tolerance_us =
                emission_us.saturating_mul(u64::from(limit.burst.max(1)).saturating_sub(1));
            invocation.key(&limit.key).arg(emission_us).arg(tolerance_us);
        }
        let mut connection = self.connection.clone();
        let raw: Vec<i64> =
            invocation.invoke_async(&mut connection).await.map_err(BusError::from)?;
        let number = |index: usize| raw.get(index).copied().unwrap_or(0).max(0).unsigned_abs();
        let limits = (0..limits.len())
            .map(|i| LimitState {
                remaining: number(2 + 2 * i),
                reset: Duration::from_micros(number(3 + 2 * i)),
            })
            .collect();
        Ok(SharedDecision {
            allowed: number(0) == 1,
            retry_after: Duration::from_micros(number(1)),
            limits,
        })
    }
}
