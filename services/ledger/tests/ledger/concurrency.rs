//! 64 concurrent tasks issuing random transfers, holds, captures and voids over 20 accounts:
//! afterwards no wallet is negative, the checker passes, and every replayed idempotency key
//! returned its original result.

use std::sync::{Arc, Mutex};

use awx_api::ledger::{Capture, Hold, Void};
use awx_ledger_service::error::LedgerFailure;
use awx_ledger_service::ops::{GenericTransfer, wallet_spec};
use awx_types::{AccountId, AgentId, Amount, LedgerId};
use rand::Rng as _;

use crate::helpers::{TestLedger, asset, usdc};

const TASKS: usize = 64;
const OPS_PER_TASK: usize = 25;
const WALLETS: usize = 12;

/// A successful operation and what it answered, to replay at the end.
#[derive(Debug, Clone)]
enum Done {
    Transfer(GenericTransfer, LedgerId),
    Hold(Hold, awx_api::ledger::HoldReply),
    Capture(Capture, awx_api::ledger::CaptureReply),
    Void(Void, awx_api::ledger::VoidReply),
}

/// Refusals that concurrency makes normal; anything else fails the test.
fn expected(error: &LedgerFailure) -> bool {
    matches!(error, LedgerFailure::InsufficientFunds(_) | LedgerFailure::HoldNotPending { .. })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_random_operations_keep_every_invariant() {
    // 12 wallets, 4 payables, 3 fee shards and the on-chain mirror: 20 accounts.
    let t = Arc::new(TestLedger::with(|settings| settings.fee_shards = 3).await);
    let owner = AccountId::new();
    let agents: Vec<AgentId> = (0..WALLETS).map(|_| AgentId::new()).collect();
    for agent in &agents {
        t.deposit(owner, *agent, usdc("10")).await.unwrap();
    }
    let holds: Arc<Mutex<Vec<LedgerId>>> = Arc::default();
    let done: Arc<Mutex<Vec<Done>>> = Arc::default();

    let mut tasks = Vec::new();
    for _ in 0..TASKS {
        let (t, agents, holds, done) = (t.clone(), agents.clone(), holds.clone(), done.clone());
        tasks.push(tokio::spawn(async move {
            for _ in 0..OPS_PER_TASK {
                let (choice, from, to, cents, payee, partial) = {
                    let mut rng = rand::rng();
                    (
                        rng.random_range(0..100u32),
                        rng.random_range(0..WALLETS),
                        rng.random_range(0..WALLETS),
                        rng.random_range(1..400u128),
                        rng.random_range(1..=4u8),
                        rng.random_bool(0.3),
                    )
                };
                let amount = Amount::from_atomic(cents * 10_000);
                let picked_hold = || {
                    let holds = holds.lock().unwrap();
                    (!holds.is_empty()).then(|| holds[rand::rng().random_range(0..holds.len())])
                };
                let outcome: Result<Done, LedgerFailure> = if choice < 30 {
                    if from == to {
                        continue;
                    }
                    let request = GenericTransfer {
                        idempotency_key: uuid::Uuid::now_v7().to_string(),
                        legs: vec![(
                            wallet_spec(owner, agents[from], &asset()),
                            wallet_spec(owner, agents[to], &asset()),
                            amount,
                        )],
                        hold_timeout_seconds: None,
                    };
                    let ledger = &t.ledger;
                    let reply: Result<_, LedgerFailure> =
                        awx_ledger_service::committed!(ledger, |conn| ledger
                            .transfer(conn, &request));
                    reply.map(|reply| Done::Transfer(request, reply.ledger_id))
                } else if choice < 65 {
                    let command = TestLedger::hold_command(owner, agents[from], payee, amount);
                    t.hold(&command).await.map(|reply| {
                        holds.lock().unwrap().push(reply.ledger_id);
                        Done::Hold(command, reply)
                    })
                } else if choice < 85 {
                    let Some(hold_id) = picked_hold() else { continue };
                    let command =
                        Capture { hold_id, amount: partial.then(|| Amount::from_atomic(10_000)) };
                    t.capture(&command).await.map(|reply| Done::Capture(command, reply))
                } else {
                    let Some(hold_id) = picked_hold() else { continue };
                    let command = Void { hold_id };
                    t.void(&command).await.map(|reply| Done::Void(command, reply))
                };
                match outcome {
                    Ok(record) => done.lock().unwrap().push(record),
                    Err(error) => {
                        assert!(expected(&error), "unexpected failure under concurrency: {error:?}")
                    }
                }
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }

    // No wallet is negative, and everything recomputes.
    for agent in &agents {
        let balance = t.balances(owner, *agent).await;
        assert!(balance.wallets[0].available <= usdc("1000"));
    }
    let negative: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM ledger.accounts WHERE code = 'wallet' AND debits_posted + debits_pending > credits_posted",
    )
    .fetch_one(&t.db.pool)
    .await
    .unwrap();
    assert_eq!(negative, 0);
    t.assert_consistent().await;

    // Every idempotency key replayed returns its original result, and changes nothing.
    let entries_before = t.count("entries").await;
    let done = done.lock().unwrap().clone();
    // Enough of every kind ran to mean something (how many succeed depends on the random draws
    // and the interleaving: wallets drain as holds pile up).
    let kinds = |wanted: fn(&Done) -> bool| done.iter().filter(|record| wanted(record)).count();
    let counts = [
        kinds(|r| matches!(r, Done::Transfer(..))),
        kinds(|r| matches!(r, Done::Hold(..))),
        kinds(|r| matches!(r, Done::Capture(..))),
        kinds(|r| matches!(r, Done::Void(..))),
    ];
    assert!(counts.iter().all(|count| *count > 0), "transfers, holds, captures, voids: {counts:?}");
    assert!(done.len() > TASKS * OPS_PER_TASK / 6, "only {} operations succeeded", done.len());
    for record in &done {
        match record {
            Done::Transfer(request, id) => {
                let ledger = &t.ledger;
                let reply: Result<_, LedgerFailure> =
                    awx_ledger_service::committed!(ledger, |conn| ledger.transfer(conn, request));
                assert_eq!(reply.unwrap().ledger_id, *id);
            }
            Done::Hold(command, reply) => assert_eq!(&t.hold(command).await.unwrap(), reply),
            Done::Capture(command, reply) => assert_eq!(&t.capture(command).await.unwrap(), reply),
            Done::Void(command, reply) => assert_eq!(&t.void(command).await.unwrap(), reply),
        }
    }
    assert_eq!(t.count("entries").await, entries_before, "replays wrote nothing");
    let accounts = t.count("accounts").await;
    assert_eq!(accounts, 20);
}
