//! Tenant isolation: an account's key sees nothing of another account.

use awx_gateway::auth::key::Scope;
use serde_json::{Value, json};

use crate::helpers::{TestApp, error_code};

#[tokio::test]
async fn a_key_of_account_a_gets_404_on_every_resource_of_account_b() {
    let app = TestApp::spawn().await;
    let (_, admin_a) = app.account("a").await;
    let (_, admin_b) = app.account("b").await;
    let (b_key_id, b_key) = app.create_key(&admin_b, &[Scope::Agent]).await;

    let get = app.get(&format!("/api/v1/keys/{b_key_id}"), &admin_a).await;
    assert_eq!(error_code(get).await.1, "not_found");
    let delete = app
        .client
        .delete(app.url(&format!("/api/v1/keys/{b_key_id}")))
        .header("x-api-key", &admin_a)
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(delete).await.0, 404);
    let rotate = app
        .client
        .post(app.url(&format!("/api/v1/keys/{b_key_id}/rotate")))
        .header("x-api-key", &admin_a)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(rotate).await.0, 404);

    // B's key was untouched, and A's listing shows only A's keys.
    assert_eq!(app.get("/api/v1/ping", &b_key).await.status(), 200);
    let view: Value =
        app.get(&format!("/api/v1/keys/{b_key_id}"), &admin_b).await.json().await.unwrap();
    assert_eq!(view["status"], "active");
    let listing: Value = app.get("/api/v1/keys", &admin_a).await.json().await.unwrap();
    let ids: Vec<&str> =
        listing["data"].as_array().unwrap().iter().map(|k| k["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 1);
    assert!(!ids.contains(&b_key_id.as_str()));
    let account_a: Value = app.get("/api/v1/account", &admin_a).await.json().await.unwrap();
    assert_eq!(account_a["name"], "a");
    // A listing cursor pointing into B's keys leaks nothing either.
    let crafted: Value = app
        .get(&format!("/api/v1/keys?starting_after={b_key_id}"), &admin_a)
        .await
        .json()
        .await
        .unwrap();
    for key in crafted["data"].as_array().unwrap() {
        assert_ne!(key["id"], b_key_id);
    }
}
