//! A Rust client for awx, the x402 payments platform for AI agents.
//!
//! - [`AwxClient`]: the platform API, typed: agents, sessions, pay and session pay, payments,
//!   check, fee tiers, and the facilitator. Errors come from the platform's envelope as
//!   [`ClientError::Api`] with the stable `code`, the `rule` that refused a payment and the
//!   `request_id`.
//! - [`X402Middleware`]: a `reqwest-middleware` middleware that pays a 402 from any URL through
//!   the platform (from an agent's wallet, or a session) and retries once with the signature; the
//!   answer carries a [`PaymentReceipt`].
//! - [`LocalPayer`] and [`pay`]: pay x402 URLs with no platform, from a private key, with a
//!   per-request maximum.
//!
//! Money is never a float: amounts are decimal strings as the API writes them, or
//! [`Amount`] in atomic units.

#![cfg_attr(
    test,
    allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        reason = "unit tests fail by panicking"
    )
)]

pub mod error;
pub mod local;
pub mod middleware;
pub mod platform;
pub mod types;

pub use awx_types::Amount;
pub use error::ClientError;
pub use local::{LocalPayer, LocalPayment, LocalReceipt, PayOptions, pay};
pub use middleware::{PaymentReceipt, ReceiptExt, X402Middleware};
pub use platform::AwxClient;
/// The `reqwest-middleware` crate this middleware is built for.
pub use reqwest_middleware;
pub use types::{
    Agent, Balance, CheckResult, CreateAgent, CreateSession, FeeTier, FeeTiers, Funded, PayRequest,
    Payment, PaymentError, PaymentSettlement, Policy, Session,
};
