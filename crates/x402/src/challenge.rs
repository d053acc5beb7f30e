//! Reading a 402 challenge as a payer: the v2 `PAYMENT-REQUIRED` header, a v1 JSON body, and,
//! leniently, the "seed-style" form some documentation shows (`"amount": "0.10"`,
//! `"asset": "USDC"`, `"resource": "https://…"`).
//!
//! Whatever came in, the result is a strict v2 [`PaymentRequired`]: atomic amounts, token
//! addresses, `extra` with the EIP-712 domain. The seed-style form is only ever read, never
//! written.
//!
//! The lenient rule: an offer whose `asset` is a token symbol the registry knows on the offer's
//! chain has a human decimal `amount` in that token (so `"0.10"` USDC is 100000 atomic units,
//! and `"1"` USDC is one dollar); the amount, asset and domain are resolved through the
//! registry. An offer whose `asset` is an address is taken as it is. Offers that cannot be
//! resolved are kept unchanged; they simply cannot be paid.

use serde_json::Value;

use crate::header::{self, HeaderError};
use crate::network::Network;
use crate::registry::TokenRegistry;
use crate::serde_util::parse_address;
use crate::v1::PaymentRequiredV1;
use crate::v2::{JsonObject, PaymentRequired, ResourceInfo};

/// `maxTimeoutSeconds` assumed for a seed-style offer that does not state it (the TypeScript
/// server's default).
pub const LENIENT_MAX_TIMEOUT_SECONDS: u64 = 300;

/// A challenge read from a 402 response.
#[derive(Debug, Clone, PartialEq)]
pub struct Challenge {
    /// The protocol version the server speaks (1 or 2); a payment must be sent in it.
    pub x402_version: u32,
    /// The challenge in strict v2 form.
    pub payment_required: PaymentRequired,
    /// Whether any offer was converted from the seed-style form.
    pub lenient: bool,
}

/// Why a response is not a readable x402 challenge.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChallengeError {
    /// Neither a `PAYMENT-REQUIRED` header nor an x402 body.
    #[error("the response carries no x402 challenge")]
    NotX402,
    /// The `PAYMENT-REQUIRED` header could not be decoded.
    #[error("PAYMENT-REQUIRED header: {0}")]
    Header(#[from] HeaderError),
    /// The challenge JSON is malformed.
    #[error("malformed challenge: {0}")]
    Malformed(String),
    /// The challenge offers no way to pay.
    #[error("the challenge has no offers")]
    NoOffers,
}

/// Reads a challenge from a 402 response's `PAYMENT-REQUIRED` header (v2) or, without one,
/// its body (v1, or a v2 seed-style body).
pub fn read_challenge(
    payment_required_header: Option<&str>,
    body: &[u8],
    registry: &TokenRegistry,
) -> Result<Challenge, ChallengeError> {
    if let Some(value) = payment_required_header {
        let json: Value = header::decode(value)?;
        return match version_of(&json) {
            Some(2) => read_v2(json, registry),
            Some(other) => Err(ChallengeError::Header(HeaderError::Version(other))),
            None => Err(ChallengeError::Malformed("x402Version is missing".into())),
        };
    }
    let json: Value = serde_json::from_slice(body).map_err(|_| ChallengeError::NotX402)?;
    match version_of(&json) {
        Some(1) => {
            let v1: PaymentRequiredV1 = serde_json::from_value(json)
                .map_err(|error| ChallengeError::Malformed(error.to_string()))?;
            let payment_required = v1.to_v2().ok_or(ChallengeError::NoOffers)?;
            Ok(Challenge { x402_version: 1, payment_required, lenient: false })
        }
        Some(2) => read_v2(json, registry),
        _ => Err(ChallengeError::NotX402),
    }
}

fn version_of(json: &Value) -> Option<u64> {
    json.get("x402Version").and_then(Value::as_u64)
}

fn read_v2(mut json: Value, registry: &TokenRegistry) -> Result<Challenge, ChallengeError> {
    let object = json.as_object_mut().ok_or(ChallengeError::NotX402)?;
    let mut lenient = false;
    if let Some(Value::String(url)) = object.get("resource") {
        let resource = ResourceInfo::from_url(url.clone());
        let resource = serde_json::to_value(resource)
            .map_err(|error| ChallengeError::Malformed(error.to_string()))?;
        object.insert("resource".into(), resource);
        lenient = true;
    }
    if let Some(Value::Array(offers)) = object.get_mut("accepts") {
        for offer in offers.iter_mut().filter_map(Value::as_object_mut) {
            lenient |= resolve_seed_style(offer, registry);
        }
    }
    let payment_required: PaymentRequired = serde_json::from_value(json)
        .map_err(|error| ChallengeError::Malformed(error.to_string()))?;
    if payment_required.accepts.is_empty() {
        return Err(ChallengeError::NoOffers);
    }
    Ok(Challenge { x402_version: 2, payment_required, lenient })
}

/// Rewrites a seed-style offer in place into wire form; returns whether it did.
fn resolve_seed_style(offer: &mut JsonObject, registry: &TokenRegistry) -> bool {
    let text = |key: &str| offer.get(key).and_then(Value::as_str).map(str::to_owned);
    let (Some(asset), Some(network), Some(amount)) =
        (text("asset"), text("network"), text("amount"))
    else {
        return false;
    };
    if parse_address(&asset).is_some() {
        return false;
    }
    let Some(chain_id) = Network::parse_lenient(&network).ok().and_then(|n| n.evm_chain_id())
    else {
        return false;
    };
    let Some(token) = registry.by_symbol(chain_id, &asset) else {
        return false;
    };
    let Ok(atomic) = token.parse_money(&amount) else {
        return false;
    };
    offer.insert("network".into(), Value::String(token.network.to_string()));
    offer.insert("amount".into(), Value::String(atomic.to_string()));
    offer.insert("asset".into(), Value::String(token.address.to_checksum(None)));
    let extra = offer.entry("extra").or_insert_with(|| Value::Object(JsonObject::new()));
    if let Value::Object(extra) = extra {
        extra.entry("name").or_insert_with(|| Value::String(token.eip712_name.clone()));
        extra.entry("version").or_insert_with(|| Value::String(token.eip712_version.clone()));
    }
    offer.entry("maxTimeoutSeconds").or_insert_with(|| Value::from(LENIENT_MAX_TIMEOUT_SECONDS));
    true
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const SPEC_HEADER_JSON: &str = r#"{"x402Version":2,"error":"PAYMENT-SIGNATURE header is required","resource":{"url":"https://api.example.com/premium-data","description":"Access to premium market data","mimeType":"application/json"},"accepts":[{"scheme":"exact","network":"eip155:84532","amount":"10000","asset":"0x036CbD53842c5426634e7929541eC2318f3dCF7e","payTo":"0x209693Bc6afc0C5328bA36FaF03C514EF312287C","maxTimeoutSeconds":60,"extra":{"name":"USDC","version":"2"}}]}"#;

    #[test]
    fn reads_the_v2_header_verbatim() {
        let value: Value = serde_json::from_str(SPEC_HEADER_JSON).unwrap();
        let header = header::encode(&value).unwrap();
        let challenge = read_challenge(Some(&header), b"{}", &TokenRegistry::builtin()).unwrap();
        assert_eq!(challenge.x402_version, 2);
        assert!(!challenge.lenient);
        assert_eq!(serde_json::to_value(&challenge.payment_required).unwrap(), value);
    }

    #[test]
    fn reads_the_seed_style_challenge_through_the_registry() {
        let seed = json!({
            "x402Version": 2,
            "resource": "https://your-api.com/v1/data",
            "accepts": [{
                "scheme": "exact", "network": "eip155:8453", "amount": "0.10", "asset": "USDC",
                "payTo": "0x209693Bc6afc0C5328bA36FaF03C514EF312287C", "maxTimeoutSeconds": 300
            }]
        });
        let header = header::encode(&seed).unwrap();
        let challenge = read_challenge(Some(&header), b"", &TokenRegistry::builtin()).unwrap();
        assert!(challenge.lenient);
        let offer = &challenge.payment_required.accepts[0];
        assert_eq!(offer.amount, "100000");
        assert_eq!(offer.asset, "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913");
        assert_eq!(offer.domain_names().unwrap().name, "USD Coin");
        assert_eq!(challenge.payment_required.resource.url, "https://your-api.com/v1/data");
        // Re-emitted, it is strict wire form: no decimal amount, no symbol.
        let wire = serde_json::to_string(&challenge.payment_required).unwrap();
        assert!(!wire.contains("\"0.10\"") && !wire.contains("\"USDC\",\"payTo\""));
        assert!(offer.exact_evm().is_ok());
    }

    #[test]
    fn unresolvable_seed_offers_stay_unpayable() {
        let body = json!({
            "x402Version": 2, "resource": "https://x.test/",
            "accepts": [{"scheme": "exact", "network": "eip155:31337", "amount": "0.10",
                         "asset": "USDC", "payTo": "0x209693Bc6afc0C5328bA36FaF03C514EF312287C",
                         "maxTimeoutSeconds": 60}]
        });
        let challenge =
            read_challenge(None, body.to_string().as_bytes(), &TokenRegistry::builtin()).unwrap();
        assert!(challenge.payment_required.accepts[0].exact_evm().is_err());
    }

    #[test]
    fn reads_v1_bodies_and_refuses_non_x402() {
        let body = r#"{"x402Version":1,"error":"X-PAYMENT header is required","accepts":[{"scheme":"exact","network":"base-sepolia","maxAmountRequired":"10000","asset":"0x036CbD53842c5426634e7929541eC2318f3dCF7e","payTo":"0x209693Bc6afc0C5328bA36FaF03C514EF312287C","resource":"https://api.example.com/premium-data","description":"","mimeType":"","maxTimeoutSeconds":60,"extra":{"name":"USDC","version":"2"}}]}"#;
        let challenge = read_challenge(None, body.as_bytes(), &TokenRegistry::builtin()).unwrap();
        assert_eq!(challenge.x402_version, 1);
        assert_eq!(challenge.payment_required.accepts[0].network, "eip155:84532");
        let registry = TokenRegistry::builtin();
        assert_eq!(read_challenge(None, b"<html>", &registry), Err(ChallengeError::NotX402));
        assert_eq!(read_challenge(None, b"{}", &registry), Err(ChallengeError::NotX402));
        assert!(matches!(
            read_challenge(Some("%%%"), b"", &registry),
            Err(ChallengeError::Header(_))
        ));
    }
}
