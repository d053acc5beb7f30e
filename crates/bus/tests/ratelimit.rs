//! The shared GCRA limiter against a real Redis: bursts, sustained rates, several limits at
//! once, and a refused request that costs no quota. Each test runs on a Redis server
//! (`single::…`) and on a three-node Redis Cluster (`cluster::…`), where the limits of one
//! scope share a hash tag, as the multi-key script needs.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail by panicking"
)]

#[macro_use]
mod common;

use std::time::Duration;

use awx_bus::ratelimit::{LimitSpec, SharedLimiter};
use awx_bus::{Bus, BusConfig};
use common::{PrivateRedis, Probe, TestRedis, Topology};

/// A bus configuration of the limiter's tests on `redis`, under `prefix`.
fn limiter_config(redis: &Probe, prefix: &str) -> BusConfig {
    let base = redis.config(prefix);
    BusConfig {
        redis_url: base.redis_url,
        redis_mode: base.redis_mode,
        prefix: base.prefix,
        ..BusConfig::new("ratelimit-test", "ratelimit_test")
    }
}

async fn limiter(redis: &TestRedis) -> (Bus, SharedLimiter) {
    let bus = Bus::connect(limiter_config(redis, redis.prefix())).await.unwrap();
    let limiter = SharedLimiter::new(&bus, Duration::from_secs(1)).unwrap();
    (bus, limiter)
}

async fn a_burst_passes_at_once_and_then_the_rate(topology: Topology) {
    let redis = TestRedis::new(topology).await;
    let (bus, limiter) = limiter(&redis).await;
    let spec =
        LimitSpec { key: SharedLimiter::key(&bus, "ping", "global"), per_second: 10, burst: 5 };
    let mut remaining = Vec::new();
    for _ in 0..5 {
        let decision = limiter.check(std::slice::from_ref(&spec)).await.unwrap();
        assert!(decision.allowed);
        remaining.push(decision.limits[0].remaining);
    }
    assert_eq!(remaining, vec![4, 3, 2, 1, 0]);
    let refused = limiter.check(std::slice::from_ref(&spec)).await.unwrap();
    assert!(!refused.allowed);
    // One emission interval (100 ms) at most, minus the time the checks took.
    assert!(refused.retry_after <= Duration::from_millis(100), "{:?}", refused.retry_after);
    assert!(refused.retry_after > Duration::ZERO);
    tokio::time::sleep(refused.retry_after + Duration::from_millis(5)).await;
    assert!(limiter.check(std::slice::from_ref(&spec)).await.unwrap().allowed);
}

async fn all_limits_must_conform_and_a_refusal_costs_nothing(topology: Topology) {
    let redis = TestRedis::new(topology).await;
    let (bus, limiter) = limiter(&redis).await;
    let tight =
        LimitSpec { key: SharedLimiter::key(&bus, "pay", "key:a"), per_second: 1, burst: 1 };
    let loose =
        LimitSpec { key: SharedLimiter::key(&bus, "pay", "global"), per_second: 1, burst: 3 };
    assert!(limiter.check(&[tight.clone(), loose.clone()]).await.unwrap().allowed);
    // The tight limit refuses the next two; the loose one is not charged for them.
    for _ in 0..2 {
        assert!(!limiter.check(&[tight.clone(), loose.clone()]).await.unwrap().allowed);
    }
    let alone = limiter.check(std::slice::from_ref(&loose)).await.unwrap();
    assert!(alone.allowed);
    assert_eq!(alone.limits[0].remaining, 1, "only two of the loose limit's three were used");
}

async fn an_unreachable_redis_is_an_error_not_a_pass(topology: Topology) {
    let mut server =
        tokio::task::spawn_blocking(move || PrivateRedis::start(topology)).await.unwrap();
    let bus = Bus::connect(limiter_config(&server.probe(), "ratelimit")).await.unwrap();
    let limiter = SharedLimiter::new(&bus, Duration::from_millis(250)).unwrap();
    let spec =
        LimitSpec { key: SharedLimiter::key(&bus, "ping", "global"), per_second: 1, burst: 1 };
    assert!(limiter.check(std::slice::from_ref(&spec)).await.unwrap().allowed);
    tokio::task::block_in_place(|| server.stop());
    assert!(limiter.check(std::slice::from_ref(&spec)).await.is_err());
}

on_both_topologies!(
    a_burst_passes_at_once_and_then_the_rate,
    all_limits_must_conform_and_a_refusal_costs_nothing,
    an_unreachable_redis_is_an_error_not_a_pass,
);
