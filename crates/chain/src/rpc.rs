//! The chain reads and writes the settlement service needs beyond a token's own functions:
//! code at an address, the block number, account nonces, gas and fee estimates, raw transaction
//! broadcast, receipts, and where an EIP-3009 authorization was used.

use alloy::network::TransactionBuilder as _;
use alloy::primitives::{Address, B256, Bytes};
use alloy::providers::{DynProvider, Provider};
use alloy::rpc::types::{Filter, TransactionReceipt, TransactionRequest};
use alloy::sol_types::SolEvent as _;

use crate::ChainError;
use crate::provider::RpcOptions;
use crate::revert::RevertKind;
use crate::token::{Eip3009Token, Token};

/// Why a raw transaction was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// The node already has this transaction (a re-send): not an error for the sender.
    #[error("the node already knows this transaction")]
    AlreadyKnown,
    /// The nonce is already used on chain.
    #[error("nonce too low: {0}")]
    NonceTooLow(String),
    /// Any other refusal or transport failure.
    #[error("send failed: {0}")]
    Other(String),
}

/// A read-write client of one chain.
#[derive(Debug, Clone)]
pub struct ChainClient {
    provider: DynProvider,
}

fn rpc_error(error: impl std::fmt::Display) -> ChainError {
    ChainError::Rpc(error.to_string())
}

impl ChainClient {
    /// A client on `endpoint`, its calls bounded by [`RpcOptions::default`].
    pub fn connect(endpoint: &str) -> Result<Self, ChainError> {
        Self::connect_with_options(endpoint, RpcOptions::default())
    }

    /// A client on `endpoint`, its calls bounded by `options`.
    pub fn connect_with_options(endpoint: &str, options: RpcOptions) -> Result<Self, ChainError> {
        Ok(Self { provider: crate::provider::connect_with_options(endpoint, options)? })
    }

    /// The provider, for bindings.
    pub fn provider(&self) -> &DynProvider {
        &self.provider
    }

    /// The token at `address`.
    pub fn token(&self, address: Address) -> Token {
        Token::at(address, self.provider.clone())
    }

    /// The chain id the node reports.
    pub async fn chain_id(&self) -> Result<u64, ChainError> {
        self.provider.get_chain_id().await.map_err(rpc_error)
    }

    /// The number of the latest block.
    pub async fn block_number(&self) -> Result<u64, ChainError> {
        self.provider.get_block_number().await.map_err(rpc_error)
    }

    /// The bytecode at `address` (empty for an externally owned account).
    pub async fn code(&self, address: Address) -> Result<Bytes, ChainError> {
        self.provider.get_code_at(address).await.map_err(rpc_error)
    }

    /// The account's nonce including pending transactions.
    pub async fn pending_nonce(&self, address: Address) -> Result<u64, ChainError> {
        self.provider.get_transaction_count(address).pending().await.map_err(rpc_error)
    }

    /// The gas a call would use, or why it would revert.
    pub async fn estimate_gas(
        &self,
        from: Address,
        to: Address,
        input: Bytes,
    ) -> Result<u64, ChainError> {
        let request = TransactionRequest::default().with_from(from).with_to(to).with_input(input);
        self.provider.estimate_gas(request).await.map_err(|error| {
            let message = error.to_string();
            if message.contains("revert") {
                ChainError::Reverted { kind: RevertKind::classify(&message), message }
            } else {
                ChainError::Rpc(message)
            }
        })
    }

    /// EIP-1559 fees: (max fee per gas, max priority fee per gas).
    pub async fn fees(&self) -> Result<(u128, u128), ChainError> {
        let estimate = self.provider.estimate_eip1559_fees().await.map_err(rpc_error)?;
        Ok((estimate.max_fee_per_gas, estimate.max_priority_fee_per_gas))
    }

    /// Broadcasts a signed transaction.
    pub async fn send_raw(&self, raw: &[u8]) -> Result<B256, SendError> {
        match self.provider.send_raw_transaction(raw).await {
            Ok(pending) => Ok(*pending.tx_hash()),
            Err(error) => {
                let message = error.to_string();
                let lower = message.to_ascii_lowercase();
                if lower.contains("already known") || lower.contains("already imported") {
                    Err(SendError::AlreadyKnown)
                } else if lower.contains("nonce too low") || lower.contains("nonce is too low") {
                    Err(SendError::NonceTooLow(message))
                } else {
                    Err(SendError::Other(message))
                }
            }
        }
    }

    /// The receipt of `hash`, once mined.
    pub async fn receipt(&self, hash: B256) -> Result<Option<TransactionReceipt>, ChainError> {
        self.provider.get_transaction_receipt(hash).await.map_err(rpc_error)
    }

    /// The hash of the transaction that used `authorizer`'s EIP-3009 `nonce` on `token` (its
    /// `AuthorizationUsed` log, searched from `from_block` to the latest block), or `None` when
    /// no such log exists (also when `from_block` is past the latest block, which nodes refuse
    /// to search). A canceled authorization has no such log.
    pub async fn authorization_used_tx(
        &self,
        token: Address,
        authorizer: Address,
        nonce: B256,
        from_block: u64,
    ) -> Result<Option<B256>, ChainError> {
        let latest = self.block_number().await?;
        if from_block > latest {
            return Ok(None);
        }
        let filter = Filter::new()
            .address(token)
            .event_signature(Eip3009Token::AuthorizationUsed::SIGNATURE_HASH)
            .topic1(authorizer.into_word())
            .topic2(nonce)
            .from_block(from_block)
            .to_block(latest);
        let logs = self.provider.get_logs(&filter).await.map_err(rpc_error)?;
        Ok(logs.iter().find_map(|log| log.transaction_hash))
    }
}
