//! Money that arrived in agents' wallets on chain (family `settlement`): the chain watcher's
//! deposits, listed per agent, and the event `deposit.confirmed`.
//!
//! A deposit is a token `Transfer` into an agent's wallet, credited once its block is
//! `confirmations` deep, idempotent by (network, transaction, log index, block). A deposit whose
//! block is reorganised away is `reversed`; if the same transfer reappears in another block, it
//! is a new deposit.

use awx_bus::Command;
use awx_types::{AccountId, AgentId, Amount};
use awx_x402::{Address, B256};
use serde::{Deserialize, Serialize};

use crate::facilitator::FAMILY;
use crate::ledger::DepositSource;

/// An agent's deposits, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListDeposits {
    /// The tenant.
    pub owner: AccountId,
    /// The agent.
    pub agent: AgentId,
    /// At most this many (1 to 100).
    pub limit: u32,
    /// Only deposits older than this one (the previous page's last id).
    pub starting_after: Option<uuid::Uuid>,
}

/// One deposit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DepositView {
    /// The deposit.
    pub id: uuid::Uuid,
    /// The CAIP-2 network.
    pub network: String,
    /// The token.
    pub token: Address,
    /// Who sent it (the zero address for a mint).
    pub from: Address,
    /// The agent's wallet.
    pub to: Address,
    /// The amount, atomic units.
    pub amount: Amount,
    /// The token's decimals.
    pub decimals: u8,
    /// `chain` (a transfer seen by the watcher) or `faucet` (the development faucet's mint).
    pub source: DepositSource,
    /// `pending` (seen, not yet in the ledger), `credited` or `reversed`.
    pub state: String,
    /// The transaction.
    pub tx_hash: B256,
    /// The `Transfer` log's index in its block.
    pub log_index: u64,
    /// The block.
    pub block_number: u64,
    /// The block's hash.
    pub block_hash: B256,
    /// Why it was reversed.
    pub reversal_reason: Option<String>,
    /// When it was seen (Unix seconds).
    pub created_at_unix: i64,
}

/// The answer to [`ListDeposits`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DepositList {
    /// The page.
    pub deposits: Vec<DepositView>,
    /// Whether older deposits follow.
    pub has_more: bool,
}

impl Command for ListDeposits {
    const FAMILY: &'static str = FAMILY;
    const NAME: &'static str = "settlement.deposits.list";
    const KIND: awx_bus::Kind = awx_bus::Kind::Query;
    type Reply = DepositList;
}

/// A deposit was credited to an agent's available balance (event `deposit.confirmed`, from the
/// settlement service's outbox, written when the ledger answered).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DepositConfirmed {
    /// The tenant.
    pub owner: AccountId,
    /// The agent.
    pub agent: AgentId,
    /// The deposit.
    pub deposit: DepositView,
}

impl awx_bus::Event for DepositConfirmed {
    const TOPIC: &'static str = "deposit.confirmed";
}

/// A deposit was taken back because its block left the canonical chain (event
/// `deposit.reversed`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DepositReversedEvent {
    /// The tenant.
    pub owner: AccountId,
    /// The agent.
    pub agent: AgentId,
    /// The deposit, as it is now.
    pub deposit: DepositView,
}

impl awx_bus::Event for DepositReversedEvent {
    const TOPIC: &'static str = "deposit.reversed";
}
