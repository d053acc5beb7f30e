//! The facilitator's bus commands (and the development faucet's). Settlement state is written in
//! the service's own committed transactions (it must be durable before a broadcast), not in the
//! bus's inbox transaction; the inbox still makes a redelivered command answer from storage, and a
//! faucet command's id is its mint's id, so a redelivery never mints twice.

use std::sync::Arc;

use awx_api::deposits::{DepositList, ListDeposits};
use awx_api::facilitator::{
    AuthorizationState, AuthorizationStatus, ExternalRecorded, Faucet, FaucetReply, ItemSettlement,
    ListSettlements, PaymentSettlement, RecordExternal, RegisterWallet, Settle, SettlementList,
    Supported, Verify, WalletRegistered, codes,
};
use awx_api::withdrawals::{
    GetWithdrawal, ListWithdrawals, RequestWithdrawal, WithdrawalList, WithdrawalView,
};
use awx_bus::{CommandHandler, CommandMeta, CommandServer, HandlerError, QueryHandler};
use sqlx::{PgConnection, PgPool};

use crate::facilitator::{Facilitator, FacilitatorError};
use crate::own_wallets::RegisterError;

/// The handlers of the facilitator's commands.
#[derive(Debug, Clone)]
pub struct FacilitatorHandlers {
    facilitator: Arc<Facilitator>,
}

fn handler_error(error: FacilitatorError) -> HandlerError {
    match error {
        FacilitatorError::InvalidRequest(message) => {
            HandlerError::reject(codes::INVALID_REQUEST, message)
        }
        FacilitatorError::Chain(message) => HandlerError::reject(codes::CHAIN_UNAVAILABLE, message),
        FacilitatorError::PolicyUnavailable(message) => {
            HandlerError::reject(codes::POLICY_UNAVAILABLE, message)
        }
        FacilitatorError::FaucetUnavailable(message) => {
            HandlerError::reject(codes::FAUCET_UNAVAILABLE, message)
        }
        FacilitatorError::Rejected { code, message } => HandlerError::reject(&code, message),
        // Postgres refused the request's data (a NUL character, a number out of range): final.
        FacilitatorError::Database(error) if HandlerError::is_data_exception(&error) => {
            HandlerError::database(&error)
        }
        other @ (FacilitatorError::Signer(_)
        | FacilitatorError::Ledger(_)
        | FacilitatorError::Inconsistent(_)
        | FacilitatorError::Database(_)) => {
            tracing::warn!(error.message = %other, "facilitator command failed; it will be retried");
            HandlerError::transient(other)
        }
    }
}

impl QueryHandler<Verify> for FacilitatorHandlers {
    async fn handle(
        &self,
        _pool: &PgPool,
        command: Verify,
        _meta: CommandMeta,
    ) -> Result<awx_x402::VerifyResponse, HandlerError> {
        self.facilitator.verify(command.provider, &command.request).await.map_err(handler_error)
    }
}

impl CommandHandler<Settle> for FacilitatorHandlers {
    async fn handle(
        &self,
        _tx: &mut PgConnection,
        command: Settle,
        _meta: CommandMeta,
    ) -> Result<awx_x402::SettleResponse, HandlerError> {
        self.facilitator.settle(command.provider, &command.request).await.map_err(handler_error)
    }
}

impl QueryHandler<Supported> for FacilitatorHandlers {
    async fn handle(
        &self,
        _pool: &PgPool,
        _command: Supported,
        _meta: CommandMeta,
    ) -> Result<awx_x402::SupportedResponse, HandlerError> {
        self.facilitator.supported().await.map_err(handler_error)
    }
}

impl CommandHandler<Faucet> for FacilitatorHandlers {
    async fn handle(
        &self,
        _tx: &mut PgConnection,
        command: Faucet,
        meta: CommandMeta,
    ) -> Result<FaucetReply, HandlerError> {
        self.facilitator.faucet(&command, meta.command_id).await.map_err(handler_error)
    }
}

impl QueryHandler<PaymentSettlement> for FacilitatorHandlers {
    async fn handle(
        &self,
        _pool: &PgPool,
        query: PaymentSettlement,
        _meta: CommandMeta,
    ) -> Result<Option<ItemSettlement>, HandlerError> {
        self.facilitator.payment_settlement(query.payment_id).await.map_err(handler_error)
    }
}

impl QueryHandler<ListSettlements> for FacilitatorHandlers {
    async fn handle(
        &self,
        _pool: &PgPool,
        query: ListSettlements,
        _meta: CommandMeta,
    ) -> Result<SettlementList, HandlerError> {
        self.facilitator.list_settlements(&query).await.map_err(handler_error)
    }
}

impl QueryHandler<AuthorizationState> for FacilitatorHandlers {
    async fn handle(
        &self,
        _pool: &PgPool,
        query: AuthorizationState,
        _meta: CommandMeta,
    ) -> Result<AuthorizationStatus, HandlerError> {
        self.facilitator.authorization_state(&query).await.map_err(handler_error)
    }
}

impl CommandHandler<RecordExternal> for FacilitatorHandlers {
    async fn handle(
        &self,
        _tx: &mut PgConnection,
        command: RecordExternal,
        _meta: CommandMeta,
    ) -> Result<ExternalRecorded, HandlerError> {
        self.facilitator.record_external(&command).await.map_err(handler_error)
    }
}

impl QueryHandler<ListDeposits> for FacilitatorHandlers {
    async fn handle(
        &self,
        _pool: &PgPool,
        query: ListDeposits,
        _meta: CommandMeta,
    ) -> Result<DepositList, HandlerError> {
        self.facilitator.list_deposits(&query).await.map_err(handler_error)
    }
}

impl CommandHandler<RequestWithdrawal> for FacilitatorHandlers {
    async fn handle(
        &self,
        _tx: &mut PgConnection,
        command: RequestWithdrawal,
        _meta: CommandMeta,
    ) -> Result<WithdrawalView, HandlerError> {
        self.facilitator.request_withdrawal(&command).await.map_err(handler_error)
    }
}

impl QueryHandler<GetWithdrawal> for FacilitatorHandlers {
    async fn handle(
        &self,
        _pool: &PgPool,
        query: GetWithdrawal,
        _meta: CommandMeta,
    ) -> Result<Option<WithdrawalView>, HandlerError> {
        self.facilitator.get_withdrawal(&query).await.map_err(handler_error)
    }
}

impl QueryHandler<ListWithdrawals> for FacilitatorHandlers {
    async fn handle(
        &self,
        _pool: &PgPool,
        query: ListWithdrawals,
        _meta: CommandMeta,
    ) -> Result<WithdrawalList, HandlerError> {
        self.facilitator.list_withdrawals(&query).await.map_err(handler_error)
    }
}

impl CommandHandler<RegisterWallet> for FacilitatorHandlers {
    async fn handle(
        &self,
        tx: &mut PgConnection,
        command: RegisterWallet,
        _meta: CommandMeta,
    ) -> Result<WalletRegistered, HandlerError> {
        match crate::own_wallets::register(tx, command.agent_id, command.address).await {
            Ok(new) => Ok(WalletRegistered { new }),
            Err(RegisterError::OtherAgent(message)) => {
                Err(HandlerError::reject(codes::INVALID_REQUEST, message))
            }
            Err(RegisterError::Database(error)) => Err(HandlerError::database(&error)),
        }
    }
}

impl FacilitatorHandlers {
    /// Handlers over `facilitator`.
    pub fn new(facilitator: Arc<Facilitator>) -> Self {
        Self { facilitator }
    }

    /// A command server of the `settlement` family; its inbox uses `inbox_pool`, separate from
    /// the pool settlements use, so a command waiting for a receipt never starves the work.
    pub fn server(
        self,
        bus: &awx_bus::Bus,
        inbox_pool: PgPool,
    ) -> Result<CommandServer, awx_bus::BusError> {
        CommandServer::new(bus, inbox_pool, awx_api::facilitator::FAMILY)?
            .answer::<Verify, _>(self.clone())?
            .handle::<Settle, _>(self.clone())?
            .answer::<Supported, _>(self.clone())?
            .handle::<Faucet, _>(self.clone())?
            .answer::<PaymentSettlement, _>(self.clone())?
            .answer::<ListSettlements, _>(self.clone())?
            .answer::<AuthorizationState, _>(self.clone())?
            .handle::<RecordExternal, _>(self.clone())?
            .handle::<RegisterWallet, _>(self.clone())?
            .answer::<ListDeposits, _>(self.clone())?
            .handle::<RequestWithdrawal, _>(self.clone())?
            .answer::<GetWithdrawal, _>(self.clone())?
            .answer::<ListWithdrawals, _>(self)
    }
}
