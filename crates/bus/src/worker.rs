//! The consumer-group loop under every command server and event consumer: one stream, one
//! group, one consumer name per running worker.
//!
//! - New messages come from `XREADGROUP … >` on a connection of the worker's own (the read
//!   blocks up to `block_ms`). Up to `handler_concurrency` messages are processed at once, each
//!   in a task of its own; the task acknowledges its message itself, after its commit.
//! - Every `claim_idle_ms / 2` the worker renews the messages it is processing (`XCLAIM` to
//!   itself with `JUSTID`: idle time reset, delivery count unchanged), then reclaims messages
//!   left idle longer than `claim_idle_ms` by any consumer of the group (`XAUTOCLAIM`). Since
//!   live consumers keep renewing, only the messages of a consumer that died (or lost Redis)
//!   go idle: a slow handler is neither run twice at once nor dead-lettered for its slowness,
//!   and `claim_idle_ms` is the time to detect a dead consumer. The delivery count of a
//!   reclaimed message comes from `XPENDING`.
//! - A message delivered more than `max_deliveries` times is copied to the dead-letter stream
//!   with its delivery count and last error (kept in the `lasterror` hash whenever a delivery
//!   fails), then acknowledged. So is a message the processor says can never succeed.
//! - A missing stream or group (a new deployment, or Redis restarted empty) is (re)created from
//!   id 0 with `MKSTREAM`, and the loop carries on. Redis errors are retried with capped
//!   backoff.
//! - On cancellation the worker stops reading and claiming, lets in-flight messages finish (a
//!   read already sent is awaited, at most `block_ms`, and what it returns is processed, since
//!   it is already assigned to this consumer), and removes its consumer name from the group if
//!   nothing is pending on it.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use redis::streams::{
    StreamAutoClaimReply, StreamInfoConsumersReply, StreamPendingCountReply, StreamReadReply,
};
use redis::{RedisError, Value};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::backoff::Backoff;
use crate::bus::{Bus, duration_ms, now_unix_ms};
use crate::connection::RedisConn;
use crate::{BusError, telemetry};

/// Longest last-error text kept per message.
const LAST_ERROR_LEN_MAX: usize = 2_000;

/// How long the last error of a message is kept (refreshed on each failure).
const LAST_ERROR_TTL_SECONDS: u64 = 7 * 24 * 3_600;

/// One delivery of a stream entry to this consumer.
#[derive(Debug, Clone)]
pub(crate) struct Delivery {
    pub(crate) entry_id: String,
    pub(crate) fields: HashMap<String, Value>,
    /// 1 for the first delivery.
    pub(crate) count: u64,
}

/// What to do with a delivery once processed.
#[derive(Debug)]
pub(crate) enum Disposition {
    /// Done (committed, or deliberately skipped): acknowledge.
    Done,
    /// Failed for now: leave it pending, record the error; it is redelivered after the claim
    /// idle time.
    Retry(String),
    /// Can never succeed: dead-letter it now.
    DeadLetter(String),
}

/// What a worker does with its messages.
pub(crate) trait Processor: Send + Sync + 'static {
    /// Processes one delivery (the worker acknowledges, retries or dead-letters as told).
    fn process(&self, delivery: &Delivery) -> impl Future<Output = Disposition> + Send;

    /// Called once a delivery is in the dead-letter stream, before it is acknowledged (a
    /// command answers its caller).
    fn on_dead_letter(&self, delivery: &Delivery, reason: &str) -> impl Future<Output = ()> + Send;
}

/// A consumer of one stream in one group.
pub(crate) struct StreamWorker<P> {
    shared: Arc<Shared<P>>,
}

struct Shared<P> {
    bus: Bus,
    stream: String,
    stream_name: String,
    group: String,
    consumer: String,
    dead_letter_stream: String,
    last_errors: String,
    processor: P,
    /// Entry ids this worker is processing now: their leases are renewed, and a claim scan
    /// that returns one of them does not start a second run.
    in_flight: Mutex<HashSet<String>>,
}

impl<P: Processor> StreamWorker<P> {
    /// A worker for `stream_name` (`cmd:{family}` or `evt:{topic}`) in the service's group.
    pub(crate) fn new(bus: &Bus, stream_name: String, processor: P) -> Self {
        let keys = bus.keys();
        let group = bus.config().service.clone();
        let host = std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty());
        // Readable in XINFO CONSUMERS: which service, on which host; unique per worker.
        let consumer = format!(
            "{group}@{}#{}",
            host.as_deref().unwrap_or("local"),
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        );
        Self {
            shared: Arc::new(Shared {
                bus: bus.clone(),
                stream: keys.stream(&stream_name),
                dead_letter_stream: keys.dead_letter_stream(&stream_name),
                last_errors: keys.last_errors(&group, &stream_name),
                stream_name,
                group,
                consumer,
                processor,
                in_flight: Mutex::new(HashSet::new()),
            }),
        }
    }

    /// Runs until `cancel` fires and in-flight messages are finished.
    pub(crate) async fn run(self, cancel: CancellationToken) -> Result<(), BusError> {
        let shared = self.shared;
        let tuning = shared.bus.tuning().clone();
        let mut reader = shared.bus.dedicated_connection()?;
        let mut backoff = Backoff::new(tuning.retry_backoff_max);
        let mut tasks: JoinSet<()> = JoinSet::new();
        let mut group_ready = false;
        let mut claim_cursor = "0-0".to_owned();
        // Claim at once on start: a restarted replica finishes what a dead one left.
        let mut next_claim = Instant::now();
        tracing::info!(stream = %shared.stream, group = %shared.group, consumer = %shared.consumer, "consumer started");
        while !cancel.is_cancelled() {
            reap(&mut tasks);
            if !group_ready {
                match shared.ensure_group().await {
                    Ok(()) => group_ready = true,
                    Err(error) => {
                        tracing::warn!(stream = %shared.stream, %error, "creating the consumer group failed; retrying");
                        backoff.wait(&cancel).await;
                        continue;
                    }
                }
            }
            let free = tuning.handler_concurrency.saturating_sub(tasks.len());
            if Instant::now() >= next_claim {
                shared.renew_leases().await;
                if free == 0 {
                    next_claim = Instant::now() + tuning.claim_interval;
                    continue;
                }
                match shared.claim(&mut claim_cursor, free).await {
                    Ok(claimed) => {
                        backoff.reset();
                        for (delivery, exhausted) in claimed {
                            Arc::clone(&shared).spawn(&mut tasks, delivery, exhausted);
                        }
                        // A cursor other than 0-0 means more of the pending list to scan.
                        if claim_cursor == "0-0" {
                            next_claim = Instant::now() + tuning.claim_interval;
                        }
                    }
                    Err(error) => {
                        if is_missing_group(&error) {
                            group_ready = false;
                        } else {
                            tracing::warn!(stream = %shared.stream, %error, "claiming pending messages failed; retrying");
                            backoff.wait(&cancel).await;
                        }
                        next_claim = Instant::now() + tuning.claim_interval;
                    }
                }
                continue;
            }
            if free == 0 {
                tokio::select! {
                    Some(result) = tasks.join_next() => log_task_failure(result),
                    () = tokio::time::sleep_until(next_claim) => {}
                    () = cancel.cancelled() => {}
                }
                continue;
            }
            // Block no longer than until the next claim scan (and never 0, which means forever).
            let block = tuning
                .block
                .min(next_claim.saturating_duration_since(Instant::now()))
                .max(Duration::from_millis(1));
            match shared.read(&mut reader, free, block).await {
                Ok(deliveries) => {
                    backoff.reset();
                    for delivery in deliveries {
                        Arc::clone(&shared).spawn(&mut tasks, delivery, false);
                    }
                }
                Err(error) if is_missing_group(&error) => {
                    tracing::info!(stream = %shared.stream, group = %shared.group, "stream or group missing; recreating it");
                    group_ready = false;
                }
                Err(error) => {
                    tracing::warn!(stream = %shared.stream, %error, "reading the stream failed; retrying");
                    backoff.wait(&cancel).await;
                }
            }
        }
        // Drain: in-flight messages finish (and keep their leases) before the worker returns.
        while !tasks.is_empty() {
            tokio::select! {
                Some(result) = tasks.join_next() => log_task_failure(result),
                () = tokio::time::sleep_until(next_claim) => {
                    shared.renew_leases().await;
                    next_claim = Instant::now() + tuning.claim_interval;
                }
            }
        }
        shared.remove_consumer_if_idle().await;
        tracing::info!(stream = %shared.stream, consumer = %shared.consumer, "consumer stopped");
        Ok(())
    }
}

fn reap(tasks: &mut JoinSet<()>) {
    while let Some(result) = tasks.try_join_next() {
        log_task_failure(result);
    }
}

fn log_task_failure(result: Result<(), tokio::task::JoinError>) {
    // Handler panics are caught inside the task; this is a bug in the bus itself. The message
    // stays pending and is redelivered.
    if let Err(error) = result {
        tracing::error!(%error, "a message task failed");
    }
}

fn is_missing_group(error: &RedisError) -> bool {
    error.code() == Some("NOGROUP")
}

impl<P: Processor> Shared<P> {
    /// Processes (or, if `exhausted`, dead-letters) `delivery` in a task of its own, unless this
    /// worker is already processing that entry.
    fn spawn(self: Arc<Self>, tasks: &mut JoinSet<()>, delivery: Delivery, exhausted: bool) {
        if !self.in_flight().insert(delivery.entry_id.clone()) {
            return;
        }
        tasks.spawn(async move {
            let _in_flight = InFlight { shared: &self, entry_id: &delivery.entry_id };
            if exhausted {
                self.dead_letter_exhausted(&delivery).await;
            } else {
                self.handle(&delivery).await;
            }
        });
    }

    fn in_flight(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.in_flight.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Resets the idle time of the messages this worker is processing (`XCLAIM` to itself,
    /// `JUSTID`, which leaves the delivery count alone), so that only the messages of a consumer
    /// that stopped renewing (a dead one) become idle enough to be reclaimed. A slow handler is
    /// therefore never run twice at once, nor dead-lettered for being slow.
    async fn renew_leases(&self) {
        let ids: Vec<String> = self.in_flight().iter().cloned().collect();
        if ids.is_empty() {
            return;
        }
        let mut cmd = redis::cmd("XCLAIM");
        cmd.arg(&self.stream).arg(&self.group).arg(&self.consumer).arg(0).arg(&ids).arg("JUSTID");
        if let Err(error) = cmd.query_async::<Vec<String>>(&mut self.bus.redis()).await {
            tracing::warn!(stream = %self.stream, %error, "renewing in-flight messages failed");
        }
    }

    async fn ensure_group(&self) -> Result<(), RedisError> {
        let created: Result<(), RedisError> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(&self.stream)
            .arg(&self.group)
            .arg("0")
            .arg("MKSTREAM")
            .query_async(&mut self.bus.redis())
            .await;
        match created {
            Err(error) if error.code() != Some("BUSYGROUP") => Err(error),
            _ => Ok(()),
        }
    }

    async fn read(
        &self,
        reader: &mut RedisConn,
        count: usize,
        block: Duration,
    ) -> Result<Vec<Delivery>, RedisError> {
        let reply: Option<StreamReadReply> = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg(&self.group)
            .arg(&self.consumer)
            .arg("COUNT")
            .arg(count)
            .arg("BLOCK")
            .arg(duration_ms(block))
            .arg("STREAMS")
            .arg(&self.stream)
            .arg(">")
            .query_async(reader)
            .await?;
        Ok(reply
            .into_iter()
            .flat_map(|r| r.keys)
            .flat_map(|k| k.ids)
            .map(|entry| Delivery { entry_id: entry.id, fields: entry.map, count: 1 })
            .collect())
    }

    /// Reclaims up to `count` messages idle past the claim time; each comes with whether it
    /// has exhausted its deliveries.
    async fn claim(
        &self,
        cursor: &mut String,
        count: usize,
    ) -> Result<Vec<(Delivery, bool)>, RedisError> {
        let tuning = self.bus.tuning();
        let mut conn = self.bus.redis();
        let reply: StreamAutoClaimReply = redis::cmd("XAUTOCLAIM")
            .arg(&self.stream)
            .arg(&self.group)
            .arg(&self.consumer)
            .arg(duration_ms(tuning.claim_idle))
            .arg(cursor.as_str())
            .arg("COUNT")
            .arg(count)
            .query_async(&mut conn)
            .await?;
        cursor.clone_from(&reply.next_stream_id);
        if !reply.deleted_ids.is_empty() {
            // Trimmed away while pending (the stream outgrew stream_maxlen): nothing to redo.
            tracing::warn!(stream = %self.stream, count = reply.deleted_ids.len(), "pending messages were trimmed before being processed");
        }
        if reply.claimed.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for entry in &reply.claimed {
            pipe.cmd("XPENDING")
                .arg(&self.stream)
                .arg(&self.group)
                .arg(&entry.id)
                .arg(&entry.id)
                .arg(1);
        }
        let pending: Vec<StreamPendingCountReply> = pipe.query_async(&mut conn).await?;
        let mut claimed = Vec::with_capacity(reply.claimed.len());
        for (entry, pending) in reply.claimed.into_iter().zip(pending) {
            // Absent if its first consumer acknowledged it just now: then there is nothing to do.
            let Some(info) = pending.ids.into_iter().next() else { continue };
            let count = u64::try_from(info.times_delivered).unwrap_or(u64::MAX);
            let exhausted = count > tuning.max_deliveries;
            tracing::info!(stream = %self.stream, entry_id = %entry.id, delivery = count, "reclaimed a pending message");
            claimed.push((Delivery { entry_id: entry.id, fields: entry.map, count }, exhausted));
        }
        Ok(claimed)
    }

    async fn handle(&self, delivery: &Delivery) {
        match self.processor.process(delivery).await {
            Disposition::Done => self.ack(delivery).await,
            Disposition::Retry(error) => self.record_failure(delivery, &error).await,
            Disposition::DeadLetter(reason) => self.dead_letter(delivery, &reason).await,
        }
    }

    async fn ack(&self, delivery: &Delivery) {
        let mut pipe = redis::pipe();
        pipe.cmd("XACK").arg(&self.stream).arg(&self.group).arg(&delivery.entry_id).ignore();
        if delivery.count > 1 {
            pipe.cmd("HDEL").arg(&self.last_errors).arg(&delivery.entry_id).ignore();
        }
        if let Err(error) = pipe.query_async::<()>(&mut self.bus.redis()).await {
            // The work is committed; the message will be redelivered and found in the inbox.
            tracing::warn!(stream = %self.stream, entry_id = %delivery.entry_id, %error, "acknowledging failed; the message will be redelivered");
        }
    }

    async fn record_failure(&self, delivery: &Delivery, error: &str) {
        tracing::warn!(
            stream = %self.stream,
            entry_id = %delivery.entry_id,
            delivery = delivery.count,
            %error,
            "message failed; it will be redelivered"
        );
        let mut text: String = error.chars().take(LAST_ERROR_LEN_MAX).collect();
        if text.len() < error.len() {
            text.push('…');
        }
        let mut pipe = redis::pipe();
        pipe.cmd("HSET").arg(&self.last_errors).arg(&delivery.entry_id).arg(text).ignore();
        pipe.cmd("EXPIRE").arg(&self.last_errors).arg(LAST_ERROR_TTL_SECONDS).ignore();
        if let Err(error) = pipe.query_async::<()>(&mut self.bus.redis()).await {
            tracing::warn!(stream = %self.stream, %error, "recording the last error failed");
        }
    }

    async fn dead_letter_exhausted(&self, delivery: &Delivery) {
        let last_error: Option<String> = redis::cmd("HGET")
            .arg(&self.last_errors)
            .arg(&delivery.entry_id)
            .query_async(&mut self.bus.redis())
            .await
            .unwrap_or(None);
        let reason = format!(
            "delivered {} times (max_deliveries {}); last error: {}",
            delivery.count,
            self.bus.tuning().max_deliveries,
            last_error
                .as_deref()
                .unwrap_or("none recorded (the consumer stopped while handling it)")
        );
        self.dead_letter(delivery, &reason).await;
    }

    async fn dead_letter(&self, delivery: &Delivery, reason: &str) {
        let mut fields: Vec<(String, String)> = delivery
            .fields
            .iter()
            .filter_map(|(name, value)| {
                redis::from_redis_value_ref::<String>(value).ok().map(|v| (name.clone(), v))
            })
            .collect();
        fields.sort();
        let mut xadd = redis::cmd("XADD");
        xadd.arg(&self.dead_letter_stream)
            .arg("MAXLEN")
            .arg("~")
            .arg(self.bus.tuning().stream_maxlen)
            .arg("*");
        for (name, value) in &fields {
            xadd.arg(name).arg(value);
        }
        xadd.arg("dlq_stream").arg(&self.stream);
        xadd.arg("dlq_entry_id").arg(&delivery.entry_id);
        xadd.arg("dlq_group").arg(&self.group);
        xadd.arg("dlq_consumer").arg(&self.consumer);
        xadd.arg("dlq_deliveries").arg(delivery.count);
        xadd.arg("dlq_error").arg(reason);
        xadd.arg("dlq_at_ms").arg(now_unix_ms());
        let mut conn = self.bus.redis();
        // Dead-letter first, acknowledge last: a crash in between leaves a duplicate in the
        // dead-letter stream, never a lost message.
        if let Err(error) = xadd.query_async::<String>(&mut conn).await {
            tracing::warn!(stream = %self.stream, entry_id = %delivery.entry_id, %error, "dead-lettering failed; it will be retried");
            return;
        }
        self.bus.after_write(&self.dead_letter_stream, crate::budget::StreamKind::DeadLetter);
        tracing::error!(
            stream = %self.stream,
            group = %self.group,
            entry_id = %delivery.entry_id,
            deliveries = delivery.count,
            reason,
            "message dead-lettered"
        );
        telemetry::dead_lettered(&self.stream_name, &self.group);
        // Whoever is told about it (a command's caller) finds it in the dead-letter stream.
        self.processor.on_dead_letter(delivery, reason).await;
        let mut pipe = redis::pipe();
        pipe.cmd("XACK").arg(&self.stream).arg(&self.group).arg(&delivery.entry_id).ignore();
        pipe.cmd("HDEL").arg(&self.last_errors).arg(&delivery.entry_id).ignore();
        if let Err(error) = pipe.query_async::<()>(&mut conn).await {
            tracing::warn!(stream = %self.stream, entry_id = %delivery.entry_id, %error, "acknowledging a dead letter failed");
        }
    }

    /// Best effort: a consumer name with nothing pending is forgotten, so names of stopped
    /// replicas do not pile up in the group. One with pending messages stays, so others can
    /// claim them.
    async fn remove_consumer_if_idle(&self) {
        let mut conn = self.bus.redis();
        let consumers: Result<StreamInfoConsumersReply, RedisError> = redis::cmd("XINFO")
            .arg("CONSUMERS")
            .arg(&self.stream)
            .arg(&self.group)
            .query_async(&mut conn)
            .await;
        let Ok(consumers) = consumers else { return };
        let idle = consumers.consumers.iter().any(|c| c.name == self.consumer && c.pending == 0);
        if idle {
            let removed: Result<i64, RedisError> = redis::cmd("XGROUP")
                .arg("DELCONSUMER")
                .arg(&self.stream)
                .arg(&self.group)
                .arg(&self.consumer)
                .query_async(&mut conn)
                .await;
            if let Err(error) = removed {
                tracing::debug!(%error, "removing the consumer name failed");
            }
        }
    }
}

/// Removes an entry from the worker's in-flight set when its task ends (or is aborted).
struct InFlight<'a, P> {
    shared: &'a Shared<P>,
    entry_id: &'a str,
}

impl<P> Drop for InFlight<'_, P> {
    fn drop(&mut self) {
        self.shared.in_flight.lock().unwrap_or_else(PoisonError::into_inner).remove(self.entry_id);
    }
}
