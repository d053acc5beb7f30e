//! `Idempotency-Key` on POST endpoints, with Stripe's semantics.
//!
//! - The first request with a key (per account) runs and its response is stored for
//!   `idempotency.retention_hours` (24 h); the same key with the same request (method, path and
//!   body, compared by SHA-256) gets the stored response again, marked `Idempotent-Replayed: true`.
//! - The same key with a different request is refused: 422 `idempotency_key_reused`.
//! - Concurrent duplicates execute once: the first holds the key (a lease of
//!   `idempotency.lease_seconds`, so a crashed holder cannot block it for ever); the others wait up
//!   to `idempotency.wait_ms` for its response, then get 409 `idempotency_key_in_progress`.
//! - A 5xx answer is not stored: the key's lease is released so the client can retry the same
//!   request, and the id the first attempt minted is used again ([`MintedId`]), so a retry after a
//!   timeout cannot create a second payment or withdrawal. The record (its request hash) stays, so
//!   a retry with a different request is refused (422 `idempotency_key_reused`).
//! - A record belongs to the API key that made it: another key of the account using the same
//!   Idempotency-Key is refused (422 `idempotency_key_reused`), so a replay never shows one key's
//!   answer to another.
//! - Secrets are never stored: a handler marks the fields of its answer that hold one
//!   ([`SecretFields`], such as a new API key), and they are stored as `null`, so a replay shows
//!   everything but the secret.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use sqlx::FromRow;

use crate::auth::Principal;
use crate::error::{ApiError, ErrorCode};
use crate::state::AppState;

/// The request header.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";
/// The header marking a replayed response.
pub const IDEMPOTENT_REPLAYED: &str = "idempotent-replayed";
/// Response headers stored with the body.
const STORED_HEADERS: [&str; 2] = ["content-type", "location"];
/// The largest response body stored.
const RESPONSE_BYTES_MAX: usize = 1024 * 1024;

/// A response extension naming the top-level JSON fields of the answer that hold a secret: the
/// caller gets them once; the stored copy (and so every replay) has them as `null`.
#[derive(Debug, Clone, Copy)]
pub struct SecretFields(pub &'static [&'static str]);

/// A request extension: the id the handler mints for what it creates (a payment, a session, an
/// agent, a withdrawal), when the request carries an `Idempotency-Key`. It is stored with the
/// key's record and handed again to every attempt of the same request, so an attempt that answered
/// 5xx after the downstream service committed (a timeout) and its retry name the same thing, and
/// the service's own idempotency by id keeps it single. Without the header there is none and the
/// handler mints a fresh id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MintedId(pub uuid::Uuid);

/// The stored copy of a response body: the secret fields set to `null`.
fn without_secrets(body: &[u8], secrets: SecretFields) -> Vec<u8> {
    match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(serde_json::Value::Object(mut object)) => {
            for field in secrets.0 {
                if let Some(value) = object.get_mut(*field) {
                    *value = serde_json::Value::Null;
                }
            }
            serde_json::to_vec(&object).unwrap_or_default()
        }
        // Not an object: store nothing of it rather than a secret.
        _ => Vec::new(),
    }
}

#[derive(Debug, FromRow)]
struct Record {
    request_hash: Vec<u8>,
    api_key_id: Option<uuid::Uuid>,
    minted_id: Option<uuid::Uuid>,
    state: String,
    lease_expired: bool,
    expired: bool,
    response_status: Option<i16>,
    response_headers: Option<serde_json::Value>,
    response_body: Option<Vec<u8>>,
}

fn valid_key(key: &str) -> bool {
    (1..=255).contains(&key.len()) && key.bytes().all(|b| b.is_ascii_graphic())
}

/// The middleware, for POST routes behind authentication.
pub async fn middleware(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    if request.method() != Method::POST {
        return next.run(request).await;
    }
    let Some(key) = request.headers().get(IDEMPOTENCY_KEY) else {
        return next.run(request).await;
    };
    let key = match key.to_str() {
        Ok(key) if valid_key(key) => key.to_owned(),
        _ => {
            return ApiError::new(
                ErrorCode::InvalidIdempotencyKey,
                "Idempotency-Key must be 1 to 255 visible ASCII characters",
            )
            .into_response();
        }
    };
    let Some(principal) = request.extensions().get::<Principal>().cloned() else {
        return ApiError::new(ErrorCode::InternalError, "idempotency needs authentication")
            .into_response();
    };
    match run(&state, principal, key, request, next).await {
        Ok(response) | Err(response) => response,
    }
}

async fn run(
    state: &AppState,
    principal: Principal,
    key: String,
    request: Request,
    next: Next,
) -> Result<Response, Response> {
    let (mut parts, body) = request.into_parts();
    let body =
        axum::body::to_bytes(body, state.settings.http.body_bytes_max).await.map_err(|_| {
            ApiError::new(ErrorCode::PayloadTooLarge, "the request body is too large")
                .into_response()
        })?;
    let mut hasher = Sha256::new();
    hasher.update(parts.method.as_str());
    hasher.update(b"\n");
    hasher.update(parts.uri.path_and_query().map_or("", |pq| pq.as_str()));
    hasher.update(b"\n");
    hasher.update(&body);
    let request_hash = hasher.finalize().to_vec();

    let settings = &state.settings.idempotency;
    let lease = format!("{} seconds", settings.lease_seconds);
    let retention = format!("{} hours", settings.retention_hours);
    let account = principal.account_id.as_uuid();
    let api_key = principal.key_id.as_uuid();
    let started = Instant::now();
    let mut pause = Duration::from_millis(20);
    loop {
        let minted = uuid::Uuid::now_v7();
        let inserted = sqlx::query(
            "INSERT INTO gateway.idempotency_keys
               (account_id, idempotency_key, request_hash, state, locked_until, expires_at, api_key_id,
                minted_id)
             VALUES ($1, $2, $3, 'in_progress', now() + $4::interval, now() + $5::interval, $6, $7)
             ON CONFLICT (account_id, idempotency_key) DO NOTHING",
        )
        .bind(account)
        .bind(&key)
        .bind(&request_hash)
        .bind(&lease)
        .bind(&retention)
        .bind(api_key)
        .bind(minted)
        .execute(&state.pool)
        .await
        .map_err(|error| ApiError::from(error).into_response())?;
        if inserted.rows_affected() == 1 {
            parts.extensions.insert(MintedId(minted));
            return execute(state, account, &key, parts, body, next).await;
        }
        let record: Option<Record> = sqlx::query_as(
            "SELECT request_hash, api_key_id, minted_id, state, locked_until < now() AS lease_expired,
                    expires_at < now() AS expired, response_status, response_headers, response_body
             FROM gateway.idempotency_keys WHERE account_id = $1 AND idempotency_key = $2",
        )
        .bind(account)
        .bind(&key)
        .fetch_optional(&state.pool)
        .await
        .map_err(|error| ApiError::from(error).into_response())?;
        let Some(record) = record else { continue };
        if record.expired {
            sqlx::query(
                "DELETE FROM gateway.idempotency_keys
                 WHERE account_id = $1 AND idempotency_key = $2 AND expires_at < now()",
            )
            .bind(account)
            .bind(&key)
            .execute(&state.pool)
            .await
            .map_err(|error| ApiError::from(error).into_response())?;
            continue;
        }
        if record.api_key_id.is_some_and(|owner| owner != api_key) {
            return Err(ApiError::new(
                ErrorCode::IdempotencyKeyReused,
                "this Idempotency-Key was used by another API key of the account",
            )
            .into_response());
        }
        if record.request_hash != request_hash {
            return Err(ApiError::new(
                ErrorCode::IdempotencyKeyReused,
                "this Idempotency-Key was used with a different request",
            )
            .into_response());
        }
        if record.state == "completed" {
            return Ok(replay(&record));
        }
        if record.lease_expired {
            // The holder is gone (crashed, timed out, or answered 5xx and released it): take the
            // key over, with the id the first attempt minted (a new one for a record made before
            // ids were kept).
            let taken: Option<uuid::Uuid> = sqlx::query_scalar(
                "UPDATE gateway.idempotency_keys
                 SET locked_until = now() + $3::interval, minted_id = coalesce(minted_id, $4)
                 WHERE account_id = $1 AND idempotency_key = $2
                   AND state = 'in_progress' AND locked_until < now()
                 RETURNING minted_id",
            )
            .bind(account)
            .bind(&key)
            .bind(&lease)
            .bind(record.minted_id.unwrap_or(minted))
            .fetch_optional(&state.pool)
            .await
            .map_err(|error| ApiError::from(error).into_response())?;
            if let Some(minted) = taken {
                parts.extensions.insert(MintedId(minted));
                return execute(state, account, &key, parts, body, next).await;
            }
            continue;
        }
        if started.elapsed() >= Duration::from_millis(settings.wait_ms) {
            return Err(ApiError::new(
                ErrorCode::IdempotencyKeyInProgress,
                "a request with this Idempotency-Key is still being processed; retry later",
            )
            .with_retry_after(1)
            .into_response());
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(250));
    }
}

async fn execute(
    state: &AppState,
    account: uuid::Uuid,
    key: &str,
    parts: axum::http::request::Parts,
    body: Bytes,
    next: Next,
) -> Result<Response, Response> {
    let response = next.run(Request::from_parts(parts, Body::from(body))).await;
    let (mut response_parts, response_body) = response.into_parts();
    let Ok(bytes) = axum::body::to_bytes(response_body, RESPONSE_BYTES_MAX).await else {
        release(state, account, key).await;
        return Err(
            ApiError::new(ErrorCode::InternalError, "response too large to store").into_response()
        );
    };
    if response_parts.status.is_server_error() {
        release(state, account, key).await;
        return Ok(Response::from_parts(response_parts, Body::from(bytes)));
    }
    let headers: serde_json::Map<String, serde_json::Value> = STORED_HEADERS
        .iter()
        .filter_map(|name| {
            let value = response_parts.headers.get(*name)?.to_str().ok()?;
            Some(((*name).to_owned(), serde_json::Value::String(value.to_owned())))
        })
        .collect();
    let stored_body = match response_parts.extensions.get::<SecretFields>() {
        Some(secrets) => without_secrets(&bytes, *secrets),
        None => bytes.to_vec(),
    };
    let stored = sqlx::query(
        "UPDATE gateway.idempotency_keys
         SET state = 'completed', response_status = $3, response_headers = $4, response_body = $5
         WHERE account_id = $1 AND idempotency_key = $2",
    )
    .bind(account)
    .bind(key)
    .bind(i16::try_from(response_parts.status.as_u16()).unwrap_or(500))
    .bind(serde_json::Value::Object(headers))
    .bind(stored_body)
    .execute(&state.pool)
    .await;
    if let Err(error) = stored {
        // The request ran; failing to record it must not turn its answer into an error.
        tracing::error!(error.message = %error, "cannot store an idempotent response");
    }
    response_parts.headers.remove(IDEMPOTENT_REPLAYED);
    Ok(Response::from_parts(response_parts, Body::from(bytes)))
}

/// Releases the key's lease after an answer that is not stored (5xx, or too large to store): the
/// record stays, with its request hash and minted id, so the next attempt of the same request
/// takes it over at once and mints the same id, and another request with the key is refused.
async fn release(state: &AppState, account: uuid::Uuid, key: &str) {
    let released = sqlx::query(
        "UPDATE gateway.idempotency_keys SET locked_until = now() - interval '1 second'
         WHERE account_id = $1 AND idempotency_key = $2 AND state = 'in_progress'",
    )
    .bind(account)
    .bind(key)
    .execute(&state.pool)
    .await;
    if let Err(error) = released {
        tracing::error!(error.message = %error, "cannot release an idempotency key");
    }
}

fn replay(record: &Record) -> Response {
    let status = record
        .response_status
        .and_then(|status| u16::try_from(status).ok())
        .and_then(|status| StatusCode::from_u16(status).ok())
        .unwrap_or(StatusCode::OK);
    let mut headers = HeaderMap::new();
    if let Some(serde_json::Value::Object(stored)) = &record.response_headers {
        for (name, value) in stored {
            if let (Ok(name), Some(Ok(value))) =
                (HeaderName::from_bytes(name.as_bytes()), value.as_str().map(HeaderValue::from_str))
            {
                headers.insert(name, value);
            }
        }
    }
    headers.insert(IDEMPOTENT_REPLAYED, HeaderValue::from_static("true"));
    let body = record.response_body.clone().unwrap_or_default();
    (status, headers, body).into_response()
}

/// Deletes records past their retention; returns how many.
pub async fn sweep(pool: &sqlx::PgPool) -> sqlx::Result<u64> {
    sqlx::query("DELETE FROM gateway.idempotency_keys WHERE expires_at < now()")
        .execute(pool)
        .await
        .map(|result| result.rows_affected())
}
