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
async fn a_server_error_is_not_stored_so_a_retry_runs_again_with_the_same_minted_id() {
    use std::sync::{Arc, Mutex};

    use awx_gateway::idempotency::MintedId;

    // Answers 500 on its first call, 201 after; records the minted id each call got.
    let minted: Arc<Mutex<Vec<Option<uuid::Uuid>>>> = Arc::default();
    let seen = minted.clone();
    let flaky = axum::Router::new().route(
        "/api/v1/test/flaky",
        axum::routing::post(move |id: Option<axum::Extension<MintedId>>| {
            let seen = seen.clone();
            async move {
                let mut seen = seen.lock().unwrap();
                seen.push(id.map(|axum::Extension(MintedId(id))| id));
                if seen.len() == 1 {
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
    let send = |key: &'static str, body: &'static str| {
        app.client
            .post(app.url("/api/v1/test/flaky"))
            .header("x-api-key", &admin)
            .header("idempotency-key", key)
            .body(body)
            .send()
    };
    assert_eq!(send("order-5", "{}").await.unwrap().status(), 500);
    // The record stays (its lease released), so another request with the key is refused.
    let (status, code, _) = error_code(send("order-5", "{\"other\":1}").await.unwrap()).await;
    assert_eq!((status, code.as_str()), (422, "idempotency_key_reused"));
    let (state, lease_released): (String, bool) = sqlx::query_as(
        "SELECT state, locked_until < now() FROM gateway.idempotency_keys
         WHERE idempotency_key = 'order-5'",
    )
    .fetch_one(&app.state.pool)
    .await
    .unwrap();
    assert_eq!((state.as_str(), lease_released), ("in_progress", true));
    // The same request runs again at once, with the id the first attempt minted.
    let retry = send("order-5", "{}").await.unwrap();
    assert_eq!(retry.status(), 201);
    assert!(retry.headers().get("idempotent-replayed").is_none());
    assert_eq!(send("order-5", "{}").await.unwrap().headers()["idempotent-replayed"], "true");
    let ids = minted.lock().unwrap().clone();
    assert_eq!(ids.len(), 2, "ran twice: {ids:?}");
    let first = ids[0].expect("a minted id with an Idempotency-Key");
    assert_eq!(first.get_version_num(), 7);
    assert_eq!(ids[1], Some(first), "the retry got the same id");
    let stored: Option<uuid::Uuid> = sqlx::query_scalar(
        "SELECT minted_id FROM gateway.idempotency_keys WHERE idempotency_key = 'order-5'",
    )
    .fetch_one(&app.state.pool)
    .await
    .unwrap();
    assert_eq!(stored, Some(first));

    // Without the header, no minted id: the handler mints its own.
    let plain = app
        .client
        .post(app.url("/api/v1/test/flaky"))
        .header("x-api-key", &admin)
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(plain.status(), 201);
    assert_eq!(minted.lock().unwrap().last(), Some(&None));
}

#[tokio::test]
async fn a_record_from_before_minted_ids_gets_one_when_taken_over() {
    use std::sync::{Arc, Mutex};

    use awx_gateway::idempotency::MintedId;

    let minted: Arc<Mutex<Vec<uuid::Uuid>>> = Arc::default();
    let seen = minted.clone();
    let route = axum::Router::new().route(
        "/api/v1/test/mint",
        axum::routing::post(move |axum::Extension(MintedId(id)): axum::Extension<MintedId>| {
            let seen = seen.clone();
            async move {
                seen.lock().unwrap().push(id);
                (axum::http::StatusCode::CREATED, "done")
            }
        }),
    );
    let backing = crate::helpers::Backing::new().await;
    let app = TestApp::replica_with_extra(
        &backing,
        |_| {},
        awx_gateway::app::ExtraRoutes { authenticated: route, ..Default::default() },
    )
    .await;
    let (_, admin) = app.account("acme").await;
    let send = || {
        app.client
            .post(app.url("/api/v1/test/mint"))
            .header("x-api-key", &admin)
            .header("idempotency-key", "order-6")
            .body("{}")
            .send()
    };
    assert_eq!(send().await.unwrap().status(), 201);
    // Make the record look like an old one whose holder vanished: no minted id, lease expired.
    sqlx::query(
        "UPDATE gateway.idempotency_keys
         SET state = 'in_progress', minted_id = NULL, locked_until = now() - interval '1 second',
             response_status = NULL, response_headers = NULL, response_body = NULL
         WHERE idempotency_key = 'order-6'",
    )
    .execute(&app.state.pool)
    .await
    .unwrap();
    assert_eq!(send().await.unwrap().status(), 201);
    let ids = minted.lock().unwrap().clone();
    assert_eq!(ids.len(), 2);
    let stored: Option<uuid::Uuid> = sqlx::query_scalar(
        "SELECT minted_id FROM gateway.idempotency_keys WHERE idempotency_key = 'order-6'",
    )
    .fetch_one(&app.state.pool)
    .await
    .unwrap();
    assert_eq!(stored, Some(ids[1]), "the new id is written");
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
