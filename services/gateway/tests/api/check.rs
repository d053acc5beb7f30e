//! `POST /api/v1/x402/check` and the SSRF-guarded fetcher behind it: non-public targets are
//! refused; with development configuration a provider on loopback is read (v2 header, v1 body),
//! its offers split into payable and unpayable; redirects, body size and time are limited.

use std::convert::Infallible;

use awx_gateway::auth::key::Scope;
use awx_x402::{JsonObject, PaymentRequired, PaymentRequirements, ResourceInfo};
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect};
use axum::routing::get;
use serde_json::{Value, json};

use crate::helpers::{Backing, TestApp, error_code};

/// USDC on Base Sepolia, as the built-in registry has it.
const BASE_SEPOLIA_USDC: &str = "0x036CbD53842c5426634e7929541eC2318f3dCF7e";
/// A token the registry does not know.
const UNKNOWN_TOKEN: &str = "0x1111111111111111111111111111111111111111";
const PAY_TO: &str = "0x209693Bc6afc0C5328bA36FaF03C514EF312287C";

fn offer(asset: &str, amount: &str) -> PaymentRequirements {
    PaymentRequirements {
        scheme: "exact".into(),
        network: "eip155:84532".into(),
        amount: amount.into(),
        asset: asset.into(),
        pay_to: PAY_TO.into(),
        max_timeout_seconds: 60,
        extra: Some(
            serde_json::from_value::<JsonObject>(json!({"name": "USDC", "version": "2"})).unwrap(),
        ),
        other: JsonObject::new(),
    }
}

fn v2_challenge(resource_url: &str) -> PaymentRequired {
    PaymentRequired {
        x402_version: 2,
        error: Some("PAYMENT-SIGNATURE header is required".into()),
        resource: ResourceInfo {
            url: resource_url.into(),
            description: Some("Premium data".into()),
            mime_type: Some("application/json".into()),
            other: JsonObject::new(),
        },
        accepts: vec![offer(BASE_SEPOLIA_USDC, "100000"), offer(UNKNOWN_TOKEN, "5000")],
        extensions: None,
        other: JsonObject::new(),
    }
}

fn v1_body(resource_url: &str) -> Value {
    json!({
        "x402Version": 1,
        "error": "X-PAYMENT header is required",
        "accepts": [{
            "scheme": "exact", "network": "base-sepolia", "maxAmountRequired": "10000",
            "asset": BASE_SEPOLIA_USDC, "payTo": PAY_TO, "resource": resource_url,
            "description": "v1 data", "mimeType": "application/json", "maxTimeoutSeconds": 60,
            "extra": {"name": "USDC", "version": "2"}
        }]
    })
}

/// A provider on a loopback port: x402 routes, plain pages, redirects, big and slow answers.
/// It stops with the test's runtime.
async fn provider() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let v2_header = awx_x402::header::encode(&v2_challenge(&format!("{base}/v2"))).unwrap();
    let v1 = v1_body(&format!("{base}/v1"));
    let router =
        Router::new()
            .route(
                "/v2",
                get(move || async move {
                    (StatusCode::PAYMENT_REQUIRED, [("PAYMENT-REQUIRED", v2_header)], "{}")
                }),
            )
            .route(
                "/v1",
                get(move || async move { (StatusCode::PAYMENT_REQUIRED, axum::Json(v1)) }),
            )
            .route("/page", get(|| async { "<html>free content</html>" }))
            .route("/no-challenge", get(|| async { (StatusCode::PAYMENT_REQUIRED, "pay somehow") }))
            .route(
                "/hops/{n}",
                get(|Path(n): Path<u32>| async move {
                    if n == 0 {
                        Redirect::temporary("/v2")
                    } else {
                        Redirect::to(&format!("/hops/{}", n - 1))
                    }
                }),
            )
            .route(
                "/loop/{n}",
                get(|Path(n): Path<u32>| async move {
                    Redirect::temporary(&format!("/loop/{}", n + 1))
                }),
            )
            .route("/big", get(|| async { vec![b'x'; 4096] }))
            .route(
                "/big-stream",
                get(|| async {
                    // Chunked, with no Content-Length: the limit must hold while reading.
                    let chunks = (0..8).map(|_| Ok::<_, Infallible>(Bytes::from(vec![b'x'; 1024])));
                    Body::from_stream(futures::stream::iter(chunks))
                }),
            )
            .route("/small", get(|| async { vec![b'x'; 1024] }))
            .route("/slow", get(std::future::pending::<&'static str>))
            .route(
                "/slow-body",
                get(|| async {
                    // The status and headers come at once, the body never ends.
                    let first = futures::stream::iter([Ok::<_, Infallible>(Bytes::from("{"))]);
                    Body::from_stream(futures::StreamExt::chain(first, futures::stream::pending()))
                        .into_response()
                }),
            );
    tokio::spawn(axum::serve(listener, router).into_future());
    base
}

/// A gateway whose fetcher may reach loopback (development configuration), adjusted further.
async fn dev_gateway(adjust: impl FnOnce(&mut awx_gateway::GatewaySettings)) -> TestApp {
    let backing = Backing::new().await;
    TestApp::replica(&backing, |settings| {
        settings.outbound.allow_private_targets = true;
        adjust(settings);
    })
    .await
}

async fn check(app: &TestApp, key: &str, url: &str) -> reqwest::Response {
    app.client
        .post(app.url("/api/v1/x402/check"))
        .header("x-api-key", key)
        .json(&json!({"url": url}))
        .send()
        .await
        .unwrap()
}

async fn check_ok(app: &TestApp, key: &str, url: &str) -> Value {
    let response = check(app, key, url).await;
    assert_eq!(response.status(), 200, "{url}");
    response.json().await.unwrap()
}

async fn agent_key(app: &TestApp) -> String {
    let (_, admin) = app.account("acme").await;
    app.create_key(&admin, &[Scope::Agent]).await.1
}

#[tokio::test]
async fn non_public_targets_and_other_schemes_are_refused() {
    let app = TestApp::spawn().await;
    assert!(!app.state.settings.outbound.allow_private_targets, "the default refuses");
    let key = agent_key(&app).await;
    for (url, code, says) in [
        ("http://127.0.0.1/", "target_not_allowed", "a loopback address (127.0.0.1)"),
        ("http://127.0.0.1:8080/paid", "target_not_allowed", "loopback"),
        ("http://0x7f000001/", "target_not_allowed", "a loopback address (127.0.0.1)"),
        // A host name: refused by the resolver, after resolving.
        ("http://localhost:9/", "target_not_allowed", "a loopback address"),
        ("http://10.1.2.3/", "target_not_allowed", "a private address (10.1.2.3)"),
        ("https://192.168.0.1/", "target_not_allowed", "a private address (192.168.0.1)"),
        ("http://172.16.5.4/", "target_not_allowed", "a private address"),
        ("http://100.64.0.1/", "target_not_allowed", "carrier-grade NAT"),
        (
            "http://169.254.169.254/latest/meta-data/",
            "target_not_allowed",
            "a link-local address (169.254.169.254)",
        ),
        ("http://[::1]/", "target_not_allowed", "a loopback address (::1)"),
        ("http://[::ffff:127.0.0.1]/", "target_not_allowed", "a loopback address"),
        ("http://[fd00::1]/", "target_not_allowed", "a private address"),
        ("http://[fe80::1]/", "target_not_allowed", "a link-local address"),
        ("http://0.0.0.0/", "target_not_allowed", "an unspecified address"),
        ("file:///etc/passwd", "target_not_allowed", "scheme `file`"),
        ("ftp://ftp.example.com/", "target_not_allowed", "scheme `ftp`"),
        ("http://user:secret@example.com/", "target_not_allowed", "credentials"),
        ("not a url", "invalid_target_url", "invalid"),
        ("http://", "invalid_target_url", "invalid"),
    ] {
        let (status, got, body) = error_code(check(&app, &key, url).await).await;
        assert_eq!((status, got.as_str()), (400, code), "{url}: {body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains(says), "{url}: {message}");
        assert_eq!(body["error"]["field"], "url", "{url}");
    }
}

#[tokio::test]
async fn a_v2_challenge_is_read_and_its_offers_sorted_into_payable_and_unpayable() {
    let base = provider().await;
    let app = dev_gateway(|_| {}).await;
    let key = agent_key(&app).await;
    let url = format!("{base}/v2");
    let body = check_ok(&app, &key, &url).await;
    assert_eq!(body["url"], url.as_str());
    assert_eq!(body["x402"], true);
    assert_eq!(body["status"], 402);
    assert_eq!(body["x402_version"], 2);
    assert!(body.get("reason").is_none() && body.get("final_url").is_none(), "{body}");
    assert_eq!(
        body["resource"],
        json!({"url": url, "description": "Premium data", "mimeType": "application/json"})
    );
    // Every offer, in strict v2 wire form, exactly as offered.
    let offered = v2_challenge(&url);
    assert_eq!(body["accepts"], serde_json::to_value(&offered.accepts).unwrap());
    assert_eq!(
        body["payable"],
        json!([{
            "index": 0, "scheme": "exact", "network": "eip155:84532",
            "asset": BASE_SEPOLIA_USDC, "amount": "0.10", "token": "USDC", "pay_to": PAY_TO
        }])
    );
    let unpayable = body["unpayable"].as_array().unwrap();
    assert_eq!(unpayable.len(), 1, "{body}");
    assert_eq!(unpayable[0]["index"], 1);
    let reason = unpayable[0]["reason"].as_str().unwrap();
    assert!(
        reason.contains("does not know the token") && reason.contains(UNKNOWN_TOKEN),
        "{reason}"
    );

    // Admin implies agent.
    let (_, admin) = app.account("other").await;
    assert_eq!(check_ok(&app, &admin, &url).await["x402"], true);
}

#[tokio::test]
async fn a_v1_body_challenge_is_read_as_version_1() {
    let base = provider().await;
    let app = dev_gateway(|_| {}).await;
    let key = agent_key(&app).await;
    let url = format!("{base}/v1");
    let body = check_ok(&app, &key, &url).await;
    assert_eq!(body["x402"], true);
    assert_eq!(body["x402_version"], 1);
    assert_eq!(body["resource"]["url"], url.as_str());
    assert_eq!(body["resource"]["description"], "v1 data");
    let accepts = body["accepts"].as_array().unwrap();
    assert_eq!(accepts.len(), 1);
    // Converted to v2: CAIP-2 network, `amount` in atomic units.
    assert_eq!(accepts[0]["network"], "eip155:84532");
    assert_eq!(accepts[0]["amount"], "10000");
    assert!(accepts[0].get("maxAmountRequired").is_none());
    assert_eq!(body["payable"][0]["amount"], "0.01");
    assert_eq!(body["payable"][0]["token"], "USDC");
    assert_eq!(body["unpayable"], json!([]));
}

#[tokio::test]
async fn urls_without_a_readable_challenge_are_not_x402_and_not_errors() {
    let base = provider().await;
    let app = dev_gateway(|_| {}).await;
    let key = agent_key(&app).await;
    let page = check_ok(&app, &key, &format!("{base}/page")).await;
    assert_eq!(page["x402"], false);
    assert_eq!(page["status"], 200);
    assert!(page["reason"].as_str().unwrap().contains("not 402"), "{page}");
    assert!(page.get("x402_version").is_none());
    assert_eq!(page["accepts"], json!([]));
    assert_eq!(page["payable"], json!([]));

    let bare = check_ok(&app, &key, &format!("{base}/no-challenge")).await;
    assert_eq!(bare["x402"], false);
    assert_eq!(bare["status"], 402);
    assert!(bare["reason"].as_str().unwrap().contains("no x402 challenge"), "{bare}");

    let missing = check_ok(&app, &key, &format!("{base}/no-such-page")).await;
    assert_eq!((missing["x402"].clone(), missing["status"].clone()), (json!(false), json!(404)));
}

#[tokio::test]
async fn redirects_are_followed_up_to_the_limit() {
    let base = provider().await;
    let app = dev_gateway(|settings| settings.outbound.redirects_max = 3).await;
    let key = agent_key(&app).await;
    // Three redirects (the limit) then the challenge.
    let body = check_ok(&app, &key, &format!("{base}/hops/2")).await;
    assert_eq!(body["x402"], true);
    assert_eq!(body["final_url"], format!("{base}/v2"));
    // Four is one too many.
    let (status, code, body) = error_code(check(&app, &key, &format!("{base}/hops/3")).await).await;
    assert_eq!((status, code.as_str()), (502, "target_too_many_redirects"), "{body}");
    let (status, code, _) = error_code(check(&app, &key, &format!("{base}/loop/0")).await).await;
    assert_eq!((status, code.as_str()), (502, "target_too_many_redirects"));
}

#[tokio::test]
async fn bodies_over_the_limit_are_refused() {
    let base = provider().await;
    let app = dev_gateway(|settings| settings.outbound.body_bytes_max = 2048).await;
    let key = agent_key(&app).await;
    for path in ["/big", "/big-stream"] {
        let (status, code, body) =
            error_code(check(&app, &key, &format!("{base}{path}")).await).await;
        assert_eq!((status, code.as_str()), (502, "target_response_too_large"), "{path}: {body}");
    }
    // Under the limit is read.
    assert_eq!(check_ok(&app, &key, &format!("{base}/small")).await["status"], 200);
}

#[tokio::test]
async fn slow_targets_time_out() {
    let base = provider().await;
    let app = dev_gateway(|settings| settings.outbound.timeout_ms = 300).await;
    let key = agent_key(&app).await;
    for path in ["/slow", "/slow-body"] {
        let (status, code, body) =
            error_code(check(&app, &key, &format!("{base}{path}")).await).await;
        assert_eq!((status, code.as_str()), (504, "target_timeout"), "{path}: {body}");
    }
}

#[tokio::test]
async fn unreachable_targets_are_502_and_development_still_refuses_the_unspecified_address() {
    let app = dev_gateway(|_| {}).await;
    let key = agent_key(&app).await;
    let closed = {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        listener.local_addr().unwrap().port()
    };
    let (status, code, body) =
        error_code(check(&app, &key, &format!("http://127.0.0.1:{closed}/")).await).await;
    assert_eq!((status, code.as_str()), (502, "target_unreachable"), "{body}");
    let (status, code, _) = error_code(check(&app, &key, "http://0.0.0.0:9/").await).await;
    assert_eq!((status, code.as_str()), (400, "target_not_allowed"));
}

#[tokio::test]
async fn checking_needs_the_agent_scope() {
    let app = TestApp::spawn().await;
    let (_, admin) = app.account("acme").await;
    let (_, provider_key) = app.create_key(&admin, &[Scope::Provider]).await;
    let response = app
        .client
        .post(app.url("/api/v1/x402/check"))
        .json(&json!({"url": "https://example.com/"}))
        .send()
        .await
        .unwrap();
    let (status, code, _) = error_code(response).await;
    assert_eq!((status, code.as_str()), (401, "missing_api_key"));
    let (status, code, _) =
        error_code(check(&app, &provider_key, "https://example.com/").await).await;
    assert_eq!((status, code.as_str()), (403, "insufficient_scope"));
    // A body that is not a check request names the field.
    let response = app
        .client
        .post(app.url("/api/v1/x402/check"))
        .header("x-api-key", &admin)
        .json(&json!({"target": "https://example.com/"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
}
