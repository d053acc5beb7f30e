//! The hold of a withdrawal: an agent's funds reserved for a transfer to an outside address.
//!
//! Like a payment's hold ([`Ledger::hold`]) with one leg, wallet → on-chain mirror, and no fee;
//! idempotent by `withdrawal:{withdrawal id}`, and the hold's id is the withdrawal's. It is
//! resolved by the ordinary `Capture` (the withdrawal confirmed on chain: the wallet is debited,
//! the mirror credited, and no fee volume is recorded), `Void`, or the sweeper at its timeout. On
//! a statement the hold reads [`LineKind::WithdrawalHold`](awx_api::ledger::LineKind) and its
//! capture [`LineKind::Withdrawal`](awx_api::ledger::LineKind).

use awx_api::ledger::{HoldWithdrawal, WithdrawalHeld};
use awx_ledger_core::model::{self, Leg, Operation};
use chrono::Utc;
use sqlx::PgConnection;

use crate::error::LedgerFailure;
use crate::ops::{
    Ledger, available, check_asset, json, key_of, mirror_spec, token_text, wallet_spec,
};
use crate::store::{self, TransferRecord};

/// The metadata `op` of a withdrawal's hold (capture looks for it).
pub const WITHDRAWAL_HOLD_OP: &str = "withdrawal_hold";

/// The idempotency key of a withdrawal's hold.
pub fn withdrawal_key(command: &HoldWithdrawal) -> String {
    format!("withdrawal:{}", command.withdrawal_id)
}

impl Ledger {
    /// Holds a withdrawal's amount on the agent's wallet (wallet → on-chain mirror, no fee).
    pub async fn hold_withdrawal(
        &self,
        conn: &mut PgConnection,
        command: &HoldWithdrawal,
    ) -> Result<WithdrawalHeld, LedgerFailure> {
        check_asset(&command.asset)?;
        if command.amount.is_zero() {
            return Err(LedgerFailure::Invalid("a withdrawal moves a positive amount".into()));
        }
        if command.timeout_seconds == 0 {
            return Err(LedgerFailure::Invalid("timeout_seconds must be positive".into()));
        }
        let key = withdrawal_key(command);
        let hash = store::request_hash(command);
        store::lock_key(conn, &key).await?;
        if let Some(reply) = store::replay(conn, &key, &hash).await? {
            return Ok(reply);
        }
        let ledger_id = command.withdrawal_id;
        let specs = [
            wallet_spec(command.owner, command.agent, &command.asset),
            mirror_spec(&command.asset),
        ];
        let ids = crate::accounts::ensure_accounts(conn, &self.accounts, &specs).await?;
        let wallet = key_of(ids[0]);
        let legs = [Leg { debit: wallet, credit: key_of(ids[1]), amount: command.amount }];
        let mut accounts = store::lock_accounts(conn, &ids).await?;
        let entries = model::apply(&mut accounts, Operation::Hold(&legs))
            .map_err(LedgerFailure::from_model)?;
        let timeout_at = Utc::now() + chrono::Duration::seconds(i64::from(command.timeout_seconds));
        let reply = WithdrawalHeld {
            ledger_id,
            available: available(accounts.get(&wallet)),
            expires_at_unix: timeout_at.timestamp(),
        };
        let metadata = serde_json::json!({
            "op": WITHDRAWAL_HOLD_OP, "withdrawal_id": command.withdrawal_id,
            "agent": command.agent, "to": command.to, "amount": command.amount,
            "fee_rate": "0", "decimals": command.asset.decimals,
        });
        store::write_transfer(
            conn,
            TransferRecord {
                id: ledger_id,
                idempotency_key: &key,
                request_hash: &hash,
                kind: "hold",
                pending_id: None,
                status: "pending",
                timeout_at: Some(timeout_at),
                network: &command.asset.network,
                token: &token_text(command.asset.token),
                owner: Some(command.owner),
                metadata,
                result: json(&reply)?,
            },
            &legs,
            &entries,
            &accounts,
        )
        .await?;
        Ok(reply)
    }
}
