//! The policy service's sweeper keeps going when one payment cannot be swept: that payment comes
//! back later, and every other one is released on time.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail by panicking"
)]

mod support;

use std::time::Duration;

use awx_x402::Address;
use reqwest::Method;
use serde_json::{Value, json};
use support::World;

#[tokio::test]
async fn one_payment_that_cannot_be_swept_does_not_stop_the_others() {
    let world = World::start_with(|args| args.policy_expiry_grace_seconds = 1).await;
    let key = world.new_key(&["agent"]).await;
    let (agent, _) = world.create_agent(json!({})).await;
    world.fund(&agent, "1.00").await;
    let url = format!("{}/paid", world.paid_api_expiring(Address::random(), 100_000, 8).await);
    let (broken_session, broken) = world.session_pay(&key, &agent, &url).await;
    let (_, healthy) = world.session_pay(&key, &agent, &url).await;
    // The first payment's session counters no longer match it: releasing it fails.
    let session = awx_types::SessionId::parse(&broken_session).unwrap().as_uuid();
    sqlx::query("UPDATE policy.sessions SET spent = 0 WHERE id = $1")
        .bind(session)
        .execute(&world.db.pool)
        .await
        .unwrap();

    // Both expire unused; the healthy one is released although the broken one sorts first.
    let state = |paid: &Value| {
        let path = format!("/api/v1/x402/payments/{}", paid["ledger_id"].as_str().unwrap());
        let world = &world;
        let key = &key;
        async move { world.call(Method::GET, &path, key, None).await.1["state"].clone() }
    };
    let mut healthy_state = Value::Null;
    for _ in 0..120 {
        healthy_state = state(&healthy).await;
        if healthy_state != "authorized" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(healthy_state, "expired");
    assert_eq!(state(&broken).await, "authorized", "the broken one waits for an operator");
    let postponed: bool =
        sqlx::query_scalar("SELECT deadline > now() FROM policy.payments WHERE id = $1")
            .bind(
                awx_types::LedgerId::parse(broken["ledger_id"].as_str().unwrap())
                    .unwrap()
                    .as_uuid(),
            )
            .fetch_one(&world.db.pool)
            .await
            .unwrap();
    assert!(postponed, "it comes back later instead of blocking every pass");
    world.stop().await;
}
