//! The SDKs' suites against the whole platform: [`run_suite`] starts it, makes one agent per case
//! (so each case's money can be checked on its own) and the paid APIs, runs an SDK's own test
//! suite as a child process with them in `AWX_SDK_*` variables, and then checks that exactly the
//! payments the suite was meant to make were taken from each agent.
//!
//! The variables: `AWX_SDK_BASE_URL`, `AWX_SDK_AGENT_KEY` (an agent-scope key), `AWX_SDK_CHAIN`;
//! agents `AWX_SDK_AGENT` (pays twice), `AWX_SDK_SESSION_AGENT` (a session of three payments),
//! `AWX_SDK_LIMITED_AGENT` (a per-payment maximum below the price: pays nothing),
//! `AWX_SDK_REFUSING_AGENT` (pays once, to a provider that answers 402 whatever it gets); URLs
//! `AWX_SDK_PAID_URL` and `AWX_SDK_OTHER_PAID_URL` (0.01 USDC each), `AWX_SDK_PLAIN_URL` (no
//! x402), `AWX_SDK_REFUSING_URL`; and `AWX_SDK_PRICE` (`0.01`).

use std::time::Duration;

use awx_x402::Address;
use serde_json::json;

use super::World;

/// The price of the paid APIs: 0.01 USDC (and a fee of 0.0002).
const PRICE: u128 = 10_000;

/// A provider that asks for payment whatever it is sent; returns its URL.
pub(crate) async fn refusing_provider(world: &World) -> String {
    let required = json!({
        "x402Version": 2,
        "resource": {"url": "http://refusing.test/paid"},
        "accepts": [world.requirements(Address::random(), PRICE)],
    });
    let challenge = awx_x402::header::encode(&required).unwrap();
    let app = axum::Router::new().route(
        "/paid",
        axum::routing::get(move || {
            let challenge = challenge.clone();
            async move {
                (axum::http::StatusCode::PAYMENT_REQUIRED, [("payment-required", challenge)], "{}")
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{address}/paid")
}

async fn funded(world: &World, policy: serde_json::Value) -> String {
    let (agent, _) = world.create_agent(policy).await;
    world.fund(&agent, "1.00").await;
    agent
}

async fn payments_of(world: &World, agent: &str) -> i64 {
    let id = uuid::Uuid::parse_str(agent.trim_start_matches("agt_")).unwrap();
    sqlx::query_scalar("SELECT count(*) FROM policy.payments WHERE agent_id = $1")
        .bind(id)
        .fetch_one(&world.db.pool)
        .await
        .unwrap()
}

/// The repository's root.
pub(crate) fn root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Runs an SDK's suite (`command`, which must print `passed` as its summary says, e.g. `9 passed`
/// or `# pass 7`) against a fresh platform, then checks every agent's payments and balance.
pub(crate) async fn run_suite(mut command: tokio::process::Command, passed: &str) {
    let world = World::start().await;
    let agent_key = world.new_key(&["agent"]).await;
    let agent = funded(&world, json!({})).await;
    let session_agent = funded(&world, json!({})).await;
    let limited = funded(&world, json!({"per_payment_max": "0.005"})).await;
    let refusing_agent = funded(&world, json!({})).await;
    let paid = world.paid_api(Address::random(), PRICE).await;
    let other = world.paid_api(Address::random(), PRICE).await;
    let refusing = refusing_provider(&world).await;

    command
        .env("AWX_SDK_BASE_URL", &world.gateway_url)
        .env("AWX_SDK_AGENT_KEY", &agent_key)
        .env("AWX_SDK_CHAIN", &world.network)
        .env("AWX_SDK_AGENT", &agent)
        .env("AWX_SDK_SESSION_AGENT", &session_agent)
        .env("AWX_SDK_LIMITED_AGENT", &limited)
        .env("AWX_SDK_REFUSING_AGENT", &refusing_agent)
        .env("AWX_SDK_PAID_URL", format!("{paid}/paid"))
        .env("AWX_SDK_OTHER_PAID_URL", format!("{other}/paid"))
        .env("AWX_SDK_PLAIN_URL", format!("{paid}/free"))
        .env("AWX_SDK_REFUSING_URL", &refusing)
        .env("AWX_SDK_PRICE", "0.01")
        .kill_on_drop(true);
    let output = tokio::time::timeout(Duration::from_secs(600), command.output())
        .await
        .expect("the SDK's tests timed out")
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "the SDK's tests failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains(passed), "expected {passed:?}:\n{stdout}\n{stderr}");

    // Two paid fetches and nothing for the refused maximum or the plain URL.
    assert_eq!(payments_of(&world, &agent).await, 2);
    assert_eq!(world.agent_balance(&agent).await, ("0.9796".into(), "0.00".into()));
    // The session's budget of three payments, and nothing for the URL outside it.
    assert_eq!(payments_of(&world, &session_agent).await, 3);
    assert_eq!(world.agent_balance(&session_agent).await, ("0.9694".into(), "0.00".into()));
    // The policy refused before anything was reserved.
    assert_eq!(payments_of(&world, &limited).await, 0);
    assert_eq!(world.agent_balance(&limited).await, ("1.00".into(), "0.00".into()));
    // Paid once, however often the provider said 402.
    assert_eq!(payments_of(&world, &refusing_agent).await, 1);
    world.stop().await;
}
