//! A payment's allowed URLs hold on every redirect hop: the challenge comes from the last URL
//! the target redirected to, so an agent (or a session) fenced to one host must not pay another
//! host's challenge because the fenced host redirected there.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail by panicking"
)]

mod support;

use awx_x402::Address;
use axum::response::Redirect;
use reqwest::Method;
use serde_json::{Value, json};
use support::World;

/// A loopback server whose `/go` redirects (307) to `to`; returns its base URL.
async fn redirector(to: String) -> String {
    let app = axum::Router::new()
        .route("/go", axum::routing::get(move || async move { Redirect::temporary(&to) }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    base
}

async fn reserved_and_paid(world: &World) -> (i64, i64) {
    let reserved = world
        .count("SELECT count(*) FROM policy.payments WHERE state IN ('authorizing', 'authorized', 'pending_approval')")
        .await;
    let paid = world.count("SELECT count(*) FROM policy.payments WHERE state = 'authorized'").await;
    (reserved, paid)
}

#[tokio::test]
async fn allowed_urls_are_checked_on_every_redirect_hop() {
    let world = World::start().await;
    let key = world.new_key(&["agent"]).await;
    let paid = world.paid_api(Address::random(), 10_000).await;
    let redirect = redirector(format!("{paid}/paid")).await;
    let start = format!("{redirect}/go");
    let pay = |body: Value| {
        let world = &world;
        let key = key.clone();
        async move { world.call(Method::POST, "/api/v1/x402/pay", &key, Some(&body)).await }
    };

    // Fenced to the redirecting host only: the provider's challenge is not one it may pay.
    let (fenced, _) = world.create_agent(json!({"allowed_urls": [format!("{redirect}/*")]})).await;
    world.fund(&fenced, "1.00").await;
    let (status, body) = pay(json!({"agent_id": fenced, "target_url": start})).await;
    assert_eq!(
        (status, body["error"]["code"].as_str(), body["error"]["rule"].as_str()),
        (403, Some("policy_denied"), Some("policy.allowed_urls")),
        "{body}"
    );
    assert!(body["error"]["message"].as_str().unwrap().contains(&paid), "{body}");
    assert_eq!(reserved_and_paid(&world).await, (0, 0));

    // Allowed on both hosts: paid.
    let (both, _) = world
        .create_agent(json!({"allowed_urls": [format!("{redirect}/*"), format!("{paid}/*")]}))
        .await;
    world.fund(&both, "1.00").await;
    let (status, body) = pay(json!({"agent_id": both, "target_url": start})).await;
    assert_eq!((status, body["status"].as_str()), (200, Some("completed")), "{body}");

    // A session fenced to the redirecting host refuses the same way, for an unfenced agent.
    let (open, _) = world.create_agent(json!({})).await;
    world.fund(&open, "1.00").await;
    let (status, session) = world
        .call(
            Method::POST,
            "/api/v1/x402/sessions",
            &key,
            Some(&json!({"agent_id": open, "budget_limit": "1.00", "ttl_seconds": 3600,
                         "allowed_urls": [format!("{redirect}/*")]})),
        )
        .await;
    assert_eq!(status, 201, "{session}");
    let session_id = session["id"].as_str().unwrap();
    let (status, body) = world
        .call(
            Method::POST,
            &format!("/api/v1/x402/sessions/{session_id}/pay"),
            &key,
            Some(&json!({"target_url": start})),
        )
        .await;
    assert_eq!(
        (status, body["error"]["rule"].as_str()),
        (403, Some("session.allowed_urls")),
        "{body}"
    );
    let (status, view) =
        world.call(Method::GET, &format!("/api/v1/x402/sessions/{session_id}"), &key, None).await;
    assert_eq!(status, 200);
    assert_eq!((view["spent"].as_str(), view["reserved"].as_str()), (Some("0.00"), Some("0.00")));
    // The unfenced agent pays the same redirecting URL without the session.
    let (status, body) = pay(json!({"agent_id": open, "target_url": start})).await;
    assert_eq!((status, body["status"].as_str()), (200, Some("completed")), "{body}");
    assert_eq!(reserved_and_paid(&world).await.1, 2);
    world.assert_ledger_consistent().await;
}
