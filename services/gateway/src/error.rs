//! The one error envelope of the public API, with stable machine codes.
//!
//! Every error answer is
//! `{"error": {"type": "...", "code": "...", "message": "...", "field"?: "...", "rule"?: "...", "request_id": "req_..."}}`
//! where `code` is one of [`ErrorCode`] (stable: clients may match on it), `type` groups codes by
//! whose fault it is, `message` is for humans, `field` names the offending request field when
//! there is one, and `rule` the policy or session rule that refused a payment.
//! `request_id` equals the `X-Request-Id` response header.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::request_id;

/// A stable, machine-readable error code. Clients may match on these; they never change meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The body is not well-formed JSON.
    MalformedJson,
    /// A field is missing, has the wrong type or an invalid value (`field` names it).
    InvalidField,
    /// The request is not acceptable for another reason.
    InvalidRequest,
    /// The body must be `application/json`.
    UnsupportedMediaType,
    /// The body is larger than allowed.
    PayloadTooLarge,
    /// The request headers are larger than allowed.
    HeadersTooLarge,
    /// No API key was sent (`X-API-Key`).
    MissingApiKey,
    /// The API key is malformed or unknown, or its secret is wrong.
    InvalidApiKey,
    /// The API key was revoked or has expired.
    ApiKeyRevoked,
    /// The API key lacks the scope this operation needs.
    InsufficientScope,
    /// No such resource in the caller's account (or no such route).
    NotFound,
    /// The route exists but not with this HTTP method.
    MethodNotAllowed,
    /// The same `Idempotency-Key` was used with a different request.
    IdempotencyKeyReused,
    /// A request with this `Idempotency-Key` is still being processed.
    IdempotencyKeyInProgress,
    /// The `Idempotency-Key` header is malformed.
    InvalidIdempotencyKey,
    /// Too many requests: wait `Retry-After` seconds.
    RateLimited,
    /// Too many wrong secrets for this key recently: wait before trying again.
    TooManyFailedAuthentications,
    /// The operation conflicts with the resource's state.
    Conflict,
    /// The wallet's available balance is below the amount plus fee.
    InsufficientFunds,
    /// The agent's policy refuses the payment; `rule` names the rule (`policy.daily_limit`, …).
    PolicyDenied,
    /// The session's budget cannot cover the payment (`rule`: `session.budget_limit`).
    SessionBudgetExceeded,
    /// The session has expired (`rule`: `session.expired`).
    SessionExpired,
    /// The session was revoked (`rule`: `session.revoked`).
    SessionRevoked,
    /// The session does not cover this payment's chain or URL (`rule`: `session.chain`,
    /// `session.allowed_urls`).
    SessionNotApplicable,
    /// The target does not ask for an x402 payment (it did not answer 402 with a readable
    /// challenge).
    NotX402,
    /// The challenge has no offer the platform can pay (scheme `exact`, a known token, an EVM
    /// chain).
    NoPayableOffer,
    /// The challenge has no payable offer on the requested chain.
    ChainNotOffered,
    /// The payment is not in a state that allows this operation.
    PaymentState,
    /// The session is not in a state that allows this operation (revoking a session already
    /// revoked or expired); the message names its status.
    SessionState,
    /// The agent is not in a state that allows this operation (deleting an agent already
    /// deleted, approving a payment of an agent deleted while it waited).
    AgentState,
    /// The API key is not in a state that allows this operation (revoking a key already revoked
    /// or expired); the message names its status.
    ApiKeyState,
    /// A development-only feature (the faucet) is not available on this chain.
    FaucetUnavailable,
    /// The chain is not served for this operation (withdrawals: no withdrawable token there).
    NetworkNotSupported,
    /// The withdrawal's destination is not on the account's withdrawal allow-list.
    WithdrawalAddressNotAllowed,
    /// The withdrawal id was already used for a different withdrawal.
    WithdrawalConflict,
    /// A target URL (an x402 resource to check or pay) is not a valid absolute URL.
    InvalidTargetUrl,
    /// A target URL is not allowed: its scheme is not http or https, it carries credentials,
    /// or its host is or resolves to a loopback, private, link-local or other non-public
    /// address.
    TargetNotAllowed,
    /// The target's host could not be resolved or connected to, or its answer not read.
    TargetUnreachable,
    /// The target did not answer in time.
    TargetTimeout,
    /// The target's response body is larger than the gateway reads.
    TargetResponseTooLarge,
    /// The target redirected more often than the gateway follows.
    TargetTooManyRedirects,
    /// The signer refused to sign what the policy service decided: a fault on the platform's
    /// side (keys out of step between services); nothing stays reserved or held.
    SignerRefused,
    /// A dependency (database, Redis, another service) is unavailable: retry later.
    ServiceUnavailable,
    /// The request took too long.
    Timeout,
    /// An unexpected error on our side; the request id helps us find it.
    InternalError,
}

/// Which side an error is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorType {
    /// The request is wrong.
    InvalidRequestError,
    /// The caller is not authenticated.
    AuthenticationError,
    /// The caller may not do this.
    PermissionError,
    /// The caller sends too much.
    RateLimitError,
    /// Our side failed, or a server we called on the caller's behalf did.
    ApiError,
}

impl ErrorCode {
    /// The HTTP status of this code.
    pub fn status(self) -> StatusCode {
        match self {
            Self::MalformedJson
            | Self::InvalidField
            | Self::InvalidRequest
            | Self::InvalidIdempotencyKey
            | Self::InvalidTargetUrl
            | Self::TargetNotAllowed
            | Self::FaucetUnavailable
            | Self::NetworkNotSupported => StatusCode::BAD_REQUEST,
            Self::PolicyDenied
            | Self::SessionBudgetExceeded
            | Self::SessionExpired
            | Self::SessionRevoked
            | Self::SessionNotApplicable
            | Self::WithdrawalAddressNotAllowed => StatusCode::FORBIDDEN,
            Self::NotX402 | Self::NoPayableOffer | Self::ChainNotOffered => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            Self::PaymentState | Self::WithdrawalConflict => StatusCode::CONFLICT,
            Self::SessionState | Self::AgentState | Self::ApiKeyState => StatusCode::CONFLICT,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::HeadersTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Self::MissingApiKey | Self::InvalidApiKey | Self::ApiKeyRevoked => {
                StatusCode::UNAUTHORIZED
            }
            Self::InsufficientScope => StatusCode::FORBIDDEN,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::IdempotencyKeyReused => StatusCode::UNPROCESSABLE_ENTITY,
            Self::IdempotencyKeyInProgress | Self::Conflict => StatusCode::CONFLICT,
            Self::InsufficientFunds => StatusCode::PAYMENT_REQUIRED,
            Self::RateLimited | Self::TooManyFailedAuthentications => StatusCode::TOO_MANY_REQUESTS,
            Self::ServiceUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::TargetUnreachable
            | Self::TargetResponseTooLarge
            | Self::TargetTooManyRedirects
            | Self::SignerRefused => StatusCode::BAD_GATEWAY,
            Self::Timeout | Self::TargetTimeout => StatusCode::GATEWAY_TIMEOUT,
            Self::InternalError => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The type of this code.
    pub fn error_type(self) -> ErrorType {
        match self {
            Self::MalformedJson
            | Self::InvalidField
            | Self::InvalidRequest
            | Self::UnsupportedMediaType
            | Self::PayloadTooLarge
            | Self::HeadersTooLarge
            | Self::NotFound
            | Self::MethodNotAllowed
            | Self::IdempotencyKeyReused
            | Self::IdempotencyKeyInProgress
            | Self::InvalidIdempotencyKey
            | Self::Conflict
            | Self::InsufficientFunds
            | Self::InvalidTargetUrl
            | Self::TargetNotAllowed
            | Self::NotX402
            | Self::NoPayableOffer
            | Self::ChainNotOffered
            | Self::PaymentState
            | Self::SessionState
            | Self::AgentState
            | Self::ApiKeyState
            | Self::FaucetUnavailable
            | Self::NetworkNotSupported
            | Self::WithdrawalConflict => ErrorType::InvalidRequestError,
            Self::PolicyDenied
            | Self::SessionBudgetExceeded
            | Self::SessionExpired
            | Self::SessionRevoked
            | Self::SessionNotApplicable
            | Self::WithdrawalAddressNotAllowed => ErrorType::PermissionError,
            Self::MissingApiKey | Self::InvalidApiKey | Self::ApiKeyRevoked => {
                ErrorType::AuthenticationError
            }
            Self::InsufficientScope => ErrorType::PermissionError,
            Self::RateLimited | Self::TooManyFailedAuthentications => ErrorType::RateLimitError,
            Self::ServiceUnavailable
            | Self::SignerRefused
            | Self::Timeout
            | Self::InternalError
            | Self::TargetUnreachable
            | Self::TargetTimeout
            | Self::TargetResponseTooLarge
            | Self::TargetTooManyRedirects => ErrorType::ApiError,
        }
    }
}

/// The error envelope's body.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// The error inside the envelope.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Whose fault it is.
    #[serde(rename = "type")]
    pub error_type: ErrorType,
    /// The stable machine code.
    pub code: ErrorCode,
    /// A human explanation.
    pub message: String,
    /// The request field at fault, as a JSON path (`scopes[0]`), when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// The policy or session rule that refused a payment (`policy.per_payment_max`,
    /// `session.budget_limit`, …), for the codes that are refusals by a rule.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// The request id (also in `X-Request-Id`).
    pub request_id: String,
}

/// An error answer of the API.
#[derive(Debug, Clone)]
pub struct ApiError {
    code: ErrorCode,
    message: String,
    field: Option<String>,
    rule: Option<String>,
    retry_after_seconds: Option<u64>,
}

impl ApiError {
    /// An error with a code and a message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self { code, message: message.into(), field: None, rule: None, retry_after_seconds: None }
    }

    /// Names the request field at fault.
    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    /// Names the policy or session rule that refused.
    pub fn with_rule(mut self, rule: impl Into<String>) -> Self {
        self.rule = Some(rule.into());
        self
    }

    /// Adds `Retry-After`.
    pub fn with_retry_after(mut self, seconds: u64) -> Self {
        self.retry_after_seconds = Some(seconds);
        self
    }

    /// The code.
    pub fn code(&self) -> ErrorCode {
        self.code
    }

    /// The human message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The request field at fault, if any.
    pub fn field(&self) -> Option<&str> {
        self.field.as_deref()
    }

    /// 404 for a resource that does not exist in the caller's account.
    pub fn not_found(what: &str) -> Self {
        Self::new(ErrorCode::NotFound, format!("no such {what}"))
    }

    /// 500, logging the cause (which never reaches the client).
    pub fn internal(context: &str, error: &dyn std::fmt::Display) -> Self {
        tracing::error!(error.message = %error, context, "internal error");
        Self::new(
            ErrorCode::InternalError,
            "an unexpected error occurred; quote the request id when reporting it",
        )
    }

    /// 503 for a dependency that is down, logging the cause.
    pub fn unavailable(context: &str, error: &dyn std::fmt::Display) -> Self {
        tracing::warn!(error.message = %error, context, "dependency unavailable");
        Self::new(ErrorCode::ServiceUnavailable, format!("{context} is unavailable; retry later"))
            .with_retry_after(1)
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(error: sqlx::Error) -> Self {
        match error {
            sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::PoolClosed => {
                Self::unavailable("the database", &error)
            }
            // Postgres refused the request's data (a number out of range, a NUL character):
            // the request is at fault, and sending it again fails the same way.
            ref data if awx_bus::HandlerError::is_data_exception(data) => {
                tracing::warn!(error.message = %data, "the database refused a request's data");
                Self::new(
                    ErrorCode::InvalidRequest,
                    "the request holds a value that cannot be stored",
                )
            }
            other => Self::internal("database query", &other),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                error_type: self.code.error_type(),
                code: self.code,
                message: self.message,
                field: self.field,
                rule: self.rule,
                request_id: request_id::current(),
            },
        };
        let mut response = (self.code.status(), axum::Json(body)).into_response();
        if let Some(seconds) = self.retry_after_seconds {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_serialize_as_snake_case() {
        assert_eq!(
            serde_json::to_string(&ErrorCode::IdempotencyKeyReused).unwrap(),
            "\"idempotency_key_reused\""
        );
        assert_eq!(ErrorCode::IdempotencyKeyReused.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(ErrorCode::RateLimited.status(), StatusCode::TOO_MANY_REQUESTS);
    }

    #[test]
    fn withdrawal_codes_have_their_statuses() {
        for (code, name, status, error_type) in [
            (
                ErrorCode::NetworkNotSupported,
                "network_not_supported",
                StatusCode::BAD_REQUEST,
                ErrorType::InvalidRequestError,
            ),
            (
                ErrorCode::WithdrawalAddressNotAllowed,
                "withdrawal_address_not_allowed",
                StatusCode::FORBIDDEN,
                ErrorType::PermissionError,
            ),
            (
                ErrorCode::WithdrawalConflict,
                "withdrawal_conflict",
                StatusCode::CONFLICT,
                ErrorType::InvalidRequestError,
            ),
            (
                ErrorCode::InsufficientFunds,
                "insufficient_funds",
                StatusCode::PAYMENT_REQUIRED,
                ErrorType::InvalidRequestError,
            ),
        ] {
            assert_eq!(serde_json::to_value(code).unwrap(), name);
            assert_eq!(code.status(), status, "{name}");
            assert_eq!(code.error_type(), error_type, "{name}");
        }
    }

    #[test]
    fn state_codes_are_conflicts() {
        for (code, name) in [
            (ErrorCode::PaymentState, "payment_state"),
            (ErrorCode::SessionState, "session_state"),
            (ErrorCode::AgentState, "agent_state"),
            (ErrorCode::ApiKeyState, "api_key_state"),
        ] {
            assert_eq!(serde_json::to_value(code).unwrap(), name);
            assert_eq!(code.status(), StatusCode::CONFLICT, "{name}");
            assert_eq!(code.error_type(), ErrorType::InvalidRequestError, "{name}");
        }
    }

    #[test]
    fn a_signer_refusal_is_a_bad_gateway_with_its_own_code() {
        let code = ErrorCode::SignerRefused;
        assert_eq!(serde_json::to_value(code).unwrap(), "signer_refused");
        assert_eq!(code.status(), StatusCode::BAD_GATEWAY);
        assert_eq!(code.error_type(), ErrorType::ApiError);
    }

    #[test]
    fn target_codes_have_their_statuses() {
        for (code, name, status) in [
            (ErrorCode::InvalidTargetUrl, "invalid_target_url", StatusCode::BAD_REQUEST),
            (ErrorCode::TargetNotAllowed, "target_not_allowed", StatusCode::BAD_REQUEST),
            (ErrorCode::TargetUnreachable, "target_unreachable", StatusCode::BAD_GATEWAY),
            (ErrorCode::TargetTimeout, "target_timeout", StatusCode::GATEWAY_TIMEOUT),
            (
                ErrorCode::TargetResponseTooLarge,
                "target_response_too_large",
                StatusCode::BAD_GATEWAY,
            ),
            (
                ErrorCode::TargetTooManyRedirects,
                "target_too_many_redirects",
                StatusCode::BAD_GATEWAY,
            ),
        ] {
            assert_eq!(serde_json::to_value(code).unwrap(), name);
            assert_eq!(code.status(), status, "{name}");
        }
    }
}
