//! The key-encryption key (KEK) and the encryption of private keys at rest.
//!
//! The KEK is 32 bytes, given as 64 hexadecimal characters in the environment variable
//! [`KEK_ENV`] or in a file (`kek_file`; surrounding whitespace ignored). It is held in a
//! [`SecretBox`] (zeroized on drop) and never printed: [`Kek`]'s `Debug` shows only its id, and
//! no error carries the text it was parsed from.
//!
//! Each private key is encrypted with AES-256-GCM under the KEK, with a random 96-bit nonce and
//! the key's address (lowercase `0x` hex, as stored) as associated data, so a ciphertext moved to
//! another row no longer decrypts. The KEK's id ([`KekId`]: the first 8 bytes of its SHA-256,
//! hex) is stored with each key, so a key encrypted under another KEK is recognised and refused
//! with a clear error instead of failing to decrypt.

use std::fmt;
use std::path::{Path, PathBuf};

use aes_gcm::aead::{Aead as _, AeadCore as _, KeyInit as _, OsRng, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use alloy::primitives::Address;
use secrecy::zeroize::{Zeroize as _, Zeroizing};
use secrecy::{ExposeSecret as _, SecretBox, SecretString};
use sha2::{Digest as _, Sha256};

/// The environment variable holding the KEK (64 hex characters).
pub const KEK_ENV: &str = "AWX_SIGNER_KEK";

/// Bytes of a KEK.
pub const KEK_BYTES: usize = 32;
/// Bytes of a private key (a secp256k1 scalar).
pub const PRIVATE_KEY_BYTES: usize = 32;
/// Bytes of an AES-GCM nonce.
pub const NONCE_BYTES: usize = 12;
/// Bytes of a stored ciphertext: the encrypted key and the 16-byte tag.
pub const CIPHERTEXT_BYTES: usize = PRIVATE_KEY_BYTES + 16;

/// Why a KEK could not be had.
#[derive(Debug, thiserror::Error)]
pub enum KekError {
    /// Neither source is set.
    #[error(
        "no key-encryption key: set {KEK_ENV} (64 hex characters) or the kek_file setting \
         (AWX_SIGNER__KEK_FILE, a file holding 64 hex characters)"
    )]
    Missing,
    /// Both sources are set: which one is meant is unclear.
    #[error("both {KEK_ENV} and kek_file are set: set only one")]
    Ambiguous,
    /// The text is not 64 hexadecimal characters (the text itself is never shown).
    #[error(
        "the key-encryption key from {source_name} must be 64 hexadecimal characters \
         (32 bytes); it has {length} characters{detail}"
    )]
    Malformed {
        /// Where it came from (the variable's name or the file's path).
        source_name: String,
        /// How many characters it has, after trimming whitespace.
        length: usize,
        /// What else is wrong, if the length is right.
        detail: &'static str,
    },
    /// The KEK is all zeros: a placeholder, not a key.
    #[error("the key-encryption key from {source_name} is all zeros")]
    AllZeros {
        /// Where it came from.
        source_name: String,
    },
    /// The KEK file could not be read.
    #[error("reading the key-encryption key file {path}: {message}")]
    File {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        message: String,
    },
}

/// The id of a KEK: the first 8 bytes of its SHA-256, as 16 lowercase hex characters. It
/// identifies the KEK without revealing it.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct KekId(String);

impl KekId {
    /// The id as stored (`kek_id`).
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for KekId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for KekId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KekId({})", self.0)
    }
}

/// A key-encryption key. Its bytes are zeroized on drop and never printed.
pub struct Kek {
    key: SecretBox<[u8; KEK_BYTES]>,
    id: KekId,
}

impl fmt::Debug for Kek {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Kek").field("id", &self.id).finish_non_exhaustive()
    }
}

/// A private key, encrypted for storage.
#[derive(Clone, PartialEq, Eq)]
pub struct SealedKey {
    /// The AES-GCM nonce.
    pub nonce: [u8; NONCE_BYTES],
    /// The encrypted key and its tag.
    pub ciphertext: Vec<u8>,
}

impl fmt::Debug for SealedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SealedKey").field("ciphertext_bytes", &self.ciphertext.len()).finish()
    }
}

/// A ciphertext that does not decrypt under this KEK with this address: the wrong KEK, a
/// ciphertext moved from another row, or tampering.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "the ciphertext does not decrypt (wrong key-encryption key, another row's ciphertext, or \
     tampering)"
)]
pub struct OpenError;

/// AES-GCM refused to encrypt (it does so only past its plaintext length limit, 64 GiB, so this
/// is a broken invariant).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("AES-GCM encryption failed")]
pub struct SealError;

fn hex_value(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

/// The associated data of a key's ciphertext: its address as stored.
pub fn associated_data(address: Address) -> String {
    address_text(address)
}

/// An address as the signer stores it: lowercase `0x` hex.
pub fn address_text(address: Address) -> String {
    format!("{address:#x}")
}

impl Kek {
    /// A KEK from 64 hexadecimal characters (surrounding whitespace ignored). `source_name`
    /// names where the text came from, for errors; the text is never part of an error.
    pub fn from_hex(text: &str, source_name: &str) -> Result<Self, KekError> {
        let trimmed = text.trim().as_bytes();
        let malformed = |detail| KekError::Malformed {
            source_name: source_name.to_owned(),
            length: trimmed.len(),
            detail,
        };
        if trimmed.len() != KEK_BYTES * 2 {
            return Err(malformed(""));
        }
        let mut key = Box::new([0_u8; KEK_BYTES]);
        for (byte, pair) in key.iter_mut().zip(trimmed.chunks_exact(2)) {
            match (hex_value(pair[0]), hex_value(pair[1])) {
                (Some(high), Some(low)) => *byte = high << 4 | low,
                _ => {
                    key.zeroize();
                    return Err(malformed(", not all of them hexadecimal"));
                }
            }
        }
        if key.iter().all(|byte| *byte == 0) {
            return Err(KekError::AllZeros { source_name: source_name.to_owned() });
        }
        Ok(Self::from_secret(SecretBox::new(key)))
    }

    /// A KEK from its 32 bytes.
    pub fn from_bytes(bytes: [u8; KEK_BYTES]) -> Self {
        Self::from_secret(SecretBox::new(Box::new(bytes)))
    }

    fn from_secret(key: SecretBox<[u8; KEK_BYTES]>) -> Self {
        let digest = Sha256::digest(key.expose_secret());
        let id = digest.iter().take(8).map(|byte| format!("{byte:02x}")).collect();
        Self { key, id: KekId(id) }
    }

    /// The KEK from `env_value` (the value of [`KEK_ENV`], if set) or from `file`: exactly one
    /// must be given.
    pub fn resolve(env_value: Option<SecretString>, file: Option<&Path>) -> Result<Self, KekError> {
        match (env_value, file) {
            (None, None) => Err(KekError::Missing),
            (Some(_), Some(_)) => Err(KekError::Ambiguous),
            (Some(value), None) => Self::from_hex(value.expose_secret(), KEK_ENV),
            (None, Some(path)) => Self::from_file(path),
        }
    }

    /// The KEK from the process environment ([`KEK_ENV`]) or from `file`.
    pub fn from_env_or_file(file: Option<&Path>) -> Result<Self, KekError> {
        let env_value = std::env::var(KEK_ENV).ok().map(SecretString::from);
        Self::resolve(env_value, file)
    }

    /// The KEK from a file holding 64 hexadecimal characters (surrounding whitespace ignored).
    pub fn from_file(path: &Path) -> Result<Self, KekError> {
        let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|error| {
            KekError::File { path: path.to_owned(), message: error.to_string() }
        })?);
        warn_if_readable_by_others(path);
        Self::from_hex(&text, &path.display().to_string())
    }

    /// The KEK's id.
    pub fn id(&self) -> &KekId {
        &self.id
    }

    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new(&Key::<Aes256Gcm>::from(*self.key.expose_secret()))
    }

    /// Encrypts a private key for the row of `address`, with a fresh random nonce.
    pub fn seal(
        &self,
        address: Address,
        private_key: &[u8; PRIVATE_KEY_BYTES],
    ) -> Result<SealedKey, SealError> {
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        let aad = associated_data(address);
        let ciphertext = self
            .cipher()
            .encrypt(&nonce, Payload { msg: private_key, aad: aad.as_bytes() })
            .map_err(|_| SealError)?;
        Ok(SealedKey { nonce: nonce.into(), ciphertext })
    }

    /// Decrypts the private key of the row of `address`.
    pub fn open(
        &self,
        address: Address,
        sealed: &SealedKey,
    ) -> Result<Zeroizing<[u8; PRIVATE_KEY_BYTES]>, OpenError> {
        let aad = associated_data(address);
        let plaintext = Zeroizing::new(
            self.cipher()
                .decrypt(
                    &Nonce::from(sealed.nonce),
                    Payload { msg: &sealed.ciphertext, aad: aad.as_bytes() },
                )
                .map_err(|_| OpenError)?,
        );
        let mut key = Zeroizing::new([0_u8; PRIVATE_KEY_BYTES]);
        if plaintext.len() != PRIVATE_KEY_BYTES {
            return Err(OpenError);
        }
        key.copy_from_slice(&plaintext);
        Ok(key)
    }
}

#[cfg(unix)]
fn warn_if_readable_by_others(path: &Path) {
    use std::os::unix::fs::PermissionsExt as _;
    if let Ok(metadata) = std::fs::metadata(path)
        && metadata.permissions().mode() & 0o077 != 0
    {
        tracing::warn!(
            path = %path.display(),
            "the key-encryption key file is readable by group or others; restrict it to the owner (chmod 600)"
        );
    }
}

#[cfg(not(unix))]
fn warn_if_readable_by_others(_path: &Path) {}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail by panicking")]

    use super::*;

    const HEX: &str = "0f1e2d3c4b5a69788796a5b4c3d2e1f00112233445566778899aabbccddeeff0";

    #[test]
    fn parses_hex_with_whitespace_and_derives_a_stable_id() {
        let kek = Kek::from_hex(&format!("  {HEX}\n"), "test").unwrap();
        let again = Kek::from_hex(&HEX.to_uppercase(), "test").unwrap();
        assert_eq!(kek.id(), again.id());
        assert_eq!(kek.id().as_str().len(), 16);
        let digest = Sha256::digest(kek.key.expose_secret());
        assert!(kek.id().as_str().starts_with(&format!("{:02x}", digest[0])));
    }

    #[test]
    fn malformed_text_is_refused_without_echoing_it() {
        for text in [&HEX[..63], &format!("{HEX}0"), &format!("{}zz", &HEX[..62])] {
            let error = Kek::from_hex(text, "AWX_SIGNER_KEK").unwrap_err();
            let shown = format!("{error} {error:?}");
            assert!(shown.contains("64 hexadecimal"), "{shown}");
            assert!(!shown.contains(&HEX[..20]), "{shown}");
        }
        let zeros = "0".repeat(64);
        assert!(matches!(Kek::from_hex(&zeros, "x"), Err(KekError::AllZeros { .. })));
    }

    #[test]
    fn exactly_one_source_is_required() {
        assert!(matches!(Kek::resolve(None, None), Err(KekError::Missing)));
        let both = Kek::resolve(Some(SecretString::from(HEX)), Some(Path::new("/nonexistent")));
        assert!(matches!(both, Err(KekError::Ambiguous)));
        let from_env = Kek::resolve(Some(SecretString::from(HEX)), None).unwrap();
        assert_eq!(from_env.id(), Kek::from_hex(HEX, "x").unwrap().id());
        let missing_file = Kek::resolve(None, Some(Path::new("/nonexistent/kek"))).unwrap_err();
        assert!(missing_file.to_string().contains("/nonexistent/kek"), "{missing_file}");
    }

    #[test]
    fn a_sealed_key_opens_only_with_its_kek_and_address() {
        let kek = Kek::from_hex(HEX, "x").unwrap();
        let other = Kek::from_bytes([7; KEK_BYTES]);
        let (address, elsewhere) = (Address::repeat_byte(1), Address::repeat_byte(2));
        let secret = [42_u8; PRIVATE_KEY_BYTES];
        let sealed = kek.seal(address, &secret).unwrap();
        assert_eq!(sealed.ciphertext.len(), CIPHERTEXT_BYTES);
        assert!(*kek.open(address, &sealed).unwrap() == secret);
        // `matches!`, not `assert_eq!`: a failing `assert_eq!` would print the key.
        assert!(matches!(other.open(address, &sealed), Err(OpenError)));
        assert!(matches!(kek.open(elsewhere, &sealed), Err(OpenError)));
        let again = kek.seal(address, &secret).unwrap();
        assert_ne!(again.nonce, sealed.nonce, "every seal takes a fresh nonce");
    }
}
