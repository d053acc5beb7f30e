//! Releases what payments no longer need, so nothing stays reserved or held by accident:
//!
//! - a payment still `authorizing` past its deadline (a crash or a lost answer mid-way): its hold
//!   is released and its reservation given back (`failed`, `authorization_timeout`);
//! - a payment `pending_approval` past the approval window: `expired`;
//! - an `authorized` payment never captured once its authorization's `validBefore` (plus a
//!   grace) has passed: if the chain shows its nonce unused, nothing can be paid with it any
//!   more, so its hold and its session dollars are released (`expired`); if the chain shows it
//!   used (a provider settled it through another facilitator), it is captured instead, and stays
//!   spent (see [`crate::expiry`]); if the chain cannot be read, it waits;
//! - a failed payment whose hold could not be released at the time: released now.
//!
//! Each row is handled under its lock with `SKIP LOCKED`, so several replicas sweep safely and a
//! payment being worked on is left alone. A hold is released after its payment's state has
//! changed (`void_needed` marks it until the ledger confirms).

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::engine::{Engine, now_unix};
use crate::error::Failure;
use crate::expiry::{self, Expiry};
use crate::{pay, payments};

/// The policy's grace after `validBefore`, in seconds.
fn grace(engine: &Engine) -> i64 {
    i64::try_from(engine.settings.expiry_grace_seconds).unwrap_or(i64::MAX)
}

/// Moves a payment's next sweep to `at_unix`.
async fn postpone(conn: &mut sqlx::PgConnection, id: Uuid, at_unix: i64) -> Result<(), Failure> {
    sqlx::query(
        "UPDATE policy.payments SET deadline = to_timestamp($2), updated_at = now() WHERE id = $1",
    )
    .bind(id)
    .bind(at_unix)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// One pass; returns how many payments it finished.
pub async fn sweep_once(engine: &Engine) -> Result<usize, Failure> {
    let due: Vec<(Uuid, String)> = sqlx::query_as(
        "SELECT id, state FROM policy.payments
         WHERE state IN ('pending_approval', 'authorizing', 'authorized') AND deadline < now()
         ORDER BY deadline LIMIT 200",
    )
    .fetch_all(&engine.pool)
    .await?;
    let mut done = 0_usize;
    for (id, state) in due {
        match sweep_one(engine, id, &state).await {
            Ok(true) => done = done.saturating_add(1),
            Ok(false) => {}
            Err(error) => {
                // One payment that cannot be swept must not stop the others (it comes back
                // after a minute).
                tracing::error!(payment = %id, error.message = %error, "sweeping a payment failed; retrying it later");
                let _ =
                    postpone(&mut *engine.pool.acquire().await?, id, now_unix().saturating_add(60))
                        .await;
            }
        }
    }
    let to_void: Vec<Uuid> = sqlx::query_scalar(
        "SELECT id FROM policy.payments WHERE void_needed ORDER BY updated_at LIMIT 200",
    )
    .fetch_all(&engine.pool)
    .await?;
    for id in to_void {
        if pay::void_hold(engine, id).await {
            sqlx::query("UPDATE policy.payments SET void_needed = false WHERE id = $1")
                .bind(id)
                .execute(&engine.pool)
                .await?;
            done = done.saturating_add(1);
        }
    }
    Ok(done)
}

/// Sweeps one due payment; `true` when it was finished (released, captured or recovered).
async fn sweep_one(engine: &Engine, id: Uuid, state: &str) -> Result<bool, Failure> {
    // The state changes first, under the row's lock, so a pay path finishing at the same
    // moment finds the payment no longer `authorizing` and never shows its signature; the
    // hold is released after the commit (and retried until it is).
    let mut tx = engine.pool.begin().await?;
    let locked: Option<Uuid> = sqlx::query_scalar(
        "SELECT id FROM policy.payments WHERE id = $1 AND state = $2 AND deadline < now()
         FOR UPDATE SKIP LOCKED",
    )
    .bind(id)
    .bind(state)
    .fetch_optional(&mut *tx)
    .await?;
    if locked.is_none() {
        return Ok(false);
    }
    let Some(mut payment) = payments::load(&mut tx, id, false).await? else { return Ok(false) };
    if state == "authorized" {
        // Released only when the chain says the authorization expired unused.
        match expiry::check(engine, &payment).await {
            Expiry::Unused => match expiry::hold_status(engine, &payment).await {
                Ok(Some(status)) if status == "captured" => {
                    expiry::recover_capture(engine, &mut tx, &mut payment).await?;
                    tx.commit().await?;
                    return Ok(true);
                }
                Ok(_) => {}
                Err(why) => {
                    tracing::warn!(payment = %id, why, "the ledger did not say whether the hold was captured; asking again later");
                    postpone(&mut tx, id, now_unix().saturating_add(grace(engine))).await?;
                    tx.commit().await?;
                    return Ok(false);
                }
            },
            Expiry::NotYet { valid_before } => {
                postpone(&mut tx, id, valid_before.saturating_add(grace(engine))).await?;
                tx.commit().await?;
                return Ok(false);
            }
            Expiry::Unknown(why) => {
                tracing::warn!(payment = %id, why, "cannot tell whether an expired authorization was used on chain; asking again later");
                postpone(&mut tx, id, now_unix().saturating_add(grace(engine))).await?;
                tx.commit().await?;
                return Ok(false);
            }
            Expiry::Used(tx_hash) => {
                if !expiry::capture_paid_elsewhere(engine, &mut tx, &mut payment, tx_hash).await? {
                    postpone(&mut tx, id, now_unix().saturating_add(3_600)).await?;
                }
                tx.commit().await?;
                return Ok(true);
            }
        }
    }
    let (to, code, message) = match state {
        "authorizing" => (
            "failed",
            "authorization_timeout",
            "the payment did not complete in time; nothing is reserved",
        ),
        "pending_approval" => ("expired", "approval_expired", "no admin decided in time"),
        _ => (
            "expired",
            "authorization_expired",
            "the authorization expired without being settled; its funds were released",
        ),
    };
    let holds = state != "pending_approval";
    payments::release(&mut tx, &mut payment, to, Some((code, message)), holds).await?;
    tx.commit().await?;
    Ok(true)
}

/// Sweeps every `interval` until cancelled.
pub async fn run(engine: Arc<Engine>, interval: Duration, cancel: CancellationToken) {
    loop {
        match sweep_once(&engine).await {
            Ok(0) => {}
            Ok(count) => tracing::info!(count, "swept payments"),
            Err(error) => tracing::warn!(error.message = %error, "sweeping payments failed"),
        }
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(interval) => {}
        }
    }
}
