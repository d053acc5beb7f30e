//! Tenancy: every route that takes an id resolves it within the caller's account first.
//!
//! The walk reads the OpenAPI document (`awx_gateway::openapi::document()`, which the gateway's
//! drift test keeps equal to `openapi/openapi.json`) and takes every operation with an id: a path
//! parameter, or a request body property named `…_id`. A new route with an id is walked without
//! touching this file; an operation the walk has no case for (one with a request body, whose body
//! it cannot guess) fails the test. Each operation is called
//!
//! - with account B's admin key and account A's ids (each of A's objects of that kind),
//! - with B's key, one id A's and the others B's own (operations with several ids),
//! - with A's key and, in turn, each id well-formed but unknown (the others A's real ids),
//! - with A's key and a nested id under another of A's parents (an A withdrawal under another A
//!   agent),
//! - with B's key and only unknown ids,
//!
//! and each must answer 404 with the JSON error envelope (`error.code` `not_found`). Finally, A's
//! own key with A's ids must succeed (2xx): the body was sensible and only the id was wrong.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail by panicking"
)]

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use awx_types::{AgentId, ApiKeyId, LedgerId, SessionId};
use awx_x402::Address;
use reqwest::Method;
use serde_json::{Value, json};
use support::World;

/// How long the settled payment's authorization is valid (a facilitator wants at least 6 s).
const EXPIRY_SECONDS: u64 = 8;
/// A cent in atomic units: what the test API charges.
const CENT: u128 = 10_000;
/// The most times a call is retried after a 429.
const RATE_LIMITED_RETRIES_MAX: u32 = 10;

/// An operation of the document that takes at least one id.
#[derive(Debug, Clone)]
struct Operation {
    method: Method,
    /// The path template (`/api/v1/agents/{agent_id}`).
    path: String,
    /// The path parameters, in order.
    path_ids: Vec<String>,
    /// The request body's `…_id` properties.
    body_ids: Vec<String>,
    /// Whether the operation declares a request body.
    has_body: bool,
}

impl Operation {
    fn name(&self) -> String {
        format!("{} {}", self.method, self.path)
    }

    fn ids(&self) -> Vec<String> {
        self.path_ids.iter().chain(&self.body_ids).cloned().collect()
    }
}

/// The schema `schema` points at (following `$ref` into `components.schemas`).
fn resolve<'a>(document: &'a Value, schema: &'a Value) -> &'a Value {
    match schema.get("$ref").and_then(Value::as_str) {
        Some(reference) => {
            let name = reference.strip_prefix("#/components/schemas/").expect("a local schema");
            resolve(document, &document["components"]["schemas"][name])
        }
        None => schema,
    }
}

/// The property names of `schema`, through `$ref`, `oneOf`, `anyOf` and `allOf`.
fn properties(document: &Value, schema: &Value, names: &mut Vec<String>) {
    let schema = resolve(document, schema);
    if let Some(object) = schema.get("properties").and_then(Value::as_object) {
        names.extend(object.keys().cloned());
    }
    for combinator in ["oneOf", "anyOf", "allOf"] {
        for part in schema.get(combinator).and_then(Value::as_array).into_iter().flatten() {
            properties(document, part, names);
        }
    }
}

/// Every operation of the document that takes an id, in the path or in its body.
fn operations_with_ids(document: &Value) -> Vec<Operation> {
    let mut found = Vec::new();
    for (path, item) in document["paths"].as_object().expect("paths") {
        for (method, operation) in item.as_object().expect("a path item") {
            // A path item also holds `parameters`, `summary` and the like.
            if !["get", "post", "put", "patch", "delete"].contains(&method.as_str()) {
                continue;
            }
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let path_ids: Vec<String> = operation["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|parameter| parameter["in"] == "path")
                .map(|parameter| parameter["name"].as_str().unwrap().to_owned())
                .collect();
            // The document and the path template agree on the path parameters.
            let placeholders = path.matches('{').count();
            assert_eq!(placeholders, path_ids.len(), "{method} {path}: undeclared path parameter");
            for id in &path_ids {
                assert!(path.contains(&format!("{{{id}}}")), "{method} {path}: {id} not in path");
            }
            let body = &operation["requestBody"];
            let mut body_ids = Vec::new();
            if let Some(schema) = body["content"]["application/json"].get("schema") {
                properties(document, schema, &mut body_ids);
            }
            body_ids.retain(|name| name.ends_with("_id"));
            body_ids.sort();
            body_ids.dedup();
            if !path_ids.is_empty() || !body_ids.is_empty() {
                found.push(Operation {
                    method,
                    path: path.clone(),
                    path_ids,
                    body_ids,
                    has_body: body.is_object(),
                });
            }
        }
    }
    found
}

/// How an operation is exercised: its body (`"{slot}"` strings are replaced by ids), the ids of
/// account A it uses instead of the shared ones (so a successful call changes only an object of
/// its own), and whether it changes or ends an object (run after the others).
struct Case {
    body: Option<Value>,
    own: BTreeMap<&'static str, String>,
    destructive: bool,
}

/// What account A (and B) hold, made through the API.
struct Fixture {
    /// A's ids by slot: the first is the one operations use; the rest are walked as well with
    /// B's key.
    a: BTreeMap<&'static str, Vec<String>>,
    /// B's own objects, for operations with several ids.
    b: BTreeMap<&'static str, String>,
    /// A's objects that a successful call changes or ends, one per such operation.
    a_spare: BTreeMap<&'static str, String>,
    /// The paid API.
    url: String,
    /// An outside address for withdrawals.
    outside: Address,
}

/// The case of `operation`, or why it has none.
fn case(operation: &Operation, fixture: &Fixture) -> Result<Case, String> {
    let spare = |name: &'static str| fixture.a_spare[name].clone();
    let plain = |body: Value| Case { body: Some(body), own: BTreeMap::new(), destructive: false };
    let path = operation.path.as_str();
    Ok(match (operation.method.as_str(), path) {
        ("POST", "/api/v1/agents/{agent_id}/fund") => plain(json!({"amount": "0.50"})),
        ("PUT", "/api/v1/agents/{agent_id}/policy") => plain(json!({"allowed_urls": []})),
        ("POST", "/api/v1/agents/{agent_id}/withdrawals") => {
            plain(json!({"to": fixture.outside, "amount": "0.10"}))
        }
        ("POST", "/api/v1/x402/sessions/{session_id}/pay") => {
            plain(json!({"target_url": fixture.url}))
        }
        ("POST", "/api/v1/x402/pay") => plain(json!({
            "agent_id": "{agent_id}", "session_id": "{session_id}", "target_url": fixture.url
        })),
        ("POST", "/api/v1/x402/sessions") => plain(json!({
            "agent_id": "{agent_id}", "budget_limit": "1.00", "ttl_seconds": 3600
        })),
        ("POST", "/api/v1/keys/{key_id}/rotate") => Case {
            body: Some(json!({"grace_seconds": 0})),
            own: BTreeMap::from([("key_id", spare("key_rotate"))]),
            destructive: true,
        },
        ("POST", "/api/v1/x402/payments/{ledger_id}/approve") => Case {
            body: Some(json!({"reason": "tenancy walk"})),
            own: BTreeMap::from([("ledger_id", spare("payment_approve"))]),
            destructive: true,
        },
        ("POST", "/api/v1/x402/payments/{ledger_id}/reject") => Case {
            body: Some(json!({"reason": "tenancy walk"})),
            own: BTreeMap::from([("ledger_id", spare("payment_reject"))]),
            destructive: true,
        },
        ("DELETE", "/api/v1/agents/{agent_id}") => Case {
            body: None,
            own: BTreeMap::from([("agent_id", spare("agent_delete"))]),
            destructive: true,
        },
        ("DELETE", "/api/v1/keys/{key_id}") => Case {
            body: None,
            own: BTreeMap::from([("key_id", spare("key_delete"))]),
            destructive: true,
        },
        ("DELETE", "/api/v1/x402/sessions/{session_id}") => Case {
            body: None,
            own: BTreeMap::from([("session_id", spare("session_revoke"))]),
            destructive: true,
        },
        // Reads need no case: a new one is walked as it is.
        ("GET", _) if !operation.has_body => {
            Case { body: None, own: BTreeMap::new(), destructive: false }
        }
        _ => return Err(format!("{}: no case (add one to `case`)", operation.name())),
    })
}

/// A well-formed id of kind `slot` that names nothing.
fn unknown(slot: &str) -> Option<String> {
    Some(match slot {
        "agent_id" => AgentId::new().to_string(),
        "session_id" => SessionId::new().to_string(),
        "key_id" => ApiKeyId::new().to_string(),
        "ledger_id" | "withdrawal_id" => LedgerId::new().to_string(),
        _ => return None,
    })
}

/// `operation`'s path and body with `ids` in its slots.
fn request(
    operation: &Operation,
    body: Option<&Value>,
    ids: &BTreeMap<String, String>,
) -> (String, Option<Value>) {
    let mut path = operation.path.clone();
    for slot in &operation.path_ids {
        path = path.replace(&format!("{{{slot}}}"), &ids[slot]);
    }
    let body = body.map(|body| {
        let mut body = body.clone();
        if let Some(object) = body.as_object_mut() {
            for slot in &operation.body_ids {
                if let Some(value) = object.get_mut(slot) {
                    *value = json!(ids[slot]);
                }
            }
        }
        body
    });
    (path, body)
}

/// Sends a request, waiting out rate limits (`Retry-After`); the status and JSON body.
async fn send(
    world: &World,
    method: &Method,
    path: &str,
    key: &str,
    body: Option<&Value>,
) -> (u16, Value) {
    for _ in 0..RATE_LIMITED_RETRIES_MAX {
        let mut request = world
            .http
            .request(method.clone(), format!("{}{path}", world.gateway_url))
            .header("x-api-key", key);
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        if status == 429 {
            let seconds = response
                .headers()
                .get("retry-after")
                .and_then(|value| value.to_str().ok())
                .and_then(|value| value.parse::<u64>().ok())
                .unwrap_or(1)
                .clamp(1, 5);
            tokio::time::sleep(Duration::from_secs(seconds)).await;
            continue;
        }
        return (status, response.json().await.unwrap_or(Value::Null));
    }
    panic!("{method} {path} stayed rate limited");
}

/// Records a failure unless the answer is 404 with the error envelope's `not_found`.
fn expect_not_found(what: &str, status: u16, body: &Value, failures: &mut Vec<String>) {
    let error = &body["error"];
    let envelope = error["code"] == "not_found"
        && error["type"] == "invalid_request_error"
        && error["message"].is_string()
        && error["request_id"].as_str().is_some_and(|id| id.starts_with("req_"));
    if status != 404 || !envelope {
        failures.push(format!("{what}: expected 404 not_found, got {status} {body}"));
    }
}

/// Creates a session of `agent` with `key`; its id.
async fn session(world: &World, key: &str, agent: &str) -> String {
    let body = json!({"agent_id": agent, "budget_limit": "1.00", "ttl_seconds": 3600});
    let (status, session) =
        send(world, &Method::POST, "/api/v1/x402/sessions", key, Some(&body)).await;
    assert_eq!(status, 201, "{session}");
    session["id"].as_str().unwrap().to_owned()
}

/// Creates an agent with `policy` and `key`, funded with $2; its id.
async fn agent(world: &World, key: &str, policy: Value) -> String {
    let body = json!({"name": "tenant agent", "policy": policy});
    let (status, agent) = send(world, &Method::POST, "/api/v1/agents", key, Some(&body)).await;
    assert_eq!(status, 201, "{agent}");
    let id = agent["id"].as_str().unwrap().to_owned();
    let (status, funded) = send(
        world,
        &Method::POST,
        &format!("/api/v1/agents/{id}/fund"),
        key,
        Some(&json!({"amount": "2.00"})),
    )
    .await;
    assert_eq!(status, 200, "{funded}");
    id
}

/// Creates a key of A; its id.
async fn key_id(world: &World) -> String {
    let body = json!({"name": "tenancy", "scopes": ["agent"]});
    let (status, created) =
        send(world, &Method::POST, "/api/v1/keys", &world.admin_key, Some(&body)).await;
    assert_eq!(status, 201, "{created}");
    created["id"].as_str().unwrap().to_owned()
}

/// A payment of `agent` waiting for an admin's approval (A's key); its ledger id.
async fn pending_payment(world: &World, agent: &str, url: &str) -> String {
    let body = json!({"agent_id": agent, "target_url": url});
    let (status, paid) =
        send(world, &Method::POST, "/api/v1/x402/pay", &world.admin_key, Some(&body)).await;
    assert_eq!(status, 200, "{paid}");
    assert_eq!(paid["state"], "pending_approval", "{paid}");
    paid["ledger_id"].as_str().unwrap().to_owned()
}

/// A net settlement of A: a payment captured through the facilitator and settled on chain by
/// the batch worker; the payment's ledger id and the settlement's id.
async fn settled_payment(world: &World, agent: &str) -> (String, String) {
    let api = world.paid_api_expiring(Address::random(), CENT, EXPIRY_SECONDS).await;
    let payment = world.pay_and_serve(&world.admin_key, agent, &format!("{api}/paid")).await;
    world.wait_for_expiry().await;
    let worker = world.worker();
    for _ in 0..40 {
        worker.run_once().await.unwrap();
        let settled =
            world.count("SELECT count(*) FROM settlement.items WHERE state = 'settled'").await;
        if settled > 0 {
            let (status, page) =
                send(world, &Method::GET, "/api/v1/x402/settlements", &world.provider_key, None)
                    .await;
            assert_eq!(status, 200, "{page}");
            let settlement = page["data"][0]["id"].as_str().expect("a settlement").to_owned();
            return (payment, settlement);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("the payment was not settled");
}

#[tokio::test]
async fn every_route_with_an_id_resolves_it_within_the_callers_account() {
    // A group is netted from a cent on (the default threshold is far above one test payment).
    let world = World::start_with(|args| args.batch.threshold_usd = "0.01".into()).await;
    let document = serde_json::to_value(awx_gateway::openapi::document()).unwrap();
    let operations = operations_with_ids(&document);
    assert!(operations.len() >= 21, "too few operations with ids: {operations:?}");

    // Account B, with its own admin key, agent and session.
    let (_, issued) = awx_gateway::accounts::create_account(
        &world.db.pool,
        &awx_gateway::config::AuthSettings::default(),
        "tenant b",
    )
    .await
    .unwrap();
    let b_key = issued.plaintext.expose().to_owned();

    // Account A's objects. The settlement first: it waits for every queued authorization to
    // expire, and later payments' would be valid for longer.
    let a_agent = agent(&world, &world.admin_key, json!({})).await;
    let (settled, settlement) = settled_payment(&world, &a_agent).await;
    let url = format!("{}/paid", world.paid_api(Address::random(), CENT).await);
    let approvals = agent(&world, &world.admin_key, json!({"approval_threshold": "0.005"})).await;
    let payment_approve = pending_payment(&world, &approvals, &url).await;
    let payment_reject = pending_payment(&world, &approvals, &url).await;
    let outside = Address::random();
    let (status, withdrawal) = send(
        &world,
        &Method::POST,
        &format!("/api/v1/agents/{a_agent}/withdrawals"),
        &world.admin_key,
        Some(&json!({"to": outside, "amount": "0.10"})),
    )
    .await;
    assert!(status == 201 || status == 202, "{status} {withdrawal}");
    let withdrawal = withdrawal["id"].as_str().unwrap().to_owned();
    let a_session = session(&world, &world.admin_key, &a_agent).await;
    let fixture = Fixture {
        a: BTreeMap::from([
            ("agent_id", vec![a_agent.clone(), approvals.clone()]),
            ("session_id", vec![a_session]),
            ("withdrawal_id", vec![withdrawal]),
            ("key_id", vec![key_id(&world).await]),
            // A payment waiting for approval, and one captured and settled on chain.
            ("ledger_id", vec![payment_approve.clone(), settled.clone()]),
        ]),
        a_spare: BTreeMap::from([
            ("agent_delete", agent(&world, &world.admin_key, json!({})).await),
            ("key_rotate", key_id(&world).await),
            ("key_delete", key_id(&world).await),
            ("session_revoke", session(&world, &world.admin_key, &a_agent).await),
            ("payment_approve", payment_approve),
            ("payment_reject", payment_reject),
        ]),
        b: {
            let b_agent = agent(&world, &b_key, json!({})).await;
            let b_session = session(&world, &b_key, &b_agent).await;
            BTreeMap::from([("agent_id", b_agent), ("session_id", b_session)])
        },
        url,
        outside,
    };

    // Every id-taking operation has a case and ids of every kind it takes.
    let mut walked = Vec::new();
    let mut missing = Vec::new();
    for operation in &operations {
        match case(operation, &fixture) {
            Ok(case) => {
                for slot in operation.ids() {
                    if !fixture.a.contains_key(slot.as_str()) || unknown(&slot).is_none() {
                        missing.push(format!("{}: no ids of kind {slot}", operation.name()));
                    }
                }
                walked.push((operation.clone(), case));
            }
            Err(reason) => missing.push(reason),
        }
    }
    assert!(missing.is_empty(), "operations the walk cannot exercise: {missing:#?}");
    // Reads first, then writes, then what changes or ends an object.
    walked.sort_by_key(|(operation, case)| (case.destructive, operation.method != Method::GET));

    let mut failures = Vec::new();
    for (operation, case) in &walked {
        let slots = operation.ids();
        let a_ids = |slot: &str| -> Vec<String> {
            let mut ids = fixture.a[slot].clone();
            if let Some(own) = case.own.get(slot) {
                ids.insert(0, own.clone());
            }
            ids
        };
        let own: BTreeMap<String, String> =
            slots.iter().map(|slot| (slot.clone(), a_ids(slot)[0].clone())).collect();
        let body = case.body.as_ref();
        let name = operation.name();

        // (a) B's key, A's ids: each of A's objects of each kind in turn.
        for slot in &slots {
            for id in a_ids(slot) {
                let mut ids = own.clone();
                ids.insert(slot.clone(), id.clone());
                let (path, body) = request(operation, body, &ids);
                let (status, answer) =
                    send(&world, &operation.method, &path, &b_key, body.as_ref()).await;
                expect_not_found(
                    &format!("{name} as B, A's {slot} {id}"),
                    status,
                    &answer,
                    &mut failures,
                );
            }
        }
        // B's key, one id A's and the others B's own.
        if slots.len() > 1 {
            for slot in &slots {
                let mut ids = own.clone();
                let mut all_b = true;
                for other in slots.iter().filter(|other| *other != slot) {
                    match fixture.b.get(other.as_str()) {
                        Some(id) => {
                            ids.insert(other.clone(), id.clone());
                        }
                        None => all_b = false,
                    }
                }
                if all_b {
                    let (path, body) = request(operation, body, &ids);
                    let (status, answer) =
                        send(&world, &operation.method, &path, &b_key, body.as_ref()).await;
                    expect_not_found(
                        &format!("{name} as B, A's {slot} with B's other ids"),
                        status,
                        &answer,
                        &mut failures,
                    );
                }
            }
        }
        // (b) A's key, one id unknown (the others real), each in turn.
        for slot in &slots {
            let mut ids = own.clone();
            ids.insert(slot.clone(), unknown(slot).unwrap());
            let (path, body) = request(operation, body, &ids);
            let (status, answer) =
                send(&world, &operation.method, &path, &world.admin_key, body.as_ref()).await;
            expect_not_found(
                &format!("{name} as A, unknown {slot}"),
                status,
                &answer,
                &mut failures,
            );
        }
        // A's key, a nested id under another of A's parents (the first path id is the parent).
        if operation.path_ids.len() > 1 {
            let parent = &operation.path_ids[0];
            for other in a_ids(parent).into_iter().skip(1) {
                let mut ids = own.clone();
                ids.insert(parent.clone(), other.clone());
                let (path, body) = request(operation, body, &ids);
                let (status, answer) =
                    send(&world, &operation.method, &path, &world.admin_key, body.as_ref()).await;
                expect_not_found(
                    &format!("{name} as A, under another {parent} {other}"),
                    status,
                    &answer,
                    &mut failures,
                );
            }
        }
        // B's key, only unknown ids.
        let ids = slots.iter().map(|slot| (slot.clone(), unknown(slot).unwrap())).collect();
        let (path, body) = request(operation, body, &ids);
        let (status, answer) = send(&world, &operation.method, &path, &b_key, body.as_ref()).await;
        expect_not_found(&format!("{name} as B, unknown ids"), status, &answer, &mut failures);
    }

    // The control: A's own key with A's ids succeeds, so the bodies were sensible and only the
    // ids were wrong above.
    for (operation, case) in &walked {
        let ids = operation
            .ids()
            .into_iter()
            .map(|slot| {
                let id = case
                    .own
                    .get(slot.as_str())
                    .cloned()
                    .unwrap_or_else(|| fixture.a[slot.as_str()][0].clone());
                (slot, id)
            })
            .collect();
        let (path, body) = request(operation, case.body.as_ref(), &ids);
        let (status, answer) =
            send(&world, &operation.method, &path, &world.admin_key, body.as_ref()).await;
        if !(200..300).contains(&status) {
            failures.push(format!(
                "{} as A with A's ids: expected 2xx, got {status} {answer}",
                operation.name()
            ));
        }
    }

    // Lists: B's provider view shows none of A's settlements, even from A's cursor.
    for path in [
        "/api/v1/x402/settlements".to_owned(),
        format!("/api/v1/x402/settlements?starting_after={settlement}"),
    ] {
        let (status, page) = send(&world, &Method::GET, &path, &b_key, None).await;
        if status != 200 || page["data"] != json!([]) {
            failures.push(format!("GET {path} as B: expected an empty page, got {status} {page}"));
        }
    }
    let (status, page) =
        send(&world, &Method::GET, "/api/v1/x402/settlements", &world.provider_key, None).await;
    assert_eq!((status, page["data"][0]["id"].as_str()), (200, Some(&*settlement)), "{page}");
    assert!(page["data"][0]["payments"].as_array().unwrap().contains(&json!(settled)), "{page}");

    assert!(failures.is_empty(), "{} tenancy failures:\n{}", failures.len(), failures.join("\n"));
    world.stop().await;
}
