//! Networks: CAIP-2 identifiers (`eip155:8453`), the v1 network names (`base-sepolia`) and
//! their EVM chain ids.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The v1 network names and their EVM chain ids, as the official SDKs know them.
pub const V1_NETWORKS: &[(&str, u64)] = &[
    ("ethereum", 1),
    ("sepolia", 11_155_111),
    ("base", 8453),
    ("base-sepolia", 84_532),
    ("avalanche", 43_114),
    ("avalanche-fuji", 43_113),
    ("polygon", 137),
    ("polygon-amoy", 80_002),
    ("abstract", 2741),
    ("abstract-testnet", 11_124),
    ("iotex", 4689),
    ("sei", 1329),
    ("sei-testnet", 1328),
    ("peaq", 3338),
    ("story", 1514),
    ("educhain", 41_923),
    ("skale-base-sepolia", 324_705_682),
    ("megaeth", 4326),
    ("monad", 143),
    ("stable", 988),
    ("stable-testnet", 2201),
];

/// The CAIP-2 namespace of EVM chains.
pub const EIP155: &str = "eip155";

/// A CAIP-2 chain identifier such as `eip155:84532`.
///
/// Any syntactically valid CAIP-2 id is a `Network` (`solana:5eykt4…` too), so challenges that
/// offer other chains still parse; [`Network::evm_chain_id`] tells whether we can pay on it.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Network {
    text: String,
    colon: usize,
}

/// Why a string is not a network we can name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NetworkError {
    /// Not of the form `namespace:reference` with CAIP-2's character rules.
    #[error("`{0}` is not a CAIP-2 network id such as `eip155:8453`")]
    NotCaip2(String),
    /// Neither a CAIP-2 id nor a known v1 network name.
    #[error("`{0}` is neither a CAIP-2 network id nor a known v1 network name")]
    Unknown(String),
}

fn shorten(input: &str) -> String {
    input.chars().take(64).collect()
}

impl Network {
    /// Parses a CAIP-2 id: `[-a-z0-9]{3,8}:[-_a-zA-Z0-9]{1,32}`.
    pub fn parse_caip2(input: &str) -> Result<Self, NetworkError> {
        let not_caip2 = || NetworkError::NotCaip2(shorten(input));
        let (namespace, reference) = input.split_once(':').ok_or_else(not_caip2)?;
        let namespace_ok = (3..=8).contains(&namespace.len())
            && namespace.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        let reference_ok = (1..=32).contains(&reference.len())
            && reference.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !(namespace_ok && reference_ok) {
            return Err(not_caip2());
        }
        if namespace == EIP155 && parse_chain_id(reference).is_none() {
            return Err(not_caip2());
        }
        Ok(Self { text: input.to_owned(), colon: namespace.len() })
    }

    /// Parses a CAIP-2 id or, failing that, a v1 network name (`base-sepolia`).
    pub fn parse_lenient(input: &str) -> Result<Self, NetworkError> {
        if input.contains(':') {
            return Self::parse_caip2(input);
        }
        Self::from_v1_name(input).ok_or_else(|| NetworkError::Unknown(shorten(input)))
    }

    /// The network for a v1 name, if the name is known.
    pub fn from_v1_name(name: &str) -> Option<Self> {
        V1_NETWORKS
            .iter()
            .find(|(known, _)| *known == name)
            .map(|&(_, chain_id)| Self::evm(chain_id))
    }

    /// The network of an EVM chain.
    pub fn evm(chain_id: u64) -> Self {
        Self { text: format!("{EIP155}:{chain_id}"), colon: EIP155.len() }
    }

    /// The CAIP-2 text.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The namespace (`eip155`).
    pub fn namespace(&self) -> &str {
        &self.text[..self.colon]
    }

    /// The EVM chain id, when this is an `eip155` network.
    pub fn evm_chain_id(&self) -> Option<u64> {
        let reference = self.text.get(self.colon.checked_add(1)?..)?;
        (self.namespace() == EIP155).then(|| parse_chain_id(reference)).flatten()
    }

    /// The v1 name of this network, if it has one.
    pub fn v1_name(&self) -> Option<&'static str> {
        let chain_id = self.evm_chain_id()?;
        V1_NETWORKS.iter().find(|&&(_, known)| known == chain_id).map(|&(name, _)| name)
    }
}

/// A decimal chain id without sign or leading zeros.
fn parse_chain_id(reference: &str) -> Option<u64> {
    let canonical = !reference.is_empty()
        && reference.bytes().all(|b| b.is_ascii_digit())
        && !(reference.len() > 1 && reference.starts_with('0'));
    if canonical { reference.parse().ok() } else { None }
}

impl fmt::Display for Network {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for Network {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl FromStr for Network {
    type Err = NetworkError;

    /// Strict CAIP-2; see [`Network::parse_lenient`] for v1 names.
    fn from_str(input: &str) -> Result<Self, Self::Err> {
        Self::parse_caip2(input)
    }
}

impl Serialize for Network {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for Network {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Self::parse_caip2(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caip2_and_chain_ids() {
        let base = Network::parse_caip2("eip155:8453").unwrap();
        assert_eq!(base.evm_chain_id(), Some(8453));
        assert_eq!(base.namespace(), "eip155");
        assert_eq!(base.v1_name(), Some("base"));
        let solana = Network::parse_caip2("solana:5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp").unwrap();
        assert_eq!(solana.evm_chain_id(), None);
        assert_eq!(Network::parse_caip2("eip155:31337").unwrap().v1_name(), None);
        for bad in ["eip155", "eip155:", ":1", "EIP155:1", "eip155:0x1", "eip155:01", "ei:1", "e:1"]
        {
            assert!(Network::parse_caip2(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn v1_names_map_to_caip2() {
        for &(name, chain_id) in V1_NETWORKS {
            let network = Network::from_v1_name(name).unwrap();
            assert_eq!(network.evm_chain_id(), Some(chain_id));
            assert_eq!(network.v1_name(), Some(name));
        }
        assert_eq!(Network::parse_lenient("base-sepolia").unwrap().as_str(), "eip155:84532");
        assert_eq!(Network::parse_lenient("eip155:137").unwrap().as_str(), "eip155:137");
        assert!(matches!(Network::parse_lenient("narnia"), Err(NetworkError::Unknown(_))));
    }

    #[test]
    fn serde_is_the_caip2_text() {
        let network: Network = serde_json::from_str("\"eip155:84532\"").unwrap();
        assert_eq!(serde_json::to_string(&network).unwrap(), "\"eip155:84532\"");
        assert!(serde_json::from_str::<Network>("\"base\"").is_err());
    }
}
