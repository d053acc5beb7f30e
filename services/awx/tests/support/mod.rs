//! The whole platform on a real chain, for cross-service tests: anvil with our token, a fresh
//! database, a Redis key namespace, and every service in this process.

#![allow(dead_code, reason = "each test binary uses part of the support module")]

pub(crate) mod child;
pub(crate) mod interop;
pub(crate) mod sdk;

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use alloy::primitives::U256;
use alloy::providers::DynProvider;
use alloy::signers::local::PrivateKeySigner;
use awx_chain::{Anvil, AnvilOptions, Token};
use awx_cli::platform::{self, Platform, PlatformArgs};
use awx_test_support::{RedisNamespace, TestDb};
use awx_x402::eip3009::random_nonce;
use awx_x402::{
    Address, Bytes, Eip3009Authorization, Eip3009Payload, ExactEvmPayload, PaymentPayload,
    PaymentRequirements, TokenDomain,
};
use serde_json::{Value, json};

pub(crate) const TOKEN_NAME: &str = "USD Coin";
pub(crate) const TOKEN_VERSION: &str = "2";

pub(crate) struct World {
    pub(crate) anvil: Anvil,
    pub(crate) deployer: DynProvider,
    pub(crate) token: Token,
    pub(crate) network: String,
    pub(crate) db: TestDb,
    pub(crate) namespace: RedisNamespace,
    pub(crate) platform: Option<Platform>,
    /// The services as separate processes ([`World::start_processes`]), instead of `platform`.
    pub(crate) processes: Option<awx_cli::processes::ProcessPlatform>,
    /// The (first) gateway.
    pub(crate) gateway_url: String,
    pub(crate) admin_key: String,
    pub(crate) provider_key: String,
    pub(crate) http: reqwest::Client,
    state_dir: std::path::PathBuf,
}

pub(crate) fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

pub(crate) fn kek_hex() -> String {
    awx_x402::B256::random().to_string().trim_start_matches("0x").to_owned()
}

impl World {
    pub(crate) async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// Starts everything; `adjust` may change the platform's arguments (receipt waits, say).
    pub(crate) async fn start_with(adjust: impl FnOnce(&mut PlatformArgs)) -> Self {
        Self::start_as(adjust, None).await
    }

    /// Starts the chain, and the services as separate processes from their own binaries, as
    /// deployed: `replicas` of the signer, the ledger, the settlement service and the policy
    /// service, and two gateways (`World::processes` has their addresses). A command left by
    /// a killed replica is taken over after 2 s.
    pub(crate) async fn start_processes(replicas: usize) -> Self {
        Self::start_as(|_| {}, Some(replicas)).await
    }

    async fn start_as(adjust: impl FnOnce(&mut PlatformArgs), processes: Option<usize>) -> Self {
        awx_test_support::init_logging();
        let anvil = Anvil::spawn(AnvilOptions::default()).await.unwrap();
        let deployer =
            awx_chain::connect_with_wallet(anvil.endpoint(), anvil.dev_key(0).unwrap()).unwrap();
        let token =
            awx_chain::deploy_test_usdc(&deployer, TOKEN_NAME, TOKEN_VERSION).await.unwrap();
        let network = format!("eip155:{}", anvil.chain_id());
        let batch_contract = awx_chain::batch::install_multicall3(&deployer).await.unwrap();
        let db = TestDb::new().await;
        let namespace = RedisNamespace::new();
        let state_dir =
            std::env::temp_dir().join(format!("awx-world-{}", uuid::Uuid::new_v4().simple()));
        let mut args = PlatformArgs {
            database_url: db.url(),
            redis_url: awx_test_support::redis_url(),
            bus_prefix: namespace.prefix().to_owned(),
            gateway_addr: "127.0.0.1:0".into(),
            ledger_ops_addr: "127.0.0.1:0".into(),
            settlement_ops_addr: "127.0.0.1:0".into(),
            policy_ops_addr: "127.0.0.1:0".into(),
            tokens: vec![awx_x402::TokenInfo {
                network: awx_x402::Network::evm(anvil.chain_id()),
                address: token.address(),
                symbol: "USDC".into(),
                decimals: 6,
                eip712_name: TOKEN_NAME.into(),
                eip712_version: TOKEN_VERSION.into(),
            }],
            networks: vec![awx_settlement_service::config::NetworkSettings {
                network: network.clone(),
                rpc_url: anvil.endpoint().to_owned(),
                receipt_wait_ms: 10_000,
                faucet: true,
                faucet_token: Some(token.address()),
                confirmations: 0,
                watch: awx_settlement_service::config::NetworkWatch {
                    from_block: Some(0),
                    ..Default::default()
                },
            }],
            allowed_contracts: BTreeMap::from([(
                network.clone(),
                vec![token.address(), batch_contract],
            )]),
            signer_kek_hex: kek_hex(),
            decision_key_hex: kek_hex(),
            default_chain: network.clone(),
            allow_private_targets: true,
            policy_upstream_timeout_ms: 5_000,
            policy_expiry_grace_seconds: 60,
            state_dir: state_dir.clone(),
            // The tests drive the batch worker themselves (`World::worker`).
            batch: awx_settlement_service::config::BatchSettings {
                enabled: false,
                eligibility_margin_seconds: 0,
                fee_address: Some(Address::repeat_byte(0xfe)),
                ..Default::default()
            },
            // The tests drive the chain watcher themselves (`World::watcher`).
            watch: awx_settlement_service::config::WatchSettings {
                enabled: false,
                ..Default::default()
            },
        };
        adjust(&mut args);
        let (platform, processes, relayers, gateway_url, admin_key) = match processes {
            None => {
                let platform = platform::start(args).await.unwrap();
                let relayers = platform.relayers.clone();
                let gateway_url = platform.gateway_url.clone();
                let admin_key = platform.admin_key.clone();
                (Some(platform), None, relayers, gateway_url, admin_key)
            }
            Some(replicas) => {
                let options = awx_cli::processes::ProcessOptions {
                    bin_dir: child::service_bin_dir().await,
                    run_dir: state_dir.join("processes"),
                    replicas,
                    gateway_addrs: vec!["127.0.0.1:0".into(); 2],
                    claim_idle_ms: Some(2_000),
                };
                let processes =
                    awx_cli::processes::ProcessPlatform::start(args, options).await.unwrap();
                let relayers = processes.relayers.clone();
                let gateway_url = processes.gateway_urls[0].clone();
                let admin_key = processes.admin_key.clone();
                (None, Some(processes), relayers, gateway_url, admin_key)
            }
        };
        for relayer in &relayers {
            awx_chain::send_native(&deployer, *relayer, U256::from(10u128.pow(19))).await.unwrap();
            token.configure_minter(*relayer, true).await.unwrap();
        }
        let http = reqwest::Client::new();
        let created: Value = http
            .post(format!("{gateway_url}/api/v1/keys"))
            .header("x-api-key", &admin_key)
            .json(&json!({"name": "provider", "scopes": ["provider"]}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let provider_key = created["api_key"].as_str().unwrap().to_owned();
        Self {
            anvil,
            deployer,
            token,
            network,
            db,
            namespace,
            platform,
            processes,
            gateway_url,
            admin_key,
            provider_key,
            http,
            state_dir,
        }
    }

    /// The directory of the world's own files (keys, and the processes' configuration and
    /// logs).
    pub(crate) fn state_dir(&self) -> &std::path::Path {
        &self.state_dir
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

    /// An authorization paying `requirements`, signed by `payer` under `domain`; `edit` may
    /// change it before signing.
    pub(crate) fn payment_with(
        &self,
        payer: &PrivateKeySigner,
        requirements: &PaymentRequirements,
        domain: &TokenDomain,
        edit: impl FnOnce(&mut Eip3009Authorization),
    ) -> PaymentPayload {
        let mut authorization = Eip3009Authorization {
            from: payer.address(),
            to: requirements.pay_to.parse().unwrap(),
            value: requirements.amount.parse().unwrap(),
            valid_after: U256::ZERO,
            valid_before: U256::from(now() + 120),
            nonce: random_nonce(),
        };
        edit(&mut authorization);
        let signature = authorization.sign(payer, domain).unwrap();
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

    pub(crate) fn payment(
        &self,
        payer: &PrivateKeySigner,
        requirements: &PaymentRequirements,
    ) -> PaymentPayload {
        self.payment_with(payer, requirements, &self.domain(), |_| {})
    }

    pub(crate) fn body(payload: &PaymentPayload, requirements: &PaymentRequirements) -> Value {
        json!({"x402Version": 2, "paymentPayload": payload, "paymentRequirements": requirements})
    }

    /// POSTs to the gateway with the provider key; returns the status and JSON body.
    pub(crate) async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        let response = self
            .http
            .post(format!("{}{path}", self.gateway_url))
            .header("x-api-key", &self.provider_key)
            .json(body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    pub(crate) async fn verify(
        &self,
        payload: &PaymentPayload,
        requirements: &PaymentRequirements,
    ) -> Value {
        let (status, body) =
            self.post("/api/v1/x402/facilitator/verify", &Self::body(payload, requirements)).await;
        assert_eq!(status, 200, "{body}");
        body
    }

    pub(crate) async fn settle(
        &self,
        payload: &PaymentPayload,
        requirements: &PaymentRequirements,
    ) -> Value {
        let (status, body) =
            self.post("/api/v1/x402/facilitator/settle", &Self::body(payload, requirements)).await;
        assert_eq!(status, 200, "{body}");
        body
    }

    pub(crate) async fn balance(&self, address: Address) -> U256 {
        self.token.balance_of(address).await.unwrap()
    }

    pub(crate) async fn count(&self, sql: &'static str) -> i64 {
        sqlx::query_scalar(sql).fetch_one(&self.db.pool).await.unwrap()
    }

    pub(crate) async fn rpc(&self, method: &str, params: Value) -> Value {
        let response: Value = self
            .http
            .post(self.anvil.endpoint())
            .json(&json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert!(response.get("error").is_none(), "{method}: {response}");
        response["result"].clone()
    }

    /// The receipt of `hash`, waiting (bounded) until anvil has mined it: under load, a
    /// transaction sent with `eth_sendTransaction` may not be mined yet when the call returns.
    pub(crate) async fn mined_receipt(&self, hash: &Value) -> Value {
        for _ in 0..200 {
            let receipt = self.rpc("eth_getTransactionReceipt", json!([hash])).await;
            if !receipt.is_null() {
                return receipt;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("transaction {hash} was not mined in 10 s");
    }

    /// Sends `method path` with `key` and an optional JSON body; returns the status and JSON.
    pub(crate) async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        key: &str,
        body: Option<&Value>,
    ) -> (u16, Value) {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.gateway_url))
            .header("x-api-key", key);
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// A new API key of the world's account with `scopes`.
    pub(crate) async fn new_key(&self, scopes: &[&str]) -> String {
        let (status, created) = self
            .call(
                reqwest::Method::POST,
                "/api/v1/keys",
                &self.admin_key,
                Some(&json!({"name": "test", "scopes": scopes})),
            )
            .await;
        assert_eq!(status, 201, "{created}");
        created["api_key"].as_str().unwrap().to_owned()
    }

    /// Creates an agent with `policy`; returns its id and wallet.
    pub(crate) async fn create_agent(&self, policy: Value) -> (String, Address) {
        let (status, agent) = self
            .call(
                reqwest::Method::POST,
                "/api/v1/agents",
                &self.admin_key,
                Some(&json!({"name": "test agent", "policy": policy})),
            )
            .await;
        assert_eq!(status, 201, "{agent}");
        (
            agent["id"].as_str().unwrap().to_owned(),
            agent["address"].as_str().unwrap().parse().unwrap(),
        )
    }

    /// Funds an agent's wallet from the faucet with `amount` dollars of the token.
    pub(crate) async fn fund(&self, agent: &str, amount: &str) -> Value {
        let (status, funded) = self
            .call(
                reqwest::Method::POST,
                &format!("/api/v1/agents/{agent}/fund"),
                &self.admin_key,
                Some(&json!({"amount": amount})),
            )
            .await;
        assert_eq!(status, 200, "{funded}");
        funded
    }

    /// An agent's balance on the world's chain: (available, held).
    pub(crate) async fn agent_balance(&self, agent: &str) -> (String, String) {
        let (status, view) = self
            .call(reqwest::Method::GET, &format!("/api/v1/agents/{agent}"), &self.admin_key, None)
            .await;
        assert_eq!(status, 200, "{view}");
        let balance = view["balances"]
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["chain"] == self.network)
            .cloned()
            .unwrap_or_else(|| json!({"available": "0.00", "held": "0.00"}));
        (
            balance["available"].as_str().unwrap().to_owned(),
            balance["held"].as_str().unwrap().to_owned(),
        )
    }

    /// A paid API built with our middleware (`GET /paid` at `atomic` units, the same taking
    /// 300 ms at `GET /slow`, `GET /free`), paid through the world's facilitator; returns its
    /// base URL.
    pub(crate) async fn paid_api(&self, pay_to: Address, atomic: u128) -> String {
        self.paid_api_expiring(pay_to, atomic, awx_x402_axum::price::DEFAULT_MAX_TIMEOUT_SECONDS)
            .await
    }

    /// [`World::paid_api`] whose authorizations are valid for `max_timeout_seconds`.
    pub(crate) async fn paid_api_expiring(
        &self,
        pay_to: Address,
        atomic: u128,
        max_timeout_seconds: u64,
    ) -> String {
        use awx_x402_axum::{FacilitatorConfig, PaymentInfo, PaymentLayer, PaymentOffer, Price};
        let paywall = PaymentLayer::builder()
            .offer(
                PaymentOffer::new(
                    Price::atomic(atomic, self.token.address(), TOKEN_NAME, TOKEN_VERSION),
                    pay_to,
                )
                .network(awx_x402::Network::evm(self.anvil.chain_id()))
                .max_timeout_seconds(max_timeout_seconds),
            )
            .facilitator(
                FacilitatorConfig::new(format!("{}/api/v1/x402/facilitator", self.gateway_url))
                    .api_key(&self.provider_key),
            )
            .build()
            .unwrap();
        async fn paid(axum::Extension(info): axum::Extension<PaymentInfo>) -> axum::Json<Value> {
            axum::Json(json!({"served_by": "awx-x402-axum", "payer": info.payer}))
        }
        async fn slow(info: axum::Extension<PaymentInfo>) -> axum::Json<Value> {
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            paid(info).await
        }
        let app = axum::Router::new()
            .route("/paid", axum::routing::get(paid).layer(paywall.clone()))
            .route("/slow", axum::routing::get(slow).layer(paywall))
            .route("/free", axum::routing::get(|| async { "free" }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{address}")
    }

    /// Pays `url` as `agent` (with the agent key `key`) and retries it with the signature, so
    /// the provider settles through us (captured, queued); returns the payment's ledger id.
    pub(crate) async fn pay_and_serve(&self, key: &str, agent: &str, url: &str) -> String {
        let (status, paid) = self
            .call(
                reqwest::Method::POST,
                "/api/v1/x402/pay",
                key,
                Some(&json!({"agent_id": agent, "target_url": url})),
            )
            .await;
        assert_eq!(status, 200, "{paid}");
        assert_eq!(paid["status"], "completed", "{paid}");
        let response = self
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
        paid["ledger_id"].as_str().unwrap().to_owned()
    }

    /// Pays `url` from a new $1.00 session of `agent` (agent key `key`), without retrying the
    /// URL; returns the session id and the payment.
    pub(crate) async fn session_pay(&self, key: &str, agent: &str, url: &str) -> (String, Value) {
        let (status, session) = self
            .call(
                reqwest::Method::POST,
                "/api/v1/x402/sessions",
                key,
                Some(&json!({"agent_id": agent, "budget_limit": "1.00", "ttl_seconds": 3600})),
            )
            .await;
        assert_eq!(status, 201, "{session}");
        let session = session["id"].as_str().unwrap().to_owned();
        let (status, paid) = self
            .call(
                reqwest::Method::POST,
                &format!("/api/v1/x402/sessions/{session}/pay"),
                key,
                Some(&json!({"target_url": url})),
            )
            .await;
        assert_eq!(status, 200, "{paid}");
        (session, paid)
    }

    /// Waits until every queued authorization has expired (the wall-clock time the batch worker
    /// checks).
    pub(crate) async fn wait_for_expiry(&self) {
        let latest: Option<i64> =
            sqlx::query_scalar("SELECT max(valid_before) FROM settlement.items")
                .fetch_one(&self.db.pool)
                .await
                .unwrap();
        let wait = latest.unwrap_or(0).saturating_sub(i64::try_from(now()).unwrap());
        let wait = u64::try_from(wait.max(0)).unwrap().saturating_add(1);
        tokio::time::sleep(std::time::Duration::from_secs(wait)).await;
    }

    /// A batch settlement worker over the world's settlement service.
    pub(crate) fn worker(&self) -> awx_settlement_service::batch::BatchWorker {
        let facilitator = self.platform.as_ref().unwrap().facilitator.clone();
        awx_settlement_service::batch::BatchWorker::new(facilitator)
    }

    /// A chain watcher over the world's settlement service.
    pub(crate) fn watcher(&self) -> awx_settlement_service::watcher::Watcher {
        let facilitator = self.platform.as_ref().unwrap().facilitator.clone();
        awx_settlement_service::watcher::Watcher::new(facilitator)
    }

    /// Runs watcher passes until the watcher has scanned the chain's head; the reports.
    pub(crate) async fn watch_to_head(&self) -> Vec<awx_settlement_service::watcher::WatchReport> {
        let watcher = self.watcher();
        let chain =
            self.platform.as_ref().unwrap().facilitator.chain(&self.network).unwrap().clone();
        let mut reports = Vec::new();
        loop {
            let report = watcher.pass_locked(&chain).await.unwrap();
            let done = report.scanned.is_none_or(|(_, to)| to >= report.head);
            reports.push(report);
            if done {
                return reports;
            }
        }
    }

    /// `awx ledger check --chain`'s wallet check against the world's chain: the violations.
    pub(crate) async fn wallet_violations(&self) -> Vec<awx_ledger_service::check::Violation> {
        let client = awx_chain::ChainClient::connect(self.anvil.endpoint()).unwrap();
        awx_cli::chain_check::check_wallets(&self.db.pool, &client).await.unwrap()
    }

    /// Runs the ledger checker, and the wallet check against the chain; panics on any violation.
    pub(crate) async fn assert_ledger_matches_chain(&self) {
        self.assert_ledger_consistent().await;
        let violations = self.wallet_violations().await;
        assert!(violations.is_empty(), "wallet check: {violations:?}");
    }

    /// Runs the ledger checker; panics on any violation.
    pub(crate) async fn assert_ledger_consistent(&self) {
        let violations = awx_ledger_service::check::check(&self.db.pool).await.unwrap();
        assert!(violations.is_empty(), "ledger check: {violations:?}");
    }

    pub(crate) async fn stop(mut self) {
        if let Some(platform) = self.platform.take() {
            platform.stop().await.unwrap();
        }
        if let Some(processes) = self.processes.take() {
            processes.stop().await.unwrap();
        }
        let _ = std::fs::remove_dir_all(&self.state_dir);
    }
}
