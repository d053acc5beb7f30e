//! Withdrawals: USDC moved from an agent's wallet to an outside address
//! (`POST /agents/{agent_id}/withdrawals`, admin scope; listed and read with the agent scope),
//! and the account's withdrawal allow-list (`/account/withdrawal_addresses`, admin scope).
//!
//! Thin: the gateway checks the request (address, chain, an exact decimal amount of the chain's
//! USDC), the policy service answers whether the agent is the caller's, and the settlement service
//! stores the withdrawal and has it approved (allow-list, balance: the amount is held), signed
//! and submitted. The answer is 202: the withdrawal is `pending` until it is confirmed on chain.
//!
//! Each request gets a new withdrawal id (time-ordered: the settlement service pages by it);
//! `Idempotency-Key` makes a retry replay the stored answer (the same withdrawal) instead of
//! requesting another. A 5xx answer is not stored (see `idempotency`), so after one the
//! withdrawal may still have been requested: the caller lists the agent's withdrawals first.
//!
//! A withdrawal's state (`pending`, `signed`, `submitted`, then `confirmed`, or `failed` or
//! `rejected`) is moved only by the platform: the API exposes no transition on it (no cancel),
//! so no state can be refused here (as for settlements, which are only listed).

#![allow(
    unused_qualifications,
    reason = "utoipa's `params(WithdrawalParams)` expands to a qualified path"
)]

use std::sync::Arc;
use std::time::Duration;

use awx_api::policy::{self, WITHDRAWAL_ADDRESSES_MAX};
use awx_api::withdrawals::{self, WithdrawalView};
use awx_types::{AgentId, Amount, LedgerId};
use awx_x402::Address;
use axum::Extension;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::auth::Principal;
use crate::auth::key::Scope;
use crate::error::{ApiError, ErrorBody, ErrorCode};
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::idempotency::MintedId;
use crate::state::AppState;
use crate::upstream;

/// Withdrawals on a page when `limit` is absent.
const PAGE_DEFAULT: u32 = 20;
/// The token withdrawals move.
const TOKEN_SYMBOL: &str = "USDC";

/// A withdrawal to request.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WithdrawalRequest {
    /// The outside address (`0x…`; a mixed-case address must carry a valid EIP-55 checksum).
    /// It must be on the account's withdrawal allow-list, when the list is not empty.
    #[schema(example = "0x209693Bc6afc0C5328bA36FaF03C514EF312287C")]
    pub to: String,
    /// How much USDC, as a decimal string with at most the token's decimals (6): positive, at
    /// most 1000000000 (10^9 USDC).
    #[schema(example = "1.25")]
    pub amount: String,
    /// The CAIP-2 chain (the agent's default chain when absent).
    #[serde(default)]
    #[schema(example = "eip155:8453")]
    pub chain: Option<String>,
}

/// A withdrawal.
#[derive(Debug, Serialize, ToSchema)]
pub struct WithdrawalResponse {
    /// The withdrawal (`ldg_…`; also the id of its ledger hold).
    #[schema(example = "ldg_0190a3c48f2b7c3e9d1e5f6a7b8c9d0e")]
    pub id: String,
    /// The agent whose wallet pays.
    pub agent_id: String,
    /// The CAIP-2 chain.
    #[schema(example = "eip155:8453")]
    pub chain: String,
    /// The token's symbol (or its address when the registry does not know it).
    #[schema(example = "USDC")]
    pub token: String,
    /// The agent's wallet.
    pub from: String,
    /// The outside address.
    pub to: String,
    /// The amount, in the token's units.
    #[schema(example = "1.25")]
    pub amount: String,
    /// The amount in the token's smallest unit, as a decimal integer string.
    #[schema(example = "1250000")]
    pub amount_atomic: String,
    /// `pending` (the amount is held; being signed), `signed` (waiting for a batch),
    /// `submitted` (in a batch transaction not confirmed yet), `confirmed`, `failed` (failed too
    /// often; an operator looks at it; the amount stays held) or `rejected` (refused; nothing
    /// held).
    #[schema(example = "pending")]
    pub state: String,
    /// The transaction, once confirmed.
    #[schema(required = true)]
    pub tx_hash: Option<String>,
    /// Why it was rejected, or why its last attempt failed.
    #[schema(required = true)]
    pub error: Option<String>,
    /// When it was requested (Unix seconds).
    pub created_at: i64,
}

/// A page of an agent's withdrawals, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct WithdrawalPage {
    /// The withdrawals.
    pub data: Vec<WithdrawalResponse>,
    /// Pass as `starting_after` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// Paging.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct WithdrawalParams {
    /// How many (1 to 100; default 20).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
    /// The `next_cursor` of the previous page (a withdrawal id).
    pub starting_after: Option<String>,
}

/// The account's withdrawal allow-list.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WithdrawalAddressesBody {
    /// The only addresses withdrawals may go to (at most 100; empty: any address).
    #[schema(example = json!(["0x209693Bc6afc0C5328bA36FaF03C514EF312287C"]))]
    pub addresses: Vec<String>,
}

fn response(state: &AppState, view: WithdrawalView) -> Result<WithdrawalResponse, ApiError> {
    let symbol = awx_x402::Network::parse_caip2(&view.network)
        .ok()
        .and_then(|network| network.evm_chain_id())
        .and_then(|chain_id| state.registry.by_address(chain_id, view.token))
        .map(|token| token.symbol.clone());
    Ok(WithdrawalResponse {
        id: view.id.to_string(),
        agent_id: view.agent.to_string(),
        token: symbol.unwrap_or_else(|| view.token.to_checksum(None)),
        chain: view.network,
        from: view.from.to_checksum(None),
        to: view.to.to_checksum(None),
        amount: Amount::to_decimal_string(view.amount, view.decimals)
            .map_err(|error| ApiError::internal("formatting a withdrawal amount", &error))?,
        amount_atomic: view.amount.to_string(),
        state: view.state,
        tx_hash: view.tx_hash.map(|hash| format!("{hash:#x}")),
        error: view.error,
        created_at: view.created_at_unix,
    })
}

/// An address as the API takes it: `0x` and 40 hex digits; mixed case must be a valid EIP-55
/// checksum (a typo in a checksummed address is caught instead of sending money to it); never
/// the zero address.
fn parse_address(text: &str, field: &str) -> Result<Address, ApiError> {
    let invalid = |why: &str| {
        ApiError::new(ErrorCode::InvalidField, format!("{field}: {why}")).with_field(field)
    };
    let hex = text
        .strip_prefix("0x")
        .filter(|hex| hex.len() == 40 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
        .ok_or_else(|| invalid("not an address (0x and 40 hex digits)"))?;
    let mixed_case =
        hex.bytes().any(|b| b.is_ascii_uppercase()) && hex.bytes().any(|b| b.is_ascii_lowercase());
    let address = if mixed_case {
        Address::parse_checksummed(text, None)
            .map_err(|_| invalid("the address's EIP-55 checksum is wrong"))?
    } else {
        text.parse::<Address>().map_err(|_| invalid("not an address"))?
    };
    if address.is_zero() {
        return Err(invalid("the zero address cannot receive a withdrawal"));
    }
    Ok(address)
}

/// The chain's USDC, for a CAIP-2 chain.
fn withdrawable_token(state: &AppState, chain: &str) -> Result<awx_x402::TokenInfo, ApiError> {
    let chain_id = awx_x402::Network::parse_caip2(chain)
        .ok()
        .and_then(|network| network.evm_chain_id())
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::InvalidField,
                format!("chain: {chain:?} is not an EVM CAIP-2 chain (eip155:<id>)"),
            )
            .with_field("chain")
        })?;
    state.registry.by_symbol(chain_id, TOKEN_SYMBOL).cloned().ok_or_else(|| {
        ApiError::new(
            ErrorCode::NetworkNotSupported,
            format!("no withdrawable {TOKEN_SYMBOL} on {chain}"),
        )
        .with_field("chain")
    })
}

fn agent_id(text: &str) -> Result<AgentId, ApiError> {
    AgentId::parse(text).map_err(|_| ApiError::not_found("agent"))
}

/// How long the gateway waits for a withdrawal request: the settlement service waits for the
/// policy service (and through it the ledger) and the signer in turn.
fn request_timeout(state: &AppState) -> Duration {
    Duration::from_millis(state.settings.upstream_timeout_ms.saturating_mul(2))
}

/// Requests a withdrawal of USDC from an agent's wallet to an outside address. The amount is
/// held at once (it must be available: otherwise 402 and nothing is held) and the transfer is
/// signed from the agent's wallet and submitted by the platform's relayer, so the agent's
/// wallet needs no gas. Poll the withdrawal until it is `confirmed`. Send an `Idempotency-Key`
/// to retry safely: a retry with the same key and body answers the same withdrawal.
#[utoipa::path(
    post, path = "/api/v1/agents/{agent_id}/withdrawals", tag = "withdrawals",
    security(("api_key" = ["admin"])),
    params(("agent_id" = String, Path, description = "The agent (`agt_…`)")),
    request_body = WithdrawalRequest,
    responses(
        (status = 202, description = "The withdrawal, accepted (`pending`); `Location` names it", body = WithdrawalResponse),
        (status = 400, description = "Invalid address, amount (not positive, more decimals than the token has, or above 10^9 USDC) or chain; or the chain is not supported (`network_not_supported`)", body = ErrorBody),
        (status = 401, description = "Missing, invalid or revoked API key", body = ErrorBody),
        (status = 402, description = "The agent's available balance cannot cover the amount (`insufficient_funds`); nothing is held", body = ErrorBody),
        (status = 403, description = "The key lacks the admin scope (`insufficient_scope`), or the address is not on the withdrawal allow-list (`withdrawal_address_not_allowed`)", body = ErrorBody),
        (status = 404, description = "No such agent", body = ErrorBody),
        (status = 409, description = "The withdrawal id was used for another withdrawal (`withdrawal_conflict`), or a request with this `Idempotency-Key` is in progress", body = ErrorBody),
        (status = 422, description = "The `Idempotency-Key` was used with another request", body = ErrorBody),
        (status = 429, description = "Rate limited", body = ErrorBody),
        (status = 503, description = "A service is unavailable or did not answer in time: retry with the same Idempotency-Key, which requests the same withdrawal again (never a second one)", body = ErrorBody),
    )
)]
pub async fn request_withdrawal(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    ApiPath(agent): ApiPath<String>,
    minted: Option<Extension<MintedId>>,
    ApiJson(request): ApiJson<WithdrawalRequest>,
) -> Result<Response, ApiError> {
    principal.require(Scope::Admin)?;
    let agent = agent_id(&agent)?;
    // What can be checked without a service is checked first.
    let to = parse_address(&request.to, "to")?;
    if let Some(chain) = &request.chain {
        withdrawable_token(&state, chain)?;
    }
    // The agent must be the caller account's (404 otherwise); its wallet pays.
    let view = super::own_agent(&state, &principal, agent).await?;
    let chain = request.chain.unwrap_or_else(|| view.default_chain.clone());
    let token = withdrawable_token(&state, &chain)?;
    let amount = super::positive_amount(&request.amount, &token)?;
    let command = withdrawals::RequestWithdrawal {
        // The same id on every attempt of an idempotent request (see `MintedId`), so a retry
        // after a timeout is the same withdrawal, not a second one.
        withdrawal_id: minted
            .map_or_else(LedgerId::new, |Extension(MintedId(id))| LedgerId::from_uuid(id)),
        owner: principal.account_id,
        agent,
        from: view.address,
        to,
        amount,
        network: chain,
    };
    let withdrawal =
        upstream::call_with_timeout(&state, "settlement", &command, request_timeout(&state))
            .await?;
    let body = response(&state, withdrawal)?;
    let location = format!("/api/v1/agents/{agent}/withdrawals/{}", body.id);
    let mut answer = (StatusCode::ACCEPTED, axum::Json(body)).into_response();
    if let Ok(location) = HeaderValue::from_str(&location) {
        answer.headers_mut().insert(header::LOCATION, location);
    }
    Ok(answer)
}

/// An agent's withdrawals, newest first, with their state.
#[utoipa::path(
    get, path = "/api/v1/agents/{agent_id}/withdrawals", tag = "withdrawals",
    security(("api_key" = ["agent", "admin"])),
    params(("agent_id" = String, Path, description = "The agent (`agt_…`)"), WithdrawalParams),
    responses(
        (status = 200, description = "A page of withdrawals", body = WithdrawalPage),
        (status = 400, description = "Invalid paging", body = ErrorBody),
        (status = 401, description = "Missing, invalid or revoked API key", body = ErrorBody),
        (status = 403, description = "The key lacks the agent or admin scope", body = ErrorBody),
        (status = 404, description = "No such agent", body = ErrorBody),
        (status = 429, description = "Rate limited", body = ErrorBody),
        (status = 503, description = "The policy or settlement service is unavailable", body = ErrorBody),
    )
)]
pub async fn list_withdrawals(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    ApiPath(agent): ApiPath<String>,
    ApiQuery(params): ApiQuery<WithdrawalParams>,
) -> Result<axum::Json<WithdrawalPage>, ApiError> {
    principal.require(Scope::Agent)?;
    let agent = agent_id(&agent)?;
    let limit = super::page_limit(params.limit, PAGE_DEFAULT)?;
    let starting_after = params
        .starting_after
        .as_deref()
        .map(|cursor| {
            LedgerId::parse(cursor).map_err(|_| {
                ApiError::new(ErrorCode::InvalidField, "starting_after must be a withdrawal id")
                    .with_field("starting_after")
            })
        })
        .transpose()?;
    // The agent must be the caller account's (404 otherwise), asked before any withdrawal is read.
    super::own_agent(&state, &principal, agent).await?;
    let page = upstream::call(
        &state,
        "settlement",
        &withdrawals::ListWithdrawals { owner: principal.account_id, agent, limit, starting_after },
    )
    .await?;
    let next_cursor =
        page.has_more.then(|| page.withdrawals.last().map(|view| view.id.to_string())).flatten();
    let data = page
        .withdrawals
        .into_iter()
        .map(|view| response(&state, view))
        .collect::<Result<_, _>>()?;
    Ok(axum::Json(WithdrawalPage { data, next_cursor }))
}

/// One withdrawal of an agent, with its state and, once confirmed, its transaction.
#[utoipa::path(
    get, path = "/api/v1/agents/{agent_id}/withdrawals/{withdrawal_id}", tag = "withdrawals",
    security(("api_key" = ["agent", "admin"])),
    params(
        ("agent_id" = String, Path, description = "The agent (`agt_…`)"),
        ("withdrawal_id" = String, Path, description = "The withdrawal (`ldg_…`)"),
    ),
    responses(
        (status = 200, description = "The withdrawal", body = WithdrawalResponse),
        (status = 400, description = "A path parameter holds a control character such as %00 (`invalid_field` names it)", body = ErrorBody),
        (status = 401, description = "Missing, invalid or revoked API key", body = ErrorBody),
        (status = 403, description = "The key lacks the agent or admin scope", body = ErrorBody),
        (status = 404, description = "No such agent, or no such withdrawal of it", body = ErrorBody),
        (status = 429, description = "Rate limited", body = ErrorBody),
        (status = 503, description = "The policy or settlement service is unavailable", body = ErrorBody),
    )
)]
pub async fn get_withdrawal(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    ApiPath((agent, withdrawal)): ApiPath<(String, String)>,
) -> Result<axum::Json<WithdrawalResponse>, ApiError> {
    principal.require(Scope::Agent)?;
    let agent = agent_id(&agent)?;
    let withdrawal_id =
        LedgerId::parse(&withdrawal).map_err(|_| ApiError::not_found("withdrawal"))?;
    super::own_agent(&state, &principal, agent).await?;
    let view = upstream::call(
        &state,
        "settlement",
        &withdrawals::GetWithdrawal { owner: principal.account_id, agent, withdrawal_id },
    )
    .await?
    .ok_or_else(|| ApiError::not_found("withdrawal"))?;
    Ok(axum::Json(response(&state, view)?))
}

fn addresses_body(list: &policy::WithdrawalAddresses) -> WithdrawalAddressesBody {
    WithdrawalAddressesBody {
        addresses: list.addresses.iter().map(|address| address.to_checksum(None)).collect(),
    }
}

/// The account's withdrawal allow-list: withdrawals may go only to these addresses (any
/// address when it is empty).
#[utoipa::path(
    get, path = "/api/v1/account/withdrawal_addresses", tag = "withdrawals",
    security(("api_key" = ["admin"])),
    responses(
        (status = 200, description = "The allow-list", body = WithdrawalAddressesBody),
        (status = 401, description = "Missing, invalid or revoked API key", body = ErrorBody),
        (status = 403, description = "The key lacks the admin scope", body = ErrorBody),
        (status = 429, description = "Rate limited", body = ErrorBody),
        (status = 503, description = "The policy service is unavailable", body = ErrorBody),
    )
)]
pub async fn get_withdrawal_addresses(
    State(state): State<Arc<AppState>>,
    principal: Principal,
) -> Result<axum::Json<WithdrawalAddressesBody>, ApiError> {
    principal.require(Scope::Admin)?;
    let list = upstream::call(
        &state,
        "policy",
        &policy::GetWithdrawalAddresses { owner: principal.account_id },
    )
    .await?;
    Ok(axum::Json(addresses_body(&list)))
}

/// Replaces the account's withdrawal allow-list (at most 100 addresses; an empty list allows
/// any address). Withdrawals already requested are not affected.
#[utoipa::path(
    put, path = "/api/v1/account/withdrawal_addresses", tag = "withdrawals",
    security(("api_key" = ["admin"])),
    request_body = WithdrawalAddressesBody,
    responses(
        (status = 200, description = "The stored allow-list", body = WithdrawalAddressesBody),
        (status = 400, description = "An invalid address, or more than 100", body = ErrorBody),
        (status = 401, description = "Missing, invalid or revoked API key", body = ErrorBody),
        (status = 403, description = "The key lacks the admin scope", body = ErrorBody),
        (status = 429, description = "Rate limited", body = ErrorBody),
        (status = 503, description = "The policy service is unavailable", body = ErrorBody),
    )
)]
pub async fn set_withdrawal_addresses(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    ApiJson(body): ApiJson<WithdrawalAddressesBody>,
) -> Result<axum::Json<WithdrawalAddressesBody>, ApiError> {
    principal.require(Scope::Admin)?;
    if body.addresses.len() > WITHDRAWAL_ADDRESSES_MAX {
        return Err(ApiError::new(
            ErrorCode::InvalidField,
            format!("addresses: at most {WITHDRAWAL_ADDRESSES_MAX} addresses"),
        )
        .with_field("addresses"));
    }
    let mut addresses: Vec<Address> = Vec::with_capacity(body.addresses.len());
    for (index, text) in body.addresses.iter().enumerate() {
        let address = parse_address(text, &format!("addresses[{index}]"))?;
        // The same address twice is the same allow-list.
        if !addresses.contains(&address) {
            addresses.push(address);
        }
    }
    let list = upstream::call(
        &state,
        "policy",
        &policy::SetWithdrawalAddresses { owner: principal.account_id, addresses },
    )
    .await?;
    Ok(axum::Json(addresses_body(&list)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_checked_with_their_checksum() {
        let checksummed = "0x209693Bc6afc0C5328bA36FaF03C514EF312287C";
        let address = parse_address(checksummed, "to").unwrap();
        assert_eq!(address.to_checksum(None), checksummed);
        // One letter's case changed: a typo the checksum catches.
        let wrong = "0x209693bc6afc0C5328bA36FaF03C514EF312287C";
        assert_eq!(parse_address(wrong, "to").unwrap_err().field(), Some("to"));
        // All lower or all upper case carries no checksum and is taken as written.
        assert_eq!(parse_address(&checksummed.to_lowercase(), "to").unwrap(), address);
        assert_eq!(
            parse_address(&format!("0x{}", &checksummed[2..].to_uppercase()), "to").unwrap(),
            address
        );
        for bad in [
            "",
            "0x",
            "209693Bc6afc0C5328bA36FaF03C514EF312287C",
            "0x209693Bc6afc0C5328bA36FaF03C514EF312287",
            "0x209693Bc6afc0C5328bA36FaF03C514EF312287C0",
            "0x209693Bc6afc0C5328bA36FaF03C514EF31228zC",
            " 0x209693Bc6afc0C5328bA36FaF03C514EF312287C",
            "0x0000000000000000000000000000000000000000",
        ] {
            let error = parse_address(bad, "addresses[3]").unwrap_err();
            assert_eq!(error.code(), ErrorCode::InvalidField, "{bad}");
            assert_eq!(error.field(), Some("addresses[3]"), "{bad}");
        }
    }
}
