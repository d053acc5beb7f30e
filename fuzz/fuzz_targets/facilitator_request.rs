//! Fuzzes the facilitator request normaliser: a `POST /verify` or `/settle` body read as
//! `awx_x402::FacilitatorRequest` and turned into v2 shapes by `FacilitatorRequest::normalize`
//! (what the gateway's `readable` relies on), then the typed views the gateway's amount bound
//! reads: `PaymentRequirements::exact_evm` and `ExactEvmPayload::from_json`.
//!
//! Input: the request body, as JSON bytes.
//!
//! Properties:
//! - no panic;
//! - a body that reads re-reads to an equal request from its own serialization;
//! - `normalize` refuses with `UnsupportedVersion` exactly when `paymentPayload.x402Version` is
//!   not 1 or 2, and otherwise names a path under `paymentPayload` or `paymentRequirements`;
//! - a normalized request has the payment's version; in v2 its payload and requirements re-read
//!   to themselves from their JSON, and the v2 request built from them normalizes to the same; in v1 both
//!   networks are CAIP-2 and `accepted` is the requirements with the payload's scheme and
//!   network;
//! - `exact_evm` and `ExactEvmPayload` round-trip: an offer written back with
//!   `to_requirements` types to the same offer; a payload written back with `to_json` reads
//!   back to the same payload.

#![no_main]

use awx_x402::payload::ExactEvmPayload;
use awx_x402::{FacilitatorRequest, Network, NormalizedRequest, RequestError};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let Ok(request) = serde_json::from_slice::<FacilitatorRequest>(data) else { return };

    let bytes = serde_json::to_vec(&request).expect("a request serializes");
    let again: FacilitatorRequest = serde_json::from_slice(&bytes).expect("re-reads");
    assert_eq!(again, request, "the request changed through its own JSON");

    let version = request.payment_payload.get("x402Version").and_then(Value::as_u64);
    match request.normalize() {
        Err(RequestError::UnsupportedVersion) => {
            assert!(!matches!(version, Some(1 | 2)), "version {version:?} refused");
        }
        Err(RequestError::Invalid { path, .. }) => {
            assert!(matches!(version, Some(1 | 2)));
            assert!(
                path.starts_with("paymentPayload") || path.starts_with("paymentRequirements"),
                "bad path {path:?}"
            );
        }
        Ok(normalized) => {
            assert_eq!(Some(u64::from(normalized.x402_version)), version);
            check_normalized(&request, &normalized);
            check_typed_views(&normalized);
        }
    }
});

fn check_normalized(request: &FacilitatorRequest, normalized: &NormalizedRequest) {
    let NormalizedRequest { x402_version, payload, requirements } = normalized;
    assert_eq!(payload.x402_version, *x402_version);
    match x402_version {
        2 => {
            // Each part re-reads to itself from its own JSON.
            let json = serde_json::to_value(payload).expect("serializes");
            assert_eq!(serde_json::from_value(json).ok().as_ref(), Some(payload));
            let json = serde_json::to_value(requirements).expect("serializes");
            assert_eq!(serde_json::from_value(json).ok().as_ref(), Some(requirements));
            let rebuilt = FacilitatorRequest::v2(payload, requirements);
            assert_eq!(rebuilt.normalize().as_ref(), Ok(normalized), "v2 is not a fixed point");
        }
        1 => {
            for network in [&payload.accepted.network, &requirements.network] {
                let parsed = Network::parse_caip2(network).expect("a CAIP-2 network");
                assert_eq!(parsed.as_str(), network);
            }
            let mut expected = requirements.clone();
            expected.scheme.clone_from(&payload.accepted.scheme);
            expected.network.clone_from(&payload.accepted.network);
            assert_eq!(payload.accepted, expected, "accepted is not the requirements");
            assert_eq!(
                request.payment_payload.get("scheme").and_then(Value::as_str),
                Some(payload.accepted.scheme.as_str())
            );
            assert!(payload.resource.is_some(), "a v1 payment without its resource");
        }
        other => panic!("version {other}"),
    }
}

fn check_typed_views(normalized: &NormalizedRequest) {
    for offer in [&normalized.requirements, &normalized.payload.accepted] {
        if let Ok(typed) = offer.exact_evm() {
            assert_eq!(typed.to_requirements().exact_evm(), Ok(typed.clone()));
            assert_eq!(typed.network.evm_chain_id(), Some(typed.chain_id));
        }
    }
    if let Ok(payload) = ExactEvmPayload::from_json(&normalized.payload.payload) {
        assert_eq!(ExactEvmPayload::from_json(&payload.to_json()), Ok(payload));
    }
}
