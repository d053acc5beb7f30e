//! Providers: JSON-RPC over HTTP, with or without a wallet that signs transactions.
//!
//! Every call is bounded in time ([`RpcOptions`]): a node that accepts the connection and never
//! answers fails the call after `timeout` instead of hanging its caller. A wait made of several
//! calls (polling for a receipt) may take longer in all; each call is bounded.

use std::time::Duration;

use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use alloy::signers::local::PrivateKeySigner;
use alloy::transports::http::reqwest;

use crate::ChainError;

/// How long one JSON-RPC call may take when nothing else is configured: 10 seconds.
pub const RPC_TIMEOUT_DEFAULT: Duration = Duration::from_secs(10);

/// The longest time opening a connection to a node may take (shorter when the call's own
/// timeout is shorter): 5 seconds.
pub const RPC_CONNECT_TIMEOUT_MAX: Duration = Duration::from_secs(5);

/// How calls to a node are bounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RpcOptions {
    /// How long one call may take, from connecting to the last byte of the answer.
    pub timeout: Duration,
    /// How long opening the TCP (and TLS) connection may take.
    pub connect_timeout: Duration,
}

impl RpcOptions {
    /// Calls bounded by `timeout`; connecting by `timeout` or [`RPC_CONNECT_TIMEOUT_MAX`],
    /// whichever is shorter.
    pub fn with_timeout(timeout: Duration) -> Self {
        Self { timeout, connect_timeout: timeout.min(RPC_CONNECT_TIMEOUT_MAX) }
    }

    /// The HTTP client every call goes through.
    fn http_client(&self) -> Result<reqwest::Client, ChainError> {
        reqwest::Client::builder()
            .timeout(self.timeout)
            .connect_timeout(self.connect_timeout)
            .build()
            .map_err(|error| ChainError::Rpc(format!("building the HTTP client: {error}")))
    }
}

impl Default for RpcOptions {
    /// Calls bounded by [`RPC_TIMEOUT_DEFAULT`].
    fn default() -> Self {
        Self::with_timeout(RPC_TIMEOUT_DEFAULT)
    }
}

fn parse_endpoint(endpoint: &str) -> Result<reqwest::Url, ChainError> {
    endpoint
        .parse()
        .map_err(|error| ChainError::Rpc(format!("bad RPC endpoint {endpoint}: {error}")))
}

/// A read-only provider for `endpoint`, its calls bounded by [`RpcOptions::default`].
pub fn connect(endpoint: &str) -> Result<DynProvider, ChainError> {
    connect_with_options(endpoint, RpcOptions::default())
}

/// A read-only provider for `endpoint`, its calls bounded by `options`.
pub fn connect_with_options(
    endpoint: &str,
    options: RpcOptions,
) -> Result<DynProvider, ChainError> {
    let url = parse_endpoint(endpoint)?;
    Ok(ProviderBuilder::new().connect_reqwest(options.http_client()?, url).erased())
}

/// A provider for `endpoint` that signs and sends transactions from `signer`, its calls bounded
/// by [`RpcOptions::default`].
///
/// The account nonce is read from the node for every transaction (alloy's simple nonce
/// manager) rather than cached: with a cache, a send that fails before broadcast (a revert found
/// by gas estimation) still consumes a nonce, and every later transaction waits forever behind
/// the gap.
pub fn connect_with_wallet(
    endpoint: &str,
    signer: PrivateKeySigner,
) -> Result<DynProvider, ChainError> {
    connect_with_wallet_and_options(endpoint, signer, RpcOptions::default())
}

/// [`connect_with_wallet`], its calls bounded by `options`.
pub fn connect_with_wallet_and_options(
    endpoint: &str,
    signer: PrivateKeySigner,
    options: RpcOptions,
) -> Result<DynProvider, ChainError> {
    let url = parse_endpoint(endpoint)?;
    Ok(ProviderBuilder::new()
        .disable_recommended_fillers()
        .with_gas_estimation()
        .with_simple_nonce_management()
        .fetch_chain_id()
        .wallet(signer)
        .connect_reqwest(options.http_client()?, url)
        .erased())
}

/// Sends `wei` of the chain's native currency from the provider's wallet to `to` and waits for
/// the receipt (funding relayers with gas money on a development chain).
pub async fn send_native(
    provider: &DynProvider,
    to: alloy::primitives::Address,
    wei: alloy::primitives::U256,
) -> Result<(), ChainError> {
    use alloy::network::TransactionBuilder as _;
    let request = alloy::rpc::types::TransactionRequest::default().with_to(to).with_value(wei);
    let receipt = provider
        .send_transaction(request)
        .await
        .map_err(|error| ChainError::Rpc(error.to_string()))?
        .get_receipt()
        .await
        .map_err(|error| ChainError::Rpc(error.to_string()))?;
    if receipt.status() { Ok(()) } else { Err(ChainError::Node("the transfer reverted".into())) }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail by panicking")]

    use std::time::Duration;

    use super::{RPC_CONNECT_TIMEOUT_MAX, RPC_TIMEOUT_DEFAULT, RpcOptions};

    #[test]
    fn connecting_never_waits_longer_than_the_call() {
        assert_eq!(RpcOptions::default().timeout, RPC_TIMEOUT_DEFAULT);
        assert_eq!(RpcOptions::default().connect_timeout, RPC_CONNECT_TIMEOUT_MAX);
        let short = RpcOptions::with_timeout(Duration::from_millis(500));
        assert_eq!(short.connect_timeout, Duration::from_millis(500));
        super::connect_with_options("http://127.0.0.1:1", short).unwrap();
        assert!(super::connect("not a url").is_err());
    }
}
