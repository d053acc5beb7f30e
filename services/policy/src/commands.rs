//! The policy service's bus commands (family `policy`, types in `awx_api::policy`).
//!
//! A payment's reservation is written in the service's own committed transaction (it must be
//! durable before the ledger and the signer are asked anything); what ends a state change (a
//! payment becoming `authorized`, a decision, a capture) is written in the bus's transaction of
//! the command (`handler_in_tx!`), so it commits with the stored reply. The inbox answers a
//! redelivered command from storage, and every operation is idempotent by the id the caller
//! minted.

use std::sync::Arc;

use awx_api::policy::{
    AgentList, AgentView, AuthorizationUsed, AuthorizationUsedReply, CreateAgent, CreateSession,
    Decide, DeleteAgent, GetAgent, GetPayment, GetSession, GetWithdrawalAddresses, ListAgents,
    LookupWallets, NetDecide, NetDecision, OwnPayment, OwnPaymentReply, OwnVerify, Pay,
    PaymentView, RevokeSession, SessionView, SetPolicy, SetWithdrawalAddresses, WalletOwners,
    WithdrawDecide, WithdrawalAddresses,
};
use awx_bus::{CommandHandler, CommandMeta, CommandServer, HandlerError, QueryHandler};
use sqlx::{PgConnection, PgPool};

use crate::engine::Engine;
use crate::{agents, approvals, net, own, pay, sessions, watch, withdrawals};

/// The handlers of the policy service's commands.
#[derive(Debug, Clone)]
pub struct PolicyHandlers {
    engine: Arc<Engine>,
}

macro_rules! handler {
    ($command:ty, $reply:ty, |$engine:ident, $c:ident| $body:expr) => {
        handler_in_tx!($command, $reply, |$engine, _tx, $c| $body);
    };
}

/// A state change whose work ends in the bus's transaction (`$tx`, committed with the stored
/// reply).
macro_rules! handler_in_tx {
    ($command:ty, $reply:ty, |$engine:ident, $tx:ident, $c:ident| $body:expr) => {
        impl CommandHandler<$command> for PolicyHandlers {
            async fn handle(
                &self,
                $tx: &mut PgConnection,
                $c: $command,
                _meta: CommandMeta,
            ) -> Result<$reply, HandlerError> {
                let $engine = &*self.engine;
                $body.await.map_err(HandlerError::from)
            }
        }
    };
}

/// A query: answered outside the bus's inbox and transaction; it reads only.
macro_rules! query {
    ($command:ty, $reply:ty, |$engine:ident, $c:ident| $body:expr) => {
        impl QueryHandler<$command> for PolicyHandlers {
            async fn handle(
                &self,
                _pool: &PgPool,
                $c: $command,
                _meta: CommandMeta,
            ) -> Result<$reply, HandlerError> {
                let $engine = &*self.engine;
                $body.await.map_err(HandlerError::from)
            }
        }
    };
}

handler!(CreateAgent, AgentView, |engine, command| agents::create(engine, &command));
query!(GetAgent, AgentView, |engine, command| agents::get(engine, command.owner, command.agent_id));
query!(ListAgents, AgentList, |engine, command| async move {
    agents::list(engine, command.owner).await.map(|agents| AgentList { agents })
});
handler!(DeleteAgent, AgentView, |engine, command| agents::delete(
    engine,
    command.owner,
    command.agent_id
));
handler!(SetPolicy, AgentView, |engine, command| agents::set_policy(engine, &command));
handler!(CreateSession, SessionView, |engine, command| sessions::create(engine, &command));
query!(GetSession, SessionView, |engine, command| sessions::get(
    engine,
    command.owner,
    command.session_id
));
handler!(RevokeSession, SessionView, |engine, command| sessions::revoke(
    engine,
    command.owner,
    command.session_id
));
handler_in_tx!(Pay, PaymentView, |engine, tx, command| pay::pay(engine, tx, &command));
query!(GetPayment, PaymentView, |engine, command| approvals::get(
    engine,
    command.owner,
    command.ledger_id
));
handler_in_tx!(Decide, PaymentView, |engine, tx, command| approvals::decide(engine, tx, &command));
handler_in_tx!(OwnPayment, OwnPaymentReply, |engine, tx, command| own::own_payment(
    engine, tx, &command
));
query!(OwnVerify, OwnPaymentReply, |engine, query| own::own_verify(engine, &query));
handler!(NetDecide, NetDecision, |engine, command| net::net_decide(engine, &command));
handler!(WithdrawDecide, NetDecision, |engine, command| withdrawals::withdraw_decide(
    engine, &command
));
handler!(SetWithdrawalAddresses, WithdrawalAddresses, |engine, command| {
    withdrawals::set_addresses(engine, &command)
});
query!(GetWithdrawalAddresses, WithdrawalAddresses, |engine, command| {
    withdrawals::get_addresses(engine, &command)
});
query!(LookupWallets, WalletOwners, |engine, command| watch::lookup_wallets(engine, &command));
handler!(AuthorizationUsed, AuthorizationUsedReply, |engine, command| watch::authorization_used(
    engine, &command
));

impl PolicyHandlers {
    /// Handlers over `engine`.
    pub fn new(engine: Arc<Engine>) -> Self {
        Self { engine }
    }

    /// A command server of the `policy` family; its inbox uses `inbox_pool`, separate from the
    /// pool the work uses, so commands waiting on the ledger or the signer never starve it.
    pub fn server(
        self,
        bus: &awx_bus::Bus,
        inbox_pool: PgPool,
    ) -> Result<CommandServer, awx_bus::BusError> {
        CommandServer::new(bus, inbox_pool, awx_api::policy::FAMILY)?
            .handle::<CreateAgent, _>(self.clone())?
            .answer::<GetAgent, _>(self.clone())?
            .answer::<ListAgents, _>(self.clone())?
            .handle::<DeleteAgent, _>(self.clone())?
            .handle::<SetPolicy, _>(self.clone())?
            .handle::<CreateSession, _>(self.clone())?
            .answer::<GetSession, _>(self.clone())?
            .handle::<RevokeSession, _>(self.clone())?
            .handle::<Pay, _>(self.clone())?
            .answer::<GetPayment, _>(self.clone())?
            .handle::<Decide, _>(self.clone())?
            .handle::<OwnPayment, _>(self.clone())?
            .answer::<OwnVerify, _>(self.clone())?
            .handle::<NetDecide, _>(self.clone())?
            .handle::<WithdrawDecide, _>(self.clone())?
            .handle::<SetWithdrawalAddresses, _>(self.clone())?
            .answer::<GetWithdrawalAddresses, _>(self.clone())?
            .answer::<LookupWallets, _>(self.clone())?
            .handle::<AuthorizationUsed, _>(self)
    }
}
