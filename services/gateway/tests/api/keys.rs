//! API keys: issued once, stored hashed, scoped, listed, revoked and rotated.

use std::time::Duration;

use awx_gateway::auth::key::Scope;
use serde_json::{Value, json};

use crate::helpers::{TestApp, error_code};

#[tokio::test]
async fn a_key_is_shown_once_and_stored_only_as_an_argon2id_hash() {
    let app = TestApp::spawn().await;
    let (_, admin) = app.account("acme").await;
    let (key_id, key) = app.create_key(&admin, &[Scope::Agent]).await;
    assert!(key.starts_with("awx_"));
    assert!(key_id.starts_with("key_"));

    let stored: (String,) =
        sqlx::query_as("SELECT secret_hash FROM gateway.api_keys WHERE id = $1")
            .bind(awx_types::ApiKeyId::parse(&key_id).unwrap().as_uuid())
            .fetch_one(&app.state.pool)
            .await
            .unwrap();
    assert!(stored.0.starts_with("$argon2id$"), "{}", stored.0);
    assert!(!stored.0.contains(&key[4..]));

    let listing: Value = app.get("/api/v1/keys", &admin).await.json().await.unwrap();
    let text = listing.to_string();
    assert!(!text.contains(&key) && !text.contains("api_key"), "a listing shows no secret: {text}");
    assert_eq!(listing["data"].as_array().unwrap().len(), 2);

    let pong: Value = app.get("/api/v1/ping", &key).await.json().await.unwrap();
    assert_eq!(pong["key_id"], key_id);
}

#[tokio::test]
async fn missing_malformed_and_wrong_keys_are_refused() {
    let app = TestApp::spawn().await;
    let (_, admin) = app.account("acme").await;
    let response = app.client.get(app.url("/api/v1/ping")).send().await.unwrap();
    assert_eq!(error_code(response).await.1, "missing_api_key");
    assert_eq!(
        error_code(app.get("/api/v1/ping", "awx_nonsense").await).await.1,
        "invalid_api_key"
    );
    let wrong_secret = format!("{}{}", &admin[..admin.len() - 4], "AAAA");
    let (status, code, _) = error_code(app.get("/api/v1/ping", &wrong_secret).await).await;
    assert_eq!((status, code.as_str()), (401, "invalid_api_key"));
    let unknown = awx_gateway::auth::key::PlaintextApiKey::generate(awx_types::ApiKeyId::new());
    assert_eq!(
        error_code(app.get("/api/v1/ping", unknown.expose()).await).await.1,
        "invalid_api_key"
    );
    // Bearer works as well as X-API-Key.
    let response =
        app.client.get(app.url("/api/v1/ping")).bearer_auth(&admin).send().await.unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn scopes_limit_what_a_key_may_do() {
    let app = TestApp::spawn().await;
    let (_, admin) = app.account("acme").await;
    let (_, agent) = app.create_key(&admin, &[Scope::Agent]).await;
    assert_eq!(app.get("/api/v1/ping", &agent).await.status(), 200);
    let (status, code, body) = error_code(app.get("/api/v1/keys", &agent).await).await;
    assert_eq!((status, code.as_str()), (403, "insufficient_scope"));
    assert!(body["error"]["message"].as_str().unwrap().contains("admin"));
    let response = app
        .client
        .post(app.url("/api/v1/keys"))
        .header("x-api-key", &agent)
        .json(&json!({"name": "escalate", "scopes": ["admin"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(response).await.1, "insufficient_scope");
}

#[tokio::test]
async fn revoked_keys_stop_working_and_listing_pages() {
    let app = TestApp::spawn().await;
    let (_, admin) = app.account("acme").await;
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(app.create_key(&admin, &[Scope::Provider]).await);
    }
    let (victim_id, victim) = ids[0].clone();
    assert_eq!(app.get("/api/v1/ping", &victim).await.status(), 200);
    let revoked: Value = app
        .client
        .delete(app.url(&format!("/api/v1/keys/{victim_id}")))
        .header("x-api-key", &admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(revoked["status"], "revoked");
    // This replica checks revocation at most every revocation_check_seconds; the bound holds.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(6);
    loop {
        let response = app.get("/api/v1/ping", &victim).await;
        if response.status() == 401 {
            assert_eq!(error_code(response).await.1, "api_key_revoked");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the revoked key still works");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(cursor) => format!("/api/v1/keys?limit=2&starting_after={cursor}"),
            None => "/api/v1/keys?limit=2".to_owned(),
        };
        let page: Value = app.get(&path, &admin).await.json().await.unwrap();
        for key in page["data"].as_array().unwrap() {
            seen.push(key["id"].as_str().unwrap().to_owned());
        }
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen.len(), 6, "the admin key and five more: {seen:?}");
    let mut sorted = seen.clone();
    sorted.sort();
    assert_eq!(seen, sorted, "oldest first");
    let (status, code, _) = error_code(app.get("/api/v1/keys?limit=0", &admin).await).await;
    assert_eq!((status, code.as_str()), (400, "invalid_field"));
}

#[tokio::test]
async fn rotation_issues_a_new_key_and_retires_the_old_one_after_its_grace() {
    let app = TestApp::spawn().await;
    let (_, admin) = app.account("acme").await;
    let (old_id, old) = app.create_key(&admin, &[Scope::Agent, Scope::Provider]).await;
    let rotated: Value = app
        .client
        .post(app.url(&format!("/api/v1/keys/{old_id}/rotate")))
        .header("x-api-key", &admin)
        .json(&json!({"grace_seconds": 2}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let new = rotated["api_key"].as_str().unwrap();
    assert_eq!(rotated["scopes"], json!(["agent", "provider"]));
    assert_eq!(app.get("/api/v1/ping", new).await.status(), 200);
    assert_eq!(
        app.get("/api/v1/ping", &old).await.status(),
        200,
        "the old key works during the grace"
    );
    let old_view: Value =
        app.get(&format!("/api/v1/keys/{old_id}"), &admin).await.json().await.unwrap();
    assert_eq!(old_view["rotated_to"], rotated["id"]);

    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while app.get("/api/v1/ping", &old).await.status() != 401 {
        assert!(tokio::time::Instant::now() < deadline, "the old key outlived its grace");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let again = app
        .client
        .post(app.url(&format!("/api/v1/keys/{old_id}/rotate")))
        .header("x-api-key", &admin)
        .send()
        .await
        .unwrap();
    let (status, code, body) = error_code(again).await;
    assert_eq!((status, code.as_str()), (409, "api_key_state"), "{body}");
}

#[tokio::test]
async fn bootstrap_creates_only_the_first_account() {
    let app = TestApp::spawn().await;
    let (account, key) =
        awx_gateway::accounts::bootstrap(&app.state.pool, &app.state.settings.auth, "first")
            .await
            .unwrap();
    assert_eq!(account.name, "first");
    let view: Value =
        app.get("/api/v1/account", key.plaintext.expose()).await.json().await.unwrap();
    assert_eq!(view["name"], "first");
    let again =
        awx_gateway::accounts::bootstrap(&app.state.pool, &app.state.settings.auth, "second").await;
    assert!(matches!(again, Err(awx_gateway::accounts::AccountError::AlreadyBootstrapped)));
}

#[tokio::test]
async fn bad_keys_cannot_make_the_gateway_run_argon2_without_limit() {
    let app = TestApp::spawn().await;
    let (_, admin) = app.account("acme").await;
    let authenticator = &app.state.authenticator;
    let runs = authenticator.argon2_runs();

    // Concurrent first uses of one good key share a single verification.
    let (_, fresh) = app.create_key(&admin, &[Scope::Agent]).await;
    let before = authenticator.argon2_runs();
    let requests = (0..20).map(|_| app.get("/api/v1/ping", &fresh));
    for response in futures::future::join_all(requests).await {
        assert_eq!(response.status(), 200);
    }
    assert_eq!(authenticator.argon2_runs() - before, 1);

    // The same wrong key again and again costs one verification.
    let wrong = format!("{}{}", &fresh[..fresh.len() - 4], "AAAA");
    let before = authenticator.argon2_runs();
    for _ in 0..30 {
        assert_eq!(app.get("/api/v1/ping", &wrong).await.status(), 401);
    }
    assert_eq!(authenticator.argon2_runs() - before, 1);

    // Ever-new wrong secrets for one key id: after the per-minute allowance, refused unverified.
    let before = authenticator.argon2_runs();
    let mut refused = 0;
    for i in 0..30 {
        let guess = format!("{}{:04}", &admin[..admin.len() - 4], i);
        let (status, code, _) = error_code(app.get("/api/v1/ping", &guess).await).await;
        if status == 429 {
            assert_eq!(code, "too_many_failed_authentications");
            refused += 1;
        }
    }
    let max = u64::from(app.state.settings.auth.failed_attempts_per_minute_max);
    assert_eq!(authenticator.argon2_runs() - before, max);
    assert_eq!(refused, 30 - max);
    assert!(authenticator.argon2_runs() - runs <= max + 3);
    // The real key still works.
    assert_eq!(app.get("/api/v1/ping", &admin).await.status(), 200);
}
