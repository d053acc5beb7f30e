//! Table tests of the model, and a property test against a naive reference model that
//! recomputes every balance from the list of applied transfers.

#![allow(
    clippy::arithmetic_side_effects,
    reason = "the reference model uses plain integer arithmetic"
)]

use proptest::prelude::*;

use super::*;

const WALLET_A: AccountKey = 1;
const WALLET_B: AccountKey = 2;
const MIRROR: AccountKey = 3;
const PAYABLE: AccountKey = 4;
const FEES: AccountKey = 5;
const OTHER_ASSET: AccountKey = 6;

fn accounts() -> BTreeMap<AccountKey, Account> {
    let make = |key, asset: &str, constraint| {
        (
            key,
            Account {
                key,
                asset: asset.to_owned(),
                constraint,
                balances: Balances::default(),
                version: 0,
            },
        )
    };
    BTreeMap::from([
        make(WALLET_A, "usdc", Constraint::DebitsMustNotExceedCredits),
        make(WALLET_B, "usdc", Constraint::DebitsMustNotExceedCredits),
        make(MIRROR, "usdc", Constraint::None),
        make(PAYABLE, "usdc", Constraint::DebitsMustNotExceedCredits),
        make(FEES, "usdc", Constraint::None),
        make(OTHER_ASSET, "eurc", Constraint::None),
    ])
}

fn leg(debit: AccountKey, credit: AccountKey, amount: u128) -> Leg {
    Leg { debit, credit, amount: Amount::from_atomic(amount) }
}

fn atomic(amount: Amount) -> u128 {
    amount.atomic()
}

#[test]
fn a_hold_reserves_and_a_partial_post_releases_the_rest() {
    let mut accounts = accounts();
    apply(&mut accounts, Operation::Post(&[leg(MIRROR, WALLET_A, 1_000)])).unwrap();
    let hold = [leg(WALLET_A, PAYABLE, 100), leg(WALLET_A, FEES, 2)];
    let entries = apply(&mut accounts, Operation::Hold(&hold)).unwrap();
    assert_eq!(entries.len(), 4);
    let wallet = accounts[&WALLET_A].balances;
    assert_eq!(atomic(wallet.debits_pending), 102);
    assert_eq!(wallet.available_credit(), Some(Amount::from_atomic(898)));

    let post = [Amount::from_atomic(60), Amount::from_atomic(1)];
    apply(&mut accounts, Operation::PostPending { held: &hold, post: &post }).unwrap();
    let wallet = accounts[&WALLET_A].balances;
    assert_eq!(atomic(wallet.debits_pending), 0);
    assert_eq!(atomic(wallet.debits_posted), 61);
    assert_eq!(wallet.available_credit(), Some(Amount::from_atomic(939)));
    assert_eq!(atomic(accounts[&PAYABLE].balances.credits_posted), 60);
    assert_eq!(atomic(accounts[&FEES].balances.credits_posted), 1);
    assert_eq!(accounts[&WALLET_A].version, 1 + 2 + 2);
}

#[test]
fn an_overdraft_is_refused_and_changes_nothing() {
    let mut accounts = accounts();
    apply(&mut accounts, Operation::Post(&[leg(MIRROR, WALLET_A, 100)])).unwrap();
    let before = accounts.clone();
    let result = apply(
        &mut accounts,
        Operation::Post(&[leg(WALLET_A, PAYABLE, 60), leg(WALLET_A, FEES, 41)]),
    );
    assert_eq!(result, Err(LedgerError::InsufficientFunds { account: WALLET_A }));
    assert_eq!(accounts, before);
    // A hold counts against the balance too.
    apply(&mut accounts, Operation::Hold(&[leg(WALLET_A, PAYABLE, 70)])).unwrap();
    let result = apply(&mut accounts, Operation::Post(&[leg(WALLET_A, FEES, 31)]));
    assert_eq!(result, Err(LedgerError::InsufficientFunds { account: WALLET_A }));
}

#[test]
fn malformed_transfers_are_refused() {
    let mut accounts = accounts();
    let same = [leg(MIRROR, MIRROR, 1)];
    let zero = [leg(MIRROR, WALLET_A, 0)];
    let unknown = [leg(MIRROR, 99, 1)];
    let mixed = [leg(MIRROR, OTHER_ASSET, 1)];
    let cases: Vec<(Operation<'_>, LedgerError)> = vec![
        (Operation::Post(&[]), LedgerError::NoLegs),
        (Operation::Post(&same), LedgerError::SameAccount { leg: 0 }),
        (Operation::Hold(&zero), LedgerError::ZeroAmount { leg: 0 }),
        (Operation::Post(&unknown), LedgerError::UnknownAccount { account: 99 }),
        (Operation::Post(&mixed), LedgerError::AssetMismatch { leg: 0 }),
    ];
    for (operation, error) in cases {
        assert_eq!(apply(&mut accounts, operation), Err(error));
    }
    let many = vec![leg(MIRROR, WALLET_A, 1); LEGS_MAX + 1];
    assert_eq!(apply(&mut accounts, Operation::Post(&many)), Err(LedgerError::TooManyLegs));
    let hold = [leg(MIRROR, WALLET_A, 5)];
    apply(&mut accounts, Operation::Hold(&hold)).unwrap();
    let too_much = [Amount::from_atomic(6)];
    assert_eq!(
        apply(&mut accounts, Operation::PostPending { held: &hold, post: &too_much }),
        Err(LedgerError::PostExceedsHold { leg: 0 })
    );
    assert!(
        accounts.values().all(|account| account.key == MIRROR
            || account.key == WALLET_A
            || account.version == 0)
    );
}

#[test]
fn a_hold_cannot_be_released_twice() {
    let mut accounts = accounts();
    apply(&mut accounts, Operation::Post(&[leg(MIRROR, WALLET_A, 10)])).unwrap();
    let hold = [leg(WALLET_A, PAYABLE, 10)];
    apply(&mut accounts, Operation::Hold(&hold)).unwrap();
    apply(&mut accounts, Operation::VoidPending(&hold)).unwrap();
    // The service refuses a second resolution by status; the model refuses it by the counters.
    assert_eq!(
        apply(&mut accounts, Operation::VoidPending(&hold)),
        Err(LedgerError::Counter { account: WALLET_A })
    );
}

// ---------------------------------------------------------------- property test

/// A step of a random workload.
#[derive(Debug, Clone)]
enum Step {
    Post(Vec<(usize, usize, u128)>),
    Hold(Vec<(usize, usize, u128)>),
    PostPending { hold: usize, fractions: Vec<u8> },
    Void { hold: usize },
}

const KEYS: [AccountKey; 6] = [WALLET_A, WALLET_B, MIRROR, PAYABLE, FEES, OTHER_ASSET];

fn step() -> impl Strategy<Value = Step> {
    let legs = prop::collection::vec((0..KEYS.len(), 0..KEYS.len(), 0u128..400), 1..4);
    prop_oneof![
        // Deposits keep wallets funded, so spending is not always refused.
        (0..2usize, 1u128..500).prop_map(|(wallet, amount)| Step::Post(vec![(2, wallet, amount)])),
        legs.clone().prop_map(Step::Post),
        legs.prop_map(Step::Hold),
        (any::<prop::sample::Index>(), prop::collection::vec(0u8..=100, 1..4)).prop_map(
            |(index, fractions)| Step::PostPending { hold: index.index(1_000), fractions }
        ),
        any::<prop::sample::Index>().prop_map(|index| Step::Void { hold: index.index(1_000) }),
    ]
}

/// A transfer as the reference sees it: its legs and, per leg, (pending added, pending removed,
/// posted added).
type RefTransfer = (Vec<Leg>, Vec<(u128, u128, u128)>);

fn signed(value: u128) -> i128 {
    i128::try_from(value).unwrap()
}

/// The naive reference: balances are recomputed from every applied transfer.
#[derive(Default)]
struct Reference {
    applied: Vec<RefTransfer>,
}

impl Reference {
    /// Balances of `key` if `extra` were applied too: (debits_pending, debits_posted,
    /// credits_pending, credits_posted) as signed numbers.
    fn balances(&self, key: AccountKey, extra: Option<&RefTransfer>) -> [i128; 4] {
        let mut counters = [0i128; 4];
        for (legs, changes) in self.applied.iter().chain(extra) {
            for (leg, &(pending_added, pending_removed, posted_added)) in legs.iter().zip(changes) {
                let delta_pending = signed(pending_added) - signed(pending_removed);
                if leg.debit == key {
                    counters[0] += delta_pending;
                    counters[1] += signed(posted_added);
                }
                if leg.credit == key {
                    counters[2] += delta_pending;
                    counters[3] += signed(posted_added);
                }
            }
        }
        counters
    }

    /// Whether the reference accepts a transfer.
    fn accepts(
        &self,
        accounts: &BTreeMap<AccountKey, Account>,
        transfer: &RefTransfer,
        amounts_may_be_zero: bool,
    ) -> bool {
        let (legs, _) = transfer;
        if legs.is_empty() || legs.len() > LEGS_MAX {
            return false;
        }
        for leg in legs {
            if leg.debit == leg.credit || (!amounts_may_be_zero && leg.amount.is_zero()) {
                return false;
            }
            if accounts[&leg.debit].asset != accounts[&leg.credit].asset {
                return false;
            }
        }
        accounts.values().all(|account| {
            let [dp, dpo, cp, cpo] = self.balances(account.key, Some(transfer));
            dp >= 0
                && cp >= 0
                && match account.constraint {
                    Constraint::None => true,
                    Constraint::DebitsMustNotExceedCredits => dpo + dp <= cpo,
                    Constraint::CreditsMustNotExceedDebits => cpo + cp <= dpo,
                }
        })
    }
}

fn to_legs(raw: &[(usize, usize, u128)]) -> Vec<Leg> {
    raw.iter().map(|&(debit, credit, amount)| leg(KEYS[debit], KEYS[credit], amount)).collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, .. ProptestConfig::default() })]

    #[test]
    fn the_model_agrees_with_the_reference(steps in prop::collection::vec(step(), 1..60)) {
        let mut accounts = accounts();
        let mut reference = Reference::default();
        let mut open_holds: Vec<Vec<Leg>> = Vec::new();
        for step in steps {
            let before = accounts.clone();
            let (result, transfer, resolves, zero_ok) = match &step {
                Step::Post(raw) => {
                    let legs = to_legs(raw);
                    let changes = legs.iter().map(|l| (0, 0, l.amount.atomic())).collect();
                    (apply(&mut accounts, Operation::Post(&legs)), (legs, changes), None, false)
                }
                Step::Hold(raw) => {
                    let legs = to_legs(raw);
                    let changes = legs.iter().map(|l| (l.amount.atomic(), 0, 0)).collect();
                    (apply(&mut accounts, Operation::Hold(&legs)), (legs, changes), None, false)
                }
                Step::PostPending { hold, fractions } => {
                    if open_holds.is_empty() { continue; }
                    let index = hold % open_holds.len();
                    let held = open_holds[index].clone();
                    let post: Vec<Amount> = held
                        .iter()
                        .enumerate()
                        .map(|(i, l)| Amount::from_atomic(l.amount.atomic() * u128::from(fractions[i % fractions.len()]) / 100))
                        .collect();
                    let changes = held.iter().zip(&post).map(|(l, p)| (0, l.amount.atomic(), p.atomic())).collect();
                    (apply(&mut accounts, Operation::PostPending { held: &held, post: &post }), (held, changes), Some(index), true)
                }
                Step::Void { hold } => {
                    if open_holds.is_empty() { continue; }
                    let index = hold % open_holds.len();
                    let held = open_holds[index].clone();
                    let changes = held.iter().map(|l| (0, l.amount.atomic(), 0)).collect();
                    (apply(&mut accounts, Operation::VoidPending(&held)), (held, changes), Some(index), true)
                }
            };
            let expected = reference.accepts(&before, &transfer, zero_ok);
            prop_assert_eq!(result.is_ok(), expected, "step {:?} gave {:?}", step, result);
            match result {
                Ok(entries) => {
                    prop_assert_eq!(entries.len(), transfer.0.len() * 2);
                    if matches!(step, Step::Hold(_)) {
                        open_holds.push(transfer.0.clone());
                    }
                    if let Some(index) = resolves {
                        open_holds.remove(index);
                    }
                    reference.applied.push(transfer);
                }
                Err(_) => prop_assert_eq!(&accounts, &before, "a refused transfer changed nothing"),
            }
            // Every account's counters equal the reference's recomputation.
            for account in accounts.values() {
                let b = account.balances;
                let expected = reference.balances(account.key, None);
                prop_assert_eq!(
                    [signed(b.debits_pending.atomic()), signed(b.debits_posted.atomic()), signed(b.credits_pending.atomic()), signed(b.credits_posted.atomic())],
                    expected
                );
            }
            // Per asset: posted credits minus posted debits sum to zero, pending sides match.
            for asset in ["usdc", "eurc"] {
                let of_asset = accounts.values().filter(|a| a.asset == asset);
                let (mut net, mut pending) = (0i128, 0i128);
                for account in of_asset {
                    let b = account.balances;
                    net += signed(b.credits_posted.atomic()) - signed(b.debits_posted.atomic());
                    pending += signed(b.credits_pending.atomic()) - signed(b.debits_pending.atomic());
                }
                prop_assert_eq!(net, 0);
                prop_assert_eq!(pending, 0);
            }
            // No wallet is ever negative.
            for key in [WALLET_A, WALLET_B, PAYABLE] {
                prop_assert!(accounts[&key].balances.available_credit().is_some());
            }
        }
    }
}
