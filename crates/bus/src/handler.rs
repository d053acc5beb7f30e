//! How command and event handlers fail: [`HandlerError`], and the panic guard that turns a
//! panicking handler into a transient failure instead of a dead task.

use std::any::Any;
use std::future::Future;
use std::panic::AssertUnwindSafe;

use futures::FutureExt as _;

/// Why a handler did not succeed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandlerError {
    /// A final refusal, with a stable machine code (such as `insufficient_funds`) and a
    /// message for people. The handler's writes are rolled back.
    ///
    /// For a command, the rejection is stored in the inbox as the command's reply (a retry of
    /// the same command id gets the same rejection without running the handler) and the caller
    /// gets [`BusError::Rejected`](crate::BusError::Rejected). For an event, retrying cannot
    /// help: it is dead-lettered at once, and no inbox row is kept, so it can be replayed after a
    /// fix.
    #[error("rejected ({code}): {message}")]
    Rejected {
        /// The stable machine code.
        code: String,
        /// The explanation.
        message: String,
    },
    /// A failure that may pass (a database error, a dependency that is down). Everything is
    /// rolled back and the message is not acknowledged: it is redelivered after the claim idle
    /// time, and dead-lettered after `max_deliveries` deliveries.
    #[error("transient failure: {0}")]
    Transient(String),
}

impl HandlerError {
    /// A final rejection.
    pub fn reject(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Rejected { code: code.into(), message: message.into() }
    }

    /// A transient failure, described by `error`.
    pub fn transient(error: impl std::fmt::Display) -> Self {
        Self::Transient(error.to_string())
    }
}

impl From<sqlx::Error> for HandlerError {
    fn from(error: sqlx::Error) -> Self {
        Self::transient(error)
    }
}

/// Runs a handler future, turning a panic into `Err` with the panic's message (the message is
/// recorded as the delivery's last error; the process keeps running).
pub(crate) async fn catch_panic<F: Future>(future: F) -> Result<F::Output, String> {
    AssertUnwindSafe(future).catch_unwind().await.map_err(|panic| panic_message(&*panic))
}

fn panic_message(panic: &(dyn Any + Send)) -> String {
    let text = panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a non-string payload".to_owned());
    format!("handler panicked: {text}")
}
