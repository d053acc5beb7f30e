//! Withdrawals (`/api/v1/agents/{agent_id}/withdrawals`) and the withdrawal allow-list
//! (`/api/v1/account/withdrawal_addresses`) against fake policy and settlement services on the
//! test's bus: what the gateway sends them (atomic amounts, the agent's wallet, the chain), how
//! their rejections come out, scopes, `Idempotency-Key`, and what is refused before any service
//! is asked.

use std::sync::{Arc, Mutex};

use awx_api::policy::{
    AgentView, GetAgent, GetWithdrawalAddresses, PolicyView, SetWithdrawalAddresses,
    WithdrawalAddresses,
};
use awx_api::withdrawals::{
    GetWithdrawal, ListWithdrawals, RequestWithdrawal, WithdrawalList, WithdrawalView,
};
use awx_bus::{CommandHandler, CommandMeta, HandlerError, QueryHandler};
use awx_gateway::auth::key::Scope;
use awx_service_kit::shutdown::Shutdown;
use awx_types::{AccountId, AgentId, Amount, LedgerId};
use awx_x402::{Address, B256};
use serde_json::{Value, json};
use sqlx::PgConnection;

use crate::helpers::{Backing, TestApp, error_code, serve};

/// The agent's wallet.
const WALLET: &str = "0xd8dA6BF26964aF9D7eEd9e03E53415D37aA96045";
/// An outside address.
const OUTSIDE: &str = "0x209693Bc6afc0C5328bA36FaF03C514EF312287C";
/// Another outside address.
const ELSEWHERE: &str = "0xAb5801a7D398351b8bE11C439e05C5B3259aeC9B";
/// USDC on Base and on Base Sepolia, as the built-in registry has them.
const BASE_USDC: &str = "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913";
const BASE_SEPOLIA_USDC: &str = "0x036CbD53842c5426634e7929541eC2318f3dCF7e";
/// A chain the registry knows but the fake settlement service does not serve.
const UNSERVED_CHAIN: &str = "eip155:1";
const CREATED_AT: i64 = 1_764_000_000;

fn address(text: &str) -> Address {
    text.parse().unwrap()
}

/// What the fake services share: the allow-list, the withdrawals, and what was asked.
#[derive(Default)]
struct Shared {
    allow_list: Mutex<Vec<Address>>,
    /// Oldest first.
    withdrawals: Mutex<Vec<WithdrawalView>>,
    requests: Mutex<Vec<RequestWithdrawal>>,
    lists: Mutex<Vec<ListWithdrawals>>,
    set_lists: Mutex<Vec<Vec<Address>>>,
    /// The next withdrawal request is rejected with this code.
    reject_next: Mutex<Option<&'static str>>,
    /// The next withdrawal request is stored, then answered with this code: the gateway sees a
    /// failure although the withdrawal went through (as after a timeout).
    fail_after_storing_next: Mutex<Option<&'static str>>,
}

/// The policy service: one agent of one account, and the account's allow-list.
struct FakePolicy {
    agent: AgentView,
    owner: AccountId,
}

impl QueryHandler<GetAgent> for FakePolicy {
    async fn handle(
        &self,
        _pool: &sqlx::PgPool,
        command: GetAgent,
        _meta: CommandMeta,
    ) -> Result<AgentView, HandlerError> {
        if command.owner == self.owner && command.agent_id == self.agent.id {
            Ok(self.agent.clone())
        } else {
            Err(HandlerError::reject("agent_not_found", format!("no agent {}", command.agent_id)))
        }
    }
}

struct FakeAllowList(Arc<Shared>);

impl QueryHandler<GetWithdrawalAddresses> for FakeAllowList {
    async fn handle(
        &self,
        _pool: &sqlx::PgPool,
        _command: GetWithdrawalAddresses,
        _meta: CommandMeta,
    ) -> Result<WithdrawalAddresses, HandlerError> {
        Ok(WithdrawalAddresses { addresses: self.0.allow_list.lock().unwrap().clone() })
    }
}

struct FakeSetAllowList(Arc<Shared>);

impl CommandHandler<SetWithdrawalAddresses> for FakeSetAllowList {
    async fn handle(
        &self,
        _tx: &mut PgConnection,
        command: SetWithdrawalAddresses,
        _meta: CommandMeta,
    ) -> Result<WithdrawalAddresses, HandlerError> {
        self.0.set_lists.lock().unwrap().push(command.addresses.clone());
        *self.0.allow_list.lock().unwrap() = command.addresses.clone();
        Ok(WithdrawalAddresses { addresses: command.addresses })
    }
}

/// The settlement service: stores withdrawals (idempotent by id), refusing what the allow-list
/// does not allow, more than 100 USDC (the agent's balance), and unserved chains.
struct FakeSettlement(Arc<Shared>);

impl CommandHandler<RequestWithdrawal> for FakeSettlement {
    async fn handle(
        &self,
        _tx: &mut PgConnection,
        command: RequestWithdrawal,
        _meta: CommandMeta,
    ) -> Result<WithdrawalView, HandlerError> {
        let shared = &self.0;
        shared.requests.lock().unwrap().push(command.clone());
        if let Some(code) = shared.reject_next.lock().unwrap().take() {
            return Err(HandlerError::reject(code, "refused as told"));
        }
        if let Some(stored) =
            shared.withdrawals.lock().unwrap().iter().find(|w| w.id == command.withdrawal_id)
        {
            return Ok(stored.clone());
        }
        let token = match command.network.as_str() {
            "eip155:8453" => address(BASE_USDC),
            "eip155:84532" => address(BASE_SEPOLIA_USDC),
            other => {
                return Err(HandlerError::reject(
                    "network_not_supported",
                    format!("withdrawals are not served on {other}"),
                ));
            }
        };
        let allowed = shared.allow_list.lock().unwrap().clone();
        if !allowed.is_empty() && !allowed.contains(&command.to) {
            return Err(HandlerError::reject(
                "withdrawal_address_not_allowed",
                format!("{} is not on the withdrawal allow-list", command.to),
            ));
        }
        if command.amount > Amount::from_atomic(100_000_000) {
            return Err(HandlerError::reject(
                "insufficient_funds",
                "the available balance is 100.00 USDC",
            ));
        }
        let view = WithdrawalView {
            id: command.withdrawal_id,
            agent: command.agent,
            network: command.network,
            token,
            decimals: 6,
            from: command.from,
            to: command.to,
            amount: command.amount,
            state: "pending".into(),
            tx_hash: None,
            error: None,
            created_at_unix: CREATED_AT,
        };
        shared.withdrawals.lock().unwrap().push(view.clone());
        if let Some(code) = shared.fail_after_storing_next.lock().unwrap().take() {
            return Err(HandlerError::reject(code, "stored, then failed as told"));
        }
        Ok(view)
    }
}

impl QueryHandler<ListWithdrawals> for FakeSettlement {
    async fn handle(
        &self,
        _pool: &sqlx::PgPool,
        command: ListWithdrawals,
        _meta: CommandMeta,
    ) -> Result<WithdrawalList, HandlerError> {
        self.0.lists.lock().unwrap().push(command.clone());
        let limit = usize::try_from(command.limit).unwrap();
        let newest_first: Vec<WithdrawalView> = self
            .0
            .withdrawals
            .lock()
            .unwrap()
            .iter()
            .rev()
            .filter(|w| w.agent == command.agent)
            .filter(|w| command.starting_after.is_none_or(|after| w.id < after))
            .cloned()
            .collect();
        Ok(WithdrawalList {
            has_more: newest_first.len() > limit,
            withdrawals: newest_first.into_iter().take(limit).collect(),
        })
    }
}

impl QueryHandler<GetWithdrawal> for FakeSettlement {
    async fn handle(
        &self,
        _pool: &sqlx::PgPool,
        command: GetWithdrawal,
        _meta: CommandMeta,
    ) -> Result<Option<WithdrawalView>, HandlerError> {
        Ok(self
            .0
            .withdrawals
            .lock()
            .unwrap()
            .iter()
            .find(|w| w.id == command.withdrawal_id && w.agent == command.agent)
            .cloned())
    }
}

/// A gateway, two accounts, the first account's agent, and the fake services.
struct World {
    app: TestApp,
    /// The agent's account's admin key.
    admin_key: String,
    /// An agent-scope key of the agent's account.
    agent_key: String,
    /// A provider-scope key of the agent's account.
    provider_key: String,
    /// Another account's admin key.
    other_key: String,
    agent: AgentId,
    owner: AccountId,
    shared: Arc<Shared>,
    fakes: Vec<Shutdown>,
}

impl Drop for World {
    fn drop(&mut self) {
        for fake in &self.fakes {
            fake.trigger();
        }
    }
}

impl World {
    async fn start() -> Self {
        let backing = Backing::new().await;
        let app = TestApp::replica(&backing, |_| {}).await;
        let (owner, admin_key) = app.account("agents' owner").await;
        let (_, other_key) = app.account("another account").await;
        let (_, agent_key) = app.create_key(&admin_key, &[Scope::Agent]).await;
        let (_, provider_key) = app.create_key(&admin_key, &[Scope::Provider]).await;
        let owner = AccountId::parse(&owner).unwrap();
        let agent = AgentId::new();
        let view = AgentView {
            id: agent,
            name: "research-bot".into(),
            address: address(WALLET),
            default_chain: "eip155:84532".into(),
            status: "active".into(),
            policy: PolicyView::default(),
            created_at_unix: 1_763_000_000,
        };
        let shared = Arc::new(Shared::default());
        let fakes = vec![
            serve(&backing, "policy", awx_api::policy::FAMILY, |server| {
                server
                    .answer::<GetAgent, _>(FakePolicy { agent: view, owner })
                    .unwrap()
                    .answer::<GetWithdrawalAddresses, _>(FakeAllowList(shared.clone()))
                    .unwrap()
                    .handle::<SetWithdrawalAddresses, _>(FakeSetAllowList(shared.clone()))
                    .unwrap()
            })
            .await,
            serve(&backing, "settlement", awx_api::facilitator::FAMILY, |server| {
                server
                    .handle::<RequestWithdrawal, _>(FakeSettlement(shared.clone()))
                    .unwrap()
                    .answer::<ListWithdrawals, _>(FakeSettlement(shared.clone()))
                    .unwrap()
                    .answer::<GetWithdrawal, _>(FakeSettlement(shared.clone()))
                    .unwrap()
            })
            .await,
        ];
        Self { app, admin_key, agent_key, provider_key, other_key, agent, owner, shared, fakes }
    }

    fn path(&self) -> String {
        format!("/api/v1/agents/{}/withdrawals", self.agent)
    }

    async fn withdraw(&self, key: &str, body: &Value) -> reqwest::Response {
        self.withdraw_with(key, body, None).await
    }

    async fn withdraw_with(
        &self,
        key: &str,
        body: &Value,
        idempotency_key: Option<&str>,
    ) -> reqwest::Response {
        let mut request =
            self.app.client.post(self.app.url(&self.path())).header("x-api-key", key).json(body);
        if let Some(idempotency_key) = idempotency_key {
            request = request.header("idempotency-key", idempotency_key);
        }
        request.send().await.unwrap()
    }

    async fn put_allow_list(&self, key: &str, body: &Value) -> reqwest::Response {
        self.app
            .client
            .put(self.app.url("/api/v1/account/withdrawal_addresses"))
            .header("x-api-key", key)
            .json(body)
            .send()
            .await
            .unwrap()
    }

    fn requests(&self) -> Vec<RequestWithdrawal> {
        self.shared.requests.lock().unwrap().clone()
    }
}

/// The JSON of a pending withdrawal of the world's agent.
fn pending(
    world: &World,
    id: LedgerId,
    chain: &str,
    to: &str,
    amount: &str,
    atomic: &str,
) -> Value {
    json!({
        "id": id.to_string(),
        "agent_id": world.agent.to_string(),
        "chain": chain,
        "token": "USDC",
        "from": WALLET,
        "to": to,
        "amount": amount,
        "amount_atomic": atomic,
        "state": "pending",
        "tx_hash": null,
        "error": null,
        "created_at": CREATED_AT,
    })
}

#[tokio::test]
async fn a_withdrawal_is_requested_from_the_agents_wallet_in_atomic_units_and_accepted() {
    let world = World::start().await;
    let response = world
        .withdraw(
            &world.admin_key,
            &json!({"to": OUTSIDE.to_lowercase(), "amount": "1.25", "chain": "eip155:8453"}),
        )
        .await;
    assert_eq!(response.status(), 202);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let body: Value = response.json().await.unwrap();
    let requests = world.requests();
    assert_eq!(requests.len(), 1);
    let id = requests[0].withdrawal_id;
    assert_eq!(
        requests[0],
        RequestWithdrawal {
            withdrawal_id: id,
            owner: world.owner,
            agent: world.agent,
            from: address(WALLET),
            to: address(OUTSIDE),
            amount: Amount::from_atomic(1_250_000),
            network: "eip155:8453".into(),
        }
    );
    assert_eq!(body, pending(&world, id, "eip155:8453", OUTSIDE, "1.25", "1250000"));
    assert_eq!(location, format!("{}/{id}", world.path()));

    // Without a chain, the agent's default chain (Base Sepolia here).
    let response =
        world.withdraw(&world.admin_key, &json!({"to": OUTSIDE, "amount": "0.000001"})).await;
    assert_eq!(response.status(), 202);
    let body: Value = response.json().await.unwrap();
    let second = world.requests()[1].clone();
    assert_eq!(second.network, "eip155:84532");
    assert_eq!(second.amount, Amount::from_atomic(1));
    assert_ne!(second.withdrawal_id, id, "each request is a new withdrawal");
    assert_eq!(
        body,
        pending(&world, second.withdrawal_id, "eip155:84532", OUTSIDE, "0.000001", "1")
    );
}

#[tokio::test]
async fn an_idempotency_key_replays_the_same_withdrawal_and_requests_it_once() {
    let world = World::start().await;
    let request = json!({"to": OUTSIDE, "amount": "1.25", "chain": "eip155:8453"});
    let first = world.withdraw_with(&world.admin_key, &request, Some("payout-7")).await;
    assert_eq!(first.status(), 202);
    assert!(first.headers().get("idempotent-replayed").is_none());
    let location = first.headers()["location"].clone();
    let first: Value = first.json().await.unwrap();
    let second = world.withdraw_with(&world.admin_key, &request, Some("payout-7")).await;
    assert_eq!(second.status(), 202);
    assert_eq!(second.headers()["idempotent-replayed"], "true");
    assert_eq!(second.headers()["location"], location);
    let second: Value = second.json().await.unwrap();
    assert_eq!(first, second);
    assert_eq!(world.requests().len(), 1, "the settlement service was asked once");
    assert_eq!(first["id"], json!(world.requests()[0].withdrawal_id.to_string()));

    // The same key with another body is refused, and nothing is requested.
    let other = json!({"to": OUTSIDE, "amount": "2.00", "chain": "eip155:8453"});
    let response = world.withdraw_with(&world.admin_key, &other, Some("payout-7")).await;
    let (status, code, _) = error_code(response).await;
    assert_eq!((status, code.as_str()), (422, "idempotency_key_reused"));
    // Another key is another withdrawal.
    let third = world.withdraw_with(&world.admin_key, &request, Some("payout-8")).await;
    assert_eq!(third.status(), 202);
    let third: Value = third.json().await.unwrap();
    assert_ne!(third["id"], first["id"]);
    assert_eq!(world.requests().len(), 2);
}

#[tokio::test]
async fn a_retry_after_a_server_error_requests_the_same_withdrawal_again() {
    let world = World::start().await;
    let request = json!({"to": OUTSIDE, "amount": "1.25", "chain": "eip155:8453"});
    // The settlement service stores the withdrawal, but the gateway gets a 503 (as after a
    // timeout): the answer is not stored, and the key is free for a retry at once.
    *world.shared.fail_after_storing_next.lock().unwrap() = Some("ledger_unavailable");
    let first = world.withdraw_with(&world.admin_key, &request, Some("payout-9")).await;
    let (status, code, body) = error_code(first).await;
    assert_eq!((status, code.as_str()), (503, "service_unavailable"), "{body}");
    // A retry with another request is refused: the key still belongs to the first one.
    let other = json!({"to": OUTSIDE, "amount": "2.00", "chain": "eip155:8453"});
    let (status, code, _) =
        error_code(world.withdraw_with(&world.admin_key, &other, Some("payout-9")).await).await;
    assert_eq!((status, code.as_str()), (422, "idempotency_key_reused"));
    assert_eq!(world.requests().len(), 1, "a refused retry asks nothing");

    // The same request again: the same withdrawal id, so the service answers with what it stored.
    let retry = world.withdraw_with(&world.admin_key, &request, Some("payout-9")).await;
    assert_eq!(retry.status(), 202);
    assert!(retry.headers().get("idempotent-replayed").is_none(), "the retry ran");
    let retry: Value = retry.json().await.unwrap();
    let requests = world.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[0].withdrawal_id, requests[1].withdrawal_id, "one withdrawal id");
    assert_eq!(requests[0].withdrawal_id.as_uuid().get_version_num(), 7, "a UUIDv7, like new()");
    assert_eq!(world.shared.withdrawals.lock().unwrap().len(), 1, "one withdrawal");
    assert_eq!(
        retry,
        pending(&world, requests[0].withdrawal_id, "eip155:8453", OUTSIDE, "1.25", "1250000")
    );
    // Then the answer is stored and replayed.
    let replay = world.withdraw_with(&world.admin_key, &request, Some("payout-9")).await;
    assert_eq!(replay.status(), 202);
    assert_eq!(replay.headers()["idempotent-replayed"], "true");
    assert_eq!(replay.json::<Value>().await.unwrap(), retry);
    assert_eq!(world.requests().len(), 2);

    // A failure before anything is stored: the retry still carries the first attempt's id.
    *world.shared.reject_next.lock().unwrap() = Some("policy_unavailable");
    let first = world.withdraw_with(&world.admin_key, &request, Some("payout-10")).await;
    assert_eq!(first.status(), 503);
    let retry = world.withdraw_with(&world.admin_key, &request, Some("payout-10")).await;
    assert_eq!(retry.status(), 202);
    let requests = world.requests();
    assert_eq!(requests.len(), 4);
    assert_eq!(requests[2].withdrawal_id, requests[3].withdrawal_id);
    assert_ne!(requests[2].withdrawal_id, requests[0].withdrawal_id, "another key, another id");
    // Without an Idempotency-Key, every attempt is a new withdrawal.
    *world.shared.reject_next.lock().unwrap() = Some("ledger_unavailable");
    assert_eq!(world.withdraw(&world.admin_key, &request).await.status(), 503);
    assert_eq!(world.withdraw(&world.admin_key, &request).await.status(), 202);
    let requests = world.requests();
    assert_ne!(requests[4].withdrawal_id, requests[5].withdrawal_id);
}

#[tokio::test]
async fn only_an_admin_key_may_withdraw() {
    let world = World::start().await;
    let request = json!({"to": OUTSIDE, "amount": "1.25"});
    for key in [&world.agent_key, &world.provider_key] {
        let (status, code, body) = error_code(world.withdraw(key, &request).await).await;
        assert_eq!((status, code.as_str()), (403, "insufficient_scope"), "{body}");
    }
    let response =
        world.app.client.post(world.app.url(&world.path())).json(&request).send().await.unwrap();
    let (status, code, _) = error_code(response).await;
    assert_eq!((status, code.as_str()), (401, "missing_api_key"));
    // Another account's admin does not see the agent.
    let (status, code, _) = error_code(world.withdraw(&world.other_key, &request).await).await;
    assert_eq!((status, code.as_str()), (404, "not_found"));
    assert!(world.requests().is_empty(), "{:?}", world.requests());
}

#[tokio::test]
async fn the_settlement_services_refusals_keep_their_codes() {
    let world = World::start().await;
    // More than the available balance: 402, and the code says why.
    let (status, code, body) = error_code(
        world.withdraw(&world.admin_key, &json!({"to": OUTSIDE, "amount": "100.000001"})).await,
    )
    .await;
    assert_eq!((status, code.as_str()), (402, "insufficient_funds"), "{body}");
    assert_eq!(body["error"]["type"], "invalid_request_error");

    // An address not on the allow-list: 403.
    assert_eq!(
        world.put_allow_list(&world.admin_key, &json!({"addresses": [OUTSIDE]})).await.status(),
        200
    );
    let (status, code, body) = error_code(
        world.withdraw(&world.admin_key, &json!({"to": ELSEWHERE, "amount": "1"})).await,
    )
    .await;
    assert_eq!((status, code.as_str()), (403, "withdrawal_address_not_allowed"), "{body}");
    assert_eq!(body["error"]["type"], "permission_error");
    // On the list: accepted.
    let response = world.withdraw(&world.admin_key, &json!({"to": OUTSIDE, "amount": "1"})).await;
    assert_eq!(response.status(), 202);

    // A chain the registry knows but the settlement service does not serve: 400.
    let (status, code, body) = error_code(
        world
            .withdraw(
                &world.admin_key,
                &json!({"to": OUTSIDE, "amount": "1", "chain": UNSERVED_CHAIN}),
            )
            .await,
    )
    .await;
    assert_eq!((status, code.as_str()), (400, "network_not_supported"), "{body}");

    for (code, status, expected) in [
        ("withdrawal_conflict", 409, "withdrawal_conflict"),
        ("invalid_request", 400, "invalid_request"),
        ("agent_not_found", 404, "not_found"),
        ("ledger_unavailable", 503, "service_unavailable"),
        ("policy_unavailable", 503, "service_unavailable"),
    ] {
        *world.shared.reject_next.lock().unwrap() = Some(code);
        let response =
            world.withdraw(&world.admin_key, &json!({"to": OUTSIDE, "amount": "1"})).await;
        if status == 503 {
            assert_eq!(response.headers()["retry-after"], "1");
        }
        let (got_status, got_code, body) = error_code(response).await;
        assert_eq!((got_status, got_code.as_str()), (status, expected), "{code}: {body}");
    }
}

#[tokio::test]
async fn invalid_requests_are_refused_before_the_settlement_service_is_asked() {
    let world = World::start().await;
    for (body, field) in [
        // More decimals than USDC has.
        (json!({"to": OUTSIDE, "amount": "1.2345678"}), "amount"),
        (json!({"to": OUTSIDE, "amount": "0"}), "amount"),
        (json!({"to": OUTSIDE, "amount": "-1"}), "amount"),
        (json!({"to": OUTSIDE, "amount": "1e3"}), "amount"),
        (json!({"to": OUTSIDE, "amount": "1."}), "amount"),
        (json!({"to": OUTSIDE, "amount": ""}), "amount"),
        (json!({"to": OUTSIDE, "amount": 1.25}), "amount"),
        (json!({"to": "0x1234", "amount": "1"}), "to"),
        (json!({"to": "vitalik.eth", "amount": "1"}), "to"),
        // One letter's case changed: the checksum catches the typo.
        (json!({"to": "0x209693bc6afc0C5328bA36FaF03C514EF312287C", "amount": "1"}), "to"),
        (json!({"to": "0x0000000000000000000000000000000000000000", "amount": "1"}), "to"),
        (json!({"amount": "1"}), ""),
        (json!({"to": OUTSIDE, "amount": "1", "chain": "base"}), "chain"),
        (
            json!({"to": OUTSIDE, "amount": "1", "chain": "solana:5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp"}),
            "chain",
        ),
        (json!({"to": OUTSIDE, "amount": "1", "network": "eip155:8453"}), ""),
    ] {
        let (status, code, error) = error_code(world.withdraw(&world.admin_key, &body).await).await;
        assert_eq!((status, code.as_str()), (400, "invalid_field"), "{body}: {error}");
        if !field.is_empty() {
            assert_eq!(error["error"]["field"], field, "{body}: {error}");
        }
    }
    // A chain without USDC in the registry.
    let body = json!({"to": OUTSIDE, "amount": "1", "chain": "eip155:999999"});
    let (status, code, error) = error_code(world.withdraw(&world.admin_key, &body).await).await;
    assert_eq!((status, code.as_str()), (400, "network_not_supported"), "{error}");
    assert_eq!(error["error"]["field"], "chain");
    assert!(world.requests().is_empty(), "{:?}", world.requests());
}

#[tokio::test]
async fn withdrawals_are_listed_newest_first_with_a_cursor_and_read_one_by_one() {
    let world = World::start().await;
    let mut ids = Vec::new();
    for amount in ["1.00", "2.50"] {
        let response =
            world.withdraw(&world.admin_key, &json!({"to": OUTSIDE, "amount": amount})).await;
        assert_eq!(response.status(), 202);
        let body: Value = response.json().await.unwrap();
        ids.push(LedgerId::parse(body["id"].as_str().unwrap()).unwrap());
    }
    // The agent scope reads them.
    let response = world.app.get(&world.path(), &world.agent_key).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body,
        json!({"data": [
            pending(&world, ids[1], "eip155:84532", OUTSIDE, "2.50", "2500000"),
            pending(&world, ids[0], "eip155:84532", OUTSIDE, "1.00", "1000000"),
        ]})
    );
    let response = world.app.get(&format!("{}?limit=1", world.path()), &world.admin_key).await;
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["data"].as_array().unwrap().len(), 1);
    assert_eq!(body["next_cursor"], json!(ids[1].to_string()));
    let next = format!("{}?limit=1&starting_after={}", world.path(), ids[1]);
    let body: Value = world.app.get(&next, &world.admin_key).await.json().await.unwrap();
    assert_eq!(body["data"][0]["id"], json!(ids[0].to_string()));
    assert!(body.get("next_cursor").is_none(), "{body}");
    assert_eq!(
        *world.shared.lists.lock().unwrap(),
        vec![
            ListWithdrawals {
                owner: world.owner,
                agent: world.agent,
                limit: 20,
                starting_after: None
            },
            ListWithdrawals {
                owner: world.owner,
                agent: world.agent,
                limit: 1,
                starting_after: None
            },
            ListWithdrawals {
                owner: world.owner,
                agent: world.agent,
                limit: 1,
                starting_after: Some(ids[1]),
            },
        ]
    );

    // One of them.
    let one = format!("{}/{}", world.path(), ids[0]);
    let response = world.app.get(&one, &world.agent_key).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body, pending(&world, ids[0], "eip155:84532", OUTSIDE, "1.00", "1000000"));
    // Confirmed: its transaction shows.
    {
        let mut stored = world.shared.withdrawals.lock().unwrap();
        stored[0].state = "confirmed".into();
        stored[0].tx_hash = Some(B256::repeat_byte(0xab));
    }
    let body: Value = world.app.get(&one, &world.agent_key).await.json().await.unwrap();
    assert_eq!(body["state"], "confirmed");
    assert_eq!(body["tx_hash"], json!(format!("0x{}", "ab".repeat(32))));

    // Absent, malformed, or another account's: not found.
    for (path, key) in [
        (format!("{}/{}", world.path(), LedgerId::new()), &world.admin_key),
        (format!("{}/wdr_123", world.path()), &world.admin_key),
        (one.clone(), &world.other_key),
        (world.path(), &world.other_key),
    ] {
        let (status, code, body) = error_code(world.app.get(&path, key).await).await;
        assert_eq!((status, code.as_str()), (404, "not_found"), "{path}: {body}");
    }
    // A provider key may not read them.
    for path in [world.path(), one] {
        let (status, code, _) = error_code(world.app.get(&path, &world.provider_key).await).await;
        assert_eq!((status, code.as_str()), (403, "insufficient_scope"));
    }
    // Invalid paging.
    for query in ["?limit=0", "?limit=101", "?starting_after=agt_0190a3c48f2b7c3e9d1e5f6a7b8c9d0e"]
    {
        let path = format!("{}{query}", world.path());
        let (status, code, _) = error_code(world.app.get(&path, &world.admin_key).await).await;
        assert_eq!((status, code.as_str()), (400, "invalid_field"), "{query}");
    }
}

#[tokio::test]
async fn the_withdrawal_allow_list_is_read_and_replaced_by_admins() {
    let world = World::start().await;
    let path = "/api/v1/account/withdrawal_addresses";
    let response = world.app.get(path, &world.admin_key).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.json::<Value>().await.unwrap(), json!({"addresses": []}));

    // Lower-case input is stored as the address; the answer is checksummed; duplicates collapse.
    let response = world
        .put_allow_list(
            &world.admin_key,
            &json!({"addresses": [OUTSIDE.to_lowercase(), ELSEWHERE, OUTSIDE]}),
        )
        .await;
    assert_eq!(response.status(), 200);
    let expected = json!({"addresses": [OUTSIDE, ELSEWHERE]});
    assert_eq!(response.json::<Value>().await.unwrap(), expected);
    assert_eq!(
        *world.shared.set_lists.lock().unwrap(),
        vec![vec![address(OUTSIDE), address(ELSEWHERE)]]
    );
    let response = world.app.get(path, &world.admin_key).await;
    assert_eq!(response.json::<Value>().await.unwrap(), expected);

    // Invalid lists are refused before the policy service is asked.
    let too_many: Vec<String> = (1..=101u32).map(|n| format!("0x{n:040x}")).collect();
    for (body, field) in [
        (json!({"addresses": [OUTSIDE, "0x12"]}), "addresses[1]"),
        (json!({"addresses": ["0x0000000000000000000000000000000000000000"]}), "addresses[0]"),
        (json!({"addresses": too_many}), "addresses"),
        (json!({}), ""),
    ] {
        let (status, code, error) =
            error_code(world.put_allow_list(&world.admin_key, &body).await).await;
        assert_eq!((status, code.as_str()), (400, "invalid_field"), "{error}");
        if !field.is_empty() {
            assert_eq!(error["error"]["field"], field, "{error}");
        }
    }
    // A hundred is fine; an empty list allows any address again.
    let hundred: Vec<String> = (1..=100u32).map(|n| format!("0x{n:040x}")).collect();
    assert_eq!(
        world.put_allow_list(&world.admin_key, &json!({"addresses": hundred})).await.status(),
        200
    );
    let response = world.put_allow_list(&world.admin_key, &json!({"addresses": []})).await;
    assert_eq!(response.json::<Value>().await.unwrap(), json!({"addresses": []}));
    assert_eq!(world.shared.set_lists.lock().unwrap().len(), 3);

    // Agent and provider keys may neither read nor replace it.
    for key in [&world.agent_key, &world.provider_key] {
        let (status, code, _) = error_code(world.app.get(path, key).await).await;
        assert_eq!((status, code.as_str()), (403, "insufficient_scope"));
        let response = world.put_allow_list(key, &json!({"addresses": []})).await;
        let (status, code, _) = error_code(response).await;
        assert_eq!((status, code.as_str()), (403, "insufficient_scope"));
    }
    assert_eq!(world.shared.set_lists.lock().unwrap().len(), 3);
}
