//! Payments as stored, how the API shows them, and the one way a payment gives back what it
//! reserved ([`release`]).
//!
//! States: `pending_approval` → `authorizing` → `authorized` → `captured` (→ `settled`), or
//! `failed`, `rejected`, `expired`. While `counts` is true the payment's dollars count in its
//! session (`reserved` before it is signed, `spent` after) and in the agent's rolling 24 hours.

use awx_api::policy::{PaymentError, PaymentView, codes};
use awx_ledger_core::fees::format_rate;
use awx_types::{AccountId, AgentId, Amount, LedgerId, SessionId};
use awx_x402::{Address, B256, PaymentRequirements, ResourceInfo, U256};
use rust_decimal::Decimal;
use sqlx::Row as _;
use uuid::Uuid;

use crate::error::Failure;
use crate::sessions;

/// A payment as stored.
#[derive(Debug, Clone)]
pub(crate) struct Payment {
    pub(crate) id: Uuid,
    pub(crate) owner: Uuid,
    pub(crate) agent_id: Uuid,
    pub(crate) session_id: Option<Uuid>,
    pub(crate) state: String,
    pub(crate) counts: bool,
    pub(crate) target_url: String,
    pub(crate) x402_version: u32,
    pub(crate) network: String,
    pub(crate) chain_id: u64,
    pub(crate) token: Address,
    pub(crate) token_symbol: String,
    pub(crate) token_decimals: u8,
    pub(crate) token_name: String,
    pub(crate) token_version: String,
    pub(crate) payer: Address,
    pub(crate) pay_to: Address,
    pub(crate) amount: Amount,
    pub(crate) amount_usd: Amount,
    pub(crate) fee: Option<Amount>,
    pub(crate) fee_rate: Option<Decimal>,
    pub(crate) offer: PaymentRequirements,
    pub(crate) resource: Option<ResourceInfo>,
    pub(crate) max_timeout_seconds: u64,
    pub(crate) nonce: Option<B256>,
    pub(crate) valid_after: Option<i64>,
    pub(crate) valid_before: Option<i64>,
    pub(crate) signature: Option<Vec<u8>>,
    pub(crate) payment_signature: Option<String>,
    pub(crate) error_code: Option<String>,
    pub(crate) error_message: Option<String>,
    pub(crate) created_at_unix: i64,
}

impl Payment {
    /// The authorization the signer made for this payment, once it has one.
    pub(crate) fn issued(&self) -> Option<awx_api::issued::IssuedAuthorization> {
        let seconds = |unix: Option<i64>| unix.and_then(|v| u64::try_from(v).ok()).map(U256::from);
        Some(awx_api::issued::IssuedAuthorization {
            payment_id: LedgerId::from_uuid(self.id),
            network: self.network.clone(),
            token: self.token,
            authorization: awx_x402::Eip3009Authorization {
                from: self.payer,
                to: self.pay_to,
                value: U256::from(self.amount.atomic()),
                valid_after: seconds(self.valid_after)?,
                valid_before: seconds(self.valid_before)?,
                nonce: self.nonce?,
            },
            signature: awx_x402::Bytes::copy_from_slice(self.signature.as_deref()?),
        })
    }
}

/// States whose dollars are reserved in the session.
pub(crate) fn is_reserved_state(state: &str) -> bool {
    matches!(state, "pending_approval" | "authorizing")
}

/// States whose dollars are spent in the session.
pub(crate) fn is_spent_state(state: &str) -> bool {
    matches!(state, "authorized" | "captured" | "settled")
}

/// The columns [`from_row`] reads (a `SELECT` list, or a `RETURNING` one).
pub(crate) const COLUMNS: &str = "id, owner, agent_id, session_id, state, counts, target_url, x402_version,
    network, chain_id, token, token_symbol, token_decimals, token_name, token_version, payer, pay_to,
    amount::text, amount_usd::text, fee::text, fee_rate::text, offer, resource, max_timeout_seconds,
    nonce, valid_after, valid_before, signature, payment_signature, error_code, error_message,
    extract(epoch FROM created_at)::bigint";

fn parse<T: std::str::FromStr>(text: &str, what: &str) -> Result<T, Failure>
where
    T::Err: std::fmt::Display,
{
    text.parse().map_err(|error| Failure::internal(format!("stored {what} {text:?}: {error}")))
}

/// A payment from a row of [`COLUMNS`].
pub(crate) fn from_row(row: &sqlx::postgres::PgRow) -> Result<Payment, Failure> {
    let text = |index: usize| -> String { row.get(index) };
    let opt_text = |index: usize| -> Option<String> { row.get(index) };
    let offer: serde_json::Value = row.get(21);
    let resource: Option<serde_json::Value> = row.get(22);
    let nonce: Option<Vec<u8>> = row.get(24);
    Ok(Payment {
        id: row.get(0),
        owner: row.get(1),
        agent_id: row.get(2),
        session_id: row.get(3),
        state: text(4),
        counts: row.get(5),
        target_url: text(6),
        x402_version: u32::try_from(row.get::<i32, _>(7)).map_err(Failure::internal)?,
        network: text(8),
        chain_id: u64::try_from(row.get::<i64, _>(9)).map_err(Failure::internal)?,
        token: parse(&text(10), "token")?,
        token_symbol: text(11),
        token_decimals: u8::try_from(row.get::<i16, _>(12)).map_err(Failure::internal)?,
        token_name: text(13),
        token_version: text(14),
        payer: parse(&text(15), "payer")?,
        pay_to: parse(&text(16), "pay_to")?,
        amount: Amount::parse_atomic(&text(17)).map_err(Failure::internal)?,
        amount_usd: Amount::from_decimal_str(&text(18), 6).map_err(Failure::internal)?,
        fee: opt_text(19)
            .map(|fee| Amount::parse_atomic(&fee).map_err(Failure::internal))
            .transpose()?,
        fee_rate: opt_text(20).map(|rate| parse::<Decimal>(&rate, "fee rate")).transpose()?,
        offer: serde_json::from_value(offer).map_err(Failure::internal)?,
        resource: resource.map(serde_json::from_value).transpose().map_err(Failure::internal)?,
        max_timeout_seconds: u64::try_from(row.get::<i64, _>(23)).map_err(Failure::internal)?,
        nonce: nonce
            .map(|bytes| B256::try_from(bytes.as_slice()).map_err(Failure::internal))
            .transpose()?,
        valid_after: row.get(25),
        valid_before: row.get(26),
        signature: row.get(27),
        payment_signature: row.get(28),
        error_code: row.get(29),
        error_message: row.get(30),
        created_at_unix: row.get(31),
    })
}

/// The payment `id`, whoever owns it; `lock` takes its row lock.
pub(crate) async fn load(
    conn: &mut sqlx::PgConnection,
    id: Uuid,
    lock: bool,
) -> Result<Option<Payment>, Failure> {
    let sql = format!(
        "SELECT {COLUMNS} FROM policy.payments WHERE id = $1{}",
        if lock { " FOR UPDATE" } else { "" }
    );
    let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id).fetch_optional(&mut *conn).await?;
    row.as_ref().map(from_row).transpose()
}

/// The payment `id` of `owner`, or `payment_not_found`.
pub(crate) async fn owned(
    conn: &mut sqlx::PgConnection,
    owner: AccountId,
    id: LedgerId,
    lock: bool,
) -> Result<Payment, Failure> {
    match load(conn, id.as_uuid(), lock).await? {
        Some(payment) if payment.owner == owner.as_uuid() => Ok(payment),
        _ => Err(Failure::reject(codes::PAYMENT_NOT_FOUND, format!("no payment {id}"))),
    }
}

/// The payment made with `nonce` from the wallet `payer`, if any.
pub(crate) async fn by_payer_nonce(
    conn: &mut sqlx::PgConnection,
    payer: Address,
    nonce: B256,
    lock: bool,
) -> Result<Option<Payment>, Failure> {
    let sql = format!(
        "SELECT {COLUMNS} FROM policy.payments WHERE payer = $1 AND nonce = $2{}",
        if lock { " FOR UPDATE" } else { "" }
    );
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(payer.to_string().to_lowercase())
        .bind(nonce.as_slice())
        .fetch_optional(&mut *conn)
        .await?;
    row.as_ref().map(from_row).transpose()
}

impl Payment {
    /// The API's view.
    pub(crate) fn view(&self) -> PaymentView {
        let status = match self.state.as_str() {
            "authorized" | "captured" | "settled" => "completed",
            "pending_approval" | "authorizing" => "pending",
            _ => "failed",
        };
        let show = |amount: Amount| {
            amount.to_decimal_string(self.token_decimals).unwrap_or_else(|_| amount.to_string())
        };
        PaymentView {
            ledger_id: LedgerId::from_uuid(self.id),
            agent_id: AgentId::from_uuid(self.agent_id),
            session_id: self.session_id.map(SessionId::from_uuid),
            status: status.to_owned(),
            state: self.state.clone(),
            amount: show(self.amount),
            fee_amount: show(self.fee.unwrap_or(Amount::from_atomic(0))),
            fee_rate: self.fee_rate.map_or_else(|| "0.0".to_owned(), format_rate),
            token: self.token_symbol.clone(),
            chain: self.network.clone(),
            pay_to: self.pay_to,
            target_url: self.target_url.clone(),
            payment_signature: if status == "completed" {
                self.payment_signature.clone()
            } else {
                None
            },
            x402_version: self.x402_version,
            valid_before_unix: self.valid_before,
            error: self.error_code.clone().map(|code| PaymentError {
                code,
                message: self.error_message.clone().unwrap_or_default(),
            }),
            created_at_unix: self.created_at_unix,
        }
    }
}

/// Moves a payment (whose row lock `conn`'s transaction holds) to a final state that holds
/// nothing (`failed`, `rejected`, `expired`), giving its dollars back to its session.
pub(crate) async fn release(
    conn: &mut sqlx::PgConnection,
    payment: &mut Payment,
    state: &str,
    error: Option<(&str, &str)>,
    void_needed: bool,
) -> Result<(), Failure> {
    if payment.counts
        && let Some(session_id) = payment.session_id
    {
        let mut session = sessions::load(
            conn,
            AccountId::from_uuid(payment.owner),
            SessionId::from_uuid(session_id),
            true,
        )
        .await?;
        let out_of_step = |error: &dyn std::fmt::Display| {
            Failure::internal(format!("session {session_id} counters out of step: {error}"))
        };
        if is_reserved_state(&payment.state) {
            session.rules.release(payment.amount_usd).map_err(|error| out_of_step(&error))?;
        } else if is_spent_state(&payment.state) {
            // An authorization never captured: nothing was paid after all.
            session.rules.spent = session
                .rules
                .spent
                .checked_sub(payment.amount_usd)
                .map_err(|error| out_of_step(&error))?;
        }
        sessions::save_counters(conn, &session).await?;
    }
    sqlx::query(
        "UPDATE policy.payments SET state = $2, counts = false, error_code = coalesce($3, error_code),
           error_message = coalesce($4, error_message), void_needed = $5, updated_at = now()
         WHERE id = $1",
    )
    .bind(payment.id)
    .bind(state)
    .bind(error.map(|(code, _)| code))
    .bind(error.map(|(_, message)| message))
    .bind(void_needed)
    .execute(&mut *conn)
    .await?;
    payment.state = state.to_owned();
    payment.counts = false;
    if let Some((code, message)) = error {
        payment.error_code = Some(code.to_owned());
        payment.error_message = Some(message.to_owned());
    }
    Ok(())
}

/// The dollars the agent's payments count in the last 24 hours.
pub(crate) async fn spent_24h(
    conn: &mut sqlx::PgConnection,
    agent: Uuid,
) -> Result<Amount, Failure> {
    let total: String = sqlx::query_scalar(
        "SELECT coalesce(sum(amount_usd), 0)::numeric(30, 6)::text FROM policy.payments
         WHERE agent_id = $1 AND counts AND created_at > now() - interval '24 hours'",
    )
    .bind(agent)
    .fetch_one(&mut *conn)
    .await?;
    Amount::from_decimal_str(&total, 6).map_err(Failure::internal)
}
