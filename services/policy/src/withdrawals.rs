//! Withdrawals: each account's withdrawal allow-list, and the approval of a withdrawal from an
//! agent's wallet to an outside address.
//!
//! `withdraw_decide` checks, in order, each failure a refusal with a stable code and nothing
//! held before the last check passes:
//!
//! 1. the agent is the owner's and not deleted (`agent_not_found`);
//! 2. `authorization.from` is the agent's wallet (`invalid_request`);
//! 3. the value is positive and fits an amount, and `authorization.to` is neither the zero
//!    address nor the agent's own wallet (`invalid_request`);
//! 4. the owner's allow-list, when it has one, names `authorization.to`
//!    (`withdrawal_address_not_allowed`);
//! 5. the network is an EVM chain and the token is one the registry knows there, with the same
//!    decimals (`invalid_request`); the registry gives its EIP-712 name and version.
//!
//! Then the ledger holds the value on the wallet (`HoldWithdrawal`, idempotent by the withdrawal
//! id: `insufficient_funds` is passed on, no answer is `ledger_unavailable`), and a decision is
//! signed binding exactly this transfer: `jti` the withdrawal id, `covers` kind `withdrawal` over
//! the withdrawal id alone (what the signer compares for a `SignNetTransfer` of kind
//! `Withdrawal`). The same command again holds nothing more and answers a fresh decision.

use awx_api::ledger::{Asset, HoldWithdrawal};
use awx_api::policy::{
    GetWithdrawalAddresses, NetDecision, NetKind, SetWithdrawalAddresses, WITHDRAWAL_ADDRESSES_MAX,
    WithdrawDecide, WithdrawalAddresses, codes,
};
use awx_decision::{Covers, DecisionClaims};
use awx_types::{AccountId, Amount};
use awx_x402::{Address, TokenDomain};

use crate::agents;
use crate::engine::{Engine, now_unix};
use crate::error::{Failure, Upstream};

/// Stored form of an address: lowercase `0x` hex.
fn lower(address: Address) -> String {
    address.to_string().to_lowercase()
}

/// The owner's allow-list, sorted.
async fn stored(conn: &mut sqlx::PgConnection, owner: AccountId) -> Result<Vec<Address>, Failure> {
    let texts: Vec<String> = sqlx::query_scalar(
        "SELECT address FROM policy.withdrawal_addresses WHERE owner = $1 ORDER BY address",
    )
    .bind(owner.as_uuid())
    .fetch_all(&mut *conn)
    .await?;
    texts
        .iter()
        .map(|text| {
            text.parse().map_err(|error| {
                Failure::internal(format!("stored withdrawal address {text:?}: {error}"))
            })
        })
        .collect()
}

/// Replaces the owner's allow-list in one transaction; answers the stored list, sorted.
pub(crate) async fn set_addresses(
    engine: &Engine,
    command: &SetWithdrawalAddresses,
) -> Result<WithdrawalAddresses, Failure> {
    if command.addresses.len() > WITHDRAWAL_ADDRESSES_MAX {
        return Err(Failure::invalid(format!(
            "addresses: at most {WITHDRAWAL_ADDRESSES_MAX}, got {}",
            command.addresses.len()
        )));
    }
    if command.addresses.contains(&Address::ZERO) {
        return Err(Failure::invalid("addresses: the zero address cannot receive a withdrawal"));
    }
    let mut texts: Vec<String> = command.addresses.iter().copied().map(lower).collect();
    texts.sort_unstable();
    texts.dedup();
    let owner = command.owner;
    let mut tx = engine.pool.begin().await?;
    // Two replacements of one list at once: the second waits for the first, then replaces it.
    sqlx::query(
        "SELECT pg_advisory_xact_lock(hashtextextended('policy.withdrawal_addresses:' || $1::text, 0))",
    )
    .bind(owner.as_uuid())
    .execute(&mut *tx)
    .await?;
    sqlx::query("DELETE FROM policy.withdrawal_addresses WHERE owner = $1")
        .bind(owner.as_uuid())
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "INSERT INTO policy.withdrawal_addresses (owner, address)
         SELECT $1, address FROM unnest($2::text[]) AS address",
    )
    .bind(owner.as_uuid())
    .bind(&texts)
    .execute(&mut *tx)
    .await?;
    let addresses = stored(&mut tx, owner).await?;
    tx.commit().await?;
    tracing::info!(owner = %owner, count = addresses.len(), "withdrawal allow-list replaced");
    Ok(WithdrawalAddresses { addresses })
}

/// The owner's allow-list, sorted (empty: any address).
pub(crate) async fn get_addresses(
    engine: &Engine,
    command: &GetWithdrawalAddresses,
) -> Result<WithdrawalAddresses, Failure> {
    let mut conn = engine.pool.acquire().await?;
    Ok(WithdrawalAddresses { addresses: stored(&mut conn, command.owner).await? })
}

/// Approves the withdrawal `command` describes, holds its value, and answers a decision binding
/// it (see the module docs).
pub(crate) async fn withdraw_decide(
    engine: &Engine,
    command: &WithdrawDecide,
) -> Result<NetDecision, Failure> {
    let authorization = &command.authorization;
    let mut conn = engine.pool.acquire().await?;
    let agent = agents::live(&mut conn, command.owner, command.agent, false).await?;
    if authorization.from != agent.address {
        return Err(Failure::invalid(format!(
            "authorization.from {} is not the agent's wallet {}",
            authorization.from, agent.address
        )));
    }
    let amount = u128::try_from(authorization.value)
        .ok()
        .filter(|value| *value > 0)
        .map(Amount::from_atomic)
        .ok_or_else(|| {
            Failure::invalid(format!(
                "authorization.value {} is not a positive amount",
                authorization.value
            ))
        })?;
    if authorization.to == Address::ZERO {
        return Err(Failure::invalid(
            "authorization.to: the zero address cannot receive a withdrawal",
        ));
    }
    if authorization.to == agent.address {
        return Err(Failure::invalid("authorization.to is the agent's own wallet"));
    }
    let (listed, allowed): (i64, bool) = sqlx::query_as(
        "SELECT count(*), coalesce(bool_or(address = $2), false)
         FROM policy.withdrawal_addresses WHERE owner = $1",
    )
    .bind(command.owner.as_uuid())
    .bind(lower(authorization.to))
    .fetch_one(&mut *conn)
    .await?;
    drop(conn);
    if listed > 0 && !allowed {
        return Err(Failure::reject(
            codes::WITHDRAWAL_ADDRESS_NOT_ALLOWED,
            format!("{} is not on the account's withdrawal allow-list", authorization.to),
        ));
    }
    let chain_id = agents::check_chain(&command.network, "network")?;
    let token = engine.registry.by_address(chain_id, command.token).ok_or_else(|| {
        Failure::invalid(format!(
            "token {} is not a known token on {}",
            command.token, command.network
        ))
    })?;
    if token.decimals != command.decimals {
        return Err(Failure::invalid(format!(
            "decimals: token {} has {} decimals, not {}",
            command.token, token.decimals, command.decimals
        )));
    }
    let (token_name, token_version) = (token.eip712_name.clone(), token.eip712_version.clone());

    let hold = HoldWithdrawal {
        withdrawal_id: command.withdrawal_id,
        owner: command.owner,
        agent: command.agent,
        asset: Asset {
            network: command.network.clone(),
            token: command.token,
            decimals: command.decimals,
        },
        to: authorization.to,
        amount,
        timeout_seconds: command.hold_seconds,
    };
    if let Err(error) = engine.bus.send(&hold, engine.upstream_timeout()).await {
        return Err(match Upstream::from(error) {
            Upstream::Refused { code, message }
                if code == awx_api::ledger::codes::INSUFFICIENT_FUNDS =>
            {
                Failure::reject(
                    codes::INSUFFICIENT_FUNDS,
                    format!("the agent's wallet cannot cover the withdrawal: {message}"),
                )
            }
            Upstream::Refused { code, message } => Failure::invalid(format!(
                "the ledger refused the withdrawal's hold ({code}): {message}"
            )),
            Upstream::Unavailable(error) => Failure::reject(
                codes::LEDGER_UNAVAILABLE,
                format!("the ledger did not answer; the same withdrawal may be retried ({error})"),
            ),
        });
    }

    let withdrawal = command.withdrawal_id.as_uuid().to_string();
    let domain = TokenDomain {
        name: token_name.clone(),
        version: token_version.clone(),
        chain_id,
        verifying_contract: command.token,
    };
    let claims = DecisionClaims::new(
        &withdrawal,
        &command.agent.to_string(),
        now_unix(),
        engine.settings.decision_lifetime_seconds,
        chain_id,
        &domain,
        authorization,
    )
    .covering(Covers::of(NetKind::Withdrawal.as_str(), std::slice::from_ref(&withdrawal)));
    let decision = engine.decision_key.sign(&claims).map_err(Failure::internal)?;
    tracing::info!(
        withdrawal = %withdrawal,
        owner = %command.owner,
        agent = %command.agent,
        network = %command.network,
        token = %command.token,
        to = %authorization.to,
        amount = %amount,
        "withdrawal approved and held"
    );
    Ok(NetDecision { decision, agent_id: command.agent, token_name, token_version })
}
