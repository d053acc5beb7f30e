//! The error envelope, request ids, limits on bodies and headers, panics.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use awx_gateway::auth::key::Scope;
use axum::Router;
use axum::routing::get;
use serde_json::json;

use crate::helpers::{Backing, TestApp, error_code};

fn test_routes(started: Arc<Notify>) -> Router {
    Router::new()
        .route(
            "/test/panic",
            get(|| async {
                let items: Vec<u32> = Vec::new();
                // An out-of-bounds index: a handler bug.
                items[items.len()].to_string()
            }),
        )
        .route(
            "/test/slow",
            get(move || {
                let started = started.clone();
                async move {
                    started.notify_one();
                    tokio::time::sleep(Duration::from_millis(600)).await;
                    "slow"
                }
            }),
        )
}

#[tokio::test]
async fn every_response_carries_a_request_id_and_errors_repeat_it() {
    let app = TestApp::spawn().await;
    let (_, admin) = app.account("acme").await;
    for response in [
        app.get("/api/v1/ping", &admin).await,
        app.client.get(app.url("/api/v1/ping")).send().await.unwrap(),
        app.client.get(app.url("/no/such/route")).send().await.unwrap(),
        app.client.get(app.url("/health/live")).send().await.unwrap(),
    ] {
        let id = response.headers()["x-request-id"].to_str().unwrap().to_owned();
        assert!(id.starts_with("req_"), "{id}");
        if !response.status().is_success() {
            let (_, _, body) = error_code(response).await;
            assert_eq!(body["error"]["request_id"], id);
            assert!(body["error"]["type"].is_string());
            assert!(body["error"]["message"].is_string());
        }
    }
    // A well-formed incoming id is kept.
    let response = app
        .client
        .get(app.url("/health/live"))
        .header("x-request-id", "lb-1234")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-request-id"], "lb-1234");
    let response = app
        .client
        .get(app.url("/health/live"))
        .header("x-request-id", "bad id!")
        .send()
        .await
        .unwrap();
    assert!(response.headers()["x-request-id"].to_str().unwrap().starts_with("req_"));
}

#[tokio::test]
async fn bad_bodies_get_clear_4xx_answers_naming_the_field() {
    let app = TestApp::spawn().await;
    let (_, admin) = app.account("acme").await;
    let post = |body: String, content_type: &'static str| {
        app.client
            .post(app.url("/api/v1/keys"))
            .header("x-api-key", &admin)
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    let (status, code, _) =
        error_code(post("{\"name\": ".into(), "application/json").await.unwrap()).await;
    assert_eq!((status, code.as_str()), (400, "malformed_json"));

    let wrong_type = json!({"name": "k", "scopes": ["agent", "root"]}).to_string();
    let (status, code, body) =
        error_code(post(wrong_type, "application/json").await.unwrap()).await;
    assert_eq!((status, code.as_str()), (400, "invalid_field"));
    assert_eq!(body["error"]["field"], "scopes[1]");

    let missing = json!({"scopes": ["agent"]}).to_string();
    let (_, code, body) = error_code(post(missing, "application/json").await.unwrap()).await;
    assert_eq!(code, "invalid_field");
    assert!(body["error"]["message"].as_str().unwrap().contains("name"), "{body}");

    let unknown = json!({"name": "k", "scopes": ["agent"], "admin": true}).to_string();
    let (_, code, body) = error_code(post(unknown, "application/json").await.unwrap()).await;
    assert_eq!(code, "invalid_field");
    assert!(body["error"]["message"].as_str().unwrap().contains("admin"), "{body}");

    let (status, code, _) = error_code(post("name=k".into(), "text/plain").await.unwrap()).await;
    assert_eq!((status, code.as_str()), (415, "unsupported_media_type"));

    let huge = json!({"name": "k".repeat(70 * 1024), "scopes": ["agent"]}).to_string();
    let (status, code, _) = error_code(post(huge, "application/json").await.unwrap()).await;
    assert_eq!((status, code.as_str()), (413, "payload_too_large"));

    let response = app
        .client
        .get(app.url("/api/v1/ping"))
        .header("x-api-key", &admin)
        .header("x-filler", "f".repeat(20 * 1024))
        .send()
        .await
        .unwrap();
    let (status, code, _) = error_code(response).await;
    assert_eq!((status, code.as_str()), (431, "headers_too_large"));

    let (status, code, _) =
        error_code(app.client.get(app.url("/nowhere")).send().await.unwrap()).await;
    assert_eq!((status, code.as_str()), (404, "not_found"));
    let (status, code, _) = error_code(
        app.client.put(app.url("/api/v1/keys")).header("x-api-key", &admin).send().await.unwrap(),
    )
    .await;
    assert_eq!((status, code.as_str()), (405, "method_not_allowed"));
}

#[tokio::test]
async fn a_panic_is_a_500_with_the_request_id_and_the_server_lives_on() {
    let backing = Backing::new().await;
    let app = TestApp::replica_with_routes(&backing, |_| {}, test_routes(Arc::default())).await;
    let (_, admin) = app.account("acme").await;
    for _ in 0..3 {
        let response = app.client.get(app.url("/test/panic")).send().await.unwrap();
        let id = response.headers()["x-request-id"].to_str().unwrap().to_owned();
        let (status, code, body) = error_code(response).await;
        assert_eq!((status, code.as_str()), (500, "internal_error"));
        assert_eq!(body["error"]["request_id"], id);
        assert!(!body.to_string().contains("index out of bounds"), "no internals leak: {body}");
    }
    assert_eq!(app.get("/api/v1/ping", &admin).await.status(), 200);
    let (_, key) = app.create_key(&admin, &[Scope::Agent]).await;
    assert_eq!(app.get("/api/v1/ping", &key).await.status(), 200);
}

#[tokio::test]
async fn a_slow_request_times_out_with_an_envelope() {
    let backing = Backing::new().await;
    let app = TestApp::replica_with_routes(
        &backing,
        |s| s.http.request_timeout_ms = 200,
        test_routes(Arc::default()),
    )
    .await;
    let (status, code, _) =
        error_code(app.client.get(app.url("/test/slow")).send().await.unwrap()).await;
    assert_eq!((status, code.as_str()), (504, "timeout"));
}

#[tokio::test]
async fn shutdown_drains_in_flight_requests_and_then_refuses_connections() {
    let backing = Backing::new().await;
    let started = Arc::new(Notify::new());
    let mut app =
        TestApp::replica_with_routes(&backing, |_| {}, test_routes(started.clone())).await;
    let url = app.url("/test/slow");
    let client = app.client.clone();
    let in_flight = tokio::spawn(async move { client.get(url).send().await });
    // Once the request is in the handler, stop the server.
    started.notified().await;
    let shutdown = app.shutdown_handle();
    let server = app.take_server();
    shutdown.trigger();
    let response = in_flight.await.unwrap().unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "slow");
    server.await.unwrap().unwrap();
    let refused = reqwest::Client::new().get(app.url("/health/live")).send().await;
    assert!(refused.is_err(), "the listener is closed after shutdown");
}
