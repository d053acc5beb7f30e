//! The chain watcher's questions: which addresses are agents' wallets, and what to do when an
//! agent's authorization was used on chain by a transaction awx did not send.
//!
//! An authorization used elsewhere is matched to its payment by (payer, nonce) and handled under
//! the payment's row lock: an `authorized` payment is captured as paid by that transaction (the
//! same path as an expired authorization found used, [`crate::expiry::capture_paid_elsewhere`]);
//! a `captured` or `settled` one is only recorded as settled externally (the settlement service
//! makes that idempotent, so its net settlement never pays it twice). A nonce awx never issued
//! for that wallet, token and chain, or a payment in a state that holds no signed authorization,
//! is logged as an error for an operator and changes nothing.

use awx_api::facilitator::RecordExternal;
use awx_api::policy::{
    AuthorizationUse, AuthorizationUsed, AuthorizationUsedReply, LOOKUP_WALLETS_MAX, LookupWallets,
    WalletOwner, WalletOwners,
};
use awx_types::{AccountId, AgentId, LedgerId};
use uuid::Uuid;

use crate::engine::Engine;
use crate::error::Failure;
use crate::expiry;
use crate::own::captured;
use crate::payments::{self, Payment};

/// The agents' wallets among `command.addresses`, deleted agents' included, in one query.
pub(crate) async fn lookup_wallets(
    engine: &Engine,
    command: &LookupWallets,
) -> Result<WalletOwners, Failure> {
    if command.addresses.len() > LOOKUP_WALLETS_MAX {
        return Err(Failure::invalid(format!(
            "addresses: at most {LOOKUP_WALLETS_MAX} per lookup, got {}",
            command.addresses.len()
        )));
    }
    if command.addresses.is_empty() {
        return Ok(WalletOwners { wallets: Vec::new() });
    }
    // Stored as lowercase hex (`agents.address`, unique).
    let addresses: Vec<String> =
        command.addresses.iter().map(|address| address.to_string().to_lowercase()).collect();
    let rows: Vec<(String, Uuid, Uuid)> = sqlx::query_as(
        "SELECT address, owner, id FROM policy.agents WHERE address = ANY($1) ORDER BY address",
    )
    .bind(&addresses)
    .fetch_all(&engine.pool)
    .await?;
    let wallets = rows
        .into_iter()
        .map(|(address, owner, agent)| {
            Ok(WalletOwner {
                address: address.parse().map_err(|error| {
                    Failure::internal(format!("stored wallet address {address:?}: {error}"))
                })?,
                owner: AccountId::from_uuid(owner),
                agent: AgentId::from_uuid(agent),
            })
        })
        .collect::<Result<_, Failure>>()?;
    Ok(WalletOwners { wallets })
}

/// Whether `payment` is the one the chain used: the nonce is unique per wallet among our
/// payments, but an EIP-3009 nonce is scoped by the token contract on its chain, so the same
/// (payer, nonce) on another chain or token is an authorization awx never issued.
fn same_authorization(payment: &Payment, command: &AuthorizationUsed) -> bool {
    let chain_id = awx_x402::Network::parse_lenient(&command.network)
        .ok()
        .and_then(|network| network.evm_chain_id());
    chain_id == Some(payment.chain_id) && payment.token == command.token
}

/// Marks the payment whose authorization `command` saw used on chain as paid by its transaction.
pub(crate) async fn authorization_used(
    engine: &Engine,
    command: &AuthorizationUsed,
) -> Result<AuthorizationUsedReply, Failure> {
    let mut tx = engine.pool.begin().await?;
    let found = payments::by_payer_nonce(&mut tx, command.payer, command.nonce, true).await?;
    let Some(mut payment) = found.filter(|payment| same_authorization(payment, command)) else {
        tx.commit().await?;
        tracing::error!(
            network = %command.network,
            token = %command.token,
            payer = %command.payer,
            nonce = %command.nonce,
            tx_hash = %command.tx_hash,
            "an authorization awx never issued was used on chain"
        );
        metrics::counter!("policy_authorizations_used_unknown_total").increment(1);
        return Ok(AuthorizationUsedReply { payment_id: None, outcome: AuthorizationUse::Unknown });
    };
    let payment_id = Some(LedgerId::from_uuid(payment.id));
    let outcome = match payment.state.as_str() {
        "authorized" => {
            if expiry::capture_paid_elsewhere(engine, &mut tx, &mut payment, command.tx_hash)
                .await?
            {
                AuthorizationUse::Captured
            } else {
                AuthorizationUse::Unexpected
            }
        }
        "captured" | "settled" => {
            let at: Option<i64> = sqlx::query_scalar(
                "SELECT extract(epoch FROM captured_at)::bigint FROM policy.payments WHERE id = $1",
            )
            .bind(payment.id)
            .fetch_one(&mut *tx)
            .await?;
            let at = at.ok_or_else(|| {
                Failure::internal(format!(
                    "payment {} is {} with no captured_at",
                    payment.id, payment.state
                ))
            })?;
            let record =
                RecordExternal { captured: captured(&payment, at)?, tx_hash: command.tx_hash };
            engine.bus.send(&record, engine.upstream_timeout()).await.map_err(|error| {
                Failure::Internal(format!(
                    "the settlement service did not record a payment paid elsewhere: {error}"
                ))
            })?;
            tracing::info!(payment = %payment.id, state = %payment.state, tx_hash = %command.tx_hash,
                "a captured payment's authorization was used on chain outside awx; recorded as settled by it");
            AuthorizationUse::Recorded
        }
        _ => {
            tracing::error!(payment = %payment.id, state = %payment.state, tx_hash = %command.tx_hash,
                "an authorization was used on chain for a payment that holds no signed authorization; an operator must look at it");
            metrics::counter!("policy_authorizations_used_unexpected_total").increment(1);
            AuthorizationUse::Unexpected
        }
    };
    tx.commit().await?;
    Ok(AuthorizationUsedReply { payment_id, outcome })
}
