//! Fuzzes the x402 header decoders (`PAYMENT-REQUIRED`, `PAYMENT-SIGNATURE` / `X-PAYMENT`,
//! `PAYMENT-RESPONSE`) in `awx_x402::header`.
//!
//! Input: one mode byte, then the rest. Mode `'0'` (any byte = 0 mod 3): the rest is the header
//! value as sent. Mode `'1'`: the rest is the JSON, sent as padded standard base64. Mode `'2'`:
//! the same, unpadded. (The modes let libFuzzer mutate JSON rather than base64 text.)
//!
//! Properties:
//! - no decoder panics;
//! - a value longer than the limit (after trimming spaces and tabs) is `TooLarge` for every
//!   decoder, and the decoders agree on the first failing stage (base64, then JSON);
//! - the base64 layer is transparent: the JSON sent in modes 1 and 2 decodes to the same value
//!   `serde_json` reads from the raw bytes;
//! - whatever a decoder accepts carries the version it claims (2 for `PAYMENT-REQUIRED`; 1 or 2,
//!   matching the variant, for a payment), and a refused version is the one in the JSON;
//! - round trip: what a decoder accepts, `header::encode` writes as padded standard base64 that
//!   the same decoder reads back to an equal value, and encoding that again gives the same
//!   bytes (the encoding is canonical).

#![no_main]

use std::fmt::Debug;

use awx_x402::header::{self, HEADER_BYTES_MAX};
use awx_x402::{AnyPaymentPayload, HeaderError};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use libfuzzer_sys::fuzz_target;
use serde::Serialize;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    let value = match mode % 3 {
        0 => match std::str::from_utf8(rest) {
            Ok(text) => text.to_owned(),
            Err(_) => return,
        },
        1 => STANDARD.encode(rest),
        _ => STANDARD_NO_PAD.encode(rest),
    };
    let generic = header::decode::<Value>(&value);
    if mode % 3 != 0 && value.len() <= HEADER_BYTES_MAX {
        // The base64 layer is transparent.
        match serde_json::from_slice::<Value>(rest) {
            Ok(json) => assert_eq!(generic.as_ref(), Ok(&json), "base64 changed the JSON"),
            Err(_) => assert!(matches!(generic, Err(HeaderError::Json(_))), "{generic:?}"),
        }
    }
    check(&value, generic);
});

/// The first stage of decoding that fails, for comparing decoders.
fn stage(error: &HeaderError) -> u8 {
    match error {
        HeaderError::TooLarge { .. } => 0,
        HeaderError::Base64 => 1,
        HeaderError::Json(_) | HeaderError::Version(_) => 2,
    }
}

fn version_of(json: &Value) -> u64 {
    json.get("x402Version").and_then(Value::as_u64).unwrap_or(0)
}

fn check(value: &str, generic: Result<Value, HeaderError>) {
    let trimmed_len = value.trim_matches(|c: char| c == ' ' || c == '\t').len();
    let required = header::decode_payment_required(value);
    let payment = header::decode_payment_payload(value);
    let response = header::decode_payment_response(value);

    if trimmed_len > HEADER_BYTES_MAX {
        let too_large = HeaderError::TooLarge { len: trimmed_len, max: HEADER_BYTES_MAX };
        assert_eq!(generic.as_ref().err(), Some(&too_large));
        assert_eq!(required.as_ref().err(), Some(&too_large));
        assert_eq!(payment.as_ref().err(), Some(&too_large));
        assert_eq!(response.as_ref().err(), Some(&too_large));
        return;
    }

    // The decoders agree on base64 and JSON syntax: they fail at the same stage as the generic
    // decoder, or get past it.
    let json = match &generic {
        Ok(json) => Some(json),
        Err(error) => {
            for other in [required.as_ref().err(), payment.as_ref().err(), response.as_ref().err()]
            {
                let other = other.expect("a typed decoder accepted what the JSON decoder refused");
                assert_eq!(stage(other), stage(error), "{other:?} vs {error:?}");
            }
            None
        }
    };

    match &required {
        Ok(decoded) => {
            assert_eq!(decoded.x402_version, 2);
            round_trip(decoded, header::decode_payment_required);
        }
        Err(HeaderError::Version(version)) => {
            let json = json.expect("a version error needs JSON");
            assert_eq!(*version, version_of(json));
            assert_ne!(*version, 2);
        }
        Err(_) => {}
    }

    match &payment {
        Ok(AnyPaymentPayload::V1(decoded)) => {
            assert_eq!(decoded.x402_version, 1);
            round_trip(decoded, |text| match header::decode_payment_payload(text) {
                Ok(AnyPaymentPayload::V1(again)) => Ok(again),
                other => panic!("a v1 payment read back as {other:?}"),
            });
        }
        Ok(AnyPaymentPayload::V2(decoded)) => {
            assert_eq!(decoded.x402_version, 2);
            round_trip(decoded.as_ref(), |text| match header::decode_payment_payload(text) {
                Ok(AnyPaymentPayload::V2(again)) => Ok(*again),
                other => panic!("a v2 payment read back as {other:?}"),
            });
        }
        Err(HeaderError::Version(version)) => {
            let json = json.expect("a version error needs JSON");
            assert_eq!(*version, version_of(json));
            assert!(*version != 1 && *version != 2);
        }
        Err(_) => {}
    }

    if let Ok(decoded) = &response {
        round_trip(decoded, header::decode_payment_response);
    }
}

/// `encode` writes canonical padded base64 that `decode` reads back to an equal value.
fn round_trip<T, F>(decoded: &T, decode: F)
where
    T: Serialize + PartialEq + Debug,
    F: Fn(&str) -> Result<T, HeaderError>,
{
    let encoded = header::encode(decoded).expect("a decoded value encodes");
    if encoded.len() > HEADER_BYTES_MAX {
        // Compact JSON can still be longer than what came (`1e5` is written `100000.0`).
        assert!(matches!(decode(&encoded), Err(HeaderError::TooLarge { .. })));
        return;
    }
    assert_eq!(encoded.len() % 4, 0, "unpadded: {encoded}");
    assert!(
        encoded.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/' || b == b'='),
        "not the standard alphabet: {encoded}"
    );
    let again = decode(&encoded).expect("an encoded value decodes");
    assert_eq!(&again, decoded, "the round trip changed the value");
    assert_eq!(header::encode(&again).expect("encodes"), encoded, "encoding is not canonical");
}
