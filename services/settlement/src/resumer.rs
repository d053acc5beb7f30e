//! Sees every stored transaction to its end: re-broadcasts those still `signed` (a crash or a
//! node hiccup between storing and broadcasting), and records receipts that arrive after a settle
//! stopped waiting. Several replicas may run it: re-sending a signed transaction is the same
//! transaction, and recording an outcome is idempotent.

use std::sync::Arc;
use std::time::Duration;

use awx_x402::{B256, ExactEvmPayload, PaymentPayload};
use sqlx::Row as _;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::facilitator::{Facilitator, FacilitatorError};

/// One pass over transactions in flight; returns how many it finished.
pub async fn resume_once(facilitator: &Facilitator) -> Result<usize, FacilitatorError> {
    let rows = sqlx::query(
        "SELECT t.id, t.settlement_id, t.chain_id, t.raw, t.hash, t.state, s.payload
         FROM settlement.chain_txs t JOIN settlement.settlements s ON s.id = t.settlement_id
         WHERE t.state IN ('signed', 'broadcast') AND t.updated_at < now() - interval '1 second'
         ORDER BY t.updated_at LIMIT 100",
    )
    .fetch_all(&facilitator.pool)
    .await?;
    let mut finished = 0;
    for row in rows {
        let chain_tx_id: Uuid = row.get(0);
        let settlement_id: Uuid = row.get(1);
        let chain_id: i64 = row.get(2);
        let raw: Vec<u8> = row.get(3);
        let hash: String = row.get(4);
        let state: String = row.get(5);
        let Some(chain) = u64::try_from(chain_id).ok().and_then(|id| facilitator.chain_by_id(id))
        else {
            continue;
        };
        let Ok(hash) = hash.parse::<B256>() else { continue };
        if state == "signed" {
            facilitator.broadcast(chain, chain_tx_id, &raw).await;
        }
        let payload: PaymentPayload = match serde_json::from_value(row.get(6)) {
            Ok(payload) => payload,
            Err(error) => {
                tracing::error!(%settlement_id, error.message = %error, "stored payload is unreadable");
                continue;
            }
        };
        let Ok(ExactEvmPayload::Eip3009(payload)) = ExactEvmPayload::from_json(&payload.payload)
        else {
            continue;
        };
        match chain.client.receipt(hash).await {
            Ok(Some(receipt)) => {
                facilitator.finalize(chain, settlement_id, hash, &receipt, &payload).await?;
                finished += 1;
            }
            Ok(None) => {}
            Err(error) => tracing::warn!(error.message = %error, "receipt lookup failed"),
        }
    }
    Ok(finished)
}

/// Resumes every `interval` until cancelled.
pub async fn run(facilitator: Arc<Facilitator>, interval: Duration, cancel: CancellationToken) {
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(interval) => {
                if let Err(error) = resume_once(&facilitator).await {
                    tracing::warn!(error.message = %error, "resuming settlements failed; retrying");
                }
            }
        }
    }
}
