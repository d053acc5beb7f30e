//! Why a signing request failed, and its stable code (`awx_api::signer::codes`).

use alloy::primitives::{Address, B256};
use awx_api::signer::codes;
use awx_types::{AgentId, PaymentId};
use uuid::Uuid;

use crate::signer::SignerError;

/// A signing request's failure.
#[derive(Debug, thiserror::Error)]
pub enum SignFailure {
    /// The request is malformed (zero gas, inconsistent fees, above a limit, a chain id out of
    /// range).
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
    /// The policy decision is missing, malformed, expired or not the policy service's, or no
    /// policy key is configured.
    #[error("invalid policy decision: {0}")]
    DecisionInvalid(String),
    /// A field of the request differs from the decision's claims (the field's name, as in the
    /// request).
    #[error("the request's {0} differs from the policy decision's")]
    DecisionMismatch(&'static str),
    /// `from` is not the agent's wallet (or the agent has none).
    #[error("{address} is not the wallet of agent {agent}")]
    UnknownWallet {
        /// The agent.
        agent: AgentId,
        /// The address asked for.
        address: Address,
    },
    /// The payment was signed before with different contents.
    #[error("payment {0} was already signed with different contents")]
    PaymentAlreadySigned(PaymentId),
    /// The wallet already signed this nonce (on this chain and token) for another payment.
    #[error("wallet {address} already signed nonce {nonce} for another payment")]
    NonceAlreadySigned {
        /// The wallet.
        address: Address,
        /// The nonce.
        nonce: B256,
    },
    /// A payment of a net transfer is already in another signed net transfer of its kind.
    #[error("a payment of this net transfer is already part of another signed {0} transfer")]
    PaymentAlreadyNetted(&'static str),
    /// A payment of a net transfer is not an authorization this wallet signed on this chain and
    /// token (or is named twice).
    #[error("{0}")]
    UnknownPayment(String),
    /// The backend failed (transient: retry).
    #[error("signer: {0}")]
    Signer(#[from] SignerError),
    /// The database failed (transient: retry), or refused the data (a data exception: final,
    /// `invalid_request`).
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
            Self::DecisionInvalid(_) => Some(codes::DECISION_INVALID),
            Self::DecisionMismatch(_) => Some(codes::DECISION_MISMATCH),
            Self::UnknownWallet { .. } => Some(codes::UNKNOWN_WALLET),
            Self::PaymentAlreadySigned(_) => Some(codes::PAYMENT_ALREADY_SIGNED),
            Self::NonceAlreadySigned { .. } => Some(codes::NONCE_ALREADY_SIGNED),
            Self::PaymentAlreadyNetted(_) => Some(codes::PAYMENT_ALREADY_NETTED),
            Self::UnknownPayment(_) => Some(codes::UNKNOWN_PAYMENT),
            // Postgres refused the command's data (a number out of range, say): final.
            Self::Database(error) if awx_bus::HandlerError::is_data_exception(error) => {
                Some(codes::INVALID_REQUEST)
            }
            Self::Signer(_) | Self::Database(_) | Self::Internal(_) => None,
        }
    }
}
