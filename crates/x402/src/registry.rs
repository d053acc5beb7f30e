//! The token registry: which tokens we know on which chains, with their decimals and EIP-712
//! domain. Built in: USDC on Base, Base Sepolia, Ethereum and Polygon. Deployments add their own
//! tokens (the development chain's) from configuration.

use alloy_primitives::{Address, address};
use awx_types::{Amount, AmountError};
use serde::{Deserialize, Serialize};

use crate::network::Network;

/// A token we can price and pay in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenInfo {
    /// The CAIP-2 network.
    pub network: Network,
    /// The token contract.
    pub address: Address,
    /// The ticker (`USDC`).
    pub symbol: String,
    /// The number of decimals of the atomic unit.
    pub decimals: u8,
    /// The EIP-712 domain name; equal to the token's `name()`.
    pub eip712_name: String,
    /// The EIP-712 domain version; equal to the token's `version()`.
    pub eip712_version: String,
}

impl TokenInfo {
    /// The EVM chain id of the token's network.
    pub fn chain_id(&self) -> Option<u64> {
        self.network.evm_chain_id()
    }

    /// Parses a money string such as `"$0.001"` or `"0.10"` into this token's atomic units,
    /// exactly: more decimals than the token has are refused, never rounded or truncated.
    pub fn parse_money(&self, money: &str) -> Result<Amount, AmountError> {
        let digits = money.strip_prefix('$').unwrap_or(money);
        Amount::from_decimal_str(digits, self.decimals)
    }

    /// Formats atomic units as a decimal string (`"0.10"`).
    pub fn format_amount(&self, amount: Amount) -> Result<String, AmountError> {
        amount.to_decimal_string(self.decimals)
    }
}

/// Why a token could not be added.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    /// The network is not an EVM chain.
    #[error("token network `{0}` is not an EVM network")]
    NotEvm(String),
    /// Another token with this address or symbol exists on the chain.
    #[error("a different token {symbol} at {address} is already registered on {network}")]
    Conflict {
        /// The network.
        network: String,
        /// The symbol.
        symbol: String,
        /// The address.
        address: Address,
    },
}

/// The tokens we know, by chain.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TokenRegistry {
    tokens: Vec<TokenInfo>,
}

fn usdc(chain_id: u64, address: Address, eip712_name: &str) -> TokenInfo {
    TokenInfo {
        network: Network::evm(chain_id),
        address,
        symbol: "USDC".to_owned(),
        decimals: 6,
        eip712_name: eip712_name.to_owned(),
        eip712_version: "2".to_owned(),
    }
}

impl TokenRegistry {
    /// No tokens.
    pub fn empty() -> Self {
        Self::default()
    }

    /// USDC at its canonical address on Base, Base Sepolia, Ethereum and Polygon. Base Sepolia's
    /// USDC signs with the EIP-712 name `USDC`; the others with `USD Coin`.
    pub fn builtin() -> Self {
        Self {
            tokens: vec![
                usdc(8453, address!("0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913"), "USD Coin"),
                usdc(84_532, address!("0x036CbD53842c5426634e7929541eC2318f3dCF7e"), "USDC"),
                usdc(1, address!("0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48"), "USD Coin"),
                usdc(137, address!("0x3c499c542cEF5E3811e1192ce70d8cC03d5c3359"), "USD Coin"),
            ],
        }
    }

    /// Adds a token. Adding the same token twice is harmless; a different token with the same
    /// address or symbol on the same chain is refused.
    pub fn register(&mut self, token: TokenInfo) -> Result<(), RegistryError> {
        if token.chain_id().is_none() {
            return Err(RegistryError::NotEvm(token.network.to_string()));
        }
        let clash = self.tokens.iter().find(|known| {
            known.network == token.network
                && (known.address == token.address
                    || known.symbol.eq_ignore_ascii_case(&token.symbol))
        });
        match clash {
            Some(known) if *known == token => Ok(()),
            Some(known) => Err(RegistryError::Conflict {
                network: known.network.to_string(),
                symbol: known.symbol.clone(),
                address: known.address,
            }),
            None => {
                self.tokens.push(token);
                Ok(())
            }
        }
    }

    /// The token at `address` on `chain_id`.
    pub fn by_address(&self, chain_id: u64, address: Address) -> Option<&TokenInfo> {
        self.tokens.iter().find(|t| t.chain_id() == Some(chain_id) && t.address == address)
    }

    /// The token with ticker `symbol` (any letter case) on `chain_id`.
    pub fn by_symbol(&self, chain_id: u64, symbol: &str) -> Option<&TokenInfo> {
        self.tokens
            .iter()
            .find(|t| t.chain_id() == Some(chain_id) && t.symbol.eq_ignore_ascii_case(symbol))
    }

    /// Every token, in registration order.
    pub fn iter(&self) -> impl Iterator<Item = &TokenInfo> {
        self.tokens.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_usdc() {
        let registry = TokenRegistry::builtin();
        let base_sepolia = registry.by_symbol(84_532, "usdc").unwrap();
        assert_eq!(base_sepolia.eip712_name, "USDC");
        assert_eq!(base_sepolia.eip712_version, "2");
        assert_eq!(base_sepolia.decimals, 6);
        for chain_id in [8453, 1, 137] {
            assert_eq!(registry.by_symbol(chain_id, "USDC").unwrap().eip712_name, "USD Coin");
        }
        let base = address!("0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913");
        assert_eq!(registry.by_address(8453, base).unwrap().symbol, "USDC");
        assert!(registry.by_address(84_532, base).is_none());
        assert!(registry.by_symbol(31_337, "USDC").is_none());
    }

    #[test]
    fn extends_from_config_and_refuses_clashes() {
        let mut registry = TokenRegistry::builtin();
        let dev: TokenInfo = serde_json::from_str(
            r#"{"network":"eip155:31337","address":"0x5FbDB2315678afecb367f032d93F642f64180aa3","symbol":"USDC","decimals":6,"eip712_name":"USD Coin","eip712_version":"2"}"#,
        )
        .unwrap();
        registry.register(dev.clone()).unwrap();
        registry.register(dev.clone()).unwrap();
        assert_eq!(registry.by_symbol(31_337, "USDC"), Some(&dev));
        let mut other = dev.clone();
        other.address = address!("0x0000000000000000000000000000000000000001");
        assert!(matches!(registry.register(other), Err(RegistryError::Conflict { .. })));
        let mut solana = dev;
        solana.network = Network::parse_caip2("solana:5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp").unwrap();
        assert!(matches!(registry.register(solana), Err(RegistryError::NotEvm(_))));
    }

    #[test]
    fn money_is_exact() {
        let usdc = TokenRegistry::builtin().by_symbol(8453, "USDC").unwrap().clone();
        assert_eq!(usdc.parse_money("$0.001"), Ok(Amount::from_atomic(1_000)));
        assert_eq!(usdc.parse_money("0.10"), Ok(Amount::from_atomic(100_000)));
        assert_eq!(usdc.parse_money("$1"), Ok(Amount::from_atomic(1_000_000)));
        assert!(matches!(usdc.parse_money("$0.0000001"), Err(AmountError::TooPrecise { .. })));
        assert!(usdc.parse_money("$$1").is_err());
        assert!(usdc.parse_money("-$1").is_err());
        assert_eq!(usdc.format_amount(Amount::from_atomic(2_000)).unwrap(), "0.002");
    }
}
