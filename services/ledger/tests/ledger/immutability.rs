//! History cannot be rewritten: the database itself refuses it.

use awx_types::{AccountId, AgentId};

use crate::helpers::{TestLedger, usdc};

async fn refused(t: &TestLedger, sql: &'static str) {
    let error = sqlx::query(sql).execute(&t.db.pool).await.expect_err(sql);
    assert!(
        error.to_string().contains("append-only")
            || error.to_string().contains("never deleted")
            || error.to_string().contains("only a pending hold"),
        "{sql}: {error}"
    );
}

#[tokio::test]
async fn entries_legs_and_transfers_cannot_be_changed_or_deleted() {
    let t = TestLedger::new().await;
    let (owner, agent) = (AccountId::new(), AgentId::new());
    t.deposit(owner, agent, usdc("1")).await.unwrap();
    t.hold(&TestLedger::hold_command(owner, agent, 1, usdc("0.1"))).await.unwrap();
    refused(&t, "UPDATE ledger.entries SET posted_added = posted_added + 1").await;
    refused(&t, "DELETE FROM ledger.entries").await;
    refused(&t, "TRUNCATE ledger.entries CASCADE").await;
    refused(&t, "UPDATE ledger.transfer_legs SET amount = 0").await;
    refused(&t, "DELETE FROM ledger.transfer_legs").await;
    refused(&t, "DELETE FROM ledger.transfers").await;
    refused(&t, "UPDATE ledger.transfers SET result = '{}' WHERE kind = 'post'").await;
    refused(&t, "UPDATE ledger.transfers SET status = 'voided' WHERE kind = 'post'").await;
    refused(&t, "UPDATE ledger.fee_schedules SET tiers = '[]'").await;
    // A pending hold's status may change once, and nothing else about it.
    refused(
        &t,
        "UPDATE ledger.transfers SET status = 'captured', metadata = '{}' WHERE kind = 'hold'",
    )
    .await;
    // The deposit (two entries) and the hold (amount and fee legs, two entries each) are intact.
    assert_eq!(t.count("entries").await, 6);
    t.assert_consistent().await;
}
