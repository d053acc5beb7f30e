//! `awx ledger check --chain`: every agent wallet's token balance on chain equals what the ledger
//! holds for it (available + held + captured not yet paid on chain + fees not yet collected),
//! before and after net settlement, and a transfer out of a wallet behind awx's back is reported
//! for that wallet only, by `check_wallets` and by the `awx` command's exit code.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail by panicking"
)]

mod support;

use std::process::{Command, Output};
use std::time::Duration;

use alloy::primitives::U256;
use awx_chain::ChainClient;
use awx_cli::chain_check::{WALLET_CHECK, check_wallets};
use awx_settlement_service::batch::BatchWorker;
use awx_x402::{Address, ExactEvmPayload};
use reqwest::Method;
use serde_json::json;
use support::World;

/// How long the test APIs' authorizations are valid (a facilitator wants at least 6 s left).
const EXPIRY_SECONDS: u64 = 8;
/// A dime in atomic units; its fee at 2.0 % is 2,000.
const DIME: u128 = 100_000;
const DIME_FEE: u128 = 2_000;

async fn funded_agent(world: &World, amount: &str) -> (String, Address) {
    let (agent, wallet) = world.create_agent(json!({})).await;
    world.fund(&agent, amount).await;
    (agent, wallet)
}

fn client(world: &World) -> ChainClient {
    ChainClient::connect(world.anvil.endpoint()).unwrap()
}

/// An agent wallet's ledger account: (available, held) in atomic units.
async fn ledger_wallet(world: &World, agent: &str) -> (u128, u128) {
    let (credits, debits, held): (String, String, String) = sqlx::query_as(
        "SELECT credits_posted::text, debits_posted::text, debits_pending::text
         FROM ledger.accounts WHERE code = 'wallet' AND ref = $1",
    )
    .bind(agent)
    .fetch_one(&world.db.pool)
    .await
    .unwrap();
    let parse = |text: String| text.parse::<u128>().unwrap();
    let held = parse(held);
    (parse(credits) - parse(debits) - held, held)
}

/// Runs batch worker passes until nothing is queued, batched, in flight or unrecorded (at most
/// `passes`).
async fn settle_all(world: &World, worker: &BatchWorker, passes: usize) {
    for _ in 0..passes {
        worker.run_once().await.unwrap();
        let open = world
            .count("SELECT count(*) FROM settlement.items WHERE state IN ('queued', 'batched')")
            .await
            + world
                .count(
                    "SELECT count(*) FROM settlement.net_transfers WHERE state <> 'confirmed' OR NOT recorded",
                )
                .await;
        if open == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("the batch worker did not settle everything in {passes} passes");
}

/// Runs `awx ledger --database-url … check` with `args` as a process.
async fn awx_check(world: &World, args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_awx"));
    command.args(["ledger", "--database-url", &world.db.url(), "check"]).args(args);
    tokio::task::spawn_blocking(move || command.output().unwrap()).await.unwrap()
}

#[tokio::test]
async fn wallets_match_the_ledger_with_captures_queued_and_after_netting() {
    let world = World::start_with(|args| args.batch.threshold_usd = "0.01".into()).await;
    let client = client(&world);
    let key = world.new_key(&["agent"]).await;
    let (payer, payer_wallet) = funded_agent(&world, "5.00").await;
    let (holder, holder_wallet) = funded_agent(&world, "3.00").await;
    let provider = Address::random();
    let api = format!("{}/paid", world.paid_api_expiring(provider, DIME, EXPIRY_SECONDS).await);
    world.pay_and_serve(&key, &payer, &api).await;
    world.pay_and_serve(&key, &payer, &api).await;
    // A payment signed and never served: its hold stays pending.
    world.session_pay(&key, &holder, &api).await;

    // Captured and queued: the ledger has taken amount and fee from the wallet account, the
    // tokens are still in the wallet; held money is in the wallet too.
    assert_eq!(world.balance(payer_wallet).await, U256::from(5_000_000u64));
    assert_eq!(ledger_wallet(&world, &payer).await, (5_000_000 - 2 * (DIME + DIME_FEE), 0));
    assert_eq!(world.balance(holder_wallet).await, U256::from(3_000_000u64));
    assert_eq!(
        ledger_wallet(&world, &holder).await,
        (3_000_000 - DIME - DIME_FEE, DIME + DIME_FEE)
    );
    let violations = check_wallets(&world.db.pool, &client).await.unwrap();
    assert_eq!(violations, [], "captured, queued");

    // A third payment whose authorization the provider also submits on chain itself: once the
    // worker has seen it paid (settled_externally), only its fee is still owed from the wallet.
    let (status, paid) = world
        .call(
            Method::POST,
            "/api/v1/x402/pay",
            &key,
            Some(&json!({"agent_id": payer, "target_url": api})),
        )
        .await;
    assert_eq!(status, 200, "{paid}");
    let served = world
        .http
        .get(&api)
        .header(
            paid["payment_header"].as_str().unwrap(),
            paid["payment_signature"].as_str().unwrap(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(served.status().as_u16(), 200);
    let payload: awx_x402::PaymentPayload =
        awx_x402::header::decode(paid["payment_signature"].as_str().unwrap()).unwrap();
    let ExactEvmPayload::Eip3009(eip3009) = ExactEvmPayload::from_json(&payload.payload).unwrap()
    else {
        panic!("not an EIP-3009 payload");
    };
    world.token.transfer_with_authorization(&eip3009).await.unwrap();

    world.wait_for_expiry().await;
    settle_all(&world, &world.worker(), 20).await;
    assert_eq!(
        world.count("SELECT count(*) FROM settlement.items WHERE state = 'settled'").await,
        2
    );
    assert_eq!(
        world
            .count("SELECT count(*) FROM settlement.items WHERE state = 'settled_externally'")
            .await,
        1
    );
    assert_eq!(
        world
            .count("SELECT count(*) FROM settlement.net_transfers WHERE kind = 'fee' AND state = 'confirmed'")
            .await,
        1
    );
    assert_eq!(world.balance(provider).await, U256::from(3 * DIME));
    assert_eq!(world.balance(payer_wallet).await, U256::from(5_000_000 - 3 * (DIME + DIME_FEE)));
    let violations = check_wallets(&world.db.pool, &client).await.unwrap();
    assert_eq!(violations, [], "settled");
    world.assert_ledger_consistent().await;
    world.stop().await;
}

#[tokio::test]
async fn tokens_moved_out_behind_awx_s_back_are_reported_for_that_wallet() {
    let world = World::start().await;
    let client = client(&world);
    let key = world.new_key(&["agent"]).await;
    let (payer, wallet) = funded_agent(&world, "5.00").await;
    funded_agent(&world, "2.00").await;
    let api = format!("{}/paid", world.paid_api(Address::random(), DIME).await);
    world.pay_and_serve(&key, &payer, &api).await;
    let rpc_url = world.anvil.endpoint().to_owned();
    let sound = awx_check(&world, &["--chain", "--rpc-url", &rpc_url]).await;
    let stdout = String::from_utf8_lossy(&sound.stdout);
    assert!(sound.status.success(), "{stdout}{}", String::from_utf8_lossy(&sound.stderr));
    assert!(stdout.contains("every invariant holds"), "{stdout}");

    // Someone holding the wallet's key moves tokens out without awx.
    let taken = 250_000u64;
    world.rpc("anvil_impersonateAccount", json!([wallet])).await;
    world.rpc("anvil_setBalance", json!([wallet, "0xde0b6b3a7640000"])).await;
    let mut calldata = String::from("0xa9059cbb");
    calldata.push_str(&format!("{:0>64}", alloy::primitives::hex::encode(Address::random())));
    calldata.push_str(&format!("{taken:0>64x}"));
    let hash = world
        .rpc(
            "eth_sendTransaction",
            json!([{"from": wallet, "to": world.token.address(), "data": calldata}]),
        )
        .await;
    let receipt = world.mined_receipt(&hash).await;
    assert_eq!(receipt["status"], "0x1", "{receipt}");
    world.rpc("anvil_stopImpersonatingAccount", json!([wallet])).await;

    let violations = check_wallets(&world.db.pool, &client).await.unwrap();
    assert_eq!(violations.len(), 1, "{violations:?}");
    assert_eq!(violations[0].check, WALLET_CHECK);
    let available = 5_000_000 - DIME - DIME_FEE;
    let detail = format!(
        "{} {:#x} agent {payer} wallet {wallet:#x}: chain {}, ledger 5000000 (available {available}, held 0, captured not settled {DIME}, fees not collected {DIME_FEE}, withdrawn not yet recorded 0)",
        world.network,
        world.token.address(),
        5_000_000 - taken,
    );
    assert_eq!(violations[0].detail, detail);

    let tampered = awx_check(&world, &["--chain", "--rpc-url", &rpc_url]).await;
    let stdout = String::from_utf8_lossy(&tampered.stdout);
    assert_eq!(tampered.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains(&format!("VIOLATION [{WALLET_CHECK}] {detail}")), "{stdout}");
    assert_eq!(stdout.matches("VIOLATION").count(), 1, "{stdout}");
    // Without --chain, the wallets are not read.
    let batches_only = awx_check(&world, &["--rpc-url", &rpc_url]).await;
    assert!(batches_only.status.success(), "{}", String::from_utf8_lossy(&batches_only.stdout));
    world.stop().await;
}

#[test]
fn chain_without_an_rpc_url_is_refused() {
    let output = Command::new(env!("CARGO_BIN_EXE_awx"))
        .args(["ledger", "--database-url", "postgres://127.0.0.1:1/none", "check", "--chain"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--rpc-url"), "{stderr}");
}
