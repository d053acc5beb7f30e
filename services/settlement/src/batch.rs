//! The batch settlement worker: nets our own agents' captured payments (`settlement.items`) on
//! chain, one transfer per (token, payer, payee) group, every transfer of a chain in one batch
//! transaction.
//!
//! One pass per chain, under a session advisory lock on that chain (so several replicas are
//! safe: the others skip the chain), each step stored before the next:
//!
//! 1. **Follow** the batch in flight, if any ([`crate::batch_send`]): broadcast it if stored but
//!    not sent, record its outcome once mined (and `confirmations` deep), or replace it with a
//!    higher fee on the same relayer nonce when it stays unmined past `replace_after_seconds`.
//!    While a batch is in flight no other starts on its chain.
//! 2. **Classify** items whose authorization expired (`validBefore` plus a margin):
//!    `authorizationState(payer, nonce)` on chain. Unused is final after expiry, so the item is
//!    eligible for netting (`eligible_at`); used means the provider submitted the authorization
//!    through someone else: the item is `settled_externally` by that transaction (found by its
//!    `AuthorizationUsed` log) and never netted.
//! 3. **Plan**: eligible items grouped by (token, payer, payee); a group whose total reaches the
//!    threshold, or whose oldest item has waited `max_delay_seconds` since it became payable
//!    (the later of capture and expiry), becomes one net transfer (kind `payee`) with a fresh
//!    nonce; the uncollected fees of the same payer become one transfer (kind `fee`) to the
//!    platform's fee address. `settlement.net_transfer_items` ties each payment to at most one
//!    transfer of each kind (its primary key).
//! 4. **Sign**: the policy service decides (`NetDecide`: captured, from this wallet, adding up
//!    exactly), the signer signs against that decision (`SignNetTransfer`), the signature is
//!    stored.
//! 5. **Batch**: up to `transfers_max` signed transfers (fewer if the gas estimate is above
//!    `gas_max_per_batch`) go out in one Multicall3 `aggregate3`
//!    transaction with `allowFailure` on every call, stored before broadcast as every relayer
//!    transaction is. A transfer that failed in a mined batch stays signed and goes in the next
//!    batch as it is (its authorization is valid for `authorization_ttl_seconds`), or is flagged
//!    after `attempts_max` tries.
//! 6. **Record**: each confirmed transfer is posted in the ledger once (`PayoutSettled` for a
//!    payee, `FeesCollected` for fees; idempotent by transaction and transfer), and so is each
//!    item settled externally.
//!
//! A crash anywhere resumes from the stored state at the next pass. Fail points
//! (`AWX_SETTLEMENT_FAIL_POINT`, see [`fail_point`]) let the tests kill a real process at each
//! step.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use awx_api::ledger::Asset;
use awx_api::policy::{NetDecide, NetKind};
use awx_api::signer::SignNetTransfer;
use awx_bus::BusError;
use awx_types::{Amount, LedgerId, PaymentId};
use awx_x402::{Address, B256, Eip3009Authorization, U256};
use sqlx::{AssertSqlSafe, Connection as _, PgConnection, Row as _};
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::facilitator::{Chain, Facilitator, FacilitatorError};
use crate::settle::lower;

/// What one pass did on one chain (for tests, logs and the benchmark).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PassReport {
    /// Another replica held the chain's lock: nothing was done.
    pub skipped: bool,
    /// Items found paid on chain by someone else.
    pub external: usize,
    /// Items found unused after expiry (now eligible).
    pub eligible: usize,
    /// Net transfers planned.
    pub planned: usize,
    /// Net transfers signed.
    pub signed: usize,
    /// The batch started in this pass.
    pub batch: Option<Uuid>,
    /// Net transfers confirmed in this pass.
    pub confirmed: usize,
    /// Net transfers that failed inside a mined batch in this pass.
    pub failed: usize,
    /// Ledger postings made.
    pub recorded: usize,
    /// Batch transactions replaced with a higher fee.
    pub replaced: usize,
}

/// A test hook: when the environment variable `AWX_SETTLEMENT_FAIL_POINT` names `point`, the
/// process logs that it reached it and waits forever, so a test can kill it there (SIGKILL) and
/// check that a restart resumes from what was stored. Points: `after_plan`, `after_sign`,
/// `after_batch_stored`, `after_broadcast`, `before_confirm`.
pub async fn fail_point(point: &str) {
    if std::env::var("AWX_SETTLEMENT_FAIL_POINT").is_ok_and(|value| value == point) {
        tracing::error!(point, "fail point reached; waiting to be killed");
        std::future::pending::<()>().await;
    }
}

/// The worker.
#[derive(Debug)]
pub struct BatchWorker {
    pub(crate) facilitator: Arc<Facilitator>,
    decimals: Mutex<BTreeMap<(u64, Address), u8>>,
}

/// Which signed transfers to read.
enum TransferFilter<'a> {
    /// Those of a batch.
    Batch(Uuid),
    /// These.
    Ids(&'a [Uuid]),
}

/// A signed net transfer, as a batch carries it.
#[derive(Debug, Clone)]
pub(crate) struct Transfer {
    pub(crate) id: Uuid,
    pub(crate) kind: NetKind,
    pub(crate) token: Address,
    pub(crate) authorization: Eip3009Authorization,
    pub(crate) signature: Vec<u8>,
}

pub(crate) fn parse_address(text: &str) -> Result<Address, FacilitatorError> {
    text.parse().map_err(|_| FacilitatorError::Inconsistent(format!("stored address {text:?}")))
}

pub(crate) fn parse_b256(text: &str) -> Result<B256, FacilitatorError> {
    text.parse().map_err(|_| FacilitatorError::Inconsistent(format!("stored hash {text:?}")))
}

pub(crate) fn parse_amount(text: &str) -> Result<Amount, FacilitatorError> {
    Amount::parse_atomic(text)
        .map_err(|error| FacilitatorError::Inconsistent(format!("stored amount {text:?}: {error}")))
}

pub(crate) fn kind_of(text: &str) -> NetKind {
    match text {
        "fee" => NetKind::Fee,
        "withdrawal" => NetKind::Withdrawal,
        _ => NetKind::Payee,
    }
}

pub(crate) fn bus_error(what: &str, error: BusError) -> FacilitatorError {
    match what {
        "ledger" => FacilitatorError::Ledger(error.to_string()),
        "signer" => FacilitatorError::Signer(error.to_string()),
        _ => FacilitatorError::PolicyUnavailable(error.to_string()),
    }
}

/// The threshold (micro-dollars) in atomic units of a dollar token with `decimals` (rounded up).
pub fn threshold_atomic(micros: Amount, decimals: u8) -> Amount {
    let micros = micros.atomic();
    let scaled = if decimals >= 6 {
        10u128
            .checked_pow(u32::from(decimals.saturating_sub(6)))
            .and_then(|f| micros.checked_mul(f))
    } else {
        10u128.checked_pow(u32::from(6u8.saturating_sub(decimals))).map(|f| micros.div_ceil(f))
    };
    Amount::from_atomic(scaled.unwrap_or(u128::MAX))
}

/// Whether a group goes out now: its total reached the threshold, or its oldest item has been
/// payable for `max_delay_seconds`.
pub fn group_is_due(
    total: Amount,
    threshold: Amount,
    oldest_payable_unix: i64,
    now_unix: i64,
    max_delay_seconds: u64,
) -> bool {
    let waited = now_unix.saturating_sub(oldest_payable_unix);
    total >= threshold || waited >= i64::try_from(max_delay_seconds).unwrap_or(i64::MAX)
}

impl BatchWorker {
    /// A worker over the facilitator's chains, storage and bus.
    pub fn new(facilitator: Arc<Facilitator>) -> Self {
        Self { facilitator, decimals: Mutex::new(BTreeMap::new()) }
    }

    /// One pass over every chain; see the module docs.
    pub async fn run_once(&self) -> Result<Vec<PassReport>, FacilitatorError> {
        let mut reports = Vec::new();
        let chains: Vec<Chain> = self.facilitator.chains().cloned().collect();
        for chain in &chains {
            reports.push(self.pass_locked(chain).await?);
        }
        Ok(reports)
    }

    /// One pass over `chain`, if no other replica is in one.
    pub async fn pass_locked(&self, chain: &Chain) -> Result<PassReport, FacilitatorError> {
        // A connection of its own, closed at the end: the session lock dies with it, also when
        // this pass is cancelled or the process dies.
        let options = self.facilitator.pool.connect_options();
        let mut lock = PgConnection::connect_with(&options).await?;
        let key = format!("awx.settlement.batch:{}", chain.network);
        let held: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock(hashtextextended($1, 0))")
            .bind(&key)
            .fetch_one(&mut lock)
            .await?;
        if !held {
            return Ok(PassReport { skipped: true, ..PassReport::default() });
        }
        let report = self.pass(chain).await;
        let _ = lock.close().await;
        report
    }

    async fn pass(&self, chain: &Chain) -> Result<PassReport, FacilitatorError> {
        let mut report = PassReport::default();
        let in_flight = self.follow(chain, &mut report).await?;
        self.record(chain, &mut report).await?;
        self.classify(chain, &mut report).await?;
        self.plan(chain, &mut report).await?;
        self.sign_planned(chain, &mut report).await?;
        // Withdrawals left pending by a crash between storing and signing.
        self.facilitator.resume_withdrawals(chain, Duration::from_secs(30)).await?;
        if !in_flight {
            self.start_batch(chain, &mut report).await?;
        }
        self.record(chain, &mut report).await?;
        self.observe(chain).await?;
        Ok(report)
    }

    /// The token's decimals (read from the chain once).
    pub(crate) async fn decimals(
        &self,
        chain: &Chain,
        token: Address,
    ) -> Result<u8, FacilitatorError> {
        let key = (chain.chain_id, token);
        if let Some(decimals) = self.decimals.lock().await.get(&key) {
            return Ok(*decimals);
        }
        let decimals = chain
            .client
            .token(token)
            .decimals()
            .await
            .map_err(|error| FacilitatorError::Chain(error.to_string()))?;
        self.decimals.lock().await.insert(key, decimals);
        Ok(decimals)
    }

    pub(crate) async fn asset(
        &self,
        chain: &Chain,
        token: Address,
    ) -> Result<Asset, FacilitatorError> {
        Ok(Asset {
            network: chain.network.to_string(),
            token,
            decimals: self.decimals(chain, token).await?,
        })
    }

    /// Step 4: a decision from the policy service, then the signer's signature, for each planned
    /// transfer. A refusal is logged and kept on the transfer; it is asked again next pass.
    async fn sign_planned(
        &self,
        chain: &Chain,
        report: &mut PassReport,
    ) -> Result<(), FacilitatorError> {
        let rows = sqlx::query(
            "SELECT t.id, t.kind, t.token, t.payer, t.payee, t.amount::text, t.nonce, t.valid_after, t.valid_before,
                    array_agg(l.payment_id ORDER BY l.payment_id)
             FROM settlement.net_transfers t JOIN settlement.net_transfer_items l ON l.net_transfer_id = t.id
             WHERE t.network = $1 AND t.state = 'planned'
             GROUP BY t.id ORDER BY t.id",
        )
        .bind(chain.network.to_string())
        .fetch_all(&self.facilitator.pool)
        .await?;
        let timeout = Duration::from_millis(self.facilitator.settings.signer_timeout_ms);
        for row in rows {
            let id: Uuid = row.get(0);
            let kind = kind_of(row.get(1));
            let token = parse_address(row.get(2))?;
            let valid_after: i64 = row.get(7);
            let valid_before: i64 = row.get(8);
            let authorization = Eip3009Authorization {
                from: parse_address(row.get(3))?,
                to: parse_address(row.get(4))?,
                value: U256::from(parse_amount(row.get(5))?.atomic()),
                valid_after: U256::from(u64::try_from(valid_after).unwrap_or(0)),
                valid_before: U256::from(u64::try_from(valid_before).unwrap_or(0)),
                nonce: parse_b256(row.get(6))?,
            };
            let payments: Vec<Uuid> = row.get(9);
            let decide = NetDecide {
                transfer_id: id,
                kind,
                chain_id: chain.chain_id,
                token,
                authorization: authorization.clone(),
                payment_ids: payments.iter().copied().map(LedgerId::from_uuid).collect(),
            };
            let signed = match self.facilitator.bus.send(&decide, timeout).await {
                Ok(decision) => {
                    let request = SignNetTransfer {
                        transfer_id: id,
                        kind,
                        agent_id: decision.agent_id,
                        chain_id: chain.chain_id,
                        token,
                        token_name: decision.token_name,
                        token_version: decision.token_version,
                        authorization,
                        payment_ids: payments.iter().copied().map(PaymentId::from_uuid).collect(),
                        decision: decision.decision,
                    };
                    self.facilitator
                        .bus
                        .send(&request, timeout)
                        .await
                        .map_err(|error| bus_error("signer", error))
                }
                Err(error) => Err(bus_error("policy", error)),
            };
            match signed {
                Ok(signed) => {
                    sqlx::query(
                        "UPDATE settlement.net_transfers SET signature = $2, state = 'signed', last_error = NULL, updated_at = now()
                         WHERE id = $1 AND state = 'planned'",
                    )
                    .bind(id)
                    .bind(signed.signature.to_vec())
                    .execute(&self.facilitator.pool)
                    .await?;
                    report.signed = report.signed.saturating_add(1);
                }
                Err(error) => {
                    tracing::error!(transfer = %id, error.message = %error, "a net transfer was not signed; retrying next pass");
                    sqlx::query("UPDATE settlement.net_transfers SET last_error = $2, updated_at = now() WHERE id = $1")
                        .bind(id)
                        .bind(error.to_string())
                        .execute(&self.facilitator.pool)
                        .await?;
                }
            }
        }
        fail_point("after_sign").await;
        Ok(())
    }

    /// Step 5: the signed transfers of the chain go in a new batch: at most `transfers_max`, and
    /// halved until the batch's gas estimate is within `gas_max_per_batch` (the rest wait for
    /// the next batch).
    async fn start_batch(
        &self,
        chain: &Chain,
        report: &mut PassReport,
    ) -> Result<(), FacilitatorError> {
        let settings = &self.facilitator.settings.batch;
        let ids: Vec<Uuid> = sqlx::query_scalar(
            "SELECT id FROM settlement.net_transfers WHERE network = $1 AND state = 'signed'
             ORDER BY id LIMIT $2",
        )
        .bind(chain.network.to_string())
        .bind(i64::try_from(settings.transfers_max).unwrap_or(100))
        .fetch_all(&self.facilitator.pool)
        .await?;
        if ids.is_empty() {
            return Ok(());
        }
        let batch_id = Uuid::now_v7();
        let mut transfers = self.transfers(TransferFilter::Ids(&ids)).await?;
        let relayer = self.facilitator.relayer_for(batch_id).await?;
        while transfers.len() > 1 {
            let input = crate::batch_send::batch_calldata(&transfers)?;
            match chain.client.estimate_gas(relayer, settings.contract, input).await {
                Ok(gas) if gas > settings.gas_max_per_batch => {
                    transfers.truncate(transfers.len().div_ceil(2));
                }
                // Within the cap, or an estimate that fails: signing estimates again and says why.
                _ => break,
            }
        }
        let ids: Vec<Uuid> = transfers.iter().map(|transfer| transfer.id).collect();
        let mut tx = self.facilitator.pool.begin().await?;
        sqlx::query(
            "INSERT INTO settlement.batches (id, network, chain_id, contract, state) VALUES ($1, $2, $3, $4, 'planned')",
        )
        .bind(batch_id)
        .bind(chain.network.to_string())
        .bind(i64::try_from(chain.chain_id).unwrap_or(i64::MAX))
        .bind(lower(settings.contract))
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE settlement.net_transfers SET batch_id = $2, updated_at = now() WHERE id = ANY($1) AND state = 'signed'",
        )
        .bind(&ids)
        .bind(batch_id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        report.batch = Some(batch_id);
        self.send_batch(chain, batch_id, report).await
    }

    /// The signed transfers of a batch, in the batch's call order.
    pub(crate) async fn batch_transfers(
        &self,
        batch_id: Uuid,
    ) -> Result<Vec<Transfer>, FacilitatorError> {
        self.transfers(TransferFilter::Batch(batch_id)).await
    }

    /// Signed transfers, in call order (by id).
    async fn transfers(
        &self,
        filter: TransferFilter<'_>,
    ) -> Result<Vec<Transfer>, FacilitatorError> {
        let columns = "SELECT id, kind, token, payer, payee, amount::text, nonce, valid_after, valid_before, signature
                       FROM settlement.net_transfers";
        let rows = match filter {
            TransferFilter::Batch(batch_id) => {
                sqlx::query(AssertSqlSafe(format!(
                    "{columns} WHERE batch_id = $1 AND state = 'signed' ORDER BY id"
                )))
                .bind(batch_id)
                .fetch_all(&self.facilitator.pool)
                .await?
            }
            TransferFilter::Ids(ids) => {
                sqlx::query(AssertSqlSafe(format!(
                    "{columns} WHERE id = ANY($1) AND state = 'signed' ORDER BY id"
                )))
                .bind(ids)
                .fetch_all(&self.facilitator.pool)
                .await?
            }
        };
        rows.iter()
            .map(|row| {
                let valid_after: i64 = row.get(7);
                let valid_before: i64 = row.get(8);
                Ok(Transfer {
                    id: row.get(0),
                    kind: kind_of(row.get(1)),
                    token: parse_address(row.get(2))?,
                    authorization: Eip3009Authorization {
                        from: parse_address(row.get(3))?,
                        to: parse_address(row.get(4))?,
                        value: U256::from(parse_amount(row.get(5))?.atomic()),
                        valid_after: U256::from(u64::try_from(valid_after).unwrap_or(0)),
                        valid_before: U256::from(u64::try_from(valid_before).unwrap_or(0)),
                        nonce: parse_b256(row.get(6))?,
                    },
                    signature: row.get(9),
                })
            })
            .collect()
    }
}

/// Runs a pass every `batch.interval_seconds` until cancelled (the first one at once).
pub async fn run(worker: Arc<BatchWorker>, cancel: CancellationToken) {
    let interval = Duration::from_secs(worker.facilitator.settings.batch.interval_seconds);
    loop {
        if let Err(error) = worker.run_once().await {
            tracing::warn!(error.message = %error, "a batch settlement pass failed; retrying next interval");
        }
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(interval) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use awx_types::Amount;

    use super::{group_is_due, threshold_atomic};

    #[test]
    fn thresholds_scale_to_the_token() {
        let ten_dollars = Amount::from_atomic(10_000_000);
        assert_eq!(threshold_atomic(ten_dollars, 6), Amount::from_atomic(10_000_000));
        assert_eq!(
            threshold_atomic(ten_dollars, 18),
            Amount::from_atomic(10_000_000_000_000_000_000)
        );
        assert_eq!(threshold_atomic(Amount::from_atomic(1), 2), Amount::from_atomic(1));
    }

    #[test]
    fn a_group_is_due_at_the_threshold_or_after_the_delay() {
        let threshold = Amount::from_atomic(10_000_000);
        assert!(!group_is_due(Amount::from_atomic(9_999_999), threshold, 1_000, 1_100, 3_600));
        assert!(group_is_due(Amount::from_atomic(10_000_000), threshold, 1_000, 1_000, 3_600));
        assert!(group_is_due(Amount::from_atomic(1), threshold, 1_000, 4_600, 3_600));
        assert!(!group_is_due(Amount::from_atomic(1), threshold, 1_000, 4_599, 3_600));
    }
}
