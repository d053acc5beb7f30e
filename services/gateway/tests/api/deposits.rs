//! `GET /api/v1/agents/{agent_id}/deposits` (and the statement's `deposit_reversal` line) against
//! fake policy, settlement and ledger services on the test's bus: what the settlement service
//! lists comes out formatted (decimal amounts, checksummed addresses, a paging cursor), paging
//! is validated before any service is asked, and another account's agent is not found.

use std::sync::{Arc, Mutex};

use awx_api::deposits::{DepositList, DepositView, ListDeposits};
use awx_api::ledger::{Asset, DepositSource, LineKind, Statement, StatementLine, StatementReply};
use awx_api::policy::{AgentView, GetAgent, PolicyView};
use awx_bus::{CommandMeta, HandlerError, QueryHandler};
use awx_gateway::auth::key::Scope;
use awx_service_kit::shutdown::Shutdown;
use awx_types::{AccountId, AgentId, Amount, LedgerId};
use awx_x402::{Address, B256};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{Backing, TestApp, error_code, serve};

/// USDC on Base Sepolia, as the built-in registry has it (6 decimals).
const BASE_SEPOLIA_USDC: &str = "0x036CbD53842c5426634e7929541eC2318f3dCF7e";
/// A token the registry does not know.
const UNKNOWN_TOKEN: &str = "0x1111111111111111111111111111111111111111";
const SENDER: &str = "0x209693Bc6afc0C5328bA36FaF03C514EF312287C";
const WALLET: &str = "0xd8dA6BF26964aF9D7eEd9e03E53415D37aA96045";
const ZERO: &str = "0x0000000000000000000000000000000000000000";

/// The policy service as the route sees it: one agent, of one account.
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

/// The settlement service: lists its deposits (newest first) up to the limit, and records
/// every question.
struct FakeSettlement {
    deposits: Vec<DepositView>,
    asked: Arc<Mutex<Vec<ListDeposits>>>,
}

impl QueryHandler<ListDeposits> for FakeSettlement {
    async fn handle(
        &self,
        _pool: &sqlx::PgPool,
        command: ListDeposits,
        _meta: CommandMeta,
    ) -> Result<DepositList, HandlerError> {
        let limit = usize::try_from(command.limit).unwrap();
        self.asked.lock().unwrap().push(command);
        Ok(DepositList {
            deposits: self.deposits.iter().take(limit).cloned().collect(),
            has_more: self.deposits.len() > limit,
        })
    }
}

/// The ledger service: a statement of one line of `kind`.
struct FakeLedger {
    kind: LineKind,
}

impl QueryHandler<Statement> for FakeLedger {
    async fn handle(
        &self,
        _pool: &sqlx::PgPool,
        _command: Statement,
        _meta: CommandMeta,
    ) -> Result<StatementReply, HandlerError> {
        Ok(StatementReply {
            lines: vec![StatementLine {
                entry_id: 7,
                ledger_id: LedgerId::new(),
                kind: self.kind,
                asset: usdc_asset(),
                credit: Amount::ZERO,
                debit: Amount::from_atomic(12_500_000),
                available_after: Amount::ZERO,
                held_after: Amount::ZERO,
                at_unix_ms: 1_764_000_000_000,
            }],
            next_cursor: None,
        })
    }
}

fn usdc_asset() -> Asset {
    Asset { network: "eip155:84532".into(), token: BASE_SEPOLIA_USDC.parse().unwrap(), decimals: 6 }
}

/// A gateway, two accounts (admin keys), the first account's agent, and the fake services.
struct World {
    app: TestApp,
    /// The agent's account's admin key.
    admin_key: String,
    /// An agent-scope key of the agent's account.
    agent_key: String,
    /// Another account's admin key.
    other_key: String,
    agent: AgentId,
    owner: AccountId,
    deposits: Vec<DepositView>,
    asked: Arc<Mutex<Vec<ListDeposits>>>,
    fakes: Vec<Shutdown>,
}

impl Drop for World {
    fn drop(&mut self) {
        for fake in &self.fakes {
            fake.trigger();
        }
    }
}

fn deposits() -> Vec<DepositView> {
    vec![
        DepositView {
            id: Uuid::parse_str("0190a3c4-8f2b-7c3e-9d1e-5f6a7b8c9d0e").unwrap(),
            network: "eip155:84532".into(),
            token: BASE_SEPOLIA_USDC.parse().unwrap(),
            from: SENDER.parse().unwrap(),
            to: WALLET.parse().unwrap(),
            amount: Amount::from_atomic(12_500_000),
            decimals: 6,
            source: DepositSource::Chain,
            state: "credited".into(),
            tx_hash: B256::repeat_byte(0xab),
            log_index: 3,
            block_number: 1_234_567,
            block_hash: B256::repeat_byte(0xcd),
            reversal_reason: None,
            created_at_unix: 1_764_000_000,
        },
        DepositView {
            id: Uuid::parse_str("0190a3c4-8f2b-7c3e-9d1e-000000000001").unwrap(),
            network: "eip155:84532".into(),
            token: UNKNOWN_TOKEN.parse().unwrap(),
            from: ZERO.parse().unwrap(),
            to: WALLET.parse().unwrap(),
            amount: Amount::from_atomic(2_000),
            decimals: 6,
            source: DepositSource::Faucet,
            state: "reversed".into(),
            tx_hash: B256::repeat_byte(0x01),
            log_index: 0,
            block_number: 1_234_000,
            block_hash: B256::repeat_byte(0x02),
            reversal_reason: Some("block reorganised away".into()),
            created_at_unix: 1_763_999_000,
        },
    ]
}

impl World {
    async fn start() -> Self {
        Self::start_with_ledger(LineKind::Deposit).await
    }

    async fn start_with_ledger(kind: LineKind) -> Self {
        let backing = Backing::new().await;
        let app = TestApp::replica(&backing, |_| {}).await;
        let (owner, admin_key) = app.account("agents' owner").await;
        let (_, other_key) = app.account("another account").await;
        let (_, agent_key) = app.create_key(&admin_key, &[Scope::Agent]).await;
        let owner = AccountId::parse(&owner).unwrap();
        let agent = AgentId::new();
        let view = AgentView {
            id: agent,
            name: "research-bot".into(),
            address: WALLET.parse::<Address>().unwrap(),
            default_chain: "eip155:84532".into(),
            status: "active".into(),
            policy: PolicyView::default(),
            created_at_unix: 1_763_000_000,
        };
        let asked = Arc::new(Mutex::new(Vec::new()));
        let fakes = vec![
            serve(&backing, "policy", awx_api::policy::FAMILY, |server| {
                server.answer::<GetAgent, _>(FakePolicy { agent: view, owner }).unwrap()
            })
            .await,
            serve(&backing, "settlement", awx_api::facilitator::FAMILY, |server| {
                server
                    .answer::<ListDeposits, _>(FakeSettlement {
                        deposits: deposits(),
                        asked: asked.clone(),
                    })
                    .unwrap()
            })
            .await,
            serve(&backing, "ledger", awx_api::ledger::FAMILY, |server| {
                server.answer::<Statement, _>(FakeLedger { kind }).unwrap()
            })
            .await,
        ];
        Self {
            app,
            admin_key,
            agent_key,
            other_key,
            agent,
            owner,
            deposits: deposits(),
            asked,
            fakes,
        }
    }

    fn path(&self, query: &str) -> String {
        format!("/api/v1/agents/{}/deposits{query}", self.agent)
    }

    fn asked(&self) -> Vec<ListDeposits> {
        self.asked.lock().unwrap().clone()
    }
}

#[tokio::test]
async fn deposits_are_listed_as_the_settlement_service_answers_with_decimal_amounts() {
    let world = World::start().await;
    // An agent-scope key reads them; the default page holds both, so there is no cursor.
    let response = world.app.get(&world.path(""), &world.agent_key).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body,
        json!({
            "data": [
                {
                    "id": "0190a3c4-8f2b-7c3e-9d1e-5f6a7b8c9d0e",
                    "chain": "eip155:84532",
                    "token": "USDC",
                    "from": SENDER,
                    "to": WALLET,
                    "amount": "12.50",
                    "amount_atomic": "12500000",
                    "source": "chain",
                    "state": "credited",
                    "tx_hash": format!("0x{}", "ab".repeat(32)),
                    "log_index": 3,
                    "block_number": 1_234_567,
                    "block_hash": format!("0x{}", "cd".repeat(32)),
                    "reversal_reason": null,
                    "created_at": 1_764_000_000,
                },
                {
                    "id": "0190a3c4-8f2b-7c3e-9d1e-000000000001",
                    "chain": "eip155:84532",
                    // Not in the registry: the address stands in for the symbol.
                    "token": UNKNOWN_TOKEN,
                    "from": ZERO,
                    "to": WALLET,
                    "amount": "0.002",
                    "amount_atomic": "2000",
                    "source": "faucet",
                    "state": "reversed",
                    "tx_hash": format!("0x{}", "01".repeat(32)),
                    "log_index": 0,
                    "block_number": 1_234_000,
                    "block_hash": format!("0x{}", "02".repeat(32)),
                    "reversal_reason": "block reorganised away",
                    "created_at": 1_763_999_000,
                },
            ],
        })
    );
    assert_eq!(
        world.asked(),
        vec![ListDeposits {
            owner: world.owner,
            agent: world.agent,
            limit: 20,
            starting_after: None
        }]
    );
}

#[tokio::test]
async fn a_full_page_carries_the_cursor_and_the_cursor_is_passed_on() {
    let world = World::start().await;
    let first = world.deposits[0].id;
    let response = world.app.get(&world.path("?limit=1"), &world.admin_key).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["data"].as_array().unwrap().len(), 1);
    assert_eq!(body["next_cursor"], json!(first.to_string()));

    let next = world.path(&format!("?limit=1&starting_after={first}"));
    assert_eq!(world.app.get(&next, &world.admin_key).await.status(), 200);
    assert_eq!(
        world.asked(),
        vec![
            ListDeposits { owner: world.owner, agent: world.agent, limit: 1, starting_after: None },
            ListDeposits {
                owner: world.owner,
                agent: world.agent,
                limit: 1,
                starting_after: Some(first),
            },
        ]
    );
}

#[tokio::test]
async fn invalid_paging_is_refused_before_any_service_is_asked() {
    let world = World::start().await;
    for (query, field) in [
        ("?limit=0", "limit"),
        ("?limit=101", "limit"),
        ("?limit=ten", "limit"),
        ("?starting_after=stl_0190a3c48f2b7c3e9d1e5f6a7b8c9d0e", "starting_after"),
        ("?starting_after=", "starting_after"),
        ("?cursor=5", ""),
    ] {
        let response = world.app.get(&world.path(query), &world.admin_key).await;
        let (status, code, body) = error_code(response).await;
        assert_eq!((status, code.as_str()), (400, "invalid_field"), "{query}: {body}");
        if !field.is_empty() {
            assert_eq!(body["error"]["field"], field, "{query}: {body}");
        }
    }
    for query in ["?limit=1", "?limit=100"] {
        assert_eq!(world.app.get(&world.path(query), &world.admin_key).await.status(), 200);
    }
    let limits: Vec<u32> = world.asked().iter().map(|asked| asked.limit).collect();
    assert_eq!(limits, vec![1, 100]);
}

#[tokio::test]
async fn another_accounts_agent_is_not_found() {
    let world = World::start().await;
    let (status, code, body) =
        error_code(world.app.get(&world.path(""), &world.other_key).await).await;
    assert_eq!((status, code.as_str()), (404, "not_found"), "{body}");
    // Neither is an agent that does not exist, nor an id that is not an agent's.
    let unknown = format!("/api/v1/agents/{}/deposits", AgentId::new());
    let (status, code, _) = error_code(world.app.get(&unknown, &world.admin_key).await).await;
    assert_eq!((status, code.as_str()), (404, "not_found"));
    let malformed = "/api/v1/agents/acc_0190a3c48f2b7c3e9d1e5f6a7b8c9d0e/deposits";
    let (status, code, _) = error_code(world.app.get(malformed, &world.admin_key).await).await;
    assert_eq!((status, code.as_str()), (404, "not_found"));
    assert!(world.asked().is_empty(), "the settlement service was asked: {:?}", world.asked());
}

#[tokio::test]
async fn unauthenticated_requests_are_refused() {
    let world = World::start().await;
    let response = world.app.client.get(world.app.url(&world.path(""))).send().await.unwrap();
    let (status, code, _) = error_code(response).await;
    assert_eq!((status, code.as_str()), (401, "missing_api_key"));
    let (status, code, _) = error_code(world.app.get(&world.path(""), "awx_nonsense").await).await;
    assert_eq!((status, code.as_str()), (401, "invalid_api_key"));
    assert!(world.asked().is_empty());
}

#[tokio::test]
async fn a_provider_key_may_not_read_deposits() {
    let world = World::start().await;
    let (_, provider_key) = world.app.create_key(&world.admin_key, &[Scope::Provider]).await;
    let (status, code, _) = error_code(world.app.get(&world.path(""), &provider_key).await).await;
    assert_eq!((status, code.as_str()), (403, "insufficient_scope"));
    assert!(world.asked().is_empty());
}

#[tokio::test]
async fn a_reversed_deposit_is_a_deposit_reversal_line_of_the_statement() {
    let world = World::start_with_ledger(LineKind::DepositReversal).await;
    let path = format!("/api/v1/agents/{}/statement", world.agent);
    let response = world.app.get(&path, &world.agent_key).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["data"][0]["type"], "deposit_reversal", "{body}");
    assert_eq!(body["data"][0]["debit"], "12.50", "{body}");
}
