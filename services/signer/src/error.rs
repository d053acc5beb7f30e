//! Why a signing request failed, and its stable code (`awx_api::signer::codes`).

use alloy::primitives::Address;
use awx_api::signer::codes;
use uuid::Uuid;

use crate::signer::SignerError;

/// A signing request's failure.
#[derive(Debug, thiserror::Error)]
pub enum SignFailure {
    /// The request is malformed (zero gas, inconsistent fees, above a limit).
    #[error("invalid request: {0}")]
    Invalid(String),
    /// `from` is not one of the signer's relayers.
    #[error("{0} is not a relayer of this signer")]
    UnknownRelayer(Address),
    /// `to` is not on the allow-list of the chain.
    #[error("contract {contract} is not allowed on {network}")]
    ContractNotAllowed {
        /// The network (`eip155:<chain id>`).
        network: String,
        /// The contract.
        contract: Address,
    },
    /// The request id was used for another request.
    #[error("request id {0} was used for a different request")]
    RequestConflict(Uuid),
    /// The backend failed (transient: retry).
    #[error("signer: {0}")]
    Signer(#[from] SignerError),
    /// The database failed (transient: retry).
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// A broken invariant: a stored result that does not read back, a signature that does not
    /// recover to its key.
    #[error("internal: {0}")]
    Internal(String),
}

impl SignFailure {
    /// The stable code of a refusal, or `None` for transient and internal failures.
    pub fn code(&self) -> Option<&'static str> {
        match self {
            Self::Invalid(_) => Some(codes::INVALID_REQUEST),
            Self::UnknownRelayer(_) => Some(codes::UNKNOWN_RELAYER),
            Self::ContractNotAllowed { .. } => Some(codes::CONTRACT_NOT_ALLOWED),
            Self::RequestConflict(_) => Some(codes::REQUEST_CONFLICT),
            Self::Signer(_) | Self::Database(_) | Self::Internal(_) => None,
        }
    }
}
