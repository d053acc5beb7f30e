//! The bus's configuration: [`BusConfig`], read from the service's settings (units in field
//! names), checked once by [`BusConfig::validate`] and turned into `Duration`s there.

use std::time::Duration;

use redis::IntoConnectionInfo as _;
use secrecy::{ExposeSecret as _, SecretString};
use serde::Deserialize;

use crate::BusError;
use crate::connection::Target;
use crate::names::{Keys, Schema, check_name};

/// Whether the bus talks to one Redis server or to a Redis Cluster.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RedisMode {
    /// One server (or a primary behind a proxy or failover address): `redis_url`.
    #[default]
    Standalone,
    /// A Redis Cluster: `redis_url` (and `redis_cluster_seeds`) are seed nodes; the client
    /// learns the other nodes and the slot map from them and follows the cluster's changes.
    Cluster,
}

/// How a service uses the bus.
///
/// Deserialized with `#[serde(default, deny_unknown_fields)]`: every field has a production
/// default except `service` and `schema`, which each service sets.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BusConfig {
    /// The Redis URL; a secret, since it may carry a password. With `redis_mode = "cluster"`,
    /// any node of the cluster (a seed: the others are discovered), database 0.
    pub redis_url: SecretString,
    /// `"standalone"` (the default: one server at `redis_url`) or `"cluster"` (a Redis Cluster
    /// found from `redis_url` and `redis_cluster_seeds`). The key layout is the same in both:
    /// every key the bus uses together shares a hash tag (see [`Keys`]).
    pub redis_mode: RedisMode,
    /// More seed nodes of the cluster, tried when `redis_url`'s node is down (`redis_mode =
    /// "cluster"` only; refused otherwise). URLs like `redis_url`, secrets too. Default empty.
    pub redis_cluster_seeds: Vec<SecretString>,
    /// The prefix of every Redis key (per deployment; tests use a random one).
    pub prefix: String,
    /// The service using the bus: the consumer-group name of its command servers and event
    /// consumers, and the `consumer` column of its inbox rows.
    pub service: String,
    /// The service's Postgres schema, holding its `outbox` and `inbox` tables.
    pub schema: String,
    /// How long one blocking stream read waits for new messages. It also bounds how long a
    /// server or consumer takes to notice shutdown.
    pub block_ms: u64,
    /// How long a delivered message may go without its consumer renewing it before another
    /// consumer of the group reclaims it: the time to detect a dead consumer. Consumers renew
    /// the messages they are processing every `claim_idle_ms / 2`, so a slow handler is not
    /// reclaimed.
    pub claim_idle_ms: u64,
    /// Deliveries a message gets before it is dead-lettered (the next delivery goes to the
    /// dead-letter stream instead of the handler).
    pub max_deliveries: u32,
    /// Messages one server or consumer (per stream) handles at once.
    pub handler_concurrency: usize,
    /// The most commands of a server's grouped kinds
    /// ([`CommandServer::handle_grouped`](crate::CommandServer::handle_grouped)) applied in one
    /// Postgres transaction (group commit).
    pub group_commit_max: usize,
    /// How many group-commit transactions of one server may run at once (each takes the
    /// commands waiting when it starts). More than one overlaps batches, and two batches that
    /// lock the same rows in opposite orders can deadlock: Postgres then fails one command,
    /// which runs again alone.
    pub group_commit_lanes: usize,
    /// How long a caller waits past a command's deadline for the server's answer, covering the
    /// commit that may finish just after it.
    pub reply_grace_ms: u64,
    /// Approximate length cap of a reply stream.
    pub reply_stream_maxlen: u64,
    /// Time to live of a reply stream, refreshed by each reply (a dead caller's stream expires).
    pub reply_ttl_seconds: u64,
    /// Approximate length cap (`XADD MAXLEN ~`) of command, event and dead-letter streams. A
    /// consumer that falls further behind than this loses the oldest entries.
    pub stream_maxlen: u64,
    /// The Redis memory one stream may use, in bytes (command, event, reply and dead-letter
    /// streams alike): its writers trim the oldest entries beyond it. At least 1 MiB.
    pub stream_max_bytes: u64,
    /// Outbox rows published per relay transaction.
    pub outbox_batch_size: u32,
    /// How often the outbox relay looks for rows when no notification arrives.
    pub outbox_poll_ms: u64,
    /// How long published outbox rows are kept before the relay deletes them.
    pub outbox_retention_seconds: u64,
    /// The cap of the exponential backoff after Redis or Postgres errors.
    pub retry_backoff_max_ms: u64,
    /// How long connecting to Redis may take.
    pub redis_connect_timeout_ms: u64,
    /// How long a (non-blocking) Redis command may take to answer.
    pub redis_response_timeout_ms: u64,
}

impl Default for BusConfig {
    fn default() -> Self {
        Self {
            redis_url: SecretString::from("redis://127.0.0.1:6379"),
            redis_mode: RedisMode::Standalone,
            redis_cluster_seeds: Vec::new(),
            prefix: "awx".to_owned(),
            service: String::new(),
            schema: String::new(),
            block_ms: 2_000,
            claim_idle_ms: 30_000,
            max_deliveries: 5,
            handler_concurrency: 16,
            group_commit_max: 32,
            group_commit_lanes: 1,
            reply_grace_ms: 250,
            reply_stream_maxlen: 10_000,
            reply_ttl_seconds: 3_600,
            stream_maxlen: 1_000_000,
            stream_max_bytes: 256 * 1024 * 1024,
            outbox_batch_size: 256,
            outbox_poll_ms: 1_000,
            outbox_retention_seconds: 7 * 24 * 3_600,
            retry_backoff_max_ms: 5_000,
            redis_connect_timeout_ms: 1_000,
            redis_response_timeout_ms: 3_000,
        }
    }
}

impl BusConfig {
    /// Defaults for `service`, whose tables live in `schema`.
    pub fn new(service: &str, schema: &str) -> Self {
        Self { service: service.to_owned(), schema: schema.to_owned(), ..Self::default() }
    }

    /// Checks the rules across fields; the message names the offending field.
    pub fn validate(&self) -> Result<(), BusError> {
        self.tuning().map(|_| ())
    }

    /// The checked configuration, with durations.
    pub(crate) fn tuning(&self) -> Result<Tuning, BusError> {
        let rule = |ok: bool, message: &str| {
            if ok { Ok(()) } else { Err(BusError::Config(message.to_owned())) }
        };
        let keys = Keys::new(&self.prefix)?;
        check_name("service", &self.service)
            .map_err(|error| BusError::Config(format!("bus.service: {error}")))?;
        let schema = Schema::new(&self.schema)
            .map_err(|error| BusError::Config(format!("bus.schema: {error}")))?;
        rule(self.block_ms >= 1, "bus.block_ms must be at least 1")?;
        rule(self.claim_idle_ms >= 1, "bus.claim_idle_ms must be at least 1")?;
        rule(self.max_deliveries >= 1, "bus.max_deliveries must be at least 1")?;
        rule(
            (1..=1_024).contains(&self.handler_concurrency),
            "bus.handler_concurrency must be 1 to 1024",
        )?;
        rule(
            (1..=1_024).contains(&self.group_commit_max),
            "bus.group_commit_max must be 1 to 1024",
        )?;
        rule(
            (1..=64).contains(&self.group_commit_lanes),
            "bus.group_commit_lanes must be 1 to 64",
        )?;
        rule(self.reply_stream_maxlen >= 1, "bus.reply_stream_maxlen must be at least 1")?;
        rule(self.reply_ttl_seconds >= 1, "bus.reply_ttl_seconds must be at least 1")?;
        rule(self.stream_maxlen >= 1, "bus.stream_maxlen must be at least 1")?;
        rule(
            self.stream_max_bytes >= crate::budget::STREAM_BYTES_MIN,
            "bus.stream_max_bytes must be at least 1 MiB",
        )?;
        rule(
            (1..=10_000).contains(&self.outbox_batch_size),
            "bus.outbox_batch_size must be 1 to 10000",
        )?;
        rule(self.outbox_poll_ms >= 1, "bus.outbox_poll_ms must be at least 1")?;
        rule(self.retry_backoff_max_ms >= 1, "bus.retry_backoff_max_ms must be at least 1")?;
        rule(
            self.redis_connect_timeout_ms >= 1,
            "bus.redis_connect_timeout_ms must be at least 1",
        )?;
        rule(
            self.redis_response_timeout_ms >= 1,
            "bus.redis_response_timeout_ms must be at least 1",
        )?;
        let target = self.target()?;
        let claim_idle = Duration::from_millis(self.claim_idle_ms);
        Ok(Tuning {
            target,
            keys,
            schema,
            block: Duration::from_millis(self.block_ms),
            claim_idle,
            // Renewing twice per idle period keeps a live consumer's messages from ever going
            // idle; scanning as often reclaims a dead consumer's between 1x and 1.5x the idle
            // time. Each is one cheap command.
            claim_interval: (claim_idle / 2)
                .clamp(Duration::from_millis(10), Duration::from_secs(15)),
            max_deliveries: u64::from(self.max_deliveries),
            handler_concurrency: self.handler_concurrency,
            group_commit_max: self.group_commit_max,
            group_commit_lanes: self.group_commit_lanes,
            reply_grace: Duration::from_millis(self.reply_grace_ms),
            reply_stream_maxlen: self.reply_stream_maxlen,
            reply_ttl_seconds: self.reply_ttl_seconds,
            stream_maxlen: self.stream_maxlen,
            stream_max_bytes: self.stream_max_bytes,
            outbox_batch_size: i64::from(self.outbox_batch_size),
            outbox_poll: Duration::from_millis(self.outbox_poll_ms),
            outbox_retention: Duration::from_secs(self.outbox_retention_seconds),
            retry_backoff_max: Duration::from_millis(self.retry_backoff_max_ms),
            redis_connect_timeout: Duration::from_millis(self.redis_connect_timeout_ms),
            redis_response_timeout: Duration::from_millis(self.redis_response_timeout_ms),
        })
    }
}

impl BusConfig {
    /// Where Redis is: the URLs parsed (errors never echo a URL, which may carry a password).
    fn target(&self) -> Result<Target, BusError> {
        match self.redis_mode {
            RedisMode::Standalone => {
                if !self.redis_cluster_seeds.is_empty() {
                    return Err(BusError::Config(
                        "bus.redis_cluster_seeds is only for bus.redis_mode = \"cluster\""
                            .to_owned(),
                    ));
                }
                let client = redis::Client::open(self.redis_url.expose_secret()).map_err(|_| {
                    BusError::Config("bus.redis_url is not a valid Redis URL".to_owned())
                })?;
                Ok(Target::Single(client))
            }
            RedisMode::Cluster => {
                let mut seeds = Vec::with_capacity(1 + self.redis_cluster_seeds.len());
                let urls = std::iter::once(("bus.redis_url", &self.redis_url)).chain(
                    self.redis_cluster_seeds.iter().map(|url| ("bus.redis_cluster_seeds", url)),
                );
                for (field, url) in urls {
                    let info = url
                        .expose_secret()
                        .into_connection_info()
                        .map_err(|_| BusError::Config(format!("{field}: not a valid Redis URL")))?;
                    if info.redis_settings().db() != 0 {
                        return Err(BusError::Config(format!(
                            "{field}: a Redis Cluster has only database 0"
                        )));
                    }
                    seeds.push(info);
                }
                Ok(Target::Cluster(seeds))
            }
        }
    }
}

/// [`BusConfig`] after checking: names wrapped, durations as `Duration`.
#[derive(Debug, Clone)]
pub(crate) struct Tuning {
    pub(crate) target: Target,
    pub(crate) keys: Keys,
    pub(crate) schema: Schema,
    pub(crate) block: Duration,
    pub(crate) claim_idle: Duration,
    pub(crate) claim_interval: Duration,
    pub(crate) max_deliveries: u64,
    pub(crate) handler_concurrency: usize,
    pub(crate) group_commit_max: usize,
    pub(crate) group_commit_lanes: usize,
    pub(crate) reply_grace: Duration,
    pub(crate) reply_stream_maxlen: u64,
    pub(crate) reply_ttl_seconds: u64,
    pub(crate) stream_maxlen: u64,
    pub(crate) stream_max_bytes: u64,
    pub(crate) outbox_batch_size: i64,
    pub(crate) outbox_poll: Duration,
    pub(crate) outbox_retention: Duration,
    pub(crate) retry_backoff_max: Duration,
    pub(crate) redis_connect_timeout: Duration,
    pub(crate) redis_response_timeout: Duration,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_need_only_service_and_schema() {
        assert!(BusConfig::default().validate().is_err());
        let config = BusConfig::new("ledger", "ledger");
        config.validate().unwrap();
        let tuning = config.tuning().unwrap();
        assert_eq!(tuning.claim_idle, Duration::from_secs(30));
        assert_eq!(tuning.claim_interval, Duration::from_secs(15));
        assert_eq!(tuning.max_deliveries, 5);
    }

    #[test]
    fn unknown_fields_are_refused_and_missing_ones_defaulted() {
        let config: BusConfig =
            serde_json::from_str(r#"{"service": "ledger", "schema": "ledger", "block_ms": 50}"#)
                .unwrap();
        assert_eq!(config.block_ms, 50);
        assert_eq!(config.max_deliveries, 5);
        let error = serde_json::from_str::<BusConfig>(r#"{"block_secs": 5}"#).unwrap_err();
        assert!(error.to_string().contains("block_secs"), "{error}");
    }

    #[test]
    fn rules_name_the_field() {
        let mut config = BusConfig::new("ledger", "ledger");
        config.max_deliveries = 0;
        let error = config.validate().unwrap_err().to_string();
        assert!(error.contains("max_deliveries"), "{error}");
        let mut config = BusConfig::new("ledger", "Ledger");
        assert!(config.validate().unwrap_err().to_string().contains("bus.schema"));
        config.schema = "ledger".into();
        config.service = "Ledger Service".into();
        assert!(config.validate().unwrap_err().to_string().contains("bus.service"));
    }

    #[test]
    fn cluster_mode_takes_seed_nodes_and_checks_them() {
        let config: BusConfig = serde_json::from_str(
            r#"{"service": "ledger", "schema": "ledger", "redis_mode": "cluster",
                "redis_url": "redis://10.0.0.1:7000",
                "redis_cluster_seeds": ["redis://10.0.0.2:7000", "redis://:pw@10.0.0.3:7000"]}"#,
        )
        .unwrap();
        assert_eq!(config.redis_mode, RedisMode::Cluster);
        let Target::Cluster(seeds) = config.tuning().unwrap().target else {
            panic!("cluster mode makes a cluster target")
        };
        assert_eq!(seeds.len(), 3);

        let mut config = BusConfig::new("ledger", "ledger");
        config.redis_cluster_seeds = vec![SecretString::from("redis://10.0.0.2:7000")];
        let error = config.validate().unwrap_err().to_string();
        assert!(error.contains("redis_cluster_seeds") && error.contains("cluster"), "{error}");

        config.redis_mode = RedisMode::Cluster;
        config.redis_url = SecretString::from("redis://:hunter2@10.0.0.1:7000/3");
        let error = config.validate().unwrap_err().to_string();
        assert!(error.contains("bus.redis_url") && error.contains("database 0"), "{error}");
        assert!(!error.contains("hunter2"));
        config.redis_url = SecretString::from("redis://10.0.0.1:7000");
        config.redis_cluster_seeds = vec![SecretString::from("not a url :hunter2")];
        let error = config.validate().unwrap_err().to_string();
        assert!(error.contains("bus.redis_cluster_seeds") && !error.contains("hunter2"), "{error}");

        let error = serde_json::from_str::<BusConfig>(r#"{"redis_mode": "sentinel"}"#).unwrap_err();
        assert!(error.to_string().contains("sentinel"), "{error}");
    }

    #[test]
    fn debug_output_hides_the_redis_url() {
        let mut config = BusConfig::new("ledger", "ledger");
        config.redis_url = SecretString::from("redis://:hunter2@cache:6379");
        assert!(!format!("{config:?}").contains("hunter2"));
    }
}
