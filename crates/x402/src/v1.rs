//! x402 v1 (legacy) wire types, read when a server or client still speaks v1, and their
//! conversion to the v2 shapes every other part of awx works with.
//!
//! v1 differs from v2 in: a JSON 402 body instead of a header, `maxAmountRequired` instead of
//! `amount`, network names (`base-sepolia`) instead of CAIP-2 ids, the resource inside each
//! requirement, and a payload with `scheme` and `network` at top level instead of `accepted`.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::network::Network;
use crate::v2::{JsonObject, PaymentPayload, PaymentRequired, PaymentRequirements, ResourceInfo};

/// The protocol version these types describe.
pub const X402_VERSION_1: u32 = 1;

/// A v1 offer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentRequirementsV1 {
    /// The payment scheme.
    pub scheme: String,
    /// A v1 network name (`base-sepolia`).
    pub network: String,
    /// The amount in atomic units.
    pub max_amount_required: String,
    /// The token contract address.
    pub asset: String,
    /// The recipient.
    pub pay_to: String,
    /// The resource URL.
    pub resource: String,
    /// A human description.
    #[serde(default)]
    pub description: String,
    /// The media type of the paid response.
    #[serde(default)]
    pub mime_type: String,
    /// A JSON schema of the response, if the server gives one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_schema: Option<Value>,
    /// How long a signed payment may stay valid.
    pub max_timeout_seconds: u64,
    /// Scheme-specific data; for exact EVM the token's EIP-712 `name` and `version`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extra: Option<JsonObject>,
    /// Fields this version does not know, kept as they came.
    #[serde(flatten)]
    pub other: JsonObject,
}

/// A v1 402 body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentRequiredV1 {
    /// Always 1.
    pub x402_version: u32,
    /// Why payment is required.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The offers.
    pub accepts: Vec<PaymentRequirementsV1>,
    /// Fields this version does not know, kept as they came.
    #[serde(flatten)]
    pub other: JsonObject,
}

/// A v1 signed payment (the `X-PAYMENT` header).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentPayloadV1 {
    /// Always 1.
    pub x402_version: u32,
    /// The payment scheme.
    pub scheme: String,
    /// A v1 network name.
    pub network: String,
    /// The scheme's payload (the same EIP-3009 shape as v2).
    pub payload: JsonObject,
    /// Fields this version does not know, kept as they came.
    #[serde(flatten)]
    pub other: JsonObject,
}

/// Why a v1 value has no v2 equivalent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum V1Error {
    /// The v1 network name is not known.
    #[error("unknown v1 network `{0}`")]
    UnknownNetwork(String),
}

/// The CAIP-2 id of a v1 network name; a CAIP-2 id is passed through.
fn caip2_of(name: &str) -> Result<String, V1Error> {
    Network::parse_lenient(name)
        .map(|network| network.to_string())
        .map_err(|_| V1Error::UnknownNetwork(name.chars().take(64).collect()))
}

impl PaymentRequirementsV1 {
    /// The v2 form of this offer.
    pub fn to_v2(&self) -> Result<PaymentRequirements, V1Error> {
        Ok(PaymentRequirements {
            scheme: self.scheme.clone(),
            network: caip2_of(&self.network)?,
            amount: self.max_amount_required.clone(),
            asset: self.asset.clone(),
            pay_to: self.pay_to.clone(),
            max_timeout_seconds: self.max_timeout_seconds,
            extra: self.extra.clone(),
            other: JsonObject::new(),
        })
    }

    /// The v2 resource of this offer.
    pub fn resource_info(&self) -> ResourceInfo {
        let non_empty = |text: &str| (!text.is_empty()).then(|| text.to_owned());
        ResourceInfo {
            url: self.resource.clone(),
            description: non_empty(&self.description),
            mime_type: non_empty(&self.mime_type),
            other: JsonObject::new(),
        }
    }
}

impl PaymentRequiredV1 {
    /// The v2 form of this challenge. Offers on unknown networks are dropped (nobody here could
    /// pay them); the resource is the first offer's. `None` when no offer is left.
    pub fn to_v2(&self) -> Option<PaymentRequired> {
        let resource = self.accepts.first()?.resource_info();
        let accepts: Vec<_> = self.accepts.iter().filter_map(|offer| offer.to_v2().ok()).collect();
        if accepts.is_empty() {
            return None;
        }
        Some(PaymentRequired {
            x402_version: crate::v2::X402_VERSION,
            error: self.error.clone(),
            resource,
            accepts,
            extensions: None,
            other: JsonObject::new(),
        })
    }
}

impl PaymentPayloadV1 {
    /// The v2 form of this payment, given the offer it pays (v1 payloads do not carry it).
    pub fn to_v2(&self, accepted: PaymentRequirements) -> PaymentPayload {
        PaymentPayload {
            x402_version: self.x402_version,
            resource: None,
            accepted,
            payload: self.payload.clone(),
            extensions: None,
            other: JsonObject::new(),
        }
    }

    /// The CAIP-2 network of this payment.
    pub fn network_caip2(&self) -> Result<String, V1Error> {
        caip2_of(&self.network)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC_V1_REQUIREMENTS: &str = r#"{"scheme":"exact","network":"base-sepolia","maxAmountRequired":"10000","asset":"0x036CbD53842c5426634e7929541eC2318f3dCF7e","payTo":"0x209693Bc6afc0C5328bA36FaF03C514EF312287C","resource":"https://api.example.com/premium-data","description":"Access to premium market data","mimeType":"application/json","outputSchema":null,"maxTimeoutSeconds":60,"extra":{"name":"USDC","version":"2"}}"#;

    #[test]
    fn v1_requirements_convert_to_v2() {
        let v1: PaymentRequirementsV1 = serde_json::from_str(SPEC_V1_REQUIREMENTS).unwrap();
        let v2 = v1.to_v2().unwrap();
        assert_eq!(v2.network, "eip155:84532");
        assert_eq!(v2.amount, "10000");
        let offer = v2.exact_evm().unwrap();
        assert_eq!(offer.chain_id, 84_532);
        assert_eq!(offer.domain.unwrap().name, "USDC");
        let resource = v1.resource_info();
        assert_eq!(resource.url, "https://api.example.com/premium-data");
        assert_eq!(resource.mime_type.as_deref(), Some("application/json"));
    }

    #[test]
    fn v1_challenge_drops_unknown_networks() {
        let body = format!(
            r#"{{"x402Version":1,"error":"X-PAYMENT header is required","accepts":[{SPEC_V1_REQUIREMENTS},{}]}}"#,
            SPEC_V1_REQUIREMENTS.replace("base-sepolia", "narnia")
        );
        let v1: PaymentRequiredV1 = serde_json::from_str(&body).unwrap();
        let v2 = v1.to_v2().unwrap();
        assert_eq!(v2.accepts.len(), 1);
        assert_eq!(v2.resource.url, "https://api.example.com/premium-data");
    }
}
