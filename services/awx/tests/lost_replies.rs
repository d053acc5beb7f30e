//! Money stays consistent when an answer between services is lost: a capture the settlement
//! service never heard of still queues its item (through the policy service's outbox), and a
//! capture the policy service never heard of is recovered from the ledger instead of being
//! released. The lost answers are made by sending the inner command directly on the bus, as the
//! caller would have before its deadline cut it off.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail by panicking"
)]

mod support;

use std::time::Duration;

use alloy::primitives::U256;
use awx_api::ledger::Capture;
use awx_api::policy::{OwnAction, OwnPayment, OwnPaymentReply};
use awx_types::{AccountId, LedgerId};
use awx_x402::Address;
use reqwest::Method;
use serde_json::{Value, json};
use support::World;

/// A dime in atomic units.
const DIME: u128 = 100_000;

async fn bus(world: &World) -> awx_bus::Bus {
    let mut config = awx_bus::BusConfig::new("tester", "tester");
    config.redis_url = secrecy::SecretString::from(awx_test_support::redis_url());
    config.prefix = world.namespace.prefix().to_owned();
    awx_bus::Bus::connect(config).await.unwrap()
}

fn payment_id(paid: &Value) -> LedgerId {
    LedgerId::parse(paid["ledger_id"].as_str().unwrap()).unwrap()
}

async fn item_count(world: &World, payment: LedgerId) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM settlement.items WHERE payment_id = $1")
        .bind(payment.as_uuid())
        .fetch_one(&world.db.pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_capture_whose_settle_answer_was_lost_still_queues_its_item() {
    let world = World::start().await;
    let key = world.new_key(&["agent"]).await;
    let (agent, _) = world.create_agent(json!({})).await;
    world.fund(&agent, "1.00").await;
    let url = format!("{}/paid", world.paid_api(Address::random(), DIME).await);
    let (_, paid) = world.session_pay(&key, &agent, &url).await;
    let payload: awx_x402::PaymentPayload =
        awx_x402::header::decode(paid["payment_signature"].as_str().unwrap()).unwrap();
    let (_, account) = world.call(Method::GET, "/api/v1/account", &world.admin_key, None).await;
    let account = AccountId::parse(account["id"].as_str().unwrap()).unwrap();

    // The policy service captures; the settlement service never sees the answer.
    let bus = bus(&world).await;
    let command = OwnPayment {
        action: OwnAction::Settle,
        provider: account,
        requirements: payload.accepted.clone(),
        payload,
    };
    let reply = bus.send(&command, Duration::from_secs(30)).await.unwrap();
    let OwnPaymentReply::Settled { captured: Some(_), .. } = reply else {
        panic!("not captured: {reply:?}");
    };
    let payment = payment_id(&paid);
    let mut queued = 0;
    for _ in 0..100 {
        queued = item_count(&world, payment).await;
        if queued > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(queued, 1, "the payment.captured event queues the item");
    let provider: Option<uuid::Uuid> =
        sqlx::query_scalar("SELECT provider FROM settlement.items WHERE payment_id = $1")
            .bind(payment.as_uuid())
            .fetch_one(&world.db.pool)
            .await
            .unwrap();
    assert_eq!(provider, Some(account.as_uuid()));
    world.assert_ledger_consistent().await;
    world.stop().await;
}

#[tokio::test]
async fn a_capture_the_policy_service_never_heard_of_is_recovered_not_released() {
    let world = World::start_with(|args| {
        args.policy_expiry_grace_seconds = 1;
        args.batch.threshold_usd = "0.01".into();
    })
    .await;
    let key = world.new_key(&["agent"]).await;
    let (agent, _) = world.create_agent(json!({})).await;
    world.fund(&agent, "1.00").await;
    let payee = Address::random();
    let url = format!("{}/paid", world.paid_api_expiring(payee, DIME, 8).await);
    let (session, paid) = world.session_pay(&key, &agent, &url).await;
    let payment = payment_id(&paid);

    // The ledger commits the capture; the policy service's answer is lost with its deadline.
    let bus = bus(&world).await;
    bus.send(&Capture { hold_id: payment, amount: None }, Duration::from_secs(30)).await.unwrap();
    assert_eq!(item_count(&world, payment).await, 0);

    // After validBefore the sweeper finds the nonce unused on chain, but asks the ledger before
    // releasing anything: the hold is captured, so the payment is too.
    let path = format!("/api/v1/x402/payments/{payment}");
    let mut view = Value::Null;
    for _ in 0..100 {
        let (status, body) = world.call(Method::GET, &path, &key, None).await;
        assert_eq!(status, 200, "{body}");
        view = body;
        if view["state"] != "authorized" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(view["state"], "captured", "{view}");
    let (_, session_view) =
        world.call(Method::GET, &format!("/api/v1/x402/sessions/{session}"), &key, None).await;
    assert_eq!(session_view["spent"], "0.10", "{session_view}");
    assert_eq!(world.agent_balance(&agent).await, ("0.898".into(), "0.00".into()));

    // Its item is queued (provider unknown) and netted to the payee.
    let mut queued = 0;
    for _ in 0..100 {
        queued = item_count(&world, payment).await;
        if queued > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(queued, 1);
    let worker = world.worker();
    for _ in 0..10 {
        worker.run_once().await.unwrap();
        if world.balance(payee).await == U256::from(DIME) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(world.balance(payee).await, U256::from(DIME));
    world.assert_ledger_consistent().await;
    world.stop().await;
}
