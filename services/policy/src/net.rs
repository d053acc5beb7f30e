//! Decisions for net transfers: the batch settlement worker asks for one before the signer signs
//! a transfer from an agent's wallet for the sum of captured payments.
//!
//! The policy service owns each payment from request to capture, so it is the one that can say
//! "these payments are captured, were paid from this wallet in this token on this chain, go to
//! this payee, and their amounts (or fees) add up to exactly this value". Only then does it sign
//! a decision (`awx-decision`) whose `covers` binds the kind and the exact set of payments; the
//! signer refuses anything else, and keeps each payment in at most one signed net transfer of
//! each kind. A transfer of kind `withdrawal` is refused here: a withdrawal is approved only by
//! `WithdrawDecide` ([`crate::withdrawals`]).

use awx_api::policy::{NetDecide, NetDecision, NetKind, codes};
use awx_decision::{Covers, DecisionClaims};
use awx_types::{AgentId, Amount};
use awx_x402::{Address, TokenDomain, U256};
use sqlx::Row as _;
use uuid::Uuid;

use crate::engine::{Engine, now_unix};
use crate::error::Failure;

/// The decision for `command`, after checking every payment it covers (see the module docs).
pub(crate) async fn net_decide(
    engine: &Engine,
    command: &NetDecide,
) -> Result<NetDecision, Failure> {
    if command.kind == NetKind::Withdrawal {
        return Err(Failure::invalid(
            "a withdrawal is decided by WithdrawDecide only, not as a net transfer",
        ));
    }
    let ids: Vec<Uuid> = command.payment_ids.iter().map(|id| id.as_uuid()).collect();
    if ids.is_empty() {
        return Err(Failure::invalid("a net transfer covers at least one payment"));
    }
    let rows = sqlx::query(
        "SELECT id, agent_id, state, chain_id, token, payer, pay_to, amount::text, coalesce(fee, 0)::text,
                token_name, token_version
         FROM policy.payments WHERE id = ANY($1)",
    )
    .bind(&ids)
    .fetch_all(&engine.pool)
    .await?;
    let mut distinct = ids.clone();
    distinct.sort_unstable();
    distinct.dedup();
    if rows.len() != ids.len() || distinct.len() != ids.len() {
        return Err(Failure::reject(
            codes::PAYMENT_NOT_FOUND,
            format!("{} of {} payments are known (each must be named once)", rows.len(), ids.len()),
        ));
    }
    let authorization = &command.authorization;
    let text = |address: Address| address.to_string().to_lowercase();
    let mut agent: Option<Uuid> = None;
    let mut domain: Option<(String, String)> = None;
    let mut sum = Amount::ZERO;
    for row in &rows {
        let id: Uuid = row.get(0);
        let state: String = row.get(2);
        if !matches!(state.as_str(), "captured" | "settled") {
            return Err(Failure::reject(
                codes::PAYMENT_STATE,
                format!("payment {id} is {state}, not captured"),
            ));
        }
        let row_agent: Uuid = row.get(1);
        if *agent.get_or_insert(row_agent) != row_agent {
            return Err(Failure::invalid("the payments belong to more than one agent"));
        }
        let chain_id: i64 = row.get(3);
        let token: String = row.get(4);
        let payer: String = row.get(5);
        let pay_to: String = row.get(6);
        if u64::try_from(chain_id).ok() != Some(command.chain_id)
            || token != text(command.token)
            || payer != text(authorization.from)
        {
            return Err(Failure::invalid(format!(
                "payment {id} was not paid from {} in {} on chain {}",
                authorization.from, command.token, command.chain_id
            )));
        }
        if command.kind == NetKind::Payee && pay_to != text(authorization.to) {
            return Err(Failure::invalid(format!(
                "payment {id} goes to {pay_to}, not {}",
                authorization.to
            )));
        }
        let part: String = row.get(if command.kind == NetKind::Payee { 7 } else { 8 });
        let part = Amount::parse_atomic(&part).map_err(Failure::internal)?;
        sum = sum.checked_add(part).map_err(Failure::internal)?;
        let names: (String, String) = (row.get(9), row.get(10));
        if *domain.get_or_insert_with(|| names.clone()) != names {
            return Err(Failure::invalid("the payments name more than one token domain"));
        }
    }
    if U256::from(sum.atomic()) != authorization.value || sum.is_zero() {
        return Err(Failure::invalid(format!(
            "the payments' {} add up to {sum}, not {}",
            if command.kind == NetKind::Payee { "amounts" } else { "fees" },
            authorization.value
        )));
    }
    let (Some(agent), Some((token_name, token_version))) = (agent, domain) else {
        return Err(Failure::internal("no payment was read"));
    };
    let agent_id = AgentId::from_uuid(agent);
    let token_domain = TokenDomain {
        name: token_name.clone(),
        version: token_version.clone(),
        chain_id: command.chain_id,
        verifying_contract: command.token,
    };
    let covered: Vec<String> = ids.iter().map(Uuid::to_string).collect();
    let claims = DecisionClaims::new(
        &command.transfer_id.to_string(),
        &agent_id.to_string(),
        now_unix(),
        engine.settings.decision_lifetime_seconds,
        command.chain_id,
        &token_domain,
        authorization,
    )
    .covering(Covers::of(command.kind.as_str(), &covered));
    let decision = engine.decision_key.sign(&claims).map_err(Failure::internal)?;
    Ok(NetDecision { decision, agent_id, token_name, token_version })
}
