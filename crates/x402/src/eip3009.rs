//! EIP-3009 typed data: the EIP-712 digest of `TransferWithAuthorization` (and of the receive and
//! cancel messages our token also accepts), signing with a local key, and signer recovery.
//!
//! Signatures are 65 bytes `r ‖ s ‖ v`. We emit `v` as 27 or 28 (as viem and eth-account do);
//! we read `v` in {0, 1, 27, 28}. High-`s` signatures are refused, as EIP-2 and the token
//! contract refuse them, so a signature we accept is one the chain accepts.

use alloy_primitives::{Address, B256, U256};
use alloy_signer::SignerSync;
use alloy_signer_local::PrivateKeySigner;
use alloy_sol_types::{Eip712Domain, SolStruct, sol};

use crate::payload::Eip3009Authorization;

sol! {
    /// The EIP-3009 transfer message.
    #[derive(Debug, PartialEq, Eq)]
    struct TransferWithAuthorization {
        address from;
        address to;
        uint256 value;
        uint256 validAfter;
        uint256 validBefore;
        bytes32 nonce;
    }

    /// The EIP-3009 receive message (the payee submits it).
    #[derive(Debug, PartialEq, Eq)]
    struct ReceiveWithAuthorization {
        address from;
        address to;
        uint256 value;
        uint256 validAfter;
        uint256 validBefore;
        bytes32 nonce;
    }

    /// The EIP-3009 message that cancels an unused authorization.
    #[derive(Debug, PartialEq, Eq)]
    struct CancelAuthorization {
        address authorizer;
        bytes32 nonce;
    }
}

/// Half the secp256k1 group order: the largest `s` EIP-2 allows.
const SECP256K1N_HALF: U256 = U256::from_limbs([
    0xDFE9_2F46_681B_20A0,
    0x5D57_6E73_57A4_501D,
    0xFFFF_FFFF_FFFF_FFFF,
    0x7FFF_FFFF_FFFF_FFFF,
]);

/// The EIP-712 domain of a token: `{name, version, chainId, verifyingContract}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenDomain {
    /// The token's EIP-712 name (`extra.name`).
    pub name: String,
    /// The token's EIP-712 version (`extra.version`).
    pub version: String,
    /// The chain id.
    pub chain_id: u64,
    /// The token contract.
    pub verifying_contract: Address,
}

impl TokenDomain {
    /// The alloy domain value.
    pub fn eip712(&self) -> Eip712Domain {
        Eip712Domain::new(
            Some(self.name.clone().into()),
            Some(self.version.clone().into()),
            Some(U256::from(self.chain_id)),
            Some(self.verifying_contract),
            None,
        )
    }

    /// The domain separator.
    pub fn separator(&self) -> B256 {
        self.eip712().separator()
    }
}

/// Why a signature could not be made or read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// Not 65 bytes.
    #[error("an ECDSA signature is 65 bytes, got {0}")]
    Length(usize),
    /// `v` is not 0, 1, 27 or 28.
    #[error("signature v must be 0, 1, 27 or 28, got {0}")]
    V(u8),
    /// `s` is in the upper half of the curve order (malleable; EIP-2 refuses it).
    #[error("signature s is not in the lower half of the curve order")]
    HighS,
    /// No public key recovers from the signature.
    #[error("no signer recovers from this signature")]
    Unrecoverable,
    /// The local key failed to sign.
    #[error("signing failed: {0}")]
    Signing(String),
}

/// A 65-byte ECDSA signature with canonical low `s`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EcdsaSignature(alloy_primitives::Signature);

impl EcdsaSignature {
    /// Reads `r ‖ s ‖ v` with `v` in {0, 1, 27, 28} and low `s`.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, SignatureError> {
        let bytes: &[u8; 65] = bytes.try_into().map_err(|_| SignatureError::Length(bytes.len()))?;
        let v = bytes[64];
        let parity = match v {
            0 | 27 => false,
            1 | 28 => true,
            other => return Err(SignatureError::V(other)),
        };
        let signature = alloy_primitives::Signature::from_bytes_and_parity(&bytes[..64], parity);
        if signature.s() > SECP256K1N_HALF {
            return Err(SignatureError::HighS);
        }
        Ok(Self(signature))
    }

    /// `r ‖ s ‖ v` with `v` as 27 or 28.
    pub fn to_bytes(&self) -> [u8; 65] {
        self.0.as_bytes()
    }

    /// `v` as 27 or 28.
    pub fn v(&self) -> u8 {
        if self.0.v() { 28 } else { 27 }
    }

    /// `r`.
    pub fn r(&self) -> B256 {
        B256::from(self.0.r())
    }

    /// `s`.
    pub fn s(&self) -> B256 {
        B256::from(self.0.s())
    }

    /// The address that signed `digest`.
    pub fn recover(&self, digest: &B256) -> Result<Address, SignatureError> {
        self.0.recover_address_from_prehash(digest).map_err(|_| SignatureError::Unrecoverable)
    }
}

impl Eip3009Authorization {
    fn message(&self) -> TransferWithAuthorization {
        TransferWithAuthorization {
            from: self.from,
            to: self.to,
            value: self.value,
            validAfter: self.valid_after,
            validBefore: self.valid_before,
            nonce: self.nonce,
        }
    }

    /// The EIP-712 digest of this authorization as `TransferWithAuthorization`.
    pub fn signing_hash(&self, domain: &TokenDomain) -> B256 {
        self.message().eip712_signing_hash(&domain.eip712())
    }

    /// The EIP-712 digest of this authorization as `ReceiveWithAuthorization`.
    pub fn receive_signing_hash(&self, domain: &TokenDomain) -> B256 {
        let message = ReceiveWithAuthorization {
            from: self.from,
            to: self.to,
            value: self.value,
            validAfter: self.valid_after,
            validBefore: self.valid_before,
            nonce: self.nonce,
        };
        message.eip712_signing_hash(&domain.eip712())
    }

    /// Signs this authorization as `TransferWithAuthorization`.
    pub fn sign(
        &self,
        signer: &PrivateKeySigner,
        domain: &TokenDomain,
    ) -> Result<EcdsaSignature, SignatureError> {
        sign_digest(signer, &self.signing_hash(domain))
    }

    /// The address whose key made `signature` over this authorization.
    pub fn recover_signer(
        &self,
        domain: &TokenDomain,
        signature: &[u8],
    ) -> Result<Address, SignatureError> {
        EcdsaSignature::from_bytes(signature)?.recover(&self.signing_hash(domain))
    }
}

/// The EIP-712 digest of `CancelAuthorization(authorizer, nonce)`.
pub fn cancel_signing_hash(authorizer: Address, nonce: B256, domain: &TokenDomain) -> B256 {
    CancelAuthorization { authorizer, nonce }.eip712_signing_hash(&domain.eip712())
}

/// Signs a 32-byte digest with a local key (RFC 6979 deterministic, low `s`).
pub fn sign_digest(
    signer: &PrivateKeySigner,
    digest: &B256,
) -> Result<EcdsaSignature, SignatureError> {
    let signature = signer
        .sign_hash_sync(digest)
        .map_err(|error| SignatureError::Signing(error.to_string()))?;
    EcdsaSignature::from_bytes(&signature.as_bytes())
}

/// A random 32-byte authorization nonce.
pub fn random_nonce() -> B256 {
    B256::random()
}

#[cfg(test)]
mod tests {
    use alloy_primitives::{address, b256, keccak256};

    use super::*;

    fn domain() -> TokenDomain {
        TokenDomain {
            name: "USDC".into(),
            version: "2".into(),
            chain_id: 84_532,
            verifying_contract: address!("0x036CbD53842c5426634e7929541eC2318f3dCF7e"),
        }
    }

    fn authorization(from: Address) -> Eip3009Authorization {
        Eip3009Authorization {
            from,
            to: address!("0x209693Bc6afc0C5328bA36FaF03C514EF312287C"),
            value: U256::from(10_000),
            valid_after: U256::ZERO,
            valid_before: U256::from(1_740_672_154_u64),
            nonce: b256!("0xf3746613c2d920b5fdabc0856f2aeb2d4f88ee6037b8cc5d04a71a4462f13480"),
        }
    }

    #[test]
    fn typehashes_match_the_specification() {
        assert_eq!(
            keccak256(
                "TransferWithAuthorization(address from,address to,uint256 value,uint256 validAfter,uint256 validBefore,bytes32 nonce)"
            ),
            b256!("0x7c7c6cdb67a18743f49ec6fa9b35f50d52ed05cbed4cc592e13b44501c1a2267")
        );
        assert_eq!(
            authorization(Address::ZERO).message().eip712_type_hash(),
            b256!("0x7c7c6cdb67a18743f49ec6fa9b35f50d52ed05cbed4cc592e13b44501c1a2267")
        );
        assert_eq!(
            keccak256(
                "EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"
            ),
            b256!("0x8b73c3c69bb8fe3d512ecc4cf759cc79239f7b179b0ffacaa9a75d522b39400f")
        );
    }

    #[test]
    fn signs_and_recovers() {
        let signer = PrivateKeySigner::random();
        let auth = authorization(signer.address());
        let signature = auth.sign(&signer, &domain()).unwrap();
        assert!(matches!(signature.v(), 27 | 28));
        assert_eq!(
            auth.recover_signer(&domain(), &signature.to_bytes()).unwrap(),
            signer.address()
        );
        // v as 0/1 reads the same.
        let mut raw = signature.to_bytes();
        raw[64] -= 27;
        assert_eq!(auth.recover_signer(&domain(), &raw).unwrap(), signer.address());
        // Another domain gives another signer.
        let mut other = domain();
        other.name = "USD Coin".into();
        assert_ne!(auth.recover_signer(&other, &signature.to_bytes()).unwrap(), signer.address());
    }

    #[test]
    fn refuses_malformed_and_malleable_signatures() {
        let signer = PrivateKeySigner::random();
        let auth = authorization(signer.address());
        let signature = auth.sign(&signer, &domain()).unwrap();
        assert_eq!(auth.recover_signer(&domain(), &[0; 64]), Err(SignatureError::Length(64)));
        let mut raw = signature.to_bytes();
        raw[64] = 29;
        assert_eq!(auth.recover_signer(&domain(), &raw), Err(SignatureError::V(29)));
        // The same signature with s' = n - s and the parity flipped is valid ECDSA but malleable.
        let n = U256::from_str_radix(
            "FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141",
            16,
        )
        .unwrap();
        let high_s = n - U256::from_be_bytes(signature.s().0);
        let mut raw = signature.to_bytes();
        raw[32..64].copy_from_slice(&high_s.to_be_bytes::<32>());
        raw[64] = if signature.v() == 27 { 28 } else { 27 };
        assert_eq!(auth.recover_signer(&domain(), &raw), Err(SignatureError::HighS));
    }
}
