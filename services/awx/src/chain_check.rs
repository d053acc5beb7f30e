//! `awx ledger check --rpc-url …`: the ledger against the chain.
//!
//! - [`check_batches`] (always, per `--rpc-url`): for every confirmed net settlement batch of the
//!   chain, what the chain's `Transfer` logs of the batch transaction moved must equal what the
//!   ledger recorded as paid by that transaction: per payee (payouts), and in total (payouts and
//!   the platform's fees).
//! - [`check_wallets`] (with `--chain`): every agent wallet's token balance on chain must equal
//!   what the ledger says is in it:
//!
//!   ```text
//!   on chain = available + held                       (the wallet account: credits_posted − debits_posted)
//!            + Σ amount of its items queued or batched (captured, not yet paid to the payee on chain)
//!            + Σ fee of its items (any state) not in a confirmed fee net transfer
//!                                                      (owed to the platform, not yet collected)
//!            − Σ its withdrawals confirmed on chain whose hold the ledger has not captured yet
//!   ```
//!
//!   A withdrawal is held in the wallet account (`held`) until the ledger captures it, which
//!   the batch worker does right after the withdrawal's transfer is confirmed; between the two the
//!   tokens are gone but still held, hence the last term.
//!
//!   A capture moves amount and fee out of the wallet account at once, while the tokens stay in
//!   the wallet until a net transfer moves them; an item becomes `settled` in the transaction
//!   that confirms its payee net transfer, and `settled_externally` once its authorization is
//!   seen paid by someone else. The ledger's later payout and fee postings move `payable` and
//!   `fee_collected` against the on-chain mirror and leave the wallet account alone, so the
//!   equation holds at every stable point. The database is read in one snapshot; a batch mined
//!   but not yet confirmed by the worker, an authorization paid on chain by someone else but
//!   not yet marked `settled_externally`, or a deposit not yet credited shows as a difference
//!   until the worker or the watcher catches up.

use std::collections::BTreeMap;

use anyhow::Context as _;
use awx_chain::{ChainClient, Token};
use awx_ledger_service::check::Violation;
use awx_types::AgentId;
use awx_x402::{Address, B256, U256};
use sqlx::{PgConnection, PgPool, Row as _};
use uuid::Uuid;

/// What [`check_wallets`] checks.
pub const WALLET_CHECK: &str =
    "an agent wallet's balance on chain equals what the ledger holds for it";

/// The differences between the ledger and the chain for the confirmed batches of `client`'s
/// chain (empty when they agree).
pub async fn check_batches(pool: &PgPool, client: &ChainClient) -> anyhow::Result<Vec<Violation>> {
    let chain_id = client.chain_id().await?;
    let network = format!("eip155:{chain_id}");
    let batches: Vec<String> = sqlx::query_scalar(
        "SELECT tx_hash FROM settlement.batches WHERE network = $1 AND state = 'confirmed' ORDER BY created_at",
    )
    .bind(&network)
    .fetch_all(pool)
    .await?;
    let mut violations = Vec::new();
    for hash_text in batches {
        let hash: B256 = hash_text.parse()?;
        let Some(receipt) = client.receipt(hash).await? else {
            violations.push(Violation {
                check: "a confirmed batch's transaction is on chain",
                detail: format!("{network}: no receipt for {hash_text}"),
            });
            continue;
        };
        let mut chain_to: BTreeMap<Address, U256> = BTreeMap::new();
        let mut chain_total = U256::ZERO;
        for (_, _, to, value) in Token::transfers_in(&receipt) {
            *chain_to.entry(to).or_default() += value;
            chain_total += value;
        }
        let rows = sqlx::query(
            "SELECT t.metadata->>'op', t.metadata->>'payee', sum(l.amount)::text
             FROM ledger.transfers t JOIN ledger.transfer_legs l ON l.transfer_id = t.id
             WHERE t.network = $1 AND t.metadata->>'tx_hash' = $2 AND t.metadata->>'op' IN ('payout', 'fees_collected')
             GROUP BY 1, 2",
        )
        .bind(&network)
        .bind(&hash_text)
        .fetch_all(pool)
        .await?;
        let mut ledger_total = U256::ZERO;
        for row in rows {
            let op: String = row.get(0);
            let payee: Option<String> = row.get(1);
            let amount: U256 = row.get::<String, _>(2).parse()?;
            ledger_total += amount;
            if op == "payout" {
                let payee: Address = payee.unwrap_or_default().parse()?;
                let moved = chain_to.get(&payee).copied().unwrap_or_default();
                if moved != amount {
                    violations.push(Violation {
                        check: "the ledger's payouts of a batch equal its Transfer logs",
                        detail: format!(
                            "{hash_text}: the ledger paid {payee} {amount}, the chain moved {moved}"
                        ),
                    });
                }
            }
        }
        if ledger_total != chain_total {
            violations.push(Violation {
                check: "what the ledger recorded for a batch equals what it moved on chain",
                detail: format!("{hash_text}: ledger {ledger_total}, chain {chain_total}"),
            });
        }
    }
    Ok(violations)
}

/// One ledger wallet account of a chain.
struct WalletAccount {
    /// The account's `ref`: the agent id (`agt_…`).
    reference: String,
    /// The token address, lowercase.
    token: String,
    /// credits_posted − debits_posted − debits_pending.
    available: U256,
    /// debits_pending.
    held: U256,
}

/// The differences between every agent wallet's token balance on `client`'s chain and what the
/// ledger says is in it (see the module docs for the equation; empty when they agree).
pub async fn check_wallets(pool: &PgPool, client: &ChainClient) -> anyhow::Result<Vec<Violation>> {
    let chain_id = client.chain_id().await?;
    let network = format!("eip155:{chain_id}");
    let mut violations = Vec::new();
    // One snapshot: a capture, an item and its net transfer are never seen half-way.
    let mut tx = pool.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *tx)
        .await?;
    let rows = sqlx::query(
        "SELECT ref, token, credits_posted::text, debits_posted::text, debits_pending::text
         FROM ledger.accounts WHERE code = 'wallet' AND network = $1 ORDER BY ref, token",
    )
    .bind(&network)
    .fetch_all(&mut *tx)
    .await?;
    let mut accounts = Vec::with_capacity(rows.len());
    for row in rows {
        let reference: String = row.get(0);
        let token: String = row.get(1);
        let amount = |index: usize| -> anyhow::Result<U256> {
            let text: String = row.get(index);
            text.parse().with_context(|| format!("wallet {reference} {token}: amount {text}"))
        };
        let (credits, debits, held) = (amount(2)?, amount(3)?, amount(4)?);
        let Some(available) = credits.checked_sub(debits).and_then(|rest| rest.checked_sub(held))
        else {
            violations.push(Violation {
                check: "no wallet is below zero",
                detail: format!(
                    "{network} {token} agent {reference}: credits {credits}, debits {debits}, held {held}"
                ),
            });
            continue;
        };
        accounts.push(WalletAccount { reference, token, available, held });
    }
    let ids: Vec<Uuid> = accounts
        .iter()
        .filter_map(|account| AgentId::parse(&account.reference).ok())
        .map(|agent| agent.as_uuid())
        .collect();
    let addresses: BTreeMap<Uuid, String> =
        sqlx::query_as("SELECT id, address FROM policy.agents WHERE id = ANY($1)")
            .bind(&ids)
            .fetch_all(&mut *tx)
            .await?
            .into_iter()
            .collect();
    let captured = sums_by_payer(
        &mut tx,
        "SELECT payer, token, sum(amount)::text FROM settlement.items
         WHERE network = $1 AND state IN ('queued', 'batched') GROUP BY payer, token",
        &network,
    )
    .await?;
    let fees = sums_by_payer(
        &mut tx,
        "SELECT payer, token, sum(fee)::text FROM settlement.items i
         WHERE network = $1 AND fee > 0
           AND NOT EXISTS (
             SELECT 1 FROM settlement.net_transfer_items l
             JOIN settlement.net_transfers t ON t.id = l.net_transfer_id
             WHERE l.payment_id = i.payment_id AND l.kind = 'fee' AND t.state = 'confirmed')
         GROUP BY payer, token",
        &network,
    )
    .await?;
    // Withdrawals confirmed on chain whose hold the ledger has not captured yet: gone from the
    // wallet, still held in the ledger.
    let withdrawn = sums_by_payer(
        &mut tx,
        "SELECT payer, token, sum(amount)::text FROM settlement.net_transfers
         WHERE network = $1 AND kind = 'withdrawal' AND state = 'confirmed' AND NOT recorded
         GROUP BY payer, token",
        &network,
    )
    .await?;
    tx.commit().await?;
    for account in accounts {
        let WalletAccount { reference, token, available, held } = account;
        let address =
            AgentId::parse(&reference).ok().and_then(|agent| addresses.get(&agent.as_uuid()));
        let Some(address) = address else {
            violations.push(Violation {
                check: "every ledger wallet belongs to an agent with a wallet address",
                detail: format!("{network} {token}: no agent {reference}"),
            });
            continue;
        };
        let key = (address.clone(), token.clone());
        let captured = captured.get(&key).copied().unwrap_or_default();
        let fees = fees.get(&key).copied().unwrap_or_default();
        let withdrawn = withdrawn.get(&key).copied().unwrap_or_default();
        let expected = [held, captured, fees]
            .into_iter()
            .try_fold(available, |sum, part| sum.checked_add(part))
            .and_then(|sum| sum.checked_sub(withdrawn))
            .context("the ledger's amounts overflow 256 bits, or a withdrawal exceeds its hold")?;
        let on_chain = client
            .token(token.parse()?)
            .balance_of(address.parse()?)
            .await
            .with_context(|| format!("reading {address}'s balance of {token}"))?;
        if on_chain != expected {
            violations.push(Violation {
                check: WALLET_CHECK,
                detail: format!(
                    "{network} {token} agent {reference} wallet {address}: chain {on_chain}, ledger {expected} \
                     (available {available}, held {held}, captured not settled {captured}, fees not collected {fees}, \
                     withdrawn not yet recorded {withdrawn})"
                ),
            });
        }
    }
    Ok(violations)
}

/// `sql` (payer, token, sum as text) for `network`, by (payer, token).
async fn sums_by_payer(
    conn: &mut PgConnection,
    sql: &'static str,
    network: &str,
) -> anyhow::Result<BTreeMap<(String, String), U256>> {
    let rows: Vec<(String, String, String)> =
        sqlx::query_as(sql).bind(network).fetch_all(&mut *conn).await?;
    rows.into_iter()
        .map(|(payer, token, sum)| {
            let sum = sum.parse().with_context(|| format!("{payer} {token}: sum {sum}"))?;
            Ok(((payer, token), sum))
        })
        .collect()
}
