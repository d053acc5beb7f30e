//! Table tests of policy evaluation: each rule, its boundaries, and the order of the checks.

#![allow(
    clippy::unwrap_used,
    clippy::panic,
    clippy::arithmetic_side_effects,
    reason = "tests fail by panicking and compute expectations with plain arithmetic"
)]

use super::*;

const BASE: &str = "eip155:8453";
const BASE_SEPOLIA: &str = "eip155:84532";

fn usd(text: &str) -> Amount {
    crate::usd::parse_usd(text).unwrap()
}

fn micros(atomic: u128) -> Amount {
    Amount::from_atomic(atomic)
}

fn payee(byte: u8) -> Address {
    Address::repeat_byte(byte)
}

fn target() -> Url {
    Url::parse("https://api.example.com/v1/data?key=secret").unwrap()
}

fn request(url: &Url, amount: Amount) -> PaymentRequest<'_> {
    PaymentRequest { url, chain: BASE, payee: payee(1), amount }
}

fn denied(decision: Decision) -> Denial {
    match decision {
        Decision::Deny(denial) => denial,
        other => panic!("expected a denial, got {other:?}"),
    }
}

#[test]
fn the_default_policy_allows_everything() {
    let url = target();
    let policy = Policy::default();
    assert_eq!(policy.validate(), Ok(()));
    assert_eq!(
        evaluate(&policy, &request(&url, micros(u128::MAX)), micros(u128::MAX)),
        Decision::Allow
    );
    assert_eq!(evaluate(&policy, &request(&url, Amount::ZERO), Amount::ZERO), Decision::Allow);
}

#[test]
fn per_payment_maximum_boundaries() {
    let url = target();
    let policy = Policy { per_payment_max: Some(usd("0.25")), ..Policy::default() };
    assert_eq!(evaluate(&policy, &request(&url, usd("0.25")), Amount::ZERO), Decision::Allow);
    assert_eq!(evaluate(&policy, &request(&url, Amount::ZERO), Amount::ZERO), Decision::Allow);
    let denial = denied(evaluate(&policy, &request(&url, micros(250_001)), Amount::ZERO));
    assert_eq!(denial.rule, Rule::PerPaymentMax);
    let denial = denied(evaluate(&policy, &request(&url, usd("0.50")), Amount::ZERO));
    assert_eq!(denial.message, "the payment of $0.50 exceeds the per-payment maximum of $0.25");
    assert_eq!(denial.to_string(), denial.message);
}

#[test]
fn a_zero_maximum_blocks_every_paid_request() {
    let url = target();
    let policy = Policy { per_payment_max: Some(Amount::ZERO), ..Policy::default() };
    assert_eq!(policy.validate(), Ok(()));
    assert_eq!(
        denied(evaluate(&policy, &request(&url, micros(1)), Amount::ZERO)).rule,
        Rule::PerPaymentMax
    );
    assert_eq!(evaluate(&policy, &request(&url, Amount::ZERO), Amount::ZERO), Decision::Allow);
}

#[test]
fn daily_limit_boundaries() {
    let url = target();
    let policy = Policy { daily_limit: Some(usd("1.00")), ..Policy::default() };
    // Exactly at the limit is allowed.
    assert_eq!(evaluate(&policy, &request(&url, usd("0.30")), usd("0.70")), Decision::Allow);
    assert_eq!(evaluate(&policy, &request(&url, usd("1.00")), Amount::ZERO), Decision::Allow);
    // One micro over is not.
    let denial = denied(evaluate(&policy, &request(&url, micros(300_001)), usd("0.70")));
    assert_eq!(denial.rule, Rule::DailyLimit);
    let denial = denied(evaluate(&policy, &request(&url, usd("0.50")), usd("0.70")));
    assert_eq!(
        denial.message,
        "the payment of $0.50 would bring the last 24 hours' spending to $1.20, over the daily \
         limit of $1.00 ($0.70 already spent)"
    );
    // Already over the limit (the limit was lowered): even a free payment is refused.
    assert_eq!(
        denied(evaluate(&policy, &request(&url, Amount::ZERO), usd("1.01"))).rule,
        Rule::DailyLimit
    );
}

#[test]
fn daily_overflow_denies() {
    let url = target();
    let policy = Policy { daily_limit: Some(micros(u128::MAX)), ..Policy::default() };
    assert_eq!(
        evaluate(&policy, &request(&url, micros(1)), micros(u128::MAX - 1)),
        Decision::Allow
    );
    let denial = denied(evaluate(&policy, &request(&url, micros(2)), micros(u128::MAX - 1)));
    assert_eq!(denial.rule, Rule::DailyLimit);
    assert!(denial.message.contains("cannot be added"), "{}", denial.message);
}

#[test]
fn approval_threshold_boundaries() {
    let url = target();
    let policy = Policy { approval_threshold: Some(usd("5.00")), ..Policy::default() };
    assert_eq!(evaluate(&policy, &request(&url, usd("5.00")), Amount::ZERO), Decision::Allow);
    assert_eq!(
        evaluate(&policy, &request(&url, micros(5_000_001)), Amount::ZERO),
        Decision::NeedsApproval
    );
    let zero = Policy { approval_threshold: Some(Amount::ZERO), ..Policy::default() };
    assert_eq!(evaluate(&zero, &request(&url, Amount::ZERO), Amount::ZERO), Decision::Allow);
    assert_eq!(evaluate(&zero, &request(&url, micros(1)), Amount::ZERO), Decision::NeedsApproval);
}

#[test]
fn limits_come_before_approval() {
    let url = target();
    let policy = Policy {
        per_payment_max: Some(usd("10")),
        daily_limit: Some(usd("20")),
        approval_threshold: Some(usd("1")),
        ..Policy::default()
    };
    assert_eq!(evaluate(&policy, &request(&url, usd("2")), usd("5")), Decision::NeedsApproval);
    assert_eq!(
        denied(evaluate(&policy, &request(&url, usd("11")), Amount::ZERO)).rule,
        Rule::PerPaymentMax
    );
    assert_eq!(
        denied(evaluate(&policy, &request(&url, usd("2")), usd("19"))).rule,
        Rule::DailyLimit
    );
}

#[test]
fn allowed_chains() {
    let url = target();
    let policy = Policy {
        allowed_chains: vec![BASE.to_owned(), BASE_SEPOLIA.to_owned()],
        ..Policy::default()
    };
    assert_eq!(evaluate(&policy, &request(&url, usd("1")), Amount::ZERO), Decision::Allow);
    let on_sepolia = PaymentRequest { chain: BASE_SEPOLIA, ..request(&url, usd("1")) };
    assert_eq!(evaluate(&policy, &on_sepolia, Amount::ZERO), Decision::Allow);
    let on_mainnet = PaymentRequest { chain: "eip155:1", ..request(&url, usd("1")) };
    let denial = denied(evaluate(&policy, &on_mainnet, Amount::ZERO));
    assert_eq!(denial.rule, Rule::AllowedChains);
    assert_eq!(
        denial.message,
        "the chain eip155:1 is not among the policy's allowed chains (eip155:8453, eip155:84532)"
    );
}

#[test]
fn allowed_urls() {
    let policy = Policy {
        allowed_urls: vec![
            UrlPattern::parse("https://api.example.com/v1/*").unwrap(),
            UrlPattern::parse("*.weather.io").unwrap(),
        ],
        ..Policy::default()
    };
    for allowed in ["https://api.example.com/v1/data", "https://eu.weather.io/today"] {
        let url = Url::parse(allowed).unwrap();
        assert_eq!(
            evaluate(&policy, &request(&url, usd("1")), Amount::ZERO),
            Decision::Allow,
            "{allowed}"
        );
    }
    let url = Url::parse("https://user:pw@api.example.com/v2/data?key=secret#frag").unwrap();
    let denial = denied(evaluate(&policy, &request(&url, usd("1")), Amount::ZERO));
    assert_eq!(denial.rule, Rule::AllowedUrls);
    assert_eq!(
        denial.message,
        "the URL https://api.example.com/v2/data matches none of the policy's allowed URL patterns"
    );
}

#[test]
fn payee_allowlist() {
    let url = target();
    let policy = Policy { payee_allowlist: vec![payee(1), payee(2)], ..Policy::default() };
    assert_eq!(evaluate(&policy, &request(&url, usd("1")), Amount::ZERO), Decision::Allow);
    let other = PaymentRequest { payee: payee(3), ..request(&url, usd("1")) };
    let denial = denied(evaluate(&policy, &other, Amount::ZERO));
    assert_eq!(denial.rule, Rule::PayeeAllowlist);
    assert!(denial.message.contains(&payee(3).to_string()), "{}", denial.message);
}

#[test]
fn checks_run_in_order() {
    let url = Url::parse("https://elsewhere.example.org/").unwrap();
    let mut policy = Policy {
        per_payment_max: Some(usd("1")),
        daily_limit: Some(usd("1")),
        allowed_chains: vec![BASE_SEPOLIA.to_owned()],
        allowed_urls: vec![UrlPattern::parse("api.example.com").unwrap()],
        payee_allowlist: vec![payee(9)],
        approval_threshold: Some(Amount::ZERO),
    };
    let bad = request(&url, usd("2"));
    let spent = usd("5");
    assert_eq!(denied(evaluate(&policy, &bad, spent)).rule, Rule::AllowedChains);
    policy.allowed_chains.clear();
    assert_eq!(denied(evaluate(&policy, &bad, spent)).rule, Rule::AllowedUrls);
    policy.allowed_urls.clear();
    assert_eq!(denied(evaluate(&policy, &bad, spent)).rule, Rule::PayeeAllowlist);
    policy.payee_allowlist.clear();
    assert_eq!(denied(evaluate(&policy, &bad, spent)).rule, Rule::PerPaymentMax);
    policy.per_payment_max = None;
    assert_eq!(denied(evaluate(&policy, &bad, spent)).rule, Rule::DailyLimit);
    policy.daily_limit = None;
    assert_eq!(evaluate(&policy, &bad, spent), Decision::NeedsApproval);
    policy.approval_threshold = None;
    assert_eq!(evaluate(&policy, &bad, spent), Decision::Allow);
}

#[test]
fn validate_checks_chains() {
    let good = Policy {
        allowed_chains: vec![
            BASE.to_owned(),
            BASE.to_owned(),
            "solana:5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp".to_owned(),
        ],
        ..Policy::default()
    };
    assert_eq!(good.validate(), Ok(()));
    for bad in ["base-sepolia", "", "eip155:", "eip155:0x2105", "EIP155:8453", "eip155:8453 "] {
        let policy = Policy { allowed_chains: vec![bad.to_owned()], ..Policy::default() };
        let error = policy.validate().unwrap_err();
        assert!(matches!(&error, PolicyError::InvalidChain { chain, .. } if chain == bad), "{bad}");
        assert!(error.to_string().contains(&format!("`{bad}`")), "{error}");
    }
}

#[test]
fn rule_codes_are_stable() {
    let codes = [
        (Rule::PerPaymentMax, "policy.per_payment_max"),
        (Rule::DailyLimit, "policy.daily_limit"),
        (Rule::AllowedChains, "policy.allowed_chains"),
        (Rule::AllowedUrls, "policy.allowed_urls"),
        (Rule::PayeeAllowlist, "policy.payee_allowlist"),
        (Rule::SessionExpired, "session.expired"),
        (Rule::SessionRevoked, "session.revoked"),
        (Rule::SessionBudget, "session.budget_limit"),
        (Rule::SessionChain, "session.chain"),
        (Rule::SessionUrls, "session.allowed_urls"),
    ];
    for (rule, code) in codes {
        assert_eq!(rule.as_str(), code);
        assert_eq!(rule.to_string(), code);
    }
}
