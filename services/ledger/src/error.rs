//! Why a ledger operation failed, and its stable code.

use awx_api::ledger::codes;
use awx_ledger_core::model::LedgerError;

/// A ledger operation's failure.
#[derive(Debug, thiserror::Error)]
pub enum LedgerFailure {
    /// The wallet cannot cover the amount (and fee).
    #[error("insufficient funds: {0}")]
    InsufficientFunds(String),
    /// No such hold.
    #[error("no such hold {0}")]
    HoldNotFound(String),
    /// The hold was voided before it was made.
    #[error("the hold of payment {0} was voided before it was made; it is not made now")]
    HoldVoided(String),
    /// The hold is no longer pending.
    #[error("hold {hold} is {status}, not pending")]
    HoldNotPending {
        /// The hold.
        hold: String,
        /// Its status.
        status: String,
    },
    /// The idempotency key was used for another request.
    #[error("idempotency key {0} was used with a different request")]
    IdempotencyConflict(String),
    /// The request is malformed or not allowed.
    #[error("{0}")]
    Invalid(String),
    /// A reversal names a deposit that was never recorded.
    #[error("no deposit recorded under {0}")]
    DepositNotFound(String),
    /// The faucet on a non-development chain.
    #[error("the faucet works on development chains only, not {0}")]
    FaucetUnavailable(String),
    /// The database failed (transient: retry), or refused the data (a data exception: final,
    /// `invalid_request`).
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// Stored data could not be read back (a bug or tampering).
    #[error("internal: {0}")]
    Internal(String),
}

impl LedgerFailure {
    /// The stable code of a refusal (a database data exception included), or `None` for
    /// transient and internal failures.
    pub fn code(&self) -> Option<&'static str> {
        match self {
            Self::InsufficientFunds(_) => Some(codes::INSUFFICIENT_FUNDS),
            Self::HoldNotFound(_) => Some(codes::HOLD_NOT_FOUND),
            Self::HoldNotPending { .. } => Some(codes::HOLD_NOT_PENDING),
            Self::HoldVoided(_) => Some(codes::HOLD_VOIDED),
            Self::IdempotencyConflict(_) => Some(codes::IDEMPOTENCY_CONFLICT),
            Self::Invalid(_) => Some(codes::INVALID_REQUEST),
            Self::FaucetUnavailable(_) => Some(codes::FAUCET_UNAVAILABLE),
            Self::DepositNotFound(_) => Some(codes::DEPOSIT_NOT_FOUND),
            // Postgres refused the command's data (a value out of range, say): final.
            Self::Database(error) if awx_bus::HandlerError::is_data_exception(error) => {
                Some(codes::INVALID_REQUEST)
            }
            Self::Database(_) | Self::Internal(_) => None,
        }
    }

    /// The failure of a model refusal.
    pub fn from_model(error: LedgerError) -> Self {
        match error {
            LedgerError::InsufficientFunds { .. } => Self::InsufficientFunds(
                "the wallet's available balance is below the amount plus fee".into(),
            ),
            LedgerError::Counter { .. } => Self::Internal(error.to_string()),
            LedgerError::NoLegs
            | LedgerError::TooManyLegs
            | LedgerError::ZeroAmount { .. }
            | LedgerError::SameAccount { .. }
            | LedgerError::UnknownAccount { .. }
            | LedgerError::AssetMismatch { .. }
            | LedgerError::ExceedsDebits { .. }
            | LedgerError::PostExceedsHold { .. } => Self::Invalid(error.to_string()),
        }
    }
}
