//! Prefixed identifiers: one newtype per entity, so an agent id can never be passed where a
//! payment id is expected.
//!
//! The text form is `<prefix>_<32 lowercase hex digits>`, for example
//! `agt_0190a3c48f2b7c3e9d1e5f6a7b8c9d0e`. The body is a UUIDv7, so ids sort by creation time
//! (good for index locality and cursor pagination). Postgres stores the bare UUID.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use uuid::Uuid;

/// Why a string is not a valid id of the expected kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// The prefix is missing or belongs to another kind of id.
    #[error("expected an id starting with `{expected}_`")]
    WrongPrefix {
        /// The prefix this kind of id carries.
        expected: &'static str,
    },
    /// The part after the prefix is not 32 lowercase hex digits.
    #[error("`{expected}_` must be followed by 32 lowercase hex digits")]
    MalformedBody {
        /// The prefix this kind of id carries.
        expected: &'static str,
    },
}

fn parse_body(input: &str, prefix: &'static str) -> Result<Uuid, IdError> {
    let body = input
        .strip_prefix(prefix)
        .and_then(|rest| rest.strip_prefix('_'))
        .ok_or(IdError::WrongPrefix { expected: prefix })?;
    let well_formed =
        body.len() == 32 && body.bytes().all(|byte| matches!(byte, b'0'..=b'9' | b'a'..=b'f'));
    if !well_formed {
        return Err(IdError::MalformedBody { expected: prefix });
    }
    Uuid::try_parse(body).map_err(|_| IdError::MalformedBody { expected: prefix })
}

macro_rules! prefixed_id {
    ($(#[$meta:meta])* $name:ident, $prefix:literal) => {
        $(#[$meta])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(Uuid);

        impl $name {
            /// The text prefix of this kind of id.
            pub const PREFIX: &'static str = $prefix;

            /// A new, time-ordered random id.
            pub fn new() -> Self {
                Self(Uuid::now_v7())
            }

            /// Wraps a UUID read back from storage.
            pub const fn from_uuid(uuid: Uuid) -> Self {
                Self(uuid)
            }

            /// The UUID, for storage.
            pub const fn as_uuid(&self) -> Uuid {
                self.0
            }

            /// Parses the text form, checking the prefix.
            pub fn parse(input: &str) -> Result<Self, IdError> {
                parse_body(input, Self::PREFIX).map(Self)
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}_{}", Self::PREFIX, self.0.simple())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(self, f)
            }
        }

        impl FromStr for $name {
            type Err = IdError;

            fn from_str(input: &str) -> Result<Self, Self::Err> {
                Self::parse(input)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_str(self)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
                Self::parse(&text).map_err(serde::de::Error::custom)
            }
        }
    };
}

prefixed_id!(
    /// A tenant: the owner of agents, keys and provider settings.
    AccountId,
    "acc"
);
prefixed_id!(
    /// An API key's public identifier (the part shown after creation).
    ApiKeyId,
    "key"
);
prefixed_id!(
    /// An AI agent with its own wallet and policy.
    AgentId,
    "agt"
);
prefixed_id!(
    /// A budgeted payment session.
    SessionId,
    "ses"
);
prefixed_id!(
    /// A payment intent, from request to settlement.
    PaymentId,
    "pay"
);
prefixed_id!(
    /// A ledger transfer (the `ledger_id` of a payment).
    LedgerId,
    "ldg"
);
prefixed_id!(
    /// An on-chain settlement item or transaction.
    SettlementId,
    "stl"
);
prefixed_id!(
    /// An event or command on the bus; consumers dedupe by it.
    EventId,
    "evt"
);
prefixed_id!(
    /// One HTTP request, echoed in `X-Request-Id` and every error.
    RequestId,
    "req"
);

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn text_form_round_trips() {
        let id = AgentId::new();
        let text = id.to_string();
        assert!(text.starts_with("agt_"));
        assert_eq!(text.len(), 4 + 32);
        assert_eq!(AgentId::parse(&text), Ok(id));
        assert_eq!(serde_json::to_string(&id).unwrap(), format!("\"{text}\""));
        assert_eq!(serde_json::from_str::<AgentId>(&format!("\"{text}\"")).unwrap(), id);
        assert_eq!(format!("{id:?}"), text);
    }

    #[test]
    fn rejects_other_kinds_and_malformed_bodies() {
        let payment = PaymentId::new().to_string();
        assert_eq!(AgentId::parse(&payment), Err(IdError::WrongPrefix { expected: "agt" }));
        assert_eq!(AgentId::parse("agt"), Err(IdError::WrongPrefix { expected: "agt" }));
        for bad in [
            "agt_",
            "agt_0190A3C48F2B7C3E9D1E5F6A7B8C9D0E",
            "agt_0190a3c4-8f2b-7c3e-9d1e-5f6a7b8c9d0e",
            "agt_0190a3c48f2b7c3e9d1e5f6a7b8c9d0",
            "agt_0190a3c48f2b7c3e9d1e5f6a7b8c9d0ee",
            "agt_0190a3c48f2b7c3e9d1e5f6a7b8c9d0g",
        ] {
            assert_eq!(
                AgentId::parse(bad),
                Err(IdError::MalformedBody { expected: "agt" }),
                "{bad}"
            );
        }
    }

    #[test]
    fn new_ids_sort_by_creation() {
        let first = PaymentId::new();
        let second = PaymentId::new();
        assert!(first < second);
    }

    proptest! {
        #[test]
        fn parsing_never_panics(input in ".{0,64}") {
            let _ = SessionId::parse(&input);
        }

        #[test]
        fn any_uuid_round_trips(bits in any::<u128>()) {
            let id = LedgerId::from_uuid(Uuid::from_u128(bits));
            prop_assert_eq!(LedgerId::parse(&id.to_string()), Ok(id));
            prop_assert_eq!(id.as_uuid(), Uuid::from_u128(bits));
        }
    }
}
