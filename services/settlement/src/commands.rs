//! The facilitator's bus commands (and the development faucet's). Settlement state is written in
//! the service's own committed transactions (it must be durable before a broadcast), not in the
//! bus's inbox transaction; the inbox still makes a redelivered command answer from storage, and a
//! faucet command's id is its mint's id, so a redelivery never mints twice.

use std::sync::Arc;

use awx_api::deposits::{DepositList, ListDeposits};
use awx_api::facilitator::{
    AuthorizationState, AuthorizationStatus, ExternalRecorded, Faucet, FaucetReply, ItemSettlement,
    ListSettlements, PaymentSettlement, RecordExternal, Settle, SettlementList, Supported, Verify,
    codes,
};
use awx_api::withdrawals::{
    GetWithdrawal, ListWithdrawals, RequestWithdrawal, WithdrawalList, WithdrawalView,
};
use awx_bus::{CommandHandler, CommandMeta, CommandServer, HandlerError};
use sqlx::PgConnection;

use crate::facilitator::{Facilitator, FacilitatorError};

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

impl CommandHandler<Verify> for FacilitatorHandlers {
    async fn handle(
        &self,
        _tx: &mut PgConnection,
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

impl CommandHandler<Supported> for FacilitatorHandlers {
    async fn handle(
        &self,
        _tx: &mut PgConnection,
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

impl CommandHandler<PaymentSettlement> for FacilitatorHandlers {
    async fn handle(
        &self,
        _tx: &mut PgConnection,
        query: PaymentSettlement,
        _meta: CommandMeta,
    ) -> Result<Option<ItemSettlement>, HandlerError> {
        self.facilitator.payment_settlement(query.payment_id).await.map_err(handler_error)
    }
}

impl CommandHandler<ListSettlements> for FacilitatorHandlers {
    async fn handle(
        &self,
        _tx: &mut PgConnection,
        query: ListSettlements,
        _meta: CommandMeta,
    ) -> Result<SettlementList, HandlerError> {
        self.facilitator.list_settlements(&query).await.map_err(handler_error)
    }
}

impl CommandHandler<AuthorizationState> for FacilitatorHandlers {
    async fn handle(
        &self,
        _tx: &mut PgConnection,
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

impl CommandHandler<ListDeposits> for FacilitatorHandlers {
    async fn handle(
        &self,
        _tx: &mut PgConnection,
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

impl CommandHandler<GetWithdrawal> for FacilitatorHandlers {
    async fn handle(
        &self,
        _tx: &mut PgConnection,
        query: GetWithdrawal,
        _meta: CommandMeta,
    ) -> Result<Option<WithdrawalView>, HandlerError> {
        self.facilitator.get_withdrawal(&query).await.map_err(handler_error)
    }
}

impl CommandHandler<ListWithdrawals> for FacilitatorHandlers {
    async fn handle(
        &self,
        _tx: &mut PgConnection,
        query: ListWithdrawals,
        _meta: CommandMeta,
    ) -> Result<WithdrawalList, HandlerError> {
        self.facilitator.list_withdrawals(&query).await.map_err(handler_error)
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
        inbox_pool: sqlx::PgPool,
    ) -> Result<CommandServer, awx_bus::BusError> {
        CommandServer::new(bus, inbox_pool, awx_api::facilitator::FAMILY)?
            .handle::<Verify, _>(self.clone())?
            .handle::<Settle, _>(self.clone())?
            .handle::<Supported, _>(self.clone())?
            .handle::<Faucet, _>(self.clone())?
            .handle::<PaymentSettlement, _>(self.clone())?
            .handle::<ListSettlements, _>(self.clone())?
            .handle::<AuthorizationState, _>(self.clone())?
            .handle::<RecordExternal, _>(self.clone())?
            .handle::<ListDeposits, _>(self.clone())?
            .handle::<RequestWithdrawal, _>(self.clone())?
            .handle::<GetWithdrawal, _>(self.clone())?
            .handle::<ListWithdrawals, _>(self)
    }
}
