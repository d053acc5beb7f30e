//! The Gate-style action envelope of the facilitator: `POST /api/v1/x402` with
//! `{"action": "x402.supported" | "x402.verify" | "x402.settle", "params": {...}}`, answered
//! `{code, msg, data, timestamp}` with Gate's numeric codes.
//!
//! - `code` 0 is success (`isValid: true`, `success: true`, or supported); a payment refused for a
//!   reason Gate has a code for gets that code (51001 … 51905), any other refusal 200 (as Gate's
//!   own failure examples show), with `data` carrying the full answer and `msg` the reason.
//! - A request that cannot be read is HTTP 400 with code 51001 (payload), 51002 (requirements) or
//!   51003 (a missing payload field). A body that is not JSON, or holds a key twice in one object
//!   (at any depth, `params` included), is refused before the action is read, as on every route:
//!   HTTP 400 in the error envelope (`malformed_json`, `invalid_field` naming the key).
//! - Gate's limits apply per action: 1 request/s per API key (10132) and 50/s globally (10133);
//!   the in-process flood guard answers 10131. These are HTTP 429 with `Retry-After`.
//! - `paymentPayload.accepted` may be partial (`{scheme, network}`), or spelled `accept`: the
//!   missing fields are taken from `paymentRequirements`, as Gate does.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use awx_api::facilitator::{Settle, Supported, Verify};
use awx_x402::{ErrorReason, FacilitatorRequest};
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::auth::Principal;
use crate::auth::key::Scope;
use crate::error::{ApiError, ErrorBody};
use crate::extract::ApiJson;
use crate::state::AppState;
use crate::upstream;

/// An action request.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GateRequest {
    /// `x402.supported`, `x402.verify` or `x402.settle`.
    #[schema(example = "x402.verify")]
    pub action: String,
    /// The action's parameters: for verify and settle, `{x402Version, paymentPayload, paymentRequirements}`.
    #[serde(default)]
    pub params: Value,
}

/// The envelope of every answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct GateResponse {
    /// 0 for success; Gate's codes otherwise.
    pub code: i64,
    /// Empty on success; the reason otherwise.
    pub msg: String,
    /// The answer (SupportedResponse, VerifyResponse or SettleResponse).
    pub data: Value,
    /// Unix seconds.
    pub timestamp: i64,
}

fn now_seconds() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| i64::try_from(elapsed.as_secs()).unwrap_or(0))
}

fn envelope(status: StatusCode, code: i64, msg: impl Into<String>, data: Value) -> Response {
    (status, axum::Json(GateResponse { code, msg: msg.into(), data, timestamp: now_seconds() }))
        .into_response()
}

/// What the envelope refuses with (documentation only): Gate's envelope when the action itself
/// refuses (codes 51001 … 51003, 10131 … 10133), the error envelope when the request is refused
/// before the action is read (a body that is not JSON, an unknown or repeated key, the route's
/// own rate limit).
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum GateRefusal {
    /// Gate's envelope.
    Gate(GateResponse),
    /// The error envelope.
    Error(ErrorBody),
}

/// Gate's code for one of our reasons; 200 for refusals Gate has no code for.
pub fn gate_code(reason: &ErrorReason) -> i64 {
    match reason {
        ErrorReason::InvalidPayload | ErrorReason::UnsupportedPayloadType => 51_001,
        ErrorReason::InvalidPaymentRequirements => 51_002,
        ErrorReason::InvalidNetwork | ErrorReason::InvalidExactEvmNetworkMismatch => 51_101,
        ErrorReason::AssetNotDeployedContract | ErrorReason::InvalidExactEvmEip3009NotSupported => {
            51_201
        }
        ErrorReason::InvalidExactEvmPayload | ErrorReason::InvalidExactEvmScheme => 51_301,
        ErrorReason::InvalidExactEvmRecipientMismatch => 51_401,
        ErrorReason::InvalidExactEvmRequiredAmount => 51_403,
        ErrorReason::InvalidExactEvmPayloadAuthorizationValueMismatch => 51_404,
        ErrorReason::InvalidExactEvmNonceAlreadyUsed => 51_502,
        ErrorReason::InvalidExactEvmInsufficientBalance | ErrorReason::InsufficientFunds => 51_602,
        ErrorReason::InvalidExactEvmFailedToParseSignature => 51_701,
        ErrorReason::InvalidExactEvmSignature => 51_704,
        _ => 200,
    }
}

/// Fills a partial `accepted` (or `accept`) from `paymentRequirements`.
fn complete_accepted(params: &mut Value) {
    let requirements = params.get("paymentRequirements").cloned();
    let Some(payload) = params.get_mut("paymentPayload").and_then(Value::as_object_mut) else {
        return;
    };
    if !payload.contains_key("accepted")
        && let Some(accept) = payload.remove("accept")
    {
        payload.insert("accepted".into(), accept);
    }
    let Some(Value::Object(requirements)) = requirements else { return };
    let accepted =
        payload.entry("accepted").or_insert_with(|| Value::Object(serde_json::Map::new()));
    if let Value::Object(accepted) = accepted {
        for (key, value) in requirements {
            accepted.entry(key).or_insert(value);
        }
    }
}

/// The HTTP 400 envelope of an unreadable request.
fn unreadable(error: &ApiError, field: Option<&str>) -> Response {
    let field = field.unwrap_or("");
    let code = if field.starts_with("paymentRequirements") {
        51_002
    } else if field.starts_with("paymentPayload.payload") {
        51_003
    } else {
        51_001
    };
    envelope(StatusCode::BAD_REQUEST, code, error.message(), Value::Null)
}

/// The action envelope.
#[utoipa::path(
    post, path = "/api/v1/x402", tag = "facilitator",
    security(("api_key" = ["provider", "admin"])),
    request_body = GateRequest,
    responses(
        (status = 200, description = "The envelope: `code` 0, or Gate's code of the refusal", body = GateResponse),
        (status = 400, description = "Unreadable params (codes 51001, 51002, 51003). A body that is not JSON, or that holds a key twice in one object at any depth, is refused before the action is read, in the error envelope (`malformed_json`, `invalid_field` naming the key, or an unknown key)", body = GateRefusal),
        (status = 413, description = "The body is larger than `http.body_bytes_max`", body = ErrorBody),
        (status = 415, description = "The body is not sent as `application/json`", body = ErrorBody),
        (status = 429, description = "Rate limited by Gate's limits per action (codes 10131, 10132, 10133), or by the route's own limit (the error envelope, `rate_limited`)", body = GateRefusal),
    )
)]
pub async fn action(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    ApiJson(request): ApiJson<GateRequest>,
) -> Response {
    if let Err(error) = principal.require(Scope::Provider) {
        return error.into_response();
    }
    if !matches!(request.action.as_str(), "x402.supported" | "x402.verify" | "x402.settle") {
        return envelope(
            StatusCode::BAD_REQUEST,
            51_001,
            format!("unknown action {:?}", request.action),
            Value::Null,
        );
    }
    let outcome = state.rate_limiter.check(&principal, &format!("gate.{}", request.action)).await;
    if !outcome.allowed {
        let exhausted =
            |name: &str| outcome.policies.iter().any(|p| p.name == name && p.remaining == 0);
        let code = if outcome.policies.len() == 1 {
            10_131
        } else if exhausted("per-key") {
            10_132
        } else {
            10_133
        };
        let mut response =
            envelope(StatusCode::TOO_MANY_REQUESTS, code, "rate limit exceeded", Value::Null);
        outcome.write_headers(response.headers_mut());
        return response;
    }
    let answer = match request.action.as_str() {
        "x402.supported" => match upstream::call(&state, "settlement", &Supported {}).await {
            Ok(supported) => {
                envelope(StatusCode::OK, 0, "", serde_json::to_value(supported).unwrap_or_default())
            }
            Err(error) => error.into_response(),
        },
        action => {
            let mut params = request.params;
            complete_accepted(&mut params);
            // Missing requirements are Gate's 51002; anything else unreadable here is 51001.
            let code = if params.get("paymentRequirements").is_none() { 51_002 } else { 51_001 };
            let facilitator_request: FacilitatorRequest = match serde_json::from_value(params) {
                Ok(parsed) => parsed,
                Err(error) => {
                    return envelope(StatusCode::BAD_REQUEST, code, error.to_string(), Value::Null);
                }
            };
            if let Err(error) = super::facilitator::readable(&state.registry, &facilitator_request)
            {
                return unreadable(&error, error.field());
            }
            if action == "x402.verify" {
                let command =
                    Verify { provider: principal.account_id, request: facilitator_request };
                match upstream::call(&state, "settlement", &command).await {
                    Ok(reply) => {
                        let (code, msg) = match &reply.invalid_reason {
                            None if reply.is_valid => (0, String::new()),
                            Some(reason) => (gate_code(reason), reason.to_string()),
                            None => (200, "invalid".into()),
                        };
                        envelope(
                            StatusCode::OK,
                            code,
                            msg,
                            serde_json::to_value(reply).unwrap_or_default(),
                        )
                    }
                    Err(error) => error.into_response(),
                }
            } else {
                let command =
                    Settle { provider: principal.account_id, request: facilitator_request };
                let timeout = Duration::from_millis(state.settings.settle_timeout_ms);
                match upstream::call_with_timeout(&state, "settlement", &command, timeout).await {
                    Ok(reply) => {
                        let (code, msg) = match &reply.error_reason {
                            None if reply.success => (0, String::new()),
                            Some(reason) => (gate_code(reason), reason.to_string()),
                            None => (200, "failed".into()),
                        };
                        envelope(
                            StatusCode::OK,
                            code,
                            msg,
                            serde_json::to_value(reply).unwrap_or_default(),
                        )
                    }
                    Err(error) => error.into_response(),
                }
            }
        }
    };
    let mut answer = answer;
    answer.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    answer
}
