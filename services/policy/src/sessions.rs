//! Sessions: a budget in dollars for one agent on one chain, for a while, for some URLs.
//!
//! `spent` and `reserved` change only under the session row's lock (`SELECT … FOR UPDATE`), and
//! a database check keeps `spent + reserved <= budget_limit`, so concurrent payments can never
//! overspend a session, on any number of replicas.

use awx_api::policy::{CreateSession, SessionView, codes};
use awx_policy_core::{Session, SessionStatus, UrlPattern, format_usd, parse_usd};
use awx_types::{AccountId, AgentId, Amount, SessionId};
use sqlx::Row as _;
use uuid::Uuid;

use crate::agents::{self, check_chain};
use crate::engine::{Engine, now_unix};
use crate::error::Failure;

/// A session as stored.
#[derive(Debug, Clone)]
pub(crate) struct StoredSession {
    pub(crate) id: Uuid,
    pub(crate) agent_id: Uuid,
    pub(crate) created_at_unix: i64,
    pub(crate) rules: Session,
}

impl StoredSession {
    pub(crate) fn view(&self, now: i64) -> SessionView {
        let rules = &self.rules;
        SessionView {
            id: SessionId::from_uuid(self.id),
            agent_id: AgentId::from_uuid(self.agent_id),
            budget_limit: format_usd(rules.budget),
            spent: format_usd(rules.spent),
            reserved: format_usd(rules.reserved),
            remaining: format_usd(rules.remaining()),
            chain: rules.chain.clone(),
            allowed_urls: rules.allowed_urls.iter().map(|p| p.as_str().to_owned()).collect(),
            status: rules.status(now).as_str().to_owned(),
            expires_at_unix: rules.expires_at_unix,
            created_at_unix: self.created_at_unix,
        }
    }
}

fn usd_column(text: &str) -> Result<Amount, Failure> {
    Amount::from_decimal_str(text, 6)
        .map_err(|error| Failure::internal(format!("stored amount {text:?}: {error}")))
}

/// The session `id` of `owner`; `lock` takes its row lock (in `conn`'s transaction).
pub(crate) async fn load(
    conn: &mut sqlx::PgConnection,
    owner: AccountId,
    id: SessionId,
    lock: bool,
) -> Result<StoredSession, Failure> {
    let sql = format!(
        "SELECT id, owner, agent_id, budget_limit::text, spent::text, reserved::text, chain,
           allowed_urls, extract(epoch FROM expires_at)::bigint, revoked_at IS NOT NULL,
           extract(epoch FROM created_at)::bigint
         FROM policy.sessions WHERE id = $1 AND owner = $2{}",
        if lock { " FOR UPDATE" } else { "" }
    );
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id.as_uuid())
        .bind(owner.as_uuid())
        .fetch_optional(&mut *conn)
        .await?
        .ok_or_else(|| Failure::reject(codes::SESSION_NOT_FOUND, format!("no session {id}")))?;
    let patterns: Vec<String> = row.get(7);
    Ok(StoredSession {
        id: row.get(0),
        agent_id: row.get(2),
        created_at_unix: row.get(10),
        rules: Session {
            budget: usd_column(row.get(3))?,
            spent: usd_column(row.get(4))?,
            reserved: usd_column(row.get(5))?,
            expires_at_unix: row.get(8),
            revoked: row.get(9),
            chain: row.get(6),
            allowed_urls: patterns
                .iter()
                .map(|text| UrlPattern::parse(text).map_err(Failure::internal))
                .collect::<Result<_, _>>()?,
        },
    })
}

/// Writes a session's counters back (in the transaction holding its lock).
pub(crate) async fn save_counters(
    conn: &mut sqlx::PgConnection,
    session: &StoredSession,
) -> Result<(), Failure> {
    sqlx::query(
        "UPDATE policy.sessions SET spent = $2::numeric, reserved = $3::numeric WHERE id = $1",
    )
    .bind(session.id)
    .bind(format_usd(session.rules.spent))
    .bind(format_usd(session.rules.reserved))
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Opens a session (or returns it, when the command is retried).
pub(crate) async fn create(
    engine: &Engine,
    command: &CreateSession,
) -> Result<SessionView, Failure> {
    let budget = parse_usd(&command.budget_limit).map_err(|error| {
        Failure::invalid(format!(
            "budget_limit: {:?} is not a dollar amount ({error})",
            command.budget_limit
        ))
    })?;
    if budget.is_zero() {
        return Err(Failure::invalid("budget_limit must be positive"));
    }
    agents::within_usd_max(Some(budget), "budget_limit")?;
    let ttl_max = engine.settings.session_ttl_seconds_max;
    if command.ttl_seconds == 0 || command.ttl_seconds > ttl_max {
        return Err(Failure::invalid(format!("ttl_seconds must be 1 to {ttl_max}")));
    }
    let patterns = agents::parse_patterns(&command.allowed_urls, engine.settings.url_patterns_max)?;
    let mut tx = engine.pool.begin().await?;
    let agent = agents::live(&mut tx, command.owner, command.agent_id, false).await?;
    let chain = command.chain.clone().unwrap_or_else(|| agent.default_chain.clone());
    check_chain(&chain, "chain")?;
    let rules = agent.rules(engine.settings.url_patterns_max)?;
    if !rules.allowed_chains.is_empty() && !rules.allowed_chains.contains(&chain) {
        return Err(Failure::reject(
            "policy.allowed_chains",
            format!("the agent's policy does not allow paying on {chain}"),
        ));
    }
    let ttl = i64::try_from(command.ttl_seconds).map_err(Failure::internal)?;
    let pattern_texts: Vec<String> = patterns.iter().map(|p| p.as_str().to_owned()).collect();
    sqlx::query(
        "INSERT INTO policy.sessions (id, owner, agent_id, budget_limit, chain, allowed_urls, expires_at)
         VALUES ($1, $2, $3, $4::numeric, $5, $6, now() + make_interval(secs => $7))
         ON CONFLICT (id) DO NOTHING",
    )
    .bind(command.session_id.as_uuid())
    .bind(command.owner.as_uuid())
    .bind(command.agent_id.as_uuid())
    .bind(format_usd(budget))
    .bind(&chain)
    .bind(&pattern_texts)
    .bind(ttl)
    .execute(&mut *tx)
    .await?;
    let session = load(&mut tx, command.owner, command.session_id, false).await.map_err(|_| {
        Failure::reject(codes::CONFLICT, "the session id belongs to another account")
    })?;
    if session.agent_id != command.agent_id.as_uuid() {
        return Err(Failure::reject(codes::CONFLICT, "the session id was used for another agent"));
    }
    tx.commit().await?;
    Ok(session.view(now_unix()))
}

/// One session.
pub(crate) async fn get(
    engine: &Engine,
    owner: AccountId,
    id: SessionId,
) -> Result<SessionView, Failure> {
    let mut conn = engine.pool.acquire().await?;
    Ok(load(&mut conn, owner, id, false).await?.view(now_unix()))
}

/// Revokes a session that is still in force (`active` or `exhausted`). A session already
/// revoked (by its owner, or when its agent was deleted) or expired is refused with
/// `session_state`, naming its status, and nothing changes: revoking is not idempotent.
pub(crate) async fn revoke(
    engine: &Engine,
    owner: AccountId,
    id: SessionId,
) -> Result<SessionView, Failure> {
    let mut tx = engine.pool.begin().await?;
    let mut session = load(&mut tx, owner, id, true).await?;
    let now = now_unix();
    match session.rules.status(now) {
        SessionStatus::Active | SessionStatus::Exhausted => {}
        status @ (SessionStatus::Revoked | SessionStatus::Expired) => {
            tx.rollback().await?;
            return Err(Failure::reject(
                codes::SESSION_STATE,
                format!(
                    "the session is {}: only a session in force (active or exhausted) can be revoked",
                    status.as_str()
                ),
            ));
        }
    }
    sqlx::query("UPDATE policy.sessions SET revoked_at = now() WHERE id = $1")
        .bind(session.id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    session.rules.revoked = true;
    Ok(session.view(now))
}
