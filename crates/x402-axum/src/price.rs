//! What a route costs: [`Price`] (money in a registered token, or atomic units of an explicit
//! token) and [`PaymentOffer`] (one accepted way to pay: price, recipient, network, timeout).
//!
//! Offers are turned into wire [`PaymentRequirements`] once, when the layer is built: money goes
//! through the [`TokenRegistry`] exactly (`"$0.01"` of USDC is `"10000"`), so an unknown token, a
//! price with more decimals than the token has, or a zero price is a [`ConfigError`] at start-up
//! and never a failed request.

use awx_types::Amount;
use awx_x402::{
    Address, ExactEvmOffer, JsonObject, Network, PaymentRequirements, TokenDomainNames,
    TokenRegistry, U256,
};
use serde_json::Value;

use crate::config::ConfigError;

/// The network a [`PaymentOffer`] uses unless told otherwise: Base Sepolia (`eip155:84532`).
pub const DEFAULT_CHAIN_ID: u64 = 84_532;

/// How long a signed payment stays valid unless an offer says otherwise, as in @x402/express.
pub const DEFAULT_MAX_TIMEOUT_SECONDS: u64 = 300;

/// The token a money price is in unless told otherwise.
pub const DEFAULT_SYMBOL: &str = "USDC";

/// An amount of a token given by its contract and EIP-712 domain rather than by the registry:
/// the way to price a route on a custom chain (@x402/express's `AssetAmount`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssetAmount {
    /// The amount in the token's atomic units.
    pub amount: Amount,
    /// The token contract.
    pub asset: Address,
    /// The token's EIP-712 domain `name` (what its `name()` returns).
    pub eip712_name: String,
    /// The token's EIP-712 domain `version` (what its `version()` returns).
    pub eip712_version: String,
}

/// The price of a route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Price {
    /// A decimal amount of a token the registry knows on the offer's network, such as `"$0.10"`
    /// or `"0.10"` of `USDC`.
    Money {
        /// The decimal amount, with or without a leading `$`.
        amount: String,
        /// The token's ticker.
        symbol: String,
    },
    /// Atomic units of an explicitly described token.
    Atomic(AssetAmount),
}

impl Price {
    /// A money price in USDC, such as `"$0.01"` or `"0.01"`.
    pub fn money(amount: impl Into<String>) -> Self {
        Self::Money { amount: amount.into(), symbol: DEFAULT_SYMBOL.to_owned() }
    }

    /// A money price in the registered token with ticker `symbol`.
    pub fn money_in(amount: impl Into<String>, symbol: impl Into<String>) -> Self {
        Self::Money { amount: amount.into(), symbol: symbol.into() }
    }

    /// `atomic` units of the token at `asset` whose EIP-712 domain is `eip712_name` and
    /// `eip712_version`.
    pub fn atomic(
        atomic: u128,
        asset: Address,
        eip712_name: impl Into<String>,
        eip712_version: impl Into<String>,
    ) -> Self {
        Self::Atomic(AssetAmount {
            amount: Amount::from_atomic(atomic),
            asset,
            eip712_name: eip712_name.into(),
            eip712_version: eip712_version.into(),
        })
    }
}

impl From<&str> for Price {
    /// A money price in USDC.
    fn from(amount: &str) -> Self {
        Self::money(amount)
    }
}

impl From<String> for Price {
    /// A money price in USDC.
    fn from(amount: String) -> Self {
        Self::money(amount)
    }
}

impl From<AssetAmount> for Price {
    fn from(amount: AssetAmount) -> Self {
        Self::Atomic(amount)
    }
}

/// One way a route accepts payment: an `exact` EVM offer.
#[derive(Debug, Clone, PartialEq)]
pub struct PaymentOffer {
    price: Price,
    pay_to: Address,
    network: Network,
    max_timeout_seconds: u64,
    extra: JsonObject,
}

impl PaymentOffer {
    /// `price` paid to `pay_to`, on Base Sepolia, valid for 300 seconds.
    pub fn new(price: impl Into<Price>, pay_to: Address) -> Self {
        Self {
            price: price.into(),
            pay_to,
            network: Network::evm(DEFAULT_CHAIN_ID),
            max_timeout_seconds: DEFAULT_MAX_TIMEOUT_SECONDS,
            extra: JsonObject::new(),
        }
    }

    /// Sets the CAIP-2 network (an `eip155` chain).
    #[must_use]
    pub fn network(mut self, network: Network) -> Self {
        self.network = network;
        self
    }

    /// Sets how long a signed payment for this offer may stay valid (`maxTimeoutSeconds`).
    #[must_use]
    pub fn max_timeout_seconds(mut self, seconds: u64) -> Self {
        self.max_timeout_seconds = seconds;
        self
    }

    /// Adds a field to the offer's `extra`, after the token's `name` and `version` (a later
    /// value wins, as in @x402/express).
    #[must_use]
    pub fn extra(mut self, key: impl Into<String>, value: impl Into<Value>) -> Self {
        self.extra.insert(key.into(), value.into());
        self
    }

    /// The wire requirements of this offer, with money converted through `registry`.
    pub fn to_requirements(
        &self,
        registry: &TokenRegistry,
    ) -> Result<PaymentRequirements, ConfigError> {
        let not_evm = || ConfigError::NotEvm { network: self.network.to_string() };
        let chain_id = self.network.evm_chain_id().ok_or_else(not_evm)?;
        if self.max_timeout_seconds == 0 {
            return Err(ConfigError::ZeroTimeout);
        }
        let (amount, asset, domain) = match &self.price {
            Price::Money { amount, symbol } => {
                let token = registry.by_symbol(chain_id, symbol).ok_or_else(|| {
                    ConfigError::UnknownToken {
                        symbol: symbol.clone(),
                        network: self.network.to_string(),
                    }
                })?;
                let atomic = token.parse_money(amount).map_err(|source| ConfigError::Price {
                    price: amount.clone(),
                    symbol: token.symbol.clone(),
                    source,
                })?;
                if atomic.is_zero() {
                    return Err(ConfigError::ZeroPrice { price: amount.clone() });
                }
                let domain = TokenDomainNames {
                    name: token.eip712_name.clone(),
                    version: token.eip712_version.clone(),
                };
                (atomic, token.address, domain)
            }
            Price::Atomic(asset_amount) => {
                if asset_amount.amount.is_zero() {
                    return Err(ConfigError::ZeroPrice { price: "0".to_owned() });
                }
                let domain = TokenDomainNames {
                    name: asset_amount.eip712_name.clone(),
                    version: asset_amount.eip712_version.clone(),
                };
                (asset_amount.amount, asset_amount.asset, domain)
            }
        };
        let offer = ExactEvmOffer {
            network: self.network.clone(),
            chain_id,
            amount: U256::from(amount.atomic()),
            asset,
            pay_to: self.pay_to,
            max_timeout_seconds: self.max_timeout_seconds,
            domain: Some(domain),
        };
        let mut requirements = offer.to_requirements();
        let extra = requirements.extra.get_or_insert_with(JsonObject::new);
        for (key, value) in &self.extra {
            extra.insert(key.clone(), value.clone());
        }
        Ok(requirements)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail by panicking")]

    use awx_types::AmountError;
    use awx_x402::TokenInfo;
    use serde_json::json;

    use super::*;

    const PAY_TO: Address = Address::repeat_byte(0x11);

    #[test]
    fn money_is_converted_exactly_through_the_registry() {
        let registry = TokenRegistry::builtin();
        let requirements = PaymentOffer::new("$0.01", PAY_TO).to_requirements(&registry).unwrap();
        assert_eq!(
            serde_json::to_value(&requirements).unwrap(),
            json!({
                "scheme": "exact", "network": "eip155:84532", "amount": "10000",
                "asset": "0x036CbD53842c5426634e7929541eC2318f3dCF7e",
                "payTo": PAY_TO.to_checksum(None), "maxTimeoutSeconds": 300,
                "extra": {"name": "USDC", "version": "2"}
            })
        );
        let on_base = PaymentOffer::new("0.10", PAY_TO)
            .network(Network::evm(8453))
            .max_timeout_seconds(60)
            .extra("assetTransferMethod", "eip3009")
            .to_requirements(&registry)
            .unwrap();
        assert_eq!(on_base.amount, "100000");
        assert_eq!(on_base.max_timeout_seconds, 60);
        assert_eq!(
            on_base.extra.unwrap(),
            serde_json::from_value::<JsonObject>(
                json!({"name": "USD Coin", "version": "2", "assetTransferMethod": "eip3009"})
            )
            .unwrap()
        );
    }

    #[test]
    fn configuration_mistakes_are_errors() {
        let registry = TokenRegistry::builtin();
        let on_dev_chain = |price: Price| {
            PaymentOffer::new(price, PAY_TO)
                .network(Network::evm(31_337))
                .to_requirements(&registry)
                .unwrap_err()
        };
        assert!(matches!(
            on_dev_chain(Price::money("$0.01")),
            ConfigError::UnknownToken { symbol, network }
                if symbol == "USDC" && network == "eip155:31337"
        ));
        let too_precise =
            PaymentOffer::new("$0.0000001", PAY_TO).to_requirements(&registry).unwrap_err();
        assert!(matches!(
            too_precise,
            ConfigError::Price { source: AmountError::TooPrecise { decimals: 6, .. }, .. }
        ));
        let garbage = PaymentOffer::new("ten cents", PAY_TO).to_requirements(&registry);
        assert!(matches!(garbage, Err(ConfigError::Price { .. })));
        let free = PaymentOffer::new("$0", PAY_TO).to_requirements(&registry);
        assert!(matches!(free, Err(ConfigError::ZeroPrice { .. })));
        let instant = PaymentOffer::new("$1", PAY_TO).max_timeout_seconds(0);
        assert!(matches!(instant.to_requirements(&registry), Err(ConfigError::ZeroTimeout)));
        let solana = Network::parse_caip2("solana:5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp").unwrap();
        let elsewhere = PaymentOffer::new("$1", PAY_TO).network(solana);
        assert!(matches!(elsewhere.to_requirements(&registry), Err(ConfigError::NotEvm { .. })));
    }

    #[test]
    fn atomic_prices_and_registered_tokens_work_on_custom_chains() {
        let asset = Address::repeat_byte(0x22);
        let atomic = PaymentOffer::new(Price::atomic(1_000, asset, "TestUSD", "1"), PAY_TO)
            .network(Network::evm(31_337))
            .to_requirements(&TokenRegistry::empty())
            .unwrap();
        assert_eq!(atomic.amount, "1000");
        assert_eq!(atomic.asset, asset.to_checksum(None));
        assert_eq!(atomic.domain_names().unwrap().name, "TestUSD");

        let mut registry = TokenRegistry::builtin();
        registry
            .register(TokenInfo {
                network: Network::evm(31_337),
                address: asset,
                symbol: "TUSD".into(),
                decimals: 2,
                eip712_name: "TestUSD".into(),
                eip712_version: "1".into(),
            })
            .unwrap();
        let money = PaymentOffer::new(Price::money_in("$1.50", "tusd"), PAY_TO)
            .network(Network::evm(31_337))
            .to_requirements(&registry)
            .unwrap();
        assert_eq!(money.amount, "150");
        let too_precise = PaymentOffer::new(Price::money_in("$1.505", "TUSD"), PAY_TO)
            .network(Network::evm(31_337))
            .to_requirements(&registry);
        assert!(matches!(too_precise, Err(ConfigError::Price { .. })));
    }
}
