//! The awx policy and session service: it decides and reserves, and owns each payment from
//! request to capture.
//!
//! - [`agents`]: agents, their wallets (created by the signer; only addresses are kept here) and
//!   their policies.
//! - [`sessions`]: budgets with atomic reservations.
//! - [`pay`]: the pay path: offer, policy, session, hold, decision token, signature.
//! - [`approvals`]: approving or rejecting payments above the approval threshold.
//! - [`own`]: the facilitator's answers for payments our agents made (verify without the chain,
//!   settle by capture).
//! - [`net`]: decisions for the batch settlement worker's net transfers (payments captured,
//!   from one wallet, adding up exactly).
//! - [`withdrawals`]: each account's withdrawal allow-list, and approving a withdrawal from an
//!   agent's wallet (checks, the ledger's hold, a decision covering exactly that transfer).
//! - [`expiry`]: an expired authorization is released only if the chain shows it unused; one
//!   used elsewhere is captured.
//! - [`sweeper`]: releases stuck, expired and unapproved payments.
//! - [`watch`]: the chain watcher's questions: which addresses are agents' wallets, and an
//!   authorization used on chain outside awx (its payment captured or recorded as paid).
//! - [`commands`]: the bus commands (family `policy`, types in `awx_api::policy`).
//!
//! The rules themselves (limits, URL patterns, session arithmetic, offer choice) are the pure
//! crate `awx-policy-core`. The service owns the `policy` schema.

pub mod agents;
pub mod app;
pub mod approvals;
pub mod commands;
pub mod config;
pub mod engine;
pub mod error;
pub mod expiry;
pub mod net;
pub mod own;
pub mod pay;
pub mod payments;
pub mod sessions;
pub mod sweeper;
pub mod watch;
pub mod withdrawals;

pub use app::PolicyService;
pub use config::PolicySettings;
