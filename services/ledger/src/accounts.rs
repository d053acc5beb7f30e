//! Finding or creating accounts by their natural key ([`AccountSpec`]), with a cache of the
//! accounts known to exist.
//!
//! An account is never deleted, and its key, owner and decimals never change, so once a
//! committed account has been seen its id stays true. [`AccountCache`] keeps them per ledger
//! (per database): an operation whose accounts are all known skips both statements of
//! [`ensure_accounts`]. Only committed accounts are cached: after a miss, a task of its own
//! reads the operation's accounts on another connection of the pool (which sees no
//! uncommitted row, whether of this transaction or of an earlier command of its group commit)
//! and caches what it finds. So the first operations to use a new account pay for it and the
//! ones after do not. The cache is bounded: when it is full, it starts again empty.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use sqlx::{PgConnection, PgPool, Row as _};
use uuid::Uuid;

use crate::error::LedgerFailure;
use crate::store::{AccountSpec, constraint_name};

/// The accounts of natural keys given as four arrays (code, network, token, reference), with
/// each key's position (1-based).
const BY_KEY: &str = "SELECT k.ordinality, a.id, a.owner, a.decimals
    FROM unnest($1::text[], $2::text[], $3::text[], $4::text[])
      WITH ORDINALITY AS k(code, network, token, ref, ordinality)
    JOIN ledger.accounts a
      ON a.code = k.code AND a.network = k.network AND a.token = k.token AND a.ref = k.ref";

/// Accounts cached at most; beyond, the cache starts again.
const CACHED_MAX: usize = 100_000;

/// (code, network, token, reference).
type Key = (&'static str, String, String, String);

/// What is checked of an existing account: its id, owner and decimals.
#[derive(Debug, Clone, Copy)]
struct Known {
    id: Uuid,
    owner: Option<Uuid>,
    decimals: i16,
}

/// The accounts of one ledger known to exist (see the module docs).
#[derive(Debug, Clone)]
pub struct AccountCache {
    known: Arc<Mutex<HashMap<Key, Known>>>,
    pool: PgPool,
}

fn key(spec: &AccountSpec) -> Key {
    (spec.code.as_str(), spec.network.clone(), spec.token.clone(), spec.reference.clone())
}

impl AccountCache {
    /// An empty cache of the ledger on `pool`.
    pub fn new(pool: PgPool) -> Self {
        Self { known: Arc::default(), pool }
    }

    /// Reads the committed accounts among `specs` (on a connection of its own) and caches
    /// them, in the background.
    fn learn(&self, specs: &[AccountSpec]) {
        let cache = self.clone();
        let keys: Vec<Key> = specs.iter().map(key).collect();
        tokio::spawn(async move {
            let codes: Vec<&str> = keys.iter().map(|k| k.0).collect();
            let networks: Vec<&str> = keys.iter().map(|k| k.1.as_str()).collect();
            let tokens: Vec<&str> = keys.iter().map(|k| k.2.as_str()).collect();
            let references: Vec<&str> = keys.iter().map(|k| k.3.as_str()).collect();
            let rows = sqlx::query(BY_KEY)
                .bind(&codes)
                .bind(&networks)
                .bind(&tokens)
                .bind(&references)
                .fetch_all(&cache.pool)
                .await;
            let Ok(rows) = rows else { return };
            let found = rows
                .iter()
                .filter_map(|row| {
                    let position = usize::try_from(row.get::<i64, _>(0)).ok()?.checked_sub(1)?;
                    let known = Known { id: row.get(1), owner: row.get(2), decimals: row.get(3) };
                    Some((keys.get(position)?.clone(), known))
                })
                .collect();
            cache.remember(found);
        });
    }

    fn lookup(&self, specs: &[AccountSpec]) -> Option<Vec<Known>> {
        let known = self.known.lock().unwrap_or_else(PoisonError::into_inner);
        specs.iter().map(|spec| known.get(&key(spec)).copied()).collect()
    }

    fn remember(&self, found: Vec<(Key, Known)>) {
        if found.is_empty() {
            return;
        }
        let mut known = self.known.lock().unwrap_or_else(PoisonError::into_inner);
        if known.len().saturating_add(found.len()) > CACHED_MAX {
            known.clear();
        }
        known.extend(found);
    }

    /// How many accounts are cached.
    pub fn len(&self) -> usize {
        self.known.lock().unwrap_or_else(PoisonError::into_inner).len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Checks an existing account against the spec that names it: an agent id belongs to one
/// tenant, and an asset has one number of decimals.
fn check(spec: &AccountSpec, known: Known) -> Result<Uuid, LedgerFailure> {
    if known.owner != spec.owner.map(|o| o.as_uuid()) {
        return Err(LedgerFailure::Invalid(format!(
            "{} {} belongs to another account",
            spec.code.as_str(),
            spec.reference
        )));
    }
    if known.decimals != i16::from(spec.decimals) {
        return Err(LedgerFailure::Invalid(format!(
            "asset decimals {} do not match the ledger's {}",
            spec.decimals, known.decimals
        )));
    }
    Ok(known.id)
}

/// Finds or creates `specs` and returns their ids in the same order. A wallet found under another
/// owner is refused: an agent id belongs to one tenant.
pub async fn ensure_accounts(
    conn: &mut PgConnection,
    cache: &AccountCache,
    specs: &[AccountSpec],
) -> Result<Vec<Uuid>, LedgerFailure> {
    if let Some(known) = cache.lookup(specs) {
        return specs.iter().zip(known).map(|(spec, known)| check(spec, known)).collect();
    }
    let fresh_ids: Vec<Uuid> = specs.iter().map(|_| Uuid::now_v7()).collect();
    let codes: Vec<&str> = specs.iter().map(|s| s.code.as_str()).collect();
    let networks: Vec<&str> = specs.iter().map(|s| s.network.as_str()).collect();
    let tokens: Vec<&str> = specs.iter().map(|s| s.token.as_str()).collect();
    let decimals: Vec<i16> = specs.iter().map(|s| i16::from(s.decimals)).collect();
    let owners: Vec<Option<Uuid>> = specs.iter().map(|s| s.owner.map(|o| o.as_uuid())).collect();
    let references: Vec<&str> = specs.iter().map(|s| s.reference.as_str()).collect();
    let constraints: Vec<&str> = specs.iter().map(|s| constraint_name(s.constraint)).collect();
    // No lock is taken on existing rows here (DO NOTHING), so the id-ordered locking that
    // follows is the only row locking. New rows are inserted in natural-key order, so two
    // transactions creating the same new accounts wait for each other in one order.
    sqlx::query(
        "INSERT INTO ledger.accounts (id, code, network, token, decimals, owner, ref, constraint_kind)
         SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::int2[], $6::uuid[], $7::text[], $8::text[])
         ORDER BY 2, 3, 4, 7
         ON CONFLICT (code, network, token, ref) DO NOTHING",
    )
    .bind(&fresh_ids)
    .bind(&codes)
    .bind(&networks)
    .bind(&tokens)
    .bind(&decimals)
    .bind(&owners)
    .bind(&references)
    .bind(&constraints)
    .execute(&mut *conn)
    .await?;
    let rows = sqlx::query(BY_KEY)
        .bind(&codes)
        .bind(&networks)
        .bind(&tokens)
        .bind(&references)
        .fetch_all(&mut *conn)
        .await?;
    let mut ids = vec![Uuid::nil(); specs.len()];
    for row in rows {
        let position = usize::try_from(row.get::<i64, _>(0)).unwrap_or(0).saturating_sub(1);
        let Some(spec) = specs.get(position) else { continue };
        let known = Known { id: row.get(1), owner: row.get(2), decimals: row.get(3) };
        if let Some(slot) = ids.get_mut(position) {
            *slot = check(spec, known)?;
        }
    }
    if ids.iter().any(Uuid::is_nil) {
        return Err(LedgerFailure::Internal("an account could not be found or created".into()));
    }
    cache.learn(specs);
    Ok(ids)
}
