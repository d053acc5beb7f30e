//! The ledger service against a real Postgres (a database per test).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail by panicking, helpers included"
)]

mod accounts;
mod bus_commands;
mod checker;
mod concurrency;
mod deposit_reversal;
mod helpers;
mod immutability;
mod operations;
mod sweeper;
mod withdrawals;
