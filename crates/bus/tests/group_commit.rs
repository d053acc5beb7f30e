//! Group commit on real Redis and Postgres: the grouped commands waiting at the same time share
//! one transaction (seen from `pg_current_xact_id()`), one command's refusal or transient
//! failure leaves the others committed and each answered as it would be alone, a command that
//! waited past its deadline is answered "timed out" and never run, and a server
//! killed in the middle of a batch loses nothing it answered and executes nothing twice when
//! another server takes the batch's commands over. Each test runs on the shared Redis server
//! (`single::…`) and on a private three-node Redis Cluster (`cluster::…`).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test helpers fail the test by panicking, like the tests themselves"
)]

#[macro_use]
mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use awx_bus::{Bus, BusConfig, BusError, Command, CommandHandler, CommandMeta};
use awx_bus::{HandlerError, Kind};
use awx_test_support::TestDb;
use common::{
    Server, TestRedis, Topology, drained, effect_count, group_state, inbox_count, wait_until,
    within,
};
use serde::{Deserialize, Serialize};
use sqlx::PgConnection;
use tokio::sync::{Semaphore, oneshot};
use tokio::task::JoinHandle;
use uuid::Uuid;

const FAMILY: &str = "grouped";
const WAIT: Duration = Duration::from_secs(20);
/// After every command is delivered, how long the servers' tasks get to queue them.
const QUEUEING: Duration = Duration::from_millis(500);

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Deposit {
    account: String,
    amount: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Balance {
    balance: i64,
    server: String,
}

impl Command for Deposit {
    const FAMILY: &'static str = FAMILY;
    const NAME: &'static str = "deposit";
    const KIND: Kind = Kind::Change;
    type Reply = Balance;
}

/// Records each execution in `bustest.effects` and its transaction in `bustest.xids`. By
/// account: `gate` waits for a permit, `hang` never finishes (when `hang` is set), `flaky`
/// fails transiently on its first call; a negative amount is refused.
#[derive(Clone)]
struct Ledger {
    server: String,
    calls: Arc<AtomicUsize>,
    gate: Arc<Semaphore>,
    hang: Option<Arc<Mutex<Option<oneshot::Sender<()>>>>>,
    flaky: Arc<AtomicBool>,
}

impl Ledger {
    fn new(server: &str) -> Self {
        Self {
            server: server.to_owned(),
            calls: Arc::new(AtomicUsize::new(0)),
            gate: Arc::new(Semaphore::new(0)),
            hang: None,
            flaky: Arc::new(AtomicBool::new(true)),
        }
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

impl CommandHandler<Deposit> for Ledger {
    async fn handle(
        &self,
        tx: &mut PgConnection,
        command: Deposit,
        meta: CommandMeta,
    ) -> Result<Balance, HandlerError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        sqlx::query(
            "INSERT INTO bustest.effects (message_id, account, amount, server, delivery) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(meta.command_id)
        .bind(&command.account)
        .bind(command.amount)
        .bind(&self.server)
        .bind(i64::try_from(meta.delivery).unwrap())
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO bustest.xids (message_id, xid) VALUES ($1, pg_current_xact_id()::text)",
        )
        .bind(meta.command_id)
        .execute(&mut *tx)
        .await?;
        if command.amount < 0 {
            return Err(HandlerError::reject("negative_amount", "deposits must be positive"));
        }
        match command.account.as_str() {
            "gate" => self.gate.acquire().await.unwrap().forget(),
            "hang" => {
                if let Some(entered) = &self.hang {
                    if let Some(entered) = entered.lock().unwrap().take() {
                        entered.send(()).unwrap();
                    }
                    std::future::pending::<()>().await;
                }
            }
            "flaky" if self.flaky.swap(false, Ordering::SeqCst) => {
                return Err(HandlerError::transient("not this time (test)"));
            }
            _ => {}
        }
        let balance: i64 = sqlx::query_scalar(
            "SELECT coalesce(sum(amount), 0)::bigint FROM bustest.effects WHERE account = $1",
        )
        .bind(&command.account)
        .fetch_one(&mut *tx)
        .await?;
        Ok(Balance { balance, server: self.server.clone() })
    }
}

async fn database() -> TestDb {
    let db = common::database().await;
    sqlx::query("CREATE TABLE bustest.xids (message_id uuid NOT NULL, xid text NOT NULL)")
        .execute(&db.pool)
        .await
        .unwrap();
    db
}

/// Enough handlers at once for a batch to form while another runs, and one lane, so the
/// commands that arrive while a batch runs wait together for the next.
fn config(redis: &TestRedis) -> BusConfig {
    BusConfig { handler_concurrency: 16, group_commit_lanes: 1, ..redis.config() }
}

/// A server of the test family with `ledger`, grouped.
async fn start(db: &TestDb, config: BusConfig, ledger: Ledger) -> Server {
    Server::start(db, config, FAMILY, |server| server.handle_grouped::<Deposit, _>(ledger)).await
}

type Sending = JoinHandle<Result<Balance, BusError>>;

fn send(caller: &Bus, account: &str, amount: i64) -> (Uuid, Sending) {
    let id = Uuid::now_v7();
    let caller = caller.clone();
    let command = Deposit { account: account.to_owned(), amount };
    (id, tokio::spawn(async move { caller.send_with_id(&command, id, WAIT).await }))
}

async fn xids(pool: &sqlx::PgPool, ids: &[Uuid]) -> HashSet<String> {
    let xids: Vec<String> =
        sqlx::query_scalar("SELECT xid FROM bustest.xids WHERE message_id = ANY($1)")
            .bind(ids)
            .fetch_all(pool)
            .await
            .unwrap();
    xids.into_iter().collect()
}

/// Waits until `count` commands are delivered to the group and then gives their tasks time to
/// queue them behind the batch in progress.
async fn all_delivered(redis: &TestRedis, count: usize) {
    let stream = redis.keys().command_stream(FAMILY);
    wait_until("every command is delivered", WAIT, || async {
        group_state(redis, &stream, common::SERVICE)
            .await
            .is_some_and(|(pending, _)| pending == count)
    })
    .await;
    tokio::time::sleep(QUEUEING).await;
}

async fn a_batch_commits_together_and_a_refusal_or_failure_in_it_leaves_the_others(
    topology: Topology,
) {
    let db = database().await;
    let redis = TestRedis::new(topology).await;
    let ledger = Ledger::new("a");
    let server = start(&db, config(&redis), ledger.clone()).await;
    let caller = Bus::connect(redis.config()).await.unwrap();

    // The first command holds the committer, so the next ones wait together.
    let (gate, gate_sending) = send(&caller, "gate", 10);
    wait_until("the gate's handler runs", WAIT, || async { ledger.calls() == 1 }).await;
    let mut good = Vec::new();
    for (account, amount) in [("a1", 1), ("a2", 2), ("a3", 3), ("a4", 4)] {
        good.push((account, amount, send(&caller, account, amount)));
    }
    let (refused, refused_sending) = send(&caller, "n", -5);
    let (flaky, flaky_sending) = send(&caller, "flaky", 7);
    all_delivered(&redis, 7).await;
    ledger.gate.add_permits(1);

    let reply = within("the gate's reply", WAIT, gate_sending).await.unwrap().unwrap();
    assert_eq!(reply, Balance { balance: 10, server: "a".into() });
    let mut batch = Vec::new();
    for (account, amount, (id, sending)) in good {
        let reply = within("a reply", WAIT, sending).await.unwrap().unwrap();
        assert_eq!(reply, Balance { balance: amount, server: "a".into() }, "{account}");
        assert_eq!(effect_count(&db.pool, id).await, 1, "{account} applied once");
        batch.push(id);
    }
    match within("the refusal", WAIT, refused_sending).await.unwrap() {
        Err(BusError::Rejected { code, .. }) => assert_eq!(code, "negative_amount"),
        other => panic!("expected the refusal, got {other:?}"),
    }
    assert_eq!(effect_count(&db.pool, refused).await, 0, "the refusal's writes rolled back");
    assert_eq!(inbox_count(&db.pool, refused).await, 1, "the refusal is stored as its reply");
    let reply = within("the flaky reply", WAIT, flaky_sending).await.unwrap().unwrap();
    assert_eq!(reply, Balance { balance: 7, server: "a".into() });
    assert_eq!(effect_count(&db.pool, flaky).await, 1, "the failed try left nothing");

    // The four and the refusal committed in one transaction, not the gate's; the transient
    // failure was rolled back inside the batch and ran once more alone.
    let batch_xids = xids(&db.pool, &batch).await;
    assert_eq!(batch_xids.len(), 1, "one transaction for the batch: {batch_xids:?}");
    let gate_xids = xids(&db.pool, &[gate]).await;
    assert_eq!(gate_xids.len(), 1);
    assert!(gate_xids.is_disjoint(&batch_xids));
    let flaky_xids = xids(&db.pool, &[flaky]).await;
    assert_eq!(flaky_xids.len(), 1, "only the second try committed");
    assert!(flaky_xids.is_disjoint(&batch_xids), "the second try ran alone");
    // gate, four, the refusal, and the flaky one twice.
    assert_eq!(ledger.calls(), 8);

    // A retry of a command of the batch gets its stored reply without running again.
    let again = caller
        .send_with_id(&Deposit { account: "a1".into(), amount: 1 }, batch[0], WAIT)
        .await
        .unwrap();
    assert_eq!(again, Balance { balance: 1, server: "a".into() });
    assert_eq!(ledger.calls(), 8);
    let stream = redis.keys().command_stream(FAMILY);
    wait_until("everything is acknowledged", WAIT, || drained(&redis, &stream)).await;
    server.shutdown().await;
}

async fn a_server_killed_mid_batch_loses_nothing_answered_and_executes_nothing_twice(
    topology: Topology,
) {
    let db = database().await;
    let redis = TestRedis::new(topology).await;
    let (entered_tx, entered_rx) = oneshot::channel();
    let first = Ledger { hang: Some(Arc::new(Mutex::new(Some(entered_tx)))), ..Ledger::new("a") };
    let server = start(&db, config(&redis), first.clone()).await;
    let caller = Bus::connect(redis.config()).await.unwrap();

    let (gate, gate_sending) = send(&caller, "gate", 10);
    wait_until("the gate's handler runs", WAIT, || async { first.calls() == 1 }).await;
    let mut batch = Vec::new();
    for (account, amount) in [("c1", 1), ("c2", 2), ("c3", 3), ("c4", 4), ("hang", 5)] {
        batch.push((account, amount, send(&caller, account, amount)));
    }
    all_delivered(&redis, 6).await;
    first.gate.add_permits(1);
    let reply = within("the gate's reply", WAIT, gate_sending).await.unwrap().unwrap();
    assert_eq!(reply, Balance { balance: 10, server: "a".into() });

    // The next batch stops at `hang`, with whatever came before it executed but uncommitted.
    within("the batch to reach `hang`", WAIT, entered_rx).await.unwrap();
    let ids: Vec<Uuid> = batch.iter().map(|(_, _, (id, _))| *id).collect();
    let executed_before_the_kill = first.calls() - 1;
    assert!(executed_before_the_kill >= 1, "`hang` ran in the batch");
    server.kill().await;
    for id in &ids {
        assert_eq!(effect_count(&db.pool, *id).await, 0, "nothing of the batch committed");
        assert_eq!(inbox_count(&db.pool, *id).await, 0, "no inbox row of the batch committed");
    }

    let second = Ledger::new("b");
    let server = start(&db, config(&redis), second.clone()).await;
    for (account, amount, (id, sending)) in batch {
        let reply = within("a reply", WAIT, sending).await.unwrap().unwrap();
        assert_eq!(reply, Balance { balance: amount, server: "b".into() }, "{account}");
        assert_eq!(effect_count(&db.pool, id).await, 1, "{account} executed once");
        let delivery: i64 =
            sqlx::query_scalar("SELECT delivery FROM bustest.effects WHERE message_id = $1")
                .bind(id)
                .fetch_one(&db.pool)
                .await
                .unwrap();
        assert_eq!(delivery, 2, "{account} completed on its redelivery");
    }
    // What was answered before the kill stays, once: the gate is not run again.
    assert_eq!(effect_count(&db.pool, gate).await, 1);
    assert_eq!(second.calls(), 5, "the second server ran the batch's five commands only");
    let stream = redis.keys().command_stream(FAMILY);
    wait_until("everything is acknowledged", WAIT, || drained(&redis, &stream)).await;
    server.shutdown().await;
}

async fn with_two_lanes_a_batch_goes_while_another_waits(topology: Topology) {
    let db = database().await;
    let redis = TestRedis::new(topology).await;
    let ledger = Ledger::new("a");
    let config = BusConfig { group_commit_lanes: 2, ..config(&redis) };
    let server = start(&db, config, ledger.clone()).await;
    let caller = Bus::connect(redis.config()).await.unwrap();

    let (gate, gate_sending) = send(&caller, "gate", 10);
    wait_until("the gate's handler runs", WAIT, || async { ledger.calls() == 1 }).await;
    // The first lane waits inside the gate's batch; the second applies this one meanwhile.
    let (other, other_sending) = send(&caller, "b1", 3);
    let reply = within("the other lane's reply", WAIT, other_sending).await.unwrap().unwrap();
    assert_eq!(reply, Balance { balance: 3, server: "a".into() });
    assert_eq!(effect_count(&db.pool, other).await, 1);
    assert_eq!(effect_count(&db.pool, gate).await, 0, "the gate's batch has not committed");
    assert!(!gate_sending.is_finished(), "the gate is not answered before its commit");

    ledger.gate.add_permits(1);
    let reply = within("the gate's reply", WAIT, gate_sending).await.unwrap().unwrap();
    assert_eq!(reply, Balance { balance: 10, server: "a".into() });
    assert_eq!(effect_count(&db.pool, gate).await, 1);
    let stream = redis.keys().command_stream(FAMILY);
    wait_until("everything is acknowledged", WAIT, || drained(&redis, &stream)).await;
    server.shutdown().await;
}

async fn a_command_that_waited_past_its_deadline_is_answered_timed_out_and_never_run(
    topology: Topology,
) {
    let db = database().await;
    let redis = TestRedis::new(topology).await;
    let ledger = Ledger::new("a");
    let server = start(&db, config(&redis), ledger.clone()).await;
    let caller = Bus::connect(redis.config()).await.unwrap();

    let (gate, gate_sending) = send(&caller, "gate", 10);
    wait_until("the gate's handler runs", WAIT, || async { ledger.calls() == 1 }).await;
    // Queued behind the gate's batch with 300 ms to live.
    let late = Uuid::now_v7();
    let late_sending = {
        let caller = caller.clone();
        let command = Deposit { account: "late".into(), amount: 4 };
        tokio::spawn(async move {
            caller.send_with_id(&command, late, Duration::from_millis(300)).await
        })
    };
    all_delivered(&redis, 2).await;
    ledger.gate.add_permits(1);
    within("the gate's reply", WAIT, gate_sending).await.unwrap().unwrap();
    let error = within("the late reply", WAIT, late_sending).await.unwrap().unwrap_err();
    assert!(matches!(error, BusError::Timeout { server_answered: true, .. }), "{error:?}");
    assert_eq!(ledger.calls(), 1, "the late command's handler never ran");
    assert_eq!(effect_count(&db.pool, late).await, 0);
    assert_eq!(inbox_count(&db.pool, late).await, 0, "nothing of it stays");
    assert_eq!(effect_count(&db.pool, gate).await, 1);
    let stream = redis.keys().command_stream(FAMILY);
    wait_until("everything is acknowledged", WAIT, || drained(&redis, &stream)).await;
    server.shutdown().await;
}

async fn the_same_command_twice_in_one_batch_runs_once_and_both_get_its_answer(topology: Topology) {
    let db = database().await;
    let redis = TestRedis::new(topology).await;
    let ledger = Ledger::new("a");
    let server = start(&db, config(&redis), ledger.clone()).await;
    let caller = Bus::connect(redis.config()).await.unwrap();
    let other_caller = Bus::connect(redis.config()).await.unwrap();

    let (gate, gate_sending) = send(&caller, "gate", 10);
    wait_until("the gate's handler runs", WAIT, || async { ledger.calls() == 1 }).await;
    // One command id sent twice (a caller's retry racing its first try), both queued behind
    // the gate's batch, so they share the next one.
    let id = Uuid::now_v7();
    let command = Deposit { account: "twice".into(), amount: 5 };
    let sending: Vec<Sending> = [caller.clone(), other_caller.clone()]
        .into_iter()
        .map(|bus| {
            let command = command.clone();
            tokio::spawn(async move { bus.send_with_id(&command, id, WAIT).await })
        })
        .collect();
    all_delivered(&redis, 3).await;
    ledger.gate.add_permits(1);
    within("the gate's reply", WAIT, gate_sending).await.unwrap().unwrap();
    for sending in sending {
        let reply = within("a reply", WAIT, sending).await.unwrap().unwrap();
        assert_eq!(reply, Balance { balance: 5, server: "a".into() });
    }
    assert_eq!(effect_count(&db.pool, id).await, 1, "executed once");
    assert_eq!(inbox_count(&db.pool, id).await, 1);
    assert_eq!(ledger.calls(), 2, "the gate and the command, once");
    assert_eq!(effect_count(&db.pool, gate).await, 1);
    let stream = redis.keys().command_stream(FAMILY);
    wait_until("everything is acknowledged", WAIT, || drained(&redis, &stream)).await;
    server.shutdown().await;
}

on_both_topologies!(
    the_same_command_twice_in_one_batch_runs_once_and_both_get_its_answer,
    a_command_that_waited_past_its_deadline_is_answered_timed_out_and_never_run,
    with_two_lanes_a_batch_goes_while_another_waits,
    a_batch_commits_together_and_a_refusal_or_failure_in_it_leaves_the_others,
    a_server_killed_mid_batch_loses_nothing_answered_and_executes_nothing_twice,
);
