//! The signer service's settings (`AWX_SIGNER__…`; see `awx_service_kit::config`).
//!
//! The key-encryption key is not a setting: it comes from the environment variable
//! `AWX_SIGNER_KEK` or from the file named by `kek_file` (see [`crate::kek`]). The policy
//! service's decision key is not one either: only its public key is (`decision_public_key_hex`).

use std::collections::BTreeMap;
use std::path::PathBuf;

use alloy::primitives::Address;
use awx_service_kit::config::Validate;
use awx_service_kit::db::DatabaseSettings;
use awx_service_kit::telemetry::TelemetrySettings;
use serde::Deserialize;

use crate::contracts::chain_id_of;
use crate::local::RELAYER_COUNT_MAX;

/// The signer's service name on the bus, and its Postgres schema.
pub const SERVICE: &str = "signer";

/// The largest calldata a signer accepts (Ethereum nodes' transaction pool limit is 128 KiB
/// for the whole transaction).
pub const INPUT_BYTES_LIMIT: usize = 1 << 20;

/// Everything the signer can be configured with. It listens on no port: there is no address to
/// configure.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SignerSettings {
    /// Postgres.
    pub database: DatabaseSettings,
    /// Redis and the bus (the service and schema are the signer's own).
    pub bus: awx_bus::BusConfig,
    /// A file holding the key-encryption key (64 hex characters), when `AWX_SIGNER_KEK` is not
    /// set. Exactly one of the two must be.
    pub kek_file: Option<PathBuf>,
    /// How many relayer keys exist at least; missing ones are created at start.
    pub relayer_count: u16,
    /// Per network (`eip155:<chain id>`), the contracts relayers may call. More may be allowed
    /// at run time (`SignerService::allow_contract`), in this process only.
    pub allowed_contracts: BTreeMap<String, Vec<Address>>,
    /// The largest gas limit a transaction may have.
    pub gas_limit_max: u64,
    /// The largest fee cap per gas (wei) a transaction may have: a guard against a caller's
    /// mistake draining a relayer. (A `u64`: the configuration layers cannot carry a `u128`.)
    pub max_fee_per_gas_max_wei: u64,
    /// The largest calldata a transaction may have, in bytes.
    pub input_bytes_max: usize,
    /// The policy service's decision public key (Ed25519, 64 hex characters, with or without
    /// `0x`; `AWX_SIGNER__DECISION_PUBLIC_KEY_HEX`). Without it every `SignAuthorization` is
    /// refused (`decision_invalid`): the signer signs no authorization without a decision.
    pub decision_public_key_hex: Option<String>,
    /// Logs and traces.
    pub telemetry: TelemetrySettings,
}

impl Default for SignerSettings {
    fn default() -> Self {
        Self {
            database: DatabaseSettings::default(),
            bus: awx_bus::BusConfig::new(SERVICE, SERVICE),
            kek_file: None,
            relayer_count: 1,
            allowed_contracts: BTreeMap::new(),
            gas_limit_max: 30_000_000,
            // 10,000 gwei.
            max_fee_per_gas_max_wei: 10_000_000_000_000,
            input_bytes_max: 128 * 1024,
            decision_public_key_hex: None,
            telemetry: TelemetrySettings::default(),
        }
    }
}

impl Validate for SignerSettings {
    fn validate(&self) -> Result<(), String> {
        if self.relayer_count == 0 || self.relayer_count > RELAYER_COUNT_MAX {
            return Err(format!("relayer_count must be 1 to {RELAYER_COUNT_MAX}"));
        }
        if self.gas_limit_max == 0 {
            return Err("gas_limit_max must be positive".into());
        }
        if self.max_fee_per_gas_max_wei == 0 {
            return Err("max_fee_per_gas_max_wei must be positive".into());
        }
        if self.input_bytes_max == 0 || self.input_bytes_max > INPUT_BYTES_LIMIT {
            return Err(format!("input_bytes_max must be 1 to {INPUT_BYTES_LIMIT}"));
        }
        for (network, contracts) in &self.allowed_contracts {
            chain_id_of(network).map_err(|error| format!("allowed_contracts: {error}"))?;
            if contracts.iter().any(|contract| contract.is_zero()) {
                return Err(format!("allowed_contracts.\"{network}\" lists the zero address"));
            }
        }
        if let Some(hex) = &self.decision_public_key_hex {
            awx_decision::DecisionVerifier::from_public_key_hex(hex)
                .map_err(|error| format!("decision_public_key_hex: {error}"))?;
        }
        let mut bus = self.bus.clone();
        bus.service = SERVICE.to_owned();
        bus.schema = SERVICE.to_owned();
        bus.validate().map_err(|error| error.to_string())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail by panicking")]

    use super::*;

    #[test]
    fn defaults_are_valid_and_unknown_fields_refused() {
        SignerSettings::default().validate().unwrap();
        let error = serde_json::from_str::<SignerSettings>(r#"{"ops_addr": "127.0.0.1:0"}"#)
            .unwrap_err()
            .to_string();
        assert!(error.contains("ops_addr"), "{error}");
    }

    #[test]
    fn a_toml_file_is_read_by_the_service_kit() {
        let path = std::env::temp_dir().join(format!("awx-signer-{}.toml", uuid::Uuid::new_v4()));
        std::fs::write(
            &path,
            "relayer_count = 2\nkek_file = \"/run/secrets/awx-kek\"\n\
             max_fee_per_gas_max_wei = 500000000000000\n\
             [allowed_contracts]\n\
             \"eip155:8453\" = [\"0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913\"]\n",
        )
        .unwrap();
        let loaded = awx_service_kit::config::load::<SignerSettings>(SERVICE, Some(&path));
        let _ = std::fs::remove_file(&path);
        let settings = loaded.unwrap();
        assert_eq!(settings.relayer_count, 2);
        assert_eq!(
            settings.kek_file.as_deref(),
            Some(std::path::Path::new("/run/secrets/awx-kek"))
        );
        assert_eq!(settings.max_fee_per_gas_max_wei, 500_000_000_000_000);
        let usdc: Address = "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913".parse().unwrap();
        assert_eq!(settings.allowed_contracts["eip155:8453"], vec![usdc]);
        assert_eq!(settings.gas_limit_max, 30_000_000, "defaults fill the rest");
    }

    #[test]
    fn allowed_contracts_are_read_and_checked() {
        let settings: SignerSettings = serde_json::from_str(
            r#"{"allowed_contracts": {"eip155:8453": ["0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913"]},
                "relayer_count": 3}"#,
        )
        .unwrap();
        settings.validate().unwrap();
        assert_eq!(settings.relayer_count, 3);
        assert_eq!(settings.allowed_contracts["eip155:8453"].len(), 1);

        let mut bad = settings.clone();
        bad.allowed_contracts.insert("base".into(), vec![]);
        assert!(bad.validate().unwrap_err().contains("allowed_contracts"));
        let mut bad = settings.clone();
        bad.allowed_contracts.insert("eip155:1".into(), vec![Address::ZERO]);
        assert!(bad.validate().unwrap_err().contains("zero address"));
        let mut bad = settings;
        bad.relayer_count = 0;
        assert!(bad.validate().unwrap_err().contains("relayer_count"));
    }

    #[test]
    fn the_decision_public_key_is_checked_at_load() {
        let public = awx_decision::DecisionKey::generate().public_key_hex();
        let settings: SignerSettings =
            serde_json::from_value(serde_json::json!({ "decision_public_key_hex": public }))
                .unwrap();
        settings.validate().unwrap();
        assert_eq!(settings.decision_public_key_hex.as_deref(), Some(public.as_str()));
        let prefixed = SignerSettings {
            decision_public_key_hex: Some(format!("0x{public}")),
            ..SignerSettings::default()
        };
        prefixed.validate().unwrap();
        for bad in [&public[..63], "zz", ""] {
            let settings = SignerSettings {
                decision_public_key_hex: Some(bad.to_owned()),
                ..SignerSettings::default()
            };
            let error = settings.validate().unwrap_err();
            assert!(error.contains("decision_public_key_hex"), "{error}");
        }
    }
}
