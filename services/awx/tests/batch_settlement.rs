//! The batch settlement worker end to end, on anvil with every service running: agents pay
//! providers built with our middleware (captured through our facilitator, queued), and the
//! worker nets the captures on chain through Multicall3 once their authorizations expire.
//! Balances are read on chain and in the ledger, and the ledger check runs after each test.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail by panicking"
)]

mod support;

use std::time::Duration;

use alloy::primitives::U256;
use awx_settlement_service::batch::{BatchWorker, PassReport};
use awx_x402::{Address, ExactEvmPayload};
use reqwest::Method;
use serde_json::{Value, json};
use support::World;

/// How long the test APIs' authorizations are valid (a facilitator wants at least 6 s left).
const EXPIRY_SECONDS: u64 = 8;
/// A dime in atomic units; its fee at 2.0 % is 2,000.
const DIME: u128 = 100_000;
const DIME_FEE: u128 = 2_000;
/// Where the worlds of these tests send the platform's fees (see `support`).
const FEE_ADDRESS: Address = Address::repeat_byte(0xfe);

async fn funded_agent(world: &World, amount: &str) -> (String, Address) {
    let (agent, wallet) = world.create_agent(json!({})).await;
    world.fund(&agent, amount).await;
    (agent, wallet)
}

/// Runs passes until none has anything left to do with queued, batched or in-flight work (at
/// most `passes`), adding up their reports.
async fn settle_all(world: &World, worker: &BatchWorker, passes: usize) -> PassReport {
    let mut total = PassReport::default();
    for _ in 0..passes {
        for report in worker.run_once().await.unwrap() {
            total.external += report.external;
            total.eligible += report.eligible;
            total.planned += report.planned;
            total.signed += report.signed;
            total.confirmed += report.confirmed;
            total.failed += report.failed;
            total.recorded += report.recorded;
            total.replaced += report.replaced;
        }
        let open = world
            .count("SELECT count(*) FROM settlement.items WHERE state IN ('queued', 'batched')")
            .await
            + world
                .count(
                    "SELECT count(*) FROM settlement.net_transfers WHERE state <> 'confirmed' OR NOT recorded",
                )
                .await;
        if open == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    total
}

fn atomic(value: u128) -> U256 {
    U256::from(value)
}

#[tokio::test]
async fn netting_pays_each_group_once_and_the_fees_to_the_platform() {
    let world = World::start_with(|args| args.batch.threshold_usd = "0.01".into()).await;
    let key = world.new_key(&["agent"]).await;
    let (first, first_wallet) = funded_agent(&world, "5.00").await;
    let (second, second_wallet) = funded_agent(&world, "5.00").await;
    let (p1, p2) = (Address::random(), Address::random());
    let api1 = format!("{}/paid", world.paid_api_expiring(p1, DIME, EXPIRY_SECONDS).await);
    let api2 = format!("{}/paid", world.paid_api_expiring(p2, DIME, EXPIRY_SECONDS).await);
    let mut first_to_p1 = Vec::new();
    for _ in 0..3 {
        first_to_p1.push(world.pay_and_serve(&key, &first, &api1).await);
    }
    for _ in 0..2 {
        world.pay_and_serve(&key, &first, &api2).await;
        world.pay_and_serve(&key, &second, &api1).await;
    }
    assert_eq!(
        world.count("SELECT count(*) FROM settlement.items WHERE state = 'queued'").await,
        7
    );

    // Nothing is netted while the authorizations could still be paid.
    let worker = world.worker();
    let report = worker.run_once().await.unwrap();
    assert_eq!(
        (report[0].eligible, report[0].planned, report[0].batch),
        (0, 0, None),
        "{report:?}"
    );
    assert_eq!(world.balance(p1).await, U256::ZERO);

    world.wait_for_expiry().await;
    let total = settle_all(&world, &worker, 20).await;
    assert_eq!(total.eligible, 7, "{total:?}");
    // One transfer per (payer, payee): 3; one fee transfer per payer: 2.
    assert_eq!(total.confirmed, 5, "{total:?}");
    assert_eq!(
        world.count("SELECT count(*) FROM settlement.net_transfers WHERE kind = 'payee'").await,
        3
    );
    assert_eq!(
        world.count("SELECT count(*) FROM settlement.net_transfers WHERE kind = 'fee'").await,
        2
    );
    assert_eq!(world.count("SELECT count(*) FROM settlement.batches").await, 1);
    assert_eq!(
        world.count("SELECT count(*) FROM settlement.items WHERE state = 'settled'").await,
        7
    );
    assert_eq!(world.count("SELECT count(*) FROM signer.net_transfer_payments").await, 14);

    assert_eq!(world.balance(p1).await, atomic(5 * DIME));
    assert_eq!(world.balance(p2).await, atomic(2 * DIME));
    assert_eq!(world.balance(FEE_ADDRESS).await, atomic(7 * DIME_FEE));
    assert_eq!(world.balance(first_wallet).await, atomic(5_000_000 - 5 * (DIME + DIME_FEE)));
    assert_eq!(world.balance(second_wallet).await, atomic(5_000_000 - 2 * (DIME + DIME_FEE)));
    // The ledger agrees: nothing owed to the payees any more, the fees collected on chain.
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
    assert_eq!(collected.as_deref(), Some(&*(7 * DIME_FEE).to_string()));
    assert_eq!(
        world
            .count("SELECT count(*) FROM settlement.outbox WHERE topic = 'settlement.confirmed'")
            .await,
        5
    );

    // The payment shows its settlement; the provider lists its settlements with their payments.
    let (status, view) = world
        .call(Method::GET, &format!("/api/v1/x402/payments/{}", first_to_p1[0]), &key, None)
        .await;
    assert_eq!(status, 200, "{view}");
    assert_eq!(view["settlement"]["state"], "settled", "{view}");
    let batch_tx: String = sqlx::query_scalar("SELECT tx_hash FROM settlement.batches")
        .fetch_one(&world.db.pool)
        .await
        .unwrap();
    assert_eq!(view["settlement"]["transaction"], batch_tx.as_str());
    let (status, page) = world
        .call(Method::GET, "/api/v1/x402/settlements?limit=2", &world.provider_key, None)
        .await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["data"].as_array().unwrap().len(), 2, "{page}");
    let cursor = page["next_cursor"].as_str().unwrap().to_owned();
    let (status, rest) = world
        .call(
            Method::GET,
            &format!("/api/v1/x402/settlements?limit=2&starting_after={cursor}"),
            &world.provider_key,
            None,
        )
        .await;
    assert_eq!(status, 200, "{rest}");
    assert_eq!(rest["data"].as_array().unwrap().len(), 1, "{rest}");
    assert!(rest.get("next_cursor").is_none(), "{rest}");
    let all: Vec<&Value> =
        page["data"].as_array().unwrap().iter().chain(rest["data"].as_array().unwrap()).collect();
    let to_p1: Vec<&&Value> = all
        .iter()
        .filter(|s| {
            s["payee"] == p1.to_checksum(None).as_str()
                && s["payer"] == first_wallet.to_checksum(None).as_str()
        })
        .collect();
    assert_eq!(to_p1.len(), 1, "{all:?}");
    assert_eq!(to_p1[0]["amount"], "0.30");
    assert_eq!(to_p1[0]["state"], "confirmed");
    let mut covered: Vec<String> = to_p1[0]["payments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap().to_owned())
        .collect();
    covered.sort();
    first_to_p1.sort();
    assert_eq!(covered, first_to_p1);
    let (status, _) = world.call(Method::GET, "/api/v1/x402/settlements", &key, None).await;
    assert_eq!(status, 403, "an agent key is not a provider");

    // Another pass finds nothing to do, and pays nothing twice.
    let report = worker.run_once().await.unwrap();
    assert_eq!(
        (report[0].planned, report[0].batch, report[0].confirmed),
        (0, None, 0),
        "{report:?}"
    );
    assert_eq!(world.balance(p1).await, atomic(5 * DIME));
    // What the ledger recorded for the batch is what its Transfer logs moved on chain.
    let client = awx_chain::ChainClient::connect(world.anvil.endpoint()).unwrap();
    let differences = awx_cli::chain_check::check_batches(&world.db.pool, &client).await.unwrap();
    assert!(differences.is_empty(), "{differences:?}");
    let gas: i64 = sqlx::query_scalar("SELECT gas_used FROM settlement.batches")
        .fetch_one(&world.db.pool)
        .await
        .unwrap();
    println!("one batch of 5 net transfers for 7 payments used {gas} gas");
    world.assert_ledger_consistent().await;
    world.stop().await;
}

/// A group above `batch.items_per_transfer_max` payments is netted in several transfers (its
/// fees too), so no message about one transfer outgrows the bus; every payment is paid once.
#[tokio::test]
async fn a_group_above_the_items_cap_is_netted_in_several_transfers() {
    let world = World::start_with(|args| {
        args.batch.threshold_usd = "0.01".into();
        args.batch.items_per_transfer_max = 2;
    })
    .await;
    let key = world.new_key(&["agent"]).await;
    let (agent, wallet) = funded_agent(&world, "5.00").await;
    let payee = Address::random();
    let api = format!("{}/paid", world.paid_api_expiring(payee, DIME, EXPIRY_SECONDS).await);
    for _ in 0..5 {
        world.pay_and_serve(&key, &agent, &api).await;
    }
    world.wait_for_expiry().await;
    let worker = world.worker();
    let total = settle_all(&world, &worker, 20).await;
    assert_eq!(total.eligible, 5, "{total:?}");
    // 5 payments at 2 a transfer: 3 payee transfers and 3 fee transfers.
    assert_eq!(
        world.count("SELECT count(*) FROM settlement.net_transfers WHERE state = 'confirmed' AND kind = 'payee'").await,
        3
    );
    assert_eq!(
        world.count("SELECT count(*) FROM settlement.net_transfers WHERE state = 'confirmed' AND kind = 'fee'").await,
        3
    );
    assert_eq!(
        world
            .count("SELECT max(n) FROM (SELECT count(*) AS n FROM settlement.net_transfer_items GROUP BY net_transfer_id) c")
            .await,
        2
    );
    assert_eq!(
        world.count("SELECT count(*) FROM settlement.items WHERE state = 'settled'").await,
        5
    );
    assert_eq!(world.balance(payee).await, atomic(5 * DIME));
    assert_eq!(world.balance(FEE_ADDRESS).await, atomic(5 * DIME_FEE));
    assert_eq!(world.balance(wallet).await, atomic(5_000_000 - 5 * (DIME + DIME_FEE)));
    world.assert_ledger_matches_chain().await;
}

#[tokio::test]
async fn a_group_at_the_threshold_goes_at_once_and_one_below_it_waits_for_max_delay() {
    let world = World::start_with(|args| {
        args.batch.threshold_usd = "0.20".into();
        args.batch.max_delay_seconds = 6;
    })
    .await;
    let key = world.new_key(&["agent"]).await;
    let (agent, _) = funded_agent(&world, "2.00").await;
    let (full, small) = (Address::random(), Address::random());
    let full_api = format!("{}/paid", world.paid_api_expiring(full, DIME, EXPIRY_SECONDS).await);
    let small_api = format!("{}/paid", world.paid_api_expiring(small, DIME, EXPIRY_SECONDS).await);
    world.pay_and_serve(&key, &agent, &full_api).await;
    world.pay_and_serve(&key, &agent, &full_api).await;
    world.pay_and_serve(&key, &agent, &small_api).await;
    world.wait_for_expiry().await;

    let worker = world.worker();
    let total = settle_all(&world, &worker, 3).await;
    assert_eq!(world.balance(full).await, atomic(2 * DIME), "{total:?}");
    assert_eq!(world.balance(small).await, U256::ZERO, "{total:?}");
    assert_eq!(
        world.count("SELECT count(*) FROM settlement.items WHERE state = 'queued'").await,
        1
    );

    // Its oldest item has waited max_delay since it became payable: it goes too.
    tokio::time::sleep(Duration::from_secs(6)).await;
    settle_all(&world, &worker, 10).await;
    assert_eq!(world.balance(small).await, atomic(DIME));
    assert_eq!(world.balance(full).await, atomic(2 * DIME));
    assert_eq!(
        world.count("SELECT count(*) FROM settlement.items WHERE state = 'settled'").await,
        3
    );
    world.assert_ledger_consistent().await;
    world.stop().await;
}

#[tokio::test]
async fn an_authorization_the_provider_submitted_itself_is_seen_and_not_netted() {
    let world = World::start_with(|args| {
        args.batch.threshold_usd = "0.01".into();
        args.batch.max_delay_seconds = 12;
    })
    .await;
    let key = world.new_key(&["agent"]).await;
    let (agent, wallet) = funded_agent(&world, "1.00").await;
    let payee = Address::random();
    let api = format!("{}/paid", world.paid_api_expiring(payee, DIME, EXPIRY_SECONDS).await);
    let (status, paid) = world
        .call(
            Method::POST,
            "/api/v1/x402/pay",
            &key,
            Some(&json!({"agent_id": agent, "target_url": api})),
        )
        .await;
    assert_eq!(status, 200, "{paid}");
    // The provider settles through us (captured) and also submits the authorization on chain.
    let response = world
        .http
        .get(&api)
        .header(
            paid["payment_header"].as_str().unwrap(),
            paid["payment_signature"].as_str().unwrap(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let payload: awx_x402::PaymentPayload =
        awx_x402::header::decode(paid["payment_signature"].as_str().unwrap()).unwrap();
    let ExactEvmPayload::Eip3009(eip3009) = ExactEvmPayload::from_json(&payload.payload).unwrap()
    else {
        panic!("not an EIP-3009 payload");
    };
    world.token.transfer_with_authorization(&eip3009).await.unwrap();
    assert_eq!(world.balance(payee).await, atomic(DIME));

    world.wait_for_expiry().await;
    let worker = world.worker();
    let total = settle_all(&world, &worker, 10).await;
    assert_eq!(total.external, 1, "{total:?}");
    assert_eq!(
        world.count("SELECT count(*) FROM settlement.net_transfers WHERE kind = 'payee'").await,
        0
    );
    assert_eq!(world.count("SELECT count(*) FROM settlement.items WHERE state = 'settled_externally' AND payout_recorded").await, 1);
    // The agent paid once. Its fee (below the threshold, with no transfer of the payer going
    // out) waits until max_delay after the capture, then goes to the platform.
    assert_eq!(world.balance(payee).await, atomic(DIME));
    assert_eq!(world.balance(FEE_ADDRESS).await, U256::ZERO);
    let captured: i64 =
        sqlx::query_scalar("SELECT extract(epoch FROM captured_at)::bigint FROM settlement.items")
            .fetch_one(&world.db.pool)
            .await
            .unwrap();
    let due = u64::try_from(captured + 12 + 1).unwrap().saturating_sub(support::now());
    tokio::time::sleep(Duration::from_secs(due)).await;
    settle_all(&world, &worker, 10).await;
    assert_eq!(world.count("SELECT count(*) FROM settlement.net_transfers WHERE kind = 'fee' AND state = 'confirmed'").await, 1);
    assert_eq!(world.balance(FEE_ADDRESS).await, atomic(DIME_FEE));
    assert_eq!(world.balance(wallet).await, atomic(1_000_000 - DIME - DIME_FEE));
    world.assert_ledger_consistent().await;
    world.stop().await;
}

/// Moves all of `wallet`'s tokens away on chain behind awx's back (anvil impersonation).
async fn drain(world: &World, wallet: Address) -> U256 {
    let balance = world.balance(wallet).await;
    world.rpc("anvil_setBalance", json!([wallet.to_string(), "0x56bc75e2d63100000"])).await;
    world.rpc("anvil_impersonateAccount", json!([wallet.to_string()])).await;
    let mut data = vec![0xa9, 0x05, 0x9c, 0xbb];
    data.extend_from_slice(&[0u8; 12]);
    data.extend_from_slice(Address::repeat_byte(0xdd).as_slice());
    data.extend_from_slice(&balance.to_be_bytes::<32>());
    let hash = world
        .rpc(
            "eth_sendTransaction",
            json!([{"from": wallet.to_string(), "to": world.token.address().to_string(),
                    "data": format!("0x{}", alloy::primitives::hex::encode(&data))}]),
        )
        .await;
    assert!(hash.is_string(), "{hash}");
    world.rpc("anvil_stopImpersonatingAccount", json!([wallet.to_string()])).await;
    assert_eq!(world.balance(wallet).await, U256::ZERO);
    balance
}

#[tokio::test]
async fn a_transfer_that_fails_inside_its_batch_goes_back_and_the_others_confirm() {
    let world = World::start_with(|args| args.batch.threshold_usd = "0.01".into()).await;
    let key = world.new_key(&["agent"]).await;
    let (healthy, _) = funded_agent(&world, "1.00").await;
    let (drained, drained_wallet) = funded_agent(&world, "1.00").await;
    let payee = Address::random();
    let api = format!("{}/paid", world.paid_api_expiring(payee, DIME, EXPIRY_SECONDS).await);
    world.pay_and_serve(&key, &healthy, &api).await;
    world.pay_and_serve(&key, &drained, &api).await;
    let taken = drain(&world, drained_wallet).await;

    world.wait_for_expiry().await;
    let worker = world.worker();
    let total = settle_all(&world, &worker, 3).await;
    assert!(total.failed >= 1, "{total:?}");
    // The healthy payer's transfer confirmed; the drained one's is back, with the reason.
    assert_eq!(world.balance(payee).await, atomic(DIME));
    let (state, attempts, error): (String, i32, Option<String>) = sqlx::query_as(
        "SELECT state, attempts, last_error FROM settlement.net_transfers WHERE kind = 'payee' AND payer = $1",
    )
    .bind(drained_wallet.to_string().to_lowercase())
    .fetch_one(&world.db.pool)
    .await
    .unwrap();
    assert_eq!(state, "signed");
    assert!(attempts >= 1);
    assert!(error.unwrap_or_default().contains("insufficient_funds"));
    assert_eq!(world.count("SELECT count(*) FROM settlement.items WHERE state = 'batched' AND last_error LIKE 'insufficient_funds%'").await, 1);

    // The money comes back on chain: the same signed transfer goes in the next batch.
    world.token.mint(drained_wallet, taken).await.unwrap();
    settle_all(&world, &worker, 10).await;
    assert_eq!(world.balance(payee).await, atomic(2 * DIME));
    assert_eq!(
        world.count("SELECT count(*) FROM settlement.items WHERE state = 'settled'").await,
        2
    );
    assert_eq!(
        world.count("SELECT count(DISTINCT nonce) FROM settlement.net_transfers").await,
        world.count("SELECT count(*) FROM settlement.net_transfers").await
    );
    world.assert_ledger_consistent().await;
    world.stop().await;
}

#[tokio::test]
async fn two_workers_at_once_pay_every_item_exactly_once() {
    let world = World::start_with(|args| args.batch.threshold_usd = "0.01".into()).await;
    let key = world.new_key(&["agent"]).await;
    let (agent, _) = funded_agent(&world, "2.00").await;
    let payees: Vec<Address> = (0..3).map(|_| Address::random()).collect();
    for payee in &payees {
        let api = format!("{}/paid", world.paid_api_expiring(*payee, DIME, EXPIRY_SECONDS).await);
        world.pay_and_serve(&key, &agent, &api).await;
        world.pay_and_serve(&key, &agent, &api).await;
    }
    world.wait_for_expiry().await;
    let (one, two) = (world.worker(), world.worker());
    for _ in 0..10 {
        let (a, b) = tokio::join!(one.run_once(), two.run_once());
        a.unwrap();
        b.unwrap();
    }
    for payee in &payees {
        assert_eq!(world.balance(*payee).await, atomic(2 * DIME));
    }
    assert_eq!(
        world
            .count("SELECT count(*) FROM settlement.net_transfers WHERE state = 'confirmed'")
            .await,
        4
    );
    assert_eq!(
        world.count("SELECT count(*) FROM settlement.items WHERE state = 'settled'").await,
        6
    );
    world.assert_ledger_consistent().await;
    world.stop().await;
}

#[tokio::test]
async fn a_stuck_batch_is_replaced_with_a_higher_fee_and_confirmed_once() {
    let world = World::start_with(|args| {
        args.batch.threshold_usd = "0.01".into();
        args.batch.replace_after_seconds = 1;
        args.networks[0].receipt_wait_ms = 300;
    })
    .await;
    let key = world.new_key(&["agent"]).await;
    let (agent, _) = funded_agent(&world, "1.00").await;
    let payee = Address::random();
    let api = format!("{}/paid", world.paid_api_expiring(payee, DIME, EXPIRY_SECONDS).await);
    world.pay_and_serve(&key, &agent, &api).await;
    world.wait_for_expiry().await;

    world.rpc("evm_setAutomine", json!([false])).await;
    let worker = world.worker();
    let report = worker.run_once().await.unwrap();
    assert!(report[0].batch.is_some(), "{report:?}");
    assert_eq!(report[0].confirmed, 0);
    assert_eq!(world.count("SELECT count(*) FROM settlement.chain_txs WHERE purpose = 'batch' AND state = 'broadcast'").await, 1);
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    let report = worker.run_once().await.unwrap();
    assert_eq!(report[0].replaced, 1, "{report:?}");
    let fees: Vec<String> = sqlx::query_scalar(
        "SELECT max_fee_per_gas::text FROM settlement.chain_txs WHERE purpose = 'batch' ORDER BY created_at",
    )
    .fetch_all(&world.db.pool)
    .await
    .unwrap();
    assert_eq!(fees.len(), 2);
    assert!(fees[1].parse::<u128>().unwrap() > fees[0].parse::<u128>().unwrap(), "{fees:?}");

    world.rpc("evm_mine", json!([])).await;
    world.rpc("evm_setAutomine", json!([true])).await;
    settle_all(&world, &worker, 10).await;
    assert_eq!(world.balance(payee).await, atomic(DIME));
    assert_eq!(world.count("SELECT count(*) FROM settlement.chain_txs WHERE purpose = 'batch' AND state = 'confirmed'").await, 1);
    assert_eq!(world.count("SELECT count(*) FROM settlement.chain_txs WHERE purpose = 'batch' AND state = 'replaced'").await, 1);
    world.assert_ledger_consistent().await;
    world.stop().await;
}

#[tokio::test]
async fn a_batch_above_the_gas_cap_is_split_and_every_transfer_still_goes() {
    // One transfer fits in 100,000 gas; two do not.
    let world = World::start_with(|args| {
        args.batch.threshold_usd = "0.01".into();
        args.batch.gas_max_per_batch = 100_000;
        args.batch.fee_address = None;
    })
    .await;
    let key = world.new_key(&["agent"]).await;
    let (agent, _) = funded_agent(&world, "1.00").await;
    let payees: Vec<Address> = (0..3).map(|_| Address::random()).collect();
    for payee in &payees {
        let api = format!("{}/paid", world.paid_api_expiring(*payee, DIME, EXPIRY_SECONDS).await);
        world.pay_and_serve(&key, &agent, &api).await;
    }
    world.wait_for_expiry().await;
    let worker = world.worker();
    settle_all(&world, &worker, 10).await;
    for payee in &payees {
        assert_eq!(world.balance(*payee).await, atomic(DIME));
    }
    assert_eq!(
        world.count("SELECT count(*) FROM settlement.batches WHERE state = 'confirmed'").await,
        3
    );
    let most: Option<i64> = sqlx::query_scalar("SELECT max(gas_used) FROM settlement.batches")
        .fetch_one(&world.db.pool)
        .await
        .unwrap();
    assert!(most.unwrap() <= 100_000, "{most:?}");
    world.assert_ledger_consistent().await;
    world.stop().await;
}

#[tokio::test]
async fn a_payment_settled_by_another_facilitator_stays_spent_and_the_ledger_matches_the_chain() {
    // The fee ($0.002) reaches this threshold alone, so it is collected in the next pass.
    let world = World::start_with(|args| {
        args.batch.threshold_usd = "0.002".into();
        args.policy_expiry_grace_seconds = 1;
    })
    .await;
    let key = world.new_key(&["agent"]).await;
    let (agent, wallet) = funded_agent(&world, "1.00").await;
    let payee = Address::random();
    let api = format!("{}/paid", world.paid_api_expiring(payee, DIME, EXPIRY_SECONDS).await);
    let (status, session) = world
        .call(
            Method::POST,
            "/api/v1/x402/sessions",
            &key,
            Some(&json!({"agent_id": agent, "budget_limit": "1.00", "ttl_seconds": 3600})),
        )
        .await;
    assert_eq!(status, 201, "{session}");
    let session = session["id"].as_str().unwrap().to_owned();
    let (status, paid) = world
        .call(
            Method::POST,
            &format!("/api/v1/x402/sessions/{session}/pay"),
            &key,
            Some(&json!({"target_url": api})),
        )
        .await;
    assert_eq!(status, 200, "{paid}");
    // The provider never settles through awx: another facilitator submits the authorization.
    let payload: awx_x402::PaymentPayload =
        awx_x402::header::decode(paid["payment_signature"].as_str().unwrap()).unwrap();
    let ExactEvmPayload::Eip3009(eip3009) = ExactEvmPayload::from_json(&payload.payload).unwrap()
    else {
        panic!("not an EIP-3009 payload");
    };
    world.token.transfer_with_authorization(&eip3009).await.unwrap();

    // After validBefore the sweeper asks the chain: used, so the payment is captured, not
    // released, and the session keeps it spent.
    let path = format!("/api/v1/x402/payments/{}", paid["ledger_id"].as_str().unwrap());
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
    assert_eq!(view["settlement"]["state"], "settled_externally", "{view}");
    let (_, session_view) =
        world.call(Method::GET, &format!("/api/v1/x402/sessions/{session}"), &key, None).await;
    assert_eq!(session_view["spent"], "0.10", "{session_view}");
    assert_eq!(world.agent_balance(&agent).await, ("0.898".into(), "0.00".into()));

    // The payout is posted and the fee collected: the ledger's wallet equals the chain's.
    let worker = world.worker();
    settle_all(&world, &worker, 10).await;
    assert_eq!(world.balance(payee).await, atomic(DIME));
    assert_eq!(world.balance(FEE_ADDRESS).await, atomic(DIME_FEE));
    assert_eq!(world.balance(wallet).await, atomic(898_000));
    assert_eq!(world.agent_balance(&agent).await, ("0.898".into(), "0.00".into()));
    world.assert_ledger_consistent().await;
    world.stop().await;
}
