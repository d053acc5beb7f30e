//! The messages awx services exchange over the bus (`awx-bus`): per owning service, its commands
//! with their replies, its events, and the stable codes of its rejections.
//!
//! Services never depend on each other; they share these types. A command's `FAMILY` is the
//! request stream of the service that handles it.

pub mod deposits;
pub mod facilitator;
pub mod issued;
pub mod ledger;
pub mod policy;
pub mod signer;
pub mod withdrawals;
