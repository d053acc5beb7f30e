//! The pure rules of agent spending: what an owner's policy and an agent's session let the
//! agent pay.
//!
//! Every limit and budget is an [`Amount`](awx_types::Amount) in **usd micros** (6 decimals:
//! 1_000_000 is $1.00). Token amounts of USD stablecoins become usd micros through
//! [`usd_micros`], rounded up when the token has more than 6 decimals, so rounding can never
//! slip a payment under a limit.
//!
//! - [`usd`](usd_micros): conversion, and dollars as text ([`parse_usd`], [`format_usd`]).
//! - [`UrlPattern`]: where an agent may pay: URL patterns (`https://api.example.com/v1/*`) and
//!   domain patterns (`example.com`, `*.example.com`); [`parse_target`] reads a payment's URL.
//! - [`Policy`] and [`evaluate`]: the owner's rules, checked in this order: allowed chains,
//!   allowed URLs, payee allow-list, per-payment maximum, rolling 24-hour limit (what was spent
//!   comes in as an argument), and then the approval threshold, above which a payment waits
//!   for a human ([`Decision::NeedsApproval`]). A refusal is a [`Denial`] with a stable code
//!   ([`Rule::as_str`]) and a sentence naming the limit and the amounts in dollars.
//! - [`Session`]: a budget on one chain until a deadline; payments [`reserve`](Session::reserve)
//!   then [`commit`](Session::commit) or [`release`](Session::release), so that
//!   `spent + reserved <= budget` always holds.
//! - [`choose_offer`]: which offer of a 402 challenge to pay.
//!
//! Pure: nothing here does I/O; the time and the amount spent come in as arguments, and the
//! services store what these functions decide.
#![deny(clippy::arithmetic_side_effects)]

mod offer;
mod policy;
mod session;
mod url_pattern;
mod usd;

pub use offer::{ChoiceError, OfferView, choose_offer};
pub use policy::{Decision, Denial, PaymentRequest, Policy, PolicyError, Rule, evaluate};
pub use session::{Session, SessionError, SessionStatus};
pub use url_pattern::{PatternError, UrlPattern, parse_target};
pub use usd::{USD_DECIMALS, UsdError, format_usd, parse_usd, usd_api_max, usd_micros};
