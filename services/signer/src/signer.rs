//! The signing backend: the [`Signer`] trait, which the rules of [`crate::custody`] sign through.
//!
//! A backend holds keys by purpose, creates them, and signs 32-byte digests with them; it never
//! hands a key out.
//! Today's backend is [`crate::local::LocalSigner`] (keys encrypted at rest in Postgres, decrypted
//! into memory). An MPC or KMS backend implements the same trait: the trait is object safe
//! (`Arc<dyn Signer>`), and its methods return boxed futures so a backend may call out over the
//! network.

use std::fmt;

use alloy::primitives::{Address, B256, Signature};
use futures::future::BoxFuture;
use sqlx::PgConnection;

/// What a key is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum KeyPurpose {
    /// Pays gas for settlement transactions.
    Relayer,
    /// An agent's wallet (signs EIP-3009 authorizations).
    Agent,
}

impl KeyPurpose {
    /// The purpose as stored (`signer.keys.purpose`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Relayer => "relayer",
            Self::Agent => "agent",
        }
    }

    /// The purpose stored as `text`, if it is one.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "relayer" => Some(Self::Relayer),
            "agent" => Some(Self::Agent),
            _ => None,
        }
    }
}

impl fmt::Display for KeyPurpose {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a backend could not answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignerError {
    /// The backend holds no key for this address.
    #[error("no key for {0}")]
    UnknownKey(Address),
    /// The key exists but cannot be used (it does not decrypt, or it is under another
    /// key-encryption key): an operator must act.
    #[error("the key of {address} cannot be used: {reason}")]
    UnusableKey {
        /// The key's address.
        address: Address,
        /// Why.
        reason: String,
    },
    /// Signing itself failed.
    #[error("signing with {address} failed: {reason}")]
    Signing {
        /// The key's address.
        address: Address,
        /// Why (never key material).
        reason: String,
    },
    /// The backend's storage or service failed; trying again may work.
    #[error("signer backend: {0}")]
    Backend(String),
}

/// A custodian of keys that signs with them.
pub trait Signer: Send + Sync + fmt::Debug + 'static {
    /// The backend's name, for logs (`local`, `kms`, …).
    fn backend(&self) -> &'static str;

    /// The addresses of the keys held for `purpose`, oldest first.
    fn addresses(&self, purpose: KeyPurpose) -> BoxFuture<'_, Result<Vec<Address>, SignerError>>;

    /// Creates a key for `purpose` and records it in `conn`'s transaction (the caller's, such
    /// as a bus command's), so the key exists for the platform exactly when that transaction
    /// commits. Returns its address. The key is not usable for signing before the commit.
    fn create_key<'a>(
        &'a self,
        conn: &'a mut PgConnection,
        purpose: KeyPurpose,
    ) -> BoxFuture<'a, Result<Address, SignerError>>;

    /// Signs `digest` (already hashed: an EIP-1559 signing hash, an EIP-712 digest) with the key
    /// of `address`. The signature is low-`s`, with the y parity as recovery id.
    fn sign_digest(
        &self,
        address: Address,
        digest: B256,
    ) -> BoxFuture<'_, Result<Signature, SignerError>>;

    /// Picks up keys created since the backend loaded its keys (by another replica). A backend
    /// that always answers from its source of truth does nothing. Callers use it before
    /// refusing an address as unknown.
    fn refresh(&self) -> BoxFuture<'_, Result<(), SignerError>> {
        Box::pin(async { Ok(()) })
    }
}
