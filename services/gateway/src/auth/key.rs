//! API keys: their plaintext form, scopes, and the argon2id hash we store.
//!
//! A key reads `awx_<32 hex digits: the key id>_<43 characters: the secret>`, for example
//! `awx_0190a3c48f2b7c3e9d1e5f6a7b8c9d0e_3q2-…`. The key id part is public (it is the `key_…` id
//! shown in listings); the secret part is 32 random bytes in unpadded base64url, shown once at
//! creation and never stored: only an argon2id hash of the whole key is kept.
//!
//! Plaintext keys are [`PlaintextApiKey`], whose `Debug` prints nothing secret; the stored hash is
//! [`HashedApiKey`]. The two are different types so one cannot be stored for the other.

use argon2::{Algorithm, Argon2, Params, PasswordHasher as _, PasswordVerifier as _, Version};
use awx_types::ApiKeyId;
use base64::Engine as _;
use rand::RngCore as _;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::config::AuthSettings;

/// The prefix of every key.
pub const KEY_PREFIX: &str = "awx_";
const KEY_ID_HEX_LEN: usize = 32;
const SECRET_LEN: usize = 43;
/// The length of a well-formed key.
pub const KEY_LEN: usize = KEY_PREFIX.len() + KEY_ID_HEX_LEN + 1 + SECRET_LEN;

/// What a key may do.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// Agent operations: check, sessions, pay.
    Agent,
    /// Provider operations: the facilitator.
    Provider,
    /// Account administration: keys, agents, policies, funding. Implies the other scopes.
    Admin,
}

impl Scope {
    /// The scope's name as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Agent => "agent",
            Self::Provider => "provider",
            Self::Admin => "admin",
        }
    }

    /// The scope named `name`.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "agent" => Some(Self::Agent),
            "provider" => Some(Self::Provider),
            "admin" => Some(Self::Admin),
            _ => None,
        }
    }
}

/// A full API key, as shown once at creation. `Debug` redacts it.
#[derive(Clone)]
pub struct PlaintextApiKey(SecretString);

impl std::fmt::Debug for PlaintextApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PlaintextApiKey(<redacted>)")
    }
}

/// The stored form of a key: an argon2id hash in PHC string format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HashedApiKey(String);

impl HashedApiKey {
    /// Wraps a hash read from storage.
    pub fn from_stored(phc: String) -> Self {
        Self(phc)
    }

    /// The PHC string, for storage.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Why a key could not be hashed.
#[derive(Debug, thiserror::Error)]
#[error("cannot hash an API key: {0}")]
pub struct HashError(String);

fn argon2(settings: &AuthSettings) -> Result<Argon2<'static>, HashError> {
    let params = Params::new(
        settings.argon2_memory_kib,
        settings.argon2_iterations,
        settings.argon2_parallelism,
        None,
    )
    .map_err(|error| HashError(error.to_string()))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

impl PlaintextApiKey {
    /// A new random key for `key_id`.
    pub fn generate(key_id: ApiKeyId) -> Self {
        let mut secret = [0u8; 32];
        rand::rng().fill_bytes(&mut secret);
        let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret);
        Self(SecretString::from(format!("{KEY_PREFIX}{}_{secret}", key_id.as_uuid().simple())))
    }

    /// Reads a presented key, checking only its form (no lookup): the key id it names.
    pub fn parse(presented: &str) -> Option<(ApiKeyId, Self)> {
        // ASCII only, so the split below is on a character boundary whatever was presented.
        if presented.len() != KEY_LEN || !presented.is_ascii() {
            return None;
        }
        let rest = presented.strip_prefix(KEY_PREFIX)?;
        let (id_hex, secret) = rest.split_at(KEY_ID_HEX_LEN);
        let secret = secret.strip_prefix('_')?;
        let secret_ok = secret.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !secret_ok {
            return None;
        }
        let key_id = ApiKeyId::parse(&format!("{}_{id_hex}", ApiKeyId::PREFIX)).ok()?;
        Some((key_id, Self(SecretString::from(presented.to_owned()))))
    }

    /// The key as text, to show once at creation or to send in a request.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }

    /// Hashes the key with argon2id and a random salt (slow by design; run it off the async
    /// threads).
    pub fn hash(&self, settings: &AuthSettings) -> Result<HashedApiKey, HashError> {
        let hash = argon2(settings)?
            .hash_password(self.expose().as_bytes())
            .map_err(|error| HashError(error.to_string()))?;
        Ok(HashedApiKey(hash.to_string()))
    }

    /// Whether this key is the one `hashed` was made from (slow by design).
    pub fn verify(&self, hashed: &HashedApiKey) -> bool {
        // The parameters come from the stored hash, so keys hashed with older settings still verify.
        Argon2::default().verify_password(self.expose().as_bytes(), hashed.as_str()).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fast() -> AuthSettings {
        AuthSettings { argon2_memory_kib: 1024, argon2_iterations: 1, ..AuthSettings::default() }
    }

    #[test]
    fn generated_keys_parse_back_to_their_id() {
        let id = ApiKeyId::new();
        let key = PlaintextApiKey::generate(id);
        assert_eq!(key.expose().len(), KEY_LEN);
        assert!(key.expose().starts_with("awx_"));
        let (parsed_id, parsed) = PlaintextApiKey::parse(key.expose()).unwrap();
        assert_eq!(parsed_id, id);
        assert_eq!(parsed.expose(), key.expose());
        assert_eq!(format!("{key:?}"), "PlaintextApiKey(<redacted>)");
    }

    #[test]
    fn malformed_keys_are_refused_without_any_lookup() {
        let key = PlaintextApiKey::generate(ApiKeyId::new());
        let text = key.expose().to_owned();
        // The right length, with a multi-byte character where the key id ends.
        let crafted = format!("awx_{}é{}", &text[4..35], &text[37..]);
        assert_eq!(crafted.len(), text.len());
        for bad in [
            String::new(),
            "awx_".into(),
            text.replacen("awx_", "abc_", 1),
            format!("{text}x"),
            text[..text.len() - 1].to_owned(),
            text.replace('_', "."),
            format!("{}!", &text[..text.len() - 1]),
            crafted,
        ] {
            assert!(PlaintextApiKey::parse(&bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn hashes_verify_only_their_key() {
        let key = PlaintextApiKey::generate(ApiKeyId::new());
        let hashed = key.hash(&fast()).unwrap();
        assert!(hashed.as_str().starts_with("$argon2id$"));
        assert!(!hashed.as_str().contains(key.expose()));
        assert!(key.verify(&hashed));
        let other = PlaintextApiKey::generate(ApiKeyId::new());
        assert!(!other.verify(&hashed));
        assert!(!key.verify(&HashedApiKey::from_stored("not a hash".into())));
    }
}
