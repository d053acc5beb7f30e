//! The signer service against real Postgres (a database per test), real Redis (a key prefix per
//! test) and, where a chain is needed, a real anvil node.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail by panicking, helpers included"
)]

mod at_rest;
mod authorizations;
mod bus_signing;
mod concurrent_start;
mod helpers;
mod net_transfers;
mod on_anvil;
mod refusals;
mod withdrawals;
