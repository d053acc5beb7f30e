//! Policy decision tokens: what the policy service hands the signer to say "this exact
//! authorization is approved".
//!
//! A decision is a short-lived JWT signed with EdDSA (Ed25519). Its claims ([`DecisionClaims`])
//! bind every field of one EIP-3009 `TransferWithAuthorization`: the payment (`jti`) and the
//! agent (`sub`), the token's EIP-712 domain (chain, contract, name, version), and the message
//! (`from`, `to`, `value`, `validAfter`, `validBefore`, `nonce`). The policy service holds the
//! private key ([`DecisionKey`]); the signer holds only the public key ([`DecisionVerifier`]),
//! so a signer compromise cannot mint decisions, and a leaked token is worth one authorization
//! for at most [`LIFETIME_MAX_SECONDS`].
//!
//! [`DecisionVerifier::verify`] accepts only `alg: EdDSA` (no `none`, no HMAC with the public
//! key as secret), checks the signature, then the issuer ([`ISSUER`]), the audience
//! ([`AUDIENCE`]), expiry and issue time against the caller's clock (`now_unix`, with
//! [`CLOCK_SKEW_SECONDS`] of tolerance), and that the token does not claim to live longer than
//! [`LIFETIME_MAX_SECONDS`]. Time is an argument: nothing here reads a clock, and nothing does
//! I/O.
//!
//! Keys are 32 bytes, given as 64 hexadecimal characters (with or without `0x`). The private
//! key is zeroized on drop and never printed: [`DecisionKey`]'s `Debug` shows its public key
//! only, and no error carries the text a key was parsed from.

use std::fmt;

use awx_x402::{Address, B256, Eip3009Authorization, TokenDomain, U256};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::{SigningKey, VerifyingKey};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::RngCore as _;
use secrecy::SecretString;
use secrecy::zeroize::Zeroizing;
use serde::{Deserialize, Serialize};

/// The issuer of every decision: the policy service.
pub const ISSUER: &str = "awx-policy";
/// The audience of every decision: the signer.
pub const AUDIENCE: &str = "awx-signer";
/// The most a decision may live (exp - iat).
pub const LIFETIME_MAX_SECONDS: i64 = 120;
/// How far the issuer's and the verifier's clocks may disagree: a token is accepted up to this
/// long after its `exp`, and with an `iat` up to this far in the future.
pub const CLOCK_SKEW_SECONDS: i64 = 5;
/// Bytes of an Ed25519 key (the private seed or the public key).
pub const KEY_BYTES: usize = 32;
/// The longest token [`DecisionVerifier::verify`] reads.
pub const TOKEN_BYTES_MAX: usize = 8 * 1024;

/// Why a decision could not be made or was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecisionError {
    /// A key is not 64 hexadecimal characters, or not a usable Ed25519 key (the text is never
    /// shown).
    #[error("invalid decision key: {0}")]
    InvalidKey(String),
    /// Signing a decision failed.
    #[error("signing the decision failed: {0}")]
    Signing(String),
    /// The token is not a well-formed JWT with decision claims.
    #[error("malformed decision token: {0}")]
    Malformed(String),
    /// The signature does not verify under the policy service's key.
    #[error("the decision's signature does not verify")]
    BadSignature,
    /// The token expired.
    #[error("the decision expired")]
    Expired,
    /// The token was issued in the future.
    #[error("the decision is not valid yet (issued in the future)")]
    NotYetValid,
    /// The issuer is not the policy service.
    #[error("the decision's issuer is not {ISSUER}")]
    WrongIssuer,
    /// The audience is not the signer.
    #[error("the decision's audience is not {AUDIENCE}")]
    WrongAudience,
    /// The token claims to live longer than [`LIFETIME_MAX_SECONDS`].
    #[error("the decision lives longer than {LIFETIME_MAX_SECONDS} seconds")]
    LifetimeTooLong,
    /// The token is not signed with EdDSA.
    #[error("the decision is not signed with EdDSA")]
    WrongAlgorithm,
}

/// The claims of a decision: one EIP-3009 authorization of one payment of one agent.
///
/// Addresses, `value` and `nonce` are in alloy's serde form (`0x` hex); times are Unix seconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecisionClaims {
    /// The issuer, [`ISSUER`].
    pub iss: String,
    /// The audience, [`AUDIENCE`].
    pub aud: String,
    /// The payment id (`pay_…`).
    pub jti: String,
    /// The agent id (`agt_…`).
    pub sub: String,
    /// Issued at (Unix seconds).
    pub iat: i64,
    /// Expires at (Unix seconds).
    pub exp: i64,
    /// The chain id (of the EIP-712 domain).
    pub chain_id: u64,
    /// The token contract (the domain's `verifyingContract`).
    pub token: Address,
    /// The token's EIP-712 name.
    pub token_name: String,
    /// The token's EIP-712 version.
    pub token_version: String,
    /// The payer: the agent's wallet.
    pub from: Address,
    /// The payee.
    pub to: Address,
    /// The amount, in the token's atomic units.
    pub value: U256,
    /// `validAfter` (Unix seconds).
    pub valid_after: u64,
    /// `validBefore` (Unix seconds).
    pub valid_before: u64,
    /// The authorization's nonce.
    pub nonce: B256,
    /// For a net transfer only: what of which payments it carries. Absent in a payment's own
    /// decision, so a decision of one kind is never accepted for the other.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub covers: Option<Covers>,
}

/// The payments a net transfer covers, bound by a digest so a decision stays small whatever
/// their number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Covers {
    /// `payee` (their amounts) or `fee` (their fees).
    pub kind: String,
    /// How many payments.
    pub count: u64,
    /// Keccak-256 of the payment ids, sorted, as text, each followed by a newline.
    pub payments: B256,
}

impl Covers {
    /// What a net transfer of `kind` over `payment_ids` (in any order) covers.
    pub fn of<S: AsRef<str>>(kind: &str, payment_ids: &[S]) -> Self {
        let mut sorted: Vec<&str> = payment_ids.iter().map(AsRef::as_ref).collect();
        sorted.sort_unstable();
        let mut text = String::new();
        for id in &sorted {
            text.push_str(id);
            text.push('\n');
        }
        Self {
            kind: kind.to_owned(),
            count: u64::try_from(sorted.len()).unwrap_or(u64::MAX),
            payments: alloy_primitives::keccak256(text.as_bytes()),
        }
    }
}

impl DecisionClaims {
    /// The claims of a decision issued at `now_unix` for `lifetime_seconds`, binding
    /// `authorization` in the EIP-712 domain `domain` on chain `chain_id`.
    ///
    /// The claims' chain is `chain_id` (the domain's own `chain_id` is not read; callers pass
    /// the same value). `validAfter` and `validBefore` are carried as `u64`: a value above
    /// `u64::MAX` is written as `u64::MAX`, which then no longer matches the authorization, so a
    /// signer refuses it rather than signing something else.
    #[allow(clippy::too_many_arguments, reason = "the API the policy service is written against")]
    pub fn new(
        payment_id: &str,
        agent_id: &str,
        now_unix: i64,
        lifetime_seconds: i64,
        chain_id: u64,
        domain: &TokenDomain,
        authorization: &Eip3009Authorization,
    ) -> Self {
        Self {
            iss: ISSUER.to_owned(),
            aud: AUDIENCE.to_owned(),
            jti: payment_id.to_owned(),
            sub: agent_id.to_owned(),
            iat: now_unix,
            exp: now_unix.saturating_add(lifetime_seconds),
            chain_id,
            token: domain.verifying_contract,
            token_name: domain.name.clone(),
            token_version: domain.version.clone(),
            from: authorization.from,
            to: authorization.to,
            value: authorization.value,
            valid_after: u64::try_from(authorization.valid_after).unwrap_or(u64::MAX),
            valid_before: u64::try_from(authorization.valid_before).unwrap_or(u64::MAX),
            nonce: authorization.nonce,
            covers: None,
        }
    }

    /// These claims bound to a net transfer covering `covers` (see [`Covers`]).
    #[must_use]
    pub fn covering(mut self, covers: Covers) -> Self {
        self.covers = Some(covers);
        self
    }

    /// The EIP-712 domain the claims bind.
    pub fn domain(&self) -> TokenDomain {
        TokenDomain {
            name: self.token_name.clone(),
            version: self.token_version.clone(),
            chain_id: self.chain_id,
            verifying_contract: self.token,
        }
    }

    /// The authorization the claims bind.
    pub fn authorization(&self) -> Eip3009Authorization {
        Eip3009Authorization {
            from: self.from,
            to: self.to,
            value: self.value,
            valid_after: U256::from(self.valid_after),
            valid_before: U256::from(self.valid_before),
            nonce: self.nonce,
        }
    }

    /// Checks the registered claims against `now_unix`: issuer, audience, expiry (with
    /// [`CLOCK_SKEW_SECONDS`]), issue time not in the future (same tolerance), and lifetime.
    fn check(&self, now_unix: i64) -> Result<(), DecisionError> {
        if self.iss != ISSUER {
            return Err(DecisionError::WrongIssuer);
        }
        if self.aud != AUDIENCE {
            return Err(DecisionError::WrongAudience);
        }
        let Some(lifetime) = self.exp.checked_sub(self.iat) else {
            return Err(DecisionError::LifetimeTooLong);
        };
        if lifetime <= 0 {
            return Err(DecisionError::Malformed("exp is not after iat".into()));
        }
        if lifetime > LIFETIME_MAX_SECONDS {
            return Err(DecisionError::LifetimeTooLong);
        }
        if self.iat > now_unix.saturating_add(CLOCK_SKEW_SECONDS) {
            return Err(DecisionError::NotYetValid);
        }
        if now_unix >= self.exp.saturating_add(CLOCK_SKEW_SECONDS) {
            return Err(DecisionError::Expired);
        }
        Ok(())
    }
}

fn hex_value(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

/// 32 bytes from 64 hexadecimal characters, with or without `0x`, surrounding whitespace
/// ignored. The error says what is wrong without showing the text.
fn key_from_hex(text: &str, what: &str) -> Result<Zeroizing<[u8; KEY_BYTES]>, DecisionError> {
    let trimmed = text.trim();
    let digits = trimmed
        .strip_prefix("0x")
        .or_else(|| trimmed.strip_prefix("0X"))
        .unwrap_or(trimmed)
        .as_bytes();
    let malformed = |detail: &str| {
        DecisionError::InvalidKey(format!(
            "the {what} must be 64 hexadecimal characters (32 bytes), with or without 0x; it has \
             {} characters{detail}",
            digits.len()
        ))
    };
    if digits.len() != KEY_BYTES * 2 {
        return Err(malformed(""));
    }
    let mut key = Zeroizing::new([0_u8; KEY_BYTES]);
    for (byte, pair) in key.iter_mut().zip(digits.chunks_exact(2)) {
        match (hex_value(pair[0]), hex_value(pair[1])) {
            (Some(high), Some(low)) => *byte = high << 4 | low,
            _ => return Err(malformed(", not all of them hexadecimal")),
        }
    }
    Ok(key)
}

/// The DER prefix of an Ed25519 private key in PKCS#8 v1 (RFC 8410, section 7): a
/// `OneAsymmetricKey` of version 0, algorithm id-Ed25519 (1.3.101.112), and the 32-byte seed as
/// an OCTET STRING inside the privateKey OCTET STRING.
const PKCS8_ED25519_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

/// Bytes of [`pkcs8_der`].
const PKCS8_ED25519_BYTES: usize = PKCS8_ED25519_PREFIX.len() + KEY_BYTES;

/// The PKCS#8 DER of the Ed25519 key `seed`, which `jsonwebtoken`'s `EncodingKey::from_ed_der`
/// reads. Built by hand: it is a fixed prefix and the seed, so it cannot fail.
fn pkcs8_der(seed: &[u8; KEY_BYTES]) -> Zeroizing<[u8; PKCS8_ED25519_BYTES]> {
    let mut der = Zeroizing::new([0_u8; PKCS8_ED25519_BYTES]);
    let (prefix, key) = der.split_at_mut(PKCS8_ED25519_PREFIX.len());
    prefix.copy_from_slice(&PKCS8_ED25519_PREFIX);
    key.copy_from_slice(seed);
    der
}

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// The policy service's private key: an Ed25519 key that signs decisions. Zeroized on drop;
/// its `Debug` shows only the public key.
pub struct DecisionKey {
    /// The key (zeroized on drop: `ed25519-dalek`'s `zeroize` feature).
    signing: SigningKey,
    /// The same key as `jsonwebtoken` wants it (PKCS#8 DER, zeroized on drop).
    encoding: EncodingKey,
}

impl fmt::Debug for DecisionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DecisionKey")
            .field("public_key", &self.public_key_hex())
            .finish_non_exhaustive()
    }
}

impl DecisionKey {
    /// A new random key (from `rand`'s thread generator, seeded by the operating system).
    pub fn generate() -> Self {
        let mut seed = Zeroizing::new([0_u8; KEY_BYTES]);
        rand::rng().fill_bytes(seed.as_mut_slice());
        Self::from_seed(&seed)
    }

    /// The key whose 32-byte seed is `hex` (64 hexadecimal characters, with or without `0x`).
    pub fn from_seed_hex(hex: &str) -> Result<Self, DecisionError> {
        let seed = key_from_hex(hex, "decision key seed")?;
        Ok(Self::from_seed(&seed))
    }

    fn from_seed(seed: &[u8; KEY_BYTES]) -> Self {
        let signing = SigningKey::from_bytes(seed);
        let encoding = EncodingKey::from_ed_der(pkcs8_der(seed).as_slice());
        Self { signing, encoding }
    }

    /// The 32-byte seed as 64 lowercase hexadecimal characters, to keep the key (in a
    /// development state file, or a secret store).
    pub fn seed_hex(&self) -> SecretString {
        let seed = Zeroizing::new(self.signing.to_bytes());
        SecretString::from(to_hex(seed.as_slice()))
    }

    /// The public key as 64 lowercase hexadecimal characters (no `0x`): what the signer is
    /// configured with.
    pub fn public_key_hex(&self) -> String {
        to_hex(self.signing.verifying_key().as_bytes())
    }

    /// A verifier of this key's decisions.
    pub fn verifier(&self) -> DecisionVerifier {
        DecisionVerifier::from_verifying_key(self.signing.verifying_key())
    }

    /// Signs `claims` into a compact JWT (`alg: EdDSA`, `typ: JWT`).
    pub fn sign(&self, claims: &DecisionClaims) -> Result<String, DecisionError> {
        jsonwebtoken::encode(&Header::new(Algorithm::EdDSA), claims, &self.encoding)
            .map_err(|error| DecisionError::Signing(error.to_string()))
    }
}

/// Verifies decisions with the policy service's public key. Cheap to clone.
#[derive(Clone)]
pub struct DecisionVerifier {
    public_key: VerifyingKey,
    decoding: DecodingKey,
    validation: Validation,
}

impl fmt::Debug for DecisionVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DecisionVerifier")
            .field("public_key", &to_hex(self.public_key.as_bytes()))
            .finish_non_exhaustive()
    }
}

/// The header fields read before verification.
#[derive(Deserialize)]
struct RawHeader {
    alg: Option<String>,
}

impl DecisionVerifier {
    /// A verifier of the public key `hex` (64 hexadecimal characters, with or without `0x`).
    /// A key that is not a point of the curve, or a weak (small-order) key, is refused.
    pub fn from_public_key_hex(hex: &str) -> Result<Self, DecisionError> {
        let bytes = key_from_hex(hex, "decision public key")?;
        let public_key = VerifyingKey::from_bytes(&bytes).map_err(|_| {
            DecisionError::InvalidKey("the decision public key is not an Ed25519 point".into())
        })?;
        if public_key.is_weak() {
            return Err(DecisionError::InvalidKey(
                "the decision public key is a weak (small-order) key".into(),
            ));
        }
        Ok(Self::from_verifying_key(public_key))
    }

    fn from_verifying_key(public_key: VerifyingKey) -> Self {
        // `jsonwebtoken` checks the algorithm and the signature only; the registered claims are
        // checked by `DecisionClaims::check` against the caller's clock.
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        validation.required_spec_claims.clear();
        validation.leeway = 0;
        let decoding = DecodingKey::from_ed_der(public_key.as_bytes());
        Self { public_key, decoding, validation }
    }

    /// The public key as 64 lowercase hexadecimal characters.
    pub fn public_key_hex(&self) -> String {
        to_hex(self.public_key.as_bytes())
    }

    /// The claims of `token` if it is a decision of this key, valid at `now_unix` (Unix
    /// seconds); see the module docs for what is checked.
    pub fn verify(&self, token: &str, now_unix: i64) -> Result<DecisionClaims, DecisionError> {
        if token.len() > TOKEN_BYTES_MAX {
            return Err(DecisionError::Malformed(format!(
                "the token is {} bytes, above the limit of {TOKEN_BYTES_MAX}",
                token.len()
            )));
        }
        check_algorithm(token)?;
        let data = jsonwebtoken::decode::<DecisionClaims>(token, &self.decoding, &self.validation)
            .map_err(decode_error)?;
        data.claims.check(now_unix)?;
        Ok(data.claims)
    }
}

/// Refuses a token whose header does not say `alg: EdDSA`, before anything else is read (so
/// `none` and HMAC tokens are named as such, not as malformed).
fn check_algorithm(token: &str) -> Result<(), DecisionError> {
    let mut parts = token.split('.');
    let (Some(header), Some(_), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(DecisionError::Malformed("a JWT has three dot-separated parts".into()));
    };
    let header = URL_SAFE_NO_PAD
        .decode(header)
        .map_err(|_| DecisionError::Malformed("the header is not base64url".into()))?;
    let header: RawHeader = serde_json::from_slice(&header)
        .map_err(|_| DecisionError::Malformed("the header is not a JSON object".into()))?;
    match header.alg.as_deref() {
        Some("EdDSA") => Ok(()),
        _ => Err(DecisionError::WrongAlgorithm),
    }
}

fn decode_error(error: jsonwebtoken::errors::Error) -> DecisionError {
    use jsonwebtoken::errors::ErrorKind;
    match error.kind() {
        ErrorKind::InvalidSignature => DecisionError::BadSignature,
        ErrorKind::InvalidAlgorithm | ErrorKind::MissingAlgorithm => DecisionError::WrongAlgorithm,
        ErrorKind::InvalidEddsaKey | ErrorKind::InvalidKeyFormat => {
            DecisionError::InvalidKey(error.to_string())
        }
        _ => DecisionError::Malformed(error.to_string()),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic, reason = "tests fail by panicking")]

    use super::*;

    const SEED_HEX: &str = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";
    /// RFC 8032's test 1: the public key of `SEED_HEX`.
    const PUBLIC_HEX: &str = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";
    const NOW: i64 = 1_900_000_000;

    fn claims(now: i64, lifetime: i64) -> DecisionClaims {
        let domain = TokenDomain {
            name: "USD Coin".into(),
            version: "2".into(),
            chain_id: 8453,
            verifying_contract: Address::repeat_byte(0xc0),
        };
        let authorization = Eip3009Authorization {
            from: Address::repeat_byte(0x11),
            to: Address::repeat_byte(0x22),
            value: U256::from(1_234_567_u64),
            valid_after: U256::ZERO,
            valid_before: U256::from(1_900_000_300_u64),
            nonce: B256::repeat_byte(0x33),
        };
        DecisionClaims::new(
            "pay_0190a3c48f2b7c3e9d1e5f6a7b8c9d0e",
            "agt_0190a3c48f2b7c3e9d1e5f6a7b8c9d0f",
            now,
            lifetime,
            8453,
            &domain,
            &authorization,
        )
    }

    fn key() -> DecisionKey {
        DecisionKey::from_seed_hex(SEED_HEX).unwrap()
    }

    fn verifier() -> DecisionVerifier {
        DecisionVerifier::from_public_key_hex(PUBLIC_HEX).unwrap()
    }

    /// A token with the given header and claims, signed (or not) as given.
    fn forge(header: &serde_json::Value, claims: &impl Serialize, signature: &[u8]) -> String {
        let header = URL_SAFE_NO_PAD.encode(serde_json::to_vec(header).unwrap());
        let claims = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).unwrap());
        format!("{header}.{claims}.{}", URL_SAFE_NO_PAD.encode(signature))
    }

    #[test]
    fn a_decision_round_trips_with_every_claim() {
        let key = key();
        assert_eq!(key.public_key_hex(), PUBLIC_HEX, "RFC 8032 test 1");
        let issued = claims(NOW, 60);
        assert_eq!(issued.iss, ISSUER);
        assert_eq!(issued.aud, AUDIENCE);
        assert_eq!(issued.exp, NOW + 60);
        let token = key.sign(&issued).unwrap();
        let verified = verifier().verify(&token, NOW).unwrap();
        assert_eq!(verified, issued);
        assert_eq!(verified.domain().chain_id, 8453);
        assert_eq!(verified.domain().verifying_contract, Address::repeat_byte(0xc0));
        assert_eq!(verified.authorization().valid_before, U256::from(1_900_000_300_u64));
        assert_eq!(verified.authorization().value, U256::from(1_234_567_u64));
        // Accepted with 0x, in upper case, and through the key's own verifier.
        let upper =
            DecisionVerifier::from_public_key_hex(&format!("0x{}", PUBLIC_HEX.to_uppercase()))
                .unwrap();
        assert_eq!(upper.verify(&token, NOW + 59).unwrap(), issued);
        assert_eq!(key.verifier().verify(&token, NOW).unwrap(), issued);
        let header = jsonwebtoken::decode_header(&token).unwrap();
        assert_eq!(header.alg, Algorithm::EdDSA);
    }

    #[test]
    fn the_hand_built_pkcs8_reads_back_as_the_same_key() {
        use ed25519_dalek::pkcs8::DecodePrivateKey as _;
        let seed = hex_bytes(SEED_HEX);
        let seed: [u8; KEY_BYTES] = seed.as_slice().try_into().unwrap();
        let read = SigningKey::from_pkcs8_der(pkcs8_der(&seed).as_slice()).unwrap();
        assert_eq!(to_hex(read.verifying_key().as_bytes()), PUBLIC_HEX);
        assert!(read.to_bytes() == seed, "the seed reads back");
    }

    #[test]
    fn generated_keys_differ_and_their_seeds_restore_them() {
        use secrecy::ExposeSecret as _;
        let (one, two) = (DecisionKey::generate(), DecisionKey::generate());
        assert_ne!(one.public_key_hex(), two.public_key_hex());
        let restored = DecisionKey::from_seed_hex(one.seed_hex().expose_secret()).unwrap();
        assert_eq!(restored.public_key_hex(), one.public_key_hex());
        let token = one.sign(&claims(NOW, 30)).unwrap();
        assert!(restored.verifier().verify(&token, NOW).is_ok());
    }

    #[test]
    fn a_tampered_payload_is_refused() {
        let token = key().sign(&claims(NOW, 60)).unwrap();
        let parts: Vec<&str> = token.split('.').collect();
        let mut changed = claims(NOW, 60);
        changed.value = U256::from(999_999_999_u64);
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&changed).unwrap());
        let tampered = format!("{}.{payload}.{}", parts[0], parts[2]);
        assert_eq!(verifier().verify(&tampered, NOW), Err(DecisionError::BadSignature));
        // A flipped signature byte too.
        let mut signature = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
        signature[10] ^= 1;
        let flipped = format!("{}.{}.{}", parts[0], parts[1], URL_SAFE_NO_PAD.encode(signature));
        assert_eq!(verifier().verify(&flipped, NOW), Err(DecisionError::BadSignature));
    }

    #[test]
    fn a_token_of_another_key_is_refused() {
        let token = DecisionKey::generate().sign(&claims(NOW, 60)).unwrap();
        assert_eq!(verifier().verify(&token, NOW), Err(DecisionError::BadSignature));
    }

    #[test]
    fn expiry_and_issue_time_are_checked_against_the_given_clock() {
        let token = key().sign(&claims(NOW, 60)).unwrap();
        let verifier = verifier();
        assert!(verifier.verify(&token, NOW + 60 + CLOCK_SKEW_SECONDS - 1).is_ok());
        assert_eq!(
            verifier.verify(&token, NOW + 60 + CLOCK_SKEW_SECONDS),
            Err(DecisionError::Expired)
        );
        assert_eq!(verifier.verify(&token, NOW + 3_600), Err(DecisionError::Expired));
        assert!(verifier.verify(&token, NOW - CLOCK_SKEW_SECONDS).is_ok());
        assert_eq!(
            verifier.verify(&token, NOW - CLOCK_SKEW_SECONDS - 1),
            Err(DecisionError::NotYetValid)
        );
    }

    #[test]
    fn the_wrong_audience_or_issuer_is_refused() {
        let key = key();
        let mut wrong_aud = claims(NOW, 60);
        wrong_aud.aud = "awx-settlement".into();
        let token = key.sign(&wrong_aud).unwrap();
        assert_eq!(verifier().verify(&token, NOW), Err(DecisionError::WrongAudience));
        let mut wrong_iss = claims(NOW, 60);
        wrong_iss.iss = "someone-else".into();
        let token = key.sign(&wrong_iss).unwrap();
        assert_eq!(verifier().verify(&token, NOW), Err(DecisionError::WrongIssuer));
    }

    #[test]
    fn hmac_and_unsigned_tokens_are_refused() {
        let claims = claims(NOW, 60);
        // HS256 with the public key as the HMAC secret: the classic key-confusion attack.
        let public = hex_bytes(PUBLIC_HEX);
        let hs256 = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(&public),
        )
        .unwrap();
        assert_eq!(verifier().verify(&hs256, NOW), Err(DecisionError::WrongAlgorithm));
        let none = forge(&serde_json::json!({"alg": "none", "typ": "JWT"}), &claims, &[]);
        assert_eq!(verifier().verify(&none, NOW), Err(DecisionError::WrongAlgorithm));
        let missing = forge(&serde_json::json!({"typ": "JWT"}), &claims, &[]);
        assert_eq!(verifier().verify(&missing, NOW), Err(DecisionError::WrongAlgorithm));
        // An EdDSA header with an empty signature is a bad signature.
        let empty = forge(&serde_json::json!({"alg": "EdDSA"}), &claims, &[]);
        assert!(matches!(
            verifier().verify(&empty, NOW),
            Err(DecisionError::BadSignature | DecisionError::Malformed(_))
        ));
    }

    #[test]
    fn a_lifetime_above_the_maximum_is_refused() {
        let key = key();
        let longest = key.sign(&claims(NOW, LIFETIME_MAX_SECONDS)).unwrap();
        assert!(verifier().verify(&longest, NOW).is_ok());
        let too_long = key.sign(&claims(NOW, LIFETIME_MAX_SECONDS + 1)).unwrap();
        assert_eq!(verifier().verify(&too_long, NOW), Err(DecisionError::LifetimeTooLong));
        let mut backwards = claims(NOW, 60);
        backwards.exp = NOW - 1;
        let token = key.sign(&backwards).unwrap();
        assert!(matches!(verifier().verify(&token, NOW), Err(DecisionError::Malformed(_))));
        let mut overflow = claims(NOW, 60);
        overflow.iat = i64::MIN;
        overflow.exp = i64::MAX;
        let token = key.sign(&overflow).unwrap();
        assert_eq!(verifier().verify(&token, NOW), Err(DecisionError::LifetimeTooLong));
    }

    #[test]
    fn malformed_tokens_and_keys_are_refused_without_echoing_them() {
        for token in ["", "a.b", "a.b.c.d", "!!!.e30.sig", &"a".repeat(TOKEN_BYTES_MAX + 1)] {
            assert!(matches!(verifier().verify(token, NOW), Err(DecisionError::Malformed(_))));
        }
        let missing_claims =
            forge(&serde_json::json!({"alg": "EdDSA"}), &serde_json::json!({"sub": "x"}), &[0; 64]);
        assert!(matches!(
            verifier().verify(&missing_claims, NOW),
            Err(DecisionError::BadSignature | DecisionError::Malformed(_))
        ));
        for text in [&SEED_HEX[..63], &format!("{}zz", &SEED_HEX[..62]), &format!("{SEED_HEX}00")] {
            let error = DecisionKey::from_seed_hex(text).unwrap_err();
            let shown = format!("{error} {error:?}");
            assert!(shown.contains("64 hexadecimal"), "{shown}");
            assert!(!shown.contains(&SEED_HEX[..16]), "{shown}");
        }
        assert!(DecisionKey::from_seed_hex(&format!("0x{SEED_HEX}")).is_ok());
        // Not a curve point; a small-order point.
        let not_a_point = format!("{}80", "ff".repeat(31));
        assert!(matches!(
            DecisionVerifier::from_public_key_hex(&not_a_point),
            Err(DecisionError::InvalidKey(_))
        ));
        let identity = format!("01{}", "00".repeat(31));
        assert!(matches!(
            DecisionVerifier::from_public_key_hex(&identity),
            Err(DecisionError::InvalidKey(_))
        ));
    }

    #[test]
    fn debug_output_shows_no_seed() {
        let key = key();
        let shown = format!("{key:?} {key:#?} {:?}", key.seed_hex());
        assert!(shown.contains(PUBLIC_HEX), "{shown}");
        let seed = hex_bytes(SEED_HEX);
        for form in [
            SEED_HEX.to_owned(),
            SEED_HEX.to_uppercase(),
            SEED_HEX[..16].to_owned(),
            format!("{seed:?}"),
            format!("{seed:?}").replace(", ", ","),
        ] {
            assert!(!shown.contains(&form), "Debug shows the seed: {shown}");
        }
        let verifier = format!("{:?}", verifier());
        assert!(verifier.contains(PUBLIC_HEX), "{verifier}");
    }

    fn hex_bytes(hex: &str) -> Vec<u8> {
        (0..hex.len() / 2)
            .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap())
            .collect()
    }

    /// Three payment ids as the policy service and the signer write them (hyphenated UUIDs).
    const PAYMENTS: [&str; 3] = [
        "0190a3c4-8f2b-7c3e-9d1e-5f6a7b8c9d01",
        "0190a3c4-8f2b-7c3e-9d1e-5f6a7b8c9d02",
        "0190a3c4-8f2b-7c3e-9d1e-5f6a7b8c9d03",
    ];

    #[test]
    fn covers_depend_on_the_kind_and_the_set_not_the_order() {
        let covers = Covers::of("payee", &PAYMENTS);
        assert_eq!(covers.kind, "payee");
        assert_eq!(covers.count, 3);
        // The digest is Keccak-256 of the sorted ids, each followed by a newline.
        let text = format!("{}\n{}\n{}\n", PAYMENTS[0], PAYMENTS[1], PAYMENTS[2]);
        assert_eq!(covers.payments, alloy_primitives::keccak256(text.as_bytes()));

        // Any order, owned or borrowed: the same covers.
        let reversed: Vec<String> = PAYMENTS.iter().rev().map(|id| (*id).to_owned()).collect();
        assert_eq!(Covers::of("payee", &reversed), covers);
        let rotated = [PAYMENTS[1], PAYMENTS[2], PAYMENTS[0]];
        assert_eq!(Covers::of("payee", &rotated), covers);

        // Another kind over the same set.
        let fees = Covers::of("fee", &PAYMENTS);
        assert_ne!(fees, covers);
        assert_eq!(fees.kind, "fee");
        // Another set of the same size: the digest differs.
        let other = Covers::of(
            "payee",
            &[PAYMENTS[0], PAYMENTS[1], "0190a3c4-8f2b-7c3e-9d1e-5f6a7b8c9d04"],
        );
        assert_ne!(other.payments, covers.payments);
        assert_ne!(other, covers);
        // One id more, or one fewer: the digest differs, not only the count.
        let more = Covers::of(
            "payee",
            &[PAYMENTS[0], PAYMENTS[1], PAYMENTS[2], "0190a3c4-8f2b-7c3e-9d1e-5f6a7b8c9d04"],
        );
        assert_eq!(more.count, 4);
        assert_ne!(more.payments, covers.payments);
        let fewer = Covers::of("payee", &PAYMENTS[..2]);
        assert_eq!(fewer.count, 2);
        assert_ne!(fewer.payments, covers.payments);
        // An id named twice is not the set once.
        let twice = Covers::of("payee", &[PAYMENTS[0], PAYMENTS[1], PAYMENTS[2], PAYMENTS[2]]);
        assert_ne!(twice.payments, covers.payments);
        // The separator keeps ids apart: "ab","c" is not "a","bc".
        assert_ne!(
            Covers::of("payee", &["ab", "c"]).payments,
            Covers::of("payee", &["a", "bc"]).payments
        );
        // No payments is a covers of its own (count 0), unlike any set.
        let none: [&str; 0] = [];
        assert_eq!(Covers::of("payee", &none).count, 0);
        assert_ne!(Covers::of("payee", &none).payments, covers.payments);
    }

    #[test]
    fn claims_with_covers_round_trip_and_are_bound_by_the_signature() {
        let covers = Covers::of("fee", &PAYMENTS);
        let issued = claims(NOW, 60).covering(covers.clone());
        assert_eq!(issued.covers, Some(covers.clone()));
        let token = key().sign(&issued).unwrap();
        let verified = verifier().verify(&token, NOW).unwrap();
        assert_eq!(verified, issued);
        assert_eq!(verified.covers, Some(covers));

        // On the wire: an object with the kind, the count and the digest.
        let json = serde_json::to_value(&issued).unwrap();
        assert_eq!(json["covers"]["kind"], "fee");
        assert_eq!(json["covers"]["count"], 3);
        assert!(json["covers"]["payments"].as_str().unwrap().starts_with("0x"));

        // Covers changed in the payload (another set, or removed) break the signature.
        let parts: Vec<&str> = token.split('.').collect();
        let mut other_set = issued.clone();
        other_set.covers = Some(Covers::of("fee", &PAYMENTS[..2]));
        let mut without = issued;
        without.covers = None;
        for changed in [other_set, without] {
            let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&changed).unwrap());
            let tampered = format!("{}.{payload}.{}", parts[0], parts[2]);
            assert_eq!(verifier().verify(&tampered, NOW), Err(DecisionError::BadSignature));
        }
    }

    #[test]
    fn claims_without_covers_have_no_covers_key_on_the_wire() {
        let issued = claims(NOW, 60);
        assert_eq!(issued.covers, None);
        let json = serde_json::to_value(&issued).unwrap();
        assert!(json.as_object().unwrap().get("covers").is_none(), "{json}");

        // In the signed token's payload too: a payment's decision reads as it did before covers.
        let token = key().sign(&issued).unwrap();
        let payload = token.split('.').nth(1).unwrap();
        let payload: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
        let keys: Vec<&str> = payload.as_object().unwrap().keys().map(String::as_str).collect();
        assert!(!keys.contains(&"covers"), "{keys:?}");
        assert_eq!(keys.len(), 16, "the claims of a payment's decision: {keys:?}");
        assert_eq!(verifier().verify(&token, NOW).unwrap().covers, None);

        // A payload written without the field (a decision issued before it existed) reads as
        // `None`; an explicit null too.
        let mut old = serde_json::to_value(&issued).unwrap();
        assert_eq!(serde_json::from_value::<DecisionClaims>(old.clone()).unwrap(), issued);
        old["covers"] = serde_json::Value::Null;
        assert_eq!(serde_json::from_value::<DecisionClaims>(old).unwrap().covers, None);
    }
}
