//! Sees every stored transaction to its end, whatever it is for: re-broadcasts those still
//! `signed` (a crash or a node hiccup between storing and broadcasting; a stuck nonce would block
//! every later transaction of its relayer), and records receipts that arrive after a settle or a
//! faucet mint stopped waiting (a settlement's outcome; a mint's ledger deposit). A batch
//! transaction is only re-broadcast here (so it never blocks its relayer between two passes of
//! the batch worker); its receipt, and its replacement, are the worker's (`crate::batch`).
//! Several replicas may run it: re-sending a signed transaction is the same transaction, and
//! recording an outcome (or a deposit, idempotent in the ledger by transaction and log index) is
//! idempotent.
//!
//! The service runs one loop per chain ([`run`]), each reading only its chain's transactions, so
//! a slow or unanswering node delays only its own chain's transactions.

use std::sync::Arc;
use std::time::Duration;

use awx_x402::{B256, ExactEvmPayload, PaymentPayload};
use sqlx::Row as _;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::facilitator::{Chain, Facilitator, FacilitatorError};
use crate::faucet::FaucetDeposit;

/// One pass over every served chain's transactions in flight, one chain after another (for
/// tests and tools; the service runs [`run`] per chain); returns how many it finished.
pub async fn resume_once(facilitator: &Facilitator) -> Result<usize, FacilitatorError> {
    let mut finished = 0;
    for chain in facilitator.chains() {
        finished += resume_chain_once(facilitator, chain).await?;
    }
    Ok(finished)
}

/// One pass over `chain`'s transactions in flight (untouched for a second); returns how many it
/// finished.
pub async fn resume_chain_once(
    facilitator: &Facilitator,
    chain: &Chain,
) -> Result<usize, FacilitatorError> {
    let chain_id = i64::try_from(chain.chain_id).map_err(|_| {
        FacilitatorError::Inconsistent(format!("chain id {} is out of range", chain.chain_id))
    })?;
    let rows = sqlx::query(
        "SELECT t.id, t.raw, t.hash, t.state, t.purpose, t.settlement_id, t.deposit, s.payload
         FROM settlement.chain_txs t LEFT JOIN settlement.settlements s ON s.id = t.settlement_id
         WHERE t.chain_id = $1
           AND (t.state IN ('signed', 'broadcast') AND t.purpose <> 'batch' OR t.state = 'signed' AND t.purpose = 'batch')
           AND t.updated_at < now() - interval '1 second'
         ORDER BY t.updated_at LIMIT 100",
    )
    .bind(chain_id)
    .fetch_all(&facilitator.pool)
    .await?;
    let mut finished = 0;
    for row in rows {
        let chain_tx_id: Uuid = row.get(0);
        let raw: Vec<u8> = row.get(1);
        let hash: String = row.get(2);
        let state: String = row.get(3);
        let purpose: String = row.get(4);
        let Ok(hash) = hash.parse::<B256>() else { continue };
        if state == "signed" {
            facilitator.broadcast(chain, chain_tx_id, &raw).await;
        }
        if purpose == "batch" {
            continue;
        }
        let receipt = match chain.client.receipt(hash).await {
            Ok(Some(receipt)) => receipt,
            Ok(None) => continue,
            Err(error) => {
                tracing::warn!(error.message = %error, "receipt lookup failed");
                continue;
            }
        };
        let done = match purpose.as_str() {
            "settlement" => {
                let settlement_id: Option<Uuid> = row.get(5);
                let payload: Option<serde_json::Value> = row.get(7);
                finish_settlement(facilitator, chain, settlement_id, payload, hash, &receipt)
                    .await?
            }
            "faucet" => {
                let deposit: Option<serde_json::Value> = row.get(6);
                let Some(deposit) =
                    deposit.and_then(|value| serde_json::from_value::<FaucetDeposit>(value).ok())
                else {
                    tracing::error!(chain_tx = %chain_tx_id, "stored faucet deposit is unreadable");
                    continue;
                };
                match facilitator.record_mint(chain, chain_tx_id, hash, &receipt, &deposit).await {
                    Ok(_) => true,
                    Err(error) => {
                        tracing::warn!(chain_tx = %chain_tx_id, error.message = %error, "recording a faucet deposit failed; retrying");
                        false
                    }
                }
            }
            other => {
                tracing::error!(chain_tx = %chain_tx_id, purpose = other, "unknown chain transaction purpose");
                false
            }
        };
        if done {
            finished += 1;
        }
    }
    Ok(finished)
}

/// Records the outcome of a mined settlement transaction; false when the stored settlement
/// cannot be read.
async fn finish_settlement(
    facilitator: &Facilitator,
    chain: &Chain,
    settlement_id: Option<Uuid>,
    payload: Option<serde_json::Value>,
    hash: B256,
    receipt: &awx_chain::TransactionReceipt,
) -> Result<bool, FacilitatorError> {
    let (Some(settlement_id), Some(payload)) = (settlement_id, payload) else {
        tracing::error!(tx_hash = %hash, "a settlement transaction has no settlement");
        return Ok(false);
    };
    let payload: PaymentPayload = match serde_json::from_value(payload) {
        Ok(payload) => payload,
        Err(error) => {
            tracing::error!(%settlement_id, error.message = %error, "stored payload is unreadable");
            return Ok(false);
        }
    };
    let Ok(ExactEvmPayload::Eip3009(payload)) = ExactEvmPayload::from_json(&payload.payload) else {
        return Ok(false);
    };
    facilitator.finalize(chain, settlement_id, hash, receipt, &payload).await?;
    Ok(true)
}

/// Resumes `chain`'s transactions every `interval` until cancelled. Cancelling stops a pass
/// where it is, as a crash would (each step is idempotent, and the next pass takes over).
pub async fn run(
    facilitator: Arc<Facilitator>,
    chain: Chain,
    interval: Duration,
    cancel: CancellationToken,
) {
    let network = chain.network.to_string();
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(interval) => {}
        }
        tokio::select! {
            () = cancel.cancelled() => return,
            result = resume_chain_once(&facilitator, &chain) => {
                if let Err(error) = result {
                    tracing::warn!(%network, error.message = %error, "resuming chain transactions failed; retrying");
                }
            }
        }
    }
}
