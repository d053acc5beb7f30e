//! The awx settlement service: the x402 facilitator's chain work.
//!
//! - [`facilitator`]: verify (offline checks, signature, simulation, diagnosis), supported.
//! - [`own`]: our own agents' payments, answered by the policy service before any chain call;
//!   settled ones are queued (`settlement.items`) for net settlement.
//! - [`settle`]: settle on chain exactly once per (network, payer, nonce), with every step stored
//!   before broadcast and relayer nonces allocated under a row lock.
//! - [`faucet`]: the development faucet: a mint from a relayer, then a ledger deposit.
//! - [`resumer`]: re-broadcasts stored transactions and records late receipts and deposits.
//! - [`commands`]: the bus commands (family `settlement`, types in `awx_api::facilitator`).
//!
//! The service owns the `settlement` schema. Transactions are signed by the signer service
//! (`awx_api::signer`); this service never holds a key.

pub mod app;
pub mod commands;
pub mod config;
pub mod facilitator;
pub mod faucet;
pub mod own;
pub mod resumer;
pub mod settle;

pub use app::SettlementService;
pub use config::SettlementSettings;
pub use facilitator::Facilitator;
