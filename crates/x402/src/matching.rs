//! Matching a client's `accepted` against a server's offers, as @x402/core 2.27 and Python
//! x402 2.25 do: every field but `extra` must be equal, and the server's `extra` must be a
//! recursive subset of the client's (a client may add keys, never drop or change them).

use serde_json::Value;

use crate::v2::{JsonObject, PaymentRequirements};

/// Whether `accepted` (from a client's payment) matches the server's `offer`.
pub fn accepted_matches(offer: &PaymentRequirements, accepted: &PaymentRequirements) -> bool {
    let without_extra = |requirements: &PaymentRequirements| {
        let mut plain = requirements.clone();
        plain.extra = None;
        serde_json::to_value(plain).ok()
    };
    let same_fields = match (without_extra(offer), without_extra(accepted)) {
        (Some(left), Some(right)) => left == right,
        _ => false,
    };
    let empty = JsonObject::new();
    let offer_extra = offer.extra.as_ref().unwrap_or(&empty);
    let accepted_extra = accepted.extra.as_ref().unwrap_or(&empty);
    same_fields && object_is_subset(offer_extra, accepted_extra)
}

/// The first of the server's `offers` that `accepted` matches.
pub fn find_matching_offer<'a>(
    offers: &'a [PaymentRequirements],
    accepted: &PaymentRequirements,
) -> Option<&'a PaymentRequirements> {
    offers.iter().find(|offer| accepted_matches(offer, accepted))
}

fn object_is_subset(subset: &JsonObject, superset: &JsonObject) -> bool {
    subset.iter().all(|(key, value)| superset.get(key).is_some_and(|other| is_subset(value, other)))
}

fn is_subset(subset: &Value, superset: &Value) -> bool {
    match (subset, superset) {
        (Value::Object(subset), Value::Object(superset)) => object_is_subset(subset, superset),
        _ => subset == superset,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn offer(extra: Value) -> PaymentRequirements {
        serde_json::from_value(json!({
            "scheme": "exact", "network": "eip155:84532", "amount": "10000",
            "asset": "0x036CbD53842c5426634e7929541eC2318f3dCF7e",
            "payTo": "0x209693Bc6afc0C5328bA36FaF03C514EF312287C",
            "maxTimeoutSeconds": 60, "extra": extra
        }))
        .unwrap()
    }

    #[test]
    fn extra_may_grow_but_not_change() {
        let server = offer(json!({"name": "USDC", "version": "2", "nested": {"a": 1}}));
        assert!(accepted_matches(&server, &server));
        let grown =
            offer(json!({"name": "USDC", "version": "2", "nested": {"a": 1, "b": 2}, "x": true}));
        assert!(accepted_matches(&server, &grown));
        let changed = offer(json!({"name": "USD Coin", "version": "2", "nested": {"a": 1}}));
        assert!(!accepted_matches(&server, &changed));
        let dropped = offer(json!({"name": "USDC", "version": "2"}));
        assert!(!accepted_matches(&server, &dropped));
    }

    #[test]
    fn every_other_field_must_be_equal() {
        let server = offer(json!({"name": "USDC", "version": "2"}));
        let mut cheaper = server.clone();
        cheaper.amount = "9999".into();
        assert!(!accepted_matches(&server, &cheaper));
        let mut unknown_field = server.clone();
        unknown_field.other.insert("surprise".into(), json!(1));
        assert!(!accepted_matches(&server, &unknown_field));
        let offers = vec![cheaper, server.clone()];
        assert_eq!(find_matching_offer(&offers, &server), Some(&server));
    }
}
