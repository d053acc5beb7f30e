//! A ledger on a fresh database, and shorthands for its operations.

use std::sync::Arc;

use awx_api::ledger::{Asset, Capture, Deposit, DepositSource, Hold, Void};
use awx_ledger_service::error::LedgerFailure;
use awx_ledger_service::{Ledger, LedgerSettings};
use awx_test_support::TestDb;
use awx_types::{AccountId, AgentId, Amount, PaymentId};
use awx_x402::{Address, B256};

pub(crate) struct TestLedger {
    pub(crate) db: TestDb,
    pub(crate) ledger: Arc<Ledger>,
}

pub(crate) fn asset() -> Asset {
    Asset {
        network: "eip155:31337".into(),
        token: "0x5FbDB2315678afecb367f032d93F642f64180aa3".parse().unwrap(),
        decimals: 6,
    }
}

pub(crate) fn usdc(dollars: &str) -> Amount {
    Amount::from_decimal_str(dollars, 6).unwrap()
}

pub(crate) fn payee(n: u8) -> Address {
    Address::repeat_byte(n)
}

impl TestLedger {
    pub(crate) async fn new() -> Self {
        Self::with(|_| {}).await
    }

    pub(crate) async fn with(adjust: impl FnOnce(&mut LedgerSettings)) -> Self {
        awx_test_support::init_logging();
        let db = TestDb::new().await;
        let mut settings = LedgerSettings::default();
        adjust(&mut settings);
        let ledger = Arc::new(Ledger::new(db.pool.clone(), settings));
        Self { db, ledger }
    }

    pub(crate) async fn deposit(
        &self,
        owner: AccountId,
        agent: AgentId,
        amount: Amount,
    ) -> Result<awx_api::ledger::DepositReply, LedgerFailure> {
        let command = Deposit {
            owner,
            agent,
            asset: asset(),
            amount,
            tx_hash: B256::random(),
            log_index: 0,
            source: DepositSource::Faucet,
            block_hash: None,
        };
        self.run_deposit(&command).await
    }

    pub(crate) async fn run_deposit(
        &self,
        command: &Deposit,
    ) -> Result<awx_api::ledger::DepositReply, LedgerFailure> {
        let ledger = &self.ledger;
        awx_ledger_service::committed!(ledger, |conn| ledger.deposit(conn, command))
    }

    pub(crate) async fn hold(
        &self,
        command: &Hold,
    ) -> Result<awx_api::ledger::HoldReply, LedgerFailure> {
        let ledger = &self.ledger;
        awx_ledger_service::committed!(ledger, |conn| ledger.hold(conn, command))
    }

    pub(crate) fn hold_command(
        owner: AccountId,
        agent: AgentId,
        payee_byte: u8,
        amount: Amount,
    ) -> Hold {
        Hold {
            payment_id: PaymentId::new(),
            owner,
            agent,
            asset: asset(),
            payee: payee(payee_byte),
            amount,
            timeout_seconds: 300,
        }
    }

    pub(crate) async fn capture(
        &self,
        command: &Capture,
    ) -> Result<awx_api::ledger::CaptureReply, LedgerFailure> {
        let ledger = &self.ledger;
        awx_ledger_service::committed!(ledger, |conn| ledger.capture(conn, command))
    }

    pub(crate) async fn void(
        &self,
        command: &Void,
    ) -> Result<awx_api::ledger::VoidReply, LedgerFailure> {
        let ledger = &self.ledger;
        awx_ledger_service::committed!(ledger, |conn| ledger.void(conn, command, false))
    }

    pub(crate) async fn balances(
        &self,
        owner: AccountId,
        agent: AgentId,
    ) -> awx_api::ledger::BalancesReply {
        let ledger = &self.ledger;
        let query = awx_api::ledger::Balances { owner, agent };
        let result: Result<_, LedgerFailure> =
            awx_ledger_service::committed!(ledger, |conn| ledger.balances(conn, &query));
        result.unwrap()
    }

    pub(crate) async fn available(&self, owner: AccountId, agent: AgentId) -> Amount {
        self.balances(owner, agent).await.wallets.first().map_or(Amount::ZERO, |w| w.available)
    }

    pub(crate) async fn count(&self, table: &str) -> i64 {
        sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM ledger.{table}")))
            .fetch_one(&self.db.pool)
            .await
            .unwrap()
    }

    pub(crate) async fn assert_consistent(&self) {
        let violations = awx_ledger_service::check::check(&self.db.pool).await.unwrap();
        assert!(violations.is_empty(), "ledger check found: {violations:#?}");
    }
}
