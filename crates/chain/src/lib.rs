//! Chain I/O for awx, and the development chain.
//!
//! - [`provider`]: JSON-RPC providers over HTTP (alloy), with or without a signing wallet, every
//!   call bounded in time ([`RpcOptions`]).
//! - [`token`]: our EIP-3009 token (`contracts/src/TestUSDC.sol`, deployed from the committed
//!   artifacts) and any EIP-3009 token: reads, minting, `transferWithAuthorization` with the
//!   overload chosen by signature length, simulation, and `Transfer` log checks.
//! - [`batch`]: batches of calls in one transaction through Multicall3's `aggregate3`, and our
//!   `Multicall3` (`contracts/src/Multicall3.sol`) installed at its usual address on anvil.
//! - [`revert`]: why a call reverted, in the terms the x402 facilitators use.
//! - [`rpc`]: code, block number, nonces, gas and fee estimates, raw broadcast, receipts, and the
//!   transaction that used an EIP-3009 authorization.
//! - [`anvil`]: a local anvil node on a free loopback port, for tests and `make run`.
//!
//! This is the only crate that talks to a chain.

pub mod anvil;
pub mod batch;
pub mod logs;
pub mod provider;
pub mod revert;
pub mod rpc;
pub mod token;

/// A mined transaction's receipt.
pub use alloy::rpc::types::TransactionReceipt;
pub use anvil::{Anvil, AnvilOptions, find_tool};
pub use batch::{
    Call3, CallResult, MULTICALL3_ADDRESS, aggregate3_calldata, decode_aggregate3_results,
    install_multicall3,
};
pub use logs::{TokenEvent, TokenLog};
pub use provider::{
    RpcOptions, connect, connect_with_options, connect_with_wallet,
    connect_with_wallet_and_options, send_native,
};
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
