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

use crate::facilitator::{Facilitator, FacilitatorError};
use crate::own::insert_item;

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
        let mut conn = self.pool.acquire().await?;
        let inserted =
            insert_item(&mut conn, None, &command.captured, Some(command.tx_hash)).await?;
        if inserted {
            tracing::info!(payment = %command.captured.ledger_id, tx_hash = %command.tx_hash, "a payment was settled on chain outside awx");
        }
        Ok(ExternalRecorded { inserted })
    }
}
