//! State machines refuse what they do not allow: every transition endpoint, asked to move a
//! resource out of a state it cannot leave that way, answers 409 with a stable code naming the
//! resource's kind (`payment_state`, `session_state`, `agent_state`, `api_key_state`), and
//! nothing changes: not the payment, not the session's counters, not the ledger's balances and
//! holds, not the key. On the whole platform over anvil.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail by panicking"
)]

mod support;

use std::time::Duration;

use awx_types::{AgentId, LedgerId, SessionId};
use awx_x402::Address;
use reqwest::Method;
use serde_json::{Value, json};
use support::World;

/// `GET path` with `key`, which must answer 200.
async fn get(world: &World, key: &str, path: &str) -> Value {
    let (status, body) = world.call(Method::GET, path, key, None).await;
    assert_eq!(status, 200, "{path}: {body}");
    body
}

/// Asserts a 409 with `code`; returns the message.
fn assert_conflict(answer: &(u16, Value), code: &str, what: &str) -> String {
    let (status, body) = answer;
    assert_eq!((*status, body["error"]["code"].as_str()), (409, Some(code)), "{what}: {body}");
    assert_eq!(body["error"]["type"], "invalid_request_error", "{what}: {body}");
    body["error"]["message"].as_str().unwrap().to_owned()
}

/// The ledger's counters of an agent's wallet on the world's chain (credits posted, debits
/// posted, debits pending: its balance and its holds), read from the ledger's tables so that a
/// deleted agent's wallet can be read too.
async fn wallet(world: &World, agent: &str) -> (String, String, String) {
    sqlx::query_as(
        "SELECT credits_posted::text, debits_posted::text, debits_pending::text
         FROM ledger.accounts WHERE code = 'wallet' AND ref = $1 AND network = $2",
    )
    .bind(agent)
    .bind(&world.network)
    .fetch_one(&world.db.pool)
    .await
    .unwrap()
}

/// A payment as stored, with what an admin's decision writes.
async fn payment_row(
    world: &World,
    ledger_id: &str,
) -> (String, Option<String>, Option<String>, String) {
    sqlx::query_as(
        "SELECT state, decided_by, decision_reason, updated_at::text FROM policy.payments WHERE id = $1",
    )
    .bind(LedgerId::parse(ledger_id).unwrap().as_uuid())
    .fetch_one(&world.db.pool)
    .await
    .unwrap()
}

async fn new_session(
    world: &World,
    key: &str,
    agent: &str,
    budget: &str,
    ttl_seconds: u64,
) -> String {
    let (status, session) = world
        .call(
            Method::POST,
            "/api/v1/x402/sessions",
            key,
            Some(&json!({"agent_id": agent, "budget_limit": budget, "ttl_seconds": ttl_seconds})),
        )
        .await;
    assert_eq!(status, 201, "{session}");
    session["id"].as_str().unwrap().to_owned()
}

async fn session_pay(world: &World, key: &str, session: &str, url: &str) -> Value {
    let (status, paid) = world
        .call(
            Method::POST,
            &format!("/api/v1/x402/sessions/{session}/pay"),
            key,
            Some(&json!({"target_url": url})),
        )
        .await;
    assert_eq!(status, 200, "{paid}");
    paid
}

async fn decide(world: &World, ledger_id: &str, verb: &str) -> (u16, Value) {
    world
        .call(
            Method::POST,
            &format!("/api/v1/x402/payments/{ledger_id}/{verb}"),
            &world.admin_key,
            Some(&json!({"reason": format!("{verb} once more")})),
        )
        .await
}

/// Retries the target with the payment's signature, so its provider settles it (`captured`).
async fn serve(world: &World, url: &str, paid: &Value) {
    let response = world
        .http
        .get(url)
        .header(
            paid["payment_header"].as_str().unwrap(),
            paid["payment_signature"].as_str().unwrap(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
}

/// Everything a refused decision on `ledger_id` must leave as it was.
async fn payment_snapshot(
    world: &World,
    key: &str,
    agent: &str,
    session: &str,
    ledger_id: &str,
) -> Value {
    json!({
        "payment": get(world, key, &format!("/api/v1/x402/payments/{ledger_id}")).await,
        "row": format!("{:?}", payment_row(world, ledger_id).await),
        "session": get(world, key, &format!("/api/v1/x402/sessions/{session}")).await,
        "wallet": format!("{:?}", wallet(world, agent).await),
    })
}

#[tokio::test]
async fn approve_and_reject_refuse_every_payment_not_pending_approval() {
    let world = World::start().await;
    let key = world.new_key(&["agent"]).await;
    // $0.01 waits for an admin; $0.001 does not.
    let (agent, _) = world.create_agent(json!({"approval_threshold": "0.005"})).await;
    world.fund(&agent, "1.00").await;
    let base = world.paid_api(Address::random(), 10_000).await;
    let pricey = format!("{base}/paid");
    let cheap = format!("{}/paid", world.paid_api(Address::random(), 1_000).await);
    let session = new_session(&world, &key, &agent, "1.00", 3600).await;

    // Never waited for approval: signed at once.
    let never_waited = session_pay(&world, &key, &session, &cheap).await;
    assert_eq!(never_waited["state"], "authorized", "{never_waited}");
    // Captured: its provider settled it.
    let captured = session_pay(&world, &key, &session, &cheap).await;
    serve(&world, &cheap, &captured).await;
    // Approved by an admin (now signed).
    let approved = session_pay(&world, &key, &session, &pricey).await;
    assert_eq!(approved["state"], "pending_approval", "{approved}");
    let approved_id = approved["ledger_id"].as_str().unwrap();
    let (status, answer) = decide(&world, approved_id, "approve").await;
    assert_eq!((status, answer["state"].as_str()), (200, Some("authorized")), "{answer}");
    // Rejected by an admin.
    let rejected = session_pay(&world, &key, &session, &pricey).await;
    let rejected_id = rejected["ledger_id"].as_str().unwrap();
    let (status, answer) = decide(&world, rejected_id, "reject").await;
    assert_eq!((status, answer["state"].as_str()), (200, Some("rejected")), "{answer}");
    // Failed: its session was revoked while it waited, so approving it failed it.
    let doomed_session = new_session(&world, &key, &agent, "1.00", 3600).await;
    let failed = session_pay(&world, &key, &doomed_session, &pricey).await;
    let failed_id = failed["ledger_id"].as_str().unwrap();
    let (status, _) = world
        .call(Method::DELETE, &format!("/api/v1/x402/sessions/{doomed_session}"), &key, None)
        .await;
    assert_eq!(status, 200);
    let (status, answer) = decide(&world, failed_id, "approve").await;
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (403, Some("session_revoked")),
        "{answer}"
    );
    // Expired: nobody decided within the approval window (brought forward here) and the
    // sweeper released it.
    let expired = session_pay(&world, &key, &session, &pricey).await;
    let expired_id = expired["ledger_id"].as_str().unwrap();
    sqlx::query("UPDATE policy.payments SET deadline = now() - interval '1 second' WHERE id = $1")
        .bind(LedgerId::parse(expired_id).unwrap().as_uuid())
        .execute(&world.db.pool)
        .await
        .unwrap();
    let path = format!("/api/v1/x402/payments/{expired_id}");
    let mut state = Value::Null;
    for _ in 0..200 {
        state = get(&world, &key, &path).await["state"].clone();
        if state != "pending_approval" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(state, "expired");

    let cases = [
        (never_waited["ledger_id"].as_str().unwrap(), session.as_str(), "authorized"),
        (captured["ledger_id"].as_str().unwrap(), session.as_str(), "captured"),
        (approved_id, session.as_str(), "authorized"),
        (rejected_id, session.as_str(), "rejected"),
        (failed_id, doomed_session.as_str(), "failed"),
        (expired_id, session.as_str(), "expired"),
    ];
    for (id, session, state) in cases {
        let before = payment_snapshot(&world, &key, &agent, session, id).await;
        assert_eq!(before["payment"]["state"], state, "{before}");
        for verb in ["approve", "reject"] {
            let message = assert_conflict(
                &decide(&world, id, verb).await,
                "payment_state",
                &format!("{verb} {state}"),
            );
            assert!(message.contains(state), "the message names the state: {message}");
            let after = payment_snapshot(&world, &key, &agent, session, id).await;
            assert_eq!(after, before, "{verb} of a {state} payment changed something");
        }
    }
    // The refusals of the captured payment left its settlement alone too.
    let captured_view = get(
        &world,
        &key,
        &format!("/api/v1/x402/payments/{}", captured["ledger_id"].as_str().unwrap()),
    )
    .await;
    assert_eq!(captured_view["state"], "captured", "{captured_view}");
    world.assert_ledger_consistent().await;
    world.stop().await;
}

#[tokio::test]
async fn revoking_a_session_already_revoked_or_expired_is_a_conflict() {
    let world = World::start().await;
    let key = world.new_key(&["agent"]).await;
    let (agent, _) = world.create_agent(json!({"approval_threshold": "0.005"})).await;
    world.fund(&agent, "1.00").await;
    let pricey = format!("{}/paid", world.paid_api(Address::random(), 10_000).await);
    let cheap = format!("{}/paid", world.paid_api(Address::random(), 1_000).await);

    // A session with money spent and money reserved (a payment waiting for approval).
    let session = new_session(&world, &key, &agent, "1.00", 3600).await;
    session_pay(&world, &key, &session, &cheap).await;
    session_pay(&world, &key, &session, &pricey).await;
    let path = format!("/api/v1/x402/sessions/{session}");
    let (status, revoked) = world.call(Method::DELETE, &path, &key, None).await;
    assert_eq!((status, revoked["status"].as_str()), (200, Some("revoked")), "{revoked}");
    assert_eq!(
        (revoked["spent"].as_str(), revoked["reserved"].as_str()),
        (Some("0.001"), Some("0.01"))
    );
    let before = (get(&world, &key, &path).await, wallet(&world, &agent).await);
    let message = assert_conflict(
        &world.call(Method::DELETE, &path, &key, None).await,
        "session_state",
        "revoked",
    );
    assert!(message.contains("revoked"), "{message}");
    assert_eq!((get(&world, &key, &path).await, wallet(&world, &agent).await), before);

    // An expired session, with money spent (its expiry brought forward).
    let short = new_session(&world, &key, &agent, "1.00", 3600).await;
    let short_path = format!("/api/v1/x402/sessions/{short}");
    session_pay(&world, &key, &short, &cheap).await;
    sqlx::query(
        "UPDATE policy.sessions SET expires_at = now() - interval '1 second' WHERE id = $1",
    )
    .bind(SessionId::parse(&short).unwrap().as_uuid())
    .execute(&world.db.pool)
    .await
    .unwrap();
    let view = get(&world, &key, &short_path).await;
    assert_eq!(
        (view["status"].as_str(), view["spent"].as_str()),
        (Some("expired"), Some("0.001")),
        "{view}"
    );
    let before = wallet(&world, &agent).await;
    let message = assert_conflict(
        &world.call(Method::DELETE, &short_path, &key, None).await,
        "session_state",
        "expired",
    );
    assert!(message.contains("expired"), "{message}");
    assert_eq!(get(&world, &key, &short_path).await, view, "still expired, not revoked");
    assert_eq!(wallet(&world, &agent).await, before);
    let revoked_at: Option<String> =
        sqlx::query_scalar("SELECT revoked_at::text FROM policy.sessions WHERE id = $1")
            .bind(SessionId::parse(&short).unwrap().as_uuid())
            .fetch_one(&world.db.pool)
            .await
            .unwrap();
    assert_eq!(revoked_at, None);

    // An exhausted session is still in force: revoking it is allowed.
    let small = new_session(&world, &key, &agent, "0.001", 3600).await;
    session_pay(&world, &key, &small, &cheap).await;
    let small_path = format!("/api/v1/x402/sessions/{small}");
    assert_eq!(get(&world, &key, &small_path).await["status"], "exhausted");
    let (status, body) = world.call(Method::DELETE, &small_path, &key, None).await;
    assert_eq!((status, body["status"].as_str()), (200, Some("revoked")), "{body}");

    // A session revoked by its agent's deletion.
    let (other, _) = world.create_agent(json!({})).await;
    let orphan = new_session(&world, &key, &other, "1.00", 3600).await;
    let (status, _) = world
        .call(Method::DELETE, &format!("/api/v1/agents/{other}"), &world.admin_key, None)
        .await;
    assert_eq!(status, 200);
    let orphan_path = format!("/api/v1/x402/sessions/{orphan}");
    let before = get(&world, &key, &orphan_path).await;
    assert_eq!(before["status"], "revoked");
    assert_conflict(
        &world.call(Method::DELETE, &orphan_path, &key, None).await,
        "session_state",
        "orphan",
    );
    assert_eq!(get(&world, &key, &orphan_path).await, before);

    // Unknown sessions stay 404.
    let (status, _) = world
        .call(Method::DELETE, &format!("/api/v1/x402/sessions/{}", SessionId::new()), &key, None)
        .await;
    assert_eq!(status, 404);
    world.assert_ledger_consistent().await;
    world.stop().await;
}

#[tokio::test]
async fn deleting_a_deleted_agent_is_a_conflict_and_payments_in_flight_stand() {
    let world = World::start().await;
    let key = world.new_key(&["agent"]).await;
    let (agent, _) = world.create_agent(json!({"approval_threshold": "0.005"})).await;
    world.fund(&agent, "1.00").await;
    let pricey = format!("{}/paid", world.paid_api(Address::random(), 10_000).await);
    let cheap = format!("{}/paid", world.paid_api(Address::random(), 1_000).await);
    let session = new_session(&world, &key, &agent, "1.00", 3600).await;
    // In flight: one signed, not yet settled; one waiting for approval.
    let signed = session_pay(&world, &key, &session, &cheap).await;
    assert_eq!(signed["state"], "authorized");
    let waiting = session_pay(&world, &key, &session, &pricey).await;
    assert_eq!(waiting["state"], "pending_approval");
    let held = wallet(&world, &agent).await;
    assert_eq!(held.2, "1020", "the signed payment's amount plus fee is held");

    // Payments in flight do not prevent the deletion.
    let agent_path = format!("/api/v1/agents/{agent}");
    let (status, deleted) = world.call(Method::DELETE, &agent_path, &world.admin_key, None).await;
    assert_eq!((status, deleted["status"].as_str()), (200, Some("deleted")), "{deleted}");
    let deleted_at = || async {
        sqlx::query_scalar::<_, Option<String>>(
            "SELECT deleted_at::text FROM policy.agents WHERE id = $1",
        )
        .bind(AgentId::parse(&agent).unwrap().as_uuid())
        .fetch_one(&world.db.pool)
        .await
        .unwrap()
    };
    let first_deletion = deleted_at().await;
    assert!(first_deletion.is_some());
    let session_before = get(&world, &key, &format!("/api/v1/x402/sessions/{session}")).await;
    assert_eq!(session_before["status"], "revoked");

    // Deleting it again is refused, and changes nothing.
    let message = assert_conflict(
        &world.call(Method::DELETE, &agent_path, &world.admin_key, None).await,
        "agent_state",
        "deleted agent",
    );
    assert!(message.contains("deleted"), "{message}");
    assert_eq!(deleted_at().await, first_deletion);
    assert_eq!(wallet(&world, &agent).await, held);
    assert_eq!(
        get(&world, &key, &format!("/api/v1/x402/sessions/{session}")).await,
        session_before
    );

    // The signed payment stands: its provider settles it.
    serve(&world, &cheap, &signed).await;
    let view = get(
        &world,
        &key,
        &format!("/api/v1/x402/payments/{}", signed["ledger_id"].as_str().unwrap()),
    )
    .await;
    assert_eq!(view["state"], "captured", "{view}");
    // The waiting one can no longer be approved: approving fails it and gives its reservation
    // back; nothing was ever held for it.
    let waiting_id = waiting["ledger_id"].as_str().unwrap();
    let before = wallet(&world, &agent).await;
    assert_conflict(&decide(&world, waiting_id, "approve").await, "agent_state", "approve");
    let view = get(&world, &key, &format!("/api/v1/x402/payments/{waiting_id}")).await;
    assert_eq!(
        (view["state"].as_str(), view["error"]["code"].as_str()),
        (Some("failed"), Some("agent_state")),
        "{view}"
    );
    let session_after = get(&world, &key, &format!("/api/v1/x402/sessions/{session}")).await;
    assert_eq!(
        (session_after["spent"].as_str(), session_after["reserved"].as_str()),
        (Some("0.001"), Some("0.00"))
    );
    assert_eq!(wallet(&world, &agent).await, before);
    assert_conflict(&decide(&world, waiting_id, "reject").await, "payment_state", "reject");

    // An unknown agent stays 404.
    let (status, _) = world
        .call(Method::DELETE, &format!("/api/v1/agents/{}", AgentId::new()), &world.admin_key, None)
        .await;
    assert_eq!(status, 404);
    world.assert_ledger_consistent().await;
    world.stop().await;
}

#[tokio::test]
async fn revoking_a_key_already_revoked_or_expired_is_a_conflict() {
    let world = World::start().await;
    let key_id = |key: &str| key.split('_').nth(1).map(|hex| format!("key_{hex}")).unwrap();
    // Revocations by a second admin key, within its own rate limit of key writes.
    let admin = world.new_key(&["admin"]).await;

    // Revoked once; the second revocation is refused and changes nothing.
    let victim = world.new_key(&["agent"]).await;
    let path = format!("/api/v1/keys/{}", key_id(&victim));
    let (status, revoked) = world.call(Method::DELETE, &path, &admin, None).await;
    assert_eq!((status, revoked["status"].as_str()), (200, Some("revoked")), "{revoked}");
    let message = assert_conflict(
        &world.call(Method::DELETE, &path, &admin, None).await,
        "api_key_state",
        "revoked",
    );
    assert!(message.contains("revoked"), "{message}");
    assert_eq!(get(&world, &admin, &path).await, revoked, "revoked_at is the first revocation's");
    let (status, body) = world.call(Method::GET, "/api/v1/agents", &victim, None).await;
    assert_eq!((status, body["error"]["code"].as_str()), (401, Some("api_key_revoked")));
    // Nor can it be rotated.
    let (status, body) = world.call(Method::POST, &format!("{path}/rotate"), &admin, None).await;
    assert_eq!((status, body["error"]["code"].as_str()), (409, Some("api_key_state")), "{body}");
    assert_eq!(get(&world, &admin, &path).await, revoked, "rotation changed nothing");

    // Rotated without a grace: expired, and refused.
    let rotated = world.new_key(&["agent"]).await;
    let rotated_path = format!("/api/v1/keys/{}", key_id(&rotated));
    let (status, _) = world
        .call(
            Method::POST,
            &format!("{rotated_path}/rotate"),
            &world.admin_key,
            Some(&json!({"grace_seconds": 0})),
        )
        .await;
    assert_eq!(status, 201);
    let before = get(&world, &admin, &rotated_path).await;
    assert_eq!(before["status"], "expired", "{before}");
    let message = assert_conflict(
        &world.call(Method::DELETE, &rotated_path, &admin, None).await,
        "api_key_state",
        "expired",
    );
    assert!(message.contains("expired"), "{message}");
    assert_eq!(get(&world, &admin, &rotated_path).await, before, "still expired, not revoked");

    // Rotated and still in its grace period: it works, so it can be revoked.
    let graced = world.new_key(&["agent"]).await;
    let graced_path = format!("/api/v1/keys/{}", key_id(&graced));
    let (status, _) = world
        .call(
            Method::POST,
            &format!("{graced_path}/rotate"),
            &world.admin_key,
            Some(&json!({"grace_seconds": 600})),
        )
        .await;
    assert_eq!(status, 201);
    let (status, body) = world.call(Method::DELETE, &graced_path, &admin, None).await;
    assert_eq!((status, body["status"].as_str()), (200, Some("revoked")), "{body}");

    // Of concurrent revocations, exactly one succeeds.
    let raced = world.new_key(&["agent"]).await;
    let raced_path = format!("/api/v1/keys/{}", key_id(&raced));
    let answers = futures::future::join_all(
        (0..4).map(|_| world.call(Method::DELETE, &raced_path, &admin, None)),
    )
    .await;
    let mut statuses: Vec<u16> = answers.iter().map(|(status, _)| *status).collect();
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 409, 409, 409], "{answers:?}");

    // Unknown keys stay 404.
    let (status, _) = world
        .call(Method::DELETE, &format!("/api/v1/keys/{}", awx_types::ApiKeyId::new()), &admin, None)
        .await;
    assert_eq!(status, 404);
    world.stop().await;
}
