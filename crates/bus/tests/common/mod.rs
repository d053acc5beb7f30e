//! Helpers shared by the bus's integration tests: the Redis a test runs against (the shared
//! server or a private three-node cluster, see [`Topology`] and [`on_both_topologies!`]), a
//! migrated database with the bus tables in a schema of the test's own, bus configurations with
//! short timings, bounded waits on conditions, and readers of Redis and Postgres state to assert
//! on.
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

use awx_bus::{Bus, BusConfig, BusError, CommandServer, Keys, RedisMode};
use awx_test_support::{RedisCluster, RedisNamespace, RedisServer, TestDb};
use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::cluster_async::ClusterConnection;
use redis::streams::{StreamInfoGroupsReply, StreamRangeReply};
use redis::{Cmd, Pipeline, RedisFuture, Value};
use secrecy::SecretString;
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The schema the tests install the bus tables into.
pub const SCHEMA: &str = "bustest";

/// The service (consumer group) the tests run as.
pub const SERVICE: &str = "svc";

/// Defines, for each named `async fn name(topology: Topology)` of the test file, the test
/// `single::name` (on the shared Redis server) and the test `cluster::name` (on a private
/// three-node Redis Cluster).
macro_rules! on_both_topologies {
    ($($name:ident),+ $(,)?) => {
        mod single {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    super::$name(crate::common::Topology::Single).await;
                }
            )+
        }
        mod cluster {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    super::$name(crate::common::Topology::Cluster).await;
                }
            )+
        }
    };
}

/// What Redis a test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topology {
    /// The shared Redis server, in a key namespace of the test's own.
    Single,
    /// A private three-node Redis Cluster, started for the test.
    Cluster,
}

/// Where a test's Redis is, to configure buses with and to inspect it. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Probe {
    /// The server's URL, or a seed node's.
    url: String,
    cluster: bool,
}

impl Probe {
    /// The server at `url`.
    pub fn single(url: &str) -> Self {
        Self { url: url.to_owned(), cluster: false }
    }

    /// The cluster `cluster`.
    pub fn cluster(cluster: &RedisCluster) -> Self {
        Self { url: cluster.url(), cluster: true }
    }

    /// A bus configuration with test timings on this Redis, under `prefix`.
    pub fn config(&self, prefix: &str) -> BusConfig {
        let mut config = config(&self.url, prefix);
        if self.cluster {
            config.redis_mode = RedisMode::Cluster;
        }
        config
    }

    /// A plain connection for inspecting Redis (a cluster connection on a cluster).
    pub async fn conn(&self) -> Conn {
        if self.cluster {
            let client = redis::cluster::ClusterClient::new(vec![self.url.as_str()]).unwrap();
            Conn::Cluster(client.get_async_connection().await.unwrap())
        } else {
            let client = redis::Client::open(self.url.as_str()).unwrap();
            Conn::Single(client.get_multiplexed_async_connection().await.unwrap())
        }
    }
}

/// A connection to a server or a cluster.
#[derive(Clone)]
pub enum Conn {
    Single(MultiplexedConnection),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Single(conn) => conn.req_packed_command(cmd),
            Self::Cluster(conn) => conn.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Single(conn) => conn.req_packed_commands(pipeline, offset, count),
            Self::Cluster(conn) => conn.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(conn) => conn.get_db(),
            Self::Cluster(conn) => conn.get_db(),
        }
    }
}

/// The Redis of one test: a namespace on the shared server, or a private cluster (with a
/// namespace on it too). Dereferences to its [`Probe`].
pub struct TestRedis {
    probe: Probe,
    namespace: RedisNamespace,
    // Last: the namespace is cleaned before the cluster stops.
    _cluster: Option<RedisCluster>,
}

impl TestRedis {
    /// The Redis of `topology`, for one test.
    pub async fn new(topology: Topology) -> Self {
        match topology {
            Topology::Single => {
                let url = awx_test_support::redis_url();
                Self {
                    probe: Probe::single(&url),
                    namespace: RedisNamespace::on(&url),
                    _cluster: None,
                }
            }
            Topology::Cluster => {
                let cluster = tokio::task::spawn_blocking(RedisCluster::start).await.unwrap();
                Self {
                    probe: Probe::cluster(&cluster),
                    namespace: RedisNamespace::on_cluster(&cluster),
                    _cluster: Some(cluster),
                }
            }
        }
    }

    /// The test's key prefix.
    pub fn prefix(&self) -> &str {
        self.namespace.prefix()
    }

    /// The test's keys.
    pub fn keys(&self) -> Keys {
        Keys::new(self.prefix()).unwrap()
    }

    /// A bus configuration with test timings, on this Redis and under the test's prefix.
    pub fn config(&self) -> BusConfig {
        self.probe.config(self.prefix())
    }
}

impl std::ops::Deref for TestRedis {
    type Target = Probe;

    fn deref(&self) -> &Probe {
        &self.probe
    }
}

/// A private Redis (a server, or a cluster) that a test stops and starts.
pub enum PrivateRedis {
    Server(RedisServer),
    Cluster(RedisCluster),
}

impl PrivateRedis {
    /// Starts one of `topology` (blocking: call it from `spawn_blocking`).
    pub fn start(topology: Topology) -> Self {
        match topology {
            Topology::Single => Self::Server(RedisServer::spawn()),
            Topology::Cluster => Self::Cluster(RedisCluster::start()),
        }
    }

    /// How to reach it.
    pub fn probe(&self) -> Probe {
        match self {
            Self::Server(server) => Probe::single(&server.url()),
            Self::Cluster(cluster) => Probe::cluster(cluster),
        }
    }

    /// Kills it (every node of a cluster); its data is gone.
    pub fn stop(&mut self) {
        match self {
            Self::Server(server) => server.stop(),
            Self::Cluster(cluster) => cluster.stop(),
        }
    }

    /// Starts it again, empty, and waits until it serves.
    pub fn start_again(&mut self) {
        match self {
            Self::Server(server) => server.start(),
            Self::Cluster(cluster) => cluster.restart(),
        }
    }
}

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

/// The group's pending count and lag on `stream` (`None` if the stream or group is missing).
pub async fn group_state(
    redis: &Probe,
    stream: &str,
    group: &str,
) -> Option<(usize, Option<usize>)> {
    let mut conn = redis.conn().await;
    let groups: StreamInfoGroupsReply =
        redis::cmd("XINFO").arg("GROUPS").arg(stream).query_async(&mut conn).await.ok()?;
    groups.groups.into_iter().find(|g| g.name == group).map(|g| (g.pending, g.lag))
}

/// Whether the group has read everything on `stream` and acknowledged it all.
pub async fn group_drained(redis: &Probe, stream: &str, group: &str) -> bool {
    matches!(group_state(redis, stream, group).await, Some((0, Some(0))))
}

/// [`group_drained`] for the tests' service, as a future owning its arguments (for closures).
pub fn drained(redis: &Probe, stream: &str) -> impl Future<Output = bool> + Send + use<> {
    let (redis, stream) = (redis.clone(), stream.to_owned());
    async move { group_drained(&redis, &stream, SERVICE).await }
}

/// Every entry of `stream`, as field maps.
pub async fn entries(
    redis: &Probe,
    stream: &str,
) -> Vec<std::collections::HashMap<String, String>> {
    let mut conn = redis.conn().await;
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

/// How long a server gets to stop.
const STOP_WAIT: Duration = Duration::from_secs(20);

/// A running command server of its own (its own bus and pool, as a replica would have).
pub struct Server {
    pub bus: Bus,
    pub stop: CancellationToken,
    pub task: JoinHandle<Result<(), BusError>>,
}

impl Server {
    /// A server of `family` on `config`, with the handlers `register` adds.
    pub async fn start(
        db: &TestDb,
        config: BusConfig,
        family: &str,
        register: impl FnOnce(CommandServer) -> Result<CommandServer, BusError>,
    ) -> Self {
        let bus = Bus::connect(config).await.unwrap();
        let server =
            register(CommandServer::new(&bus, replica_pool(db).await, family).unwrap()).unwrap();
        let stop = CancellationToken::new();
        let task = tokio::spawn(server.run(stop.clone()));
        Self { bus, stop, task }
    }

    /// Stops it cleanly and checks that it stopped without error.
    pub async fn shutdown(self) {
        self.stop.cancel();
        within("the server to stop", STOP_WAIT, self.task).await.unwrap().unwrap();
    }

    /// Kills it where it stands (its in-flight handlers, or its batch, dropped mid-transaction).
    pub async fn kill(self) {
        self.task.abort();
        let _ = self.task.await;
        drop(self.bus);
    }
}
