//! Agent payments end to end, on anvil with every service running: agents with wallets funded
//! from the faucet, sessions, `/x402/pay`, the retry against providers built with our middleware
//! and with the official `@x402/express`, the facilitator for our own payers, approvals, and the
//! refusals (each leaving nothing reserved).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail by panicking"
)]

mod support;

use std::process::Stdio;
use std::time::Duration;

use alloy::primitives::U256;
use awx_x402::Address;
use reqwest::Method;
use serde_json::{Value, json};
use support::World;
use tokio::io::{AsyncBufReadExt as _, BufReader};

/// Retries `url` with the payment; returns the status and the decoded `PAYMENT-RESPONSE`.
async fn retry(world: &World, url: &str, paid: &Value) -> (u16, Option<Value>, String) {
    let header = paid["payment_header"].as_str().unwrap();
    let response = world
        .http
        .get(url)
        .header(header, paid["payment_signature"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let settlement = response
        .headers()
        .get("payment-response")
        .map(|value| awx_x402::header::decode::<Value>(value.to_str().unwrap()).unwrap());
    (status, settlement, response.text().await.unwrap())
}

/// The official `@x402/express` server (interop/express-server.mjs) charging `amount`.
async fn express_server(
    world: &World,
    pay_to: Address,
    amount: u128,
) -> (tokio::process::Child, String) {
    let script = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../interop/express-server.mjs");
    let mut child = tokio::process::Command::new("node")
        .arg(script)
        .env("NETWORK", &world.network)
        .env("TOKEN", world.token.address().to_checksum(None))
        .env("TOKEN_NAME", support::TOKEN_NAME)
        .env("TOKEN_VERSION", support::TOKEN_VERSION)
        .env("FACILITATOR_URL", format!("{}/api/v1/x402/facilitator", world.gateway_url))
        .env("API_KEY", &world.provider_key)
        .env("PAY_TO", pay_to.to_checksum(None))
        .env("AMOUNT", amount.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let line = tokio::time::timeout(
        Duration::from_secs(60),
        BufReader::new(child.stdout.take().unwrap()).lines().next_line(),
    )
    .await
    .unwrap()
    .unwrap()
    .unwrap();
    let port = serde_json::from_str::<Value>(&line).unwrap()["port"].as_u64().unwrap();
    (child, format!("http://127.0.0.1:{port}/paid"))
}

async fn session(world: &World, key: &str, agent: &str, budget: &str) -> String {
    let (status, session) = world
        .call(
            Method::POST,
            "/api/v1/x402/sessions",
            key,
            Some(&json!({"agent_id": agent, "budget_limit": budget, "ttl_seconds": 3600})),
        )
        .await;
    assert_eq!(status, 201, "{session}");
    assert_eq!(session["status"], "active");
    session["id"].as_str().unwrap().to_owned()
}

async fn session_pay(world: &World, key: &str, session: &str, url: &str) -> (u16, Value) {
    world
        .call(
            Method::POST,
            &format!("/api/v1/x402/sessions/{session}/pay"),
            key,
            Some(&json!({"target_url": url})),
        )
        .await
}

async fn get(world: &World, key: &str, path: &str) -> Value {
    let (status, body) = world.call(Method::GET, path, key, None).await;
    assert_eq!(status, 200, "{path}: {body}");
    body
}

#[tokio::test]
async fn an_agent_pays_our_middleware_and_the_official_express_server_from_a_session() {
    let world = World::start().await;
    let key = world.new_key(&["agent"]).await;
    let (agent, wallet) = world.create_agent(json!({})).await;
    let funded = world.fund(&agent, "10.00").await;
    assert_eq!(world.balance(wallet).await, U256::from(10_000_000), "minted on chain");
    assert_eq!(funded["balances"][0]["available"], "10.00");

    let ours_payee = Address::random();
    let ours = format!("{}/paid", world.paid_api(ours_payee, 10_000).await);
    let express_payee = Address::random();
    let (_express, express) = express_server(&world, express_payee, 20_000).await;
    let session = session(&world, &key, &agent, "1.00").await;

    // Our middleware.
    let (status, paid) = session_pay(&world, &key, &session, &ours).await;
    assert_eq!(status, 200, "{paid}");
    assert_eq!(paid["status"], "completed");
    assert_eq!(paid["amount"], "0.01");
    assert_eq!(paid["fee_amount"], "0.0002");
    assert_eq!(paid["fee_rate"], "2.0");
    assert_eq!(paid["token"], "USDC");
    assert_eq!(paid["chain"], world.network);
    assert_eq!(paid["payment_header"], "PAYMENT-SIGNATURE");
    let (status, settlement, body) = retry(&world, &ours, &paid).await;
    assert_eq!(status, 200, "{body}");
    let settlement = settlement.expect("PAYMENT-RESPONSE");
    assert_eq!(settlement["success"], true, "{settlement}");
    assert_eq!(settlement["transaction"], "", "settlement of our own payers is deferred");
    assert_eq!(settlement["extensions"]["awx"]["settlement"], "deferred");
    assert_eq!(settlement["extensions"]["awx"]["paymentId"], paid["ledger_id"]);
    assert!(
        settlement["extensions"]["awx"]["settleBy"].as_i64().unwrap()
            > paid["valid_before"].as_i64().unwrap()
    );
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["payer"].as_str().unwrap().to_lowercase(),
        wallet.to_string().to_lowercase()
    );

    // The official express server, paying from the same session through /x402/pay.
    let (status, paid_express) = world
        .call(
            Method::POST,
            "/api/v1/x402/pay",
            &key,
            Some(&json!({"agent_id": agent, "target_url": express, "session_id": session})),
        )
        .await;
    assert_eq!(status, 200, "{paid_express}");
    assert_eq!(paid_express["amount"], "0.02");
    assert_eq!(paid_express["fee_amount"], "0.0004");
    let (status, settlement, body) = retry(&world, &express, &paid_express).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(settlement.unwrap()["success"], true);
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["served_by"], "@x402/express");

    // Both captured; the session and the wallet show exactly what moved.
    for payment in [&paid, &paid_express] {
        let view = get(
            &world,
            &key,
            &format!("/api/v1/x402/payments/{}", payment["ledger_id"].as_str().unwrap()),
        )
        .await;
        assert_eq!(view["state"], "captured", "{view}");
        assert_eq!(view["status"], "completed");
    }
    let view = get(&world, &key, &format!("/api/v1/x402/sessions/{session}")).await;
    assert_eq!(
        (view["spent"].as_str(), view["reserved"].as_str(), view["remaining"].as_str()),
        (Some("0.03"), Some("0.00"), Some("0.97"))
    );
    // 10.00 - (0.01 + 0.0002) - (0.02 + 0.0004)
    assert_eq!(world.agent_balance(&agent).await, ("9.9694".into(), "0.00".into()));
    assert_eq!(
        world.count("SELECT count(*) FROM settlement.items WHERE state = 'queued'").await,
        2
    );
    // Nothing moved on chain yet: settlement of our own payers is netted later.
    assert_eq!(world.balance(wallet).await, U256::from(10_000_000));
    assert_eq!(world.balance(ours_payee).await, U256::ZERO);

    // The same signature again: already settled, so the provider refuses it.
    let (status, _, _) = retry(&world, &ours, &paid).await;
    assert_eq!(status, 402);
    assert_eq!(world.agent_balance(&agent).await, ("9.9694".into(), "0.00".into()));
    world.assert_ledger_consistent().await;
    world.stop().await;
}

#[tokio::test]
async fn two_hundred_concurrent_cent_payments_against_a_dollar_budget_make_exactly_one_hundred() {
    let world = World::start().await;
    let key = world.new_key(&["agent"]).await;
    let (agent, _) = world.create_agent(json!({})).await;
    world.fund(&agent, "10.00").await;
    let url = format!("{}/paid", world.paid_api(Address::random(), 10_000).await);
    let session = session(&world, &key, &agent, "1.00").await;

    let answers =
        futures::future::join_all((0..200).map(|_| session_pay(&world, &key, &session, &url)))
            .await;
    let completed = answers
        .iter()
        .filter(|(status, body)| *status == 200 && body["status"] == "completed")
        .count();
    let refused: Vec<&Value> =
        answers.iter().filter(|(status, _)| *status != 200).map(|(_, body)| body).collect();
    assert_eq!(completed, 100, "{:?}", answers.iter().map(|(s, _)| s).collect::<Vec<_>>());
    assert_eq!(refused.len(), 100);
    for body in refused {
        assert_eq!(body["error"]["code"], "session_budget_exceeded", "{body}");
        assert_eq!(body["error"]["rule"], "session.budget_limit");
    }
    let view = get(&world, &key, &format!("/api/v1/x402/sessions/{session}")).await;
    assert_eq!(
        (view["spent"].as_str(), view["remaining"].as_str(), view["status"].as_str()),
        (Some("1.00"), Some("0.00"), Some("exhausted"))
    );
    // 100 x (0.01 + 0.0002) held for the providers.
    assert_eq!(world.agent_balance(&agent).await, ("8.98".into(), "1.02".into()));
    assert_eq!(
        world.count("SELECT count(*) FROM policy.payments WHERE state = 'authorized'").await,
        100
    );
    world.assert_ledger_consistent().await;
    world.stop().await;
}

#[tokio::test]
async fn refusals_name_their_reason_and_reserve_nothing() {
    let world = World::start().await;
    let key = world.new_key(&["agent"]).await;
    let paid = world.paid_api(Address::random(), 10_000).await;
    let url = format!("{paid}/paid");
    let pay = |agent: String, target: String, extra: Value| {
        let mut body = json!({"agent_id": agent, "target_url": target});
        body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        let world = &world;
        let key = key.clone();
        async move { world.call(Method::POST, "/api/v1/x402/pay", &key, Some(&body)).await }
    };

    // A URL that does not take x402.
    let (agent, _) = world.create_agent(json!({})).await;
    world.fund(&agent, "1.00").await;
    let (status, body) = pay(agent.clone(), format!("{paid}/free"), json!({})).await;
    assert_eq!((status, body["error"]["code"].as_str()), (422, Some("not_x402")), "{body}");
    // A chain the offer does not have.
    let (status, body) = pay(agent.clone(), url.clone(), json!({"chain": "eip155:84532"})).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (422, Some("chain_not_offered")),
        "{body}"
    );
    // Revoked and expired sessions.
    let revoked = session(&world, &key, &agent, "1.00").await;
    let (status, _) =
        world.call(Method::DELETE, &format!("/api/v1/x402/sessions/{revoked}"), &key, None).await;
    assert_eq!(status, 200);
    let (status, body) = session_pay(&world, &key, &revoked, &url).await;
    assert_eq!(
        (status, body["error"]["code"].as_str(), body["error"]["rule"].as_str()),
        (403, Some("session_revoked"), Some("session.revoked")),
        "{body}"
    );
    let expired = session(&world, &key, &agent, "1.00").await;
    let expired_uuid = awx_types::SessionId::parse(&expired).unwrap().as_uuid();
    // Move its expiry into the past rather than waiting for it.
    sqlx::query(
        "UPDATE policy.sessions SET expires_at = now() - interval '1 second' WHERE id = $1",
    )
    .bind(expired_uuid)
    .execute(&world.db.pool)
    .await
    .unwrap();
    let (status, body) = session_pay(&world, &key, &expired, &url).await;
    assert_eq!((status, body["error"]["code"].as_str()), (403, Some("session_expired")), "{body}");
    assert_eq!(
        get(&world, &key, &format!("/api/v1/x402/sessions/{expired}")).await["status"],
        "expired"
    );

    // Policy denials name the rule.
    let (capped, _) = world.create_agent(json!({"per_payment_max": "0.005"})).await;
    world.fund(&capped, "1.00").await;
    let (status, body) = pay(capped.clone(), url.clone(), json!({})).await;
    assert_eq!(
        (status, body["error"]["code"].as_str(), body["error"]["rule"].as_str()),
        (403, Some("policy_denied"), Some("policy.per_payment_max")),
        "{body}"
    );
    assert!(body["error"]["message"].as_str().unwrap().contains("$0.005"), "{body}");
    let (fenced, _) =
        world.create_agent(json!({"allowed_urls": ["https://api.example.com/*"]})).await;
    let (status, body) = pay(fenced, url.clone(), json!({})).await;
    assert_eq!(
        (status, body["error"]["rule"].as_str()),
        (403, Some("policy.allowed_urls")),
        "{body}"
    );
    let (daily, _) = world.create_agent(json!({"daily_limit": "0.015"})).await;
    world.fund(&daily, "1.00").await;
    assert_eq!(pay(daily.clone(), url.clone(), json!({})).await.0, 200);
    let (status, body) = pay(daily.clone(), url.clone(), json!({})).await;
    assert_eq!(
        (status, body["error"]["rule"].as_str()),
        (403, Some("policy.daily_limit")),
        "{body}"
    );

    // An unfunded wallet: 402, and its session gets its reservation back.
    let (poor, _) = world.create_agent(json!({})).await;
    let poor_session = session(&world, &key, &poor, "1.00").await;
    let (status, body) = session_pay(&world, &key, &poor_session, &url).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (402, Some("insufficient_funds")),
        "{body}"
    );
    let view = get(&world, &key, &format!("/api/v1/x402/sessions/{poor_session}")).await;
    assert_eq!((view["spent"].as_str(), view["reserved"].as_str()), (Some("0.00"), Some("0.00")));
    assert_eq!(world.count("SELECT count(*) FROM policy.payments WHERE state = 'failed' AND error_code = 'insufficient_funds'").await, 1);

    // Unknown agents and sessions.
    let (status, _) =
        pay("agt_0190a3c48f2b7c3e9d1e5f6a7b8c9d0e".into(), url.clone(), json!({})).await;
    assert_eq!(status, 404);
    let (status, body) = pay("not-an-id".into(), url.clone(), json!({})).await;
    assert_eq!((status, body["error"]["field"].as_str()), (400, Some("agent_id")), "{body}");
    // A deleted agent pays nothing.
    let (status, _) = world
        .call(Method::DELETE, &format!("/api/v1/agents/{agent}"), &world.admin_key, None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(pay(agent.clone(), url.clone(), json!({})).await.0, 404);
    // None of the refusals left anything held.
    assert_eq!(world.agent_balance(&capped).await, ("1.00".into(), "0.00".into()));
    world.assert_ledger_consistent().await;
    world.stop().await;
}

#[tokio::test]
async fn without_the_signer_a_payment_is_503_and_nothing_stays_reserved() {
    let mut world = World::start_with(|args| args.policy_upstream_timeout_ms = 1_500).await;
    let key = world.new_key(&["agent"]).await;
    let (agent, _) = world.create_agent(json!({})).await;
    world.fund(&agent, "1.00").await;
    let url = format!("{}/paid", world.paid_api(Address::random(), 10_000).await);
    let session = session(&world, &key, &agent, "1.00").await;
    world.platform.as_mut().unwrap().stop_signer().await.unwrap();

    let (status, body) = session_pay(&world, &key, &session, &url).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (503, Some("service_unavailable")),
        "{body}"
    );
    let view = get(&world, &key, &format!("/api/v1/x402/sessions/{session}")).await;
    assert_eq!(
        (view["spent"].as_str(), view["reserved"].as_str()),
        (Some("0.00"), Some("0.00")),
        "{view}"
    );
    assert_eq!(
        world.agent_balance(&agent).await,
        ("1.00".into(), "0.00".into()),
        "the hold was released"
    );
    assert_eq!(world.count("SELECT count(*) FROM policy.payments WHERE state = 'failed' AND error_code = 'signer_unavailable' AND NOT void_needed").await, 1);
    world.assert_ledger_consistent().await;
    world.stop().await;
}

#[tokio::test]
async fn a_private_target_is_refused_outside_development() {
    let world = World::start_with(|args| args.allow_private_targets = false).await;
    let key = world.new_key(&["agent"]).await;
    let (agent, _) = world.create_agent(json!({})).await;
    let (status, body) = world
        .call(
            Method::POST,
            "/api/v1/x402/pay",
            &key,
            Some(&json!({"agent_id": agent, "target_url": "http://127.0.0.1:9/paid"})),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("target_not_allowed")),
        "{body}"
    );
    let (status, body) = world
        .call(
            Method::POST,
            "/api/v1/x402/pay",
            &key,
            Some(&json!({"agent_id": agent, "target_url": "http://169.254.169.254/latest/meta-data"})),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("target_not_allowed")),
        "{body}"
    );
    assert_eq!(world.count("SELECT count(*) FROM policy.payments").await, 0);
    world.stop().await;
}

#[tokio::test]
async fn payments_above_the_threshold_wait_for_an_admin() {
    let world = World::start().await;
    let key = world.new_key(&["agent"]).await;
    let (agent, _) = world.create_agent(json!({"approval_threshold": "0.005"})).await;
    world.fund(&agent, "1.00").await;
    let url = format!("{}/paid", world.paid_api(Address::random(), 10_000).await);
    let session = session(&world, &key, &agent, "1.00").await;

    let (status, pending) = session_pay(&world, &key, &session, &url).await;
    assert_eq!(status, 200, "{pending}");
    assert_eq!(
        (pending["status"].as_str(), pending["state"].as_str()),
        (Some("pending"), Some("pending_approval"))
    );
    assert!(pending.get("payment_signature").is_none(), "{pending}");
    assert_eq!(pending["fee_amount"], "0.0002", "the fee at the current rate is quoted");
    let view = get(&world, &key, &format!("/api/v1/x402/sessions/{session}")).await;
    assert_eq!(view["reserved"], "0.01");
    let id = pending["ledger_id"].as_str().unwrap();
    // Agents cannot approve.
    let (status, _) =
        world.call(Method::POST, &format!("/api/v1/x402/payments/{id}/approve"), &key, None).await;
    assert_eq!(status, 403);
    let (status, approved) = world
        .call(
            Method::POST,
            &format!("/api/v1/x402/payments/{id}/approve"),
            &world.admin_key,
            Some(&json!({"reason": "looks fine"})),
        )
        .await;
    assert_eq!(status, 200, "{approved}");
    assert_eq!(approved["status"], "completed");
    let (status, settlement, _) = retry(&world, &url, &approved).await;
    assert_eq!(status, 200);
    assert_eq!(settlement.unwrap()["success"], true);
    // It is no longer waiting for approval: approving again or rejecting it is a conflict
    // (every refused state is in tests/transitions.rs).
    let (status, again) = world
        .call(Method::POST, &format!("/api/v1/x402/payments/{id}/approve"), &world.admin_key, None)
        .await;
    assert_eq!((status, again["error"]["code"].as_str()), (409, Some("payment_state")), "{again}");
    let (status, body) = world
        .call(Method::POST, &format!("/api/v1/x402/payments/{id}/reject"), &world.admin_key, None)
        .await;
    assert_eq!((status, body["error"]["code"].as_str()), (409, Some("payment_state")));

    // A rejected payment gives its reservation back.
    let (_, second) = session_pay(&world, &key, &session, &url).await;
    let second_id = second["ledger_id"].as_str().unwrap();
    let (status, rejected) = world
        .call(
            Method::POST,
            &format!("/api/v1/x402/payments/{second_id}/reject"),
            &world.admin_key,
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        (rejected["status"].as_str(), rejected["state"].as_str()),
        (Some("failed"), Some("rejected"))
    );
    let view = get(&world, &key, &format!("/api/v1/x402/sessions/{session}")).await;
    assert_eq!((view["spent"].as_str(), view["reserved"].as_str()), (Some("0.01"), Some("0.00")));
    assert_eq!(world.agent_balance(&agent).await, ("0.9898".into(), "0.00".into()));
    world.assert_ledger_consistent().await;
    world.stop().await;
}

#[tokio::test]
async fn the_facilitator_answers_for_our_own_payers_without_the_chain() {
    let world = World::start().await;
    let key = world.new_key(&["agent"]).await;
    let (agent, wallet) = world.create_agent(json!({})).await;
    world.fund(&agent, "1.00").await;
    let payee = Address::random();
    let url = format!("{}/paid", world.paid_api(payee, 250_000).await);
    let (_, paid) = world
        .call(
            Method::POST,
            "/api/v1/x402/pay",
            &key,
            Some(&json!({"agent_id": agent, "target_url": url})),
        )
        .await;
    let payload: awx_x402::PaymentPayload =
        awx_x402::header::decode(paid["payment_signature"].as_str().unwrap()).unwrap();
    let requirements = payload.accepted.clone();

    let verified = world.verify(&payload, &requirements).await;
    assert_eq!(verified["isValid"], true, "{verified}");
    assert_eq!(verified["payer"], wallet.to_checksum(None));
    // A changed authorization is not the one we issued.
    let mut forged = payload.clone();
    forged.payload["authorization"]["validBefore"] = json!("99999999999");
    let refused = world.verify(&forged, &requirements).await;
    assert_eq!(refused["invalidReason"], "invalid_exact_evm_signature", "{refused}");

    let settled = world.settle(&payload, &requirements).await;
    assert_eq!(settled["success"], true, "{settled}");
    assert_eq!(settled["transaction"], "");
    assert!(settled["extensions"]["awx"].get("replay").is_none(), "{settled}");
    let mut again = world.settle(&payload, &requirements).await;
    assert_eq!(again["extensions"]["awx"]["replay"], true, "{again}");
    again["extensions"]["awx"].as_object_mut().unwrap().remove("replay");
    assert_eq!(again, settled, "a repeated settle gets the same answer, marked as a replay");
    let used = world.verify(&payload, &requirements).await;
    assert_eq!(used["invalidReason"], "invalid_exact_evm_nonce_already_used");
    assert_eq!(world.count("SELECT count(*) FROM settlement.items").await, 1);
    assert_eq!(
        world.count("SELECT count(*) FROM settlement.chain_txs WHERE purpose = 'settlement'").await,
        0
    );
    // 1.00 - 0.25 - 0.005
    assert_eq!(world.agent_balance(&agent).await, ("0.745".into(), "0.00".into()));
    world.assert_ledger_consistent().await;
    world.stop().await;
}

#[tokio::test]
async fn an_authorization_never_settled_expires_and_its_funds_come_back() {
    let world = World::start_with(|args| args.policy_expiry_grace_seconds = 1).await;
    let key = world.new_key(&["agent"]).await;
    let (agent, _) = world.create_agent(json!({})).await;
    world.fund(&agent, "1.00").await;
    // Valid for 8 s (a facilitator wants at least 6 s left when it verifies).
    let url = format!("{}/paid", world.paid_api_expiring(Address::random(), 100_000, 8).await);
    let session = session(&world, &key, &agent, "1.00").await;
    let (status, paid) = session_pay(&world, &key, &session, &url).await;
    assert_eq!(status, 200, "{paid}");
    assert_eq!(world.agent_balance(&agent).await, ("0.898".into(), "0.102".into()));
    // The provider never settles. Once validBefore (plus a second of grace) has passed, the
    // sweeper (every 2 s) finds the nonce unused on chain and releases the payment.
    let id = awx_types::LedgerId::parse(paid["ledger_id"].as_str().unwrap()).unwrap().as_uuid();
    // Moving the sweep earlier does not release it before validBefore: the chain's answer is
    // not final yet.
    sqlx::query("UPDATE policy.payments SET deadline = now() - interval '1 second' WHERE id = $1")
        .bind(id)
        .execute(&world.db.pool)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let path = format!("/api/v1/x402/payments/{}", paid["ledger_id"].as_str().unwrap());
    assert_eq!(get(&world, &key, &path).await["state"], "authorized");
    let mut view = Value::Null;
    for _ in 0..100 {
        view = get(&world, &key, &path).await;
        if view["state"] == "expired" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        (view["state"].as_str(), view["status"].as_str()),
        (Some("expired"), Some("failed")),
        "{view}"
    );
    assert_eq!(world.agent_balance(&agent).await, ("1.00".into(), "0.00".into()));
    let view = get(&world, &key, &format!("/api/v1/x402/sessions/{session}")).await;
    assert_eq!((view["spent"].as_str(), view["remaining"].as_str()), (Some("0.00"), Some("1.00")));
    // Its signature is worth nothing to the provider now.
    let (status, _, _) = retry(&world, &url, &paid).await;
    assert_eq!(status, 402);
    world.assert_ledger_consistent().await;
    world.stop().await;
}

#[tokio::test]
async fn one_payment_serves_one_request_however_many_carry_its_signature_at_once() {
    let world = World::start().await;
    let key = world.new_key(&["agent"]).await;
    let (agent, _) = world.create_agent(json!({})).await;
    world.fund(&agent, "1.00").await;
    let base = world.paid_api(Address::random(), 100_000).await;
    let (status, paid) = world
        .call(
            Method::POST,
            "/api/v1/x402/pay",
            &key,
            Some(&json!({"agent_id": agent, "target_url": format!("{base}/slow")})),
        )
        .await;
    assert_eq!(status, 200, "{paid}");
    // Five requests with the one signature, all verified before the slow route answers.
    let slow = format!("{base}/slow");
    let requests = (0..5).map(|_| retry(&world, &slow, &paid));
    let answers = futures::future::join_all(requests).await;
    let served = answers.iter().filter(|(status, _, _)| *status == 200).count();
    assert_eq!(served, 1, "{answers:?}");
    for (status, settlement, _) in answers.iter().filter(|(status, _, _)| *status != 200) {
        assert_eq!(*status, 402);
        let settlement = settlement.as_ref().unwrap();
        assert_eq!(settlement["success"], false);
        assert_eq!(settlement["errorReason"], "invalid_exact_evm_nonce_already_used");
    }
    assert_eq!(world.agent_balance(&agent).await, ("0.898".into(), "0.00".into()));
    world.assert_ledger_consistent().await;
    world.stop().await;
}
