//! The x402 facilitator for providers (`provider` scope): `POST /verify`, `POST /settle`,
//! `GET /supported` under `/api/v1/x402/facilitator`, in the official protocol's shapes, so the
//! official `HTTPFacilitatorClient` works against it with our key in `X-API-Key`.
//!
//! Thin: the body is read as a facilitator request (a request that cannot be read, that holds a
//! key twice in one object at any depth, or whose amount is above the platform's bound, is 400
//! naming the field), sent to the settlement service
//! over the bus, and its answer returned with HTTP 200, including business failures
//! (`isValid: false`, `success: false`). The one exception: a verify of an authorization our
//! agents were issued that this gateway heard announced is answered from its memory
//! (`awx_api::issued`), with the same check the settlement and policy services apply.

use std::sync::Arc;
use std::time::Duration;

use awx_api::facilitator::{Settle, Supported, Verify};
use awx_types::{API_WHOLE_UNITS_MAX, Amount, AmountError};
use awx_x402::{
    ExactEvmPayload, FacilitatorRequest, NormalizedRequest, RequestError, TokenRegistry,
};
use axum::extract::State;

use crate::auth::Principal;
use crate::auth::key::Scope;
use crate::error::{ApiError, ErrorBody, ErrorCode};
use crate::extract::ApiJson;
use crate::routes::facilitator_doc::{FacilitatorRequestDoc, SettleResponseDoc, VerifyResponseDoc};
use crate::state::AppState;
use crate::upstream;

/// Checks that a facilitator request can be read, naming the field that cannot, and that its
/// amounts are within the platform's bound ([`amounts_within_max`]).
pub fn readable(
    registry: &TokenRegistry,
    request: &FacilitatorRequest,
) -> Result<NormalizedRequest, ApiError> {
    let normalized = request.normalize().map_err(|error| match error {
        RequestError::UnsupportedVersion => {
            ApiError::new(ErrorCode::InvalidField, error.to_string())
                .with_field("paymentPayload.x402Version")
        }
        RequestError::Invalid { ref path, .. } => {
            let path = path.clone();
            ApiError::new(ErrorCode::InvalidField, error.to_string()).with_field(path)
        }
    })?;
    amounts_within_max(registry, &normalized)?;
    Ok(normalized)
}

/// Whether the atomic amount `text` is above `max`. Text that is not a plain decimal integer is
/// not judged here: verification answers it (`isValid: false`).
fn above(text: &str, max: Amount) -> bool {
    match Amount::parse_atomic(text) {
        Ok(amount) => amount > max,
        Err(error) => error == AmountError::Overflow,
    }
}

/// Refuses (400 `invalid_field`, naming the field) an amount of a facilitator request above the
/// platform's bound: in a token the platform knows (its registry), [`API_WHOLE_UNITS_MAX`]
/// whole tokens (10^15 atomic units of USDC); in any other asset, whose decimals are unknown,
/// the largest amount the ledger holds (2^128 - 1 atomic units). The fields are the
/// requirements' amount (`maxAmountRequired` in v1), the payload's `accepted.amount` (v2) and
/// the signed value (`authorization.value`, or Permit2's `permitted.amount`).
pub fn amounts_within_max(
    registry: &TokenRegistry,
    request: &NormalizedRequest,
) -> Result<(), ApiError> {
    let requirements = &request.requirements;
    let token = requirements
        .exact_evm()
        .ok()
        .and_then(|offer| registry.by_address(offer.chain_id, offer.asset));
    let (max, unit) = token.map_or((Amount::MAX, None), |token| {
        (Amount::api_max(token.decimals), Some(token.symbol.as_str()))
    });
    let refuse = |field: &str| {
        let bound = match unit {
            Some(symbol) => format!("{API_WHOLE_UNITS_MAX} {symbol} ({max} atomic units)"),
            None => format!("{max} atomic units"),
        };
        Err(ApiError::new(ErrorCode::InvalidField, format!("{field} must be at most {bound}"))
            .with_field(field))
    };
    let v1 = request.x402_version == awx_x402::v1::X402_VERSION_1;
    if above(&requirements.amount, max) {
        return refuse(if v1 {
            "paymentRequirements.maxAmountRequired"
        } else {
            "paymentRequirements.amount"
        });
    }
    // In v1, `accepted` is built from the requirements.
    if !v1 && above(&request.payload.accepted.amount, max) {
        return refuse("paymentPayload.accepted.amount");
    }
    let signed = match ExactEvmPayload::from_json(&request.payload.payload) {
        Ok(ExactEvmPayload::Eip3009(eip3009)) => {
            Some(("paymentPayload.payload.authorization.value", eip3009.authorization.value))
        }
        Ok(ExactEvmPayload::Permit2(permit2)) => Some((
            "paymentPayload.payload.permit2Authorization.permitted.amount",
            permit2.permit2_authorization.permitted.amount,
        )),
        Err(_) => None,
    };
    if let Some((field, value)) = signed
        && u128::try_from(value).ok().is_none_or(|atomic| Amount::from_atomic(atomic) > max)
    {
        return refuse(field);
    }
    Ok(())
}

/// Verifies a payment against the provider's requirements.
#[utoipa::path(
    post, path = "/api/v1/x402/facilitator/verify", tag = "facilitator",
    security(("api_key" = ["provider", "admin"])),
    request_body(content = FacilitatorRequestDoc, description = "`{x402Version, paymentPayload, paymentRequirements}` (x402 v2 as shown; a v1 payload with v1 requirements is accepted too)"),
    responses(
        (status = 200, description = "An invalid payment is 200 with `isValid: false` and the reason", body = VerifyResponseDoc),
        (status = 400, description = "The request cannot be read (`malformed_json`; `invalid_field` names the field, or the key an object holds twice at any depth), or an amount is above the bound: 10^9 whole tokens of a token the platform knows (10^15 atomic units of USDC), 2^128 - 1 atomic units of any other (`invalid_field` names it)", body = ErrorBody),
        (status = 401, description = "Missing, invalid or revoked API key", body = ErrorBody),
        (status = 403, description = "The key lacks the provider scope", body = ErrorBody),
        (status = 413, description = "The body is larger than `http.body_bytes_max`", body = ErrorBody),
        (status = 415, description = "The body is not sent as `application/json`", body = ErrorBody),
        (status = 503, description = "The facilitator or the chain is unavailable", body = ErrorBody),
    )
)]
pub async fn verify(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    ApiJson(request): ApiJson<FacilitatorRequest>,
) -> Result<axum::Json<awx_x402::VerifyResponse>, ApiError> {
    principal.require(Scope::Provider)?;
    let normalized = readable(&state.registry, &request)?;
    if let Some(answer) = issued_verify(&state, &normalized) {
        return Ok(axum::Json(answer));
    }
    let reply =
        upstream::call(&state, "settlement", &Verify { provider: principal.account_id, request })
            .await?;
    Ok(axum::Json(reply))
}

/// The verify answer for one of our agents' payments from this gateway's memory of the
/// authorizations they were issued (`awx_api::issued`), if it has this one; the settlement
/// service answers the rest.
fn issued_verify(
    state: &AppState,
    normalized: &NormalizedRequest,
) -> Option<awx_x402::VerifyResponse> {
    let answer = state.issued.verify_request(normalized)?;
    metrics::counter!("gateway_own_verify_from_memory_total").increment(1);
    Some(answer)
}

/// Settles a payment. An outside payer's authorization is submitted on chain and the answer
/// waits (bounded) for the receipt; a transaction still unmined then is
/// `{success: false, errorReason: "settlement_pending", transaction: <hash>}`: settle again to
/// follow it. A payment is settled at most once, however often it is sent.
#[utoipa::path(
    post, path = "/api/v1/x402/facilitator/settle", tag = "facilitator",
    security(("api_key" = ["provider", "admin"])),
    request_body(content = FacilitatorRequestDoc, description = "`{x402Version, paymentPayload, paymentRequirements}` (x402 v2 as shown; a v1 payload with v1 requirements is accepted too)"),
    responses(
        (status = 200, description = "A payment that did not settle is 200 with `success: false` and the reason", body = SettleResponseDoc),
        (status = 400, description = "The request cannot be read (`malformed_json`; `invalid_field` names the field, or the key an object holds twice at any depth), or an amount is above the bound: 10^9 whole tokens of a token the platform knows (10^15 atomic units of USDC), 2^128 - 1 atomic units of any other (`invalid_field` names it)", body = ErrorBody),
        (status = 401, description = "Missing, invalid or revoked API key", body = ErrorBody),
        (status = 403, description = "The key lacks the provider scope", body = ErrorBody),
        (status = 413, description = "The body is larger than `http.body_bytes_max`", body = ErrorBody),
        (status = 415, description = "The body is not sent as `application/json`", body = ErrorBody),
        (status = 503, description = "The facilitator or the chain is unavailable", body = ErrorBody),
    )
)]
pub async fn settle(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    ApiJson(request): ApiJson<FacilitatorRequest>,
) -> Result<axum::Json<awx_x402::SettleResponse>, ApiError> {
    principal.require(Scope::Provider)?;
    readable(&state.registry, &request)?;
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
