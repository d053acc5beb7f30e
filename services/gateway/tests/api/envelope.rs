//! One error envelope for every rejection, the framework's included (path, query, body,
//! content type, sizes, methods, routes, headers, timeouts), and strict JSON on money paths:
//! a key twice in one object of the facilitator's bodies is refused before anything reaches
//! the settlement service.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use awx_api::facilitator::{Settle, Verify};
use awx_bus::{CommandHandler, CommandMeta, HandlerError, QueryHandler};
use awx_gateway::auth::key::Scope;
use awx_x402::{SettleResponse, VerifyResponse};
use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use serde_json::{Value, json};
use sqlx::PgConnection;

use crate::helpers::{Backing, TestApp, serve};

/// Asserts that `response` is the error envelope (JSON, with the request id of its
/// `X-Request-Id`), and returns its status, `error.code` and body.
async fn envelope(response: reqwest::Response) -> (u16, String, Value) {
    let status = response.status().as_u16();
    let content_type = response.headers()["content-type"].to_str().unwrap().to_owned();
    assert_eq!(content_type, "application/json", "status {status}");
    let id = response.headers()["x-request-id"].to_str().unwrap().to_owned();
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["request_id"], id, "{body}");
    assert!(body["error"]["type"].is_string(), "{body}");
    assert!(body["error"]["message"].is_string(), "{body}");
    (status, body["error"]["code"].as_str().unwrap().to_owned(), body)
}

/// Routes answering as the framework does, outside our extractors.
fn framework_routes() -> Router {
    Router::new()
        .route(
            "/test/number/{n}",
            get(|axum::extract::Path(n): axum::extract::Path<u32>| async move { n.to_string() }),
        )
        .route(
            "/test/plain/{status}",
            get(|axum::extract::Path(status): axum::extract::Path<u16>| async move {
                (StatusCode::from_u16(status).unwrap(), [("retry-after", "7")], "plain words")
            }),
        )
        .route(
            "/test/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_millis(2_000)).await;
                "slow"
            }),
        )
}

#[tokio::test]
async fn path_parameters_that_cannot_be_read_are_enveloped() {
    let app = TestApp::spawn().await;
    let (_, admin) = app.account("acme").await;
    // Not UTF-8 once percent-decoded.
    for path in [
        "/api/v1/x402/sessions/ses_%FF%FE",
        "/api/v1/agents/agt_%FF/withdrawals/ldg_1",
        "/api/v1/keys/key_%E2%82",
    ] {
        let (status, code, body) = envelope(app.get(path, &admin).await).await;
        assert_eq!((status, code.as_str()), (400, "invalid_field"), "{path}: {body}");
        assert!(
            ["session_id", "ledger_id", "agent_id", "key_id"]
                .contains(&body["error"]["field"].as_str().unwrap()),
            "{path}: {body}"
        );
    }
    let response = app
        .client
        .post(app.url("/api/v1/x402/payments/ldg_%FF%FE/approve"))
        .header("x-api-key", &admin)
        .send()
        .await
        .unwrap();
    let (status, code, body) = envelope(response).await;
    assert_eq!((status, code.as_str()), (400, "invalid_field"));
    assert_eq!(body["error"]["field"], "ledger_id");
    // The wrong number of segments names no route.
    for path in
        ["/api/v1/x402/sessions/ses_1/more/segments", "/api/v1/agents/agt_1/withdrawals/a/b"]
    {
        let (status, code, _) = envelope(app.get(path, &admin).await).await;
        assert_eq!((status, code.as_str()), (404, "not_found"), "{path}");
    }
}

#[tokio::test]
async fn query_strings_that_cannot_be_read_are_enveloped() {
    let app = TestApp::spawn().await;
    let (_, admin) = app.account("acme").await;
    for (path, field) in [
        ("/api/v1/keys?limit=many", "limit"),
        ("/api/v1/keys?limit=-1", "limit"),
        ("/api/v1/keys?limit=1%00", "limit"),
    ] {
        let (status, code, body) = envelope(app.get(path, &admin).await).await;
        assert_eq!((status, code.as_str()), (400, "invalid_field"), "{path}: {body}");
        assert_eq!(body["error"]["field"], field, "{path}");
    }
}

#[tokio::test]
async fn bodies_that_cannot_be_read_are_enveloped() {
    let app = TestApp::spawn().await;
    let (_, admin) = app.account("acme").await;
    let post = |body: String, content_type: Option<&'static str>| {
        let mut request =
            app.client.post(app.url("/api/v1/keys")).header("x-api-key", &admin).body(body);
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        request.send()
    };
    let json = Some("application/json");
    for (body, status, expected, field) in [
        ("{\"name\" \"k\"}", 400, "malformed_json", None),
        ("{\"name\": \"k\", \"scopes\": [\"agent\"]} trailing", 400, "malformed_json", None),
        ("{\"name\": ", 400, "malformed_json", None),
        ("", 400, "malformed_json", None),
        ("{\"name\": 7, \"scopes\": [\"agent\"]}", 400, "invalid_field", Some("name")),
        ("{\"scopes\": [\"agent\"]}", 400, "invalid_field", None),
        ("{\"name\": \"k\", \"scopes\": [\"agent\"], \"admin\": true}", 400, "invalid_field", None),
        (
            "{\"name\": \"k\", \"scopes\": [\"agent\"], \"name\": \"other\"}",
            400,
            "invalid_field",
            Some("name"),
        ),
    ] {
        let (got, code, envelope_body) = envelope(post(body.into(), json).await.unwrap()).await;
        assert_eq!((got, code.as_str()), (status, expected), "{body}: {envelope_body}");
        if let Some(field) = field {
            assert_eq!(envelope_body["error"]["field"], field, "{body}");
        }
    }
    let valid = json!({"name": "k", "scopes": ["agent"]}).to_string();
    for content_type in [None, Some("text/plain"), Some("application/x-www-form-urlencoded")] {
        let (status, code, _) = envelope(post(valid.clone(), content_type).await.unwrap()).await;
        assert_eq!((status, code.as_str()), (415, "unsupported_media_type"), "{content_type:?}");
    }
    let huge = json!({"name": "k".repeat(70 * 1024), "scopes": ["agent"]}).to_string();
    let (status, code, _) = envelope(post(huge.clone(), json).await.unwrap()).await;
    assert_eq!((status, code.as_str()), (413, "payload_too_large"));
    // A route reading its (optional) body as bytes: the framework's own 413, enveloped.
    let (key_id, _) = app.create_key(&admin, &[Scope::Agent]).await;
    let response = app
        .client
        .post(app.url(&format!("/api/v1/keys/{key_id}/rotate")))
        .header("x-api-key", &admin)
        .header("content-type", "application/json")
        .body(huge)
        .send()
        .await
        .unwrap();
    let (status, code, _) = envelope(response).await;
    assert_eq!((status, code.as_str()), (413, "payload_too_large"));
}

#[tokio::test]
async fn routes_methods_headers_and_timeouts_are_enveloped() {
    let backing = Backing::new().await;
    let app = TestApp::replica_with_routes(
        &backing,
        |settings| settings.http.request_timeout_ms = 300,
        framework_routes(),
    )
    .await;
    let (_, admin) = app.account("acme").await;
    for (path, status, expected) in [
        ("/nowhere", 404, "not_found"),
        ("/api/v1/nowhere", 404, "not_found"),
        ("/api/v1/x402/sessions", 405, "method_not_allowed"),
    ] {
        let (got, code, _) = envelope(app.get(path, &admin).await).await;
        assert_eq!((got, code.as_str()), (status, expected), "{path}");
    }
    let response =
        app.client.put(app.url("/api/v1/keys")).header("x-api-key", &admin).send().await.unwrap();
    let allow = response.headers()["allow"].to_str().unwrap().to_owned();
    assert!(allow.contains("GET") && allow.contains("POST"), "{allow}");
    let (status, code, _) = envelope(response).await;
    assert_eq!((status, code.as_str()), (405, "method_not_allowed"));
    let response = app
        .client
        .get(app.url("/api/v1/ping"))
        .header("x-api-key", &admin)
        .header("x-filler", "f".repeat(20 * 1024))
        .send()
        .await
        .unwrap();
    let (status, code, _) = envelope(response).await;
    assert_eq!((status, code.as_str()), (431, "headers_too_large"));
    let (status, code, _) =
        envelope(app.client.get(app.url("/test/slow")).send().await.unwrap()).await;
    assert_eq!((status, code.as_str()), (504, "timeout"));
}

#[tokio::test]
async fn any_other_framework_error_is_enveloped_with_its_status_and_headers() {
    let backing = Backing::new().await;
    let app = TestApp::replica_with_routes(&backing, |_| {}, framework_routes()).await;
    // axum's own `Path` rejection, plain text from the framework.
    let (status, code, body) =
        envelope(app.client.get(app.url("/test/number/many")).send().await.unwrap()).await;
    assert_eq!((status, code.as_str()), (400, "invalid_request"));
    assert!(body["error"]["message"].as_str().unwrap().contains("many"), "{body}");
    let (status, code, _) =
        envelope(app.client.get(app.url("/test/number/%FF")).send().await.unwrap()).await;
    assert_eq!((status, code.as_str()), (400, "invalid_request"));
    for (status, expected) in [
        (400, "invalid_request"),
        (408, "timeout"),
        (422, "invalid_request"),
        (429, "rate_limited"),
        (500, "internal_error"),
        (503, "service_unavailable"),
    ] {
        let response =
            app.client.get(app.url(&format!("/test/plain/{status}"))).send().await.unwrap();
        assert_eq!(response.headers()["retry-after"], "7", "{status}");
        let (got, code, body) = envelope(response).await;
        assert_eq!((got, code.as_str()), (status, expected), "{body}");
        // A server error's text is logged, not shown.
        assert_eq!(
            body["error"]["message"].as_str().unwrap().contains("plain words"),
            status < 500,
            "{body}"
        );
    }
    // Answers that are not errors are left alone.
    let response = app.client.get(app.url("/test/plain/200")).send().await.unwrap();
    assert_eq!(response.headers()["content-type"], "text/plain; charset=utf-8");
    assert_eq!(response.text().await.unwrap(), "plain words");
}

/// The settlement service: answers every verify and settle, and records them.
#[derive(Clone, Default)]
struct FakeSettlement {
    asked: Arc<Mutex<Vec<&'static str>>>,
}

impl QueryHandler<Verify> for FakeSettlement {
    async fn handle(
        &self,
        _pool: &sqlx::PgPool,
        _command: Verify,
        _meta: CommandMeta,
    ) -> Result<VerifyResponse, HandlerError> {
        self.asked.lock().unwrap().push("verify");
        Ok(VerifyResponse::valid(PAYER))
    }
}

impl CommandHandler<Settle> for FakeSettlement {
    async fn handle(
        &self,
        _tx: &mut PgConnection,
        _command: Settle,
        _meta: CommandMeta,
    ) -> Result<SettleResponse, HandlerError> {
        self.asked.lock().unwrap().push("settle");
        Ok(SettleResponse::settled(format!("0x{}", "ab".repeat(32)), "eip155:84532", PAYER))
    }
}

const PAYER: &str = "0x1111111111111111111111111111111111111111";

/// A well-formed v2 facilitator request, as compact JSON text (keys in this order).
fn facilitator_body() -> String {
    let offer = json!({
        "scheme": "exact",
        "network": "eip155:84532",
        "amount": "10000",
        "asset": "0x036CbD53842c5426634e7929541eC2318f3dCF7e",
        "payTo": "0x2222222222222222222222222222222222222222",
        "maxTimeoutSeconds": 60,
        "extra": {"name": "USDC", "version": "2"},
    });
    json!({
        "x402Version": 2,
        "paymentPayload": {
            "x402Version": 2,
            "resource": {"url": "https://api.example.com/data"},
            "accepted": offer,
            "payload": {
                "signature": format!("0x{}1b", "cd".repeat(64)),
                "authorization": {
                    "from": PAYER,
                    "to": "0x2222222222222222222222222222222222222222",
                    "value": "10000",
                    "validAfter": "0",
                    "validBefore": "4102444800",
                    "nonce": format!("0x{}", "ef".repeat(32)),
                },
            },
        },
        "paymentRequirements": offer,
    })
    .to_string()
}

/// `text` with `find`'s first occurrence replaced, which must be there.
fn replace_once(text: &str, find: &str, with: &str) -> String {
    assert!(text.contains(find), "{find}");
    text.replacen(find, with, 1)
}

/// Facilitator bodies holding a key twice, each with the path of the repeated key: at the top
/// level, in the signed authorization, in the requirements, and in `extra`.
fn duplicated_bodies() -> Vec<(String, &'static str)> {
    let body = facilitator_body();
    let cheap = json!({
        "scheme": "exact", "network": "eip155:84532", "amount": "1",
        "asset": "0x036CbD53842c5426634e7929541eC2318f3dCF7e",
        "payTo": "0x2222222222222222222222222222222222222222", "maxTimeoutSeconds": 60,
    });
    vec![
        (
            replace_once(&body, "{", &format!("{{\"paymentRequirements\":{cheap},")),
            "paymentRequirements",
        ),
        (replace_once(&body, "{", "{\"x402Version\":1,"), "x402Version"),
        (
            replace_once(
                &body,
                "\"value\":\"10000\"",
                "\"value\":\"10000\",\"value\":\"1000000000\"",
            ),
            "paymentPayload.payload.authorization.value",
        ),
        (
            replace_once(
                &body,
                "\"paymentRequirements\":{\"scheme\":\"exact\"",
                "\"paymentRequirements\":{\"scheme\":\"exact\",\"scheme\":\"upto\"",
            ),
            "paymentRequirements.scheme",
        ),
        (
            replace_once(
                &body,
                "\"extra\":{\"name\":\"USDC\"",
                "\"extra\":{\"name\":\"USDC\",\"name\":\"USD Coin\"",
            ),
            "paymentPayload.accepted.extra.name",
        ),
        // The same key, spelled with an escape.
        (replace_once(&body, "{", "{\"\\u0078402Version\":2,"), "x402Version"),
    ]
}

#[tokio::test]
async fn a_key_twice_in_a_facilitator_body_is_refused_and_nothing_is_settled() {
    let backing = Backing::new().await;
    let app = TestApp::replica(&backing, |_| {}).await;
    let fake = FakeSettlement::default();
    let handler = fake.clone();
    let _settlement = serve(&backing, "settlement", awx_api::facilitator::FAMILY, move |server| {
        server.answer::<Verify, _>(handler.clone()).unwrap().handle::<Settle, _>(handler).unwrap()
    })
    .await;
    let (_, admin) = app.account("acme").await;
    let (_, provider) = app.create_key(&admin, &[Scope::Provider]).await;
    let post = |path: &'static str, body: String| {
        app.client
            .post(app.url(path))
            .header("x-api-key", &provider)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    for (body, field) in duplicated_bodies() {
        for path in ["/api/v1/x402/facilitator/verify", "/api/v1/x402/facilitator/settle"] {
            let (status, code, answer) = envelope(post(path, body.clone()).await.unwrap()).await;
            assert_eq!((status, code.as_str()), (400, "invalid_field"), "{path} {body}: {answer}");
            assert_eq!(answer["error"]["field"], field, "{path} {body}");
        }
        for action in ["x402.verify", "x402.settle"] {
            let gate = format!("{{\"action\":\"{action}\",\"params\":{body}}}");
            let (status, code, answer) = envelope(post("/api/v1/x402", gate).await.unwrap()).await;
            assert_eq!(
                (status, code.as_str()),
                (400, "invalid_field"),
                "{action} {body}: {answer}"
            );
            assert_eq!(answer["error"]["field"], format!("params.{field}"), "{action}");
        }
    }
    // A key twice in the envelope itself.
    let gate = format!(
        "{{\"action\":\"x402.supported\",\"action\":\"x402.settle\",\"params\":{}}}",
        facilitator_body()
    );
    let (status, code, answer) = envelope(post("/api/v1/x402", gate).await.unwrap()).await;
    assert_eq!((status, code.as_str()), (400, "invalid_field"), "{answer}");
    assert_eq!(answer["error"]["field"], "action");
    assert!(fake.asked.lock().unwrap().is_empty(), "nothing reached the settlement service");

    // The same requests with each key once are answered by the settlement service.
    let body = facilitator_body();
    let verified = post("/api/v1/x402/facilitator/verify", body.clone()).await.unwrap();
    assert_eq!(verified.status(), 200);
    assert_eq!(verified.json::<Value>().await.unwrap()["isValid"], true);
    let settled = post("/api/v1/x402/facilitator/settle", body.clone()).await.unwrap();
    assert_eq!(settled.status(), 200);
    assert_eq!(settled.json::<Value>().await.unwrap()["success"], true);
    let gate = post("/api/v1/x402", format!("{{\"action\":\"x402.settle\",\"params\":{body}}}"))
        .await
        .unwrap();
    assert_eq!(gate.status(), 200);
    assert_eq!(gate.json::<Value>().await.unwrap()["code"], 0);
    assert_eq!(*fake.asked.lock().unwrap(), ["verify", "settle", "settle"]);
}

#[tokio::test]
async fn a_key_twice_in_a_payment_is_refused_with_the_same_code() {
    let app = TestApp::spawn().await;
    let (_, admin) = app.account("acme").await;
    let body = "{\"agent_id\": \"agt_1\", \"target_url\": \"https://a.example/x\", \
                \"target_url\": \"https://b.example/y\"}";
    let response = app
        .client
        .post(app.url("/api/v1/x402/pay"))
        .header("x-api-key", &admin)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    let (status, code, answer) = envelope(response).await;
    assert_eq!((status, code.as_str()), (400, "invalid_field"), "{answer}");
    assert_eq!(answer["error"]["field"], "target_url");
}
