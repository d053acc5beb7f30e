//! Calling the other services over the bus, and mapping their answers to the API's errors.
//!
//! A service's rejection keeps its stable code when the API has one for it; a service that does
//! not answer in time, or a bus that is down, is 503 `service_unavailable` with `Retry-After`;
//! anything else is a 500 with the request id.

use std::time::Duration;

use awx_bus::{BusError, Command};

use crate::error::{ApiError, ErrorCode};
use crate::state::AppState;

/// The API error of a rule's refusal (`policy.…`, `session.…`).
fn rule_refusal(rule: &str, message: String) -> ApiError {
    let code = match rule {
        "session.budget_limit" => ErrorCode::SessionBudgetExceeded,
        "session.expired" => ErrorCode::SessionExpired,
        "session.revoked" => ErrorCode::SessionRevoked,
        rule if rule.starts_with("session.") => ErrorCode::SessionNotApplicable,
        _ => ErrorCode::PolicyDenied,
    };
    ApiError::new(code, message).with_rule(rule)
}

/// The API error of a service's rejection code.
fn rejection(code: &str, message: String) -> ApiError {
    if awx_api::policy::codes::is_rule(code) {
        return rule_refusal(code, message);
    }
    let code = match code {
        "agent_not_found" | "session_not_found" | "payment_not_found" => ErrorCode::NotFound,
        "no_payable_offer" => ErrorCode::NoPayableOffer,
        "chain_not_offered" => ErrorCode::ChainNotOffered,
        "payment_state" => ErrorCode::PaymentState,
        "session_state" => ErrorCode::SessionState,
        "agent_state" => ErrorCode::AgentState,
        "conflict" => ErrorCode::Conflict,
        "signer_unavailable"
        | "ledger_unavailable"
        | "policy_unavailable"
        | "settlement_unavailable" => {
            return ApiError::new(ErrorCode::ServiceUnavailable, message).with_retry_after(1);
        }
        "invalid_request" => ErrorCode::InvalidRequest,
        "insufficient_funds" => ErrorCode::InsufficientFunds,
        "hold_not_found" => ErrorCode::NotFound,
        "hold_not_pending" | "idempotency_conflict" => ErrorCode::Conflict,
        "faucet_unavailable" => ErrorCode::FaucetUnavailable,
        "network_not_supported" => ErrorCode::NetworkNotSupported,
        "withdrawal_not_found" => ErrorCode::NotFound,
        "withdrawal_conflict" => ErrorCode::WithdrawalConflict,
        "withdrawal_address_not_allowed" => ErrorCode::WithdrawalAddressNotAllowed,
        "signer_refused" => ErrorCode::SignerRefused,
        "chain_unavailable" => {
            return ApiError::new(ErrorCode::ServiceUnavailable, message).with_retry_after(1);
        }
        other => {
            tracing::error!(code = other, "a service answered a code the gateway does not know");
            ErrorCode::InternalError
        }
    };
    ApiError::new(code, message)
}

/// Maps a bus failure.
pub fn bus_error(service: &str, error: BusError) -> ApiError {
    match error {
        BusError::Rejected { code, message } => rejection(&code, message),
        BusError::Timeout { .. } => ApiError::new(
            ErrorCode::ServiceUnavailable,
            format!("the {service} service did not answer in time; retry later"),
        )
        .with_retry_after(1),
        BusError::Redis(_) | BusError::Closed => ApiError::unavailable(service, &error),
        // What the request carries is more than the bus takes in one message.
        BusError::TooLarge { bytes, max, .. } => ApiError::new(
            ErrorCode::PayloadTooLarge,
            format!(
                "the request makes a message of {bytes} bytes for the {service} service; the most is {max}"
            ),
        ),
        BusError::Config(_)
        | BusError::Postgres(_)
        | BusError::Codec(_)
        | BusError::Failed { .. } => ApiError::internal(service, &error),
    }
}

/// Sends `command` to its service and waits for the reply.
pub async fn call<C: Command>(
    state: &AppState,
    service: &str,
    command: &C,
) -> Result<C::Reply, ApiError> {
    call_with_timeout(
        state,
        service,
        command,
        Duration::from_millis(state.settings.upstream_timeout_ms),
    )
    .await
}

/// Sends `command` to its service and waits up to `timeout` for the reply.
pub async fn call_with_timeout<C: Command>(
    state: &AppState,
    service: &str,
    command: &C,
    timeout: Duration,
) -> Result<C::Reply, ApiError> {
    state.bus.send(command, timeout).await.map_err(|error| bus_error(service, error))
}

#[cfg(test)]
mod tests {
    use awx_api::{policy, withdrawals};

    use super::*;

    #[test]
    fn withdrawal_rejections_keep_their_codes() {
        for (code, expected) in [
            (withdrawals::codes::NETWORK_NOT_SUPPORTED, ErrorCode::NetworkNotSupported),
            (withdrawals::codes::WITHDRAWAL_NOT_FOUND, ErrorCode::NotFound),
            (withdrawals::codes::WITHDRAWAL_CONFLICT, ErrorCode::WithdrawalConflict),
            (policy::codes::WITHDRAWAL_ADDRESS_NOT_ALLOWED, ErrorCode::WithdrawalAddressNotAllowed),
            (policy::codes::INSUFFICIENT_FUNDS, ErrorCode::InsufficientFunds),
            (policy::codes::AGENT_NOT_FOUND, ErrorCode::NotFound),
            (policy::codes::INVALID_REQUEST, ErrorCode::InvalidRequest),
            // A command whose data Postgres refused, in any service: final, and the caller's.
            (awx_bus::HandlerError::INVALID_REQUEST, ErrorCode::InvalidRequest),
            (awx_api::ledger::codes::INVALID_REQUEST, ErrorCode::InvalidRequest),
            (awx_api::facilitator::codes::INVALID_REQUEST, ErrorCode::InvalidRequest),
            (policy::codes::LEDGER_UNAVAILABLE, ErrorCode::ServiceUnavailable),
            (policy::codes::SIGNER_UNAVAILABLE, ErrorCode::ServiceUnavailable),
            (policy::codes::SETTLEMENT_UNAVAILABLE, ErrorCode::ServiceUnavailable),
            (policy::codes::SIGNER_REFUSED, ErrorCode::SignerRefused),
        ] {
            assert_eq!(rejection(code, "why".into()).code(), expected, "{code}");
        }
    }

    #[test]
    fn state_rejections_are_conflicts_with_their_own_codes() {
        for (code, expected) in [
            (policy::codes::PAYMENT_STATE, ErrorCode::PaymentState),
            (policy::codes::SESSION_STATE, ErrorCode::SessionState),
            (policy::codes::AGENT_STATE, ErrorCode::AgentState),
        ] {
            let error = rejection(code, "why".into());
            assert_eq!(error.code(), expected, "{code}");
            assert_eq!(error.code().status(), axum::http::StatusCode::CONFLICT, "{code}");
        }
    }
}
