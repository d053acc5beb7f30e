//! The gateway's Postgres queries (schema `gateway`): accounts and API keys. Every query about a
//! key of an account filters by that account, which is what makes tenants invisible to each
//! other: another account's key is simply "not found".

use awx_types::{AccountId, ApiKeyId};
use chrono::{DateTime, Utc};
use sqlx::{FromRow, PgConnection, PgPool};
use uuid::Uuid;

use crate::auth::key::{HashedApiKey, Scope};

/// An account (tenant).
#[derive(Debug, Clone, FromRow)]
pub struct AccountRow {
    /// The id.
    pub id: Uuid,
    /// The display name.
    pub name: String,
    /// Per-action rate-limit overrides.
    pub rate_limits: serde_json::Value,
    /// When it was created.
    pub created_at: DateTime<Utc>,
}

/// An API key as stored.
#[derive(Debug, Clone, FromRow)]
pub struct KeyRow {
    /// The key id.
    pub id: Uuid,
    /// The owning account.
    pub account_id: Uuid,
    /// The display name.
    pub name: String,
    /// Scope names.
    pub scopes: Vec<String>,
    /// The argon2id hash of the key.
    pub secret_hash: String,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it stops working (rotation with a grace period).
    pub expires_at: Option<DateTime<Utc>>,
    /// When it was revoked.
    pub revoked_at: Option<DateTime<Utc>>,
    /// The key that replaced it, if rotated.
    pub rotated_to: Option<Uuid>,
}

impl KeyRow {
    /// The key's scopes (unknown names, which the schema forbids, are skipped).
    pub fn scopes(&self) -> Vec<Scope> {
        self.scopes.iter().filter_map(|name| Scope::parse(name)).collect()
    }

    /// Whether the key works at `now`.
    pub fn is_active(&self, now: DateTime<Utc>) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|expires| expires > now)
    }

    /// The stored hash.
    pub fn hashed(&self) -> HashedApiKey {
        HashedApiKey::from_stored(self.secret_hash.clone())
    }
}

const KEY_COLUMNS: &str =
    "id, account_id, name, scopes, secret_hash, created_at, expires_at, revoked_at, rotated_to";

/// Creates an account.
pub async fn insert_account(
    conn: &mut PgConnection,
    id: AccountId,
    name: &str,
) -> sqlx::Result<AccountRow> {
    sqlx::query_as(
        "INSERT INTO gateway.accounts (id, name) VALUES ($1, $2)
         RETURNING id, name, rate_limits, created_at",
    )
    .bind(id.as_uuid())
    .bind(name)
    .fetch_one(conn)
    .await
}

/// Whether any account exists.
pub async fn any_account(conn: &mut PgConnection) -> sqlx::Result<bool> {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM gateway.accounts)").fetch_one(conn).await
}

/// An account by id.
pub async fn account(pool: &PgPool, id: AccountId) -> sqlx::Result<Option<AccountRow>> {
    sqlx::query_as("SELECT id, name, rate_limits, created_at FROM gateway.accounts WHERE id = $1")
        .bind(id.as_uuid())
        .fetch_optional(pool)
        .await
}

/// Replaces an account's rate-limit overrides.
pub async fn set_account_rate_limits(
    pool: &PgPool,
    id: AccountId,
    rate_limits: &serde_json::Value,
) -> sqlx::Result<bool> {
    let result = sqlx::query("UPDATE gateway.accounts SET rate_limits = $2 WHERE id = $1")
        .bind(id.as_uuid())
        .bind(rate_limits)
        .execute(pool)
        .await?;
    Ok(result.rows_affected() == 1)
}

/// What a new key row holds.
#[derive(Debug)]
pub struct NewKey<'a> {
    /// The key id.
    pub id: ApiKeyId,
    /// The owning account.
    pub account_id: AccountId,
    /// The display name.
    pub name: &'a str,
    /// The scopes.
    pub scopes: &'a [Scope],
    /// The argon2id hash.
    pub hashed: &'a HashedApiKey,
}

/// Inserts a key.
pub async fn insert_key(conn: &mut PgConnection, key: NewKey<'_>) -> sqlx::Result<KeyRow> {
    let scopes: Vec<&str> = key.scopes.iter().map(|scope| scope.as_str()).collect();
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "INSERT INTO gateway.api_keys (id, account_id, name, scopes, secret_hash)
         VALUES ($1, $2, $3, $4, $5) RETURNING {KEY_COLUMNS}"
    )))
    .bind(key.id.as_uuid())
    .bind(key.account_id.as_uuid())
    .bind(key.name)
    .bind(scopes)
    .bind(key.hashed.as_str())
    .fetch_one(conn)
    .await
}

/// A key by id, whatever its account (for authentication only).
pub async fn key_by_id(pool: &PgPool, id: ApiKeyId) -> sqlx::Result<Option<KeyRow>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {KEY_COLUMNS} FROM gateway.api_keys WHERE id = $1"
    )))
    .bind(id.as_uuid())
    .fetch_optional(pool)
    .await
}

/// A key of `account`.
pub async fn key_of_account(
    pool: &PgPool,
    account: AccountId,
    id: ApiKeyId,
) -> sqlx::Result<Option<KeyRow>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {KEY_COLUMNS} FROM gateway.api_keys WHERE id = $1 AND account_id = $2"
    )))
    .bind(id.as_uuid())
    .bind(account.as_uuid())
    .fetch_optional(pool)
    .await
}

/// Up to `limit` keys of `account` with ids after `after`, in id (creation) order.
pub async fn keys_of_account(
    pool: &PgPool,
    account: AccountId,
    after: Option<ApiKeyId>,
    limit: u32,
) -> sqlx::Result<Vec<KeyRow>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {KEY_COLUMNS} FROM gateway.api_keys
         WHERE account_id = $1 AND ($2::uuid IS NULL OR id > $2)
         ORDER BY id LIMIT $3"
    )))
    .bind(account.as_uuid())
    .bind(after.map(|id| id.as_uuid()))
    .bind(i64::from(limit))
    .fetch_all(pool)
    .await
}

/// Revokes a key now, in `conn`'s transaction, which holds its row lock
/// ([`lock_key_of_account`]); returns when it was revoked.
pub async fn revoke_locked_key(
    conn: &mut PgConnection,
    id: ApiKeyId,
) -> sqlx::Result<DateTime<Utc>> {
    sqlx::query_scalar(
        "UPDATE gateway.api_keys SET revoked_at = now() WHERE id = $1 RETURNING revoked_at",
    )
    .bind(id.as_uuid())
    .fetch_one(conn)
    .await
}

/// Marks `old` as replaced by `new`, ending it at `expires_at` (now, or after a grace period).
pub async fn retire_rotated_key(
    conn: &mut PgConnection,
    old: ApiKeyId,
    new: ApiKeyId,
    expires_at: DateTime<Utc>,
) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE gateway.api_keys
         SET rotated_to = $2, expires_at = LEAST(COALESCE(expires_at, $3), $3)
         WHERE id = $1",
    )
    .bind(old.as_uuid())
    .bind(new.as_uuid())
    .bind(expires_at)
    .execute(conn)
    .await
    .map(|_| ())
}

/// Locks a key of `account` for rotation.
pub async fn lock_key_of_account(
    conn: &mut PgConnection,
    account: AccountId,
    id: ApiKeyId,
) -> sqlx::Result<Option<KeyRow>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {KEY_COLUMNS} FROM gateway.api_keys WHERE id = $1 AND account_id = $2 FOR UPDATE"
    )))
    .bind(id.as_uuid())
    .bind(account.as_uuid())
    .fetch_optional(conn)
    .await
}
