//! The reversal of a deposit whose block left the canonical chain (a reorganisation).
//!
//! The deposited amount goes back to the on-chain mirror (the tokens are no longer on chain): as
//! much as the wallet has available comes from the wallet, and the rest (the `shortfall`, what the
//! agent already spent or holds) from the platform's `reorg_loss` account, so no wallet goes
//! negative and the loss stays visible. Same shape as the operations of [`crate::ops`]:
//! idempotent by `reverse:{deposit key}`, the deposit must be recorded exactly as named, and a
//! refusal writes nothing.

use awx_api::ledger::{DepositReversed, ReverseDeposit};
use awx_ledger_core::model::{self, Constraint, Leg, Operation};
use awx_types::{Amount, LedgerId};
use sqlx::{PgConnection, Row as _};
use uuid::Uuid;

use crate::error::LedgerFailure;
use crate::ops::{
    Ledger, available, check_asset, deposit_key, json, key_of, mirror_spec, platform_spec,
    token_text, wallet_spec,
};
use crate::store::{self, Code, TransferRecord};

/// The longest reason kept with a reversal, in bytes.
pub const REASON_BYTES_MAX: usize = 1_000;

/// A deposit as the ledger recorded it.
struct RecordedDeposit {
    id: Uuid,
    request_hash: Vec<u8>,
    amount: Amount,
}

async fn load_deposit(
    conn: &mut PgConnection,
    key: &str,
) -> Result<Option<RecordedDeposit>, LedgerFailure> {
    let row = sqlx::query(
        "SELECT t.id, t.request_hash, l.amount::text
         FROM ledger.transfers t JOIN ledger.transfer_legs l ON l.transfer_id = t.id AND l.leg = 0
         WHERE t.idempotency_key = $1",
    )
    .bind(key)
    .fetch_optional(&mut *conn)
    .await?;
    row.map(|row| {
        let amount = Amount::parse_atomic(row.get::<&str, _>(2)).map_err(|error| {
            LedgerFailure::Internal(format!("stored amount of deposit {key}: {error}"))
        })?;
        Ok(RecordedDeposit { id: row.get(0), request_hash: row.get(1), amount })
    })
    .transpose()
}

impl Ledger {
    /// Reverses a recorded deposit: wallet → on-chain mirror for what the wallet has available
    /// (up to the amount), `reorg_loss` → on-chain mirror for the rest, in one transfer.
    pub async fn reverse_deposit(
        &self,
        conn: &mut PgConnection,
        command: &ReverseDeposit,
    ) -> Result<DepositReversed, LedgerFailure> {
        let deposit = &command.deposit;
        check_asset(&deposit.asset)?;
        if command.reason.len() > REASON_BYTES_MAX {
            return Err(LedgerFailure::Invalid(format!(
                "a reversal's reason is at most {REASON_BYTES_MAX} bytes"
            )));
        }
        let deposit_key = deposit_key(deposit);
        let key = format!("reverse:{deposit_key}");
        let hash = store::request_hash(command);
        store::lock_key(conn, &key).await?;
        if let Some(reply) = store::replay(conn, &key, &hash).await? {
            return Ok(reply);
        }
        // Waits for a deposit being recorded concurrently, so it is found once committed.
        store::lock_key(conn, &deposit_key).await?;
        let recorded = load_deposit(conn, &deposit_key)
            .await?
            .ok_or_else(|| LedgerFailure::DepositNotFound(deposit_key.clone()))?;
        if recorded.amount != deposit.amount {
            return Err(LedgerFailure::Invalid(format!(
                "the deposit {deposit_key} recorded {}, not {}",
                recorded.amount, deposit.amount
            )));
        }
        // The wallet debited is the command's: it must name the deposit exactly as recorded.
        if recorded.request_hash != store::request_hash(deposit) {
            return Err(LedgerFailure::Invalid(format!(
                "the deposit {deposit_key} was recorded with another owner, agent, asset or source"
            )));
        }

        let specs = [
            wallet_spec(deposit.owner, deposit.agent, &deposit.asset),
            platform_spec(Code::ReorgLoss, &deposit.asset, "main".to_owned(), Constraint::None),
            mirror_spec(&deposit.asset),
        ];
        let ids = crate::accounts::ensure_accounts(conn, &self.accounts, &specs).await?;
        let (wallet, reorg_loss, mirror) = (key_of(ids[0]), key_of(ids[1]), key_of(ids[2]));
        let mut accounts = store::lock_accounts(conn, &ids).await?;
        let from_wallet = available(accounts.get(&wallet)).min(deposit.amount);
        let shortfall = deposit
            .amount
            .checked_sub(from_wallet)
            .map_err(|error| LedgerFailure::Internal(error.to_string()))?;
        // The model refuses legs of zero: a leg is written only when it moves something.
        let legs: Vec<Leg> = [
            Leg { debit: wallet, credit: mirror, amount: from_wallet },
            Leg { debit: reorg_loss, credit: mirror, amount: shortfall },
        ]
        .into_iter()
        .filter(|leg| !leg.amount.is_zero())
        .collect();
        let entries = model::apply(&mut accounts, Operation::Post(&legs))
            .map_err(LedgerFailure::from_model)?;
        let ledger_id = LedgerId::new();
        let reply = DepositReversed {
            ledger_id,
            from_wallet,
            shortfall,
            available: available(accounts.get(&wallet)),
        };
        let metadata = serde_json::json!({
            "op": "deposit_reversal", "agent": deposit.agent, "tx_hash": deposit.tx_hash,
            "log_index": deposit.log_index, "block_hash": deposit.block_hash,
            "reason": command.reason, "shortfall": shortfall,
            "deposit": LedgerId::from_uuid(recorded.id),
        });
        store::write_transfer(
            conn,
            TransferRecord {
                id: ledger_id,
                idempotency_key: &key,
                request_hash: &hash,
                kind: "post",
                pending_id: None,
                status: "posted",
                timeout_at: None,
                network: &deposit.asset.network,
                token: &token_text(deposit.asset.token),
                owner: Some(deposit.owner),
                metadata,
                result: json(&reply)?,
            },
            &legs,
            &entries,
            &accounts,
        )
        .await?;
        if !shortfall.is_zero() {
            tracing::error!(
                owner = %deposit.owner,
                agent = %deposit.agent,
                network = %deposit.asset.network,
                tx_hash = %deposit.tx_hash,
                log_index = deposit.log_index,
                amount = %deposit.amount,
                from_wallet = %from_wallet,
                shortfall = %shortfall,
                reason = %command.reason,
                "a reorganised deposit was already spent; the shortfall is taken from reorg_loss",
            );
            metrics::counter!("ledger_reorg_shortfall_total", "network" => deposit.asset.network.clone())
                .increment(1);
        }
        Ok(reply)
    }
}
