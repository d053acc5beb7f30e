//! Holds: a payment's hold of amount plus fee on its agent's wallet, its capture (in full or in
//! part) and its void, its status, and the holds past their timeout. A void that finds no hold
//! marks it, so a hold of that payment arriving later is refused (`hold_voided`). Each runs in
//! the caller's transaction, in the shape described in [`crate::ops`].

use awx_api::ledger::{
    Capture, CaptureReply, Hold, HoldReply, HoldStatus, HoldStatusReply, Void, VoidReply,
};
use awx_ledger_core::fees::{self, usd_volume};
use awx_ledger_core::model::{self, Constraint, Leg, Operation};
use awx_types::{AccountId, Amount, LedgerId};
use chrono::Utc;
use rust_decimal::Decimal;
use sqlx::{PgConnection, Row as _};
use uuid::Uuid;

use crate::error::LedgerFailure;
use crate::ops::{
    Ledger, available, check_asset, json, key_of, payable_spec, platform_spec, token_text,
    wallet_spec,
};
use crate::store::{self, Code, TransferRecord};

/// A hold as stored.
struct HoldRow {
    status: String,
    owner: Option<Uuid>,
    network: String,
    token: String,
    metadata: serde_json::Value,
    legs: Vec<Leg>,
}

/// In one statement (read under the key's lock): the stored request hash and reply of an earlier
/// operation with `key`, and whether the hold of payment `id` was voided before it was made.
async fn earlier_hold(
    conn: &mut PgConnection,
    key: &str,
    id: Uuid,
) -> Result<(Option<(Vec<u8>, serde_json::Value)>, bool), LedgerFailure> {
    let (hash, result, voided): (Option<Vec<u8>>, Option<serde_json::Value>, bool) =
        sqlx::query_as(
            "SELECT t.request_hash, t.result,
                    EXISTS (SELECT 1 FROM ledger.voided_before_hold WHERE hold_id = $2)
             FROM (SELECT 1) AS one LEFT JOIN ledger.transfers AS t ON t.idempotency_key = $1",
        )
        .bind(key)
        .bind(id)
        .fetch_one(conn)
        .await?;
    Ok((hash.zip(result), voided))
}

/// Voids a hold that does not exist: marks it so that it is never made (a [`Hold`] of that
/// payment delayed past its payment's release is refused), releasing nothing.
async fn void_before_made(
    conn: &mut PgConnection,
    hold_id: LedgerId,
) -> Result<VoidReply, LedgerFailure> {
    sqlx::query(
        "INSERT INTO ledger.voided_before_hold (hold_id) VALUES ($1) ON CONFLICT DO NOTHING",
    )
    .bind(hold_id.as_uuid())
    .execute(conn)
    .await?;
    tracing::info!(hold = %hold_id, "a hold was voided before it was made; it will not be made");
    Ok(VoidReply { ledger_id: hold_id, hold_id, released: Amount::ZERO })
}

async fn load_hold(conn: &mut PgConnection, hold: LedgerId) -> Result<HoldRow, LedgerFailure> {
    let row = sqlx::query(
        "SELECT status, owner, network, token, metadata FROM ledger.transfers WHERE id = $1 AND kind = 'hold' FOR UPDATE",
    )
    .bind(hold.as_uuid())
    .fetch_optional(&mut *conn)
    .await?
    .ok_or_else(|| LedgerFailure::HoldNotFound(hold.to_string()))?;
    let legs = sqlx::query(
        "SELECT debit_account, credit_account, amount::text FROM ledger.transfer_legs WHERE transfer_id = $1 ORDER BY leg",
    )
    .bind(hold.as_uuid())
    .fetch_all(&mut *conn)
    .await?
    .into_iter()
    .map(|leg| {
        let amount = Amount::parse_atomic(leg.get::<&str, _>(2)).map_err(|e| LedgerFailure::Internal(e.to_string()))?;
        Ok(Leg { debit: key_of(leg.get(0)), credit: key_of(leg.get(1)), amount })
    })
    .collect::<Result<Vec<_>, LedgerFailure>>()?;
    Ok(HoldRow {
        status: row.get(0),
        owner: row.get(1),
        network: row.get(2),
        token: row.get(3),
        metadata: row.get(4),
        legs,
    })
}

impl Ledger {
    /// Holds amount plus fee on an agent's wallet for a payment.
    pub async fn hold(
        &self,
        conn: &mut PgConnection,
        command: &Hold,
    ) -> Result<HoldReply, LedgerFailure> {
        check_asset(&command.asset)?;
        if command.amount.is_zero() {
            return Err(LedgerFailure::Invalid("a payment moves a positive amount".into()));
        }
        if command.timeout_seconds == 0 {
            return Err(LedgerFailure::Invalid("timeout_seconds must be positive".into()));
        }
        let key = format!("hold:{}", command.payment_id);
        let hash = store::request_hash(command);
        store::lock_key(conn, &key).await?;
        let (earlier, voided) = earlier_hold(conn, &key, command.payment_id.as_uuid()).await?;
        if let Some(reply) = store::stored_reply(&key, &hash, earlier)? {
            return Ok(reply);
        }
        if voided {
            return Err(LedgerFailure::HoldVoided(command.payment_id.to_string()));
        }
        let (tier, _) = self.fees.tier(conn, command.owner).await?;
        let fee = fees::fee(command.amount, tier.rate_percent)
            .map_err(|error| LedgerFailure::Invalid(error.to_string()))?;
        // A hold's id is its payment's: the API shows one id (`ldg_…`) for both.
        let ledger_id = LedgerId::from_uuid(command.payment_id.as_uuid());
        let shards = u128::from(self.settings.fee_shards.max(1));
        let shard = ledger_id.as_uuid().as_u128().checked_rem(shards).unwrap_or(0);
        let mut specs = vec![
            wallet_spec(command.owner, command.agent, &command.asset),
            payable_spec(&command.asset, command.payee),
        ];
        if !fee.is_zero() {
            specs.push(platform_spec(
                Code::FeeRevenue,
                &command.asset,
                format!("shard-{shard:02}"),
                Constraint::None,
            ));
        }
        let ids = crate::accounts::ensure_accounts(conn, &self.accounts, &specs).await?;
        let wallet = key_of(ids[0]);
        let mut legs = vec![Leg { debit: wallet, credit: key_of(ids[1]), amount: command.amount }];
        if let Some(&fee_account) = ids.get(2) {
            legs.push(Leg { debit: wallet, credit: key_of(fee_account), amount: fee });
        }
        let mut accounts = store::lock_accounts(conn, &ids).await?;
        let entries = model::apply(&mut accounts, Operation::Hold(&legs))
            .map_err(LedgerFailure::from_model)?;
        let timeout_at = Utc::now() + chrono::Duration::seconds(i64::from(command.timeout_seconds));
        let reply = HoldReply {
            ledger_id,
            amount: command.amount,
            fee,
            fee_rate: tier.rate_percent,
            tier: tier.name.clone(),
            available: available(accounts.get(&wallet)),
            expires_at_unix: timeout_at.timestamp(),
        };
        let metadata = serde_json::json!({
            "op": "hold", "payment_id": command.payment_id, "agent": command.agent,
            "payee": command.payee, "amount": command.amount, "fee": fee,
            "fee_rate": tier.rate_percent, "tier": tier.name, "decimals": command.asset.decimals,
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

    /// Captures a hold, in full or in part.
    pub async fn capture(
        &self,
        conn: &mut PgConnection,
        command: &Capture,
    ) -> Result<CaptureReply, LedgerFailure> {
        let key = format!("resolve:{}", command.hold_id);
        let hash = store::request_hash(&("capture", command));
        store::lock_key(conn, &key).await?;
        if let Some(reply) = store::replay_if_same(conn, &key, &hash).await? {
            return Ok(reply);
        }
        let hold = load_hold(conn, command.hold_id).await?;
        if hold.status != "pending" {
            return Err(LedgerFailure::HoldNotPending {
                hold: command.hold_id.to_string(),
                status: hold.status,
            });
        }
        let held_amount = hold.legs.first().map_or(Amount::ZERO, |leg| leg.amount);
        let captured = command.amount.unwrap_or(held_amount);
        if captured > held_amount {
            return Err(LedgerFailure::Invalid(format!(
                "cannot capture {captured}, the hold is {held_amount}"
            )));
        }
        let rate: Decimal = serde_json::from_value(hold.metadata["fee_rate"].clone())
            .map_err(|error| LedgerFailure::Internal(format!("hold fee rate: {error}")))?;
        let fee =
            fees::fee(captured, rate).map_err(|error| LedgerFailure::Invalid(error.to_string()))?;
        let mut post = vec![captured];
        if let Some(fee_leg) = hold.legs.get(1) {
            post.push(fee.min(fee_leg.amount));
        }
        let fee = post.get(1).copied().unwrap_or(Amount::ZERO);
        let ids: Vec<Uuid> = hold
            .legs
            .iter()
            .flat_map(|leg| [Uuid::from_u128(leg.debit), Uuid::from_u128(leg.credit)])
            .collect();
        let mut accounts = store::lock_accounts(conn, &ids).await?;
        let entries =
            model::apply(&mut accounts, Operation::PostPending { held: &hold.legs, post: &post })
                .map_err(LedgerFailure::from_model)?;
        let held_total =
            hold.legs.iter().try_fold(Amount::ZERO, |sum, leg| sum.checked_add(leg.amount));
        let released = held_total
            .and_then(|total| total.checked_sub(captured.checked_add(fee)?))
            .map_err(|error| LedgerFailure::Internal(error.to_string()))?;
        let ledger_id = LedgerId::new();
        let reply =
            CaptureReply { ledger_id, hold_id: command.hold_id, amount: captured, fee, released };
        let owner = hold.owner.map(AccountId::from_uuid);
        // A withdrawal's capture is money leaving on chain, not a payment: the statement shows it
        // as a withdrawal, and it counts in no fee volume.
        let withdrawal = hold.metadata["op"] == crate::withdrawals::WITHDRAWAL_HOLD_OP;
        let mut metadata = serde_json::json!({"op": "capture", "hold": command.hold_id, "amount": captured, "fee": fee});
        if withdrawal {
            metadata["withdrawal"] = serde_json::Value::Bool(true);
        }
        store::write_transfer(
            conn,
            TransferRecord {
                id: ledger_id,
                idempotency_key: &key,
                request_hash: &hash,
                kind: "post_pending",
                pending_id: Some(command.hold_id),
                status: "posted",
                timeout_at: None,
                network: &hold.network,
                token: &hold.token,
                owner,
                metadata,
                result: json(&reply)?,
            },
            &hold.legs,
            &entries,
            &accounts,
        )
        .await?;
        sqlx::query("UPDATE ledger.transfers SET status = 'captured' WHERE id = $1")
            .bind(command.hold_id.as_uuid())
            .execute(&mut *conn)
            .await?;
        if let Some(owner) = owner.filter(|_| !withdrawal) {
            let decimals =
                hold.metadata["decimals"].as_u64().and_then(|d| u8::try_from(d).ok()).unwrap_or(6);
            let volume = usd_volume(captured, decimals)
                .map_err(|error| LedgerFailure::Internal(error.to_string()))?;
            sqlx::query(
                "INSERT INTO ledger.captures (transfer_id, owner, network, token, amount, fee, volume_usd)
                 VALUES ($1, $2, $3, $4, $5::numeric, $6::numeric, $7)",
            )
            .bind(ledger_id.as_uuid())
            .bind(owner.as_uuid())
            .bind(&hold.network)
            .bind(&hold.token)
            .bind(captured.to_string())
            .bind(fee.to_string())
            .bind(volume)
            .execute(&mut *conn)
            .await?;
        }
        Ok(reply)
    }

    /// Releases a hold; `expired` marks the sweeper's releases.
    pub async fn void(
        &self,
        conn: &mut PgConnection,
        command: &Void,
        expired: bool,
    ) -> Result<VoidReply, LedgerFailure> {
        // The hold's own key first: a hold of this payment still being made commits (or not)
        // before the void looks for it, and one made later finds the void's mark.
        store::lock_key(conn, &format!("hold:{}", command.hold_id)).await?;
        let key = format!("resolve:{}", command.hold_id);
        let hash = store::request_hash(&(if expired { "expire" } else { "void" }, command));
        store::lock_key(conn, &key).await?;
        if let Some(reply) = store::replay_if_same(conn, &key, &hash).await? {
            return Ok(reply);
        }
        let hold = match load_hold(conn, command.hold_id).await {
            Err(LedgerFailure::HoldNotFound(_)) if !expired => {
                return void_before_made(conn, command.hold_id).await;
            }
            other => other?,
        };
        if hold.status != "pending" {
            return Err(LedgerFailure::HoldNotPending {
                hold: command.hold_id.to_string(),
                status: hold.status,
            });
        }
        let ids: Vec<Uuid> = hold
            .legs
            .iter()
            .flat_map(|leg| [Uuid::from_u128(leg.debit), Uuid::from_u128(leg.credit)])
            .collect();
        let mut accounts = store::lock_accounts(conn, &ids).await?;
        let entries = model::apply(&mut accounts, Operation::VoidPending(&hold.legs))
            .map_err(LedgerFailure::from_model)?;
        let released = hold
            .legs
            .iter()
            .try_fold(Amount::ZERO, |sum, leg| sum.checked_add(leg.amount))
            .map_err(|error| LedgerFailure::Internal(error.to_string()))?;
        let ledger_id = LedgerId::new();
        let reply = VoidReply { ledger_id, hold_id: command.hold_id, released };
        store::write_transfer(
            conn,
            TransferRecord {
                id: ledger_id,
                idempotency_key: &key,
                request_hash: &hash,
                kind: "void_pending",
                pending_id: Some(command.hold_id),
                status: "posted",
                timeout_at: None,
                network: &hold.network,
                token: &hold.token,
                owner: hold.owner.map(AccountId::from_uuid),
                metadata: serde_json::json!({"op": if expired { "expire" } else { "void" }, "hold": command.hold_id}),
                result: json(&reply)?,
            },
            &hold.legs,
            &entries,
            &accounts,
        )
        .await?;
        sqlx::query("UPDATE ledger.transfers SET status = $2 WHERE id = $1")
            .bind(command.hold_id.as_uuid())
            .bind(if expired { "expired" } else { "voided" })
            .execute(&mut *conn)
            .await?;
        Ok(reply)
    }

    /// The status of a hold (`None` when there is none).
    pub async fn hold_status(
        &self,
        conn: &mut PgConnection,
        query: &HoldStatus,
    ) -> Result<HoldStatusReply, LedgerFailure> {
        let status: Option<String> = sqlx::query_scalar(
            "SELECT status FROM ledger.transfers WHERE id = $1 AND kind = 'hold'",
        )
        .bind(query.hold_id.as_uuid())
        .fetch_optional(&mut *conn)
        .await?;
        Ok(HoldStatusReply { status })
    }

    /// Holds past their timeout (the sweeper's work list).
    pub async fn expired_holds(&self, limit: i64) -> Result<Vec<LedgerId>, LedgerFailure> {
        let ids: Vec<Uuid> = sqlx::query_scalar(
            "SELECT id FROM ledger.transfers WHERE status = 'pending' AND timeout_at < now() ORDER BY timeout_at LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(ids.into_iter().map(LedgerId::from_uuid).collect())
    }
}
