//! The authorizations our agents were issued, in this replica's memory, so their payments are
//! verified without asking the policy service and without reading Postgres.
//!
//! The policy service announces each authorization as it is signed, and captures are announced
//! by the settlement replica that learns of them (from the settle answer, or from the
//! `payment.captured` event when that answer was lost), on the bus notice topic
//! `own.authorizations` ([`IssuedNotice`]), which every replica reads. A verify whose
//! (payer, nonce) is remembered is answered here with the policy service's own check
//! ([`verify_issued`]); one that is not is asked of the policy service as before. An entry is
//! kept until its authorization's `validBefore` has passed (after which no verify can succeed),
//! and at most [`CAPACITY`] are kept (past that, new ones are asked about).
//!
//! What a lost notice can do: a replica that missed an announcement asks the policy service (a
//! round trip, the same answer). A replica that missed a capture's announcement (the replica
//! that learned of it stopped before sending it, or Redis lost it) calls that payment's verify
//! valid until `validBefore`, as a facilitator does when the chain has not yet mined a transfer
//! made elsewhere; settling it still asks the policy service, which answers it as the replay it
//! is.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use awx_api::issued::{IssuedAuthorization, IssuedNotice, IssuedState, verify_issued};
use awx_x402::{
    Address, B256, Eip3009Payload, PaymentPayload, PaymentRequirements, VerifyResponse,
};

/// The most entries one replica keeps (about 300 bytes each).
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

/// This replica's memory of issued authorizations.
#[derive(Debug, Default)]
pub struct Issued {
    inner: Mutex<Inner>,
}

impl Issued {
    /// Applies one notice.
    pub fn apply(&self, notice: IssuedNotice, now_unix: u64) {
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
                    None if full => {
                        metrics::counter!("settlement_issued_memory_full_total").increment(1);
                    }
                    None => {
                        inner.entries.insert(
                            key,
                            Entry { issued: Some(issued), captured: false, valid_before_unix },
                        );
                    }
                }
            }
            IssuedNotice::Captured { payer, nonce, valid_before_unix } => {
                self.captured(payer, nonce, valid_before_unix, now_unix);
            }
        }
    }

    /// Remembers that the payment of (`payer`, `nonce`) was captured.
    pub fn captured(&self, payer: Address, nonce: B256, valid_before_unix: u64, now_unix: u64) {
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

    /// The verify answer from memory, or `None` when this authorization is not remembered.
    pub fn verify(
        &self,
        payload: &PaymentPayload,
        requirements: &PaymentRequirements,
        eip3009: &Eip3009Payload,
        now_unix: u64,
    ) -> Option<VerifyResponse> {
        let key = (eip3009.authorization.from, eip3009.authorization.nonce);
        let inner = self.lock();
        let entry = inner.entries.get(&key)?;
        let issued = entry.issued.as_ref()?;
        let state = if entry.captured { IssuedState::Used } else { IssuedState::Held };
        Some(verify_issued(payload, requirements, eip3009, issued, state, now_unix))
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
    use awx_types::LedgerId;
    use awx_x402::{Bytes, Eip3009Authorization, U256};

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
        let memory = Issued::default();
        let old = issued(100);
        memory.apply(IssuedNotice::Issued(old.clone()), 50);
        // A capture heard of before its authorization: the authorization then arrives captured.
        let fresh = issued(10_000);
        let (payer, nonce) = (fresh.authorization.from, fresh.authorization.nonce);
        memory.captured(payer, nonce, 10_000, 50);
        memory.apply(IssuedNotice::Issued(fresh), 50);
        assert_eq!(memory.len(), 2);
        {
            let inner = memory.lock();
            assert!(inner.entries[&(payer, nonce)].captured);
        }
        // Past the first one's validBefore, a prune round drops it and keeps the other.
        for _ in 0..PRUNE_EVERY {
            memory.captured(payer, nonce, 10_000, 200);
        }
        assert_eq!(memory.len(), 1);
        assert!(memory.lock().entries.contains_key(&(payer, nonce)));
        assert!(
            !memory.lock().entries.contains_key(&(old.authorization.from, old.authorization.nonce))
        );
    }
}
