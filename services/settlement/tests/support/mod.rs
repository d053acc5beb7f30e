//! The settlement service with its real neighbours, for its tests: anvil with our token, a fresh
//! database, a Redis key namespace, and the ledger, the signer and the settlement service in this
//! process (as `awx dev` assembles them), plus a bus client to send them commands.

#![allow(dead_code, reason = "each test binary uses part of the support module")]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use alloy::primitives::U256;
use alloy::providers::{DynProvider, Provider as _};
use alloy::signers::local::PrivateKeySigner;
use awx_api::ledger::Balances;
use awx_chain::{Anvil, AnvilOptions, Token};
use awx_service_kit::db::DatabaseSettings;
use awx_service_kit::shutdown::Shutdown;
use awx_settlement_service::config::NetworkSettings;
use awx_settlement_service::{Facilitator, SettlementService, SettlementSettings};
use awx_test_support::{RedisNamespace, TestDb};
use awx_types::{AccountId, AgentId, Amount};
use awx_x402::eip3009::random_nonce;
use awx_x402::{
    Address, Bytes, Eip3009Authorization, Eip3009Payload, ExactEvmPayload, PaymentPayload,
    PaymentRequirements, TokenDomain,
};
use secrecy::SecretString;
use serde_json::{Value, json};

pub(crate) const TOKEN_NAME: &str = "USD Coin";
pub(crate) const TOKEN_VERSION: &str = "2";
/// How long a test waits for a command's answer.
pub(crate) const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

pub(crate) fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

/// How the world is set up.
pub(crate) struct Options {
    /// Whether the relayers may mint the token (the faucet needs it).
    pub(crate) relayers_mint: bool,
    /// Changes to the settlement service's settings.
    pub(crate) adjust: Box<dyn FnOnce(&mut SettlementSettings)>,
}

impl Default for Options {
    fn default() -> Self {
        Self { relayers_mint: true, adjust: Box::new(|_| {}) }
    }
}

pub(crate) struct World {
    pub(crate) anvil: Anvil,
    pub(crate) deployer: DynProvider,
    pub(crate) token: Token,
    pub(crate) network: String,
    pub(crate) db: TestDb,
    pub(crate) namespace: RedisNamespace,
    /// A bus client, to send commands as the gateway does.
    pub(crate) bus: awx_bus::Bus,
    pub(crate) facilitator: Arc<Facilitator>,
    pub(crate) relayers: Vec<Address>,
    shutdown: Shutdown,
    tasks: Vec<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

fn database(db: &TestDb) -> DatabaseSettings {
    DatabaseSettings { url: SecretString::from(db.url()), ..DatabaseSettings::default() }
}

pub(crate) fn bus_config(
    namespace: &RedisNamespace,
    service: &str,
    schema: &str,
) -> awx_bus::BusConfig {
    let mut config = awx_bus::BusConfig::new(service, schema);
    config.redis_url = SecretString::from(awx_test_support::redis_url());
    config.prefix = namespace.prefix().to_owned();
    config
}

impl World {
    pub(crate) async fn start() -> Self {
        Self::start_with(Options::default()).await
    }

    pub(crate) async fn start_with(options: Options) -> Self {
        awx_test_support::init_logging();
        let anvil = Anvil::spawn(AnvilOptions::default()).await.unwrap();
        let deployer =
            awx_chain::connect_with_wallet(anvil.endpoint(), anvil.dev_key(0).unwrap()).unwrap();
        let token =
            awx_chain::deploy_test_usdc(&deployer, TOKEN_NAME, TOKEN_VERSION).await.unwrap();
        let network = format!("eip155:{}", anvil.chain_id());
        let db = TestDb::new().await;
        let namespace = RedisNamespace::new();

        let ledger = awx_ledger_service::LedgerService::build(awx_ledger_service::LedgerSettings {
            database: database(&db),
            bus: bus_config(&namespace, "ledger", "ledger"),
            ops_addr: "127.0.0.1:0".into(),
            dev_networks: vec![network.clone()],
            ..awx_ledger_service::LedgerSettings::default()
        })
        .await
        .unwrap();
        let kek_hex = awx_x402::B256::random().to_string().trim_start_matches("0x").to_owned();
        let kek = awx_signer_service::kek::Kek::from_hex(&kek_hex, "the test key-encryption key")
            .unwrap();
        let signer = awx_signer_service::SignerService::build_with_kek(
            awx_signer_service::SignerSettings {
                database: database(&db),
                bus: bus_config(&namespace, "signer", "signer"),
                allowed_contracts: BTreeMap::from([(network.clone(), vec![token.address()])]),
                ..awx_signer_service::SignerSettings::default()
            },
            kek,
        )
        .await
        .unwrap();
        let relayers = signer.relayers().await.unwrap();
        for relayer in &relayers {
            awx_chain::send_native(&deployer, *relayer, U256::from(10u128.pow(19))).await.unwrap();
            if options.relayers_mint {
                token.configure_minter(*relayer, true).await.unwrap();
            }
        }

        let mut settings = SettlementSettings {
            database: database(&db),
            bus: bus_config(&namespace, "settlement", "settlement"),
            ops_addr: "127.0.0.1:0".into(),
            networks: vec![NetworkSettings {
                network: network.clone(),
                rpc_url: anvil.endpoint().to_owned(),
                receipt_wait_ms: 10_000,
                faucet: true,
                faucet_token: Some(token.address()),
                confirmations: 0,
                watch: Default::default(),
            }],
            // The tests drive the resumer themselves (`resume_once`).
            resume_interval_ms: 3_600_000,
            ..SettlementSettings::default()
        };
        (options.adjust)(&mut settings);
        let settlement = SettlementService::build(settings).await.unwrap();
        let facilitator = settlement.facilitator();

        let shutdown = Shutdown::new();
        let tasks = vec![
            tokio::spawn(ledger.run(shutdown.clone())),
            tokio::spawn(signer.run(shutdown.clone())),
            tokio::spawn(settlement.run(shutdown.clone())),
        ];
        let bus = awx_bus::Bus::connect(bus_config(&namespace, "tester", "tester")).await.unwrap();
        Self {
            anvil,
            deployer,
            token,
            network,
            db,
            namespace,
            bus,
            facilitator,
            relayers,
            shutdown,
            tasks,
        }
    }

    pub(crate) fn domain(&self) -> TokenDomain {
        TokenDomain {
            name: TOKEN_NAME.into(),
            version: TOKEN_VERSION.into(),
            chain_id: self.anvil.chain_id(),
            verifying_contract: self.token.address(),
        }
    }

    /// A new payer holding `atomic` units of the token.
    pub(crate) async fn funded_payer(&self, atomic: u128) -> PrivateKeySigner {
        let payer = PrivateKeySigner::random();
        if atomic > 0 {
            self.token.mint(payer.address(), U256::from(atomic)).await.unwrap();
        }
        payer
    }

    pub(crate) fn requirements(&self, pay_to: Address, atomic: u128) -> PaymentRequirements {
        serde_json::from_value(json!({
            "scheme": "exact", "network": self.network, "amount": atomic.to_string(),
            "asset": self.token.address().to_checksum(None), "payTo": pay_to.to_checksum(None),
            "maxTimeoutSeconds": 120, "extra": {"name": TOKEN_NAME, "version": TOKEN_VERSION}
        }))
        .unwrap()
    }

    /// An authorization paying `requirements`, signed by `payer`.
    pub(crate) fn payment(
        &self,
        payer: &PrivateKeySigner,
        requirements: &PaymentRequirements,
    ) -> PaymentPayload {
        let authorization = Eip3009Authorization {
            from: payer.address(),
            to: requirements.pay_to.parse().unwrap(),
            value: requirements.amount.parse().unwrap(),
            valid_after: U256::ZERO,
            valid_before: U256::from(now() + 120),
            nonce: random_nonce(),
        };
        let signature = authorization.sign(payer, &self.domain()).unwrap();
        let payload = ExactEvmPayload::Eip3009(Eip3009Payload {
            signature: Bytes::copy_from_slice(&signature.to_bytes()),
            authorization,
        });
        PaymentPayload {
            x402_version: 2,
            resource: None,
            accepted: requirements.clone(),
            payload: payload.to_json(),
            extensions: None,
            other: Default::default(),
        }
    }

    pub(crate) async fn balance(&self, address: Address) -> U256 {
        self.token.balance_of(address).await.unwrap()
    }

    /// The agent's available balance of the token in the ledger.
    pub(crate) async fn ledger_available(&self, owner: AccountId, agent: AgentId) -> Amount {
        let reply = self.bus.send(&Balances { owner, agent }, COMMAND_TIMEOUT).await.unwrap();
        reply
            .wallets
            .iter()
            .find(|wallet| wallet.asset.token == self.token.address())
            .map_or(Amount::ZERO, |wallet| wallet.available)
    }

    pub(crate) async fn count(&self, sql: &'static str) -> i64 {
        sqlx::query_scalar(sql).fetch_one(&self.db.pool).await.unwrap()
    }

    /// Makes every transaction in flight look older than the resumer's grace, so one pass of the
    /// resumer takes it (instead of waiting a second).
    pub(crate) async fn age_in_flight_transactions(&self) {
        sqlx::query(
            "UPDATE settlement.chain_txs SET updated_at = now() - interval '1 minute'
             WHERE state IN ('signed', 'broadcast')",
        )
        .execute(&self.db.pool)
        .await
        .unwrap();
    }

    /// A JSON-RPC call to anvil.
    pub(crate) async fn rpc(&self, method: &'static str, params: Value) -> Value {
        self.deployer.raw_request(method.into(), params).await.unwrap()
    }

    pub(crate) async fn stop(self) {
        self.shutdown.trigger();
        for task in self.tasks {
            task.await.unwrap().unwrap();
        }
    }
}
