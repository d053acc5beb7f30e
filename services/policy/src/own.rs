//! The facilitator's questions about payments our own agents made.
//!
//! When `from` is one of our agents' wallets, the policy service answers instead of the chain:
//! verify checks that this exact authorization (every field, and the signature bytes) is one we
//! issued and that its hold is still in place, with no chain call; settle captures the hold in
//! the ledger (the agent's hold becomes the provider's payable, the fee the platform's revenue)
//! and reports the capture, which the settlement service queues for net settlement on chain.
//! Settling again returns the same answer; verifying a captured payment answers that its nonce is
//! used, as the chain would.

use awx_api::issued::{IssuedState, verify_issued};
use awx_api::ledger::Capture;
use awx_api::policy::{
    Captured, OwnAction, OwnPayment, OwnPaymentReply, OwnVerify, PaymentCaptured,
};
use awx_types::{Amount, LedgerId};
use awx_x402::{
    ErrorReason, ExactEvmPayload, PaymentPayload, PaymentRequirements, SettleFailure,
    SettleResponse, VerifyResponse,
};

use crate::agents;
use crate::engine::{Engine, now_unix};
use crate::error::Failure;
use crate::payments::{self, Payment};

fn invalid(reason: ErrorReason, message: impl Into<String>, payer: &str) -> Box<VerifyResponse> {
    Box::new(VerifyResponse::invalid(reason, message, Some(payer.to_owned())))
}

fn answer(
    action: OwnAction,
    verdict: Result<(), Box<VerifyResponse>>,
    payment: &Payment,
) -> OwnPaymentReply {
    let payer = payment.payer.to_checksum(None);
    match (action, verdict) {
        (OwnAction::Verify, Ok(())) => {
            OwnPaymentReply::Verified { response: VerifyResponse::valid(payer) }
        }
        (OwnAction::Verify, Err(response)) => OwnPaymentReply::Verified { response: *response },
        (OwnAction::Settle, Ok(())) => OwnPaymentReply::Settled {
            response: SettleResponse::settled("", payment.network.clone(), payer),
            captured: None,
            replay: false,
        },
        (OwnAction::Settle, Err(response)) => OwnPaymentReply::Settled {
            response: SettleResponse::failed(SettleFailure {
                reason: response.invalid_reason.unwrap_or(ErrorReason::UnexpectedSettleError),
                message: response.invalid_message.unwrap_or_default(),
                payer: Some(payer),
                transaction: String::new(),
                network: payment.network.clone(),
            }),
            captured: None,
            replay: false,
        },
    }
}

/// The capture facts of a captured payment.
pub(crate) fn captured(payment: &Payment, captured_at_unix: i64) -> Result<Captured, Failure> {
    Ok(Captured {
        ledger_id: LedgerId::from_uuid(payment.id),
        network: payment.network.clone(),
        token: payment.token,
        payer: payment.payer,
        payee: payment.pay_to,
        amount: payment.amount.to_string(),
        valid_before_unix: payment
            .valid_before
            .ok_or_else(|| Failure::internal("a captured payment has no validBefore"))?,
        nonce: payment.nonce.ok_or_else(|| Failure::internal("a captured payment has no nonce"))?,
        captured_at_unix,
        fee: payment.fee.unwrap_or(Amount::ZERO).to_string(),
    })
}

/// Checks the payment against what we issued; `Ok` when it is ours and held. The settlement
/// service answers from its memory of the same facts with the same function.
fn check(
    payload: &PaymentPayload,
    requirements: &PaymentRequirements,
    payment: &Payment,
    eip3009: &awx_x402::Eip3009Payload,
) -> Result<(), Box<VerifyResponse>> {
    let Some(issued) = payment.issued() else {
        // Not signed: nothing awx issued can match it.
        return Err(invalid(
            ErrorReason::InvalidExactEvmSignature,
            "this authorization is not the one awx issued for the payer's nonce",
            &payment.payer.to_checksum(None),
        ));
    };
    let state = match payment.state.as_str() {
        "authorized" => IssuedState::Held,
        "captured" | "settled" => IssuedState::Used,
        "expired" => IssuedState::Expired,
        other => IssuedState::Other(other),
    };
    let now = u64::try_from(now_unix()).unwrap_or(0);
    let response = verify_issued(payload, requirements, eip3009, &issued, state, now);
    if response.is_valid { Ok(()) } else { Err(Box::new(response)) }
}

/// Verifies a payment whose payer may be one of our wallets, reading only: the payment issued
/// for (payer, nonce) first (one indexed read; only our agents have payments), and only when
/// there is none, whether the payer is one of our wallets at all.
pub(crate) async fn own_verify(
    engine: &Engine,
    query: &OwnVerify,
) -> Result<OwnPaymentReply, Failure> {
    let Ok(ExactEvmPayload::Eip3009(eip3009)) = ExactEvmPayload::from_json(&query.payload.payload)
    else {
        return Ok(OwnPaymentReply::NotOurs);
    };
    let from = eip3009.authorization.from;
    let mut conn = engine.pool.acquire().await?;
    let found =
        payments::by_payer_nonce(&mut conn, from, eip3009.authorization.nonce, false).await?;
    drop(conn);
    let Some(payment) = found else {
        if agents::by_address(engine, from).await?.is_none() {
            return Ok(OwnPaymentReply::NotOurs);
        }
        let response = invalid(
            ErrorReason::InvalidExactEvmSignature,
            "the payer is an awx wallet and awx issued no authorization with this nonce",
            &from.to_checksum(None),
        );
        return Ok(OwnPaymentReply::Verified { response: *response });
    };
    let verdict = check(&query.payload, &query.requirements, &payment, &eip3009);
    Ok(answer(OwnAction::Verify, verdict, &payment))
}

/// Answers the facilitator about a payment whose payer may be one of our wallets, in `tx`: the
/// bus's transaction of the command, which commits with the stored reply (so a capture, its
/// state change and its `payment.captured` event are one with the answer). The payment issued
/// for (payer, nonce) is read first (locked for a settle); only when there is none, whether the
/// payer is one of our wallets at all.
pub(crate) async fn own_payment(
    engine: &Engine,
    tx: &mut sqlx::PgConnection,
    command: &OwnPayment,
) -> Result<OwnPaymentReply, Failure> {
    let Ok(ExactEvmPayload::Eip3009(eip3009)) =
        ExactEvmPayload::from_json(&command.payload.payload)
    else {
        return Ok(OwnPaymentReply::NotOurs);
    };
    let from = eip3009.authorization.from;
    let payer = from.to_checksum(None);
    let lock = command.action == OwnAction::Settle;
    let Some(mut payment) =
        payments::by_payer_nonce(&mut *tx, from, eip3009.authorization.nonce, lock).await?
    else {
        if agents::by_address(engine, from).await?.is_none() {
            return Ok(OwnPaymentReply::NotOurs);
        }
        let response = invalid(
            ErrorReason::InvalidExactEvmSignature,
            "the payer is an awx wallet and awx issued no authorization with this nonce",
            &payer,
        );
        return Ok(match command.action {
            OwnAction::Verify => OwnPaymentReply::Verified { response: *response },
            OwnAction::Settle => OwnPaymentReply::Settled {
                response: SettleResponse::failed(SettleFailure {
                    reason: ErrorReason::InvalidExactEvmSignature,
                    message: response.invalid_message.unwrap_or_default(),
                    payer: Some(payer),
                    transaction: String::new(),
                    network: command.requirements.network.clone(),
                }),
                captured: None,
                replay: false,
            },
        });
    };
    if command.action == OwnAction::Settle
        && matches!(payment.state.as_str(), "captured" | "settled")
    {
        // Settled before: the same answer, so a retried settle is harmless.
        let at: i64 = sqlx::query_scalar(
            "SELECT extract(epoch FROM captured_at)::bigint FROM policy.payments WHERE id = $1",
        )
        .bind(payment.id)
        .fetch_one(&mut *tx)
        .await?;
        let facts = captured(&payment, at)?;
        return Ok(OwnPaymentReply::Settled {
            response: SettleResponse::settled("", payment.network.clone(), payer),
            captured: Some(facts),
            replay: true,
        });
    }
    let verdict = check(&command.payload, &command.requirements, &payment, &eip3009);
    if command.action == OwnAction::Verify || verdict.is_err() {
        return Ok(answer(command.action, verdict, &payment));
    }
    // Settle: capture the hold in full, under the payment's lock.
    let capture = Capture { hold_id: LedgerId::from_uuid(payment.id), amount: None };
    match engine.bus.send(&capture, engine.upstream_timeout()).await {
        Ok(_) => {}
        Err(awx_bus::BusError::Rejected { code, message }) => {
            tracing::warn!(code = %code, error.message = %message, payment = %payment.id, "the ledger refused a capture");
            if code == awx_api::ledger::codes::HOLD_NOT_PENDING {
                payments::release(
                    &mut *tx,
                    &mut payment,
                    "expired",
                    Some((code.as_str(), message.as_str())),
                    false,
                )
                .await?;
            }
            return Ok(answer(
                OwnAction::Settle,
                Err(invalid(
                    ErrorReason::InvalidTransactionState,
                    format!("the hold could not be captured: {message}"),
                    &payer,
                )),
                &payment,
            ));
        }
        Err(error) => {
            return Err(Failure::Internal(format!("the ledger did not capture in time: {error}")));
        }
    }
    let at: i64 = sqlx::query_scalar(
        "UPDATE policy.payments SET state = 'captured', provider = $2, captured_at = now(), updated_at = now()
         WHERE id = $1 RETURNING extract(epoch FROM captured_at)::bigint",
    )
    .bind(payment.id)
    .bind(command.provider.as_uuid())
    .fetch_one(&mut *tx)
    .await?;
    payment.state = "captured".into();
    let facts = captured(&payment, at)?;
    // The settlement item follows from this event even if this answer is lost.
    let event = PaymentCaptured { provider: Some(command.provider), captured: facts.clone() };
    awx_bus::publish(&mut *tx, engine.bus.schema(), &event)
        .await
        .map_err(|error| Failure::internal(format!("writing the outbox: {error}")))?;
    Ok(OwnPaymentReply::Settled {
        response: SettleResponse::settled("", payment.network.clone(), payer),
        captured: Some(facts),
        replay: false,
    })
}
