//! The authorizations our agents were issued, and the verify of a payment carrying one.
//!
//! The policy service is the truth about them (`policy.payments`). It broadcasts each one as it
//! signs it, and the settlement replica that learns of a capture broadcasts the capture, as an
//! [`IssuedNotice`] (a bus *notice*: to every listening process, best effort), so the gateways
//! and the settlement replicas verify our agents' payments from an [`IssuedMemory`]. What a
//! process has not heard of goes on as before (the gateway asks the settlement service, which
//! asks the policy service, [`crate::policy::OwnVerify`]), so a lost notice costs round trips,
//! never a wrong answer about an authorization nobody heard of. Every answer comes from
//! [`verify_issued`], so a verify says the same wherever it is answered.
//!
//! What a lost capture notice can do: a process that missed it calls that payment's verify
//! valid until its `validBefore`, as a chain facilitator does before a transfer made elsewhere
//! is mined; settling it still asks the policy service, which answers it as the replay it is.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

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

/// The most entries one process keeps (about 300 bytes each).
pub const CAPACITY: usize = 1_000_000;

/// How often, in insertions, expired entries are dropped.
const PRUNE_EVERY: u64 = 4_096;

#[derive(Debug)]
struct Entry {
    /// `None` when the capture was heard of before the authorization (then nothing is answered
    /// from memory for it).
    issued: Option<IssuedAuthorization>,
    captured: bool,
    valid_before_unix: u64,
}

#[derive(Debug, Default)]
struct Inner {
    entries: HashMap<(Address, B256), Entry>,
    inserted: u64,
}

/// One process's memory of the authorizations our agents were issued, filled from
/// [`IssuedNotice`]s: a verify of a remembered (payer, nonce) is answered with [`verify_issued`]
/// and anything else is `None` (ask the policy service). An entry is kept until its
/// authorization's `validBefore` has passed (no verify can succeed after it), and at most
/// [`CAPACITY`] are kept (past that, new ones are not remembered).
#[derive(Debug, Default)]
pub struct IssuedMemory {
    inner: Mutex<Inner>,
}

impl IssuedMemory {
    /// Applies one notice; `false` when an authorization was not remembered because the memory
    /// is full.
    pub fn apply(&self, notice: IssuedNotice) -> bool {
        self.apply_at(notice, now_unix())
    }

    fn apply_at(&self, notice: IssuedNotice, now_unix: u64) -> bool {
        match notice {
            IssuedNotice::Issued(issued) => {
                let auth = &issued.authorization;
                let valid_before_unix = u64::try_from(auth.valid_before).unwrap_or(u64::MAX);
                let key = (auth.from, auth.nonce);
                let mut inner = self.lock();
                inner.prune(now_unix);
                let full = inner.entries.len() >= CAPACITY;
                match inner.entries.get_mut(&key) {
                    Some(entry) => entry.issued = Some(issued),
                    None if full => return false,
                    None => {
                        inner.entries.insert(
                            key,
                            Entry { issued: Some(issued), captured: false, valid_before_unix },
                        );
                    }
                }
            }
            IssuedNotice::Captured { payer, nonce, valid_before_unix } => {
                self.captured_at(payer, nonce, valid_before_unix, now_unix);
            }
        }
        true
    }

    /// Remembers that the payment of (`payer`, `nonce`) was captured.
    pub fn captured(&self, payer: Address, nonce: B256, valid_before_unix: u64) {
        self.captured_at(payer, nonce, valid_before_unix, now_unix());
    }

    fn captured_at(&self, payer: Address, nonce: B256, valid_before_unix: u64, now_unix: u64) {
        let mut inner = self.lock();
        inner.prune(now_unix);
        if let Some(entry) = inner.entries.get_mut(&(payer, nonce)) {
            entry.captured = true;
        } else if inner.entries.len() < CAPACITY {
            inner
                .entries
                .insert((payer, nonce), Entry { issued: None, captured: true, valid_before_unix });
        }
    }

    /// The verify answer for a facilitator request from memory, or `None` when it carries no
    /// EIP-3009 authorization this memory has.
    pub fn verify_request(&self, request: &awx_x402::NormalizedRequest) -> Option<VerifyResponse> {
        let Ok(awx_x402::ExactEvmPayload::Eip3009(eip3009)) =
            awx_x402::ExactEvmPayload::from_json(&request.payload.payload)
        else {
            return None;
        };
        self.verify(&request.payload, &request.requirements, &eip3009)
    }

    /// The verify answer from memory, or `None` when this authorization is not remembered.
    pub fn verify(
        &self,
        payload: &PaymentPayload,
        requirements: &PaymentRequirements,
        eip3009: &Eip3009Payload,
    ) -> Option<VerifyResponse> {
        let key = (eip3009.authorization.from, eip3009.authorization.nonce);
        let inner = self.lock();
        let entry = inner.entries.get(&key)?;
        let issued = entry.issued.as_ref()?;
        let state = if entry.captured { IssuedState::Used } else { IssuedState::Held };
        Some(verify_issued(payload, requirements, eip3009, issued, state, now_unix()))
    }

    /// How many entries are kept.
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    /// Whether none are.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Seconds since the Unix epoch, on this host's clock.
fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

impl Inner {
    /// Every [`PRUNE_EVERY`] insertions, drops the entries whose `validBefore` has passed.
    fn prune(&mut self, now_unix: u64) {
        self.inserted = self.inserted.wrapping_add(1);
        if self.inserted.is_multiple_of(PRUNE_EVERY) || self.entries.len() >= CAPACITY {
            self.entries.retain(|_, entry| entry.valid_before_unix >= now_unix);
        }
    }
}

#[cfg(test)]
mod tests {
    use awx_x402::U256;

    use super::*;

    fn issued(valid_before: u64) -> IssuedAuthorization {
        IssuedAuthorization {
            payment_id: LedgerId::new(),
            network: "eip155:31337".into(),
            token: Address::repeat_byte(1),
            authorization: Eip3009Authorization {
                from: Address::repeat_byte(2),
                to: Address::repeat_byte(3),
                value: U256::from(10_000_u64),
                valid_after: U256::ZERO,
                valid_before: U256::from(valid_before),
                nonce: B256::random(),
            },
            signature: Bytes::from(vec![7_u8; 65]),
        }
    }

    #[test]
    fn expired_entries_are_dropped_and_a_capture_heard_first_is_kept() {
        let memory = IssuedMemory::default();
        let old = issued(100);
        memory.apply_at(IssuedNotice::Issued(old.clone()), 50);
        // A capture heard of before its authorization: the authorization then arrives captured.
        let fresh = issued(10_000);
        let (payer, nonce) = (fresh.authorization.from, fresh.authorization.nonce);
        memory.captured_at(payer, nonce, 10_000, 50);
        memory.apply_at(IssuedNotice::Issued(fresh), 50);
        assert_eq!(memory.len(), 2);
        {
            let inner = memory.lock();
            assert!(inner.entries[&(payer, nonce)].captured);
        }
        // Past the first one's validBefore, a prune round drops it and keeps the other.
        for _ in 0..PRUNE_EVERY {
            memory.captured_at(payer, nonce, 10_000, 200);
        }
        assert_eq!(memory.len(), 1);
        assert!(memory.lock().entries.contains_key(&(payer, nonce)));
        assert!(
            !memory.lock().entries.contains_key(&(old.authorization.from, old.authorization.nonce))
        );
    }
}
