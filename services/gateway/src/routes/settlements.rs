//! Net settlement as providers and agents see it: a provider's net transfers
//! (`GET /x402/settlements`, provider scope), and the settlement state of one payment (added to
//! `GET /x402/payments/{ledger_id}`).

#![allow(
    unused_qualifications,
    reason = "utoipa's `params(SettlementParams)` expands to a qualified path"
)]

use std::sync::Arc;

use awx_api::facilitator::{self, ItemSettlement, SettlementView};
use awx_types::{Amount, LedgerId, SettlementId};
use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::auth::Principal;
use crate::auth::key::Scope;
use crate::error::{ApiError, ErrorBody, ErrorCode};
use crate::extract::ApiQuery;
use crate::state::AppState;
use crate::upstream;

/// A payment's settlement on chain (payments of our agents captured through our facilitator).
#[derive(Debug, Serialize, ToSchema)]
pub struct PaymentSettlementView {
    /// `queued` (its authorization has not expired yet, or its group is not due), `batched` (in
    /// a net transfer not confirmed yet), `settled` (paid on chain by a net transfer) or
    /// `settled_externally` (the provider submitted the authorization on chain itself).
    #[schema(example = "settled")]
    pub state: String,
    /// The latest time the provider's money moves on chain (Unix seconds).
    pub settle_by: i64,
    /// The net transfer carrying it (`stl_…`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub settlement_id: Option<String>,
    /// The batch transaction (or the provider's own transaction) that paid it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transaction: Option<String>,
    /// When it was paid (Unix seconds).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub settled_at: Option<i64>,
    /// Why its last attempt failed (it is retried).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl From<ItemSettlement> for PaymentSettlementView {
    fn from(item: ItemSettlement) -> Self {
        Self {
            state: item.state,
            settle_by: item.settle_by_unix,
            settlement_id: item.settlement_id.map(|id| id.to_string()),
            transaction: item.tx_hash.map(|hash| format!("{hash:#x}")),
            settled_at: item.settled_at_unix,
            error: item.error,
        }
    }
}

/// The settlement state of a payment, when it was captured through our facilitator.
pub async fn of_payment(
    state: &AppState,
    payment_id: LedgerId,
) -> Result<Option<PaymentSettlementView>, ApiError> {
    let item =
        upstream::call(state, "settlement", &facilitator::PaymentSettlement { payment_id }).await?;
    Ok(item.map(PaymentSettlementView::from))
}

/// One net transfer to the provider: the sum of one agent's payments to one payee address,
/// moved on chain in one EIP-3009 transfer.
#[derive(Debug, Serialize, ToSchema)]
pub struct SettlementResponse {
    /// The net transfer (`stl_…`).
    pub id: String,
    /// The CAIP-2 chain.
    #[schema(example = "eip155:8453")]
    pub chain: String,
    /// The token's symbol (or its address when the registry does not know it).
    #[schema(example = "USDC")]
    pub token: String,
    /// The agent's wallet that pays.
    pub payer: String,
    /// The payee.
    pub payee: String,
    /// The sum, in the token's units.
    #[schema(example = "12.34")]
    pub amount: String,
    /// `planned`, `signed` (waiting for or in a batch), `confirmed` or `flagged` (failed
    /// too often; an operator looks at it).
    #[schema(example = "confirmed")]
    pub state: String,
    /// The batch transaction, once confirmed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transaction: Option<String>,
    /// Failed attempts so far.
    pub attempts: i32,
    /// Why the last attempt failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The payments it covers (`ldg_…`).
    pub payments: Vec<String>,
    /// When it was planned (Unix seconds).
    pub created_at: i64,
}

/// A page of settlements, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct SettlementPage {
    /// The settlements.
    pub data: Vec<SettlementResponse>,
    /// Pass as `starting_after` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// Paging.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SettlementParams {
    /// How many (1 to 100; default 20).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    pub starting_after: Option<String>,
}

fn response(state: &AppState, view: SettlementView) -> SettlementResponse {
    let token = awx_x402::Network::parse_caip2(&view.network)
        .ok()
        .and_then(|network| network.evm_chain_id())
        .and_then(|chain_id| state.registry.by_address(chain_id, view.token));
    let amount = token
        .and_then(|token| Amount::to_decimal_string(view.amount, token.decimals).ok())
        .unwrap_or_else(|| view.amount.to_string());
    SettlementResponse {
        id: view.id.to_string(),
        chain: view.network,
        token: token.map_or_else(|| view.token.to_checksum(None), |token| token.symbol.clone()),
        payer: view.payer.to_checksum(None),
        payee: view.payee.to_checksum(None),
        amount,
        state: view.state,
        transaction: view.tx_hash.map(|hash| format!("{hash:#x}")),
        attempts: view.attempts,
        error: view.error,
        payments: view.payments.iter().map(ToString::to_string).collect(),
        created_at: view.created_at_unix,
    }
}

/// The provider's net settlements (payments of awx agents, netted on chain), newest first, each
/// with the payments it covers.
#[utoipa::path(
    get, path = "/api/v1/x402/settlements", tag = "facilitator",
    security(("api_key" = ["provider", "admin"])),
    params(SettlementParams),
    responses(
        (status = 200, description = "A page of settlements", body = SettlementPage),
        (status = 400, description = "Invalid paging", body = ErrorBody),
        (status = 401, description = "Missing, invalid or revoked API key", body = ErrorBody),
        (status = 403, description = "The key lacks the provider scope", body = ErrorBody),
        (status = 429, description = "Rate limited", body = ErrorBody),
    )
)]
pub async fn list_settlements(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    ApiQuery(params): ApiQuery<SettlementParams>,
) -> Result<axum::Json<SettlementPage>, ApiError> {
    principal.require(Scope::Provider)?;
    let limit = super::page_limit(params.limit, 20)?;
    let starting_after = params
        .starting_after
        .as_deref()
        .map(|cursor| {
            SettlementId::parse(cursor).map_err(|_| {
                ApiError::new(ErrorCode::InvalidField, "starting_after must be a settlement id")
                    .with_field("starting_after")
            })
        })
        .transpose()?;
    let page = upstream::call(
        &state,
        "settlement",
        &facilitator::ListSettlements { provider: principal.account_id, limit, starting_after },
    )
    .await?;
    let next_cursor =
        page.has_more.then(|| page.settlements.last().map(|view| view.id.to_string())).flatten();
    let data = page.settlements.into_iter().map(|view| response(&state, view)).collect();
    Ok(axum::Json(SettlementPage { data, next_cursor }))
}
