//! The awx settlement service: the x402 facilitator's chain work.
//!
//! - [`facilitator`]: verify (offline checks, signature, simulation, diagnosis), supported.
//! - [`settle`]: settle on chain exactly once per (network, payer, nonce), with every step stored
//!   before broadcast and relayer nonces allocated under a row lock.
//! - [`resumer`]: re-broadcasts stored transactions and records late receipts.
//! - [`commands`]: the bus commands (family `settlement`, types in `awx_api::facilitator`).
//!
//! The service owns the `settlement` schema. Transactions are signed by the signer service
//! (`awx_api::signer`); this service never holds a key.

pub mod app;
pub mod commands;
pub mod config;
pub mod facilitator;
pub mod resumer;
pub mod settle;

pub use app::SettlementService;
pub use config::SettlementSettings;
pub use facilitator::Facilitator;
