//! The x402 facilitator for providers (`provider` scope): `POST /verify`, `POST /settle`,
//! `GET /supported` under `/api/v1/x402/facilitator`, in the official protocol's shapes, so the
//! official `HTTPFacilitatorClient` works against it with our key in `X-API-Key`.
//!
//! Thin: the body is read as a facilitator request (a request that cannot be read is 400 naming
//! the field), sent to the settlement service over the bus, and its answer returned with HTTP 200,
//! including business failures (`isValid: false`, `success: false`).

use std::sync::Arc;
use std::time::Duration;

use awx_api::facilitator::{Settle, Supported, Verify};
use awx_x402::{FacilitatorRequest, RequestError};
use axum::extract::State;

use crate::auth::Principal;
use crate::auth::key::Scope;
use crate::error::{ApiError, ErrorBody, ErrorCode};
use crate::extract::ApiJson;
use crate::state::AppState;
use crate::upstream;

/// Checks that a facilitator request can be read, naming the field that cannot.
pub fn readable(request: &FacilitatorRequest) -> Result<(), ApiError> {
    request.normalize().map(|_| ()).map_err(|error| match error {
        RequestError::UnsupportedVersion => {
            ApiError::new(ErrorCode::InvalidField, error.to_string())
                .with_field("paymentPayload.x402Version")
        }
        RequestError::Invalid { ref path, .. } => {
            let path = path.clone();
            ApiError::new(ErrorCode::InvalidField, error.to_string()).with_field(path)
        }
    })
}

/// Verifies a payment against the provider's requirements.
#[utoipa::path(
    post, path = "/api/v1/x402/facilitator/verify", tag = "facilitator",
    security(("api_key" = ["provider", "admin"])),
    request_body(content = Object, description = "`{x402Version, paymentPayload, paymentRequirements}` (x402 v2, or v1 for v1 payloads)"),
    responses(
        (status = 200, description = "A VerifyResponse: `{isValid, invalidReason?, invalidMessage?, payer?}`; an invalid payment is 200 with `isValid: false`", body = Object),
        (status = 400, description = "The request cannot be read", body = ErrorBody),
        (status = 401, description = "Missing, invalid or revoked API key", body = ErrorBody),
        (status = 403, description = "The key lacks the provider scope", body = ErrorBody),
        (status = 503, description = "The facilitator or the chain is unavailable", body = ErrorBody),
    )
)]
pub async fn verify(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    ApiJson(request): ApiJson<FacilitatorRequest>,
) -> Result<axum::Json<awx_x402::VerifyResponse>, ApiError> {
    principal.require(Scope::Provider)?;
    readable(&request)?;
    let reply =
        upstream::call(&state, "settlement", &Verify { provider: principal.account_id, request })
            .await?;
    Ok(axum::Json(reply))
}

/// Settles a payment. An outside payer's authorization is submitted on chain and the answer
/// waits (bounded) for the receipt; a transaction still unmined then is
/// `{success: false, errorReason: "settlement_pending", transaction: <hash>}`: settle again to
/// follow it. A payment is settled at most once, however often it is sent.
#[utoipa::path(
    post, path = "/api/v1/x402/facilitator/settle", tag = "facilitator",
    security(("api_key" = ["provider", "admin"])),
    request_body(content = Object, description = "`{x402Version, paymentPayload, paymentRequirements}`"),
    responses(
        (status = 200, description = "A SettleResponse: `{success, transaction, network, payer?, errorReason?, errorMessage?}`", body = Object),
        (status = 400, description = "The request cannot be read", body = ErrorBody),
        (status = 401, description = "Missing, invalid or revoked API key", body = ErrorBody),
        (status = 403, description = "The key lacks the provider scope", body = ErrorBody),
        (status = 503, description = "The facilitator or the chain is unavailable", body = ErrorBody),
    )
)]
pub async fn settle(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    ApiJson(request): ApiJson<FacilitatorRequest>,
) -> Result<axum::Json<awx_x402::SettleResponse>, ApiError> {
    principal.require(Scope::Provider)?;
    readable(&request)?;
    let reply = upstream::call_with_timeout(
        &state,
        "settlement",
        &Settle { provider: principal.account_id, request },
        Duration::from_millis(state.settings.settle_timeout_ms),
    )
    .await?;
    Ok(axum::Json(reply))
}

/// The payment kinds the facilitator supports: every network as a v2 kind (and v1 names), with
/// the relayer addresses under `"eip155:*"`.
#[utoipa::path(
    get, path = "/api/v1/x402/facilitator/supported", tag = "facilitator",
    security(("api_key" = ["provider", "admin"])),
    responses(
        (status = 200, description = "A SupportedResponse: `{kinds, extensions, signers}`", body = Object),
        (status = 401, description = "Missing, invalid or revoked API key", body = ErrorBody),
        (status = 403, description = "The key lacks the provider scope", body = ErrorBody),
        (status = 503, description = "The facilitator is unavailable", body = ErrorBody),
    )
)]
pub async fn supported(
    State(state): State<Arc<AppState>>,
    principal: Principal,
) -> Result<axum::Json<awx_x402::SupportedResponse>, ApiError> {
    principal.require(Scope::Provider)?;
    Ok(axum::Json(upstream::call(&state, "settlement", &Supported {}).await?))
}
