//! Token events over a range of blocks, for the chain watcher: every `Transfer` and
//! `AuthorizationUsed` log of some tokens, decoded, with where it is (block, transaction, log
//! index); and block hashes, to notice reorganisations.

use alloy::eips::BlockNumberOrTag;
use alloy::primitives::{Address, B256, U256};
use alloy::providers::Provider as _;
use alloy::rpc::types::Filter;
use alloy::sol_types::SolEvent as _;

use crate::ChainError;
use crate::rpc::ChainClient;
use crate::token::Eip3009Token;

/// What a token log says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenEvent {
    /// `Transfer(from, to, value)` (a mint is from the zero address).
    Transfer {
        /// The sender.
        from: Address,
        /// The recipient.
        to: Address,
        /// The amount, atomic units.
        value: U256,
    },
    /// `AuthorizationUsed(authorizer, nonce)`: an EIP-3009 authorization was used.
    AuthorizationUsed {
        /// The authorizer.
        authorizer: Address,
        /// The nonce.
        nonce: B256,
    },
}

/// A decoded token log and where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenLog {
    /// The token.
    pub token: Address,
    /// The block number.
    pub block_number: u64,
    /// The block hash.
    pub block_hash: B256,
    /// The transaction.
    pub tx_hash: B256,
    /// The log's index in its block.
    pub log_index: u64,
    /// What it says.
    pub event: TokenEvent,
}

fn rpc_error(error: impl std::fmt::Display) -> ChainError {
    ChainError::Rpc(error.to_string())
}

impl ChainClient {
    /// Every `Transfer` and `AuthorizationUsed` log of `tokens` in blocks `from..=to`, in chain
    /// order. Logs of removed (reorganised) blocks, and logs that do not decode, are left out.
    pub async fn token_logs(
        &self,
        tokens: &[Address],
        from: u64,
        to: u64,
    ) -> Result<Vec<TokenLog>, ChainError> {
        if tokens.is_empty() || from > to {
            return Ok(Vec::new());
        }
        let filter = Filter::new()
            .address(tokens.to_vec())
            .event_signature(vec![
                Eip3009Token::Transfer::SIGNATURE_HASH,
                Eip3009Token::AuthorizationUsed::SIGNATURE_HASH,
            ])
            .from_block(from)
            .to_block(to);
        let logs = self.provider().get_logs(&filter).await.map_err(rpc_error)?;
        let mut decoded = Vec::with_capacity(logs.len());
        for log in logs {
            if log.removed {
                continue;
            }
            let (Some(block_number), Some(block_hash), Some(tx_hash), Some(log_index)) =
                (log.block_number, log.block_hash, log.transaction_hash, log.log_index)
            else {
                return Err(ChainError::Node("a mined log without its position".into()));
            };
            let event = if let Ok(transfer) = Eip3009Token::Transfer::decode_log_data(log.data()) {
                TokenEvent::Transfer { from: transfer.from, to: transfer.to, value: transfer.value }
            } else if let Ok(used) = Eip3009Token::AuthorizationUsed::decode_log_data(log.data()) {
                TokenEvent::AuthorizationUsed { authorizer: used.authorizer, nonce: used.nonce }
            } else {
                continue;
            };
            decoded.push(TokenLog {
                token: log.address(),
                block_number,
                block_hash,
                tx_hash,
                log_index,
                event,
            });
        }
        decoded.sort_by_key(|log| (log.block_number, log.log_index));
        Ok(decoded)
    }

    /// The hash of block `number`, or `None` when the chain has no such block yet.
    pub async fn block_hash(&self, number: u64) -> Result<Option<B256>, ChainError> {
        let block = self
            .provider()
            .get_block_by_number(BlockNumberOrTag::Number(number))
            .await
            .map_err(rpc_error)?;
        Ok(block.map(|block| block.header.hash))
    }
}
