//! Rate limits held across replicas by the shared limiter, and locally when Redis is down.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use awx_gateway::auth::key::Scope;
use awx_gateway::config::{ActionLimits, Rate};
use awx_test_support::RedisServer;

use crate::helpers::{Backing, TestApp, error_code};

/// Requests accepted and refused.
#[derive(Debug, Default)]
struct Tally {
    accepted: AtomicU64,
    refused: AtomicU64,
}

/// Sends `GET /api/v1/ping` as fast as `workers` loops per replica can for `duration`.
async fn hammer(
    replicas: &[&TestApp],
    keys: &[String],
    duration: Duration,
    workers: usize,
) -> Arc<Tally> {
    let tally = Arc::new(Tally::default());
    let deadline = tokio::time::Instant::now() + duration;
    let mut tasks = Vec::new();
    for (index, replica) in replicas.iter().enumerate() {
        for worker in 0..workers {
            let client = replica.client.clone();
            let url = replica.url("/api/v1/ping");
            let key = keys[(index + worker) % keys.len()].clone();
            let tally = tally.clone();
            tasks.push(tokio::spawn(async move {
                while tokio::time::Instant::now() < deadline {
                    let response = client.get(&url).header("x-api-key", &key).send().await.unwrap();
                    match response.status().as_u16() {
                        200 => tally.accepted.fetch_add(1, Ordering::Relaxed),
                        429 => {
                            assert!(response.headers().contains_key("retry-after"));
                            tally.refused.fetch_add(1, Ordering::Relaxed)
                        }
                        other => panic!("unexpected status {other}"),
                    };
                }
            }));
        }
    }
    for task in tasks {
        task.await.unwrap();
    }
    tally
}

fn ping_limits(per_key: Rate, global: Rate) -> impl FnOnce(&mut awx_gateway::GatewaySettings) {
    move |settings| {
        settings.rate_limits.actions.insert("ping".into(), ActionLimits { per_key, global });
    }
}

#[tokio::test]
async fn two_replicas_hold_a_global_limit_together() {
    let backing = Backing::new().await;
    let global = Rate { per_second: 50, burst: 10 };
    let generous = Rate { per_second: 10_000, burst: 10_000 };
    let a = TestApp::replica(&backing, ping_limits(generous, global)).await;
    let b = TestApp::replica(&backing, ping_limits(generous, global)).await;
    let (_, admin) = a.account("acme").await;
    let mut keys = Vec::new();
    for _ in 0..4 {
        keys.push(a.create_key(&admin, &[Scope::Agent]).await.1);
    }
    let tally = hammer(&[&a, &b], &keys, Duration::from_secs(3), 4).await;
    let accepted = tally.accepted.load(Ordering::Relaxed);
    let refused = tally.refused.load(Ordering::Relaxed);
    // GCRA admits the burst and then the rate: over 3 s at most 150 + 10.
    assert!(accepted <= 150 + 10, "accepted {accepted} > 160 (refused {refused})");
    assert!(accepted >= 120, "accepted only {accepted}: the limit should be nearly reached");
    assert!(refused > accepted, "the load ({refused} refused) must exceed the limit");
}

#[tokio::test]
async fn two_replicas_hold_a_per_key_limit_together() {
    let backing = Backing::new().await;
    let per_key = Rate { per_second: 20, burst: 5 };
    let generous = Rate { per_second: 10_000, burst: 10_000 };
    let a = TestApp::replica(&backing, ping_limits(per_key, generous)).await;
    let b = TestApp::replica(&backing, ping_limits(per_key, generous)).await;
    let (_, admin) = a.account("acme").await;
    let (_, one) = a.create_key(&admin, &[Scope::Agent]).await;
    let (_, other) = a.create_key(&admin, &[Scope::Agent]).await;
    let replicas = [&a, &b];
    let limited = hammer(&replicas, std::slice::from_ref(&one), Duration::from_secs(3), 3);
    let quiet = async {
        // Another key of the same account is not affected by the first key's load.
        tokio::time::sleep(Duration::from_millis(1_000)).await;
        a.get("/api/v1/ping", &other).await.status()
    };
    let (tally, other_status) = tokio::join!(limited, quiet);
    let accepted = tally.accepted.load(Ordering::Relaxed);
    assert!(accepted <= 60 + 5, "accepted {accepted} > 65");
    assert!(accepted >= 45, "accepted only {accepted}");
    assert_eq!(other_status, 200);

    // A 429 carries the draft headers and the envelope.
    let response = a.get("/api/v1/ping", &one).await;
    let policy = response.headers()["ratelimit-policy"].to_str().unwrap().to_owned();
    assert!(policy.contains("\"per-key\";q=5;w=1"), "{policy}");
    assert!(response.headers().contains_key("ratelimit"));
    if response.status() == 429 {
        assert_eq!(error_code(response).await.1, "rate_limited");
    }
}

#[tokio::test]
async fn account_overrides_change_the_per_key_limit() {
    let backing = Backing::new().await;
    let app = TestApp::replica(
        &backing,
        ping_limits(Rate { per_second: 1, burst: 2 }, Rate { per_second: 10_000, burst: 10_000 }),
    )
    .await;
    let (account, admin) = app.account("acme").await;
    let (_, key) = app.create_key(&admin, &[Scope::Agent]).await;
    let statuses: Vec<u16> =
        futures::future::join_all((0..6).map(|_| app.get("/api/v1/ping", &key)))
            .await
            .iter()
            .map(|r| r.status().as_u16())
            .collect();
    assert_eq!(statuses.iter().filter(|&&s| s == 200).count(), 2, "{statuses:?}");

    awx_gateway::store::set_account_rate_limits(
        &app.state.pool,
        awx_types::AccountId::parse(&account).unwrap(),
        &serde_json::json!({"ping": {"per_second": 100, "burst": 50}}),
    )
    .await
    .unwrap();
    // Overrides are re-read within 5 s.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(8);
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let (_, fresh) = app.create_key(&admin, &[Scope::Agent]).await;
        let responses =
            futures::future::join_all((0..20).map(|_| app.get("/api/v1/ping", &fresh))).await;
        if responses.iter().all(|r| r.status() == 200) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the override never applied");
    }
}

#[tokio::test]
async fn with_redis_down_the_gateway_limits_locally_and_never_unlimited() {
    let mut redis = RedisServer::spawn();
    let backing = Backing::with_redis(redis.url()).await;
    let per_key = Rate { per_second: 10, burst: 5 };
    let app = TestApp::replica(&backing, |settings| {
        ping_limits(per_key, Rate { per_second: 10_000, burst: 10_000 })(settings);
        settings.rate_limits.replicas_expected = 1;
    })
    .await;
    let (_, admin) = app.account("acme").await;
    let (_, key) = app.create_key(&admin, &[Scope::Agent]).await;
    redis.stop();
    let tally = hammer(&[&app], &[key], Duration::from_secs(2), 3).await;
    let accepted = tally.accepted.load(Ordering::Relaxed);
    assert!(accepted <= 20 + 5, "accepted {accepted} with Redis down");
    assert!(accepted >= 10, "accepted only {accepted} with Redis down");
    assert!(tally.refused.load(Ordering::Relaxed) > 0);
}
