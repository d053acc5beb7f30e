//! x402 v2 paywalls for axum (and any tower service): the provider side of the protocol, as the
//! official `@x402/express` 2.27 middleware does it.
//!
//! A request without `PAYMENT-SIGNATURE` gets a 402 whose `PAYMENT-REQUIRED` header lists the
//! route's offers; a paid request is verified by an x402 facilitator over HTTP (ours by default),
//! runs the handler, and is settled only if the handler answered below 400, with the settlement
//! in `PAYMENT-RESPONSE`. The steps are in [`layer`]; the facilitator client in [`facilitator`];
//! prices and offers in [`price`]; the builder in [`config`].
//!
//! The one-liner: USDC on Base Sepolia, our facilitator from `AWX_FACILITATOR_URL` and
//! `AWX_API_KEY`.
//!
//! ```
//! use awx_x402_axum::payment_middleware;
//! use axum::{Router, routing::get};
//!
//! async fn weather() -> &'static str {
//!     "sunny"
//! }
//!
//! # fn main() -> Result<(), awx_x402_axum::ConfigError> {
//! let pay_to = awx_x402::Address::repeat_byte(0x42);
//! let app: Router =
//!     Router::new().route("/weather", get(weather).layer(payment_middleware("$0.01", pay_to)?));
//! # Ok(()) }
//! ```
//!
//! The builder: several offers (here, also an atomic price of a custom chain's token, given by
//! its contract and EIP-712 domain), a description, and our facilitator with an API key. The
//! handler reads who paid from [`PaymentInfo`].
//!
//! ```
//! use awx_x402::{Address, Network};
//! use awx_x402_axum::{FacilitatorConfig, PaymentInfo, PaymentLayer, PaymentOffer, Price};
//! use axum::{Extension, Router, routing::get};
//!
//! async fn premium(Extension(paid): Extension<PaymentInfo>) -> String {
//!     format!("paid by {:?}", paid.payer)
//! }
//!
//! # fn main() -> Result<(), awx_x402_axum::ConfigError> {
//! let pay_to = Address::repeat_byte(0x42);
//! let test_usd = Address::repeat_byte(0x5f);
//! let paywall = PaymentLayer::builder()
//!     .offer(PaymentOffer::new("$0.10", pay_to))
//!     .offer(
//!         PaymentOffer::new(Price::atomic(100_000, test_usd, "TestUSD", "1"), pay_to)
//!             .network(Network::evm(31_337))
//!             .max_timeout_seconds(60),
//!     )
//!     .description("Premium market data")
//!     .mime_type("application/json")
//!     .facilitator(
//!         FacilitatorConfig::new("https://awx.example.com/api/v1/x402/facilitator")
//!             .api_key("awx_0123456789abcdef_example"),
//!     )
//!     .build()?;
//! let app: Router = Router::new().route("/premium", get(premium)).layer(paywall);
//! # Ok(()) }
//! ```
//!
//! Configuration mistakes (a money price in a token the registry does not know on the route's
//! network, more decimals than the token has, a bad facilitator URL) are [`ConfigError`]s from
//! `build`, never failed requests.

pub mod config;
pub mod facilitator;
pub mod layer;
pub mod price;

pub use config::{ConfigError, PaymentLayerBuilder};
pub use facilitator::{
    Endpoint, FacilitatorClient, FacilitatorConfig, FacilitatorConfigError, FacilitatorError,
};
pub use layer::{PaymentInfo, PaymentLayer, PaymentService, SupportError};
pub use price::{AssetAmount, PaymentOffer, Price};

/// Paywalls a route (or a router) with one offer: `price` (money such as `"$0.01"` is USDC on
/// Base Sepolia) paid to `pay_to`, through our facilitator ([`FacilitatorConfig::from_env`]).
///
/// The whitepaper's `paymentMiddleware(amount, address)`. For anything else, use
/// [`PaymentLayer::builder`].
pub fn payment_middleware(
    price: impl Into<Price>,
    pay_to: awx_x402::Address,
) -> Result<PaymentLayer, ConfigError> {
    PaymentLayer::builder().price(price, pay_to).build()
}
