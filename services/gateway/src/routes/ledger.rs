//! Money as the ledger sees it: fee tiers, agents' balances and statements (an agent's deposits
//! are in [`crate::routes::deposits`]). Thin: each handler validates, asks the policy service
//! whether the agent is the caller account's (404 otherwise: another tenant's agent is not an
//! empty wallet), asks the ledger over the bus, and renders decimal strings with the token's
//! decimals.

#![allow(
    unused_qualifications,
    reason = "utoipa's `params(StatementParams)` expands to a qualified path"
)]

use std::sync::Arc;

use awx_api::ledger::{self, Asset};
use awx_types::{AgentId, Amount, LedgerId};
use axum::extract::State;
use chrono::{DateTime, TimeZone as _, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::auth::Principal;
use crate::auth::key::Scope;
use crate::error::{ApiError, ErrorBody, ErrorCode};
use crate::extract::{ApiPath, ApiQuery};
use crate::state::AppState;
use crate::upstream;

/// Formats a rate with at least one decimal place (`"2.0"`, `"0.25"`).
fn rate(value: Decimal) -> String {
    let normalized = value.normalize();
    if normalized.scale() == 0 { format!("{normalized}.0") } else { normalized.to_string() }
}

/// Formats dollars with cents (`"1000.00"`).
fn dollars(value: Decimal) -> String {
    format!("{:.2}", value.round_dp_with_strategy(2, rust_decimal::RoundingStrategy::ToZero))
}

fn money(amount: Amount, asset: &Asset) -> Result<String, ApiError> {
    amount
        .to_decimal_string(asset.decimals)
        .map_err(|error| ApiError::internal("formatting an amount", &error))
}

fn agent_id(text: &str) -> Result<AgentId, ApiError> {
    AgentId::parse(text).map_err(|_| ApiError::not_found("agent"))
}

/// One tier of the fee schedule.
#[derive(Debug, Serialize, ToSchema)]
pub struct TierView {
    /// The tier's name.
    #[schema(example = "starter")]
    pub name: String,
    /// The 30-day settled volume in dollars from which it applies.
    #[schema(example = "0.00")]
    pub volume_from: String,
    /// The volume up to which it applies; absent for the top tier.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "1000.00")]
    pub volume_to: Option<String>,
    /// The fee rate in percent, charged on top of each payment.
    #[schema(example = "2.0")]
    pub fee_rate: String,
}

/// The fee schedule and the caller's tier.
#[derive(Debug, Serialize, ToSchema)]
pub struct FeeTiersView {
    /// The schedule version in effect.
    pub schedule_version: i32,
    /// Since when it is in effect.
    pub effective_from: DateTime<Utc>,
    /// The tiers, lowest volume first.
    pub tiers: Vec<TierView>,
    /// The caller account's tier.
    #[schema(example = "starter")]
    pub current_tier: String,
    /// The caller account's fee rate in percent.
    #[schema(example = "2.0")]
    pub fee_rate: String,
    /// The caller account's settled volume over the last 30 days, in dollars.
    #[schema(example = "0.00")]
    pub volume_30d: String,
}

/// The tiered fee schedule, with the caller's current tier, 30-day volume and rate.
#[utoipa::path(
    get, path = "/api/v1/x402/fees/tiers", tag = "fees",
    security(("api_key" = ["agent", "provider", "admin"])),
    responses(
        (status = 200, description = "The schedule and the caller's tier", body = FeeTiersView),
        (status = 401, description = "Missing, invalid or revoked API key", body = ErrorBody),
        (status = 503, description = "The ledger is unavailable", body = ErrorBody),
    )
)]
pub async fn fee_tiers(
    State(state): State<Arc<AppState>>,
    principal: Principal,
) -> Result<axum::Json<FeeTiersView>, ApiError> {
    let reply =
        upstream::call(&state, "ledger", &ledger::FeeTiers { owner: principal.account_id }).await?;
    let effective_from =
        Utc.timestamp_opt(reply.effective_from_unix, 0).single().ok_or_else(|| {
            ApiError::new(ErrorCode::InternalError, "the schedule's effective date is out of range")
        })?;
    Ok(axum::Json(FeeTiersView {
        schedule_version: reply.schedule_version,
        effective_from,
        tiers: reply
            .tiers
            .into_iter()
            .map(|tier| TierView {
                name: tier.name,
                volume_from: dollars(tier.volume_from_usd),
                volume_to: tier.volume_to_usd.map(dollars),
                fee_rate: rate(tier.fee_rate),
            })
            .collect(),
        current_tier: reply.current_tier,
        fee_rate: rate(reply.current_fee_rate),
        volume_30d: dollars(reply.volume_30d_usd),
    }))
}

/// A wallet balance.
#[derive(Debug, Serialize, ToSchema)]
pub struct BalanceView {
    /// The CAIP-2 chain.
    #[schema(example = "eip155:84532")]
    pub chain: String,
    /// The token's symbol, when the platform knows the token.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "USDC")]
    pub token: Option<String>,
    /// The token contract.
    pub asset: String,
    /// Spendable now.
    #[schema(example = "12.50")]
    pub available: String,
    /// Reserved by pending payments.
    #[schema(example = "0.102")]
    pub held: String,
}

/// An agent's balances.
#[derive(Debug, Serialize, ToSchema)]
pub struct BalancesView {
    /// The agent.
    pub agent_id: String,
    /// One per chain and token the agent has held.
    pub balances: Vec<BalanceView>,
}

fn symbol(state: &AppState, asset: &Asset) -> Option<String> {
    let chain_id = awx_x402::Network::parse_caip2(&asset.network).ok()?.evm_chain_id()?;
    state.registry.by_address(chain_id, asset.token).map(|token| token.symbol.clone())
}

/// An agent's balances per chain and token.
#[utoipa::path(
    get, path = "/api/v1/agents/{agent_id}/balances", tag = "ledger",
    security(("api_key" = ["agent", "admin"])),
    params(("agent_id" = String, Path, description = "The agent (`agt_…`)")),
    responses(
        (status = 200, description = "The agent's balances", body = BalancesView),
        (status = 400, description = "A path parameter holds a control character such as %00 (`invalid_field` names it)", body = ErrorBody),
        (status = 401, description = "Missing, invalid or revoked API key", body = ErrorBody),
        (status = 403, description = "The key lacks the agent or admin scope", body = ErrorBody),
        (status = 404, description = "No such agent in the caller's account", body = ErrorBody),
        (status = 503, description = "The policy service or the ledger is unavailable", body = ErrorBody),
    )
)]
pub async fn balances(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    ApiPath(agent): ApiPath<String>,
) -> Result<axum::Json<BalancesView>, ApiError> {
    principal.require(Scope::Agent)?;
    let agent = agent_id(&agent)?;
    // The agent must be the caller account's (404 otherwise), asked before any balance is read:
    // another tenant's agent, or none, is not an empty wallet.
    super::own_agent(&state, &principal, agent).await?;
    let reply =
        upstream::call(&state, "ledger", &ledger::Balances { owner: principal.account_id, agent })
            .await?;
    let balances = balance_views(&state, &reply.wallets)?;
    Ok(axum::Json(BalancesView { agent_id: agent.to_string(), balances }))
}

/// The API's view of an agent's wallets.
pub fn balance_views(
    state: &AppState,
    wallets: &[ledger::WalletBalance],
) -> Result<Vec<BalanceView>, ApiError> {
    wallets
        .iter()
        .map(|wallet| {
            Ok(BalanceView {
                chain: wallet.asset.network.clone(),
                token: symbol(state, &wallet.asset),
                asset: wallet.asset.token.to_checksum(None),
                available: money(wallet.available, &wallet.asset)?,
                held: money(wallet.held, &wallet.asset)?,
            })
        })
        .collect()
}

/// Paging of a statement.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct StatementParams {
    /// How many lines (1 to 100; default 50).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<i64>,
}

/// What a statement line records.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum LineType {
    /// Funds arrived.
    Deposit,
    /// A deposit was taken back: its block left the canonical chain (a reorganisation).
    DepositReversal,
    /// Funds were held for a withdrawal.
    WithdrawalHold,
    /// A withdrawal left the wallet on chain (the hold was captured).
    Withdrawal,
    /// Funds were held for a payment.
    Hold,
    /// A hold was captured; any rest released.
    Capture,
    /// A hold was released.
    Release,
    /// A hold expired and was released.
    Expiry,
    /// Another movement.
    Transfer,
}

/// One statement line: one movement of the wallet, gross. The previous line's
/// `available_after` plus `credit` minus `debit` is this line's `available_after`. A payment
/// has a line for its amount and one for its fee at each step: the hold takes them (`debit`);
/// the capture lifts the hold (`credit`) and takes what was captured (`debit`); a release or
/// expiry gives the hold back (`credit`).
#[derive(Debug, Serialize, ToSchema)]
pub struct StatementLineView {
    /// The ledger transfer (`ldg_…`); for a payment's capture, release or expiry, the
    /// payment's own `ledger_id`, so every line of a payment carries the same id.
    pub ledger_id: String,
    /// What happened.
    #[serde(rename = "type")]
    pub line_type: LineType,
    /// The CAIP-2 chain.
    pub chain: String,
    /// The token contract.
    pub asset: String,
    /// Added to the available balance (a capture's: what its hold held).
    pub credit: String,
    /// Taken from the available balance (a capture's: what it captured).
    pub debit: String,
    /// The available balance after it.
    pub available_after: String,
    /// What was held after it.
    pub held_after: String,
    /// When.
    pub created_at: DateTime<Utc>,
}

/// A page of a statement.
#[derive(Debug, Serialize, ToSchema)]
pub struct StatementView {
    /// The lines, oldest first.
    pub data: Vec<StatementLineView>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<i64>,
}

/// An agent's statement: every change to its wallets, oldest first.
#[utoipa::path(
    get, path = "/api/v1/agents/{agent_id}/statement", tag = "ledger",
    security(("api_key" = ["agent", "admin"])),
    params(("agent_id" = String, Path, description = "The agent (`agt_…`)"), StatementParams),
    responses(
        (status = 200, description = "A page of the statement", body = StatementView),
        (status = 400, description = "Invalid paging", body = ErrorBody),
        (status = 401, description = "Missing, invalid or revoked API key", body = ErrorBody),
        (status = 403, description = "The key lacks the agent or admin scope", body = ErrorBody),
        (status = 404, description = "No such agent in the caller's account", body = ErrorBody),
        (status = 503, description = "The policy service or the ledger is unavailable", body = ErrorBody),
    )
)]
pub async fn statement(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    ApiPath(agent): ApiPath<String>,
    ApiQuery(params): ApiQuery<StatementParams>,
) -> Result<axum::Json<StatementView>, ApiError> {
    principal.require(Scope::Agent)?;
    let agent = agent_id(&agent)?;
    let limit = super::page_limit(params.limit, 50)?;
    // The agent must be the caller account's (404 otherwise), asked before any line is read.
    super::own_agent(&state, &principal, agent).await?;
    let query =
        ledger::Statement { owner: principal.account_id, agent, after: params.cursor, limit };
    let reply = upstream::call(&state, "ledger", &query).await?;
    let data = reply
        .lines
        .iter()
        .map(|line| {
            Ok(StatementLineView {
                ledger_id: LedgerId::to_string(&line.ledger_id),
                line_type: match line.kind {
                    ledger::LineKind::Deposit => LineType::Deposit,
                    ledger::LineKind::DepositReversal => LineType::DepositReversal,
                    ledger::LineKind::WithdrawalHold => LineType::WithdrawalHold,
                    ledger::LineKind::Withdrawal => LineType::Withdrawal,
                    ledger::LineKind::Hold => LineType::Hold,
                    ledger::LineKind::Capture => LineType::Capture,
                    ledger::LineKind::Release => LineType::Release,
                    ledger::LineKind::Expiry => LineType::Expiry,
                    ledger::LineKind::Transfer => LineType::Transfer,
                },
                chain: line.asset.network.clone(),
                asset: line.asset.token.to_checksum(None),
                credit: money(line.credit, &line.asset)?,
                debit: money(line.debit, &line.asset)?,
                available_after: money(line.available_after, &line.asset)?,
                held_after: money(line.held_after, &line.asset)?,
                created_at: Utc.timestamp_millis_opt(line.at_unix_ms).single().unwrap_or_default(),
            })
        })
        .collect::<Result<_, ApiError>>()?;
    Ok(axum::Json(StatementView { data, next_cursor: reply.next_cursor }))
}
