//! The Rust client (`awx-client`) against the whole platform on anvil: the 402 middleware paying
//! our axum paid API (from a wallet and from a session, within a maximum, never twice), the
//! typed API calls, and the local-key client paying our middleware and the official
//! `@x402/express` server on chain.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail by panicking"
)]

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use alloy::primitives::U256;
use alloy::signers::local::PrivateKeySigner;
use awx_client::reqwest_middleware::{ClientBuilder, ClientWithMiddleware};
use awx_client::{
    Amount, AwxClient, ClientError, CreateAgent, CreateSession, LocalPayer, PayOptions, PayRequest,
    Policy, ReceiptExt as _, X402Middleware,
};
use awx_x402::Address;
use serde_json::{Value, json};
use support::World;

/// The price of the paid API in these tests: 0.01 USDC.
const PRICE: u128 = 10_000;

fn paying(middleware: X402Middleware) -> ClientWithMiddleware {
    ClientBuilder::new(reqwest::Client::new()).with(middleware).build()
}

fn key_hex(key: &PrivateKeySigner) -> String {
    format!("0x{}", alloy::primitives::hex::encode(key.to_bytes()))
}

/// An agent key's client, and a funded agent with `policy`.
async fn funded_agent(world: &World, policy: Value) -> (AwxClient, String, Address) {
    let key = world.new_key(&["agent"]).await;
    let client = AwxClient::new(&world.gateway_url, key).unwrap();
    let (agent, wallet) = world.create_agent(policy).await;
    world.fund(&agent, "1.00").await;
    (client, agent, wallet)
}

async fn payments(world: &World) -> i64 {
    world.count("SELECT count(*) FROM policy.payments").await
}

#[tokio::test]
async fn the_middleware_pays_the_paid_route_and_passes_other_answers_through() {
    let world = World::start().await;
    let (client, agent, wallet) = funded_agent(&world, json!({})).await;
    let payee = Address::random();
    let base = world.paid_api(payee, PRICE).await;
    let http = paying(X402Middleware::new(client.clone(), &agent));

    let response = http.get(format!("{base}/paid")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let receipt = response.payment_receipt().cloned().expect("a receipt on a paid answer");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["served_by"], "awx-x402-axum");
    assert_eq!(body["payer"].as_str().unwrap().to_lowercase(), wallet.to_string().to_lowercase());
    assert!(receipt.ledger_id().starts_with("ldg_"), "{receipt:?}");
    assert_eq!(receipt.payment.amount, "0.01");
    assert_eq!(receipt.payment.status, "completed");
    // The provider's PAYMENT-RESPONSE names the same payment; its settlement is deferred.
    let settlement = receipt.settlement.as_ref().expect("PAYMENT-RESPONSE");
    assert!(settlement.success, "{settlement:?}");
    assert_eq!(receipt.payment_id(), receipt.ledger_id());
    assert_eq!(receipt.transaction(), None, "our own payers are settled later, netted");
    let view = client.get_payment(receipt.ledger_id()).await.unwrap();
    assert_eq!(view.state, "captured");
    assert_eq!(world.agent_balance(&agent).await, ("0.9898".into(), "0.00".into()));

    // A URL that does not take x402 is passed through untouched, and nothing is paid.
    let free = http.get(format!("{base}/free")).send().await.unwrap();
    assert_eq!(free.status(), 200);
    assert!(free.payment_receipt().is_none());
    assert_eq!(free.text().await.unwrap(), "free");
    let missing = http.get(format!("{base}/nowhere")).send().await.unwrap();
    assert_eq!(missing.status(), 404);
    assert!(missing.payment_receipt().is_none());
    assert_eq!(payments(&world).await, 1);
    assert_eq!(world.agent_balance(&agent).await, ("0.9898".into(), "0.00".into()));
    world.assert_ledger_consistent().await;
    world.stop().await;
}

#[tokio::test]
async fn a_session_budget_is_spent_exactly_and_its_urls_are_kept() {
    let world = World::start().await;
    let (client, agent, _) = funded_agent(&world, json!({})).await;
    let base = world.paid_api(Address::random(), PRICE).await;
    let url = format!("{base}/paid");
    let session = client
        .create_session(&CreateSession {
            agent_id: agent.clone(),
            budget_limit: "0.03".into(),
            ttl_seconds: 3600,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(session.status, "active");
    let http = paying(X402Middleware::new(client.clone(), &agent).session(&session));

    for _ in 0..3 {
        let response = http.get(&url).send().await.unwrap();
        assert_eq!(response.status(), 200);
        let receipt = response.payment_receipt().unwrap();
        assert_eq!(receipt.payment.session_id.as_deref(), Some(session.id.as_str()));
    }
    let error = ClientError::from(http.get(&url).send().await.unwrap_err());
    let ClientError::Api { status, code, rule, request_id, .. } = &error else {
        panic!("not a typed API error: {error:?}")
    };
    assert_eq!(
        (*status, code.as_str(), rule.as_deref()),
        (403, "session_budget_exceeded", Some("session.budget_limit"))
    );
    assert!(request_id.is_some());
    let view = client.get_session(&session.id).await.unwrap();
    assert_eq!(
        (view.spent.as_str(), view.remaining.as_str(), view.status.as_str()),
        ("0.03", "0.00", "exhausted")
    );
    assert_eq!(payments(&world).await, 3, "the refused fourth reserved nothing");

    // A session fenced to other URLs: the middleware does not even ask the platform.
    let fenced = client
        .create_session(&CreateSession {
            agent_id: agent.clone(),
            budget_limit: "1.00".into(),
            ttl_seconds: 3600,
            allowed_urls: vec!["https://api.example.com/*".into()],
            ..Default::default()
        })
        .await
        .unwrap();
    let http = paying(X402Middleware::new(client.clone(), &agent).session(&fenced));
    let error = ClientError::from(http.get(&url).send().await.unwrap_err());
    assert!(matches!(error, ClientError::UrlNotAllowed { .. }), "{error:?}");
    assert_eq!(payments(&world).await, 3);
    // The platform refuses it too, by the session's rule.
    let error = client.session_pay(&fenced.id, &url, None).await.unwrap_err();
    assert_eq!(error.rule(), Some("session.allowed_urls"), "{error:?}");
    // 1.00 - 3 x (0.01 + 0.0002)
    assert_eq!(world.agent_balance(&agent).await, ("0.9694".into(), "0.00".into()));
    world.assert_ledger_consistent().await;
    world.stop().await;
}

#[tokio::test]
async fn a_price_above_the_maximum_is_not_paid_and_a_policy_refusal_names_its_rule() {
    let world = World::start().await;
    let (client, agent, _) = funded_agent(&world, json!({})).await;
    let url = format!("{}/paid", world.paid_api(Address::random(), PRICE).await);

    let capped = paying(X402Middleware::new(client.clone(), &agent).max_usdc("0.005").unwrap());
    let error = ClientError::from(capped.get(&url).send().await.unwrap_err());
    assert!(
        matches!(
            error,
            ClientError::AboveMaximum { offered, maximum }
                if offered == Amount::from_atomic(PRICE) && maximum == Amount::from_atomic(5_000)
        ),
        "{error:?}"
    );
    assert_eq!(payments(&world).await, 0, "nothing was asked of the platform");
    assert_eq!(world.agent_balance(&agent).await, ("1.00".into(), "0.00".into()));
    // At exactly the price, it pays.
    let exact = paying(X402Middleware::new(client.clone(), &agent).max_usdc("0.01").unwrap());
    assert_eq!(exact.get(&url).send().await.unwrap().status(), 200);

    // The agent's own policy refuses: a typed error with the rule.
    let (limited, _) = world.create_agent(json!({"per_payment_max": "0.005"})).await;
    world.fund(&limited, "1.00").await;
    let http = paying(X402Middleware::new(client.clone(), &limited));
    let error = ClientError::from(http.get(&url).send().await.unwrap_err());
    let ClientError::Api { status, code, rule, message, .. } = &error else {
        panic!("not a typed API error: {error:?}")
    };
    assert_eq!(
        (*status, code.as_str(), rule.as_deref()),
        (403, "policy_denied", Some("policy.per_payment_max"))
    );
    assert!(message.contains("$0.005"), "{message}");
    assert_eq!(world.agent_balance(&limited).await, ("1.00".into(), "0.00".into()));
    world.assert_ledger_consistent().await;
    world.stop().await;
}

#[tokio::test]
async fn a_second_402_after_paying_is_an_error_not_a_second_payment() {
    let world = World::start().await;
    let (client, agent, _) = funded_agent(&world, json!({})).await;
    // A provider that asks for payment whatever it is sent.
    let refusing = support::sdk::refusing_provider(&world).await;

    let http = paying(X402Middleware::new(client.clone(), &agent));
    let error = ClientError::from(http.get(&refusing).send().await.unwrap_err());
    let ClientError::PaidButRefused { ledger_id: Some(ledger_id), .. } = &error else {
        panic!("not a refusal after payment: {error:?}")
    };
    assert!(ledger_id.starts_with("ldg_"));
    assert_eq!(payments(&world).await, 1, "one payment, however often the URL says 402");
    world.stop().await;
}

#[tokio::test]
async fn the_typed_calls_round_trip() {
    let world = World::start().await;
    let admin = AwxClient::new(&world.gateway_url, &world.admin_key).unwrap();
    let created = admin
        .create_agent(&CreateAgent {
            name: "sdk agent".into(),
            policy: Some(Policy { daily_limit: Some("5.00".into()), ..Default::default() }),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(created.id.starts_with("agt_"));
    assert_eq!(created.policy.daily_limit.as_deref(), Some("5.00"));
    assert_eq!(created.default_chain, world.network);
    let funded = admin.fund_agent(&created.id, "2.50").await.unwrap();
    assert_eq!(funded.balances[0].available, "2.50");
    assert_eq!(world.balance(created.address.parse().unwrap()).await, U256::from(2_500_000));
    let fetched = admin.get_agent(&created.id).await.unwrap();
    assert_eq!(fetched.balances.unwrap()[0].available, "2.50");
    assert!(admin.list_agents().await.unwrap().iter().any(|agent| agent.id == created.id));
    let policy = Policy { per_payment_max: Some("0.50".into()), ..Default::default() };
    let updated = admin.set_policy(&created.id, &policy).await.unwrap();
    assert_eq!(updated.policy, policy);

    let client = AwxClient::new(&world.gateway_url, world.new_key(&["agent"]).await).unwrap();
    let payee = Address::random();
    let url = format!("{}/paid", world.paid_api(payee, PRICE).await);
    let checked = client.check(&url).await.unwrap();
    assert!(checked.x402);
    assert_eq!(checked.status, 402);
    assert_eq!(checked.payable[0].amount, "0.01");
    assert_eq!(checked.payable[0].pay_to, payee.to_checksum(None));
    let tiers = client.fee_tiers().await.unwrap();
    assert_eq!(tiers.fee_rate, "2.0");
    assert!(!tiers.tiers.is_empty());

    // Paying twice with one Idempotency-Key pays once.
    let request =
        PayRequest { agent_id: created.id.clone(), target_url: url.clone(), ..Default::default() };
    let paid = client.pay(&request, Some("order-42")).await.unwrap();
    let again = client.pay(&request, Some("order-42")).await.unwrap();
    assert_eq!(again.ledger_id, paid.ledger_id);
    assert_eq!(again.payment_signature, paid.payment_signature);
    assert_eq!((paid.status.as_str(), paid.fee_amount.as_str()), ("completed", "0.0002"));
    let view = client.get_payment(&paid.ledger_id).await.unwrap();
    assert_eq!((view.ledger_id, view.state.as_str()), (paid.ledger_id.clone(), "authorized"));
    assert_eq!(world.agent_balance(&created.id).await, ("2.4898".into(), "0.0102".into()));

    let session = client
        .create_session(&CreateSession {
            agent_id: created.id.clone(),
            budget_limit: "1.00".into(),
            ttl_seconds: 600,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(client.get_session(&session.id).await.unwrap(), session);
    let revoked = client.revoke_session(&session.id).await.unwrap();
    assert_eq!(revoked.status, "revoked");
    let error = client.session_pay(&session.id, &url, None).await.unwrap_err();
    assert_eq!((error.code(), error.rule()), (Some("session_revoked"), Some("session.revoked")));
    // Unknown ids and bad fields are typed too.
    let error = client.get_payment("ldg_0190a3c48f2b7c3e9d1e5f6a7b8c9d0e").await.unwrap_err();
    assert!(matches!(error, ClientError::Api { status: 404, .. }), "{error:?}");
    let bad = PayRequest { agent_id: "nope".into(), target_url: url.clone(), ..Default::default() };
    let error = client.pay(&bad, None).await.unwrap_err();
    let ClientError::Api { status, field, .. } = &error else { panic!("{error:?}") };
    assert_eq!((*status, field.as_deref()), (400, Some("agent_id")));

    // The facilitator, with the provider's key.
    let provider = AwxClient::new(&world.gateway_url, &world.provider_key).unwrap();
    let supported = provider.facilitator_supported().await.unwrap();
    assert!(supported.kinds.iter().any(|kind| kind.network == world.network), "{supported:?}");
    let payload: awx_x402::PaymentPayload =
        awx_x402::header::decode(paid.payment_signature.as_deref().unwrap()).unwrap();
    let request = awx_x402::FacilitatorRequest::v2(&payload, &payload.accepted);
    let verified = provider.facilitator_verify(&request).await.unwrap();
    assert!(verified.is_valid, "{verified:?}");
    let settled = provider.facilitator_settle(&request).await.unwrap();
    assert!(settled.success, "{settled:?}");
    assert_eq!(client.get_payment(&paid.ledger_id).await.unwrap().state, "captured");

    let deleted = admin.delete_agent(&created.id).await.unwrap();
    assert_eq!(deleted.status, "deleted");
    assert!(!admin.list_agents().await.unwrap().iter().any(|agent| agent.id == created.id));
    let error = admin.delete_agent(&created.id).await.unwrap_err();
    assert_eq!(error.code(), Some("agent_state"), "{error:?}");
    world.stop().await;
}

#[tokio::test]
async fn the_local_key_client_pays_our_middleware_and_the_official_express_server_on_chain() {
    let world = World::start().await;
    let payer = world.funded_payer(1_000_000).await;
    let local = LocalPayer::new(payer.clone(), Amount::from_atomic(50_000))
        .networks(vec![world.network.clone()]);

    // Our axum middleware.
    let ours_payee = Address::random();
    let ours = format!("{}/paid", world.paid_api(ours_payee, PRICE).await);
    let paid = local.get(&ours).await.unwrap();
    assert_eq!(paid.response.status(), 200);
    let receipt = paid.receipt.expect("a receipt");
    assert_eq!(receipt.amount, Amount::from_atomic(PRICE));
    assert_eq!(receipt.payer, payer.address());
    let transaction = receipt.transaction().expect("settled on chain").to_owned();
    assert_eq!(transaction.len(), 66);
    let body: Value = paid.response.json().await.unwrap();
    assert_eq!(body["served_by"], "awx-x402-axum");
    assert_eq!(world.balance(ours_payee).await, U256::from(PRICE));

    // The official @x402/express server, with the one-call form.
    let express_payee = Address::random();
    let (_server, port) =
        support::interop::express_server(&world, express_payee, 2 * PRICE, &world.gateway_url)
            .await;
    let express = format!("http://127.0.0.1:{port}/paid");
    let options = PayOptions {
        max_amount: Amount::from_atomic(2 * PRICE),
        networks: vec![world.network.clone()],
        private_key: key_hex(&payer),
    };
    let paid = awx_client::pay(&express, &options).await.unwrap();
    assert_eq!(paid.response.status(), 200);
    let receipt = paid.receipt.unwrap();
    assert!(receipt.settlement.as_ref().unwrap().success);
    let body: Value = paid.response.json().await.unwrap();
    assert_eq!(body["served_by"], "@x402/express");
    assert_eq!(world.balance(express_payee).await, U256::from(2 * PRICE));
    assert_eq!(world.balance(payer.address()).await, U256::from(1_000_000 - 3 * PRICE));

    // Above this request's maximum: refused before signing, nothing moves.
    let error = local.get_with_max(&express, Amount::from_atomic(2 * PRICE - 1)).await.unwrap_err();
    assert!(
        matches!(error, ClientError::AboveMaximum { offered, .. } if offered == Amount::from_atomic(2 * PRICE)),
        "{error:?}"
    );
    // Nor on a network it does not allow.
    let elsewhere = LocalPayer::new(payer.clone(), Amount::from_atomic(50_000))
        .networks(vec!["eip155:1".into()]);
    assert!(matches!(elsewhere.get(&ours).await, Err(ClientError::NoPayableOffer(_))));
    assert_eq!(world.balance(express_payee).await, U256::from(2 * PRICE));
    assert_eq!(world.balance(ours_payee).await, U256::from(PRICE));
    assert_eq!(world.balance(payer.address()).await, U256::from(1_000_000 - 3 * PRICE));
    world.stop().await;
}

/// A proxy in front of the gateway that loses the answer of the first pay call: the gateway
/// runs it, and the client gets a 504, as from a load balancer that timed out. Returns its URL
/// and the number of pay calls it forwarded.
async fn losing_proxy(gateway: String) -> (String, Arc<AtomicUsize>) {
    let pay_calls = Arc::new(AtomicUsize::new(0));
    let counter = pay_calls.clone();
    let http = reqwest::Client::new();
    let forward = move |request: axum::extract::Request| {
        let (http, gateway, counter) = (http.clone(), gateway.clone(), counter.clone());
        async move {
            let (parts, body) = request.into_parts();
            let body = axum::body::to_bytes(body, 1 << 20).await.unwrap();
            let path = parts.uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
            let mut upstream = http.request(parts.method.clone(), format!("{gateway}{path}"));
            for name in ["x-api-key", "idempotency-key", "content-type"] {
                if let Some(value) = parts.headers.get(name) {
                    upstream = upstream.header(name, value.as_bytes());
                }
            }
            let answer = upstream.body(body).send().await.unwrap();
            let status = answer.status().as_u16();
            let bytes = answer.bytes().await.unwrap();
            let is_pay = path.ends_with("/pay");
            if is_pay && counter.fetch_add(1, Ordering::SeqCst) == 0 {
                return (
                    axum::http::StatusCode::GATEWAY_TIMEOUT,
                    axum::body::Bytes::from("timeout"),
                );
            }
            (axum::http::StatusCode::from_u16(status).unwrap(), bytes)
        }
    };
    let app = axum::Router::new().fallback(forward);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{address}"), pay_calls)
}

#[tokio::test]
async fn a_lost_pay_answer_is_asked_again_with_the_same_key_and_pays_once() {
    let world = World::start().await;
    let key = world.new_key(&["agent"]).await;
    let (agent, _) = world.create_agent(json!({})).await;
    world.fund(&agent, "1.00").await;
    let url = format!("{}/paid", world.paid_api(Address::random(), PRICE).await);
    let (proxy, pay_calls) = losing_proxy(world.gateway_url.clone()).await;
    let client = AwxClient::new(&proxy, key).unwrap();
    let http = paying(X402Middleware::new(client, &agent));

    let response = http.get(&url).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(pay_calls.load(Ordering::SeqCst), 2, "the pay call was sent again");
    let receipt = response.payment_receipt().unwrap();
    assert_eq!(payments(&world).await, 1, "both attempts are one payment");
    assert_eq!(receipt.payment_id(), receipt.ledger_id());
    // 1.00 - (0.01 + 0.0002), once.
    assert_eq!(world.agent_balance(&agent).await, ("0.9898".into(), "0.00".into()));
    world.assert_ledger_consistent().await;
    world.stop().await;
}
