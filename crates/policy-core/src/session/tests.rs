//! Table tests of sessions, and a property test of reserve, commit and release against the
//! budget invariant.

#![allow(
    clippy::unwrap_used,
    clippy::arithmetic_side_effects,
    reason = "tests fail by panicking and the reference model uses plain integer arithmetic"
)]

use awx_x402::Address;
use proptest::prelude::*;

use super::*;

const BASE: &str = "eip155:8453";
const NOW: i64 = 1_700_000_000;

fn micros(atomic: u128) -> Amount {
    Amount::from_atomic(atomic)
}

fn session(budget: u128) -> Session {
    Session {
        budget: micros(budget),
        spent: Amount::ZERO,
        reserved: Amount::ZERO,
        expires_at_unix: NOW + 3600,
        revoked: false,
        chain: BASE.to_owned(),
        allowed_urls: Vec::new(),
    }
}

fn target() -> Url {
    Url::parse("https://api.example.com/v1/data").unwrap()
}

fn request(url: &Url, amount: u128) -> PaymentRequest<'_> {
    PaymentRequest { url, chain: BASE, payee: Address::repeat_byte(1), amount: micros(amount) }
}

fn rule_of(result: Result<(), Denial>) -> Option<Rule> {
    result.err().map(|denial| denial.rule)
}

#[test]
fn remaining_subtracts_spent_and_reserved_and_saturates() {
    let mut s = session(1_000_000);
    assert_eq!(s.remaining(), micros(1_000_000));
    s.spent = micros(300_000);
    s.reserved = micros(200_000);
    assert_eq!(s.remaining(), micros(500_000));
    s.reserved = micros(700_000);
    assert_eq!(s.remaining(), Amount::ZERO);
    s.reserved = micros(900_000);
    assert_eq!(s.remaining(), Amount::ZERO);
    s.spent = micros(2_000_000);
    s.reserved = Amount::ZERO;
    assert_eq!(s.remaining(), Amount::ZERO);
}

#[test]
fn status_order_and_boundaries() {
    let mut s = session(1_000_000);
    assert_eq!(s.status(NOW), SessionStatus::Active);
    assert_eq!(s.status(s.expires_at_unix - 1), SessionStatus::Active);
    assert_eq!(s.status(s.expires_at_unix), SessionStatus::Expired);
    s.reserved = micros(1_000_000);
    assert_eq!(s.status(NOW), SessionStatus::Exhausted);
    assert_eq!(s.status(s.expires_at_unix), SessionStatus::Expired);
    s.revoked = true;
    assert_eq!(s.status(NOW), SessionStatus::Revoked);
    assert_eq!(s.status(s.expires_at_unix + 1), SessionStatus::Revoked);
    assert_eq!(session(0).status(NOW), SessionStatus::Exhausted);
}

#[test]
fn status_strings() {
    assert_eq!(SessionStatus::Active.as_str(), "active");
    assert_eq!(SessionStatus::Exhausted.as_str(), "exhausted");
    assert_eq!(SessionStatus::Expired.as_str(), "expired");
    assert_eq!(SessionStatus::Revoked.to_string(), "revoked");
}

#[test]
fn check_allows_up_to_the_remaining_budget() {
    let url = target();
    let mut s = session(1_000_000);
    s.spent = micros(500_000);
    s.reserved = micros(300_000);
    assert_eq!(s.check(&request(&url, 200_000), NOW), Ok(()));
    assert_eq!(rule_of(s.check(&request(&url, 200_001), NOW)), Some(Rule::SessionBudget));
    s.reserved = micros(300_000);
    let denial = s.check(&request(&url, 500_000), NOW).unwrap_err();
    assert_eq!(
        denial.message,
        "the payment of $0.50 exceeds the session's remaining budget of $0.20"
    );
}

#[test]
fn check_runs_in_order() {
    let url = Url::parse("https://elsewhere.example.org/x").unwrap();
    let mut s = session(100);
    s.allowed_urls = vec![UrlPattern::parse("api.example.com").unwrap()];
    s.revoked = true;
    let bad = PaymentRequest { chain: "eip155:1", ..request(&url, 1_000) };
    let late = s.expires_at_unix;
    assert_eq!(rule_of(s.check(&bad, late)), Some(Rule::SessionRevoked));
    s.revoked = false;
    assert_eq!(rule_of(s.check(&bad, late)), Some(Rule::SessionExpired));
    assert_eq!(rule_of(s.check(&bad, NOW)), Some(Rule::SessionChain));
    let denial = s.check(&bad, NOW).unwrap_err();
    assert_eq!(denial.message, "the session pays on eip155:8453, not on eip155:1");
    let bad = PaymentRequest { chain: BASE, ..bad };
    let denial = s.check(&bad, NOW).unwrap_err();
    assert_eq!(denial.rule, Rule::SessionUrls);
    assert_eq!(
        denial.message,
        "the URL https://elsewhere.example.org/x matches none of the session's allowed URL patterns"
    );
    s.allowed_urls.push(UrlPattern::parse("*.example.org").unwrap());
    assert_eq!(rule_of(s.check(&bad, NOW)), Some(Rule::SessionBudget));
    assert_eq!(s.check(&request(&url, 100), NOW), Ok(()));
}

#[test]
fn reserve_commit_release() {
    let mut s = session(1_000);
    s.reserve(micros(600)).unwrap();
    s.reserve(micros(400)).unwrap();
    assert_eq!(s.remaining(), Amount::ZERO);
    let before = s.clone();
    let denial = s.reserve(micros(1)).unwrap_err();
    assert_eq!(denial.rule, Rule::SessionBudget);
    assert_eq!(s, before);
    s.reserve(Amount::ZERO).unwrap();
    s.commit(micros(600)).unwrap();
    assert_eq!((s.spent, s.reserved), (micros(600), micros(400)));
    s.release(micros(400)).unwrap();
    assert_eq!((s.spent, s.reserved, s.remaining()), (micros(600), Amount::ZERO, micros(400)));
    let before = s.clone();
    assert_eq!(
        s.commit(micros(1)),
        Err(SessionError::NotReserved { amount: micros(1), reserved: Amount::ZERO })
    );
    assert_eq!(
        s.release(micros(1)),
        Err(SessionError::NotReserved { amount: micros(1), reserved: Amount::ZERO })
    );
    assert_eq!(s, before);
    let message =
        SessionError::NotReserved { amount: micros(500_000), reserved: micros(20_000) }.to_string();
    assert_eq!(message, "cannot settle $0.50: the session only holds $0.02 in reservations");
}

#[test]
fn commit_refuses_overflow_without_changing_anything() {
    let mut s = session(u128::MAX);
    s.spent = micros(u128::MAX);
    s.reserved = micros(1);
    let before = s.clone();
    assert_eq!(s.commit(micros(1)), Err(SessionError::Overflow));
    assert_eq!(s, before);
}

#[derive(Debug, Clone)]
enum Op {
    Reserve,
    Commit,
    Release,
}

fn op() -> impl Strategy<Value = (Op, u128, bool)> {
    (
        prop_oneof![Just(Op::Reserve), Just(Op::Commit), Just(Op::Release)],
        0u128..20_000,
        any::<bool>(),
    )
}

proptest! {
    #[test]
    fn budget_is_never_exceeded(
        budget in 0u128..10_000,
        spent_seed in any::<u128>(),
        ops in prop::collection::vec(op(), 0..64),
    ) {
        let mut s = session(budget);
        s.spent = micros(spent_seed % (budget + 1));
        for (op, raw, relative) in ops {
            let before = s.clone();
            let (spent, reserved, remaining) =
                (before.spent.atomic(), before.reserved.atomic(), before.remaining().atomic());
            prop_assert_eq!(remaining, budget - spent - reserved);
            match op {
                Op::Reserve => {
                    let amount = if relative { raw % (remaining + 2) } else { raw };
                    let result = s.reserve(micros(amount));
                    prop_assert_eq!(result.is_err(), amount > remaining);
                    if let Err(denial) = result {
                        prop_assert_eq!(denial.rule, Rule::SessionBudget);
                        prop_assert_eq!(&s, &before);
                    } else {
                        prop_assert_eq!(s.reserved.atomic(), reserved + amount);
                        prop_assert_eq!(s.spent.atomic(), spent);
                    }
                }
                Op::Commit | Op::Release => {
                    let amount = if relative { raw % (reserved + 2) } else { raw };
                    let committing = matches!(op, Op::Commit);
                    let result = if committing {
                        s.commit(micros(amount))
                    } else {
                        s.release(micros(amount))
                    };
                    prop_assert_eq!(result.is_err(), amount > reserved);
                    if result.is_err() {
                        prop_assert_eq!(&s, &before);
                    } else {
                        prop_assert_eq!(s.reserved.atomic(), reserved - amount);
                        let spent_after = if committing { spent + amount } else { spent };
                        prop_assert_eq!(s.spent.atomic(), spent_after);
                    }
                }
            }
            prop_assert!(s.spent.atomic() + s.reserved.atomic() <= budget);
        }
    }
}
