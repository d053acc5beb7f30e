//! What providers and agents see of net settlement: a payment's settlement state, and a
//! provider's net transfers with the payments each covers.

use awx_api::facilitator::{ItemSettlement, ListSettlements, SettlementList, SettlementView};
use awx_types::{Amount, LedgerId, SettlementId};
use sqlx::Row as _;
use uuid::Uuid;

use crate::facilitator::{Facilitator, FacilitatorError};
use crate::own::settle_by_unix;

/// The most payments a page of settlements lists (about 40 bytes each on the bus).
pub const PAGE_PAYMENTS_MAX: usize = 20_000;

fn parse<T: std::str::FromStr>(text: &str) -> Result<T, FacilitatorError> {
    text.parse().map_err(|_| FacilitatorError::Inconsistent(format!("stored value {text:?}")))
}

impl Facilitator {
    /// A captured payment's settlement, if it was captured through us.
    pub async fn payment_settlement(
        &self,
        payment_id: LedgerId,
    ) -> Result<Option<ItemSettlement>, FacilitatorError> {
        let row = sqlx::query(
            "SELECT i.state, i.valid_before, extract(epoch FROM i.captured_at)::bigint, t.id, t.batch_id,
                    coalesce(i.settled_tx, t.tx_hash), extract(epoch FROM i.settled_at)::bigint,
                    coalesce(i.last_error, t.last_error)
             FROM settlement.items i
             LEFT JOIN settlement.net_transfer_items l ON l.payment_id = i.payment_id AND l.kind = 'payee'
             LEFT JOIN settlement.net_transfers t ON t.id = l.net_transfer_id
             WHERE i.payment_id = $1",
        )
        .bind(payment_id.as_uuid())
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let batch = &self.settings.batch;
        let tx_hash: Option<String> = row.get(5);
        Ok(Some(ItemSettlement {
            state: row.get(0),
            settle_by_unix: settle_by_unix(
                row.get(1),
                row.get(2),
                batch.max_delay_seconds,
                batch.interval_seconds,
            ),
            settlement_id: row.get::<Option<Uuid>, _>(3).map(SettlementId::from_uuid),
            batch_id: row.get(4),
            tx_hash: tx_hash.as_deref().map(parse).transpose()?,
            settled_at_unix: row.get(6),
            error: row.get(7),
        }))
    }

    /// A provider's net transfers (kind `payee`), newest first: `limit` of them, or fewer when
    /// together they cover more than [`PAGE_PAYMENTS_MAX`] payments (`has_more` then says
    /// more follow), so the answer stays within the bus's message size.
    pub async fn list_settlements(
        &self,
        query: &ListSettlements,
    ) -> Result<SettlementList, FacilitatorError> {
        let limit = i64::from(query.limit.clamp(1, 100));
        let rows = sqlx::query(
            "SELECT t.id, t.network, t.token, t.payer, t.payee, t.amount::text, t.state, t.tx_hash, t.attempts,
                    t.last_error, extract(epoch FROM t.created_at)::bigint,
                    array_agg(l.payment_id ORDER BY l.payment_id)
             FROM settlement.net_transfers t
             JOIN settlement.net_transfer_items l ON l.net_transfer_id = t.id
             JOIN settlement.items i ON i.payment_id = l.payment_id
             WHERE t.kind = 'payee' AND i.provider = $1 AND ($2::uuid IS NULL OR t.id < $2)
             GROUP BY t.id ORDER BY t.id DESC LIMIT $3",
        )
        .bind(query.provider.as_uuid())
        .bind(query.starting_after.map(|id| id.as_uuid()))
        .bind(limit.saturating_add(1))
        .fetch_all(&self.pool)
        .await?;
        let mut has_more = i64::try_from(rows.len()).unwrap_or(i64::MAX) > limit;
        let mut covered = 0_usize;
        let mut page = Vec::new();
        for row in rows.iter().take(usize::try_from(limit).unwrap_or(100)) {
            let payments: Vec<Uuid> = row.get(11);
            covered = covered.saturating_add(payments.len());
            if covered > PAGE_PAYMENTS_MAX && !page.is_empty() {
                has_more = true;
                break;
            }
            page.push((row, payments));
        }
        let settlements = page
            .into_iter()
            .map(|(row, payments)| {
                let tx_hash: Option<String> = row.get(7);
                Ok(SettlementView {
                    id: SettlementId::from_uuid(row.get(0)),
                    network: row.get(1),
                    token: parse(row.get(2))?,
                    payer: parse(row.get(3))?,
                    payee: parse(row.get(4))?,
                    amount: Amount::parse_atomic(row.get(5))
                        .map_err(|error| FacilitatorError::Inconsistent(error.to_string()))?,
                    state: row.get(6),
                    tx_hash: tx_hash.as_deref().map(parse).transpose()?,
                    attempts: row.get(8),
                    error: row.get(9),
                    created_at_unix: row.get(10),
                    payments: payments.into_iter().map(LedgerId::from_uuid).collect(),
                })
            })
            .collect::<Result<Vec<_>, FacilitatorError>>()?;
        Ok(SettlementList { settlements, has_more })
    }
}
