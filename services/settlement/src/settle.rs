//! Settling an outside payer's authorization on chain, exactly once.
//!
//! 1. The settlement is recorded keyed by (network, payer, nonce) and its row locked. A second
//!    settle of the same payload finds it: a final outcome is returned as stored; a transaction
//!    in flight is followed (its receipt awaited), never sent again. Another payload with the same
//!    nonce is refused as a used nonce.
//! 2. The owner of a `planned` settlement estimates gas (a revert here is a failure that consumes
//!    nothing), takes the relayer's next nonce under a row lock (so replicas never share a nonce),
//!    has the signer sign, and commits the signed transaction, its nonce and the `signed` state
//!    **before** broadcasting. [`Facilitator::sign_and_store`] does this for every relayer
//!    transaction (settlements and the development faucet's mints alike).
//! 3. It broadcasts, then waits up to the chain's `receipt_wait_ms` for the receipt: a success
//!    with the token's `Transfer` log is settled; a revert, or a receipt without that log, fails;
//!    no receipt yet is `settlement_pending` with the hash. The resumer
//!    ([`crate::resumer`]) re-broadcasts anything left `signed` and records receipts that come
//!    later, so a later settle of the same payload returns the final outcome.
//!
//! Payments whose payer is one of our agents' wallets never get here: the policy service answers
//! for them first (see [`crate::own`]).

use std::time::{Duration, Instant};

use awx_api::policy::{OwnAction, OwnPaymentReply};
use awx_chain::{ChainError, RevertKind, SendError, Token, TransactionReceipt};
use awx_types::AccountId;
use awx_x402::{
    Address, B256, Bytes, Eip3009Payload, ErrorReason, FacilitatorRequest, SettleFailure,
    SettleResponse,
};
use sha2::{Digest as _, Sha256};
use sqlx::{PgConnection, Row as _};
use uuid::Uuid;

use crate::facilitator::{
    Chain, Checked, Facilitator, FacilitatorError, Valid, normalize, revert_reason,
};

/// How often a waiting settle asks for the receipt: first soon (a local or fast chain mines at
/// once), then backing off to every 200 ms.
const RECEIPT_POLL_FIRST: Duration = Duration::from_millis(10);
const RECEIPT_POLL_MAX: Duration = Duration::from_millis(200);

/// Marks a successful answer as the replay of an earlier settle of the same authorization
/// (`extensions.awx.replay = true`): exactly one settle of a payment answers success as new, so a
/// provider's middleware serves one request per payment.
pub(crate) fn replayed(mut response: SettleResponse) -> SettleResponse {
    if response.success {
        let extensions = response.extensions.get_or_insert_with(Default::default);
        let awx = extensions.entry("awx").or_insert_with(|| serde_json::json!({}));
        if let Some(awx) = awx.as_object_mut() {
            awx.insert("replay".into(), serde_json::Value::Bool(true));
        }
    }
    response
}

/// An address as stored: lowercase `0x` hex.
pub(crate) fn lower(address: Address) -> String {
    address.to_string().to_lowercase()
}

fn failed(
    reason: ErrorReason,
    message: impl Into<String>,
    payer: Option<String>,
    transaction: String,
    network: &str,
) -> SettleResponse {
    SettleResponse::failed(SettleFailure {
        reason,
        message: message.into(),
        payer,
        transaction,
        network: network.to_owned(),
    })
}

/// A settlement as stored.
#[derive(Debug)]
struct Row {
    id: Uuid,
    authorization_hash: Vec<u8>,
    state: String,
    tx_hash: Option<String>,
    error_reason: Option<String>,
    error_message: Option<String>,
}

/// The final state of a mined transaction.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Settled: the transfer happened.
    Settled,
    /// Mined but not settled.
    Failed(ErrorReason, String),
}

/// Classifies a receipt: reverted, without the expected `Transfer` log, or settled.
pub fn receipt_outcome(
    token: &Token,
    receipt: &TransactionReceipt,
    from: Address,
    to: Address,
    value: awx_x402::U256,
) -> Outcome {
    if !receipt.status() {
        return Outcome::Failed(
            ErrorReason::InvalidExactEvmTransactionFailed,
            "the settlement transaction reverted".into(),
        );
    }
    if !token.receipt_has_transfer(receipt, from, to, value) {
        return Outcome::Failed(
            ErrorReason::InvalidExactEvmTransferEventMismatch,
            "the receipt has no matching Transfer log".into(),
        );
    }
    Outcome::Settled
}

impl Facilitator {
    /// Settles a payment: our own agents' through the policy service (queued for net
    /// settlement), anyone else's on chain (see the module docs).
    pub async fn settle(
        &self,
        provider: AccountId,
        request: &FacilitatorRequest,
    ) -> Result<SettleResponse, FacilitatorError> {
        let normalized = normalize(request)?;
        if self.is_own_payer(&normalized).await? {
            match self.own_payment(OwnAction::Settle, provider, &normalized).await? {
                OwnPaymentReply::NotOurs => {}
                OwnPaymentReply::Settled { response, captured, replay } => {
                    return self.deferred(provider, response, captured, replay).await;
                }
                OwnPaymentReply::Verified { .. } => {
                    return Err(FacilitatorError::PolicyUnavailable(
                        "the policy service answered a settle with a verification".into(),
                    ));
                }
            }
        }
        let network = normalized.payload.accepted.network.clone();
        let valid = match self.check(normalized, false).await? {
            Checked::Valid(valid) => *valid,
            Checked::Invalid(rejected) => {
                return Ok(failed(
                    rejected.reason,
                    rejected.message,
                    rejected.payer.map(|payer| payer.to_checksum(None)),
                    String::new(),
                    &network,
                ));
            }
        };
        let payer = valid.checked.payer().to_checksum(None);
        let payload = Eip3009Payload {
            signature: valid.checked.signature.clone(),
            authorization: valid.checked.authorization.clone(),
        };
        let authorization_hash =
            Sha256::digest(serde_json::to_vec(&payload).unwrap_or_default()).to_vec();

        let mut tx = self.pool.begin().await?;
        let row = record(&mut tx, &valid, provider, &authorization_hash).await?;
        if row.authorization_hash != authorization_hash {
            tx.commit().await?;
            return Ok(failed(
                ErrorReason::InvalidExactEvmNonceAlreadyUsed,
                "another authorization with this nonce was settled",
                Some(payer),
                String::new(),
                &network,
            ));
        }
        match row.state.as_str() {
            "confirmed" => {
                tx.commit().await?;
                return Ok(replayed(SettleResponse::settled(
                    row.tx_hash.unwrap_or_default(),
                    network,
                    payer,
                )));
            }
            "failed" => {
                tx.commit().await?;
                let reason = ErrorReason::parse(
                    row.error_reason.as_deref().unwrap_or("unexpected_settle_error"),
                );
                return Ok(failed(
                    reason,
                    row.error_message.unwrap_or_default(),
                    Some(payer),
                    row.tx_hash.unwrap_or_default(),
                    &network,
                ));
            }
            "signed" | "broadcast" => {
                tx.commit().await?;
                let hash = row
                    .tx_hash
                    .as_deref()
                    .and_then(|hash| hash.parse::<B256>().ok())
                    .unwrap_or_default();
                // Another settle owns this transaction: its success is that settle's.
                return self
                    .follow(valid.chain, row.id, hash, &payload, &network)
                    .await
                    .map(replayed);
            }
            _ => {}
        }
        // The settlement is ours to carry out: we hold its row lock.
        let signed = match self.plan_and_sign(&mut tx, valid.chain, row.id, &valid, &payload).await
        {
            Ok(signed) => signed,
            Err(Planned::Refused(reason, message)) => {
                sqlx::query(
                    "UPDATE settlement.settlements SET state = 'failed', error_reason = $2, error_message = $3, updated_at = now() WHERE id = $1",
                )
                .bind(row.id)
                .bind(reason.as_str())
                .bind(&message)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                return Ok(failed(reason, message, Some(payer), String::new(), &network));
            }
            Err(Planned::Error(error)) => return Err(error),
        };
        tx.commit().await?;
        self.broadcast(valid.chain, signed.chain_tx_id, &signed.raw).await;
        self.follow(valid.chain, row.id, signed.hash, &payload, &network).await
    }

    /// Gas, nonce and signature of the settlement transaction, stored in `tx`.
    async fn plan_and_sign(
        &self,
        tx: &mut PgConnection,
        chain: &Chain,
        settlement_id: Uuid,
        valid: &Valid<'_>,
        payload: &Eip3009Payload,
    ) -> Result<Signed, Planned> {
        let relayer = self.relayer_for(settlement_id).await.map_err(Planned::Error)?;
        let input = Token::transfer_calldata(payload).map_err(|error| {
            Planned::Refused(ErrorReason::InvalidExactEvmSignature, error.to_string())
        })?;
        let outgoing = Outgoing {
            id: Uuid::now_v7(),
            chain,
            relayer,
            to: valid.checked.asset(),
            input,
            purpose: Purpose::Settlement(settlement_id),
        };
        let signed = self.sign_and_store(tx, outgoing).await.map_err(|failure| match failure {
            SignFailure::Reverted { kind, message } => {
                Planned::Refused(revert_reason(kind), message)
            }
            SignFailure::Error(error) => Planned::Error(error),
        })?;
        sqlx::query("UPDATE settlement.settlements SET state = 'signed', tx_hash = $2, updated_at = now() WHERE id = $1")
            .bind(settlement_id)
            .bind(format!("{:#x}", signed.hash))
            .execute(&mut *tx)
            .await
            .map_err(|error| Planned::Error(error.into()))?;
        Ok(signed)
    }

    /// The relayer that sends the transactions of `key` (a settlement, a faucet mint): the
    /// relayers share the work by key.
    pub(crate) async fn relayer_for(&self, key: Uuid) -> Result<Address, FacilitatorError> {
        let relayers = self.relayers().await?;
        let count = u128::try_from(relayers.len()).unwrap_or(1).max(1);
        let pick = usize::try_from(key.as_u128() % count).unwrap_or(0);
        relayers
            .get(pick)
            .or_else(|| relayers.first())
            .copied()
            .ok_or_else(|| FacilitatorError::Signer("the signer has no relayer keys".into()))
    }

    /// Prepares a relayer transaction for broadcast, in `tx`: estimates its gas (a revert is
    /// reported and consumes nothing), takes the relayer's next nonce under the row lock of
    /// `settlement.relayer_nonces` (the larger of ours and the node's pending count), has the
    /// signer sign it (`outgoing.id` is the signing request's id), and inserts it into
    /// `settlement.chain_txs` as `signed` with its purpose. Committing `tx` stores it **before**
    /// anything is broadcast; until then the relayer's nonce row stays locked, so replicas never
    /// share a nonce.
    pub(crate) async fn sign_and_store(
        &self,
        tx: &mut PgConnection,
        outgoing: Outgoing<'_>,
    ) -> Result<Signed, SignFailure> {
        let Outgoing { id, chain, relayer, to, input, purpose } = outgoing;
        let chain_error =
            |error: ChainError| SignFailure::Error(FacilitatorError::Chain(error.to_string()));
        let database_error = |error: sqlx::Error| SignFailure::Error(error.into());
        let gas = match chain.client.estimate_gas(relayer, to, input.clone()).await {
            Ok(gas) => gas,
            Err(ChainError::Reverted { kind, message }) => {
                return Err(SignFailure::Reverted { kind, message });
            }
            Err(error) => return Err(chain_error(error)),
        };
        let gas_limit = gas.saturating_mul(self.settings.gas_limit_percent) / 100;
        let (max_fee_per_gas, max_priority_fee_per_gas) =
            chain.client.fees().await.map_err(chain_error)?;

        // The relayer's nonce: one row per (chain, relayer), locked until this transaction commits,
        // so two replicas never take the same nonce. The node's pending count wins if it is ahead
        // (the key was used elsewhere).
        let chain_id = i64::try_from(chain.chain_id).unwrap_or(i64::MAX);
        let pending = chain.client.pending_nonce(relayer).await.map_err(chain_error)?;
        let pending = i64::try_from(pending).unwrap_or(i64::MAX);
        sqlx::query("INSERT INTO settlement.relayer_nonces (chain_id, relayer, next_nonce) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING")
            .bind(chain_id)
            .bind(lower(relayer))
            .bind(pending)
            .execute(&mut *tx)
            .await
            .map_err(database_error)?;
        let stored: i64 = sqlx::query_scalar("SELECT next_nonce FROM settlement.relayer_nonces WHERE chain_id = $1 AND relayer = $2 FOR UPDATE")
            .bind(chain_id)
            .bind(lower(relayer))
            .fetch_one(&mut *tx)
            .await
            .map_err(database_error)?;
        let nonce = stored.max(pending);

        let request = awx_api::signer::SignTransaction {
            request_id: id,
            chain_id: chain.chain_id,
            from: relayer,
            to,
            input,
            nonce: u64::try_from(nonce).unwrap_or(0),
            gas_limit,
            max_fee_per_gas,
            max_priority_fee_per_gas,
        };
        let timeout = Duration::from_millis(self.settings.signer_timeout_ms);
        let signed = self
            .bus
            .send(&request, timeout)
            .await
            .map_err(|error| SignFailure::Error(FacilitatorError::Signer(error.to_string())))?;
        let stored = StoredTx {
            id,
            chain_id,
            relayer,
            nonce,
            gas_limit,
            max_fee_per_gas,
            max_priority_fee_per_gas,
        };
        insert_chain_tx(tx, &stored, &signed, purpose).await.map_err(database_error)?;
        sqlx::query("UPDATE settlement.relayer_nonces SET next_nonce = $3 WHERE chain_id = $1 AND relayer = $2")
            .bind(chain_id)
            .bind(lower(relayer))
            .bind(nonce.saturating_add(1))
            .execute(&mut *tx)
            .await
            .map_err(database_error)?;
        Ok(Signed { chain_tx_id: id, raw: signed.raw.to_vec(), hash: signed.hash })
    }

    /// Waits up to the chain's `receipt_wait_ms` for the receipt of `hash`.
    pub(crate) async fn wait_for_receipt(
        &self,
        chain: &Chain,
        hash: B256,
    ) -> Option<TransactionReceipt> {
        let deadline = Instant::now() + chain.receipt_wait;
        let mut poll = RECEIPT_POLL_FIRST;
        loop {
            match chain.client.receipt(hash).await {
                Ok(Some(receipt)) => return Some(receipt),
                Ok(None) => {}
                Err(error) => {
                    tracing::warn!(error.message = %error, "receipt lookup failed; retrying")
                }
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(poll.min(deadline.saturating_duration_since(Instant::now()))).await;
            poll = poll.saturating_mul(2).min(RECEIPT_POLL_MAX);
        }
    }

    /// Broadcasts a stored transaction and records that it was; a failure is left to the
    /// resumer, which tries again.
    pub async fn broadcast(&self, chain: &Chain, chain_tx_id: Uuid, raw: &[u8]) {
        let outcome = chain.client.send_raw(raw).await;
        let (state, error) = match &outcome {
            Ok(_) | Err(SendError::AlreadyKnown) => ("broadcast", None),
            Err(SendError::NonceTooLow(message) | SendError::Other(message)) => {
                ("signed", Some(message.clone()))
            }
        };
        if let Some(message) = &error {
            tracing::warn!(chain_tx = %chain_tx_id, error.message = %message, "broadcast failed; the resumer retries");
        }
        let recorded = sqlx::query(
            "UPDATE settlement.chain_txs SET state = CASE WHEN state = 'signed' THEN $2 ELSE state END,
                    broadcast_attempts = broadcast_attempts + 1, last_error = $3, updated_at = now()
             WHERE id = $1",
        )
        .bind(chain_tx_id)
        .bind(state)
        .bind(error)
        .execute(&self.pool)
        .await;
        if let Err(error) = recorded {
            tracing::error!(error.message = %error, "cannot record a broadcast");
        }
        if state == "broadcast" {
            let _ = sqlx::query(
                "UPDATE settlement.settlements SET state = 'broadcast', updated_at = now()
                 WHERE id = (SELECT settlement_id FROM settlement.chain_txs WHERE id = $1) AND state = 'signed'",
            )
            .bind(chain_tx_id)
            .execute(&self.pool)
            .await;
        }
    }

    /// Waits (bounded) for the receipt of a settlement's transaction and records the outcome.
    async fn follow(
        &self,
        chain: &Chain,
        settlement_id: Uuid,
        hash: B256,
        payload: &Eip3009Payload,
        network: &str,
    ) -> Result<SettleResponse, FacilitatorError> {
        let payer = payload.authorization.from.to_checksum(None);
        let Some(receipt) = self.wait_for_receipt(chain, hash).await else {
            return Ok(failed(
                ErrorReason::SettlementPending,
                "the transaction was broadcast and its receipt has not been seen yet; settle again to follow it",
                Some(payer),
                format!("{hash:#x}"),
                network,
            ));
        };
        let outcome = self.finalize(chain, settlement_id, hash, &receipt, payload).await?;
        Ok(match outcome {
            Outcome::Settled => SettleResponse::settled(format!("{hash:#x}"), network, payer),
            Outcome::Failed(reason, message) => {
                failed(reason, message, Some(payer), format!("{hash:#x}"), network)
            }
        })
    }

    /// Records a mined transaction's outcome (idempotent).
    pub async fn finalize(
        &self,
        chain: &Chain,
        settlement_id: Uuid,
        hash: B256,
        receipt: &TransactionReceipt,
        payload: &Eip3009Payload,
    ) -> Result<Outcome, FacilitatorError> {
        let auth = &payload.authorization;
        let token_address: String =
            sqlx::query_scalar("SELECT token FROM settlement.settlements WHERE id = $1")
                .bind(settlement_id)
                .fetch_one(&self.pool)
                .await?;
        let token = chain.client.token(token_address.parse().unwrap_or_default());
        let outcome = receipt_outcome(&token, receipt, auth.from, auth.to, auth.value);
        let mut tx = self.pool.begin().await?;
        let (tx_state, reason, message) = match &outcome {
            Outcome::Settled => ("confirmed", None, None),
            Outcome::Failed(reason, message) => {
                ("failed", Some(reason.as_str().to_owned()), Some(message.clone()))
            }
        };
        sqlx::query("UPDATE settlement.chain_txs SET state = $2, updated_at = now() WHERE hash = $1 AND state IN ('signed', 'broadcast')")
            .bind(format!("{hash:#x}"))
            .bind(tx_state)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "UPDATE settlement.settlements SET state = $2, error_reason = $3, error_message = $4, updated_at = now()
             WHERE id = $1 AND state IN ('planned', 'signed', 'broadcast')",
        )
        .bind(settlement_id)
        .bind(tx_state)
        .bind(reason)
        .bind(message)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        if outcome == Outcome::Settled {
            metrics::counter!("settlement_settled_total", "network" => chain.network.to_string())
                .increment(1);
        }
        Ok(outcome)
    }
}

/// What a relayer transaction is for (`settlement.chain_txs.purpose`).
#[derive(Debug)]
pub(crate) enum Purpose {
    /// It carries this settlement.
    Settlement(Uuid),
    /// A development faucet mint; the deposit to record in the ledger once it is mined.
    Faucet(serde_json::Value),
    /// It carries this batch of net transfers.
    Batch(Uuid),
}

/// How a relayer transaction was made (what a replacement needs to sign it again).
#[derive(Debug, Clone)]
pub(crate) struct StoredTx {
    /// Its `settlement.chain_txs` id (the signing request's id).
    pub(crate) id: Uuid,
    /// The chain id.
    pub(crate) chain_id: i64,
    /// The relayer that sends it.
    pub(crate) relayer: Address,
    /// The relayer's nonce.
    pub(crate) nonce: i64,
    /// The gas limit.
    pub(crate) gas_limit: u64,
    /// The fee cap per gas (wei).
    pub(crate) max_fee_per_gas: u128,
    /// The priority fee per gas (wei).
    pub(crate) max_priority_fee_per_gas: u128,
}

/// Inserts a signed relayer transaction into `settlement.chain_txs` as `signed`, in `tx`.
pub(crate) async fn insert_chain_tx(
    tx: &mut PgConnection,
    stored: &StoredTx,
    signed: &awx_api::signer::SignedTransaction,
    purpose: Purpose,
) -> Result<(), sqlx::Error> {
    let (purpose_name, settlement_id, deposit, batch_id) = match purpose {
        Purpose::Settlement(settlement_id) => ("settlement", Some(settlement_id), None, None),
        Purpose::Faucet(deposit) => ("faucet", None, Some(deposit), None),
        Purpose::Batch(batch_id) => ("batch", None, None, Some(batch_id)),
    };
    sqlx::query(
        "INSERT INTO settlement.chain_txs (id, settlement_id, chain_id, relayer, nonce, raw, hash, state, purpose, deposit,
                                           batch_id, gas_limit, max_fee_per_gas, max_priority_fee_per_gas)
         VALUES ($1, $2, $3, $4, $5, $6, $7, 'signed', $8, $9, $10, $11, $12::numeric, $13::numeric)",
    )
    .bind(stored.id)
    .bind(settlement_id)
    .bind(stored.chain_id)
    .bind(lower(stored.relayer))
    .bind(stored.nonce)
    .bind(signed.raw.to_vec())
    .bind(format!("{:#x}", signed.hash))
    .bind(purpose_name)
    .bind(deposit)
    .bind(batch_id)
    .bind(i64::try_from(stored.gas_limit).unwrap_or(i64::MAX))
    .bind(stored.max_fee_per_gas.to_string())
    .bind(stored.max_priority_fee_per_gas.to_string())
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// A relayer transaction to sign and store ([`Facilitator::sign_and_store`]).
#[derive(Debug)]
pub(crate) struct Outgoing<'a> {
    /// The `settlement.chain_txs` id, and the signing request's id.
    pub(crate) id: Uuid,
    /// The chain.
    pub(crate) chain: &'a Chain,
    /// The relayer that sends it.
    pub(crate) relayer: Address,
    /// The contract called.
    pub(crate) to: Address,
    /// The calldata.
    pub(crate) input: Bytes,
    /// What it is for.
    pub(crate) purpose: Purpose,
}

/// Why a relayer transaction was not signed and stored.
#[derive(Debug)]
pub(crate) enum SignFailure {
    /// Gas estimation found that it would revert: nothing was consumed.
    Reverted {
        /// The cause, classified.
        kind: RevertKind,
        /// The node's message.
        message: String,
    },
    /// Something to retry.
    Error(FacilitatorError),
}

/// A signed, stored relayer transaction.
#[derive(Debug)]
pub(crate) struct Signed {
    /// Its `settlement.chain_txs` id.
    pub(crate) chain_tx_id: Uuid,
    /// The EIP-2718 encoding, to broadcast.
    pub(crate) raw: Vec<u8>,
    /// Its hash.
    pub(crate) hash: B256,
}

/// Why planning stopped.
#[derive(Debug)]
enum Planned {
    /// The payment will not settle (a revert found by estimation): a final failure.
    Refused(ErrorReason, String),
    /// Something to retry.
    Error(FacilitatorError),
}

/// Inserts the settlement if new, then locks and reads it.
async fn record(
    tx: &mut PgConnection,
    valid: &Valid<'_>,
    provider: AccountId,
    authorization_hash: &[u8],
) -> Result<Row, FacilitatorError> {
    let auth = &valid.checked.authorization;
    let network = valid.chain.network.to_string();
    sqlx::query(
        "INSERT INTO settlement.settlements
           (id, network, payer, nonce, token, payee, value, authorization_hash, provider, payload, requirements, state)
         VALUES ($1, $2, $3, $4, $5, $6, $7::numeric, $8, $9, $10, $11, 'planned')
         ON CONFLICT (network, payer, nonce) DO NOTHING",
    )
    .bind(Uuid::now_v7())
    .bind(&network)
    .bind(lower(auth.from))
    .bind(format!("{:#x}", auth.nonce))
    .bind(lower(valid.checked.asset()))
    .bind(lower(auth.to))
    .bind(auth.value.to_string())
    .bind(authorization_hash)
    .bind(provider.as_uuid())
    .bind(serde_json::to_value(&valid.request.payload).unwrap_or_default())
    .bind(serde_json::to_value(&valid.request.requirements).unwrap_or_default())
    .execute(&mut *tx)
    .await?;
    let row = sqlx::query(
        "SELECT id, authorization_hash, state, tx_hash, error_reason, error_message FROM settlement.settlements
         WHERE network = $1 AND payer = $2 AND nonce = $3 FOR UPDATE",
    )
    .bind(&network)
    .bind(lower(auth.from))
    .bind(format!("{:#x}", auth.nonce))
    .fetch_one(&mut *tx)
    .await?;
    Ok(Row {
        id: row.get(0),
        authorization_hash: row.get(1),
        state: row.get(2),
        tx_hash: row.get(3),
        error_reason: row.get(4),
        error_message: row.get(5),
    })
}
