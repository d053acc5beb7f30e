//! Agents, their wallets and their policies.
//!
//! Creating an agent asks the signer for a wallet (the signer keeps the key; only the address is
//! stored here), then records the agent and its policy. Both steps are idempotent by the agent's
//! id, so a retried command finds the same wallet and the same row.

use awx_api::policy::{AgentView, PolicyView, codes};
use awx_policy_core::{Policy, UrlPattern, format_usd, parse_usd};
use awx_types::{AccountId, AgentId, Amount};
use awx_x402::Address;
use sqlx::Row as _;
use uuid::Uuid;

use crate::engine::Engine;
use crate::error::Failure;

/// An agent as stored, with its policy.
#[derive(Debug, Clone)]
pub(crate) struct Agent {
    pub(crate) id: Uuid,
    pub(crate) name: String,
    pub(crate) address: Address,
    pub(crate) default_chain: String,
    pub(crate) deleted: bool,
    pub(crate) created_at_unix: i64,
    pub(crate) policy: PolicyView,
}

impl Agent {
    pub(crate) fn view(&self) -> AgentView {
        AgentView {
            id: AgentId::from_uuid(self.id),
            name: self.name.clone(),
            address: self.address,
            default_chain: self.default_chain.clone(),
            status: if self.deleted { "deleted" } else { "active" }.to_owned(),
            policy: self.policy.clone(),
            created_at_unix: self.created_at_unix,
        }
    }

    /// The policy's rules (validated when it was stored).
    pub(crate) fn rules(&self, url_patterns_max: usize) -> Result<Policy, Failure> {
        parse_policy(&self.policy, url_patterns_max).map_err(|error| {
            Failure::internal(format!("stored policy of {} unreadable: {error:?}", self.id))
        })
    }
}

fn usd(text: Option<&str>, field: &str) -> Result<Option<Amount>, Failure> {
    text.map(|text| {
        parse_usd(text).map_err(|error| {
            Failure::invalid(format!("{field}: {text:?} is not a dollar amount ({error})"))
        })
    })
    .transpose()
}

/// Reads `allowed_urls` patterns, at most `max` of them.
pub(crate) fn parse_patterns(texts: &[String], max: usize) -> Result<Vec<UrlPattern>, Failure> {
    if texts.len() > max {
        return Err(Failure::invalid(format!("allowed_urls: at most {max} patterns")));
    }
    texts
        .iter()
        .map(|text| {
            UrlPattern::parse(text)
                .map_err(|error| Failure::invalid(format!("allowed_urls: {text:?}: {error}")))
        })
        .collect()
}

/// Checks a policy as an admin wrote it and returns its rules.
pub(crate) fn parse_policy(view: &PolicyView, url_patterns_max: usize) -> Result<Policy, Failure> {
    let allowed_urls = parse_patterns(&view.allowed_urls, url_patterns_max)?;
    for chain in &view.allowed_chains {
        check_chain(chain, "allowed_chains")?;
    }
    let policy = Policy {
        per_payment_max: usd(view.per_payment_max.as_deref(), "per_payment_max")?,
        daily_limit: usd(view.daily_limit.as_deref(), "daily_limit")?,
        allowed_chains: view.allowed_chains.clone(),
        allowed_urls,
        payee_allowlist: view.payee_allowlist.clone(),
        approval_threshold: usd(view.approval_threshold.as_deref(), "approval_threshold")?,
    };
    policy.validate().map_err(|error| Failure::invalid(error.to_string()))?;
    Ok(policy)
}

/// Refuses a limit or budget sent in a command above the API's bound
/// ([`awx_policy_core::usd_api_max`], $1,000,000,000): `invalid_request` naming `field`.
pub(crate) fn within_usd_max(amount: Option<Amount>, field: &str) -> Result<(), Failure> {
    let max = awx_policy_core::usd_api_max();
    match amount {
        Some(amount) if amount > max => {
            Err(Failure::invalid(format!("{field}: must be at most {}", format_usd(max))))
        }
        Some(_) | None => Ok(()),
    }
}

/// [`parse_policy`] of a policy sent in a command: its limits are also within the API's bound
/// (a policy already stored is read without it).
fn parse_new_policy(view: &PolicyView, url_patterns_max: usize) -> Result<Policy, Failure> {
    let policy = parse_policy(view, url_patterns_max)?;
    within_usd_max(policy.per_payment_max, "per_payment_max")?;
    within_usd_max(policy.daily_limit, "daily_limit")?;
    within_usd_max(policy.approval_threshold, "approval_threshold")?;
    Ok(policy)
}

/// Checks that `chain` is an EVM CAIP-2 network.
pub(crate) fn check_chain(chain: &str, field: &str) -> Result<u64, Failure> {
    awx_x402::Network::parse_caip2(chain)
        .ok()
        .and_then(|network| network.evm_chain_id())
        .ok_or_else(|| {
            Failure::invalid(format!("{field}: {chain:?} is not an EVM CAIP-2 chain (eip155:<id>)"))
        })
}

/// A policy in its canonical written form (amounts as the API writes them).
fn canonical(policy: &Policy) -> PolicyView {
    let show = |amount: Option<Amount>| amount.map(format_usd);
    PolicyView {
        per_payment_max: show(policy.per_payment_max),
        daily_limit: show(policy.daily_limit),
        allowed_chains: policy.allowed_chains.clone(),
        allowed_urls: policy.allowed_urls.iter().map(|p| p.as_str().to_owned()).collect(),
        payee_allowlist: policy.payee_allowlist.clone(),
        approval_threshold: show(policy.approval_threshold),
    }
}

fn lower(address: Address) -> String {
    address.to_string().to_lowercase()
}

fn usd_column(text: Option<String>) -> Result<Option<String>, Failure> {
    text.map(|text| {
        Amount::from_decimal_str(&text, 6)
            .map(format_usd)
            .map_err(|error| Failure::internal(format!("stored amount {text:?}: {error}")))
    })
    .transpose()
}

const AGENT_COLUMNS: &str =
    "a.id, a.owner, a.name, a.address, a.default_chain, a.deleted_at IS NOT NULL,
     extract(epoch FROM a.created_at)::bigint, p.per_payment_max::text, p.daily_limit::text,
     p.allowed_chains, p.allowed_urls, p.payee_allowlist, p.approval_threshold::text";

fn agent_from_row(row: &sqlx::postgres::PgRow) -> Result<Agent, Failure> {
    let address: String = row.get(3);
    let payees: Vec<String> = row.get(11);
    Ok(Agent {
        id: row.get(0),
        name: row.get(2),
        address: address.parse().map_err(Failure::internal)?,
        default_chain: row.get(4),
        deleted: row.get(5),
        created_at_unix: row.get(6),
        policy: PolicyView {
            per_payment_max: usd_column(row.get(7))?,
            daily_limit: usd_column(row.get(8))?,
            allowed_chains: row.get(9),
            allowed_urls: row.get(10),
            payee_allowlist: payees
                .iter()
                .map(|payee| payee.parse().map_err(Failure::internal))
                .collect::<Result<_, _>>()?,
            approval_threshold: usd_column(row.get(12))?,
        },
    })
}

/// The agent `id` of `owner`, deleted or not; `lock` takes its row lock (in `conn`'s
/// transaction).
pub(crate) async fn load(
    conn: &mut sqlx::PgConnection,
    owner: AccountId,
    id: AgentId,
    lock: bool,
) -> Result<Option<Agent>, Failure> {
    let sql = format!(
        "SELECT {AGENT_COLUMNS} FROM policy.agents a JOIN policy.policies p ON p.agent_id = a.id
         WHERE a.id = $1 AND a.owner = $2{}",
        if lock { " FOR UPDATE OF a" } else { "" }
    );
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id.as_uuid())
        .bind(owner.as_uuid())
        .fetch_optional(&mut *conn)
        .await?;
    row.as_ref().map(agent_from_row).transpose()
}

/// The live (not deleted) agent, or `agent_not_found`.
pub(crate) async fn live(
    conn: &mut sqlx::PgConnection,
    owner: AccountId,
    id: AgentId,
    lock: bool,
) -> Result<Agent, Failure> {
    match load(conn, owner, id, lock).await? {
        Some(agent) if !agent.deleted => Ok(agent),
        _ => Err(Failure::reject(codes::AGENT_NOT_FOUND, format!("no agent {id}"))),
    }
}

/// The agent whose wallet is `address`, if any.
pub(crate) async fn by_address(engine: &Engine, address: Address) -> Result<Option<Uuid>, Failure> {
    Ok(sqlx::query_scalar("SELECT id FROM policy.agents WHERE address = $1")
        .bind(lower(address))
        .fetch_optional(&engine.pool)
        .await?)
}

/// Creates an agent (or returns it, when the command is retried).
pub(crate) async fn create(
    engine: &Engine,
    command: &awx_api::policy::CreateAgent,
) -> Result<AgentView, Failure> {
    let name = command.name.trim();
    if name.is_empty() || name.chars().count() > 200 {
        return Err(Failure::invalid("name: 1 to 200 characters"));
    }
    let default_chain =
        command.default_chain.clone().unwrap_or_else(|| engine.settings.default_chain.clone());
    check_chain(&default_chain, "default_chain")?;
    let requested = command.policy.clone().unwrap_or_default();
    let rules = parse_new_policy(&requested, engine.settings.url_patterns_max)?;
    let policy = canonical(&rules);

    let mut conn = engine.pool.acquire().await?;
    if let Some(existing) = load(&mut conn, command.owner, command.agent_id, false).await? {
        return Ok(existing.view());
    }
    drop(conn);
    let wallet = engine
        .bus
        .send(
            &awx_api::signer::CreateWallet { agent_id: command.agent_id },
            engine.upstream_timeout(),
        )
        .await
        .map_err(|error| match error {
            awx_bus::BusError::Rejected { code, message } => {
                Failure::internal(format!("the signer refused a wallet ({code}): {message}"))
            }
            other => Failure::reject(
                codes::SIGNER_UNAVAILABLE,
                format!("the signer did not create the wallet: {other}"),
            ),
        })?;
    // The facilitator must know the wallet as ours before the agent exists: from then on a
    // payment of this agent is never treated as an outside payer's (settled on chain directly).
    engine
        .bus
        .send(
            &awx_api::facilitator::RegisterWallet {
                agent_id: command.agent_id,
                address: wallet.address,
            },
            engine.upstream_timeout(),
        )
        .await
        .map_err(|error| {
            Failure::reject(
                codes::SETTLEMENT_UNAVAILABLE,
                format!("the settlement service did not record the agent's wallet: {error}"),
            )
        })?;
    let mut tx = engine.pool.begin().await?;
    let inserted = sqlx::query(
        "INSERT INTO policy.agents (id, owner, name, address, default_chain) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (id) DO NOTHING",
    )
    .bind(command.agent_id.as_uuid())
    .bind(command.owner.as_uuid())
    .bind(name)
    .bind(lower(wallet.address))
    .bind(&default_chain)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if inserted == 1 {
        write_policy(&mut tx, command.agent_id.as_uuid(), &policy).await?;
    }
    let agent = load(&mut tx, command.owner, command.agent_id, false).await?.ok_or_else(|| {
        Failure::reject(codes::CONFLICT, "the agent id belongs to another account")
    })?;
    tx.commit().await?;
    Ok(agent.view())
}

async fn write_policy(
    conn: &mut sqlx::PgConnection,
    agent: Uuid,
    policy: &PolicyView,
) -> Result<(), Failure> {
    let payees: Vec<String> = policy.payee_allowlist.iter().map(|a| lower(*a)).collect();
    sqlx::query(
        "INSERT INTO policy.policies (agent_id, per_payment_max, daily_limit, allowed_chains,
           allowed_urls, payee_allowlist, approval_threshold, updated_at)
         VALUES ($1, $2::numeric, $3::numeric, $4, $5, $6, $7::numeric, now())
         ON CONFLICT (agent_id) DO UPDATE SET per_payment_max = EXCLUDED.per_payment_max,
           daily_limit = EXCLUDED.daily_limit, allowed_chains = EXCLUDED.allowed_chains,
           allowed_urls = EXCLUDED.allowed_urls, payee_allowlist = EXCLUDED.payee_allowlist,
           approval_threshold = EXCLUDED.approval_threshold, updated_at = now()",
    )
    .bind(agent)
    .bind(policy.per_payment_max.as_deref())
    .bind(policy.daily_limit.as_deref())
    .bind(&policy.allowed_chains)
    .bind(&policy.allowed_urls)
    .bind(&payees)
    .bind(policy.approval_threshold.as_deref())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// One live agent.
pub(crate) async fn get(
    engine: &Engine,
    owner: AccountId,
    id: AgentId,
) -> Result<AgentView, Failure> {
    let mut conn = engine.pool.acquire().await?;
    Ok(live(&mut conn, owner, id, false).await?.view())
}

/// The account's live agents, newest first.
pub(crate) async fn list(engine: &Engine, owner: AccountId) -> Result<Vec<AgentView>, Failure> {
    let sql = format!(
        "SELECT {AGENT_COLUMNS} FROM policy.agents a JOIN policy.policies p ON p.agent_id = a.id
         WHERE a.owner = $1 AND a.deleted_at IS NULL ORDER BY a.created_at DESC, a.id LIMIT 1000"
    );
    let rows =
        sqlx::query(sqlx::AssertSqlSafe(sql)).bind(owner.as_uuid()).fetch_all(&engine.pool).await?;
    rows.iter().map(|row| agent_from_row(row).map(|agent| agent.view())).collect()
}

/// Deletes an agent and revokes its sessions. An agent already deleted is refused with
/// `agent_state` and nothing changes (deleting is not idempotent); an unknown one is
/// `agent_not_found`.
///
/// Payments in flight do not stop a deletion (it is how an owner stops an agent at once), and it
/// does not cancel them: one already signed (`authorized`) stands, and its provider may still
/// settle it (or it expires and its hold is released); one waiting for approval can still be
/// rejected, or expires, and approving it fails it with `agent_state`.
pub(crate) async fn delete(
    engine: &Engine,
    owner: AccountId,
    id: AgentId,
) -> Result<AgentView, Failure> {
    let mut tx = engine.pool.begin().await?;
    let mut agent = load(&mut tx, owner, id, true)
        .await?
        .ok_or_else(|| Failure::reject(codes::AGENT_NOT_FOUND, format!("no agent {id}")))?;
    if agent.deleted {
        tx.rollback().await?;
        return Err(Failure::reject(
            codes::AGENT_STATE,
            format!("the agent {id} is deleted: only an active agent can be deleted"),
        ));
    }
    sqlx::query("UPDATE policy.agents SET deleted_at = now() WHERE id = $1")
        .bind(id.as_uuid())
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "UPDATE policy.sessions SET revoked_at = now() WHERE agent_id = $1 AND revoked_at IS NULL",
    )
    .bind(id.as_uuid())
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    agent.deleted = true;
    Ok(agent.view())
}

/// Replaces an agent's policy.
pub(crate) async fn set_policy(
    engine: &Engine,
    command: &awx_api::policy::SetPolicy,
) -> Result<AgentView, Failure> {
    let rules = parse_new_policy(&command.policy, engine.settings.url_patterns_max)?;
    let policy = canonical(&rules);
    let mut tx = engine.pool.begin().await?;
    let mut agent = live(&mut tx, command.owner, command.agent_id, true).await?;
    write_policy(&mut tx, agent.id, &policy).await?;
    tx.commit().await?;
    agent.policy = policy;
    Ok(agent.view())
}
