//! The ledger's Postgres access: accounts (found or created by their natural key, then locked in
//! id order), transfers with their legs and immutable entries, and replays by idempotency key.
//!
//! Amounts travel as decimal text (`numeric::text`, `$n::numeric`), so no value is ever bounded
//! by a binary decimal type on the way.

use std::collections::BTreeMap;

use awx_ledger_core::model::{Account, AccountKey, Balances, Constraint, Entry, Leg, Side};
use awx_types::{AccountId, Amount, LedgerId};
use serde::Serialize;
use serde::de::DeserializeOwned;
use sqlx::{PgConnection, Row as _};
use uuid::Uuid;

use crate::error::LedgerFailure;

/// What kind of account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    /// An agent's funds.
    Wallet,
    /// Owed to a payee address.
    Payable,
    /// Platform fee revenue (sharded).
    FeeRevenue,
    /// Fees moved on chain to the platform's fee address.
    FeeCollected,
    /// The asset held on chain for the wallets.
    OnchainMirror,
    /// Payouts in flight on chain.
    SettlementClearing,
    /// What reorganisations took back that agents had already spent (a platform loss).
    ReorgLoss,
    /// Accounts of tests and benchmarks.
    Test,
}

impl Code {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Wallet => "wallet",
            Self::Payable => "payable",
            Self::FeeRevenue => "fee_revenue",
            Self::FeeCollected => "fee_collected",
            Self::OnchainMirror => "onchain_mirror",
            Self::SettlementClearing => "settlement_clearing",
            Self::ReorgLoss => "reorg_loss",
            Self::Test => "test",
        }
    }
}

pub(crate) fn constraint_name(constraint: Constraint) -> &'static str {
    match constraint {
        Constraint::None => "none",
        Constraint::DebitsMustNotExceedCredits => "debits_must_not_exceed_credits",
        Constraint::CreditsMustNotExceedDebits => "credits_must_not_exceed_debits",
    }
}

fn constraint_of(name: &str) -> Constraint {
    match name {
        "debits_must_not_exceed_credits" => Constraint::DebitsMustNotExceedCredits,
        "credits_must_not_exceed_debits" => Constraint::CreditsMustNotExceedDebits,
        _ => Constraint::None,
    }
}

/// An account by its natural key, as operations name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountSpec {
    /// Its kind.
    pub code: Code,
    /// The CAIP-2 network.
    pub network: String,
    /// The token, lowercase `0x` hex.
    pub token: String,
    /// The token's decimals.
    pub decimals: u8,
    /// The owning tenant (wallets).
    pub owner: Option<AccountId>,
    /// The agent, payee address or shard.
    pub reference: String,
    /// Its constraint.
    pub constraint: Constraint,
}

impl AccountSpec {
    /// The model's asset key of this account.
    pub fn asset_key(&self) -> String {
        format!("{}/{}", self.network, self.token)
    }
}

fn parse_amount(text: &str) -> Result<Amount, LedgerFailure> {
    Amount::parse_atomic(text)
        .map_err(|error| LedgerFailure::Internal(format!("stored amount {text:?}: {error}")))
}

/// Locks the accounts `ids` (in ascending id order, the one global order, so concurrent
/// transfers cannot deadlock) and loads them for the model.
pub async fn lock_accounts(
    conn: &mut PgConnection,
    ids: &[Uuid],
) -> Result<BTreeMap<AccountKey, Account>, LedgerFailure> {
    let rows = sqlx::query(
        "SELECT id, network, token, constraint_kind, debits_pending::text, debits_posted::text,
                credits_pending::text, credits_posted::text, version
         FROM ledger.accounts WHERE id = ANY($1) ORDER BY id FOR UPDATE",
    )
    .bind(ids)
    .fetch_all(&mut *conn)
    .await?;
    let mut accounts = BTreeMap::new();
    for row in rows {
        let id: Uuid = row.get(0);
        let network: String = row.get(1);
        let token: String = row.get(2);
        let version: i64 = row.get(8);
        accounts.insert(
            id.as_u128(),
            Account {
                key: id.as_u128(),
                asset: format!("{network}/{token}"),
                constraint: constraint_of(row.get::<&str, _>(3)),
                balances: Balances {
                    debits_pending: parse_amount(row.get(4))?,
                    debits_posted: parse_amount(row.get(5))?,
                    credits_pending: parse_amount(row.get(6))?,
                    credits_posted: parse_amount(row.get(7))?,
                },
                version: u64::try_from(version).unwrap_or(0),
            },
        );
    }
    Ok(accounts)
}

/// A transfer row to write.
#[derive(Debug)]
pub struct TransferRecord<'a> {
    /// Its id.
    pub id: LedgerId,
    /// Its idempotency key.
    pub idempotency_key: &'a str,
    /// The hash of the request.
    pub request_hash: &'a [u8],
    /// `post`, `hold`, `post_pending` or `void_pending`.
    pub kind: &'static str,
    /// The hold it resolves.
    pub pending_id: Option<LedgerId>,
    /// `posted` or `pending`.
    pub status: &'static str,
    /// When a hold expires.
    pub timeout_at: Option<chrono::DateTime<chrono::Utc>>,
    /// The asset.
    pub network: &'a str,
    /// The token.
    pub token: &'a str,
    /// The tenant.
    pub owner: Option<AccountId>,
    /// Facts to keep (operation, payment id, fee rate, …).
    pub metadata: serde_json::Value,
    /// The reply to store for replays.
    pub result: serde_json::Value,
}

/// Writes a transfer: its row, its legs, its entries, and the accounts' new counters, in one
/// statement (one round trip: each is a data-modifying `WITH` of it, and the foreign keys are
/// checked at its end).
pub async fn write_transfer(
    conn: &mut PgConnection,
    record: TransferRecord<'_>,
    legs: &[Leg],
    entries: &[Entry],
    accounts: &BTreeMap<AccountKey, Account>,
) -> Result<(), LedgerFailure> {
    let text = |amount: Amount| amount.to_string();
    let leg_numbers: Vec<i16> =
        (0..legs.len()).map(|i| i16::try_from(i).unwrap_or(i16::MAX)).collect();
    let debits: Vec<Uuid> = legs.iter().map(|l| Uuid::from_u128(l.debit)).collect();
    let credits: Vec<Uuid> = legs.iter().map(|l| Uuid::from_u128(l.credit)).collect();
    let amounts: Vec<String> = legs.iter().map(|l| l.amount.to_string()).collect();

    let entry_legs: Vec<i16> =
        entries.iter().map(|e| i16::try_from(e.leg).unwrap_or(i16::MAX)).collect();
    let entry_accounts: Vec<Uuid> = entries.iter().map(|e| Uuid::from_u128(e.account)).collect();
    let sides: Vec<&str> =
        entries.iter().map(|e| if e.side == Side::Debit { "debit" } else { "credit" }).collect();
    let pending_added: Vec<String> = entries.iter().map(|e| text(e.pending_added)).collect();
    let pending_removed: Vec<String> = entries.iter().map(|e| text(e.pending_removed)).collect();
    let posted_added: Vec<String> = entries.iter().map(|e| text(e.posted_added)).collect();
    let dp: Vec<String> = entries.iter().map(|e| text(e.after.debits_pending)).collect();
    let dpo: Vec<String> = entries.iter().map(|e| text(e.after.debits_posted)).collect();
    let cp: Vec<String> = entries.iter().map(|e| text(e.after.credits_pending)).collect();
    let cpo: Vec<String> = entries.iter().map(|e| text(e.after.credits_posted)).collect();
    let versions: Vec<i64> =
        entries.iter().map(|e| i64::try_from(e.version).unwrap_or(i64::MAX)).collect();

    let touched: Vec<&Account> = accounts
        .values()
        .filter(|account| entries.iter().any(|entry| entry.account == account.key))
        .collect();
    let account_ids: Vec<Uuid> = touched.iter().map(|a| Uuid::from_u128(a.key)).collect();
    let account_dp: Vec<String> = touched.iter().map(|a| text(a.balances.debits_pending)).collect();
    let account_dpo: Vec<String> = touched.iter().map(|a| text(a.balances.debits_posted)).collect();
    let account_cp: Vec<String> =
        touched.iter().map(|a| text(a.balances.credits_pending)).collect();
    let account_cpo: Vec<String> =
        touched.iter().map(|a| text(a.balances.credits_posted)).collect();
    let account_versions: Vec<i64> =
        touched.iter().map(|a| i64::try_from(a.version).unwrap_or(i64::MAX)).collect();

    sqlx::query(
        "WITH transfer AS (
           INSERT INTO ledger.transfers
             (id, idempotency_key, request_hash, kind, pending_id, status, timeout_at, network, token, owner, metadata, result)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)),
         legs AS (
           INSERT INTO ledger.transfer_legs (transfer_id, leg, debit_account, credit_account, amount)
           SELECT $1, * FROM unnest($13::int2[], $14::uuid[], $15::uuid[], $16::numeric[])),
         entries AS (
           INSERT INTO ledger.entries
             (transfer_id, leg, account_id, side, pending_added, pending_removed, posted_added,
              debits_pending_after, debits_posted_after, credits_pending_after, credits_posted_after, account_version)
           SELECT $1, * FROM unnest($17::int2[], $18::uuid[], $19::text[], $20::numeric[], $21::numeric[], $22::numeric[],
                                    $23::numeric[], $24::numeric[], $25::numeric[], $26::numeric[], $27::int8[]))
         UPDATE ledger.accounts AS a
         SET debits_pending = v.dp, debits_posted = v.dpo, credits_pending = v.cp, credits_posted = v.cpo, version = v.version
         FROM unnest($28::uuid[], $29::numeric[], $30::numeric[], $31::numeric[], $32::numeric[], $33::int8[])
              AS v(id, dp, dpo, cp, cpo, version)
         WHERE a.id = v.id",
    )
    .bind(record.id.as_uuid())
    .bind(record.idempotency_key)
    .bind(record.request_hash)
    .bind(record.kind)
    .bind(record.pending_id.map(|id| id.as_uuid()))
    .bind(record.status)
    .bind(record.timeout_at)
    .bind(record.network)
    .bind(record.token)
    .bind(record.owner.map(|id| id.as_uuid()))
    .bind(&record.metadata)
    .bind(&record.result)
    .bind(&leg_numbers)
    .bind(&debits)
    .bind(&credits)
    .bind(&amounts)
    .bind(&entry_legs)
    .bind(&entry_accounts)
    .bind(&sides)
    .bind(&pending_added)
    .bind(&pending_removed)
    .bind(&posted_added)
    .bind(&dp)
    .bind(&dpo)
    .bind(&cp)
    .bind(&cpo)
    .bind(&versions)
    .bind(&account_ids)
    .bind(&account_dp)
    .bind(&account_dpo)
    .bind(&account_cp)
    .bind(&account_cpo)
    .bind(&account_versions)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Serializes operations with the same idempotency key for the rest of the transaction.
pub async fn lock_key(conn: &mut PgConnection, key: &str) -> Result<(), LedgerFailure> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 7310))")
        .bind(key)
        .execute(conn)
        .await?;
    Ok(())
}

/// The stored reply of an earlier operation with `key`: `Ok(None)` if there was none, an
/// idempotency conflict if there was one for another request.
pub async fn replay<R: DeserializeOwned>(
    conn: &mut PgConnection,
    key: &str,
    request_hash: &[u8],
) -> Result<Option<R>, LedgerFailure> {
    let row: Option<(Vec<u8>, serde_json::Value)> = sqlx::query_as(
        "SELECT request_hash, result FROM ledger.transfers WHERE idempotency_key = $1",
    )
    .bind(key)
    .fetch_optional(conn)
    .await?;
    stored_reply(key, request_hash, row)
}

/// The reply stored for `key` (its request hash and result, as read), judged as [`replay`]
/// judges it.
pub fn stored_reply<R: DeserializeOwned>(
    key: &str,
    request_hash: &[u8],
    row: Option<(Vec<u8>, serde_json::Value)>,
) -> Result<Option<R>, LedgerFailure> {
    match row {
        None => Ok(None),
        Some((hash, _)) if hash != request_hash => {
            Err(LedgerFailure::IdempotencyConflict(key.to_owned()))
        }
        Some((_, result)) => serde_json::from_value(result)
            .map(Some)
            .map_err(|error| LedgerFailure::Internal(format!("stored result of {key}: {error}"))),
    }
}

/// SHA-256 of a request's canonical JSON.
pub fn request_hash<T: Serialize>(request: &T) -> Vec<u8> {
    use sha2::Digest as _;
    let json = serde_json::to_vec(request).unwrap_or_default();
    sha2::Sha256::digest(json).to_vec()
}

/// The stored reply of an earlier operation with `key` and the same request; `None` when there
/// was none or it was another request (a hold's capture after its void, say), which the caller
/// then refuses by the state it finds.
pub async fn replay_if_same<R: DeserializeOwned>(
    conn: &mut PgConnection,
    key: &str,
    request_hash: &[u8],
) -> Result<Option<R>, LedgerFailure> {
    match replay(conn, key, request_hash).await {
        Err(LedgerFailure::IdempotencyConflict(_)) => Ok(None),
        other => other,
    }
}
