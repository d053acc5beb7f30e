//! The chain watcher on a real chain: deposits into agents' wallets credited once (also when a
//! range is scanned again, and when the faucet recorded them first), reversed when their block is
//! reorganised away and credited again when they reappear, authorizations of our wallets
//! submitted by someone else marked paid (and never netted), and tokens leaving a wallet behind
//! awx's back raised as an alert.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail by panicking"
)]

mod support;

use std::time::Duration;

use alloy::primitives::U256;
use awx_x402::{Address, ExactEvmPayload};
use reqwest::Method;
use serde_json::{Value, json};
use support::World;

/// A dime in atomic units; its fee at 2.0 % is 2,000.
const DIME: u128 = 100_000;
const DIME_FEE: u128 = 2_000;
/// Where the worlds send the platform's fees (see `support`).
const FEE_ADDRESS: Address = Address::repeat_byte(0xfe);

/// Mints `atomic` to anvil's first account (the token's owner), which then sends plain ERC-20
/// transfers.
async fn fund_sender(world: &World, atomic: u128) -> Address {
    let sender = world.anvil.dev_key(0).unwrap().address();
    world.token.configure_minter(sender, true).await.unwrap();
    world.token.mint(sender, U256::from(atomic)).await.unwrap();
    sender
}

async fn deposits(world: &World, agent: &str) -> Vec<Value> {
    let (status, body) = world
        .call(Method::GET, &format!("/api/v1/agents/{agent}/deposits"), &world.admin_key, None)
        .await;
    assert_eq!(status, 200, "{body}");
    body["data"].as_array().unwrap().clone()
}

fn total(reports: &[awx_settlement_service::watcher::WatchReport]) -> (usize, usize, bool) {
    reports.iter().fold((0, 0, false), |(deposits, reversed, reorg), report| {
        (deposits + report.deposits, reversed + report.reversed, reorg || report.reorg)
    })
}

#[tokio::test]
async fn a_plain_transfer_is_credited_once_and_the_agent_can_pay_with_it() {
    let world = World::start().await;
    let key = world.new_key(&["agent"]).await;
    let (agent, wallet) = world.create_agent(json!({})).await;
    fund_sender(&world, 5_000_000).await;
    world.token.transfer(wallet, U256::from(1_250_000u64)).await.unwrap();
    // Nothing is credited before the watcher has seen the block.
    assert_eq!(world.agent_balance(&agent).await, ("0.00".into(), "0.00".into()));

    let (credited, reversed, reorg) = total(&world.watch_to_head().await);
    assert_eq!((credited, reversed, reorg), (1, 0, false));
    assert_eq!(world.agent_balance(&agent).await, ("1.25".into(), "0.00".into()));

    // The faucet's mint goes through the same path: recorded once, whoever sees it first.
    world.fund(&agent, "1.00").await;
    assert_eq!(world.agent_balance(&agent).await, ("2.25".into(), "0.00".into()));
    let (credited, _, _) = total(&world.watch_to_head().await);
    assert_eq!(credited, 1, "the watcher found the faucet's deposit");
    assert_eq!(world.agent_balance(&agent).await, ("2.25".into(), "0.00".into()));

    // Scanning every block again (a watcher restarted before it stored its cursor) finds both
    // deposits recorded and credits nothing twice.
    sqlx::query("UPDATE settlement.watch_cursors SET next_block = 0")
        .execute(&world.db.pool)
        .await
        .unwrap();
    let (credited, _, _) = total(&world.watch_to_head().await);
    assert_eq!(credited, 2);
    assert_eq!(world.agent_balance(&agent).await, ("2.25".into(), "0.00".into()));
    assert_eq!(world.count("SELECT count(*) FROM settlement.deposits").await, 2);
    assert_eq!(
        world
            .count("SELECT count(*) FROM ledger.transfers WHERE metadata->>'op' = 'deposit'")
            .await,
        2
    );
    // One `deposit.confirmed` event each.
    assert_eq!(
        world
            .count("SELECT count(*) FROM settlement.outbox WHERE topic = 'deposit.confirmed'")
            .await,
        2
    );

    let listed = deposits(&world, &agent).await;
    assert_eq!(listed.len(), 2, "{listed:?}");
    assert_eq!(listed[0]["source"], "faucet", "newest first: {listed:?}");
    assert_eq!(listed[1]["source"], "chain");
    assert_eq!(listed[1]["amount"], "1.25");
    assert_eq!(listed[1]["state"], "credited");
    assert_eq!(listed[1]["to"].as_str().unwrap().to_lowercase(), format!("{wallet:#x}"));

    // The deposited money pays.
    let payee = Address::random();
    let api = format!("{}/paid", world.paid_api(payee, DIME).await);
    world.pay_and_serve(&key, &agent, &api).await;
    assert_eq!(world.agent_balance(&agent).await, ("2.148".into(), "0.00".into()));
    world.assert_ledger_matches_chain().await;
    world.stop().await;
}

#[tokio::test]
async fn a_reorganised_deposit_is_reversed_and_credited_again_when_it_reappears() {
    let world = World::start().await;
    let (agent, wallet) = world.create_agent(json!({})).await;
    fund_sender(&world, 5_000_000).await;
    world.watch_to_head().await;
    let snapshot = world.rpc("evm_snapshot", json!([])).await;
    let receipt = world.token.transfer(wallet, U256::from(1_000_000u64)).await.unwrap();
    let raw = world.rpc("eth_getRawTransactionByHash", json!([receipt.transaction_hash])).await;
    let (credited, _, _) = total(&world.watch_to_head().await);
    assert_eq!(credited, 1);
    assert_eq!(world.agent_balance(&agent).await, ("1.00".into(), "0.00".into()));

    // The block is replaced by others without the transfer.
    assert_eq!(world.rpc("evm_revert", json!([snapshot])).await, json!(true));
    world.rpc("anvil_mine", json!(["0x3"])).await;
    let (credited, reversed, reorg) = total(&world.watch_to_head().await);
    assert!(reorg, "the reorganisation was not noticed");
    assert_eq!((credited, reversed), (0, 1));
    assert_eq!(world.agent_balance(&agent).await, ("0.00".into(), "0.00".into()));
    let listed = deposits(&world, &agent).await;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["state"], "reversed");
    assert!(
        listed[0]["reversal_reason"].as_str().unwrap().contains("reorganisation"),
        "{listed:?}"
    );
    world.assert_ledger_matches_chain().await;

    // The same transaction mined again in another block is a new deposit.
    let resent = world.rpc("eth_sendRawTransaction", json!([raw])).await;
    world.mined_receipt(&resent).await;
    let (credited, reversed, _) = total(&world.watch_to_head().await);
    assert_eq!((credited, reversed), (1, 0));
    assert_eq!(world.agent_balance(&agent).await, ("1.00".into(), "0.00".into()));
    let listed = deposits(&world, &agent).await;
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[0]["state"], "credited");
    assert_eq!(listed[0]["tx_hash"], listed[1]["tx_hash"]);
    assert_ne!(listed[0]["block_hash"], listed[1]["block_hash"]);
    assert_eq!(
        world
            .count(
                "SELECT count(*) FROM ledger.transfers WHERE metadata->>'op' = 'deposit_reversal'"
            )
            .await,
        1
    );
    world.assert_ledger_matches_chain().await;
    world.stop().await;
}

#[tokio::test]
async fn an_authorization_submitted_by_the_provider_is_marked_paid_and_never_netted() {
    let world = World::start_with(|args| args.batch.threshold_usd = "0.002".into()).await;
    let key = world.new_key(&["agent"]).await;
    let (agent, wallet) = world.create_agent(json!({})).await;
    world.fund(&agent, "1.00").await;
    let payee = Address::random();
    // Valid for a minute: the policy sweeper cannot be the one that notices.
    let api = format!("{}/paid", world.paid_api_expiring(payee, DIME, 60).await);
    let (_, paid) = world.session_pay(&key, &agent, &api).await;
    let payload: awx_x402::PaymentPayload =
        awx_x402::header::decode(paid["payment_signature"].as_str().unwrap()).unwrap();
    let ExactEvmPayload::Eip3009(eip3009) = ExactEvmPayload::from_json(&payload.payload).unwrap()
    else {
        panic!("not an EIP-3009 payload");
    };
    world.token.transfer_with_authorization(&eip3009).await.unwrap();

    let reports = world.watch_to_head().await;
    assert_eq!(reports.iter().map(|report| report.authorizations).sum::<usize>(), 1);
    assert_eq!(reports.iter().map(|report| report.alerts).sum::<usize>(), 0);
    let path = format!("/api/v1/x402/payments/{}", paid["ledger_id"].as_str().unwrap());
    let (status, view) = world.call(Method::GET, &path, &key, None).await;
    assert_eq!(status, 200, "{view}");
    assert_eq!(view["state"], "captured", "{view}");
    assert_eq!(view["settlement"]["state"], "settled_externally", "{view}");
    assert_eq!(world.agent_balance(&agent).await, ("0.898".into(), "0.00".into()));

    // The batch worker posts the payout and collects the fee, and nets nothing for the payee.
    let worker = world.worker();
    for _ in 0..20 {
        worker.run_once().await.unwrap();
        let open = world
            .count("SELECT count(*) FROM settlement.items WHERE state = 'settled_externally' AND NOT payout_recorded")
            .await
            + world.count("SELECT count(*) FROM settlement.net_transfers WHERE state <> 'confirmed' OR NOT recorded").await;
        if open == 0 && world.balance(FEE_ADDRESS).await == U256::from(DIME_FEE) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(
        world.count("SELECT count(*) FROM settlement.net_transfers WHERE kind = 'payee'").await,
        0
    );
    assert_eq!(world.balance(payee).await, U256::from(DIME));
    assert_eq!(world.balance(FEE_ADDRESS).await, U256::from(DIME_FEE));
    assert_eq!(world.balance(wallet).await, U256::from(1_000_000 - DIME - DIME_FEE));
    // The fee's batch is awx's own transaction: no alert.
    let reports = world.watch_to_head().await;
    assert_eq!(reports.iter().map(|report| report.alerts).sum::<usize>(), 0);
    assert_eq!(world.count("SELECT count(*) FROM settlement.chain_alerts").await, 0);
    world.assert_ledger_matches_chain().await;
    world.stop().await;
}

#[tokio::test]
async fn tokens_leaving_a_wallet_behind_awx_s_back_raise_an_alert() {
    let world = World::start().await;
    let (agent, wallet) = world.create_agent(json!({})).await;
    world.fund(&agent, "1.00").await;
    world.watch_to_head().await;
    // Someone holding the wallet's key moves tokens out without awx.
    let thief = Address::random();
    world.rpc("anvil_impersonateAccount", json!([wallet])).await;
    world.rpc("anvil_setBalance", json!([wallet, "0xde0b6b3a7640000"])).await;
    let mut calldata = String::from("0xa9059cbb");
    calldata.push_str(&format!("{:0>64}", hex_of(thief.as_slice())));
    calldata.push_str(&format!("{:0>64x}", 250_000u64));
    let hash = world
        .rpc(
            "eth_sendTransaction",
            json!([{"from": wallet, "to": world.token.address(), "data": calldata}]),
        )
        .await;
    let receipt = world.mined_receipt(&hash).await;
    assert_eq!(receipt["status"], "0x1", "{receipt}");

    let reports = world.watch_to_head().await;
    assert_eq!(reports.iter().map(|report| report.alerts).sum::<usize>(), 1);
    let (kind, alerted): (String, String) =
        sqlx::query_as("SELECT kind, wallet FROM settlement.chain_alerts")
            .fetch_one(&world.db.pool)
            .await
            .unwrap();
    assert_eq!(kind, "unsigned_outflow");
    assert_eq!(alerted, format!("{wallet:#x}"));
    // Seen again (a rescan), the alert is not repeated.
    sqlx::query("UPDATE settlement.watch_cursors SET next_block = 0")
        .execute(&world.db.pool)
        .await
        .unwrap();
    world.watch_to_head().await;
    assert_eq!(world.count("SELECT count(*) FROM settlement.chain_alerts").await, 1);
    // The ledger check against the chain names the wallet and what is missing.
    let violations = world.wallet_violations().await;
    assert_eq!(violations.len(), 1, "{violations:?}");
    assert!(
        violations[0].detail.contains(&format!("wallet {wallet:#x}: chain 750000, ledger 1000000")),
        "{violations:?}"
    );
    world.stop().await;
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}
