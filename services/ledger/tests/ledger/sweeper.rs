//! Holds past their timeout are released by the sweeper.

use std::time::Duration;

use awx_api::ledger::Capture;
use awx_ledger_service::error::LedgerFailure;
use awx_types::{AccountId, AgentId};

use crate::helpers::{TestLedger, usdc};

#[tokio::test]
async fn an_expired_hold_is_voided_and_its_funds_are_available_again() {
    let t = TestLedger::new().await;
    let (owner, agent) = (AccountId::new(), AgentId::new());
    t.deposit(owner, agent, usdc("1.00")).await.unwrap();
    let mut command = TestLedger::hold_command(owner, agent, 1, usdc("0.50"));
    command.timeout_seconds = 1;
    let hold = t.hold(&command).await.unwrap();
    let lasting = t.hold(&TestLedger::hold_command(owner, agent, 1, usdc("0.10"))).await.unwrap();
    assert_eq!(t.available(owner, agent).await, usdc("0.388"));

    // Nothing is due before the timeout.
    assert_eq!(awx_ledger_service::sweeper::sweep_once(&t.ledger).await.unwrap(), 0);
    // Wait for the database clock to pass the timeout.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while t.ledger.expired_holds(10).await.unwrap().is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "the hold never expired");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(awx_ledger_service::sweeper::sweep_once(&t.ledger).await.unwrap(), 1);
    assert_eq!(t.available(owner, agent).await, usdc("0.898"), "the expired hold's 0.51 is back");
    let status: String = sqlx::query_scalar("SELECT status FROM ledger.transfers WHERE id = $1")
        .bind(hold.ledger_id.as_uuid())
        .fetch_one(&t.db.pool)
        .await
        .unwrap();
    assert_eq!(status, "expired");
    // An expired hold cannot be captured; the other one still can.
    let late = t.capture(&Capture { hold_id: hold.ledger_id, amount: None }).await;
    assert!(matches!(late, Err(LedgerFailure::HoldNotPending { .. })));
    t.capture(&Capture { hold_id: lasting.ledger_id, amount: None }).await.unwrap();
    assert_eq!(awx_ledger_service::sweeper::sweep_once(&t.ledger).await.unwrap(), 0);
    t.assert_consistent().await;
}
