//! The x402 header codecs: `PAYMENT-REQUIRED`, `PAYMENT-SIGNATURE` (and v1 `X-PAYMENT`),
//! `PAYMENT-RESPONSE`.
//!
//! Every header value is standard RFC 4648 base64 of compact JSON. We always emit the padded
//! form (Python's decoder refuses unpadded input); we accept padded or unpadded input, and, as
//! the TypeScript SDK does, refuse the URL-safe alphabet. Input longer than a limit is refused
//! before any decoding, so a hostile header costs nothing.

use base64::Engine as _;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::facilitator::SettleResponse;
use crate::v1::PaymentPayloadV1;
use crate::v2::{PaymentPayload, PaymentRequired};

/// The v2 challenge header (server to client, on 402).
pub const PAYMENT_REQUIRED: &str = "PAYMENT-REQUIRED";
/// The v2 payment header (client to server).
pub const PAYMENT_SIGNATURE: &str = "PAYMENT-SIGNATURE";
/// The v2 settlement header (server to client).
pub const PAYMENT_RESPONSE: &str = "PAYMENT-RESPONSE";
/// The v1 payment header.
pub const X_PAYMENT: &str = "X-PAYMENT";
/// The v1 settlement header.
pub const X_PAYMENT_RESPONSE: &str = "X-PAYMENT-RESPONSE";

/// The default limit on an encoded header value: 32 KiB, room for many offers and extension
/// schemas, and well above what any client sends.
pub const HEADER_BYTES_MAX: usize = 32 * 1024;

const STANDARD_LENIENT: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Why a header value could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    /// The value is longer than the limit.
    #[error("header value is {len} bytes, more than the limit of {max}")]
    TooLarge {
        /// The value's length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The value is not standard base64.
    #[error("header value is not standard base64")]
    Base64,
    /// The decoded bytes are not the expected JSON.
    #[error("header JSON is invalid: {0}")]
    Json(String),
    /// The JSON names a protocol version this header does not carry.
    #[error("unsupported x402Version {0}")]
    Version(u64),
}

/// Encodes a value as a header: padded standard base64 of compact JSON.
pub fn encode<T: Serialize>(value: &T) -> Result<String, HeaderError> {
    let json = serde_json::to_vec(value).map_err(|error| HeaderError::Json(error.to_string()))?;
    Ok(base64::engine::general_purpose::STANDARD.encode(json))
}

/// Decodes a header value into `T`, refusing values over `max_bytes`.
pub fn decode_with_limit<T: DeserializeOwned>(
    value: &str,
    max_bytes: usize,
) -> Result<T, HeaderError> {
    let value = value.trim_matches(|c: char| c == ' ' || c == '\t');
    if value.len() > max_bytes {
        return Err(HeaderError::TooLarge { len: value.len(), max: max_bytes });
    }
    let bytes = STANDARD_LENIENT.decode(value).map_err(|_| HeaderError::Base64)?;
    serde_json::from_slice(&bytes).map_err(|error| HeaderError::Json(error.to_string()))
}

/// Decodes a header value into `T` with the default limit, [`HEADER_BYTES_MAX`].
pub fn decode<T: DeserializeOwned>(value: &str) -> Result<T, HeaderError> {
    decode_with_limit(value, HEADER_BYTES_MAX)
}

fn version_of(json: &Value) -> u64 {
    json.get("x402Version").and_then(Value::as_u64).unwrap_or(0)
}

/// Decodes a `PAYMENT-REQUIRED` value, which must be v2.
pub fn decode_payment_required(value: &str) -> Result<PaymentRequired, HeaderError> {
    let json: Value = decode(value)?;
    match version_of(&json) {
        2 => serde_json::from_value(json).map_err(|error| HeaderError::Json(error.to_string())),
        other => Err(HeaderError::Version(other)),
    }
}

/// A payment as a client sent it, in either version.
#[derive(Debug, Clone, PartialEq)]
pub enum AnyPaymentPayload {
    /// A v1 payment (`X-PAYMENT`).
    V1(PaymentPayloadV1),
    /// A v2 payment (`PAYMENT-SIGNATURE`).
    V2(Box<PaymentPayload>),
}

/// Decodes a `PAYMENT-SIGNATURE` or `X-PAYMENT` value of either version.
pub fn decode_payment_payload(value: &str) -> Result<AnyPaymentPayload, HeaderError> {
    let json: Value = decode(value)?;
    let json_error = |error: serde_json::Error| HeaderError::Json(error.to_string());
    match version_of(&json) {
        1 => serde_json::from_value(json).map(AnyPaymentPayload::V1).map_err(json_error),
        2 => serde_json::from_value(json)
            .map(|payload| AnyPaymentPayload::V2(Box::new(payload)))
            .map_err(json_error),
        other => Err(HeaderError::Version(other)),
    }
}

/// Decodes a `PAYMENT-RESPONSE` (or `X-PAYMENT-RESPONSE`) value.
pub fn decode_payment_response(value: &str) -> Result<SettleResponse, HeaderError> {
    decode(value)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn emits_padded_standard_base64_and_reads_both_paddings() {
        let value = serde_json::json!({"a": "b?>"});
        let encoded = encode(&value).unwrap();
        assert_eq!(encoded, "eyJhIjoiYj8+In0=");
        assert_eq!(decode::<Value>(&encoded).unwrap(), value);
        assert_eq!(decode::<Value>(encoded.trim_end_matches('=')).unwrap(), value);
        // The URL-safe alphabet is refused, as the TypeScript SDK refuses it.
        assert_eq!(decode::<Value>("eyJhIjoiYj8-In0="), Err(HeaderError::Base64));
    }

    #[test]
    fn refuses_oversized_values_before_decoding() {
        let big = "A".repeat(HEADER_BYTES_MAX + 1);
        assert_eq!(
            decode::<Value>(&big),
            Err(HeaderError::TooLarge { len: HEADER_BYTES_MAX + 1, max: HEADER_BYTES_MAX })
        );
        assert!(matches!(decode_with_limit::<Value>("e30=", 3), Err(HeaderError::TooLarge { .. })));
    }

    #[test]
    fn checks_versions() {
        let v1 = encode(&serde_json::json!({"x402Version": 1, "accepts": []})).unwrap();
        assert_eq!(decode_payment_required(&v1), Err(HeaderError::Version(1)));
        let unknown = encode(&serde_json::json!({"x402Version": 9})).unwrap();
        assert_eq!(decode_payment_payload(&unknown), Err(HeaderError::Version(9)));
    }

    proptest! {
        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let text = String::from_utf8_lossy(&bytes);
            let _ = decode_payment_required(&text);
            let _ = decode_payment_payload(&text);
            let _ = decode_payment_response(&text);
        }

        #[test]
        fn decoding_arbitrary_base64_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let text = base64::engine::general_purpose::STANDARD.encode(&bytes);
            let _ = decode_payment_required(&text);
            let _ = decode_payment_payload(&text);
        }

        #[test]
        fn any_json_string_round_trips(text in ".{0,200}") {
            let value = Value::String(text);
            prop_assert_eq!(decode::<Value>(&encode(&value).unwrap()).unwrap(), value);
        }
    }
}
