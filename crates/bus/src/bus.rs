//! [`Bus`]: the Redis connections of one service process instance, the caller side of commands
//! ([`Bus::send`]), and the listener that hands replies to waiting callers.
//!
//! Each `Bus` gets a random instance id and its own reply stream `<prefix>:reply:{<instance_id>}`.
//! The first `send` starts one background listener that reads that stream on a dedicated
//! connection (a blocking read on the shared multiplexed connection would stall every other
//! command on it) and completes the caller waiting on that command id. Servers trim reply
//! streams and refresh their TTL with each reply, so the stream of a vanished instance expires.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redis::streams::StreamReadReply;
use tokio::sync::oneshot;
use tokio_util::sync::{CancellationToken, DropGuard};
use tracing::Instrument as _;
use uuid::Uuid;

use crate::backoff::Backoff;
use crate::budget::{self, StreamBudget, StreamKind};
use crate::command::Command;
use crate::config::{BusConfig, Tuning};
use crate::connection::RedisConn;
use crate::names::{Keys, Schema, check_name};
use crate::trace::TraceFields;
use crate::wire::{CommandEnvelope, ReplyBody, ReplyEnvelope};
use crate::{BusError, telemetry};

/// Replies read from the reply stream per round trip.
const REPLY_READ_COUNT: usize = 256;

/// The bus of one service process instance. Cheap to clone; clones share connections, the
/// reply stream and its listener.
///
/// Creating it does not need Redis to be up: connections are made on first use and remade
/// after failures, and [`Bus::ping`] tells the readiness check whether Redis answers.
#[derive(Clone)]
pub struct Bus {
    inner: Arc<Inner>,
}

struct Inner {
    config: BusConfig,
    tuning: Tuning,
    conn: RedisConn,
    reply_conn: RedisConn,
    instance_id: Uuid,
    reply_stream: String,
    waiters: Mutex<Waiters>,
    listener_started: OnceLock<()>,
    budget: StreamBudget,
    stop: CancellationToken,
    // Stops the reply listener when the last clone of the bus is dropped.
    _stop_on_drop: DropGuard,
}

impl std::fmt::Debug for Bus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bus")
            .field("service", &self.inner.config.service)
            .field("prefix", &self.inner.tuning.keys.prefix())
            .field("instance_id", &self.inner.instance_id)
            .finish_non_exhaustive()
    }
}

impl Bus {
    /// A bus configured by `config` (checked with [`BusConfig::validate`]). Connections are
    /// opened lazily, so this succeeds while Redis is down.
    pub async fn connect(config: BusConfig) -> Result<Self, BusError> {
        let tuning = config.tuning()?;
        let conn = tuning
            .target
            .connect_lazy(tuning.redis_connect_timeout, tuning.redis_response_timeout)?;
        let reply_conn = tuning.target.connect_lazy(
            tuning.redis_connect_timeout,
            tuning.block.saturating_add(tuning.redis_response_timeout),
        )?;
        let instance_id = Uuid::now_v7();
        let reply_stream = tuning.keys.reply_stream(instance_id);
        let stop = CancellationToken::new();
        let budget = StreamBudget::new(tuning.stream_max_bytes);
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                tuning,
                conn,
                reply_conn,
                instance_id,
                reply_stream,
                waiters: Mutex::new(Waiters::default()),
                listener_started: OnceLock::new(),
                budget,
                _stop_on_drop: stop.clone().drop_guard(),
                stop,
            }),
        })
    }

    /// Sends `command` with a new command id and waits for its reply until `timeout` (the
    /// command's deadline) plus the configured grace.
    pub async fn send<C: Command>(
        &self,
        command: &C,
        timeout: Duration,
    ) -> Result<C::Reply, BusError> {
        self.send_with_id(command, Uuid::now_v7(), timeout).await
    }

    /// Sends `command` under `command_id`. Sending again with the same id is safe: a command
    /// the server already processed is not executed again, and its stored reply (or rejection)
    /// is returned (the id is the idempotency key; a retry's payload is not compared). A command
    /// that timed out was not stored, so a retry with a new deadline may still execute it.
    pub async fn send_with_id<C: Command>(
        &self,
        command: &C,
        command_id: Uuid,
        timeout: Duration,
    ) -> Result<C::Reply, BusError> {
        let span = tracing::info_span!(
            "bus.send",
            family = C::FAMILY,
            command = C::NAME,
            command_id = %command_id,
        );
        async move {
            let result = self.send_and_wait(command, command_id, timeout).await;
            let label = match &result {
                Ok(_) => "ok",
                Err(BusError::Rejected { .. }) => "rejected",
                Err(BusError::Timeout { .. }) => "timeout",
                Err(BusError::Failed { .. }) => "failed",
                Err(_) => "error",
            };
            telemetry::command_sent(C::FAMILY, C::NAME, label);
            result
        }
        .instrument(span)
        .await
    }

    async fn send_and_wait<C: Command>(
        &self,
        command: &C,
        command_id: Uuid,
        timeout: Duration,
    ) -> Result<C::Reply, BusError> {
        check_name("command family", C::FAMILY)?;
        check_name("command name", C::NAME)?;
        let payload = serde_json::to_string(command)
            .map_err(|error| BusError::Codec(format!("command {}: {error}", C::NAME)))?;
        budget::check_size(&format!("command {}", C::NAME), payload.len())?;
        self.start_listener();
        let (_waiter, reply) = self.register(command_id)?;
        // The wait is measured on the monotonic clock from here; the deadline servers check is
        // wall-clock time, which is all hosts share.
        let wait_until = tokio::time::Instant::now() + timeout + self.inner.tuning.reply_grace;
        let envelope = CommandEnvelope {
            id: command_id,
            name: C::NAME.to_owned(),
            payload,
            reply_to: self.inner.reply_stream.clone(),
            deadline_ms: now_unix_ms().saturating_add(duration_ms(timeout)),
            trace: TraceFields::current(),
        };
        let stream = self.inner.tuning.keys.command_stream(C::FAMILY);
        self.xadd(&stream, self.inner.tuning.stream_maxlen, &envelope.to_fields()).await?;
        self.after_write(&stream, StreamKind::Command);
        let timed_out =
            |server_answered| BusError::Timeout { command: C::NAME, command_id, server_answered };
        match tokio::time::timeout_at(wait_until, reply).await {
            Err(_) => Err(timed_out(false)),
            Ok(Err(_)) => Err(BusError::Closed),
            Ok(Ok(ReplyBody::Ok { reply })) => serde_json::from_value(reply)
                .map_err(|error| BusError::Codec(format!("reply to {}: {error}", C::NAME))),
            Ok(Ok(ReplyBody::Rejected { code, message })) => {
                Err(BusError::Rejected { code, message })
            }
            Ok(Ok(ReplyBody::TimedOut)) => Err(timed_out(true)),
            Ok(Ok(ReplyBody::Failed { message })) => Err(BusError::Failed { message }),
        }
    }

    /// Whether Redis answers `PING`, for the service's readiness check.
    pub async fn ping(&self) -> Result<(), BusError> {
        let pong: String = redis::cmd("PING").query_async(&mut self.inner.conn.clone()).await?;
        if pong == "PONG" {
            Ok(())
        } else {
            Err(BusError::Failed { message: format!("unexpected answer to PING: {pong:?}") })
        }
    }

    /// Stops the reply listener; callers still waiting get [`BusError::Closed`], and later
    /// sends fail with it. Servers, consumers and relays stop through their own tokens.
    pub fn close(&self) {
        self.inner.stop.cancel();
        self.waiters().close();
    }

    /// The configuration the bus was created with.
    pub fn config(&self) -> &BusConfig {
        &self.inner.config
    }

    /// The service's schema (where its outbox and inbox live).
    pub fn schema(&self) -> &Schema {
        &self.inner.tuning.schema
    }

    /// The Redis keys of this deployment.
    pub fn keys(&self) -> &Keys {
        &self.inner.tuning.keys
    }

    /// This instance's id (names its reply stream).
    pub fn instance_id(&self) -> Uuid {
        self.inner.instance_id
    }

    /// This instance's reply stream key.
    pub fn reply_stream(&self) -> &str {
        &self.inner.reply_stream
    }

    pub(crate) fn tuning(&self) -> &Tuning {
        &self.inner.tuning
    }

    /// A handle on the shared multiplexed connection (for short, non-blocking commands).
    pub(crate) fn redis(&self) -> RedisConn {
        self.inner.conn.clone()
    }

    /// A new connection of its own whose answers are awaited at most `response_timeout`.
    pub(crate) fn connection_with_timeout(
        &self,
        response_timeout: Duration,
    ) -> Result<RedisConn, BusError> {
        let tuning = &self.inner.tuning;
        tuning.target.connect_lazy(tuning.redis_connect_timeout, response_timeout)
    }

    /// A new connection of its own, for one blocking reader (a blocking read on the shared
    /// connection would stall every other command to that server or cluster node).
    pub(crate) fn dedicated_connection(&self) -> Result<RedisConn, BusError> {
        let tuning = &self.inner.tuning;
        tuning.target.connect_lazy(
            tuning.redis_connect_timeout,
            tuning.block.saturating_add(tuning.redis_response_timeout),
        )
    }

    /// Keeps `key`, just written to, within its memory budget (see [`crate::budget`]).
    pub(crate) fn after_write(&self, key: &str, kind: StreamKind) {
        self.inner.budget.after_write(&self.inner.conn, &self.inner.stop, key, kind);
    }

    /// `XADD key MAXLEN ~ maxlen * field value …` on the shared connection.
    pub(crate) async fn xadd(
        &self,
        key: &str,
        maxlen: u64,
        fields: &[(&str, String)],
    ) -> Result<String, BusError> {
        let mut cmd = redis::cmd("XADD");
        cmd.arg(key).arg("MAXLEN").arg("~").arg(maxlen).arg("*");
        for (name, value) in fields {
            cmd.arg(*name).arg(value);
        }
        Ok(cmd.query_async(&mut self.redis()).await?)
    }

    /// Sends a reply to a caller's reply stream, trimming it and refreshing its TTL.
    pub(crate) async fn send_reply(
        &self,
        reply_to: &str,
        reply: &ReplyEnvelope,
    ) -> Result<(), BusError> {
        let mut fields =
            reply.to_fields().map_err(|error| BusError::Codec(format!("reply: {error}")))?;
        let bytes: usize = fields.iter().map(|(_, value)| value.len()).sum();
        if let Err(error) = budget::check_size("the reply", bytes) {
            // The caller learns that its command failed, rather than waiting for nothing.
            tracing::error!(command_id = %reply.command_id, %error, "a reply is too large to send");
            let failed = ReplyEnvelope {
                command_id: reply.command_id,
                body: ReplyBody::Failed { message: error.to_string() },
            };
            fields =
                failed.to_fields().map_err(|error| BusError::Codec(format!("reply: {error}")))?;
        }
        let tuning = &self.inner.tuning;
        let mut xadd = redis::cmd("XADD");
        xadd.arg(reply_to).arg("MAXLEN").arg("~").arg(tuning.reply_stream_maxlen).arg("*");
        for (name, value) in &fields {
            xadd.arg(*name).arg(value);
        }
        let mut pipe = redis::pipe();
        pipe.add_command(xadd).ignore();
        pipe.cmd("EXPIRE").arg(reply_to).arg(tuning.reply_ttl_seconds).ignore();
        pipe.query_async::<()>(&mut self.redis()).await?;
        self.after_write(reply_to, StreamKind::Reply);
        Ok(())
    }

    fn waiters(&self) -> MutexGuard<'_, Waiters> {
        self.inner.waiters.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn register(
        &self,
        command_id: Uuid,
    ) -> Result<(WaiterGuard, oneshot::Receiver<ReplyBody>), BusError> {
        if self.inner.stop.is_cancelled() {
            return Err(BusError::Closed);
        }
        let (sender, receiver) = oneshot::channel();
        let token = self.waiters().add(command_id, sender).ok_or(BusError::Closed)?;
        Ok((WaiterGuard { inner: Arc::downgrade(&self.inner), command_id, token }, receiver))
    }

    fn start_listener(&self) {
        self.inner.listener_started.get_or_init(|| {
            let listener = ReplyListener {
                inner: Arc::downgrade(&self.inner),
                conn: self.inner.reply_conn.clone(),
                stream: self.inner.reply_stream.clone(),
                block_ms: duration_ms(self.inner.tuning.block),
                backoff: Backoff::new(self.inner.tuning.retry_backoff_max),
                stop: self.inner.stop.clone(),
            };
            tokio::spawn(listener.run());
        });
    }
}

/// Callers waiting for replies, by command id (several, if a caller retries an id while the
/// first attempt still waits).
#[derive(Default)]
struct Waiters {
    next_token: u64,
    by_command: HashMap<Uuid, Vec<(u64, oneshot::Sender<ReplyBody>)>>,
    closed: bool,
}

impl Waiters {
    fn add(&mut self, command_id: Uuid, sender: oneshot::Sender<ReplyBody>) -> Option<u64> {
        if self.closed {
            return None;
        }
        let token = self.next_token;
        self.next_token = self.next_token.wrapping_add(1);
        self.by_command.entry(command_id).or_default().push((token, sender));
        Some(token)
    }

    fn remove(&mut self, command_id: Uuid, token: u64) {
        if let Some(list) = self.by_command.get_mut(&command_id) {
            list.retain(|(t, _)| *t != token);
            if list.is_empty() {
                self.by_command.remove(&command_id);
            }
        }
    }

    fn complete(&mut self, command_id: Uuid, body: &ReplyBody) {
        for (_, sender) in self.by_command.remove(&command_id).unwrap_or_default() {
            // The caller may have given up meanwhile; nothing to do then.
            let _ = sender.send(body.clone());
        }
    }

    fn close(&mut self) {
        self.closed = true;
        // Dropping the senders wakes every waiting caller with `Closed`.
        self.by_command.clear();
    }
}

/// Removes a caller's waiter when its `send` finishes or is dropped.
struct WaiterGuard {
    inner: Weak<Inner>,
    command_id: Uuid,
    token: u64,
}

impl Drop for WaiterGuard {
    fn drop(&mut self) {
        if let Some(inner) = self.inner.upgrade() {
            inner
                .waiters
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(self.command_id, self.token);
        }
    }
}

/// Reads this instance's reply stream and completes waiting callers.
struct ReplyListener {
    inner: Weak<Inner>,
    conn: RedisConn,
    stream: String,
    block_ms: u64,
    backoff: Backoff,
    stop: CancellationToken,
}

impl ReplyListener {
    async fn run(mut self) {
        // The stream is this instance's alone and new, so reading from the start misses nothing;
        // a plain XREAD (no group) leaves nothing pending, so stopping mid-read loses nothing.
        let mut last_id = "0-0".to_owned();
        loop {
            let mut cmd = redis::cmd("XREAD");
            cmd.arg("COUNT").arg(REPLY_READ_COUNT).arg("BLOCK").arg(self.block_ms);
            cmd.arg("STREAMS").arg(&self.stream).arg(&last_id);
            let read = cmd.query_async::<Option<StreamReadReply>>(&mut self.conn);
            let result = tokio::select! {
                () = self.stop.cancelled() => break,
                result = read => result,
            };
            match result {
                Ok(reply) => {
                    self.backoff.reset();
                    let Some(inner) = self.inner.upgrade() else { break };
                    let entries = reply.into_iter().flat_map(|r| r.keys).flat_map(|k| k.ids);
                    for entry in entries {
                        last_id.clone_from(&entry.id);
                        match ReplyEnvelope::from_fields(&entry.map) {
                            Ok(reply) => inner
                                .waiters
                                .lock()
                                .unwrap_or_else(PoisonError::into_inner)
                                .complete(reply.command_id, &reply.body),
                            Err(error) => {
                                tracing::warn!(entry_id = %entry.id, %error, "malformed reply ignored");
                            }
                        }
                    }
                }
                Err(error) => {
                    tracing::warn!(stream = %self.stream, %error, "reading replies failed; retrying");
                    if !self.backoff.wait(&self.stop).await {
                        break;
                    }
                }
            }
        }
        if let Some(inner) = self.inner.upgrade() {
            inner.waiters.lock().unwrap_or_else(PoisonError::into_inner).close();
        }
    }
}

/// Milliseconds since the Unix epoch, on this host's clock.
pub(crate) fn now_unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX))
}

/// A duration in whole milliseconds (saturating).
pub(crate) fn duration_ms(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}
