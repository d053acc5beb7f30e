//! Conformance with the official x402 SDKs (`@x402/*` 2.27.0 from `tools/node_modules`), run as
//! real Node processes against the platform on a real chain (`make conformance`):
//!
//! - the official express middleware, with awx as its facilitator, paid by the official fetch
//!   client;
//! - our axum middleware (`awx-x402-axum`), paid by the official fetch client;
//! - the official `HTTPFacilitatorClient` calling our facilitator with payloads viem signed.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail by panicking"
)]

mod support;

use std::time::Duration;

use alloy::primitives::U256;
use alloy::signers::local::PrivateKeySigner;
use awx_x402::{Address, Network};
use awx_x402_axum::{FacilitatorConfig, PaymentInfo, PaymentLayer, PaymentOffer, Price};
use axum::routing::get;
use axum::{Extension, Json, Router};
use serde_json::{Value, json};
use support::interop::{express_server, node};
use support::{TOKEN_NAME, TOKEN_VERSION, World};
use tokio::process::Command;

const AMOUNT: u128 = 10_000;

fn key_hex(key: &PrivateKeySigner) -> String {
    format!("0x{}", alloy::primitives::hex::encode(key.to_bytes()))
}

/// Runs a script to completion and returns the JSON line it printed.
async fn run_script(mut command: Command) -> Value {
    let output = tokio::time::timeout(Duration::from_secs(90), command.output())
        .await
        .expect("script timed out")
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "script failed: {stdout}\n{stderr}");
    serde_json::from_str(stdout.lines().last().unwrap_or_default())
        .unwrap_or_else(|error| panic!("{error}: {stdout}\n{stderr}"))
}

/// The official fetch client paying `url` with `payer`.
async fn pay_with_fetch_client(world: &World, url: &str, payer: &PrivateKeySigner) -> Value {
    let mut command = node(world, "fetch-client.mjs");
    command.env("URL", url).env("PRIVATE_KEY", key_hex(payer));
    run_script(command).await
}

/// Asserts what a successful paid call printed and returns the settlement's transaction hash.
fn assert_paid(paid: &Value, payer: &PrivateKeySigner, network: &str) -> String {
    assert_eq!(paid["status"], 200, "{paid}");
    let response = &paid["paymentResponse"];
    assert_eq!(response["success"], true, "{paid}");
    assert_eq!(response["network"], network);
    assert_eq!(
        response["payer"].as_str().unwrap().to_lowercase(),
        payer.address().to_string().to_lowercase()
    );
    let hash = response["transaction"].as_str().unwrap().to_owned();
    assert_eq!(hash.len(), 66, "{paid}");
    hash
}

#[tokio::test]
async fn the_official_express_server_settles_through_awx_for_the_official_fetch_client() {
    let world = World::start().await;
    let payee = Address::random();
    let (_server, port) = express_server(&world, payee, AMOUNT, &world.gateway_url).await;
    let url = format!("http://127.0.0.1:{port}/paid");

    // Unpaid: the official middleware's 402, built from our `supported`.
    let unpaid = world.http.get(&url).send().await.unwrap();
    assert_eq!(unpaid.status(), 402);
    let required = unpaid
        .headers()
        .get("payment-required")
        .expect("PAYMENT-REQUIRED header")
        .to_str()
        .unwrap()
        .to_owned();
    let required: Value = awx_x402::header::decode(&required).unwrap();
    assert_eq!(required["accepts"][0]["amount"], AMOUNT.to_string());
    assert_eq!(required["accepts"][0]["network"], world.network);

    let payer = world.funded_payer(1_000_000).await;
    let paid = pay_with_fetch_client(&world, &url, &payer).await;
    let hash = assert_paid(&paid, &payer, &world.network);
    assert_eq!(
        serde_json::from_str::<Value>(paid["body"].as_str().unwrap()).unwrap()["served_by"],
        "@x402/express"
    );
    assert_eq!(world.balance(payee).await, U256::from(AMOUNT));
    assert_eq!(world.balance(payer.address()).await, U256::from(1_000_000 - AMOUNT));
    let stored: String = sqlx::query_scalar("SELECT hash FROM settlement.chain_txs")
        .fetch_one(&world.db.pool)
        .await
        .unwrap();
    assert_eq!(stored, hash);
    world.stop().await;
}

#[tokio::test]
async fn our_axum_middleware_is_paid_by_the_official_fetch_client() {
    let world = World::start().await;
    let payee = Address::random();
    let offer = PaymentOffer::new(
        Price::atomic(AMOUNT, world.token.address(), TOKEN_NAME, TOKEN_VERSION),
        payee,
    )
    .network(Network::evm(world.anvil.chain_id()));
    let paywall = PaymentLayer::builder()
        .offer(offer)
        .description("a paid endpoint served by awx-x402-axum")
        .facilitator(
            FacilitatorConfig::new(format!("{}/api/v1/x402/facilitator", world.gateway_url))
                .api_key(&world.provider_key),
        )
        .build()
        .unwrap();
    async fn paid(Extension(info): Extension<PaymentInfo>) -> Json<Value> {
        Json(json!({"served_by": "awx-x402-axum", "payer": info.payer}))
    }
    let app = Router::new().route("/paid", get(paid)).layer(paywall);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    let payer = world.funded_payer(1_000_000).await;
    let paid = pay_with_fetch_client(&world, &format!("http://{address}/paid"), &payer).await;
    assert_paid(&paid, &payer, &world.network);
    let body: Value = serde_json::from_str(paid["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["served_by"], "awx-x402-axum");
    assert_eq!(
        body["payer"].as_str().unwrap().to_lowercase(),
        payer.address().to_string().to_lowercase()
    );
    assert_eq!(world.balance(payee).await, U256::from(AMOUNT));

    // A payer without funds gets the official client's failure, and nothing moves.
    let poor = world.funded_payer(0).await;
    let refused = pay_with_fetch_client(&world, &format!("http://{address}/paid"), &poor).await;
    assert_eq!(refused["status"], 402, "{refused}");
    assert_eq!(world.balance(payee).await, U256::from(AMOUNT));
    server.abort();
    world.stop().await;
}

#[tokio::test]
async fn the_official_facilitator_client_gets_the_reference_answers() {
    let world = World::start().await;
    let payee = Address::random();
    let payer = world.funded_payer(1_000_000).await;
    let poor = PrivateKeySigner::random();
    let mut command = node(&world, "facilitator-client.mjs");
    command
        .env("PAY_TO", payee.to_checksum(None))
        .env("PAYER_KEY", key_hex(&payer))
        .env("POOR_KEY", key_hex(&poor))
        .env("AMOUNT", AMOUNT.to_string())
        .env("CHAIN_ID", world.anvil.chain_id().to_string());
    let results = run_script(command).await;

    assert_eq!(results["supported"]["kinds"][0]["network"], world.network, "{results}");
    assert_eq!(results["valid"]["isValid"], true, "{results}");
    assert_eq!(
        results["valid"]["payer"].as_str().unwrap().to_lowercase(),
        payer.address().to_string().to_lowercase()
    );
    assert_eq!(results["settle"]["success"], true, "{results}");
    assert_eq!(
        results["settleAgain"]["transaction"], results["settle"]["transaction"],
        "settled once"
    );
    let expected = [
        ("used_nonce", "invalid_exact_evm_nonce_already_used"),
        ("expired", "invalid_exact_evm_payload_authorization_valid_before"),
        ("not_yet_valid", "invalid_exact_evm_payload_authorization_valid_after"),
        ("wrong_recipient", "invalid_exact_evm_recipient_mismatch"),
        ("wrong_amount", "invalid_exact_evm_payload_authorization_value_mismatch"),
        ("bad_signature", "invalid_exact_evm_signature"),
        ("insufficient_balance", "invalid_exact_evm_insufficient_balance"),
        ("unknown_network", "invalid_network"),
    ];
    for (case, reason) in expected {
        assert_eq!(results[case]["isValid"], false, "{case}: {results}");
        assert_eq!(results[case]["invalidReason"], reason, "{case}: {results}");
    }
    assert_eq!(world.balance(payee).await, U256::from(AMOUNT));
    assert_eq!(world.count("SELECT count(*) FROM settlement.chain_txs").await, 1);
    world.stop().await;
}
