//! The gateway's API tests: real Postgres (a database per test), real Redis (a key namespace
//! per test, or a private server), the gateway serving on a loopback port.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail by panicking, helpers included"
)]

mod check;
mod deposits;
mod docs;
mod envelope;
mod errors;
mod helpers;
mod idempotency;
mod isolation;
mod keys;
mod ops;
mod ratelimit;
mod revocation;
mod withdrawals;
