//! Reversing deposits whose block was reorganised away: the wallet gives back what it has, the
//! platform's `reorg_loss` account covers what was already spent, replays move nothing, and a
//! deposit keyed by its block hash is credited again from another block.

use std::time::Duration;

use awx_api::ledger::{
    Capture, Deposit, DepositReversed, DepositSource, LineKind, ReverseDeposit, Statement,
    StatementReply,
};
use awx_bus::{Bus, BusConfig, BusError};
use awx_ledger_service::commands::LedgerHandlers;
use awx_ledger_service::error::LedgerFailure;
use awx_test_support::RedisNamespace;
use awx_types::{AccountId, AgentId, Amount};
use awx_x402::B256;
use tokio_util::sync::CancellationToken;

use crate::helpers::{TestLedger, asset, usdc};

fn chain_deposit(owner: AccountId, agent: AgentId, amount: Amount, block: Option<B256>) -> Deposit {
    Deposit {
        owner,
        agent,
        asset: asset(),
        amount,
        tx_hash: B256::repeat_byte(0x11),
        log_index: 4,
        source: DepositSource::Chain,
        block_hash: block,
    }
}

fn reversal(deposit: &Deposit) -> ReverseDeposit {
    ReverseDeposit { deposit: deposit.clone(), reason: "block 0xaa… left the chain".into() }
}

async fn reverse(
    t: &TestLedger,
    command: &ReverseDeposit,
) -> Result<DepositReversed, LedgerFailure> {
    let ledger = &t.ledger;
    awx_ledger_service::committed!(ledger, |conn| ledger.reverse_deposit(conn, command))
}

async fn statement(t: &TestLedger, owner: AccountId, agent: AgentId) -> StatementReply {
    let ledger = &t.ledger;
    let query = Statement { owner, agent, after: None, limit: 100 };
    let result: Result<_, LedgerFailure> =
        awx_ledger_service::committed!(ledger, |conn| ledger.statement(conn, &query));
    result.unwrap()
}

/// (debits posted, credits posted) of the one platform account with `code`.
async fn platform_account(t: &TestLedger, code: &str) -> (Amount, Amount) {
    let (debits, credits): (String, String) = sqlx::query_as(
        "SELECT debits_posted::text, credits_posted::text FROM ledger.accounts WHERE code = $1",
    )
    .bind(code)
    .fetch_one(&t.db.pool)
    .await
    .unwrap();
    (Amount::parse_atomic(&debits).unwrap(), Amount::parse_atomic(&credits).unwrap())
}

async fn counts(t: &TestLedger) -> (i64, i64, i64) {
    (t.count("transfers").await, t.count("entries").await, t.count("transfer_legs").await)
}

#[tokio::test]
async fn a_reversal_takes_the_deposit_back_once_and_another_block_credits_it_again() {
    let t = TestLedger::new().await;
    let (owner, agent) = (AccountId::new(), AgentId::new());
    t.deposit(owner, agent, usdc("1.00")).await.unwrap();
    let in_a = chain_deposit(owner, agent, usdc("2.50"), Some(B256::repeat_byte(0xaa)));
    let credited = t.run_deposit(&in_a).await.unwrap();
    assert_eq!(credited.available, usdc("3.50"));

    let reversed = reverse(&t, &reversal(&in_a)).await.unwrap();
    assert_eq!(
        (reversed.from_wallet, reversed.shortfall, reversed.available),
        (usdc("2.50"), Amount::ZERO, usdc("1.00"))
    );
    assert_eq!(t.available(owner, agent).await, usdc("1.00"), "back to before the deposit");
    let lines = statement(&t, owner, agent).await.lines;
    let last = lines.last().unwrap();
    assert_eq!(
        (last.kind, last.ledger_id, last.debit, last.credit, last.available_after),
        (LineKind::DepositReversal, reversed.ledger_id, usdc("2.50"), Amount::ZERO, usdc("1.00"))
    );
    let metadata: serde_json::Value =
        sqlx::query_scalar("SELECT metadata FROM ledger.transfers WHERE id = $1")
            .bind(reversed.ledger_id.as_uuid())
            .fetch_one(&t.db.pool)
            .await
            .unwrap();
    assert_eq!(metadata["op"], "deposit_reversal");
    assert_eq!(metadata["block_hash"], serde_json::json!(B256::repeat_byte(0xaa)));
    assert_eq!(metadata["reason"], "block 0xaa… left the chain");
    assert_eq!(metadata["deposit"], serde_json::json!(credited.ledger_id));

    // A retry answers the same and moves nothing.
    let before = counts(&t).await;
    assert_eq!(reverse(&t, &reversal(&in_a)).await.unwrap(), reversed);
    assert_eq!(counts(&t).await, before);
    assert_eq!(t.available(owner, agent).await, usdc("1.00"));

    // The same transfer in another block is another deposit.
    let in_b = Deposit { block_hash: Some(B256::repeat_byte(0xbb)), ..in_a.clone() };
    let again = t.run_deposit(&in_b).await.unwrap();
    assert_ne!(again.ledger_id, credited.ledger_id);
    assert_eq!(again.available, usdc("3.50"));
    assert_eq!(t.run_deposit(&in_a).await.unwrap(), credited, "block A's deposit still replays");
    assert_eq!(t.available(owner, agent).await, usdc("3.50"));
    // The mirror holds exactly what is on chain: the faucet's 1.00 and block B's 2.50.
    let (debits, credits) = platform_account(&t, "onchain_mirror").await;
    assert_eq!(debits.checked_sub(credits).unwrap(), usdc("3.50"));
    t.assert_consistent().await;
}

#[tokio::test]
async fn what_was_already_held_is_taken_from_reorg_loss_and_no_wallet_goes_negative() {
    let t = TestLedger::new().await;
    let (owner, agent) = (AccountId::new(), AgentId::new());
    let deposit = chain_deposit(owner, agent, usdc("100"), Some(B256::repeat_byte(0xaa)));
    t.run_deposit(&deposit).await.unwrap();
    let hold = t.hold(&TestLedger::hold_command(owner, agent, 1, usdc("70"))).await.unwrap();
    // The hold takes 70 plus its 2% fee.
    let held = hold.amount.checked_add(hold.fee).unwrap();
    assert_eq!(held, usdc("71.4"));
    assert_eq!(hold.available, usdc("28.6"));

    let reversed = reverse(&t, &reversal(&deposit)).await.unwrap();
    assert_eq!(
        (reversed.from_wallet, reversed.shortfall, reversed.available),
        (usdc("28.6"), held, Amount::ZERO)
    );
    let wallet = t.balances(owner, agent).await.wallets[0].clone();
    assert_eq!((wallet.available, wallet.held), (Amount::ZERO, held), "the hold is untouched");
    assert_eq!(platform_account(&t, "reorg_loss").await, (held, Amount::ZERO));
    let (debits, credits) = platform_account(&t, "onchain_mirror").await;
    assert_eq!(debits, credits, "the deposit's tokens are no longer on chain");
    let legs: i64 =
        sqlx::query_scalar("SELECT count(*) FROM ledger.transfer_legs WHERE transfer_id = $1")
            .bind(reversed.ledger_id.as_uuid())
            .fetch_one(&t.db.pool)
            .await
            .unwrap();
    assert_eq!(legs, 2, "wallet and reorg_loss legs in one transfer");
    t.assert_consistent().await;

    // The payment still goes through; the wallet ends at zero, never below.
    t.capture(&Capture { hold_id: hold.ledger_id, amount: None }).await.unwrap();
    let wallet = t.balances(owner, agent).await.wallets[0].clone();
    assert_eq!((wallet.available, wallet.held), (Amount::ZERO, Amount::ZERO));
    t.assert_consistent().await;
}

#[tokio::test]
async fn a_fully_spent_deposit_is_reversed_from_reorg_loss_alone() {
    let t = TestLedger::new().await;
    let (owner, agent) = (AccountId::new(), AgentId::new());
    let deposit = chain_deposit(owner, agent, usdc("1.02"), Some(B256::repeat_byte(0xaa)));
    t.run_deposit(&deposit).await.unwrap();
    let hold = t.hold(&TestLedger::hold_command(owner, agent, 1, usdc("1"))).await.unwrap();
    assert_eq!(hold.available, Amount::ZERO);

    let reversed = reverse(&t, &reversal(&deposit)).await.unwrap();
    assert_eq!((reversed.from_wallet, reversed.shortfall), (Amount::ZERO, usdc("1.02")));
    let legs: i64 =
        sqlx::query_scalar("SELECT count(*) FROM ledger.transfer_legs WHERE transfer_id = $1")
            .bind(reversed.ledger_id.as_uuid())
            .fetch_one(&t.db.pool)
            .await
            .unwrap();
    assert_eq!(legs, 1, "no leg of zero from the wallet");
    assert_eq!(platform_account(&t, "reorg_loss").await, (usdc("1.02"), Amount::ZERO));
    t.assert_consistent().await;
}

#[tokio::test]
async fn reversing_an_unrecorded_or_mismatched_deposit_is_refused_and_writes_nothing() {
    let t = TestLedger::new().await;
    let (owner, agent) = (AccountId::new(), AgentId::new());
    let deposit = chain_deposit(owner, agent, usdc("5"), Some(B256::repeat_byte(0xaa)));

    let before = counts(&t).await;
    let error = reverse(&t, &reversal(&deposit)).await.unwrap_err();
    assert!(matches!(error, LedgerFailure::DepositNotFound(_)), "{error:?}");
    assert_eq!(error.code(), Some("deposit_not_found"));
    assert_eq!(counts(&t).await, before);

    t.run_deposit(&deposit).await.unwrap();
    let before = counts(&t).await;
    let wrong_amount = Deposit { amount: usdc("4"), ..deposit.clone() };
    let error = reverse(&t, &reversal(&wrong_amount)).await.unwrap_err();
    assert!(matches!(error, LedgerFailure::Invalid(_)), "{error:?}");
    assert_eq!(error.code(), Some("invalid_request"));
    let other_agent = Deposit { agent: AgentId::new(), ..deposit.clone() };
    let error = reverse(&t, &reversal(&other_agent)).await.unwrap_err();
    assert_eq!(error.code(), Some("invalid_request"), "{error:?}");
    let other_block = Deposit { block_hash: Some(B256::repeat_byte(0xcc)), ..deposit.clone() };
    let error = reverse(&t, &reversal(&other_block)).await.unwrap_err();
    assert_eq!(error.code(), Some("deposit_not_found"), "{error:?}");
    assert_eq!(counts(&t).await, before);
    assert_eq!(t.available(owner, agent).await, usdc("5"));
    t.assert_consistent().await;
}

#[tokio::test]
async fn a_deposit_without_a_block_hash_keeps_its_old_key() {
    let t = TestLedger::new().await;
    let (owner, agent) = (AccountId::new(), AgentId::new());
    let deposit = chain_deposit(owner, agent, usdc("3"), None);
    let first = t.run_deposit(&deposit).await.unwrap();
    assert_eq!(t.run_deposit(&deposit).await.unwrap(), first);
    assert_eq!(t.available(owner, agent).await, usdc("3"), "credited once");
    let key: String =
        sqlx::query_scalar("SELECT idempotency_key FROM ledger.transfers WHERE id = $1")
            .bind(first.ledger_id.as_uuid())
            .fetch_one(&t.db.pool)
            .await
            .unwrap();
    assert_eq!(key, format!("deposit:eip155:31337:{}:4", B256::repeat_byte(0x11)));

    // It can be reversed by that key too.
    let reversed = reverse(&t, &reversal(&deposit)).await.unwrap();
    assert_eq!(reversed.from_wallet, usdc("3"));
    assert_eq!(t.available(owner, agent).await, Amount::ZERO);
    t.assert_consistent().await;
}

#[tokio::test]
async fn a_reversal_is_answered_over_the_bus() {
    let t = TestLedger::new().await;
    let namespace = RedisNamespace::new();
    let mut config = BusConfig::new("ledger", "ledger");
    config.redis_url = secrecy::SecretString::from(awx_test_support::redis_url());
    config.prefix = namespace.prefix().to_owned();
    let server_bus = Bus::connect(config.clone()).await.unwrap();
    let cancel = CancellationToken::new();
    let server = LedgerHandlers::new(t.ledger.clone()).server(&server_bus).unwrap();
    let running = tokio::spawn(server.run(cancel.clone()));
    let mut client_config = config;
    client_config.service = "settlement".into();
    client_config.schema = "settlement".into();
    let client = Bus::connect(client_config).await.unwrap();

    let (owner, agent) = (AccountId::new(), AgentId::new());
    let deposit = chain_deposit(owner, agent, usdc("2"), Some(B256::repeat_byte(0xaa)));
    match client.send(&reversal(&deposit), Duration::from_secs(10)).await {
        Err(BusError::Rejected { code, .. }) => assert_eq!(code, "deposit_not_found"),
        other => panic!("expected a rejection, got {other:?}"),
    }
    client.send(&deposit, Duration::from_secs(10)).await.unwrap();
    let reversed = client.send(&reversal(&deposit), Duration::from_secs(10)).await.unwrap();
    assert_eq!((reversed.from_wallet, reversed.available), (usdc("2"), Amount::ZERO));
    cancel.cancel();
    running.await.unwrap().unwrap();
}
