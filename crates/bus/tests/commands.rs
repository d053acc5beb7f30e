//! Commands end to end on real Redis and Postgres: replies, rejections, idempotent replays,
//! queries answered without the inbox,
//! recovery from handlers killed before and after their commit, work sharing in a group,
//! deadlines, dead letters and graceful shutdown. Each test runs twice: on the shared Redis server
//! (`single::…`) and on a private three-node Redis Cluster (`cluster::…`).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test helpers fail the test by panicking, like the tests themselves"
)]

#[macro_use]
mod common;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use awx_bus::{
    Bus, BusConfig, BusError, Command, CommandHandler, CommandMeta, CommandServer, HandlerError,
    Kind, QueryHandler, command_handler_fn,
};
use awx_test_support::TestDb;
use common::{
    Server, TestRedis, Topology, drained, effect_count, entries, group_drained, group_state,
    inbox_count, replica_pool, wait_until, within,
};
use serde::{Deserialize, Serialize};
use sqlx::PgConnection;
use tokio::sync::{Semaphore, oneshot};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

const FAMILY: &str = "testledger";
const WAIT: Duration = Duration::from_secs(20);

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

/// A command of the family that no server handles.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Withdraw {
    account: String,
}

impl Command for Withdraw {
    const FAMILY: &'static str = FAMILY;
    const NAME: &'static str = "withdraw";
    const KIND: Kind = Kind::Change;
    type Reply = Balance;
}

/// A query: an account's balance, read without the inbox.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct AskBalance {
    account: String,
}

impl Command for AskBalance {
    const FAMILY: &'static str = FAMILY;
    const NAME: &'static str = "balance.ask";
    const KIND: Kind = Kind::Query;
    type Reply = Balance;
}

/// Answers [`AskBalance`] from `bustest.effects`; an account without effects is refused.
#[derive(Clone, Default)]
struct Balances {
    calls: Arc<AtomicUsize>,
}

impl QueryHandler<AskBalance> for Balances {
    async fn handle(
        &self,
        pool: &sqlx::PgPool,
        query: AskBalance,
        _meta: CommandMeta,
    ) -> Result<Balance, HandlerError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let balance: Option<i64> = sqlx::query_scalar(
            "SELECT sum(amount)::bigint FROM bustest.effects WHERE account = $1",
        )
        .bind(&query.account)
        .fetch_one(pool)
        .await?;
        let balance =
            balance.ok_or_else(|| HandlerError::reject("no_account", "no such account"))?;
        Ok(Balance { balance, server: "query".into() })
    }
}

/// A query handler of a state change: registering it must fail.
struct Confused;

impl QueryHandler<Deposit> for Confused {
    async fn handle(
        &self,
        _pool: &sqlx::PgPool,
        _query: Deposit,
        _meta: CommandMeta,
    ) -> Result<Balance, HandlerError> {
        Err(HandlerError::transient("never registered"))
    }
}

/// A command handler of a query: registering it must fail.
impl CommandHandler<AskBalance> for Confused {
    async fn handle(
        &self,
        _tx: &mut PgConnection,
        _query: AskBalance,
        _meta: CommandMeta,
    ) -> Result<Balance, HandlerError> {
        Err(HandlerError::transient("never registered"))
    }
}

fn deposit(account: &str, amount: i64) -> Deposit {
    Deposit { account: account.to_owned(), amount }
}

#[derive(Clone)]
enum Behaviour {
    /// Writes and answers with the account's balance.
    Normal,
    /// The first call writes, reports that it is inside its transaction, and never finishes.
    HangFirst(Arc<Mutex<Option<oneshot::Sender<()>>>>),
    /// Every call writes and then never finishes.
    Hang,
    /// Every call writes and then fails transiently.
    AlwaysTransient,
    /// Every call writes and then waits for a permit (to hold a command in flight).
    WaitForPermit(Arc<Semaphore>),
    /// Every call writes and then works for this long.
    Slow(Duration),
}

/// The test ledger: records each execution in `bustest.effects`, so double executions show.
#[derive(Clone)]
struct Ledger {
    server: String,
    calls: Arc<AtomicUsize>,
    behaviour: Behaviour,
}

impl Ledger {
    fn new(server: &str, behaviour: Behaviour) -> Self {
        Self { server: server.to_owned(), calls: Arc::new(AtomicUsize::new(0)), behaviour }
    }

    fn on(&self, server: &str) -> Self {
        Self { server: server.to_owned(), ..self.clone() }
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
        let call = self.calls.fetch_add(1, Ordering::SeqCst);
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
        if command.amount < 0 {
            return Err(HandlerError::reject("negative_amount", "deposits must be positive"));
        }
        match &self.behaviour {
            Behaviour::Normal => {}
            Behaviour::HangFirst(entered) => {
                if call == 0 {
                    if let Some(entered) = entered.lock().unwrap().take() {
                        entered.send(()).unwrap();
                    }
                    std::future::pending::<()>().await;
                }
            }
            Behaviour::Hang => std::future::pending::<()>().await,
            Behaviour::AlwaysTransient => {
                return Err(HandlerError::transient("ledger unavailable (test)"));
            }
            Behaviour::WaitForPermit(permits) => permits.acquire().await.unwrap().forget(),
            Behaviour::Slow(work) => tokio::time::sleep(*work).await,
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

/// A server of the test family with the test ledger.
async fn start(db: &TestDb, config: BusConfig, ledger: Ledger) -> Server {
    Server::start(db, config, FAMILY, |server| server.handle::<Deposit, _>(ledger)).await
}

fn stream(redis: &TestRedis) -> String {
    redis.keys().command_stream(FAMILY)
}

async fn round_trip_rejection_and_idempotent_replay(topology: Topology) {
    let db = common::database().await;
    let redis = TestRedis::new(topology).await;
    let ledger = Ledger::new("a", Behaviour::Normal);
    let server = start(&db, redis.config(), ledger.clone()).await;
    let caller = Bus::connect(redis.config()).await.unwrap();

    // A typed reply.
    let reply = caller.send(&deposit("alice", 5), WAIT).await.unwrap();
    assert_eq!(reply, Balance { balance: 5, server: "a".into() });

    // A rejection reaches the caller with its code, and the handler's write is rolled back.
    let rejected_id = Uuid::now_v7();
    let error = caller.send_with_id(&deposit("alice", -3), rejected_id, WAIT).await.unwrap_err();
    assert!(
        matches!(&error, BusError::Rejected { code, .. } if code == "negative_amount"),
        "{error:?}"
    );
    assert_eq!(effect_count(&db.pool, rejected_id).await, 0);
    assert_eq!(inbox_count(&db.pool, rejected_id).await, 1, "the rejection is stored");

    // A replay of the same command id returns the original reply without running the handler.
    let id = Uuid::now_v7();
    let first = caller.send_with_id(&deposit("alice", 7), id, WAIT).await.unwrap();
    assert_eq!(first.balance, 12);
    let calls = ledger.calls();
    let again = caller.send_with_id(&deposit("alice", 7), id, WAIT).await.unwrap();
    assert_eq!(again, first, "a replay answers with the stored reply");
    assert_eq!(ledger.calls(), calls, "the handler did not run again");
    assert_eq!(effect_count(&db.pool, id).await, 1);

    // A replay of the rejected id gets the same rejection, again without the handler.
    let error = caller.send_with_id(&deposit("alice", -3), rejected_id, WAIT).await.unwrap_err();
    assert!(matches!(&error, BusError::Rejected { code, .. } if code == "negative_amount"));
    assert_eq!(ledger.calls(), calls);

    // A command name without a handler gets an error reply (and a dead letter), not a crash.
    let error = caller.send(&Withdraw { account: "alice".into() }, WAIT).await.unwrap_err();
    assert!(matches!(&error, BusError::Failed { message } if message.contains("unknown command")));
    let dead = entries(&redis, &redis.keys().dead_letter_stream(&format!("cmd:{FAMILY}"))).await;
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0]["name"], "withdraw");
    let reply = caller.send(&deposit("alice", 1), WAIT).await.unwrap();
    assert_eq!(reply.balance, 13, "the server carries on");

    wait_until("everything is acknowledged", WAIT, || drained(&redis, &stream(&redis))).await;
    server.shutdown().await;
}

async fn queries_are_answered_without_the_inbox_and_changes_with_it(topology: Topology) {
    let db = common::database().await;
    let redis = TestRedis::new(topology).await;
    let bus = Bus::connect(redis.config()).await.unwrap();
    let pool = replica_pool(&db).await;

    // Each command is registered as what it declares, or not at all.
    let refused = CommandServer::new(&bus, pool.clone(), FAMILY)
        .unwrap()
        .handle::<AskBalance, _>(Confused)
        .unwrap_err();
    assert!(
        matches!(&refused, BusError::Config(message) if message.contains("answer")),
        "{refused}"
    );
    let refused = CommandServer::new(&bus, pool.clone(), FAMILY)
        .unwrap()
        .answer::<Deposit, _>(Confused)
        .unwrap_err();
    assert!(
        matches!(&refused, BusError::Config(message) if message.contains("handle")),
        "{refused}"
    );

    let balances = Balances::default();
    let server = CommandServer::new(&bus, pool, FAMILY)
        .unwrap()
        .handle::<Deposit, _>(Ledger::new("a", Behaviour::Normal))
        .unwrap()
        .answer::<AskBalance, _>(balances.clone())
        .unwrap();
    let stop = CancellationToken::new();
    let task = tokio::spawn(server.run(stop.clone()));
    let caller = Bus::connect(redis.config()).await.unwrap();

    let change = Uuid::now_v7();
    caller.send_with_id(&deposit("bob", 9), change, WAIT).await.unwrap();
    assert_eq!(inbox_count(&db.pool, change).await, 1, "a change goes through the inbox");

    // A query: answered, and nothing written for it.
    let query = Uuid::now_v7();
    let ask = AskBalance { account: "bob".into() };
    let answer = caller.send_with_id(&ask, query, WAIT).await.unwrap();
    assert_eq!(answer, Balance { balance: 9, server: "query".into() });
    assert_eq!(inbox_count(&db.pool, query).await, 0, "a query leaves no inbox row");
    // The same id again is simply asked again (there is no stored reply to replay), and sees
    // what changed in between.
    caller.send(&deposit("bob", 1), WAIT).await.unwrap();
    let again = caller.send_with_id(&ask, query, WAIT).await.unwrap();
    assert_eq!(again.balance, 10);
    assert_eq!(balances.calls.load(Ordering::SeqCst), 2);
    assert_eq!(inbox_count(&db.pool, query).await, 0);

    // A refusal reaches the caller with its code, and is not stored either.
    let refused_id = Uuid::now_v7();
    let error = caller
        .send_with_id(&AskBalance { account: "nobody".into() }, refused_id, WAIT)
        .await
        .unwrap_err();
    assert!(matches!(&error, BusError::Rejected { code, .. } if code == "no_account"), "{error:?}");
    assert_eq!(inbox_count(&db.pool, refused_id).await, 0);
    let inbox_rows: i64 =
        sqlx::query_scalar("SELECT count(*) FROM bustest.inbox").fetch_one(&db.pool).await.unwrap();
    assert_eq!(inbox_rows, 2, "only the two deposits are in the inbox");

    wait_until("everything is acknowledged", WAIT, || drained(&redis, &stream(&redis))).await;
    stop.cancel();
    within("the server to stop", WAIT, task).await.unwrap().unwrap();
}

async fn handler_killed_mid_command_is_completed_once_by_another_server(topology: Topology) {
    let db = common::database().await;
    let redis = TestRedis::new(topology).await;
    let (entered_tx, entered_rx) = oneshot::channel();
    let ledger = Ledger::new("a", Behaviour::HangFirst(Arc::new(Mutex::new(Some(entered_tx)))));
    let first = start(&db, redis.config(), ledger.clone()).await;
    let caller = Bus::connect(redis.config()).await.unwrap();

    let id = Uuid::now_v7();
    let sending = {
        let caller = caller.clone();
        tokio::spawn(async move { caller.send_with_id(&deposit("bob", 4), id, WAIT).await })
    };
    within("the handler to start", WAIT, entered_rx).await.unwrap();
    // Killed while its handler awaits inside the transaction: the write is rolled back.
    first.kill().await;
    assert_eq!(effect_count(&db.pool, id).await, 0, "nothing committed by the killed server");

    let second = start(&db, redis.config(), ledger.on("b")).await;
    let reply = within("the reply", WAIT, sending).await.unwrap().unwrap();
    assert_eq!(reply, Balance { balance: 4, server: "b".into() });
    assert_eq!(effect_count(&db.pool, id).await, 1, "executed exactly once");
    let delivery: i64 =
        sqlx::query_scalar("SELECT delivery FROM bustest.effects WHERE message_id = $1")
            .bind(id)
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(delivery, 2, "completed on the redelivery");
    assert_eq!(ledger.calls(), 2);
    wait_until("nothing stays pending", WAIT, || drained(&redis, &stream(&redis))).await;
    second.shutdown().await;
}

async fn server_killed_after_commit_before_ack_replays_the_stored_reply(topology: Topology) {
    let db = common::database().await;
    let redis = TestRedis::new(topology).await;
    let ledger = Ledger::new("a", Behaviour::Normal);
    let first = start(&db, redis.config(), ledger.clone()).await;
    let caller = Bus::connect(redis.config()).await.unwrap();

    // The caller's reply stream is made unwritable, so the server commits and then cannot
    // send the reply: it must not acknowledge, exactly as if it died right after the commit.
    let mut conn = redis.conn().await;
    let () = redis::cmd("SET")
        .arg(caller.reply_stream())
        .arg("not a stream")
        .query_async(&mut conn)
        .await
        .unwrap();
    let id = Uuid::now_v7();
    let sending = {
        let caller = caller.clone();
        tokio::spawn(async move { caller.send_with_id(&deposit("carol", 9), id, WAIT).await })
    };
    wait_until("the command is committed", WAIT, || async { inbox_count(&db.pool, id).await == 1 })
        .await;
    first.kill().await;
    let (pending, _) = group_state(&redis, &stream(&redis), "svc").await.unwrap();
    assert_eq!(pending, 1, "committed but never acknowledged");

    let () = redis::cmd("DEL").arg(caller.reply_stream()).query_async(&mut conn).await.unwrap();
    let second = start(&db, redis.config(), ledger.on("b")).await;
    let reply = within("the reply", WAIT, sending).await.unwrap().unwrap();
    assert_eq!(
        reply,
        Balance { balance: 9, server: "a".into() },
        "the stored reply, from the first run"
    );
    assert_eq!(ledger.calls(), 1, "not executed again");
    assert_eq!(effect_count(&db.pool, id).await, 1);
    wait_until("nothing stays pending", WAIT, || drained(&redis, &stream(&redis))).await;
    second.shutdown().await;
}

async fn a_slow_handler_keeps_its_message_and_is_not_reclaimed(topology: Topology) {
    let db = common::database().await;
    let redis = TestRedis::new(topology).await;
    // Five times the claim idle time: without lease renewal the message would be reclaimed
    // again and again and dead-lettered (max_deliveries 3) before the handler finished.
    let ledger = Ledger::new("a", Behaviour::Slow(Duration::from_secs(2)));
    let first = start(&db, redis.config(), ledger.clone()).await;
    let second = start(&db, redis.config(), ledger.on("b")).await;
    let caller = Bus::connect(redis.config()).await.unwrap();

    let id = Uuid::now_v7();
    let reply = caller.send_with_id(&deposit("gina", 2), id, WAIT).await.unwrap();
    assert_eq!(reply.balance, 2);
    assert_eq!(ledger.calls(), 1);
    let delivery: i64 =
        sqlx::query_scalar("SELECT delivery FROM bustest.effects WHERE message_id = $1")
            .bind(id)
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(delivery, 1, "handled on its first delivery");
    let dead = entries(&redis, &redis.keys().dead_letter_stream(&format!("cmd:{FAMILY}"))).await;
    assert!(dead.is_empty(), "nothing dead-lettered: {dead:?}");
    wait_until("nothing stays pending", WAIT, || drained(&redis, &stream(&redis))).await;
    // A second run (the other server reclaiming the message mid-way) would have blocked on the
    // inbox row and then replayed the reply: one reply means one run.
    assert_eq!(entries(&redis, caller.reply_stream()).await.len(), 1, "one run, one reply");
    first.shutdown().await;
    second.shutdown().await;
}

async fn two_servers_in_one_group_share_the_work(topology: Topology) {
    let db = common::database().await;
    let redis = TestRedis::new(topology).await;
    let handled: Arc<Mutex<Vec<(Uuid, &'static str)>>> = Arc::default();
    // A handler from a closure; each server tags its work.
    let handler = |server: &'static str| {
        let handled = Arc::clone(&handled);
        command_handler_fn(move |tx: &mut PgConnection, command: Deposit, meta: CommandMeta| {
            let handled = Arc::clone(&handled);
            Box::pin(async move {
                sqlx::query(
                    "INSERT INTO bustest.effects (message_id, account, amount, server, delivery) \
                     VALUES ($1, $2, $3, $4, 1)",
                )
                .bind(meta.command_id)
                .bind(&command.account)
                .bind(command.amount)
                .bind(server)
                .execute(&mut *tx)
                .await?;
                // A little work, so both servers are busy at once.
                tokio::time::sleep(Duration::from_millis(5)).await;
                handled.lock().unwrap().push((meta.command_id, server));
                Ok(Balance { balance: command.amount, server: server.to_owned() })
            })
        })
    };
    let mut servers = Vec::new();
    for name in ["a", "b"] {
        let bus = Bus::connect(redis.config()).await.unwrap();
        let server = CommandServer::new(&bus, replica_pool(&db).await, FAMILY)
            .unwrap()
            .handle(handler(name))
            .unwrap();
        let stop = CancellationToken::new();
        servers.push(Server { task: tokio::spawn(server.run(stop.clone())), bus, stop });
    }
    let caller = Bus::connect(redis.config()).await.unwrap();

    let sends = (0..200).map(|n| {
        let caller = caller.clone();
        async move {
            let id = Uuid::now_v7();
            (id, caller.send_with_id(&deposit(&format!("acct-{n}"), n + 1), id, WAIT).await)
        }
    });
    let replies = within("200 replies", WAIT, futures::future::join_all(sends)).await;
    let mut by_server: HashMap<String, usize> = HashMap::new();
    for (_, reply) in &replies {
        *by_server.entry(reply.as_ref().unwrap().server.clone()).or_default() += 1;
    }
    assert!(by_server["a"] > 0 && by_server["b"] > 0, "both servers worked: {by_server:?}");
    let handled = handled.lock().unwrap().clone();
    assert_eq!(handled.len(), 200, "each command handled once");
    let ids: HashSet<Uuid> = handled.iter().map(|(id, _)| *id).collect();
    assert_eq!(ids, replies.iter().map(|(id, _)| *id).collect::<HashSet<_>>(), "no duplicates");
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM bustest.effects")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    let distinct: i64 =
        sqlx::query_scalar("SELECT count(DISTINCT message_id) FROM bustest.effects")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!((rows, distinct), (200, 200));
    wait_until("nothing stays pending", WAIT, || drained(&redis, &stream(&redis))).await;
    for server in servers {
        server.shutdown().await;
    }
}

async fn expired_commands_are_answered_timed_out_and_never_executed(topology: Topology) {
    let db = common::database().await;
    let redis = TestRedis::new(topology).await;
    let caller = Bus::connect(redis.config()).await.unwrap();

    // No server yet: the caller gives up at its deadline (plus grace).
    let late = Uuid::now_v7();
    let error = caller
        .send_with_id(&deposit("dave", 1), late, Duration::from_millis(300))
        .await
        .unwrap_err();
    assert!(matches!(error, BusError::Timeout { server_answered: false, .. }), "{error:?}");

    // A server that starts later reads it, sees the deadline passed, and does not execute it.
    let ledger = Ledger::new("a", Behaviour::Normal);
    let server = start(&db, redis.config(), ledger.clone()).await;
    wait_until("the late command is read and acknowledged", WAIT, || {
        drained(&redis, &stream(&redis))
    })
    .await;
    assert_eq!(ledger.calls(), 0, "the handler never ran");
    assert_eq!(effect_count(&db.pool, late).await, 0);
    assert_eq!(inbox_count(&db.pool, late).await, 0, "a retry with a new deadline could still run");
    server.shutdown().await;

    // A handler still running at the deadline is cut off, rolled back, and the server answers
    // "timed out" itself.
    let slow = Ledger::new("slow", Behaviour::Hang);
    let server = start(&db, redis.config(), slow.clone()).await;
    let cut = Uuid::now_v7();
    let error = caller
        .send_with_id(&deposit("dave", 2), cut, Duration::from_millis(1_500))
        .await
        .unwrap_err();
    assert!(matches!(error, BusError::Timeout { server_answered: true, .. }), "{error:?}");
    assert_eq!(slow.calls(), 1);
    wait_until("nothing stays pending", WAIT, || drained(&redis, &stream(&redis))).await;
    assert_eq!(effect_count(&db.pool, cut).await, 0, "the handler's write was rolled back");
    assert_eq!(inbox_count(&db.pool, cut).await, 0);
    server.shutdown().await;
}

async fn a_command_that_keeps_failing_is_dead_lettered_and_its_caller_answered(topology: Topology) {
    let db = common::database().await;
    let redis = TestRedis::new(topology).await;
    let ledger = Ledger::new("a", Behaviour::AlwaysTransient);
    let server = start(&db, redis.config(), ledger.clone()).await;
    let caller = Bus::connect(redis.config()).await.unwrap();

    let id = Uuid::now_v7();
    // The deadline is far away; the answer must come from the dead-lettering, well before it.
    let far = Duration::from_secs(3_600);
    let error = within("the failure", WAIT, caller.send_with_id(&deposit("erin", 1), id, far))
        .await
        .unwrap_err();
    match &error {
        BusError::Failed { message } => {
            assert!(message.contains("dead-lettered"), "{message}");
            assert!(message.contains("ledger unavailable (test)"), "{message}");
        }
        other => panic!("expected Failed, got {other:?}"),
    }
    assert_eq!(ledger.calls(), 3, "max_deliveries attempts");
    assert_eq!(effect_count(&db.pool, id).await, 0);
    assert_eq!(inbox_count(&db.pool, id).await, 0);

    let dead = entries(&redis, &redis.keys().dead_letter_stream("cmd:testledger")).await;
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0]["id"], id.to_string());
    assert_eq!(dead[0]["dlq_deliveries"], "4");
    assert_eq!(dead[0]["dlq_group"], "svc");
    assert!(dead[0]["dlq_error"].contains("ledger unavailable (test)"), "{:?}", dead[0]);
    wait_until("the message is acknowledged", WAIT, || drained(&redis, &stream(&redis))).await;
    server.shutdown().await;
}

async fn shutdown_lets_in_flight_commands_finish(topology: Topology) {
    let db = common::database().await;
    let redis = TestRedis::new(topology).await;
    let permits = Arc::new(Semaphore::new(0));
    let ledger = Ledger::new("a", Behaviour::WaitForPermit(Arc::clone(&permits)));
    let server = start(&db, redis.config(), ledger.clone()).await;
    let caller = Bus::connect(redis.config()).await.unwrap();

    let id = Uuid::now_v7();
    let sending = {
        let caller = caller.clone();
        tokio::spawn(async move { caller.send_with_id(&deposit("frank", 3), id, WAIT).await })
    };
    wait_until("the handler is running", WAIT, || async { ledger.calls() == 1 }).await;
    server.stop.cancel();
    // Shutdown has started; the in-flight handler is not cut off.
    assert!(!server.task.is_finished());
    permits.add_permits(1);
    within("the server to stop", WAIT, server.task).await.unwrap().unwrap();
    let reply = within("the reply", WAIT, sending).await.unwrap().unwrap();
    assert_eq!(reply.balance, 3);
    assert_eq!(effect_count(&db.pool, id).await, 1);
    assert!(group_drained(&redis, &stream(&redis), "svc").await, "acknowledged before stopping");
    drop(server.bus);
}

on_both_topologies!(
    round_trip_rejection_and_idempotent_replay,
    queries_are_answered_without_the_inbox_and_changes_with_it,
    handler_killed_mid_command_is_completed_once_by_another_server,
    server_killed_after_commit_before_ack_replays_the_stored_reply,
    a_slow_handler_keeps_its_message_and_is_not_reclaimed,
    two_servers_in_one_group_share_the_work,
    expired_commands_are_answered_timed_out_and_never_executed,
    a_command_that_keeps_failing_is_dead_lettered_and_its_caller_answered,
    shutdown_lets_in_flight_commands_finish,
);

/// On a real cluster: the keys one pipeline or script uses together hash to one slot, and the
/// streams of different families, topics and callers to different slots.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cluster_keys_used_together_share_a_slot_and_streams_spread() {
    let redis = TestRedis::new(Topology::Cluster).await;
    let mut conn = redis.conn().await;
    let keys = redis.keys();
    let mut slots = HashMap::new();
    for key in [
        keys.command_stream(FAMILY),
        keys.dead_letter_stream(&format!("cmd:{FAMILY}")),
        keys.command_stream("other"),
        keys.event_stream("test.credited"),
        keys.dead_letter_stream("evt:test.credited"),
        keys.reply_stream(Uuid::now_v7()),
        awx_bus::ratelimit::SharedLimiter::key(
            &Bus::connect(redis.config()).await.unwrap(),
            "pay",
            "key:a",
        ),
        keys.rate_limit("pay", "global"),
    ] {
        let slot: u16 =
            redis::cmd("CLUSTER").arg("KEYSLOT").arg(&key).query_async(&mut conn).await.unwrap();
        slots.insert(key, slot);
    }
    let slot = |key: String| slots[&key];
    let command = slot(keys.command_stream(FAMILY));
    assert_eq!(slot(keys.dead_letter_stream(&format!("cmd:{FAMILY}"))), command);
    let event = slot(keys.event_stream("test.credited"));
    assert_eq!(slot(keys.dead_letter_stream("evt:test.credited")), event);
    assert_eq!(slot(keys.rate_limit("pay", "key:a")), slot(keys.rate_limit("pay", "global")));
    let distinct: HashSet<u16> = [command, slot(keys.command_stream("other")), event].into();
    assert_eq!(distinct.len(), 3, "different streams, different slots: {slots:?}");
}
