//! The signer's commands (family `signer`). The signer holds keys (encrypted at rest) and has no
//! listening port: it is reached only through these commands.
//!
//! Relayer keys pay gas for settlement transactions. The signer signs a transaction only when it
//! calls a contract on the allow-list of its chain (the tokens, and the batch contract), moves no
//! native value, and is sent from one of its relayers. Each request has an id: the signer keeps a
//! signing log, returns the same signed transaction for a repeated id, and refuses the id with
//! different contents.
//!
//! Agent wallets are keys the signer creates per agent ([`CreateWallet`], idempotent). An agent's
//! wallet signs EIP-3009 `TransferWithAuthorization`s ([`SignAuthorization`]) only against a
//! valid, unexpired decision of the policy service (a JWT, `awx-decision`) that binds exactly the
//! fields of the request; a payment id and a wallet's nonce are signed at most once.

use awx_bus::Command;
use awx_types::{AgentId, PaymentId};
use awx_x402::{Address, B256, Bytes, Eip3009Authorization};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The command family (request stream) of the signer.
pub const FAMILY: &str = "signer";

/// Stable codes of the signer's rejections.
pub mod codes {
    /// The `to` address is not an allowed contract on the chain.
    pub const CONTRACT_NOT_ALLOWED: &str = "contract_not_allowed";
    /// The `from` address is not one of the signer's relayers.
    pub const UNKNOWN_RELAYER: &str = "unknown_relayer";
    /// The request id was used for a different request.
    pub const REQUEST_CONFLICT: &str = "request_conflict";
    /// The request is malformed (native value, zero gas, …).
    pub const INVALID_REQUEST: &str = "invalid_request";
    /// The policy decision is missing, malformed, expired, or not signed by the policy service's
    /// key (or the signer has no policy key configured).
    pub const DECISION_INVALID: &str = "decision_invalid";
    /// A field of the request differs from the decision's claims; the message names the field.
    pub const DECISION_MISMATCH: &str = "decision_mismatch";
    /// `from` is not this agent's wallet.
    pub const UNKNOWN_WALLET: &str = "unknown_wallet";
    /// The payment id was signed before with different contents (the same request again gets
    /// the same signature).
    pub const PAYMENT_ALREADY_SIGNED: &str = "payment_already_signed";
    /// The wallet already signed this nonce (on this chain and token) for another payment.
    pub const NONCE_ALREADY_SIGNED: &str = "nonce_already_signed";
    /// A payment of a net transfer is already part of another signed net transfer of its kind.
    pub const PAYMENT_ALREADY_NETTED: &str = "payment_already_netted";
    /// A payment of a net transfer was never signed by this wallet on this chain and token.
    pub const UNKNOWN_PAYMENT: &str = "unknown_payment";
}

/// An EIP-1559 transaction to sign with a relayer key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignTransaction {
    /// The caller's id for this signing (a settlement transaction id): the idempotency key.
    pub request_id: Uuid,
    /// The chain id.
    pub chain_id: u64,
    /// The relayer that sends it.
    pub from: Address,
    /// The contract called.
    pub to: Address,
    /// The calldata.
    pub input: Bytes,
    /// The relayer's nonce.
    pub nonce: u64,
    /// The gas limit.
    pub gas_limit: u64,
    /// The fee cap per gas (wei).
    pub max_fee_per_gas: u128,
    /// The priority fee per gas (wei).
    pub max_priority_fee_per_gas: u128,
}

/// A signed transaction, ready to broadcast.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedTransaction {
    /// The EIP-2718 encoded transaction (`eth_sendRawTransaction`'s argument).
    pub raw: Bytes,
    /// Its hash.
    pub hash: B256,
}

impl Command for SignTransaction {
    const FAMILY: &'static str = FAMILY;
    const NAME: &'static str = "signer.sign_transaction";
    const KIND: awx_bus::Kind = awx_bus::Kind::Change;
    type Reply = SignedTransaction;
}

/// The relayer addresses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Relayers {}

/// The answer to [`Relayers`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelayersReply {
    /// Every relayer address, oldest first.
    pub relayers: Vec<Address>,
}

impl Command for Relayers {
    const FAMILY: &'static str = FAMILY;
    const NAME: &'static str = "signer.relayers";
    const KIND: awx_bus::Kind = awx_bus::Kind::Query;
    type Reply = RelayersReply;
}

/// Creates the wallet of an agent (idempotent: the same agent gets the same address).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateWallet {
    /// The agent.
    pub agent_id: AgentId,
}

/// The answer to [`CreateWallet`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WalletReply {
    /// The agent's wallet address.
    pub address: Address,
}

impl Command for CreateWallet {
    const FAMILY: &'static str = FAMILY;
    const NAME: &'static str = "signer.create_wallet";
    const KIND: awx_bus::Kind = awx_bus::Kind::Change;
    type Reply = WalletReply;
}

/// Signs an EIP-3009 TransferWithAuthorization from an agent's wallet, only against a valid
/// decision of the policy service that binds exactly these fields.
///
/// The payment id is the idempotency key: the same request again gets the same signature; the
/// payment id with other contents is refused (`payment_already_signed`), and so is a nonce the
/// wallet signed for another payment (`nonce_already_signed`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignAuthorization {
    /// The payment (the decision's `jti`).
    pub payment_id: PaymentId,
    /// The agent (the decision's `sub`).
    pub agent_id: AgentId,
    /// The chain id of the token's EIP-712 domain.
    pub chain_id: u64,
    /// The token contract (the domain's `verifyingContract`).
    pub token: Address,
    /// The token's EIP-712 name.
    pub token_name: String,
    /// The token's EIP-712 version.
    pub token_version: String,
    /// The message: `from` must be the agent's wallet.
    pub authorization: Eip3009Authorization,
    /// The policy service's decision: a compact JWT (EdDSA) binding every field above.
    pub decision: String,
}

/// The answer to [`SignAuthorization`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthorizationSigned {
    /// The signature over the EIP-712 digest: 65 bytes `r ‖ s ‖ v`, `v` 27 or 28, low `s`.
    pub signature: Bytes,
}

impl Command for SignAuthorization {
    const FAMILY: &'static str = FAMILY;
    const NAME: &'static str = "signer.sign_authorization";
    const KIND: awx_bus::Kind = awx_bus::Kind::Change;
    type Reply = AuthorizationSigned;
}

/// Signs a net transfer: one EIP-3009 `TransferWithAuthorization` from an agent's wallet for
/// the sum of captured payments (their amounts to their payee, or their fees to the platform),
/// only against a decision of the policy service whose claims bind every field and, in
/// `covers`, exactly these payments and this kind.
///
/// The transfer id is the idempotency key (the same request gets the same signature). Each
/// payment must be an authorization this wallet signed on this chain and token, and is part of at
/// most one signed net transfer of each kind, ever (`payment_already_netted`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignNetTransfer {
    /// The net transfer (the decision's `jti`).
    pub transfer_id: Uuid,
    /// What it carries.
    pub kind: crate::policy::NetKind,
    /// The agent whose wallet pays (the decision's `sub`).
    pub agent_id: AgentId,
    /// The chain id of the token's EIP-712 domain.
    pub chain_id: u64,
    /// The token contract.
    pub token: Address,
    /// The token's EIP-712 name.
    pub token_name: String,
    /// The token's EIP-712 version.
    pub token_version: String,
    /// The message: `from` must be the agent's wallet.
    pub authorization: Eip3009Authorization,
    /// The payments it covers.
    pub payment_ids: Vec<PaymentId>,
    /// The policy service's decision.
    pub decision: String,
}

impl Command for SignNetTransfer {
    const FAMILY: &'static str = FAMILY;
    const NAME: &'static str = "signer.sign_net_transfer";
    const KIND: awx_bus::Kind = awx_bus::Kind::Change;
    type Reply = AuthorizationSigned;
}
