//! The facilitator's commands (family `settlement`): verify, settle and supported, in the wire
//! shapes of the x402 facilitator protocol, so the gateway only forwards them; and the
//! development faucet.
//!
//! Business failures are answers (`isValid: false`, `success: false` with the official reason
//! strings); a rejection means the request could not be read or answered now (see [`codes`]).
//!
//! Payments whose payer is one of our agents' wallets are answered by the policy service
//! (`awx_api::policy::OwnPayment`), asked before any chain call; a settled one is queued for net
//! settlement and its answer carries `extensions.awx = {"settlement": "deferred", "paymentId",
//! "settleBy"}` with an empty `transaction`.

use awx_bus::Command;
use awx_types::{AccountId, AgentId, Amount};
use awx_x402::{
    Address, B256, FacilitatorRequest, SettleResponse, SupportedResponse, VerifyResponse,
};
use serde::{Deserialize, Serialize};

/// The command family (request stream) of the settlement service.
pub const FAMILY: &str = "settlement";

/// Stable codes of the facilitator's rejections.
pub mod codes {
    /// The request is not a readable facilitator request.
    pub const INVALID_REQUEST: &str = "invalid_request";
    /// The chain's node did not answer, or a transaction is not mined yet (retry later).
    pub const CHAIN_UNAVAILABLE: &str = "chain_unavailable";
    /// The policy service, which answers for payments our agents made, did not answer (retry
    /// later).
    pub const POLICY_UNAVAILABLE: &str = "policy_unavailable";
    /// The faucet is not available on this network (not a development chain configured with a
    /// faucet, or the relayers may not mint).
    pub const FAUCET_UNAVAILABLE: &str = "faucet_unavailable";
}

/// Verifies a payment against the provider's requirements.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verify {
    /// The provider's account.
    pub provider: AccountId,
    /// The body of `POST /verify`.
    pub request: FacilitatorRequest,
}

impl Command for Verify {
    const FAMILY: &'static str = FAMILY;
    const NAME: &'static str = "facilitator.verify";
    type Reply = VerifyResponse;
}

/// Settles a payment: on chain for outside payers; for our agents' payments, captured in the
/// ledger by the policy service and queued for net settlement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Settle {
    /// The provider's account.
    pub provider: AccountId,
    /// The body of `POST /settle`.
    pub request: FacilitatorRequest,
}

impl Command for Settle {
    const FAMILY: &'static str = FAMILY;
    const NAME: &'static str = "facilitator.settle";
    type Reply = SettleResponse;
}

/// What the facilitator supports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Supported {}

impl Command for Supported {
    const FAMILY: &'static str = FAMILY;
    const NAME: &'static str = "facilitator.supported";
    type Reply = SupportedResponse;
}

/// Mints development tokens to an agent's wallet on a development chain (a network configured
/// with `faucet = true`) and records them in the ledger as a faucet deposit. Each command mints
/// once (a redelivered command follows its own transaction); another command mints again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Faucet {
    /// The tenant.
    pub owner: AccountId,
    /// The agent whose wallet receives the tokens.
    pub agent: AgentId,
    /// The CAIP-2 network.
    pub network: String,
    /// The agent's wallet address.
    pub to: Address,
    /// How much, in the faucet token's atomic units.
    pub amount: Amount,
}

/// The answer to [`Faucet`]: the mint is mined and the deposit recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaucetReply {
    /// The mint transaction.
    pub tx_hash: B256,
    /// The amount minted and deposited.
    pub amount: Amount,
    /// The CAIP-2 network.
    pub network: String,
}

impl Command for Faucet {
    const FAMILY: &'static str = FAMILY;
    const NAME: &'static str = "settlement.faucet";
    type Reply = FaucetReply;
}
