//! API keys of the caller's account: create, list, get, revoke, rotate (admin scope).

#![allow(
    unused_qualifications,
    reason = "utoipa's `params(ListParams)` expands to a qualified path"
)]

use std::sync::Arc;

use awx_types::ApiKeyId;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::accounts::{self, AccountError, IssuedKey};
use crate::auth::Principal;
use crate::auth::key::Scope;
use crate::error::{ApiError, ErrorBody, ErrorCode};
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::idempotency::SecretFields;
use crate::state::AppState;
use crate::store::{self, KeyRow};

/// Whether a key works.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum KeyStatus {
    /// It authenticates.
    Active,
    /// It was revoked.
    Revoked,
    /// It was rotated and its grace period is over.
    Expired,
}

/// An API key (never its secret).
#[derive(Debug, Serialize, ToSchema)]
pub struct KeyView {
    /// The key id (`key_…`); also the first part of the key itself.
    #[schema(example = "key_0190a3c48f2b7c3e9d1e5f6a7b8c9d0e")]
    pub id: String,
    /// The display name.
    pub name: String,
    /// What the key may do.
    pub scopes: Vec<Scope>,
    /// Whether it works.
    pub status: KeyStatus,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it stops (or stopped) working, if it was rotated with a grace period.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
    /// When it was revoked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<DateTime<Utc>>,
    /// The key that replaced it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rotated_to: Option<String>,
}

impl From<&KeyRow> for KeyView {
    fn from(row: &KeyRow) -> Self {
        let now = Utc::now();
        let status = if row.revoked_at.is_some() {
            KeyStatus::Revoked
        } else if row.expires_at.is_some_and(|at| at <= now) {
            KeyStatus::Expired
        } else {
            KeyStatus::Active
        };
        Self {
            id: ApiKeyId::from_uuid(row.id).to_string(),
            name: row.name.clone(),
            scopes: row.scopes(),
            status,
            created_at: row.created_at,
            expires_at: row.expires_at,
            revoked_at: row.revoked_at,
            rotated_to: row.rotated_to.map(|id| ApiKeyId::from_uuid(id).to_string()),
        }
    }
}

/// A key just created or rotated: the only time its secret is shown.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedKey {
    /// The key.
    #[serde(flatten)]
    pub key: KeyView,
    /// The full API key to send in `X-API-Key`. Shown once: store it now. `null` in the replay
    /// of an idempotent request (the secret is never stored; rotate the key if it was lost).
    #[schema(
        example = "awx_0190a3c48f2b7c3e9d1e5f6a7b8c9d0e_3q2-7wR9yXz0aBcDeFgHiJkLmNoPqRsTuVwXyZ01234"
    )]
    pub api_key: Option<String>,
}

/// What an answer with a new key's secret is made of: the secret is marked, so an idempotent
/// replay never stores it.
type CreatedAnswer = (StatusCode, axum::Extension<SecretFields>, axum::Json<CreatedKey>);

fn created(issued: &IssuedKey) -> CreatedAnswer {
    (
        StatusCode::CREATED,
        axum::Extension(SecretFields(&["api_key"])),
        axum::Json(CreatedKey::from(issued)),
    )
}

impl From<&IssuedKey> for CreatedKey {
    fn from(issued: &IssuedKey) -> Self {
        Self {
            key: KeyView::from(&issued.row),
            api_key: Some(issued.plaintext.expose().to_owned()),
        }
    }
}

/// A request to create a key.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateKeyRequest {
    /// A display name (1 to 200 characters).
    #[schema(example = "research agent", min_length = 1, max_length = 200)]
    pub name: String,
    /// What the key may do (at least one).
    #[schema(min_items = 1)]
    pub scopes: Vec<Scope>,
}

/// A request to rotate a key.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct RotateKeyRequest {
    /// Seconds the old key keeps working (0 to 86400; default 0: it stops at once).
    #[schema(maximum = 86400)]
    pub grace_seconds: u32,
}

/// A page of keys.
#[derive(Debug, Serialize, ToSchema)]
pub struct KeyList {
    /// The keys, oldest first.
    pub data: Vec<KeyView>,
    /// Pass as `starting_after` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// Paging.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// How many keys (1 to 100; default 20).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    pub starting_after: Option<String>,
}

fn key_id(text: &str) -> Result<ApiKeyId, ApiError> {
    // A malformed id names no key of the caller's: the same 404 as an unknown one.
    ApiKeyId::parse(text).map_err(|_| ApiError::not_found("key"))
}

fn account_error(error: AccountError) -> ApiError {
    match error {
        AccountError::KeyNotFound => ApiError::not_found("key"),
        AccountError::KeyNotRotatable => {
            ApiError::new(ErrorCode::ApiKeyState, "the key is revoked or has already been rotated")
        }
        AccountError::AlreadyBootstrapped => ApiError::new(ErrorCode::Conflict, error.to_string()),
        AccountError::Database(error) => ApiError::from(error),
        AccountError::Hash(error) => ApiError::internal("hashing a key", &error),
        AccountError::Task(error) => ApiError::internal("hashing a key", &error),
    }
}

fn validate_name(name: &str) -> Result<(), ApiError> {
    if name.trim().is_empty() || name.chars().count() > 200 {
        return Err(ApiError::new(ErrorCode::InvalidField, "name must be 1 to 200 characters")
            .with_field("name"));
    }
    Ok(())
}

/// Creates a key. The answer is the only time the key's secret is shown.
#[utoipa::path(
    post, path = "/api/v1/keys", tag = "keys",
    security(("api_key" = ["admin"])),
    request_body = CreateKeyRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes retries safe: the same key and body get the same answer for 24 h")),
    responses(
        (status = 201, description = "The key, with its secret", body = CreatedKey),
        (status = 400, description = "Invalid request", body = ErrorBody),
        (status = 401, description = "Missing, invalid or revoked API key", body = ErrorBody),
        (status = 403, description = "The key lacks the admin scope", body = ErrorBody),
        (status = 422, description = "Idempotency-Key reused with another request", body = ErrorBody),
        (status = 429, description = "Rate limited", body = ErrorBody),
    )
)]
pub async fn create_key(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    ApiJson(request): ApiJson<CreateKeyRequest>,
) -> Result<CreatedAnswer, ApiError> {
    principal.require(Scope::Admin)?;
    validate_name(&request.name)?;
    if request.scopes.is_empty() {
        return Err(ApiError::new(ErrorCode::InvalidField, "scopes must name at least one scope")
            .with_field("scopes"));
    }
    let issued = accounts::issue_key(
        &state.pool,
        &state.settings.auth,
        principal.account_id,
        request.name.trim(),
        &request.scopes,
    )
    .await
    .map_err(account_error)?;
    Ok(created(&issued))
}

/// Lists the account's keys, oldest first.
#[utoipa::path(
    get, path = "/api/v1/keys", tag = "keys",
    security(("api_key" = ["admin"])),
    params(ListParams),
    responses(
        (status = 200, description = "A page of keys", body = KeyList),
        (status = 400, description = "Invalid paging", body = ErrorBody),
        (status = 401, description = "Missing, invalid or revoked API key", body = ErrorBody),
        (status = 403, description = "The key lacks the admin scope", body = ErrorBody),
        (status = 429, description = "Rate limited", body = ErrorBody),
    )
)]
pub async fn list_keys(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    ApiQuery(params): ApiQuery<ListParams>,
) -> Result<axum::Json<KeyList>, ApiError> {
    principal.require(Scope::Admin)?;
    let limit = super::page_limit(params.limit, 20)?;
    let after = params
        .starting_after
        .as_deref()
        .map(|cursor| {
            ApiKeyId::parse(cursor).map_err(|_| {
                ApiError::new(ErrorCode::InvalidField, "starting_after must be a key id")
                    .with_field("starting_after")
            })
        })
        .transpose()?;
    let mut rows =
        store::keys_of_account(&state.pool, principal.account_id, after, limit.saturating_add(1))
            .await?;
    let more = rows.len() > usize::try_from(limit).unwrap_or(usize::MAX);
    rows.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    let next_cursor =
        more.then(|| rows.last().map(|row| ApiKeyId::from_uuid(row.id).to_string())).flatten();
    Ok(axum::Json(KeyList { data: rows.iter().map(KeyView::from).collect(), next_cursor }))
}

/// One key of the account.
#[utoipa::path(
    get, path = "/api/v1/keys/{key_id}", tag = "keys",
    security(("api_key" = ["admin"])),
    params(("key_id" = String, Path, description = "The key id (`key_…`)")),
    responses(
        (status = 200, description = "The key", body = KeyView),
        (status = 400, description = "A path parameter holds a control character such as %00 (`invalid_field` names it)", body = ErrorBody),
        (status = 401, description = "Missing, invalid or revoked API key", body = ErrorBody),
        (status = 403, description = "The key lacks the admin scope", body = ErrorBody),
        (status = 404, description = "No such key in the account", body = ErrorBody),
    )
)]
pub async fn get_key(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    ApiPath(id): ApiPath<String>,
) -> Result<axum::Json<KeyView>, ApiError> {
    principal.require(Scope::Admin)?;
    let row = store::key_of_account(&state.pool, principal.account_id, key_id(&id)?)
        .await?
        .ok_or_else(|| ApiError::not_found("key"))?;
    Ok(axum::Json(KeyView::from(&row)))
}

/// Revokes a key at once. Every replica refuses it within the revocation bound (5 s by
/// default). Only a key that still works (`active`, a rotated key in its grace period included)
/// can be revoked: a key already `revoked`, or `expired` (rotated, its grace over), is refused
/// with 409 `api_key_state` naming its status, and nothing changes. Revoking is not idempotent: a
/// retry after a lost answer gets that 409, which says the key is revoked.
#[utoipa::path(
    delete, path = "/api/v1/keys/{key_id}", tag = "keys",
    security(("api_key" = ["admin"])),
    params(("key_id" = String, Path, description = "The key id (`key_…`)")),
    responses(
        (status = 200, description = "The revoked key", body = KeyView),
        (status = 400, description = "A path parameter holds a control character such as %00 (`invalid_field` names it)", body = ErrorBody),
        (status = 401, description = "Missing, invalid or revoked API key", body = ErrorBody),
        (status = 403, description = "The key lacks the admin scope", body = ErrorBody),
        (status = 404, description = "No such key in the account", body = ErrorBody),
        (status = 409, description = "The key is already revoked or expired (`api_key_state`); nothing changed", body = ErrorBody),
    )
)]
pub async fn revoke_key(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    ApiPath(id): ApiPath<String>,
) -> Result<axum::Json<KeyView>, ApiError> {
    principal.require(Scope::Admin)?;
    let id = key_id(&id)?;
    // Under the key's row lock, so of concurrent revocations exactly one succeeds.
    let mut tx = state.pool.begin().await?;
    let mut row = store::lock_key_of_account(&mut tx, principal.account_id, id)
        .await?
        .ok_or_else(|| ApiError::not_found("key"))?;
    let refused = match KeyView::from(&row).status {
        KeyStatus::Active => None,
        KeyStatus::Revoked => Some("revoked"),
        KeyStatus::Expired => Some("expired"),
    };
    if let Some(status) = refused {
        return Err(ApiError::new(
            ErrorCode::ApiKeyState,
            format!("the key is {status}: only a key that still works can be revoked"),
        ));
    }
    let revoked_at = store::revoke_locked_key(&mut tx, id).await?;
    tx.commit().await?;
    row.revoked_at = Some(revoked_at);
    Ok(axum::Json(KeyView::from(&row)))
}

/// Replaces a key with a new one (same name and scopes); the old one stops working after
/// `grace_seconds`.
#[utoipa::path(
    post, path = "/api/v1/keys/{key_id}/rotate", tag = "keys",
    security(("api_key" = ["admin"])),
    params(
        ("key_id" = String, Path, description = "The key id (`key_…`)"),
        ("Idempotency-Key" = Option<String>, Header, description = "Makes retries safe"),
    ),
    request_body(content = Option<RotateKeyRequest>, description = "Optional; `{}` rotates at once"),
    responses(
        (status = 201, description = "The new key, with its secret", body = CreatedKey),
        (status = 400, description = "Invalid request", body = ErrorBody),
        (status = 401, description = "Missing, invalid or revoked API key", body = ErrorBody),
        (status = 403, description = "The key lacks the admin scope", body = ErrorBody),
        (status = 404, description = "No such key in the account", body = ErrorBody),
        (status = 409, description = "`api_key_state`: the key is revoked or already rotated", body = ErrorBody),
    )
)]
pub async fn rotate_key(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    ApiPath(id): ApiPath<String>,
    body: axum::body::Bytes,
) -> Result<CreatedAnswer, ApiError> {
    principal.require(Scope::Admin)?;
    // No body, or `null` (the document's `Option<RotateKeyRequest>`), rotates with the defaults.
    let request: RotateKeyRequest = if body.iter().all(u8::is_ascii_whitespace) {
        RotateKeyRequest::default()
    } else {
        crate::extract::parse_json::<Option<RotateKeyRequest>>(&body)?.unwrap_or_default()
    };
    if request.grace_seconds > 86_400 {
        return Err(ApiError::new(ErrorCode::InvalidField, "grace_seconds must be 0 to 86400")
            .with_field("grace_seconds"));
    }
    let issued = accounts::rotate_key(
        &state.pool,
        &state.settings.auth,
        principal.account_id,
        key_id(&id)?,
        request.grace_seconds,
    )
    .await
    .map_err(account_error)?;
    Ok(created(&issued))
}
