//! The ledger's bus commands: each handler runs the operation in the bus's transaction (so the
//! inbox row, the stored reply and the ledger's writes commit together) and maps failures to
//! stable rejection codes; database trouble is transient, so the command is redelivered.
//! Every state change is registered for group commit (`handle_grouped`: the commands waiting
//! at the same time share one transaction, each in a savepoint), since none calls another
//! service.

use std::sync::Arc;

use awx_api::ledger::{
    Balances, Capture, Deposit, FeeTiers, FeesCollected, Hold, HoldStatus, HoldWithdrawal,
    PayoutSettled, ReverseDeposit, Statement, Void,
};
use awx_bus::{Command, CommandHandler, CommandMeta, CommandServer, HandlerError, QueryHandler};
use sqlx::{PgConnection, PgPool};

use crate::error::LedgerFailure;
use crate::ops::Ledger;

/// The handlers of every ledger command.
#[derive(Debug, Clone)]
pub struct LedgerHandlers {
    ledger: Arc<Ledger>,
}

fn handler_error(failure: LedgerFailure) -> HandlerError {
    match failure.code() {
        Some(code) => HandlerError::reject(code, failure.to_string()),
        None => {
            tracing::warn!(error.message = %failure, "ledger command failed; it will be retried");
            HandlerError::transient(failure)
        }
    }
}

macro_rules! handle {
    ($command:ty, |$ledger:ident, $conn:ident, $value:ident| $body:expr) => {
        impl CommandHandler<$command> for LedgerHandlers {
            async fn handle(
                &self,
                $conn: &mut PgConnection,
                $value: $command,
                _meta: CommandMeta,
            ) -> Result<<$command as Command>::Reply, HandlerError> {
                let $ledger = &self.ledger;
                $body.await.map_err(handler_error)
            }
        }
    };
}

/// A query's handler reads on a connection of the pool, outside any transaction of the bus's.
macro_rules! answer {
    ($query:ty, |$ledger:ident, $conn:ident, $value:ident| $body:expr) => {
        impl QueryHandler<$query> for LedgerHandlers {
            async fn handle(
                &self,
                pool: &PgPool,
                $value: $query,
                _meta: CommandMeta,
            ) -> Result<<$query as Command>::Reply, HandlerError> {
                let $ledger = &self.ledger;
                let mut connection = pool.acquire().await.map_err(HandlerError::transient)?;
                let $conn = &mut *connection;
                $body.await.map_err(handler_error)
            }
        }
    };
}

handle!(Deposit, |ledger, conn, command| ledger.deposit(conn, &command));
handle!(ReverseDeposit, |ledger, conn, command| ledger.reverse_deposit(conn, &command));
handle!(Hold, |ledger, conn, command| ledger.hold(conn, &command));
handle!(HoldWithdrawal, |ledger, conn, command| ledger.hold_withdrawal(conn, &command));
handle!(Capture, |ledger, conn, command| ledger.capture(conn, &command));
handle!(Void, |ledger, conn, command| ledger.void(conn, &command, false));
handle!(PayoutSettled, |ledger, conn, command| ledger.payout_settled(conn, &command));
handle!(FeesCollected, |ledger, conn, command| ledger.fees_collected(conn, &command));
answer!(Balances, |ledger, conn, query| ledger.balances(conn, &query));
answer!(Statement, |ledger, conn, query| ledger.statement(conn, &query));
answer!(FeeTiers, |ledger, conn, query| ledger.fee_tiers(conn, &query));
answer!(HoldStatus, |ledger, conn, query| ledger.hold_status(conn, &query));

impl LedgerHandlers {
    /// Handlers over `ledger`.
    pub fn new(ledger: Arc<Ledger>) -> Self {
        Self { ledger }
    }

    /// A command server of the `ledger` family with every handler registered.
    pub fn server(self, bus: &awx_bus::Bus) -> Result<CommandServer, awx_bus::BusError> {
        CommandServer::new(bus, self.ledger.pool.clone(), awx_api::ledger::FAMILY)?
            .handle_grouped::<Deposit, _>(self.clone())?
            .handle_grouped::<ReverseDeposit, _>(self.clone())?
            .handle_grouped::<Hold, _>(self.clone())?
            .handle_grouped::<HoldWithdrawal, _>(self.clone())?
            .handle_grouped::<Capture, _>(self.clone())?
            .handle_grouped::<Void, _>(self.clone())?
            .handle_grouped::<PayoutSettled, _>(self.clone())?
            .handle_grouped::<FeesCollected, _>(self.clone())?
            .answer::<HoldStatus, _>(self.clone())?
            .answer::<Balances, _>(self.clone())?
            .answer::<Statement, _>(self.clone())?
            .answer::<FeeTiers, _>(self)
    }
}
