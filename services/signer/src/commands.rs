//! The signer's bus commands (family `signer`, types in `awx_api::signer`): each handler runs in
//! the bus's transaction (so the signing log row, the inbox row and the stored reply commit
//! together) and maps failures to stable rejection codes; backend and database trouble is
//! transient, so the command is redelivered. Every state change is registered for group commit
//! (`handle_grouped`: the commands waiting at the same time share one transaction, each in a
//! savepoint), since none calls another service.

use std::sync::Arc;

use awx_api::signer::{
    AuthorizationSigned, CreateWallet, Relayers, RelayersReply, SignAuthorization, SignNetTransfer,
    SignTransaction, SignedTransaction, WalletReply,
};
use awx_bus::{CommandHandler, CommandMeta, CommandServer, HandlerError, QueryHandler};
use sqlx::{PgConnection, PgPool};

use crate::custody::Custody;
use crate::error::SignFailure;

/// The handlers of every signer command.
#[derive(Debug, Clone)]
pub struct SignerHandlers {
    custody: Arc<Custody>,
}

fn handler_error(failure: SignFailure) -> HandlerError {
    match failure.code() {
        Some(code) => HandlerError::reject(code, failure.to_string()),
        None => {
            tracing::warn!(error.message = %failure, "signer command failed; it will be retried");
            HandlerError::transient(failure)
        }
    }
}

impl CommandHandler<SignTransaction> for SignerHandlers {
    async fn handle(
        &self,
        conn: &mut PgConnection,
        command: SignTransaction,
        _meta: CommandMeta,
    ) -> Result<SignedTransaction, HandlerError> {
        self.custody.sign_transaction(conn, &command).await.map_err(handler_error)
    }
}

impl QueryHandler<Relayers> for SignerHandlers {
    async fn handle(
        &self,
        _pool: &PgPool,
        _query: Relayers,
        _meta: CommandMeta,
    ) -> Result<RelayersReply, HandlerError> {
        self.custody.relayers().await.map_err(handler_error)
    }
}

impl CommandHandler<CreateWallet> for SignerHandlers {
    async fn handle(
        &self,
        conn: &mut PgConnection,
        command: CreateWallet,
        _meta: CommandMeta,
    ) -> Result<WalletReply, HandlerError> {
        self.custody.create_wallet(conn, &command).await.map_err(handler_error)
    }
}

impl CommandHandler<SignAuthorization> for SignerHandlers {
    async fn handle(
        &self,
        conn: &mut PgConnection,
        command: SignAuthorization,
        _meta: CommandMeta,
    ) -> Result<AuthorizationSigned, HandlerError> {
        self.custody.sign_authorization(conn, &command).await.map_err(handler_error)
    }
}

impl CommandHandler<SignNetTransfer> for SignerHandlers {
    async fn handle(
        &self,
        conn: &mut PgConnection,
        command: SignNetTransfer,
        _meta: CommandMeta,
    ) -> Result<AuthorizationSigned, HandlerError> {
        self.custody.sign_net_transfer(conn, &command).await.map_err(handler_error)
    }
}

impl SignerHandlers {
    /// Handlers over `custody`.
    pub fn new(custody: Arc<Custody>) -> Self {
        Self { custody }
    }

    /// A command server of the `signer` family with every handler registered, running its
    /// transactions on `pool`.
    pub fn server(
        self,
        bus: &awx_bus::Bus,
        pool: PgPool,
    ) -> Result<CommandServer, awx_bus::BusError> {
        CommandServer::new(bus, pool, awx_api::signer::FAMILY)?
            .handle_grouped::<SignTransaction, _>(self.clone())?
            .handle_grouped::<CreateWallet, _>(self.clone())?
            .handle_grouped::<SignAuthorization, _>(self.clone())?
            .handle_grouped::<SignNetTransfer, _>(self.clone())?
            .answer::<Relayers, _>(self)
    }
}
