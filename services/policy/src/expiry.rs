//! What becomes of an authorization that expired without being settled through us.
//!
//! Most x402 APIs settle through other facilitators, which submit the agent's authorization on
//! chain without telling awx. So when an `authorized` payment's `validBefore` has passed, its
//! funds are released only if the chain says the nonce is unused (`authorizationState`, read by
//! the settlement service after `validBefore`: from then on it is final). A used nonce means the
//! payment was paid on chain: it is captured in the ledger (the session and the daily window
//! keep it as spent), and the settlement service records its item as settled externally by that
//! transaction, so the ledger's payout is posted and the fee collected. A chain that cannot be
//! read leaves the payment as it is, to be asked again.
//!
//! An unused one is released only after the ledger says its hold is not captured: a settle whose
//! answer was lost (cancelled at the caller's deadline after the ledger committed the capture)
//! leaves the payment `authorized` with its hold captured. Such a capture is recovered, not
//! undone: the payment becomes `captured`, and its `payment.captured` event queues its item for
//! net settlement.

use awx_api::facilitator::{AuthorizationState, RecordExternal};
use awx_api::ledger::{Capture, HoldStatus};
use awx_api::policy::PaymentCaptured;
use awx_types::LedgerId;
use awx_x402::B256;
use sqlx::PgConnection;

use crate::engine::{Engine, now_unix};
use crate::error::Failure;
use crate::own::captured;
use crate::payments::Payment;

/// What the chain says of an expired authorization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Expiry {
    /// `validBefore` has not passed yet (by our clock): nothing is final.
    NotYet {
        /// The authorization's `validBefore` (Unix seconds).
        valid_before: i64,
    },
    /// Unused after expiry: its funds may be released.
    Unused,
    /// Used on chain by this transaction.
    Used(B256),
    /// The chain could not be read (or the use's transaction not found): ask again later.
    Unknown(String),
}

/// Asks the settlement service what the chain says of `payment`'s authorization.
pub(crate) async fn check(engine: &Engine, payment: &Payment) -> Expiry {
    let (Some(valid_before), Some(nonce)) = (payment.valid_before, payment.nonce) else {
        // Never signed: nothing can have been paid with it.
        return Expiry::Unused;
    };
    if now_unix() <= valid_before {
        return Expiry::NotYet { valid_before };
    }
    let query = AuthorizationState {
        network: payment.network.clone(),
        token: payment.token,
        payer: payment.payer,
        nonce,
    };
    match engine.bus.send(&query, engine.upstream_timeout()).await {
        Ok(status) if !status.used => Expiry::Unused,
        Ok(status) => match status.tx_hash {
            Some(hash) => Expiry::Used(hash),
            None => Expiry::Unknown(
                "the nonce is used on chain but its AuthorizationUsed log was not found (canceled?)".into(),
            ),
        },
        Err(error) => Expiry::Unknown(error.to_string()),
    }
}

/// Captures a payment the chain shows paid by `tx_hash`, in `conn`'s transaction (which holds the
/// payment's lock), and has the settlement service record it as settled externally. `false` when
/// the ledger no longer holds its funds (released by the ledger's own timeout): that needs an
/// operator, and is logged as an error.
pub(crate) async fn capture_paid_elsewhere(
    engine: &Engine,
    conn: &mut PgConnection,
    payment: &mut Payment,
    tx_hash: B256,
) -> Result<bool, Failure> {
    let capture = Capture { hold_id: LedgerId::from_uuid(payment.id), amount: None };
    match engine.bus.send(&capture, engine.upstream_timeout()).await {
        Ok(_) => {}
        Err(awx_bus::BusError::Rejected { code, message }) => {
            tracing::error!(payment = %payment.id, %tx_hash, code = %code, error.message = %message,
                "a payment was paid on chain outside awx but its hold cannot be captured; an operator must reconcile it");
            metrics::counter!("policy_paid_elsewhere_unreconciled_total").increment(1);
            return Ok(false);
        }
        Err(error) => {
            return Err(Failure::Internal(format!("the ledger did not capture in time: {error}")));
        }
    }
    let at: i64 = sqlx::query_scalar(
        "UPDATE policy.payments SET state = 'captured', captured_at = now(), updated_at = now()
         WHERE id = $1 RETURNING extract(epoch FROM captured_at)::bigint",
    )
    .bind(payment.id)
    .fetch_one(&mut *conn)
    .await?;
    payment.state = "captured".into();
    let record = RecordExternal { captured: captured(payment, at)?, tx_hash };
    engine.bus.send(&record, engine.upstream_timeout()).await.map_err(|error| {
        Failure::Internal(format!(
            "the settlement service did not record a payment paid elsewhere: {error}"
        ))
    })?;
    tracing::info!(payment = %payment.id, %tx_hash, "an authorization was paid on chain outside awx; captured, not released");
    Ok(true)
}

/// The ledger's status of `payment`'s hold (`None`: no hold); an error when it did not answer.
pub(crate) async fn hold_status(
    engine: &Engine,
    payment: &Payment,
) -> Result<Option<String>, String> {
    let query = HoldStatus { hold_id: LedgerId::from_uuid(payment.id) };
    engine
        .bus
        .send(&query, engine.upstream_timeout())
        .await
        .map(|reply| reply.status)
        .map_err(|error| error.to_string())
}

/// Records a capture the ledger committed but whose answer the policy service never got, in
/// `conn`'s transaction: the payment is `captured` (it stays spent), and the `payment.captured`
/// event queues its item (its provider unknown).
pub(crate) async fn recover_capture(
    engine: &Engine,
    conn: &mut PgConnection,
    payment: &mut Payment,
) -> Result<(), Failure> {
    let at: i64 = sqlx::query_scalar(
        "UPDATE policy.payments SET state = 'captured', captured_at = now(), updated_at = now()
         WHERE id = $1 RETURNING extract(epoch FROM captured_at)::bigint",
    )
    .bind(payment.id)
    .fetch_one(&mut *conn)
    .await?;
    payment.state = "captured".into();
    let event = PaymentCaptured { provider: None, captured: captured(payment, at)? };
    awx_bus::publish(conn, engine.bus.schema(), &event)
        .await
        .map_err(|error| Failure::internal(format!("writing the outbox: {error}")))?;
    tracing::warn!(payment = %payment.id, "a capture whose answer was lost is recovered from the ledger");
    metrics::counter!("policy_captures_recovered_total").increment(1);
    Ok(())
}
