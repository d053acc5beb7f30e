//! The signer's commands (family `signer`). The signer holds keys (encrypted at rest) and has no
//! listening port: it is reached only through these commands.
//!
//! Relayer keys pay gas for settlement transactions. The signer signs a transaction only when it
//! calls a contract on the allow-list of its chain (the tokens, and the batch contract), moves no
//! native value, and is sent from one of its relayers. Each request has an id: the signer keeps a
//! signing log, returns the same signed transaction for a repeated id, and refuses the id with
//! different contents.

use awx_bus::Command;
use awx_x402::{Address, B256, Bytes};
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
    type Reply = RelayersReply;
}
