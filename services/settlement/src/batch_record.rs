//! Step 6 of the batch worker (see [`crate::batch`]): the ledger postings of confirmed net
//! transfers and of items settled externally, the `settlement.confirmed` events, and the
//! metrics of what is waiting.

use std::time::Duration;

use awx_api::facilitator::SettlementConfirmed;
use awx_api::ledger::{Capture, FeesCollected, HoldStatus, PayoutSettled};
use awx_api::policy::NetKind;
use awx_api::withdrawals::WithdrawalConfirmed;
use awx_bus::BusError;
use awx_types::{Amount, LedgerId};
use awx_x402::B256;
use sqlx::{PgConnection, Row as _};
use uuid::Uuid;

use crate::batch::{
    BatchWorker, PassReport, Transfer, kind_of, parse_address, parse_amount, parse_b256,
};
use crate::facilitator::{Chain, FacilitatorError};

impl BatchWorker {
    /// Step 6: the ledger postings of confirmed transfers and externally settled items, each
    /// once (the ledger is idempotent by transaction and reference; the flag is set after).
    pub(crate) async fn record(
        &self,
        chain: &Chain,
        report: &mut PassReport,
    ) -> Result<(), FacilitatorError> {
        let timeout = Duration::from_millis(self.facilitator.settings.ledger_timeout_ms);
        let transfers = sqlx::query(
            "SELECT id, kind, token, payer, payee, amount::text, tx_hash FROM settlement.net_transfers
             WHERE network = $1 AND state = 'confirmed' AND NOT recorded ORDER BY id",
        )
        .bind(chain.network.to_string())
        .fetch_all(&self.facilitator.pool)
        .await?;
        for row in transfers {
            let id: Uuid = row.get(0);
            let asset = self.asset(chain, parse_address(row.get(2))?).await?;
            let amount = parse_amount(row.get(5))?;
            let tx_hash = parse_b256(row.get(6))?;
            let posted = match kind_of(row.get(1)) {
                NetKind::Payee => {
                    let payout = PayoutSettled {
                        asset,
                        payee: parse_address(row.get(4))?,
                        amount,
                        tx_hash,
                        reference: Some(id.to_string()),
                    };
                    self.facilitator
                        .bus
                        .send(&payout, timeout)
                        .await
                        .map(|_| ())
                        .map_err(|e| e.to_string())
                }
                NetKind::Fee => {
                    let fees = FeesCollected {
                        asset,
                        payer: parse_address(row.get(3))?,
                        amount,
                        tx_hash,
                        reference: id.to_string(),
                    };
                    self.facilitator
                        .bus
                        .send(&fees, timeout)
                        .await
                        .map(|_| ())
                        .map_err(|e| e.to_string())
                }
                NetKind::Withdrawal => {
                    self.record_withdrawal(id, tx_hash).await.map_err(|e| e.to_string())
                }
            };
            match posted {
                Ok(()) => {
                    sqlx::query("UPDATE settlement.net_transfers SET recorded = true, updated_at = now() WHERE id = $1")
                        .bind(id)
                        .execute(&self.facilitator.pool)
                        .await?;
                    report.recorded = report.recorded.saturating_add(1);
                }
                Err(error) => {
                    tracing::error!(transfer = %id, error.message = %error, "the ledger did not record a confirmed net transfer; retrying")
                }
            }
        }
        let items = sqlx::query(
            "SELECT payment_id, token, payee, amount::text, settled_tx FROM settlement.items
             WHERE network = $1 AND state = 'settled_externally' AND NOT payout_recorded ORDER BY payment_id",
        )
        .bind(chain.network.to_string())
        .fetch_all(&self.facilitator.pool)
        .await?;
        for row in items {
            let payment_id: Uuid = row.get(0);
            let payout = PayoutSettled {
                asset: self.asset(chain, parse_address(row.get(1))?).await?,
                payee: parse_address(row.get(2))?,
                amount: parse_amount(row.get(3))?,
                tx_hash: parse_b256(
                    row.get::<Option<String>, _>(4).as_deref().unwrap_or_default(),
                )?,
                reference: Some(payment_id.to_string()),
            };
            match self.facilitator.bus.send(&payout, timeout).await {
                Ok(_) => {
                    sqlx::query("UPDATE settlement.items SET payout_recorded = true, updated_at = now() WHERE payment_id = $1")
                        .bind(payment_id)
                        .execute(&self.facilitator.pool)
                        .await?;
                    report.recorded = report.recorded.saturating_add(1);
                }
                Err(error) => {
                    tracing::error!(payment = %payment_id, error.message = %error, "the ledger did not record an external settlement; retrying")
                }
            }
        }
        Ok(())
    }

    /// Metrics: items waiting, the oldest one's age, and items past their `settleBy`.
    pub(crate) async fn observe(&self, chain: &Chain) -> Result<(), FacilitatorError> {
        let settings = &self.facilitator.settings.batch;
        let row = sqlx::query(
            "SELECT count(*), coalesce(extract(epoch FROM now() - min(captured_at))::bigint, 0),
                    count(*) FILTER (WHERE greatest(valid_before, extract(epoch FROM captured_at)::bigint) + $2 < extract(epoch FROM now())::bigint)
             FROM settlement.items WHERE network = $1 AND state IN ('queued', 'batched')",
        )
        .bind(chain.network.to_string())
        .bind(i64::try_from(settings.max_delay_seconds.saturating_add(settings.interval_seconds)).unwrap_or(i64::MAX))
        .fetch_one(&self.facilitator.pool)
        .await?;
        let waiting: i64 = row.get(0);
        let oldest: i64 = row.get(1);
        let late: i64 = row.get(2);
        let network = chain.network.to_string();
        metrics::gauge!("settlement_items_waiting", "network" => network.clone())
            .set(u32::try_from(waiting).unwrap_or(u32::MAX));
        metrics::gauge!("settlement_items_oldest_age_seconds", "network" => network.clone())
            .set(u32::try_from(oldest).unwrap_or(u32::MAX));
        metrics::gauge!("settlement_items_late", "network" => network.clone())
            .set(u32::try_from(late).unwrap_or(u32::MAX));
        if late > 0 {
            tracing::error!(
                network,
                late,
                "items are past their settleBy and not settled on chain"
            );
        }
        Ok(())
    }

    /// A confirmed withdrawal: the ledger captures its hold (the wallet debited, the on-chain
    /// mirror credited); then the withdrawal is `confirmed`, `withdrawal.confirmed` is written
    /// and its net transfer (the same id) marked recorded, in one transaction. A hold no longer pending that is not captured (released by
    /// its timeout while the withdrawal went out) needs an operator: it stays unrecorded, with an
    /// error each pass.
    async fn record_withdrawal(&self, id: Uuid, tx_hash: B256) -> Result<(), FacilitatorError> {
        let timeout = Duration::from_millis(self.facilitator.settings.ledger_timeout_ms);
        let hold_id = LedgerId::from_uuid(id);
        let ledger = |error: BusError| FacilitatorError::Ledger(error.to_string());
        match self.facilitator.bus.send(&Capture { hold_id, amount: None }, timeout).await {
            Ok(_) => {}
            Err(BusError::Rejected { code, message })
                if code == awx_api::ledger::codes::HOLD_NOT_PENDING =>
            {
                let status = self
                    .facilitator
                    .bus
                    .send(&HoldStatus { hold_id }, timeout)
                    .await
                    .map_err(ledger)?;
                if status.status.as_deref() != Some("captured") {
                    metrics::counter!("settlement_withdrawals_unreconciled_total").increment(1);
                    return Err(FacilitatorError::Inconsistent(format!(
                        "withdrawal {id} went out on chain but its hold is {:?} ({code}: {message}); an operator must reconcile it",
                        status.status
                    )));
                }
            }
            Err(error) => return Err(ledger(error)),
        }
        {
            let mut tx = self.facilitator.pool.begin().await?;
            let updated = sqlx::query(
                "UPDATE settlement.withdrawals SET state = 'confirmed', tx_hash = $2, error = NULL, updated_at = now()
                 WHERE id = $1 AND state <> 'confirmed'",
            )
            .bind(id)
            .bind(format!("{tx_hash:#x}"))
            .execute(&mut *tx)
            .await?;
            if updated.rows_affected() > 0
                && let Some((owner, withdrawal)) = self.facilitator.withdrawal_view(id).await?
            {
                let mut withdrawal = withdrawal;
                withdrawal.state = "confirmed".into();
                withdrawal.tx_hash = Some(tx_hash);
                let event = WithdrawalConfirmed { owner, withdrawal };
                awx_bus::publish(&mut tx, self.facilitator.bus.schema(), &event).await.map_err(
                    |error| FacilitatorError::Inconsistent(format!("writing the outbox: {error}")),
                )?;
            }
            // Recorded with the confirmation, so a crash between the two never leaves a
            // confirmed withdrawal whose net transfer reads as not yet recorded in the ledger
            // (the wallet check would count its amount twice).
            sqlx::query(
                "UPDATE settlement.net_transfers SET recorded = true, updated_at = now() WHERE id = $1",
            )
            .bind(id)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
        }
        tracing::info!(withdrawal = %id, %tx_hash, "withdrawal confirmed and recorded");
        metrics::counter!("settlement_withdrawals_confirmed_total").increment(1);
        Ok(())
    }

    /// The event of a confirmed transfer, written in `tx` (the confirming transaction).
    pub(crate) async fn publish_confirmed(
        &self,
        tx: &mut PgConnection,
        chain: &Chain,
        transfer: &Transfer,
        tx_hash: B256,
    ) -> Result<(), FacilitatorError> {
        let payments: Vec<Uuid> = sqlx::query_scalar(
            "SELECT payment_id FROM settlement.net_transfer_items WHERE net_transfer_id = $1 ORDER BY payment_id",
        )
        .bind(transfer.id)
        .fetch_all(&mut *tx)
        .await?;
        let event = SettlementConfirmed {
            transfer_id: transfer.id,
            kind: transfer.kind,
            network: chain.network.to_string(),
            token: transfer.token,
            payer: transfer.authorization.from,
            payee: transfer.authorization.to,
            amount: Amount::from_atomic(
                u128::try_from(transfer.authorization.value).unwrap_or(u128::MAX),
            ),
            tx_hash,
            payment_ids: payments.into_iter().map(LedgerId::from_uuid).collect(),
        };
        awx_bus::publish(tx, self.facilitator.bus.schema(), &event).await.map_err(|error| {
            FacilitatorError::Inconsistent(format!("writing the outbox: {error}"))
        })?;
        Ok(())
    }
}
