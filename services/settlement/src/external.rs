//! Authorizations of our agents used on chain by someone else.
//!
//! Most x402 APIs settle through other facilitators, which submit the agent's authorization on
//! chain without telling awx. The policy service must not give such a payment's funds back when
//! it expires, so before releasing an expired authorization it asks here
//! ([`Facilitator::authorization_state`]): `authorizationState(payer, nonce)` on chain, and the
//! transaction of its `AuthorizationUsed` log. A used one is captured by the policy service and
//! recorded here ([`Facilitator::record_external`]) as an item `settled_externally` by that
//! transaction: the batch worker posts its payout in the ledger and collects its fee, and never
//! nets it.

use awx_api::facilitator::{
    AuthorizationState, AuthorizationStatus, ExternalRecorded, RecordExternal,
};
use awx_types::Amount;

use crate::facilitator::{Facilitator, FacilitatorError};
use crate::settle::lower;

impl Facilitator {
    /// Whether the authorization is used on chain, and by which transaction.
    pub async fn authorization_state(
        &self,
        query: &AuthorizationState,
    ) -> Result<AuthorizationStatus, FacilitatorError> {
        let chain = self.chain(&query.network).ok_or_else(|| {
            FacilitatorError::Chain(format!("network {} is not served here", query.network))
        })?;
        let chain_error = |error: awx_chain::ChainError| FacilitatorError::Chain(error.to_string());
        let used = chain
            .client
            .token(query.token)
            .authorization_state(query.payer, query.nonce)
            .await
            .map_err(chain_error)?;
        let tx_hash = if used {
            chain
                .client
                .authorization_used_tx(query.token, query.payer, query.nonce, 0)
                .await
                .map_err(chain_error)?
        } else {
            None
        };
        Ok(AuthorizationStatus { used, tx_hash })
    }

    /// Queues a payment paid on chain by someone else as `settled_externally` (once).
    pub async fn record_external(
        &self,
        command: &RecordExternal,
    ) -> Result<ExternalRecorded, FacilitatorError> {
        let captured = &command.captured;
        let parse = |text: &str, what: &str| {
            Amount::parse_atomic(text).map_err(|error| {
                FacilitatorError::InvalidRequest(format!("{what} {text:?}: {error}"))
            })
        };
        let amount = parse(&captured.amount, "amount")?;
        let fee = parse(&captured.fee, "fee")?;
        if amount.is_zero() {
            return Err(FacilitatorError::InvalidRequest(
                "a payment moves a positive amount".into(),
            ));
        }
        let inserted = sqlx::query(
            "INSERT INTO settlement.items
               (payment_id, network, token, payer, payee, amount, valid_before, nonce, captured_at, provider, fee,
                state, settled_tx, settled_at)
             VALUES ($1, $2, $3, $4, $5, $6::numeric, $7, $8, 'epoch'::timestamptz + $9 * interval '1 second', NULL,
                     $10::numeric, 'settled_externally', $11, now())
             ON CONFLICT DO NOTHING",
        )
        .bind(captured.ledger_id.as_uuid())
        .bind(&captured.network)
        .bind(lower(captured.token))
        .bind(lower(captured.payer))
        .bind(lower(captured.payee))
        .bind(amount.to_string())
        .bind(captured.valid_before_unix)
        .bind(format!("{:#x}", captured.nonce))
        .bind(captured.captured_at_unix)
        .bind(fee.to_string())
        .bind(format!("{:#x}", command.tx_hash))
        .execute(&self.pool)
        .await?;
        if inserted.rows_affected() > 0 {
            tracing::info!(payment = %captured.ledger_id, tx_hash = %command.tx_hash, "a payment was settled on chain outside awx");
        }
        Ok(ExternalRecorded { inserted: inserted.rows_affected() > 0 })
    }
}
