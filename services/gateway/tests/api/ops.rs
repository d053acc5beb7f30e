//! Operations endpoints: health and metrics.

use awx_test_support::RedisServer;
use serde_json::Value;

use crate::helpers::{Backing, TestApp};

#[tokio::test]
async fn readiness_checks_postgres_and_redis() {
    let mut redis = RedisServer::spawn();
    let backing = Backing::with_redis(redis.url()).await;
    let app = TestApp::replica(&backing, |_| {}).await;
    assert_eq!(app.client.get(app.url("/health/live")).send().await.unwrap().status(), 200);
    let ready = app.client.get(app.url("/health/ready")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    let body: Value = ready.json().await.unwrap();
    assert_eq!(body["checks"]["postgres"]["status"], "ok");
    assert_eq!(body["checks"]["redis"]["status"], "ok");

    redis.stop();
    let ready = app.client.get(app.url("/health/ready")).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    let body: Value = ready.json().await.unwrap();
    assert_eq!(body["checks"]["redis"]["status"], "failing");
    assert_eq!(body["checks"]["postgres"]["status"], "ok");
    // Liveness does not depend on Redis.
    assert_eq!(app.client.get(app.url("/health/live")).send().await.unwrap().status(), 200);

    redis.start();
    let mut recovered = false;
    for _ in 0..50 {
        if app.client.get(app.url("/health/ready")).send().await.unwrap().status() == 200 {
            recovered = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(recovered, "readiness did not recover with Redis back");
}

#[tokio::test]
async fn metrics_count_requests_by_route() {
    let app = TestApp::spawn().await;
    let (_, admin) = app.account("acme").await;
    for _ in 0..3 {
        assert_eq!(app.get("/api/v1/ping", &admin).await.status(), 200);
    }
    let text = app.client.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    let line = text
        .lines()
        .find(|line| {
            line.starts_with("http_requests_total")
                && line.contains("route=\"/api/v1/ping\"")
                && line.contains("status=\"200\"")
        })
        .unwrap_or_else(|| panic!("no ping counter in:\n{text}"));
    let count: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(count >= 3.0, "{line}");
    assert!(text.contains("http_request_duration_seconds"));
}
