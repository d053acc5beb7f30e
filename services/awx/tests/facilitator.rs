//! The facilitator for outside payers, end to end: the gateway, the settlement service, the
//! signer and a real chain (anvil with our token).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail by panicking"
)]

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use alloy::primitives::U256;
use alloy::signers::local::PrivateKeySigner;
use awx_x402::{Address, Bytes, ExactEvmPayload};
use serde_json::{Value, json};
use support::World;

#[tokio::test]
async fn an_outside_payment_is_verified_and_settled_on_chain_once() {
    let world = World::start().await;
    let payer = world.funded_payer(5_000_000).await;
    let payee = Address::random();
    let requirements = world.requirements(payee, 1_230_000);
    let payload = world.payment(&payer, &requirements);

    let verified = world.verify(&payload, &requirements).await;
    assert_eq!(verified["isValid"], true, "{verified}");
    assert_eq!(verified["payer"], payer.address().to_checksum(None));

    let settled = world.settle(&payload, &requirements).await;
    assert_eq!(settled["success"], true, "{settled}");
    assert_eq!(settled["network"], world.network);
    let hash = settled["transaction"].as_str().unwrap().to_owned();
    assert_eq!(hash.len(), 66);
    assert_eq!(world.balance(payee).await, U256::from(1_230_000));
    assert_eq!(world.balance(payer.address()).await, U256::from(3_770_000));
    let nonce = match ExactEvmPayload::from_json(&payload.payload).unwrap() {
        ExactEvmPayload::Eip3009(eip3009) => eip3009.authorization.nonce,
        ExactEvmPayload::Permit2(_) => unreachable!(),
    };
    assert!(world.token.authorization_state(payer.address(), nonce).await.unwrap());

    // Settling again returns the stored outcome and sends nothing.
    let again = world.settle(&payload, &requirements).await;
    assert_eq!(again["success"], true);
    assert_eq!(again["transaction"], hash);
    assert_eq!(world.count("SELECT count(*) FROM settlement.chain_txs").await, 1);
    assert_eq!(
        world.count("SELECT count(*) FROM settlement.settlements WHERE state = 'confirmed'").await,
        1
    );
    // Verifying it again now fails: the nonce is used on chain.
    let used = world.verify(&payload, &requirements).await;
    assert_eq!(used["invalidReason"], "invalid_exact_evm_nonce_already_used", "{used}");
    assert_eq!(world.balance(payee).await, U256::from(1_230_000));
    world.stop().await;
}

#[tokio::test]
async fn twenty_concurrent_settles_of_one_payload_send_one_transaction() {
    let world = World::start().await;
    let payer = world.funded_payer(1_000_000).await;
    let payee = Address::random();
    let requirements = world.requirements(payee, 250_000);
    let payload = world.payment(&payer, &requirements);
    let answers =
        futures::future::join_all((0..20).map(|_| world.settle(&payload, &requirements))).await;
    let hashes: BTreeSet<String> = answers
        .iter()
        .map(|answer| {
            assert_eq!(answer["success"], true, "{answer}");
            answer["transaction"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(hashes.len(), 1, "every settle answered the one transaction");
    assert_eq!(world.count("SELECT count(*) FROM settlement.chain_txs").await, 1);
    assert_eq!(world.balance(payee).await, U256::from(250_000));
    let relayer = world.platform.as_ref().unwrap().relayers[0];
    let chain_nonce = awx_chain::ChainClient::connect(world.anvil.endpoint())
        .unwrap()
        .pending_nonce(relayer)
        .await
        .unwrap();
    assert_eq!(chain_nonce, 1, "the relayer sent one transaction");
    world.stop().await;
}

#[tokio::test]
async fn two_settlement_replicas_never_share_a_relayer_nonce() {
    let world = World::start().await;
    // A second settlement replica in the same deployment (same database, same bus).
    let mut settings = awx_settlement_service::SettlementSettings::default();
    settings.database.url = secrecy::SecretString::from(world.db.url());
    settings.database.migrate = false;
    settings.bus.redis_url = secrecy::SecretString::from(awx_test_support::redis_url());
    settings.bus.prefix = world.namespace.prefix().to_owned();
    settings.ops_addr = "127.0.0.1:0".into();
    settings.networks = vec![awx_settlement_service::config::NetworkSettings {
        network: world.network.clone(),
        rpc_url: world.anvil.endpoint().to_owned(),
        receipt_wait_ms: 10_000,
        faucet: false,
        faucet_token: None,
        confirmations: 0,
        watch: Default::default(),
    }];
    let replica = awx_settlement_service::SettlementService::build(settings).await.unwrap();
    let replica_facilitator = replica.facilitator();
    let provider = awx_types::AccountId::new();

    let payee = Address::random();
    let requirements = world.requirements(payee, 10_000);
    let mut payments = Vec::new();
    for _ in 0..12 {
        let payer = world.funded_payer(10_000).await;
        payments.push(world.payment(&payer, &requirements));
    }
    // Half go through the gateway (to the platform's replica), half straight to the other one.
    let through_gateway = payments[..6].iter().map(|payload| {
        let world = &world;
        let requirements = &requirements;
        async move { world.settle(payload, requirements).await }
    });
    let direct = payments[6..].iter().map(|payload| {
        let facilitator = replica_facilitator.clone();
        let request = awx_x402::FacilitatorRequest::v2(payload, &requirements);
        async move {
            serde_json::to_value(facilitator.settle(provider, &request).await.unwrap()).unwrap()
        }
    });
    let (first, second) =
        tokio::join!(futures::future::join_all(through_gateway), futures::future::join_all(direct));
    for answer in first.iter().chain(&second) {
        assert_eq!(answer["success"], true, "{answer}");
    }
    let nonces: Vec<i64> =
        sqlx::query_scalar("SELECT nonce FROM settlement.chain_txs ORDER BY nonce")
            .fetch_all(&world.db.pool)
            .await
            .unwrap();
    assert_eq!(nonces, (0..12).collect::<Vec<i64>>(), "contiguous, never shared");
    assert_eq!(world.balance(payee).await, U256::from(120_000));
    world.stop().await;
}

#[tokio::test]
async fn a_transaction_left_unmined_is_answered_pending_then_followed() {
    let world = World::start_with(|args| args.networks[0].receipt_wait_ms = 1_000).await;
    let payer = world.funded_payer(1_000_000).await;
    let payee = Address::random();
    let requirements = world.requirements(payee, 400_000);
    let payload = world.payment(&payer, &requirements);

    world.rpc("evm_setAutomine", json!([false])).await;
    let pending = world.settle(&payload, &requirements).await;
    assert_eq!(pending["success"], false, "{pending}");
    assert_eq!(pending["errorReason"], "settlement_pending");
    let hash = pending["transaction"].as_str().unwrap().to_owned();
    assert_eq!(hash.len(), 66);
    assert_eq!(world.balance(payee).await, U256::ZERO);

    world.rpc("evm_mine", json!([])).await;
    world.rpc("evm_setAutomine", json!([true])).await;
    let followed = world.settle(&payload, &requirements).await;
    assert_eq!(followed["success"], true, "{followed}");
    assert_eq!(followed["transaction"], hash, "the same transaction, not a second broadcast");
    assert_eq!(world.count("SELECT count(*) FROM settlement.chain_txs").await, 1);
    assert_eq!(world.balance(payee).await, U256::from(400_000));
    world.stop().await;
}

#[tokio::test]
async fn verify_names_what_is_wrong_as_the_reference_facilitator_does() {
    let world = World::start().await;
    let payee = Address::random();
    let requirements = world.requirements(payee, 100_000);
    let funded = world.funded_payer(1_000_000).await;
    let poor = world.funded_payer(0).await;
    let reason = |body: Value| body["invalidReason"].as_str().unwrap_or("valid").to_owned();

    assert_eq!(
        reason(world.verify(&world.payment(&poor, &requirements), &requirements).await),
        "invalid_exact_evm_insufficient_balance"
    );
    let mut wrong_name = world.domain();
    wrong_name.name = "Not USD Coin".into();
    let mut named = requirements.clone();
    named.extra.as_mut().unwrap().insert("name".into(), json!("Not USD Coin"));
    let payload = world.payment_with(&funded, &named, &wrong_name, |_| {});
    assert_eq!(
        reason(world.verify(&payload, &named).await),
        "invalid_exact_evm_token_name_mismatch"
    );
    let mut wrong_version = world.domain();
    wrong_version.version = "9".into();
    let mut versioned = requirements.clone();
    versioned.extra.as_mut().unwrap().insert("version".into(), json!("9"));
    let payload = world.payment_with(&funded, &versioned, &wrong_version, |_| {});
    assert_eq!(
        reason(world.verify(&payload, &versioned).await),
        "invalid_exact_evm_token_version_mismatch"
    );

    let payload = world.payment_with(&funded, &requirements, &world.domain(), |auth| {
        auth.valid_before = U256::from(support::now() - 5)
    });
    assert_eq!(
        reason(world.verify(&payload, &requirements).await),
        "invalid_exact_evm_payload_authorization_valid_before"
    );
    let payload = world.payment_with(&funded, &requirements, &world.domain(), |auth| {
        auth.valid_after = U256::from(support::now() + 600)
    });
    assert_eq!(
        reason(world.verify(&payload, &requirements).await),
        "invalid_exact_evm_payload_authorization_valid_after"
    );
    let payload = world
        .payment_with(&funded, &requirements, &world.domain(), |auth| auth.to = Address::random());
    assert_eq!(
        reason(world.verify(&payload, &requirements).await),
        "invalid_exact_evm_recipient_mismatch"
    );
    let payload = world.payment_with(&funded, &requirements, &world.domain(), |auth| {
        auth.value = U256::from(99_999)
    });
    assert_eq!(
        reason(world.verify(&payload, &requirements).await),
        "invalid_exact_evm_payload_authorization_value_mismatch"
    );
    let stranger = PrivateKeySigner::random();
    let mut forged = world.payment(&stranger, &requirements);
    forged.payload["authorization"]["from"] = json!(funded.address().to_checksum(None));
    assert_eq!(reason(world.verify(&forged, &requirements).await), "invalid_exact_evm_signature");
    // A long (smart-wallet) signature from an address with no code.
    let mut long = world.payment(&funded, &requirements);
    long.payload["signature"] = json!(format!("0x01{}", "ab".repeat(65)));
    assert_eq!(
        reason(world.verify(&long, &requirements).await),
        "invalid_exact_evm_payload_undeployed_smart_wallet"
    );
    let mut elsewhere = requirements.clone();
    elsewhere.network = "eip155:999999".into();
    let mut payload = world.payment(&funded, &elsewhere);
    payload.accepted.network = "eip155:999999".into();
    assert_eq!(reason(world.verify(&payload, &elsewhere).await), "invalid_network");
    world.stop().await;
}

#[tokio::test]
async fn settle_refuses_what_verify_refuses_and_sends_nothing() {
    let world = World::start().await;
    let payee = Address::random();
    let requirements = world.requirements(payee, 100_000);
    let poor = world.funded_payer(0).await;
    let settled = world.settle(&world.payment(&poor, &requirements), &requirements).await;
    assert_eq!(settled["success"], false);
    assert_eq!(settled["errorReason"], "invalid_exact_evm_insufficient_balance", "{settled}");
    assert_eq!(settled["transaction"], "");
    let funded = world.funded_payer(1_000_000).await;
    let expired = world.payment_with(&funded, &requirements, &world.domain(), |auth| {
        auth.valid_before = U256::from(support::now())
    });
    let settled = world.settle(&expired, &requirements).await;
    assert_eq!(
        settled["errorReason"], "invalid_exact_evm_payload_authorization_valid_before",
        "{settled}"
    );
    assert_eq!(world.count("SELECT count(*) FROM settlement.chain_txs").await, 0);
    // Another authorization for a nonce already settled is refused without a second transaction.
    let good = world.payment(&funded, &requirements);
    assert_eq!(world.settle(&good, &requirements).await["success"], true);
    let mut twin = good.clone();
    twin.payload["authorization"]["validBefore"] = json!((support::now() + 300).to_string());
    let rebuilt = ExactEvmPayload::from_json(&twin.payload).unwrap();
    let ExactEvmPayload::Eip3009(mut eip3009) = rebuilt else { unreachable!() };
    let signature = eip3009.authorization.sign(&funded, &world.domain()).unwrap();
    eip3009.signature = Bytes::copy_from_slice(&signature.to_bytes());
    twin.payload = ExactEvmPayload::Eip3009(eip3009).to_json();
    let refused = world.settle(&twin, &requirements).await;
    assert_eq!(refused["errorReason"], "invalid_exact_evm_nonce_already_used", "{refused}");
    assert_eq!(world.count("SELECT count(*) FROM settlement.chain_txs").await, 1);
    world.stop().await;
}

#[tokio::test]
async fn a_smart_wallet_pays_through_the_bytes_overload() {
    let world = World::start().await;
    let owner = PrivateKeySigner::random();
    let wallet =
        awx_chain::deploy_test_smart_wallet(&world.deployer, owner.address()).await.unwrap();
    world.token.mint(wallet, U256::from(500_000)).await.unwrap();
    let payee = Address::random();
    let requirements = world.requirements(payee, 300_000);
    let mut payload =
        world.payment_with(&owner, &requirements, &world.domain(), |auth| auth.from = wallet);
    // Re-sign the wallet's authorization in the wallet's own 66-byte format.
    let ExactEvmPayload::Eip3009(mut eip3009) =
        ExactEvmPayload::from_json(&payload.payload).unwrap()
    else {
        unreachable!()
    };
    let owner_signature = awx_x402::eip3009::sign_digest(
        &owner,
        &eip3009.authorization.signing_hash(&world.domain()),
    )
    .unwrap();
    eip3009.signature = awx_chain::smart_wallet_signature(&owner_signature);
    payload.payload = ExactEvmPayload::Eip3009(eip3009).to_json();

    let verified = world.verify(&payload, &requirements).await;
    assert_eq!(verified["isValid"], true, "{verified}");
    let settled = world.settle(&payload, &requirements).await;
    assert_eq!(settled["success"], true, "{settled}");
    assert_eq!(world.balance(payee).await, U256::from(300_000));
    assert_eq!(world.balance(wallet).await, U256::from(200_000));
    world.stop().await;
}

#[tokio::test]
async fn supported_lists_the_chain_and_the_relayers_and_bad_requests_are_400() {
    let world = World::start().await;
    let supported: Value = world
        .http
        .get(format!("{}/api/v1/x402/facilitator/supported", world.gateway_url))
        .header("x-api-key", &world.provider_key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        supported["kinds"],
        json!([{"x402Version": 2, "scheme": "exact", "network": world.network}])
    );
    let relayer = world.platform.as_ref().unwrap().relayers[0].to_checksum(None);
    assert_eq!(supported["signers"], json!({"eip155:*": [relayer]}));

    let (status, body) = world
        .post(
            "/api/v1/x402/facilitator/verify",
            &json!({"paymentPayload": {"x402Version": 2}, "paymentRequirements": {}}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "invalid_field");
    assert_eq!(body["error"]["field"], "paymentPayload.accepted");
    let (status, _) =
        world.post("/api/v1/x402/facilitator/verify", &json!({"nothing": true})).await;
    assert_eq!(status, 400);
    // An agent key may not use the facilitator.
    let agent: Value = world
        .http
        .post(format!("{}/api/v1/keys", world.gateway_url))
        .header("x-api-key", &world.admin_key)
        .json(&json!({"name": "agent", "scopes": ["agent"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let refused = world
        .http
        .get(format!("{}/api/v1/x402/facilitator/supported", world.gateway_url))
        .header("x-api-key", agent["api_key"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);
    world.stop().await;
}

#[tokio::test]
async fn the_gate_envelope_answers_with_gates_codes_and_limits() {
    let world = World::start().await;
    let payee = Address::random();
    let requirements = world.requirements(payee, 100_000);
    let funded = world.funded_payer(1_000_000).await;
    let poor = world.funded_payer(0).await;
    let gate = |action: &str, params: Value| json!({"action": action, "params": params});
    // One request per second per key per action: pace the calls of one action.
    let pause = || tokio::time::sleep(Duration::from_millis(1_100));

    let (status, supported) = world.post("/api/v1/x402", &gate("x402.supported", json!({}))).await;
    assert_eq!((status, supported["code"].as_i64()), (200, Some(0)), "{supported}");
    assert_eq!(supported["data"]["kinds"][0]["network"], world.network);
    assert!(supported["timestamp"].as_i64().unwrap() > 1_700_000_000);

    let good = world.payment(&funded, &requirements);
    // Gate's clients may send only the scheme and network in `accepted`.
    let mut partial = World::body(&good, &requirements);
    partial["paymentPayload"]["accepted"] = json!({"scheme": "exact", "network": world.network});
    let (status, verified) = world.post("/api/v1/x402", &gate("x402.verify", partial)).await;
    assert_eq!((status, verified["code"].as_i64()), (200, Some(0)), "{verified}");
    assert_eq!(verified["data"]["isValid"], true);
    let (status, limited) =
        world.post("/api/v1/x402", &gate("x402.verify", World::body(&good, &requirements))).await;
    assert_eq!((status, limited["code"].as_i64()), (429, Some(10_132)), "{limited}");
    pause().await;
    let (_, poor_verify) = world
        .post(
            "/api/v1/x402",
            &gate("x402.verify", World::body(&world.payment(&poor, &requirements), &requirements)),
        )
        .await;
    assert_eq!(poor_verify["code"], 51_602, "{poor_verify}");
    assert_eq!(poor_verify["data"]["isValid"], false);
    assert_eq!(poor_verify["msg"], "invalid_exact_evm_insufficient_balance");

    let (_, settled) =
        world.post("/api/v1/x402", &gate("x402.settle", World::body(&good, &requirements))).await;
    assert_eq!(settled["code"], 0, "{settled}");
    assert_eq!(settled["data"]["success"], true);
    pause().await;
    let (_, used) =
        world.post("/api/v1/x402", &gate("x402.verify", World::body(&good, &requirements))).await;
    assert_eq!(used["code"], 51_502, "{used}");
    pause().await;
    let mut wrong = World::body(
        &world.payment_with(&funded, &requirements, &world.domain(), |auth| {
            auth.to = Address::random()
        }),
        &requirements,
    );
    wrong["x402Version"] = json!(2);
    let (_, mismatch) = world.post("/api/v1/x402", &gate("x402.verify", wrong)).await;
    assert_eq!(mismatch["code"], 51_401, "{mismatch}");

    let (status, unknown) = world.post("/api/v1/x402", &gate("x402.refund", json!({}))).await;
    assert_eq!((status, unknown["code"].as_i64()), (400, Some(51_001)));
    let (status, unreadable) = world
        .post(
            "/api/v1/x402",
            &gate(
                "x402.settle",
                json!({"paymentPayload": {"x402Version": 2, "accepted": {}, "payload": {}}}),
            ),
        )
        .await;
    assert_eq!(status, 400, "{unreadable}");
    assert_eq!(unreadable["code"], 51_002);
    world.stop().await;
}
