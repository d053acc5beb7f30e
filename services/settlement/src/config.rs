//! The settlement service's settings (`AWX_SETTLEMENT__…`; see `awx_service_kit::config`).

use awx_service_kit::config::Validate;
use awx_service_kit::db::DatabaseSettings;
use awx_service_kit::telemetry::TelemetrySettings;
use serde::{Deserialize, Serialize};

/// The settlement service's name on the bus, and its Postgres schema.
pub const SERVICE: &str = "settlement";

/// A chain the facilitator works on.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkSettings {
    /// The CAIP-2 network (`eip155:8453`).
    pub network: String,
    /// The JSON-RPC endpoint.
    pub rpc_url: String,
    /// How long a settle (or a faucet mint) waits for the receipt before answering
    /// `settlement_pending` (`chain_unavailable` for a mint).
    #[serde(default = "default_receipt_wait_ms")]
    pub receipt_wait_ms: u64,
    /// Whether the development faucet mints here (development chains only: the relayers must
    /// be minters of `faucet_token`).
    #[serde(default)]
    pub faucet: bool,
    /// The token the faucet mints (required when `faucet` is on).
    #[serde(default)]
    pub faucet_token: Option<awx_x402::Address>,
    /// How many blocks must follow a batch transaction's block before the batch worker counts
    /// it confirmed (0 on anvil; a few on Base, more on Ethereum and Polygon).
    #[serde(default)]
    pub confirmations: u64,
    /// What the chain watcher follows on this chain.
    #[serde(default)]
    pub watch: NetworkWatch,
}

/// What the chain watcher ([`crate::watcher`]) follows on one chain.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct NetworkWatch {
    /// The tokens whose transfers into agents' wallets are deposits. Empty: the built-in USDC of
    /// this chain (Base, Base Sepolia, Ethereum, Polygon) and the faucet token, if any.
    pub tokens: Vec<awx_x402::Address>,
    /// The first block to scan when the chain has no cursor yet. None: the chain's head at
    /// the first start (earlier transfers are not credited).
    pub from_block: Option<u64>,
}

fn default_receipt_wait_ms() -> u64 {
    15_000
}

/// Net settlement of our own agents' payments (the batch worker, `crate::batch`): queued
/// captures become eligible once their authorization has expired unused; eligible items are
/// grouped by (network, token, payer, payee); every `interval_seconds` a group is settled when
/// its total reaches `threshold_usd` or its oldest item has waited `max_delay_seconds`. Each
/// group becomes one EIP-3009 transfer, and all transfers of a chain go out in one Multicall3
/// `aggregate3` transaction.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct BatchSettings {
    /// Whether the worker runs in this replica.
    pub enabled: bool,
    /// How often groups are checked.
    pub interval_seconds: u64,
    /// A group's total, in US dollars as a decimal string, at which it is settled at once.
    pub threshold_usd: String,
    /// The longest an item waits (after its authorization expires) before its group is settled.
    pub max_delay_seconds: u64,
    /// How long after `validBefore` an authorization is read on chain (clock skew between us
    /// and the chain's block times).
    pub eligibility_margin_seconds: u64,
    /// Where the platform's fees go on chain; `None` leaves them in the agents' wallets.
    pub fee_address: Option<awx_x402::Address>,
    /// The batch contract (Multicall3's ABI; deployed at this address on Base, Ethereum and
    /// Polygon; `make run` places ours there on anvil).
    pub contract: awx_x402::Address,
    /// At most this many transfers in one batch transaction (bounds its gas: about 40,000 to
    /// 60,000 gas each).
    pub transfers_max: usize,
    /// A batch whose gas estimate is above this is halved (the rest go in the next batch).
    pub gas_max_per_batch: u64,
    /// A batch transaction unmined this long is replaced with a higher fee on the same nonce.
    pub replace_after_seconds: u64,
    /// The replacement's fees are the old ones times this percentage (nodes want at least 110).
    pub fee_bump_percent: u64,
    /// A transfer that failed inside this many batches is flagged for an operator.
    pub attempts_max: i32,
    /// How long a net transfer's authorization stays valid (`validBefore = now + this`), so a
    /// failed transfer can be retried as signed.
    pub authorization_ttl_seconds: u64,
    /// At most this many expired items are read on chain per pass.
    pub items_per_pass_max: i64,
    /// At most this many payments in one net transfer: a (payer, payee) group with more is
    /// planned as several transfers (so is a payer's fees), which keeps what travels on the bus
    /// about one transfer (its decision and signing requests, its confirmation event) within
    /// the bus's message size. 1 to 10,000.
    pub items_per_transfer_max: i64,
}

impl Default for BatchSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            interval_seconds: 300,
            threshold_usd: "10.00".into(),
            max_delay_seconds: 3_600,
            eligibility_margin_seconds: 30,
            fee_address: None,
            contract: awx_chain::batch::MULTICALL3_ADDRESS,
            transfers_max: 100,
            gas_max_per_batch: 15_000_000,
            replace_after_seconds: 120,
            fee_bump_percent: 125,
            attempts_max: 5,
            authorization_ttl_seconds: 7 * 24 * 3_600,
            items_per_pass_max: 20_000,
            items_per_transfer_max: 5_000,
        }
    }
}

impl BatchSettings {
    /// The threshold in micro-dollars.
    pub fn threshold_micros(&self) -> Result<awx_types::Amount, String> {
        awx_types::Amount::from_decimal_str(&self.threshold_usd, 6)
            .map_err(|error| format!("batch.threshold_usd {:?}: {error}", self.threshold_usd))
    }

    fn validate(&self) -> Result<(), String> {
        if self.interval_seconds == 0 || self.max_delay_seconds == 0 {
            return Err("batch: interval_seconds and max_delay_seconds must be positive".into());
        }
        // Dollars to at most micro-dollars, exactly (no floats).
        if self.threshold_micros()?.is_zero() {
            return Err("batch.threshold_usd must be positive".into());
        }
        if self.gas_max_per_batch < 100_000 {
            return Err("batch.gas_max_per_batch must be at least 100000".into());
        }
        if self.transfers_max == 0 || self.transfers_max > 1_000 {
            return Err("batch.transfers_max must be 1 to 1000".into());
        }
        if !(1..=10_000).contains(&self.items_per_transfer_max) {
            return Err("batch.items_per_transfer_max must be 1 to 10000".into());
        }
        if self.fee_bump_percent < 110 || self.attempts_max < 1 || self.items_per_pass_max < 1 {
            return Err("batch: fee_bump_percent must be at least 110, attempts_max and items_per_pass_max positive".into());
        }
        if self.authorization_ttl_seconds < 60 || self.replace_after_seconds == 0 {
            return Err("batch: authorization_ttl_seconds must be at least 60, replace_after_seconds positive".into());
        }
        Ok(())
    }
}

/// The chain watcher ([`crate::watcher`]): one per chain, under a lock per chain (so several
/// replicas are safe), following blocks `confirmations` behind the head.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct WatchSettings {
    /// Whether the watcher runs in this replica.
    pub enabled: bool,
    /// How often the chain's head is read.
    pub interval_ms: u64,
    /// At most this many blocks are scanned in one `eth_getLogs` (a node that refuses the range
    /// gets half of it, down to one block).
    pub blocks_per_pass_max: u64,
    /// How many recent scanned block hashes are kept per chain (the deepest reorganisation
    /// handled).
    pub blocks_remembered: u64,
    /// How long one RPC call may take before it counts as failed.
    pub rpc_timeout_ms: u64,
    /// The longest wait between retries of a failing chain (the wait doubles from
    /// `interval_ms`).
    pub backoff_max_ms: u64,
}

impl Default for WatchSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            interval_ms: 2_000,
            blocks_per_pass_max: 500,
            blocks_remembered: 256,
            rpc_timeout_ms: 10_000,
            backoff_max_ms: 30_000,
        }
    }
}

impl WatchSettings {
    fn validate(&self) -> Result<(), String> {
        if self.interval_ms == 0 || self.rpc_timeout_ms == 0 || self.backoff_max_ms == 0 {
            return Err(
                "watch: interval_ms, rpc_timeout_ms and backoff_max_ms must be positive".into()
            );
        }
        if self.blocks_per_pass_max == 0 || self.blocks_per_pass_max > 100_000 {
            return Err("watch.blocks_per_pass_max must be 1 to 100000".into());
        }
        if self.blocks_remembered < 2 {
            return Err("watch.blocks_remembered must be at least 2".into());
        }
        Ok(())
    }
}

/// Everything the settlement service can be configured with.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SettlementSettings {
    /// Where `/health/*` and `/metrics` are served.
    pub ops_addr: String,
    /// Postgres.
    pub database: DatabaseSettings,
    /// Redis and the bus (the service and schema are the settlement service's own).
    pub bus: awx_bus::BusConfig,
    /// The chains served.
    pub networks: Vec<NetworkSettings>,
    /// How long one JSON-RPC call to a chain's node may take (connecting, sending and reading
    /// the whole answer) before it fails, on every chain and for every call: verify, settle,
    /// receipts, the resumer, the batch worker, the faucet and the watcher (whose own
    /// `watch.rpc_timeout_ms` also applies). A wait made of several calls, such as a settle's
    /// `receipt_wait_ms`, may take longer in all. Default 10000.
    pub rpc_timeout_ms: u64,
    /// Gas limit = estimate × this / 100.
    pub gas_limit_percent: u64,
    /// How often in-flight transactions are re-broadcast or checked for receipts (by one loop
    /// per chain).
    pub resume_interval_ms: u64,
    /// How long to wait for the signer.
    pub signer_timeout_ms: u64,
    /// How long to wait for the policy service, asked about every payment before any chain call
    /// (it answers for our own agents' payments).
    pub policy_timeout_ms: u64,
    /// How long to wait for the ledger (faucet deposits).
    pub ledger_timeout_ms: u64,
    /// Net settlement of our own agents' payments.
    pub batch: BatchSettings,
    /// The chain watcher (deposits, reorganisations, authorizations used elsewhere).
    pub watch: WatchSettings,
    /// Logs and traces.
    pub telemetry: TelemetrySettings,
}

impl Default for SettlementSettings {
    fn default() -> Self {
        Self {
            ops_addr: "127.0.0.1:8082".into(),
            database: DatabaseSettings::default(),
            bus: awx_bus::BusConfig::new(SERVICE, SERVICE),
            networks: Vec::new(),
            rpc_timeout_ms: 10_000,
            gas_limit_percent: 130,
            resume_interval_ms: 1_000,
            signer_timeout_ms: 10_000,
            policy_timeout_ms: 5_000,
            ledger_timeout_ms: 5_000,
            batch: BatchSettings::default(),
            watch: WatchSettings::default(),
            telemetry: TelemetrySettings::default(),
        }
    }
}

impl SettlementSettings {
    /// How calls to the chains' nodes are bounded (`rpc_timeout_ms`).
    pub fn rpc_options(&self) -> awx_chain::RpcOptions {
        awx_chain::RpcOptions::with_timeout(std::time::Duration::from_millis(self.rpc_timeout_ms))
    }
}

impl Validate for SettlementSettings {
    fn validate(&self) -> Result<(), String> {
        for network in &self.networks {
            let parsed = awx_x402::Network::parse_caip2(&network.network)
                .map_err(|error| error.to_string())?;
            if parsed.evm_chain_id().is_none() {
                return Err(format!("networks: {} is not an EVM network", network.network));
            }
            if network.receipt_wait_ms == 0 {
                return Err(format!(
                    "networks.{}: receipt_wait_ms must be positive",
                    network.network
                ));
            }
            if network.faucet && network.faucet_token.is_none() {
                return Err(format!(
                    "networks.{}: faucet_token is required when faucet is on",
                    network.network
                ));
            }
        }
        if self.rpc_timeout_ms == 0 {
            return Err("rpc_timeout_ms must be positive".into());
        }
        if self.gas_limit_percent < 100
            || self.resume_interval_ms == 0
            || self.signer_timeout_ms == 0
            || self.policy_timeout_ms == 0
            || self.ledger_timeout_ms == 0
        {
            return Err("gas_limit_percent must be at least 100; resume_interval_ms, signer_timeout_ms, policy_timeout_ms and ledger_timeout_ms positive".into());
        }
        self.batch.validate()?;
        self.watch.validate()?;
        let mut bus = self.bus.clone();
        bus.service = SERVICE.to_owned();
        bus.schema = SERVICE.to_owned();
        bus.validate().map_err(|error| error.to_string())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail by panicking")]

    use awx_service_kit::config::Validate as _;

    use super::{NetworkSettings, SettlementSettings};

    fn network(faucet: bool, faucet_token: Option<awx_x402::Address>) -> NetworkSettings {
        NetworkSettings {
            network: "eip155:31337".into(),
            rpc_url: "http://127.0.0.1:8545".into(),
            receipt_wait_ms: 1_000,
            faucet,
            faucet_token,
            confirmations: 0,
            watch: Default::default(),
        }
    }

    #[test]
    fn the_defaults_are_valid_and_batch_as_documented() {
        let settings = SettlementSettings::default();
        settings.validate().unwrap();
        assert_eq!(settings.policy_timeout_ms, 5_000);
        assert_eq!(settings.rpc_timeout_ms, 10_000);
        assert_eq!(settings.batch.interval_seconds, 300);
        assert_eq!(settings.batch.threshold_usd, "10.00");
        assert_eq!(settings.batch.max_delay_seconds, 3_600);
    }

    #[test]
    fn a_faucet_needs_its_token() {
        let mut settings = SettlementSettings {
            networks: vec![network(true, None)],
            ..SettlementSettings::default()
        };
        assert!(settings.validate().unwrap_err().contains("faucet_token"));
        settings.networks = vec![network(true, Some(awx_x402::Address::repeat_byte(1)))];
        settings.validate().unwrap();
        settings.networks = vec![network(false, None)];
        settings.validate().unwrap();
    }

    #[test]
    fn batch_settings_are_checked() {
        for threshold in ["0", "ten", "-1", "0.0000001", ""] {
            let mut settings = SettlementSettings::default();
            settings.batch.threshold_usd = threshold.into();
            assert!(settings.validate().is_err(), "{threshold:?} was accepted");
        }
        let mut settings = SettlementSettings::default();
        settings.batch.interval_seconds = 0;
        assert!(settings.validate().is_err());
        let mut settings = SettlementSettings::default();
        settings.batch.max_delay_seconds = 0;
        assert!(settings.validate().is_err());
        let settings = SettlementSettings { policy_timeout_ms: 0, ..SettlementSettings::default() };
        assert!(settings.validate().is_err());
        let settings = SettlementSettings { rpc_timeout_ms: 0, ..SettlementSettings::default() };
        assert!(settings.validate().unwrap_err().contains("rpc_timeout_ms"));
        let mut settings = SettlementSettings::default();
        settings.batch.threshold_usd = "25".into();
        settings.validate().unwrap();
    }
}
