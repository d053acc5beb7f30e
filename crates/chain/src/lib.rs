//! Chain I/O for awx, and the development chain.
//!
//! - [`provider`]: JSON-RPC providers over HTTP (alloy), with or without a signing wallet.
//! - [`token`]: our EIP-3009 token (`contracts/src/TestUSDC.sol`, deployed from the committed
//!   artifacts) and any EIP-3009 token: reads, minting, `transferWithAuthorization` with the
//!   overload chosen by signature length, simulation, and `Transfer` log checks.
//! - [`revert`]: why a call reverted, in the terms the x402 facilitators use.
//! - [`rpc`]: code, nonces, gas and fee estimates, raw broadcast and receipts.
//! - [`anvil`]: a local anvil node on a free loopback port, for tests and `make run`.
//!
//! This is the only crate that talks to a chain.

pub mod anvil;
pub mod provider;
pub mod revert;
pub mod rpc;
pub mod token;

/// A mined transaction's receipt.
pub use alloy::rpc::types::TransactionReceipt;
pub use anvil::{Anvil, AnvilOptions, find_tool};
pub use provider::{connect, connect_with_wallet, send_native};
pub use revert::RevertKind;
pub use rpc::{ChainClient, SendError};
pub use token::{
    Token, TransferOverload, deploy_test_smart_wallet, deploy_test_usdc, smart_wallet_signature,
};

/// Errors of chain I/O.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    /// The node could not be started or gave an unusable answer.
    #[error("chain node: {0}")]
    Node(String),
    /// The RPC call failed (transport or node error).
    #[error("chain RPC: {0}")]
    Rpc(String),
    /// The call reverted.
    #[error("reverted ({kind:?}): {message}")]
    Reverted {
        /// The cause, classified.
        kind: RevertKind,
        /// The node's message.
        message: String,
    },
    /// A signature could not be used.
    #[error("signature: {0}")]
    Signature(String),
}
