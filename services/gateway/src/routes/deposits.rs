//! Money that arrived in an agent's wallet on chain, as the settlement service's chain watcher
//! (and the development faucet) recorded it: `GET /agents/{agent_id}/deposits` (agent scope).
//! Thin: the policy service answers whether the agent is the caller's, the settlement service
//! lists its deposits, and the handler renders amounts as decimal strings with the token's
//! decimals.

#![allow(
    unused_qualifications,
    reason = "utoipa's `params(DepositParams)` expands to a qualified path"
)]

use std::sync::Arc;

use awx_api::deposits::{self, DepositView};
use awx_api::ledger::DepositSource;
use awx_types::{AgentId, Amount};
use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::auth::Principal;
use crate::auth::key::Scope;
use crate::error::{ApiError, ErrorBody, ErrorCode};
use crate::extract::{ApiPath, ApiQuery};
use crate::state::AppState;
use crate::upstream;

/// Deposits on a page when `limit` is absent.
const PAGE_DEFAULT: u32 = 20;

/// Where a deposit came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DepositSourceView {
    /// A token transfer into the agent's wallet, seen on chain.
    Chain,
    /// The development faucet's mint (development chains only).
    Faucet,
}

impl From<DepositSource> for DepositSourceView {
    fn from(source: DepositSource) -> Self {
        match source {
            DepositSource::Chain => Self::Chain,
            DepositSource::Faucet => Self::Faucet,
        }
    }
}

/// One deposit: a token transfer into the agent's wallet.
#[derive(Debug, Serialize, ToSchema)]
pub struct DepositResponse {
    /// The deposit (a UUID; pass it as `starting_after` to page).
    #[schema(example = "0190a3c4-8f2b-7c3e-9d1e-5f6a7b8c9d0e")]
    pub id: String,
    /// The CAIP-2 chain.
    #[schema(example = "eip155:8453")]
    pub chain: String,
    /// The token's symbol (or its address when the registry does not know it).
    #[schema(example = "USDC")]
    pub token: String,
    /// Who sent it (the zero address for a mint).
    pub from: String,
    /// The agent's wallet.
    pub to: String,
    /// The amount, in the token's units.
    #[schema(example = "12.50")]
    pub amount: String,
    /// The amount in the token's smallest unit, as a decimal integer string.
    #[schema(example = "12500000")]
    pub amount_atomic: String,
    /// Where it came from.
    pub source: DepositSourceView,
    /// `pending` (seen, waiting for confirmations; not spendable yet), `credited` (added to the
    /// available balance) or `reversed` (its block left the canonical chain and the credit was
    /// taken back; if the transfer reappears in another block, it is a new deposit).
    #[schema(example = "credited")]
    pub state: String,
    /// The transaction.
    pub tx_hash: String,
    /// The `Transfer` log's index in its block.
    pub log_index: u64,
    /// The block.
    pub block_number: u64,
    /// The block's hash.
    pub block_hash: String,
    /// Why it was reversed (`null` unless `state` is `reversed`).
    #[schema(required = true)]
    pub reversal_reason: Option<String>,
    /// When the watcher saw it (Unix seconds).
    pub created_at: i64,
}

/// A page of an agent's deposits, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct DepositPage {
    /// The deposits.
    pub data: Vec<DepositResponse>,
    /// Pass as `starting_after` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// Paging.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DepositParams {
    /// How many (1 to 100; default 20).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
    /// The `next_cursor` of the previous page (a deposit id).
    pub starting_after: Option<String>,
}

fn response(state: &AppState, view: DepositView) -> Result<DepositResponse, ApiError> {
    let symbol = awx_x402::Network::parse_caip2(&view.network)
        .ok()
        .and_then(|network| network.evm_chain_id())
        .and_then(|chain_id| state.registry.by_address(chain_id, view.token))
        .map(|token| token.symbol.clone());
    Ok(DepositResponse {
        id: view.id.to_string(),
        token: symbol.unwrap_or_else(|| view.token.to_checksum(None)),
        chain: view.network,
        from: view.from.to_checksum(None),
        to: view.to.to_checksum(None),
        amount: Amount::to_decimal_string(view.amount, view.decimals)
            .map_err(|error| ApiError::internal("formatting a deposit amount", &error))?,
        amount_atomic: view.amount.to_string(),
        source: view.source.into(),
        state: view.state,
        tx_hash: format!("{:#x}", view.tx_hash),
        log_index: view.log_index,
        block_number: view.block_number,
        block_hash: format!("{:#x}", view.block_hash),
        reversal_reason: view.reversal_reason,
        created_at: view.created_at_unix,
    })
}

/// An agent's deposits (chain transfers into its wallet, and faucet mints), newest first, with
/// their state: pending, credited, or reversed by a reorganisation.
#[utoipa::path(
    get, path = "/api/v1/agents/{agent_id}/deposits", tag = "ledger",
    security(("api_key" = ["agent", "admin"])),
    params(("agent_id" = String, Path, description = "The agent (`agt_…`)"), DepositParams),
    responses(
        (status = 200, description = "A page of deposits", body = DepositPage),
        (status = 400, description = "Invalid paging", body = ErrorBody),
        (status = 401, description = "Missing, invalid or revoked API key", body = ErrorBody),
        (status = 403, description = "The key lacks the agent or admin scope", body = ErrorBody),
        (status = 404, description = "No such agent", body = ErrorBody),
        (status = 429, description = "Rate limited", body = ErrorBody),
        (status = 503, description = "The policy or settlement service is unavailable", body = ErrorBody),
    )
)]
pub async fn list_deposits(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    ApiPath(agent): ApiPath<String>,
    ApiQuery(params): ApiQuery<DepositParams>,
) -> Result<axum::Json<DepositPage>, ApiError> {
    principal.require(Scope::Agent)?;
    let agent = AgentId::parse(&agent).map_err(|_| ApiError::not_found("agent"))?;
    let limit = super::page_limit(params.limit, PAGE_DEFAULT)?;
    let starting_after = params
        .starting_after
        .as_deref()
        .map(|cursor| {
            Uuid::try_parse(cursor).map_err(|_| {
                ApiError::new(ErrorCode::InvalidField, "starting_after must be a deposit id")
                    .with_field("starting_after")
            })
        })
        .transpose()?;
    // The agent must be the caller account's (404 otherwise), asked before any deposit is read.
    super::own_agent(&state, &principal, agent).await?;
    let page = upstream::call(
        &state,
        "settlement",
        &deposits::ListDeposits { owner: principal.account_id, agent, limit, starting_after },
    )
    .await?;
    let next_cursor =
        page.has_more.then(|| page.deposits.last().map(|view| view.id.to_string())).flatten();
    let data =
        page.deposits.into_iter().map(|view| response(&state, view)).collect::<Result<_, _>>()?;
    Ok(axum::Json(DepositPage { data, next_cursor }))
}
