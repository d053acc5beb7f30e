//! The shared GCRA limiter against a real Redis: bursts, sustained rates, several limits at
//! once, and a refused request that costs no quota.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail by panicking"
)]

use std::time::Duration;

use awx_bus::ratelimit::{LimitSpec, SharedLimiter};
use awx_bus::{Bus, BusConfig};
use awx_test_support::RedisNamespace;

async fn limiter(namespace: &RedisNamespace) -> (Bus, SharedLimiter) {
    let mut config = BusConfig::new("ratelimit-test", "ratelimit_test");
    config.redis_url = secrecy::SecretString::from(awx_test_support::redis_url());
    config.prefix = namespace.prefix().to_owned();
    let bus = Bus::connect(config).await.unwrap();
    let limiter = SharedLimiter::new(&bus, Duration::from_secs(1)).unwrap();
    (bus, limiter)
}

#[tokio::test]
async fn a_burst_passes_at_once_and_then_the_rate() {
    let namespace = RedisNamespace::new();
    let (bus, limiter) = limiter(&namespace).await;
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

#[tokio::test]
async fn all_limits_must_conform_and_a_refusal_costs_nothing() {
    let namespace = RedisNamespace::new();
    let (bus, limiter) = limiter(&namespace).await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_redis_is_an_error_not_a_pass() {
    let mut server = awx_test_support::RedisServer::spawn();
    let namespace = RedisNamespace::on(&server.url());
    let mut config = BusConfig::new("ratelimit-test", "ratelimit_test");
    config.redis_url = secrecy::SecretString::from(server.url());
    config.prefix = namespace.prefix().to_owned();
    let bus = Bus::connect(config).await.unwrap();
    let limiter = SharedLimiter::new(&bus, Duration::from_millis(250)).unwrap();
    let spec =
        LimitSpec { key: SharedLimiter::key(&bus, "ping", "global"), per_second: 1, burst: 1 };
    assert!(limiter.check(std::slice::from_ref(&spec)).await.unwrap().allowed);
    tokio::task::block_in_place(|| server.stop());
    assert!(limiter.check(std::slice::from_ref(&spec)).await.is_err());
}
