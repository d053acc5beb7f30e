//! What the benchmarks on a platform of their own share (`awx settlement bench`'s throughput
//! part, `awx watcher bench`): anvil with our token and Multicall3, the whole platform in this
//! process on a fresh database, and an HTTP client of its gateway.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use alloy::primitives::U256;
use alloy::providers::DynProvider;
use anyhow::{Context as _, bail, ensure};
use awx_chain::{
    Anvil, AnvilOptions, Token, connect_with_wallet, deploy_test_usdc, install_multicall3,
};
use awx_settlement_service::config::{BatchSettings, NetworkSettings, NetworkWatch, WatchSettings};
use serde_json::{Value, json};

use super::{DECIMALS, TOKEN_NAME, TOKEN_VERSION};

/// An HTTP client over the platform's gateway.
pub(crate) struct Gateway {
    pub(crate) http: reqwest::Client,
    pub(crate) url: String,
}

impl Gateway {
    /// Sends `request` (built again for each try) with `key`; waits and asks again when rate
    /// limited (set-up calls come in bursts); any other failure is an error.
    async fn send(
        &self,
        what: &str,
        key: &str,
        request: impl Fn() -> reqwest::RequestBuilder,
    ) -> anyhow::Result<Value> {
        for _ in 0..100 {
            let response = request().header("x-api-key", key).send().await?;
            let status = response.status();
            if status == reqwest::StatusCode::TOO_MANY_REQUESTS {
                let wait = response
                    .headers()
                    .get("retry-after")
                    .and_then(|value| value.to_str().ok())
                    .and_then(|value| value.parse::<u64>().ok())
                    .map_or(Duration::from_millis(500), Duration::from_secs);
                tokio::time::sleep(wait.min(Duration::from_secs(5))).await;
                continue;
            }
            let answer: Value = response.json().await.unwrap_or(Value::Null);
            ensure!(status.is_success(), "{what}: HTTP {status}: {answer}");
            return Ok(answer);
        }
        bail!("{what}: still rate limited")
    }

    /// POSTs `body` with `key` (see [`Self::send`]).
    pub(crate) async fn post(&self, path: &str, key: &str, body: &Value) -> anyhow::Result<Value> {
        let url = format!("{}{path}", self.url);
        self.send(&format!("POST {path}"), key, || self.http.post(&url).json(body)).await
    }

    /// GETs `path` with `key` (see [`Self::send`]).
    pub(crate) async fn get(&self, path: &str, key: &str) -> anyhow::Result<Value> {
        let url = format!("{}{path}", self.url);
        self.send(&format!("GET {path}"), key, || self.http.get(&url)).await
    }

    pub(crate) async fn new_key(
        &self,
        admin: &str,
        name: &str,
        scope: &str,
    ) -> anyhow::Result<String> {
        let created =
            self.post("/api/v1/keys", admin, &json!({"name": name, "scopes": [scope]})).await?;
        created["api_key"].as_str().map(str::to_owned).context("no api_key in the answer")
    }
}

/// How a bench's platform is set up.
pub(crate) struct PlatformOptions {
    /// Names the bus prefix and the state directory (`bench-{name}-…`).
    pub(crate) name: &'static str,
    /// The database (dropped and recreated).
    pub(crate) database_url: String,
    pub(crate) redis_url: String,
    /// The batch worker's settings (`contract` is set to the installed Multicall3).
    pub(crate) batch: BatchSettings,
    /// The chain watcher's settings.
    pub(crate) watch: WatchSettings,
    /// What the watcher follows on the bench's chain.
    pub(crate) network_watch: NetworkWatch,
}

/// A bench's chain and platform: anvil (a block per transaction), our token deployed by
/// development account 0, Multicall3 installed, the platform on a fresh database with the
/// faucet on, its relayers funded and made minters. Stopped in reverse order by [`Self::stop`].
pub(crate) struct BenchPlatform {
    pub(crate) anvil: Anvil,
    pub(crate) deployer: DynProvider,
    pub(crate) token: Token,
    pub(crate) platform: crate::platform::Platform,
    state_dir: PathBuf,
}

impl BenchPlatform {
    pub(crate) async fn start(options: PlatformOptions) -> anyhow::Result<Self> {
        let anvil = Anvil::spawn(AnvilOptions::default()).await.context("starting anvil")?;
        let deployer = connect_with_wallet(anvil.endpoint(), anvil.dev_key(0)?)?;
        let token = deploy_test_usdc(&deployer, TOKEN_NAME, TOKEN_VERSION)
            .await
            .context("deploying the token")?;
        let batch_contract =
            install_multicall3(&deployer).await.context("installing Multicall3")?;
        let network = format!("eip155:{}", anvil.chain_id());
        crate::platform::reset_database(&options.database_url)
            .await
            .context("recreating the bench database")?;
        let name = options.name;
        let state_dir = std::env::temp_dir()
            .join(format!("awx-bench-{name}-{}", uuid::Uuid::new_v4().simple()));
        let random_hex = || alloy::primitives::hex::encode(awx_x402::B256::random());
        let platform = crate::platform::start(crate::platform::PlatformArgs {
            database_url: options.database_url,
            redis_url: options.redis_url,
            bus_prefix: format!("bench-{name}-{}", uuid::Uuid::new_v4().simple()),
            gateway_addr: "127.0.0.1:0".into(),
            ledger_ops_addr: "127.0.0.1:0".into(),
            settlement_ops_addr: "127.0.0.1:0".into(),
            policy_ops_addr: "127.0.0.1:0".into(),
            tokens: vec![awx_x402::TokenInfo {
                network: awx_x402::Network::evm(anvil.chain_id()),
                address: token.address(),
                symbol: "USDC".into(),
                decimals: DECIMALS,
                eip712_name: TOKEN_NAME.into(),
                eip712_version: TOKEN_VERSION.into(),
            }],
            networks: vec![NetworkSettings {
                network: network.clone(),
                rpc_url: anvil.endpoint().to_owned(),
                receipt_wait_ms: 15_000,
                faucet: true,
                faucet_token: Some(token.address()),
                confirmations: 0,
                watch: options.network_watch,
            }],
            allowed_contracts: BTreeMap::from([(
                network.clone(),
                vec![token.address(), batch_contract],
            )]),
            signer_kek_hex: random_hex(),
            decision_key_hex: random_hex(),
            default_chain: network,
            allow_private_targets: true,
            policy_upstream_timeout_ms: 5_000,
            policy_expiry_grace_seconds: 60,
            state_dir: state_dir.clone(),
            batch: BatchSettings { contract: batch_contract, ..options.batch },
            watch: options.watch,
        })
        .await
        .context("starting the platform")?;
        for relayer in &platform.relayers {
            awx_chain::send_native(&deployer, *relayer, U256::from(10u128.pow(19)))
                .await
                .context("funding a relayer")?;
            token.configure_minter(*relayer, true).await.context("making a relayer a minter")?;
        }
        Ok(Self { anvil, deployer, token, platform, state_dir })
    }

    /// Stops the platform, then the chain.
    pub(crate) async fn stop(self) -> anyhow::Result<()> {
        let stopped = self.platform.stop().await;
        let _ = std::fs::remove_dir_all(&self.state_dir);
        // The chain goes last.
        drop(self.token);
        drop(self.deployer);
        drop(self.anvil);
        stopped
    }

    /// A client of the platform's gateway.
    pub(crate) fn gateway(&self, idle_connections_max: usize) -> anyhow::Result<Gateway> {
        Ok(Gateway {
            http: reqwest::Client::builder()
                .pool_max_idle_per_host(idle_connections_max)
                .build()?,
            url: self.platform.gateway_url.clone(),
        })
    }
}
