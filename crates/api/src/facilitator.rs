//! The facilitator's commands (family `settlement`): verify, settle and supported, in the wire
//! shapes of the x402 facilitator protocol, so the gateway only forwards them; and the
//! development faucet.
//!
//! Business failures are answers (`isValid: false`, `success: false` with the official reason
//! strings); a rejection means the request could not be read or answered now (see [`codes`]).
//!
//! Payments whose payer is one of our agents' wallets (registered with [`RegisterWallet`]) are
//! answered by the policy service (`awx_api::policy::OwnVerify`, `OwnPayment`), asked before any
//! chain call; other payers' payments never reach the policy service; a settled one is queued for net
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

/// Records that `address` is the wallet of one of our agents (`agent_id`), so the facilitator
/// answers that payer's payments through the policy service and never on chain. The policy
/// service sends it when an agent is created, before the agent exists, so no payment of an agent
/// can reach the facilitator before its wallet is known. Idempotent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisterWallet {
    /// The agent.
    pub agent_id: AgentId,
    /// Its wallet.
    pub address: Address,
}

/// The answer to [`RegisterWallet`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WalletRegistered {
    /// The wallet was not registered before this command.
    pub new: bool,
}

impl Command for RegisterWallet {
    const FAMILY: &'static str = FAMILY;
    const NAME: &'static str = "settlement.wallet.register";
    const KIND: awx_bus::Kind = awx_bus::Kind::Change;
    type Reply = WalletRegistered;
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
    const KIND: awx_bus::Kind = awx_bus::Kind::Query;
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
    const KIND: awx_bus::Kind = awx_bus::Kind::Change;
    type Reply = SettleResponse;
}

/// What the facilitator supports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Supported {}

impl Command for Supported {
    const FAMILY: &'static str = FAMILY;
    const NAME: &'static str = "facilitator.supported";
    const KIND: awx_bus::Kind = awx_bus::Kind::Query;
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
    const KIND: awx_bus::Kind = awx_bus::Kind::Change;
    type Reply = FaucetReply;
}

/// A net transfer of the batch settlement worker was confirmed on chain (event
/// `settlement.confirmed`, from the settlement service's outbox): the payments it covers are
/// paid to their payee (kind `payee`), or their fees to the platform (kind `fee`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SettlementConfirmed {
    /// The net transfer.
    pub transfer_id: uuid::Uuid,
    /// `payee` or `fee`.
    pub kind: crate::policy::NetKind,
    /// The CAIP-2 network.
    pub network: String,
    /// The token.
    pub token: Address,
    /// The agent's wallet that paid.
    pub payer: Address,
    /// Who received it.
    pub payee: Address,
    /// The amount, atomic units.
    pub amount: Amount,
    /// The batch transaction.
    pub tx_hash: B256,
    /// The payments covered.
    pub payment_ids: Vec<awx_types::LedgerId>,
}

impl awx_bus::Event for SettlementConfirmed {
    const TOPIC: &'static str = "settlement.confirmed";
}

/// Where a payment of one of our agents is in net settlement (`None` when it was never captured
/// through our facilitator).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentSettlement {
    /// The payment.
    pub payment_id: awx_types::LedgerId,
}

/// A captured payment's settlement on chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemSettlement {
    /// `queued` (waiting for its authorization to expire, or for its group to be due),
    /// `batched` (in a net transfer not confirmed yet), `settled` (paid on chain by a net
    /// transfer) or `settled_externally` (the provider submitted the authorization itself).
    pub state: String,
    /// The latest time it is paid on chain (Unix seconds).
    pub settle_by_unix: i64,
    /// The net transfer carrying it (`stl_…`).
    pub settlement_id: Option<awx_types::SettlementId>,
    /// The batch the net transfer is (or was confirmed) in.
    pub batch_id: Option<uuid::Uuid>,
    /// The transaction that paid it.
    pub tx_hash: Option<B256>,
    /// When it was paid (Unix seconds).
    pub settled_at_unix: Option<i64>,
    /// Why its last attempt failed.
    pub error: Option<String>,
}

impl Command for PaymentSettlement {
    const FAMILY: &'static str = FAMILY;
    const NAME: &'static str = "settlement.payment";
    const KIND: awx_bus::Kind = awx_bus::Kind::Query;
    type Reply = Option<ItemSettlement>;
}

/// A provider's net settlements, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListSettlements {
    /// The provider's account.
    pub provider: AccountId,
    /// At most this many (1 to 100).
    pub limit: u32,
    /// Only settlements older than this one (the previous page's last id).
    pub starting_after: Option<awx_types::SettlementId>,
}

/// One net transfer to a provider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SettlementView {
    /// The net transfer.
    pub id: awx_types::SettlementId,
    /// The CAIP-2 network.
    pub network: String,
    /// The token.
    pub token: Address,
    /// The agent's wallet that pays.
    pub payer: Address,
    /// The payee.
    pub payee: Address,
    /// The sum, atomic units.
    pub amount: Amount,
    /// `planned`, `signed` (waiting for or in a batch), `confirmed` or `flagged` (failed too
    /// often; an operator looks at it).
    pub state: String,
    /// The batch transaction, once confirmed.
    pub tx_hash: Option<B256>,
    /// Failed attempts.
    pub attempts: i32,
    /// Why the last attempt failed.
    pub error: Option<String>,
    /// The provider's payments it covers.
    pub payments: Vec<awx_types::LedgerId>,
    /// When it was planned (Unix seconds).
    pub created_at_unix: i64,
}

/// The answer to [`ListSettlements`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SettlementList {
    /// The page.
    pub settlements: Vec<SettlementView>,
    /// Whether older settlements follow.
    pub has_more: bool,
}

impl Command for ListSettlements {
    const FAMILY: &'static str = FAMILY;
    const NAME: &'static str = "settlement.list";
    const KIND: awx_bus::Kind = awx_bus::Kind::Query;
    type Reply = SettlementList;
}

/// Whether an EIP-3009 authorization was used on chain (`authorizationState`), and by which
/// transaction (its `AuthorizationUsed` log). The policy service asks before it releases an
/// expired authorization's funds: only a nonce the chain shows unused after `validBefore` may be
/// released. A chain that cannot be read is the rejection `chain_unavailable`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthorizationState {
    /// The CAIP-2 network.
    pub network: String,
    /// The token.
    pub token: Address,
    /// The authorizer (an agent's wallet).
    pub payer: Address,
    /// The nonce.
    pub nonce: B256,
}

/// The answer to [`AuthorizationState`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthorizationStatus {
    /// Whether the nonce is used (or canceled) on chain.
    pub used: bool,
    /// The transaction that used it, when its log was found.
    pub tx_hash: Option<B256>,
}

impl Command for AuthorizationState {
    const FAMILY: &'static str = FAMILY;
    const NAME: &'static str = "settlement.authorization_state";
    const KIND: awx_bus::Kind = awx_bus::Kind::Query;
    type Reply = AuthorizationStatus;
}

/// Records a payment of one of our agents that was paid on chain by someone else (its
/// authorization submitted by another facilitator): its item is queued as `settled_externally`
/// by `tx_hash`, so the ledger's payout is posted and the platform's fee is collected, and it is
/// never netted. Idempotent by payment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordExternal {
    /// The capture.
    pub captured: crate::policy::Captured,
    /// The transaction that used the authorization.
    pub tx_hash: B256,
}

/// The answer to [`RecordExternal`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExternalRecorded {
    /// Whether the item was new.
    pub inserted: bool,
}

impl Command for RecordExternal {
    const FAMILY: &'static str = FAMILY;
    const NAME: &'static str = "settlement.record_external";
    const KIND: awx_bus::Kind = awx_bus::Kind::Change;
    type Reply = ExternalRecorded;
}
