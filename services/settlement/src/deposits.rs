//! Deposits: token transfers into agents' wallets, credited in the ledger once each.
//!
//! A deposit is stored (`settlement.deposits`, state `pending`) before the ledger is asked, keyed
//! by (network, transaction, log index, block hash), so a crash between the two is finished by the
//! next pass, and a transfer seen twice (by the watcher and by the faucet that minted it, or by a
//! watcher restarted mid-range) is credited once. The ledger's `Deposit` is idempotent by the same
//! key. Once the ledger answers, the row is `credited` and the event `deposit.confirmed` is written
//! to the outbox in the same transaction.
//!
//! A deposit whose block left the canonical chain is reversed ([`Facilitator::reverse_deposit`]):
//! the ledger takes the amount back (`ReverseDeposit`), the row becomes `reversed` with the
//! reason, and `deposit.reversed` is published. If the transfer reappears in another block, it is
//! another row (another block hash), credited again.

use std::time::Duration;

use awx_api::deposits::{
    DepositConfirmed, DepositList, DepositReversedEvent, DepositView, ListDeposits,
};
use awx_api::ledger::{Asset, Deposit, DepositSource, ReverseDeposit, codes as ledger_codes};
use awx_bus::BusError;
use awx_types::{AccountId, AgentId, Amount};
use awx_x402::{Address, B256};
use sqlx::{PgConnection, Row as _};
use uuid::Uuid;

use crate::facilitator::{Facilitator, FacilitatorError};
use crate::settle::lower;

/// A transfer into an agent's wallet, as seen on chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeenDeposit {
    /// The CAIP-2 network.
    pub network: String,
    /// The token.
    pub token: Address,
    /// The token's decimals.
    pub decimals: u8,
    /// The transaction.
    pub tx_hash: B256,
    /// The `Transfer` log's index in its block.
    pub log_index: u64,
    /// The block.
    pub block_number: u64,
    /// The block's hash.
    pub block_hash: B256,
    /// The sender (zero for a mint).
    pub from: Address,
    /// The agent's wallet.
    pub to: Address,
    /// The tenant.
    pub owner: AccountId,
    /// The agent.
    pub agent: AgentId,
    /// The amount.
    pub amount: Amount,
    /// Who saw it first.
    pub source: DepositSource,
}

/// What became of a deposit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credit {
    /// In the ledger (now or before).
    Credited,
    /// The ledger refused it (final).
    Refused(String),
    /// Reversed before (its block left the chain).
    Reversed,
}

const COLUMNS: &str = "id, network, token, decimals, tx_hash, log_index, block_number, block_hash, sender, wallet,
     owner, agent, amount::text, source, state, reversal_reason, extract(epoch FROM created_at)::bigint, error";

fn parse<T: std::str::FromStr>(text: &str) -> Result<T, FacilitatorError> {
    text.parse().map_err(|_| FacilitatorError::Inconsistent(format!("stored value {text:?}")))
}

fn source_text(source: DepositSource) -> &'static str {
    match source {
        DepositSource::Chain => "chain",
        DepositSource::Faucet => "faucet",
    }
}

/// A stored deposit.
#[derive(Debug, Clone)]
pub(crate) struct StoredDeposit {
    pub(crate) view: DepositView,
    pub(crate) owner: AccountId,
    pub(crate) agent: AgentId,
    pub(crate) error: Option<String>,
}

fn read(row: &sqlx::postgres::PgRow) -> Result<StoredDeposit, FacilitatorError> {
    let source: String = row.get(13);
    let view = DepositView {
        id: row.get(0),
        network: row.get(1),
        token: parse(row.get(2))?,
        decimals: u8::try_from(row.get::<i16, _>(3))
            .map_err(|_| FacilitatorError::Inconsistent("stored decimals".into()))?,
        tx_hash: parse(row.get(4))?,
        log_index: u64::try_from(row.get::<i64, _>(5))
            .map_err(|_| FacilitatorError::Inconsistent("stored log index".into()))?,
        block_number: u64::try_from(row.get::<i64, _>(6))
            .map_err(|_| FacilitatorError::Inconsistent("stored block number".into()))?,
        block_hash: parse(row.get(7))?,
        from: parse(row.get(8))?,
        to: parse(row.get(9))?,
        amount: Amount::parse_atomic(row.get(12))
            .map_err(|error| FacilitatorError::Inconsistent(error.to_string()))?,
        source: if source == "faucet" { DepositSource::Faucet } else { DepositSource::Chain },
        state: row.get(14),
        reversal_reason: row.get(15),
        created_at_unix: row.get(16),
    };
    Ok(StoredDeposit {
        view,
        owner: AccountId::from_uuid(row.get(10)),
        agent: AgentId::from_uuid(row.get(11)),
        error: row.get(17),
    })
}

impl StoredDeposit {
    fn ledger_deposit(&self) -> Deposit {
        Deposit {
            owner: self.owner,
            agent: self.agent,
            asset: Asset {
                network: self.view.network.clone(),
                token: self.view.token,
                decimals: self.view.decimals,
            },
            amount: self.view.amount,
            tx_hash: self.view.tx_hash,
            log_index: self.view.log_index,
            source: self.view.source,
            block_hash: Some(self.view.block_hash),
        }
    }
}

impl Facilitator {
    fn ledger_timeout(&self) -> Duration {
        Duration::from_millis(self.settings.ledger_timeout_ms)
    }

    /// Stores `seen` (once) and credits it in the ledger; see the module docs.
    pub async fn record_deposit(&self, seen: &SeenDeposit) -> Result<Credit, FacilitatorError> {
        let id: Uuid = sqlx::query_scalar(
            "WITH inserted AS (
               INSERT INTO settlement.deposits
                 (id, network, token, decimals, tx_hash, log_index, block_number, block_hash, sender, wallet,
                  owner, agent, amount, source, state)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13::numeric, $14, 'pending')
               ON CONFLICT (network, tx_hash, log_index, block_hash) DO NOTHING
               RETURNING id)
             SELECT id FROM inserted
             UNION ALL
             SELECT id FROM settlement.deposits
             WHERE network = $2 AND tx_hash = $5 AND log_index = $6 AND block_hash = $8
             LIMIT 1",
        )
        .bind(Uuid::now_v7())
        .bind(&seen.network)
        .bind(lower(seen.token))
        .bind(i16::from(seen.decimals))
        .bind(format!("{:#x}", seen.tx_hash))
        .bind(i64::try_from(seen.log_index).unwrap_or(i64::MAX))
        .bind(i64::try_from(seen.block_number).unwrap_or(i64::MAX))
        .bind(format!("{:#x}", seen.block_hash))
        .bind(lower(seen.from))
        .bind(lower(seen.to))
        .bind(seen.owner.as_uuid())
        .bind(seen.agent.as_uuid())
        .bind(seen.amount.to_string())
        .bind(source_text(seen.source))
        .fetch_one(&self.pool)
        .await?;
        self.credit_deposit(id).await
    }

    pub(crate) async fn stored_deposit(
        &self,
        conn: &mut PgConnection,
        id: Uuid,
        lock: bool,
    ) -> Result<StoredDeposit, FacilitatorError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM settlement.deposits WHERE id = $1{}",
            if lock { " FOR UPDATE" } else { "" }
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id).fetch_one(&mut *conn).await?;
        read(&row)
    }

    /// Credits a stored deposit in the ledger if it is still `pending` (idempotent).
    pub async fn credit_deposit(&self, id: Uuid) -> Result<Credit, FacilitatorError> {
        let mut conn = self.pool.acquire().await?;
        let stored = self.stored_deposit(&mut conn, id, false).await?;
        drop(conn);
        match stored.view.state.as_str() {
            "credited" => return Ok(Credit::Credited),
            "reversed" => return Ok(Credit::Reversed),
            "refused" => return Ok(Credit::Refused(stored.error.unwrap_or_default())),
            _ => {}
        }
        let reply = self.bus.send(&stored.ledger_deposit(), self.ledger_timeout()).await;
        let mut tx = self.pool.begin().await?;
        let current = self.stored_deposit(&mut tx, id, true).await?;
        if current.view.state != "pending" {
            tx.rollback().await?;
            return Ok(match current.view.state.as_str() {
                "credited" => Credit::Credited,
                "reversed" => Credit::Reversed,
                _ => Credit::Refused(current.error.unwrap_or_default()),
            });
        }
        let outcome = match reply {
            Ok(reply) => {
                sqlx::query(
                    "UPDATE settlement.deposits SET state = 'credited', ledger_id = $2, credited_at = now()
                     WHERE id = $1",
                )
                .bind(id)
                .bind(reply.ledger_id.as_uuid())
                .execute(&mut *tx)
                .await?;
                let mut view = current.view.clone();
                view.state = "credited".into();
                let event =
                    DepositConfirmed { owner: current.owner, agent: current.agent, deposit: view };
                awx_bus::publish(&mut tx, self.bus.schema(), &event).await.map_err(|error| {
                    FacilitatorError::Inconsistent(format!("writing the outbox: {error}"))
                })?;
                metrics::counter!("settlement_deposits_credited_total", "network" => current.view.network.clone())
                    .increment(1);
                tracing::info!(deposit = %id, agent = %current.agent, amount = %current.view.amount,
                    tx_hash = %current.view.tx_hash, "deposit credited");
                Credit::Credited
            }
            Err(BusError::Rejected { code, message }) => {
                let message = format!("the ledger refused the deposit ({code}): {message}");
                tracing::error!(deposit = %id, error.message = %message, "a deposit was refused");
                sqlx::query(
                    "UPDATE settlement.deposits SET state = 'refused', error = $2 WHERE id = $1",
                )
                .bind(id)
                .bind(&message)
                .execute(&mut *tx)
                .await?;
                Credit::Refused(message)
            }
            Err(error) => {
                return Err(FacilitatorError::Ledger(format!(
                    "the ledger did not record deposit {id}: {error}"
                )));
            }
        };
        tx.commit().await?;
        Ok(outcome)
    }

    /// Reverses a deposit whose block is no longer canonical (idempotent); see the module docs.
    pub async fn reverse_deposit(&self, id: Uuid, reason: &str) -> Result<(), FacilitatorError> {
        let mut conn = self.pool.acquire().await?;
        let stored = self.stored_deposit(&mut conn, id, false).await?;
        drop(conn);
        if stored.view.state == "reversed" {
            return Ok(());
        }
        let command =
            ReverseDeposit { deposit: stored.ledger_deposit(), reason: reason.to_owned() };
        let shortfall = match self.bus.send(&command, self.ledger_timeout()).await {
            Ok(reply) => reply.shortfall,
            // Never credited (refused, or asked while pending and the ledger never wrote it).
            Err(BusError::Rejected { code, .. }) if code == ledger_codes::DEPOSIT_NOT_FOUND => {
                Amount::ZERO
            }
            Err(error) => {
                return Err(FacilitatorError::Ledger(format!(
                    "the ledger did not reverse deposit {id}: {error}"
                )));
            }
        };
        let mut tx = self.pool.begin().await?;
        let current = self.stored_deposit(&mut tx, id, true).await?;
        if current.view.state == "reversed" {
            tx.rollback().await?;
            return Ok(());
        }
        sqlx::query(
            "UPDATE settlement.deposits SET state = 'reversed', reversed_at = now(), reversal_reason = $2
             WHERE id = $1",
        )
        .bind(id)
        .bind(reason)
        .execute(&mut *tx)
        .await?;
        let mut view = current.view.clone();
        view.state = "reversed".into();
        view.reversal_reason = Some(reason.to_owned());
        let event =
            DepositReversedEvent { owner: current.owner, agent: current.agent, deposit: view };
        awx_bus::publish(&mut tx, self.bus.schema(), &event).await.map_err(|error| {
            FacilitatorError::Inconsistent(format!("writing the outbox: {error}"))
        })?;
        tx.commit().await?;
        metrics::counter!("settlement_deposits_reversed_total", "network" => current.view.network.clone())
            .increment(1);
        tracing::warn!(deposit = %id, agent = %current.agent, amount = %current.view.amount,
            %shortfall, tx_hash = %current.view.tx_hash, reason, "deposit reversed");
        Ok(())
    }

    /// An agent's deposits, newest first.
    pub async fn list_deposits(
        &self,
        query: &ListDeposits,
    ) -> Result<DepositList, FacilitatorError> {
        let limit = i64::from(query.limit.clamp(1, 100));
        let sql = format!(
            "SELECT {COLUMNS} FROM settlement.deposits
             WHERE owner = $1 AND agent = $2 AND ($3::uuid IS NULL OR id < $3)
             ORDER BY id DESC LIMIT $4"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(query.owner.as_uuid())
            .bind(query.agent.as_uuid())
            .bind(query.starting_after)
            .bind(limit.saturating_add(1))
            .fetch_all(&self.pool)
            .await?;
        let has_more = i64::try_from(rows.len()).unwrap_or(i64::MAX) > limit;
        let deposits = rows
            .iter()
            .take(usize::try_from(limit).unwrap_or(100))
            .map(|row| read(row).map(|stored| stored.view))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(DepositList { deposits, has_more })
    }
}
