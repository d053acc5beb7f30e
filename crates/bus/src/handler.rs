//! How command and event handlers fail: [`HandlerError`], and the panic guard that turns a
//! panicking handler into a transient failure instead of a dead task.
//!
//! A database error is transient unless Postgres refused the data itself (SQLSTATE class `22`,
//! a data exception: a number out of range, a NUL character in text, …): running the same
//! command again fails the same way, so it is a final rejection with the code
//! [`HandlerError::INVALID_REQUEST`] instead of being redelivered until it is dead-lettered.

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
    /// The code of a command whose data Postgres refused (see [`HandlerError::database`]); the
    /// same string as every service's own `invalid_request`.
    pub const INVALID_REQUEST: &'static str = "invalid_request";

    /// A final rejection. A NUL character in the message (an echoed input, say) is replaced by
    /// U+FFFD, so the rejection can be stored as the command's reply (`jsonb` refuses NUL).
    pub fn reject(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Rejected { code: without_nul(code.into()), message: without_nul(message.into()) }
    }

    /// A transient failure, described by `error`.
    pub fn transient(error: impl std::fmt::Display) -> Self {
        Self::Transient(error.to_string())
    }

    /// The failure of a database error: a rejection [`HandlerError::INVALID_REQUEST`] when
    /// Postgres refused the data ([`HandlerError::is_data_exception`]), else transient.
    pub fn database(error: &sqlx::Error) -> Self {
        if Self::is_data_exception(error) {
            Self::reject(Self::INVALID_REQUEST, format!("the request's data was refused: {error}"))
        } else {
            Self::transient(error)
        }
    }

    /// Whether `error` is about the data rather than the database: a Postgres data exception
    /// (SQLSTATE class `22`: `22003` numeric value out of range, `22021` a NUL character in
    /// text, `22P05` an escape `jsonb` cannot hold, `22P02` invalid text representation, …) or
    /// a value that could not be encoded for a query. Retrying cannot help either.
    pub fn is_data_exception(error: &sqlx::Error) -> bool {
        match error {
            sqlx::Error::Database(database) => {
                database.code().is_some_and(|code| code.starts_with("22"))
            }
            sqlx::Error::Encode(_) => true,
            _ => false,
        }
    }
}

fn without_nul(text: String) -> String {
    if text.contains('\0') { text.replace('\0', "\u{fffd}") } else { text }
}

impl From<sqlx::Error> for HandlerError {
    fn from(error: sqlx::Error) -> Self {
        Self::database(&error)
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The error of `sql` run with `text` bound as its one parameter, on a real Postgres.
    async fn error_of(pool: &sqlx::PgPool, sql: &'static str, text: &str) -> sqlx::Error {
        sqlx::query(sql).bind(text).execute(pool).await.unwrap_err()
    }

    fn sqlstate(error: &sqlx::Error) -> String {
        error.as_database_error().and_then(|e| e.code()).unwrap_or_default().into_owned()
    }

    #[tokio::test]
    async fn a_data_exception_is_a_final_rejection_and_other_database_errors_are_transient() {
        let db = awx_test_support::TestDb::new().await;
        for (sql, text, state) in [
            // A number out of its column's range.
            ("SELECT $1::numeric(30,6)", "1000000000000000000000000", "22003"),
            // A NUL character in text.
            ("SELECT $1::text", "a\0b", "22021"),
            // A NUL escape in jsonb.
            ("SELECT $1::jsonb", r#"{"name": "a\u0000b"}"#, "22P05"),
            // Not a number at all.
            ("SELECT $1::numeric", "ten", "22P02"),
        ] {
            let error = error_of(&db.pool, sql, text).await;
            assert_eq!(sqlstate(&error), state, "{sql}");
            assert!(HandlerError::is_data_exception(&error), "{sql}");
            match HandlerError::from(error) {
                HandlerError::Rejected { code, message } => {
                    assert_eq!(code, "invalid_request", "{sql}");
                    assert!(!message.contains('\0'), "{message}");
                }
                other @ HandlerError::Transient(_) => panic!("{sql}: {other:?}"),
            }
        }
        // Not about the data: a unique violation, an unknown table, a closed pool.
        sqlx::query("CREATE TABLE t (id int PRIMARY KEY)").execute(&db.pool).await.unwrap();
        sqlx::query("INSERT INTO t VALUES (1)").execute(&db.pool).await.unwrap();
        let duplicate =
            sqlx::query("INSERT INTO t VALUES (1)").execute(&db.pool).await.unwrap_err();
        assert_eq!(sqlstate(&duplicate), "23505");
        let unknown = error_of(&db.pool, "SELECT * FROM no_such_table WHERE $1 = ''", "").await;
        for error in [duplicate, unknown, sqlx::Error::PoolTimedOut] {
            assert!(!HandlerError::is_data_exception(&error), "{error}");
            assert!(matches!(HandlerError::from(error), HandlerError::Transient(_)));
        }
    }

    #[test]
    fn a_rejection_never_carries_a_nul_character() {
        let HandlerError::Rejected { code, message } =
            HandlerError::reject("invalid\0request", "name \"a\0b\" is invalid")
        else {
            panic!("not a rejection");
        };
        assert_eq!(code, "invalid\u{fffd}request");
        assert_eq!(message, "name \"a\u{fffd}b\" is invalid");
    }
}
