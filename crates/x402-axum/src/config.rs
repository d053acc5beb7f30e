//! Building a [`PaymentLayer`]: the route's offers, what is paid for (description, media type,
//! the resource URL's base), the token registry and the facilitator. Every mistake is a
//! [`ConfigError`] from [`PaymentLayerBuilder::build`], before the first request.

use std::sync::Arc;

use awx_types::AmountError;
use awx_x402::{RegistryError, TokenInfo, TokenRegistry};

use crate::facilitator::{FacilitatorClient, FacilitatorConfig, FacilitatorConfigError};
use crate::layer::{PaymentLayer, Shared};
use crate::price::{PaymentOffer, Price};

/// Why a payment layer cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// No offer was configured.
    #[error("a paid route needs at least one payment offer")]
    NoOffers,
    /// A money price names a token the registry does not know on that network.
    #[error(
        "no token `{symbol}` is registered on {network}: register its TokenInfo, \
         or price the route in atomic units with an explicit asset"
    )]
    UnknownToken {
        /// The ticker asked for.
        symbol: String,
        /// The offer's network.
        network: String,
    },
    /// A money price is not a valid amount of its token (malformed, or more decimals than the
    /// token has).
    #[error("price `{price}` is not an exact amount of {symbol}: {source}")]
    Price {
        /// The price as configured.
        price: String,
        /// The token's ticker.
        symbol: String,
        /// Why it is not.
        #[source]
        source: AmountError,
    },
    /// The price is zero.
    #[error("price `{price}` is zero")]
    ZeroPrice {
        /// The price as configured.
        price: String,
    },
    /// The offer's network is not an EVM chain; only `exact` EVM payments are offered.
    #[error("network {network} is not an eip155 network")]
    NotEvm {
        /// The offer's network.
        network: String,
    },
    /// `maxTimeoutSeconds` is zero.
    #[error("maxTimeoutSeconds must be positive")]
    ZeroTimeout,
    /// An extra token could not be registered.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// The resource base URL is not an absolute `http(s)` URL.
    #[error("resource base URL `{url}` is not an absolute http(s) URL")]
    ResourceBaseUrl {
        /// The URL as configured.
        url: String,
    },
    /// The facilitator client cannot be built.
    #[error(transparent)]
    Facilitator(#[from] FacilitatorConfigError),
}

/// How the facilitator is given to the builder.
#[derive(Debug)]
enum FacilitatorChoice {
    FromEnv,
    Config(FacilitatorConfig),
    Client(FacilitatorClient),
}

/// Configures a [`PaymentLayer`]; see the crate documentation for an example.
#[derive(Debug)]
pub struct PaymentLayerBuilder {
    offers: Vec<PaymentOffer>,
    description: Option<String>,
    mime_type: Option<String>,
    resource_base_url: Option<String>,
    registry: TokenRegistry,
    extra_tokens: Vec<TokenInfo>,
    facilitator: FacilitatorChoice,
}

impl Default for PaymentLayerBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl PaymentLayerBuilder {
    /// No offers yet; the built-in token registry; our facilitator from the environment.
    pub fn new() -> Self {
        Self {
            offers: Vec::new(),
            description: None,
            mime_type: None,
            resource_base_url: None,
            registry: TokenRegistry::builtin(),
            extra_tokens: Vec::new(),
            facilitator: FacilitatorChoice::FromEnv,
        }
    }

    /// Accepts one more way to pay. Offers are listed in `accepts` in this order.
    #[must_use]
    pub fn offer(mut self, offer: PaymentOffer) -> Self {
        self.offers.push(offer);
        self
    }

    /// Shorthand for `offer(PaymentOffer::new(price, pay_to))`.
    #[must_use]
    pub fn price(self, price: impl Into<Price>, pay_to: awx_x402::Address) -> Self {
        self.offer(PaymentOffer::new(price, pay_to))
    }

    /// The human description in the challenge's `resource`.
    #[must_use]
    pub fn description(mut self, description: impl Into<String>) -> Self {
        self.description = Some(description.into());
        self
    }

    /// The media type of the paid response, in the challenge's `resource`.
    #[must_use]
    pub fn mime_type(mut self, mime_type: impl Into<String>) -> Self {
        self.mime_type = Some(mime_type.into());
        self
    }

    /// Builds the resource URL as this base (`https://api.example.com`) followed by the
    /// request's path and query, instead of from the request's own scheme and `Host`.
    #[must_use]
    pub fn resource_base_url(mut self, base_url: impl Into<String>) -> Self {
        self.resource_base_url = Some(base_url.into());
        self
    }

    /// Replaces the token registry money prices are converted with.
    #[must_use]
    pub fn registry(mut self, registry: TokenRegistry) -> Self {
        self.registry = registry;
        self
    }

    /// Adds a token to the registry (a custom chain's token, to price it in money).
    #[must_use]
    pub fn token(mut self, token: TokenInfo) -> Self {
        self.extra_tokens.push(token);
        self
    }

    /// Talks to the facilitator `config` describes.
    #[must_use]
    pub fn facilitator(mut self, config: FacilitatorConfig) -> Self {
        self.facilitator = FacilitatorChoice::Config(config);
        self
    }

    /// Talks to the facilitator through `client` (to share one client between layers).
    #[must_use]
    pub fn facilitator_client(mut self, client: FacilitatorClient) -> Self {
        self.facilitator = FacilitatorChoice::Client(client);
        self
    }

    /// Checks everything and converts the prices.
    pub fn build(self) -> Result<PaymentLayer, ConfigError> {
        if self.offers.is_empty() {
            return Err(ConfigError::NoOffers);
        }
        let mut registry = self.registry;
        for token in self.extra_tokens {
            registry.register(token)?;
        }
        let offers = self
            .offers
            .iter()
            .map(|offer| offer.to_requirements(&registry))
            .collect::<Result<Vec<_>, _>>()?;
        let resource_base_url = self.resource_base_url.map(check_base_url).transpose()?;
        let facilitator = match self.facilitator {
            FacilitatorChoice::FromEnv => FacilitatorClient::new(FacilitatorConfig::from_env())?,
            FacilitatorChoice::Config(config) => FacilitatorClient::new(config)?,
            FacilitatorChoice::Client(client) => client,
        };
        Ok(PaymentLayer::from_shared(Arc::new(Shared {
            offers,
            description: self.description,
            mime_type: self.mime_type,
            resource_base_url,
            facilitator,
        })))
    }
}

fn check_base_url(url: String) -> Result<String, ConfigError> {
    let trimmed = url.trim().trim_end_matches('/');
    let valid = reqwest::Url::parse(trimmed).is_ok_and(|parsed| {
        matches!(parsed.scheme(), "http" | "https")
            && parsed.host().is_some()
            && parsed.query().is_none()
            && parsed.fragment().is_none()
    });
    if valid { Ok(trimmed.to_owned()) } else { Err(ConfigError::ResourceBaseUrl { url }) }
}
