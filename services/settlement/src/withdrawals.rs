//! Withdrawals: USDC moved from an agent's wallet to an outside address (see
//! `awx_api::withdrawals`).
//!
//! Each step is stored before the next:
//!
//! 1. **Stored** (`settlement.withdrawals`, `pending`), with its EIP-3009 authorization fixed
//!    (fresh nonce, `validBefore` = now + `batch.authorization_ttl_seconds`), idempotent by the
//!    withdrawal id (the same id with other contents is `withdrawal_conflict`).
//! 2. **Approved and held**: the policy service checks the agent, the wallet and the account's
//!    allow-list, has the ledger hold the amount for the authorization's life plus a day, and
//!    signs a decision binding the transfer (`WithdrawDecide`). A refusal (`insufficient_funds`,
//!    `withdrawal_address_not_allowed`, …) makes the withdrawal `rejected`, and nothing is held.
//! 3. **Signed** by the signer against that decision (`SignNetTransfer` of kind `Withdrawal`;
//!    the withdrawal id is the transfer id, so it is signed once), and stored as a net transfer
//!    of kind `withdrawal` in state `signed`.
//! 4. **Sent** by the batch worker like every signed net transfer: in the chain's next batch
//!    transaction from a relayer (agent wallets need no gas), stored before broadcast, replaced
//!    with a higher fee when stuck, confirmed `confirmations` deep, retried in the next batch if
//!    it failed inside one, flagged after `batch.attempts_max` failures (`failed`: the amount
//!    stays held for an operator; the ledger's own timeout releases it a day after the
//!    authorization expired).
//! 5. **Recorded**: the ledger captures the hold (the wallet debited, the on-chain mirror
//!    credited) and `withdrawal.confirmed` is published ([`crate::batch_record`]).
//!
//! A crash between steps leaves a `pending` withdrawal, which the batch worker's pass resumes
//! ([`Facilitator::resume_withdrawals`]) and a retried request (same `Idempotency-Key`) resumes
//! too; every step is idempotent by the withdrawal id.

use std::time::Duration;

use awx_api::policy::codes::SIGNER_REFUSED;
use awx_api::policy::{NetKind, WithdrawDecide};
use awx_api::signer::SignNetTransfer;
use awx_api::withdrawals::{
    GetWithdrawal, ListWithdrawals, RequestWithdrawal, WithdrawalList, WithdrawalView, codes,
};
use awx_bus::BusError;
use awx_types::{AccountId, AgentId, Amount, LedgerId, PaymentId};
use awx_x402::{Address, B256, Eip3009Authorization, U256};
use sqlx::Row as _;
use uuid::Uuid;

use crate::batch::fail_point;
use crate::facilitator::{Chain, Facilitator, FacilitatorError, now_unix_seconds};
use crate::settle::lower;

/// How long the ledger holds a withdrawal beyond its authorization's life.
const HOLD_MARGIN_SECONDS: u64 = 24 * 3_600;

const COLUMNS: &str = "w.id, w.agent, w.network, w.token, w.decimals, w.sender, w.recipient, w.amount::text,
     w.state, w.error, w.tx_hash, extract(epoch FROM w.created_at)::bigint, t.state, t.last_error, b.state,
     w.owner, w.chain_id, w.nonce, w.valid_before";

const FROM: &str = "settlement.withdrawals w
     LEFT JOIN settlement.net_transfers t ON t.id = w.id
     LEFT JOIN settlement.batches b ON b.id = t.batch_id";

fn parse<T: std::str::FromStr>(text: &str) -> Result<T, FacilitatorError> {
    text.parse().map_err(|_| FacilitatorError::Inconsistent(format!("stored value {text:?}")))
}

fn rejected(code: &str, message: impl Into<String>) -> FacilitatorError {
    FacilitatorError::Rejected { code: code.to_owned(), message: message.into() }
}

/// A stored withdrawal, with what the next step needs.
#[derive(Debug, Clone)]
struct Stored {
    view: WithdrawalView,
    owner: AccountId,
    chain_id: u64,
    nonce: B256,
    valid_before: u64,
    /// The stored state (`pending`, `signed`, `confirmed`, `rejected`).
    state: String,
}

impl Stored {
    fn authorization(&self) -> Eip3009Authorization {
        Eip3009Authorization {
            from: self.view.from,
            to: self.view.to,
            value: U256::from(self.view.amount.atomic()),
            valid_after: U256::ZERO,
            valid_before: U256::from(self.valid_before),
            nonce: self.nonce,
        }
    }
}

fn read(row: &sqlx::postgres::PgRow) -> Result<Stored, FacilitatorError> {
    let state: String = row.get(8);
    let transfer_state: Option<String> = row.get(12);
    let batch_state: Option<String> = row.get(14);
    let shown = match (state.as_str(), transfer_state.as_deref()) {
        ("signed", Some("flagged")) => "failed",
        ("signed", Some("confirmed")) => "submitted",
        ("signed", Some("signed"))
            if batch_state
                .as_deref()
                .is_some_and(|batch| matches!(batch, "planned" | "signed" | "broadcast")) =>
        {
            "submitted"
        }
        (other, _) => other,
    };
    let error: Option<String> = row.get(9);
    let transfer_error: Option<String> = row.get(13);
    let tx_hash: Option<String> = row.get(10);
    Ok(Stored {
        view: WithdrawalView {
            id: LedgerId::from_uuid(row.get(0)),
            agent: AgentId::from_uuid(row.get(1)),
            network: row.get(2),
            token: parse(row.get(3))?,
            decimals: u8::try_from(row.get::<i16, _>(4))
                .map_err(|_| FacilitatorError::Inconsistent("stored decimals".into()))?,
            from: parse(row.get(5))?,
            to: parse(row.get(6))?,
            amount: Amount::parse_atomic(row.get(7))
                .map_err(|error| FacilitatorError::Inconsistent(error.to_string()))?,
            state: shown.to_owned(),
            tx_hash: tx_hash.as_deref().map(parse).transpose()?,
            error: error.or(transfer_error),
            created_at_unix: row.get(11),
        },
        owner: AccountId::from_uuid(row.get(15)),
        chain_id: u64::try_from(row.get::<i64, _>(16)).unwrap_or(0),
        nonce: parse(row.get(17))?,
        valid_before: u64::try_from(row.get::<i64, _>(18)).unwrap_or(0),
        state,
    })
}

impl Facilitator {
    /// The token withdrawals move on `chain`: its built-in USDC, else the development faucet's
    /// token; with its decimals.
    async fn withdrawal_token(&self, chain: &Chain) -> Result<(Address, u8), FacilitatorError> {
        let registry = awx_x402::TokenRegistry::builtin();
        if let Some(usdc) = registry.by_symbol(chain.chain_id, "USDC") {
            return Ok((usdc.address, usdc.decimals));
        }
        let Some(token) = chain.faucet_token else {
            return Err(rejected(
                codes::NETWORK_NOT_SUPPORTED,
                format!("{} has no USDC awx knows of", chain.network),
            ));
        };
        let decimals = chain
            .client
            .token(token)
            .decimals()
            .await
            .map_err(|error| FacilitatorError::Chain(error.to_string()))?;
        Ok((token, decimals))
    }

    /// Stores a withdrawal (once) and takes it as far as it goes now; see the module docs.
    pub async fn request_withdrawal(
        &self,
        command: &RequestWithdrawal,
    ) -> Result<WithdrawalView, FacilitatorError> {
        let chain = self.chain(&command.network).ok_or_else(|| {
            rejected(
                codes::NETWORK_NOT_SUPPORTED,
                format!("network {} is not served here", command.network),
            )
        })?;
        if command.amount.is_zero() {
            return Err(FacilitatorError::InvalidRequest(
                "a withdrawal moves a positive amount".into(),
            ));
        }
        if command.to == Address::ZERO || command.to == command.from {
            return Err(FacilitatorError::InvalidRequest(
                "a withdrawal goes to an outside address: not the zero address, not the agent's own wallet".into(),
            ));
        }
        let (token, decimals) = self.withdrawal_token(chain).await?;
        let valid_before =
            now_unix_seconds().saturating_add(self.settings.batch.authorization_ttl_seconds);
        let id = command.withdrawal_id.as_uuid();
        sqlx::query(
            "INSERT INTO settlement.withdrawals
               (id, owner, agent, network, chain_id, token, decimals, sender, recipient, amount, nonce, valid_before, state)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10::numeric, $11, $12, 'pending')
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(id)
        .bind(command.owner.as_uuid())
        .bind(command.agent.as_uuid())
        .bind(&command.network)
        .bind(i64::try_from(chain.chain_id).unwrap_or(i64::MAX))
        .bind(lower(token))
        .bind(i16::from(decimals))
        .bind(lower(command.from))
        .bind(lower(command.to))
        .bind(command.amount.to_string())
        .bind(format!("{:#x}", B256::random()))
        .bind(i64::try_from(valid_before).unwrap_or(i64::MAX))
        .execute(&self.pool)
        .await?;
        let stored = self.stored_withdrawal(id).await?.ok_or_else(|| {
            FacilitatorError::Inconsistent(format!("withdrawal {id} vanished after its insert"))
        })?;
        let same = stored.owner == command.owner
            && stored.view.agent == command.agent
            && stored.view.network == command.network
            && stored.view.from == command.from
            && stored.view.to == command.to
            && stored.view.amount == command.amount;
        if !same {
            return Err(rejected(
                codes::WITHDRAWAL_CONFLICT,
                format!(
                    "withdrawal {} was requested before with other contents",
                    command.withdrawal_id
                ),
            ));
        }
        self.continue_withdrawal(chain, stored).await
    }

    async fn stored_withdrawal(&self, id: Uuid) -> Result<Option<Stored>, FacilitatorError> {
        let sql = format!("SELECT {COLUMNS} FROM {FROM} WHERE w.id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id).fetch_optional(&self.pool).await?;
        row.as_ref().map(read).transpose()
    }

    /// Approves, holds and signs a `pending` withdrawal; a withdrawal past that answers as it is
    /// (a `rejected` one with its refusal).
    async fn continue_withdrawal(
        &self,
        chain: &Chain,
        stored: Stored,
    ) -> Result<WithdrawalView, FacilitatorError> {
        let id = stored.view.id.as_uuid();
        match stored.state.as_str() {
            "pending" => {}
            "rejected" => {
                let error = stored.view.error.clone().unwrap_or_default();
                let (code, message) = error.split_once(": ").unwrap_or(("invalid_request", &error));
                return Err(rejected(code, message));
            }
            _ => return Ok(stored.view),
        }
        let timeout = Duration::from_millis(self.settings.policy_timeout_ms);
        let authorization = stored.authorization();
        let decide = WithdrawDecide {
            withdrawal_id: stored.view.id,
            owner: stored.owner,
            agent: stored.view.agent,
            network: stored.view.network.clone(),
            token: stored.view.token,
            decimals: stored.view.decimals,
            authorization: authorization.clone(),
            hold_seconds: u32::try_from(
                self.settings.batch.authorization_ttl_seconds.saturating_add(HOLD_MARGIN_SECONDS),
            )
            .unwrap_or(u32::MAX),
        };
        let decision = match self.bus.send(&decide, timeout).await {
            Ok(decision) => decision,
            Err(BusError::Rejected { code, message }) => {
                self.reject_withdrawal(id, &code, &message).await?;
                return Err(rejected(&code, message));
            }
            Err(error) => return Err(FacilitatorError::PolicyUnavailable(error.to_string())),
        };
        let request = SignNetTransfer {
            transfer_id: id,
            kind: NetKind::Withdrawal,
            agent_id: stored.view.agent,
            chain_id: chain.chain_id,
            token: stored.view.token,
            token_name: decision.token_name,
            token_version: decision.token_version,
            authorization,
            payment_ids: vec![PaymentId::from_uuid(id)],
            decision: decision.decision,
        };
        let timeout = Duration::from_millis(self.settings.signer_timeout_ms);
        let signed = match self.bus.send(&request, timeout).await {
            Ok(signed) => signed,
            Err(BusError::Rejected { code, message }) => {
                // The signer will never sign it: release what the ledger holds.
                tracing::error!(withdrawal = %id, code = %code, error.message = %message, "the signer refused a withdrawal");
                let void = awx_api::ledger::Void { hold_id: stored.view.id };
                let ledger_timeout = Duration::from_millis(self.settings.ledger_timeout_ms);
                self.bus
                    .send(&void, ledger_timeout)
                    .await
                    .map_err(|error| FacilitatorError::Ledger(error.to_string()))?;
                self.reject_withdrawal(id, SIGNER_REFUSED, &message).await?;
                return Err(rejected(SIGNER_REFUSED, message));
            }
            Err(error) => return Err(FacilitatorError::Signer(error.to_string())),
        };
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO settlement.net_transfers
               (id, network, chain_id, token, kind, payer, payee, amount, nonce, valid_after, valid_before, signature, state)
             VALUES ($1, $2, $3, $4, 'withdrawal', $5, $6, $7::numeric, $8, 0, $9, $10, 'signed')
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(id)
        .bind(&stored.view.network)
        .bind(i64::try_from(stored.chain_id).unwrap_or(i64::MAX))
        .bind(lower(stored.view.token))
        .bind(lower(stored.view.from))
        .bind(lower(stored.view.to))
        .bind(stored.view.amount.to_string())
        .bind(format!("{:#x}", stored.nonce))
        .bind(i64::try_from(stored.valid_before).unwrap_or(i64::MAX))
        .bind(signed.signature.to_vec())
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE settlement.withdrawals SET state = 'signed', updated_at = now() WHERE id = $1 AND state = 'pending'",
        )
        .bind(id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        metrics::counter!("settlement_withdrawals_signed_total", "network" => stored.view.network.clone())
            .increment(1);
        tracing::info!(withdrawal = %id, agent = %stored.view.agent, to = %stored.view.to,
            amount = %stored.view.amount, "withdrawal signed; it goes in the chain's next batch");
        fail_point("withdrawal_after_sign").await;
        self.stored_withdrawal(id)
            .await?
            .map(|stored| stored.view)
            .ok_or_else(|| FacilitatorError::Inconsistent(format!("withdrawal {id} vanished")))
    }

    async fn reject_withdrawal(
        &self,
        id: Uuid,
        code: &str,
        message: &str,
    ) -> Result<(), FacilitatorError> {
        sqlx::query(
            "UPDATE settlement.withdrawals SET state = 'rejected', error = $2, updated_at = now()
             WHERE id = $1 AND state = 'pending'",
        )
        .bind(id)
        .bind(format!("{code}: {message}"))
        .execute(&self.pool)
        .await?;
        tracing::info!(withdrawal = %id, code, message, "withdrawal rejected; nothing is held");
        Ok(())
    }

    /// Takes `pending` withdrawals of `chain` older than `older_than` further (a crash between
    /// storing and signing); the count signed.
    pub async fn resume_withdrawals(
        &self,
        chain: &Chain,
        older_than: Duration,
    ) -> Result<usize, FacilitatorError> {
        let ids: Vec<Uuid> = sqlx::query_scalar(
            "SELECT id FROM settlement.withdrawals
             WHERE network = $1 AND state = 'pending' AND created_at < now() - $2 * interval '1 millisecond'
             ORDER BY id LIMIT 100",
        )
        .bind(chain.network.to_string())
        .bind(i64::try_from(older_than.as_millis()).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await?;
        let mut signed = 0;
        for id in ids {
            let Some(stored) = self.stored_withdrawal(id).await? else { continue };
            match self.continue_withdrawal(chain, stored).await {
                Ok(view) if view.state != "pending" => signed += 1,
                Ok(_) => {}
                Err(error) => {
                    tracing::warn!(withdrawal = %id, error.message = %error, "a pending withdrawal was not resumed")
                }
            }
        }
        Ok(signed)
    }

    /// One withdrawal of an agent.
    pub async fn get_withdrawal(
        &self,
        query: &GetWithdrawal,
    ) -> Result<Option<WithdrawalView>, FacilitatorError> {
        Ok(self
            .stored_withdrawal(query.withdrawal_id.as_uuid())
            .await?
            .filter(|stored| stored.owner == query.owner && stored.view.agent == query.agent)
            .map(|stored| stored.view))
    }

    /// An agent's withdrawals, newest first.
    pub async fn list_withdrawals(
        &self,
        query: &ListWithdrawals,
    ) -> Result<WithdrawalList, FacilitatorError> {
        let limit = i64::from(query.limit.clamp(1, 100));
        let sql = format!(
            "SELECT {COLUMNS} FROM {FROM}
             WHERE w.owner = $1 AND w.agent = $2 AND ($3::uuid IS NULL OR w.id < $3)
             ORDER BY w.id DESC LIMIT $4"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(query.owner.as_uuid())
            .bind(query.agent.as_uuid())
            .bind(query.starting_after.map(|id| id.as_uuid()))
            .bind(limit.saturating_add(1))
            .fetch_all(&self.pool)
            .await?;
        let has_more = i64::try_from(rows.len()).unwrap_or(i64::MAX) > limit;
        let withdrawals = rows
            .iter()
            .take(usize::try_from(limit).unwrap_or(100))
            .map(|row| read(row).map(|stored| stored.view))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(WithdrawalList { withdrawals, has_more })
    }

    /// The view of a withdrawal and its owner (for the confirmation event).
    pub(crate) async fn withdrawal_view(
        &self,
        id: Uuid,
    ) -> Result<Option<(AccountId, WithdrawalView)>, FacilitatorError> {
        Ok(self.stored_withdrawal(id).await?.map(|stored| (stored.owner, stored.view)))
    }
}
