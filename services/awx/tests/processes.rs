//! The platform as deployed: every service its own OS process from its own binary and
//! configuration file (`awx_cli::processes`), two replicas of the signer, the ledger, the
//! settlement service and the policy service, and two gateways, on a database migrated once
//! before any of them started.
//!
//! Agents pay through both gateways and retry through the official `@x402/express` server,
//! which verifies and settles through the second gateway. During the stream of payments one
//! policy replica and one ledger replica are killed with SIGKILL and started again. The clients
//! behave as the API asks: a 5xx or a dropped connection is retried with the same
//! `Idempotency-Key`, a failed paid retry is sent again with the same signature. Then every
//! payment answered `completed` is captured exactly once, each has exactly one queued net
//! settlement item, nothing else is captured or left held, the agent's balance is exact, and the
//! ledger check passes.
//!
//! Our agents' payments are verified by every gateway and every settlement replica from memory
//! (what the policy service announced when it signed, and the captures), with the policy
//! service down.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail by panicking"
)]

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use awx_types::Amount;
use awx_x402::Address;
use serde_json::{Value, json};
use support::World;
use support::interop::express_server;

/// The price of the express server's `GET /paid`: $0.01.
const PRICE: u128 = 10_000;
/// Concurrent paying clients.
const WORKERS: usize = 4;
/// How long one request may be retried before the client gives up (a lost payment).
const RETRY_FOR: Duration = Duration::from_secs(90);

/// What a client saw of one payment.
#[derive(Debug)]
struct Paid {
    ledger_id: String,
    /// When `/x402/pay` answered `completed`.
    at: Instant,
    /// Attempts of `/x402/pay` (1 when nothing failed).
    pay_attempts: u32,
    /// Attempts of the paid retry (1 when nothing failed).
    retry_attempts: u32,
}

/// What the clients share: where and what to pay, the stop flag and the count of payments
/// served.
struct Stream {
    gateways: Vec<String>,
    key: String,
    agent: String,
    url: String,
    stop: AtomicBool,
    served: AtomicUsize,
}

/// One client: pays `url` as `agent` through the gateways in turn, with an `Idempotency-Key`
/// per payment, and retries the URL with the signature, until `stop`. A payment that cannot be
/// completed within [`RETRY_FOR`] is reported as an error.
async fn client(worker: usize, stream: Arc<Stream>) -> (Vec<Paid>, Vec<String>) {
    let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
    let mut paid = Vec::new();
    let mut errors = Vec::new();
    let mut turn = worker;
    let Stream { gateways, key, agent, url, stop, served: served_count } = &*stream;
    while !stop.load(Ordering::Relaxed) {
        let idempotency_key = uuid::Uuid::new_v4().to_string();
        let started = Instant::now();
        let mut pay_attempts = 0;
        let answer = loop {
            pay_attempts += 1;
            turn += 1;
            let gateway = &gateways[turn % gateways.len()];
            let sent = http
                .post(format!("{gateway}/api/v1/x402/pay"))
                .header("x-api-key", key.as_str())
                .header("idempotency-key", &idempotency_key)
                .json(&json!({"agent_id": agent, "target_url": url}))
                .send()
                .await;
            let retry_reason = match sent {
                Ok(response) if response.status().as_u16() == 200 => {
                    break Some(response.json::<Value>().await.unwrap());
                }
                Ok(response)
                    if response.status().is_server_error() || response.status().as_u16() == 409 =>
                {
                    let status = response.status();
                    format!("{status}: {}", response.text().await.unwrap_or_default())
                }
                Ok(response) => {
                    let status = response.status();
                    errors.push(format!(
                        "pay {idempotency_key}: {status}: {}",
                        response.text().await.unwrap_or_default()
                    ));
                    break None;
                }
                Err(error) => error.to_string(),
            };
            if started.elapsed() > RETRY_FOR {
                errors.push(format!("pay {idempotency_key}: gave up: {retry_reason}"));
                break None;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        let Some(answer) = answer else { continue };
        if answer["status"] != "completed" {
            errors.push(format!("pay {idempotency_key}: {answer}"));
            continue;
        }
        let at = Instant::now();
        let ledger_id = answer["ledger_id"].as_str().unwrap().to_owned();
        let header = answer["payment_header"].as_str().unwrap().to_owned();
        let signature = answer["payment_signature"].as_str().unwrap().to_owned();
        let mut retry_attempts = 0;
        let served = loop {
            retry_attempts += 1;
            let sent = http.get(url.as_str()).header(&header, &signature).send().await;
            let failure = match sent {
                Ok(response) if response.status().as_u16() == 200 => {
                    let body: Value = response.json().await.unwrap();
                    break body["served_by"] == "@x402/express";
                }
                Ok(response) => format!("{}", response.status()),
                Err(error) => error.to_string(),
            };
            if at.elapsed() > RETRY_FOR {
                errors.push(format!("retry of {ledger_id}: gave up: {failure}"));
                break false;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        if served {
            paid.push(Paid { ledger_id, at, pay_attempts, retry_attempts });
            served_count.fetch_add(1, Ordering::Relaxed);
        }
    }
    (paid, errors)
}

/// Waits until the clients have served `more` payments beyond `from` (and at least `least`
/// has passed); the count then.
async fn served_beyond(served: &AtomicUsize, from: usize, more: usize, least: Duration) -> usize {
    let started = Instant::now();
    loop {
        let now = served.load(Ordering::Relaxed);
        if now >= from + more && started.elapsed() >= least {
            return now;
        }
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "{now} payments served, want {}",
            from + more
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// How many bus commands the process `name` has handled since it started, from its metrics.
async fn commands_handled(world: &World, name: &str) -> u64 {
    metric(world, name, "awx_bus_commands_handled_total{").await
}

/// The sum of the process `name`'s metric lines that start with `start`.
async fn metric(world: &World, name: &str, start: &str) -> u64 {
    let addr = world.processes.as_ref().unwrap().addr(name).unwrap();
    let metrics = world.http.get(format!("http://{addr}/metrics")).send().await.unwrap();
    let metrics = metrics.text().await.unwrap();
    metrics
        .lines()
        .filter(|line| line.starts_with(start))
        .map(|line| line.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum()
}

/// How many verifies the settlement replica `name` answered from its memory of issued
/// authorizations.
async fn settlement_memory(world: &World, name: &str) -> u64 {
    metric(world, name, "settlement_own_verify_total{answered_by=\"memory\"").await
}

/// How many verifies the gateway at `url` answered from its memory of issued authorizations.
async fn gateway_memory(world: &World, url: &str) -> u64 {
    let metrics = world.http.get(format!("{url}/metrics")).send().await.unwrap();
    let metrics = metrics.text().await.unwrap();
    metrics
        .lines()
        .filter(|line| line.starts_with("gateway_own_verify_from_memory_total"))
        .map(|line| line.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum()
}

/// A verify of `payload` through the gateway at `url`.
async fn verify_at(world: &World, url: &str, payload: &awx_x402::PaymentPayload) -> Value {
    let response = world
        .http
        .post(format!("{url}/api/v1/x402/facilitator/verify"))
        .header("x-api-key", &world.provider_key)
        .json(&World::body(payload, &payload.accepted))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    response.json().await.unwrap()
}

/// Verifies `payload` through each gateway, and over the bus until each settlement replica has
/// answered it from memory once more; checks every answer with `check`. A verify that reached
/// the policy service (down in the test) would fail.
async fn verify_everywhere(
    world: &World,
    bus: &awx_bus::Bus,
    payload: &awx_x402::PaymentPayload,
    check: impl Fn(&Value),
) {
    let gateways = world.processes.as_ref().unwrap().gateway_urls.clone();
    for url in &gateways {
        let before = gateway_memory(world, url).await;
        check(&verify_at(world, url, payload).await);
        assert_eq!(
            gateway_memory(world, url).await,
            before + 1,
            "{url} did not answer from memory"
        );
    }
    let replicas = ["settlement-1", "settlement-2"];
    let mut before = Vec::new();
    for name in replicas {
        before.push(settlement_memory(world, name).await);
    }
    let verify = awx_api::facilitator::Verify {
        provider: awx_types::AccountId::new(),
        request: awx_x402::FacilitatorRequest::v2(payload, &payload.accepted),
    };
    for _ in 0..200 {
        let verified = bus.send(&verify, Duration::from_secs(5)).await.unwrap();
        check(&serde_json::to_value(verified).unwrap());
        let mut all = true;
        for (name, before) in replicas.iter().zip(&before) {
            all &= settlement_memory(world, name).await > *before;
        }
        if all {
            return;
        }
    }
    panic!("200 verifies did not reach both settlement replicas");
}

/// Dollars as atomic units (6 decimals).
fn atomic(dollars: &str) -> u128 {
    Amount::from_decimal_str(dollars, 6).unwrap().atomic()
}

#[tokio::test]
async fn payments_through_replicas_killed_and_restarted_are_captured_exactly_once() {
    let mut world = World::start_processes(2).await;
    let gateways = world.processes.as_ref().unwrap().gateway_urls.clone();
    assert_eq!(gateways.len(), 2);
    // Migrated once, before the services: they do not migrate (their configuration says so).
    for service in ["gateway", "policy", "ledger", "signer", "settlement"] {
        let config = std::fs::read_to_string(
            world.state_dir().join("processes/config").join(format!("{service}.toml")),
        )
        .unwrap();
        let config: toml::Table = toml::from_str(&config).unwrap();
        assert_eq!(config["database"]["migrate"].as_bool(), Some(false), "{service}");
    }

    let key = world.new_key(&["agent"]).await;
    let (agent, _) = world.create_agent(json!({})).await;
    world.fund(&agent, "50.00").await;
    let payee = Address::random();
    // The official express server settles through the second gateway.
    let (_express, port) = express_server(&world, payee, PRICE, &gateways[1]).await;
    let url = format!("http://127.0.0.1:{port}/paid");

    // A session, paid through the second gateway, and the retry through the express server.
    let (status, session) = world
        .call(
            reqwest::Method::POST,
            "/api/v1/x402/sessions",
            &key,
            Some(&json!({"agent_id": agent, "budget_limit": "0.05", "ttl_seconds": 600})),
        )
        .await;
    assert_eq!(status, 201, "{session}");
    let session = session["id"].as_str().unwrap().to_owned();
    let session_paid: Value = world
        .http
        .post(format!("{}/api/v1/x402/sessions/{session}/pay", gateways[1]))
        .header("x-api-key", &key)
        .json(&json!({"target_url": url}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(session_paid["status"], "completed", "{session_paid}");
    let served = world
        .http
        .get(&url)
        .header(
            session_paid["payment_header"].as_str().unwrap(),
            session_paid["payment_signature"].as_str().unwrap(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(served.status().as_u16(), 200);
    let (_, session_view) = world
        .call(reqwest::Method::GET, &format!("/api/v1/x402/sessions/{session}"), &key, None)
        .await;
    assert_eq!(session_view["spent"], "0.01", "{session_view}");

    // The stream, with a policy replica and a ledger replica killed and restarted in it.
    let stream = Arc::new(Stream {
        gateways: gateways.clone(),
        key: key.clone(),
        agent: agent.clone(),
        url: url.clone(),
        stop: AtomicBool::new(false),
        served: AtomicUsize::new(0),
    });
    let clients: Vec<_> =
        (0..WORKERS).map(|worker| tokio::spawn(client(worker, stream.clone()))).collect();
    let served = &stream.served;
    let count = served_beyond(served, 0, 3, Duration::from_secs(2)).await;
    // Both replicas of each were serving.
    for name in ["policy-1", "policy-2", "ledger-1", "ledger-2"] {
        assert!(commands_handled(&world, name).await > 0, "{name} handled nothing");
    }
    let processes = world.processes.as_mut().unwrap();
    processes.kill("policy-1").await.unwrap();
    processes.kill("ledger-1").await.unwrap();
    let killed_at = Instant::now();
    // Payments go on while they are down (commands they held are taken over).
    let count = served_beyond(served, count, 3, Duration::from_secs(4)).await;
    processes.restart("policy-1").await.unwrap();
    processes.restart("ledger-1").await.unwrap();
    let restarted_at = Instant::now();
    // The restarted replicas take their share again.
    let deadline = Instant::now() + Duration::from_secs(60);
    for name in ["policy-1", "ledger-1"] {
        while commands_handled(&world, name).await == 0 {
            assert!(Instant::now() < deadline, "{name} handled nothing after its restart");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    served_beyond(served, count, 3, Duration::from_secs(2)).await;
    stream.stop.store(true, Ordering::Relaxed);
    let mut paid = Vec::new();
    let mut errors = Vec::new();
    for client in clients {
        let (client_paid, client_errors) = client.await.unwrap();
        paid.extend(client_paid);
        errors.extend(client_errors);
    }
    let exited = world.processes.as_mut().unwrap().exited();
    assert!(exited.is_empty(), "processes died: {exited:?}");
    assert!(errors.is_empty(), "payments lost: {errors:#?}");

    // Payments went through before the kill, while the replicas were down, and after.
    let before = paid.iter().filter(|p| p.at < killed_at).count();
    let during = paid.iter().filter(|p| p.at >= killed_at && p.at < restarted_at).count();
    let after = paid.iter().filter(|p| p.at >= restarted_at).count();
    assert!(
        before > 0 && during > 0 && after > 0,
        "before {before}, during {during}, after {after}"
    );
    let retried = paid.iter().filter(|p| p.pay_attempts > 1 || p.retry_attempts > 1).count();
    eprintln!(
        "{} payments: {before} before the kill, {during} while down, {after} after; {retried} \
         needed a retry",
        paid.len()
    );

    // Every completed payment (and the session's) once, and nothing else.
    let mut completed: BTreeSet<String> = paid.iter().map(|p| p.ledger_id.clone()).collect();
    assert_eq!(completed.len(), paid.len(), "two answers named one payment");
    completed.insert(session_paid["ledger_id"].as_str().unwrap().to_owned());
    let payments = completed.len();
    let count = u128::try_from(payments).unwrap();

    // The captures' events reach the settlement service's queue through the outboxes.
    let deadline = Instant::now() + Duration::from_secs(60);
    let items: Vec<(uuid::Uuid, i64)> = loop {
        let items: Vec<(uuid::Uuid, i64)> =
            sqlx::query_as("SELECT payment_id, count(*) FROM settlement.items GROUP BY payment_id")
                .fetch_all(&world.db.pool)
                .await
                .unwrap();
        if items.len() >= payments || Instant::now() > deadline {
            break items;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let captures: Vec<(uuid::Uuid, i64)> = sqlx::query_as(
        "SELECT pending_id, count(*) FROM ledger.transfers WHERE kind = 'post_pending' \
         AND metadata->>'op' = 'capture' GROUP BY pending_id",
    )
    .fetch_all(&world.db.pool)
    .await
    .unwrap();
    let states: BTreeMap<String, i64> =
        sqlx::query_as("SELECT state, count(*) FROM policy.payments GROUP BY state")
            .fetch_all(&world.db.pool)
            .await
            .unwrap()
            .into_iter()
            .collect();
    let as_ids = |rows: &[(uuid::Uuid, i64)]| -> BTreeSet<String> {
        rows.iter().map(|(id, _)| awx_types::LedgerId::from_uuid(*id).to_string()).collect()
    };
    assert!(captures.iter().all(|(_, n)| *n == 1), "a hold captured twice: {captures:?}");
    assert_eq!(as_ids(&captures), completed, "captured holds differ from completed payments");
    assert!(items.iter().all(|(_, n)| *n == 1), "an item queued twice: {items:?}");
    assert_eq!(as_ids(&items), completed, "queued items differ from completed payments");
    assert_eq!(states, BTreeMap::from([("captured".to_owned(), i64::try_from(payments).unwrap())]));

    // $0.01 and the 2% fee, for each payment; nothing still held.
    let (available, held) = world.agent_balance(&agent).await;
    assert_eq!(held, "0.00");
    assert_eq!(atomic(&available), atomic("50.00") - count * (PRICE + PRICE / 50));
    world.assert_ledger_consistent().await;
    world.stop().await;
}

#[tokio::test]
async fn every_gateway_and_settlement_replica_verifies_our_agents_payments_from_memory() {
    let mut world = World::start_processes(2).await;
    let mut config = awx_bus::BusConfig::new("tester", "tester");
    config.redis_url = secrecy::SecretString::from(awx_test_support::redis_url());
    config.prefix = world.namespace.prefix().to_owned();
    let bus = awx_bus::Bus::connect(config).await.unwrap();
    let key = world.new_key(&["agent"]).await;
    let (agent, wallet) = world.create_agent(json!({})).await;
    world.fund(&agent, "1.00").await;
    let payee = Address::random();
    let url = format!("{}/paid", world.paid_api(payee, 250_000).await);
    let (status, paid) = world
        .call(
            reqwest::Method::POST,
            "/api/v1/x402/pay",
            &key,
            Some(&json!({"agent_id": agent, "target_url": url})),
        )
        .await;
    assert_eq!(status, 200, "{paid}");
    let payload: awx_x402::PaymentPayload =
        awx_x402::header::decode(paid["payment_signature"].as_str().unwrap()).unwrap();

    // With every policy replica down, both gateways and both settlement replicas still answer
    // from what the policy service announced when it signed: a verify that asked it would time
    // out (503, or the bus's timeout).
    let processes = world.processes.as_mut().unwrap();
    processes.kill("policy-1").await.unwrap();
    processes.kill("policy-2").await.unwrap();
    let payer = wallet.to_checksum(None);
    verify_everywhere(&world, &bus, &payload, |verified| {
        assert_eq!(verified["isValid"], true, "{verified}");
        assert_eq!(verified["payer"], payer.as_str());
    })
    .await;
    // Every field is compared with what was issued.
    let mut forged = payload.clone();
    forged.payload["authorization"]["value"] = json!("250001");
    forged.accepted.amount = "250001".into();
    let refused = world.verify(&forged, &forged.accepted).await;
    assert_eq!(refused["invalidReason"], "invalid_exact_evm_signature", "{refused}");

    // Settled (the capture needs the policy service), then every gateway and replica says the
    // nonce is used, again without the policy service.
    let processes = world.processes.as_mut().unwrap();
    processes.restart("policy-1").await.unwrap();
    processes.restart("policy-2").await.unwrap();
    let settled = world.settle(&payload, &payload.accepted).await;
    assert_eq!(settled["success"], true, "{settled}");
    let processes = world.processes.as_mut().unwrap();
    processes.kill("policy-1").await.unwrap();
    processes.kill("policy-2").await.unwrap();
    // (The gateways hear of the capture a moment after the settle's answer.)
    let gateways = world.processes.as_ref().unwrap().gateway_urls.clone();
    for url in &gateways {
        let deadline = Instant::now() + Duration::from_secs(10);
        while verify_at(&world, url, &payload).await["isValid"] == true {
            assert!(Instant::now() < deadline, "{url} never heard of the capture");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    verify_everywhere(&world, &bus, &payload, |verified| {
        assert_eq!(verified["isValid"], false, "{verified}");
        assert_eq!(verified["invalidReason"], "invalid_exact_evm_nonce_already_used", "{verified}");
    })
    .await;
    // Captured once: 1.00 - 0.25 - the 2% fee.
    let processes = world.processes.as_mut().unwrap();
    processes.restart("policy-1").await.unwrap();
    processes.restart("policy-2").await.unwrap();
    assert_eq!(world.agent_balance(&agent).await, ("0.745".into(), "0.00".into()));
    assert_eq!(world.count("SELECT count(*) FROM settlement.items").await, 1);
    world.stop().await;
}
