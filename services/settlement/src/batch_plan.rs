//! Steps 2 and 3 of the batch worker (see [`crate::batch`]): classifying expired items by
//! their authorization's state on chain, and planning the net transfers of the groups that are
//! due (the payee's, and the payer's fees).

use awx_api::policy::NetKind;
use awx_types::Amount;
use awx_x402::Address;
use sqlx::{PgConnection, Row as _};
use uuid::Uuid;

use crate::batch::{
    BatchWorker, PassReport, fail_point, group_is_due, parse_address, parse_amount, parse_b256,
    threshold_atomic,
};
use crate::facilitator::{Chain, FacilitatorError, now_unix_seconds};
use crate::settle::lower;

impl BatchWorker {
    /// Step 2: reads expired items' authorizations on chain.
    pub(crate) async fn classify(
        &self,
        chain: &Chain,
        report: &mut PassReport,
    ) -> Result<(), FacilitatorError> {
        let settings = &self.facilitator.settings.batch;
        let now = i64::try_from(now_unix_seconds()).unwrap_or(i64::MAX);
        let expired_before =
            now.saturating_sub(i64::try_from(settings.eligibility_margin_seconds).unwrap_or(0));
        let rows = sqlx::query(
            "SELECT payment_id, token, payer, nonce FROM settlement.items
             WHERE network = $1 AND state = 'queued' AND eligible_at IS NULL AND valid_before < $2
             ORDER BY valid_before LIMIT $3",
        )
        .bind(chain.network.to_string())
        .bind(expired_before)
        .bind(settings.items_per_pass_max)
        .fetch_all(&self.facilitator.pool)
        .await?;
        let mut unused = Vec::new();
        for row in rows {
            let payment_id: Uuid = row.get(0);
            let token = parse_address(row.get(1))?;
            let payer = parse_address(row.get(2))?;
            let nonce = parse_b256(row.get(3))?;
            let used = chain
                .client
                .token(token)
                .authorization_state(payer, nonce)
                .await
                .map_err(|error| FacilitatorError::Chain(error.to_string()))?;
            if !used {
                unused.push(payment_id);
                continue;
            }
            let found = chain
                .client
                .authorization_used_tx(token, payer, nonce, 0)
                .await
                .map_err(|error| FacilitatorError::Chain(error.to_string()))?;
            let Some(hash) = found else {
                tracing::error!(payment = %payment_id, "an authorization is used on chain but its AuthorizationUsed log was not found; retrying");
                continue;
            };
            let changed = sqlx::query(
                "UPDATE settlement.items SET state = 'settled_externally', settled_tx = $2, settled_at = now(), updated_at = now()
                 WHERE payment_id = $1 AND state = 'queued'",
            )
            .bind(payment_id)
            .bind(format!("{hash:#x}"))
            .execute(&self.facilitator.pool)
            .await?;
            if changed.rows_affected() > 0 {
                tracing::info!(payment = %payment_id, tx_hash = %hash, "the provider settled this payment's authorization elsewhere; it is not netted");
                report.external = report.external.saturating_add(1);
            }
        }
        if !unused.is_empty() {
            sqlx::query("UPDATE settlement.items SET eligible_at = now(), updated_at = now() WHERE payment_id = ANY($1) AND state = 'queued'")
                .bind(&unused)
                .execute(&self.facilitator.pool)
                .await?;
            report.eligible = report.eligible.saturating_add(unused.len());
        }
        Ok(())
    }

    /// Step 3: groups eligible items and plans the transfers of the groups that are due.
    pub(crate) async fn plan(
        &self,
        chain: &Chain,
        report: &mut PassReport,
    ) -> Result<(), FacilitatorError> {
        let settings = &self.facilitator.settings.batch;
        let threshold = settings.threshold_micros().map_err(FacilitatorError::Inconsistent)?;
        let now = i64::try_from(now_unix_seconds()).unwrap_or(i64::MAX);
        let network = chain.network.to_string();
        let groups = sqlx::query(
            "SELECT token, payer, payee, sum(amount)::text,
                    min(greatest(extract(epoch FROM captured_at)::bigint, valid_before)),
                    array_agg(payment_id ORDER BY payment_id)
             FROM (SELECT *, (row_number() OVER (PARTITION BY token, payer, payee ORDER BY payment_id) - 1) / $2 AS part
                   FROM settlement.items
                   WHERE network = $1 AND state = 'queued' AND eligible_at IS NOT NULL) i
             GROUP BY token, payer, payee, part",
        )
        .bind(&network)
        .bind(settings.items_per_transfer_max)
        .fetch_all(&self.facilitator.pool)
        .await?;
        let mut payers_out: Vec<(String, String)> = Vec::new();
        for group in groups {
            let token_text: String = group.get(0);
            let token = parse_address(&token_text)?;
            let total = parse_amount(group.get(3))?;
            let oldest: i64 = group.get(4);
            let decimals = self.decimals(chain, token).await?;
            if !group_is_due(
                total,
                threshold_atomic(threshold, decimals),
                oldest,
                now,
                settings.max_delay_seconds,
            ) {
                continue;
            }
            let payer: String = group.get(1);
            let payee: String = group.get(2);
            let ids: Vec<Uuid> = group.get(5);
            let mut tx = self.facilitator.pool.begin().await?;
            let id = self
                .insert_transfer(
                    &mut tx,
                    chain,
                    &token_text,
                    NetKind::Payee,
                    &payer,
                    &payee,
                    total,
                    &ids,
                )
                .await?;
            let moved = sqlx::query(
                "UPDATE settlement.items SET state = 'batched', updated_at = now() WHERE payment_id = ANY($1) AND state = 'queued'",
            )
            .bind(&ids)
            .execute(&mut *tx)
            .await?;
            if usize::try_from(moved.rows_affected()).ok() != Some(ids.len()) {
                tx.rollback().await?;
                continue;
            }
            tx.commit().await?;
            tracing::info!(transfer = %id, %payer, %payee, amount = %total, items = ids.len(), "net transfer planned");
            report.planned = report.planned.saturating_add(1);
            payers_out.push((token_text, payer));
        }
        if let Some(fee_address) = settings.fee_address {
            self.plan_fees(chain, fee_address, &payers_out, report).await?;
        }
        fail_point("after_plan").await;
        Ok(())
    }

    /// The fees of items already paid (netted now or before, or settled externally) and not yet
    /// collected: one transfer per (token, payer) when that payer has a transfer going out now,
    /// or its fees reach the threshold, or its oldest uncollected fee has waited
    /// `max_delay_seconds` since capture.
    pub(crate) async fn plan_fees(
        &self,
        chain: &Chain,
        fee_address: Address,
        payers_out: &[(String, String)],
        report: &mut PassReport,
    ) -> Result<(), FacilitatorError> {
        let settings = &self.facilitator.settings.batch;
        let threshold = settings.threshold_micros().map_err(FacilitatorError::Inconsistent)?;
        let now = i64::try_from(now_unix_seconds()).unwrap_or(i64::MAX);
        let groups = sqlx::query(
            "SELECT token, payer, sum(fee)::text, min(extract(epoch FROM captured_at)::bigint),
                    array_agg(payment_id ORDER BY payment_id)
             FROM (SELECT *, (row_number() OVER (PARTITION BY token, payer ORDER BY payment_id) - 1) / $2 AS part
                   FROM settlement.items i
                   WHERE network = $1 AND fee > 0 AND state <> 'queued'
                     AND NOT EXISTS (SELECT 1 FROM settlement.net_transfer_items l WHERE l.payment_id = i.payment_id AND l.kind = 'fee')) i
             GROUP BY token, payer, part",
        )
        .bind(chain.network.to_string())
        .bind(settings.items_per_transfer_max)
        .fetch_all(&self.facilitator.pool)
        .await?;
        for group in groups {
            let token_text: String = group.get(0);
            let payer: String = group.get(1);
            let total = parse_amount(group.get(2))?;
            let oldest: i64 = group.get(3);
            let going = payers_out.iter().any(|(token, out)| *token == token_text && *out == payer);
            let threshold = threshold_atomic(
                threshold,
                self.decimals(chain, parse_address(&token_text)?).await?,
            );
            if !going && !group_is_due(total, threshold, oldest, now, settings.max_delay_seconds) {
                continue;
            }
            let ids: Vec<Uuid> = group.get(4);
            let mut tx = self.facilitator.pool.begin().await?;
            let id = self
                .insert_transfer(
                    &mut tx,
                    chain,
                    &token_text,
                    NetKind::Fee,
                    &payer,
                    &lower(fee_address),
                    total,
                    &ids,
                )
                .await?;
            tx.commit().await?;
            tracing::info!(transfer = %id, %payer, amount = %total, items = ids.len(), "fee transfer planned");
            report.planned = report.planned.saturating_add(1);
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments, reason = "the columns of one row")]
    pub(crate) async fn insert_transfer(
        &self,
        tx: &mut PgConnection,
        chain: &Chain,
        token: &str,
        kind: NetKind,
        payer: &str,
        payee: &str,
        amount: Amount,
        ids: &[Uuid],
    ) -> Result<Uuid, FacilitatorError> {
        let id = Uuid::now_v7();
        let ttl = i64::try_from(self.facilitator.settings.batch.authorization_ttl_seconds)
            .unwrap_or(i64::MAX);
        let now = i64::try_from(now_unix_seconds()).unwrap_or(i64::MAX);
        sqlx::query(
            "INSERT INTO settlement.net_transfers
               (id, network, chain_id, token, kind, payer, payee, amount, nonce, valid_after, valid_before, state)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8::numeric, $9, 0, $10, 'planned')",
        )
        .bind(id)
        .bind(chain.network.to_string())
        .bind(i64::try_from(chain.chain_id).unwrap_or(i64::MAX))
        .bind(token)
        .bind(kind.as_str())
        .bind(payer)
        .bind(payee)
        .bind(amount.to_string())
        .bind(format!("{:#x}", awx_x402::eip3009::random_nonce()))
        .bind(now.saturating_add(ttl))
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO settlement.net_transfer_items (payment_id, kind, net_transfer_id) SELECT unnest($1::uuid[]), $2, $3",
        )
        .bind(ids)
        .bind(kind.as_str())
        .bind(id)
        .execute(&mut *tx)
        .await?;
        Ok(id)
    }
}
