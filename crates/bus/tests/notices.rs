//! Notices on real Redis: every listener (every replica) reads every notice written after it
//! started, in order, and goes on after Redis restarts; and a connection used while Redis was
//! down (a cluster connection that lost every node) works again once it is back. Each test runs on a Redis server
//! (`single::…`) and on a three-node Redis Cluster (`cluster::…`).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test helpers fail the test by panicking, like the tests themselves"
)]

#[macro_use]
mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use awx_bus::{Bus, BusConfig, Notice, NoticeListener};
use common::{PrivateRedis, TestRedis, Topology, wait_until};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(20);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Issued {
    n: i64,
}

impl Notice for Issued {
    const TOPIC: &'static str = "test.issued";
}

/// One replica: its bus and what its listener has read.
struct Replica {
    bus: Bus,
    read: Arc<Mutex<Vec<i64>>>,
    stop: CancellationToken,
}

impl Replica {
    async fn start(config: BusConfig) -> Self {
        let bus = Bus::connect(config).await.unwrap();
        let read = Arc::new(Mutex::new(Vec::new()));
        let sink = read.clone();
        let listener =
            NoticeListener::new(&bus, move |notice: Issued| sink.lock().unwrap().push(notice.n))
                .unwrap();
        let stop = CancellationToken::new();
        tokio::spawn(listener.run(stop.clone()));
        Self { bus, read, stop }
    }

    fn read(&self) -> Vec<i64> {
        self.read.lock().unwrap().clone()
    }

    /// What it read that is not a warm-up notice (those are negative).
    fn real(&self) -> Vec<i64> {
        self.read().into_iter().filter(|n| *n >= 0).collect()
    }

    /// Notifies warm-up notices from `by` until this replica's listener has read one, so it is
    /// known to be listening.
    async fn warm_up(&self, by: &Bus) {
        let mut n = -1;
        let deadline = tokio::time::Instant::now() + WAIT;
        while !self.read().iter().any(|read| *read < 0) {
            assert!(tokio::time::Instant::now() < deadline, "the listener never read a notice");
            by.notify(&Issued { n }).await.unwrap();
            n -= 1;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn every_listener_reads_every_notice_written_after_it_started_in_order(topology: Topology) {
    let redis = TestRedis::new(topology).await;
    let first = Replica::start(redis.config()).await;
    first.warm_up(&first.bus).await;
    first.bus.notify(&Issued { n: 0 }).await.unwrap();
    // A second replica started now does not read what was written before it started.
    let second = Replica::start(redis.config()).await;
    second.warm_up(&first.bus).await;
    for n in 1..=50 {
        // Written by either replica: every listener reads both.
        let by = if n % 2 == 0 { &first.bus } else { &second.bus };
        by.notify(&Issued { n }).await.unwrap();
    }
    wait_until("both replicas read all 50", WAIT, || async {
        first.real().len() == 51 && second.real().len() == 50
    })
    .await;
    assert_eq!(first.real(), (0..=50).collect::<Vec<_>>());
    assert_eq!(second.real(), (1..=50).collect::<Vec<_>>());
}

async fn a_listener_goes_on_after_redis_restarts(topology: Topology) {
    awx_test_support::init_logging();
    let mut redis =
        tokio::task::spawn_blocking(move || PrivateRedis::start(topology)).await.unwrap();
    let replica = Replica::start(redis.probe().config("notices")).await;
    replica.warm_up(&replica.bus).await;
    replica.bus.notify(&Issued { n: 1 }).await.unwrap();
    wait_until("the first notice is read", WAIT, || async { replica.real() == vec![1] }).await;

    tokio::task::block_in_place(|| redis.stop());
    assert!(replica.bus.notify(&Issued { n: 2 }).await.is_err(), "Redis is down");
    tokio::task::block_in_place(|| redis.start_again());
    // Notices written after the restart are read again.
    // (The listener reconnects with a backoff, and a cluster client rediscovers the slots of
    // the restarted nodes, so notices are written until one is read.)
    let deadline = tokio::time::Instant::now() + 3 * WAIT;
    let mut written = 0;
    let mut last_error = None;
    while !replica.real().contains(&3) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "nothing read after the restart ({written} notices written, last error {last_error:?})"
        );
        match replica.bus.notify(&Issued { n: 3 }).await {
            Ok(()) => written += 1,
            Err(error) => last_error = Some(error.to_string()),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let real = replica.real();
    assert_eq!(real[0], 1);
    assert!(!real.contains(&2), "a notice that failed to be written was read: {real:?}");
    assert!(real[1..].iter().all(|n| *n == 3), "{real:?}");
}

async fn a_connection_used_while_redis_was_down_works_again_after(topology: Topology) {
    awx_test_support::init_logging();
    let mut redis =
        tokio::task::spawn_blocking(move || PrivateRedis::start(topology)).await.unwrap();
    let bus = Bus::connect(redis.probe().config("reconnect")).await.unwrap();
    bus.ping().await.unwrap();
    tokio::task::block_in_place(|| redis.stop());
    // Used while every node is down (a cluster connection then loses every node it knew).
    for _ in 0..40 {
        assert!(bus.ping().await.is_err(), "Redis is down");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    tokio::task::block_in_place(|| redis.start_again());
    let deadline = tokio::time::Instant::now() + WAIT;
    while let Err(error) = bus.ping().await {
        assert!(tokio::time::Instant::now() < deadline, "never answered again: {error}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

on_both_topologies!(
    every_listener_reads_every_notice_written_after_it_started_in_order,
    a_listener_goes_on_after_redis_restarts,
    a_connection_used_while_redis_was_down_works_again_after,
);
