//! The platform API's request and response bodies, with the snake_case wire names of
//! `openapi/openapi.json`. Money is a decimal string in dollars or token units, as the API
//! writes it; it never goes through a float. Fields the document marks optional are `Option`
//! (or default to empty), so an older or newer platform still decodes.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A spending policy. Limits are US dollars as decimal strings; an absent limit or an empty list
/// does not restrict.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    /// The most one payment may be.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_payment_max: Option<String>,
    /// The most the agent may pay in any rolling 24 hours.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub daily_limit: Option<String>,
    /// Payments above this wait for an admin's approval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval_threshold: Option<String>,
    /// URL patterns or domains the agent may pay.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_urls: Vec<String>,
    /// CAIP-2 chains the agent may pay on.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_chains: Vec<String>,
    /// The only payees the agent may pay.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub payee_allowlist: Vec<String>,
}

/// `POST /api/v1/agents`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CreateAgent {
    /// A name for people.
    pub name: String,
    /// The chain used when a payment names none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default_chain: Option<String>,
    /// Its policy (open when absent).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy: Option<Policy>,
}

/// A wallet balance.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Balance {
    /// The CAIP-2 chain.
    pub chain: String,
    /// The token contract.
    pub asset: String,
    /// The token's symbol, when the platform knows it.
    #[serde(default)]
    pub token: Option<String>,
    /// Spendable now (decimal).
    pub available: String,
    /// Reserved by pending payments (decimal).
    pub held: String,
}

/// An agent.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Agent {
    /// `agt_…`.
    pub id: String,
    /// Its name.
    pub name: String,
    /// Its wallet address.
    pub address: String,
    /// The chain used when a payment names none.
    pub default_chain: String,
    /// `active` or `deleted`.
    pub status: String,
    /// Its spending policy.
    pub policy: Policy,
    /// Its balances (on `GET` of one agent).
    #[serde(default)]
    pub balances: Option<Vec<Balance>>,
    /// Unix seconds.
    pub created_at: i64,
}

/// `GET /api/v1/agents`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub(crate) struct AgentList {
    pub(crate) agents: Vec<Agent>,
}

/// What the development faucet did (`POST /api/v1/agents/{id}/fund`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Funded {
    /// The mint transaction.
    pub tx_hash: String,
    /// The chain.
    pub chain: String,
    /// The amount minted (decimal).
    pub amount: String,
    /// The agent's balances afterwards.
    pub balances: Vec<Balance>,
}

/// `POST /api/v1/x402/sessions`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CreateSession {
    /// The agent.
    pub agent_id: String,
    /// The budget in dollars (`"1.00"`).
    pub budget_limit: String,
    /// How long it lasts.
    pub ttl_seconds: u64,
    /// The chain (the agent's default when absent).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chain: Option<String>,
    /// URL patterns it may pay (any when empty).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub allowed_urls: Vec<String>,
}

/// A session.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Session {
    /// `ses_…`.
    pub id: String,
    /// Its agent.
    pub agent_id: String,
    /// The budget in dollars.
    pub budget_limit: String,
    /// Paid so far, in dollars.
    pub spent: String,
    /// Reserved by payments in flight, in dollars.
    pub reserved: String,
    /// Left to pay, in dollars.
    pub remaining: String,
    /// The chain.
    pub chain: String,
    /// The URL patterns it may pay (any when empty).
    pub allowed_urls: Vec<String>,
    /// `active`, `exhausted`, `expired` or `revoked`.
    pub status: String,
    /// Unix seconds.
    pub expires_at: i64,
    /// Unix seconds.
    pub created_at: i64,
}

/// `POST /api/v1/x402/pay`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PayRequest {
    /// The agent whose wallet pays.
    pub agent_id: String,
    /// The x402 URL to pay for.
    pub target_url: String,
    /// The CAIP-2 chain (the session's, then the agent's default, when absent).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chain: Option<String>,
    /// A session to pay from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
}

/// `POST /api/v1/x402/sessions/{id}/pay`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct SessionPayRequest<'a> {
    pub(crate) target_url: &'a str,
}

/// Why a payment failed.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct PaymentError {
    /// A stable code.
    pub code: String,
    /// For people.
    pub message: String,
}

/// A payment's settlement on chain.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct PaymentSettlement {
    /// `queued`, `batched`, `settled` or `settled_externally`.
    pub state: String,
    /// The latest time the provider's money moves on chain (Unix seconds).
    pub settle_by: i64,
    /// When it was paid.
    #[serde(default)]
    pub settled_at: Option<i64>,
    /// The net transfer carrying it.
    #[serde(default)]
    pub settlement_id: Option<String>,
    /// The transaction that paid it.
    #[serde(default)]
    pub transaction: Option<String>,
    /// Why its last attempt failed.
    #[serde(default)]
    pub error: Option<String>,
}

/// A payment (`/x402/pay`, session pay, `GET /x402/payments/{id}`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Payment {
    /// `ldg_…`.
    pub ledger_id: String,
    /// What the provider gets, in the token's units (decimal).
    pub amount: String,
    /// The platform's fee, charged on top (decimal).
    pub fee_amount: String,
    /// The fee rate in percent.
    pub fee_rate: String,
    /// The token.
    pub token: String,
    /// The CAIP-2 chain.
    pub chain: String,
    /// `completed`, `pending` or `failed`.
    pub status: String,
    /// The detailed state.
    pub state: String,
    /// Which header carries `payment_signature`: `PAYMENT-SIGNATURE` or `X-PAYMENT`.
    pub payment_header: String,
    /// The header value to retry the target with, once completed.
    #[serde(default)]
    pub payment_signature: Option<String>,
    /// The agent that pays.
    pub agent_id: String,
    /// The session paid from.
    #[serde(default)]
    pub session_id: Option<String>,
    /// The payee.
    pub pay_to: String,
    /// What was paid for.
    pub target_url: String,
    /// Until when the authorization is valid (Unix seconds).
    #[serde(default)]
    pub valid_before: Option<i64>,
    /// Unix seconds.
    pub created_at: i64,
    /// Why it failed.
    #[serde(default)]
    pub error: Option<PaymentError>,
    /// Its settlement on chain.
    #[serde(default)]
    pub settlement: Option<PaymentSettlement>,
}

/// An offer the platform can pay (in a [`CheckResult`]).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct PayableOffer {
    /// The offer's position in `accepts`.
    pub index: u32,
    /// The scheme.
    pub scheme: String,
    /// The CAIP-2 network.
    pub network: String,
    /// The token contract.
    pub asset: String,
    /// The amount in the token (decimal).
    pub amount: String,
    /// The token's symbol.
    pub token: String,
    /// The recipient.
    pub pay_to: String,
}

/// An offer the platform cannot pay.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct UnpayableOffer {
    /// The offer's position in `accepts`.
    pub index: u32,
    /// Why.
    pub reason: String,
}

/// `POST /api/v1/x402/check`: what the URL asks for.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct CheckResult {
    /// The URL as requested.
    pub url: String,
    /// Whether it answered with a readable x402 challenge.
    pub x402: bool,
    /// The HTTP status it answered.
    pub status: u16,
    /// The protocol version it speaks.
    #[serde(default)]
    pub x402_version: Option<u32>,
    /// Every offer, in strict x402 v2 form.
    pub accepts: Vec<Value>,
    /// The offers the platform can pay.
    pub payable: Vec<PayableOffer>,
    /// The offers it cannot.
    pub unpayable: Vec<UnpayableOffer>,
    /// What is being paid for.
    #[serde(default)]
    pub resource: Option<Value>,
    /// Why it does not take x402.
    #[serde(default)]
    pub reason: Option<String>,
    /// The URL that answered, after redirects.
    #[serde(default)]
    pub final_url: Option<String>,
}

/// One tier of the fee schedule.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct FeeTier {
    /// Its name.
    pub name: String,
    /// The 30-day volume in dollars from which it applies.
    pub volume_from: String,
    /// Up to which volume; absent for the top tier.
    #[serde(default)]
    pub volume_to: Option<String>,
    /// The fee rate in percent.
    pub fee_rate: String,
}

/// `GET /api/v1/x402/fees/tiers`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct FeeTiers {
    /// The schedule version in effect.
    pub schedule_version: i32,
    /// Since when (RFC 3339).
    pub effective_from: String,
    /// The tiers, lowest volume first.
    pub tiers: Vec<FeeTier>,
    /// The caller's tier.
    pub current_tier: String,
    /// The caller's fee rate in percent.
    pub fee_rate: String,
    /// The caller's settled volume over 30 days, in dollars.
    pub volume_30d: String,
}
