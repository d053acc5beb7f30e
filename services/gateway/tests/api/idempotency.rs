//! `Idempotency-Key` with Stripe's semantics.

use serde_json::{Value, json};

use crate::helpers::{TestApp, error_code};

async fn key_count(app: &TestApp) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM gateway.api_keys")
        .fetch_one(&app.state.pool)
        .await
        .unwrap()
}

async fn create(
    app: &TestApp,
    admin: &str,
    idempotency_key: &str,
    name: &str,
) -> reqwest::Response {
    app.client
        .post(app.url("/api/v1/keys"))
        .header("x-api-key", admin)
        .header("idempotency-key", idempotency_key)
        .json(&json!({"name": name, "scopes": ["agent"]}))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn the_same_key_and_body_execute_once_and_replay_the_answer() {
    let app = TestApp::spawn().await;
    let (_, admin) = app.account("acme").await;
    let before = key_count(&app).await;
    let first = create(&app, &admin, "order-1", "k").await;
    assert_eq!(first.status(), 201);
    assert!(first.headers().get("idempotent-replayed").is_none());
    let first_body: Value = first.json().await.unwrap();
    let second = create(&app, &admin, "order-1", "k").await;
    assert_eq!(second.status(), 201);
    assert_eq!(second.headers()["idempotent-replayed"], "true");
    let mut second_body: Value = second.json().await.unwrap();
    // The same answer, except the new key's secret: it is never stored, so a replay cannot show it.
    let secret = first_body["api_key"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("awx_"));
    assert_eq!(second_body["api_key"], Value::Null);
    second_body["api_key"] = first_body["api_key"].clone();
    assert_eq!(first_body, second_body);
    assert_eq!(key_count(&app).await, before + 1);
    let stored: Vec<u8> = sqlx::query_scalar(
        "SELECT response_body FROM gateway.idempotency_keys WHERE idempotency_key = 'order-1'",
    )
    .fetch_one(&app.state.pool)
    .await
    .unwrap();
    let stored = String::from_utf8(stored).unwrap();
    assert!(!stored.contains(&secret), "the secret is not stored: {stored}");
    assert!(!stored.contains(secret.rsplit('_').next().unwrap()));

    // Without the header, each request executes.
    for _ in 0..2 {
        let response = app
            .client
            .post(app.url("/api/v1/keys"))
            .header("x-api-key", &admin)
            .json(&json!({"name": "k", "scopes": ["agent"]}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
    }
    assert_eq!(key_count(&app).await, before + 3);
}

#[tokio::test]
async fn the_same_key_with_another_body_is_refused() {
    let app = TestApp::spawn().await;
    let (_, admin) = app.account("acme").await;
    assert_eq!(create(&app, &admin, "order-2", "first").await.status(), 201);
    let before = key_count(&app).await;
    let (status, code, _) = error_code(create(&app, &admin, "order-2", "second").await).await;
    assert_eq!((status, code.as_str()), (422, "idempotency_key_reused"));
    assert_eq!(key_count(&app).await, before);
    // Keys are per account: another account may use the same key.
    let (_, other_admin) = app.account("other").await;
    assert_eq!(create(&app, &other_admin, "order-2", "second").await.status(), 201);
    // A malformed key is refused.
    let (status, code, _) =
        error_code(create(&app, &admin, "bad key with spaces", "x").await).await;
    assert_eq!((status, code.as_str()), (400, "invalid_idempotency_key"));
}

#[tokio::test]
async fn twenty_concurrent_duplicates_execute_once() {
    let app = TestApp::spawn().await;
    let (_, admin) = app.account("acme").await;
    let before = key_count(&app).await;
    let responses =
        futures::future::join_all((0..20).map(|_| create(&app, &admin, "order-3", "burst"))).await;
    let mut ids = Vec::new();
    for response in responses {
        assert_eq!(response.status(), 201);
        let body: Value = response.json().await.unwrap();
        ids.push(body["id"].as_str().unwrap().to_owned());
    }
    ids.dedup();
    assert_eq!(ids.len(), 1, "every duplicate got the one answer");
    assert_eq!(key_count(&app).await, before + 1);
}

#[tokio::test]
async fn refusals_are_replayed_like_any_answer() {
    let app = TestApp::spawn().await;
    let (_, admin) = app.account("acme").await;
    // A 4xx answer is stored like any other: the same request gets the same refusal.
    let bad = || {
        app.client
            .post(app.url("/api/v1/keys"))
            .header("x-api-key", &admin)
            .header("idempotency-key", "order-4")
            .json(&json!({"name": "x", "scopes": []}))
            .send()
    };
    assert_eq!(error_code(bad().await.unwrap()).await.1, "invalid_field");
    let replay = bad().await.unwrap();
    assert_eq!(replay.headers()["idempotent-replayed"], "true");
    assert_eq!(error_code(replay).await.1, "invalid_field");
}

#[tokio::test]
async fn a_server_error_is_not_stored_so_a_retry_runs_again() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    let calls = Arc::new(AtomicU32::new(0));
    let counter = calls.clone();
    let flaky = axum::Router::new().route(
        "/api/v1/test/flaky",
        axum::routing::post(move || {
            let counter = counter.clone();
            async move {
                if counter.fetch_add(1, Ordering::SeqCst) == 0 {
                    (axum::http::StatusCode::INTERNAL_SERVER_ERROR, "boom")
                } else {
                    (axum::http::StatusCode::CREATED, "done")
                }
            }
        }),
    );
    let backing = crate::helpers::Backing::new().await;
    let app = TestApp::replica_with_extra(
        &backing,
        |_| {},
        awx_gateway::app::ExtraRoutes { authenticated: flaky, ..Default::default() },
    )
    .await;
    let (_, admin) = app.account("acme").await;
    let send = || {
        app.client
            .post(app.url("/api/v1/test/flaky"))
            .header("x-api-key", &admin)
            .header("idempotency-key", "order-5")
            .body("{}")
            .send()
    };
    assert_eq!(send().await.unwrap().status(), 500);
    let retry = send().await.unwrap();
    assert_eq!(retry.status(), 201);
    assert!(retry.headers().get("idempotent-replayed").is_none());
    assert_eq!(send().await.unwrap().headers()["idempotent-replayed"], "true");
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn another_key_of_the_account_never_gets_a_replay() {
    let app = TestApp::spawn().await;
    let (_, admin) = app.account("acme").await;
    let first = create(&app, &admin, "order-9", "k").await;
    assert_eq!(first.status(), 201);
    // A second admin key of the same account.
    let other = app
        .client
        .post(app.url("/api/v1/keys"))
        .header("x-api-key", &admin)
        .json(&json!({"name": "admin 2", "scopes": ["admin"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 201);
    let other: Value = other.json().await.unwrap();
    let other = other["api_key"].as_str().unwrap();
    let before = key_count(&app).await;
    let replay = create(&app, other, "order-9", "k").await;
    assert!(replay.headers().get("idempotent-replayed").is_none());
    let (status, code, body) = error_code(replay).await;
    assert_eq!((status, code.as_str()), (422, "idempotency_key_reused"), "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("another API key"), "{body}");
    assert_eq!(key_count(&app).await, before, "nothing executed");
}
