//! The checker finds tampering.

use awx_api::ledger::Capture;
use awx_types::{AccountId, AgentId};

use crate::helpers::{TestLedger, usdc};

#[tokio::test]
async fn the_checker_passes_a_sound_ledger_and_names_what_was_tampered_with() {
    let t = TestLedger::new().await;
    let (owner, agent) = (AccountId::new(), AgentId::new());
    t.deposit(owner, agent, usdc("1")).await.unwrap();
    let hold = t.hold(&TestLedger::hold_command(owner, agent, 1, usdc("0.2"))).await.unwrap();
    t.capture(&Capture { hold_id: hold.ledger_id, amount: Some(usdc("0.1")) }).await.unwrap();
    t.hold(&TestLedger::hold_command(owner, agent, 2, usdc("0.3"))).await.unwrap();
    t.assert_consistent().await;

    // Counters are the one mutable part; changing one by hand is caught.
    sqlx::query("UPDATE ledger.accounts SET credits_posted = credits_posted + 1 WHERE code = 'payable' AND credits_posted > 0")
        .execute(&t.db.pool)
        .await
        .unwrap();
    let violations = awx_ledger_service::check::check(&t.db.pool).await.unwrap();
    let checks: Vec<&str> = violations.iter().map(|v| v.check).collect();
    assert!(
        checks.contains(&"account counters equal the sums of their entries"),
        "{violations:#?}"
    );
    assert!(checks.contains(&"per asset, credits minus debits sum to zero"), "{violations:#?}");
}
