//! Payments our own agents made. Their wallets' keys are ours and their funds are held in the
//! ledger, so the policy service answers for them: when the payer is one of our wallets
//! ([`crate::own_wallets`]), verify answers from this replica's memory of the authorizations the
//! policy service announced ([`awx_api::issued`]) or, for one it has not heard of, asks it
//! `awx_api::policy::OwnVerify` (a query: nothing is written), and settle sends it `awx_api::policy::OwnPayment` (the capture), before any chain
//! call. `NotOurs` leaves the payment to the on-chain path; otherwise its answer is the answer. A settled payment's capture is queued here (`settlement.items`, one
//! row per payment) for net settlement on chain later, and the answer says so:
//! `extensions.awx = {"settlement": "deferred", "paymentId": "ldg_…", "settleBy": <Unix s>}`,
//! with an empty `transaction`.
//!
//! `settleBy` is the latest time the provider's money moves on chain: the item may be netted
//! once its authorization has expired (`validBefore`), waits at most `batch.max_delay_seconds`,
//! and groups are checked every `batch.interval_seconds`.

use std::time::Duration;

use awx_api::issued::IssuedNotice;
use awx_api::policy::{Captured, OwnAction, OwnPayment, OwnPaymentReply, OwnVerify};
use awx_bus::BusError;
use awx_types::{AccountId, Amount};
use awx_x402::{ExactEvmPayload, NormalizedRequest, SettleResponse, VerifyResponse};

use crate::facilitator::{Facilitator, FacilitatorError};
use crate::settle::lower;

/// The latest Unix time a queued item is settled on chain: netting may start when the
/// authorization has expired and the capture is recorded, the item waits at most
/// `max_delay_seconds`, and the worker looks every `interval_seconds`.
pub fn settle_by_unix(
    valid_before_unix: i64,
    captured_at_unix: i64,
    max_delay_seconds: u64,
    interval_seconds: u64,
) -> i64 {
    let seconds = |value: u64| i64::try_from(value).unwrap_or(i64::MAX);
    valid_before_unix
        .max(captured_at_unix)
        .saturating_add(seconds(max_delay_seconds))
        .saturating_add(seconds(interval_seconds))
}

impl Facilitator {
    /// Whether the payment's payer (`authorization.from`, before any signature check: the
    /// policy service compares the signature with the one it issued) is one of our agents'
    /// wallets. A payload that is not an EIP-3009 authorization is nobody's.
    pub(crate) async fn is_own_payer(
        &self,
        normalized: &NormalizedRequest,
    ) -> Result<bool, FacilitatorError> {
        let Ok(ExactEvmPayload::Eip3009(payload)) =
            ExactEvmPayload::from_json(&normalized.payload.payload)
        else {
            return Ok(false);
        };
        Ok(self.own_wallets.contains(&self.pool, payload.authorization.from).await?)
    }

    /// The verify answer from this replica's memory of issued authorizations, if it has this one
    /// ([`awx_api::issued`]).
    pub(crate) fn verify_issued(&self, normalized: &NormalizedRequest) -> Option<VerifyResponse> {
        let response = self.issued.verify_request(normalized)?;
        metrics::counter!("settlement_own_verify_total", "answered_by" => "memory").increment(1);
        Some(response)
    }

    /// Remembers that a payment was captured and tells every other replica, so none calls its
    /// authorization valid again (a notice, sent without waiting).
    pub(crate) fn announce_capture(&self, captured: &Captured) {
        let valid_before_unix = u64::try_from(captured.valid_before_unix).unwrap_or(0);
        self.issued.captured(captured.payer, captured.nonce, valid_before_unix);
        let notice = IssuedNotice::Captured {
            payer: captured.payer,
            nonce: captured.nonce,
            valid_before_unix,
        };
        let bus = self.bus.clone();
        tokio::spawn(async move {
            if let Err(error) = bus.notify(&notice).await {
                tracing::debug!(error.message = %error, "a capture was not announced");
            }
        });
    }

    /// Asks the policy service for its verdict on one of our agents' payments (a query).
    pub(crate) async fn own_verify(
        &self,
        provider: AccountId,
        normalized: &NormalizedRequest,
    ) -> Result<OwnPaymentReply, FacilitatorError> {
        let query = OwnVerify {
            provider,
            payload: normalized.payload.clone(),
            requirements: normalized.requirements.clone(),
        };
        self.ask_policy(&query).await
    }

    /// Asks the policy service to capture one of our agents' payments (or for its verdict, with
    /// [`OwnAction::Verify`]).
    pub(crate) async fn own_payment(
        &self,
        action: OwnAction,
        provider: AccountId,
        normalized: &NormalizedRequest,
    ) -> Result<OwnPaymentReply, FacilitatorError> {
        let command = OwnPayment {
            action,
            provider,
            payload: normalized.payload.clone(),
            requirements: normalized.requirements.clone(),
        };
        self.ask_policy(&command).await
    }

    /// Sends `command` to the policy service. No answer in time is
    /// [`FacilitatorError::PolicyUnavailable`].
    async fn ask_policy<C: awx_bus::Command<Reply = OwnPaymentReply>>(
        &self,
        command: &C,
    ) -> Result<OwnPaymentReply, FacilitatorError> {
        let timeout = Duration::from_millis(self.settings.policy_timeout_ms);
        match self.bus.send(command, timeout).await {
            Ok(reply) => Ok(reply),
            Err(BusError::Rejected { code, message })
                if code == awx_api::policy::codes::INVALID_REQUEST =>
            {
                Err(FacilitatorError::InvalidRequest(message))
            }
            Err(error) => {
                tracing::warn!(error.message = %error, "the policy service did not answer about a payment");
                Err(FacilitatorError::PolicyUnavailable(format!(
                    "the policy service did not answer whether the payer is an awx wallet: {error}"
                )))
            }
        }
    }

    /// The settle answer for one of our agents' payments: when it is captured, its item is
    /// queued (once, however often it is settled) and the answer's extensions say the settlement
    /// is deferred until `settleBy`.
    pub(crate) async fn deferred(
        &self,
        provider: AccountId,
        mut response: SettleResponse,
        captured: Option<Captured>,
        replay: bool,
    ) -> Result<SettleResponse, FacilitatorError> {
        let Some(captured) = captured else { return Ok(response) };
        self.announce_capture(&captured);
        let settle_by = self.queue_item(provider, &captured).await?;
        response.extensions.get_or_insert_with(Default::default).insert(
            "awx".into(),
            serde_json::json!({
                "settlement": "deferred",
                "paymentId": captured.ledger_id.to_string(),
                "settleBy": settle_by,
            }),
        );
        Ok(if replay { crate::settle::replayed(response) } else { response })
    }

    /// Inserts the settlement item of a capture if new; returns its `settleBy` (Unix seconds),
    /// computed from the stored row, so every answer for one payment promises the same time.
    async fn queue_item(
        &self,
        provider: AccountId,
        captured: &Captured,
    ) -> Result<i64, FacilitatorError> {
        let mut conn = self.pool.acquire().await?;
        let Some(queued) = queue(&mut conn, Some(provider), captured, None).await? else {
            tracing::error!(payment = %captured.ledger_id, "another payment is queued for this authorization");
            return Err(FacilitatorError::Inconsistent(format!(
                "another payment than {} is queued for the authorization {} of {}",
                captured.ledger_id, captured.nonce, captured.payer
            )));
        };
        Ok(settle_by_unix(
            queued.valid_before_unix,
            queued.captured_at_unix,
            self.settings.batch.max_delay_seconds,
            self.settings.batch.interval_seconds,
        ))
    }
}

/// A payment's settlement item, as [`queue`] found or inserted it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Queued {
    /// The item was inserted by this call.
    pub new: bool,
    /// The authorization's `validBefore` (Unix seconds).
    pub valid_before_unix: i64,
    /// When the payment was captured (Unix seconds).
    pub captured_at_unix: i64,
}

/// Inserts the settlement item of a capture in `conn` unless the payment (or its authorization)
/// is queued already; `true` when it was new. See [`queue`].
pub async fn insert_item(
    conn: &mut sqlx::PgConnection,
    provider: Option<AccountId>,
    captured: &Captured,
    paid_by: Option<awx_x402::B256>,
) -> Result<bool, FacilitatorError> {
    Ok(queue(conn, provider, captured, paid_by).await?.is_some_and(|queued| queued.new))
}

/// Inserts the settlement item of a capture in `conn` unless the payment (or its authorization)
/// is queued already, and returns the payment's item: `None` when another payment holds its
/// authorization (payer and nonce). The settle path calls it for its answer, and the
/// `payment.captured` event (from the policy service's outbox) calls it too, so a capture whose
/// settle answer was lost is still queued. With `paid_by`, the item is `settled_externally` by
/// that transaction (its authorization was submitted on chain by someone else).
///
/// One statement inserts and, when the row existed, reads it; only when an insert of the same
/// payment committed while it ran (its snapshot predates the row) does a second read find it.
pub async fn queue(
    conn: &mut sqlx::PgConnection,
    provider: Option<AccountId>,
    captured: &Captured,
    paid_by: Option<awx_x402::B256>,
) -> Result<Option<Queued>, FacilitatorError> {
    let amount = Amount::parse_atomic(&captured.amount)
        .ok()
        .filter(|amount| !amount.is_zero())
        .ok_or_else(|| {
            FacilitatorError::Inconsistent(format!(
                "the policy service reported a capture of {:?}, not a positive atomic amount",
                captured.amount
            ))
        })?;
    let fee = Amount::parse_atomic(&captured.fee).map_err(|error| {
        FacilitatorError::Inconsistent(format!(
            "the policy service reported a fee of {:?}: {error}",
            captured.fee
        ))
    })?;
    let row: Option<(bool, i64, i64)> = sqlx::query_as(
        "WITH inserted AS (
           INSERT INTO settlement.items
             (payment_id, network, token, payer, payee, amount, valid_before, nonce, captured_at, provider, fee,
              state, settled_tx, settled_at)
           VALUES ($1, $2, $3, $4, $5, $6::numeric, $7, $8, 'epoch'::timestamptz + $9 * interval '1 second', $10, $11::numeric,
                   CASE WHEN $12::text IS NULL THEN 'queued' ELSE 'settled_externally' END, $12,
                   CASE WHEN $12::text IS NULL THEN NULL ELSE now() END)
           ON CONFLICT DO NOTHING
           RETURNING valid_before, extract(epoch FROM captured_at)::bigint AS captured_at)
         SELECT true, valid_before, captured_at FROM inserted
         UNION ALL
         SELECT false, valid_before, extract(epoch FROM captured_at)::bigint
           FROM settlement.items WHERE payment_id = $1 AND NOT EXISTS (SELECT 1 FROM inserted)",
    )
    .bind(captured.ledger_id.as_uuid())
    .bind(&captured.network)
    .bind(lower(captured.token))
    .bind(lower(captured.payer))
    .bind(lower(captured.payee))
    .bind(amount.to_string())
    .bind(captured.valid_before_unix)
    .bind(format!("{:#x}", captured.nonce))
    .bind(captured.captured_at_unix)
    .bind(provider.map(|provider| provider.as_uuid()))
    .bind(fee.to_string())
    .bind(paid_by.map(|hash| format!("{hash:#x}")))
    .fetch_optional(&mut *conn)
    .await?;
    let row = match row {
        Some(row) => Some(row),
        // Nothing inserted and nothing seen: either another payment holds the authorization, or
        // the same payment's item committed after this statement's snapshot was taken.
        None => {
            sqlx::query_as(
                "SELECT false, valid_before, extract(epoch FROM captured_at)::bigint
                 FROM settlement.items WHERE payment_id = $1",
            )
            .bind(captured.ledger_id.as_uuid())
            .fetch_optional(&mut *conn)
            .await?
        }
    };
    let Some((new, valid_before_unix, captured_at_unix)) = row else { return Ok(None) };
    if new {
        metrics::counter!("settlement_items_queued_total", "network" => captured.network.clone())
            .increment(1);
    }
    Ok(Some(Queued { new, valid_before_unix, captured_at_unix }))
}

/// Queues the item of each `payment.captured` event, in the consumer's transaction (the inbox
/// makes a redelivered event a no-op), unless the settle answer queued it already (which also
/// announced the capture; otherwise this announces it).
#[derive(Debug, Clone)]
pub struct CapturedHandler(pub std::sync::Arc<Facilitator>);

impl awx_bus::EventHandler<awx_api::policy::PaymentCaptured> for CapturedHandler {
    async fn handle(
        &self,
        tx: &mut sqlx::PgConnection,
        event: awx_api::policy::PaymentCaptured,
        _meta: awx_bus::EventMeta,
    ) -> Result<(), awx_bus::HandlerError> {
        // Usually the settle answer queued it already: a primary-key read, not an insert that
        // conflicts (which costs Postgres several times as much).
        let queued: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM settlement.items WHERE payment_id = $1)",
        )
        .bind(event.captured.ledger_id.as_uuid())
        .fetch_one(&mut *tx)
        .await
        .map_err(|error| awx_bus::HandlerError::database(&error))?;
        if queued {
            return Ok(());
        }
        self.0.announce_capture(&event.captured);
        insert_item(tx, event.provider, &event.captured, None).await.map(|_| ()).map_err(|error| {
            match error {
                // Postgres refused the event's data: redelivering cannot help.
                FacilitatorError::Database(error) => awx_bus::HandlerError::database(&error),
                other => awx_bus::HandlerError::transient(other),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::settle_by_unix;

    #[test]
    fn settle_by_counts_from_the_later_of_expiry_and_capture() {
        assert_eq!(settle_by_unix(1_000, 900, 3_600, 300), 4_900);
        assert_eq!(settle_by_unix(1_000, 1_200, 3_600, 300), 5_100);
        assert_eq!(settle_by_unix(i64::MAX - 5, 0, 3_600, 300), i64::MAX);
    }
}
