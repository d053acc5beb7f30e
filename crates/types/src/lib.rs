//! Money and identifiers shared by every awx crate.
//!
//! - [`Amount`]: a token amount in atomic units (for USDC, millionths of a dollar), with checked
//!   arithmetic only and exact conversion to and from decimal strings. No floats anywhere.
//! - Prefixed id newtypes ([`AccountId`], [`AgentId`], [`PaymentId`], …): a readable prefix and a
//!   UUIDv7 body, so ids sort by creation time and never get mixed up across entities.
//!
//! This crate is pure: it does no I/O and depends on nothing that does.
#![deny(clippy::arithmetic_side_effects)]

mod amount;
mod id;

pub use amount::{API_WHOLE_UNITS_MAX, Amount, AmountError, DECIMALS_MAX};
pub use id::{
    AccountId, AgentId, ApiKeyId, EventId, IdError, LedgerId, PaymentId, RequestId, SessionId,
    SettlementId,
};
