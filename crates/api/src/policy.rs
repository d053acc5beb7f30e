//! The policy service's commands (family `policy`): agents and their wallets, spending policies,
//! sessions, payments from request to capture, approvals, and the facilitator's questions about
//! payments our own agents made.
//!
//! Money in these messages is shown as human decimal strings (`"0.10"`): policy limits and session
//! budgets in US dollars, payment amounts in the token's units. Ids are minted by the caller (the
//! gateway), so a retried command is the same agent, session or payment.

use awx_bus::Command;
use awx_types::{AccountId, AgentId, LedgerId, PaymentId, SessionId};
use awx_x402::{
    Address, B256, PaymentPayload, PaymentRequired, PaymentRequirements, SettleResponse,
    VerifyResponse,
};
use serde::{Deserialize, Serialize};

/// The command family (request stream) of the policy service.
pub const FAMILY: &str = "policy";

/// Stable codes of the policy service's rejections. A denial by a rule is rejected with the
/// rule's own name as its code (`policy.per_payment_max`, `session.budget_limit`, …; see
/// [`codes::is_rule`]).
pub mod codes {
    /// The request is malformed (the message says how).
    pub const INVALID_REQUEST: &str = "invalid_request";
    /// No such agent in the account (or it was deleted).
    pub const AGENT_NOT_FOUND: &str = "agent_not_found";
    /// No such session in the account.
    pub const SESSION_NOT_FOUND: &str = "session_not_found";
    /// No such payment in the account.
    pub const PAYMENT_NOT_FOUND: &str = "payment_not_found";
    /// The challenge has no offer the platform can pay.
    pub const NO_PAYABLE_OFFER: &str = "no_payable_offer";
    /// The challenge has no payable offer on the requested chain.
    pub const CHAIN_NOT_OFFERED: &str = "chain_not_offered";
    /// The agent's wallet cannot cover amount plus fee.
    pub const INSUFFICIENT_FUNDS: &str = "insufficient_funds";
    /// The payment is not in a state that allows this (approving or rejecting a payment that is
    /// not `pending_approval`, say); the message names its state.
    pub const PAYMENT_STATE: &str = "payment_state";
    /// The session is not in a state that allows this (revoking a session already revoked or
    /// expired); the message names its state.
    pub const SESSION_STATE: &str = "session_state";
    /// The agent is not in a state that allows this (deleting an agent already deleted, or
    /// approving a payment of an agent deleted while it waited).
    pub const AGENT_STATE: &str = "agent_state";
    /// The signer refused what the policy service decided (a fault on the platform's side, such
    /// as keys out of step); nothing stays reserved.
    pub const SIGNER_REFUSED: &str = "signer_refused";
    /// The signer did not answer in time; nothing stays reserved.
    pub const SIGNER_UNAVAILABLE: &str = "signer_unavailable";
    /// The ledger did not answer in time; nothing stays reserved.
    pub const LEDGER_UNAVAILABLE: &str = "ledger_unavailable";
    /// The settlement service did not record a new agent's wallet in time; the agent was not
    /// created (retry with the same id).
    pub const SETTLEMENT_UNAVAILABLE: &str = "settlement_unavailable";
    /// The id was used before for something else.
    pub const CONFLICT: &str = "conflict";
    /// The withdrawal's address is not on the account's withdrawal allow-list.
    pub const WITHDRAWAL_ADDRESS_NOT_ALLOWED: &str = "withdrawal_address_not_allowed";

    /// Whether `code` names a policy or session rule (a denial), such as
    /// `policy.daily_limit` or `session.expired`.
    pub fn is_rule(code: &str) -> bool {
        code.starts_with("policy.") || code.starts_with("session.")
    }
}

/// A spending policy as set by an admin. Limits are US dollars as decimal strings; an absent
/// limit or an empty list does not restrict.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyView {
    /// The most one payment may be.
    pub per_payment_max: Option<String>,
    /// The most the agent may pay in any rolling 24 hours.
    pub daily_limit: Option<String>,
    /// The CAIP-2 chains the agent may pay on.
    pub allowed_chains: Vec<String>,
    /// URL or domain patterns the agent may pay (`https://api.example.com/v1/*`,
    /// `*.example.com`).
    pub allowed_urls: Vec<String>,
    /// The only payees the agent may pay.
    pub payee_allowlist: Vec<Address>,
    /// Payments above this wait for an admin's approval.
    pub approval_threshold: Option<String>,
}

/// An agent and its wallet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentView {
    /// The agent.
    pub id: AgentId,
    /// Its name.
    pub name: String,
    /// Its wallet address (the key is held by the signer).
    pub address: Address,
    /// The chain used when a payment names none.
    pub default_chain: String,
    /// `active` or `deleted`.
    pub status: String,
    /// Its policy.
    pub policy: PolicyView,
    /// When it was created (Unix seconds).
    pub created_at_unix: i64,
}

/// Creates an agent and has the signer create its wallet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateAgent {
    /// The tenant.
    pub owner: AccountId,
    /// The new agent's id (minted by the caller).
    pub agent_id: AgentId,
    /// A name for people.
    pub name: String,
    /// The default chain; the service's default when absent.
    pub default_chain: Option<String>,
    /// The initial policy; open when absent.
    pub policy: Option<PolicyView>,
}

impl Command for CreateAgent {
    const FAMILY: &'static str = FAMILY;
    const NAME: &'static str = "policy.agent.create";
    const KIND: awx_bus::Kind = awx_bus::Kind::Change;
    type Reply = AgentView;
}

/// One agent of the account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GetAgent {
    /// The tenant.
    pub owner: AccountId,
    /// The agent.
    pub agent_id: AgentId,
}

impl Command for GetAgent {
    const FAMILY: &'static str = FAMILY;
    const NAME: &'static str = "policy.agent.get";
    const KIND: awx_bus::Kind = awx_bus::Kind::Query;
    type Reply = AgentView;
}

/// The account's agents, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListAgents {
    /// The tenant.
    pub owner: AccountId,
}

/// The answer to [`ListAgents`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentList {
    /// The agents that are not deleted.
    pub agents: Vec<AgentView>,
}

impl Command for ListAgents {
    const FAMILY: &'static str = FAMILY;
    const NAME: &'static str = "policy.agent.list";
    const KIND: awx_bus::Kind = awx_bus::Kind::Query;
    type Reply = AgentList;
}

/// Deletes an agent: it can no longer pay, and its sessions are revoked. Its wallet and its
/// payments stay.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteAgent {
    /// The tenant.
    pub owner: AccountId,
    /// The agent.
    pub agent_id: AgentId,
}

impl Command for DeleteAgent {
    const FAMILY: &'static str = FAMILY;
    const NAME: &'static str = "policy.agent.delete";
    const KIND: awx_bus::Kind = awx_bus::Kind::Change;
    type Reply = AgentView;
}

/// Replaces an agent's policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetPolicy {
    /// The tenant.
    pub owner: AccountId,
    /// The agent.
    pub agent_id: AgentId,
    /// The new policy.
    pub policy: PolicyView,
}

impl Command for SetPolicy {
    const FAMILY: &'static str = FAMILY;
    const NAME: &'static str = "policy.policy.set";
    const KIND: awx_bus::Kind = awx_bus::Kind::Change;
    type Reply = AgentView;
}

/// A session: a budget for an agent on one chain, for a while, for some URLs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionView {
    /// The session.
    pub id: SessionId,
    /// Its agent.
    pub agent_id: AgentId,
    /// The budget, in dollars.
    pub budget_limit: String,
    /// Paid so far (signed payments), in dollars.
    pub spent: String,
    /// Reserved by payments in flight or waiting for approval, in dollars.
    pub reserved: String,
    /// What is left to pay, in dollars.
    pub remaining: String,
    /// The chain.
    pub chain: String,
    /// The URL patterns it may pay (any when empty).
    pub allowed_urls: Vec<String>,
    /// `active`, `exhausted`, `expired` or `revoked`.
    pub status: String,
    /// When it expires (Unix seconds).
    pub expires_at_unix: i64,
    /// When it was created (Unix seconds).
    pub created_at_unix: i64,
}

/// Opens a session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateSession {
    /// The tenant.
    pub owner: AccountId,
    /// The new session's id (minted by the caller).
    pub session_id: SessionId,
    /// The agent.
    pub agent_id: AgentId,
    /// The budget in dollars (`"100.00"`).
    pub budget_limit: String,
    /// The chain; the agent's default when absent.
    pub chain: Option<String>,
    /// How long it lasts.
    pub ttl_seconds: u64,
    /// URL patterns it may pay.
    pub allowed_urls: Vec<String>,
}

impl Command for CreateSession {
    const FAMILY: &'static str = FAMILY;
    const NAME: &'static str = "policy.session.create";
    const KIND: awx_bus::Kind = awx_bus::Kind::Change;
    type Reply = SessionView;
}

/// One session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GetSession {
    /// The tenant.
    pub owner: AccountId,
    /// The session.
    pub session_id: SessionId,
}

impl Command for GetSession {
    const FAMILY: &'static str = FAMILY;
    const NAME: &'static str = "policy.session.get";
    const KIND: awx_bus::Kind = awx_bus::Kind::Query;
    type Reply = SessionView;
}

/// Revokes a session: it pays nothing more (payments already signed stand).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevokeSession {
    /// The tenant.
    pub owner: AccountId,
    /// The session.
    pub session_id: SessionId,
}

impl Command for RevokeSession {
    const FAMILY: &'static str = FAMILY;
    const NAME: &'static str = "policy.session.revoke";
    const KIND: awx_bus::Kind = awx_bus::Kind::Change;
    type Reply = SessionView;
}

/// A payment as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentView {
    /// The payment's id (`ldg_…`; its hold in the ledger has the same id).
    pub ledger_id: LedgerId,
    /// The agent that pays.
    pub agent_id: AgentId,
    /// The session it was paid from.
    pub session_id: Option<SessionId>,
    /// `completed` (signed, funds held or captured), `pending` (waiting for approval or in
    /// flight) or `failed` (refused, rejected, expired: nothing is held).
    pub status: String,
    /// The detailed state: `pending_approval`, `authorizing`, `authorized`, `captured`,
    /// `settled`, `failed`, `rejected`, `expired`.
    pub state: String,
    /// The amount the provider gets, in the token's units (`"0.10"`).
    pub amount: String,
    /// The platform's fee, charged on top.
    pub fee_amount: String,
    /// The fee rate in percent (`"2.0"`).
    pub fee_rate: String,
    /// The token's symbol.
    pub token: String,
    /// The CAIP-2 chain.
    pub chain: String,
    /// The payee.
    pub pay_to: Address,
    /// What was paid for.
    pub target_url: String,
    /// The exact `PAYMENT-SIGNATURE` (v2) or `X-PAYMENT` (v1) header value for the retry,
    /// once signed.
    pub payment_signature: Option<String>,
    /// The protocol version the payment is in.
    pub x402_version: u32,
    /// The authorization is valid until (Unix seconds), once signed.
    pub valid_before_unix: Option<i64>,
    /// Why it failed, when it did: a stable code and a message.
    pub error: Option<PaymentError>,
    /// When it was created (Unix seconds).
    pub created_at_unix: i64,
}

/// Why a payment failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentError {
    /// A stable code.
    pub code: String,
    /// For people.
    pub message: String,
}

/// Pays a challenge the gateway fetched: choose the offer, check policy and session, reserve,
/// hold amount plus fee, have the signer sign. Idempotent by `payment_id`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pay {
    /// The tenant.
    pub owner: AccountId,
    /// The payment's id (minted by the caller).
    pub payment_id: PaymentId,
    /// The agent that pays.
    pub agent_id: AgentId,
    /// The session to pay from.
    pub session_id: Option<SessionId>,
    /// The chain to pay on; the session's, then the agent's default, when absent.
    pub chain: Option<String>,
    /// The URL paid for.
    pub target_url: String,
    /// The URLs the target redirected to before its challenge, in order (the last one
    /// answered it): each must pass the agent's and the session's allowed URLs too, at most
    /// [`REDIRECT_HOPS_MAX`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub redirect_hops: Vec<String>,
    /// The protocol version the server speaks (the payment is made in it).
    pub x402_version: u32,
    /// The challenge, in strict v2 form.
    pub challenge: PaymentRequired,
}

/// The most redirect hops a [`Pay`] may carry (the gateway follows at most 10).
pub const REDIRECT_HOPS_MAX: usize = 10;

impl Command for Pay {
    const FAMILY: &'static str = FAMILY;
    const NAME: &'static str = "policy.pay";
    const KIND: awx_bus::Kind = awx_bus::Kind::Change;
    type Reply = PaymentView;
}

/// One payment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GetPayment {
    /// The tenant.
    pub owner: AccountId,
    /// The payment.
    pub ledger_id: LedgerId,
}

impl Command for GetPayment {
    const FAMILY: &'static str = FAMILY;
    const NAME: &'static str = "policy.payment.get";
    const KIND: awx_bus::Kind = awx_bus::Kind::Query;
    type Reply = PaymentView;
}

/// An admin's decision on a payment waiting for approval.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decide {
    /// The tenant.
    pub owner: AccountId,
    /// The payment.
    pub ledger_id: LedgerId,
    /// Approve (then it is held and signed) or reject (then its reservation is released).
    pub approve: bool,
    /// Who decided (an API key id), for the record.
    pub decided_by: String,
    /// Why, for the record.
    pub reason: Option<String>,
}

impl Command for Decide {
    const FAMILY: &'static str = FAMILY;
    const NAME: &'static str = "policy.payment.decide";
    const KIND: awx_bus::Kind = awx_bus::Kind::Change;
    type Reply = PaymentView;
}

/// What the facilitator asks about a payment whose payer may be one of our agents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OwnAction {
    /// Is it a payment we issued, still held?
    Verify,
    /// Capture it in the ledger.
    Settle,
}

/// Verifies or settles a payment if its payer is one of our agents' wallets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OwnPayment {
    /// Verify or settle.
    pub action: OwnAction,
    /// The provider's account (recorded on capture).
    pub provider: AccountId,
    /// The payment, in v2 form.
    pub payload: PaymentPayload,
    /// The provider's requirements, in v2 form.
    pub requirements: PaymentRequirements,
}

/// The facts of a captured payment, for the settlement queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Captured {
    /// The payment.
    pub ledger_id: LedgerId,
    /// The CAIP-2 network.
    pub network: String,
    /// The token.
    pub token: Address,
    /// The agent's wallet.
    pub payer: Address,
    /// The payee.
    pub payee: Address,
    /// Atomic units.
    pub amount: String,
    /// The authorization's `validBefore` (Unix seconds).
    pub valid_before_unix: i64,
    /// The authorization's nonce.
    pub nonce: B256,
    /// When it was captured (Unix seconds).
    pub captured_at_unix: i64,
    /// The platform's fee captured with it (atomic units), moved on chain to the platform's fee
    /// address by net settlement.
    #[serde(default = "zero_text")]
    pub fee: String,
}

fn zero_text() -> String {
    "0".into()
}

/// The answer to [`OwnPayment`].
#[allow(
    clippy::large_enum_variant,
    reason = "a reply is decoded once and moved once; boxing would only add an allocation"
)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum OwnPaymentReply {
    /// The payer is not one of our wallets: the on-chain facilitator handles it.
    NotOurs,
    /// The verify answer.
    Verified {
        /// The answer.
        response: VerifyResponse,
    },
    /// The settle answer; `captured` is present when the payment is (now or already) captured.
    Settled {
        /// The answer (its `extensions` are completed by the settlement service).
        response: SettleResponse,
        /// The capture, for the settlement queue.
        captured: Option<Captured>,
        /// The payment was captured by an earlier settle: this is its stored answer again (a
        /// provider must not serve a second request with one payment).
        #[serde(default)]
        replay: bool,
    },
}

impl Command for OwnPayment {
    const FAMILY: &'static str = FAMILY;
    const NAME: &'static str = "policy.own_payment";
    const KIND: awx_bus::Kind = awx_bus::Kind::Change;
    type Reply = OwnPaymentReply;
}

/// Verifies a payment whose payer may be one of our agents' wallets: a query (it changes
/// nothing), answered [`OwnPaymentReply::NotOurs`] or [`OwnPaymentReply::Verified`]. Settling is
/// [`OwnPayment`] with [`OwnAction::Settle`], a state change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OwnVerify {
    /// The provider's account.
    pub provider: AccountId,
    /// The payment, in v2 form.
    pub payload: PaymentPayload,
    /// The provider's requirements, in v2 form.
    pub requirements: PaymentRequirements,
}

impl Command for OwnVerify {
    const FAMILY: &'static str = FAMILY;
    const NAME: &'static str = "policy.own_payment.verify";
    const KIND: awx_bus::Kind = awx_bus::Kind::Query;
    type Reply = OwnPaymentReply;
}

/// What a net transfer carries for the payments it covers: their amounts to the payee, or their
/// fees to the platform's fee address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NetKind {
    /// The payments' amounts, to their payee.
    Payee,
    /// The payments' fees, to the platform.
    Fee,
    /// A withdrawal from the agent's wallet to an outside address (`payment_ids` is the
    /// withdrawal's own id, which is also the transfer id and its ledger hold's id).
    Withdrawal,
}

impl NetKind {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Payee => "payee",
            Self::Fee => "fee",
            Self::Withdrawal => "withdrawal",
        }
    }
}

/// Asks the policy service for a decision binding one net transfer: a new EIP-3009
/// authorization from an agent's wallet for the sum of captured payments (their amounts to their
/// payee, or their fees). The policy service checks that every payment is captured, was paid from
/// `authorization.from` on `chain_id` in `token`, goes to `authorization.to` (for `Payee`), and
/// that the amounts (or fees) add up to `authorization.value` exactly; then it signs a decision
/// (`awx-decision`, with `covers`) the signer will accept for exactly this transfer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetDecide {
    /// The net transfer (the decision's `jti`, and the signer's request id).
    pub transfer_id: uuid::Uuid,
    /// What it carries.
    pub kind: NetKind,
    /// The chain id.
    pub chain_id: u64,
    /// The token.
    pub token: Address,
    /// The authorization to bind.
    pub authorization: awx_x402::Eip3009Authorization,
    /// The payments covered (ledger ids).
    pub payment_ids: Vec<LedgerId>,
}

/// The answer to [`NetDecide`]: the decision and what the signer needs with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetDecision {
    /// The compact JWT.
    pub decision: String,
    /// The agent whose wallet pays.
    pub agent_id: AgentId,
    /// The token's EIP-712 name.
    pub token_name: String,
    /// The token's EIP-712 version.
    pub token_version: String,
}

impl Command for NetDecide {
    const FAMILY: &'static str = FAMILY;
    const NAME: &'static str = "policy.net_decide";
    const KIND: awx_bus::Kind = awx_bus::Kind::Change;
    type Reply = NetDecision;
}

/// Asks the policy service to approve a withdrawal and bind it in a decision: the agent is the
/// owner's and not deleted, `authorization.from` is its wallet, `authorization.to` is on the
/// owner's withdrawal allow-list (when it has one), and the ledger holds `authorization.value`
/// on the wallet (`HoldWithdrawal`, idempotent by the withdrawal id) for `hold_seconds`. Then it
/// signs a decision (with `covers` = kind `withdrawal` over the withdrawal id) the signer accepts
/// for exactly this transfer (`SignNetTransfer` of kind `Withdrawal`).
///
/// Rejections: `agent_not_found`, `withdrawal_address_not_allowed`, `insufficient_funds` (and
/// nothing is held), `invalid_request`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WithdrawDecide {
    /// The withdrawal (the decision's `jti`, the signer's transfer id, the ledger hold's id).
    pub withdrawal_id: LedgerId,
    /// The tenant.
    pub owner: AccountId,
    /// The agent.
    pub agent: AgentId,
    /// The CAIP-2 network.
    pub network: String,
    /// The token.
    pub token: Address,
    /// The token's decimals.
    pub decimals: u8,
    /// The authorization to bind: from the agent's wallet to the outside address.
    pub authorization: awx_x402::Eip3009Authorization,
    /// How long the ledger holds the amount unless the withdrawal is confirmed or released.
    pub hold_seconds: u32,
}

impl Command for WithdrawDecide {
    const FAMILY: &'static str = FAMILY;
    const NAME: &'static str = "policy.withdraw_decide";
    const KIND: awx_bus::Kind = awx_bus::Kind::Change;
    type Reply = NetDecision;
}

/// Replaces an account's withdrawal allow-list: withdrawals may go only to these addresses.
/// An empty list allows any address. At most [`WITHDRAWAL_ADDRESSES_MAX`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetWithdrawalAddresses {
    /// The tenant.
    pub owner: AccountId,
    /// The addresses.
    pub addresses: Vec<Address>,
}

/// The most addresses on a withdrawal allow-list.
pub const WITHDRAWAL_ADDRESSES_MAX: usize = 100;

/// An account's withdrawal allow-list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WithdrawalAddresses {
    /// The addresses (empty: any address).
    pub addresses: Vec<Address>,
}

impl Command for SetWithdrawalAddresses {
    const FAMILY: &'static str = FAMILY;
    const NAME: &'static str = "policy.withdrawal_addresses.set";
    const KIND: awx_bus::Kind = awx_bus::Kind::Change;
    type Reply = WithdrawalAddresses;
}

/// Reads an account's withdrawal allow-list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GetWithdrawalAddresses {
    /// The tenant.
    pub owner: AccountId,
}

impl Command for GetWithdrawalAddresses {
    const FAMILY: &'static str = FAMILY;
    const NAME: &'static str = "policy.withdrawal_addresses.get";
    const KIND: awx_bus::Kind = awx_bus::Kind::Query;
    type Reply = WithdrawalAddresses;
}

/// Which of `addresses` are agents' wallets, and whose (the chain watcher asks for the addresses
/// a range of blocks touched). Deleted agents' wallets are included: money sent to them is still
/// theirs. At most [`LOOKUP_WALLETS_MAX`] addresses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LookupWallets {
    /// The addresses.
    pub addresses: Vec<Address>,
}

/// The most addresses one [`LookupWallets`] names.
pub const LOOKUP_WALLETS_MAX: usize = 10_000;

/// An agent's wallet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WalletOwner {
    /// The wallet address.
    pub address: Address,
    /// The tenant.
    pub owner: AccountId,
    /// The agent.
    pub agent: AgentId,
}

/// The answer to [`LookupWallets`]: the addresses that are wallets (others are left out).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WalletOwners {
    /// The wallets found.
    pub wallets: Vec<WalletOwner>,
}

impl Command for LookupWallets {
    const FAMILY: &'static str = FAMILY;
    const NAME: &'static str = "policy.wallets.lookup";
    const KIND: awx_bus::Kind = awx_bus::Kind::Query;
    type Reply = WalletOwners;
}

/// The chain watcher saw `AuthorizationUsed(payer, nonce)` of an agent's wallet in a transaction
/// awx did not send: someone (a provider, another facilitator) submitted the authorization. The
/// policy service marks the payment with that nonce paid by `tx_hash`: an `authorized` payment
/// is captured, and the settlement service records its item as settled externally, so it is
/// never netted. Idempotent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthorizationUsed {
    /// The CAIP-2 network.
    pub network: String,
    /// The token.
    pub token: Address,
    /// The agent's wallet.
    pub payer: Address,
    /// The nonce.
    pub nonce: B256,
    /// The transaction that used it.
    pub tx_hash: B256,
}

/// What [`AuthorizationUsed`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthorizationUse {
    /// No payment of this wallet has that nonce: awx never issued it (a misused key).
    Unknown,
    /// The payment was authorized: it is now captured and recorded as paid by the transaction.
    Captured,
    /// The payment was already captured: it is recorded as paid by the transaction.
    Recorded,
    /// The payment is in a state where no authorization should be usable (not yet signed,
    /// released, failed): an operator must look at it.
    Unexpected,
}

/// The answer to [`AuthorizationUsed`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthorizationUsedReply {
    /// The payment with that nonce, if any.
    pub payment_id: Option<LedgerId>,
    /// What was done.
    pub outcome: AuthorizationUse,
}

impl Command for AuthorizationUsed {
    const FAMILY: &'static str = FAMILY;
    const NAME: &'static str = "policy.authorization_used";
    const KIND: awx_bus::Kind = awx_bus::Kind::Change;
    type Reply = AuthorizationUsedReply;
}

/// A payment of one of our agents was captured for a provider (event `payment.captured`, from
/// the policy service's outbox, written in the capture's transaction). The settlement service
/// queues its item from it, so a capture never loses its settlement item, whatever happens to
/// the settle call's reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentCaptured {
    /// The provider that settled it (`None` when the capture was found after its settle's answer
    /// was lost).
    pub provider: Option<AccountId>,
    /// The capture.
    pub captured: Captured,
}

impl awx_bus::Event for PaymentCaptured {
    const TOPIC: &'static str = "payment.captured";
}
