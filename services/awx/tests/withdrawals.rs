//! Withdrawals on a real chain: the amount held first, one EIP-3009 transfer from the agent's
//! wallet signed against the policy service's decision and sent by the batch worker's relayer
//! (the wallet has no gas), exactly once whatever is retried; refused with nothing held beyond
//! the balance or off the account's allow-list.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail by panicking"
)]

mod support;

use std::time::Duration;

use alloy::primitives::U256;
use awx_x402::Address;
use reqwest::Method;
use serde_json::{Value, json};
use support::World;

/// Posts a withdrawal with an `Idempotency-Key`.
async fn withdraw(world: &World, agent: &str, body: &Value, key: &str) -> (u16, Value) {
    let response = world
        .http
        .post(format!("{}/api/v1/agents/{agent}/withdrawals", world.gateway_url))
        .header("x-api-key", &world.admin_key)
        .header("idempotency-key", key)
        .json(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Runs batch passes until the withdrawal is confirmed (or fails the test).
async fn until_confirmed(world: &World, agent: &str, id: &str) -> Value {
    let worker = world.worker();
    let path = format!("/api/v1/agents/{agent}/withdrawals/{id}");
    for _ in 0..40 {
        worker.run_once().await.unwrap();
        let (status, view) = world.call(Method::GET, &path, &world.admin_key, None).await;
        assert_eq!(status, 200, "{view}");
        if view["state"] == "confirmed" {
            return view;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("withdrawal {id} was not confirmed");
}

#[tokio::test]
async fn a_withdrawal_moves_exactly_the_amount_once_from_a_wallet_without_gas() {
    let world = World::start().await;
    let (agent, wallet) = world.create_agent(json!({})).await;
    world.fund(&agent, "1.00").await;
    let to = Address::random();
    let body = json!({"to": to, "amount": "0.40"});
    let (status, requested) = withdraw(&world, &agent, &body, "withdraw-1").await;
    assert!(status == 201 || status == 202, "{status} {requested}");
    assert_eq!(requested["amount"], "0.40", "{requested}");
    assert_eq!(requested["state"], "signed", "{requested}");
    let id = requested["id"].as_str().unwrap().to_owned();
    // Held before anything moves on chain.
    assert_eq!(world.agent_balance(&agent).await, ("0.60".into(), "0.40".into()));
    assert_eq!(world.balance(to).await, U256::ZERO);
    // The agent's wallet has no native currency: a relayer pays the gas.
    let eth = world.rpc("eth_getBalance", json!([wallet, "latest"])).await;
    assert_eq!(eth, json!("0x0"));

    let view = until_confirmed(&world, &agent, &id).await;
    assert!(view["tx_hash"].as_str().is_some_and(|hash| hash.len() == 66), "{view}");
    assert_eq!(world.balance(to).await, U256::from(400_000u64));
    assert_eq!(world.balance(wallet).await, U256::from(600_000u64));
    assert_eq!(world.agent_balance(&agent).await, ("0.60".into(), "0.00".into()));

    // The same request again (a client retry) answers the same withdrawal and moves nothing.
    let (status, again) = withdraw(&world, &agent, &body, "withdraw-1").await;
    assert!(status == 201 || status == 202 || status == 200, "{status} {again}");
    assert_eq!(again["id"], requested["id"]);
    let worker = world.worker();
    for _ in 0..3 {
        worker.run_once().await.unwrap();
    }
    assert_eq!(world.balance(to).await, U256::from(400_000u64));
    assert_eq!(
        world
            .count("SELECT count(*) FROM settlement.net_transfers WHERE kind = 'withdrawal'")
            .await,
        1
    );
    let (status, listed) = world
        .call(Method::GET, &format!("/api/v1/agents/{agent}/withdrawals"), &world.admin_key, None)
        .await;
    assert_eq!(status, 200, "{listed}");
    assert_eq!(listed["data"].as_array().unwrap().len(), 1, "{listed}");
    // The ledger posted it once, and the chain watcher sees awx's own transaction: no alert.
    assert_eq!(
        world
            .count("SELECT count(*) FROM settlement.outbox WHERE topic = 'withdrawal.confirmed'")
            .await,
        1
    );
    let reports = world.watch_to_head().await;
    assert_eq!(reports.iter().map(|report| report.alerts).sum::<usize>(), 0);
    world.assert_ledger_matches_chain().await;
    world.stop().await;
}

#[tokio::test]
async fn a_withdrawal_beyond_the_balance_is_refused_and_nothing_is_held() {
    let world = World::start().await;
    let (agent, _) = world.create_agent(json!({})).await;
    world.fund(&agent, "1.00").await;
    let body = json!({"to": Address::random(), "amount": "1.01"});
    let (status, refused) = withdraw(&world, &agent, &body, "too-much").await;
    assert!(status == 402 || status == 409, "{status} {refused}");
    assert_eq!(refused["error"]["code"], "insufficient_funds", "{refused}");
    assert_eq!(world.agent_balance(&agent).await, ("1.00".into(), "0.00".into()));
    assert_eq!(
        world
            .count(
                "SELECT count(*) FROM ledger.transfers WHERE metadata->>'op' = 'withdrawal_hold'"
            )
            .await,
        0
    );
    assert_eq!(world.count("SELECT count(*) FROM settlement.net_transfers").await, 0);
    // Exactly the balance goes.
    let (status, ok) =
        withdraw(&world, &agent, &json!({"to": Address::random(), "amount": "1.00"}), "all").await;
    assert!(status == 201 || status == 202, "{status} {ok}");
    assert_eq!(world.agent_balance(&agent).await, ("0.00".into(), "1.00".into()));
    world.assert_ledger_matches_chain().await;
    world.stop().await;
}

#[tokio::test]
async fn withdrawals_go_only_to_the_account_s_allowed_addresses_and_only_for_admins() {
    let world = World::start().await;
    let (agent, _) = world.create_agent(json!({})).await;
    world.fund(&agent, "1.00").await;
    let allowed = Address::random();
    let (status, list) = world
        .call(
            Method::PUT,
            "/api/v1/account/withdrawal_addresses",
            &world.admin_key,
            Some(&json!({"addresses": [allowed]})),
        )
        .await;
    assert_eq!(status, 200, "{list}");
    let (status, refused) =
        withdraw(&world, &agent, &json!({"to": Address::random(), "amount": "0.10"}), "off").await;
    assert_eq!(status, 403, "{refused}");
    assert_eq!(refused["error"]["code"], "withdrawal_address_not_allowed", "{refused}");
    assert_eq!(world.agent_balance(&agent).await, ("1.00".into(), "0.00".into()));
    let (status, ok) =
        withdraw(&world, &agent, &json!({"to": allowed, "amount": "0.10"}), "on").await;
    assert!(status == 201 || status == 202, "{status} {ok}");
    assert_eq!(world.agent_balance(&agent).await, ("0.90".into(), "0.10".into()));

    // An agent key may not withdraw.
    let agent_key = world.new_key(&["agent"]).await;
    let (status, body) = world
        .call(
            Method::POST,
            &format!("/api/v1/agents/{agent}/withdrawals"),
            &agent_key,
            Some(&json!({"to": allowed, "amount": "0.10"})),
        )
        .await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(world.agent_balance(&agent).await, ("0.90".into(), "0.10".into()));
    world.stop().await;
}
