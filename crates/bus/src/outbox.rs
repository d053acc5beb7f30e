//! The transactional outbox: [`publish`] writes an event in the caller's transaction, and the
//! [`OutboxRelay`] copies committed events to their Redis streams.
//!
//! Publishing is a row in `<schema>.outbox` plus `pg_notify`, both in the caller's
//! transaction: the event exists if and only if the state change that caused it commits, and
//! the notification (delivered at commit) wakes the relay.
//!
//! The relay takes unpublished rows in `seq` order with `FOR UPDATE SKIP LOCKED` (so several
//! replicas share the work without publishing a row twice at the same time), adds them to
//! `<prefix>:{evt:<topic>}` (`XADD MAXLEN ~ stream_maxlen`, one pipeline per topic, so one
//! Redis Cluster slot each; the event id in the message), marks them published and commits. If
//! Redis fails, the transaction rolls back and the rows wait for the next attempt (capped
//! backoff); if the commit fails after the `XADD`s, the rows are sent again later. Delivery is
//! therefore at least once, and consumers deduplicate by event id. Order follows `seq` within
//! one relay, but `seq` is not commit order, so consumers must not depend on order.
//!
//! The relay waits on `LISTEN` with a poll fallback (`outbox_poll_ms`), and deletes published
//! rows older than `outbox_retention_seconds`.

use std::time::Duration;

use sqlx::postgres::{PgListener, PgPoolOptions};
use sqlx::{AssertSqlSafe, PgConnection, PgPool};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::backoff::Backoff;
use crate::budget::StreamKind;
use crate::bus::Bus;
use crate::event::Event;
use crate::names::{Schema, check_name};
use crate::trace::TraceFields;
use crate::wire::EventEnvelope;
use crate::{BusError, telemetry};

/// How often the relay deletes old published rows.
const CLEANUP_INTERVAL: Duration = Duration::from_secs(15 * 60);

/// Rows deleted per cleanup statement (so one statement never holds locks for long).
const CLEANUP_BATCH: i64 = 10_000;

/// Writes `event` to the outbox of `schema` on `conn` (pass the open transaction of the state
/// change, `&mut *tx`), and notifies the relay at commit. Returns the new event id.
pub async fn publish<E: Event>(
    conn: &mut PgConnection,
    schema: &Schema,
    event: &E,
) -> Result<Uuid, BusError> {
    check_name("topic", E::TOPIC)?;
    // Serialized once: its length is what the bus limits, and Postgres reads it as jsonb.
    let payload = serde_json::to_string(event)
        .map_err(|error| BusError::Codec(format!("event {}: {error}", E::TOPIC)))?;
    crate::budget::check_size(&format!("event {}", E::TOPIC), payload.len())?;
    let event_id = Uuid::now_v7();
    let sql = format!(
        "WITH inserted AS (INSERT INTO {} (event_id, topic, payload, trace_context) \
         VALUES ($1, $2, $3::jsonb, $4) RETURNING 1) SELECT pg_notify($5, '') FROM inserted",
        schema.table("outbox")
    );
    sqlx::query(AssertSqlSafe(sql))
        .bind(event_id)
        .bind(E::TOPIC)
        .bind(payload)
        .bind(TraceFields::current().to_json())
        .bind(schema.outbox_channel())
        .execute(conn)
        .await?;
    Ok(event_id)
}

/// Publishes a service's outbox to Redis. Run one per service replica (several are safe).
#[derive(Debug, Clone)]
pub struct OutboxRelay {
    bus: Bus,
    pool: PgPool,
    select_batch: String,
    mark_published: String,
    delete_published: String,
}

impl OutboxRelay {
    /// A relay of the bus's schema, using `pool`.
    pub fn new(bus: &Bus, pool: PgPool) -> Self {
        let table = bus.schema().table("outbox");
        Self {
            bus: bus.clone(),
            pool,
            select_batch: format!(
                "SELECT seq, event_id, topic, payload, trace_context FROM {table} \
                 WHERE published_at IS NULL ORDER BY seq LIMIT $1 FOR UPDATE SKIP LOCKED"
            ),
            mark_published: format!("UPDATE {table} SET published_at = now() WHERE seq = ANY($1)"),
            delete_published: format!(
                "DELETE FROM {table} WHERE seq IN (SELECT seq FROM {table} \
                 WHERE published_at < now() - make_interval(secs => $1) ORDER BY seq LIMIT $2)"
            ),
        }
    }

    /// Relays until `cancel` fires (a batch in progress finishes first).
    pub async fn run(self, cancel: CancellationToken) {
        let tuning = self.bus.tuning().clone();
        let schema = self.bus.schema().clone();
        let mut backoff = Backoff::new(tuning.retry_backoff_max);
        let mut listener: Option<PgListener> = None;
        let mut next_cleanup = Instant::now();
        tracing::info!(%schema, "outbox relay started");
        while !cancel.is_cancelled() {
            match self.relay_pending().await {
                Ok(_) => backoff.reset(),
                Err(error) => {
                    telemetry::relay_error(schema.as_str());
                    tracing::warn!(%schema, %error, "publishing the outbox failed; the rows stay and are retried");
                    backoff.wait(&cancel).await;
                    continue;
                }
            }
            if Instant::now() >= next_cleanup {
                next_cleanup = Instant::now() + CLEANUP_INTERVAL;
                if let Err(error) = self.delete_published().await {
                    tracing::warn!(%schema, %error, "deleting old outbox rows failed");
                }
            }
            if listener.is_none() {
                listener = match self.listen().await {
                    Ok(listener) => Some(listener),
                    Err(error) => {
                        tracing::warn!(%schema, %error, "LISTEN failed; polling only");
                        None
                    }
                };
            }
            let notified = async {
                match listener.as_mut() {
                    Some(listener) => listener.try_recv().await.map(|_| ()),
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = cancel.cancelled() => break,
                () = tokio::time::sleep(tuning.outbox_poll) => {}
                received = notified => {
                    if let Err(error) = received {
                        tracing::warn!(%schema, %error, "the LISTEN connection failed; reconnecting");
                        listener = None;
                    }
                }
            }
        }
        tracing::info!(%schema, "outbox relay stopped");
    }

    /// Publishes every row that is unpublished now; returns how many were published.
    pub async fn relay_pending(&self) -> Result<u64, BusError> {
        let mut total: u64 = 0;
        loop {
            let published = self.relay_batch().await?;
            total = total.saturating_add(published);
            if published < u64::try_from(self.bus.tuning().outbox_batch_size).unwrap_or(u64::MAX) {
                return Ok(total);
            }
        }
    }

    /// Deletes published rows older than the retention; returns how many.
    pub async fn delete_published(&self) -> Result<u64, BusError> {
        let retention_seconds = self.bus.tuning().outbox_retention.as_secs_f64();
        let mut total: u64 = 0;
        loop {
            let deleted = sqlx::query(AssertSqlSafe(self.delete_published.as_str()))
                .bind(retention_seconds)
                .bind(CLEANUP_BATCH)
                .execute(&self.pool)
                .await?
                .rows_affected();
            total = total.saturating_add(deleted);
            if deleted < u64::try_from(CLEANUP_BATCH).unwrap_or(u64::MAX) {
                return Ok(total);
            }
        }
    }

    async fn relay_batch(&self) -> Result<u64, BusError> {
        let tuning = self.bus.tuning();
        let mut tx = self.pool.begin().await?;
        let rows: Vec<(i64, Uuid, String, serde_json::Value, serde_json::Value)> =
            sqlx::query_as(AssertSqlSafe(self.select_batch.as_str()))
                .bind(tuning.outbox_batch_size)
                .fetch_all(&mut *tx)
                .await?;
        if rows.is_empty() {
            return Ok(0);
        }
        // One pipeline per topic, in `seq` order within it: a topic's stream is one key (one
        // Redis Cluster slot), and a pipeline must stay in one slot.
        let mut seqs = Vec::with_capacity(rows.len());
        let mut per_topic: Vec<(String, redis::Pipeline, u64)> = Vec::new();
        for (seq, event_id, topic, payload, trace_context) in rows {
            let envelope = EventEnvelope {
                id: event_id,
                topic: topic.clone(),
                payload: payload.to_string(),
                trace: TraceFields::from_json(&trace_context),
            };
            let index = match per_topic.iter().position(|(t, _, _)| *t == topic) {
                Some(index) => index,
                None => {
                    per_topic.push((topic, redis::pipe(), 0));
                    per_topic.len() - 1
                }
            };
            let (topic, pipe, count) = &mut per_topic[index];
            let xadd = pipe.cmd("XADD");
            xadd.arg(tuning.keys.event_stream(topic))
                .arg("MAXLEN")
                .arg("~")
                .arg(tuning.stream_maxlen)
                .arg("*");
            for (name, value) in envelope.to_fields() {
                xadd.arg(name).arg(value);
            }
            xadd.ignore();
            *count = count.saturating_add(1);
            seqs.push(seq);
        }
        // On error the transaction rolls back (dropped) and the rows stay unpublished (a topic
        // sent before the error is sent again: delivery is at least once).
        for (_, pipe, _) in &per_topic {
            pipe.query_async::<()>(&mut self.bus.redis()).await?;
        }
        sqlx::query(AssertSqlSafe(self.mark_published.as_str()))
            .bind(&seqs)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        for (topic, _, count) in per_topic {
            self.bus.after_write(&tuning.keys.event_stream(&topic), StreamKind::Event);
            telemetry::events_published(&topic, count);
        }
        tracing::debug!(count = seqs.len(), "outbox rows published");
        Ok(u64::try_from(seqs.len()).unwrap_or(u64::MAX))
    }

    async fn listen(&self) -> Result<PgListener, sqlx::Error> {
        // A pool of one connection of its own, so LISTEN never holds one of the service's.
        let options = (*self.pool.connect_options()).clone();
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .max_lifetime(None)
            .idle_timeout(None)
            .connect_lazy_with(options);
        let mut listener = PgListener::connect_with(&pool).await?;
        listener.listen(&self.bus.schema().outbox_channel()).await?;
        Ok(listener)
    }
}
