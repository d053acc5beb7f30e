//! The facilitator protocol: `/verify` and `/settle` requests and responses, and `/supported`.
//!
//! Both versions arrive in the same envelope `{x402Version, paymentPayload, paymentRequirements}`;
//! as the reference facilitator does, the version is taken from `paymentPayload.x402Version`
//! and a missing top-level `x402Version` is accepted. [`FacilitatorRequest::normalize`] turns a
//! v1 request into the v2 shapes, so verification has one code path.

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::reason::ErrorReason;
use crate::v1::{PaymentPayloadV1, PaymentRequirementsV1, X402_VERSION_1};
use crate::v2::{JsonObject, PaymentPayload, PaymentRequirements, X402_VERSION};

/// The body of `POST /verify` and `POST /settle`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FacilitatorRequest {
    /// A copy of `paymentPayload.x402Version`; optional on input.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x402_version: Option<u32>,
    /// The client's payment, v1 or v2.
    pub payment_payload: Value,
    /// The server's matched requirements, in the payload's version.
    pub payment_requirements: Value,
}

/// A verify or settle request in v2 shapes, whichever version it came in.
#[derive(Debug, Clone, PartialEq)]
pub struct NormalizedRequest {
    /// The version the payment was made in (1 or 2).
    pub x402_version: u32,
    /// The payment; for v1, `accepted` is built from the requirements with the payload's own
    /// scheme and network, so the scheme and network checks still compare the two.
    pub payload: PaymentPayload,
    /// The server's requirements.
    pub requirements: PaymentRequirements,
}

/// Why a facilitator request cannot be read at all (a 400, not an `isValid: false`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// `paymentPayload.x402Version` is missing or not 1 or 2.
    #[error("paymentPayload.x402Version must be 1 or 2")]
    UnsupportedVersion,
    /// A field is missing or has the wrong type.
    #[error("invalid `{path}`: {message}")]
    Invalid {
        /// The JSON path of the field, such as `paymentPayload.accepted.amount`.
        path: String,
        /// What is wrong with it.
        message: String,
    },
}

/// Deserializes `value`, reporting the path of the first bad field under `root`.
pub(crate) fn from_value_at<T: DeserializeOwned>(
    value: &Value,
    root: &str,
) -> Result<T, RequestError> {
    serde_path_to_error::deserialize(value).map_err(|error| {
        let inner = error.path().to_string();
        let mut path = if inner == "." { root.to_owned() } else { format!("{root}.{inner}") };
        let message = error.into_inner().to_string();
        // serde reports a missing field at its parent; name the field itself.
        if let Some(missing) =
            message.strip_prefix("missing field `").and_then(|rest| rest.split('`').next())
        {
            path = format!("{path}.{missing}");
        }
        RequestError::Invalid { path, message }
    })
}

impl FacilitatorRequest {
    /// A v2 request.
    pub fn v2(payload: &PaymentPayload, requirements: &PaymentRequirements) -> Self {
        Self {
            x402_version: Some(payload.x402_version),
            payment_payload: serde_json::to_value(payload).unwrap_or(Value::Null),
            payment_requirements: serde_json::to_value(requirements).unwrap_or(Value::Null),
        }
    }

    /// Reads the payload and requirements in their version and converts them to v2 shapes.
    pub fn normalize(&self) -> Result<NormalizedRequest, RequestError> {
        let version = self.payment_payload.get("x402Version").and_then(Value::as_u64);
        match version {
            Some(2) => Ok(NormalizedRequest {
                x402_version: X402_VERSION,
                payload: from_value_at(&self.payment_payload, "paymentPayload")?,
                requirements: from_value_at(&self.payment_requirements, "paymentRequirements")?,
            }),
            Some(1) => {
                let payload: PaymentPayloadV1 =
                    from_value_at(&self.payment_payload, "paymentPayload")?;
                let requirements: PaymentRequirementsV1 =
                    from_value_at(&self.payment_requirements, "paymentRequirements")?;
                let invalid_network = |path: &str, error: crate::v1::V1Error| {
                    RequestError::Invalid { path: path.to_owned(), message: error.to_string() }
                };
                let requirements_v2 = requirements
                    .to_v2()
                    .map_err(|error| invalid_network("paymentRequirements.network", error))?;
                let mut accepted = requirements_v2.clone();
                accepted.scheme.clone_from(&payload.scheme);
                accepted.network = payload
                    .network_caip2()
                    .map_err(|error| invalid_network("paymentPayload.network", error))?;
                let mut payload_v2 = payload.to_v2(accepted);
                payload_v2.resource = Some(requirements.resource_info());
                Ok(NormalizedRequest {
                    x402_version: X402_VERSION_1,
                    payload: payload_v2,
                    requirements: requirements_v2,
                })
            }
            _ => Err(RequestError::UnsupportedVersion),
        }
    }
}

/// The answer to `POST /verify`. A business failure is `isValid: false` with HTTP 200.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VerifyResponse {
    /// Whether the payment would settle.
    pub is_valid: bool,
    /// Why not, when invalid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invalid_reason: Option<ErrorReason>,
    /// A human explanation, when invalid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invalid_message: Option<String>,
    /// The paying address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payer: Option<String>,
    /// Protocol extensions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extensions: Option<JsonObject>,
    /// Fields this version does not know.
    #[serde(flatten)]
    pub other: JsonObject,
}

impl VerifyResponse {
    /// A valid payment by `payer`.
    pub fn valid(payer: impl Into<String>) -> Self {
        Self {
            is_valid: true,
            invalid_reason: None,
            invalid_message: None,
            payer: Some(payer.into()),
            extensions: None,
            other: JsonObject::new(),
        }
    }

    /// An invalid payment.
    pub fn invalid(reason: ErrorReason, message: impl Into<String>, payer: Option<String>) -> Self {
        Self {
            is_valid: false,
            invalid_reason: Some(reason),
            invalid_message: Some(message.into()),
            payer,
            extensions: None,
            other: JsonObject::new(),
        }
    }
}

/// The answer to `POST /settle`, and the body of the `PAYMENT-RESPONSE` header.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SettleResponse {
    /// Whether the payment was settled (or, for deferred settlement, accepted for settlement).
    pub success: bool,
    /// Why not, when it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_reason: Option<ErrorReason>,
    /// A human explanation, when it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
    /// The transaction hash; empty when nothing was sent (or settlement is deferred).
    #[serde(default)]
    pub transaction: String,
    /// The CAIP-2 network.
    pub network: String,
    /// The paying address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payer: Option<String>,
    /// The settled amount in atomic units (`upto` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount: Option<String>,
    /// Protocol extensions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extensions: Option<JsonObject>,
    /// Fields this version does not know.
    #[serde(flatten)]
    pub other: JsonObject,
}

impl SettleResponse {
    /// A settled payment.
    pub fn settled(
        transaction: impl Into<String>,
        network: impl Into<String>,
        payer: impl Into<String>,
    ) -> Self {
        Self {
            success: true,
            error_reason: None,
            error_message: None,
            transaction: transaction.into(),
            network: network.into(),
            payer: Some(payer.into()),
            amount: None,
            extensions: None,
            other: JsonObject::new(),
        }
    }

    /// A failed settlement; `transaction` is the hash when a transaction was sent.
    pub fn failed(failure: SettleFailure) -> Self {
        Self {
            success: false,
            error_reason: Some(failure.reason),
            error_message: Some(failure.message),
            transaction: failure.transaction,
            network: failure.network,
            payer: failure.payer,
            amount: None,
            extensions: None,
            other: JsonObject::new(),
        }
    }
}

/// What a failed [`SettleResponse`] says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettleFailure {
    /// The reason string.
    pub reason: ErrorReason,
    /// A human explanation.
    pub message: String,
    /// The paying address, when known.
    pub payer: Option<String>,
    /// The transaction hash, or empty.
    pub transaction: String,
    /// The CAIP-2 network.
    pub network: String,
}

/// One payment kind a facilitator supports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SupportedKind {
    /// The protocol version.
    pub x402_version: u32,
    /// The scheme.
    pub scheme: String,
    /// A concrete network: CAIP-2 for v2, a v1 name for v1.
    pub network: String,
    /// Scheme-specific data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extra: Option<JsonObject>,
}

/// The answer to `GET /supported`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SupportedResponse {
    /// Every supported (version, scheme, network).
    pub kinds: Vec<SupportedKind>,
    /// The extension keys implemented.
    #[serde(default)]
    pub extensions: Vec<String>,
    /// Signer addresses by CAIP family pattern (`"eip155:*"`).
    #[serde(default)]
    pub signers: BTreeMap<String, Vec<String>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    const V2_REQUEST: &str = r#"{"x402Version":2,"paymentPayload":{"x402Version":2,"payload":{"signature":"0x01","authorization":{"from":"0x857b06519E91e3A54538791bDbb0E22373e36b66","to":"0x209693Bc6afc0C5328bA36FaF03C514EF312287C","value":"1000","validAfter":"0","validBefore":"1740672154","nonce":"0xf3746613c2d920b5fdabc0856f2aeb2d4f88ee6037b8cc5d04a71a4462f13480"}},"resource":{"url":"http://127.0.0.1:4021/paid","description":"paid test endpoint","mimeType":"application/json"},"accepted":{"scheme":"exact","network":"eip155:31337","amount":"1000","asset":"0x5FbDB2315678afecb367f032d93F642f64180aa3","payTo":"0x209693Bc6afc0C5328bA36FaF03C514EF312287C","maxTimeoutSeconds":60,"extra":{"name":"TestUSD","version":"1"}}},"paymentRequirements":{"scheme":"exact","network":"eip155:31337","amount":"1000","asset":"0x5FbDB2315678afecb367f032d93F642f64180aa3","payTo":"0x209693Bc6afc0C5328bA36FaF03C514EF312287C","maxTimeoutSeconds":60,"extra":{"name":"TestUSD","version":"1"}}}"#;

    #[test]
    fn reads_a_v2_request_with_or_without_top_level_version() {
        let request: FacilitatorRequest = serde_json::from_str(V2_REQUEST).unwrap();
        let normalized = request.normalize().unwrap();
        assert_eq!(normalized.x402_version, 2);
        assert_eq!(normalized.requirements.amount, "1000");
        let mut without: Value = serde_json::from_str(V2_REQUEST).unwrap();
        without.as_object_mut().unwrap().remove("x402Version");
        let request: FacilitatorRequest = serde_json::from_value(without).unwrap();
        assert_eq!(request.normalize().unwrap(), normalized);
    }

    #[test]
    fn reads_a_v1_request() {
        let body = r#"{"x402Version":1,"paymentPayload":{"x402Version":1,"scheme":"exact","network":"base-sepolia","payload":{"signature":"0x01","authorization":{}}},"paymentRequirements":{"scheme":"exact","network":"base-sepolia","maxAmountRequired":"10000","asset":"0x036CbD53842c5426634e7929541eC2318f3dCF7e","payTo":"0x209693Bc6afc0C5328bA36FaF03C514EF312287C","resource":"https://api.example.com/premium-data","maxTimeoutSeconds":60,"extra":{"name":"USDC","version":"2"}}}"#;
        let request: FacilitatorRequest = serde_json::from_str(body).unwrap();
        let normalized = request.normalize().unwrap();
        assert_eq!(normalized.x402_version, 1);
        assert_eq!(normalized.payload.accepted.network, "eip155:84532");
        assert_eq!(normalized.requirements.amount, "10000");
        assert_eq!(
            normalized.payload.resource.unwrap().url,
            "https://api.example.com/premium-data"
        );
    }

    #[test]
    fn names_the_bad_field() {
        let mut body: Value = serde_json::from_str(V2_REQUEST).unwrap();
        body["paymentPayload"]["accepted"]["maxTimeoutSeconds"] = Value::String("sixty".into());
        let request: FacilitatorRequest = serde_json::from_value(body).unwrap();
        match request.normalize() {
            Err(RequestError::Invalid { path, .. }) => {
                assert_eq!(path, "paymentPayload.accepted.maxTimeoutSeconds");
            }
            other => panic!("unexpected {other:?}"),
        }
        let mut body: Value = serde_json::from_str(V2_REQUEST).unwrap();
        body["paymentRequirements"].as_object_mut().unwrap().remove("payTo");
        let request: FacilitatorRequest = serde_json::from_value(body).unwrap();
        match request.normalize() {
            Err(RequestError::Invalid { path, .. }) => {
                assert_eq!(path, "paymentRequirements.payTo")
            }
            other => panic!("unexpected {other:?}"),
        }
        let mut body: Value = serde_json::from_str(V2_REQUEST).unwrap();
        body["paymentPayload"]["x402Version"] = Value::from(3);
        let request: FacilitatorRequest = serde_json::from_value(body).unwrap();
        assert_eq!(request.normalize(), Err(RequestError::UnsupportedVersion));
    }

    #[test]
    fn responses_use_the_wire_names() {
        let valid = VerifyResponse::valid("0x857b06519E91e3A54538791bDbb0E22373e36b66");
        assert_eq!(
            serde_json::to_string(&valid).unwrap(),
            r#"{"isValid":true,"payer":"0x857b06519E91e3A54538791bDbb0E22373e36b66"}"#
        );
        let failed = SettleResponse::failed(SettleFailure {
            reason: ErrorReason::InsufficientFunds,
            message: "balance too low".into(),
            payer: None,
            transaction: String::new(),
            network: "eip155:84532".into(),
        });
        assert_eq!(
            serde_json::to_string(&failed).unwrap(),
            r#"{"success":false,"errorReason":"insufficient_funds","errorMessage":"balance too low","transaction":"","network":"eip155:84532"}"#
        );
        let supported: SupportedResponse = serde_json::from_str(r#"{"kinds":[]}"#).unwrap();
        assert!(supported.extensions.is_empty() && supported.signers.is_empty());
    }
}
