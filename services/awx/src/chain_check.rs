//! `awx ledger check --rpc-url …`: the ledger against the chain for net settlement. For every
//! confirmed batch of the chain, what the chain's `Transfer` logs of the batch transaction moved
//! must equal what the ledger recorded as paid by that transaction: per payee (payouts), and in
//! total (payouts and the platform's fees).

use std::collections::BTreeMap;

use awx_chain::{ChainClient, Token};
use awx_ledger_service::check::Violation;
use awx_x402::{Address, B256, U256};
use sqlx::{PgPool, Row as _};

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
