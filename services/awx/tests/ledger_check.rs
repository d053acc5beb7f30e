//! `awx ledger check` exits 0 on a sound ledger and 1, naming the violation, on a tampered one.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail by panicking"
)]

use std::process::Command;

use awx_api::ledger::{Asset, Deposit, DepositSource};
use awx_ledger_service::{Ledger, LedgerSettings};
use awx_test_support::TestDb;
use awx_types::{AccountId, AgentId, Amount};

#[tokio::test]
async fn the_checker_command_reports_violations_with_its_exit_code() {
    let db = TestDb::new().await;
    let ledger = Ledger::new(db.pool.clone(), LedgerSettings::default());
    let deposit = Deposit {
        owner: AccountId::new(),
        agent: AgentId::new(),
        asset: Asset {
            network: "eip155:31337".into(),
            token: awx_x402::Address::repeat_byte(5),
            decimals: 6,
        },
        amount: Amount::from_atomic(5_000_000),
        tx_hash: awx_x402::B256::random(),
        log_index: 0,
        source: DepositSource::Faucet,
        block_hash: None,
    };
    let recorded: Result<_, awx_ledger_service::error::LedgerFailure> =
        awx_ledger_service::committed!(ledger, |conn| ledger.deposit(conn, &deposit));
    recorded.unwrap();

    let check = || {
        Command::new(env!("CARGO_BIN_EXE_awx"))
            .args(["ledger", "--database-url", &db.url(), "check"])
            .output()
            .unwrap()
    };
    let sound = check();
    assert!(sound.status.success(), "{}", String::from_utf8_lossy(&sound.stdout));
    assert!(String::from_utf8_lossy(&sound.stdout).contains("every invariant holds"));

    sqlx::query(
        "UPDATE ledger.accounts SET credits_posted = credits_posted - 1 WHERE code = 'wallet'",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    let tampered = check();
    assert_eq!(tampered.status.code(), Some(1));
    let report = String::from_utf8_lossy(&tampered.stdout);
    assert!(
        report.contains("VIOLATION [account counters equal the sums of their entries]"),
        "{report}"
    );
}
