//! Withdrawals (family `settlement`): USDC moved from an agent's wallet to an outside address.
//!
//! The settlement service stores the withdrawal, the policy service approves it and the ledger
//! holds the amount (`awx_api::policy::WithdrawDecide`), the signer signs an EIP-3009
//! authorization from the agent's wallet against that decision, and the batch settlement worker's
//! relayer submits it (so agent wallets never need gas), with the same persisted state machine as
//! net transfers: stored before broadcast, fee bumps, confirmation depth. Once confirmed, the
//! ledger captures the hold and `withdrawal.confirmed` is published.

use awx_bus::Command;
use awx_types::{AccountId, AgentId, Amount, LedgerId};
use awx_x402::{Address, B256};
use serde::{Deserialize, Serialize};

use crate::facilitator::FAMILY;

/// Stable codes of withdrawal rejections (besides the policy service's and the ledger's, which
/// are passed on: `agent_not_found`, `withdrawal_address_not_allowed`, `insufficient_funds`).
pub mod codes {
    /// The network is not served, or has no withdrawable token.
    pub const NETWORK_NOT_SUPPORTED: &str = "network_not_supported";
    /// No such withdrawal (of that agent).
    pub const WITHDRAWAL_NOT_FOUND: &str = "withdrawal_not_found";
    /// The withdrawal id was used for another request.
    pub const WITHDRAWAL_CONFLICT: &str = "withdrawal_conflict";
}

/// Requests a withdrawal. Idempotent by `withdrawal_id`: the same request again answers the
/// withdrawal as it is now; the id with other contents is `withdrawal_conflict`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestWithdrawal {
    /// The withdrawal.
    pub withdrawal_id: LedgerId,
    /// The tenant.
    pub owner: AccountId,
    /// The agent.
    pub agent: AgentId,
    /// The agent's wallet (checked by the policy service).
    pub from: Address,
    /// The outside address.
    pub to: Address,
    /// The amount, atomic units of the network's USDC.
    pub amount: Amount,
    /// The CAIP-2 network.
    pub network: String,
}

/// A withdrawal as shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WithdrawalView {
    /// The withdrawal.
    pub id: LedgerId,
    /// The agent.
    pub agent: AgentId,
    /// The CAIP-2 network.
    pub network: String,
    /// The token.
    pub token: Address,
    /// The token's decimals.
    pub decimals: u8,
    /// The agent's wallet.
    pub from: Address,
    /// The outside address.
    pub to: Address,
    /// The amount, atomic units.
    pub amount: Amount,
    /// `pending` (held, being signed), `signed` (waiting for a batch), `submitted` (in a batch
    /// transaction not yet confirmed), `confirmed`, `failed` (failed too often; an operator looks
    /// at it; the amount stays held) or `rejected` (refused; nothing held).
    pub state: String,
    /// The transaction, once confirmed.
    pub tx_hash: Option<B256>,
    /// Why it was rejected, or why its last attempt failed.
    pub error: Option<String>,
    /// When it was requested (Unix seconds).
    pub created_at_unix: i64,
}

impl Command for RequestWithdrawal {
    const FAMILY: &'static str = FAMILY;
    const NAME: &'static str = "settlement.withdrawals.request";
    const KIND: awx_bus::Kind = awx_bus::Kind::Change;
    type Reply = WithdrawalView;
}

/// One withdrawal of an agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GetWithdrawal {
    /// The tenant.
    pub owner: AccountId,
    /// The agent.
    pub agent: AgentId,
    /// The withdrawal.
    pub withdrawal_id: LedgerId,
}

impl Command for GetWithdrawal {
    const FAMILY: &'static str = FAMILY;
    const NAME: &'static str = "settlement.withdrawals.get";
    const KIND: awx_bus::Kind = awx_bus::Kind::Query;
    type Reply = Option<WithdrawalView>;
}

/// An agent's withdrawals, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListWithdrawals {
    /// The tenant.
    pub owner: AccountId,
    /// The agent.
    pub agent: AgentId,
    /// At most this many (1 to 100).
    pub limit: u32,
    /// Only withdrawals older than this one.
    pub starting_after: Option<LedgerId>,
}

/// The answer to [`ListWithdrawals`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WithdrawalList {
    /// The page.
    pub withdrawals: Vec<WithdrawalView>,
    /// Whether older withdrawals follow.
    pub has_more: bool,
}

impl Command for ListWithdrawals {
    const FAMILY: &'static str = FAMILY;
    const NAME: &'static str = "settlement.withdrawals.list";
    const KIND: awx_bus::Kind = awx_bus::Kind::Query;
    type Reply = WithdrawalList;
}

/// A withdrawal was confirmed on chain (event `withdrawal.confirmed`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WithdrawalConfirmed {
    /// The tenant.
    pub owner: AccountId,
    /// The withdrawal.
    pub withdrawal: WithdrawalView,
}

impl awx_bus::Event for WithdrawalConfirmed {
    const TOPIC: &'static str = "withdrawal.confirmed";
}
