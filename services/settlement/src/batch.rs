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

use awx_api::facilitator::SettlementConfirmed;
use awx_api::ledger::{Asset, FeesCollected, PayoutSettled};
use awx_api::policy::{NetDecide, NetKind};
use awx_api::signer::SignNetTransfer;
use awx_bus::BusError;
use awx_types::{Amount, LedgerId, PaymentId};
use awx_x402::{Address, B256, Eip3009Authorization, U256};
use sqlx::{AssertSqlSafe, Connection as _, PgConnection, Row as _};
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::facilitator::{Chain, Facilitator, FacilitatorError, now_unix_seconds};
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

fn parse_address(text: &str) -> Result<Address, FacilitatorError> {
    text.parse().map_err(|_| FacilitatorError::Inconsistent(format!("stored address {text:?}")))
}

fn parse_b256(text: &str) -> Result<B256, FacilitatorError> {
    text.parse().map_err(|_| FacilitatorError::Inconsistent(format!("stored hash {text:?}")))
}

fn parse_amount(text: &str) -> Result<Amount, FacilitatorError> {
    Amount::parse_atomic(text)
        .map_err(|error| FacilitatorError::Inconsistent(format!("stored amount {text:?}: {error}")))
}

fn kind_of(text: &str) -> NetKind {
    if text == "fee" { NetKind::Fee } else { NetKind::Payee }
}

fn bus_error(what: &str, error: BusError) -> FacilitatorError {
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

    async fn asset(&self, chain: &Chain, token: Address) -> Result<Asset, FacilitatorError> {
        Ok(Asset {
            network: chain.network.to_string(),
            token,
            decimals: self.decimals(chain, token).await?,
        })
    }

    /// Step 2: reads expired items' authorizations on chain.
    async fn classify(
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
    async fn plan(&self, chain: &Chain, report: &mut PassReport) -> Result<(), FacilitatorError> {
        let settings = &self.facilitator.settings.batch;
        let threshold = settings.threshold_micros().map_err(FacilitatorError::Inconsistent)?;
        let now = i64::try_from(now_unix_seconds()).unwrap_or(i64::MAX);
        let network = chain.network.to_string();
        let groups = sqlx::query(
            "SELECT token, payer, payee, sum(amount)::text,
                    min(greatest(extract(epoch FROM captured_at)::bigint, valid_before)),
                    array_agg(payment_id ORDER BY payment_id)
             FROM settlement.items
             WHERE network = $1 AND state = 'queued' AND eligible_at IS NOT NULL
             GROUP BY token, payer, payee",
        )
        .bind(&network)
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
    async fn plan_fees(
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
             FROM settlement.items i
             WHERE network = $1 AND fee > 0 AND state <> 'queued'
               AND NOT EXISTS (SELECT 1 FROM settlement.net_transfer_items l WHERE l.payment_id = i.payment_id AND l.kind = 'fee')
             GROUP BY token, payer",
        )
        .bind(chain.network.to_string())
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
    async fn insert_transfer(
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

    /// Step 6: the ledger postings of confirmed transfers and externally settled items, each
    /// once (the ledger is idempotent by transaction and reference; the flag is set after).
    async fn record(&self, chain: &Chain, report: &mut PassReport) -> Result<(), FacilitatorError> {
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
                    self.facilitator.bus.send(&payout, timeout).await.map(|_| ())
                }
                NetKind::Fee => {
                    let fees = FeesCollected {
                        asset,
                        payer: parse_address(row.get(3))?,
                        amount,
                        tx_hash,
                        reference: id.to_string(),
                    };
                    self.facilitator.bus.send(&fees, timeout).await.map(|_| ())
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
    async fn observe(&self, chain: &Chain) -> Result<(), FacilitatorError> {
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
