//! Test infrastructure against real services (never mocks).
//!
//! - [`TestDb`]: a fresh Postgres database per test, created from a template database that has
//!   every migration applied (the template is rebuilt when the migrations change), dropped when
//!   the test ends.
//! - [`RedisNamespace`]: a random key prefix per test on the shared Redis, its keys deleted at the
//!   end; [`RedisServer`]: a private `redis-server` on a free port, for tests that stop and restart
//!   Redis; [`RedisCluster`]: a private three-node Redis Cluster on loopback.
//! - [`free_port`], [`init_logging`].
//!
//! Connection settings: `AWX_TEST_DATABASE_URL` (default
//! `postgres://postgres:postgres@127.0.0.1:5432/postgres`, an administrative database) and
//! `AWX_TEST_REDIS_URL` (default `redis://127.0.0.1:6379`); `make setup` starts both.

#![allow(
    clippy::expect_used,
    clippy::panic,
    reason = "test infrastructure fails the test loudly when the real services are missing"
)]

mod postgres;
mod redis_support;

pub use postgres::{TestDb, admin_database_url};
pub use redis_support::{RedisCluster, RedisNamespace, RedisServer, redis_url};

/// A loopback port that was free a moment ago (bind to port 0 where the server allows it; this
/// is for servers that need a port number up front, such as `redis-server`).
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    listener.local_addr().expect("local address").port()
}

/// Installs a test log subscriber when `TEST_LOG` is set; quiet otherwise.
pub fn init_logging() {
    if std::env::var_os("TEST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
    }
}
