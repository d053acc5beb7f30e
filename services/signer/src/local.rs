//! The local backend: keys encrypted at rest in `signer.keys` (see [`crate::kek`]), decrypted
//! once into memory, where they sign.
//!
//! [`LocalSigner::open`] runs at start, in one transaction under an advisory lock (so replicas
//! starting together serialize): it decrypts every stored key (refusing keys under another KEK,
//! ciphertexts that do not decrypt for their row, and keys that do not match their address), then
//! creates relayer keys until `relayer_count` exist, and commits. Keys another replica creates
//! later are picked up by [`Signer::refresh`], which compares the stored count with the loaded
//! one (keys are never deleted) and decrypts only new rows.
//!
//! Agent keys are created by [`Signer::create_key`] in the caller's transaction (a bus command's)
//! and are not kept in memory then: only committed rows are ever loaded, so the loaded keys are
//! always a subset of the stored ones and the count comparison stays sound. The first signature
//! with a key that is not loaded yet reads and decrypts that one row; later signatures never
//! touch the database. Those reads and [`Signer::refresh`] use a small pool of the backend's own,
//! so they never compete with the command transactions for connections.
//!
//! In memory each key is an alloy `PrivateKeySigner` (a `k256` signing key, zeroized on drop,
//! whose `Debug` shows only the address); decrypted bytes live in `Zeroizing` buffers. No type
//! here prints key material.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::fmt;
use std::str::FromStr as _;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use alloy::primitives::{Address, B256, Signature};
use alloy::signers::SignerSync as _;
use alloy::signers::local::PrivateKeySigner;
use futures::future::BoxFuture;
use secrecy::zeroize::{Zeroize as _, Zeroizing};
use sqlx::postgres::PgPoolOptions;
use sqlx::{PgConnection, PgPool, Row as _};
use uuid::Uuid;

use crate::kek::{
    CIPHERTEXT_BYTES, Kek, KekId, NONCE_BYTES, PRIVATE_KEY_BYTES, SealError, SealedKey,
    address_text,
};
use crate::signer::{KeyPurpose, Signer, SignerError};

/// The most relayer keys a signer creates.
pub const RELAYER_COUNT_MAX: u16 = 256;

/// Connections of the backend's own pool (for [`Signer::refresh`]).
const REFRESH_POOL_CONNECTIONS: u32 = 2;

/// Why the stored keys could not be loaded or created.
#[derive(Debug, thiserror::Error)]
pub enum KeyStoreError {
    /// A key was encrypted under another key-encryption key.
    #[error(
        "the key of {address} is encrypted under key-encryption key {stored}, but this signer \
         has {current}: start it with the key-encryption key those keys were made with"
    )]
    WrongKek {
        /// The key's address.
        address: String,
        /// The KEK id stored with the key.
        stored: String,
        /// The id of the KEK this signer has.
        current: KekId,
    },
    /// A ciphertext does not decrypt for its row (tampered, or moved from another row).
    #[error(
        "the key of {address} does not decrypt under key-encryption key {kek_id}: its \
         ciphertext was altered or belongs to another row"
    )]
    Undecryptable {
        /// The key's address.
        address: String,
        /// The KEK id.
        kek_id: KekId,
    },
    /// A key decrypted but is not a valid secp256k1 key, or belongs to another address.
    #[error("the key stored for {address} is not that address's key")]
    WrongKey {
        /// The row's address.
        address: String,
    },
    /// A row is malformed (address, nonce or ciphertext length, purpose).
    #[error("the key row {address} is malformed: {reason}")]
    Corrupt {
        /// The row's address (as stored).
        address: String,
        /// What is wrong.
        reason: String,
    },
    /// More relayers are wanted than a signer makes.
    #[error("relayer_count {0} is above the maximum of {RELAYER_COUNT_MAX}")]
    TooManyRelayers(u16),
    /// A new key could not be encrypted.
    #[error("encrypting a new key: {0}")]
    Seal(#[from] SealError),
    /// Postgres failed.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
}

impl KeyStoreError {
    fn into_signer_error(self) -> SignerError {
        let unusable = match &self {
            Self::WrongKek { address, .. }
            | Self::Undecryptable { address, .. }
            | Self::WrongKey { address } => address.parse::<Address>().ok(),
            Self::Corrupt { .. } | Self::TooManyRelayers(_) | Self::Seal(_) | Self::Database(_) => {
                None
            }
        };
        match unusable {
            Some(address) => SignerError::UnusableKey { address, reason: self.to_string() },
            None => SignerError::Backend(self.to_string()),
        }
    }
}

/// A decrypted key in memory.
struct LocalKey {
    purpose: KeyPurpose,
    signer: PrivateKeySigner,
}

impl fmt::Debug for LocalKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalKey")
            .field("purpose", &self.purpose)
            .field("address", &self.signer.address())
            .finish_non_exhaustive()
    }
}

/// Every loaded key, and the addresses in creation order.
#[derive(Default)]
struct KeyRing {
    by_address: HashMap<Address, Arc<LocalKey>>,
    /// (created order) every address with its purpose, oldest first.
    order: Vec<(KeyPurpose, Address)>,
}

/// The local backend: keys from `signer.keys`, decrypted with the KEK, held in memory.
pub struct LocalSigner {
    kek: Kek,
    ring: RwLock<KeyRing>,
    /// A small pool of its own for [`Signer::refresh`].
    refresh_pool: PgPool,
    /// One refresh at a time.
    refreshing: tokio::sync::Mutex<()>,
}

impl fmt::Debug for LocalSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ring = self.ring.read().unwrap_or_else(PoisonError::into_inner);
        let relayers: Vec<&Address> = ring
            .order
            .iter()
            .filter(|(purpose, _)| *purpose == KeyPurpose::Relayer)
            .map(|(_, address)| address)
            .collect();
        f.debug_struct("LocalSigner")
            .field("kek", &self.kek)
            .field("keys", &ring.order.len())
            .field("relayers", &relayers)
            .finish_non_exhaustive()
    }
}

/// A stored key row.
struct KeyRow {
    id: Uuid,
    purpose: String,
    address: String,
    ciphertext: Vec<u8>,
    nonce: Vec<u8>,
    kek_id: String,
}

impl LocalSigner {
    /// Loads and decrypts every stored key, and creates relayer keys until `relayer_count`
    /// exist; all in one transaction under an advisory lock, so concurrent starts create no more
    /// than needed. Fails, creating nothing, if any stored key cannot be used with `kek`.
    pub async fn open(pool: &PgPool, kek: Kek, relayer_count: u16) -> Result<Self, KeyStoreError> {
        if relayer_count > RELAYER_COUNT_MAX {
            return Err(KeyStoreError::TooManyRelayers(relayer_count));
        }
        let mut tx = pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended('awx.signer.keys', 0))")
            .execute(&mut *tx)
            .await?;
        let mut ring = KeyRing::default();
        load_new(&mut tx, &kek, &mut ring).await?;
        let relayers = ring.order.iter().filter(|(purpose, _)| *purpose == KeyPurpose::Relayer);
        let existing = relayers.count();
        let mut created = Vec::new();
        for _ in existing..usize::from(relayer_count) {
            let (address, key) = create_key(&mut tx, &kek, KeyPurpose::Relayer).await?;
            ring.by_address.insert(address, key);
            ring.order.push((KeyPurpose::Relayer, address));
            created.push(address);
        }
        tx.commit().await?;
        for address in &created {
            tracing::info!(%address, kek_id = %kek.id(), "created a relayer key");
        }
        let options = pool.connect_options();
        let refresh_pool = PgPoolOptions::new()
            .max_connections(REFRESH_POOL_CONNECTIONS)
            .min_connections(0)
            .acquire_timeout(Duration::from_secs(5))
            .connect_lazy_with((*options).clone());
        Ok(Self {
            kek,
            ring: RwLock::new(ring),
            refresh_pool,
            refreshing: tokio::sync::Mutex::new(()),
        })
    }

    /// The id of the KEK this signer decrypts with.
    pub fn kek_id(&self) -> &KekId {
        self.kek.id()
    }

    /// How many keys are loaded.
    pub fn key_count(&self) -> usize {
        self.ring.read().unwrap_or_else(PoisonError::into_inner).order.len()
    }

    fn addresses_now(&self, purpose: KeyPurpose) -> Vec<Address> {
        let ring = self.ring.read().unwrap_or_else(PoisonError::into_inner);
        ring.order.iter().filter(|(p, _)| *p == purpose).map(|(_, address)| *address).collect()
    }

    fn key(&self, address: Address) -> Option<Arc<LocalKey>> {
        let ring = self.ring.read().unwrap_or_else(PoisonError::into_inner);
        ring.by_address.get(&address).cloned()
    }

    /// The key of `address`, loading and decrypting its (committed) row if it is not loaded
    /// yet; `None` if no key has this address.
    async fn key_or_load(&self, address: Address) -> Result<Option<Arc<LocalKey>>, KeyStoreError> {
        if let Some(key) = self.key(address) {
            return Ok(Some(key));
        }
        let mut conn = self.refresh_pool.acquire().await?;
        let row = sqlx::query(
            "SELECT id, purpose, address, ciphertext, nonce, kek_id FROM signer.keys \
             WHERE address = $1",
        )
        .bind(address_text(address))
        .fetch_optional(&mut *conn)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let row = key_row(&row)?;
        let (purpose, stored) = check_row(&row, &self.kek)?;
        let key = Arc::new(decrypt_row(&row, stored, purpose, &self.kek)?);
        let mut guard = self.ring.write().unwrap_or_else(PoisonError::into_inner);
        let ring = &mut *guard;
        let key = match ring.by_address.entry(stored) {
            Entry::Occupied(loaded) => loaded.get().clone(),
            Entry::Vacant(vacant) => {
                ring.order.push((purpose, stored));
                vacant.insert(key).clone()
            }
        };
        Ok(Some(key))
    }

    async fn refresh_now(&self) -> Result<(), KeyStoreError> {
        let _one_at_a_time = self.refreshing.lock().await;
        let mut conn = self.refresh_pool.acquire().await?;
        let stored: i64 =
            sqlx::query_scalar("SELECT count(*) FROM signer.keys").fetch_one(&mut *conn).await?;
        let loaded = self.key_count();
        if usize::try_from(stored).is_ok_and(|stored| stored <= loaded) {
            return Ok(());
        }
        let mut ring = {
            let current = self.ring.read().unwrap_or_else(PoisonError::into_inner);
            KeyRing { by_address: current.by_address.clone(), order: current.order.clone() }
        };
        load_new(&mut conn, &self.kek, &mut ring).await?;
        *self.ring.write().unwrap_or_else(PoisonError::into_inner) = ring;
        Ok(())
    }
}

impl Signer for LocalSigner {
    fn backend(&self) -> &'static str {
        "local"
    }

    fn addresses(&self, purpose: KeyPurpose) -> BoxFuture<'_, Result<Vec<Address>, SignerError>> {
        let addresses = self.addresses_now(purpose);
        Box::pin(async move { Ok(addresses) })
    }

    fn create_key<'a>(
        &'a self,
        conn: &'a mut PgConnection,
        purpose: KeyPurpose,
    ) -> BoxFuture<'a, Result<Address, SignerError>> {
        Box::pin(async move {
            // The key is dropped (zeroized) here: it is loaded from its row once committed.
            let (address, _key) = create_key(conn, &self.kek, purpose)
                .await
                .map_err(KeyStoreError::into_signer_error)?;
            Ok(address)
        })
    }

    fn sign_digest(
        &self,
        address: Address,
        digest: B256,
    ) -> BoxFuture<'_, Result<Signature, SignerError>> {
        Box::pin(async move {
            let key = match self.key(address) {
                Some(key) => key,
                None => self
                    .key_or_load(address)
                    .await
                    .map_err(KeyStoreError::into_signer_error)?
                    .ok_or(SignerError::UnknownKey(address))?,
            };
            key.signer
                .sign_hash_sync(&digest)
                .map_err(|error| SignerError::Signing { address, reason: error.to_string() })
        })
    }

    fn refresh(&self) -> BoxFuture<'_, Result<(), SignerError>> {
        Box::pin(async move { self.refresh_now().await.map_err(KeyStoreError::into_signer_error) })
    }
}

/// Reads every key row (oldest first), decrypts those `ring` does not hold, and rebuilds its
/// order. Every row is checked against `kek`'s id first, so a foreign key is refused by name.
async fn load_new(
    conn: &mut PgConnection,
    kek: &Kek,
    ring: &mut KeyRing,
) -> Result<(), KeyStoreError> {
    let rows = sqlx::query(
        "SELECT id, purpose, address, ciphertext, nonce, kek_id FROM signer.keys \
         ORDER BY created_at, id",
    )
    .fetch_all(conn)
    .await?;
    let mut order = Vec::with_capacity(rows.len());
    for row in rows {
        let row = key_row(&row)?;
        let (purpose, address) = check_row(&row, kek)?;
        if let Entry::Vacant(vacant) = ring.by_address.entry(address) {
            vacant.insert(Arc::new(decrypt_row(&row, address, purpose, kek)?));
        }
        order.push((purpose, address));
    }
    ring.order = order;
    Ok(())
}

fn key_row(row: &sqlx::postgres::PgRow) -> Result<KeyRow, sqlx::Error> {
    Ok(KeyRow {
        id: row.try_get("id")?,
        purpose: row.try_get("purpose")?,
        address: row.try_get("address")?,
        ciphertext: row.try_get("ciphertext")?,
        nonce: row.try_get("nonce")?,
        kek_id: row.try_get("kek_id")?,
    })
}

fn check_row(row: &KeyRow, kek: &Kek) -> Result<(KeyPurpose, Address), KeyStoreError> {
    let corrupt = |reason: &str| KeyStoreError::Corrupt {
        address: row.address.clone(),
        reason: format!("{reason} (key {})", row.id),
    };
    let purpose = KeyPurpose::parse(&row.purpose).ok_or_else(|| corrupt("unknown purpose"))?;
    let address = Address::from_str(&row.address).map_err(|_| corrupt("not an address"))?;
    if address_text(address) != row.address {
        return Err(corrupt("address not in lowercase 0x form"));
    }
    if row.kek_id != kek.id().as_str() {
        return Err(KeyStoreError::WrongKek {
            address: row.address.clone(),
            stored: row.kek_id.clone(),
            current: kek.id().clone(),
        });
    }
    if row.nonce.len() != NONCE_BYTES || row.ciphertext.len() != CIPHERTEXT_BYTES {
        return Err(corrupt("nonce or ciphertext of the wrong length"));
    }
    Ok((purpose, address))
}

fn decrypt_row(
    row: &KeyRow,
    address: Address,
    purpose: KeyPurpose,
    kek: &Kek,
) -> Result<LocalKey, KeyStoreError> {
    let mut nonce = [0_u8; NONCE_BYTES];
    nonce.copy_from_slice(&row.nonce);
    let sealed = SealedKey { nonce, ciphertext: row.ciphertext.clone() };
    let secret = kek.open(address, &sealed).map_err(|_| KeyStoreError::Undecryptable {
        address: row.address.clone(),
        kek_id: kek.id().clone(),
    })?;
    let wrong_key = || KeyStoreError::WrongKey { address: row.address.clone() };
    let signer = PrivateKeySigner::from_slice(secret.as_slice()).map_err(|_| wrong_key())?;
    if signer.address() != address {
        return Err(wrong_key());
    }
    Ok(LocalKey { purpose, signer })
}

/// Generates a key, stores it encrypted, and returns it.
async fn create_key(
    conn: &mut PgConnection,
    kek: &Kek,
    purpose: KeyPurpose,
) -> Result<(Address, Arc<LocalKey>), KeyStoreError> {
    let signer = PrivateKeySigner::random();
    let address = signer.address();
    let sealed = {
        let mut raw = signer.to_bytes();
        let mut secret = Zeroizing::new([0_u8; PRIVATE_KEY_BYTES]);
        secret.copy_from_slice(raw.as_slice());
        raw.0.zeroize();
        kek.seal(address, &secret)?
    };
    sqlx::query(
        "INSERT INTO signer.keys (id, purpose, address, ciphertext, nonce, kek_id, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, clock_timestamp())",
    )
    .bind(Uuid::now_v7())
    .bind(purpose.as_str())
    .bind(address_text(address))
    .bind(&sealed.ciphertext)
    .bind(sealed.nonce.as_slice())
    .bind(kek.id().as_str())
    .execute(conn)
    .await?;
    Ok((address, Arc::new(LocalKey { purpose, signer })))
}
