//! The allow-list: per chain (CAIP-2 `eip155:<chain id>`), the contracts relayers may call.
//!
//! It starts from the `allowed_contracts` setting and may be changed while the service runs
//! through [`AllowList::allow`] and [`AllowList::disallow`] (reached from
//! `SignerService::contracts` or `SignerService::allow_contract`): the development setup and the
//! tests deploy a token first and then allow it. A change applies to this process only and is
//! not stored: every replica of a deployment reads the same settings, so production lists
//! contracts in `allowed_contracts` and restarts to change them.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{PoisonError, RwLock};

use alloy::primitives::Address;
use awx_x402::Network;

/// Why a network or contract cannot be on the list.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AllowListError {
    /// Not an `eip155:<chain id>` network with a positive chain id.
    #[error("{0:?} is not an EVM network (eip155:<chain id>, the chain id positive)")]
    NotEvm(String),
    /// The zero address is never a contract.
    #[error("the zero address cannot be an allowed contract (network {0})")]
    ZeroAddress(String),
}

/// The chain id of a CAIP-2 `eip155` network.
pub fn chain_id_of(network: &str) -> Result<u64, AllowListError> {
    Network::parse_caip2(network)
        .ok()
        .and_then(|parsed| parsed.evm_chain_id())
        .filter(|chain_id| *chain_id > 0)
        .ok_or_else(|| AllowListError::NotEvm(network.to_owned()))
}

/// The contracts relayers may call, per chain id.
#[derive(Debug, Default)]
pub struct AllowList {
    contracts: RwLock<BTreeMap<u64, BTreeSet<Address>>>,
}

impl AllowList {
    /// The list of `allowed_contracts` (network to contracts).
    pub fn from_settings(allowed: &BTreeMap<String, Vec<Address>>) -> Result<Self, AllowListError> {
        let list = Self::default();
        for (network, contracts) in allowed {
            for contract in contracts {
                list.allow(network, *contract)?;
            }
        }
        Ok(list)
    }

    /// Allows `contract` on `network` (`eip155:<chain id>`); `true` if it was not allowed yet.
    pub fn allow(&self, network: &str, contract: Address) -> Result<bool, AllowListError> {
        let chain_id = chain_id_of(network)?;
        if contract.is_zero() {
            return Err(AllowListError::ZeroAddress(network.to_owned()));
        }
        let mut contracts = self.contracts.write().unwrap_or_else(PoisonError::into_inner);
        let added = contracts.entry(chain_id).or_default().insert(contract);
        if added {
            tracing::info!(network, %contract, "contract allowed");
        }
        Ok(added)
    }

    /// Removes `contract` from `network`'s list; `true` if it was on it.
    pub fn disallow(&self, network: &str, contract: Address) -> Result<bool, AllowListError> {
        let chain_id = chain_id_of(network)?;
        let mut contracts = self.contracts.write().unwrap_or_else(PoisonError::into_inner);
        let removed = contracts.get_mut(&chain_id).is_some_and(|set| set.remove(&contract));
        if removed {
            tracing::info!(network, %contract, "contract no longer allowed");
        }
        Ok(removed)
    }

    /// Whether relayers may call `contract` on chain `chain_id`.
    pub fn is_allowed(&self, chain_id: u64, contract: Address) -> bool {
        let contracts = self.contracts.read().unwrap_or_else(PoisonError::into_inner);
        contracts.get(&chain_id).is_some_and(|set| set.contains(&contract))
    }

    /// The whole list, by network.
    pub fn snapshot(&self) -> BTreeMap<String, Vec<Address>> {
        let contracts = self.contracts.read().unwrap_or_else(PoisonError::into_inner);
        contracts
            .iter()
            .filter(|(_, set)| !set.is_empty())
            .map(|(chain_id, set)| (format!("eip155:{chain_id}"), set.iter().copied().collect()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail by panicking")]

    use super::*;

    #[test]
    fn networks_must_be_evm_with_a_chain_id() {
        assert_eq!(chain_id_of("eip155:8453").unwrap(), 8453);
        for bad in ["eip155:0", "eip155:x", "solana:5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp", "base", ""] {
            assert!(chain_id_of(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn contracts_are_allowed_per_chain_and_can_change() {
        let token = Address::repeat_byte(0xab);
        let list =
            AllowList::from_settings(&BTreeMap::from([("eip155:1".to_owned(), vec![token])]))
                .unwrap();
        assert!(list.is_allowed(1, token));
        assert!(!list.is_allowed(8453, token), "another chain");
        assert!(list.allow("eip155:8453", token).unwrap());
        assert!(!list.allow("eip155:8453", token).unwrap(), "already allowed");
        assert!(list.is_allowed(8453, token));
        assert!(list.disallow("eip155:1", token).unwrap());
        assert!(!list.is_allowed(1, token));
        assert_eq!(list.snapshot(), BTreeMap::from([("eip155:8453".to_owned(), vec![token])]));
        assert!(matches!(
            list.allow("eip155:1", Address::ZERO),
            Err(AllowListError::ZeroAddress(_))
        ));
    }
}
