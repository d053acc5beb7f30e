//! The account cache: once an account is committed, operations find it without a statement,
//! and an account a rolled-back transaction created is never cached. A statement on a
//! transaction that has already failed is refused by Postgres, which is how these tests see
//! whether `ensure_accounts` asked the database at all.

use std::time::Duration;

use awx_ledger_service::accounts::ensure_accounts;
use awx_ledger_service::ops::{payable_spec, wallet_spec};
use awx_types::{AccountId, AgentId};
use sqlx::Connection as _;

use crate::helpers::{TestLedger, asset, payee};

/// A transaction on which every statement fails (an earlier one did).
async fn failed_transaction(
    conn: &mut sqlx::PgConnection,
) -> sqlx::Transaction<'_, sqlx::Postgres> {
    let mut tx = conn.begin().await.unwrap();
    assert!(sqlx::query("SELECT 1 / 0").execute(&mut *tx).await.is_err());
    tx
}

async fn cached(ledger: &TestLedger, count: usize) {
    for _ in 0..250 {
        if ledger.ledger.accounts.len() >= count {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the cache never held {count} accounts (it holds {})", ledger.ledger.accounts.len());
}

#[tokio::test]
async fn committed_accounts_are_found_without_a_statement() {
    let ledger = TestLedger::new().await;
    let (owner, agent) = (AccountId::new(), AgentId::new());
    let specs = [wallet_spec(owner, agent, &asset()), payable_spec(&asset(), payee(7))];
    let mut conn = ledger.db.pool.acquire().await.unwrap();
    let mut tx = conn.begin().await.unwrap();
    let created = ensure_accounts(&mut tx, &ledger.ledger.accounts, &specs).await.unwrap();
    tx.commit().await.unwrap();
    // Until the background read has seen them committed, a lookup asks the database.
    let again = ensure_accounts(&mut conn, &ledger.ledger.accounts, &specs).await.unwrap();
    assert_eq!(again, created);
    cached(&ledger, 2).await;

    let mut tx = failed_transaction(&mut conn).await;
    let found = ensure_accounts(&mut tx, &ledger.ledger.accounts, &specs).await.unwrap();
    assert_eq!(found, created, "the same ids, and no statement sent");
    // The checks still hold on a cached account: the wallet is another tenant's.
    let foreign = [wallet_spec(AccountId::new(), agent, &asset())];
    let refused = ensure_accounts(&mut tx, &ledger.ledger.accounts, &foreign).await;
    assert!(refused.is_err(), "another tenant's wallet: {refused:?}");
}

#[tokio::test]
async fn an_account_of_a_rolled_back_transaction_is_never_cached() {
    let ledger = TestLedger::new().await;
    let specs = [wallet_spec(AccountId::new(), AgentId::new(), &asset())];
    let mut conn = ledger.db.pool.acquire().await.unwrap();
    let mut tx = conn.begin().await.unwrap();
    ensure_accounts(&mut tx, &ledger.ledger.accounts, &specs).await.unwrap();
    // The background read runs while the account is uncommitted, and again after the
    // rollback: it never sees the account.
    tokio::time::sleep(Duration::from_millis(300)).await;
    tx.rollback().await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(ledger.ledger.accounts.len(), 0);
    let mut tx = failed_transaction(&mut conn).await;
    assert!(
        ensure_accounts(&mut tx, &ledger.ledger.accounts, &specs).await.is_err(),
        "not cached, so the database is asked (and refuses, the transaction having failed)"
    );
    drop(tx);
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM ledger.accounts")
        .fetch_one(&ledger.db.pool)
        .await
        .unwrap();
    assert_eq!(count, 0, "nothing of the rolled-back transaction exists");
}
