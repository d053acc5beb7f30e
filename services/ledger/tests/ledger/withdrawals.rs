//! A withdrawal's hold: wallet → on-chain mirror, no fee, resolved by the ordinary capture and
//! void, and never counted in the fee tiers' volume.

use std::time::Duration;

use awx_api::ledger::{
    Capture, FeeTiers, FeeTiersReply, HoldWithdrawal, LineKind, Statement, Void, WithdrawalHeld,
};
use awx_ledger_service::error::LedgerFailure;
use awx_ledger_service::{Ledger, LedgerSettings};
use awx_types::{AccountId, AgentId, Amount, LedgerId};
use awx_x402::Address;

use crate::helpers::{TestLedger, asset, usdc};

fn withdrawal(owner: AccountId, agent: AgentId, amount: Amount) -> HoldWithdrawal {
    HoldWithdrawal {
        withdrawal_id: LedgerId::new(),
        owner,
        agent,
        asset: asset(),
        to: Address::repeat_byte(0x77),
        amount,
        timeout_seconds: 300,
    }
}

async fn hold_withdrawal(
    t: &TestLedger,
    command: &HoldWithdrawal,
) -> Result<WithdrawalHeld, LedgerFailure> {
    let ledger = &t.ledger;
    awx_ledger_service::committed!(ledger, |conn| ledger.hold_withdrawal(conn, command))
}

async fn kinds(t: &TestLedger, owner: AccountId, agent: AgentId) -> Vec<LineKind> {
    let ledger = &t.ledger;
    let query = Statement { owner, agent, after: None, limit: 100 };
    let statement: Result<_, LedgerFailure> =
        awx_ledger_service::committed!(ledger, |conn| ledger.statement(conn, &query));
    statement.unwrap().lines.iter().map(|line| line.kind).collect()
}

/// (debits posted, credits posted) of the wallet or the mirror.
async fn posted(t: &TestLedger, code: &str) -> (Amount, Amount) {
    let (debits, credits): (String, String) = sqlx::query_as(
        "SELECT debits_posted::text, credits_posted::text FROM ledger.accounts WHERE code = $1",
    )
    .bind(code)
    .fetch_one(&t.db.pool)
    .await
    .unwrap();
    (Amount::parse_atomic(&debits).unwrap(), Amount::parse_atomic(&credits).unwrap())
}

async fn counts(t: &TestLedger) -> (i64, i64, i64, i64) {
    (
        t.count("transfers").await,
        t.count("transfer_legs").await,
        t.count("entries").await,
        t.count("captures").await,
    )
}

/// The fee tiers as a fresh ledger (no cached volume) reads them.
async fn fee_tiers(t: &TestLedger, owner: AccountId) -> FeeTiersReply {
    let ledger = Ledger::new(t.db.pool.clone(), LedgerSettings::default());
    let result: Result<_, LedgerFailure> =
        awx_ledger_service::committed!(ledger, |conn| ledger.fee_tiers(conn, &FeeTiers { owner }));
    result.unwrap()
}

#[tokio::test]
async fn a_withdrawal_is_held_then_captured_to_the_mirror_without_fee() {
    let t = TestLedger::new().await;
    let (owner, agent) = (AccountId::new(), AgentId::new());
    t.deposit(owner, agent, usdc("1.00")).await.unwrap();

    let command = withdrawal(owner, agent, usdc("0.40"));
    let held = hold_withdrawal(&t, &command).await.unwrap();
    assert_eq!(held.ledger_id, command.withdrawal_id, "the hold's id is the withdrawal's");
    assert_eq!(held.available, usdc("0.60"));
    let balances = t.balances(owner, agent).await;
    assert_eq!(
        (balances.wallets[0].available, balances.wallets[0].held),
        (usdc("0.60"), usdc("0.40"))
    );
    let (metadata, kind, status): (serde_json::Value, String, String) =
        sqlx::query_as("SELECT metadata, kind, status FROM ledger.transfers WHERE id = $1")
            .bind(held.ledger_id.as_uuid())
            .fetch_one(&t.db.pool)
            .await
            .unwrap();
    assert_eq!((kind.as_str(), status.as_str()), ("hold", "pending"));
    assert_eq!(metadata["op"], "withdrawal_hold");
    assert_eq!(metadata["fee_rate"], "0");
    assert_eq!(metadata["withdrawal_id"], serde_json::json!(command.withdrawal_id));
    let legs: i64 =
        sqlx::query_scalar("SELECT count(*) FROM ledger.transfer_legs WHERE transfer_id = $1")
            .bind(held.ledger_id.as_uuid())
            .fetch_one(&t.db.pool)
            .await
            .unwrap();
    assert_eq!(legs, 1, "one leg, no fee");

    // A replay answers the same and writes nothing; the id with other contents is refused.
    let before = counts(&t).await;
    assert_eq!(hold_withdrawal(&t, &command).await.unwrap(), held);
    assert_eq!(counts(&t).await, before);
    let other = HoldWithdrawal { amount: usdc("0.30"), ..command.clone() };
    let conflict = hold_withdrawal(&t, &other).await.unwrap_err();
    assert_eq!(conflict.code(), Some("idempotency_conflict"), "{conflict:?}");
    assert_eq!(t.available(owner, agent).await, usdc("0.60"));

    // The capture posts the leg: the wallet is debited, the mirror credited, no fee.
    let capture = Capture { hold_id: held.ledger_id, amount: None };
    let captured = t.capture(&capture).await.unwrap();
    assert_eq!(
        (captured.amount, captured.fee, captured.released),
        (usdc("0.40"), Amount::ZERO, Amount::ZERO)
    );
    assert_eq!(t.capture(&capture).await.unwrap(), captured, "a capture replays");
    let balances = t.balances(owner, agent).await;
    assert_eq!(
        (balances.wallets[0].available, balances.wallets[0].held),
        (usdc("0.60"), Amount::ZERO)
    );
    assert_eq!(posted(&t, "wallet").await, (usdc("0.40"), usdc("1.00")));
    let (mirror_debits, mirror_credits) = posted(&t, "onchain_mirror").await;
    assert_eq!((mirror_debits, mirror_credits), (usdc("1.00"), usdc("0.40")));
    assert_eq!(mirror_debits.checked_sub(mirror_credits).unwrap(), usdc("0.60"), "left on chain");
    assert_eq!(t.count("captures").await, 0, "a withdrawal is not fee volume");
    let capture_metadata: serde_json::Value =
        sqlx::query_scalar("SELECT metadata FROM ledger.transfers WHERE id = $1")
            .bind(captured.ledger_id.as_uuid())
            .fetch_one(&t.db.pool)
            .await
            .unwrap();
    assert_eq!(capture_metadata["op"], "capture");
    assert_eq!(capture_metadata["withdrawal"], true);
    assert_eq!(
        kinds(&t, owner, agent).await,
        vec![LineKind::Deposit, LineKind::WithdrawalHold, LineKind::Withdrawal]
    );

    // More than is available is refused, and nothing is written.
    let before = counts(&t).await;
    let refused = hold_withdrawal(&t, &withdrawal(owner, agent, usdc("0.70"))).await.unwrap_err();
    assert!(matches!(refused, LedgerFailure::InsufficientFunds(_)), "{refused:?}");
    assert_eq!(refused.code(), Some("insufficient_funds"));
    assert_eq!(counts(&t).await, before);
    assert_eq!(t.available(owner, agent).await, usdc("0.60"));

    // A voided withdrawal gives its funds back and cannot be captured after.
    let voided = hold_withdrawal(&t, &withdrawal(owner, agent, usdc("0.25"))).await.unwrap();
    assert_eq!(voided.available, usdc("0.35"));
    let release = t.void(&Void { hold_id: voided.ledger_id }).await.unwrap();
    assert_eq!(release.released, usdc("0.25"));
    assert_eq!(t.available(owner, agent).await, usdc("0.60"));
    let late = t.capture(&Capture { hold_id: voided.ledger_id, amount: None }).await;
    assert!(matches!(late, Err(LedgerFailure::HoldNotPending { .. })), "{late:?}");

    // One left pending: the check passes with withdrawals captured, voided and pending.
    let pending = hold_withdrawal(&t, &withdrawal(owner, agent, usdc("0.10"))).await.unwrap();
    assert_eq!(pending.available, usdc("0.50"));
    assert_eq!(
        kinds(&t, owner, agent).await,
        vec![
            LineKind::Deposit,
            LineKind::WithdrawalHold,
            LineKind::Withdrawal,
            LineKind::WithdrawalHold,
            LineKind::Release,
            LineKind::WithdrawalHold,
        ]
    );
    assert_eq!(t.count("captures").await, 0);
    t.assert_consistent().await;
}

#[tokio::test]
async fn a_withdrawal_leaves_the_fee_tier_volume_unchanged() {
    let t = TestLedger::new().await;
    let (owner, agent) = (AccountId::new(), AgentId::new());
    t.deposit(owner, agent, usdc("10.00")).await.unwrap();
    // A payment counts in the volume.
    let hold = t.hold(&TestLedger::hold_command(owner, agent, 1, usdc("1.00"))).await.unwrap();
    t.capture(&Capture { hold_id: hold.ledger_id, amount: None }).await.unwrap();
    let before = fee_tiers(&t, owner).await;
    assert_eq!(before.volume_30d_usd, rust_decimal::Decimal::ONE);
    assert_eq!(t.count("captures").await, 1);

    let held = hold_withdrawal(&t, &withdrawal(owner, agent, usdc("5.00"))).await.unwrap();
    t.capture(&Capture { hold_id: held.ledger_id, amount: None }).await.unwrap();
    assert_eq!(t.count("captures").await, 1, "the withdrawal added no capture row");
    let after = fee_tiers(&t, owner).await;
    assert_eq!(after.volume_30d_usd, before.volume_30d_usd);
    assert_eq!(after.current_tier, before.current_tier);
    t.assert_consistent().await;
}

#[tokio::test]
async fn malformed_withdrawals_are_refused() {
    let t = TestLedger::new().await;
    let (owner, agent) = (AccountId::new(), AgentId::new());
    t.deposit(owner, agent, usdc("1.00")).await.unwrap();
    let zero = HoldWithdrawal { amount: Amount::ZERO, ..withdrawal(owner, agent, usdc("0.10")) };
    assert_eq!(hold_withdrawal(&t, &zero).await.unwrap_err().code(), Some("invalid_request"));
    let no_time = HoldWithdrawal { timeout_seconds: 0, ..withdrawal(owner, agent, usdc("0.10")) };
    assert_eq!(hold_withdrawal(&t, &no_time).await.unwrap_err().code(), Some("invalid_request"));
    assert_eq!(t.count("transfers").await, 1);
}

#[tokio::test]
async fn the_sweeper_expires_a_withdrawal_hold() {
    let t = TestLedger::new().await;
    let (owner, agent) = (AccountId::new(), AgentId::new());
    t.deposit(owner, agent, usdc("1.00")).await.unwrap();
    let command = HoldWithdrawal { timeout_seconds: 1, ..withdrawal(owner, agent, usdc("0.40")) };
    let held = hold_withdrawal(&t, &command).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while t.ledger.expired_holds(10).await.unwrap().is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "the hold never expired");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(awx_ledger_service::sweeper::sweep_once(&t.ledger).await.unwrap(), 1);
    assert_eq!(t.available(owner, agent).await, usdc("1.00"));
    let late = t.capture(&Capture { hold_id: held.ledger_id, amount: None }).await;
    assert!(matches!(late, Err(LedgerFailure::HoldNotPending { .. })), "{late:?}");
    assert_eq!(
        kinds(&t, owner, agent).await,
        vec![LineKind::Deposit, LineKind::WithdrawalHold, LineKind::Expiry]
    );
    t.assert_consistent().await;
}

#[tokio::test]
async fn a_withdrawal_hold_is_answered_over_the_bus() {
    let t = TestLedger::new().await;
    let namespace = awx_test_support::RedisNamespace::new();
    let mut config = awx_bus::BusConfig::new("ledger", "ledger");
    config.redis_url = secrecy::SecretString::from(awx_test_support::redis_url());
    config.prefix = namespace.prefix().to_owned();
    let server_bus = awx_bus::Bus::connect(config.clone()).await.unwrap();
    let cancel = tokio_util::sync::CancellationToken::new();
    let server = awx_ledger_service::commands::LedgerHandlers::new(t.ledger.clone())
        .server(&server_bus)
        .unwrap();
    let running = tokio::spawn(server.run(cancel.clone()));
    let mut client_config = config;
    client_config.service = "settlement".into();
    client_config.schema = "settlement".into();
    let client = awx_bus::Bus::connect(client_config).await.unwrap();
    let (owner, agent) = (AccountId::new(), AgentId::new());
    t.deposit(owner, agent, usdc("1")).await.unwrap();

    let command = withdrawal(owner, agent, usdc("0.40"));
    let held = client.send(&command, Duration::from_secs(10)).await.unwrap();
    assert_eq!((held.ledger_id, held.available), (command.withdrawal_id, usdc("0.60")));
    let too_big = withdrawal(owner, agent, usdc("0.70"));
    match client.send(&too_big, Duration::from_secs(10)).await {
        Err(awx_bus::BusError::Rejected { code, .. }) => assert_eq!(code, "insufficient_funds"),
        other => panic!("expected a rejection, got {other:?}"),
    }
    let captured = client
        .send(&Capture { hold_id: held.ledger_id, amount: None }, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!((captured.amount, captured.fee), (usdc("0.40"), Amount::ZERO));
    cancel.cancel();
    running.await.unwrap().unwrap();
    t.assert_consistent().await;
}
