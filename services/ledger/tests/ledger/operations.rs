//! The operations end to end on Postgres: amounts, fees, replays, refusals.

use awx_api::ledger::{
    Capture, Deposit, DepositSource, FeeTiers, LineKind, PayoutSettled, Statement, Void,
};
use awx_ledger_service::error::LedgerFailure;
use awx_types::{AccountId, AgentId, Amount};
use awx_x402::B256;

use crate::helpers::{TestLedger, asset, payee, usdc};

#[tokio::test]
async fn a_payment_holds_amount_plus_fee_then_captures_to_payable_and_fee_revenue() {
    let t = TestLedger::new().await;
    let (owner, agent) = (AccountId::new(), AgentId::new());
    t.deposit(owner, agent, usdc("5.00")).await.unwrap();
    let hold = t.hold(&TestLedger::hold_command(owner, agent, 1, usdc("0.10"))).await.unwrap();
    assert_eq!(hold.amount, usdc("0.10"));
    assert_eq!(hold.fee, usdc("0.002"), "$0.10 at 2.0% is $0.002");
    assert_eq!(hold.fee_rate.to_string(), "2.0");
    assert_eq!(hold.tier, "starter");
    assert_eq!(hold.available, usdc("4.898"));
    let balances = t.balances(owner, agent).await;
    assert_eq!(balances.wallets[0].held, usdc("0.102"));

    let capture = t.capture(&Capture { hold_id: hold.ledger_id, amount: None }).await.unwrap();
    assert_eq!(
        (capture.amount, capture.fee, capture.released),
        (usdc("0.10"), usdc("0.002"), Amount::ZERO)
    );
    let balances = t.balances(owner, agent).await;
    assert_eq!(
        (balances.wallets[0].available, balances.wallets[0].held),
        (usdc("4.898"), Amount::ZERO)
    );

    let payable: String = sqlx::query_scalar(
        "SELECT credits_posted::text FROM ledger.accounts WHERE code = 'payable'",
    )
    .fetch_one(&t.db.pool)
    .await
    .unwrap();
    assert_eq!(payable, "100000");
    let fees: String = sqlx::query_scalar(
        "SELECT sum(credits_posted)::text FROM ledger.accounts WHERE code = 'fee_revenue'",
    )
    .fetch_one(&t.db.pool)
    .await
    .unwrap();
    assert_eq!(fees, "2000");
    t.assert_consistent().await;

    // The statement tells the story line by line.
    let ledger = &t.ledger;
    let query = Statement { owner, agent, after: None, limit: 100 };
    let statement: Result<_, LedgerFailure> =
        awx_ledger_service::committed!(ledger, |conn| ledger.statement(conn, &query));
    let kinds: Vec<LineKind> = statement.unwrap().lines.iter().map(|line| line.kind).collect();
    assert_eq!(
        kinds,
        vec![
            LineKind::Deposit,
            LineKind::Hold,
            LineKind::Hold,
            LineKind::Capture,
            LineKind::Capture
        ]
    );
}

#[tokio::test]
async fn a_partial_capture_releases_the_rest_with_its_share_of_the_fee() {
    let t = TestLedger::new().await;
    let (owner, agent) = (AccountId::new(), AgentId::new());
    t.deposit(owner, agent, usdc("1.00")).await.unwrap();
    let hold = t.hold(&TestLedger::hold_command(owner, agent, 1, usdc("0.10"))).await.unwrap();
    let capture =
        t.capture(&Capture { hold_id: hold.ledger_id, amount: Some(usdc("0.06")) }).await.unwrap();
    assert_eq!(capture.amount, usdc("0.06"));
    assert_eq!(capture.fee, usdc("0.0012"));
    assert_eq!(capture.released, usdc("0.0408"));
    assert_eq!(t.available(owner, agent).await, usdc("0.9388"));
    let too_much = t.capture(&Capture { hold_id: hold.ledger_id, amount: Some(usdc("0.2")) }).await;
    assert!(matches!(too_much, Err(LedgerFailure::HoldNotPending { .. })), "{too_much:?}");
    t.assert_consistent().await;
}

#[tokio::test]
async fn replays_return_the_original_result_and_conflicts_are_refused() {
    let t = TestLedger::new().await;
    let (owner, agent) = (AccountId::new(), AgentId::new());
    let deposit = Deposit {
        owner,
        agent,
        asset: asset(),
        amount: usdc("2.00"),
        tx_hash: B256::repeat_byte(7),
        log_index: 3,
        source: DepositSource::Chain,
        block_hash: None,
    };
    let first = t.run_deposit(&deposit).await.unwrap();
    let again = t.run_deposit(&deposit).await.unwrap();
    assert_eq!(first, again);
    assert_eq!(t.available(owner, agent).await, usdc("2.00"), "credited once");
    let mut other = deposit.clone();
    other.amount = usdc("3.00");
    assert!(matches!(t.run_deposit(&other).await, Err(LedgerFailure::IdempotencyConflict(_))));

    let command = TestLedger::hold_command(owner, agent, 1, usdc("0.50"));
    let hold = t.hold(&command).await.unwrap();
    assert_eq!(t.hold(&command).await.unwrap(), hold);
    let capture = Capture { hold_id: hold.ledger_id, amount: None };
    let captured = t.capture(&capture).await.unwrap();
    assert_eq!(t.capture(&capture).await.unwrap(), captured);
    assert_eq!(t.available(owner, agent).await, usdc("1.49"));
    t.assert_consistent().await;
}

#[tokio::test]
async fn an_overdraft_fails_clearly_and_writes_nothing() {
    let t = TestLedger::new().await;
    let (owner, agent) = (AccountId::new(), AgentId::new());
    t.deposit(owner, agent, usdc("0.10")).await.unwrap();
    let (transfers, entries, accounts) =
        (t.count("transfers").await, t.count("entries").await, t.count("accounts").await);
    // $0.10 plus the $0.002 fee is more than the wallet holds.
    let result = t.hold(&TestLedger::hold_command(owner, agent, 9, usdc("0.10"))).await;
    let error = result.unwrap_err();
    assert!(matches!(error, LedgerFailure::InsufficientFunds(_)), "{error:?}");
    assert_eq!(error.code(), Some("insufficient_funds"));
    assert_eq!(
        (t.count("transfers").await, t.count("entries").await, t.count("accounts").await),
        (transfers, entries, accounts)
    );
    assert_eq!(t.available(owner, agent).await, usdc("0.10"));
    t.assert_consistent().await;
}

#[tokio::test]
async fn a_void_after_a_capture_and_a_capture_after_a_void_are_refused() {
    let t = TestLedger::new().await;
    let (owner, agent) = (AccountId::new(), AgentId::new());
    t.deposit(owner, agent, usdc("1.00")).await.unwrap();
    let captured = t.hold(&TestLedger::hold_command(owner, agent, 1, usdc("0.10"))).await.unwrap();
    t.capture(&Capture { hold_id: captured.ledger_id, amount: None }).await.unwrap();
    let void = t.void(&Void { hold_id: captured.ledger_id }).await;
    assert!(
        matches!(void, Err(LedgerFailure::HoldNotPending { ref status, .. }) if status == "captured"),
        "{void:?}"
    );

    let voided = t.hold(&TestLedger::hold_command(owner, agent, 1, usdc("0.20"))).await.unwrap();
    let released = t.void(&Void { hold_id: voided.ledger_id }).await.unwrap();
    assert_eq!(released.released, usdc("0.204"));
    let capture = t.capture(&Capture { hold_id: voided.ledger_id, amount: None }).await;
    assert!(
        matches!(capture, Err(LedgerFailure::HoldNotPending { ref status, .. }) if status == "voided"),
        "{capture:?}"
    );
    assert_eq!(t.available(owner, agent).await, usdc("0.898"));
    t.assert_consistent().await;
}

/// The policy service releases a payment whose hold request went unanswered and voids the hold;
/// the hold request, still on its way, must not hold the money afterwards.
#[tokio::test]
async fn a_hold_arriving_after_its_void_is_refused_and_holds_nothing() {
    let t = TestLedger::new().await;
    let (owner, agent) = (AccountId::new(), AgentId::new());
    t.deposit(owner, agent, usdc("1.00")).await.unwrap();
    let late = TestLedger::hold_command(owner, agent, 1, usdc("0.10"));
    let hold_id = awx_types::LedgerId::from_uuid(late.payment_id.as_uuid());
    let (transfers, entries) = (t.count("transfers").await, t.count("entries").await);

    let void = t.void(&Void { hold_id }).await.unwrap();
    assert_eq!((void.hold_id, void.released), (hold_id, Amount::ZERO));
    // A redelivered void answers the same.
    assert_eq!(t.void(&Void { hold_id }).await.unwrap(), void);

    let refused = t.hold(&late).await.unwrap_err();
    assert!(matches!(refused, LedgerFailure::HoldVoided(_)), "{refused:?}");
    assert_eq!(refused.code(), Some("hold_voided"));
    assert_eq!(t.available(owner, agent).await, usdc("1.00"));
    assert_eq!((t.count("transfers").await, t.count("entries").await), (transfers, entries));
    let capture = t.capture(&Capture { hold_id, amount: None }).await;
    assert!(matches!(capture, Err(LedgerFailure::HoldNotFound(_))), "{capture:?}");

    // Another payment of the same agent is held as usual.
    t.hold(&TestLedger::hold_command(owner, agent, 1, usdc("0.10"))).await.unwrap();
    assert_eq!(t.available(owner, agent).await, usdc("0.898"));
    t.assert_consistent().await;
}

#[tokio::test]
async fn the_faucet_is_for_development_chains_only() {
    let t = TestLedger::new().await;
    let mut deposit = Deposit {
        owner: AccountId::new(),
        agent: AgentId::new(),
        asset: asset(),
        amount: usdc("1"),
        tx_hash: B256::random(),
        log_index: 0,
        source: DepositSource::Faucet,
        block_hash: None,
    };
    deposit.asset.network = "eip155:8453".into();
    let error = t.run_deposit(&deposit).await.unwrap_err();
    assert_eq!(error.code(), Some("faucet_unavailable"));
    deposit.source = DepositSource::Chain;
    t.run_deposit(&deposit).await.unwrap();
}

#[tokio::test]
async fn an_agent_id_belongs_to_one_tenant() {
    let t = TestLedger::new().await;
    let agent = AgentId::new();
    t.deposit(AccountId::new(), agent, usdc("1")).await.unwrap();
    let error = t.deposit(AccountId::new(), agent, usdc("1")).await.unwrap_err();
    assert_eq!(error.code(), Some("invalid_request"));
}

#[tokio::test]
async fn payouts_draw_down_what_is_owed() {
    let t = TestLedger::new().await;
    let (owner, agent) = (AccountId::new(), AgentId::new());
    t.deposit(owner, agent, usdc("1")).await.unwrap();
    let hold = t.hold(&TestLedger::hold_command(owner, agent, 4, usdc("0.50"))).await.unwrap();
    t.capture(&Capture { hold_id: hold.ledger_id, amount: None }).await.unwrap();
    let ledger = &t.ledger;
    let payout = PayoutSettled {
        asset: asset(),
        payee: payee(4),
        amount: usdc("0.30"),
        tx_hash: B256::repeat_byte(1),
        reference: None,
    };
    let reply: Result<_, LedgerFailure> =
        awx_ledger_service::committed!(ledger, |conn| ledger.payout_settled(conn, &payout));
    assert_eq!(reply.unwrap().payable_remaining, usdc("0.20"));
    let too_much = PayoutSettled { amount: usdc("0.21"), tx_hash: B256::repeat_byte(2), ..payout };
    let refused: Result<_, LedgerFailure> =
        awx_ledger_service::committed!(ledger, |conn| ledger.payout_settled(conn, &too_much));
    assert_eq!(refused.unwrap_err().code(), Some("insufficient_funds"));
    t.assert_consistent().await;
}

#[tokio::test]
async fn the_tier_follows_thirty_day_volume() {
    let t = TestLedger::new().await;
    let (owner, agent) = (AccountId::new(), AgentId::new());
    let ledger = &t.ledger;
    let tiers = |owner| {
        let query = FeeTiers { owner };
        async move {
            let result: Result<_, LedgerFailure> =
                awx_ledger_service::committed!(ledger, |conn| ledger.fee_tiers(conn, &query));
            result.unwrap()
        }
    };
    let before = tiers(owner).await;
    assert_eq!(before.current_tier, "starter");
    assert_eq!(before.tiers.len(), 4);
    assert_eq!(before.tiers[1].volume_to_usd.unwrap().to_string(), "10000");
    assert!(before.tiers[3].volume_to_usd.is_none());

    t.deposit(owner, agent, usdc("2000")).await.unwrap();
    let hold = t.hold(&TestLedger::hold_command(owner, agent, 1, usdc("1000"))).await.unwrap();
    assert_eq!(hold.fee, usdc("20"), "2.0% while in starter");
    t.capture(&Capture { hold_id: hold.ledger_id, amount: None }).await.unwrap();
    t.ledger.fees.invalidate();
    let after = tiers(owner).await;
    assert_eq!(after.current_tier, "growth", "$1,000 of volume is the growth tier");
    assert_eq!(after.volume_30d_usd.to_string(), "1000.000000");
    let next = t.hold(&TestLedger::hold_command(owner, agent, 1, usdc("100"))).await.unwrap();
    assert_eq!(next.fee, usdc("1.50"));
    assert_eq!(next.fee_rate.to_string(), "1.5");
    // Another tenant is still in starter.
    assert_eq!(tiers(AccountId::new()).await.current_tier, "starter");
}

#[tokio::test]
async fn a_capture_shows_in_the_statement_under_the_payments_id_with_the_captured_amount() {
    let t = TestLedger::new().await;
    let (owner, agent) = (AccountId::new(), AgentId::new());
    t.deposit(owner, agent, usdc("1.00")).await.unwrap();
    let full = t.hold(&TestLedger::hold_command(owner, agent, 1, usdc("0.10"))).await.unwrap();
    let partial = t.hold(&TestLedger::hold_command(owner, agent, 2, usdc("0.10"))).await.unwrap();
    let captured = t.capture(&Capture { hold_id: full.ledger_id, amount: None }).await.unwrap();
    assert_ne!(captured.ledger_id, full.ledger_id, "the capture is a transfer of its own");
    t.capture(&Capture { hold_id: partial.ledger_id, amount: Some(usdc("0.06")) }).await.unwrap();

    let ledger = &t.ledger;
    let query = Statement { owner, agent, after: None, limit: 100 };
    let statement: Result<_, LedgerFailure> =
        awx_ledger_service::committed!(ledger, |conn| ledger.statement(conn, &query));
    let lines: Vec<_> = statement
        .unwrap()
        .lines
        .into_iter()
        .map(|line| (line.kind, line.ledger_id, line.credit, line.debit, line.available_after))
        .collect();
    let (full_id, partial_id) = (full.ledger_id, partial.ledger_id);
    assert_eq!(
        lines[5..],
        [
            // The full capture: the hold lifted, the amount and the fee taken; nothing released.
            (LineKind::Capture, full_id, usdc("0.10"), usdc("0.10"), usdc("0.796")),
            (LineKind::Capture, full_id, usdc("0.002"), usdc("0.002"), usdc("0.796")),
            // The partial capture: $0.06 and its $0.0012 fee taken, the rest back in available.
            (LineKind::Capture, partial_id, usdc("0.10"), usdc("0.06"), usdc("0.836")),
            (LineKind::Capture, partial_id, usdc("0.002"), usdc("0.0012"), usdc("0.8368")),
        ],
        "{lines:?}"
    );
    // Every line of a payment carries its id: the holds too.
    assert_eq!((lines[1].0, lines[1].1, lines[1].3), (LineKind::Hold, full_id, usdc("0.10")));
    assert_eq!((lines[3].0, lines[3].1, lines[3].3), (LineKind::Hold, partial_id, usdc("0.10")));
    assert_eq!(t.available(owner, agent).await, usdc("0.8368"));
    t.assert_consistent().await;
}
