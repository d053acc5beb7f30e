//! The policy service on a fresh database and a Redis key namespace, with the ledger and the
//! settlement service played by small command servers on the same bus that record what they are
//! asked (the whole platform's tests run the real ones), plus a bus client to send commands.
//! Agents and payments are written straight into the policy schema, in the states a test needs.

#![allow(dead_code, reason = "each test binary uses part of the support module")]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use awx_api::facilitator::{ExternalRecorded, RecordExternal};
use awx_api::ledger::{Capture, CaptureReply, HoldWithdrawal, WithdrawalHeld};
use awx_bus::{CommandHandler, CommandMeta, CommandServer, HandlerError};
use awx_policy_service::{PolicyService, PolicySettings};
use awx_service_kit::db::DatabaseSettings;
use awx_service_kit::shutdown::Shutdown;
use awx_test_support::{RedisNamespace, TestDb};
use awx_types::{AccountId, AgentId, Amount, LedgerId};
use awx_x402::{Address, B256};
use secrecy::SecretString;
use sqlx::PgConnection;
use uuid::Uuid;

/// How long a test waits for a command's answer.
pub(crate) const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);
/// The chain of the payments the tests write.
pub(crate) const CHAIN_ID: u64 = 31_337;
/// [`CHAIN_ID`] as CAIP-2.
pub(crate) const NETWORK: &str = "eip155:31337";
/// The token of the payments the tests write.
pub(crate) fn token() -> Address {
    Address::repeat_byte(0x11)
}
/// [`token`] as the policy service's registry knows it (6 decimals, EIP-712 `USD Coin` / `2`).
pub(crate) fn test_token() -> awx_x402::TokenInfo {
    awx_x402::TokenInfo {
        network: awx_x402::Network::parse_caip2(NETWORK).unwrap(),
        address: token(),
        symbol: "USDC".into(),
        decimals: 6,
        eip712_name: "USD Coin".into(),
        eip712_version: "2".into(),
    }
}
/// Every payment's amount (0.10 of a 6-decimal token) and fee.
pub(crate) const AMOUNT_ATOMIC: u128 = 100_000;
pub(crate) const FEE_ATOMIC: u128 = 1_000;

pub(crate) fn bus_config(
    namespace: &RedisNamespace,
    service: &str,
    schema: &str,
) -> awx_bus::BusConfig {
    let mut config = awx_bus::BusConfig::new(service, schema);
    config.redis_url = SecretString::from(awx_test_support::redis_url());
    config.prefix = namespace.prefix().to_owned();
    config.block_ms = 200;
    config
}

/// The ledger as far as the policy service's watcher path sees it: captures are recorded and
/// answered, or refused as the ledger refuses a hold it no longer has.
#[derive(Clone, Default)]
pub(crate) struct FakeLedger {
    pub(crate) captures: Arc<Mutex<Vec<Capture>>>,
    pub(crate) refuse: Arc<std::sync::atomic::AtomicBool>,
    /// Every `HoldWithdrawal` the ledger was asked (refused ones included).
    pub(crate) withdrawal_holds: Arc<Mutex<Vec<HoldWithdrawal>>>,
    /// Refuse withdrawal holds with `insufficient_funds`.
    pub(crate) short_of_funds: Arc<std::sync::atomic::AtomicBool>,
}

impl CommandHandler<HoldWithdrawal> for FakeLedger {
    async fn handle(
        &self,
        _tx: &mut PgConnection,
        command: HoldWithdrawal,
        _meta: CommandMeta,
    ) -> Result<WithdrawalHeld, HandlerError> {
        self.withdrawal_holds.lock().unwrap().push(command.clone());
        if self.short_of_funds.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(HandlerError::reject(
                awx_api::ledger::codes::INSUFFICIENT_FUNDS,
                format!("the wallet cannot cover {}", command.amount),
            ));
        }
        Ok(WithdrawalHeld {
            ledger_id: command.withdrawal_id,
            available: Amount::ZERO,
            expires_at_unix: chrono::Utc::now().timestamp() + i64::from(command.timeout_seconds),
        })
    }
}

impl CommandHandler<Capture> for FakeLedger {
    async fn handle(
        &self,
        _tx: &mut PgConnection,
        command: Capture,
        _meta: CommandMeta,
    ) -> Result<CaptureReply, HandlerError> {
        if self.refuse.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(HandlerError::reject(
                awx_api::ledger::codes::HOLD_NOT_PENDING,
                format!("hold {} is voided", command.hold_id),
            ));
        }
        self.captures.lock().unwrap().push(command.clone());
        Ok(CaptureReply {
            ledger_id: LedgerId::new(),
            hold_id: command.hold_id,
            amount: Amount::from_atomic(AMOUNT_ATOMIC),
            fee: Amount::from_atomic(FEE_ATOMIC),
            released: Amount::ZERO,
        })
    }
}

/// The settlement service's `RecordExternal`, recorded.
#[derive(Clone, Default)]
pub(crate) struct FakeSettlement {
    pub(crate) records: Arc<Mutex<Vec<RecordExternal>>>,
}

impl CommandHandler<RecordExternal> for FakeSettlement {
    async fn handle(
        &self,
        _tx: &mut PgConnection,
        command: RecordExternal,
        _meta: CommandMeta,
    ) -> Result<ExternalRecorded, HandlerError> {
        let mut records = self.records.lock().unwrap();
        let inserted =
            !records.iter().any(|record| record.captured.ledger_id == command.captured.ledger_id);
        records.push(command);
        Ok(ExternalRecorded { inserted })
    }
}

pub(crate) struct World {
    pub(crate) db: TestDb,
    pub(crate) namespace: RedisNamespace,
    /// A bus client, to send commands as the chain watcher does.
    pub(crate) bus: awx_bus::Bus,
    pub(crate) ledger: FakeLedger,
    pub(crate) settlement: FakeSettlement,
    /// Verifies the policy service's decisions (as the signer does).
    pub(crate) decisions: awx_decision::DecisionVerifier,
    shutdown: Shutdown,
    tasks: Vec<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

/// A payment as a test writes it.
pub(crate) struct PaymentRow {
    pub(crate) id: Uuid,
    pub(crate) owner: Uuid,
    pub(crate) agent: Uuid,
    pub(crate) payer: Address,
    pub(crate) pay_to: Address,
    pub(crate) nonce: B256,
    pub(crate) valid_before: i64,
}

impl PaymentRow {
    pub(crate) fn ledger_id(&self) -> LedgerId {
        LedgerId::from_uuid(self.id)
    }
}

impl World {
    pub(crate) async fn start() -> Self {
        awx_test_support::init_logging();
        let db = TestDb::new().await;
        let namespace = RedisNamespace::new();
        let database = DatabaseSettings {
            url: SecretString::from(db.url()),
            max_connections: 5,
            migrate: false,
            ..DatabaseSettings::default()
        };
        let settings = PolicySettings {
            ops_addr: "127.0.0.1:0".into(),
            database,
            bus: bus_config(&namespace, "policy", "policy"),
            upstream_timeout_ms: 10_000,
            // The payments the tests write are not due; the sweeper stays out of the way.
            sweep_interval_ms: 3_600_000,
            tokens: vec![test_token()],
            ..PolicySettings::default()
        };
        let seed = B256::random().to_string();
        let key = awx_decision::DecisionKey::from_seed_hex(&seed).unwrap();
        let decisions = key.verifier();
        let policy = PolicyService::build_with_key(settings, key).await.unwrap();

        let ledger = FakeLedger::default();
        let settlement = FakeSettlement::default();
        let ledger_bus =
            awx_bus::Bus::connect(bus_config(&namespace, "ledger", "ledger")).await.unwrap();
        let ledger_server =
            CommandServer::new(&ledger_bus, db.pool.clone(), awx_api::ledger::FAMILY)
                .unwrap()
                .handle::<Capture, _>(ledger.clone())
                .unwrap()
                .handle::<HoldWithdrawal, _>(ledger.clone())
                .unwrap();
        let settlement_bus =
            awx_bus::Bus::connect(bus_config(&namespace, "settlement", "settlement"))
                .await
                .unwrap();
        let settlement_server =
            CommandServer::new(&settlement_bus, db.pool.clone(), awx_api::facilitator::FAMILY)
                .unwrap()
                .handle::<RecordExternal, _>(settlement.clone())
                .unwrap();

        let shutdown = Shutdown::new();
        let token = shutdown.token();
        let tasks = vec![
            tokio::spawn(policy.run(shutdown.clone())),
            tokio::spawn(async move { Ok(ledger_server.run(token).await?) }),
            tokio::spawn({
                let token = shutdown.token();
                async move { Ok(settlement_server.run(token).await?) }
            }),
        ];
        let bus = awx_bus::Bus::connect(bus_config(&namespace, "tester", "tester")).await.unwrap();
        Self { db, namespace, bus, ledger, settlement, decisions, shutdown, tasks }
    }

    /// Writes an agent of `owner` with a new wallet address and an open policy; returns its id
    /// and address.
    pub(crate) async fn agent(&self, owner: AccountId, deleted: bool) -> (AgentId, Address) {
        let id = AgentId::new();
        let address = Address::random();
        sqlx::query(
            "WITH agent AS (
               INSERT INTO policy.agents (id, owner, name, address, default_chain, deleted_at)
               VALUES ($1, $2, 'watched', $3, $4, CASE WHEN $5 THEN now() END) RETURNING id)
             INSERT INTO policy.policies (agent_id) SELECT id FROM agent",
        )
        .bind(id.as_uuid())
        .bind(owner.as_uuid())
        .bind(address.to_string().to_lowercase())
        .bind(NETWORK)
        .bind(deleted)
        .execute(&self.db.pool)
        .await
        .unwrap();
        (id, address)
    }

    /// Writes a signed payment of a new agent in `state` (`captured` and `settled` ones with
    /// their capture time).
    pub(crate) async fn payment(&self, state: &str) -> PaymentRow {
        let owner = AccountId::new();
        let (agent, payer) = self.agent(owner, false).await;
        let pay_to = Address::random();
        let nonce = B256::random();
        let id = LedgerId::new().as_uuid();
        let offer = serde_json::json!({
            "scheme": "exact", "network": NETWORK, "amount": AMOUNT_ATOMIC.to_string(),
            "asset": token().to_checksum(None), "payTo": pay_to.to_checksum(None),
            "maxTimeoutSeconds": 300, "extra": {"name": "USD Coin", "version": "2"}
        });
        let valid_before: i64 = sqlx::query_scalar(
            "INSERT INTO policy.payments (id, owner, agent_id, state, target_url, x402_version,
               network, chain_id, token, token_symbol, token_decimals, token_name, token_version,
               payer, pay_to, amount, amount_usd, fee, fee_rate, offer, max_timeout_seconds, nonce,
               valid_after, valid_before, signature, deadline, captured_at)
             VALUES ($1, $2, $3, $4, 'https://api.example/paid', 2, $5, $6, $7, 'USDC', 6,
               'USD Coin', '2', $8, $9, $10::numeric, 0.10, $11::numeric, 0.01, $12, 300, $13,
               extract(epoch FROM now())::bigint - 600, extract(epoch FROM now())::bigint + 300,
               '\\x01'::bytea, now() + interval '1 hour',
               CASE WHEN $4 IN ('captured', 'settled') THEN now() END)
             RETURNING valid_before",
        )
        .bind(id)
        .bind(owner.as_uuid())
        .bind(agent.as_uuid())
        .bind(state)
        .bind(NETWORK)
        .bind(i64::try_from(CHAIN_ID).unwrap())
        .bind(token().to_string().to_lowercase())
        .bind(payer.to_string().to_lowercase())
        .bind(pay_to.to_string().to_lowercase())
        .bind(AMOUNT_ATOMIC.to_string())
        .bind(FEE_ATOMIC.to_string())
        .bind(offer)
        .bind(nonce.as_slice())
        .fetch_one(&self.db.pool)
        .await
        .unwrap();
        PaymentRow {
            id,
            owner: owner.as_uuid(),
            agent: agent.as_uuid(),
            payer,
            pay_to,
            nonce,
            valid_before,
        }
    }

    /// A payment's state, its capture time (Unix seconds) and when it last changed.
    pub(crate) async fn stored(
        &self,
        id: Uuid,
    ) -> (String, Option<i64>, chrono::DateTime<chrono::Utc>) {
        sqlx::query_as(
            "SELECT state, extract(epoch FROM captured_at)::bigint, updated_at
             FROM policy.payments WHERE id = $1",
        )
        .bind(id)
        .fetch_one(&self.db.pool)
        .await
        .unwrap()
    }

    pub(crate) fn captures(&self) -> Vec<Capture> {
        self.ledger.captures.lock().unwrap().clone()
    }

    pub(crate) fn withdrawal_holds(&self) -> Vec<HoldWithdrawal> {
        self.ledger.withdrawal_holds.lock().unwrap().clone()
    }

    pub(crate) fn records(&self) -> Vec<RecordExternal> {
        self.settlement.records.lock().unwrap().clone()
    }

    pub(crate) async fn stop(self) {
        self.shutdown.trigger();
        for task in self.tasks {
            task.await.unwrap().unwrap();
        }
    }
}
