//! Paying (agent scope): `POST /x402/pay`, `POST /x402/sessions/{id}/pay`, sessions, a payment's
//! state, and an admin's approval or rejection.
//!
//! The gateway fetches the target's challenge through the SSRF-guarded client and hands it to
//! the policy service, which chooses the offer, decides, reserves, holds and has the signer sign.
//! The answer's `payment_signature` is the exact header value for the retry (`PAYMENT-SIGNATURE`
//! for v2 servers, `X-PAYMENT` for v1; `payment_header` says which).

use std::sync::Arc;
use std::time::Duration;

use awx_api::policy::{self, PaymentView, SessionView};
use awx_types::{AgentId, LedgerId, PaymentId, SessionId};
use awx_x402::PaymentRequired;
use axum::Extension;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::Principal;
use crate::auth::key::Scope;
use crate::error::{ApiError, ErrorBody, ErrorCode};
use crate::extract::{ApiJson, ApiPath};
use crate::idempotency::MintedId;
use crate::routes::check::{assess_offer, fetch_challenge};
use crate::state::AppState;
use crate::upstream;

/// A payment.
#[derive(Debug, Serialize, ToSchema)]
pub struct PaymentResponse {
    /// The payment (`ldg_…`).
    #[schema(example = "ldg_0190a3c48f2b7c3e9d1e5f6a7b8c9d0e")]
    pub ledger_id: String,
    /// The amount the provider gets, in the token's units.
    #[schema(example = "0.10")]
    pub amount: String,
    /// The platform's fee, charged on top.
    #[schema(example = "0.002")]
    pub fee_amount: String,
    /// The fee rate in percent.
    #[schema(example = "2.0")]
    pub fee_rate: String,
    /// The token.
    #[schema(example = "USDC")]
    pub token: String,
    /// The CAIP-2 chain.
    #[schema(example = "eip155:84532")]
    pub chain: String,
    /// `completed` (signed; funds held for the provider), `pending` (waiting for an admin's
    /// approval) or `failed`.
    #[schema(example = "completed")]
    pub status: String,
    /// The value of the header to retry the target with, once completed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payment_signature: Option<String>,
    /// Which header carries `payment_signature`: `PAYMENT-SIGNATURE` (v2) or `X-PAYMENT` (v1).
    #[schema(example = "PAYMENT-SIGNATURE")]
    pub payment_header: String,
    /// The detailed state: `pending_approval`, `authorizing`, `authorized`, `captured`,
    /// `settled`, `failed`, `rejected` or `expired`.
    pub state: String,
    /// The agent that pays.
    pub agent_id: String,
    /// The session paid from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    /// The payee.
    pub pay_to: String,
    /// What was paid for.
    pub target_url: String,
    /// Until when the signed authorization is valid (Unix seconds).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub valid_before: Option<i64>,
    /// Why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<PaymentErrorView>,
    /// When it was created (Unix seconds).
    pub created_at: i64,
    /// Its settlement on chain, once a provider settled it through our facilitator (shown by
    /// `GET /x402/payments/{ledger_id}`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub settlement: Option<crate::routes::settlements::PaymentSettlementView>,
}

/// Why a payment failed.
#[derive(Debug, Serialize, ToSchema)]
pub struct PaymentErrorView {
    /// A stable code.
    pub code: String,
    /// For people.
    pub message: String,
}

impl PaymentResponse {
    fn new(view: PaymentView) -> Self {
        Self {
            ledger_id: view.ledger_id.to_string(),
            amount: view.amount,
            fee_amount: view.fee_amount,
            fee_rate: view.fee_rate,
            token: view.token,
            chain: view.chain,
            status: view.status,
            payment_signature: view.payment_signature,
            payment_header: if view.x402_version == 1 { "X-PAYMENT" } else { "PAYMENT-SIGNATURE" }
                .to_owned(),
            state: view.state,
            agent_id: view.agent_id.to_string(),
            session_id: view.session_id.map(|s| s.to_string()),
            pay_to: view.pay_to.to_checksum(None),
            target_url: view.target_url,
            valid_before: view.valid_before_unix,
            error: view.error.map(|e| PaymentErrorView { code: e.code, message: e.message }),
            created_at: view.created_at_unix,
            settlement: None,
        }
    }
}

/// A payment to make.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PayRequest {
    /// The agent whose wallet pays.
    #[schema(pattern = "^agt_[0-9a-f]{32}$")]
    pub agent_id: String,
    /// The x402 URL to pay for.
    #[schema(example = "https://paid-api.example.com/v1/data")]
    pub target_url: String,
    /// A session to pay from.
    #[serde(default)]
    #[schema(pattern = "^ses_[0-9a-f]{32}$")]
    pub session_id: Option<String>,
    /// The CAIP-2 chain (the session's, then the agent's default, when absent).
    #[serde(default)]
    pub chain: Option<String>,
}

/// A payment from a session.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SessionPayRequest {
    /// The x402 URL to pay for.
    pub target_url: String,
}

fn parse_id<T>(
    text: &str,
    parse: impl Fn(&str) -> Result<T, awx_types::IdError>,
    field: &str,
) -> Result<T, ApiError> {
    parse(text).map_err(|error| {
        ApiError::new(ErrorCode::InvalidField, format!("{field}: {error}")).with_field(field)
    })
}

/// How long the gateway waits for a payment: the policy service waits for the ledger and the
/// signer in turn.
fn pay_timeout(state: &AppState) -> Duration {
    Duration::from_millis(state.settings.upstream_timeout_ms.saturating_mul(2))
}

/// The most payable offers a challenge may make.
pub const CHALLENGE_OFFERS_MAX: usize = 16;

/// The most bytes the part of a challenge handed to the policy service may take (its payable
/// offers and its resource).
pub const CHALLENGE_BYTES_MAX: usize = 16 * 1024;

/// The part of a challenge the policy service needs, bounded: the offers the platform can pay
/// (the others could never be chosen) and the resource; not the extensions or the error text.
/// A target may answer up to `outbound.body_bytes_max`; what goes on the bus stays small.
fn payable_part(state: &AppState, challenge: PaymentRequired) -> Result<PaymentRequired, ApiError> {
    let too_large = |what: String| {
        ApiError::new(ErrorCode::TargetResponseTooLarge, format!("the target's challenge {what}"))
            .with_field("target_url")
    };
    let accepts: Vec<_> = challenge
        .accepts
        .into_iter()
        .filter(|offer| assess_offer(offer, &state.registry).is_ok())
        .collect();
    if accepts.len() > CHALLENGE_OFFERS_MAX {
        return Err(too_large(format!(
            "makes {} payable offers; the most is {CHALLENGE_OFFERS_MAX}",
            accepts.len()
        )));
    }
    let part = PaymentRequired {
        x402_version: challenge.x402_version,
        error: None,
        resource: challenge.resource,
        accepts,
        extensions: None,
        other: Default::default(),
    };
    let bytes = serde_json::to_vec(&part).map_or(usize::MAX, |json| json.len());
    if bytes > CHALLENGE_BYTES_MAX {
        return Err(too_large(format!(
            "takes {bytes} bytes without its extensions; the most is {CHALLENGE_BYTES_MAX}"
        )));
    }
    Ok(part)
}

/// What to pay, and from which agent (and session).
struct Target {
    /// The payment's id: minted by the handler, the same on every attempt of an idempotent
    /// request (see [`MintedId`]).
    payment_id: PaymentId,
    agent_id: AgentId,
    session_id: Option<SessionId>,
    chain: Option<String>,
    target_url: String,
}

async fn pay_target(
    state: &AppState,
    principal: &Principal,
    target: Target,
) -> Result<PaymentResponse, ApiError> {
    let Target { payment_id, agent_id, session_id, chain, target_url } = target;
    let fetched = fetch_challenge(state, &target_url).await?;
    let challenge = fetched.challenge.map_err(|why| {
        ApiError::new(ErrorCode::NotX402, format!("{target_url} does not take x402: {why}"))
            .with_field("target_url")
    })?;
    let command = policy::Pay {
        owner: principal.account_id,
        payment_id,
        agent_id,
        session_id,
        chain,
        target_url,
        redirect_hops: fetched.hops,
        x402_version: challenge.x402_version,
        challenge: payable_part(state, challenge.payment_required)?,
    };
    let view = upstream::call_with_timeout(state, "policy", &command, pay_timeout(state)).await?;
    Ok(PaymentResponse::new(view))
}

/// Pays an x402 URL: fetches its challenge, chooses the offer, checks the policy and the
/// session, holds amount plus fee, and signs. Retry the target with `payment_signature` in the
/// header `payment_header`.
#[utoipa::path(
    post, path = "/api/v1/x402/pay", tag = "x402",
    security(("api_key" = ["agent", "admin"])),
    request_body = PayRequest,
    responses(
        (status = 200, description = "`completed` (signed) or `pending` (waiting for approval)", body = PaymentResponse),
        (status = 400, description = "Invalid request or target URL", body = ErrorBody),
        (status = 402, description = "The agent's wallet cannot cover amount plus fee", body = ErrorBody),
        (status = 403, description = "A policy or session rule refuses (`rule` names it)", body = ErrorBody),
        (status = 404, description = "No such agent or session", body = ErrorBody),
        (status = 422, description = "The target does not take x402, or has no payable offer (on the chain)", body = ErrorBody),
        (status = 502, description = "The target could not be fetched, or its challenge is too large", body = ErrorBody),
        (status = 503, description = "The signer, the ledger or the policy service is unavailable; nothing is reserved", body = ErrorBody),
    )
)]
pub async fn pay(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    minted: Option<Extension<MintedId>>,
    ApiJson(request): ApiJson<PayRequest>,
) -> Result<axum::Json<PaymentResponse>, ApiError> {
    principal.require(Scope::Agent)?;
    let agent = parse_id(&request.agent_id, AgentId::parse, "agent_id")?;
    let session = request
        .session_id
        .as_deref()
        .map(|s| parse_id(s, SessionId::parse, "session_id"))
        .transpose()?;
    // The same id on every attempt of an idempotent request (see `MintedId`).
    let payment_id =
        minted.map_or_else(PaymentId::new, |Extension(MintedId(id))| PaymentId::from_uuid(id));
    let target = Target {
        payment_id,
        agent_id: agent,
        session_id: session,
        chain: request.chain,
        target_url: request.target_url,
    };
    let response = pay_target(&state, &principal, target).await?;
    Ok(axum::Json(response))
}

/// Pays an x402 URL from a session (its agent, chain and budget).
#[utoipa::path(
    post, path = "/api/v1/x402/sessions/{session_id}/pay", tag = "x402",
    security(("api_key" = ["agent", "admin"])),
    params(("session_id" = String, Path, description = "The session (`ses_…`)")),
    request_body = SessionPayRequest,
    responses(
        (status = 200, description = "`completed` (signed) or `pending` (waiting for approval)", body = PaymentResponse),
        (status = 400, description = "Invalid session id or target URL", body = ErrorBody),
        (status = 402, description = "The agent's wallet cannot cover amount plus fee", body = ErrorBody),
        (status = 403, description = "A policy or session rule refuses (`rule` names it)", body = ErrorBody),
        (status = 404, description = "No such session", body = ErrorBody),
        (status = 422, description = "The target does not take x402, or has no payable offer on the session's chain", body = ErrorBody),
        (status = 502, description = "The target could not be fetched, or its challenge is too large", body = ErrorBody),
        (status = 503, description = "A service is unavailable; nothing is reserved", body = ErrorBody),
    )
)]
pub async fn session_pay(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    ApiPath(session): ApiPath<String>,
    minted: Option<Extension<MintedId>>,
    ApiJson(request): ApiJson<SessionPayRequest>,
) -> Result<axum::Json<PaymentResponse>, ApiError> {
    principal.require(Scope::Agent)?;
    let session = SessionId::parse(&session).map_err(|_| ApiError::not_found("session"))?;
    let view = upstream::call(
        &state,
        "policy",
        &policy::GetSession { owner: principal.account_id, session_id: session },
    )
    .await?;
    let payment_id =
        minted.map_or_else(PaymentId::new, |Extension(MintedId(id))| PaymentId::from_uuid(id));
    let target = Target {
        payment_id,
        agent_id: view.agent_id,
        session_id: Some(session),
        chain: None,
        target_url: request.target_url,
    };
    let response = pay_target(&state, &principal, target).await?;
    Ok(axum::Json(response))
}

/// A session.
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionResponse {
    /// The session (`ses_…`).
    pub id: String,
    /// Its agent.
    pub agent_id: String,
    /// The budget in dollars.
    #[schema(example = "100.00")]
    pub budget_limit: String,
    /// Paid so far, in dollars.
    #[schema(example = "0.10")]
    pub spent: String,
    /// Reserved by payments in flight or waiting for approval, in dollars.
    #[schema(example = "0.00")]
    pub reserved: String,
    /// Left to pay, in dollars.
    #[schema(example = "99.90")]
    pub remaining: String,
    /// The chain.
    pub chain: String,
    /// The URL patterns it may pay (any when empty).
    pub allowed_urls: Vec<String>,
    /// `active`, `exhausted`, `expired` or `revoked`.
    #[schema(example = "active")]
    pub status: String,
    /// When it expires (Unix seconds).
    pub expires_at: i64,
    /// When it was created (Unix seconds).
    pub created_at: i64,
}

impl SessionResponse {
    fn new(view: SessionView) -> Self {
        Self {
            id: view.id.to_string(),
            agent_id: view.agent_id.to_string(),
            budget_limit: view.budget_limit,
            spent: view.spent,
            reserved: view.reserved,
            remaining: view.remaining,
            chain: view.chain,
            allowed_urls: view.allowed_urls,
            status: view.status,
            expires_at: view.expires_at_unix,
            created_at: view.created_at_unix,
        }
    }
}

/// A new session.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSessionRequest {
    /// The agent.
    #[schema(pattern = "^agt_[0-9a-f]{32}$")]
    pub agent_id: String,
    /// The budget in dollars.
    #[schema(example = "100.00")]
    pub budget_limit: String,
    /// The chain (the agent's default when absent).
    #[serde(default)]
    #[schema(example = "eip155:84532")]
    pub chain: Option<String>,
    /// How long it lasts.
    #[schema(example = 3600)]
    pub ttl_seconds: u64,
    /// URL patterns it may pay (any when empty).
    #[serde(default)]
    pub allowed_urls: Vec<String>,
}

/// Opens a session: a budget for an agent on one chain, for a while, for some URLs.
#[utoipa::path(
    post, path = "/api/v1/x402/sessions", tag = "x402",
    security(("api_key" = ["agent", "admin"])),
    request_body = CreateSessionRequest,
    responses(
        (status = 201, description = "The session", body = SessionResponse),
        (status = 400, description = "Invalid budget, chain, TTL or URL pattern", body = ErrorBody),
        (status = 403, description = "The agent's policy does not allow the chain", body = ErrorBody),
        (status = 404, description = "No such agent", body = ErrorBody),
    )
)]
pub async fn create_session(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    minted: Option<Extension<MintedId>>,
    ApiJson(request): ApiJson<CreateSessionRequest>,
) -> Result<(StatusCode, axum::Json<SessionResponse>), ApiError> {
    principal.require(Scope::Agent)?;
    super::dollars_within_max(&request.budget_limit, "budget_limit")?;
    let command = policy::CreateSession {
        owner: principal.account_id,
        session_id: minted
            .map_or_else(SessionId::new, |Extension(MintedId(id))| SessionId::from_uuid(id)),
        agent_id: parse_id(&request.agent_id, AgentId::parse, "agent_id")?,
        budget_limit: request.budget_limit,
        chain: request.chain,
        ttl_seconds: request.ttl_seconds,
        allowed_urls: request.allowed_urls,
    };
    let view = upstream::call(&state, "policy", &command).await?;
    Ok((StatusCode::CREATED, axum::Json(SessionResponse::new(view))))
}

/// A session: spent, remaining, expiry and status.
#[utoipa::path(
    get, path = "/api/v1/x402/sessions/{session_id}", tag = "x402",
    security(("api_key" = ["agent", "admin"])),
    params(("session_id" = String, Path, description = "The session (`ses_…`)")),
    responses(
        (status = 200, description = "The session", body = SessionResponse),
        (status = 400, description = "The request cannot be read (a control character in the path, say)", body = ErrorBody),
        (status = 404, description = "No such session", body = ErrorBody),
    )
)]
pub async fn get_session(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    ApiPath(session): ApiPath<String>,
) -> Result<axum::Json<SessionResponse>, ApiError> {
    principal.require(Scope::Agent)?;
    let session = SessionId::parse(&session).map_err(|_| ApiError::not_found("session"))?;
    let view = upstream::call(
        &state,
        "policy",
        &policy::GetSession { owner: principal.account_id, session_id: session },
    )
    .await?;
    Ok(axum::Json(SessionResponse::new(view)))
}

/// Revokes a session: it pays nothing more. Payments already signed stand. Only a session in
/// force (`active` or `exhausted`) can be revoked: one already `revoked` (its agent's deletion
/// revokes it too) or `expired` is refused with 409 `session_state` naming its status, and
/// nothing changes (its `spent` and `reserved` stay as they were). Revoking is not idempotent:
/// a retry after a lost answer gets that 409, which says the session is revoked.
#[utoipa::path(
    delete, path = "/api/v1/x402/sessions/{session_id}", tag = "x402",
    security(("api_key" = ["agent", "admin"])),
    params(("session_id" = String, Path, description = "The session (`ses_…`)")),
    responses(
        (status = 200, description = "The revoked session", body = SessionResponse),
        (status = 400, description = "The request cannot be read (a control character in the path, say)", body = ErrorBody),
        (status = 404, description = "No such session", body = ErrorBody),
        (status = 409, description = "The session is already revoked or expired (`session_state`); nothing changed", body = ErrorBody),
    )
)]
pub async fn revoke_session(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    ApiPath(session): ApiPath<String>,
) -> Result<axum::Json<SessionResponse>, ApiError> {
    principal.require(Scope::Agent)?;
    let session = SessionId::parse(&session).map_err(|_| ApiError::not_found("session"))?;
    let view = upstream::call(
        &state,
        "policy",
        &policy::RevokeSession { owner: principal.account_id, session_id: session },
    )
    .await?;
    Ok(axum::Json(SessionResponse::new(view)))
}

fn ledger_id(text: &str) -> Result<LedgerId, ApiError> {
    LedgerId::parse(text).map_err(|_| ApiError::not_found("payment"))
}

/// A payment and its state.
#[utoipa::path(
    get, path = "/api/v1/x402/payments/{ledger_id}", tag = "x402",
    security(("api_key" = ["agent", "admin"])),
    params(("ledger_id" = String, Path, description = "The payment (`ldg_…`)")),
    responses(
        (status = 200, description = "The payment", body = PaymentResponse),
        (status = 400, description = "The request cannot be read (a control character in the path, say)", body = ErrorBody),
        (status = 404, description = "No such payment", body = ErrorBody),
    )
)]
pub async fn get_payment(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    ApiPath(payment): ApiPath<String>,
) -> Result<axum::Json<PaymentResponse>, ApiError> {
    principal.require(Scope::Agent)?;
    let view = upstream::call(
        &state,
        "policy",
        &policy::GetPayment { owner: principal.account_id, ledger_id: ledger_id(&payment)? },
    )
    .await?;
    let captured = matches!(view.state.as_str(), "captured" | "settled");
    let payment_id = view.ledger_id;
    let mut response = PaymentResponse::new(view);
    if captured {
        response.settlement = crate::routes::settlements::of_payment(&state, payment_id).await?;
    }
    Ok(axum::Json(response))
}

/// An admin's decision.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DecisionRequest {
    /// Why, for the record.
    #[serde(default)]
    pub reason: Option<String>,
}

/// The optional body of a decision.
fn decision_reason(body: &[u8]) -> Result<Option<String>, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    Ok(crate::extract::parse_json::<DecisionRequest>(body)?.reason)
}

async fn decide(
    state: &AppState,
    principal: &Principal,
    payment: &str,
    approve: bool,
    reason: Option<String>,
) -> Result<PaymentResponse, ApiError> {
    principal.require(Scope::Admin)?;
    let command = policy::Decide {
        owner: principal.account_id,
        ledger_id: ledger_id(payment)?,
        approve,
        decided_by: principal.key_id.to_string(),
        reason,
    };
    let view = upstream::call_with_timeout(state, "policy", &command, pay_timeout(state)).await?;
    Ok(PaymentResponse::new(view))
}

/// Approves a payment waiting for approval: it is held and signed now. Only a payment in
/// `pending_approval` can be approved: any other state (`authorizing`, `authorized` or
/// `captured`, whether approved before or never above the threshold; `rejected`, `failed`,
/// `expired`) is refused with 409 `payment_state` naming it, and nothing changes. Approving is
/// not idempotent by itself: send an `Idempotency-Key` to retry safely (the first answer is
/// replayed). A payment whose agent was deleted while it waited fails instead (409
/// `agent_state`); one whose session was revoked or expired meanwhile fails with 403 and the
/// session rule.
#[utoipa::path(
    post, path = "/api/v1/x402/payments/{ledger_id}/approve", tag = "x402",
    security(("api_key" = ["admin"])),
    params(
        ("ledger_id" = String, Path, description = "The payment (`ldg_…`)"),
        ("Idempotency-Key" = Option<String>, Header, description = "Makes retries safe: the same key and body get the same answer for 24 h"),
    ),
    request_body(content = DecisionRequest, description = "Optional: `{\"reason\": \"…\"}`"),
    responses(
        (status = 200, description = "The payment, `completed` with its `payment_signature`", body = PaymentResponse),
        (status = 400, description = "The request cannot be read (a control character in the path or body, say)", body = ErrorBody),
        (status = 402, description = "The agent's wallet cannot cover it any more", body = ErrorBody),
        (status = 403, description = "The payment's session was revoked or expired while it waited (`rule` names it); the payment failed", body = ErrorBody),
        (status = 404, description = "No such payment", body = ErrorBody),
        (status = 409, description = "The payment is not `pending_approval` (`payment_state`; nothing changed), or its agent was deleted while it waited (`agent_state`; the payment failed)", body = ErrorBody),
    )
)]
pub async fn approve_payment(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    ApiPath(payment): ApiPath<String>,
    body: axum::body::Bytes,
) -> Result<axum::Json<PaymentResponse>, ApiError> {
    let reason = decision_reason(&body)?;
    Ok(axum::Json(decide(&state, &principal, &payment, true, reason).await?))
}

/// Rejects a payment waiting for approval: its reservation is released. Only a payment in
/// `pending_approval` can be rejected: any other state (`rejected` included) is refused with
/// 409 `payment_state` naming it, and nothing changes. Rejecting is not idempotent by itself:
/// send an `Idempotency-Key` to retry safely (the first answer is replayed).
#[utoipa::path(
    post, path = "/api/v1/x402/payments/{ledger_id}/reject", tag = "x402",
    security(("api_key" = ["admin"])),
    params(
        ("ledger_id" = String, Path, description = "The payment (`ldg_…`)"),
        ("Idempotency-Key" = Option<String>, Header, description = "Makes retries safe: the same key and body get the same answer for 24 h"),
    ),
    request_body(content = DecisionRequest, description = "Optional: `{\"reason\": \"…\"}`"),
    responses(
        (status = 200, description = "The payment, `failed` in state `rejected`", body = PaymentResponse),
        (status = 400, description = "The request cannot be read (a control character in the path or body, say)", body = ErrorBody),
        (status = 404, description = "No such payment", body = ErrorBody),
        (status = 409, description = "The payment is not `pending_approval` (`payment_state`); nothing changed", body = ErrorBody),
    )
)]
pub async fn reject_payment(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    ApiPath(payment): ApiPath<String>,
    body: axum::body::Bytes,
) -> Result<axum::Json<PaymentResponse>, ApiError> {
    let reason = decision_reason(&body)?;
    Ok(axum::Json(decide(&state, &principal, &payment, false, reason).await?))
}
