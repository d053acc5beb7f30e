//! Agents (admin scope to change, agent scope to read): create one (the signer makes its
//! wallet), list, get (with its policy and balances per chain), delete, set its policy, and fund
//! its wallet from the development faucet. Thin: each handler asks the policy service (and the
//! ledger or the settlement service) over the bus.

use std::sync::Arc;

use awx_api::ledger;
use awx_api::policy::{self, AgentView, PolicyView};
use awx_types::AgentId;
use axum::Extension;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::Principal;
use crate::auth::key::Scope;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{ApiJson, ApiPath};
use crate::idempotency::MintedId;
use crate::routes::ledger::BalanceView;
use crate::state::AppState;
use crate::upstream;

/// A spending policy. Limits are US dollars as decimal strings, at most 1000000000 ($1e9); an
/// absent limit or an empty list does not restrict.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicyBody {
    /// The most one payment may be.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = "1.00")]
    pub per_payment_max: Option<String>,
    /// The most the agent may pay in any rolling 24 hours.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = "25.00")]
    pub daily_limit: Option<String>,
    /// CAIP-2 chains the agent may pay on.
    #[serde(default)]
    #[schema(example = json!(["eip155:84532"]))]
    pub allowed_chains: Vec<String>,
    /// URL patterns (`https://api.example.com/v1/*`) or domains (`example.com`,
    /// `*.example.com`) the agent may pay.
    #[serde(default)]
    pub allowed_urls: Vec<String>,
    /// The only payees the agent may pay.
    #[serde(default)]
    pub payee_allowlist: Vec<String>,
    /// Payments above this wait for an admin's approval (`status: pending`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = "5.00")]
    pub approval_threshold: Option<String>,
}

impl PolicyBody {
    /// The policy to send; `prefix` is where it sits in the request body (`policy.` or none),
    /// for the fields named in errors. A limit above the platform's bound is refused here.
    fn into_view(self, prefix: &str) -> Result<PolicyView, ApiError> {
        for (field, limit) in [
            ("per_payment_max", &self.per_payment_max),
            ("daily_limit", &self.daily_limit),
            ("approval_threshold", &self.approval_threshold),
        ] {
            if let Some(text) = limit {
                super::dollars_within_max(text, &format!("{prefix}{field}"))?;
            }
        }
        let payee_allowlist = self
            .payee_allowlist
            .iter()
            .enumerate()
            .map(|(index, text)| {
                text.parse().map_err(|_| {
                    ApiError::new(crate::error::ErrorCode::InvalidField, "not an address")
                        .with_field(format!("{prefix}payee_allowlist[{index}]"))
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(PolicyView {
            per_payment_max: self.per_payment_max,
            daily_limit: self.daily_limit,
            allowed_chains: self.allowed_chains,
            allowed_urls: self.allowed_urls,
            payee_allowlist,
            approval_threshold: self.approval_threshold,
        })
    }

    fn from_view(view: PolicyView) -> Self {
        Self {
            per_payment_max: view.per_payment_max,
            daily_limit: view.daily_limit,
            allowed_chains: view.allowed_chains,
            allowed_urls: view.allowed_urls,
            payee_allowlist: view.payee_allowlist.iter().map(|a| a.to_checksum(None)).collect(),
            approval_threshold: view.approval_threshold,
        }
    }
}

/// An agent.
#[derive(Debug, Serialize, ToSchema)]
pub struct AgentResponse {
    /// The agent (`agt_…`).
    #[schema(example = "agt_0190a3c48f2b7c3e9d1e5f6a7b8c9d0e")]
    pub id: String,
    /// Its name.
    pub name: String,
    /// Its wallet address (the key never leaves the signer).
    pub address: String,
    /// The chain used when a payment names none.
    #[schema(example = "eip155:84532")]
    pub default_chain: String,
    /// `active` or `deleted`.
    pub status: String,
    /// Its spending policy.
    pub policy: PolicyBody,
    /// Its balances per chain and token (on `GET` of one agent).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub balances: Option<Vec<BalanceView>>,
    /// When it was created (Unix seconds).
    pub created_at: i64,
}

impl AgentResponse {
    fn new(view: AgentView) -> Self {
        Self {
            id: view.id.to_string(),
            name: view.name,
            address: view.address.to_checksum(None),
            default_chain: view.default_chain,
            status: view.status,
            policy: PolicyBody::from_view(view.policy),
            balances: None,
            created_at: view.created_at_unix,
        }
    }
}

/// A new agent.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateAgentRequest {
    /// A name for people.
    #[schema(example = "research-bot")]
    pub name: String,
    /// The chain used when a payment names none (the platform's default when absent).
    #[serde(default)]
    pub default_chain: Option<String>,
    /// Its policy (open when absent).
    #[serde(default)]
    pub policy: Option<PolicyBody>,
}

/// The account's agents.
#[derive(Debug, Serialize, ToSchema)]
pub struct AgentListResponse {
    /// Newest first; deleted agents are not listed.
    pub agents: Vec<AgentResponse>,
}

/// The token the faucet mints on `chain`: the platform's USDC there.
fn faucet_token(state: &AppState, chain: &str) -> Result<awx_x402::TokenInfo, ApiError> {
    awx_x402::Network::parse_caip2(chain)
        .ok()
        .and_then(|network| network.evm_chain_id())
        .and_then(|chain_id| state.registry.by_symbol(chain_id, "USDC"))
        .cloned()
        .ok_or_else(|| {
            ApiError::new(
                crate::error::ErrorCode::FaucetUnavailable,
                format!("no faucet on {chain:?}"),
            )
            .with_field("chain")
        })
}

fn agent_id(text: &str) -> Result<AgentId, ApiError> {
    AgentId::parse(text).map_err(|_| ApiError::not_found("agent"))
}

/// Creates an agent; the signer generates its wallet and only the address is returned.
#[utoipa::path(
    post, path = "/api/v1/agents", tag = "agents",
    security(("api_key" = ["admin"])),
    request_body = CreateAgentRequest,
    responses(
        (status = 201, description = "The agent", body = AgentResponse),
        (status = 400, description = "Invalid name, chain or policy (a limit above $1,000,000,000, say)", body = ErrorBody),
        (status = 403, description = "The key lacks the admin scope", body = ErrorBody),
        (status = 503, description = "The signer or the policy service is unavailable", body = ErrorBody),
    )
)]
pub async fn create_agent(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    minted: Option<Extension<MintedId>>,
    ApiJson(request): ApiJson<CreateAgentRequest>,
) -> Result<(StatusCode, axum::Json<AgentResponse>), ApiError> {
    principal.require(Scope::Admin)?;
    let policy = request.policy.map(|policy| policy.into_view("policy.")).transpose()?;
    let command = policy::CreateAgent {
        owner: principal.account_id,
        // The same id on every attempt of an idempotent request (see `MintedId`).
        agent_id: minted
            .map_or_else(AgentId::new, |Extension(MintedId(id))| AgentId::from_uuid(id)),
        name: request.name,
        default_chain: request.default_chain,
        policy,
    };
    let view = upstream::call(&state, "policy", &command).await?;
    Ok((StatusCode::CREATED, axum::Json(AgentResponse::new(view))))
}

/// The account's agents.
#[utoipa::path(
    get, path = "/api/v1/agents", tag = "agents",
    security(("api_key" = ["agent", "admin"])),
    responses(
        (status = 200, description = "The agents", body = AgentListResponse),
        (status = 403, description = "The key lacks the agent or admin scope", body = ErrorBody),
    )
)]
pub async fn list_agents(
    State(state): State<Arc<AppState>>,
    principal: Principal,
) -> Result<axum::Json<AgentListResponse>, ApiError> {
    principal.require(Scope::Agent)?;
    let list =
        upstream::call(&state, "policy", &policy::ListAgents { owner: principal.account_id })
            .await?;
    Ok(axum::Json(AgentListResponse {
        agents: list.agents.into_iter().map(AgentResponse::new).collect(),
    }))
}

/// One agent, with its policy and balances.
#[utoipa::path(
    get, path = "/api/v1/agents/{agent_id}", tag = "agents",
    security(("api_key" = ["agent", "admin"])),
    params(("agent_id" = String, Path, description = "The agent (`agt_…`)")),
    responses(
        (status = 200, description = "The agent", body = AgentResponse),
        (status = 400, description = "A path parameter holds a control character such as %00 (`invalid_field` names it)", body = ErrorBody),
        (status = 404, description = "No such agent", body = ErrorBody),
    )
)]
pub async fn get_agent(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    ApiPath(agent): ApiPath<String>,
) -> Result<axum::Json<AgentResponse>, ApiError> {
    principal.require(Scope::Agent)?;
    let agent = agent_id(&agent)?;
    // The agent and its balances are independent questions to two services: ask both at once.
    let get = policy::GetAgent { owner: principal.account_id, agent_id: agent };
    let wallets = ledger::Balances { owner: principal.account_id, agent };
    let (view, balances) = tokio::try_join!(
        upstream::call(&state, "policy", &get),
        upstream::call(&state, "ledger", &wallets),
    )?;
    let mut response = AgentResponse::new(view);
    response.balances = Some(crate::routes::ledger::balance_views(&state, &balances.wallets)?);
    Ok(axum::Json(response))
}

/// Deletes an agent: it can no longer pay and its sessions are revoked; its wallet, balances
/// and payments remain. An agent already deleted is refused with 409 `agent_state`, and nothing
/// changes (deleting is not idempotent: a retry after a lost answer gets that 409, which says
/// the agent is deleted). Payments in flight do not prevent the deletion, which stops the agent
/// at once, and are not cancelled by it: a signed one (`authorized`) stands and its provider may
/// still settle it (or it expires and its hold is released); one waiting for approval can be
/// rejected or left to expire, and approving it fails it (409 `agent_state`).
#[utoipa::path(
    delete, path = "/api/v1/agents/{agent_id}", tag = "agents",
    security(("api_key" = ["admin"])),
    params(("agent_id" = String, Path, description = "The agent (`agt_…`)")),
    responses(
        (status = 200, description = "The deleted agent", body = AgentResponse),
        (status = 400, description = "A path parameter holds a control character such as %00 (`invalid_field` names it)", body = ErrorBody),
        (status = 404, description = "No such agent", body = ErrorBody),
        (status = 409, description = "The agent is already deleted (`agent_state`); nothing changed", body = ErrorBody),
    )
)]
pub async fn delete_agent(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    ApiPath(agent): ApiPath<String>,
) -> Result<axum::Json<AgentResponse>, ApiError> {
    principal.require(Scope::Admin)?;
    let agent = agent_id(&agent)?;
    let view = upstream::call(
        &state,
        "policy",
        &policy::DeleteAgent { owner: principal.account_id, agent_id: agent },
    )
    .await?;
    Ok(axum::Json(AgentResponse::new(view)))
}

/// Replaces an agent's policy.
#[utoipa::path(
    put, path = "/api/v1/agents/{agent_id}/policy", tag = "agents",
    security(("api_key" = ["admin"])),
    params(("agent_id" = String, Path, description = "The agent (`agt_…`)")),
    request_body = PolicyBody,
    responses(
        (status = 200, description = "The agent with its new policy", body = AgentResponse),
        (status = 400, description = "Invalid policy (a limit above $1,000,000,000, say)", body = ErrorBody),
        (status = 404, description = "No such agent", body = ErrorBody),
    )
)]
pub async fn set_policy(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    ApiPath(agent): ApiPath<String>,
    ApiJson(body): ApiJson<PolicyBody>,
) -> Result<axum::Json<AgentResponse>, ApiError> {
    principal.require(Scope::Admin)?;
    let agent = agent_id(&agent)?;
    let command = policy::SetPolicy {
        owner: principal.account_id,
        agent_id: agent,
        policy: body.into_view("")?,
    };
    let view = upstream::call(&state, "policy", &command).await?;
    Ok(axum::Json(AgentResponse::new(view)))
}

/// Funds from the development faucet.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FundRequest {
    /// How much, in the token's units: positive, at most 1000000000 (10^9 whole tokens).
    #[schema(example = "10.00")]
    pub amount: String,
    /// The chain (the agent's default when absent); it must have a faucet (development only).
    #[serde(default)]
    pub chain: Option<String>,
}

/// What the faucet did.
#[derive(Debug, Serialize, ToSchema)]
pub struct FundResponse {
    /// The mint transaction.
    pub tx_hash: String,
    /// The chain.
    pub chain: String,
    /// The amount minted, in the token's units.
    pub amount: String,
    /// The agent's balances afterwards.
    pub balances: Vec<BalanceView>,
}

/// Mints development tokens into an agent's wallet on a development chain and records the
/// deposit in the ledger by its transaction.
#[utoipa::path(
    post, path = "/api/v1/agents/{agent_id}/fund", tag = "agents",
    security(("api_key" = ["admin"])),
    params(("agent_id" = String, Path, description = "The agent (`agt_…`)")),
    request_body = FundRequest,
    responses(
        (status = 200, description = "Minted and recorded", body = FundResponse),
        (status = 400, description = "Invalid amount (not positive, more decimals than the token has, or above 10^9 tokens), or no faucet on the chain", body = ErrorBody),
        (status = 404, description = "No such agent", body = ErrorBody),
        (status = 503, description = "The chain did not confirm in time", body = ErrorBody),
    )
)]
pub async fn fund_agent(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    ApiPath(agent): ApiPath<String>,
    ApiJson(request): ApiJson<FundRequest>,
) -> Result<axum::Json<FundResponse>, ApiError> {
    principal.require(Scope::Admin)?;
    let agent = agent_id(&agent)?;
    let view = super::own_agent(&state, &principal, agent).await?;
    let chain = request.chain.unwrap_or_else(|| view.default_chain.clone());
    let token = faucet_token(&state, &chain)?;
    let amount = super::positive_amount(&request.amount, &token)?;
    let command = awx_api::facilitator::Faucet {
        owner: principal.account_id,
        agent,
        network: chain.clone(),
        to: view.address,
        amount,
    };
    let minted = upstream::call_with_timeout(
        &state,
        "settlement",
        &command,
        std::time::Duration::from_millis(state.settings.settle_timeout_ms),
    )
    .await?;
    let balances =
        upstream::call(&state, "ledger", &ledger::Balances { owner: principal.account_id, agent })
            .await?;
    Ok(axum::Json(FundResponse {
        tx_hash: format!("{:#x}", minted.tx_hash),
        chain,
        amount: amount
            .to_decimal_string(token.decimals)
            .map_err(|error| ApiError::internal("formatting an amount", &error))?,
        balances: crate::routes::ledger::balance_views(&state, &balances.wallets)?,
    }))
}
