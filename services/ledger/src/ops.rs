//! The ledger's operations. Each runs inside the caller's Postgres transaction (the bus's, for
//! commands), in one shape:
//!
//! 1. take an advisory lock on the operation's idempotency key, and return the stored reply if
//!    the key was used before (refusing it if with another request);
//! 2. find or create the accounts the legs name, then lock them in ascending id order;
//! 3. let the pure model (`awx_ledger_core::model::apply`) compute every change, or refuse;
//! 4. write the transfer, its legs, its entries and the new counters, and store the reply.
//!
//! So a refused operation writes nothing, a replay returns the original result, and concurrent
//! operations neither deadlock nor lose updates.

use awx_api::ledger::{
    Asset, Balances, BalancesReply, Deposit, DepositReply, DepositSource, FeeTiers, FeeTiersReply,
    FeesCollected, FeesCollectedReply, LineKind, PayoutReply, PayoutSettled, Statement,
    StatementLine, StatementReply, TierView, WalletBalance,
};
use awx_ledger_core::model::{self, Account, AccountKey, Constraint, Leg, Operation};
use awx_types::{AccountId, AgentId, Amount, LedgerId};
use awx_x402::Address;
use chrono::Utc;
use serde::{Deserialize, Serialize};
use sqlx::{PgConnection, PgPool, Row as _};
use uuid::Uuid;

use crate::config::LedgerSettings;
use crate::error::LedgerFailure;
use crate::fees::FeeBook;
use crate::store::{self, AccountSpec, Code, TransferRecord};

/// The ledger: its pool, settings and fee caches.
#[derive(Debug)]
pub struct Ledger {
    /// Postgres.
    pub pool: PgPool,
    /// The settings.
    pub settings: LedgerSettings,
    /// The fee schedule and volume caches.
    pub fees: FeeBook,
    /// The accounts known to exist.
    pub accounts: crate::accounts::AccountCache,
}

/// A generic transfer between accounts named by their natural keys (tests, benchmarks, and
/// platform bookkeeping that has no command of its own).
#[derive(Debug, Clone)]
pub struct GenericTransfer {
    /// The idempotency key.
    pub idempotency_key: String,
    /// The legs: debit, credit, amount.
    pub legs: Vec<(AccountSpec, AccountSpec, Amount)>,
    /// Hold instead of post, with this timeout.
    pub hold_timeout_seconds: Option<u32>,
}

/// The stored reply of a generic transfer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GenericReply {
    /// The transfer.
    pub ledger_id: LedgerId,
}

pub(crate) fn token_text(token: Address) -> String {
    token.to_string().to_lowercase()
}

/// The idempotency key of a deposit: (network, tx hash, log index), and the block hash when
/// known, so a transfer reorganised into another block is a new deposit. Deposits without a block
/// hash keep the original form, so rows written before block hashes still replay.
pub fn deposit_key(deposit: &Deposit) -> String {
    let Deposit { asset, tx_hash, log_index, block_hash, .. } = deposit;
    match block_hash {
        None => format!("deposit:{}:{tx_hash}:{log_index}", asset.network),
        Some(block) => format!("deposit:{}:{tx_hash}:{log_index}:{block}", asset.network),
    }
}

/// The wallet account of an agent.
pub fn wallet_spec(owner: AccountId, agent: AgentId, asset: &Asset) -> AccountSpec {
    AccountSpec {
        code: Code::Wallet,
        network: asset.network.clone(),
        token: token_text(asset.token),
        decimals: asset.decimals,
        owner: Some(owner),
        reference: agent.to_string(),
        constraint: Constraint::DebitsMustNotExceedCredits,
    }
}

pub(crate) fn platform_spec(
    code: Code,
    asset: &Asset,
    reference: String,
    constraint: Constraint,
) -> AccountSpec {
    AccountSpec {
        code,
        network: asset.network.clone(),
        token: token_text(asset.token),
        decimals: asset.decimals,
        owner: None,
        reference,
        constraint,
    }
}

/// What is owed to a payee address.
pub fn payable_spec(asset: &Asset, payee: Address) -> AccountSpec {
    platform_spec(
        Code::Payable,
        asset,
        payee.to_string().to_lowercase(),
        Constraint::DebitsMustNotExceedCredits,
    )
}

/// The asset held on chain for the wallets.
pub fn mirror_spec(asset: &Asset) -> AccountSpec {
    platform_spec(Code::OnchainMirror, asset, "main".to_owned(), Constraint::None)
}

pub(crate) fn check_asset(asset: &Asset) -> Result<(), LedgerFailure> {
    let network = awx_x402::Network::parse_caip2(&asset.network)
        .map_err(|error| LedgerFailure::Invalid(error.to_string()))?;
    if network.evm_chain_id().is_none() {
        return Err(LedgerFailure::Invalid(format!("{} is not an EVM network", asset.network)));
    }
    if asset.decimals > awx_types::DECIMALS_MAX {
        return Err(LedgerFailure::Invalid("asset decimals are too many".into()));
    }
    Ok(())
}

pub(crate) fn json<T: Serialize>(value: &T) -> Result<serde_json::Value, LedgerFailure> {
    serde_json::to_value(value).map_err(|error| LedgerFailure::Internal(error.to_string()))
}

pub(crate) fn key_of(id: Uuid) -> AccountKey {
    id.as_u128()
}

pub(crate) fn available(account: Option<&Account>) -> Amount {
    account.and_then(|account| account.balances.available_credit()).unwrap_or(Amount::ZERO)
}

impl Ledger {
    /// A ledger on `pool`.
    pub fn new(pool: PgPool, settings: LedgerSettings) -> Self {
        let accounts = crate::accounts::AccountCache::new(pool.clone());
        Self { pool, settings, fees: FeeBook::default(), accounts }
    }

    /// Records a deposit into an agent's wallet.
    pub async fn deposit(
        &self,
        conn: &mut PgConnection,
        command: &Deposit,
    ) -> Result<DepositReply, LedgerFailure> {
        check_asset(&command.asset)?;
        if command.source == DepositSource::Faucet
            && !self.settings.dev_networks.contains(&command.asset.network)
        {
            return Err(LedgerFailure::FaucetUnavailable(command.asset.network.clone()));
        }
        if command.amount.is_zero() {
            return Err(LedgerFailure::Invalid("a deposit moves a positive amount".into()));
        }
        let key = deposit_key(command);
        let hash = store::request_hash(command);
        store::lock_key(conn, &key).await?;
        if let Some(reply) = store::replay(conn, &key, &hash).await? {
            return Ok(reply);
        }
        let wallet = wallet_spec(command.owner, command.agent, &command.asset);
        let ids = crate::accounts::ensure_accounts(
            conn,
            &self.accounts,
            &[mirror_spec(&command.asset), wallet],
        )
        .await?;
        let legs = [Leg { debit: key_of(ids[0]), credit: key_of(ids[1]), amount: command.amount }];
        let mut accounts = store::lock_accounts(conn, &ids).await?;
        let entries = model::apply(&mut accounts, Operation::Post(&legs))
            .map_err(LedgerFailure::from_model)?;
        let ledger_id = LedgerId::new();
        let reply = DepositReply { ledger_id, available: available(accounts.get(&key_of(ids[1]))) };
        let metadata = serde_json::json!({
            "op": "deposit", "agent": command.agent, "source": command.source,
            "tx_hash": command.tx_hash, "log_index": command.log_index,
            "block_hash": command.block_hash,
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

    /// Records a payout made on chain: payable down, on-chain mirror down.
    pub async fn payout_settled(
        &self,
        conn: &mut PgConnection,
        command: &PayoutSettled,
    ) -> Result<PayoutReply, LedgerFailure> {
        let outflow = Outflow {
            key: match &command.reference {
                None => format!(
                    "payout:{}:{}:{}",
                    command.asset.network,
                    command.tx_hash,
                    command.payee.to_string().to_lowercase()
                ),
                Some(reference) => format!(
                    "payout:{}:{}:{}:{reference}",
                    command.asset.network,
                    command.tx_hash,
                    command.payee.to_string().to_lowercase()
                ),
            },
            request_hash: store::request_hash(command),
            asset: &command.asset,
            from: payable_spec(&command.asset, command.payee),
            amount: command.amount,
            short: "the payout is more than is owed to the payee",
            metadata: serde_json::json!({"op": "payout", "payee": command.payee, "tx_hash": command.tx_hash}),
        };
        self.outflow(conn, outflow, |ledger_id, remaining| PayoutReply {
            ledger_id,
            payable_remaining: remaining,
        })
        .await
    }

    /// Records the platform's fees moved on chain from an agent's wallet to the fee address:
    /// `fee_collected` up, on-chain mirror down.
    pub async fn fees_collected(
        &self,
        conn: &mut PgConnection,
        command: &FeesCollected,
    ) -> Result<FeesCollectedReply, LedgerFailure> {
        let outflow = Outflow {
            key: format!(
                "fees:{}:{}:{}",
                command.asset.network, command.tx_hash, command.reference
            ),
            request_hash: store::request_hash(command),
            asset: &command.asset,
            from: platform_spec(
                Code::FeeCollected,
                &command.asset,
                "main".to_owned(),
                Constraint::None,
            ),
            amount: command.amount,
            short: "unreachable: fee_collected has no constraint",
            metadata: serde_json::json!({"op": "fees_collected", "payer": command.payer, "tx_hash": command.tx_hash}),
        };
        self.outflow(conn, outflow, |ledger_id, _| FeesCollectedReply { ledger_id }).await
    }

    /// Posts money that left the wallets on chain: `outflow.from` debited, the on-chain mirror
    /// credited, once per key; the answer is `reply(transfer, what from still holds)`, and a
    /// replay answers what was stored.
    async fn outflow<R: Serialize + serde::de::DeserializeOwned>(
        &self,
        conn: &mut PgConnection,
        outflow: Outflow<'_>,
        reply: impl FnOnce(LedgerId, Amount) -> R,
    ) -> Result<R, LedgerFailure> {
        let Outflow { key, request_hash, asset, from, amount, short, metadata } = outflow;
        check_asset(asset)?;
        if amount.is_zero() {
            return Err(LedgerFailure::Invalid(
                "an on-chain outflow moves a positive amount".into(),
            ));
        }
        store::lock_key(conn, &key).await?;
        if let Some(stored) = store::replay(conn, &key, &request_hash).await? {
            return Ok(stored);
        }
        let ids =
            crate::accounts::ensure_accounts(conn, &self.accounts, &[from, mirror_spec(asset)])
                .await?;
        let legs = [Leg { debit: key_of(ids[0]), credit: key_of(ids[1]), amount }];
        let mut accounts = store::lock_accounts(conn, &ids).await?;
        let entries =
            model::apply(&mut accounts, Operation::Post(&legs)).map_err(|error| match error {
                model::LedgerError::InsufficientFunds { .. } => {
                    LedgerFailure::InsufficientFunds(short.into())
                }
                other => LedgerFailure::from_model(other),
            })?;
        let ledger_id = LedgerId::new();
        let answer = reply(ledger_id, available(accounts.get(&key_of(ids[0]))));
        store::write_transfer(
            conn,
            TransferRecord {
                id: ledger_id,
                idempotency_key: &key,
                request_hash: &request_hash,
                kind: "post",
                pending_id: None,
                status: "posted",
                timeout_at: None,
                network: &asset.network,
                token: &token_text(asset.token),
                owner: None,
                metadata,
                result: json(&answer)?,
            },
            &legs,
            &entries,
            &accounts,
        )
        .await?;
        Ok(answer)
    }

    /// A transfer between any accounts (see [`GenericTransfer`]).
    pub async fn transfer(
        &self,
        conn: &mut PgConnection,
        request: &GenericTransfer,
    ) -> Result<GenericReply, LedgerFailure> {
        let key = format!("transfer:{}", request.idempotency_key);
        let description: Vec<(String, String, String, String, Amount)> = request
            .legs
            .iter()
            .map(|(d, c, a)| {
                (
                    d.code.as_str().to_owned(),
                    d.reference.clone(),
                    c.code.as_str().to_owned(),
                    c.reference.clone(),
                    *a,
                )
            })
            .collect();
        let hash = store::request_hash(&(&description, request.hold_timeout_seconds));
        store::lock_key(conn, &key).await?;
        if let Some(reply) = store::replay(conn, &key, &hash).await? {
            return Ok(reply);
        }
        let (first_debit, _, _) =
            request.legs.first().ok_or_else(|| LedgerFailure::Invalid("no legs".into()))?;
        let mut specs = Vec::new();
        for (debit, credit, _) in &request.legs {
            specs.push(debit.clone());
            specs.push(credit.clone());
        }
        let ids = crate::accounts::ensure_accounts(conn, &self.accounts, &specs).await?;
        let legs: Vec<Leg> = request
            .legs
            .iter()
            .enumerate()
            .map(|(i, (_, _, amount))| Leg {
                debit: key_of(ids[i.saturating_mul(2)]),
                credit: key_of(ids[i.saturating_mul(2).saturating_add(1)]),
                amount: *amount,
            })
            .collect();
        let mut accounts = store::lock_accounts(conn, &ids).await?;
        let operation = if request.hold_timeout_seconds.is_some() {
            Operation::Hold(&legs)
        } else {
            Operation::Post(&legs)
        };
        let entries = model::apply(&mut accounts, operation).map_err(LedgerFailure::from_model)?;
        let ledger_id = LedgerId::new();
        let reply = GenericReply { ledger_id };
        let timeout_at = request
            .hold_timeout_seconds
            .map(|s| Utc::now() + chrono::Duration::seconds(i64::from(s)));
        store::write_transfer(
            conn,
            TransferRecord {
                id: ledger_id,
                idempotency_key: &key,
                request_hash: &hash,
                kind: if timeout_at.is_some() { "hold" } else { "post" },
                pending_id: None,
                status: if timeout_at.is_some() { "pending" } else { "posted" },
                timeout_at,
                network: &first_debit.network,
                token: &first_debit.token,
                owner: None,
                metadata: serde_json::json!({"op": "transfer", "fee_rate": "0", "decimals": first_debit.decimals}),
                result: json(&reply)?,
            },
            &legs,
            &entries,
            &accounts,
        )
        .await?;
        Ok(reply)
    }

    /// An agent's wallet balances.
    pub async fn balances(
        &self,
        conn: &mut PgConnection,
        query: &Balances,
    ) -> Result<BalancesReply, LedgerFailure> {
        let rows = sqlx::query(
            "SELECT network, token, decimals, debits_pending::text, debits_posted::text, credits_posted::text
             FROM ledger.accounts WHERE owner = $1 AND code = 'wallet' AND ref = $2 ORDER BY network, token",
        )
        .bind(query.owner.as_uuid())
        .bind(query.agent.to_string())
        .fetch_all(conn)
        .await?;
        let mut wallets = Vec::with_capacity(rows.len());
        for row in rows {
            let parse = |i: usize| {
                Amount::parse_atomic(row.get::<&str, _>(i))
                    .map_err(|e| LedgerFailure::Internal(e.to_string()))
            };
            let (held, debits, credits) = (parse(3)?, parse(4)?, parse(5)?);
            let available = credits
                .checked_sub(debits)
                .and_then(|rest| rest.checked_sub(held))
                .map_err(|e| LedgerFailure::Internal(e.to_string()))?;
            wallets.push(WalletBalance {
                asset: asset_of(row.get(0), row.get(1), row.get(2))?,
                available,
                held,
            });
        }
        Ok(BalancesReply { wallets })
    }

    /// A page of an agent's wallet entries.
    pub async fn statement(
        &self,
        conn: &mut PgConnection,
        query: &Statement,
    ) -> Result<StatementReply, LedgerFailure> {
        let limit = query.limit.clamp(1, 100);
        // A hold's resolution (capture, release, expiry, withdrawal) is shown under the hold's
        // id, which is the payment's (or withdrawal's) ledger id, so every line of one payment
        // carries the id the API shows for it.
        let rows = sqlx::query(
            "SELECT e.id, COALESCE(t.pending_id, e.transfer_id),
                    CASE WHEN t.metadata @> '{\"withdrawal\": true}' THEN 'withdrawal' ELSE t.metadata->>'op' END,
                    a.network, a.token, a.decimals, e.side,
                    e.pending_added::text, e.pending_removed::text, e.posted_added::text,
                    e.debits_pending_after::text, e.debits_posted_after::text, e.credits_posted_after::text,
                    (extract(epoch FROM e.created_at) * 1000)::int8
             FROM ledger.entries e
             JOIN ledger.accounts a ON a.id = e.account_id
             JOIN ledger.transfers t ON t.id = e.transfer_id
             WHERE a.owner = $1 AND a.code = 'wallet' AND a.ref = $2 AND ($3::int8 IS NULL OR e.id > $3)
             ORDER BY e.id LIMIT $4",
        )
        .bind(query.owner.as_uuid())
        .bind(query.agent.to_string())
        .bind(query.after)
        .bind(i64::from(limit).saturating_add(1))
        .fetch_all(conn)
        .await?;
        let mut lines = Vec::with_capacity(rows.len());
        for row in &rows {
            let parse = |i: usize| {
                Amount::parse_atomic(row.get::<&str, _>(i))
                    .map_err(|e| LedgerFailure::Internal(e.to_string()))
            };
            let side: &str = row.get(6);
            let (pending_added, pending_removed, posted_added) = (parse(7)?, parse(8)?, parse(9)?);
            let (held_after, debits_after, credits_after) = (parse(10)?, parse(11)?, parse(12)?);
            // For a wallet, credits add to the available balance; posted or pending debits take
            // from it. Movements are shown gross: a hold takes what it holds (debit); a capture
            // lifts its hold (credit: what was held) and takes what it captured (debit), so the
            // captured amount shows and `available_after` moves by the rest it released; a
            // release returns what was held (credit).
            let (credit, debit) = if side == "credit" {
                (posted_added, Amount::ZERO)
            } else {
                let taken = pending_added
                    .checked_add(posted_added)
                    .map_err(|e| LedgerFailure::Internal(e.to_string()))?;
                (pending_removed, taken)
            };
            let kind = match row.get::<Option<&str>, _>(2) {
                Some("deposit") => LineKind::Deposit,
                Some("deposit_reversal") => LineKind::DepositReversal,
                Some(crate::withdrawals::WITHDRAWAL_HOLD_OP) => LineKind::WithdrawalHold,
                Some("withdrawal") => LineKind::Withdrawal,
                Some("hold") => LineKind::Hold,
                Some("capture") => LineKind::Capture,
                Some("void") => LineKind::Release,
                Some("expire") => LineKind::Expiry,
                _ => LineKind::Transfer,
            };
            let available_after = credits_after
                .checked_sub(debits_after)
                .and_then(|rest| rest.checked_sub(held_after))
                .map_err(|e| LedgerFailure::Internal(e.to_string()))?;
            lines.push(StatementLine {
                entry_id: row.get(0),
                ledger_id: LedgerId::from_uuid(row.get(1)),
                kind,
                asset: asset_of(row.get(3), row.get(4), row.get(5))?,
                credit,
                debit,
                available_after,
                held_after,
                at_unix_ms: row.get(13),
            });
        }
        let limit = usize::try_from(limit).unwrap_or(100);
        let next_cursor = if lines.len() > limit {
            lines.truncate(limit);
            lines.last().map(|line| line.entry_id)
        } else {
            None
        };
        Ok(StatementReply { lines, next_cursor })
    }

    /// The fee schedule in effect and a tenant's tier.
    pub async fn fee_tiers(
        &self,
        conn: &mut PgConnection,
        query: &FeeTiers,
    ) -> Result<FeeTiersReply, LedgerFailure> {
        let schedule = self.fees.schedule(conn).await?;
        let (tier, volume) = self.fees.tier(conn, query.owner).await?;
        let tiers = schedule
            .schedule
            .tiers
            .iter()
            .map(|t| TierView {
                name: t.name.clone(),
                volume_from_usd: t.volume_from_usd,
                volume_to_usd: schedule.schedule.next_tier(t).map(|next| next.volume_from_usd),
                fee_rate: t.rate_percent,
            })
            .collect();
        Ok(FeeTiersReply {
            schedule_version: schedule.version,
            effective_from_unix: schedule.effective_from_unix,
            tiers,
            current_tier: tier.name,
            current_fee_rate: tier.rate_percent,
            volume_30d_usd: volume,
        })
    }
}

fn asset_of(network: String, token: String, decimals: i16) -> Result<Asset, LedgerFailure> {
    let token = token.parse::<Address>().map_err(|e| LedgerFailure::Internal(e.to_string()))?;
    let decimals = u8::try_from(decimals).map_err(|e| LedgerFailure::Internal(e.to_string()))?;
    Ok(Asset { network, token, decimals })
}

/// Runs an operation in its own transaction (for callers outside the bus: the sweeper, tests,
/// benchmarks): commits on success, rolls back on failure. Evaluates to the operation's result.
#[macro_export]
macro_rules! committed {
    ($ledger:expr, |$conn:ident| $body:expr) => {
        async {
            let mut tx = match $ledger.pool.begin().await {
                Ok(tx) => tx,
                Err(error) => return Err($crate::error::LedgerFailure::from(error)),
            };
            let result = {
                let $conn: &mut sqlx::PgConnection = &mut tx;
                $body.await
            };
            match result {
                Ok(value) => match tx.commit().await {
                    Ok(()) => Ok(value),
                    Err(error) => Err($crate::error::LedgerFailure::from(error)),
                },
                Err(error) => {
                    let _ = tx.rollback().await;
                    Err(error)
                }
            }
        }
        .await
    };
}

/// Money leaving the wallets on chain (see [`Ledger::outflow`]).
struct Outflow<'a> {
    key: String,
    request_hash: Vec<u8>,
    asset: &'a Asset,
    from: AccountSpec,
    amount: Amount,
    short: &'static str,
    metadata: serde_json::Value,
}
