//! The batch settlement worker killed for real: the `awx-settlement` binary runs as a child
//! process beside a world (anvil, Postgres, Redis, every other service in this process), stops
//! at a fail point (`AWX_SETTLEMENT_FAIL_POINT`), is killed with SIGKILL there, and is started
//! again without it. Whatever step it died after, every payment ends up paid on chain exactly
//! once (one `AuthorizationUsed` per net transfer, one batch transaction), the balances on chain
//! are exact, and the ledger agrees.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail by panicking"
)]

mod support;

use std::collections::BTreeSet;
use std::os::unix::process::ExitStatusExt as _;
use std::time::{Duration, Instant};

use alloy::primitives::U256;
use awx_x402::{Address, B256};
use serde_json::json;
use support::World;
use support::child::{
    CHILD_WAIT, ChildOptions, FAIL_POINT_MESSAGE, FEE_ADDRESS, SettlementProcess,
    settlement_binary, write_settings,
};

/// How long the test APIs' authorizations are valid (a facilitator wants at least 6 s left).
const EXPIRY_SECONDS: u64 = 8;
/// A dime in atomic units; its fee at 2.0 % is 2,000.
const DIME: u128 = 100_000;
const DIME_FEE: u128 = 2_000;
/// What each agent's wallet is funded with, in atomic units ("1.00").
const FUNDED: u128 = 1_000_000;

fn atomic(value: u128) -> U256 {
    U256::from(value)
}

/// The world's payments, waiting to be netted.
struct Payments {
    first_wallet: Address,
    second_wallet: Address,
    p1: Address,
    p2: Address,
}

/// The payments of every test: five, from two agents to two payees ...
const ITEMS: i64 = 5;
/// ... in four (payer, payee) groups ...
const GROUPS: i64 = 4;
/// ... so six net transfers with the two payers' fees.
const TRANSFERS: i64 = 6;

/// Makes the payments: `first` pays p1 twice and p2 once, `second` pays each once. All of
/// their authorizations have expired when this returns.
async fn pay(world: &World) -> Payments {
    let key = world.new_key(&["agent"]).await;
    let (first, first_wallet) = world.create_agent(json!({})).await;
    world.fund(&first, "1.00").await;
    let (second, second_wallet) = world.create_agent(json!({})).await;
    world.fund(&second, "1.00").await;
    let (p1, p2) = (Address::random(), Address::random());
    let api1 = format!("{}/paid", world.paid_api_expiring(p1, DIME, EXPIRY_SECONDS).await);
    let api2 = format!("{}/paid", world.paid_api_expiring(p2, DIME, EXPIRY_SECONDS).await);
    world.pay_and_serve(&key, &first, &api1).await;
    world.pay_and_serve(&key, &first, &api1).await;
    world.pay_and_serve(&key, &first, &api2).await;
    world.pay_and_serve(&key, &second, &api1).await;
    world.pay_and_serve(&key, &second, &api2).await;
    assert_eq!(
        world.count("SELECT count(*) FROM settlement.items WHERE state = 'queued'").await,
        ITEMS
    );
    world.wait_for_expiry().await;
    Payments { first_wallet, second_wallet, p1, p2 }
}

/// Every `AuthorizationUsed(authorizer, nonce)` log of the world's token, from genesis.
async fn authorizations_used(world: &World) -> Vec<(Address, B256)> {
    let topic = alloy::primitives::keccak256("AuthorizationUsed(address,bytes32)");
    let logs = world
        .rpc(
            "eth_getLogs",
            json!([{"address": world.token.address().to_string(), "fromBlock": "0x0",
                    "toBlock": "latest", "topics": [topic.to_string()]}]),
        )
        .await;
    logs.as_array()
        .unwrap()
        .iter()
        .map(|log| {
            let topics = log["topics"].as_array().unwrap();
            let authorizer: B256 = topics[1].as_str().unwrap().parse().unwrap();
            let nonce: B256 = topics[2].as_str().unwrap().parse().unwrap();
            (Address::from_word(authorizer), nonce)
        })
        .collect()
}

/// The (payer, nonce) of every stored net transfer.
async fn stored_authorizations(world: &World) -> BTreeSet<(Address, B256)> {
    let rows: Vec<(String, String)> =
        sqlx::query_as("SELECT payer, nonce FROM settlement.net_transfers")
            .fetch_all(&world.db.pool)
            .await
            .unwrap();
    rows.iter().map(|(payer, nonce)| (payer.parse().unwrap(), nonce.parse().unwrap())).collect()
}

async fn batch_txs(world: &World) -> i64 {
    world.count("SELECT count(*) FROM settlement.chain_txs WHERE purpose = 'batch'").await
}

/// What the killed worker left behind at `point`.
async fn assert_stopped_at(world: &World, point: &str, payments: &Payments) {
    let transfers = |state: &'static str| async move {
        let count: i64 =
            sqlx::query_scalar("SELECT count(*) FROM settlement.net_transfers WHERE state = $1")
                .bind(state)
                .fetch_one(&world.db.pool)
                .await
                .unwrap();
        count
    };
    assert_eq!(
        world.count("SELECT count(*) FROM settlement.net_transfers").await,
        TRANSFERS,
        "{point}: every transfer is planned before any step after planning"
    );
    assert_eq!(
        world.count("SELECT count(*) FROM settlement.items WHERE state = 'batched'").await,
        ITEMS,
        "{point}"
    );
    match point {
        "after_plan" => {
            assert_eq!(transfers("planned").await, TRANSFERS);
            assert_eq!(world.count("SELECT count(*) FROM settlement.batches").await, 0);
            assert_eq!(batch_txs(world).await, 0);
        }
        "after_sign" => {
            assert_eq!(transfers("signed").await, TRANSFERS);
            assert_eq!(
                world
                    .count(
                        "SELECT count(*) FROM settlement.net_transfers WHERE batch_id IS NOT NULL"
                    )
                    .await,
                0
            );
            assert_eq!(world.count("SELECT count(*) FROM settlement.batches").await, 0);
            assert_eq!(batch_txs(world).await, 0);
        }
        "after_batch_stored" => {
            assert_eq!(transfers("signed").await, TRANSFERS);
            assert_eq!(
                world.count("SELECT count(*) FROM settlement.batches WHERE state = 'signed'").await,
                1
            );
            assert_eq!(
                world.count("SELECT count(*) FROM settlement.chain_txs WHERE purpose = 'batch' AND state = 'signed'").await,
                1
            );
            assert_eq!(batch_txs(world).await, 1);
        }
        "after_broadcast" | "before_confirm" => {
            assert_eq!(transfers("signed").await, TRANSFERS);
            assert_eq!(
                world
                    .count("SELECT count(*) FROM settlement.net_transfers WHERE batch_id IS NULL")
                    .await,
                0
            );
            assert_eq!(
                world
                    .count("SELECT count(*) FROM settlement.batches WHERE state = 'broadcast'")
                    .await,
                1
            );
            assert_eq!(
                world.count("SELECT count(*) FROM settlement.chain_txs WHERE purpose = 'batch' AND state = 'broadcast'").await,
                1
            );
            assert_eq!(batch_txs(world).await, 1);
        }
        other => panic!("no expectations for fail point {other}"),
    }
    if point == "before_confirm" {
        // The worker saw the receipt: the batch is mined, the transfers paid on chain, and
        // nothing is recorded yet.
        assert_eq!(world.balance(payments.p1).await, atomic(3 * DIME));
        assert_eq!(world.balance(payments.p2).await, atomic(2 * DIME));
        assert_eq!(world.balance(FEE_ADDRESS).await, atomic(5 * DIME_FEE));
        let used = authorizations_used(world).await;
        assert_eq!(used.len(), usize::try_from(TRANSFERS).unwrap(), "{used:?}");
        assert_eq!(
            world.count("SELECT count(*) FROM settlement.net_transfers WHERE recorded").await,
            0
        );
    } else if matches!(point, "after_plan" | "after_sign" | "after_batch_stored") {
        // Nothing has been sent.
        assert_eq!(world.balance(payments.p1).await, U256::ZERO);
        assert_eq!(world.balance(payments.p2).await, U256::ZERO);
        assert!(authorizations_used(world).await.is_empty());
    }
}

/// Polls the database (bounded) until every item is settled and every net transfer confirmed
/// and recorded.
async fn wait_until_settled(world: &World, child: &mut SettlementProcess) {
    let deadline = Instant::now() + CHILD_WAIT;
    loop {
        let open = world
            .count("SELECT count(*) FROM settlement.items WHERE state <> 'settled'")
            .await
            + world
                .count(
                    "SELECT count(*) FROM settlement.net_transfers WHERE state <> 'confirmed' OR NOT recorded",
                )
                .await;
        let transfers = world.count("SELECT count(*) FROM settlement.net_transfers").await;
        if open == 0 && transfers > 0 {
            return;
        }
        child.assert_running();
        assert!(
            Instant::now() < deadline,
            "the restarted worker did not settle everything in {CHILD_WAIT:?} ({open} open):\n{}",
            child.tail()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Everything is paid exactly once, on chain and in the ledger.
async fn assert_paid_exactly_once(world: &World, payments: &Payments) {
    assert_eq!(
        world.count("SELECT count(*) FROM settlement.items WHERE state = 'settled'").await,
        ITEMS
    );
    assert_eq!(
        world
            .count("SELECT count(*) FROM settlement.net_transfers WHERE state = 'confirmed' AND recorded")
            .await,
        TRANSFERS
    );
    assert_eq!(
        world
            .count("SELECT count(*) FROM settlement.net_transfers WHERE kind = 'payee' AND state = 'confirmed'")
            .await,
        GROUPS
    );
    assert_eq!(
        world
            .count("SELECT count(*) FROM (SELECT DISTINCT payer, payee FROM settlement.net_transfers WHERE kind = 'payee') g")
            .await,
        GROUPS
    );
    assert_eq!(
        world
            .count("SELECT count(*) FROM settlement.net_transfers WHERE kind = 'fee' AND state = 'confirmed'")
            .await,
        2
    );
    // Each payment in exactly one transfer of each kind, signed once per kind.
    assert_eq!(
        world
            .count("SELECT count(*) FROM settlement.net_transfer_items WHERE kind = 'payee'")
            .await,
        ITEMS
    );
    assert_eq!(
        world.count("SELECT count(*) FROM settlement.net_transfer_items WHERE kind = 'fee'").await,
        ITEMS
    );
    assert_eq!(world.count("SELECT count(*) FROM signer.net_transfer_payments").await, 2 * ITEMS);
    // One batch, sent once.
    assert_eq!(
        world.count("SELECT count(*) FROM settlement.batches WHERE state = 'confirmed'").await,
        1
    );
    assert_eq!(world.count("SELECT count(*) FROM settlement.batches").await, 1);
    assert_eq!(batch_txs(world).await, 1);
    assert_eq!(
        world
            .count("SELECT count(*) FROM settlement.chain_txs WHERE purpose = 'batch' AND state = 'confirmed'")
            .await,
        1
    );
    // On chain: each net transfer's authorization used once, and no other.
    let used = authorizations_used(world).await;
    let distinct: BTreeSet<(Address, B256)> = used.iter().copied().collect();
    assert_eq!(used.len(), distinct.len(), "an authorization used twice: {used:?}");
    assert_eq!(distinct, stored_authorizations(world).await);
    assert_eq!(world.balance(payments.p1).await, atomic(3 * DIME));
    assert_eq!(world.balance(payments.p2).await, atomic(2 * DIME));
    assert_eq!(world.balance(FEE_ADDRESS).await, atomic(5 * DIME_FEE));
    assert_eq!(world.balance(payments.first_wallet).await, atomic(FUNDED - 3 * (DIME + DIME_FEE)));
    assert_eq!(world.balance(payments.second_wallet).await, atomic(FUNDED - 2 * (DIME + DIME_FEE)));
    // The ledger agrees: nothing owed to the payees, the fees collected once.
    let owed: Option<String> = sqlx::query_scalar(
        "SELECT sum(credits_posted - debits_posted)::text FROM ledger.accounts WHERE code = 'payable'",
    )
    .fetch_one(&world.db.pool)
    .await
    .unwrap();
    assert_eq!(owed.as_deref(), Some("0"));
    let collected: Option<String> = sqlx::query_scalar(
        "SELECT sum(debits_posted - credits_posted)::text FROM ledger.accounts WHERE code = 'fee_collected'",
    )
    .fetch_one(&world.db.pool)
    .await
    .unwrap();
    assert_eq!(collected.as_deref(), Some(&*(5 * DIME_FEE).to_string()));
    world.assert_ledger_consistent().await;
}

/// The crash test of one fail point: pay, run the worker in a child until `point`, SIGKILL it,
/// check what it stored, restart it without the fail point, and check that everything is paid
/// exactly once.
async fn killed_at(point: &str) {
    let (world, binary) = tokio::join!(
        World::start_with(|args| args.batch.threshold_usd = "0.01".into()),
        settlement_binary()
    );
    let payments = pay(&world).await;
    let (_dir, settings) = write_settings(&world, ChildOptions { batch: true, watch: false });

    let mut child = SettlementProcess::spawn(&binary, &settings, Some(point));
    child.wait_for_fail_point(point).await;
    let status = child.kill().await;
    assert_eq!(status.signal(), Some(9), "{status}");
    assert_stopped_at(&world, point, &payments).await;

    let mut child = SettlementProcess::spawn(&binary, &settings, None);
    wait_until_settled(&world, &mut child).await;
    child.assert_running();
    assert!(!child.logged(FAIL_POINT_MESSAGE), "{}", child.tail());
    child.kill().await;

    assert_paid_exactly_once(&world, &payments).await;
    world.stop().await;
}

#[tokio::test]
async fn killed_after_planning_the_worker_resumes_and_pays_every_item_once() {
    killed_at("after_plan").await;
}

#[tokio::test]
async fn killed_after_signing_the_worker_resumes_and_pays_every_item_once() {
    killed_at("after_sign").await;
}

#[tokio::test]
async fn killed_after_storing_the_batch_the_worker_broadcasts_it_once() {
    killed_at("after_batch_stored").await;
}

#[tokio::test]
async fn killed_after_broadcast_the_worker_records_the_batch_once() {
    killed_at("after_broadcast").await;
}

#[tokio::test]
async fn killed_before_recording_the_confirmation_the_worker_records_it_without_sending_again() {
    killed_at("before_confirm").await;
}
