//! Releases holds past their timeout, so funds reserved for a payment that never completed
//! become available again. Safe with several replicas: each hold is resolved at most once (the
//! operation locks it and checks that it is still pending).

use std::sync::Arc;
use std::time::Duration;

use awx_api::ledger::Void;
use tokio_util::sync::CancellationToken;

use crate::error::LedgerFailure;
use crate::ops::Ledger;

/// How many expired holds one pass releases at most.
const BATCH: i64 = 200;

/// Releases every hold past its timeout now; returns how many were released.
pub async fn sweep_once(ledger: &Ledger) -> Result<usize, LedgerFailure> {
    let mut released = 0;
    for hold_id in ledger.expired_holds(BATCH).await? {
        let outcome: Result<_, LedgerFailure> =
            crate::committed!(ledger, |conn| ledger.void(conn, &Void { hold_id }, true));
        match outcome {
            Ok(_) => released += 1,
            // Another replica (or a capture) resolved it first.
            Err(LedgerFailure::HoldNotPending { .. }) => {}
            Err(error) => return Err(error),
        }
    }
    if released > 0 {
        metrics::counter!("ledger_holds_expired_total")
            .increment(u64::try_from(released).unwrap_or(0));
    }
    Ok(released)
}

/// Sweeps every `interval` until cancelled.
pub async fn run(ledger: Arc<Ledger>, interval: Duration, cancel: CancellationToken) {
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(interval) => {
                if let Err(error) = sweep_once(&ledger).await {
                    tracing::warn!(error.message = %error, "releasing expired holds failed; retrying");
                }
            }
        }
    }
}
