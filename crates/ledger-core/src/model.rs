//! Accounts, transfers and the rules that move money between them.
//!
//! An [`Account`] keeps four counters, as TigerBeetle does: pending and posted debits, pending and
//! posted credits. Balances are derived: a wallet's available balance is
//! `credits_posted - debits_posted - debits_pending`, and what is held on it is its
//! `debits_pending`. A [`Constraint`] says which side may not exceed the other (a wallet's
//! debits, posted plus pending, may not exceed its posted credits).
//!
//! A transfer is one or more [`Leg`]s (debit one account, credit another, an amount), applied
//! atomically by [`apply`] in one of four ways ([`Operation`]):
//!
//! | operation | effect on each leg's debit and credit account |
//! |---|---|
//! | `Post` | posted += amount |
//! | `Hold` | pending += amount |
//! | `PostPending` | pending -= held amount; posted += the posted amount (at most the held one) |
//! | `VoidPending` | pending -= held amount |
//!
//! Every change is also returned as an [`Entry`] (for the immutable entries table), with the
//! account's counters after it and the account's new version.

use std::collections::BTreeMap;

use awx_types::{Amount, AmountError};
use serde::{Deserialize, Serialize};

/// The most legs one transfer may have.
pub const LEGS_MAX: usize = 16;

/// An account's identity (the service stores it as a UUID).
pub type AccountKey = u128;

/// An account's four counters, in the asset's atomic units.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Balances {
    /// Debits reserved by holds.
    pub debits_pending: Amount,
    /// Debits done.
    pub debits_posted: Amount,
    /// Credits reserved by holds.
    pub credits_pending: Amount,
    /// Credits done.
    pub credits_posted: Amount,
}

impl Balances {
    /// For a credit-normal account (a wallet): posted credits minus posted and pending debits,
    /// or `None` when negative.
    pub fn available_credit(&self) -> Option<Amount> {
        self.credits_posted
            .checked_sub(self.debits_posted)
            .ok()?
            .checked_sub(self.debits_pending)
            .ok()
    }
}

/// Which side of an account may not exceed the other.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Constraint {
    /// None: the account may go either way (the on-chain mirror, clearing).
    #[default]
    None,
    /// Posted plus pending debits may not exceed posted credits (wallets, payables).
    DebitsMustNotExceedCredits,
    /// Posted plus pending credits may not exceed posted debits.
    CreditsMustNotExceedDebits,
}

impl Constraint {
    fn holds(self, balances: &Balances) -> Result<bool, AmountError> {
        Ok(match self {
            Self::None => true,
            Self::DebitsMustNotExceedCredits => {
                balances.debits_posted.checked_add(balances.debits_pending)?
                    <= balances.credits_posted
            }
            Self::CreditsMustNotExceedDebits => {
                balances.credits_posted.checked_add(balances.credits_pending)?
                    <= balances.debits_posted
            }
        })
    }
}

/// An account as the model needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// Its identity.
    pub key: AccountKey,
    /// The asset it counts (chain and token): legs only join accounts of one asset.
    pub asset: String,
    /// Its constraint.
    pub constraint: Constraint,
    /// Its counters.
    pub balances: Balances,
    /// Bumped by every entry.
    pub version: u64,
}

/// One movement: debit one account, credit another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Leg {
    /// The account debited.
    pub debit: AccountKey,
    /// The account credited.
    pub credit: AccountKey,
    /// The amount.
    pub amount: Amount,
}

/// How a transfer applies its legs.
#[derive(Debug, Clone, Copy)]
pub enum Operation<'a> {
    /// Single-phase: posted at once.
    Post(&'a [Leg]),
    /// The first phase: reserved as pending.
    Hold(&'a [Leg]),
    /// Posts a hold: `post[i]` of `held[i].amount` (at most it; the rest is released).
    PostPending {
        /// The hold's legs.
        held: &'a [Leg],
        /// How much of each leg to post.
        post: &'a [Amount],
    },
    /// Releases a hold entirely.
    VoidPending(&'a [Leg]),
}

/// Which side of a leg an entry records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Side {
    /// The debited account.
    Debit,
    /// The credited account.
    Credit,
}

/// One change to one account, as recorded in the entries table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The account changed.
    pub account: AccountKey,
    /// The leg's index in its transfer.
    pub leg: usize,
    /// Which side of the leg.
    pub side: Side,
    /// Added to the side's pending counter.
    pub pending_added: Amount,
    /// Removed from the side's pending counter.
    pub pending_removed: Amount,
    /// Added to the side's posted counter.
    pub posted_added: Amount,
    /// The account's counters after this change.
    pub after: Balances,
    /// The account's version after this change.
    pub version: u64,
}

/// Why a transfer was refused (nothing was applied).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LedgerError {
    /// A transfer needs at least one leg.
    #[error("a transfer needs at least one leg")]
    NoLegs,
    /// Too many legs.
    #[error("a transfer has at most {LEGS_MAX} legs")]
    TooManyLegs,
    /// A leg of a single-phase transfer or hold moves nothing.
    #[error("leg {leg} has a zero amount")]
    ZeroAmount {
        /// The leg.
        leg: usize,
    },
    /// A leg debits and credits the same account.
    #[error("leg {leg} debits and credits the same account")]
    SameAccount {
        /// The leg.
        leg: usize,
    },
    /// An account of a leg is not among those given.
    #[error("account {account:#x} is unknown")]
    UnknownAccount {
        /// The account.
        account: AccountKey,
    },
    /// A leg joins accounts of different assets.
    #[error("leg {leg} joins accounts of different assets")]
    AssetMismatch {
        /// The leg.
        leg: usize,
    },
    /// The transfer would take an account's debits past its credits (insufficient funds).
    #[error("account {account:#x} would have more debits than credits (insufficient funds)")]
    InsufficientFunds {
        /// The account.
        account: AccountKey,
    },
    /// The transfer would take an account's credits past its debits.
    #[error("account {account:#x} would have more credits than debits")]
    ExceedsDebits {
        /// The account.
        account: AccountKey,
    },
    /// Posting more than was held, or a post list that does not match the hold's legs.
    #[error("leg {leg}: cannot post more than was held")]
    PostExceedsHold {
        /// The leg.
        leg: usize,
    },
    /// A counter would overflow or go below zero (a hold released twice, say).
    #[error("a counter of account {account:#x} would overflow or go negative")]
    Counter {
        /// The account.
        account: AccountKey,
    },
}

/// How one leg changes one side's counters.
#[derive(Debug, Clone, Copy)]
struct Change {
    pending_added: Amount,
    pending_removed: Amount,
    posted_added: Amount,
}

fn change_side(balances: &mut Balances, side: Side, change: Change) -> Result<(), AmountError> {
    let (pending, posted) = match side {
        Side::Debit => (&mut balances.debits_pending, &mut balances.debits_posted),
        Side::Credit => (&mut balances.credits_pending, &mut balances.credits_posted),
    };
    *pending = pending.checked_add(change.pending_added)?.checked_sub(change.pending_removed)?;
    *posted = posted.checked_add(change.posted_added)?;
    Ok(())
}

fn check_shape(legs: &[Leg], zero_allowed: bool) -> Result<(), LedgerError> {
    if legs.is_empty() {
        return Err(LedgerError::NoLegs);
    }
    if legs.len() > LEGS_MAX {
        return Err(LedgerError::TooManyLegs);
    }
    for (index, leg) in legs.iter().enumerate() {
        if leg.debit == leg.credit {
            return Err(LedgerError::SameAccount { leg: index });
        }
        if !zero_allowed && leg.amount.is_zero() {
            return Err(LedgerError::ZeroAmount { leg: index });
        }
    }
    Ok(())
}

/// Applies `operation` to `accounts`, which must hold every account its legs name. Returns the
/// entries to record, in leg order (debit side, then credit side). On any error nothing changes.
pub fn apply(
    accounts: &mut BTreeMap<AccountKey, Account>,
    operation: Operation<'_>,
) -> Result<Vec<Entry>, LedgerError> {
    let (legs, changes): (&[Leg], Vec<Change>) = match operation {
        Operation::Post(legs) => {
            check_shape(legs, false)?;
            let changes = legs
                .iter()
                .map(|leg| Change {
                    pending_added: Amount::ZERO,
                    pending_removed: Amount::ZERO,
                    posted_added: leg.amount,
                })
                .collect();
            (legs, changes)
        }
        Operation::Hold(legs) => {
            check_shape(legs, false)?;
            let changes = legs
                .iter()
                .map(|leg| Change {
                    pending_added: leg.amount,
                    pending_removed: Amount::ZERO,
                    posted_added: Amount::ZERO,
                })
                .collect();
            (legs, changes)
        }
        Operation::PostPending { held, post } => {
            check_shape(held, true)?;
            if post.len() != held.len() {
                return Err(LedgerError::PostExceedsHold { leg: held.len().min(post.len()) });
            }
            let mut changes = Vec::with_capacity(held.len());
            for (index, (leg, &posted)) in held.iter().zip(post).enumerate() {
                if posted > leg.amount {
                    return Err(LedgerError::PostExceedsHold { leg: index });
                }
                changes.push(Change {
                    pending_added: Amount::ZERO,
                    pending_removed: leg.amount,
                    posted_added: posted,
                });
            }
            (held, changes)
        }
        Operation::VoidPending(held) => {
            check_shape(held, true)?;
            let changes = held
                .iter()
                .map(|leg| Change {
                    pending_added: Amount::ZERO,
                    pending_removed: leg.amount,
                    posted_added: Amount::ZERO,
                })
                .collect();
            (held, changes)
        }
    };

    // Work on copies of the touched accounts, and write them back only if everything holds.
    let mut staged: BTreeMap<AccountKey, Account> = BTreeMap::new();
    for leg in legs {
        for key in [leg.debit, leg.credit] {
            if let std::collections::btree_map::Entry::Vacant(slot) = staged.entry(key) {
                let account =
                    accounts.get(&key).ok_or(LedgerError::UnknownAccount { account: key })?;
                slot.insert(account.clone());
            }
        }
    }
    let mut entries = Vec::with_capacity(legs.len().saturating_mul(2));
    for (index, (leg, change)) in legs.iter().zip(changes).enumerate() {
        let debit_asset = &staged
            .get(&leg.debit)
            .ok_or(LedgerError::UnknownAccount { account: leg.debit })?
            .asset;
        let credit_asset = &staged
            .get(&leg.credit)
            .ok_or(LedgerError::UnknownAccount { account: leg.credit })?
            .asset;
        if debit_asset != credit_asset {
            return Err(LedgerError::AssetMismatch { leg: index });
        }
        for (key, side) in [(leg.debit, Side::Debit), (leg.credit, Side::Credit)] {
            let account =
                staged.get_mut(&key).ok_or(LedgerError::UnknownAccount { account: key })?;
            change_side(&mut account.balances, side, change)
                .map_err(|_| LedgerError::Counter { account: key })?;
            account.version =
                account.version.checked_add(1).ok_or(LedgerError::Counter { account: key })?;
            entries.push(Entry {
                account: key,
                leg: index,
                side,
                pending_added: change.pending_added,
                pending_removed: change.pending_removed,
                posted_added: change.posted_added,
                after: account.balances,
                version: account.version,
            });
        }
    }
    for account in staged.values() {
        let ok = account
            .constraint
            .holds(&account.balances)
            .map_err(|_| LedgerError::Counter { account: account.key })?;
        if !ok {
            return Err(match account.constraint {
                Constraint::CreditsMustNotExceedDebits => {
                    LedgerError::ExceedsDebits { account: account.key }
                }
                Constraint::None | Constraint::DebitsMustNotExceedCredits => {
                    LedgerError::InsufficientFunds { account: account.key }
                }
            });
        }
    }
    accounts.extend(staged);
    Ok(entries)
}

#[cfg(test)]
mod tests;
