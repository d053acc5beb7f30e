//! Why a policy command failed: a refusal with a stable code (final), or a transient failure
//! (the bus redelivers the command).

use awx_api::policy::codes;
use awx_bus::{BusError, HandlerError};

/// A policy command's failure.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// Refused, with a stable code (an `awx_api::policy::codes` value or a rule's name).
    #[error("{code}: {message}")]
    Rejected {
        /// The stable code.
        code: String,
        /// For people.
        message: String,
    },
    /// The database failed (transient: retry), or refused the data (a data exception: a final
    /// `invalid_request`, see `HandlerError::database`).
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// Something that should not happen (stored data unreadable, a bug).
    #[error("internal: {0}")]
    Internal(String),
}

impl Failure {
    /// A refusal.
    pub fn reject(code: &str, message: impl Into<String>) -> Self {
        Self::Rejected { code: code.to_owned(), message: message.into() }
    }

    /// An invalid request.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::reject(codes::INVALID_REQUEST, message)
    }

    /// An internal failure.
    pub fn internal(message: impl std::fmt::Display) -> Self {
        Self::Internal(message.to_string())
    }
}

impl From<Failure> for HandlerError {
    fn from(failure: Failure) -> Self {
        match failure {
            Failure::Rejected { code, message } => Self::reject(code, message),
            Failure::Database(error) => {
                let failure = Self::database(&error);
                if matches!(failure, Self::Transient(_)) {
                    tracing::warn!(error.message = %error, "policy command failed on the database; it will be retried");
                }
                failure
            }
            Failure::Internal(message) => {
                tracing::error!(error.message = %message, "policy command failed");
                Self::transient(message)
            }
        }
    }
}

/// How a call to another service ended, for the pay path's clean-up decisions.
#[derive(Debug)]
pub(crate) enum Upstream {
    /// The service refused; final.
    Refused {
        /// Its code.
        code: String,
        /// Its message.
        message: String,
    },
    /// No answer in time, or the bus is down: the outcome is unknown.
    Unavailable(String),
}

impl From<BusError> for Upstream {
    fn from(error: BusError) -> Self {
        match error {
            BusError::Rejected { code, message } => Self::Refused { code, message },
            other => Self::Unavailable(other.to_string()),
        }
    }
}
