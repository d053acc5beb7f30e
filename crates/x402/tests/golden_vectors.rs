//! Golden vectors: the specification's JSON examples round-trip through our types, and our
//! EIP-712 digests, signatures and header encodings equal those of independent implementations
//! (viem and the official @x402/core, output committed in `tests/data/vectors.json` by
//! `tests/data/generate_vectors.js`).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test helpers fail the test by panicking, like the tests themselves"
)]

use std::str::FromStr;

use awx_x402::eip3009::EcdsaSignature;
use awx_x402::header;
use awx_x402::v1::{PaymentPayloadV1, PaymentRequirementsV1};
use awx_x402::{
    Address, B256, Eip3009Authorization, ExactEvmPayload, FacilitatorRequest, PaymentPayload,
    PaymentRequired, SettleResponse, SupportedResponse, TokenDomain, VerifyResponse,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

fn load(name: &str) -> Value {
    let path = format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Parses `example` as `T` and checks that writing it back gives the same JSON (every field,
/// known or not, with the same values; key order is free in JSON and differs between SDKs).
fn round_trip<T: DeserializeOwned + Serialize>(example: &Value) -> T {
    let text = serde_json::to_string(example).unwrap();
    let parsed: T = serde_json::from_str(&text).unwrap();
    assert_eq!(&serde_json::to_value(&parsed).unwrap(), example, "{text}");
    parsed
}

#[test]
fn specification_examples_round_trip() {
    let examples = load("spec_examples.json");
    let list = |key: &str| examples[key].as_array().unwrap().clone();
    for example in list("PaymentRequired") {
        let parsed: PaymentRequired = round_trip(&example);
        assert_eq!(parsed.x402_version, 2);
    }
    for example in list("PaymentPayload") {
        let parsed: PaymentPayload = round_trip(&example);
        assert!(ExactEvmPayload::from_json(&parsed.payload).is_ok());
    }
    for example in list("PaymentRequirementsV1") {
        round_trip::<PaymentRequirementsV1>(&example);
    }
    for example in list("PaymentPayloadV1") {
        round_trip::<PaymentPayloadV1>(&example);
    }
    for example in list("VerifyResponse") {
        round_trip::<VerifyResponse>(&example);
    }
    for example in list("SettleResponse") {
        round_trip::<SettleResponse>(&example);
    }
    for example in list("SupportedResponse") {
        round_trip::<SupportedResponse>(&example);
    }
    for example in list("FacilitatorRequest") {
        let parsed: FacilitatorRequest = round_trip(&example);
        parsed.normalize().unwrap();
    }
}

#[test]
fn eip712_digests_and_signatures_match_viem() {
    let vectors = load("vectors.json");
    let cases = vectors["eip712"].as_array().unwrap();
    assert!(cases.len() >= 4);
    for case in cases {
        let description = case["description"].as_str().unwrap();
        let domain = TokenDomain {
            name: case["domain"]["name"].as_str().unwrap().to_owned(),
            version: case["domain"]["version"].as_str().unwrap().to_owned(),
            chain_id: case["domain"]["chainId"].as_u64().unwrap(),
            verifying_contract: Address::from_str(
                case["domain"]["verifyingContract"].as_str().unwrap(),
            )
            .unwrap(),
        };
        let authorization: Eip3009Authorization =
            serde_json::from_value(case["authorization"].clone()).unwrap();
        let digest = authorization.signing_hash(&domain);
        assert_eq!(
            digest,
            B256::from_str(case["digest"].as_str().unwrap()).unwrap(),
            "{description}"
        );

        let key: alloy_signer_local::PrivateKeySigner =
            case["privateKey"].as_str().unwrap().parse().unwrap();
        assert_eq!(key.address().to_checksum(None), case["signer"].as_str().unwrap());
        let signature = authorization.sign(&key, &domain).unwrap();
        let expected = alloy_primitives::hex::decode(case["signature"].as_str().unwrap()).unwrap();
        assert_eq!(signature.to_bytes().to_vec(), expected, "{description}");

        let theirs = EcdsaSignature::from_bytes(&expected).unwrap();
        assert_eq!(theirs.recover(&digest).unwrap(), key.address(), "{description}");
        assert_eq!(authorization.recover_signer(&domain, &expected).unwrap(), authorization.from);
    }
}

#[test]
fn headers_match_the_official_encoder() {
    let vectors = load("vectors.json");
    for case in vectors["headers"].as_array().unwrap() {
        let header_value = case["header"].as_str().unwrap();
        let json = &case["json"];
        let ours = match case["kind"].as_str().unwrap() {
            "PAYMENT-REQUIRED" => {
                let decoded = header::decode_payment_required(header_value).unwrap();
                assert_eq!(&serde_json::to_value(&decoded).unwrap(), json);
                header::encode(&decoded).unwrap()
            }
            "PAYMENT-SIGNATURE" => {
                let header::AnyPaymentPayload::V2(decoded) =
                    header::decode_payment_payload(header_value).unwrap()
                else {
                    panic!("expected a v2 payload");
                };
                assert_eq!(&serde_json::to_value(&decoded).unwrap(), json);
                header::encode(&decoded).unwrap()
            }
            "PAYMENT-RESPONSE" => {
                let decoded = header::decode_payment_response(header_value).unwrap();
                assert_eq!(&serde_json::to_value(&decoded).unwrap(), json);
                header::encode(&decoded).unwrap()
            }
            other => panic!("unknown header kind {other}"),
        };
        assert_eq!(ours, header_value, "our encoding differs from @x402/core's");
    }
}
