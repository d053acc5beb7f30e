//! Money in and out with a settlement process killed for real: the `awx-settlement` binary runs
//! as a child beside a world (its chain watcher or its batch worker on), stops at a fail point,
//! is killed with SIGKILL there, and is started again without it. A deposit is credited exactly
//! once, and a withdrawal moves exactly its amount on chain once.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail by panicking"
)]

mod support;

use std::time::{Duration, Instant};

use alloy::primitives::U256;
use awx_x402::Address;
use reqwest::Method;
use serde_json::json;
use support::World;
use support::child::{
    CHILD_WAIT, ChildOptions, SettlementProcess, settlement_binary, write_settings,
};

/// Polls `sql` (a count) until it reaches `want`, while the child runs.
async fn wait_for_count(
    world: &World,
    child: &mut SettlementProcess,
    sql: &'static str,
    want: i64,
) {
    let deadline = Instant::now() + CHILD_WAIT;
    loop {
        let count = world.count(sql).await;
        if count >= want {
            return;
        }
        child.assert_running();
        assert!(
            Instant::now() < deadline,
            "{sql} stayed at {count} (want {want}):\n{}",
            child.tail()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_watcher_killed_in_the_middle_of_a_range_credits_each_transfer_exactly_once() {
    let world = World::start().await;
    let (agent, wallet) = world.create_agent(json!({})).await;
    let sender = world.anvil.dev_key(0).unwrap().address();
    world.token.configure_minter(sender, true).await.unwrap();
    world.token.mint(sender, U256::from(10_000_000u64)).await.unwrap();
    // Three transfers, in three blocks of the range the watcher's first pass reads.
    for atomic in [1_000_000u64, 2_000_000, 3_000_000] {
        world.token.transfer(wallet, U256::from(atomic)).await.unwrap();
    }
    let binary = settlement_binary().await;
    let (_dir, settings) = write_settings(&world, ChildOptions { batch: false, watch: true });

    let mut child = SettlementProcess::spawn(&binary, &settings, Some("watch_after_deposit"));
    child.wait_for_fail_point("watch_after_deposit").await;
    child.kill().await;
    // Killed after crediting the first deposit, before the cursor moved past the range.
    assert_eq!(
        world.count("SELECT count(*) FROM settlement.deposits WHERE state = 'credited'").await,
        1
    );
    assert_eq!(world.agent_balance(&agent).await, ("1.00".into(), "0.00".into()));
    let next: i64 = sqlx::query_scalar("SELECT next_block FROM settlement.watch_cursors")
        .fetch_one(&world.db.pool)
        .await
        .unwrap();
    assert_eq!(next, 0, "the cursor moved before the range was recorded");

    let mut child = SettlementProcess::spawn(&binary, &settings, None);
    wait_for_count(
        &world,
        &mut child,
        "SELECT count(*) FROM settlement.deposits WHERE state = 'credited'",
        3,
    )
    .await;
    // A pass after the last one finds nothing new.
    tokio::time::sleep(Duration::from_millis(600)).await;
    child.assert_running();
    child.kill().await;

    assert_eq!(world.agent_balance(&agent).await, ("6.00".into(), "0.00".into()));
    assert_eq!(world.count("SELECT count(*) FROM settlement.deposits").await, 3);
    assert_eq!(
        world
            .count("SELECT count(*) FROM ledger.transfers WHERE metadata->>'op' = 'deposit'")
            .await,
        3
    );
    assert_eq!(
        world
            .count("SELECT count(*) FROM settlement.outbox WHERE topic = 'deposit.confirmed'")
            .await,
        3
    );
    world.assert_ledger_matches_chain().await;
    world.stop().await;
}

/// Requests a withdrawal of 0.40 from a funded agent; it is signed when this returns.
async fn signed_withdrawal(world: &World, to: Address) -> (String, Address, String) {
    let (agent, wallet) = world.create_agent(json!({})).await;
    world.fund(&agent, "1.00").await;
    let response = world
        .http
        .post(format!("{}/api/v1/agents/{agent}/withdrawals", world.gateway_url))
        .header("x-api-key", &world.admin_key)
        .header("idempotency-key", "crash")
        .json(&json!({"to": to, "amount": "0.40"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 202);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["state"], "signed", "{body}");
    (agent, wallet, body["id"].as_str().unwrap().to_owned())
}

#[tokio::test]
async fn a_withdrawal_goes_out_exactly_once_whatever_step_the_worker_dies_after() {
    let binary = settlement_binary().await;
    for point in ["after_batch_stored", "after_broadcast", "before_confirm"] {
        let world = World::start().await;
        let to = Address::random();
        let (agent, wallet, id) = signed_withdrawal(&world, to).await;
        let (_dir, settings) = write_settings(&world, ChildOptions { batch: true, watch: false });

        let mut child = SettlementProcess::spawn(&binary, &settings, Some(point));
        child.wait_for_fail_point(point).await;
        child.kill().await;
        let moved = world.balance(to).await;
        if point == "before_confirm" {
            assert_eq!(moved, U256::from(400_000u64), "{point}: mined before the kill");
        } else if point == "after_batch_stored" {
            assert_eq!(moved, U256::ZERO, "{point}: nothing sent before the kill");
        }
        // Still held until the ledger records it.
        assert_eq!(world.agent_balance(&agent).await, ("0.60".into(), "0.40".into()), "{point}");

        let mut child = SettlementProcess::spawn(&binary, &settings, None);
        wait_for_count(
            &world,
            &mut child,
            "SELECT count(*) FROM settlement.withdrawals WHERE state = 'confirmed'",
            1,
        )
        .await;
        child.kill().await;

        assert_eq!(world.balance(to).await, U256::from(400_000u64), "{point}");
        assert_eq!(world.balance(wallet).await, U256::from(600_000u64), "{point}");
        assert_eq!(world.agent_balance(&agent).await, ("0.60".into(), "0.00".into()), "{point}");
        assert_eq!(
            world
                .count("SELECT count(*) FROM settlement.chain_txs WHERE purpose = 'batch' AND state = 'confirmed'")
                .await,
            1,
            "{point}"
        );
        let (status, view) = world
            .call(
                Method::GET,
                &format!("/api/v1/agents/{agent}/withdrawals/{id}"),
                &world.admin_key,
                None,
            )
            .await;
        assert_eq!(status, 200, "{view}");
        assert_eq!(view["state"], "confirmed", "{point}: {view}");
        world.assert_ledger_matches_chain().await;
        world.stop().await;
    }
}
