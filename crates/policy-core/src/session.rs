//! Sessions: a budget an agent may spend on one chain until a deadline, with reservations.
//!
//! A payment first [`Session::reserve`]s its amount, then either [`Session::commit`]s it (the
//! payment went through: reserved becomes spent) or [`Session::release`]s it (it did not). So
//! concurrent payments cannot together exceed the budget: `spent + reserved <= budget` holds
//! after every operation that succeeds, and a refused operation changes nothing. Amounts are
//! usd micros; time is an argument (Unix seconds).

use std::fmt;

use awx_types::Amount;
use url::Url;

use crate::policy::{Denial, PaymentRequest, Rule, url_for_message};
use crate::url_pattern::UrlPattern;
use crate::usd::dollars;

/// A spending session of an agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// The most the session may spend, in usd micros.
    pub budget: Amount,
    /// What payments committed so far, in usd micros.
    pub spent: Amount,
    /// What payments in flight hold, in usd micros.
    pub reserved: Amount,
    /// When the session ends (Unix seconds); it is expired from this second on.
    pub expires_at_unix: i64,
    /// Whether the owner revoked the session.
    pub revoked: bool,
    /// The CAIP-2 chain the session pays on.
    pub chain: String,
    /// URLs the session may pay; empty allows any.
    pub allowed_urls: Vec<UrlPattern>,
}

/// Where a session stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SessionStatus {
    /// It may pay.
    Active,
    /// Nothing remains of the budget (counting reservations).
    Exhausted,
    /// Its deadline has passed.
    Expired,
    /// The owner revoked it.
    Revoked,
}

impl SessionStatus {
    /// `"active"`, `"exhausted"`, `"expired"` or `"revoked"`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Exhausted => "exhausted",
            Self::Expired => "expired",
            Self::Revoked => "revoked",
        }
    }
}

impl fmt::Display for SessionStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a reservation could not be committed or released.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    /// The amount is more than what the session holds in reservations.
    #[error("cannot settle {}: the session only holds {} in reservations", dollars(*.amount), dollars(*.reserved))]
    NotReserved {
        /// The amount asked for, in usd micros.
        amount: Amount,
        /// What the session holds, in usd micros.
        reserved: Amount,
    },
    /// The spent amount would not fit in 128 bits.
    #[error("the session's spent amount would overflow")]
    Overflow,
}

impl Session {
    /// What may still be reserved: `budget - spent - reserved`, or zero when nothing is left.
    pub fn remaining(&self) -> Amount {
        self.budget
            .checked_sub(self.spent)
            .and_then(|left| left.checked_sub(self.reserved))
            .unwrap_or(Amount::ZERO)
    }

    /// The status at `now_unix`: revoked first, then expired (`now_unix >= expires_at_unix`),
    /// then exhausted (nothing remains), else active.
    pub fn status(&self, now_unix: i64) -> SessionStatus {
        if self.revoked {
            SessionStatus::Revoked
        } else if now_unix >= self.expires_at_unix {
            SessionStatus::Expired
        } else if self.remaining().is_zero() {
            SessionStatus::Exhausted
        } else {
            SessionStatus::Active
        }
    }

    /// Whether the session allows `request` at `now_unix`: not revoked, not expired, on the
    /// session's chain, to an allowed URL, and within the remaining budget.
    pub fn check(&self, request: &PaymentRequest<'_>, now_unix: i64) -> Result<(), Denial> {
        if self.revoked {
            return Err(Denial::new(Rule::SessionRevoked, "the session was revoked".to_owned()));
        }
        if now_unix >= self.expires_at_unix {
            return Err(Denial::new(Rule::SessionExpired, "the session has expired".to_owned()));
        }
        if request.chain != self.chain {
            return Err(Denial::new(
                Rule::SessionChain,
                format!("the session pays on {}, not on {}", self.chain, request.chain),
            ));
        }
        if !self.allows_url(request.url) {
            return Err(Denial::new(
                Rule::SessionUrls,
                format!(
                    "the URL {} matches none of the session's allowed URL patterns",
                    url_for_message(request.url)
                ),
            ));
        }
        self.check_budget(request.amount)
    }

    fn allows_url(&self, url: &Url) -> bool {
        self.allowed_urls.is_empty() || self.allowed_urls.iter().any(|pattern| pattern.matches(url))
    }

    fn check_budget(&self, amount: Amount) -> Result<(), Denial> {
        let remaining = self.remaining();
        if amount > remaining {
            return Err(Denial::new(
                Rule::SessionBudget,
                format!(
                    "the payment of {} exceeds the session's remaining budget of {}",
                    dollars(amount),
                    dollars(remaining)
                ),
            ));
        }
        Ok(())
    }

    /// Holds `amount` for a payment in flight, if the remaining budget covers it.
    ///
    /// Only the budget is checked; [`Session::check`] covers the other rules.
    pub fn reserve(&mut self, amount: Amount) -> Result<(), Denial> {
        self.check_budget(amount)?;
        // Cannot overflow: amount <= budget - spent - reserved.
        self.reserved = self.reserved.checked_add(amount).map_err(|_| {
            Denial::new(
                Rule::SessionBudget,
                format!("the payment of {} overflows the session's reservations", dollars(amount)),
            )
        })?;
        Ok(())
    }

    /// Turns `amount` of the reservations into spending: the payment went through.
    pub fn commit(&mut self, amount: Amount) -> Result<(), SessionError> {
        let reserved = self.take_reserved(amount)?;
        let spent = self.spent.checked_add(amount).map_err(|_| SessionError::Overflow)?;
        self.reserved = reserved;
        self.spent = spent;
        Ok(())
    }

    /// Gives `amount` of the reservations back: the payment did not go through.
    pub fn release(&mut self, amount: Amount) -> Result<(), SessionError> {
        self.reserved = self.take_reserved(amount)?;
        Ok(())
    }

    /// The reservations less `amount`, or an error when they hold less.
    fn take_reserved(&self, amount: Amount) -> Result<Amount, SessionError> {
        self.reserved
            .checked_sub(amount)
            .map_err(|_| SessionError::NotReserved { amount, reserved: self.reserved })
    }
}

#[cfg(test)]
mod tests;
