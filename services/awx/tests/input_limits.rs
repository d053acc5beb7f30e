//! Inputs no service can store are refused at the edge with a 400 and a stable code, and a
//! service that is sent one anyway refuses it for good instead of having the bus redeliver it
//! until the gateway gives up with a 503: the NUL character (Postgres stores it neither in
//! `text` nor in `jsonb`) in any body field, query parameter or path segment, and amounts above
//! the platform's bound (10^9 whole tokens or dollars, `awx_types::API_WHOLE_UNITS_MAX`).
//! Every refusal leaves nothing written: no row in any table a request could create, balances
//! unchanged.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail by panicking"
)]

mod support;

use std::time::Duration;

use alloy::primitives::U256;
use awx_api::policy::{CreateAgent, CreateSession, PolicyView, SetPolicy};
use awx_bus::BusError;
use awx_types::{AccountId, AgentId, SessionId};
use awx_x402::{Address, FacilitatorRequest};
use reqwest::Method;
use serde_json::{Value, json};
use support::World;

/// 10^24: atomic units (10^18 USDC) or dollars, far above the bound.
const HUGE: &str = "1000000000000000000000000";

/// The tables a refused request could have written to, with their row counts.
async fn rows(world: &World) -> Vec<(&'static str, i64)> {
    let mut counts = Vec::new();
    for table in [
        "gateway.api_keys",
        "policy.agents",
        "policy.sessions",
        "policy.payments",
        "policy.withdrawal_addresses",
        "signer.agent_wallets",
        "signer.signing_log",
        "settlement.settlements",
        "settlement.chain_txs",
        "settlement.items",
        "settlement.deposits",
        "settlement.withdrawals",
        "ledger.transfers",
    ] {
        let count: i64 =
            sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {table}")))
                .fetch_one(&world.db.pool)
                .await
                .unwrap();
        counts.push((table, count));
    }
    counts
}

/// Sends `method path` with `key` and a raw JSON `body`.
async fn send_raw(
    world: &World,
    method: Method,
    path: &str,
    key: &str,
    body: &[u8],
) -> (u16, Value) {
    let response = world
        .http
        .request(method, format!("{}{path}", world.gateway_url))
        .header("x-api-key", key)
        .header("content-type", "application/json")
        .body(body.to_vec())
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Asserts a 400 in the error envelope with `code` and (when given) `field`.
fn assert_refused(what: &str, status: u16, body: &Value, code: &str, field: Option<&str>) {
    assert_eq!(status, 400, "{what}: {body}");
    assert_eq!(body["error"]["code"], code, "{what}: {body}");
    assert_eq!(body["error"]["field"].as_str(), field, "{what}: {body}");
    assert!(body["error"]["request_id"].as_str().is_some_and(|id| id.starts_with("req_")));
}

async fn account_id(world: &World) -> AccountId {
    let (status, account) =
        world.call(Method::GET, "/api/v1/account", &world.admin_key, None).await;
    assert_eq!(status, 200, "{account}");
    AccountId::parse(account["id"].as_str().unwrap()).unwrap()
}

async fn policy_of(world: &World, agent: &str) -> Value {
    let (status, view) =
        world.call(Method::GET, &format!("/api/v1/agents/{agent}"), &world.admin_key, None).await;
    assert_eq!(status, 200, "{view}");
    view["policy"].clone()
}

/// A facilitator request paying 1000 atomic units of the world's token, signed by a payer
/// holding a dollar; and the payer.
async fn facilitator_body(world: &World) -> (Value, Address) {
    let payer = world.funded_payer(1_000_000).await;
    let requirements = world.requirements(Address::random(), 1_000);
    let payload = world.payment(&payer, &requirements);
    (World::body(&payload, &requirements), payer.address())
}

#[tokio::test]
async fn a_nul_character_anywhere_in_a_request_is_a_400_naming_the_field_and_writes_nothing() {
    let world = World::start().await;
    let admin = world.admin_key.clone();
    let agent_key = world.new_key(&["agent"]).await;
    let provider = world.provider_key.clone();
    let (agent, _) = world.create_agent(json!({})).await;
    world.fund(&agent, "5.00").await;
    let (status, session) = world
        .call(
            Method::POST,
            "/api/v1/x402/sessions",
            &agent_key,
            Some(&json!({"agent_id": agent, "budget_limit": "1.00", "ttl_seconds": 600})),
        )
        .await;
    assert_eq!(status, 201, "{session}");
    let session = session["id"].as_str().unwrap().to_owned();
    let (facilitator, payer) = facilitator_body(&world).await;
    let mut extra = facilitator.clone();
    extra["paymentRequirements"]["extra"]["name"] = json!("USD\u{0}Coin");
    let mut resource = facilitator.clone();
    resource["paymentPayload"]["resource"] = json!({"url": "https://api.example.com/\u{0}", "description": "d", "mimeType": "text/plain"});
    let policy_before = policy_of(&world, &agent).await;
    let balance_before = world.agent_balance(&agent).await;
    let payer_before = world.balance(payer).await;
    let before = rows(&world).await;

    let url = "http://127.0.0.1:9/paid\u{0}";
    let address = Address::random().to_checksum(None);
    let cases: Vec<(&str, Method, String, &str, Value, &str)> = vec![
        (
            "agent name",
            Method::POST,
            "/api/v1/agents".into(),
            &admin,
            json!({"name": "bot\u{0}"}),
            "name",
        ),
        (
            "agent policy",
            Method::POST,
            "/api/v1/agents".into(),
            &admin,
            json!({"name": "bot", "policy": {"allowed_urls": ["https://a.example/\u{0}"]}}),
            "policy.allowed_urls[0]",
        ),
        (
            "policy",
            Method::PUT,
            format!("/api/v1/agents/{agent}/policy"),
            &admin,
            json!({"allowed_urls": ["a.example", "b.example\u{0}"]}),
            "allowed_urls[1]",
        ),
        (
            "fund",
            Method::POST,
            format!("/api/v1/agents/{agent}/fund"),
            &admin,
            json!({"amount": "1.00", "chain": format!("{}\u{0}", world.network)}),
            "chain",
        ),
        (
            "session",
            Method::POST,
            "/api/v1/x402/sessions".into(),
            &agent_key,
            json!({"agent_id": agent, "budget_limit": "1.00", "ttl_seconds": 60, "allowed_urls": ["\u{0}"]}),
            "allowed_urls[0]",
        ),
        (
            "pay",
            Method::POST,
            "/api/v1/x402/pay".into(),
            &agent_key,
            json!({"agent_id": agent, "target_url": url}),
            "target_url",
        ),
        (
            "session pay",
            Method::POST,
            format!("/api/v1/x402/sessions/{session}/pay"),
            &agent_key,
            json!({"target_url": url}),
            "target_url",
        ),
        (
            "check",
            Method::POST,
            "/api/v1/x402/check".into(),
            &agent_key,
            json!({"url": url}),
            "url",
        ),
        (
            "approve",
            Method::POST,
            "/api/v1/x402/payments/ldg_0190a3c48f2b7c3e9d1e5f6a7b8c9d0e/approve".into(),
            &admin,
            json!({"reason": "ok\u{0}"}),
            "reason",
        ),
        (
            "withdrawal",
            Method::POST,
            format!("/api/v1/agents/{agent}/withdrawals"),
            &admin,
            json!({"to": format!("{address}\u{0}"), "amount": "1.00"}),
            "to",
        ),
        (
            "withdrawal addresses",
            Method::PUT,
            "/api/v1/account/withdrawal_addresses".into(),
            &admin,
            json!({"addresses": [format!("\u{0}{address}")]}),
            "addresses[0]",
        ),
        (
            "key",
            Method::POST,
            "/api/v1/keys".into(),
            &admin,
            json!({"name": "k\u{0}", "scopes": ["agent"]}),
            "name",
        ),
        (
            "verify extra",
            Method::POST,
            "/api/v1/x402/facilitator/verify".into(),
            &provider,
            extra.clone(),
            "paymentRequirements.extra.name",
        ),
        (
            "settle extra",
            Method::POST,
            "/api/v1/x402/facilitator/settle".into(),
            &provider,
            extra.clone(),
            "paymentRequirements.extra.name",
        ),
        (
            "settle resource",
            Method::POST,
            "/api/v1/x402/facilitator/settle".into(),
            &provider,
            resource.clone(),
            "paymentPayload.resource.url",
        ),
        (
            "gate",
            Method::POST,
            "/api/v1/x402".into(),
            &provider,
            json!({"action": "x402.settle", "params": resource}),
            "params.paymentPayload.resource.url",
        ),
    ];
    for (what, method, path, key, body, field) in cases {
        let (status, answer) = world.call(method, &path, key, Some(&body)).await;
        assert_refused(what, status, &answer, "invalid_field", Some(field));
        assert!(answer["error"]["message"].as_str().unwrap().contains("U+0000"), "{answer}");
    }

    // Percent-encoded in a query parameter or a path segment (any C0 control character).
    for (what, path, field) in [
        ("keys cursor", "/api/v1/keys?starting_after=key_%00".to_owned(), "starting_after"),
        (
            "withdrawals cursor",
            format!("/api/v1/agents/{agent}/withdrawals?limit=10&starting_after=%00"),
            "starting_after",
        ),
        ("statement cursor", format!("/api/v1/agents/{agent}/statement?cursor=1%0A"), "cursor"),
        ("agent path", "/api/v1/agents/agt_%00".to_owned(), "agent_id"),
        ("session path", "/api/v1/x402/sessions/ses_%1F".to_owned(), "session_id"),
    ] {
        let (status, answer) = world.call(Method::GET, &path, &admin, None).await;
        assert_refused(what, status, &answer, "invalid_field", Some(field));
    }
    let (status, answer) = world.call(Method::DELETE, "/api/v1/agents/agt%00", &admin, None).await;
    assert_refused("agent delete", status, &answer, "invalid_field", Some("agent_id"));

    // A raw NUL byte is not JSON at all; a backslash before `u0000` is text, not NUL.
    let (status, answer) =
        send_raw(&world, Method::POST, "/api/v1/agents", &admin, b"{\"name\": \"bot\0\"}").await;
    assert_refused("raw NUL", status, &answer, "malformed_json", None);
    let (status, key) = send_raw(
        &world,
        Method::POST,
        "/api/v1/keys",
        &admin,
        br#"{"name": "C:\\u0000", "scopes": ["agent"]}"#,
    )
    .await;
    assert_eq!(status, 201, "{key}");
    assert_eq!(key["name"], "C:\\u0000");

    let mut after = rows(&world).await;
    for (table, count) in &mut after {
        if *table == "gateway.api_keys" {
            *count -= 1;
        }
    }
    assert_eq!(after, before, "a refused request wrote something");
    assert_eq!(policy_of(&world, &agent).await, policy_before);
    assert_eq!(world.agent_balance(&agent).await, balance_before);
    assert_eq!(world.balance(payer).await, payer_before);
    world.stop().await;
}

#[tokio::test]
async fn an_amount_above_the_bound_is_a_400_naming_the_field_and_moves_nothing() {
    let world = World::start().await;
    let admin = world.admin_key.clone();
    let agent_key = world.new_key(&["agent"]).await;
    let (agent, wallet) = world.create_agent(json!({})).await;
    world.fund(&agent, "5.00").await;
    let (facilitator, payer) = facilitator_body(&world).await;
    let mut required = facilitator.clone();
    required["paymentRequirements"]["amount"] = json!(HUGE);
    required["paymentPayload"]["accepted"]["amount"] = json!(HUGE);
    let mut accepted = facilitator.clone();
    accepted["paymentPayload"]["accepted"]["amount"] = json!(HUGE);
    let mut signed = facilitator.clone();
    signed["paymentPayload"]["payload"]["authorization"]["value"] = json!(HUGE);
    let balance_before = world.agent_balance(&agent).await;
    let wallet_before = world.balance(wallet).await;
    let payer_before = world.balance(payer).await;
    let policy_before = policy_of(&world, &agent).await;
    let before = rows(&world).await;

    let usdc = "1000000000 USDC (1000000000000000 atomic units)";
    let cases: Vec<(&str, Method, String, &str, Value, &str, String)> = vec![
        (
            "fund",
            Method::POST,
            format!("/api/v1/agents/{agent}/fund"),
            &admin,
            json!({"amount": "1000000000000000000"}),
            "amount",
            "amount must be at most 1000000000 USDC".to_owned(),
        ),
        (
            "fund by a millionth",
            Method::POST,
            format!("/api/v1/agents/{agent}/fund"),
            &admin,
            json!({"amount": "1000000000.000001"}),
            "amount",
            "amount must be at most 1000000000 USDC".to_owned(),
        ),
        (
            "withdrawal",
            Method::POST,
            format!("/api/v1/agents/{agent}/withdrawals"),
            &admin,
            json!({"to": Address::random().to_checksum(None), "amount": HUGE}),
            "amount",
            "amount must be at most 1000000000 USDC".to_owned(),
        ),
        (
            "agent per-payment maximum",
            Method::POST,
            "/api/v1/agents".into(),
            &admin,
            json!({"name": "bot", "policy": {"per_payment_max": HUGE}}),
            "policy.per_payment_max",
            "policy.per_payment_max must be at most 1000000000 dollars".to_owned(),
        ),
        (
            "agent daily limit",
            Method::POST,
            "/api/v1/agents".into(),
            &admin,
            json!({"name": "bot", "policy": {"daily_limit": "1000000000000000000"}}),
            "policy.daily_limit",
            "policy.daily_limit must be at most 1000000000 dollars".to_owned(),
        ),
        (
            "policy approval threshold",
            Method::PUT,
            format!("/api/v1/agents/{agent}/policy"),
            &admin,
            json!({"approval_threshold": "1000000000.01"}),
            "approval_threshold",
            "approval_threshold must be at most 1000000000 dollars".to_owned(),
        ),
        (
            "verify requirements",
            Method::POST,
            "/api/v1/x402/facilitator/verify".into(),
            &world.provider_key,
            required.clone(),
            "paymentRequirements.amount",
            format!("paymentRequirements.amount must be at most {usdc}"),
        ),
        (
            "settle requirements",
            Method::POST,
            "/api/v1/x402/facilitator/settle".into(),
            &world.provider_key,
            required.clone(),
            "paymentRequirements.amount",
            format!("paymentRequirements.amount must be at most {usdc}"),
        ),
        (
            "settle accepted",
            Method::POST,
            "/api/v1/x402/facilitator/settle".into(),
            &world.provider_key,
            accepted,
            "paymentPayload.accepted.amount",
            format!("paymentPayload.accepted.amount must be at most {usdc}"),
        ),
        (
            "settle signed value",
            Method::POST,
            "/api/v1/x402/facilitator/settle".into(),
            &world.provider_key,
            signed,
            "paymentPayload.payload.authorization.value",
            format!("paymentPayload.payload.authorization.value must be at most {usdc}"),
        ),
    ];
    for (what, method, path, key, body, field, message) in cases {
        let (status, answer) = world.call(method, &path, key, Some(&body)).await;
        assert_refused(what, status, &answer, "invalid_field", Some(field));
        assert_eq!(answer["error"]["message"], message, "{what}");
    }

    // A session's budget above the bound is refused by the gateway, naming the field (the
    // policy service refuses it too: see the bus-level test below).
    for budget in [HUGE, "1000000000.000001"] {
        let (status, answer) = world
            .call(
                Method::POST,
                "/api/v1/x402/sessions",
                &agent_key,
                Some(&json!({"agent_id": agent, "budget_limit": budget, "ttl_seconds": 60})),
            )
            .await;
        assert_refused(budget, status, &answer, "invalid_field", Some("budget_limit"));
        assert!(answer["error"]["message"].as_str().unwrap().starts_with("budget_limit"));
    }

    // Gate's envelope: a 400 with its code for unreadable requirements.
    let (status, answer) = world
        .call(
            Method::POST,
            "/api/v1/x402",
            &world.provider_key,
            Some(&json!({"action": "x402.settle", "params": required})),
        )
        .await;
    assert_eq!((status, &answer["code"]), (400, &json!(51_002)), "{answer}");

    assert_eq!(rows(&world).await, before, "a refused request wrote something");
    assert_eq!(world.agent_balance(&agent).await, balance_before);
    assert_eq!(world.balance(wallet).await, wallet_before, "nothing minted or withdrawn");
    assert_eq!(world.balance(payer).await, payer_before, "nothing settled");
    assert_eq!(policy_of(&world, &agent).await, policy_before);

    // The bound itself is allowed.
    let funded = world.fund(&agent, "1000000000").await;
    assert_eq!(funded["amount"], "1000000000.00");
    assert_eq!(world.balance(wallet).await, wallet_before + U256::from(10u128.pow(15)));
    let (status, session) = world
        .call(
            Method::POST,
            "/api/v1/x402/sessions",
            &agent_key,
            Some(&json!({"agent_id": agent, "budget_limit": "1000000000", "ttl_seconds": 60})),
        )
        .await;
    assert_eq!(status, 201, "{session}");
    world.create_agent(json!({"daily_limit": "1000000000.00"})).await;

    // An asset the platform does not know has no known decimals: its bound is the largest
    // amount the ledger holds (2^128 - 1 atomic units).
    let mut unknown = facilitator;
    let asset = Address::random().to_checksum(None);
    for requirements in ["paymentRequirements", "paymentPayload"] {
        let offer = if requirements == "paymentPayload" {
            &mut unknown[requirements]["accepted"]
        } else {
            &mut unknown[requirements]
        };
        offer["asset"] = json!(asset);
        offer["amount"] = json!(HUGE);
    }
    let (status, answer) = world
        .call(Method::POST, "/api/v1/x402/facilitator/verify", &world.provider_key, Some(&unknown))
        .await;
    assert_eq!(status, 200, "10^24 of an unknown asset is within its bound: {answer}");
    assert_eq!(answer["isValid"], false);
    let two_to_128 = "340282366920938463463374607431768211456";
    unknown["paymentRequirements"]["amount"] = json!(two_to_128);
    let (status, answer) = world
        .call(Method::POST, "/api/v1/x402/facilitator/verify", &world.provider_key, Some(&unknown))
        .await;
    assert_refused("2^128", status, &answer, "invalid_field", Some("paymentRequirements.amount"));
    world.stop().await;
}

/// A bus client in the world's namespace, as the gateway is.
async fn bus(world: &World) -> awx_bus::Bus {
    let mut config = awx_bus::BusConfig::new("tester", "tester");
    config.redis_url = secrecy::SecretString::from(awx_test_support::redis_url());
    config.prefix = world.namespace.prefix().to_owned();
    awx_bus::Bus::connect(config).await.unwrap()
}

/// Asserts that `result` is a final rejection `invalid_request`: not a transient failure the
/// bus would redeliver (the call would then time out).
fn assert_rejected<T: std::fmt::Debug>(what: &str, result: Result<T, BusError>) -> String {
    match result {
        Err(BusError::Rejected { code, message }) => {
            assert_eq!(code, "invalid_request", "{what}: {message}");
            assert!(!message.contains('\0'), "{what}: {message}");
            message
        }
        other => panic!("{what}: {other:?}"),
    }
}

#[tokio::test]
async fn a_service_sent_data_postgres_refuses_rejects_it_at_once_instead_of_retrying() {
    let world = World::start().await;
    let bus = bus(&world).await;
    let owner = account_id(&world).await;
    let (agent, _) = world.create_agent(json!({})).await;
    let agent = AgentId::parse(&agent).unwrap();
    let (facilitator, _) = facilitator_body(&world).await;
    let before = rows(&world).await;
    // Long enough for a reply, far shorter than a redelivery (`claim_idle_ms`, 30 s): a
    // transient failure would time out.
    let timeout = Duration::from_secs(20);

    // The gateway refuses these; the services must not depend on it. A NUL character in text
    // (SQLSTATE 22021) and in `jsonb` (22P05) are data exceptions.
    let create = CreateAgent {
        owner,
        agent_id: AgentId::new(),
        name: "bot\u{0}".into(),
        default_chain: None,
        policy: None,
    };
    let message = assert_rejected("agent name", bus.send(&create, timeout).await);
    assert!(message.contains("refused"), "{message}");
    let policy =
        PolicyView { allowed_urls: vec!["a.example/\u{0}".into()], ..PolicyView::default() };
    let set = SetPolicy { owner, agent_id: agent, policy };
    assert_rejected("policy", bus.send(&set, timeout).await);
    let mut request = facilitator;
    request["paymentPayload"]["resource"] =
        json!({"url": "https://api.example.com/\u{0}", "description": "", "mimeType": ""});
    let request: FacilitatorRequest = serde_json::from_value(request).unwrap();
    let settle = awx_api::facilitator::Settle { provider: owner, request };
    assert_rejected("settle", bus.send(&settle, timeout).await);

    // Amounts above the bound are refused by the policy service itself.
    let session = CreateSession {
        owner,
        session_id: SessionId::new(),
        agent_id: agent,
        budget_limit: HUGE.into(),
        chain: None,
        ttl_seconds: 60,
        allowed_urls: Vec::new(),
    };
    assert_rejected("budget", bus.send(&session, timeout).await);
    let policy =
        PolicyView { daily_limit: Some("1000000000.000001".into()), ..PolicyView::default() };
    let create = CreateAgent { policy: Some(policy), ..create };
    let create = CreateAgent { name: "bot".into(), agent_id: AgentId::new(), ..create };
    assert_rejected("daily limit", bus.send(&create, timeout).await);

    // The agent whose name was refused was never recorded; its wallet (made first, by the
    // signer) is the only row written.
    let mut after = rows(&world).await;
    for (table, count) in &mut after {
        if *table == "signer.agent_wallets" {
            assert_eq!(*count, before.iter().find(|(t, _)| t == table).unwrap().1 + 1);
            *count -= 1;
        }
    }
    assert_eq!(after, before);
    world.stop().await;
}
