//! Which payers are our agents' wallets, answered in the settlement service without asking the
//! policy service: `settlement.own_wallets`, which the policy service fills (`RegisterWallet`)
//! before an agent exists, so the first payment of a new agent already finds its wallet here, on
//! every replica.
//!
//! A wallet found once is remembered in memory (wallets are never removed: a deleted agent's
//! wallet stays ours), so our own payers cost no query. An address not remembered is looked up
//! (one primary-key read, no write) every time: an outside payer is never assumed outside from
//! memory, so there is no window in which a new agent's payment is taken for an outside
//! payer's and settled on chain.

use std::collections::HashSet;
use std::sync::RwLock;

use awx_types::AgentId;
use awx_x402::Address;
use sqlx::{PgConnection, PgPool};

use crate::settle::lower;

/// Our agents' wallets, remembered as they are found.
#[derive(Debug, Default)]
pub struct OwnWallets {
    known: RwLock<HashSet<Address>>,
}

impl OwnWallets {
    /// Whether `address` is one of our agents' wallets.
    pub async fn contains(&self, pool: &PgPool, address: Address) -> Result<bool, sqlx::Error> {
        if self.remembered(address) {
            return Ok(true);
        }
        let ours: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM settlement.own_wallets WHERE address = $1)",
        )
        .bind(lower(address))
        .fetch_one(pool)
        .await?;
        if ours {
            self.remember(address);
        }
        Ok(ours)
    }

    fn remembered(&self, address: Address) -> bool {
        self.known.read().map(|known| known.contains(&address)).unwrap_or(false)
    }

    fn remember(&self, address: Address) {
        if let Ok(mut known) = self.known.write() {
            known.insert(address);
        }
    }
}

/// Records `address` as the wallet of `agent` in `conn`; true when it was new. A wallet already
/// registered for another agent is refused (an address is one agent's).
pub async fn register(
    conn: &mut PgConnection,
    agent: AgentId,
    address: Address,
) -> Result<bool, RegisterError> {
    let inserted = sqlx::query(
        "INSERT INTO settlement.own_wallets (address, agent_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
    )
    .bind(lower(address))
    .bind(agent.as_uuid())
    .execute(&mut *conn)
    .await?
    .rows_affected();
    if inserted == 1 {
        return Ok(true);
    }
    let owner: uuid::Uuid =
        sqlx::query_scalar("SELECT agent_id FROM settlement.own_wallets WHERE address = $1")
            .bind(lower(address))
            .fetch_one(&mut *conn)
            .await?;
    if owner == agent.as_uuid() {
        Ok(false)
    } else {
        Err(RegisterError::OtherAgent(format!("{address} is the wallet of another agent")))
    }
}

/// Why a wallet was not registered.
#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    /// The address is another agent's wallet.
    #[error("{0}")]
    OtherAgent(String),
    /// The database failed.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
}
