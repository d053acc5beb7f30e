//! The batch worker's chain transactions: one Multicall3 `aggregate3` per batch, every call
//! with `allowFailure`, so one failing transfer does not revert the others.
//!
//! A batch goes `planned` (its transfers chosen) → `signed` (the transaction signed and stored,
//! through [`Facilitator::sign_and_store`], before any broadcast) → `broadcast` → `confirmed`
//! (mined; each transfer whose `AuthorizationUsed` log is in the receipt is confirmed, the
//! others go back to `signed` with the reason, or are flagged after `attempts_max`) or `failed`
//! (the whole transaction reverted: every transfer goes back). A transaction unmined after
//! `replace_after_seconds` is signed again with the same relayer nonce and higher fees; the old
//! one is `replaced`, and whichever of them is mined is the batch's.

use std::time::{Duration, Instant};

use awx_chain::batch::{Call3, aggregate3_calldata};
use awx_chain::{Token, TransactionReceipt};
use awx_x402::{B256, Bytes, Eip3009Payload};
use sqlx::Row as _;
use uuid::Uuid;

use crate::batch::{BatchWorker, PassReport, Transfer, fail_point};
use crate::facilitator::{Chain, FacilitatorError};
use crate::settle::{Outgoing, Purpose, SignFailure, StoredTx, insert_chain_tx};

/// How often a waiting batch asks for its receipt.
const RECEIPT_POLL: Duration = Duration::from_millis(50);

fn chain_error(error: awx_chain::ChainError) -> FacilitatorError {
    FacilitatorError::Chain(error.to_string())
}

/// The calldata of a batch of transfers.
pub(crate) fn batch_calldata(transfers: &[Transfer]) -> Result<Bytes, FacilitatorError> {
    let calls = transfers
        .iter()
        .map(|transfer| {
            let payload = Eip3009Payload {
                signature: Bytes::from(transfer.signature.clone()),
                authorization: transfer.authorization.clone(),
            };
            Token::transfer_calldata(&payload)
                .map(|call_data| Call3 { target: transfer.token, allow_failure: true, call_data })
                .map_err(|error| {
                    FacilitatorError::Inconsistent(format!("transfer {}: {error}", transfer.id))
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(aggregate3_calldata(&calls))
}

/// A stored transaction of a batch.
struct BatchTx {
    id: Uuid,
    hash: B256,
    raw: Vec<u8>,
    state: String,
    age_seconds: i64,
    stored: StoredTx,
}

impl BatchWorker {
    /// Signs, stores and broadcasts the transaction of a `planned` batch, then waits (bounded)
    /// for its receipt.
    pub(crate) async fn send_batch(
        &self,
        chain: &Chain,
        batch_id: Uuid,
        report: &mut PassReport,
    ) -> Result<(), FacilitatorError> {
        let facilitator = &self.facilitator;
        let transfers = self.batch_transfers(batch_id).await?;
        if transfers.is_empty() {
            sqlx::query("UPDATE settlement.batches SET state = 'failed', error = 'no transfers left', updated_at = now() WHERE id = $1")
                .bind(batch_id)
                .execute(&facilitator.pool)
                .await?;
            return Ok(());
        }
        let input = batch_calldata(&transfers)?;
        let relayer = facilitator.relayer_for(batch_id).await?;
        let mut tx = facilitator.pool.begin().await?;
        let outgoing = Outgoing {
            id: Uuid::now_v7(),
            chain,
            relayer,
            to: facilitator.settings.batch.contract,
            input,
            purpose: Purpose::Batch(batch_id),
        };
        let signed = match facilitator.sign_and_store(&mut tx, outgoing).await {
            Ok(signed) => signed,
            Err(SignFailure::Reverted { message, .. }) => {
                // With every call allowed to fail, only a broken batch reverts as a whole.
                drop(tx);
                tracing::error!(batch = %batch_id, error.message = %message, "a batch would revert; its transfers go back");
                self.fail_batch(batch_id, &transfers, &message).await?;
                return Ok(());
            }
            Err(SignFailure::Error(error)) => return Err(error),
        };
        sqlx::query("UPDATE settlement.batches SET state = 'signed', tx_hash = $2, updated_at = now() WHERE id = $1 AND state = 'planned'")
            .bind(batch_id)
            .bind(format!("{:#x}", signed.hash))
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        fail_point("after_batch_stored").await;
        self.broadcast_batch_tx(chain, batch_id, signed.chain_tx_id, &signed.raw).await;
        fail_point("after_broadcast").await;
        let deadline = Instant::now() + chain.receipt_wait;
        while Instant::now() < deadline {
            if let Some(receipt) = chain.client.receipt(signed.hash).await.map_err(chain_error)?
                && self.deep_enough(chain, &receipt).await?
            {
                return self.finish_batch(chain, batch_id, signed.hash, &receipt, report).await;
            }
            tokio::time::sleep(RECEIPT_POLL).await;
        }
        Ok(())
    }

    async fn broadcast_batch_tx(
        &self,
        chain: &Chain,
        batch_id: Uuid,
        chain_tx_id: Uuid,
        raw: &[u8],
    ) {
        self.facilitator.broadcast(chain, chain_tx_id, raw).await;
        let _ = sqlx::query(
            "UPDATE settlement.batches SET state = 'broadcast', updated_at = now()
             WHERE id = $1 AND state = 'signed'
               AND EXISTS (SELECT 1 FROM settlement.chain_txs WHERE id = $2 AND state = 'broadcast')",
        )
        .bind(batch_id)
        .bind(chain_tx_id)
        .execute(&self.facilitator.pool)
        .await;
    }

    /// Whether a receipt's block is `confirmations` deep.
    async fn deep_enough(
        &self,
        chain: &Chain,
        receipt: &TransactionReceipt,
    ) -> Result<bool, FacilitatorError> {
        if chain.confirmations == 0 {
            return Ok(true);
        }
        let head = chain.client.block_number().await.map_err(chain_error)?;
        let block = receipt.block_number.unwrap_or(u64::MAX);
        Ok(head.saturating_sub(block) >= chain.confirmations && head >= block)
    }

    /// Step 1: the batch in flight on `chain`, if any. Returns whether one is still in flight.
    pub(crate) async fn follow(
        &self,
        chain: &Chain,
        report: &mut PassReport,
    ) -> Result<bool, FacilitatorError> {
        let facilitator = &self.facilitator;
        let batch: Option<(Uuid, String)> = sqlx::query_as(
            "SELECT id, state FROM settlement.batches WHERE network = $1 AND state IN ('planned', 'signed', 'broadcast')",
        )
        .bind(chain.network.to_string())
        .fetch_optional(&facilitator.pool)
        .await?;
        let Some((batch_id, state)) = batch else { return Ok(false) };
        if state == "planned" {
            self.send_batch(chain, batch_id, report).await?;
            return self.still_in_flight(batch_id).await;
        }
        let txs = self.batch_txs(batch_id).await?;
        for tx in &txs {
            if let Some(receipt) = chain.client.receipt(tx.hash).await.map_err(chain_error)? {
                if !self.deep_enough(chain, &receipt).await? {
                    return Ok(true);
                }
                self.finish_batch(chain, batch_id, tx.hash, &receipt, report).await?;
                return Ok(false);
            }
        }
        let Some(latest) = txs.iter().rev().find(|tx| tx.state != "replaced") else {
            return Ok(true);
        };
        if latest.state == "signed" {
            self.broadcast_batch_tx(chain, batch_id, latest.id, &latest.raw).await;
        } else if latest.age_seconds
            >= i64::try_from(facilitator.settings.batch.replace_after_seconds).unwrap_or(i64::MAX)
        {
            self.replace(chain, batch_id, latest).await?;
            report.replaced = report.replaced.saturating_add(1);
        }
        Ok(true)
    }

    async fn still_in_flight(&self, batch_id: Uuid) -> Result<bool, FacilitatorError> {
        let state: String =
            sqlx::query_scalar("SELECT state FROM settlement.batches WHERE id = $1")
                .bind(batch_id)
                .fetch_one(&self.facilitator.pool)
                .await?;
        Ok(matches!(state.as_str(), "planned" | "signed" | "broadcast"))
    }

    async fn batch_txs(&self, batch_id: Uuid) -> Result<Vec<BatchTx>, FacilitatorError> {
        let rows = sqlx::query(
            "SELECT id, hash, raw, state, extract(epoch FROM now() - updated_at)::bigint, chain_id, relayer, nonce,
                    coalesce(gas_limit, 0), coalesce(max_fee_per_gas, 0)::text, coalesce(max_priority_fee_per_gas, 0)::text
             FROM settlement.chain_txs WHERE batch_id = $1 ORDER BY created_at, id",
        )
        .bind(batch_id)
        .fetch_all(&self.facilitator.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let hash: String = row.get(1);
                let relayer: String = row.get(6);
                let gas_limit: i64 = row.get(8);
                let max_fee: String = row.get(9);
                let priority: String = row.get(10);
                Ok(BatchTx {
                    id: row.get(0),
                    hash: hash.parse().map_err(|_| {
                        FacilitatorError::Inconsistent(format!("stored hash {hash}"))
                    })?,
                    raw: row.get(2),
                    state: row.get(3),
                    age_seconds: row.get(4),
                    stored: StoredTx {
                        id: row.get(0),
                        chain_id: row.get(5),
                        relayer: relayer.parse().map_err(|_| {
                            FacilitatorError::Inconsistent(format!("stored relayer {relayer}"))
                        })?,
                        nonce: row.get(7),
                        gas_limit: u64::try_from(gas_limit).unwrap_or(0),
                        max_fee_per_gas: max_fee.parse().unwrap_or(0),
                        max_priority_fee_per_gas: priority.parse().unwrap_or(0),
                    },
                })
            })
            .collect()
    }

    /// Signs the batch's transaction again on the same relayer nonce with higher fees (at least
    /// `fee_bump_percent` of the old ones, and no less than the chain's current fees), stores it
    /// and marks the old one `replaced` in one transaction, then broadcasts it.
    async fn replace(
        &self,
        chain: &Chain,
        batch_id: Uuid,
        old: &BatchTx,
    ) -> Result<(), FacilitatorError> {
        let facilitator = &self.facilitator;
        let transfers = self.batch_transfers(batch_id).await?;
        let input = batch_calldata(&transfers)?;
        let bump = u128::from(facilitator.settings.batch.fee_bump_percent);
        let (current_fee, current_priority) = chain.client.fees().await.map_err(chain_error)?;
        let max_fee_per_gas =
            (old.stored.max_fee_per_gas.saturating_mul(bump) / 100).max(current_fee);
        let max_priority_fee_per_gas = (old.stored.max_priority_fee_per_gas.saturating_mul(bump)
            / 100)
            .max(current_priority)
            .min(max_fee_per_gas);
        let stored = StoredTx {
            id: Uuid::now_v7(),
            max_fee_per_gas,
            max_priority_fee_per_gas,
            ..old.stored.clone()
        };
        let request = awx_api::signer::SignTransaction {
            request_id: stored.id,
            chain_id: chain.chain_id,
            from: stored.relayer,
            to: facilitator.settings.batch.contract,
            input,
            nonce: u64::try_from(stored.nonce).unwrap_or(0),
            gas_limit: stored.gas_limit,
            max_fee_per_gas,
            max_priority_fee_per_gas,
        };
        let timeout = Duration::from_millis(facilitator.settings.signer_timeout_ms);
        let signed = facilitator
            .bus
            .send(&request, timeout)
            .await
            .map_err(|error| FacilitatorError::Signer(error.to_string()))?;
        let mut tx = facilitator.pool.begin().await?;
        let marked = sqlx::query("UPDATE settlement.chain_txs SET state = 'replaced', updated_at = now() WHERE id = $1 AND state = 'broadcast'")
            .bind(old.id)
            .execute(&mut *tx)
            .await?;
        if marked.rows_affected() == 0 {
            return Ok(());
        }
        insert_chain_tx(&mut tx, &stored, &signed, Purpose::Batch(batch_id)).await?;
        tx.commit().await?;
        tracing::warn!(batch = %batch_id, old = %old.hash, new = %signed.hash, max_fee_per_gas, "a batch transaction stayed unmined; replaced with a higher fee");
        metrics::counter!("settlement_batch_replacements_total", "network" => chain.network.to_string()).increment(1);
        self.facilitator.broadcast(chain, stored.id, &signed.raw).await;
        Ok(())
    }

    /// Every transfer of a batch that never ran goes back to be batched again.
    async fn fail_batch(
        &self,
        batch_id: Uuid,
        transfers: &[Transfer],
        reason: &str,
    ) -> Result<(), FacilitatorError> {
        let mut tx = self.facilitator.pool.begin().await?;
        for transfer in transfers {
            self.transfer_failed(&mut tx, transfer.id, reason).await?;
        }
        sqlx::query("UPDATE settlement.batches SET state = 'failed', error = $2, updated_at = now() WHERE id = $1")
            .bind(batch_id)
            .bind(reason)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn transfer_failed(
        &self,
        tx: &mut sqlx::PgConnection,
        id: Uuid,
        reason: &str,
    ) -> Result<(), FacilitatorError> {
        let state: String = sqlx::query_scalar(
            "UPDATE settlement.net_transfers SET attempts = attempts + 1, last_error = $2,
                    state = CASE WHEN attempts + 1 >= $3 THEN 'flagged' ELSE 'signed' END, updated_at = now()
             WHERE id = $1 RETURNING state",
        )
        .bind(id)
        .bind(reason)
        .bind(self.facilitator.settings.batch.attempts_max)
        .fetch_one(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE settlement.items SET last_error = $2, updated_at = now()
             WHERE payment_id IN (SELECT payment_id FROM settlement.net_transfer_items WHERE net_transfer_id = $1)",
        )
        .bind(id)
        .bind(reason)
        .execute(&mut *tx)
        .await?;
        if state == "flagged" {
            tracing::error!(transfer = %id, reason, "a net transfer failed too often and is flagged for an operator");
            metrics::counter!("settlement_transfers_flagged_total").increment(1);
        } else {
            tracing::warn!(transfer = %id, reason, "a net transfer failed inside its batch; it goes in the next one");
        }
        Ok(())
    }

    /// Why a transfer of a mined batch did not happen, read from the chain.
    async fn diagnose(&self, chain: &Chain, transfer: &Transfer, reverted: bool) -> String {
        if reverted {
            return "the batch transaction reverted".into();
        }
        let token = chain.client.token(transfer.token);
        match token.balance_of(transfer.authorization.from).await {
            Ok(balance) if balance < transfer.authorization.value => format!(
                "insufficient_funds: the payer's wallet holds {balance} on chain, less than {}",
                transfer.authorization.value
            ),
            _ => "the transfer reverted inside the batch".into(),
        }
    }

    /// Records a mined batch: each transfer confirmed or failed, its items settled, the batch
    /// and its transactions final, the events written, all in one database transaction.
    async fn finish_batch(
        &self,
        chain: &Chain,
        batch_id: Uuid,
        hash: B256,
        receipt: &TransactionReceipt,
        report: &mut PassReport,
    ) -> Result<(), FacilitatorError> {
        let transfers = self.batch_transfers(batch_id).await?;
        let mut outcomes = Vec::with_capacity(transfers.len());
        for transfer in &transfers {
            let token = chain.client.token(transfer.token);
            let used = receipt.status()
                && token.receipt_has_authorization_used(
                    receipt,
                    transfer.authorization.from,
                    transfer.authorization.nonce,
                )
                && token.receipt_has_transfer(
                    receipt,
                    transfer.authorization.from,
                    transfer.authorization.to,
                    transfer.authorization.value,
                );
            let failure = if used {
                None
            } else {
                Some(self.diagnose(chain, transfer, !receipt.status()).await)
            };
            outcomes.push((transfer, failure));
        }
        fail_point("before_confirm").await;
        let hash_text = format!("{hash:#x}");
        let mut tx = self.facilitator.pool.begin().await?;
        sqlx::query(
            "UPDATE settlement.chain_txs SET state = CASE WHEN hash = $2 THEN $3 ELSE 'replaced' END, updated_at = now()
             WHERE batch_id = $1 AND (hash = $2 OR state IN ('signed', 'broadcast'))",
        )
        .bind(batch_id)
        .bind(&hash_text)
        .bind(if receipt.status() { "confirmed" } else { "failed" })
        .execute(&mut *tx)
        .await?;
        for (transfer, failure) in &outcomes {
            match failure {
                None => {
                    sqlx::query(
                        "UPDATE settlement.net_transfers SET state = 'confirmed', tx_hash = $2, last_error = NULL, updated_at = now()
                         WHERE id = $1",
                    )
                    .bind(transfer.id)
                    .bind(&hash_text)
                    .execute(&mut *tx)
                    .await?;
                    sqlx::query(
                        "UPDATE settlement.items SET state = 'settled', settled_tx = $2, settled_at = now(), last_error = NULL, updated_at = now()
                         WHERE payment_id IN (SELECT payment_id FROM settlement.net_transfer_items WHERE net_transfer_id = $1 AND kind = 'payee')",
                    )
                    .bind(transfer.id)
                    .bind(&hash_text)
                    .execute(&mut *tx)
                    .await?;
                    // A withdrawal's event follows the ledger's capture (`record`).
                    if transfer.kind != awx_api::policy::NetKind::Withdrawal {
                        self.publish_confirmed(&mut tx, chain, transfer, hash).await?;
                    }
                    report.confirmed = report.confirmed.saturating_add(1);
                }
                Some(reason) => {
                    self.transfer_failed(&mut tx, transfer.id, reason).await?;
                    report.failed = report.failed.saturating_add(1);
                }
            }
        }
        let gas_used = i64::try_from(receipt.gas_used).unwrap_or(i64::MAX);
        sqlx::query("UPDATE settlement.batches SET state = $2, tx_hash = $3, gas_used = $4, updated_at = now() WHERE id = $1")
            .bind(batch_id)
            .bind(if receipt.status() { "confirmed" } else { "failed" })
            .bind(&hash_text)
            .bind(gas_used)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        let network = chain.network.to_string();
        metrics::counter!("settlement_batches_total", "network" => network.clone(), "state" => if receipt.status() { "confirmed" } else { "failed" }).increment(1);
        metrics::counter!("settlement_batch_gas_used_total", "network" => network)
            .increment(receipt.gas_used);
        tracing::info!(batch = %batch_id, tx_hash = %hash, gas_used, transfers = transfers.len(), "batch mined");
        Ok(())
    }
}
