//! The awx ledger service: the only writer of money.
//!
//! - [`ops`]: the operations (deposit, payout, fees collected, generic transfer; balances,
//!   statements, fee tiers), each inside the caller's transaction, idempotent by key, computed by
//!   the pure model of `awx-ledger-core` and stored by [`store`].
//! - [`holds`]: a payment's hold, its capture and void (a void before the hold marks it, so
//!   the hold is refused when it arrives), its status.
//! - [`reversal`]: the reversal of a deposit whose block was reorganised away.
//! - [`withdrawals`]: the hold of a withdrawal to an outside address (no fee, no fee volume),
//!   resolved by the ordinary capture and void.
//! - [`commands`]: the same operations as bus commands (family `ledger`, types in `awx-api`).
//! - [`sweeper`]: releases holds past their timeout.
//! - [`check`]: the checker behind `awx ledger check`.
//! - [`fees`]: the versioned fee schedule and tenants' 30-day volume.
//!
//! Chart of accounts, per asset (chain and token): `wallet` per agent (its pending debits are what
//! is held), `payable` per payee address, `fee_revenue` in shards, `fee_collected`,
//! `onchain_mirror`, `settlement_clearing`, and `reorg_loss` (what reorganisations took back that
//! agents had already spent). See `docs/ledger.md`.

pub mod accounts;
pub mod app;
pub mod check;
pub mod commands;
pub mod config;
pub mod error;
pub mod fees;
pub mod holds;
pub mod ops;
pub mod reversal;
pub mod store;
pub mod sweeper;
pub mod withdrawals;

pub use app::LedgerService;
pub use config::LedgerSettings;
pub use ops::Ledger;
