//! Account and key operations shared by the HTTP API and the `awx admin` commands: creating
//! accounts (the first one by bootstrap), issuing, rotating and revoking keys.

use awx_types::{AccountId, ApiKeyId};
use chrono::{DateTime, Utc};
use sqlx::PgPool;

use crate::auth::key::{PlaintextApiKey, Scope};
use crate::config::AuthSettings;
use crate::store::{self, AccountRow, KeyRow, NewKey};

/// Why an account operation failed.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    /// Bootstrap found an account already.
    #[error("an account already exists: bootstrap only creates the first one")]
    AlreadyBootstrapped,
    /// No such key in the account.
    #[error("no such key")]
    KeyNotFound,
    /// The key cannot be rotated (revoked or already rotated).
    #[error("the key is revoked or already rotated")]
    KeyNotRotatable,
    /// Hashing failed.
    #[error(transparent)]
    Hash(#[from] crate::auth::key::HashError),
    /// The database failed.
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    /// The hashing task failed.
    #[error("hashing task: {0}")]
    Task(String),
}

/// A key just issued: its row and the plaintext, to show once.
#[derive(Debug)]
pub struct IssuedKey {
    /// The stored key.
    pub row: KeyRow,
    /// The full key, shown once and never stored.
    pub plaintext: PlaintextApiKey,
}

async fn hash(
    settings: &AuthSettings,
    key: &PlaintextApiKey,
) -> Result<crate::auth::key::HashedApiKey, AccountError> {
    let settings = settings.clone();
    let key = key.clone();
    tokio::task::spawn_blocking(move || key.hash(&settings))
        .await
        .map_err(|error| AccountError::Task(error.to_string()))?
        .map_err(AccountError::from)
}

fn normalized(scopes: &[Scope]) -> Vec<Scope> {
    let mut scopes = scopes.to_vec();
    scopes.sort();
    scopes.dedup();
    scopes
}

/// Issues a new key for `account`.
pub async fn issue_key(
    pool: &PgPool,
    settings: &AuthSettings,
    account: AccountId,
    name: &str,
    scopes: &[Scope],
) -> Result<IssuedKey, AccountError> {
    let id = ApiKeyId::new();
    let plaintext = PlaintextApiKey::generate(id);
    let hashed = hash(settings, &plaintext).await?;
    let scopes = normalized(scopes);
    let mut conn = pool.acquire().await?;
    let row = store::insert_key(
        &mut conn,
        NewKey { id, account_id: account, name, scopes: &scopes, hashed: &hashed },
    )
    .await?;
    Ok(IssuedKey { row, plaintext })
}

/// Creates an account with an admin key.
pub async fn create_account(
    pool: &PgPool,
    settings: &AuthSettings,
    name: &str,
) -> Result<(AccountRow, IssuedKey), AccountError> {
    create(pool, settings, name, false).await
}

/// Creates the first account and its admin key; refuses when any account exists.
pub async fn bootstrap(
    pool: &PgPool,
    settings: &AuthSettings,
    name: &str,
) -> Result<(AccountRow, IssuedKey), AccountError> {
    create(pool, settings, name, true).await
}

async fn create(
    pool: &PgPool,
    settings: &AuthSettings,
    name: &str,
    only_first: bool,
) -> Result<(AccountRow, IssuedKey), AccountError> {
    let key_id = ApiKeyId::new();
    let plaintext = PlaintextApiKey::generate(key_id);
    let hashed = hash(settings, &plaintext).await?;
    let mut tx = pool.begin().await?;
    if only_first {
        // Serialize concurrent bootstraps so exactly one of them creates the first account.
        sqlx::query("LOCK TABLE gateway.accounts IN EXCLUSIVE MODE").execute(&mut *tx).await?;
        if store::any_account(&mut tx).await? {
            return Err(AccountError::AlreadyBootstrapped);
        }
    }
    let account_id = AccountId::new();
    let account = store::insert_account(&mut tx, account_id, name).await?;
    let row = store::insert_key(
        &mut tx,
        NewKey { id: key_id, account_id, name: "admin", scopes: &[Scope::Admin], hashed: &hashed },
    )
    .await?;
    tx.commit().await?;
    Ok((account, IssuedKey { row, plaintext }))
}

/// Replaces a key with a new one of the same name and scopes; the old key stops working at
/// `now + grace_seconds` (at once for 0).
pub async fn rotate_key(
    pool: &PgPool,
    settings: &AuthSettings,
    account: AccountId,
    key: ApiKeyId,
    grace_seconds: u32,
) -> Result<IssuedKey, AccountError> {
    let new_id = ApiKeyId::new();
    let plaintext = PlaintextApiKey::generate(new_id);
    let hashed = hash(settings, &plaintext).await?;
    let mut tx = pool.begin().await?;
    let old = store::lock_key_of_account(&mut tx, account, key)
        .await?
        .ok_or(AccountError::KeyNotFound)?;
    if !old.is_active(Utc::now()) || old.rotated_to.is_some() {
        return Err(AccountError::KeyNotRotatable);
    }
    let scopes = old.scopes();
    let row = store::insert_key(
        &mut tx,
        NewKey {
            id: new_id,
            account_id: account,
            name: &old.name,
            scopes: &scopes,
            hashed: &hashed,
        },
    )
    .await?;
    let expires_at: DateTime<Utc> =
        Utc::now() + chrono::Duration::seconds(i64::from(grace_seconds));
    store::retire_rotated_key(&mut tx, key, new_id, expires_at).await?;
    tx.commit().await?;
    Ok(IssuedKey { row, plaintext })
}
