//! Calling the other services over the bus, and mapping their answers to the API's errors.
//!
//! A service's rejection keeps its stable code when the API has one for it; a service that does
//! not answer in time, or a bus that is down, is 503 `service_unavailable` with `Retry-After`;
//! anything else is a 500 with the request id.

use std::time::Duration;

use awx_bus::{BusError, Command};

use crate::error::{ApiError, ErrorCode};
use crate::state::AppState;

/// The API error of a service's rejection code.
fn rejection(code: &str, message: String) -> ApiError {
    let code = match code {
        "invalid_request" => ErrorCode::InvalidRequest,
        "insufficient_funds" => ErrorCode::InsufficientFunds,
        "hold_not_found" => ErrorCode::NotFound,
        "hold_not_pending" | "idempotency_conflict" => ErrorCode::Conflict,
        "faucet_unavailable" => ErrorCode::InvalidRequest,
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
