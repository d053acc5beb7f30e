//! The gateway and the ledger together (in one process, over a real bus): fee tiers, balances
//! and statements through the HTTP API, tenant isolation included.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail by panicking"
)]

use std::time::Duration;

use awx_api::ledger::{Asset, Capture, Deposit, DepositSource, Hold};
use awx_cli::platform::{self, PlatformArgs};
use awx_test_support::{RedisNamespace, TestDb};
use awx_types::{AccountId, AgentId, Amount, PaymentId};
use awx_x402::{Address, B256};
use serde_json::Value;

const TOKEN: &str = "0x5FbDB2315678afecb367f032d93F642f64180aa3";

fn alloy_kek() -> String {
    B256::random().to_string().trim_start_matches("0x").to_owned()
}

fn asset() -> Asset {
    Asset { network: "eip155:31337".into(), token: TOKEN.parse().unwrap(), decimals: 6 }
}

#[tokio::test]
async fn balances_statements_and_fee_tiers_through_the_gateway() {
    let db = TestDb::new().await;
    let namespace = RedisNamespace::new();
    let state_dir =
        std::env::temp_dir().join(format!("awx-ledger-api-{}", uuid::Uuid::new_v4().simple()));
    let platform = platform::start(PlatformArgs {
        database_url: db.url(),
        redis_url: awx_test_support::redis_url(),
        bus_prefix: namespace.prefix().to_owned(),
        gateway_addr: "127.0.0.1:0".into(),
        ledger_ops_addr: "127.0.0.1:0".into(),
        tokens: vec![awx_x402::TokenInfo {
            network: awx_x402::Network::evm(31_337),
            address: TOKEN.parse().unwrap(),
            symbol: "USDC".into(),
            decimals: 6,
            eip712_name: "USD Coin".into(),
            eip712_version: "2".into(),
        }],
        settlement_ops_addr: "127.0.0.1:0".into(),
        networks: Vec::new(),
        allowed_contracts: std::collections::BTreeMap::new(),
        signer_kek_hex: alloy_kek(),
        policy_ops_addr: "127.0.0.1:0".into(),
        decision_key_hex: alloy_kek(),
        default_chain: "eip155:31337".into(),
        allow_private_targets: false,
        policy_upstream_timeout_ms: 5_000,
        policy_expiry_grace_seconds: 60,
        state_dir: state_dir.clone(),
        batch: Default::default(),
        watch: Default::default(),
    })
    .await
    .unwrap();
    let http = reqwest::Client::new();
    let get = |path: String, key: String| {
        let http = http.clone();
        let url = format!("{}{path}", platform.gateway_url);
        async move { http.get(url).header("x-api-key", key).send().await.unwrap() }
    };
    let admin = platform.admin_key.clone();
    let account: Value = get("/api/v1/account".into(), admin.clone()).await.json().await.unwrap();
    let owner = AccountId::parse(account["id"].as_str().unwrap()).unwrap();

    // Money arrives and a payment is held, through the ledger's bus commands.
    let mut config = awx_bus::BusConfig::new("test-client", "test_client");
    config.redis_url = secrecy::SecretString::from(awx_test_support::redis_url());
    config.prefix = namespace.prefix().to_owned();
    let bus = awx_bus::Bus::connect(config).await.unwrap();
    // The agent is the account's (the gateway answers 404 for anyone else's).
    let created: Value = http
        .post(format!("{}/api/v1/agents", platform.gateway_url))
        .header("x-api-key", &admin)
        .json(&serde_json::json!({"name": "statement-agent"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let agent = AgentId::parse(created["id"].as_str().unwrap()).unwrap();
    let deposit = Deposit {
        owner,
        agent,
        asset: asset(),
        amount: Amount::from_atomic(5_000_000),
        tx_hash: B256::random(),
        log_index: 0,
        source: DepositSource::Faucet,
        block_hash: None,
    };
    bus.send(&deposit, Duration::from_secs(10)).await.unwrap();
    let hold = Hold {
        payment_id: PaymentId::new(),
        owner,
        agent,
        asset: asset(),
        payee: Address::repeat_byte(1),
        amount: Amount::from_atomic(100_000),
        timeout_seconds: 300,
    };
    let held = bus.send(&hold, Duration::from_secs(10)).await.unwrap();

    let balances: Value =
        get(format!("/api/v1/agents/{agent}/balances"), admin.clone()).await.json().await.unwrap();
    assert_eq!(
        balances["balances"],
        serde_json::json!([{"chain": "eip155:31337", "token": "USDC", "asset": TOKEN, "available": "4.898", "held": "0.102"}])
    );

    let statement: Value =
        get(format!("/api/v1/agents/{agent}/statement"), admin.clone()).await.json().await.unwrap();
    let lines = statement["data"].as_array().unwrap();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[0]["type"], "deposit");
    assert_eq!(lines[0]["credit"], "5.00");
    assert_eq!(lines[1]["type"], "hold");
    assert_eq!(lines[1]["debit"], "0.10");
    assert_eq!(lines[1]["ledger_id"], held.ledger_id.to_string());
    assert_eq!(lines[2]["debit"], "0.002");
    assert_eq!(lines[2]["available_after"], "4.898");
    let page: Value = get(format!("/api/v1/agents/{agent}/statement?limit=2"), admin.clone())
        .await
        .json()
        .await
        .unwrap();
    let cursor = page["next_cursor"].as_i64().unwrap();
    let rest: Value =
        get(format!("/api/v1/agents/{agent}/statement?limit=2&cursor={cursor}"), admin.clone())
            .await
            .json()
            .await
            .unwrap();
    assert_eq!(rest["data"].as_array().unwrap().len(), 1);
    assert!(rest.get("next_cursor").is_none());

    // The provider's settle captures the payment: its lines carry the payment's ledger id (the
    // hold's, as the API shows it) and the captured amount and fee, the hold lifted as a credit.
    let captured = bus
        .send(&Capture { hold_id: held.ledger_id, amount: None }, Duration::from_secs(10))
        .await
        .unwrap();
    assert_ne!(captured.ledger_id, held.ledger_id, "the capture is a transfer of its own");
    let statement: Value =
        get(format!("/api/v1/agents/{agent}/statement"), admin.clone()).await.json().await.unwrap();
    let lines = statement["data"].as_array().unwrap();
    assert_eq!(lines.len(), 5, "{statement}");
    let shown: Vec<(&str, &str, &str, &str, &str)> = lines
        .iter()
        .map(|line| {
            (
                line["type"].as_str().unwrap(),
                line["ledger_id"].as_str().unwrap(),
                line["credit"].as_str().unwrap(),
                line["debit"].as_str().unwrap(),
                line["available_after"].as_str().unwrap(),
            )
        })
        .collect();
    let payment = held.ledger_id.to_string();
    assert!(payment.starts_with("ldg_"), "{payment}");
    assert_eq!(
        shown[1..],
        [
            ("hold", payment.as_str(), "0.00", "0.10", "4.90"),
            ("hold", payment.as_str(), "0.00", "0.002", "4.898"),
            ("capture", payment.as_str(), "0.10", "0.10", "4.898"),
            ("capture", payment.as_str(), "0.002", "0.002", "4.898"),
        ],
        "{statement}"
    );
    assert_eq!(lines[4]["held_after"], "0.00");

    let tiers: Value =
        get("/api/v1/x402/fees/tiers".into(), admin.clone()).await.json().await.unwrap();
    assert_eq!(tiers["current_tier"], "starter");
    assert_eq!(tiers["fee_rate"], "2.0");
    assert_eq!(tiers["volume_30d"], "0.00");
    assert_eq!(
        tiers["tiers"][1],
        serde_json::json!({"name": "growth", "volume_from": "1000.00", "volume_to": "10000.00", "fee_rate": "1.5"})
    );
    assert_eq!(
        tiers["tiers"][3],
        serde_json::json!({"name": "enterprise", "volume_from": "100000.00", "fee_rate": "0.5"})
    );

    // Another tenant sees nothing of this agent; a provider key may not read balances.
    let pool = sqlx::PgPool::connect(&db.url()).await.unwrap();
    let (_, other) = awx_gateway::accounts::create_account(
        &pool,
        &awx_gateway::config::AuthSettings::default(),
        "other",
    )
    .await
    .unwrap();
    // Another tenant's agent is no agent of theirs: 404, not an empty wallet.
    let other_key = other.plaintext.expose().to_owned();
    let foreign = get(format!("/api/v1/agents/{agent}/balances"), other_key.clone()).await;
    assert_eq!(foreign.status(), 404);
    let foreign_statement = get(format!("/api/v1/agents/{agent}/statement"), other_key).await;
    assert_eq!(foreign_statement.status(), 404);
    assert_eq!(get("/api/v1/agents/agt_nope/balances".into(), admin.clone()).await.status(), 404);

    platform.stop().await.unwrap();
    let _ = std::fs::remove_dir_all(state_dir);
}
