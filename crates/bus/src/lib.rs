//! The awx bus: how awx services talk. Typed commands with replies and deadlines, and events,
//! over Redis streams with consumer groups; the transactional outbox and the inbox in Postgres
//! make every step safe to repeat.
//!
//! Postgres is the truth and Redis carries work: a message is acknowledged only after the
//! Postgres transaction that applied it has committed, and every consumer records what it
//! processed (the inbox) in that same transaction, so redelivery never applies anything twice.
//!
//! # Keys
//!
//! Every key starts with the configured prefix ([`BusConfig::prefix`], per deployment; tests use
//! a random one). See [`Keys`]:
//! `<prefix>:{cmd:<family>}` (requests of a command family), `<prefix>:reply:{<instance_id>}`
//! (the replies to one caller process instance; trimmed, with a TTL), `<prefix>:{evt:<topic>}`
//! (events), `<prefix>:{ntc:<topic>}` (notices), `<prefix>:dlq:{<stream>}` (dead letters of `cmd:<family>` or `evt:<topic>`),
//! `<prefix>:lasterror:<group>:{<stream>}` (the last error per pending message, for dead
//! letters) and `<prefix>:rl:{<scope>}:<name>` (rate limits, [`ratelimit`]).
//!
//! The braces are Redis Cluster hash tags: a stream, its dead letters and its last errors share
//! a slot (the bus pipelines commands on them together), as do the limits of one rate-limit
//! scope (one script checks them), while different streams spread over the cluster.
//!
//! # Redis: one server or a cluster
//!
//! With `redis_mode = "standalone"` (the default) the bus talks to the server at
//! [`BusConfig::redis_url`]; with `redis_mode = "cluster"` it talks to a Redis Cluster found from
//! `redis_url` and [`BusConfig::redis_cluster_seeds`], routing each command by its key's slot.
//! The commands, pipelines and scripts are the same in both modes: no command, pipeline or
//! script spans two slots, and every blocking read reads one stream, on a connection of its own.

//! # Commands
//!
//! A [`Command`] has a family, a name and a reply type. [`Bus::send`] adds an envelope to the
//! family's stream: the command id, name, JSON payload, the caller's reply stream, the absolute
//! deadline (Unix ms, from the timeout) and the W3C `traceparent` when tracing is on. It then
//! waits until the deadline plus `reply_grace_ms` for the reply, which one background listener
//! per [`Bus`] reads from the instance's reply stream (on a connection of its own) and hands over
//! by command id; past that it returns [`BusError::Timeout`]. [`Bus::send_with_id`] takes the
//! command id, so a caller can retry the same command: it is never executed twice, and a retry
//! gets the original reply (or rejection).
//!
//! Every command declares its [`Kind`]: a state change ([`Kind::Change`], below) or a query
//! ([`Kind::Query`]: a view, a verification, a lookup). A query is answered by a
//! [`QueryHandler`] with the server's pool and no transaction of the server's: no inbox row, no
//! stored reply, nothing written; a redelivered query is simply asked again. The server refuses
//! to register a query with [`CommandServer::handle`] or a change with
//! [`CommandServer::answer`], so a new command has to choose.
//!
//! A [`CommandServer`] serves one family in a consumer group named after the service
//! ([`BusConfig::service`]), with a [`CommandHandler`] per command name. Each command is
//! processed inside one Postgres transaction the server opens: the inbox row is inserted first
//! (`INSERT … ON CONFLICT DO NOTHING`, so a concurrent duplicate blocks until the first commits);
//! if the command was processed before, the stored reply is sent again and the handler does not
//! run (this and what follows is for state changes; a query skips the inbox and the transaction). Past its deadline a command is not executed: the server answers "timed out" (the caller
//! gets `Timeout`) and acknowledges it. Otherwise the handler runs on the transaction, bounded by
//! the deadline; the deadline is checked again just before the commit. Then the reply is stored on
//! the inbox row, the transaction commits, the reply is sent, and the message acknowledged.
//! Handler outcomes ([`HandlerError`]): `Ok(reply)`; a final rejection with a stable machine code
//! (its writes rolled back, the rejection stored as the reply, the caller gets
//! [`BusError::Rejected`]); or a transient error (everything rolled back, no acknowledgement, the
//! message is redelivered). A panicking handler counts as a transient error. An unknown command
//! name, or a payload that does not decode, is dead-lettered at once and the caller gets
//! [`BusError::Failed`].
//!
//! ## Group commit
//!
//! A state change registered with [`CommandServer::handle_grouped`] (rather than
//! [`CommandServer::handle`]) may share its transaction: a committer of the server's takes the
//! first such command waiting at once (alone, a command goes without delay), then every other
//! one waiting at that moment, up to `group_commit_max` (default 32), and applies them one
//! after another in one transaction, each in a savepoint of its own (inbox row, handler, stored
//! reply), so one command's refusal or failure leaves the others alone. Each is answered and
//! acknowledged only after that transaction commits. If the transaction cannot go on (a
//! deadline passes, a savepoint or the commit fails), the commands still owed an answer each
//! run alone as above, which replays the stored reply of anything that did commit. A grouped
//! handler must only work on the transaction it is given (no calls to other services), since
//! the commands of a batch run one after another. The guarantees are those of a command alone.
//! A server has `group_commit_lanes` committers (default 1): with more, one applies a batch
//! while another takes the next; two batches that lock rows in opposite orders can then
//! deadlock, and the command Postgres fails runs again alone.
//!
//! # Redelivery and dead letters
//!
//! Messages pending longer than `claim_idle_ms` (default 30 s) are reclaimed (`XAUTOCLAIM`) by
//! any live consumer of the group, so the command of a handler that died mid-way is redelivered
//! and completed once (the inbox makes a second execution impossible, and a command that
//! committed but was not acknowledged gets its stored reply re-sent). A consumer renews the
//! messages it is still processing every `claim_idle_ms / 2` (`XCLAIM … JUSTID`, which keeps the
//! delivery count), so only a dead consumer's messages go idle: a slow handler is not run twice
//! at once. A message delivered more than `max_deliveries` times (default 5) goes to the
//! dead-letter stream with its delivery count and last error, and is acknowledged; for a command
//! the caller is then answered with [`BusError::Failed`] instead of being left to its deadline.
//!
//! # Events
//!
//! An [`Event`] has a topic. Events are published only through the transactional outbox:
//! [`publish`] inserts the outbox row in the caller's transaction (returning the event id) and
//! calls `pg_notify`, so the [`OutboxRelay`] wakes at commit. The relay (one per service replica;
//! several are safe with `FOR UPDATE SKIP LOCKED`) publishes unpublished rows in `seq` order to
//! `<prefix>:{evt:<topic>}` with the event id in the message, then marks them published; while Redis
//! is unreachable the rows stay and it retries with capped backoff. Delivery is at least once. It
//! waits on `LISTEN` with a poll fallback, and deletes published rows after a retention.
//!
//! An [`EventConsumer`] reads each topic in a consumer group named after the consuming service,
//! and handles each event in a transaction that first inserts the inbox row: an event id seen
//! before is acknowledged without running the handler. Acknowledgement follows the commit; the
//! redelivery, claim and dead-letter rules are those of commands (a rejecting event handler
//! dead-letters the event at once). A missing stream or group (Redis restarted empty) is
//! recreated from id 0 and consumption carries on.
//!
//! # Notices
//!
//! A [`Notice`] is a hint, not a fact: [`Bus::notify`] writes it at once to
//! `<prefix>:{ntc:<topic>}` (no outbox), and every [`NoticeListener`] (every replica of every
//! listening service, no consumer group) reads what is written after it started. A notice may be
//! lost, so it may only make something faster: a cache filled from notices must answer correctly
//! when it has nothing (by asking the owning service), as the settlement service's cache of the
//! authorizations our agents were issued does.
//!
//! # Running, stopping, health
//!
//! [`CommandServer::run`], [`EventConsumer::run`] and [`OutboxRelay::run`] take a
//! `CancellationToken` (`Shutdown::token()` of the service kit) and stop cleanly: they stop
//! reading, let in-flight handlers finish and acknowledge only what committed. [`Bus::ping`] is the
//! Redis readiness check:
//!
//! ```text
//! let bus2 = bus.clone();
//! ReadinessCheck::new("redis", move || {
//!     let bus = bus2.clone();
//!     async move { bus.ping().await.map_err(|e| e.to_string()) }
//! })
//! ```
//!
//! # Observability
//!
//! Spans `bus.send`, `bus.command` (family, command, command id, delivery, outcome) and
//! `bus.event` (topic, event id, group, delivery, outcome), continuing the sender's trace;
//! payloads are never recorded. Metrics (through the `metrics` facade):
//!
//! | metric | labels |
//! |---|---|
//! | `awx_bus_commands_sent_total` | `family`, `command`, `result` (`ok`, `rejected`, `timeout`, `failed`, `error`) |
//! | `awx_bus_commands_handled_total` | `family`, `command`, `outcome` (`ok`, `rejected`, `replayed`, `expired`, `transient`, `failed`) |
//! | `awx_bus_command_handle_seconds` | `family`, `command` (histogram, outcomes `ok` and `rejected`) |
//! | `awx_bus_group_commit_commands` | `family` (histogram: commands per group-commit transaction) |
//! | `awx_bus_events_published_total` | `topic` |
//! | `awx_bus_events_handled_total` | `topic`, `group`, `outcome` (`ok`, `duplicate`, `transient`, `failed`) |
//! | `awx_bus_dead_lettered_total` | `stream` (`cmd:{family}` or `evt:{topic}`), `group` |
//! | `awx_bus_outbox_relay_errors_total` | `schema` |
//! | `awx_bus_stream_trimmed_total` | `kind` (`command`, `event`, `reply`, `dead_letter`): entries trimmed to keep a stream within `stream_max_bytes` |
//!
//! # Limits worth knowing
//!
//! - Deadlines are wall-clock Unix milliseconds compared on the server: hosts need synchronized
//!   clocks (NTP); skew shortens or lengthens deadlines by as much.
//! - Redis memory is bounded: a message is at most [`MESSAGE_BYTES_MAX`] (1 MiB; a larger
//!   command or event is refused with [`BusError::TooLarge`] before anything is written), and
//!   each stream is kept within `stream_max_bytes` of memory (measured by its writers at most
//!   once a second) and `stream_maxlen` entries. A consumer group further behind than that
//!   loses the oldest entries (logged when a pending entry was trimmed, and counted in
//!   `awx_bus_stream_trimmed_total`). Watch group lag; see the `budget` module.
//! - Command ids and event ids share each service's inbox (`consumer` = the service): ids must
//!   be unique (UUIDv7, as the bus generates).
//! - Each blocking reader (the reply listener, one per command server, one per event topic)
//!   holds a Redis connection of its own (in cluster mode, its own connection to each node).
//! - A prefix may not contain braces (they would move the hash tags). Deployments sharing one
//!   cluster put a family's or topic's streams in the same slot (the tag leaves the prefix out).
//!
//! # Example
//!
//! ```text
//! // A server of the `ledger` family, in the `ledger` service.
//! let bus = Bus::connect(BusConfig::new("ledger", "ledger")).await?;
//! let server = CommandServer::new(&bus, pool.clone(), "ledger")?.handle::<PlaceHold, _>(Holds)?;
//! tokio::spawn(server.run(shutdown.token()));
//!
//! // An event, in the transaction of the state change that caused it.
//! let mut tx = pool.begin().await?;
//! /* … the state change … */
//! awx_bus::publish(&mut tx, bus.schema(), &HoldPlaced { hold_id }).await?;
//! tx.commit().await?;
//! ```

mod backoff;
mod budget;
mod bus;
mod command;
mod config;
mod connection;
mod event;
mod group;
mod handler;
mod inbox;
mod names;
mod notice;
mod outbox;
mod query;
pub mod ratelimit;
mod telemetry;
mod trace;
mod wire;
mod worker;

pub use budget::MESSAGE_BYTES_MAX;
pub use bus::Bus;
pub use command::{
    Command, CommandHandler, CommandHandlerFn, CommandMeta, CommandServer, Kind, command_handler_fn,
};
pub use config::{BusConfig, RedisMode};
pub use event::{Event, EventConsumer, EventHandler, EventHandlerFn, EventMeta, event_handler_fn};
pub use handler::HandlerError;
pub use names::{Keys, Schema};
pub use notice::{NOTICE_STREAM_MAXLEN, Notice, NoticeListener};
pub use outbox::{OutboxRelay, publish};
pub use query::QueryHandler;

/// Errors of the bus.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// The configuration, or a name (prefix, schema, service, family, command, topic), is
    /// invalid; or a server or consumer was started without handlers.
    #[error("bus configuration: {0}")]
    Config(String),
    /// Redis failed or is unreachable. A command may be sent again with the same id.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// Postgres failed.
    #[error("postgres: {0}")]
    Postgres(#[from] sqlx::Error),
    /// A command, reply or event does not encode or decode as its type.
    #[error("encoding: {0}")]
    Codec(String),
    /// The server answered that the command reached it, or would have committed, after its
    /// deadline, so nothing was executed (`server_answered` true); or no answer came by the
    /// deadline plus the grace (`server_answered` false), in which case the outcome is unknown:
    /// send again with the same command id to learn it.
    #[error("command {command} ({command_id}) timed out")]
    Timeout {
        /// The command's name.
        command: &'static str,
        /// The command id.
        command_id: uuid::Uuid,
        /// Whether the server answered "timed out" (as opposed to no answer at all).
        server_answered: bool,
    },
    /// The handler refused the command; final (a retry with the same id gets the same answer).
    #[error("rejected ({code}): {message}")]
    Rejected {
        /// The stable machine code.
        code: String,
        /// The explanation.
        message: String,
    },
    /// The bus could not process the command: unknown command name, malformed message, or
    /// dead-lettered after too many failed deliveries.
    #[error("command failed: {message}")]
    Failed {
        /// What happened.
        message: String,
    },
    /// The bus was closed before the reply arrived (or before sending).
    #[error("the bus is closed")]
    Closed,
    /// A command or event is larger than [`MESSAGE_BYTES_MAX`]; nothing was written.
    #[error("{what} is {bytes} bytes, above the bus's maximum of {max}")]
    TooLarge {
        /// What was refused (the command's or event's name).
        what: String,
        /// Its size.
        bytes: usize,
        /// The maximum.
        max: usize,
    },
}
