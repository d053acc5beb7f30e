//! The exact-EVM `payload` of a `PaymentPayload`: an EIP-3009 authorization with its signature,
//! or (recognised and parsed, not settled by us) a Permit2 authorization.

use alloy_primitives::{Address, B256, Bytes, U256};
use serde::{Deserialize, Serialize};

use crate::serde_util::{address_checksummed, u256_decimal};
use crate::v2::JsonObject;

/// The EIP-3009 `TransferWithAuthorization` message, as x402 carries it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Eip3009Authorization {
    /// The payer.
    #[serde(with = "address_checksummed")]
    pub from: Address,
    /// The recipient.
    #[serde(with = "address_checksummed")]
    pub to: Address,
    /// The amount in atomic units.
    #[serde(with = "u256_decimal")]
    pub value: U256,
    /// Unix time (seconds) after which the authorization may be used.
    #[serde(with = "u256_decimal")]
    pub valid_after: U256,
    /// Unix time (seconds) before which the authorization must be used.
    #[serde(with = "u256_decimal")]
    pub valid_before: U256,
    /// A random 32-byte nonce, unique per payer.
    pub nonce: B256,
}

/// An EIP-3009 authorization with its signature: 65 bytes for an externally owned account,
/// longer for a smart wallet (EIP-1271, possibly ERC-6492 wrapped).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Eip3009Payload {
    /// The signature over the EIP-712 digest.
    pub signature: Bytes,
    /// The signed message.
    pub authorization: Eip3009Authorization,
}

/// The token and amount a Permit2 authorization allows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Permit2TokenPermissions {
    /// The token contract.
    #[serde(with = "address_checksummed")]
    pub token: Address,
    /// The amount in atomic units.
    #[serde(with = "u256_decimal")]
    pub amount: U256,
}

/// The witness x402 binds into a Permit2 authorization.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Permit2Witness {
    /// The recipient.
    #[serde(with = "address_checksummed")]
    pub to: Address,
    /// Unix time (seconds) after which the authorization may be used.
    #[serde(with = "u256_decimal")]
    pub valid_after: U256,
}

/// A Permit2 `PermitWitnessTransferFrom` authorization, as x402 carries it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Permit2Authorization {
    /// What may be transferred.
    pub permitted: Permit2TokenPermissions,
    /// The payer.
    #[serde(with = "address_checksummed")]
    pub from: Address,
    /// The x402 Permit2 proxy allowed to spend.
    #[serde(with = "address_checksummed")]
    pub spender: Address,
    /// A random 256-bit nonce, as a decimal string.
    #[serde(with = "u256_decimal")]
    pub nonce: U256,
    /// Unix time (seconds) after which the permit expires.
    #[serde(with = "u256_decimal")]
    pub deadline: U256,
    /// The x402 witness.
    pub witness: Permit2Witness,
}

/// A Permit2 authorization with its signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Permit2Payload {
    /// The signature over the Permit2 EIP-712 digest.
    pub signature: Bytes,
    /// The signed message.
    pub permit2_authorization: Permit2Authorization,
}

/// The payload of an exact-scheme EVM payment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExactEvmPayload {
    /// EIP-3009 `transferWithAuthorization` (the default transfer method).
    Eip3009(Eip3009Payload),
    /// Permit2 with the x402 witness (`extra.assetTransferMethod: "permit2"`).
    Permit2(Permit2Payload),
}

/// Why a `payload` object is not an exact-EVM payload.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    /// Neither `authorization` nor `permit2Authorization` is present.
    #[error("payload has neither `authorization` nor `permit2Authorization`")]
    UnsupportedType,
    /// The payload is present but malformed.
    #[error("malformed exact EVM payload: {0}")]
    Malformed(String),
}

impl ExactEvmPayload {
    /// Reads the `payload` object of a `PaymentPayload`. As the reference facilitator does, the
    /// presence of `permit2Authorization` selects Permit2.
    pub fn from_json(payload: &JsonObject) -> Result<Self, PayloadError> {
        let value = serde_json::Value::Object(payload.clone());
        let malformed = |error: serde_json::Error| PayloadError::Malformed(error.to_string());
        if payload.contains_key("permit2Authorization") {
            serde_json::from_value(value).map(Self::Permit2).map_err(malformed)
        } else if payload.contains_key("authorization") {
            serde_json::from_value(value).map(Self::Eip3009).map_err(malformed)
        } else {
            Err(PayloadError::UnsupportedType)
        }
    }

    /// Writes the `payload` object.
    pub fn to_json(&self) -> JsonObject {
        let value = match self {
            Self::Eip3009(payload) => serde_json::to_value(payload),
            Self::Permit2(payload) => serde_json::to_value(payload),
        };
        match value {
            Ok(serde_json::Value::Object(object)) => object,
            // Both variants are plain structs of strings; serializing them cannot fail.
            _ => JsonObject::new(),
        }
    }

    /// The paying address.
    pub fn payer(&self) -> Address {
        match self {
            Self::Eip3009(payload) => payload.authorization.from,
            Self::Permit2(payload) => payload.permit2_authorization.from,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(json: &str) -> JsonObject {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn reads_eip3009_and_writes_it_back() {
        let json = r#"{"signature":"0x2d6a7588d6acca505cbf0d9a4a227e0c52c6c34008c8e8986a1283259764173608a2ce6496642e377d6da8dbbf5836e9bd15092f9ecab05ded3d6293af148b571c","authorization":{"from":"0x857b06519E91e3A54538791bDbb0E22373e36b66","to":"0x209693Bc6afc0C5328bA36FaF03C514EF312287C","value":"10000","validAfter":"1740672089","validBefore":"1740672154","nonce":"0xf3746613c2d920b5fdabc0856f2aeb2d4f88ee6037b8cc5d04a71a4462f13480"}}"#;
        let payload = ExactEvmPayload::from_json(&object(json)).unwrap();
        let ExactEvmPayload::Eip3009(eip3009) = &payload else { panic!("not EIP-3009") };
        assert_eq!(eip3009.authorization.value, U256::from(10_000));
        assert_eq!(eip3009.signature.len(), 65);
        assert_eq!(serde_json::to_string(&payload.to_json()).unwrap(), json);
    }

    #[test]
    fn recognises_permit2() {
        let json = r#"{"signature":"0x01","permit2Authorization":{"permitted":{"token":"0x036CbD53842c5426634e7929541eC2318f3dCF7e","amount":"10000"},"from":"0x857b06519E91e3A54538791bDbb0E22373e36b66","spender":"0x402085c248EeA27D92E8b30b2C58ed07f9E20001","nonce":"33247007178036348590600198031289925668252061821958005840077069883511451257277","deadline":"1740672154","witness":{"to":"0x209693Bc6afc0C5328bA36FaF03C514EF312287C","validAfter":"1740672089"}}}"#;
        let payload = ExactEvmPayload::from_json(&object(json)).unwrap();
        let ExactEvmPayload::Permit2(permit2) = &payload else { panic!("not Permit2") };
        assert_eq!(permit2.permit2_authorization.permitted.amount, U256::from(10_000));
        assert_eq!(payload.payer().to_checksum(None), "0x857b06519E91e3A54538791bDbb0E22373e36b66");
        assert_eq!(serde_json::to_string(&payload.to_json()).unwrap(), json);
    }

    #[test]
    fn names_what_is_wrong() {
        assert_eq!(ExactEvmPayload::from_json(&object("{}")), Err(PayloadError::UnsupportedType));
        let missing_nonce = r#"{"signature":"0x01","authorization":{"from":"0x857b06519E91e3A54538791bDbb0E22373e36b66","to":"0x209693Bc6afc0C5328bA36FaF03C514EF312287C","value":"1","validAfter":"0","validBefore":"1"}}"#;
        let error = ExactEvmPayload::from_json(&object(missing_nonce)).unwrap_err();
        assert!(error.to_string().contains("nonce"), "{error}");
    }
}
