//! Redis memory stays bounded however much is written: streams nobody reads (a service down)
//! are kept within `stream_max_bytes` by their writers, and a message above the bus's maximum
//! is refused before anything is written. Each test runs on a Redis server (`single::…`) and on
//! a three-node Redis Cluster (`cluster::…`), where `MEMORY USAGE` and `XTRIM` go to the node
//! owning the stream.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test helpers fail the test by panicking, like the tests themselves"
)]

#[macro_use]
mod common;

use std::time::Duration;

use awx_bus::{Bus, BusConfig, BusError, Command, Event, MESSAGE_BYTES_MAX, OutboxRelay};
use common::{Probe, TestRedis, Topology, wait_until};
use futures::StreamExt as _;
use serde::{Deserialize, Serialize};

/// One stream's budget in the test: the smallest allowed.
const BUDGET: u64 = 1024 * 1024;

/// A command of a family no server handles: its stream only grows.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Note {
    text: String,
}

impl Command for Note {
    const FAMILY: &'static str = "nobody";
    const NAME: &'static str = "note";
    const KIND: awx_bus::Kind = awx_bus::Kind::Change;
    type Reply = ();
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Noted {
    text: String,
}

impl Event for Noted {
    const TOPIC: &'static str = "noted";
}

fn budget_config(redis: &TestRedis) -> BusConfig {
    BusConfig { stream_max_bytes: BUDGET, reply_grace_ms: 1, ..redis.config() }
}

async fn memory_usage(redis: &Probe, key: &str) -> u64 {
    let mut conn = redis.conn().await;
    let used: Option<u64> =
        redis::cmd("MEMORY").arg("USAGE").arg(key).query_async(&mut conn).await.unwrap();
    used.unwrap_or(0)
}

/// How many entries were ever added to `key`, and how many it holds.
async fn added_and_held(redis: &Probe, key: &str) -> (u64, u64) {
    let mut conn = redis.conn().await;
    let info: redis::Value =
        redis::cmd("XINFO").arg("STREAM").arg(key).query_async(&mut conn).await.unwrap();
    let map: std::collections::HashMap<String, redis::Value> =
        redis::from_redis_value(info).unwrap();
    let number = |name: &str| redis::from_redis_value::<u64>(map[name].clone()).unwrap();
    (number("entries-added"), number("length"))
}

/// 2 KiB of text that does not compress into a listpack's small encodings.
fn text(n: usize) -> String {
    format!("{n:08}-{}", "x".repeat(2_048))
}

async fn a_command_stream_nobody_reads_stays_within_its_budget(topology: Topology) {
    let redis = TestRedis::new(topology).await;
    let bus = Bus::connect(budget_config(&redis)).await.unwrap();
    let stream = redis.keys().command_stream("nobody");
    // About 6 MiB of commands, six times the budget, as fast as they can be sent.
    let sent = 3_000_usize;
    futures::stream::iter(0..sent)
        .for_each_concurrent(64, |n| {
            let bus = bus.clone();
            async move {
                let result = bus.send(&Note { text: text(n) }, Duration::from_millis(1)).await;
                assert!(matches!(result, Err(BusError::Timeout { .. })), "{result:?}");
            }
        })
        .await;
    wait_until("the stream is back within its budget", Duration::from_secs(10), || async {
        memory_usage(&redis, &stream).await <= BUDGET
    })
    .await;
    let (added, held) = added_and_held(&redis, &stream).await;
    assert_eq!(added, u64::try_from(sent).unwrap());
    assert!(held > 0 && held < added / 3, "{held} of {added} entries kept");
    // The newest command is kept; the oldest were trimmed.
    let mut conn = redis.conn().await;
    let newest: redis::streams::StreamRangeReply = redis::cmd("XREVRANGE")
        .arg(&stream)
        .arg("+")
        .arg("-")
        .arg("COUNT")
        .arg(1)
        .query_async(&mut conn)
        .await
        .unwrap();
    let payload: String = newest.ids[0].get("payload").unwrap();
    let newest_sent: Vec<String> = (sent - 64..sent).map(|n| format!("{n:08}-")).collect();
    assert!(newest_sent.iter().any(|prefix| payload.contains(prefix)), "{payload:.40}");
}

async fn an_event_stream_nobody_reads_stays_within_its_budget(topology: Topology) {
    let db = common::database().await;
    let redis = TestRedis::new(topology).await;
    let bus = Bus::connect(budget_config(&redis)).await.unwrap();
    let stream = redis.keys().event_stream("noted");
    let relay = OutboxRelay::new(&bus, db.pool.clone());
    for round in 0..2 {
        let mut tx = db.pool.begin().await.unwrap();
        for n in 0..1_500 {
            awx_bus::publish(&mut tx, bus.schema(), &Noted { text: text(round * 1_500 + n) })
                .await
                .unwrap();
        }
        tx.commit().await.unwrap();
        while relay.relay_pending().await.unwrap() > 0 {}
    }
    wait_until("the event stream is back within its budget", Duration::from_secs(10), || async {
        memory_usage(&redis, &stream).await <= BUDGET
    })
    .await;
    let (added, held) = added_and_held(&redis, &stream).await;
    assert_eq!(added, 3_000);
    assert!(held > 0 && held < 1_000, "{held} of {added} entries kept");
}

async fn a_message_above_the_maximum_is_refused_before_anything_is_written(topology: Topology) {
    let db = common::database().await;
    let redis = TestRedis::new(topology).await;
    let bus = Bus::connect(budget_config(&redis)).await.unwrap();
    let big = "x".repeat(MESSAGE_BYTES_MAX);

    let error = bus.send(&Note { text: big.clone() }, Duration::from_millis(100)).await;
    let Err(BusError::TooLarge { what, bytes, max }) = error else { panic!("{error:?}") };
    assert_eq!((what.as_str(), max), ("command note", MESSAGE_BYTES_MAX));
    assert!(bytes > MESSAGE_BYTES_MAX);
    let mut conn = redis.conn().await;
    let exists: bool = redis::cmd("EXISTS")
        .arg(redis.keys().command_stream("nobody"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(!exists, "nothing was added to the command stream");

    let mut tx = db.pool.begin().await.unwrap();
    let error = awx_bus::publish(&mut tx, bus.schema(), &Noted { text: big }).await;
    assert!(matches!(error, Err(BusError::TooLarge { .. })), "{error:?}");
    tx.commit().await.unwrap();
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM bustest.outbox")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(rows, 0);
    // Just below the maximum goes through.
    let fits = "x".repeat(MESSAGE_BYTES_MAX - 64);
    let result = bus.send(&Note { text: fits }, Duration::from_millis(1)).await;
    assert!(matches!(result, Err(BusError::Timeout { .. })), "{result:?}");
}

on_both_topologies!(
    a_command_stream_nobody_reads_stays_within_its_budget,
    an_event_stream_nobody_reads_stays_within_its_budget,
    a_message_above_the_maximum_is_refused_before_anything_is_written,
);
