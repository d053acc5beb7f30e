//! An admin's decision on a payment waiting for approval: approve (then it is held and signed
//! like any payment) or reject (its reservation is released).
//!
//! Only a payment in `pending_approval` can be decided. Any other state (`authorizing`,
//! `authorized` or `captured`, whether it was approved earlier or never waited; `rejected`,
//! `failed`, `expired`) is refused with `payment_state`, naming the state, and nothing changes:
//! a decision is not idempotent by itself (the gateway's `Idempotency-Key` replays the first
//! answer to a retry, and a redelivered command is answered from the inbox).

use awx_api::policy::{Decide, PaymentView, codes};
use awx_types::{AccountId, SessionId};

use crate::engine::{Engine, now_unix};
use crate::error::Failure;
use crate::{agents, pay, payments, sessions};

/// Approves or rejects a payment in `pending_approval`; any other state is refused with
/// `payment_state` and nothing changes.
pub(crate) async fn decide(
    engine: &Engine,
    bus_tx: &mut sqlx::PgConnection,
    command: &Decide,
) -> Result<PaymentView, Failure> {
    let mut tx = engine.pool.begin().await?;
    let mut payment = payments::owned(&mut tx, command.owner, command.ledger_id, true).await?;
    if payment.state != "pending_approval" {
        tx.rollback().await?;
        let verb = if command.approve { "approved" } else { "rejected" };
        return Err(Failure::reject(
            codes::PAYMENT_STATE,
            format!(
                "the payment is {}: only a payment in pending_approval can be {verb}",
                payment.state
            ),
        ));
    }
    let reason = command.reason.as_deref().map(|r| r.chars().take(500).collect::<String>());
    sqlx::query(
        "UPDATE policy.payments SET decided_by = $2, decision_reason = $3, decided_at = now() WHERE id = $1",
    )
    .bind(payment.id)
    .bind(&command.decided_by)
    .bind(reason.as_deref())
    .execute(&mut *tx)
    .await?;
    if !command.approve {
        let message = reason.unwrap_or_else(|| "rejected by an admin".into());
        payments::release(&mut tx, &mut payment, "rejected", Some(("rejected", &message)), false)
            .await?;
        tx.commit().await?;
        return Ok(payment.view());
    }
    // The agent and the session must still allow paying.
    let owner = AccountId::from_uuid(payment.owner);
    let agent_gone =
        agents::load(&mut tx, owner, awx_types::AgentId::from_uuid(payment.agent_id), false)
            .await?
            .is_none_or(|agent| agent.deleted);
    let session_refusal = match payment.session_id {
        Some(session_id) => {
            let session =
                sessions::load(&mut tx, owner, SessionId::from_uuid(session_id), false).await?;
            let now = now_unix();
            if session.rules.revoked {
                Some(("session.revoked", "the session was revoked while the payment waited"))
            } else if now >= session.rules.expires_at_unix {
                Some(("session.expired", "the session expired while the payment waited"))
            } else {
                None
            }
        }
        None => None,
    };
    let refusal = if agent_gone {
        Some((codes::AGENT_STATE, "the agent was deleted while the payment waited"))
    } else {
        session_refusal
    };
    if let Some((code, message)) = refusal {
        payments::release(&mut tx, &mut payment, "failed", Some((code, message)), false).await?;
        tx.commit().await?;
        return Err(Failure::reject(code, message));
    }
    sqlx::query(
        "UPDATE policy.payments SET state = 'authorizing', updated_at = now(),
           deadline = now() + make_interval(secs => $2) WHERE id = $1",
    )
    .bind(payment.id)
    .bind(i64::try_from(engine.settings.authorizing_timeout_seconds).map_err(Failure::internal)?)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    pay::authorize(engine, bus_tx, payment.id).await
}

/// One payment of the account.
pub(crate) async fn get(
    engine: &Engine,
    owner: AccountId,
    id: awx_types::LedgerId,
) -> Result<PaymentView, Failure> {
    let mut conn = engine.pool.acquire().await?;
    Ok(payments::owned(&mut conn, owner, id, false).await?.view())
}
