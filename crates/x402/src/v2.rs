//! x402 v2 wire types: `PaymentRequired`, `PaymentRequirements`, `ResourceInfo` and
//! `PaymentPayload`, with the exact JSON names of the specification.
//!
//! The fields that differ between schemes and chains (`scheme`, `network`, `amount`, `asset`,
//! `payTo`) are kept as the strings that arrived, so a challenge that also offers, say, Solana
//! still parses; typed views such as [`PaymentRequirements::exact_evm`] check them when needed.
//! Fields we do not know are kept in `other` and written back, and `extra` and `extensions` are
//! kept verbatim, so echoing a requirement as `accepted` never loses anything.

use alloy_primitives::{Address, U256};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::network::Network;
use crate::serde_util::{parse_address, parse_u256};

/// The protocol version these types describe.
pub const X402_VERSION: u32 = 2;

/// The scheme name of exact-amount payments.
pub const SCHEME_EXACT: &str = "exact";

/// A JSON object, as `extra` and `extensions` carry.
pub type JsonObject = Map<String, Value>;

/// What is being paid for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceInfo {
    /// The resource's URL.
    pub url: String,
    /// A human description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The media type of the paid response.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mime_type: Option<String>,
    /// Fields this version does not know (`serviceName`, `tags`, …), kept as they came.
    #[serde(flatten)]
    pub other: JsonObject,
}

impl ResourceInfo {
    /// A resource with only its URL.
    pub fn from_url(url: impl Into<String>) -> Self {
        Self { url: url.into(), description: None, mime_type: None, other: JsonObject::new() }
    }
}

/// One way to pay: an offer in a `PaymentRequired`, or the chosen one in `accepted`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentRequirements {
    /// The payment scheme (`exact`, `upto`, …).
    pub scheme: String,
    /// The CAIP-2 network (`eip155:8453`).
    pub network: String,
    /// The amount in the asset's atomic units, as a decimal integer string.
    pub amount: String,
    /// The asset: an ERC-20 contract address on EVM chains.
    pub asset: String,
    /// The recipient.
    pub pay_to: String,
    /// How long a signed payment for this offer may stay valid.
    pub max_timeout_seconds: u64,
    /// Scheme-specific data; for exact EVM the token's EIP-712 `name` and `version`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extra: Option<JsonObject>,
    /// Fields this version does not know, kept as they came.
    #[serde(flatten)]
    pub other: JsonObject,
}

/// A 402 challenge: the body of the `PAYMENT-REQUIRED` header.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentRequired {
    /// Always 2 for these types.
    pub x402_version: u32,
    /// Why payment is required (`"Payment required"`, or a verification failure).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// What is being paid for.
    pub resource: ResourceInfo,
    /// The ways the server accepts payment; at least one.
    pub accepts: Vec<PaymentRequirements>,
    /// Protocol extensions, kept verbatim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extensions: Option<JsonObject>,
    /// Fields this version does not know, kept as they came.
    #[serde(flatten)]
    pub other: JsonObject,
}

/// A signed payment: the body of the `PAYMENT-SIGNATURE` header.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentPayload {
    /// Always 2 for these types.
    pub x402_version: u32,
    /// The resource paid for, copied from the challenge.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<ResourceInfo>,
    /// The chosen offer, copied verbatim from the challenge's `accepts`.
    pub accepted: PaymentRequirements,
    /// The scheme's payload; see [`crate::ExactEvmPayload`] for exact EVM.
    pub payload: JsonObject,
    /// Protocol extensions, kept verbatim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extensions: Option<JsonObject>,
    /// Fields this version does not know, kept as they came.
    #[serde(flatten)]
    pub other: JsonObject,
}

/// An exact-scheme offer on an EVM chain, with its strings checked and typed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExactEvmOffer {
    /// The CAIP-2 network.
    pub network: Network,
    /// The EVM chain id from the network.
    pub chain_id: u64,
    /// The exact amount in atomic units.
    pub amount: U256,
    /// The token contract.
    pub asset: Address,
    /// The recipient.
    pub pay_to: Address,
    /// How long a signed payment may stay valid.
    pub max_timeout_seconds: u64,
    /// The token's EIP-712 domain name and version from `extra`, when both are present.
    pub domain: Option<TokenDomainNames>,
}

/// The EIP-712 `name` and `version` of a token, as carried in `extra`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenDomainNames {
    /// The domain name (`USD Coin`, or `USDC` on Base Sepolia).
    pub name: String,
    /// The domain version (`2` for USDC).
    pub version: String,
}

/// Why an offer is not an exact EVM offer we can work with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OfferError {
    /// The scheme is not `exact`.
    #[error("scheme `{0}` is not `exact`")]
    NotExact(String),
    /// The network is not an `eip155` CAIP-2 id.
    #[error("network `{0}` is not an EVM network")]
    NotEvm(String),
    /// The amount is not a `uint256` decimal string.
    #[error("amount `{0}` is not an atomic-unit integer")]
    Amount(String),
    /// The asset is not a contract address.
    #[error("asset `{0}` is not a token contract address")]
    Asset(String),
    /// The recipient is not an address.
    #[error("payTo `{0}` is not an address")]
    PayTo(String),
}

fn shorten(text: &str) -> String {
    text.chars().take(80).collect()
}

impl PaymentRequirements {
    /// The `extra.name` and `extra.version` strings, when both are present.
    pub fn domain_names(&self) -> Option<TokenDomainNames> {
        let extra = self.extra.as_ref()?;
        let name = extra.get("name")?.as_str()?;
        let version = extra.get("version")?.as_str()?;
        Some(TokenDomainNames { name: name.to_owned(), version: version.to_owned() })
    }

    /// Checks and types this offer as exact EVM.
    pub fn exact_evm(&self) -> Result<ExactEvmOffer, OfferError> {
        if self.scheme != SCHEME_EXACT {
            return Err(OfferError::NotExact(shorten(&self.scheme)));
        }
        let network = Network::parse_caip2(&self.network)
            .map_err(|_| OfferError::NotEvm(shorten(&self.network)))?;
        let chain_id =
            network.evm_chain_id().ok_or_else(|| OfferError::NotEvm(shorten(&self.network)))?;
        let amount = parse_u256(&self.amount)
            .filter(|_| self.amount.bytes().all(|b| b.is_ascii_digit()))
            .ok_or_else(|| OfferError::Amount(shorten(&self.amount)))?;
        let asset =
            parse_address(&self.asset).ok_or_else(|| OfferError::Asset(shorten(&self.asset)))?;
        let pay_to =
            parse_address(&self.pay_to).ok_or_else(|| OfferError::PayTo(shorten(&self.pay_to)))?;
        Ok(ExactEvmOffer {
            network,
            chain_id,
            amount,
            asset,
            pay_to,
            max_timeout_seconds: self.max_timeout_seconds,
            domain: self.domain_names(),
        })
    }
}

impl ExactEvmOffer {
    /// Writes this offer as wire requirements, with `extra` holding the domain names.
    pub fn to_requirements(&self) -> PaymentRequirements {
        let extra = self.domain.as_ref().map(|domain| {
            let mut extra = JsonObject::new();
            extra.insert("name".into(), Value::String(domain.name.clone()));
            extra.insert("version".into(), Value::String(domain.version.clone()));
            extra
        });
        PaymentRequirements {
            scheme: SCHEME_EXACT.to_owned(),
            network: self.network.to_string(),
            amount: self.amount.to_string(),
            asset: self.asset.to_checksum(None),
            pay_to: self.pay_to.to_checksum(None),
            max_timeout_seconds: self.max_timeout_seconds,
            extra,
            other: JsonObject::new(),
        }
    }
}
