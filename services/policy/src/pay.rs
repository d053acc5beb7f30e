//! The pay path: choose the offer, decide, reserve, hold, sign.
//!
//! 1. [`pay`] records the payment in one transaction: a payment already recorded (a retried
//!    command) is resumed; otherwise it locks the agent (which serialises its payments for the
//!    rolling 24 h limit), chooses the offer (the requested chain, else the session's, else the
//!    agent's default; scheme `exact`; a token the registry knows), evaluates the policy, locks
//!    the session and reserves its budget, and inserts the payment: `authorizing`, with its
//!    authorization's nonce and validity fixed (stored before anything is signed, so a retry
//!    signs the same one), or `pending_approval` above the approval threshold (fixed once
//!    approved).
//! 2. [`authorize`] has the ledger hold amount plus fee, mints a decision token binding the
//!    authorization, and has the signer sign; then, in the bus's transaction of the command
//!    (which commits with its stored reply), under the payment's lock, marks it `authorized`
//!    and moves its dollars from reserved to spent.
//!
//! So a payment paid at once is two transactions of the policy service's (the record, and the
//! bus's with the outcome) and two bus round trips (the ledger's hold and the signer's
//! signature, each applied in group commits there).
//!
//! Every failure after the reservation releases it, and releases the hold if one was asked for
//! ([`fail`]); a payment stuck in `authorizing` is released by the sweeper. Everything is
//! idempotent by the payment id: a retried command resumes where the payment is.

use awx_api::issued::IssuedNotice;
use awx_api::ledger::{Asset, Hold, Void};
use awx_api::policy::{Pay, PaymentView, codes};
use awx_api::signer::SignAuthorization;
use awx_decision::DecisionClaims;
use awx_policy_core::{ChoiceError, Decision, OfferView, PaymentRequest, choose_offer, evaluate};
use awx_types::{AccountId, AgentId, Amount, LedgerId, PaymentId, SessionId};
use awx_x402::{
    Address, B256, Bytes, Eip3009Authorization, Eip3009Payload, ExactEvmPayload, PaymentPayload,
    PaymentRequired, PaymentRequirements, TokenDomain, U256,
};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::engine::{Engine, now_unix};
use crate::error::{Failure, Upstream};
use crate::payments::{self, Payment};
use crate::{agents, sessions};

/// The offer chosen for a payment, with its token.
#[derive(Debug, Clone)]
pub(crate) struct Chosen {
    pub(crate) offer: PaymentRequirements,
    pub(crate) chain_id: u64,
    pub(crate) token: awx_x402::TokenInfo,
    pub(crate) pay_to: Address,
    pub(crate) amount: Amount,
    pub(crate) amount_usd: Amount,
    pub(crate) domain_name: String,
    pub(crate) domain_version: String,
}

/// The longest an authorization we sign stays valid, whatever the server allows.
const VALIDITY_SECONDS_MAX: u64 = 3_600;

fn payable(engine: &Engine, offer: &PaymentRequirements) -> bool {
    offer.exact_evm().is_ok_and(|exact| {
        engine.registry.by_address(exact.chain_id, exact.asset).is_some()
            && exact.amount > U256::ZERO
    })
}

/// Chooses the offer to pay on `chain`.
pub(crate) fn choose(
    engine: &Engine,
    challenge: &PaymentRequired,
    chain: &str,
) -> Result<Chosen, Failure> {
    let views: Vec<OfferView<'_>> = challenge
        .accepts
        .iter()
        .enumerate()
        .map(|(index, offer)| OfferView {
            index,
            scheme: &offer.scheme,
            network: &offer.network,
            payable: payable(engine, offer),
        })
        .collect();
    let index = choose_offer(&views, Some(chain)).map_err(|error| match error {
        ChoiceError::NoPayableOffer => Failure::reject(
            codes::NO_PAYABLE_OFFER,
            "the challenge has no offer the platform can pay (scheme exact, a token it knows, on an EVM chain)",
        ),
        ChoiceError::ChainNotOffered { .. } => Failure::reject(codes::CHAIN_NOT_OFFERED, error.to_string()),
    })?;
    let offer = challenge
        .accepts
        .get(index)
        .ok_or_else(|| Failure::internal("the chosen offer is out of range"))?
        .clone();
    let exact = offer.exact_evm().map_err(Failure::internal)?;
    let token = engine
        .registry
        .by_address(exact.chain_id, exact.asset)
        .ok_or_else(|| Failure::internal("the chosen offer's token is unknown"))?
        .clone();
    let amount = u128::try_from(exact.amount)
        .ok()
        .map(Amount::from_atomic)
        .filter(|amount| *amount <= Amount::api_max(token.decimals))
        .ok_or_else(|| {
            Failure::reject(
                codes::NO_PAYABLE_OFFER,
                format!(
                    "the offer's amount is above the most the platform pays ({} {})",
                    awx_types::API_WHOLE_UNITS_MAX,
                    token.symbol
                ),
            )
        })?;
    let amount_usd = awx_policy_core::usd_micros(amount, token.decimals)
        .map_err(|error| Failure::reject(codes::NO_PAYABLE_OFFER, error.to_string()))?;
    let (domain_name, domain_version) = exact.domain.as_ref().map_or_else(
        || (token.eip712_name.clone(), token.eip712_version.clone()),
        |domain| (domain.name.clone(), domain.version.clone()),
    );
    if offer.max_timeout_seconds == 0 {
        return Err(Failure::reject(
            codes::NO_PAYABLE_OFFER,
            "the offer's maxTimeoutSeconds is zero",
        ));
    }
    Ok(Chosen {
        chain_id: exact.chain_id,
        pay_to: exact.pay_to,
        offer,
        token,
        amount,
        amount_usd,
        domain_name,
        domain_version,
    })
}

/// The redirect hops of a payment, parsed like its target URL.
fn redirect_hops(command: &Pay) -> Result<Vec<url::Url>, Failure> {
    if command.redirect_hops.len() > awx_api::policy::REDIRECT_HOPS_MAX {
        return Err(Failure::invalid(format!(
            "redirect_hops: at most {} hops",
            awx_api::policy::REDIRECT_HOPS_MAX
        )));
    }
    command
        .redirect_hops
        .iter()
        .map(|hop| {
            awx_policy_core::parse_target(hop)
                .map_err(|error| Failure::invalid(format!("redirect_hops: {error}")))
        })
        .collect()
}

fn denied(denial: awx_policy_core::Denial) -> Failure {
    Failure::reject(denial.rule.as_str(), denial.message)
}

/// Pays a challenge (or resumes the payment, when the command is retried). `bus_tx` is the
/// bus's transaction of the command (its inbox row): the payment becomes `authorized` in it.
pub(crate) async fn pay(
    engine: &Engine,
    bus_tx: &mut PgConnection,
    command: &Pay,
) -> Result<PaymentView, Failure> {
    let id = command.payment_id.as_uuid();
    let owner = command.owner;
    let url = awx_policy_core::parse_target(&command.target_url)
        .map_err(|error| Failure::invalid(format!("target_url: {error}")))?;
    let hops = redirect_hops(command)?;

    // One transaction records the payment: a payment already recorded (a retried command) is
    // resumed; otherwise the agent is locked (which serialises its payments for the rolling
    // 24 h limit), the policy evaluated, the session's budget reserved, and the payment
    // inserted with its authorization's nonce and validity fixed.
    let mut tx = engine.pool.begin().await?;
    if let Some(existing) = payments::load(&mut tx, id, false).await? {
        tx.rollback().await?;
        return resume(engine, bus_tx, owner, existing).await;
    }
    let agent = agents::live(&mut tx, owner, command.agent_id, true).await?;
    let session = match command.session_id {
        Some(session_id) => {
            let session = sessions::load(&mut tx, owner, session_id, true).await?;
            if session.agent_id != agent.id {
                return Err(Failure::invalid(format!(
                    "session {session_id} belongs to another agent"
                )));
            }
            Some(session)
        }
        None => None,
    };
    let chain = command
        .chain
        .clone()
        .or_else(|| session.as_ref().map(|s| s.rules.chain.clone()))
        .unwrap_or_else(|| agent.default_chain.clone());
    let chosen = choose(engine, &command.challenge, &chain)?;
    let request = PaymentRequest {
        url: &url,
        chain: &chain,
        payee: chosen.pay_to,
        amount: chosen.amount_usd,
    };
    let now = now_unix();
    let rules = agent.rules(engine.settings.url_patterns_max)?;
    // The rolling 24 h sum is read only when a daily limit applies (it grows with the agent's
    // payment count).
    let spent = if rules.daily_limit.is_some() {
        payments::spent_24h(&mut tx, agent.id).await?
    } else {
        Amount::from_atomic(0)
    };
    // The challenge came from the last hop: every URL on the way must be one the agent (and
    // the session) may pay.
    let mut approval = false;
    for url in std::iter::once(&url).chain(&hops) {
        match evaluate(&rules, &PaymentRequest { url, ..request }, spent) {
            Decision::Allow => {}
            Decision::NeedsApproval => approval = true,
            Decision::Deny(denial) => return Err(denied(denial)),
        }
    }
    if let Some(mut session) = session {
        for url in std::iter::once(&url).chain(&hops) {
            session.rules.check(&PaymentRequest { url, ..request }, now).map_err(denied)?;
        }
        session.rules.reserve(chosen.amount_usd).map_err(denied)?;
        sessions::save_counters(&mut tx, &session).await?;
    }
    let (state, deadline_seconds) = if approval {
        ("pending_approval", engine.settings.approval_ttl_seconds)
    } else {
        ("authorizing", engine.settings.authorizing_timeout_seconds)
    };
    let max_timeout_seconds = chosen.offer.max_timeout_seconds.min(VALIDITY_SECONDS_MAX);
    // Paid now: the authorization is fixed before anything is signed, so a retry signs the same
    // one. Waiting for approval: fixed once approved (see `authorize`).
    let fixed = (!approval).then(|| {
        let (valid_after, valid_before) = validity(engine, now, max_timeout_seconds);
        (B256::random(), valid_after, valid_before)
    });
    // Inserted and read back in one statement; no row is the same command recorded meanwhile.
    let sql = format!(
        "INSERT INTO policy.payments (id, owner, agent_id, session_id, state, target_url, x402_version,
           network, chain_id, token, token_symbol, token_decimals, token_name, token_version, payer,
           pay_to, amount, amount_usd, offer, resource, max_timeout_seconds, deadline, nonce,
           valid_after, valid_before)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17::numeric,
           $18::numeric, $19, $20, $21, now() + make_interval(secs => $22), $23, $24, $25)
         ON CONFLICT (id) DO NOTHING RETURNING {}",
        payments::COLUMNS
    );
    let inserted = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .bind(owner.as_uuid())
        .bind(agent.id)
        .bind(command.session_id.map(|s| s.as_uuid()))
        .bind(state)
        .bind(url.as_str())
        .bind(i32::try_from(command.x402_version).map_err(Failure::internal)?)
        .bind(&chosen.offer.network)
        .bind(i64::try_from(chosen.chain_id).map_err(Failure::internal)?)
        .bind(lower(chosen.token.address))
        .bind(&chosen.token.symbol)
        .bind(i16::from(chosen.token.decimals))
        .bind(&chosen.domain_name)
        .bind(&chosen.domain_version)
        .bind(lower(agent.address))
        .bind(lower(chosen.pay_to))
        .bind(chosen.amount.to_string())
        .bind(awx_policy_core::format_usd(chosen.amount_usd))
        .bind(serde_json::to_value(&chosen.offer).map_err(Failure::internal)?)
        .bind(serde_json::to_value(&command.challenge.resource).map_err(Failure::internal)?)
        .bind(i64::try_from(max_timeout_seconds).map_err(Failure::internal)?)
        .bind(i64::try_from(deadline_seconds).map_err(Failure::internal)?)
        .bind(fixed.map(|(nonce, _, _)| nonce.to_vec()))
        .bind(fixed.map(|(_, valid_after, _)| valid_after))
        .bind(fixed.map(|(_, _, valid_before)| valid_before))
        .fetch_optional(&mut *tx)
        .await?;
    let Some(inserted) = inserted else {
        // The same command, running twice at once: the other one recorded it.
        tx.rollback().await?;
        let mut conn = engine.pool.acquire().await?;
        let existing = payments::load(&mut conn, id, false)
            .await?
            .ok_or_else(|| Failure::internal("a payment vanished"))?;
        drop(conn);
        return resume(engine, bus_tx, owner, existing).await;
    };
    let payment = payments::from_row(&inserted)?;
    tx.commit().await?;
    if approval {
        quote_fee(engine, id, owner).await;
        let mut conn = engine.pool.acquire().await?;
        let payment = payments::owned(&mut conn, owner, LedgerId::from_uuid(id), false).await?;
        return Ok(payment.view());
    }
    authorize_payment(engine, bus_tx, payment).await
}

/// `validAfter` (now less the allowed clock skew) and `validBefore` of an authorization fixed
/// at `now`, valid for `max_timeout_seconds`.
fn validity(engine: &Engine, now: i64, max_timeout_seconds: u64) -> (i64, i64) {
    let valid_before = now.saturating_add(i64::try_from(max_timeout_seconds).unwrap_or(i64::MAX));
    let valid_after = now
        .saturating_sub(i64::try_from(engine.settings.valid_after_skew_seconds).unwrap_or(0))
        .max(0);
    (valid_after, valid_before)
}

/// A retried command: carry on from the stored state.
async fn resume(
    engine: &Engine,
    bus_tx: &mut PgConnection,
    owner: AccountId,
    payment: Payment,
) -> Result<PaymentView, Failure> {
    if payment.owner != owner.as_uuid() {
        return Err(Failure::reject(codes::CONFLICT, "the payment id belongs to another account"));
    }
    if payment.state == "authorizing" {
        return authorize_payment(engine, bus_tx, payment).await;
    }
    answer(payment)
}

/// The answer for a payment that is not `authorizing`: a failed payment is its refusal again.
fn answer(payment: Payment) -> Result<PaymentView, Failure> {
    if let Some(code) = &payment.error_code
        && payment.state == "failed"
    {
        return Err(Failure::reject(code, payment.error_message.clone().unwrap_or_default()));
    }
    Ok(payment.view())
}

/// Records the fee a payment waiting for approval would pay at the account's current rate.
async fn quote_fee(engine: &Engine, id: Uuid, owner: AccountId) {
    let tiers =
        engine.bus.send(&awx_api::ledger::FeeTiers { owner }, engine.upstream_timeout()).await;
    let Ok(tiers) = tiers else { return };
    let mut conn = match engine.pool.acquire().await {
        Ok(conn) => conn,
        Err(_) => return,
    };
    let Ok(Some(payment)) = payments::load(&mut conn, id, false).await else { return };
    let Ok(fee) = awx_ledger_core::fees::fee(payment.amount, tiers.current_fee_rate) else {
        return;
    };
    let _ = sqlx::query("UPDATE policy.payments SET fee = $2::numeric, fee_rate = $3::numeric WHERE id = $1 AND fee IS NULL")
        .bind(id)
        .bind(fee.to_string())
        .bind(tiers.current_fee_rate.to_string())
        .execute(&mut *conn)
        .await;
}

fn lower(address: Address) -> String {
    address.to_string().to_lowercase()
}

/// Holds and signs the payment `id` if it is `authorizing`; see [`authorize_payment`].
pub(crate) async fn authorize(
    engine: &Engine,
    bus_tx: &mut PgConnection,
    id: Uuid,
) -> Result<PaymentView, Failure> {
    let mut conn = engine.pool.acquire().await?;
    let payment = payments::load(&mut conn, id, false)
        .await?
        .ok_or_else(|| Failure::internal("no such payment"))?;
    drop(conn);
    authorize_payment(engine, bus_tx, payment).await
}

/// Holds and signs `payment` if it is `authorizing`: the ledger holds amount plus fee, the
/// authorization is fixed (if it is not yet), a decision token binding it is minted and the
/// signer signs; then, in `bus_tx` (the bus's transaction of the command, which commits with
/// the stored reply), under the payment's lock, it becomes `authorized` and its dollars move
/// from reserved to spent.
async fn authorize_payment(
    engine: &Engine,
    bus_tx: &mut PgConnection,
    payment: Payment,
) -> Result<PaymentView, Failure> {
    let id = payment.id;
    if payment.state != "authorizing" {
        return Ok(payment.view());
    }
    let owner = AccountId::from_uuid(payment.owner);
    let agent_id = AgentId::from_uuid(payment.agent_id);
    let hold = Hold {
        payment_id: PaymentId::from_uuid(id),
        owner,
        agent: agent_id,
        asset: Asset {
            network: payment.network.clone(),
            token: payment.token,
            decimals: payment.token_decimals,
        },
        payee: payment.pay_to,
        amount: payment.amount,
        timeout_seconds: u32::try_from(
            payment.max_timeout_seconds.saturating_add(engine.settings.hold_margin_seconds),
        )
        .unwrap_or(u32::MAX),
    };
    let held = match engine.bus.send(&hold, engine.upstream_timeout()).await {
        Ok(held) => held,
        Err(error) => return fail(engine, id, &Upstream::from(error), Stage::Hold).await,
    };

    // Fix the authorization before anything is signed (a payment paid at once has it from its
    // insert; an approved one gets it now); a retry keeps the first one.
    let now = now_unix();
    let fixed: (Vec<u8>, i64, i64) =
        match (payment.nonce, payment.valid_after, payment.valid_before) {
            (Some(nonce), Some(valid_after), Some(valid_before)) => {
                (nonce.to_vec(), valid_after, valid_before)
            }
            _ => {
                let (valid_after, valid_before) =
                    validity(engine, now, payment.max_timeout_seconds);
                sqlx::query_as(
                    "UPDATE policy.payments SET fee = $2::numeric, fee_rate = $3::numeric,
                   nonce = coalesce(nonce, $4), valid_after = coalesce(valid_after, $5),
                   valid_before = coalesce(valid_before, $6), updated_at = now()
                 WHERE id = $1 RETURNING nonce, valid_after, valid_before",
                )
                .bind(id)
                .bind(held.fee.to_string())
                .bind(held.fee_rate.to_string())
                .bind(B256::random().as_slice())
                .bind(valid_after)
                .bind(valid_before)
                .fetch_one(&engine.pool)
                .await?
            }
        };
    let nonce = B256::try_from(fixed.0.as_slice()).map_err(Failure::internal)?;
    let authorization = Eip3009Authorization {
        from: payment.payer,
        to: payment.pay_to,
        value: U256::from(payment.amount.atomic()),
        valid_after: U256::from(u64::try_from(fixed.1).map_err(Failure::internal)?),
        valid_before: U256::from(u64::try_from(fixed.2).map_err(Failure::internal)?),
        nonce,
    };
    let domain = TokenDomain {
        name: payment.token_name.clone(),
        version: payment.token_version.clone(),
        chain_id: payment.chain_id,
        verifying_contract: payment.token,
    };
    let payment_id = PaymentId::from_uuid(id);
    let claims = DecisionClaims::new(
        &payment_id.to_string(),
        &agent_id.to_string(),
        now,
        engine.settings.decision_lifetime_seconds,
        payment.chain_id,
        &domain,
        &authorization,
    );
    let decision = engine.decision_key.sign(&claims).map_err(Failure::internal)?;
    let request = SignAuthorization {
        payment_id,
        agent_id,
        chain_id: payment.chain_id,
        token: payment.token,
        token_name: payment.token_name.clone(),
        token_version: payment.token_version.clone(),
        authorization: authorization.clone(),
        decision,
    };
    let signed = match engine.bus.send(&request, engine.upstream_timeout()).await {
        Ok(signed) => signed,
        Err(error) => return fail(engine, id, &Upstream::from(error), Stage::Sign).await,
    };
    let header = payment_header(&payment, &authorization, &signed.signature)?;

    // Authorized, in one statement, unless the sweeper released it while we were signing (then
    // the signature is never shown). The payment's row lock comes before the session's, as
    // everywhere.
    let expires =
        fixed.2.saturating_add(i64::try_from(engine.settings.expiry_grace_seconds).unwrap_or(0));
    let sql = format!(
        "UPDATE policy.payments SET state = 'authorized', signature = $2, payment_signature = $3,
           deadline = to_timestamp($4), fee = $5::numeric, fee_rate = $6::numeric,
           updated_at = now() WHERE id = $1 AND state = 'authorizing' RETURNING {}",
        payments::COLUMNS
    );
    let updated = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .bind(signed.signature.as_ref())
        .bind(&header)
        .bind(expires)
        .bind(held.fee.to_string())
        .bind(held.fee_rate.to_string())
        .fetch_optional(&mut *bus_tx)
        .await?;
    let Some(updated) = updated else {
        let payment = payments::load(bus_tx, id, false)
            .await?
            .ok_or_else(|| Failure::internal("no such payment"))?;
        return answer(payment);
    };
    let payment = payments::from_row(&updated)?;
    announce(engine, &payment);
    if let Some(session_id) = payment.session_id {
        let mut session =
            sessions::load(bus_tx, owner, SessionId::from_uuid(session_id), true).await?;
        session
            .rules
            .commit(payment.amount_usd)
            .map_err(|error| Failure::internal(format!("session {session_id}: {error}")))?;
        sessions::save_counters(bus_tx, &session).await?;
    }
    Ok(payment.view())
}

/// Tells every settlement replica the authorization just signed, so they verify it from memory
/// (`awx_api::issued`). A notice is a hint: it is sent without waiting, before the transaction
/// commits (a replica that hears of an authorization whose commit then fails has a signature
/// nobody was shown; settling it still asks us), and a replica that misses it asks us.
fn announce(engine: &Engine, payment: &Payment) {
    let Some(issued) = payment.issued() else { return };
    let bus = engine.bus.clone();
    tokio::spawn(async move {
        if let Err(error) = bus.notify(&IssuedNotice::Issued(issued)).await {
            tracing::debug!(error.message = %error, "an issued authorization was not announced");
        }
    });
}

/// The `PAYMENT-SIGNATURE` (v2) or `X-PAYMENT` (v1) value of a signed authorization.
pub(crate) fn payment_header(
    payment: &Payment,
    authorization: &Eip3009Authorization,
    signature: &Bytes,
) -> Result<String, Failure> {
    let body = ExactEvmPayload::Eip3009(Eip3009Payload {
        signature: signature.clone(),
        authorization: authorization.clone(),
    })
    .to_json();
    let encoded = if payment.x402_version == 1 {
        let network = awx_x402::Network::parse_caip2(&payment.network)
            .ok()
            .and_then(|network| network.v1_name())
            .map_or_else(|| payment.network.clone(), str::to_owned);
        awx_x402::header::encode(&awx_x402::v1::PaymentPayloadV1 {
            x402_version: 1,
            scheme: payment.offer.scheme.clone(),
            network,
            payload: body,
            other: Default::default(),
        })
    } else {
        awx_x402::header::encode(&PaymentPayload {
            x402_version: 2,
            resource: payment.resource.clone(),
            accepted: payment.offer.clone(),
            payload: body,
            extensions: None,
            other: Default::default(),
        })
    };
    encoded.map_err(Failure::internal)
}

/// Where the pay path failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Hold,
    Sign,
}

/// Fails a payment after its reservation: releases the hold (if one may exist) and the
/// reservation, records why, and answers the refusal.
async fn fail(
    engine: &Engine,
    id: Uuid,
    upstream: &Upstream,
    stage: Stage,
) -> Result<PaymentView, Failure> {
    let (code, message) = match (stage, upstream) {
        (Stage::Hold, Upstream::Refused { code, message })
            if code == awx_api::ledger::codes::INSUFFICIENT_FUNDS =>
        {
            (
                codes::INSUFFICIENT_FUNDS,
                format!("the agent's wallet cannot cover the payment and its fee: {message}"),
            )
        }
        (Stage::Hold, Upstream::Refused { code, message }) => {
            (codes::INVALID_REQUEST, format!("the ledger refused the hold ({code}): {message}"))
        }
        (Stage::Hold, Upstream::Unavailable(error)) => (
            codes::LEDGER_UNAVAILABLE,
            format!("the ledger did not answer; nothing is reserved ({error})"),
        ),
        (Stage::Sign, Upstream::Unavailable(error)) => (
            codes::SIGNER_UNAVAILABLE,
            format!("the signer did not answer; nothing is reserved ({error})"),
        ),
        (Stage::Sign, Upstream::Refused { code, message }) => {
            tracing::error!(code = %code, error.message = %message, "the signer refused a payment the policy decided");
            (codes::SIGNER_REFUSED, format!("the signer refused the payment ({code}): {message}"))
        }
    };
    // A hold may exist unless the ledger said plainly it did not make one. The state changes
    // first (so nothing else can complete the payment), then the hold is released.
    let hold_may_exist = !matches!((stage, upstream), (Stage::Hold, Upstream::Refused { .. }));
    let mut tx = engine.pool.begin().await?;
    let mut payment = payments::load(&mut tx, id, true)
        .await?
        .ok_or_else(|| Failure::internal("no such payment"))?;
    if payment.state != "authorizing" {
        tx.commit().await?;
        return answer(payment);
    }
    payments::release(&mut tx, &mut payment, "failed", Some((code, &message)), hold_may_exist)
        .await?;
    tx.commit().await?;
    if hold_may_exist && void_hold(engine, id).await {
        sqlx::query("UPDATE policy.payments SET void_needed = false WHERE id = $1")
            .bind(id)
            .execute(&engine.pool)
            .await?;
    }
    Err(Failure::reject(code, message))
}

/// Releases a payment's hold; true when it is gone (released now, or never made, or already
/// released or expired).
pub(crate) async fn void_hold(engine: &Engine, id: Uuid) -> bool {
    match engine
        .bus
        .send(&Void { hold_id: LedgerId::from_uuid(id) }, engine.upstream_timeout())
        .await
    {
        Ok(_) => true,
        Err(awx_bus::BusError::Rejected { code, .. }) => {
            code == awx_api::ledger::codes::HOLD_NOT_FOUND
                || code == awx_api::ledger::codes::HOLD_NOT_PENDING
        }
        Err(error) => {
            tracing::warn!(error.message = %error, payment = %id, "could not release a hold yet; the sweeper will retry");
            false
        }
    }
}
