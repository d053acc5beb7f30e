//! Authentication: `X-API-Key` (or `Authorization: Bearer`) to a [`Principal`], fast and safe.
//!
//! - A key's form is checked first (no lookup for garbage).
//! - argon2id runs once per key: a verified key is remembered under an HMAC-SHA256 of the key,
//!   keyed by a random per-process secret, so the cache never holds the key itself. Concurrent
//!   first requests with the same key share one verification.
//! - Revocation reaches every replica within `auth.revocation_check_seconds` (default 5 s): a
//!   remembered key older than that is re-checked with one indexed query (no argon2) before use.
//! - Bad keys cannot burn CPU without limit: an unknown key id is refused after one indexed
//!   query; a wrong secret is remembered (keyed hash) and refused at once when repeated; more than
//!   `auth.failed_attempts_per_minute_max` wrong secrets for one key id in a minute are refused
//!   without argon2; and at most `auth.argon2_concurrency_max` verifications run at once per
//!   replica, others wait briefly and then get 503.

pub mod key;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use awx_types::{AccountId, ApiKeyId};
use axum::extract::{FromRequestParts, Request, State};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use hmac::{Hmac, KeyInit as _, Mac as _};
use rand::RngCore as _;
use sha2::Sha256;
use sqlx::PgPool;
use tokio::sync::Semaphore;

use crate::config::AuthSettings;
use crate::error::{ApiError, ErrorCode};
use crate::state::AppState;
use crate::store;
use key::{PlaintextApiKey, Scope};

/// The header that carries the API key.
pub const X_API_KEY: &str = "x-api-key";

/// How long a wrong key is remembered as wrong.
const REJECTED_TTL: Duration = Duration::from_secs(60);
/// How long a verification waits for an argon2 slot before answering 503.
const ARGON2_WAIT: Duration = Duration::from_secs(2);

/// Who is calling: the account and the key, with the key's scopes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The caller's account.
    pub account_id: AccountId,
    /// The key used.
    pub key_id: ApiKeyId,
    /// The key's scopes.
    pub scopes: Vec<Scope>,
}

impl Principal {
    /// `Ok` when the key has `scope` (admin has every scope), else 403 naming the scope.
    pub fn require(&self, scope: Scope) -> Result<(), ApiError> {
        if self.scopes.contains(&scope) || self.scopes.contains(&Scope::Admin) {
            Ok(())
        } else {
            Err(ApiError::new(
                ErrorCode::InsufficientScope,
                format!("this operation needs an API key with the `{}` scope", scope.as_str()),
            ))
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<Self>().cloned().ok_or_else(|| {
            ApiError::new(ErrorCode::InternalError, "route is missing authentication")
        })
    }
}

/// A key verified once, remembered under its keyed hash.
#[derive(Debug)]
struct Verified {
    principal: Principal,
    /// Milliseconds since the authenticator started, when revocation was last checked.
    checked_at_ms: AtomicU64,
}

/// Verifies API keys, with the caches and limits described in the module docs.
#[derive(Debug)]
pub struct Authenticator {
    pool: PgPool,
    settings: AuthSettings,
    pepper: [u8; 32],
    started: Instant,
    verified: moka::future::Cache<[u8; 32], Arc<Verified>>,
    rejected: moka::future::Cache<[u8; 32], ErrorCode>,
    failures: moka::future::Cache<ApiKeyId, Arc<AtomicU32>>,
    argon2_slots: Arc<Semaphore>,
    argon2_runs: AtomicU64,
}

impl Authenticator {
    /// An authenticator over the keys in `pool`.
    pub fn new(pool: PgPool, settings: AuthSettings) -> Self {
        let mut pepper = [0u8; 32];
        rand::rng().fill_bytes(&mut pepper);
        Self {
            verified: moka::future::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(Duration::from_secs(settings.cache_ttl_seconds))
                .build(),
            rejected: moka::future::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(REJECTED_TTL)
                .build(),
            failures: moka::future::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(Duration::from_secs(60))
                .build(),
            argon2_slots: Arc::new(Semaphore::new(settings.argon2_concurrency_max)),
            argon2_runs: AtomicU64::new(0),
            pool,
            settings,
            pepper,
            started: Instant::now(),
        }
    }

    fn fingerprint(&self, presented: &str) -> [u8; 32] {
        let mut mac = <Hmac<Sha256>>::new_from_slice(&self.pepper).unwrap_or_else(|_| {
            // HMAC takes keys of any length; this cannot happen.
            unreachable!("HMAC accepts a 32-byte key")
        });
        mac.update(presented.as_bytes());
        mac.finalize().into_bytes().into()
    }

    /// How many argon2 verifications this authenticator has run (also the
    /// `gateway_argon2_verifications_total` metric).
    pub fn argon2_runs(&self) -> u64 {
        self.argon2_runs.load(Ordering::Relaxed)
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// The principal of a presented key, or why not.
    pub async fn authenticate(&self, presented: &str) -> Result<Principal, ApiError> {
        let Some((key_id, plaintext)) = PlaintextApiKey::parse(presented) else {
            return Err(invalid_key());
        };
        let fingerprint = self.fingerprint(presented);
        if let Some(code) = self.rejected.get(&fingerprint).await {
            return Err(rejection(code));
        }
        if let Some(verified) = self.verified.get(&fingerprint).await {
            return self.recheck(&fingerprint, &verified).await;
        }
        let failures =
            self.failures.get(&key_id).await.map_or(0, |count| count.load(Ordering::Relaxed));
        if failures >= self.settings.failed_attempts_per_minute_max {
            return Err(ApiError::new(
                ErrorCode::TooManyFailedAuthentications,
                "too many wrong secrets for this key recently; wait a minute",
            )
            .with_retry_after(60));
        }
        let outcome = self
            .verified
            .try_get_with(fingerprint, self.verify(key_id, plaintext))
            .await
            .map_err(|error| (*error).clone());
        match outcome {
            Ok(verified) => Ok(verified.principal.clone()),
            Err(error) => {
                if matches!(error.code(), ErrorCode::InvalidApiKey | ErrorCode::ApiKeyRevoked) {
                    self.rejected.insert(fingerprint, error.code()).await;
                }
                if error.code() == ErrorCode::InvalidApiKey {
                    let counter =
                        self.failures.get_with(key_id, async { Arc::new(AtomicU32::new(0)) }).await;
                    counter.fetch_add(1, Ordering::Relaxed);
                }
                Err(error)
            }
        }
    }

    /// First sight of a key: look it up and run argon2 (in a bounded number of slots).
    async fn verify(
        &self,
        key_id: ApiKeyId,
        plaintext: PlaintextApiKey,
    ) -> Result<Arc<Verified>, ApiError> {
        let row = store::key_by_id(&self.pool, key_id).await?.ok_or_else(invalid_key)?;
        if !row.is_active(Utc::now()) {
            return Err(revoked_key());
        }
        let _slot = tokio::time::timeout(ARGON2_WAIT, self.argon2_slots.clone().acquire_owned())
            .await
            .map_err(|_| {
                ApiError::new(
                    ErrorCode::ServiceUnavailable,
                    "authentication is busy; retry shortly",
                )
                .with_retry_after(1)
            })?
            .map_err(|error| ApiError::internal("argon2 slots", &error))?;
        let hashed = row.hashed();
        self.argon2_runs.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("gateway_argon2_verifications_total").increment(1);
        let matches = tokio::task::spawn_blocking(move || plaintext.verify(&hashed))
            .await
            .map_err(|error| ApiError::internal("argon2 task", &error))?;
        if !matches {
            return Err(invalid_key());
        }
        Ok(Arc::new(Verified {
            principal: Principal {
                account_id: AccountId::from_uuid(row.account_id),
                key_id,
                scopes: row.scopes(),
            },
            checked_at_ms: AtomicU64::new(self.now_ms()),
        }))
    }

    /// A remembered key: re-check revocation when the last check is older than the bound.
    async fn recheck(
        &self,
        fingerprint: &[u8; 32],
        verified: &Verified,
    ) -> Result<Principal, ApiError> {
        let bound_ms =
            u64::try_from(self.settings.revocation_check().as_millis()).unwrap_or(u64::MAX);
        let now_ms = self.now_ms();
        if now_ms.saturating_sub(verified.checked_at_ms.load(Ordering::Relaxed)) < bound_ms {
            return Ok(verified.principal.clone());
        }
        let row = store::key_by_id(&self.pool, verified.principal.key_id).await?;
        if row.is_some_and(|row| row.is_active(Utc::now())) {
            verified.checked_at_ms.store(now_ms, Ordering::Relaxed);
            Ok(verified.principal.clone())
        } else {
            self.verified.invalidate(fingerprint).await;
            self.rejected.insert(*fingerprint, ErrorCode::ApiKeyRevoked).await;
            Err(revoked_key())
        }
    }
}

fn invalid_key() -> ApiError {
    ApiError::new(ErrorCode::InvalidApiKey, "the API key is not valid")
}

fn revoked_key() -> ApiError {
    ApiError::new(ErrorCode::ApiKeyRevoked, "the API key has been revoked or has expired")
}

fn rejection(code: ErrorCode) -> ApiError {
    if code == ErrorCode::ApiKeyRevoked { revoked_key() } else { invalid_key() }
}

/// The key presented in `X-API-Key`, or in `Authorization: Bearer …`.
fn presented_key(request: &Request) -> Option<&str> {
    if let Some(value) = request.headers().get(X_API_KEY) {
        return value.to_str().ok();
    }
    let authorization = request.headers().get(AUTHORIZATION)?.to_str().ok()?;
    authorization.strip_prefix("Bearer ").map(str::trim)
}

/// The authentication middleware of `/api/v1` routes: adds the [`Principal`] to the request.
pub async fn middleware(
    State(state): State<Arc<AppState>>,
    mut request: Request,
    next: Next,
) -> Response {
    let Some(presented) = presented_key(&request) else {
        return ApiError::new(
            ErrorCode::MissingApiKey,
            "send your API key in the X-API-Key header",
        )
        .into_response();
    };
    match state.authenticator.authenticate(presented).await {
        Ok(principal) => {
            tracing::Span::current()
                .record("account_id", tracing::field::display(principal.account_id));
            request.extensions_mut().insert(principal);
            next.run(request).await
        }
        Err(error) => error.into_response(),
    }
}
