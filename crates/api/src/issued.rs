//! The authorizations our agents were issued, and the verify of a payment carrying one.
//!
//! The policy service is the truth about them (`policy.payments`). It also broadcasts each one
//! as it signs it, and each capture, as an [`IssuedNotice`] (a bus *notice*: to every settlement
//! replica, best effort), so a replica can verify our agents' payments from memory. What a
//! replica has not heard of, it asks the policy service about ([`crate::policy::OwnVerify`]),
//! so a lost notice costs a round trip, never a wrong answer about an authorization it never
//! saw. Both answer with [`verify_issued`], so a verify says the same from either.

use awx_types::LedgerId;
use awx_x402::{
    Address, B256, Bytes, Eip3009Authorization, Eip3009Payload, ErrorReason, PaymentPayload,
    PaymentRequirements, VerifyResponse,
};
use serde::{Deserialize, Serialize};

/// An authorization the signer made for one of our agents' payments: exactly what the agent
/// was given.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssuedAuthorization {
    /// The payment (its ledger hold).
    pub payment_id: LedgerId,
    /// The CAIP-2 network.
    pub network: String,
    /// The token.
    pub token: Address,
    /// The signed message (`from` is the agent's wallet).
    pub authorization: Eip3009Authorization,
    /// The signature the signer made.
    pub signature: Bytes,
}

/// Broadcast to every settlement replica (topic `own.authorizations`); see the module docs.
#[allow(
    clippy::large_enum_variant,
    reason = "a notice is decoded once and moved once; boxing would only add an allocation"
)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum IssuedNotice {
    /// An authorization was signed for a held payment.
    Issued(IssuedAuthorization),
    /// The payment of (`payer`, `nonce`) was captured: its authorization serves no other request.
    Captured {
        /// The agent's wallet.
        payer: Address,
        /// The authorization's nonce.
        nonce: B256,
        /// The authorization's `validBefore` (Unix seconds): until when this is worth keeping.
        valid_before_unix: u64,
    },
}

impl awx_bus::Notice for IssuedNotice {
    const TOPIC: &'static str = "own.authorizations";
}

/// Where the payment of an issued authorization stands, as far as a verify cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IssuedState<'a> {
    /// Held: the payment can be settled.
    Held,
    /// Captured or settled: the authorization was used.
    Used,
    /// Expired unused: its funds were released.
    Expired,
    /// Anything else (named): no funds are held for it.
    Other(&'a str),
}

/// The verify answer for `payload` (whose EIP-3009 part is `eip3009`) against `requirements`,
/// when its payer's authorization for that nonce was `issued` and its payment is `state`, at
/// `now_unix` (seconds): the protocol's checks, then that the payload is exactly what was issued
/// (every field and the signature bytes), then the network and token, then the state.
pub fn verify_issued(
    payload: &PaymentPayload,
    requirements: &PaymentRequirements,
    eip3009: &Eip3009Payload,
    issued: &IssuedAuthorization,
    state: IssuedState<'_>,
    now_unix: u64,
) -> VerifyResponse {
    let payer = issued.authorization.from.to_checksum(None);
    let invalid =
        |reason, message: String| VerifyResponse::invalid(reason, message, Some(payer.clone()));
    if let Err(refused) = awx_x402::check_exact_evm(payload, requirements, now_unix) {
        return invalid(refused.reason, refused.message);
    }
    if eip3009.authorization != issued.authorization || eip3009.signature != issued.signature {
        return invalid(
            ErrorReason::InvalidExactEvmSignature,
            "this authorization is not the one awx issued for the payer's nonce".into(),
        );
    }
    if requirements.network != issued.network
        || requirements.asset.to_lowercase() != issued.token.to_string().to_lowercase()
    {
        return invalid(
            ErrorReason::InvalidExactEvmNetworkMismatch,
            "the requirements name another network or token than the payment".into(),
        );
    }
    match state {
        IssuedState::Held => VerifyResponse::valid(payer),
        IssuedState::Used => invalid(
            ErrorReason::InvalidExactEvmNonceAlreadyUsed,
            "this payment was already settled".into(),
        ),
        IssuedState::Expired => invalid(
            ErrorReason::InvalidExactEvmPayloadAuthorizationValidBefore,
            "this authorization expired and its funds were released".into(),
        ),
        IssuedState::Other(state) => invalid(
            ErrorReason::InvalidTransactionState,
            format!("this payment is {state} and holds no funds"),
        ),
    }
}
