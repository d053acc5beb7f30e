//! Events end to end on real Redis and Postgres: the transactional outbox and its relay
//! (through a Redis outage, with LISTEN/NOTIFY, in order, several topics in one batch, with
//! retention), deduplication by event id, and dead letters. Each test but the Postgres-only
//! retention test runs twice: on a Redis server (`single::…`) and on a three-node Redis Cluster
//! (`cluster::…`; the outage tests kill and restart every node).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test helpers fail the test by panicking, like the tests themselves"
)]

#[macro_use]
mod common;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use awx_bus::{
    Bus, BusConfig, BusError, Event, EventConsumer, EventHandler, EventMeta, HandlerError,
    OutboxRelay, Schema, event_handler_fn, publish,
};
use awx_test_support::TestDb;
use common::{
    PrivateRedis, TestRedis, Topology, drained, effect_count, entries, group_drained, inbox_count,
    replica_pool, wait_until, within,
};
use serde::{Deserialize, Serialize};
use sqlx::{PgConnection, PgPool};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

const TOPIC: &str = "test.credited";
const WAIT: Duration = Duration::from_secs(20);

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Credited {
    account: String,
    amount: i64,
}

impl Event for Credited {
    const TOPIC: &'static str = TOPIC;
}

fn credited(n: i64) -> Credited {
    Credited { account: format!("acct-{n}"), amount: n }
}

/// Applies `Credited` to `bustest.effects`, counting its calls; optionally always failing.
#[derive(Clone)]
struct Projection {
    calls: Arc<AtomicUsize>,
    failing: bool,
}

impl Projection {
    fn new(failing: bool) -> Self {
        Self { calls: Arc::new(AtomicUsize::new(0)), failing }
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

impl EventHandler<Credited> for Projection {
    async fn handle(
        &self,
        tx: &mut PgConnection,
        event: Credited,
        meta: EventMeta,
    ) -> Result<(), HandlerError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        sqlx::query(
            "INSERT INTO bustest.effects (message_id, account, amount, server, delivery) \
             VALUES ($1, $2, $3, 'projection', $4)",
        )
        .bind(meta.event_id)
        .bind(&event.account)
        .bind(event.amount)
        .bind(i64::try_from(meta.delivery).unwrap())
        .execute(&mut *tx)
        .await?;
        if self.failing {
            return Err(HandlerError::transient("projection unavailable (test)"));
        }
        Ok(())
    }
}

/// A relay and a consumer running on their own bus and pools, as one service replica would.
struct Service {
    bus: Bus,
    stop: CancellationToken,
    relay: JoinHandle<()>,
    consumer: JoinHandle<Result<(), BusError>>,
}

impl Service {
    async fn start(db: &TestDb, config: BusConfig, projection: Projection) -> Self {
        let bus = Bus::connect(config).await.unwrap();
        let stop = CancellationToken::new();
        let relay = tokio::spawn(OutboxRelay::new(&bus, replica_pool(db).await).run(stop.clone()));
        let consumer =
            EventConsumer::new(&bus, replica_pool(db).await).on::<Credited, _>(projection).unwrap();
        let consumer = tokio::spawn(consumer.run(stop.clone()));
        Self { bus, stop, relay, consumer }
    }

    async fn shutdown(self) {
        self.stop.cancel();
        within("the relay to stop", WAIT, self.relay).await.unwrap();
        within("the consumer to stop", WAIT, self.consumer).await.unwrap().unwrap();
    }
}

fn schema() -> Schema {
    Schema::new(common::SCHEMA).unwrap()
}

/// Publishes `event` in a transaction of its own and commits it.
async fn publish_committed(pool: &PgPool, event: &Credited) -> Uuid {
    let mut tx = pool.begin().await.unwrap();
    let id = publish(&mut tx, &schema(), event).await.unwrap();
    tx.commit().await.unwrap();
    id
}

/// Applied events: event id to the number of effect rows.
async fn applied(pool: &PgPool) -> HashMap<Uuid, i64> {
    let rows: Vec<(Uuid, i64)> =
        sqlx::query_as("SELECT message_id, count(*) FROM bustest.effects GROUP BY message_id")
            .fetch_all(pool)
            .await
            .unwrap();
    rows.into_iter().collect()
}

fn event_stream(prefix: &str) -> String {
    awx_bus::Keys::new(prefix).unwrap().event_stream(TOPIC)
}

async fn outbox_rows_survive_a_redis_outage_and_are_all_delivered(topology: Topology) {
    let db = common::database().await;
    let mut redis =
        tokio::task::spawn_blocking(move || PrivateRedis::start(topology)).await.unwrap();
    let redis_probe = redis.probe();
    let service = Service::start(&db, redis_probe.config("outage"), Projection::new(false)).await;

    let warm_up = publish_committed(&db.pool, &credited(0)).await;
    wait_until("the first event is applied", WAIT, || async {
        effect_count(&db.pool, warm_up).await == 1
    })
    .await;

    tokio::task::block_in_place(|| redis.stop());
    assert!(service.bus.ping().await.is_err(), "the readiness check sees Redis down");
    let mut published = HashSet::from([warm_up]);
    for n in 1..=20 {
        published.insert(publish_committed(&db.pool, &credited(n)).await);
    }
    // A relay pass fails while Redis is down and leaves every row in place.
    let probe = OutboxRelay::new(&service.bus, db.pool.clone());
    assert!(probe.relay_pending().await.is_err());
    let unpublished: i64 =
        sqlx::query_scalar("SELECT count(*) FROM bustest.outbox WHERE published_at IS NULL")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(unpublished, 20, "the committed events wait in the outbox");

    // Redis comes back empty: the relay publishes everything and the consumer recreates its
    // group and applies everything.
    tokio::task::block_in_place(|| redis.start_again());
    wait_until("all 21 events are applied", WAIT, || async { applied(&db.pool).await.len() == 21 })
        .await;
    let applied = applied(&db.pool).await;
    assert_eq!(applied.keys().copied().collect::<HashSet<_>>(), published, "none lost");
    assert!(applied.values().all(|count| *count == 1), "none applied twice: {applied:?}");
    let unpublished: i64 =
        sqlx::query_scalar("SELECT count(*) FROM bustest.outbox WHERE published_at IS NULL")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(unpublished, 0);
    service.bus.ping().await.unwrap();
    wait_until("nothing stays pending", WAIT, || drained(&redis_probe, &event_stream("outage")))
        .await;
    service.shutdown().await;
}

async fn a_service_started_while_redis_is_down_catches_up_when_it_comes_up(topology: Topology) {
    let db = common::database().await;
    let mut redis =
        tokio::task::spawn_blocking(move || PrivateRedis::start(topology)).await.unwrap();
    tokio::task::block_in_place(|| redis.stop());
    let service = Service::start(&db, redis.probe().config("late"), Projection::new(false)).await;
    assert!(service.bus.ping().await.is_err());
    let id = publish_committed(&db.pool, &credited(5)).await;

    tokio::task::block_in_place(|| redis.start_again());
    wait_until("the event is applied", WAIT, || async { effect_count(&db.pool, id).await == 1 })
        .await;
    service.bus.ping().await.unwrap();
    service.shutdown().await;
}

async fn the_same_event_delivered_twice_is_applied_once(topology: Topology) {
    let db = common::database().await;
    let redis = TestRedis::new(topology).await;
    let projection = Projection::new(false);
    let service = Service::start(&db, redis.config(), projection.clone()).await;

    let id = publish_committed(&db.pool, &credited(7)).await;
    wait_until("the event is applied", WAIT, || async { effect_count(&db.pool, id).await == 1 })
        .await;

    // Mark it unpublished, as after a relay that crashed between XADD and its commit: the
    // relay's poll finds it and publishes it again, with the same event id.
    sqlx::query("UPDATE bustest.outbox SET published_at = NULL WHERE event_id = $1")
        .bind(id)
        .execute(&db.pool)
        .await
        .unwrap();
    let stream = event_stream(redis.prefix());
    wait_until("the duplicate is published and consumed", WAIT, || async {
        entries(&redis, &stream).await.len() == 2 && group_drained(&redis, &stream, "svc").await
    })
    .await;
    let entries = entries(&redis, &stream).await;
    assert!(entries.iter().all(|entry| entry["id"] == id.to_string()), "same event id twice");
    assert_eq!(projection.calls(), 1, "the handler ran once");
    assert_eq!(effect_count(&db.pool, id).await, 1, "applied once");
    assert_eq!(inbox_count(&db.pool, id).await, 1);
    service.shutdown().await;
}

async fn an_event_that_keeps_failing_is_dead_lettered(topology: Topology) {
    let db = common::database().await;
    let redis = TestRedis::new(topology).await;
    let projection = Projection::new(true);
    let service = Service::start(&db, redis.config(), projection.clone()).await;

    let id = publish_committed(&db.pool, &credited(3)).await;
    let dlq = service.bus.keys().dead_letter_stream(&format!("evt:{TOPIC}"));
    wait_until("the event is dead-lettered", WAIT, || async {
        entries(&redis, &dlq).await.len() == 1
    })
    .await;
    let dead = entries(&redis, &dlq).await;
    assert_eq!(dead[0]["id"], id.to_string());
    assert_eq!(dead[0]["dlq_deliveries"], "4");
    assert!(dead[0]["dlq_error"].contains("projection unavailable (test)"), "{:?}", dead[0]);
    assert_eq!(projection.calls(), 3, "max_deliveries attempts");
    assert_eq!(effect_count(&db.pool, id).await, 0, "every attempt rolled back");
    assert_eq!(inbox_count(&db.pool, id).await, 0);
    wait_until("the event is acknowledged", WAIT, || {
        drained(&redis, &event_stream(redis.prefix()))
    })
    .await;
    service.shutdown().await;
}

async fn a_notification_wakes_the_relay_and_only_committed_events_are_published_in_order(
    topology: Topology,
) {
    let db = common::database().await;
    let redis = TestRedis::new(topology).await;
    // Polling is an hour apart, so only the notification at commit can wake the relay in time.
    let config = BusConfig { outbox_poll_ms: 3_600_000, ..redis.config() };
    let seen: Arc<std::sync::Mutex<Vec<Uuid>>> = Arc::default();
    let handler = {
        let seen = Arc::clone(&seen);
        event_handler_fn(move |_tx: &mut PgConnection, _event: Credited, meta: EventMeta| {
            let seen = Arc::clone(&seen);
            Box::pin(async move {
                seen.lock().unwrap().push(meta.event_id);
                Ok(())
            })
        })
    };
    let bus = Bus::connect(config).await.unwrap();
    let stop = CancellationToken::new();
    let relay = tokio::spawn(OutboxRelay::new(&bus, replica_pool(&db).await).run(stop.clone()));
    let consumer = tokio::spawn(
        EventConsumer::new(&bus, replica_pool(&db).await).on(handler).unwrap().run(stop.clone()),
    );
    wait_until("the relay listens", WAIT, || async {
        let listening: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND state = 'idle' AND query LIKE 'LISTEN%'",
        )
        .bind(db.name())
        .fetch_one(&db.pool)
        .await
        .unwrap();
        listening == 1
    })
    .await;

    // A rolled-back transaction publishes nothing.
    let mut tx = db.pool.begin().await.unwrap();
    publish(&mut tx, bus.schema(), &credited(99)).await.unwrap();
    tx.rollback().await.unwrap();
    // Five events in one transaction arrive in order.
    let mut tx = db.pool.begin().await.unwrap();
    let mut ids = Vec::new();
    for n in 1..=5 {
        ids.push(publish(&mut tx, bus.schema(), &credited(n)).await.unwrap());
    }
    tx.commit().await.unwrap();

    let stream = event_stream(redis.prefix());
    wait_until("the events are published and consumed", WAIT, || async {
        entries(&redis, &stream).await.len() == 5 && group_drained(&redis, &stream, "svc").await
    })
    .await;
    let on_stream: Vec<String> =
        entries(&redis, &stream).await.iter().map(|e| e["id"].clone()).collect();
    assert_eq!(on_stream, ids.iter().map(Uuid::to_string).collect::<Vec<_>>());
    let mut seen = seen.lock().unwrap().clone();
    seen.sort();
    assert_eq!(seen, ids, "each applied once (UUIDv7 ids sort in publish order)");
    stop.cancel();
    within("the relay to stop", WAIT, relay).await.unwrap();
    within("the consumer to stop", WAIT, consumer).await.unwrap().unwrap();
}

/// Events of another topic, to publish next to [`Credited`].
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Debited {
    account: String,
    amount: i64,
}

impl Event for Debited {
    const TOPIC: &'static str = "test.debited";
}

async fn events_of_several_topics_in_one_batch_all_arrive_in_order(topology: Topology) {
    let db = common::database().await;
    let redis = TestRedis::new(topology).await;
    let bus = Bus::connect(redis.config()).await.unwrap();
    // Interleaved topics in one transaction, so one relay batch: on a cluster the two streams
    // live in different slots, which one pipeline could not reach.
    let mut tx = db.pool.begin().await.unwrap();
    let (mut credits, mut debits) = (Vec::new(), Vec::new());
    for n in 1..=6 {
        credits.push(publish(&mut tx, bus.schema(), &credited(n)).await.unwrap().to_string());
        let debit = Debited { account: format!("acct-{n}"), amount: n };
        debits.push(publish(&mut tx, bus.schema(), &debit).await.unwrap().to_string());
    }
    tx.commit().await.unwrap();
    let relay = OutboxRelay::new(&bus, db.pool.clone());
    assert_eq!(relay.relay_pending().await.unwrap(), 12);
    let ids = |entries: Vec<HashMap<String, String>>| -> Vec<String> {
        entries.into_iter().map(|entry| entry["id"].clone()).collect()
    };
    assert_eq!(ids(entries(&redis, &redis.keys().event_stream(TOPIC)).await), credits);
    assert_eq!(ids(entries(&redis, &redis.keys().event_stream("test.debited")).await), debits);
    let unpublished: i64 =
        sqlx::query_scalar("SELECT count(*) FROM bustest.outbox WHERE published_at IS NULL")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(unpublished, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn published_rows_are_deleted_after_the_retention() {
    let db = common::database().await;
    // Postgres only: the shared server is enough.
    let redis = TestRedis::new(Topology::Single).await;
    let config = BusConfig { outbox_retention_seconds: 60, ..redis.config() };
    let bus = Bus::connect(config).await.unwrap();
    for (published_ago_seconds, label) in
        [(Some(120), "old"), (Some(10), "recent"), (None, "pending")]
    {
        sqlx::query(
            "INSERT INTO bustest.outbox (event_id, topic, payload, created_at, published_at) \
             VALUES ($1, 'test.credited', $2, now() - interval '1 hour', \
                     now() - make_interval(secs => $3))",
        )
        .bind(Uuid::now_v7())
        .bind(serde_json::json!({ "label": label }))
        .bind(published_ago_seconds.map(f64::from))
        .execute(&db.pool)
        .await
        .unwrap();
    }
    let deleted = OutboxRelay::new(&bus, db.pool.clone()).delete_published().await.unwrap();
    assert_eq!(deleted, 1);
    let left: Vec<String> =
        sqlx::query_scalar("SELECT payload->>'label' FROM bustest.outbox ORDER BY seq")
            .fetch_all(&db.pool)
            .await
            .unwrap();
    assert_eq!(left, ["recent", "pending"]);
}

on_both_topologies!(
    the_same_event_delivered_twice_is_applied_once,
    an_event_that_keeps_failing_is_dead_lettered,
    a_notification_wakes_the_relay_and_only_committed_events_are_published_in_order,
    outbox_rows_survive_a_redis_outage_and_are_all_delivered,
    a_service_started_while_redis_is_down_catches_up_when_it_comes_up,
    events_of_several_topics_in_one_batch_all_arrive_in_order,
);
