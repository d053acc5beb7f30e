//! Helpers shared by the bus's integration tests: a migrated database with the bus tables in a
//! schema of the test's own, bus configurations with short timings, bounded waits on
//! conditions, and readers of Redis and Postgres state to assert on.
//!
//! (Candidates for `awx-test-support`: [`wait_until`], and the stream inspection helpers.)

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    dead_code,
    unreachable_pub,
    reason = "test helpers fail the test by panicking; not every test binary uses every helper"
)]

use std::future::Future;
use std::time::Duration;

use awx_bus::BusConfig;
use awx_test_support::TestDb;
use redis::streams::{StreamInfoGroupsReply, StreamRangeReply};
use secrecy::SecretString;
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

/// The schema the tests install the bus tables into.
pub const SCHEMA: &str = "bustest";

/// The service (consumer group) the tests run as.
pub const SERVICE: &str = "svc";

/// A fresh database with the bus tables in [`SCHEMA`] and the tests' own tables.
pub async fn database() -> TestDb {
    awx_test_support::init_logging();
    let db = TestDb::new().await;
    sqlx::query("SELECT public.awx_bus_install('bustest')").execute(&db.pool).await.unwrap();
    // No unique constraints: a command or event applied twice shows up as two rows.
    sqlx::query(
        "CREATE TABLE bustest.effects (\
           message_id uuid NOT NULL, account text NOT NULL, amount bigint NOT NULL, \
           server text NOT NULL, delivery bigint NOT NULL)",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    db
}

/// Another pool on the test database, as another replica would have.
pub async fn replica_pool(db: &TestDb) -> PgPool {
    PgPoolOptions::new().max_connections(8).connect_with(db.connect_options()).await.unwrap()
}

/// A configuration with test timings: short blocking reads, claims after 400 ms, three
/// deliveries before dead-lettering, fast retries; a generous reply grace, so a server's
/// "timed out" answer beats the caller's own timer even on a loaded machine.
pub fn config(redis_url: &str, prefix: &str) -> BusConfig {
    BusConfig {
        redis_url: SecretString::from(redis_url.to_owned()),
        prefix: prefix.to_owned(),
        block_ms: 200,
        claim_idle_ms: 400,
        max_deliveries: 3,
        handler_concurrency: 4,
        reply_grace_ms: 1_000,
        outbox_poll_ms: 200,
        retry_backoff_max_ms: 200,
        redis_connect_timeout_ms: 500,
        ..BusConfig::new(SERVICE, SCHEMA)
    }
}

/// Polls `condition` every 20 ms until it holds; fails the test with `what` after `limit`.
pub async fn wait_until<F, Fut>(what: &str, limit: Duration, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if condition().await {
            return;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("timed out after {limit:?} waiting until {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Awaits `future`, failing the test with `what` after `limit`.
pub async fn within<T>(what: &str, limit: Duration, future: impl Future<Output = T>) -> T {
    match tokio::time::timeout(limit, future).await {
        Ok(value) => value,
        Err(_) => panic!("timed out after {limit:?} waiting for {what}"),
    }
}

/// A plain connection for inspecting Redis.
pub async fn redis_conn(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url).unwrap().get_multiplexed_async_connection().await.unwrap()
}

/// The group's pending count and lag on `stream` (`None` if the stream or group is missing).
pub async fn group_state(url: &str, stream: &str, group: &str) -> Option<(usize, Option<usize>)> {
    let mut conn = redis_conn(url).await;
    let groups: StreamInfoGroupsReply =
        redis::cmd("XINFO").arg("GROUPS").arg(stream).query_async(&mut conn).await.ok()?;
    groups.groups.into_iter().find(|g| g.name == group).map(|g| (g.pending, g.lag))
}

/// Whether the group has read everything on `stream` and acknowledged it all.
pub async fn group_drained(url: &str, stream: &str, group: &str) -> bool {
    matches!(group_state(url, stream, group).await, Some((0, Some(0))))
}

/// [`group_drained`] for the tests' service, as a future owning its arguments (for closures).
pub fn drained(url: &str, stream: &str) -> impl Future<Output = bool> + Send + use<> {
    let (url, stream) = (url.to_owned(), stream.to_owned());
    async move { group_drained(&url, &stream, SERVICE).await }
}

/// Every entry of `stream`, as field maps.
pub async fn entries(url: &str, stream: &str) -> Vec<std::collections::HashMap<String, String>> {
    let mut conn = redis_conn(url).await;
    let range: StreamRangeReply =
        redis::cmd("XRANGE").arg(stream).arg("-").arg("+").query_async(&mut conn).await.unwrap();
    range
        .ids
        .into_iter()
        .map(|entry| {
            entry
                .map
                .iter()
                .map(|(k, v)| (k.clone(), redis::from_redis_value_ref::<String>(v).unwrap()))
                .collect()
        })
        .collect()
}

/// Rows of `bustest.effects` for `message_id`.
pub async fn effect_count(pool: &PgPool, message_id: uuid::Uuid) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM bustest.effects WHERE message_id = $1")
        .bind(message_id)
        .fetch_one(pool)
        .await
        .unwrap()
}

/// Rows of `bustest.inbox` for `message_id`.
pub async fn inbox_count(pool: &PgPool, message_id: uuid::Uuid) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM bustest.inbox WHERE message_id = $1")
        .bind(message_id)
        .fetch_one(pool)
        .await
        .unwrap()
}
