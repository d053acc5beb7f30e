//! The facilitator's request and response shapes as the OpenAPI document shows them: x402 v2,
//! the `exact` scheme on EVM chains. Documentation only: the handlers read and write the
//! protocol crate's own types (`awx_x402::FacilitatorRequest`, `VerifyResponse`,
//! `SettleResponse`), which carry no OpenAPI derive. The tests below check that the documented
//! shape reads as the protocol's type, so the two cannot drift apart unnoticed. A v1 request
//! (`x402Version: 1`, v1 requirements) is accepted too, as the v1 specification writes it.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// `POST /verify` and `POST /settle`: the payment and the requirements it answers.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = FacilitatorRequest)]
pub struct FacilitatorRequestDoc {
    /// The protocol version of the request (2; 1 for a v1 payload).
    #[schema(minimum = 1, maximum = 2)]
    pub x402_version: u32,
    /// The client's payment (the decoded `PAYMENT-SIGNATURE` header).
    pub payment_payload: PaymentPayloadDoc,
    /// What the resource server asks for: the offer the payment must match.
    pub payment_requirements: PaymentRequirementsDoc,
}

/// An offer: scheme, network, amount and asset, and who is paid.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = PaymentRequirements)]
pub struct PaymentRequirementsDoc {
    /// `exact`.
    #[schema(example = "exact")]
    pub scheme: String,
    /// The CAIP-2 network (`eip155:8453`).
    #[schema(pattern = "^eip155:[0-9]{1,20}$", example = "eip155:84532")]
    pub network: String,
    /// The amount in the asset's atomic units (a decimal integer).
    #[schema(pattern = "^[0-9]{1,78}$", example = "10000")]
    pub amount: String,
    /// The token contract.
    #[schema(pattern = "^0x[0-9a-fA-F]{40}$")]
    pub asset: String,
    /// Who is paid.
    #[schema(pattern = "^0x[0-9a-fA-F]{40}$")]
    pub pay_to: String,
    /// How long an authorization for this offer may stay valid.
    #[schema(minimum = 0)]
    pub max_timeout_seconds: u64,
    /// Scheme-specific: for `exact` on EVM, the token's EIP-712 `name` and `version`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extra: Option<serde_json::Map<String, serde_json::Value>>,
}

/// The resource a payment is for.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = ResourceInfo)]
pub struct ResourceInfoDoc {
    /// The URL.
    pub url: String,
    /// What it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Its media type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mime_type: Option<String>,
}

/// A client's payment: the offer it accepted and the signed authorization.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = PaymentPayload)]
pub struct PaymentPayloadDoc {
    /// 2 (1 for a v1 payload, whose fields are the v1 specification's).
    #[schema(minimum = 1, maximum = 2)]
    pub x402_version: u32,
    /// The resource paid for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<ResourceInfoDoc>,
    /// The offer the client accepted.
    pub accepted: PaymentRequirementsDoc,
    /// The scheme's payload: for `exact` on EVM, the signature and the EIP-3009 authorization.
    pub payload: ExactEvmPayloadDoc,
    /// Protocol extensions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extensions: Option<serde_json::Map<String, serde_json::Value>>,
}

/// The `exact` scheme's payload on EVM chains.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[schema(as = ExactEvmPayload)]
pub struct ExactEvmPayloadDoc {
    /// The signature of the authorization (65 bytes for an externally owned account; longer for
    /// a smart wallet).
    #[schema(pattern = "^0x([0-9a-fA-F]{2})*$")]
    pub signature: String,
    /// The EIP-3009 `transferWithAuthorization` it signs.
    pub authorization: AuthorizationDoc,
}

/// An EIP-3009 transfer authorization.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = Eip3009Authorization)]
pub struct AuthorizationDoc {
    /// The payer.
    #[schema(pattern = "^0x[0-9a-fA-F]{40}$")]
    pub from: String,
    /// The payee.
    #[schema(pattern = "^0x[0-9a-fA-F]{40}$")]
    pub to: String,
    /// The amount in atomic units.
    #[schema(pattern = "^[0-9]{1,78}$")]
    pub value: String,
    /// Valid after this Unix time (seconds).
    #[schema(pattern = "^[0-9]{1,20}$")]
    pub valid_after: String,
    /// Valid before this Unix time (seconds).
    #[schema(pattern = "^[0-9]{1,20}$")]
    pub valid_before: String,
    /// A random 32-byte nonce.
    #[schema(pattern = "^0x[0-9a-fA-F]{64}$")]
    pub nonce: String,
}

/// The answer of `POST /verify`: an invalid payment is `isValid: false` with the reason.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = VerifyResponse)]
pub struct VerifyResponseDoc {
    /// Whether the payment would settle.
    pub is_valid: bool,
    /// Why not (the protocol's reason codes, such as `invalid_exact_evm_payload_signature`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invalid_reason: Option<String>,
    /// A human-readable detail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invalid_message: Option<String>,
    /// The payer, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payer: Option<String>,
    /// Protocol extensions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extensions: Option<serde_json::Map<String, serde_json::Value>>,
}

/// The answer of `POST /settle`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = SettleResponse)]
pub struct SettleResponseDoc {
    /// Whether the payment is settled.
    pub success: bool,
    /// The transaction hash (empty when nothing was sent).
    pub transaction: String,
    /// The CAIP-2 network.
    pub network: String,
    /// The payer, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payer: Option<String>,
    /// Why not (`settlement_pending` with a hash: settle again to follow it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_reason: Option<String>,
    /// A human-readable detail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
    /// Protocol extensions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extensions: Option<serde_json::Map<String, serde_json::Value>>,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail by panicking")]

    use super::*;

    fn requirements() -> PaymentRequirementsDoc {
        PaymentRequirementsDoc {
            scheme: "exact".into(),
            network: "eip155:84532".into(),
            amount: "10000".into(),
            asset: format!("0x{}", "11".repeat(20)),
            pay_to: format!("0x{}", "22".repeat(20)),
            max_timeout_seconds: 60,
            extra: Some(serde_json::from_str(r#"{"name":"USDC","version":"2"}"#).unwrap()),
        }
    }

    #[test]
    fn the_documented_request_reads_as_the_protocols_request() {
        let request = FacilitatorRequestDoc {
            x402_version: 2,
            payment_payload: PaymentPayloadDoc {
                x402_version: 2,
                resource: Some(ResourceInfoDoc {
                    url: "https://api.example/paid".into(),
                    description: None,
                    mime_type: None,
                }),
                accepted: requirements(),
                payload: ExactEvmPayloadDoc {
                    signature: format!("0x{}", "ab".repeat(65)),
                    authorization: AuthorizationDoc {
                        from: format!("0x{}", "33".repeat(20)),
                        to: format!("0x{}", "22".repeat(20)),
                        value: "10000".into(),
                        valid_after: "0".into(),
                        valid_before: "4000000000".into(),
                        nonce: format!("0x{}", "44".repeat(32)),
                    },
                },
                extensions: None,
            },
            payment_requirements: requirements(),
        };
        let json = serde_json::to_string(&request).unwrap();
        let read: awx_x402::FacilitatorRequest = serde_json::from_str(&json).unwrap();
        let normalized = read.normalize().unwrap();
        let back = serde_json::to_value(&normalized.requirements).unwrap();
        assert_eq!(back["payTo"], request.payment_requirements.pay_to);
        assert_eq!(back["amount"], "10000");
    }

    #[test]
    fn the_documented_answers_are_the_protocols_answers() {
        let verify = serde_json::json!({
            "isValid": false, "invalidReason": "invalid_exact_evm_payload_signature",
            "invalidMessage": "the signature is not the payer's",
            "payer": format!("0x{}", "33".repeat(20)),
        });
        let protocol: awx_x402::VerifyResponse = serde_json::from_value(verify.clone()).unwrap();
        let doc: VerifyResponseDoc =
            serde_json::from_value(serde_json::to_value(&protocol).unwrap()).unwrap();
        assert!(!doc.is_valid);
        assert_eq!(serde_json::to_value(&doc).unwrap(), verify);
        let settle = serde_json::json!({
            "success": true, "transaction": format!("0x{}", "55".repeat(32)),
            "network": "eip155:84532", "payer": format!("0x{}", "33".repeat(20)),
        });
        let protocol: awx_x402::SettleResponse = serde_json::from_value(settle.clone()).unwrap();
        let doc: SettleResponseDoc =
            serde_json::from_value(serde_json::to_value(&protocol).unwrap()).unwrap();
        assert!(doc.success);
        assert_eq!(serde_json::to_value(&doc).unwrap(), settle);
    }
}
