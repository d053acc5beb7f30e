//! The bus's Redis connections, to one server or to a Redis Cluster ([`RedisMode`]).
//!
//! [`RedisConn`] is either a `ConnectionManager` (one server; it reconnects by itself) or a
//! cluster connection (which routes each command to the node owning its key's slot, follows
//! `MOVED`/`ASK` and refreshes the slot map); both implement `redis::aio::ConnectionLike`, so the
//! rest of the bus sends the same commands, pipelines and scripts in both modes. In a cluster a
//! pipeline must stay in one slot: the key layout ([`crate::Keys`]) sees to that.
//!
//! Both kinds connect lazily, on first use, so a service starts while Redis is down; a cluster
//! connection whose first attempt failed is attempted again by the next command. A cluster
//! connection that has lost every node (the whole cluster was down) can stay without any, each
//! command failing with "no connections found" even once the nodes are back; such a connection
//! is dropped and the next command makes a new one from the seeds.
//!
//! [`RedisMode`]: crate::config::RedisMode

use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, ConnectionInfo, ErrorKind, Pipeline, RedisFuture, RedisResult, Value};
use tokio::sync::Mutex;

use crate::BusError;

/// Retries of one cluster request (redirections during a resharding, a node reconnecting)
/// within its response timeout; the bus's loops retry beyond that with their own backoff.
const CLUSTER_RETRIES: u32 = 3;

/// Where the bus's Redis is, parsed once from the configuration.
#[derive(Clone)]
pub(crate) enum Target {
    /// One server.
    Single(redis::Client),
    /// A Redis Cluster, found from these seed nodes.
    Cluster(Vec<ConnectionInfo>),
}

impl std::fmt::Debug for Target {
    // The URLs may carry passwords.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Single(_) => f.write_str("Single"),
            Self::Cluster(seeds) => write!(f, "Cluster({} seeds)", seeds.len()),
        }
    }
}

impl Target {
    /// A new connection whose connection attempts are bounded by `connect_timeout` and whose
    /// answers are awaited at most `response_timeout`. Nothing is connected until first use.
    pub(crate) fn connect_lazy(
        &self,
        connect_timeout: Duration,
        response_timeout: Duration,
    ) -> Result<RedisConn, BusError> {
        match self {
            Self::Single(client) => {
                // Few quick reconnection attempts inside the client: the bus's loops retry with
                // their own capped backoff, and a caller should learn quickly that Redis is
                // unreachable.
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(connect_timeout))
                    .set_response_timeout(Some(response_timeout))
                    .set_number_of_retries(1)
                    .set_min_delay(Duration::from_millis(50))
                    .set_max_delay(Duration::from_secs(1));
                Ok(RedisConn::Single(ConnectionManager::new_lazy_with_config(
                    client.clone(),
                    config,
                )?))
            }
            Self::Cluster(seeds) => {
                let client = ClusterClientBuilder::new(seeds.clone())
                    .connection_timeout(connect_timeout)
                    .response_timeout(response_timeout)
                    .retries(CLUSTER_RETRIES)
                    .min_retry_wait(10)
                    .max_retry_wait(500)
                    .build()
                    .map_err(|_| {
                        BusError::Config(
                            "bus.redis_url and bus.redis_cluster_seeds must be Redis URLs of \
                             cluster nodes"
                                .to_owned(),
                        )
                    })?;
                Ok(RedisConn::Cluster(Arc::new(LazyCluster {
                    client,
                    connect_within: connect_timeout.saturating_add(response_timeout),
                    connection: std::sync::Mutex::new(None),
                    connecting: Mutex::new(()),
                })))
            }
        }
    }
}

/// A connection to the bus's Redis: one server, or a cluster. Cheap to clone; clones share the
/// underlying connections.
#[derive(Clone)]
pub(crate) enum RedisConn {
    /// One server, through a multiplexed connection that reconnects by itself.
    Single(ConnectionManager),
    /// A Redis Cluster (clones share the connection).
    Cluster(Arc<LazyCluster>),
}

/// A cluster connection made on first use (and attempted again after a failed attempt), made
/// anew after it lost every node.
pub(crate) struct LazyCluster {
    client: redis::cluster::ClusterClient,
    connect_within: Duration,
    /// The connection and its generation (which one a failure is about). Every command reads it
    /// (a short lock, never held across an await).
    connection: std::sync::Mutex<Option<(u64, ClusterConnection)>>,
    /// Held while a connection is being made, so only one is.
    connecting: Mutex<()>,
}

impl LazyCluster {
    fn current(&self) -> Option<(u64, ClusterConnection)> {
        self.connection.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    async fn connection(&self) -> RedisResult<(u64, ClusterConnection)> {
        if let Some(current) = self.current() {
            return Ok(current);
        }
        let _connecting = self.connecting.lock().await;
        if let Some(current) = self.current() {
            return Ok(current);
        }
        let connection =
            match tokio::time::timeout(self.connect_within, self.client.get_async_connection())
                .await
            {
                Ok(result) => result?,
                Err(_) => {
                    return Err(redis::RedisError::from(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "connecting to the Redis Cluster timed out",
                    )));
                }
            };
        let generation = GENERATIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        *self.connection.lock().unwrap_or_else(std::sync::PoisonError::into_inner) =
            Some((generation, connection.clone()));
        Ok((generation, connection))
    }

    /// Drops connection `generation` if `result` says it has no node left.
    fn after<T>(&self, generation: u64, result: RedisResult<T>) -> RedisResult<T> {
        if let Err(error) = &result
            && error.kind() == ErrorKind::ClusterConnectionNotFound
        {
            let mut slot =
                self.connection.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if slot.as_ref().is_some_and(|(current, _)| *current == generation) {
                tracing::warn!(
                    "the Redis Cluster connection lost every node; reconnecting from the seeds"
                );
                *slot = None;
            }
        }
        result
    }
}

/// Numbers the cluster connections made, so a failure drops only the connection it happened on.
static GENERATIONS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

impl ConnectionLike for RedisConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Single(connection) => connection.req_packed_command(cmd),
            Self::Cluster(cluster) => Box::pin(async move {
                let (generation, mut connection) = cluster.connection().await?;
                let result = connection.req_packed_command(cmd).await;
                cluster.after(generation, result)
            }),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Single(connection) => connection.req_packed_commands(pipeline, offset, count),
            Self::Cluster(cluster) => Box::pin(async move {
                let (generation, mut connection) = cluster.connection().await?;
                let result = connection.req_packed_commands(pipeline, offset, count).await;
                cluster.after(generation, result)
            }),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(connection) => connection.get_db(),
            // A cluster has only database 0.
            Self::Cluster(_) => 0,
        }
    }
}
