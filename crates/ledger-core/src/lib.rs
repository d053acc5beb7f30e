//! The pure double-entry model of the awx ledger.
//!
//! - [`model`]: accounts with TigerBeetle's four counters (debits and credits, pending and
//!   posted) and balance constraints (a wallet's debits must not exceed its credits); transfers
//!   of several legs applied atomically, single-phase, or two-phase (a pending hold, then posted
//!   in full or in part, or voided). [`model::apply`] computes every account change and the
//!   entries to record, or refuses the whole transfer; it never half-applies.
//! - [`fees`]: the tiered fee schedule and the fee of an amount, in decimal, rounded half-up to
//!   the token's smallest unit.
//!
//! The ledger service stores what these functions compute; nothing here does I/O.
//!
//! Invariants (checked by the property tests against a naive reference model):
//! every leg debits one account and credits another by the same amount, so over all accounts of
//! an asset the posted credits minus posted debits sum to zero, and pending debits equal pending
//! credits; a constrained account never breaks its constraint; a refused transfer changes nothing.
#![deny(clippy::arithmetic_side_effects)]

pub mod fees;
pub mod model;
