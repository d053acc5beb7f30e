//! An owner's spending policy for an agent, and the evaluation of one payment against it.
//!
//! [`evaluate`] checks, in this order, and stops at the first refusal:
//!
//! 1. the chain is among [`Policy::allowed_chains`] (empty: any chain);
//! 2. the URL matches one of [`Policy::allowed_urls`] (empty: any URL);
//! 3. the payee is on [`Policy::payee_allowlist`] (empty: any payee);
//! 4. the amount is at most [`Policy::per_payment_max`];
//! 5. the amount plus what was spent in the last 24 hours is at most [`Policy::daily_limit`];
//!
//! and then a payment strictly above [`Policy::approval_threshold`] waits for a human's
//! approval ([`Decision::NeedsApproval`]); anything else is allowed. Amounts are usd micros.

use std::fmt;

use awx_types::Amount;
use awx_x402::{Address, Network, NetworkError};
use url::{Position, Url};

use crate::url_pattern::UrlPattern;
use crate::usd::dollars;

/// What an owner lets an agent spend. The default is open: any chain, URL and payee, no limits.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    /// The most one payment may cost, in usd micros.
    pub per_payment_max: Option<Amount>,
    /// The most the agent may spend over a rolling 24 hours, in usd micros.
    pub daily_limit: Option<Amount>,
    /// CAIP-2 chains the agent may pay on; empty allows any.
    pub allowed_chains: Vec<String>,
    /// URLs the agent may pay; empty allows any.
    pub allowed_urls: Vec<UrlPattern>,
    /// Addresses the agent may pay; empty allows any.
    pub payee_allowlist: Vec<Address>,
    /// Payments strictly above this many usd micros wait for approval.
    pub approval_threshold: Option<Amount>,
}

/// Why a policy is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// An allowed chain is not a CAIP-2 id such as `eip155:8453`.
    #[error("allowed chain `{chain}` is not valid: {source}")]
    InvalidChain {
        /// The chain as written, shortened.
        chain: String,
        /// Why it is not a CAIP-2 id.
        source: NetworkError,
    },
}

impl Policy {
    /// Checks what the fields' types cannot: every allowed chain is a CAIP-2 id.
    ///
    /// Zero limits are valid (a zero per-payment maximum blocks every payment but free ones),
    /// and so are repeated entries.
    pub fn validate(&self) -> Result<(), PolicyError> {
        for chain in &self.allowed_chains {
            Network::parse_caip2(chain).map_err(|source| PolicyError::InvalidChain {
                chain: chain.chars().take(64).collect(),
                source,
            })?;
        }
        Ok(())
    }
}

/// One payment an agent asks to make.
#[derive(Debug, Clone, Copy)]
pub struct PaymentRequest<'a> {
    /// The URL paid for.
    pub url: &'a Url,
    /// The CAIP-2 chain the payment is made on.
    pub chain: &'a str,
    /// Who receives the payment.
    pub payee: Address,
    /// What it costs, in usd micros.
    pub amount: Amount,
}

/// The rule behind a denial, with a stable machine code ([`Rule::as_str`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Rule {
    /// [`Policy::per_payment_max`].
    PerPaymentMax,
    /// [`Policy::daily_limit`].
    DailyLimit,
    /// [`Policy::allowed_chains`].
    AllowedChains,
    /// [`Policy::allowed_urls`].
    AllowedUrls,
    /// [`Policy::payee_allowlist`].
    PayeeAllowlist,
    /// The session has expired.
    SessionExpired,
    /// The session was revoked.
    SessionRevoked,
    /// The session's remaining budget is too small.
    SessionBudget,
    /// The payment is on another chain than the session's.
    SessionChain,
    /// The URL matches none of the session's patterns.
    SessionUrls,
}

impl Rule {
    /// The stable machine code, such as `policy.per_payment_max`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::PerPaymentMax => "policy.per_payment_max",
            Self::DailyLimit => "policy.daily_limit",
            Self::AllowedChains => "policy.allowed_chains",
            Self::AllowedUrls => "policy.allowed_urls",
            Self::PayeeAllowlist => "policy.payee_allowlist",
            Self::SessionExpired => "session.expired",
            Self::SessionRevoked => "session.revoked",
            Self::SessionBudget => "session.budget_limit",
            Self::SessionChain => "session.chain",
            Self::SessionUrls => "session.allowed_urls",
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A refused payment: the rule that refused it and a human sentence naming the limit and the
/// amounts in dollars.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Denial {
    /// The rule that refused.
    pub rule: Rule,
    /// Why, for a human.
    pub message: String,
}

impl Denial {
    pub(crate) fn new(rule: Rule, message: String) -> Self {
        Self { rule, message }
    }
}

/// The outcome of [`evaluate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Pay.
    Allow,
    /// Within the policy, but above the approval threshold: wait for a human.
    NeedsApproval,
    /// Refused.
    Deny(Denial),
}

/// The URL without credentials, query or fragment, for messages (queries may carry secrets).
pub(crate) fn url_for_message(url: &Url) -> String {
    format!("{}://{}", url.scheme(), &url[Position::BeforeHost..Position::AfterPath])
}

/// Evaluates `request` against `policy`, given what the agent spent over the last 24 hours (in
/// usd micros).
///
/// The checks run in this order and the first refusal wins: allowed chains, allowed URLs,
/// payee allow-list, per-payment maximum (`amount > max` denies), daily limit
/// (`spent_24h + amount > limit` denies, and so does an overflow). A payment that passes them
/// all needs approval when `amount > approval_threshold`, and is allowed otherwise.
pub fn evaluate(policy: &Policy, request: &PaymentRequest<'_>, spent_24h: Amount) -> Decision {
    match check(policy, request, spent_24h) {
        Err(denial) => Decision::Deny(denial),
        Ok(()) if policy.approval_threshold.is_some_and(|threshold| request.amount > threshold) => {
            Decision::NeedsApproval
        }
        Ok(()) => Decision::Allow,
    }
}

fn check(policy: &Policy, request: &PaymentRequest<'_>, spent_24h: Amount) -> Result<(), Denial> {
    if !policy.allowed_chains.is_empty()
        && !policy.allowed_chains.iter().any(|chain| chain == request.chain)
    {
        return Err(Denial::new(
            Rule::AllowedChains,
            format!(
                "the chain {} is not among the policy's allowed chains ({})",
                request.chain,
                policy.allowed_chains.join(", ")
            ),
        ));
    }
    if !policy.allowed_urls.is_empty()
        && !policy.allowed_urls.iter().any(|pattern| pattern.matches(request.url))
    {
        return Err(Denial::new(
            Rule::AllowedUrls,
            format!(
                "the URL {} matches none of the policy's allowed URL patterns",
                url_for_message(request.url)
            ),
        ));
    }
    if !policy.payee_allowlist.is_empty() && !policy.payee_allowlist.contains(&request.payee) {
        return Err(Denial::new(
            Rule::PayeeAllowlist,
            format!("the payee {} is not on the policy's payee allow-list", request.payee),
        ));
    }
    if let Some(max) = policy.per_payment_max
        && request.amount > max
    {
        return Err(Denial::new(
            Rule::PerPaymentMax,
            format!(
                "the payment of {} exceeds the per-payment maximum of {}",
                dollars(request.amount),
                dollars(max)
            ),
        ));
    }
    if let Some(limit) = policy.daily_limit {
        match spent_24h.checked_add(request.amount) {
            Ok(total) if total <= limit => {}
            Ok(total) => {
                return Err(Denial::new(
                    Rule::DailyLimit,
                    format!(
                        "the payment of {} would bring the last 24 hours' spending to {}, over \
                         the daily limit of {} ({} already spent)",
                        dollars(request.amount),
                        dollars(total),
                        dollars(limit),
                        dollars(spent_24h)
                    ),
                ));
            }
            Err(_) => {
                return Err(Denial::new(
                    Rule::DailyLimit,
                    format!(
                        "the payment of {} cannot be added to the {} spent in the last 24 hours \
                         under the daily limit of {}",
                        dollars(request.amount),
                        dollars(spent_24h),
                        dollars(limit)
                    ),
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
