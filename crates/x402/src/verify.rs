//! The offline part of exact-EVM verification, as the reference facilitator does it
//! (x402-v2.md §5.1), with the reason strings of the official TypeScript and Go facilitators.
//!
//! [`check_exact_evm`] runs, in the TypeScript 2.27 order: scheme, EIP-712 domain present,
//! network, recipient, time window (`validBefore >= now + 6`, `validAfter <= now`) and exact
//! value. It needs no chain. The signature check is separate ([`check_eoa_signature`]) because
//! whether a payer is a contract wallet is a chain question; the on-chain steps (simulation and
//! its diagnosis) belong to the facilitator service.

use alloy_primitives::{Address, Bytes, U256};

use crate::eip3009::{EcdsaSignature, TokenDomain};
use crate::network::Network;
use crate::payload::{Eip3009Authorization, ExactEvmPayload, PayloadError};
use crate::reason::ErrorReason;
use crate::serde_util::{parse_address, parse_u256};
use crate::v2::{PaymentPayload, PaymentRequirements, SCHEME_EXACT};

/// Seconds of grace for block time: an authorization must stay valid at least this long.
pub const VALID_BEFORE_GRACE_SECONDS: u64 = 6;

/// A payment that failed a check, with the reason string to answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    /// The reason string.
    pub reason: ErrorReason,
    /// A human explanation.
    pub message: String,
    /// The payer, when the payload could be read that far.
    pub payer: Option<Address>,
}

impl Invalid {
    fn new(reason: ErrorReason, message: impl Into<String>, payer: Option<Address>) -> Self {
        Self { reason, message: message.into(), payer }
    }
}

/// An exact EVM payment that passed the offline checks, with its fields typed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedExactEvm {
    /// The CAIP-2 network.
    pub network: Network,
    /// The token's EIP-712 domain (from `extra`, the chain id and the asset).
    pub domain: TokenDomain,
    /// The required amount.
    pub amount: U256,
    /// The recipient.
    pub pay_to: Address,
    /// The signed authorization.
    pub authorization: Eip3009Authorization,
    /// The signature, as sent.
    pub signature: Bytes,
}

impl CheckedExactEvm {
    /// The payer.
    pub fn payer(&self) -> Address {
        self.authorization.from
    }

    /// The token contract.
    pub fn asset(&self) -> Address {
        self.domain.verifying_contract
    }
}

/// Runs the offline exact-EVM checks of a payment against the server's requirements at
/// `now_unix_seconds`.
pub fn check_exact_evm(
    payload: &PaymentPayload,
    requirements: &PaymentRequirements,
    now_unix_seconds: u64,
) -> Result<CheckedExactEvm, Invalid> {
    let evm_payload = match ExactEvmPayload::from_json(&payload.payload) {
        Ok(ExactEvmPayload::Eip3009(eip3009)) => eip3009,
        Ok(ExactEvmPayload::Permit2(permit2)) => {
            return Err(Invalid::new(
                ErrorReason::UnsupportedPayloadType,
                "Permit2 payments are not supported by this facilitator",
                Some(permit2.permit2_authorization.from),
            ));
        }
        Err(PayloadError::UnsupportedType) => {
            return Err(Invalid::new(
                ErrorReason::UnsupportedPayloadType,
                "payload has neither authorization nor permit2Authorization",
                None,
            ));
        }
        Err(PayloadError::Malformed(message)) => {
            return Err(Invalid::new(ErrorReason::InvalidExactEvmPayload, message, None));
        }
    };
    let auth = evm_payload.authorization;
    let payer = Some(auth.from);
    let invalid = |reason, message: String| Invalid::new(reason, message, payer);

    if payload.accepted.scheme != SCHEME_EXACT || requirements.scheme != SCHEME_EXACT {
        return Err(invalid(
            ErrorReason::InvalidExactEvmScheme,
            format!(
                "scheme must be exact, got {:?} and {:?}",
                payload.accepted.scheme, requirements.scheme
            ),
        ));
    }
    let Some(names) = requirements.domain_names() else {
        return Err(invalid(
            ErrorReason::InvalidExactEvmMissingEip712Domain,
            "requirements.extra must carry the token's EIP-712 name and version".into(),
        ));
    };
    if payload.accepted.network != requirements.network {
        return Err(invalid(
            ErrorReason::InvalidExactEvmNetworkMismatch,
            format!(
                "payment is for {:?}, requirements are for {:?}",
                payload.accepted.network, requirements.network
            ),
        ));
    }
    let network = Network::parse_caip2(&requirements.network).ok();
    let Some((network, chain_id)) =
        network.and_then(|network| network.evm_chain_id().map(|id| (network, id)))
    else {
        return Err(invalid(
            ErrorReason::InvalidNetwork,
            format!("{:?} is not an EVM network", requirements.network),
        ));
    };
    let Some(asset) = parse_address(&requirements.asset) else {
        return Err(invalid(
            ErrorReason::InvalidPaymentRequirements,
            format!("asset {:?} is not a token address", requirements.asset),
        ));
    };
    let Some(pay_to) = parse_address(&requirements.pay_to) else {
        return Err(invalid(
            ErrorReason::InvalidPaymentRequirements,
            format!("payTo {:?} is not an address", requirements.pay_to),
        ));
    };
    if auth.to != pay_to {
        return Err(invalid(
            ErrorReason::InvalidExactEvmRecipientMismatch,
            format!("authorization pays {}, requirements ask for {pay_to}", auth.to),
        ));
    }
    let now = U256::from(now_unix_seconds);
    let earliest_valid_before = now.saturating_add(U256::from(VALID_BEFORE_GRACE_SECONDS));
    if auth.valid_before < earliest_valid_before {
        return Err(invalid(
            ErrorReason::InvalidExactEvmPayloadAuthorizationValidBefore,
            format!(
                "validBefore {} must be at least {earliest_valid_before} (now + {VALID_BEFORE_GRACE_SECONDS} s)",
                auth.valid_before
            ),
        ));
    }
    if auth.valid_after > now {
        return Err(invalid(
            ErrorReason::InvalidExactEvmPayloadAuthorizationValidAfter,
            format!("validAfter {} is after now ({now})", auth.valid_after),
        ));
    }
    let amount = parse_u256(&requirements.amount)
        .filter(|_| requirements.amount.bytes().all(|b| b.is_ascii_digit()));
    let Some(amount) = amount else {
        return Err(invalid(
            ErrorReason::InvalidExactEvmRequiredAmount,
            format!("required amount {:?} is not an atomic-unit integer", requirements.amount),
        ));
    };
    if auth.value != amount {
        return Err(invalid(
            ErrorReason::InvalidExactEvmPayloadAuthorizationValueMismatch,
            format!("authorization value {} is not the required amount {amount}", auth.value),
        ));
    }
    Ok(CheckedExactEvm {
        network,
        domain: TokenDomain {
            name: names.name,
            version: names.version,
            chain_id,
            verifying_contract: asset,
        },
        amount,
        pay_to,
        authorization: auth,
        signature: evm_payload.signature,
    })
}

/// What the signature alone says about a checked payment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureCheck {
    /// A 65-byte ECDSA signature by `from` itself: valid for an externally owned account.
    ValidEoa,
    /// A 65-byte signature that does not recover to `from` (or is malformed): invalid unless
    /// `from` is a contract wallet that accepts it (EIP-1271).
    NotByPayer,
    /// Not 65 bytes: only a smart wallet (EIP-1271 or ERC-6492) can have made it.
    SmartWallet,
}

/// Checks the signature of a payment without touching the chain.
pub fn check_eoa_signature(checked: &CheckedExactEvm) -> SignatureCheck {
    if checked.signature.len() != 65 {
        return SignatureCheck::SmartWallet;
    }
    let digest = checked.authorization.signing_hash(&checked.domain);
    match EcdsaSignature::from_bytes(&checked.signature).and_then(|sig| sig.recover(&digest)) {
        Ok(signer) if signer == checked.authorization.from => SignatureCheck::ValidEoa,
        _ => SignatureCheck::NotByPayer,
    }
}

#[cfg(test)]
mod tests {
    use alloy_primitives::{B256, address};
    use alloy_signer_local::PrivateKeySigner;
    use serde_json::json;

    use super::*;
    use crate::payload::Eip3009Payload;
    use crate::v2::JsonObject;

    const NOW: u64 = 1_750_000_000;
    const PAY_TO: Address = address!("0x209693Bc6afc0C5328bA36FaF03C514EF312287C");
    const ASSET: Address = address!("0x036CbD53842c5426634e7929541eC2318f3dCF7e");

    fn requirements() -> PaymentRequirements {
        serde_json::from_value(json!({
            "scheme": "exact", "network": "eip155:84532", "amount": "10000",
            "asset": ASSET.to_checksum(None), "payTo": PAY_TO.to_checksum(None),
            "maxTimeoutSeconds": 60, "extra": {"name": "USDC", "version": "2"}
        }))
        .unwrap()
    }

    fn signed(
        signer: &PrivateKeySigner,
        edit: impl FnOnce(&mut Eip3009Authorization),
    ) -> PaymentPayload {
        let mut authorization = Eip3009Authorization {
            from: signer.address(),
            to: PAY_TO,
            value: U256::from(10_000),
            valid_after: U256::ZERO,
            valid_before: U256::from(NOW + 60),
            nonce: B256::repeat_byte(7),
        };
        edit(&mut authorization);
        let domain = TokenDomain {
            name: "USDC".into(),
            version: "2".into(),
            chain_id: 84_532,
            verifying_contract: ASSET,
        };
        let signature = authorization.sign(signer, &domain).unwrap();
        let payload = ExactEvmPayload::Eip3009(Eip3009Payload {
            signature: Bytes::copy_from_slice(&signature.to_bytes()),
            authorization,
        });
        PaymentPayload {
            x402_version: 2,
            resource: None,
            accepted: requirements(),
            payload: payload.to_json(),
            extensions: None,
            other: JsonObject::new(),
        }
    }

    fn reason_of(payload: &PaymentPayload, requirements: &PaymentRequirements) -> ErrorReason {
        check_exact_evm(payload, requirements, NOW).unwrap_err().reason
    }

    #[test]
    fn a_good_payment_passes_and_its_signature_is_the_payers() {
        let signer = PrivateKeySigner::random();
        let checked = check_exact_evm(&signed(&signer, |_| {}), &requirements(), NOW).unwrap();
        assert_eq!(checked.payer(), signer.address());
        assert_eq!(checked.amount, U256::from(10_000));
        assert_eq!(checked.asset(), ASSET);
        assert_eq!(check_eoa_signature(&checked), SignatureCheck::ValidEoa);
    }

    #[test]
    fn each_rule_answers_its_reason() {
        let signer = PrivateKeySigner::random();
        let good = signed(&signer, |_| {});

        let mut wrong_scheme = requirements();
        wrong_scheme.scheme = "upto".into();
        assert_eq!(reason_of(&good, &wrong_scheme), ErrorReason::InvalidExactEvmScheme);

        let mut no_domain = requirements();
        no_domain.extra = Some(serde_json::from_value(json!({"name": "USDC"})).unwrap());
        assert_eq!(reason_of(&good, &no_domain), ErrorReason::InvalidExactEvmMissingEip712Domain);

        let mut other_network = good;
        other_network.accepted.network = "eip155:8453".into();
        assert_eq!(
            reason_of(&other_network, &requirements()),
            ErrorReason::InvalidExactEvmNetworkMismatch
        );

        let elsewhere = signed(&signer, |auth| auth.to = Address::repeat_byte(1));
        assert_eq!(
            reason_of(&elsewhere, &requirements()),
            ErrorReason::InvalidExactEvmRecipientMismatch
        );

        let expiring = signed(&signer, |auth| auth.valid_before = U256::from(NOW + 5));
        assert_eq!(
            reason_of(&expiring, &requirements()),
            ErrorReason::InvalidExactEvmPayloadAuthorizationValidBefore
        );
        let just_in_time = signed(&signer, |auth| auth.valid_before = U256::from(NOW + 6));
        assert!(check_exact_evm(&just_in_time, &requirements(), NOW).is_ok());

        let early = signed(&signer, |auth| auth.valid_after = U256::from(NOW + 1));
        assert_eq!(
            reason_of(&early, &requirements()),
            ErrorReason::InvalidExactEvmPayloadAuthorizationValidAfter
        );
        let starting_now = signed(&signer, |auth| auth.valid_after = U256::from(NOW));
        assert!(check_exact_evm(&starting_now, &requirements(), NOW).is_ok());

        for value in [9_999_u64, 10_001] {
            let wrong_value = signed(&signer, |auth| auth.value = U256::from(value));
            assert_eq!(
                reason_of(&wrong_value, &requirements()),
                ErrorReason::InvalidExactEvmPayloadAuthorizationValueMismatch
            );
        }
    }

    #[test]
    fn signatures_by_someone_else_or_of_other_lengths_are_flagged() {
        let signer = PrivateKeySigner::random();
        let mut forged = signed(&signer, |_| {});
        let mut object = forged.payload.clone();
        object["authorization"]["from"] = json!(Address::repeat_byte(9).to_checksum(None));
        forged.payload = object;
        let checked = check_exact_evm(&forged, &requirements(), NOW).unwrap();
        assert_eq!(check_eoa_signature(&checked), SignatureCheck::NotByPayer);

        let mut long = signed(&signer, |_| {});
        long.payload["signature"] = json!(format!("0x{}", "ab".repeat(100)));
        let checked = check_exact_evm(&long, &requirements(), NOW).unwrap();
        assert_eq!(check_eoa_signature(&checked), SignatureCheck::SmartWallet);
    }

    #[test]
    fn unreadable_payloads_have_reasons_too() {
        let signer = PrivateKeySigner::random();
        let mut empty = signed(&signer, |_| {});
        empty.payload = JsonObject::new();
        assert_eq!(reason_of(&empty, &requirements()), ErrorReason::UnsupportedPayloadType);
        let mut broken = signed(&signer, |_| {});
        broken.payload["authorization"]["value"] = json!("ten");
        assert_eq!(reason_of(&broken, &requirements()), ErrorReason::InvalidExactEvmPayload);
    }
}
