//! The caller's account, and `ping`: an authenticated, rate-limited request that does nothing
//! (for clients checking their key, and for benchmarks).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use crate::auth::Principal;
use crate::config::Rate;
use crate::error::{ApiError, ErrorBody};
use crate::state::AppState;
use crate::store;

/// An account.
#[derive(Debug, Serialize, ToSchema)]
pub struct AccountView {
    /// The account id (`acc_…`).
    #[schema(example = "acc_0190a3c48f2b7c3e9d1e5f6a7b8c9d0e")]
    pub id: String,
    /// The display name.
    pub name: String,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// Per-key rate limits that differ from the platform defaults, by action.
    pub rate_limits: BTreeMap<String, Rate>,
}

/// The answer to `ping`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Pong {
    /// Always true.
    pub ok: bool,
    /// The caller's account.
    pub account_id: String,
    /// The key used.
    pub key_id: String,
}

/// The caller's account.
#[utoipa::path(
    get, path = "/api/v1/account", tag = "account",
    security(("api_key" = ["agent", "provider", "admin"])),
    responses(
        (status = 200, description = "The caller's account", body = AccountView),
        (status = 401, description = "Missing, invalid or revoked API key", body = ErrorBody),
        (status = 429, description = "Rate limited", body = ErrorBody),
    )
)]
pub async fn get_account(
    State(state): State<Arc<AppState>>,
    principal: Principal,
) -> Result<axum::Json<AccountView>, ApiError> {
    let row = store::account(&state.pool, principal.account_id)
        .await?
        .ok_or_else(|| ApiError::not_found("account"))?;
    let rate_limits = serde_json::from_value(row.rate_limits).unwrap_or_default();
    Ok(axum::Json(AccountView {
        id: principal.account_id.to_string(),
        name: row.name,
        created_at: row.created_at,
        rate_limits,
    }))
}

/// Does nothing, after authentication and rate limiting.
#[utoipa::path(
    get, path = "/api/v1/ping", tag = "account",
    security(("api_key" = ["agent", "provider", "admin"])),
    responses(
        (status = 200, description = "The key works", body = Pong),
        (status = 401, description = "Missing, invalid or revoked API key", body = ErrorBody),
        (status = 429, description = "Rate limited", body = ErrorBody),
    )
)]
pub async fn ping(principal: Principal) -> axum::Json<Pong> {
    axum::Json(Pong {
        ok: true,
        account_id: principal.account_id.to_string(),
        key_id: principal.key_id.to_string(),
    })
}
